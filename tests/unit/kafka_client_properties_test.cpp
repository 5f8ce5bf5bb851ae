// kafka.security becomes librdkafka's properties, ahead of the user's own ones.
#include "bridge/kafka_client_properties.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sink/client_properties.h"

namespace sse2kafka::bridge {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(KafkaClientProperties, ScramOverTlsThenTheUsersProperties) {
  config::KafkaConfig kafka;
  kafka.security.protocol = config::KafkaProtocol::kSaslSsl;
  kafka.security.mechanism = "SCRAM-SHA-512";
  kafka.security.username = "bridge";
  kafka.security.password = "pw";
  kafka.security.ca_file = "/etc/ca.pem";
  kafka.properties = {{"compression.type", "lz4"}};
  EXPECT_THAT(KafkaClientProperties(kafka),
              ElementsAre(Pair("security.protocol", "SASL_SSL"), Pair("sasl.mechanisms", "SCRAM-SHA-512"),
                          Pair("sasl.username", "bridge"), Pair("sasl.password", "pw"),
                          Pair("ssl.ca.location", "/etc/ca.pem"), Pair("compression.type", "lz4")));
  // The admin, state-topic and group clients get the security part, not the producer tuning.
  EXPECT_EQ(sink::CommonClientProperties(KafkaClientProperties(kafka)).size(), 5u);
}

TEST(KafkaClientProperties, MutualTlsAndNoBlockAtAll) {
  config::KafkaConfig kafka;
  kafka.security.protocol = config::KafkaProtocol::kSsl;
  kafka.security.cert_file = "/etc/c.pem";
  kafka.security.key_file = "/etc/c.key";
  kafka.security.key_password = "kp";
  EXPECT_THAT(KafkaClientProperties(kafka),
              ElementsAre(Pair("security.protocol", "SSL"), Pair("ssl.certificate.location", "/etc/c.pem"),
                          Pair("ssl.key.location", "/etc/c.key"), Pair("ssl.key.password", "kp")));
  EXPECT_TRUE(KafkaClientProperties(config::KafkaConfig{}).empty());
}

}  // namespace
}  // namespace sse2kafka::bridge
