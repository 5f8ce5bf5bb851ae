// An in-process Kafka cluster (librdkafka's mock brokers on loopback) for
// `kafka.brokers: embedded`, the try-out mode, and for tests. It keeps records in memory only,
// about 5 MB per partition; see /work/shared/notes/kafka-mock-cluster.md for where it differs
// from a real broker.
#pragma once

#include <memory>
#include <string>

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace sse2kafka::sink {

class EmbeddedCluster {
 public:
  // Starts `brokers` (1 or more) brokers listening on 127.0.0.1 with ephemeral ports. Topics are
  // created on first use. Returns nullptr and sets *error when librdkafka cannot start them.
  static std::unique_ptr<EmbeddedCluster> Start(int brokers, std::string* error);

  // Stops the brokers; clients still connected see their connections drop.
  ~EmbeddedCluster();

  EmbeddedCluster(const EmbeddedCluster&) = delete;
  EmbeddedCluster& operator=(const EmbeddedCluster&) = delete;

  // "127.0.0.1:port,..." for bootstrap.servers.
  const std::string& bootstrap_servers() const { return bootstrap_servers_; }

  // Creates a topic with `partitions` partitions (replication factor 1), as a broker's
  // CreateTopics would; the mock has no CreateTopics. False when it exists or is refused.
  bool CreateTopic(const std::string& name, int partitions);

  // librdkafka's handle for creating topics and injecting faults (rdkafka_mock.h).
  rd_kafka_mock_cluster_s* mock() const { return mock_; }

 private:
  EmbeddedCluster() = default;

  rd_kafka_s* owner_ = nullptr;  // the mock brokers run inside this otherwise unused client
  rd_kafka_mock_cluster_s* mock_ = nullptr;
  std::string bootstrap_servers_;
};

}  // namespace sse2kafka::sink
