#include "sink/producer_properties.h"

#include <spdlog/spdlog.h>

#include <librdkafka/rdkafka.h>
#include <stdio.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>

namespace sse2kafka::sink {
namespace {

constexpr std::string_view kQueueMessagesProperty = "queue.buffering.max.messages";
constexpr std::string_view kQueueKbytesProperty = "queue.buffering.max.kbytes";
constexpr std::size_t kLibrdkafkaDefaultQueueMessages = 100000;
constexpr std::size_t kLibrdkafkaDefaultQueueKbytes = 1048576;
constexpr std::size_t kLibrdkafkaMaxQueueLimit = INT32_MAX;

std::string Lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

bool UserSetProperty(const PropertyList& properties, std::string_view name) {
  return std::any_of(properties.begin(), properties.end(),
                     [&](const auto& property) { return property.first == name; });
}

// The value the user gave last for `name` or its alias, if any.
std::optional<std::string_view> UserValue(const PropertyList& properties, std::string_view name,
                                          std::string_view alias = {}) {
  std::optional<std::string_view> value;
  for (const auto& [property, property_value] : properties) {
    if (property == name || (!alias.empty() && property == alias)) value = property_value;
  }
  return value;
}

std::optional<int64_t> ParseMilliseconds(std::string_view text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

std::set<std::string, std::less<>> ConsumerOnlyProperties() {
  std::set<std::string, std::less<>> names;
  for (const auto& [name, property] : LibrdkafkaPropertyTable()) {
    if (property.scope == "C") names.insert(name);
  }
  return names;
}

spdlog::level::level_enum SpdlogLevel(int syslog_level) {
  if (syslog_level <= 2) return spdlog::level::critical;
  if (syslog_level == 3) return spdlog::level::err;
  if (syslog_level == 4) return spdlog::level::warn;
  if (syslog_level <= 6) return spdlog::level::info;
  return spdlog::level::debug;
}

void ForwardLog(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  spdlog::log(SpdlogLevel(level), "librdkafka {} [{}]: {}", rd_kafka_name(rk), facility, message);
}

std::optional<std::string> RefuseForTheSink(const std::string& name) {
  if (name == "bootstrap.servers" || name == "metadata.broker.list") {
    return "set the brokers with kafka.brokers, not as a property";
  }
  if (name == "transactional.id") {
    return "transactional.id is managed by sse2kafka (delivery: exactly-once), not a property";
  }
  if (name == "delivery.report.only.error") {
    return "delivery.report.only.error would hide the acknowledgements that checkpoints depend on";
  }
  if (ConsumerOnlyProperties().contains(name)) {
    return "\"" + name + "\" is a consumer property; the sink only produces";
  }
  return std::nullopt;
}

void DropLog(const rd_kafka_t*, int, const char*, const char*) {}

}  // namespace

bool IsSecretProperty(std::string_view name) {
  const std::string lower = Lowercase(name);
  for (std::string_view word : {"password", "secret", "token"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return lower == "ssl.key.pem" || lower == "sasl.oauthbearer.config";
}

std::string DescribeProperties(const PropertyList& properties) {
  std::string description;
  for (const auto& [name, value] : properties) {
    if (!description.empty()) description += ", ";
    description += name;
    description += '=';
    description += IsSecretProperty(name) ? std::string("***") : value;
  }
  return description;
}

std::string RedactSecretValues(std::string text, const PropertyList& properties) {
  for (const auto& [name, value] : properties) {
    if (value.empty() || !IsSecretProperty(name)) continue;
    for (std::size_t at = text.find(value); at != std::string::npos; at = text.find(value, at + 3)) {
      text.replace(at, value.size(), "***");
    }
  }
  return text;
}

std::size_t QueueLimitMessages(std::size_t max_in_flight_events) {
  // Twice the limit plus a fixed margin: the bridge stops reading only after the event that
  // reaches its limit, and records whose reports are not yet served still count here.
  const std::size_t wanted =
      max_in_flight_events > kLibrdkafkaMaxQueueLimit / 2 ? kLibrdkafkaMaxQueueLimit : 2 * max_in_flight_events + 1000;
  return std::clamp(wanted, kLibrdkafkaDefaultQueueMessages, kLibrdkafkaMaxQueueLimit);
}

std::size_t QueueLimitKbytes(std::size_t max_in_flight_bytes) {
  // librdkafka counts key, value and headers; 16 MiB covers one oversized record on top.
  const std::size_t kbytes = max_in_flight_bytes / 1024 + 1;
  const std::size_t wanted =
      kbytes > kLibrdkafkaMaxQueueLimit / 2 ? kLibrdkafkaMaxQueueLimit : 2 * kbytes + 16384;
  return std::clamp(wanted, kLibrdkafkaDefaultQueueKbytes, kLibrdkafkaMaxQueueLimit);
}

std::chrono::milliseconds EffectiveTransactionTimeout(const ProducerSettings& settings) {
  if (settings.transaction_timeout.count() > 0) return settings.transaction_timeout;
  if (auto text = UserValue(settings.properties, "transaction.timeout.ms")) {
    // librdkafka refuses a malformed or out-of-range value when the configuration is built.
    if (auto value = ParseMilliseconds(*text); value && *value > 0) return std::chrono::milliseconds(*value);
  }
  return kLibrdkafkaDefaultTransactionTimeout;
}

PropertyList EffectiveProducerProperties(const ProducerSettings& settings) {
  const bool transactional = settings.transactional_id.has_value();
  const std::string transaction_timeout_ms = std::to_string(EffectiveTransactionTimeout(settings).count());
  PropertyList effective = {
      {"client.id", "sse2kafka"},
      // At least once without duplicates from librdkafka's own retries, in produce order.
      {"enable.idempotence", "true"},
      {"acks", "all"},
      // No local timeout: a record waits for the broker however long it is away (backpressure
      // bounds how many wait). A finite timeout fails the oldest records of an outage while
      // younger ones still land, so their replay lands out of stream order. Transactions
      // replay a failed transaction whole, and a record must not outlive its transaction.
      {"message.timeout.ms", transactional ? transaction_timeout_ms : "0"},
  };
  effective.insert(effective.end(), settings.properties.begin(), settings.properties.end());
  if (transactional) {
    effective.emplace_back("transactional.id", *settings.transactional_id);
    if (settings.transaction_timeout.count() > 0) {
      effective.emplace_back("transaction.timeout.ms", transaction_timeout_ms);
    }
    if (UserValue(settings.properties, "message.timeout.ms", "delivery.timeout.ms") == "0") {
      effective.emplace_back("message.timeout.ms", transaction_timeout_ms);
    }
  }
  if (!UserSetProperty(settings.properties, kQueueMessagesProperty)) {
    effective.emplace_back(kQueueMessagesProperty, std::to_string(QueueLimitMessages(settings.max_in_flight_events)));
  }
  if (!UserSetProperty(settings.properties, kQueueKbytesProperty)) {
    effective.emplace_back(kQueueKbytesProperty, std::to_string(QueueLimitKbytes(settings.max_in_flight_bytes)));
  }
  if (settings.max_batch_bytes) {
    std::size_t batch = *settings.max_batch_bytes;
    if (const auto user = UserValue(settings.properties, "batch.size")) {
      std::size_t value = 0;
      const auto [end, ec] = std::from_chars(user->data(), user->data() + user->size(), value);
      if (ec == std::errc() && end == user->data() + user->size() && value > 0) batch = std::min(batch, value);
    }
    effective.emplace_back("batch.size", std::to_string(batch));
  }
  if (!settings.bootstrap_servers.empty()) {
    effective.emplace_back("bootstrap.servers", settings.bootstrap_servers);
  }
  return effective;
}

void ForwardLogToSpdlog(rd_kafka_conf_s* conf) { rd_kafka_conf_set_log_cb(conf, &ForwardLog); }

// librdkafka documents the scope of every property (C: consumer, P: producer, *: both) only in
// the table rd_kafka_conf_properties_show prints.
std::map<std::string, LibrdkafkaProperty, std::less<>> LibrdkafkaPropertyTable() {
  std::map<std::string, LibrdkafkaProperty, std::less<>> table;
  char* buffer = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&buffer, &size);
  if (out == nullptr) return table;
  rd_kafka_conf_properties_show(out);
  fclose(out);
  std::unique_ptr<char, decltype(&free)> owned(buffer, &free);
  std::string_view text(buffer, size);
  bool topic_level = false;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (line.find("Topic configuration") != std::string_view::npos) topic_level = true;
    const std::size_t first_bar = line.find('|');
    if (first_bar == std::string_view::npos) continue;
    const std::size_t second_bar = line.find('|', first_bar + 1);
    if (second_bar == std::string_view::npos) continue;
    table.emplace(std::string(Trim(line.substr(0, first_bar))),
                  LibrdkafkaProperty{std::string(Trim(line.substr(first_bar + 1, second_bar - first_bar - 1))),
                                     topic_level});
  }
  return table;
}

rd_kafka_conf_s* NewLibrdkafkaConf(const PropertyList& properties, std::string* error) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::array<char, 512> errstr{};
  for (const auto& [name, value] : properties) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr.data(), errstr.size()) != RD_KAFKA_CONF_OK) {
      *error = "kafka property \"" + name + "\": " + RedactSecretValues(errstr.data(), properties);
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
  }
  return conf;
}

std::optional<std::string> ValidateProducerProperty(const std::string& name, const std::string& value) {
  if (auto refusal = RefuseForTheSink(name)) return refusal;
  std::unique_ptr<rd_kafka_conf_t, decltype(&rd_kafka_conf_destroy)> conf(rd_kafka_conf_new(), &rd_kafka_conf_destroy);
  std::array<char, 512> errstr{};
  if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr.data(), errstr.size()) != RD_KAFKA_CONF_OK) {
    return RedactSecretValues(errstr.data(), {{name, value}});
  }
  return std::nullopt;
}

std::optional<std::string> ValidateProducerSettings(const ProducerSettings& settings) {
  ProducerSettings without_brokers = settings;
  // A producer given brokers would start resolving and connecting to them; the check must not.
  without_brokers.bootstrap_servers.clear();
  const PropertyList properties = EffectiveProducerProperties(without_brokers);
  std::string error;
  rd_kafka_conf_t* conf = NewLibrdkafkaConf(properties, &error);
  if (conf == nullptr) return error;
  // The scratch producer has no brokers, which librdkafka warns about; nobody needs to see it.
  rd_kafka_conf_set_log_cb(conf, &DropLog);
  std::array<char, 512> errstr{};
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr.data(), errstr.size());
  if (producer == nullptr) {
    rd_kafka_conf_destroy(conf);
    return RedactSecretValues(errstr.data(), properties);
  }
  rd_kafka_destroy(producer);
  return std::nullopt;
}

}  // namespace sse2kafka::sink
