// Which producer properties carry over to sse2kafka's admin client and consumers.
#include "sink/client_properties.h"
#include "sink/producer_properties.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <map>
#include <string>
#include <string_view>

namespace sse2kafka::sink {
namespace {

// librdkafka's own scope of every global property: name -> "*", "P" or "C".
std::map<std::string, std::string> GlobalPropertyScopes() {
  std::map<std::string, std::string> scopes;
  for (const auto& [name, property] : LibrdkafkaPropertyTable()) {
    if (!property.topic_level) scopes.emplace(name, property.scope);
  }
  return scopes;
}

TEST(CommonClientPropertiesTest, KeepsConnectionPropertiesInOrderAndDropsProducerOnes) {
  const PropertyList user = {
      {"acks", "1"},
      {"security.protocol", "SASL_SSL"},
      {"linger.ms", "20"},
      {"sasl.mechanisms", "SCRAM-SHA-512"},
      {"sasl.username", "ingest"},
      {"sasl.password", "s3cret"},
      {"ssl.ca.location", "/etc/ssl/ca.pem"},
      {"compression.type", "zstd"},
      {"client.id", "edge-1"},
      {"message.max.bytes", "20000000"},
      {"socket.keepalive.enable", "true"},
      {"enable.idempotence", "false"},
      {"client.id", "edge-2"},
  };
  const PropertyList expected = {
      {"security.protocol", "SASL_SSL"},
      {"sasl.mechanisms", "SCRAM-SHA-512"},
      {"sasl.username", "ingest"},
      {"sasl.password", "s3cret"},
      {"ssl.ca.location", "/etc/ssl/ca.pem"},
      {"client.id", "edge-1"},
      {"socket.keepalive.enable", "true"},
      {"client.id", "edge-2"},
  };
  EXPECT_EQ(CommonClientProperties(user), expected);
}

TEST(CommonClientPropertiesTest, NamedConnectionPropertiesAreKept) {
  for (const char* name : {"security.protocol",
                           "ssl.endpoint.identification.algorithm",
                           "ssl.keystore.location",
                           "ssl.engine.id",
                           "sasl.oauthbearer.token.endpoint.url",
                           "sasl.kerberos.keytab",
                           "client.rack",
                           "socket.timeout.ms",
                           "socket.connection.setup.timeout.ms",
                           "broker.address.family",
                           "broker.address.ttl",
                           "connections.max.idle.ms",
                           "reconnect.backoff.ms",
                           "reconnect.backoff.max.ms",
                           "metadata.max.age.ms",
                           "topic.metadata.refresh.interval.ms",
                           "api.version.request",
                           "api.version.request.timeout.ms",
                           "broker.version.fallback",
                           "debug",
                           "log_level",
                           "enable.ssl.certificate.verification",
                           "enable.sasl.oauthbearer.unsecure.jwt"}) {
    EXPECT_TRUE(IsCommonClientProperty(name)) << name;
  }
}

TEST(CommonClientPropertiesTest, ProducerAndBrokerListPropertiesAreDropped) {
  for (const char* name : {"acks",
                           "linger.ms",
                           "batch.size",
                           "compression.type",
                           "enable.idempotence",
                           "transactional.id",
                           "message.timeout.ms",
                           "queue.buffering.max.messages",
                           "partitioner",
                           "bootstrap.servers",
                           "metadata.broker.list",
                           "message.max.bytes",
                           "receive.message.max.bytes",
                           "max.in.flight",
                           "allow.auto.create.topics",
                           "statistics.interval.ms",
                           "plugin.library.paths",
                           "group.id",
                           "fetch.wait.max.ms",
                           "isolation.level",
                           "ssl.",
                           "sasl.",
                           "socket_cb",
                           "ssl_key",
                           "unknown.property"}) {
    EXPECT_FALSE(IsCommonClientProperty(name)) << name;
  }
}

// Guards the list against librdkafka's own scopes: whatever is kept must be valid for producers
// and consumers alike, or a consumer built from it would refuse to start.
TEST(CommonClientPropertiesTest, EveryKeptLibrdkafkaPropertyHasGlobalScope) {
  const std::map<std::string, std::string> scopes = GlobalPropertyScopes();
  ASSERT_GT(scopes.size(), 100u) << "librdkafka's property table could not be read";
  int kept = 0;
  for (const auto& [name, scope] : scopes) {
    if (!IsCommonClientProperty(name)) continue;
    ++kept;
    EXPECT_EQ(scope, "*") << name;
  }
  EXPECT_GT(kept, 40);
  // Families that must be complete: every global ssl.*, sasl.* and socket.* property is kept.
  for (const auto& [name, scope] : scopes) {
    if (scope != "*") continue;
    if (name.starts_with("ssl.") || name.starts_with("sasl.") || name.starts_with("socket.")) {
      EXPECT_TRUE(IsCommonClientProperty(name)) << name;
    }
  }
}

TEST(CommonClientPropertiesTest, KeptPropertiesConfigureAConsumer) {
  const PropertyList common = CommonClientProperties({
      {"client.id", "edge"},
      {"socket.keepalive.enable", "true"},
      {"reconnect.backoff.max.ms", "2000"},
      {"api.version.request", "true"},
      {"acks", "all"},
      {"linger.ms", "5"},
  });
  ASSERT_EQ(common.size(), 4u);
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  for (const auto& [name, value] : common) {
    ASSERT_EQ(rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr), RD_KAFKA_CONF_OK) << errstr;
  }
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  ASSERT_NE(consumer, nullptr) << errstr;
  rd_kafka_destroy(consumer);
}

TEST(CommonClientPropertiesTest, EmptyListGivesEmptyList) { EXPECT_TRUE(CommonClientProperties({}).empty()); }

}  // namespace
}  // namespace sse2kafka::sink
