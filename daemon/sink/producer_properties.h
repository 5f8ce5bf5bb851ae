// The librdkafka properties of the sink's producer: what the user may set, what sse2kafka sets
// around them, and how they are checked and shown in logs without leaking secrets.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct rd_kafka_conf_s;

namespace sse2kafka::sink {

using PropertyList = std::vector<std::pair<std::string, std::string>>;

struct ProducerSettings {
  std::string bootstrap_servers;
  // The user's librdkafka properties, verbatim and in config order (a later one wins).
  PropertyList properties;
  // The bridge's backpressure limits. librdkafka's own queue is sized above them so that
  // QUEUE_FULL stays an exception and the bridge's limits do the flow control.
  std::size_t max_in_flight_events = 100000;
  std::size_t max_in_flight_bytes = 64u * 1024 * 1024;
  // Set: the producer is transactional with this transactional.id (which users cannot set as a
  // property). Unset: an idempotent producer without transactions.
  std::optional<std::string> transactional_id;
  // transaction.timeout.ms of a transactional producer: how long the broker lets an open
  // transaction wait before aborting it. Zero keeps the user's property, else librdkafka's
  // default (kLibrdkafkaDefaultTransactionTimeout). Ignored without transactional_id.
  std::chrono::milliseconds transaction_timeout{0};
  // Set: batch.size is at most this (topic_limits.h: the smallest max.message.bytes of the
  // topics written, with a margin), whatever the user's batch.size, so that no batch is
  // refused whole by a topic whose limit is below it.
  std::optional<std::size_t> max_batch_bytes;
};

// librdkafka's transaction.timeout.ms when nobody sets it.
inline constexpr std::chrono::milliseconds kLibrdkafkaDefaultTransactionTimeout{60000};

// The transaction.timeout.ms a transactional producer made from `settings` uses:
// settings.transaction_timeout if set, else the user's transaction.timeout.ms property if it
// is a number, else librdkafka's default.
std::chrono::milliseconds EffectiveTransactionTimeout(const ProducerSettings& settings);

// Checks one user property against librdkafka (set on a scratch configuration) and against
// what the sink needs: consumer-only properties, properties sse2kafka sets itself
// (bootstrap.servers: use kafka.brokers; transactional.id) and delivery.report.only.error
// (the sink needs every success report) are refused.
// Returns nullopt when the property is acceptable, else a one-line message for the user in
// which a secret value is shown as ***.
std::optional<std::string> ValidateProducerProperty(const std::string& name, const std::string& value);

// Checks the whole producer configuration, including rules that span properties (for example
// acks=1 with idempotence on), by creating and destroying a producer that contacts no broker.
// Returns nullopt when librdkafka accepts it, else its message with secret values as ***.
std::optional<std::string> ValidateProducerSettings(const ProducerSettings& settings);

// The properties a producer is created with, in the order they are applied (a later one wins):
//  1. sse2kafka's defaults: client.id=sse2kafka, enable.idempotence=true, acks=all, and
//     message.timeout.ms=0 (records wait for the broker however long it is away) or, for a
//     transactional producer, message.timeout.ms=EffectiveTransactionTimeout.
//  2. the user's properties.
//  3. transactional producers only: transactional.id; transaction.timeout.ms when
//     settings.transaction_timeout is set; and message.timeout.ms=EffectiveTransactionTimeout
//     again if the user set message.timeout.ms (or its alias delivery.timeout.ms) to 0.
//     librdkafka requires message.timeout.ms <= transaction.timeout.ms and refuses larger
//     values, but lets 0 (infinite) through. A record must not outlive its transaction: the
//     broker aborts a transaction left open longer than transaction.timeout.ms, and the
//     producer's next transactional request then fails with a fencing error, which is fatal.
//     Bounded by the transaction timeout, a stuck record fails in time instead, which makes
//     the transaction abortable; aborting and replaying the whole transaction keeps the stream
//     order that the infinite timeout protects without transactions. A user's smaller value
//     is kept. socket.timeout.ms is left alone: librdkafka lowers its default below the
//     transaction timeout by itself and refuses a user's value that is not.
//  4. the queue limits derived from the in-flight limits (unless the user set them).
//  5. batch.size = min(the user's batch.size, max_batch_bytes) when max_batch_bytes is set.
//  6. bootstrap.servers.
PropertyList EffectiveProducerProperties(const ProducerSettings& settings);

// queue.buffering.max.messages / max.kbytes that hold the bridge's in-flight limits with margin.
std::size_t QueueLimitMessages(std::size_t max_in_flight_events);
std::size_t QueueLimitKbytes(std::size_t max_in_flight_bytes);

// True for properties whose values must never be logged: names containing password, secret
// or token (case-insensitive), and those that carry keys or credentials in their value
// (ssl.key.pem, sasl.oauthbearer.config).
bool IsSecretProperty(std::string_view name);

// "name=value, name=***, ..." for a log line.
std::string DescribeProperties(const PropertyList& properties);

// Replaces every occurrence of a secret property's value in `text` by ***; librdkafka quotes
// offending values in its error messages.
std::string RedactSecretValues(std::string text, const PropertyList& properties);

// A new librdkafka configuration holding `properties`, applied in order; the caller owns it.
// nullptr and *error (naming the property, secrets as ***) when librdkafka refuses one.
rd_kafka_conf_s* NewLibrdkafkaConf(const PropertyList& properties, std::string* error);

// Sends the log lines of a client created from `conf` to spdlog's default logger, at the level
// matching librdkafka's syslog level, as "librdkafka <client> [<facility>]: <message>".
void ForwardLogToSpdlog(rd_kafka_conf_s* conf);

// One row of librdkafka's property table (rd_kafka_conf_properties_show), the only place where
// librdkafka states which client type a property applies to.
struct LibrdkafkaProperty {
  std::string scope;         // "*" (every client), "P" (producers) or "C" (consumers)
  bool topic_level = false;  // listed under "Topic configuration properties"
};
std::map<std::string, LibrdkafkaProperty, std::less<>> LibrdkafkaPropertyTable();

}  // namespace sse2kafka::sink
