#include "bridge/kafka_client_properties.h"

namespace sse2kafka::bridge {

sink::PropertyList KafkaClientProperties(const config::KafkaConfig& kafka) {
  sink::PropertyList properties;
  const config::KafkaSecurity& security = kafka.security;
  if (security.protocol) {
    properties.emplace_back("security.protocol", config::KafkaProtocolName(*security.protocol));
    if (!security.mechanism.empty()) {
      properties.emplace_back("sasl.mechanisms", security.mechanism);
      properties.emplace_back("sasl.username", security.username);
      properties.emplace_back("sasl.password", security.password);
    }
    if (!security.ca_file.empty()) properties.emplace_back("ssl.ca.location", security.ca_file);
    if (!security.cert_file.empty()) properties.emplace_back("ssl.certificate.location", security.cert_file);
    if (!security.key_file.empty()) properties.emplace_back("ssl.key.location", security.key_file);
    if (!security.key_password.empty()) properties.emplace_back("ssl.key.password", security.key_password);
  }
  properties.insert(properties.end(), kafka.properties.begin(), kafka.properties.end());
  return properties;
}

}  // namespace sse2kafka::bridge
