#include "sink/connection_problem.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cctype>

namespace sse2kafka::sink {

namespace {

bool Contains(std::string_view text, std::string_view part) {
  return std::search(text.begin(), text.end(), part.begin(), part.end(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         }) != text.end();
}

// The value of the last `name` in `properties` (a later one wins, as in librdkafka).
std::string Property(const PropertyList& properties, std::string_view name) {
  std::string value;
  for (const auto& [key, v] : properties) {
    if (key == name) value = v;
  }
  return value;
}

// sasl.mechanisms, or its alias sasl.mechanism.
std::string Mechanism(const PropertyList& properties) {
  const std::string plural = Property(properties, "sasl.mechanisms");
  return plural.empty() ? Property(properties, "sasl.mechanism") : plural;
}

bool SameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && Contains(a, b);
}

}  // namespace

std::optional<std::string> LibrdkafkaCaveat(const PropertyList& properties) {
  constexpr int kFirstWithScramFix = 0x02060100;  // 2.6.1
  if (!Contains(Mechanism(properties), "SCRAM") || rd_kafka_version() >= kFirstWithScramFix) return std::nullopt;
  return std::string("librdkafka ") + rd_kafka_version_str() +
         " repeats the client nonce in SCRAM logins, which Kafka 4.x brokers refuse as invalid credentials "
         "(fixed in librdkafka 2.6.1); against Kafka 4.x use mechanism PLAIN over TLS, or mutual TLS";
}

const char* ConnectionCauseName(ConnectionCause cause) {
  switch (cause) {
    case ConnectionCause::kAuthentication:
      return "authentication";
    case ConnectionCause::kTls:
      return "tls";
    case ConnectionCause::kSecurityProtocol:
      return "security_protocol";
  }
  return "unknown";
}

std::optional<ConnectionProblem> ClassifyConnectionError(int code, std::string_view text,
                                                         const PropertyList& properties,
                                                         std::string_view certificate_check) {
  const std::string protocol = Property(properties, "security.protocol");
  const bool tls = SameName(protocol, "SSL") || SameName(protocol, "SASL_SSL");
  const std::string librdkafka = "(librdkafka: " + std::string(text) + ")";

  if (code == RD_KAFKA_RESP_ERR__AUTHENTICATION || code == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
      Contains(text, "SASL authentication error") || Contains(text, "Unsupported SASL mechanism")) {
    // An SSL listener that wants a client certificate fails the handshake as "authentication"
    // too; SASL is only the cause when SASL is configured.
    const std::string mechanism = Mechanism(properties);
    if (!mechanism.empty() && !Contains(text, "SSL handshake")) {
      const std::string user = Property(properties, "sasl.username");
      const std::optional<std::string> caveat = LibrdkafkaCaveat(properties);
      return ConnectionProblem{ConnectionCause::kAuthentication,
                               "authentication failed for user " + (user.empty() ? "(none)" : user) +
                                   " with SASL mechanism " + mechanism +
                                   ": the broker refused the credentials (wrong password, unknown user, or the "
                                   "mechanism is not enabled on the listener" +
                                   (caveat ? "; or the broker is Kafka 4.x: " + *caveat : std::string()) + ") " +
                                   librdkafka};
    }
  }

  // Plaintext spoken to a TLS listener: the broker drops the connection at the first request.
  if (!tls && (Contains(text, "connecting to a SSL listener") || Contains(text, "connecting to an SSL listener"))) {
    return ConnectionProblem{ConnectionCause::kSecurityProtocol,
                             "the broker closed the connection at the first request: the listener probably "
                             "expects TLS, but security.protocol is " +
                                 (protocol.empty() ? std::string("PLAINTEXT") : protocol) +
                                 " (set kafka.security) " + librdkafka};
  }

  // With TLS 1.3 the broker checks the client's certificate after the client finished its side
  // of the handshake: its refusal arrives as an alert on the first read ("Receive failed: ...
  // SSL alert number 46"), not as a failed handshake.
  const bool handshake = code == RD_KAFKA_RESP_ERR__SSL || Contains(text, "SSL handshake failed") ||
                         Contains(text, "SSL alert number");
  if (!handshake) return std::nullopt;
  // TLS spoken to a plaintext listener: the answer is no TLS record.
  if (Contains(text, "wrong version number") || Contains(text, "PLAINTEXT broker listener") ||
      Contains(text, "packet length too long") || Contains(text, "record layer failure") ||
      Contains(text, "unknown protocol")) {
    return ConnectionProblem{ConnectionCause::kSecurityProtocol,
                             "the TLS handshake got a non-TLS answer: the listener probably speaks plaintext, "
                             "but security.protocol is " + protocol + " " + librdkafka};
  }
  if (Contains(text, "certificate verify failed") || Contains(text, "certificate could not be verified") ||
      !certificate_check.empty()) {
    std::string what = certificate_check.empty() ? std::string("it does not verify") : std::string(certificate_check);
    const std::string ca = Property(properties, "ssl.ca.location");
    return ConnectionProblem{ConnectionCause::kTls,
                             "TLS handshake failed: the broker's certificate was not accepted: " + what +
                                 " (trusted CAs: " + (ca.empty() ? std::string("the system's") : ca) + ") " +
                                 librdkafka};
  }
  // Alerts the broker sent: it refused our client certificate (or the lack of one).
  if (Contains(text, "alert")) {
    const bool has_cert = !Property(properties, "ssl.certificate.location").empty() ||
                          !Property(properties, "ssl.certificate.pem").empty();
    return ConnectionProblem{ConnectionCause::kTls,
                             std::string("TLS handshake failed: the broker refused ") +
                                 (has_cert ? "the client certificate (expired, or not signed by a CA it trusts)"
                                           : "the connection: it probably requires a client certificate "
                                             "(kafka.security.cert_file and key_file)") +
                                 " " + librdkafka};
  }
  return ConnectionProblem{ConnectionCause::kTls, "TLS handshake failed " + librdkafka};
}

namespace {
enum class Refused { kNone, kTopic, kGroup, kTransactionalId, kCluster };
Refused RefusedResource(std::string_view error) {
  if (Contains(error, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") || Contains(error, "Transactional Id authorization"))
    return Refused::kTransactionalId;
  if (Contains(error, "GROUP_AUTHORIZATION_FAILED") || Contains(error, "Group authorization failed"))
    return Refused::kGroup;
  if (Contains(error, "TOPIC_AUTHORIZATION_FAILED") || Contains(error, "Topic authorization failed"))
    return Refused::kTopic;
  if (Contains(error, "CLUSTER_AUTHORIZATION_FAILED") || Contains(error, "Cluster authorization failed"))
    return Refused::kCluster;
  return Refused::kNone;
}
}  // namespace

bool IsAuthorizationFailure(std::string_view error) { return RefusedResource(error) != Refused::kNone; }

std::string ExplainAuthorizationFailure(std::string error, const AclContext& context) {
  std::string acl;
  switch (RefusedResource(error)) {
    case Refused::kNone:
      return error;
    case Refused::kTopic:
      acl = context.topic_operation + " on Topic '" + context.topic + "'";
      break;
    case Refused::kGroup:
      acl = "Read on Group '" + context.group + "'";
      break;
    case Refused::kTransactionalId:
      acl = "Write on TransactionalId '" + context.transactional_id + "'";
      break;
    case Refused::kCluster:
      acl = "IdempotentWrite on Cluster";
      break;
  }
  return error + "; the principal lacks the ACL " + acl;
}

}  // namespace sse2kafka::sink
