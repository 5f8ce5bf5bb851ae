// The librdkafka properties every Kafka client of the bridge starts from: what `kafka.security`
// says (as librdkafka's security.protocol, sasl.* and ssl.* properties), then the user's
// `kafka.properties` in file order. The loader refuses a property that the security block also
// sets, so the two never disagree.
#pragma once

#include "config/config.h"
#include "sink/producer_properties.h"

namespace sse2kafka::bridge {

// Never fails: `kafka` was checked by the loader. Secret values (sasl.password,
// ssl.key.password) are in the list; log it only through config::RedactedProperties.
sink::PropertyList KafkaClientProperties(const config::KafkaConfig& kafka);

}  // namespace sse2kafka::bridge
