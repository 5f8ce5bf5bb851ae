#include "bridge/metrics_snapshot.h"

#include "generated/version.h"

namespace sse2kafka::bridge {
namespace {

ops::StreamPhase PhaseOf(StreamState state) {
  switch (state) {
    case StreamState::kWaiting: return ops::StreamPhase::kWaiting;
    case StreamState::kAwaitingAcks: return ops::StreamPhase::kAwaitingAcks;
    case StreamState::kConnecting: return ops::StreamPhase::kConnecting;
    case StreamState::kOpen: return ops::StreamPhase::kOpen;
    case StreamState::kFailing: return ops::StreamPhase::kFailing;
    case StreamState::kStopped: return ops::StreamPhase::kStopped;
    case StreamState::kClosed: return ops::StreamPhase::kClosed;
  }
  return ops::StreamPhase::kWaiting;
}

uint64_t Reconnects(const StreamStats& s, ReconnectReason reason) {
  return s.reconnects_by_reason[static_cast<int>(reason)];
}

}  // namespace

ops::MetricsSnapshot TakeMetricsSnapshot(const Bridge& bridge, uint64_t loop_turns, bool stopping) {
  ops::MetricsSnapshot snapshot;
  const auto steady_now = std::chrono::steady_clock::now();
  const auto wall_now = std::chrono::system_clock::now();
  snapshot.taken_at = steady_now;
  snapshot.taken_at_wall = wall_now;

  const BridgeStats& b = bridge.stats();
  ops::ProcessMetrics& p = snapshot.process;
  p.version = SSE2KAFKA_VERSION;
  p.loop_turns = loop_turns;
  p.producer_queue_depth = bridge.producer_outstanding();
  p.in_flight_events = b.in_flight_events;
  p.in_flight_bytes = b.in_flight_bytes;
  p.backpressured = b.backpressured;
  p.backpressure_episodes = b.backpressure_episodes;
  p.fatal_producer_resets = b.fatal_producer_resets;
  p.stopping = stopping;
  p.fleet = bridge.fleet();
  p.owned_partitions = b.owned_partitions;
  p.ownership_changes = b.ownership_changes;
  p.transactions_committed = b.transactions_committed;
  p.transactions_aborted = b.transactions_aborted;
  p.kafka_stats_interval = bridge.kafka_stats_interval();
  if (const auto* kafka = bridge.producer_stats()) {
    ops::KafkaStatsMetrics k;
    k.received_at = kafka->received_at;
    k.brokers_up = kafka->brokers_up;
    k.brokers_total = kafka->brokers_total;
    k.queue_messages = kafka->msg_cnt;
    k.queue_bytes = kafka->msg_size;
    k.tx_messages = kafka->txmsgs;
    k.tx_message_bytes = kafka->txmsg_bytes;
    k.tx_bytes = kafka->tx_bytes;
    k.avg_rtt = kafka->avg_rtt;
    p.kafka_stats = k;
  }
  if (const sink::ConnectionProblem* problem = bridge.kafka_connection_problem()) {
    p.kafka_connection_problem = problem->message;
    p.kafka_connection_cause = sink::ConnectionCauseName(problem->cause);
  }
  if (const auto* errors = bridge.kafka_connection_errors()) {
    for (int cause = 0; cause < sink::kConnectionCauseCount; ++cause) {
      p.kafka_connection_errors.emplace_back(sink::ConnectionCauseName(static_cast<sink::ConnectionCause>(cause)),
                                             (*errors)[cause]);
    }
  }

  bridge.ForEachStream([&](const StreamPipeline& pipeline) {
    const StreamStats& s = pipeline.stats();
    ops::StreamMetrics m;
    m.name = pipeline.config().name;
    m.phase = PhaseOf(pipeline.state());
    m.url = pipeline.redacted_url();
    m.last_event_id = pipeline.last_event_id();
    m.checkpoint = pipeline.checkpoint();
    m.attempt = pipeline.attempt();
    if (pipeline.state() == StreamState::kWaiting) {
      m.next_retry_unix_ms = ops::UnixMillis(pipeline.next_attempt_at(), steady_now, wall_now);
    }
    m.events = s.events;
    m.bytes = s.bytes;
    m.records_produced = s.records_produced;
    m.records_delivered = s.records_delivered;
    m.delivery_errors = s.delivery_errors;
    m.kafka_refusal = s.kafka_refusal;
    m.filtered = s.filtered;
    m.oversized = s.oversized;
    m.connects = s.connects;
    m.rewinds = s.rewinds;
    m.reconnects.network = Reconnects(s, ReconnectReason::kNetwork);
    m.reconnects.status = Reconnects(s, ReconnectReason::kStatus);
    m.reconnects.idle = Reconnects(s, ReconnectReason::kIdle);
    m.reconnects.end = Reconnects(s, ReconnectReason::kEnd);
    m.reconnects.rewind = Reconnects(s, ReconnectReason::kRewind);
    m.last_event_unix_ms = s.last_event_unix_ms;
    m.in_flight_events = pipeline.in_flight_events();
    m.paused = pipeline.waiting_for_kafka();
    snapshot.streams.push_back(std::move(m));
  });
  p.owned_streams = snapshot.streams.size();
  return snapshot;
}

}  // namespace sse2kafka::bridge
