#include "config/kafka_security.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <strings.h>
#include <optional>

namespace sse2kafka::config {

namespace {

constexpr std::string_view kSecurityKeys[] = {"protocol",  "mechanism", "username",     "password",
                                              "password_file", "ca_file", "cert_file", "key_file",
                                              "key_password",  "key_password_file"};
// A password file larger than this holds no password; a PEM file (a CA bundle may hold every
// public CA, ~200KiB) larger than this no certificate or key.
constexpr std::size_t kMaxSecretFileSize = 64 * 1024;
constexpr std::size_t kMaxPemFileSize = 16 * 1024 * 1024;

// A path in full (Shown() shortens long text, and a shortened path cannot be checked).
std::string ShownPath(const std::string& path) { return "`" + path + "`"; }

struct FileRead {
  std::string text;     // the content (only when asked for)
  std::string problem;  // empty: readable
  bool world_readable = false;
};

// Opens and reads `path` the way the bridge will (read-only), so that --check finds a missing
// or unreadable file before the daemon does.
FileRead ReadFile(const std::string& path, std::size_t max_size) {
  FileRead result;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    result.problem = "cannot read " + ShownPath(path) + ": " + std::strerror(errno);
    return result;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    result.problem = ShownPath(path) + " is not a regular file";
  } else if (static_cast<std::size_t>(info.st_size) > max_size) {
    result.problem = ShownPath(path) + " is larger than " + std::to_string(max_size / 1024) +
                     "KiB; that is no password, key or certificate";
  } else {
    result.world_readable = (info.st_mode & S_IROTH) != 0;
    std::array<char, 4096> buffer{};
    while (true) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        result.problem = "cannot read " + ShownPath(path) + ": " + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      result.text.append(buffer.data(), static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return result;
}

// A secret file holds the secret and, as `echo` and most secret stores write it, maybe one
// line ending.
std::string WithoutLineEnd(std::string text) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
}

bool IsTls(KafkaProtocol p) { return p == KafkaProtocol::kSsl || p == KafkaProtocol::kSaslSsl; }
bool IsSasl(KafkaProtocol p) { return p == KafkaProtocol::kSaslPlaintext || p == KafkaProtocol::kSaslSsl; }

class SecurityReader {
 public:
  SecurityReader(YamlReader& reader, bool world_readable) : reader_(reader), world_readable_config_(world_readable) {}

  void Read(const Field& field, KafkaSecurity& security) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field, /*values_are_secret=*/true);
    if (!entries) return;
    for (const Field& entry : reader_.KnownOnly(std::move(*entries), kSecurityKeys)) {
      fields_.push_back(entry);
      if (entry.name == "protocol") {
        protocol_ = ReadProtocol(entry);
      } else if (entry.name == "mechanism") {
        ReadMechanism(entry, security);
      } else if (entry.name == "username") {
        if (auto name = reader_.NonEmptyString(entry)) security.username = std::move(*name);
      } else if (entry.name == "password" || entry.name == "key_password") {
        ReadInlineSecret(entry, entry.name == "password" ? security.password : security.key_password);
      } else if (entry.name == "password_file" || entry.name == "key_password_file") {
        ReadSecretFile(entry, security, entry.name == "password_file");
      } else {
        ReadPemFile(entry, entry.name == "ca_file"     ? security.ca_file
                           : entry.name == "cert_file" ? security.cert_file
                                                       : security.key_file);
      }
    }
    CheckCombination(field, security);
  }

 private:
  const Field* Entry(std::string_view name) const {
    const auto it = std::find_if(fields_.begin(), fields_.end(), [&](const Field& f) { return f.name == name; });
    return it == fields_.end() ? nullptr : &*it;
  }

  std::optional<KafkaProtocol> ReadProtocol(const Field& entry) {
    std::optional<std::string> text = reader_.String(entry);
    if (!text) return std::nullopt;
    for (KafkaProtocol p : {KafkaProtocol::kPlaintext, KafkaProtocol::kSsl, KafkaProtocol::kSaslPlaintext,
                            KafkaProtocol::kSaslSsl}) {
      if (strcasecmp(text->c_str(), KafkaProtocolName(p)) == 0) return p;
    }
    reader_.Error(entry, "expected sasl_ssl, ssl, sasl_plaintext or plaintext, found " + Shown(*text));
    return std::nullopt;
  }

  void ReadMechanism(const Field& entry, KafkaSecurity& security) {
    std::optional<std::string> text = reader_.NonEmptyString(entry);
    if (!text) return;
    for (const char* mechanism : {"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"}) {
      if (strcasecmp(text->c_str(), mechanism) == 0) {
        security.mechanism = mechanism;  // librdkafka's spelling
        return;
      }
    }
    reader_.Error(entry, "unknown SASL mechanism " + Shown(*text) +
                             "; expected SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (for GSSAPI or OAUTHBEARER set "
                             "librdkafka's sasl.* properties in kafka.properties instead of kafka.security)");
  }

  void ReadInlineSecret(const Field& entry, std::string& secret) {
    std::optional<std::string> value = reader_.String(entry);
    if (!value) return;
    if (value->empty()) {
      reader_.Error(entry, "is empty (when it comes from ${...}, the variable is set but empty)");
      return;
    }
    secret = std::move(*value);
    // A value that names no variable was written into the file itself.
    const bool from_environment = entry.value.Scalar().find('$') != std::string::npos;
    if (!from_environment && world_readable_config_) {
      reader_.Warning(reader_.LocationOf(entry), entry.path,
                      "the secret is written in a config file every local user can read; take it from "
                      "${VARIABLE} or " + entry.name + "_file, or make the file unreadable to others "
                      "(chmod 600)");
    }
  }

  // The path at `entry` and the file's content; nullopt, after reporting, when it cannot be read.
  std::optional<std::pair<std::string, FileRead>> ReadEntryFile(const Field& entry, std::size_t max_size) {
    std::optional<std::string> path = reader_.NonEmptyString(entry);
    if (!path) return std::nullopt;
    FileRead file = ReadFile(*path, max_size);
    if (!file.problem.empty()) {
      reader_.Error(entry, file.problem);
      return std::nullopt;
    }
    return std::make_pair(std::move(*path), std::move(file));
  }

  void ReadSecretFile(const Field& entry, KafkaSecurity& security, bool is_password) {
    auto read = ReadEntryFile(entry, kMaxSecretFileSize);
    if (!read) return;
    auto& [path, file] = *read;
    std::string secret = WithoutLineEnd(std::move(file.text));
    if (secret.empty()) {
      reader_.Error(entry, ShownPath(path) + " is empty");
      return;
    }
    if (file.world_readable) {
      reader_.Warning(reader_.LocationOf(entry), entry.path,
                      ShownPath(path) + " can be read by every local user (chmod 600 it)");
    }
    if (is_password) {
      security.password = std::move(secret);
      security.password_file = path;
    } else {
      security.key_password = std::move(secret);
    }
  }

  void ReadPemFile(const Field& entry, std::string& path_out) {
    auto read = ReadEntryFile(entry, kMaxPemFileSize);
    if (!read) return;
    auto& [path, file] = *read;
    if (file.text.find("-----BEGIN ") == std::string::npos) {
      reader_.Error(entry, ShownPath(path) + " holds no PEM block (-----BEGIN ...); convert DER or PKCS#12 "
                                          "files with openssl first");
      return;
    }
    if (entry.name == "key_file" && file.world_readable) {
      reader_.Warning(reader_.LocationOf(entry), entry.path,
                      ShownPath(path) + " (a private key) can be read by every local user (chmod 600 it)");
    }
    path_out = path;
  }

  void CheckCombination(const Field& block, KafkaSecurity& security) {
    const bool sasl_given = Entry("mechanism") || Entry("username") || Entry("password") || Entry("password_file");
    if (!protocol_ && Entry("protocol")) return;  // the protocol was wrong: reported already
    const KafkaProtocol protocol =
        protocol_.value_or(sasl_given ? KafkaProtocol::kSaslSsl : KafkaProtocol::kSsl);
    security.protocol = protocol;
    if (IsSasl(protocol)) {
      if (!Entry("mechanism")) {
        reader_.MissingKey(block, "mechanism",
                           std::string("protocol ") + KafkaProtocolName(protocol) +
                               " needs `mechanism` (SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN)");
      }
      if (!Entry("username")) reader_.MissingKey(block, "username", "a SASL mechanism needs `username`");
      if (!Entry("password") && !Entry("password_file")) {
        reader_.MissingKey(block, "password", "a SASL mechanism needs `password` or `password_file`");
      }
      if (Entry("password") && Entry("password_file")) {
        reader_.KeyError(*Entry("password_file"), "set `password` or `password_file`, not both");
      }
    } else {
      for (const char* key : {"mechanism", "username", "password", "password_file"}) {
        if (const Field* entry = Entry(key)) {
          reader_.KeyError(*entry, std::string("is a SASL setting, but protocol ") + KafkaProtocolName(protocol) +
                                       " has no SASL (use sasl_ssl)");
        }
      }
    }
    if (!IsTls(protocol)) {
      for (const char* key : {"ca_file", "cert_file", "key_file", "key_password", "key_password_file"}) {
        if (const Field* entry = Entry(key)) {
          reader_.KeyError(*entry, std::string("is a TLS setting, but protocol ") + KafkaProtocolName(protocol) +
                                       " has no TLS (use ssl or sasl_ssl)");
        }
      }
      return;
    }
    if (Entry("cert_file") && !Entry("key_file")) {
      reader_.MissingKey(block, "key_file", "`cert_file` is set but `key_file` is not");
    }
    if (Entry("key_file") && !Entry("cert_file")) {
      reader_.MissingKey(block, "cert_file", "`key_file` is set but `cert_file` is not");
    }
    if (Entry("key_password") && Entry("key_password_file")) {
      reader_.KeyError(*Entry("key_password_file"), "set `key_password` or `key_password_file`, not both");
    }
    if ((Entry("key_password") || Entry("key_password_file")) && !Entry("key_file")) {
      reader_.MissingKey(block, "key_file", "a key password is set but `key_file` is not");
    }
  }

  YamlReader& reader_;
  const bool world_readable_config_;
  std::vector<Field> fields_;
  std::optional<KafkaProtocol> protocol_;
};

}  // namespace

const char* KafkaProtocolName(KafkaProtocol protocol) {
  switch (protocol) {
    case KafkaProtocol::kPlaintext:
      return "PLAINTEXT";
    case KafkaProtocol::kSsl:
      return "SSL";
    case KafkaProtocol::kSaslPlaintext:
      return "SASL_PLAINTEXT";
    case KafkaProtocol::kSaslSsl:
      return "SASL_SSL";
  }
  return "PLAINTEXT";
}

void ReadKafkaSecurity(YamlReader& reader, const Field& field, bool file_is_world_readable,
                       KafkaSecurity& security) {
  SecurityReader(reader, file_is_world_readable).Read(field, security);
}

bool IsSecurityBlockProperty(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "security.protocol", "sasl.mechanisms",          "sasl.mechanism", "sasl.username",
      "sasl.password",     "ssl.ca.location",          "ssl.ca.pem",     "ssl.certificate.location",
      "ssl.certificate.pem", "ssl.key.location",       "ssl.key.pem",    "ssl.key.password",
      "ssl.keystore.location", "ssl.keystore.password"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

}  // namespace sse2kafka::config
