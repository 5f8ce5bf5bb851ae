// Connection errors as librdkafka 2.0 words them, told apart for the user; secrets never shown.
#include "sink/connection_problem.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

namespace sse2kafka::sink {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const PropertyList kScram = {{"security.protocol", "SASL_SSL"}, {"sasl.mechanisms", "SCRAM-SHA-512"},
                             {"sasl.username", "bridge"},        {"sasl.password", "s3cret"},
                             {"ssl.ca.location", "/etc/ca.pem"}};
const PropertyList kPlain = {};
const PropertyList kMutualTls = {{"security.protocol", "SSL"}, {"ssl.ca.location", "/etc/ca.pem"},
                                 {"ssl.certificate.location", "/etc/client.pem"}};

TEST(ConnectionProblem, RefusedCredentialsNameTheUserAndMechanismButNotThePassword) {
  const auto problem = ClassifyConnectionError(
      RD_KAFKA_RESP_ERR__AUTHENTICATION,
      "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication failed during authentication "
      "due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 305ms in state AUTH_REQ)",
      kScram, "");
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->cause, ConnectionCause::kAuthentication);
  EXPECT_THAT(problem->message, HasSubstr("authentication failed for user bridge with SASL mechanism SCRAM-SHA-512"));
  EXPECT_THAT(problem->message, Not(HasSubstr("s3cret")));
}

TEST(ConnectionProblem, AnUntrustedCertificateSaysWhatTheCheckFound) {
  const auto problem = ClassifyConnectionError(
      RD_KAFKA_RESP_ERR__SSL,
      "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: "
      "broker certificate could not be verified, verify that ssl.ca.location is correctly configured",
      kMutualTls, "certificate has expired (certificate 0 of the chain, 0 being the broker's own)");
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->cause, ConnectionCause::kTls);
  EXPECT_THAT(problem->message, HasSubstr("the broker's certificate was not accepted: certificate has expired"));
  EXPECT_THAT(problem->message, HasSubstr("trusted CAs: /etc/ca.pem"));
}

TEST(ConnectionProblem, ARefusedClientCertificateIsTheBrokersVerdict) {
  const auto problem = ClassifyConnectionError(
      RD_KAFKA_RESP_ERR__SSL,
      "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000415:SSL routines::sslv3 alert certificate "
      "expired",
      kMutualTls, "");
  ASSERT_TRUE(problem);
  EXPECT_THAT(problem->message, HasSubstr("the broker refused the client certificate"));
  // TLS 1.3: the refusal comes on the first read after the handshake.
  const auto late = ClassifyConnectionError(
      RD_KAFKA_RESP_ERR__TRANSPORT,
      "ssl://127.0.0.1:35599/bootstrap: Receive failed: error:0A000416:SSL routines::sslv3 alert certificate "
      "unknown: SSL alert number 46 (after 1ms in state APIVERSION_QUERY)",
      kMutualTls, "");
  ASSERT_TRUE(late);
  EXPECT_EQ(late->cause, ConnectionCause::kTls);
  EXPECT_THAT(late->message, HasSubstr("the broker refused the client certificate"));
}

TEST(ConnectionProblem, ProtocolMismatchesBothWays) {
  const auto plaintext_to_tls = ClassifyConnectionError(
      RD_KAFKA_RESP_ERR__TRANSPORT,
      "127.0.0.1:9093/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect "
      "security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10",
      kPlain, "");
  ASSERT_TRUE(plaintext_to_tls);
  EXPECT_EQ(plaintext_to_tls->cause, ConnectionCause::kSecurityProtocol);
  EXPECT_THAT(plaintext_to_tls->message, HasSubstr("the listener probably expects TLS"));

  const auto tls_to_plaintext = ClassifyConnectionError(
      RD_KAFKA_RESP_ERR__SSL,
      "ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number",
      kMutualTls, "");
  ASSERT_TRUE(tls_to_plaintext);
  EXPECT_EQ(tls_to_plaintext->cause, ConnectionCause::kSecurityProtocol);
  EXPECT_THAT(tls_to_plaintext->message, HasSubstr("the listener probably speaks plaintext"));
}

TEST(ConnectionProblem, OtherErrorsAreNotConnectionProblems) {
  EXPECT_FALSE(ClassifyConnectionError(RD_KAFKA_RESP_ERR__TRANSPORT,
                                       "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused",
                                       kPlain, ""));
  EXPECT_FALSE(ClassifyConnectionError(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "3/3 brokers are down", kScram, ""));
}

TEST(ConnectionProblem, RefusalsNameTheMissingAcl) {
  AclContext context;
  context.topic_operation = "Read";
  context.topic = "_state";
  context.group = "fleet";
  context.transactional_id = "fleet-3";
  EXPECT_EQ(ExplainAuthorizationFailure("TRANSACTIONAL_ID_AUTHORIZATION_FAILED: Broker: Transactional Id "
                                        "authorization failed",
                                        context),
            "TRANSACTIONAL_ID_AUTHORIZATION_FAILED: Broker: Transactional Id authorization failed; the principal "
            "lacks the ACL Write on TransactionalId 'fleet-3'");
  EXPECT_THAT(ExplainAuthorizationFailure("GROUP_AUTHORIZATION_FAILED: x", context),
              HasSubstr("lacks the ACL Read on Group 'fleet'"));
  EXPECT_THAT(ExplainAuthorizationFailure("Broker: Topic authorization failed", context),
              HasSubstr("lacks the ACL Read on Topic '_state'"));
  EXPECT_EQ(ExplainAuthorizationFailure("_TIMED_OUT: Local: Timed out", context), "_TIMED_OUT: Local: Timed out");
  EXPECT_FALSE(IsAuthorizationFailure("_TIMED_OUT"));
}

}  // namespace
}  // namespace sse2kafka::sink
