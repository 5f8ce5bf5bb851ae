// Which of the user's producer properties (kafka.properties) also apply to the other clients
// sse2kafka opens on the same cluster: the admin client that creates the state topic, the
// reader of checkpoints, the consumer group of cluster mode.
#pragma once

#include <string_view>

#include "sink/producer_properties.h"

namespace sse2kafka::sink {

// Returns the properties of `user_properties` that say how to reach and talk to the cluster,
// in their order (a later one still wins): security.protocol, ssl.*, sasl.*,
// enable.ssl.certificate.verification, enable.sasl.oauthbearer.unsecure.jwt, client.id,
// client.rack, socket.*, broker.address.*, connections.max.idle.ms, reconnect.backoff.*,
// metadata.max.age.ms, topic.metadata.refresh.*, topic.metadata.propagation.max.ms,
// api.version.*, broker.version.fallback, debug, log_level, log.connection.close,
// log.thread.name. Every one of them has librdkafka scope "*" (producer and consumer).
//
// Everything else is left out: producer-only properties (acks, linger.ms, compression, ...),
// and "*" properties that were set for producing and would break or bend another client —
// message.max.bytes and receive.message.max.bytes (a consumer requires fetch.max.bytes to fit
// within them), max.in.flight.*, allow.auto.create.topics, topic.blacklist,
// statistics.interval.ms, enable.random.seed, plugin.library.paths and interceptors (a plugin's
// own properties cannot be told apart here), bootstrap.servers (the caller sets the brokers).
// Never fails: unknown names are left out like any other.
PropertyList CommonClientProperties(const PropertyList& user_properties);

// True when `name` is one that CommonClientProperties keeps.
bool IsCommonClientProperty(std::string_view name);

}  // namespace sse2kafka::sink
