#include "sink/embedded_cluster.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>

#include <array>

namespace sse2kafka::sink {
namespace {

// The owning client has no brokers of its own (librdkafka warns about that) and the mock
// brokers log every connection: detail for debugging, not for the operator.
void LogAtDebug(const rd_kafka_t*, int, const char* facility, const char* message) {
  spdlog::debug("embedded kafka [{}]: {}", facility, message);
}

}  // namespace

std::unique_ptr<EmbeddedCluster> EmbeddedCluster::Start(int brokers, std::string* error) {
  if (brokers < 1) {
    *error = "an embedded kafka cluster needs at least one broker";
    return nullptr;
  }
  std::unique_ptr<EmbeddedCluster> cluster(new EmbeddedCluster());
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, &LogAtDebug);
  std::array<char, 512> errstr{};
  cluster->owner_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr.data(), errstr.size());
  if (cluster->owner_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    *error = std::string("cannot start the embedded kafka cluster: ") + errstr.data();
    return nullptr;
  }
  cluster->mock_ = rd_kafka_mock_cluster_new(cluster->owner_, brokers);
  if (cluster->mock_ == nullptr) {
    *error = "cannot start the embedded kafka cluster's brokers";
    return nullptr;
  }
  cluster->bootstrap_servers_ = rd_kafka_mock_cluster_bootstraps(cluster->mock_);
  spdlog::info("embedded kafka cluster with {} broker(s) at {} (records are kept in memory only)", brokers,
               cluster->bootstrap_servers_);
  return cluster;
}

EmbeddedCluster::~EmbeddedCluster() {
  if (mock_ != nullptr) rd_kafka_mock_cluster_destroy(mock_);
  if (owner_ != nullptr) rd_kafka_destroy(owner_);
}

}  // namespace sse2kafka::sink

namespace sse2kafka::sink {

bool EmbeddedCluster::CreateTopic(const std::string& name, int partitions) {
  return rd_kafka_mock_topic_create(mock_, name.c_str(), partitions, 1) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

}  // namespace sse2kafka::sink
