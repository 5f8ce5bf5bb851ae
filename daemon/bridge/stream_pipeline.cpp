#include "bridge/stream_pipeline.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <strings.h>

#include "generated/version.h"
#include "http/header_values.h"
#include "http/url_redaction.h"
#include "ops/log.h"

namespace sse2kafka::bridge {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using spdlog::level::debug;
using spdlog::level::err;
using spdlog::level::info;
using spdlog::level::warn;

namespace {

constexpr std::size_t kFailedBodyLogBytes = 512;
// How long a failed response may take to show its first bytes for the log: a wrong
// Content-Type on an endless body must not hold the attempt open until idle_timeout.
constexpr milliseconds kFailedBodyWait{1000};

int64_t UnixMillisNow() {
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::function<double()> SeededUniform(uint32_t slot) {
  // Jitter only has to differ between streams and runs; it is not security-relevant. A
  // splitmix64 state is 8 bytes per stream, where a std::mt19937_64 would be 2.5 KiB.
  uint64_t state = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                   (uint64_t{slot} * 0x9E3779B97F4A7C15ULL);
  return [state]() mutable {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;  // uniform in [0, 1)
  };
}

sse::Parser::Limits ParserLimits(const config::StreamConfig& c) {
  sse::Parser::Limits limits;
  limits.max_event_size = c.max_event_size;
  limits.max_id_size = c.max_event_id_size;
  return limits;
}

// The one line of a secret file (a token), without its line end. nullopt with *error naming
// `what` and the path, never the content.
std::optional<std::string> ReadSecretFile(const std::string& path, const std::string& what, std::string* error) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream content;
  content << file.rdbuf();
  if (!file) {
    *error = "cannot read the file for " + what + ": " + path;
    return std::nullopt;
  }
  std::string value = content.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  if (value.find_first_of("\r\n") != std::string::npos) {
    *error = "the file for " + what + " holds more than one line: " + path;
    return std::nullopt;
  }
  return value;
}

bool HasHeader(const std::vector<config::Header>& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (n.size() == name.size() && strncasecmp(n.data(), name.data(), name.size()) == 0) return true;
  }
  return false;
}

// Every query value from `query` and `query_from_files` is secret, like a header value.
http::SecretQueryParameters SecretsOf(const config::StreamConfig& c) {
  std::vector<std::string> names = c.secret_query_params;
  for (const auto& [name, value] : c.query) names.push_back(name);
  for (const auto& [name, path] : c.query_from_files) names.push_back(name);
  return http::SecretQueryParameters(std::move(names));
}

// The request URL as it is shown: `query` and `query_from_files` appear with their names (their
// values are redacted anyway, so the files are not read for it).
std::string ShownUrl(const config::StreamConfig& c, const http::SecretQueryParameters& secrets) {
  std::string url = c.url;
  for (const auto& [name, value] : c.query) url = http::WithQueryParameter(url, name, "***");
  for (const auto& [name, path] : c.query_from_files) url = http::WithQueryParameter(url, name, "***");
  return http::RedactedUrl(url, secrets);
}

// Where the stream starts: its checkpoint when it resumes from one, else start_from, else the
// live edge. `note` gets what is worth a log line.
std::string StartingId(const config::StreamConfig& c, const std::optional<std::string>& checkpoint,
                       std::string* note) {
  if (c.resume && checkpoint) {
    if (c.start_from_last_event_id && *c.start_from_last_event_id != *checkpoint) {
      *note = "start_from.last_event_id ignored: the stream resumes from its checkpoint";
    }
    return *checkpoint;
  }
  if (c.start_from_last_event_id) {
    *note = "no checkpoint to resume from: starting from start_from.last_event_id";
    return *c.start_from_last_event_id;
  }
  return {};
}

std::string Printable(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
    } else if (c < 0x20 || c == 0x7f) {
      out += '?';
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

const char* ReconnectReasonName(ReconnectReason reason) {
  switch (reason) {
    case ReconnectReason::kNetwork: return "network";
    case ReconnectReason::kStatus: return "status";
    case ReconnectReason::kIdle: return "idle";
    case ReconnectReason::kEnd: return "end";
    case ReconnectReason::kRewind: return "rewind";
    case ReconnectReason::kCount: break;
  }
  return "unknown";
}

const char* StreamStateName(StreamState state) {
  switch (state) {
    case StreamState::kWaiting: return "waiting";
    case StreamState::kAwaitingAcks: return "awaiting_acks";
    case StreamState::kConnecting: return "connecting";
    case StreamState::kOpen: return "open";
    case StreamState::kFailing: return "failing";
    case StreamState::kStopped: return "stopped";
    case StreamState::kClosed: return "closed";
  }
  return "unknown";
}

StreamPipeline::StreamPipeline(config::StreamConfig config, uint32_t slot,
                               std::optional<std::string> checkpoint, PipelineHost& host)
    : config_(std::move(config)),
      slot_(slot),
      host_(host),
      secrets_(SecretsOf(config_)),
      redacted_url_(ShownUrl(config_, secrets_)),
      parser_(ParserLimits(config_)),
      // `resume: false` does not use the stored checkpoint at all, so a later reconnect does
      // not jump back to it either.
      tracker_(StartingId(config_, checkpoint, &start_note_)),
      backoff_(config_.reconnect, SeededUniform(slot)),
      builder_(config_, http::UrlWithoutCredentials(config_.url)) {
  parser_.SetLastEventId(tracker_.checkpoint());
}

StreamPipeline::~StreamPipeline() {
  CloseTransfer();
  host_.loop().Cancel(reconnect_timer_);
  host_.loop().Cancel(rewind_timer_);
  host_.loop().Cancel(probe_timer_);
}

void StreamPipeline::Start() {
  if (!start_note_.empty()) {
    ops::Log(info, config_.name, start_note_,
             {{"start_from", *config_.start_from_last_event_id}, {"last_event_id", tracker_.checkpoint()}});
  }
  Connect();
}

void StreamPipeline::Close() {
  if (state_ == StreamState::kClosed) return;
  CloseTransfer();
  host_.loop().Cancel(reconnect_timer_);
  reconnect_timer_ = 0;
  state_ = StreamState::kClosed;
  // Records not yet handed to Kafka are after the checkpoint: the upstream replays them.
  backlog_.clear();
}

void StreamPipeline::CloseTransfer() {
  if (transfer_ != 0) {
    host_.http().Cancel(transfer_);
    transfer_ = 0;
  }
  host_.loop().Cancel(idle_timer_);
  idle_timer_ = 0;
  reading_paused_ = false;
}

bool StreamPipeline::BuildRequest(http::HttpRequest* request, std::string* error) {
  const std::string& last_id = tracker_.checkpoint();
  request->url = config_.url;
  for (const auto& [name, value] : config_.query) {
    request->url = http::WithQueryParameter(request->url, name, value);
  }
  // Rotated secrets: read at every connect, so a new token needs no restart.
  for (const auto& [name, path] : config_.query_from_files) {
    std::optional<std::string> value = ReadSecretFile(path, "query parameter " + name, error);
    if (!value) return false;
    request->url = http::WithQueryParameter(request->url, name, *value);
  }
  if (!config_.last_event_id_param.empty() && !last_id.empty()) {
    request->url = http::WithQueryParameter(request->url, config_.last_event_id_param, last_id);
  }
  request->secrets = secrets_;
  request->method = config_.method;
  request->body = config_.body;
  request->protocol_headers = {"Accept: text/event-stream", "Cache-Control: no-cache"};
  if (!last_id.empty()) request->protocol_headers.push_back("Last-Event-ID: " + last_id);
  for (const auto& [name, value] : config_.headers) {
    request->user_headers.push_back(name + ": " + value);
  }
  for (const auto& [name, path] : config_.headers_from_files) {
    std::optional<std::string> value = ReadSecretFile(path, "header " + name, error);
    if (!value) return false;
    request->user_headers.push_back(name + ": " + *value);
  }
  request->keep_user_headers_across_origins = config_.redirect_headers_keep;
  request->connect_timeout = config_.connect_timeout;
  request->tls.ca_file = config_.tls.ca_file;
  request->tls.cert_file = config_.tls.cert_file;
  request->tls.key_file = config_.tls.key_file;
  request->tls.insecure_skip_verify = config_.tls.insecure_skip_verify;
  request->proxy = config_.proxy;
  switch (config_.http_version) {
    case config::HttpVersion::kAuto: request->version = http::HttpVersionPreference::kAuto; break;
    case config::HttpVersion::kHttp1_1: request->version = http::HttpVersionPreference::kHttp1_1; break;
    case config::HttpVersion::kHttp2: request->version = http::HttpVersionPreference::kHttp2; break;
  }
  if (!HasHeader(config_.headers, "User-Agent")) {
    request->user_agent = "sse2kafka/" SSE2KAFKA_VERSION;
  }
  return true;
}

void StreamPipeline::Connect() {
  reconnect_timer_ = 0;
  if (state_ == StreamState::kClosed || state_ == StreamState::kStopped) return;
  if (!settled()) {
    // The reconnect names the checkpoint as Last-Event-ID; waiting for the events still in
    // flight lets it name the newest one instead of replaying them.
    state_ = StreamState::kAwaitingAcks;
    return;
  }
  if (!first_connect_) ++stats_.reconnects;
  first_connect_ = false;
  parser_.EndOfStream();
  parser_.SetLastEventId(tracker_.checkpoint());
  stop_marker_seen_ = false;

  http::HttpRequest request;
  std::string error;
  if (!BuildRequest(&request, &error)) {
    EndConnection(ReconnectReason::kNetwork, error);
    return;
  }
  transfer_ = host_.http().Start(request, this, &error);
  if (transfer_ == 0) {
    EndConnection(ReconnectReason::kNetwork, error);
    return;
  }
  state_ = StreamState::kConnecting;
  LogLimited(debug, "connecting",
             {{"url", redacted_url_}, {"attempt", backoff_.consecutive_failures() + 1},
              {"last_event_id", tracker_.checkpoint()}});
  ArmIdleTimer();
}

void StreamPipeline::ArmIdleTimer() {
  host_.loop().Cancel(idle_timer_);
  idle_timer_ = 0;
  last_byte_at_ = host_.loop().now();
  if (config_.idle_timeout.count() <= 0) return;
  idle_timer_ = host_.loop().ScheduleAfter(config_.idle_timeout, [this] { OnIdleTimer(); });
}

void StreamPipeline::OnIdleTimer() {
  idle_timer_ = 0;
  const auto now = http::Clock::now();
  const auto deadline = last_byte_at_ + config_.idle_timeout;
  // Withheld reading (backpressure) is our silence, not the server's.
  if (reading_paused_ || now < deadline) {
    const auto wait = reading_paused_ ? config_.idle_timeout : duration_cast<milliseconds>(deadline - now);
    idle_timer_ = host_.loop().ScheduleAfter(wait, [this] { OnIdleTimer(); });
    return;
  }
  CloseTransfer();
  EndConnection(ReconnectReason::kIdle,
                "no bytes for " + std::to_string(config_.idle_timeout.count()) + " ms (idle_timeout)");
}

void StreamPipeline::OnResponseHead(http::TransferId, const http::ResponseHead& head) {
  last_byte_at_ = host_.loop().now();
  if (head.status == 200 && http::MimeEssence(head.content_type) == "text/event-stream") {
    state_ = StreamState::kOpen;
    backoff_.OnOpened(host_.loop().now());
    ++stats_.connects;
    LogLimited(info, "connected",
               {{"url", redacted_url_}, {"status", head.status}, {"redirects", head.redirects},
                {"last_event_id", tracker_.checkpoint()}});
    return;
  }
  if (head.status == 204) {
    ops::Log(warn, config_.name,
             "server answered 204 No Content: the stream stays stopped until a reload or restart",
             {{"url", redacted_url_}, {"status", head.status}});
    CloseTransfer();
    state_ = StreamState::kStopped;
    return;
  }
  state_ = StreamState::kFailing;
  failed_head_ = head;
  failed_body_.clear();
  host_.loop().Cancel(idle_timer_);
  idle_timer_ = host_.loop().ScheduleAfter(kFailedBodyWait, [this] {
    idle_timer_ = 0;
    CloseTransfer();
    FinishFailedResponse(http::TransferResult{});
  });
}

http::BodyAction StreamPipeline::OnBody(http::TransferId, std::string_view bytes) {
  if (state_ == StreamState::kFailing) {
    failed_body_.append(bytes.substr(0, kFailedBodyLogBytes - failed_body_.size()));
    return failed_body_.size() >= kFailedBodyLogBytes ? http::BodyAction::kAbort
                                                      : http::BodyAction::kContinue;
  }
  if (host_.backpressured() || !backlog_.empty()) {
    reading_paused_ = true;
    return http::BodyAction::kPause;
  }
  last_byte_at_ = host_.loop().now();
  stats_.bytes += bytes.size();
  parser_.Feed(bytes, *this);
  if (stop_marker_seen_) {
    // The marker ends this response as if the server had closed it normally.
    CloseTransfer();
    EndConnection(ReconnectReason::kEnd, "stop marker received");
  }
  return http::BodyAction::kContinue;
}

void StreamPipeline::OnTransferDone(http::TransferId, const http::TransferResult& result) {
  transfer_ = 0;
  host_.loop().Cancel(idle_timer_);
  idle_timer_ = 0;
  reading_paused_ = false;
  if (state_ == StreamState::kFailing) {
    FinishFailedResponse(result);
    return;
  }
  if (state_ == StreamState::kOpen && result.ok()) {
    EndConnection(ReconnectReason::kEnd, "server ended the stream");
    return;
  }
  EndConnection(ReconnectReason::kNetwork, result.error.empty() ? "connection failed" : result.error);
}

void StreamPipeline::FinishFailedResponse(const http::TransferResult&) {
  const long status = failed_head_.status;
  const auto now = host_.loop().now();
  std::string reason;
  milliseconds delay{0};
  if (status == 401 || status == 403) {
    reason = "authentication failed (HTTP " + std::to_string(status) + ")";
    delay = backoff_.OnAuthFailure(now);
  } else if ((status == 429 || status == 503) && !failed_head_.retry_after.empty()) {
    const auto retry_after = http::ParseRetryAfter(failed_head_.retry_after, std::chrono::system_clock::now());
    reason = "HTTP " + std::to_string(status) + " with Retry-After: " + failed_head_.retry_after;
    delay = retry_after ? backoff_.OnRetryAfter(now, *retry_after) : backoff_.OnFailure(now);
  } else if (status == 200) {
    reason = "wrong Content-Type \"" + Printable(failed_head_.content_type) + "\" (want text/event-stream)";
    delay = backoff_.OnFailure(now);
  } else if (status >= 300 && status < 400) {
    reason = "HTTP " + std::to_string(status) + " redirect without a usable Location";
    delay = backoff_.OnFailure(now);
  } else {
    reason = "HTTP " + std::to_string(status);
    delay = backoff_.OnFailure(now);
  }
  LogLimited(status == 401 || status == 403 ? err : warn, "request failed",
           {{"url", redacted_url_}, {"status", status}, {"error", reason},
            {"body", Printable(failed_body_)}, {"attempt", backoff_.consecutive_failures()}});
  ScheduleReconnect(delay, ReconnectReason::kStatus, reason);
}

void StreamPipeline::EndConnection(ReconnectReason why, const std::string& reason) {
  const bool failed = why != ReconnectReason::kEnd;
  transfer_ = 0;
  parser_.EndOfStream();
  if (state_ == StreamState::kClosed || state_ == StreamState::kStopped) return;
  const auto now = host_.loop().now();
  if (!failed && config_.on_end == config::OnEnd::kStop) {
    ops::Log(info, config_.name, "stream ended; on_end: stop keeps it stopped",
             {{"url", redacted_url_}, {"reason", reason}});
    state_ = StreamState::kStopped;
    return;
  }
  const milliseconds delay = failed ? backoff_.OnFailure(now) : backoff_.OnNormalEnd(now);
  LogLimited(failed ? warn : info, failed ? "disconnected" : "stream ended",
           {{"url", redacted_url_}, {"error", reason}, {"attempt", backoff_.consecutive_failures()}});
  ScheduleReconnect(delay, why, reason);
}

void StreamPipeline::ScheduleReconnect(milliseconds delay, ReconnectReason why, const std::string& reason) {
  state_ = StreamState::kWaiting;
  ++stats_.reconnects_by_reason[static_cast<int>(why)];
  next_attempt_at_ = host_.loop().now() + delay;
  host_.loop().Cancel(reconnect_timer_);
  LogLimited(info, "reconnecting",
             {{"delay_ms", static_cast<int64_t>(delay.count())},
              {"attempt", backoff_.consecutive_failures() + 1}, {"reason", reason}});
  reconnect_timer_ = host_.loop().ScheduleAfter(delay, [this] { Connect(); });
}

void StreamPipeline::OnEvent(const sse::Event& event) {
  ++stats_.events;
  stats_.last_event_unix_ms = UnixMillisNow();
  // After a refused record the rest of the response is replayed from the checkpoint.
  if (halted_) return;
  if (config_.stop_on_data && event.data == *config_.stop_on_data) {
    stop_marker_seen_ = true;
    ++stats_.filtered;
    Register(event.last_event_id, 0, false);
    return;
  }
  if (stop_marker_seen_) return;  // the rest of the response after the marker is ignored
  if (config_.events) {
    bool allowed = false;
    for (const std::string& type : *config_.events) allowed |= (type == event.type);
    if (!allowed) {
      ++stats_.filtered;
      Register(event.last_event_id, 0, false);
      return;
    }
  }
  sink::EventView view;
  view.type = event.type;
  view.data = event.data;
  view.last_event_id = event.last_event_id;
  view.id_in_block = event.id_in_block;
  view.dispatch_time_ms = stats_.last_event_unix_ms;
  view.sequence = stats_.events;
  const sink::BuiltRecord& record = builder_.Build(view);
  if (record.key_fell_back) ++stats_.key_fallbacks;
  if (!record.routed) {
    ++stats_.filtered;
    Register(event.last_event_id, 0, false);
    return;
  }
  Produce(record, Register(event.last_event_id, record.value.size(), true));
}

void StreamPipeline::Produce(const sink::BuiltRecord& record, uint64_t sequence) {
  const uint64_t token = PipelineHost::Token(slot_, sequence);
  const int64_t timestamp_ms = stats_.last_event_unix_ms;
  if (!backlog_.empty() || (probing_ && produced_unreported_ > 0)) {
    // Order must hold behind what is already waiting; while a probe is unconfirmed, reading
    // pauses (OnBody) with the rest waiting here.
    Backlog(record, token, timestamp_ms);
    return;
  }
  sink::OutgoingRecord out;
  out.topic = record.topic;
  out.key = record.key;
  out.value = record.value;
  out.headers = record.headers;
  out.timestamp_ms = timestamp_ms;
  out.token = token;
  std::string error;
  switch (host_.Produce(out, &error)) {
    case sink::ProduceResult::kQueued:
      ++stats_.records_produced;
      ++produced_unreported_;
      return;
    case sink::ProduceResult::kQueueFull:
      Backlog(record, token, timestamp_ms);
      return;
    case sink::ProduceResult::kTooLarge:
      if (config_.oversize == config::OnOversize::kSkip) {
        SkipTooLarge(PipelineHost::SequenceOf(token), record.topic, error);
        return;
      }
      [[fallthrough]];
    case sink::ProduceResult::kRejected:
      ++stats_.delivery_errors;
      stats_.kafka_refusal = "topic " + std::string(record.topic) + ": " + error;
      LogLimited(err, "Kafka refused a record",
               {{"topic", record.topic}, {"checkpoint", tracker_.checkpoint()}, {"error", error}});
      // Never skip it: replay from the checkpoint instead (after the current chunk). Events
      // after it in this chunk are not produced: they would land before it.
      halted_ = true;
      if (rewind_timer_ == 0) {
        rewind_timer_ = host_.loop().ScheduleAfter(milliseconds(0), [this, error, token] {
          rewind_timer_ = 0;
          probing_ = true;
          Rewind("Kafka refused a record: " + error, PipelineHost::SequenceOf(token));
        });
      }
      return;
  }
}

void StreamPipeline::Backlog(const sink::BuiltRecord& record, uint64_t token, int64_t timestamp_ms) {
  OwnedRecord owned;
  owned.topic = record.topic;
  if (record.key) owned.key = std::string(*record.key);
  owned.value = record.value;
  for (const auto& h : record.headers) owned.headers.emplace_back(h.name, h.value);
  owned.timestamp_ms = timestamp_ms;
  owned.token = token;
  backlog_.push_back(std::move(owned));
}

bool StreamPipeline::RetryBacklog() {
  while (!backlog_.empty()) {
    if (probing_ && produced_unreported_ > 0) return true;  // the rest waits for the probe
    const OwnedRecord& r = backlog_.front();
    if (!tracker_.Pending(PipelineHost::SequenceOf(r.token))) {
      backlog_.pop_front();
      continue;
    }
    header_scratch_.clear();
    for (const auto& [name, value] : r.headers) header_scratch_.push_back({name, value});
    sink::OutgoingRecord out;
    out.topic = r.topic;
    if (r.key) out.key = std::string_view(*r.key);
    out.value = r.value;
    out.headers = header_scratch_;
    out.timestamp_ms = r.timestamp_ms;
    out.token = r.token;
    std::string error;
    const sink::ProduceResult result = host_.Produce(out, &error);
    if (result == sink::ProduceResult::kQueueFull) return false;
    const std::string topic = r.topic;
    backlog_.pop_front();
    if (result == sink::ProduceResult::kTooLarge && config_.oversize == config::OnOversize::kSkip) {
      SkipTooLarge(PipelineHost::SequenceOf(out.token), topic, error);
      continue;
    }
    if (result == sink::ProduceResult::kRejected || result == sink::ProduceResult::kTooLarge) {
      Rewind("Kafka refused a record: " + error, PipelineHost::SequenceOf(out.token));
      return true;
    }
    ++stats_.records_produced;
    ++produced_unreported_;
  }
  if (reading_paused_ && !host_.backpressured()) ResumeReading();
  return true;
}

void StreamPipeline::OnEmptyDispatch(std::string_view last_event_id) {
  if (halted_) return;
  if (last_event_id == tracker_.checkpoint() && tracker_.in_flight_events() == 0) return;
  Register(last_event_id, 0, false);
}

void StreamPipeline::OnRetry(uint64_t milliseconds_value) {
  // `retry: 0` would make the failure backoff 0·2^n forever (with a zero floor); 1 ms keeps it
  // exponential.
  const milliseconds retry(static_cast<int64_t>(std::clamp<uint64_t>(milliseconds_value, 1, uint64_t{24} * 3600 * 1000)));
  backoff_.SetServerRetry(retry);
  if (backoff_.BelowFloor(retry) && !retry_floor_logged_) {
    retry_floor_logged_ = true;
    ops::Log(info, config_.name, "the server's retry: is below reconnect.min_delay: waits follow the floor",
             {{"retry_ms", static_cast<int64_t>(milliseconds_value)},
              {"min_delay_ms", static_cast<int64_t>(backoff_.min_delay().count())}});
  }
}

void StreamPipeline::OnOversizedEvent(std::size_t bytes_seen) {
  ++stats_.oversized;
  LogLimited(warn, "event larger than max_event_size dropped",
           {{"max_event_size", static_cast<int64_t>(config_.max_event_size)},
            {"bytes_seen", static_cast<int64_t>(bytes_seen)}});
}

void StreamPipeline::OnOversizedId(std::size_t id_size) {
  LogLimited(warn, "event id longer than max_event_id_size ignored",
           {{"max_event_id_size", static_cast<int64_t>(config_.max_event_id_size)},
            {"id_size", static_cast<int64_t>(id_size)}});
}

void StreamPipeline::OnDelivery(uint64_t sequence, const sink::DeliveryReport& report) {
  if (produced_unreported_ > 0) --produced_unreported_;
  if (tracker_.Pending(sequence)) {
    if (report.ok) {
      stats_.kafka_refusal.clear();
      ++stats_.records_delivered;
      tracker_.Ack(sequence);
      if (probing_) EndProbe();
    } else if (host_.transactional()) {
      // The transaction is doomed: produce nothing more until the host has aborted it and
      // rewound this stream to the last committed checkpoint.
      ++stats_.delivery_errors;
      halted_ = true;
      LogLimited(err, "delivery failed: the transaction will be aborted",
                 {{"topic", report.topic}, {"error", std::string(report.error_name)},
                  {"detail", std::string(report.error_text)}});
      return;
    } else if (report.too_large && config_.oversize == config::OnOversize::kSkip) {
      SkipTooLarge(sequence, report.topic, std::string(report.error_name));
    } else {
      ++stats_.delivery_errors;
      stats_.kafka_refusal = "topic " + std::string(report.topic) + ": " + std::string(report.error_name) + ": " +
                             std::string(report.error_text);
      LogLimited(err, "delivery failed",
               {{"topic", report.topic}, {"error", std::string(report.error_name)},
                {"detail", std::string(report.error_text)}, {"checkpoint", tracker_.checkpoint()}});
      probing_ = true;
      Rewind("delivery failed: " + std::string(report.error_name), sequence);
      return;
    }
  }
  if (state_ == StreamState::kAwaitingAcks && settled()) Connect();
}

void StreamPipeline::EndProbe() {
  probing_ = false;
  if (backlog_.empty() || probe_timer_ != 0) return;
  // Not from inside the producer's report: releasing the backlog produces and resumes reading.
  probe_timer_ = host_.loop().ScheduleAfter(milliseconds(0), [this] {
    probe_timer_ = 0;
    RetryBacklog();
  });
}

void StreamPipeline::SkipTooLarge(uint64_t sequence, std::string_view topic, const std::string& error) {
  ++stats_.oversized;
  LogLimited(warn, "record too large for Kafka skipped (oversize: skip)",
             {{"topic", topic}, {"error", error}});
  tracker_.Ack(sequence);  // counts as handled, so the checkpoint can pass it
}

void StreamPipeline::Rewind(const std::string& reason, std::optional<uint64_t> from_sequence,
                            bool producer_lost) {
  if (producer_lost) produced_unreported_ = 0;
  const std::size_t in_flight_before = tracker_.in_flight_events();
  if (from_sequence) {
    tracker_.RewindFrom(*from_sequence);
  } else {
    tracker_.Rewind();
  }
  stats_.replayed += in_flight_before - tracker_.in_flight_events();
  backlog_.clear();
  // A closed stream replays nothing; what it did not deliver is replayed by its successor
  // from the checkpoint.
  if (state_ == StreamState::kClosed) return;
  ++stats_.rewinds;
  halted_ = false;
  host_.loop().Cancel(rewind_timer_);  // this rewind covers the one it was going to do
  rewind_timer_ = 0;
  CloseTransfer();
  parser_.EndOfStream();
  parser_.SetLastEventId(tracker_.checkpoint());
  LogLimited(warn, "rewinding to the checkpoint",
           {{"checkpoint", tracker_.checkpoint()}, {"reason", reason}});
  if (state_ == StreamState::kStopped) return;
  ScheduleReconnect(backoff_.OnFailure(host_.loop().now()), ReconnectReason::kRewind, reason);
}

void StreamPipeline::RewindTo(const std::string& checkpoint, const std::string& reason) {
  stats_.replayed += tracker_.in_flight_events();
  tracker_.ResetTo(checkpoint);
  Rewind(reason, std::nullopt, /*producer_lost=*/true);
}

void StreamPipeline::ResumeReading() {
  if (!reading_paused_ || transfer_ == 0) {
    reading_paused_ = false;
    return;
  }
  reading_paused_ = false;
  last_byte_at_ = host_.loop().now();
  host_.http().Resume(transfer_);
}

void StreamPipeline::LogLimited(spdlog::level::level_enum level, std::string_view message,
                                std::initializer_list<ops::LogField> fields) {
  if (!spdlog::should_log(level)) return;
  uint64_t suppressed = 0;
  if (!log_limiter_.Allow(message, host_.loop().now(), &suppressed)) return;
  if (suppressed == 0) {
    ops::Log(level, config_.name, message, fields);
    return;
  }
  std::vector<ops::LogField> with_count(fields);
  with_count.emplace_back("suppressed", static_cast<unsigned long long>(suppressed));
  with_count.emplace_back("suppressed_window_s",
                          static_cast<long long>(log_limiter_.window().count() / 1000));
  ops::Log(level, config_.name, message, std::span<const ops::LogField>(with_count));
}

}  // namespace sse2kafka::bridge
