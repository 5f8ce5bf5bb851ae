// `kafka.security`: how the bridge authenticates to a secured Kafka cluster (TLS, mutual TLS,
// SASL PLAIN or SCRAM), read and checked like every other setting. The Kafka client settings
// it becomes are the sink's business (bridge/kafka_security_properties.h); here it is typed
// data and the checks that need no broker: files that must exist and be readable, a password
// given exactly once, a mechanism that fits the protocol.
#pragma once

#include <string>

#include "config/config.h"
#include "config/yaml_reader.h"

namespace sse2kafka::config {

// Reads the mapping at `field` into `security`, reporting every problem (error or warning) to
// `reader`. `file_is_world_readable`: the config file can be read by every local user, so a
// password written into it (not taken from ${ENV} or password_file) is warned about. The
// password and key password are read from their files here, once; secrets never appear in a
// message.
void ReadKafkaSecurity(YamlReader& reader, const Field& field, bool file_is_world_readable,
                       KafkaSecurity& security);

// The librdkafka property names that `kafka.security` sets; the same names in
// `kafka.properties` are refused when a security block is present, so that one place says
// how the bridge authenticates.
bool IsSecurityBlockProperty(std::string_view name);

}  // namespace sse2kafka::config
