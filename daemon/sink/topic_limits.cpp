#include "sink/topic_limits.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace sse2kafka::sink {

namespace {

constexpr int64_t kLibrdkafkaDefaultBatchSize = 1000000;

using HandlePtr = std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, decltype(&rd_kafka_event_destroy)>;
using OptionsPtr = std::unique_ptr<rd_kafka_AdminOptions_t, decltype(&rd_kafka_AdminOptions_destroy)>;
using ResourcePtr = std::unique_ptr<rd_kafka_ConfigResource_t, decltype(&rd_kafka_ConfigResource_destroy)>;

}  // namespace

std::optional<std::map<std::string, int64_t>> ReadMaxMessageBytes(const std::string& bootstrap_servers,
                                                                  const PropertyList& properties,
                                                                  const std::vector<std::string>& topics,
                                                                  std::chrono::milliseconds timeout,
                                                                  std::string* error) {
  std::map<std::string, int64_t> limits;
  if (topics.empty()) return limits;
  PropertyList with_brokers = properties;
  with_brokers.emplace_back("bootstrap.servers", bootstrap_servers);
  rd_kafka_conf_t* conf = NewLibrdkafkaConf(with_brokers, error);
  if (conf == nullptr) return std::nullopt;
  ForwardLogToSpdlog(conf);
  std::array<char, 512> errstr{};
  HandlePtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr.data(), errstr.size()), &rd_kafka_destroy);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    *error = RedactSecretValues(errstr.data(), with_brokers);
    return std::nullopt;
  }
  // Any broker answers DescribeConfigs for a topic; asking one directly skips librdkafka's wait
  // for a controller, which brokers that do not name one (the embedded test cluster) never end.
  const rd_kafka_metadata_t* metadata = nullptr;
  const int timeout_ms = static_cast<int>(timeout.count());
  const rd_kafka_resp_err_t metadata_error = rd_kafka_metadata(rk.get(), 0, nullptr, &metadata, timeout_ms);
  if (metadata_error != RD_KAFKA_RESP_ERR_NO_ERROR || metadata == nullptr || metadata->broker_cnt < 1) {
    if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
    *error = std::string("no broker answered: ") + rd_kafka_err2str(metadata_error);
    return std::nullopt;
  }
  const int32_t broker = metadata->brokers[0].id;
  rd_kafka_metadata_destroy(metadata);
  std::vector<ResourcePtr> owned;
  std::vector<rd_kafka_ConfigResource_t*> resources;
  for (const std::string& topic : topics) {
    owned.emplace_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()),
                       &rd_kafka_ConfigResource_destroy);
    resources.push_back(owned.back().get());
  }
  QueuePtr queue(rd_kafka_queue_new(rk.get()), &rd_kafka_queue_destroy);
  OptionsPtr options(rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS),
                     &rd_kafka_AdminOptions_destroy);
  rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, nullptr, 0);
  rd_kafka_AdminOptions_set_broker(options.get(), broker, nullptr, 0);
  rd_kafka_DescribeConfigs(rk.get(), resources.data(), resources.size(), options.get(), queue.get());
  // librdkafka posts a timed-out result itself at the request timeout; the margin only guards
  // against waiting forever should it not.
  EventPtr event(rd_kafka_queue_poll(queue.get(), timeout_ms + 1000), &rd_kafka_event_destroy);
  if (!event) {
    *error = "no answer to DescribeConfigs within " + std::to_string(timeout.count()) + " ms";
    return std::nullopt;
  }
  // A broker without DescribeConfigs (the embedded test cluster) has no topic limits to tell.
  if (rd_kafka_event_error(event.get()) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) return limits;
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    *error = rd_kafka_event_error_string(event.get());
    return std::nullopt;
  }
  std::size_t count = 0;
  const rd_kafka_ConfigResource_t** described =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event.get()), &count);
  for (std::size_t r = 0; r < count; ++r) {
    if (rd_kafka_ConfigResource_error(described[r]) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;  // missing topic
    std::size_t config_count = 0;
    const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(described[r], &config_count);
    for (std::size_t c = 0; c < config_count; ++c) {
      if (std::strcmp(rd_kafka_ConfigEntry_name(configs[c]), "max.message.bytes") != 0) continue;
      const char* value = rd_kafka_ConfigEntry_value(configs[c]);
      if (value == nullptr) continue;
      char* end = nullptr;
      const long long bytes = std::strtoll(value, &end, 10);
      if (end != value && bytes > 0) limits[rd_kafka_ConfigResource_name(described[r])] = bytes;
    }
  }
  return limits;
}

std::optional<std::size_t> BatchSizeWithin(const std::map<std::string, int64_t>& limits) {
  if (limits.empty()) return std::nullopt;
  int64_t smallest = kLibrdkafkaDefaultBatchSize;
  for (const auto& [topic, bytes] : limits) smallest = std::min(smallest, bytes);
  if (smallest >= kLibrdkafkaDefaultBatchSize) return std::nullopt;
  // librdkafka's batch.size counts its own estimate of the framing; leave a tenth (at most
  // 1 KiB) for what the broker counts beyond it.
  const int64_t margin = std::min<int64_t>(smallest / 10, 1024);
  return static_cast<std::size_t>(std::max<int64_t>(1, smallest - margin));
}

}  // namespace sse2kafka::sink
