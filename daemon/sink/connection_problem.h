// Why a Kafka client cannot talk to its brokers, told from librdkafka's error events in words a
// user can act on: authentication refused (names the user and mechanism), the TLS handshake
// failed (says what the certificate check found), or the two ends disagree on the protocol
// (TLS against a plaintext listener, or the other way round). Pure functions; no secret is
// ever part of a message (librdkafka's texts hold none, and only the user name and mechanism
// are taken from the properties).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "sink/producer_properties.h"

namespace sse2kafka::sink {

enum class ConnectionCause {
  kAuthentication,    // SASL refused: wrong password, unknown user, mechanism not enabled
  kTls,               // TLS handshake failed: certificate not trusted, expired, wrong host, refused
  kSecurityProtocol,  // TLS spoken to a plaintext listener, or plaintext to a TLS listener
};
inline constexpr int kConnectionCauseCount = 3;

// "authentication", "tls", "security_protocol": label values for metrics, keys in /readyz.
const char* ConnectionCauseName(ConnectionCause cause);

struct ConnectionProblem {
  ConnectionCause cause = ConnectionCause::kAuthentication;
  std::string message;  // one line, e.g. "authentication failed for user bridge (SASL SCRAM-SHA-512): ..."
};

// Classifies one librdkafka error (`code` a rd_kafka_resp_err_t, `text` its string) of a
// client created with `properties`. `certificate_check` is what the client's own certificate
// check last reported (e.g. "certificate has expired (depth 0)"), empty when it reported
// nothing. nullopt: not a connection problem of these kinds (timeouts, brokers down, ...).
std::optional<ConnectionProblem> ClassifyConnectionError(int code, std::string_view text,
                                                         const PropertyList& properties,
                                                         std::string_view certificate_check);

// A known limit of the librdkafka this process links that the properties run into, for a
// warning at start: SCRAM with librdkafka before 2.6.1, whose client-final message repeats the
// client nonce, which Kafka 4.x brokers refuse as invalid credentials (librdkafka #4895;
// Kafka 3.9 accepts it). nullopt when none applies.
std::optional<std::string> LibrdkafkaCaveat(const PropertyList& properties);

// What a refused request needed, to name the missing ACL in startup errors.
struct AclContext {
  std::string topic_operation = "Write";  // what was done to `topic`: Write, Read, Create, Describe
  std::string topic;
  std::string group;
  std::string transactional_id;
};

// `error` with "; the principal lacks the ACL <operation> on <Resource> '<name>'" appended when it
// names a Kafka authorization failure (TOPIC_, GROUP_, TRANSACTIONAL_ID_ or
// CLUSTER_AUTHORIZATION_FAILED, by name or by librdkafka's text), else `error` unchanged.
std::string ExplainAuthorizationFailure(std::string error, const AclContext& context);

// True when `error` names one of those authorization failures.
bool IsAuthorizationFailure(std::string_view error);

}  // namespace sse2kafka::sink
