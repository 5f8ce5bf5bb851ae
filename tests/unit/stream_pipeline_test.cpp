// StreamPipeline on a real EventLoop and HttpClient against a scripted loopback upstream, with a
// fake PipelineHost that records what would go to Kafka and lets the test deliver the reports:
// records and their headers and keys, the checkpoint under in-order, out-of-order and failed
// acknowledgements, rewinds, backpressure, Close, 204 and the server's `retry:`.
#include "bridge/stream_pipeline.h"

#include <chrono>
#include <functional>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "bridge/pipeline_host.h"
#include "config/config.h"
#include "http/event_loop.h"
#include "http/http_client.h"
#include "sink/kafka_producer.h"
#include "support/loopback_http_server.h"
#include "support/run_loop.h"

namespace sse2kafka::bridge {
namespace {

using std::chrono::milliseconds;
using test_support::LoopbackHttpServer;
using test_support::ReceivedRequest;
using test_support::RunLoopFor;
using test_support::RunLoopUntil;
using test_support::ServerConnection;
using ::testing::ElementsAre;
using ::testing::Optional;
using ::testing::Pair;

constexpr milliseconds kDeadline{10000};
constexpr uint32_t kSlot = 7;

// A record as the host received it, copied out of the pipeline's buffers.
struct ProducedRecord {
  std::string topic;
  std::optional<std::string> key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  uint64_t token = 0;

  uint64_t sequence() const { return PipelineHost::SequenceOf(token); }
};

class FakeHost final : public PipelineHost {
 public:
  FakeHost(http::EventLoop& loop, http::HttpClient& http) : loop_(loop), http_(http) {}

  http::EventLoop& loop() override { return loop_; }
  http::HttpClient& http() override { return http_; }
  sink::ProduceResult Produce(const sink::OutgoingRecord& record, std::string* error) override {
    ProducedRecord r;
    r.topic = std::string(record.topic);
    if (record.key) r.key = std::string(*record.key);
    r.value = std::string(record.value);
    for (const sink::RecordHeaderView& h : record.headers) r.headers.emplace_back(h.name, h.value);
    r.token = record.token;
    records.push_back(std::move(r));
    if (on_produce) on_produce();
    if (produce_result != sink::ProduceResult::kQueued) *error = "refused by the test";
    return produce_result;
  }
  bool backpressured() const override { return backpressured_now; }

  std::vector<ProducedRecord> records;
  bool backpressured_now = false;
  std::function<void()> on_produce;  // runs inside Produce, after the record is recorded
  sink::ProduceResult produce_result = sink::ProduceResult::kQueued;

 private:
  http::EventLoop& loop_;
  http::HttpClient& http_;
};

sink::DeliveryReport Report(const ProducedRecord& record, bool ok) {
  sink::DeliveryReport report;
  report.token = record.token;
  report.ok = ok;
  report.error_code = ok ? 0 : -192;
  report.error_name = ok ? "" : "_MSG_TIMED_OUT";
  report.error_text = ok ? "" : "Local: Message timed out";
  report.retriable = !ok;
  report.partition = ok ? 0 : -1;
  report.offset = ok ? 1 : -1;
  report.topic = record.topic;
  report.size = record.value.size();
  return report;
}

// The head of a healthy event stream.
bool OpenStream(ServerConnection& c) {
  return c.SendHead(200, {"Content-Type: text/event-stream; charset=utf-8", "Cache-Control: no-cache"});
}

class StreamPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("no_proxy", "*", 1);
    setenv("NO_PROXY", "*", 1);
    spdlog::set_level(spdlog::level::warn);
  }

  void SetUp() override {
    std::string error;
    loop_ = http::EventLoop::Create(&error);
    ASSERT_NE(loop_, nullptr) << error;
    client_ = http::HttpClient::Create(*loop_, &error);
    ASSERT_NE(client_, nullptr) << error;
    host_ = std::make_unique<FakeHost>(*loop_, *client_);
  }

  void TearDown() override {
    pipeline_.reset();
    client_.reset();
    server_.reset();
  }

  void Serve(LoopbackHttpServer::Handler handler) {
    std::string error;
    server_ = LoopbackHttpServer::Start(std::move(handler), &error);
    ASSERT_NE(server_, nullptr) << error;
  }

  config::StreamConfig Config(const std::string& path = "/stream") const {
    config::StreamConfig c;
    c.name = "s1";
    c.url = server_->Url(path);
    c.topic = "events";
    c.reconnect.min_delay = milliseconds(20);  // the 500ms default floor would slow every test
    c.reconnect.initial_delay = milliseconds(20);
    c.reconnect.max_delay = milliseconds(100);
    return c;
  }

  StreamPipeline& Start(config::StreamConfig config, std::optional<std::string> checkpoint = std::nullopt) {
    pipeline_ = std::make_unique<StreamPipeline>(std::move(config), kSlot, std::move(checkpoint), *host_);
    pipeline_->Start();
    return *pipeline_;
  }

  bool RunUntil(const std::function<bool()>& done) { return RunLoopUntil(*loop_, done, kDeadline); }
  std::size_t records() const { return host_->records.size(); }
  const ProducedRecord& record(std::size_t i) const { return host_->records.at(i); }

  std::unique_ptr<LoopbackHttpServer> server_;
  std::unique_ptr<http::EventLoop> loop_;
  std::unique_ptr<http::HttpClient> client_;
  std::unique_ptr<FakeHost> host_;
  std::unique_ptr<StreamPipeline> pipeline_;
};

TEST_F(StreamPipelineTest, EventsBecomeRecordsWithHeadersAndKey) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!OpenStream(c)) return;
    c.Send("id: 1\nevent: greet\ndata: hello\n\n: a comment\ndata: line1\ndata: line2\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  config::StreamConfig config = Config();
  config.key = config::KeyMode::kId;
  config.headers = {{"X-Token", "abc"}};
  config.record_headers = {{"origin", "test"}};
  StreamPipeline& p = Start(config);
  ASSERT_TRUE(RunUntil([&] { return records() >= 2; }));

  EXPECT_EQ(p.state(), StreamState::kOpen);
  EXPECT_EQ(record(0).topic, "events");
  EXPECT_THAT(record(0).key, Optional(std::string("1")));
  EXPECT_EQ(record(0).value, "hello");
  EXPECT_THAT(record(0).headers, ElementsAre(Pair("sse.stream", "s1"), Pair("sse.event", "greet"),
                                             Pair("sse.id", "1"), Pair("origin", "test")));
  EXPECT_EQ(PipelineHost::SlotOf(record(0).token), kSlot);

  EXPECT_THAT(record(1).key, Optional(std::string("1")));  // the last event ID carries over
  EXPECT_EQ(record(1).value, "line1\nline2");
  EXPECT_THAT(record(1).headers, ElementsAre(Pair("sse.stream", "s1"), Pair("sse.event", "message"),
                                             Pair("sse.id", "1"), Pair("origin", "test")));
  EXPECT_GT(record(1).sequence(), record(0).sequence());
  EXPECT_EQ(p.stats().events, 2u);
  EXPECT_EQ(p.stats().records_produced, 2u);
  EXPECT_EQ(p.in_flight_events(), 2u);
  EXPECT_FALSE(p.settled());

  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "GET");
  EXPECT_EQ(got[0].target, "/stream");
  EXPECT_THAT(got[0].Header("Accept"), Optional(std::string("text/event-stream")));
  EXPECT_THAT(got[0].Header("Cache-Control"), Optional(std::string("no-cache")));
  EXPECT_THAT(got[0].Header("X-Token"), Optional(std::string("abc")));
  EXPECT_THAT(got[0].Header("User-Agent").value_or(""), ::testing::StartsWith("sse2kafka/"));
  EXPECT_EQ(got[0].Header("Last-Event-ID"), std::nullopt);
}

TEST_F(StreamPipelineTest, StoredCheckpointIsSentAsLastEventIdWhenResuming) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (OpenStream(c)) c.WaitForPeerClose(kDeadline);
  });
  config::StreamConfig config = Config("/stream?x=1");
  config.last_event_id_param = "lastId";
  StreamPipeline& p = Start(config, "41");
  EXPECT_EQ(p.checkpoint(), "41");
  ASSERT_TRUE(RunUntil([&] { return p.state() == StreamState::kOpen; }));
  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].Header("Last-Event-ID"), Optional(std::string("41")));
  EXPECT_EQ(got[0].target, "/stream?x=1&lastId=41");
}

TEST_F(StreamPipelineTest, ResumeFalseIgnoresTheStoredCheckpoint) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (OpenStream(c)) c.WaitForPeerClose(kDeadline);
  });
  config::StreamConfig config = Config();
  config.resume = false;
  StreamPipeline& p = Start(config, "41");
  EXPECT_EQ(p.checkpoint(), "");
  ASSERT_TRUE(RunUntil([&] { return p.state() == StreamState::kOpen; }));
  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Header("Last-Event-ID"), std::nullopt);
}

TEST_F(StreamPipelineTest, AcknowledgedDeliveriesAdvanceTheCheckpoint) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!OpenStream(c)) return;
    c.Send("id: a\ndata: 1\n\nid: b\ndata: 2\n\nid: c\ndata: 3\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  StreamPipeline& p = Start(Config());
  ASSERT_TRUE(RunUntil([&] { return records() >= 3; }));
  EXPECT_EQ(p.checkpoint(), "");
  EXPECT_EQ(p.in_flight_events(), 3u);

  p.OnDelivery(record(0).sequence(), Report(record(0), true));
  EXPECT_EQ(p.checkpoint(), "a");
  p.OnDelivery(record(1).sequence(), Report(record(1), true));
  EXPECT_EQ(p.checkpoint(), "b");
  p.OnDelivery(record(2).sequence(), Report(record(2), true));
  EXPECT_EQ(p.checkpoint(), "c");
  EXPECT_EQ(p.in_flight_events(), 0u);
  EXPECT_TRUE(p.settled());
  EXPECT_EQ(p.stats().records_delivered, 3u);
  EXPECT_EQ(p.state(), StreamState::kOpen);
}

TEST_F(StreamPipelineTest, OutOfOrderAcksAdvanceOnlyOverTheContiguousPrefix) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!OpenStream(c)) return;
    c.Send("id: a\ndata: 1\n\nid: b\ndata: 2\n\nid: c\ndata: 3\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  StreamPipeline& p = Start(Config(), "start");
  ASSERT_TRUE(RunUntil([&] { return records() >= 3; }));

  p.OnDelivery(record(2).sequence(), Report(record(2), true));
  EXPECT_EQ(p.checkpoint(), "start") << "c was acknowledged before a and b";
  p.OnDelivery(record(0).sequence(), Report(record(0), true));
  EXPECT_EQ(p.checkpoint(), "a");
  p.OnDelivery(record(1).sequence(), Report(record(1), true));
  EXPECT_EQ(p.checkpoint(), "c");
  EXPECT_EQ(p.in_flight_events(), 0u);
}

TEST_F(StreamPipelineTest, FailedDeliveryRewindsAndReconnectsFromTheCheckpoint) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (!OpenStream(c)) return;
    if (req.index == 0) {
      c.Send("id: 1\ndata: one\n\nid: 2\ndata: two\n\nid: 3\ndata: three\n\n");
    } else {
      c.Send("id: 2\ndata: two again\n\n");
    }
    c.WaitForPeerClose(kDeadline);
  });
  StreamPipeline& p = Start(Config());
  ASSERT_TRUE(RunUntil([&] { return records() >= 3; }));
  const ProducedRecord one = record(0);
  const ProducedRecord two = record(1);
  const ProducedRecord three = record(2);

  p.OnDelivery(one.sequence(), Report(one, true));
  ASSERT_EQ(p.checkpoint(), "1");
  p.OnDelivery(two.sequence(), Report(two, false));
  EXPECT_EQ(p.checkpoint(), "1");
  EXPECT_EQ(p.stats().rewinds, 1u);
  EXPECT_EQ(p.stats().delivery_errors, 1u);
  EXPECT_EQ(p.stats().replayed, 2u) << "two and three were unconfirmed when the stream rewound";
  ASSERT_TRUE(RunUntil([&] { return server_->peer_closes() >= 1; })) << "the connection stayed open";

  // "three" is still in flight: the reconnect waits for its report so that Last-Event-ID
  // names the newest acknowledged event.
  ASSERT_TRUE(RunUntil([&] { return p.state() == StreamState::kAwaitingAcks; }))
      << "state " << StreamStateName(p.state());
  EXPECT_EQ(server_->request_count(), 1u);

  // Its acknowledgement belongs to the rewound past: it settles, but cannot move the checkpoint
  // past the failed "two".
  p.OnDelivery(three.sequence(), Report(three, true));
  EXPECT_EQ(p.checkpoint(), "1");
  ASSERT_TRUE(RunUntil([&] { return server_->request_count() >= 2; }));
  const std::vector<ReceivedRequest> got = server_->requests();
  EXPECT_THAT(got[1].Header("Last-Event-ID"), Optional(std::string("1")));

  // The replay goes on as a fresh stream.
  ASSERT_TRUE(RunUntil([&] { return records() >= 4; }));
  EXPECT_EQ(record(3).value, "two again");
  EXPECT_GT(record(3).sequence(), three.sequence());
  p.OnDelivery(record(3).sequence(), Report(record(3), true));
  EXPECT_EQ(p.checkpoint(), "2");
  EXPECT_EQ(p.stats().reconnects_by_reason[static_cast<int>(ReconnectReason::kRewind)], 1u);
}

// After Kafka refused a record, the replay sends one record and waits for its confirmation
// before the rest: a refusal that persists costs one record per attempt, not a copy of
// everything behind it.
TEST_F(StreamPipelineTest, AfterARefusalTheReplayWaitsForItsFirstRecordBeforeTheRest) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (!OpenStream(c)) return;
    if (req.index == 0) {
      c.Send("id: 1\ndata: one\n\n");
    } else {
      c.Send("id: 1\ndata: one\n\nid: 2\ndata: two\n\nid: 3\ndata: three\n\n");
    }
    c.WaitForPeerClose(kDeadline);
  });
  StreamPipeline& p = Start(Config());
  ASSERT_TRUE(RunUntil([&] { return records() >= 1; }));
  p.OnDelivery(record(0).sequence(), Report(record(0), false));
  ASSERT_TRUE(RunUntil([&] { return server_->request_count() >= 2 && records() >= 2; }));
  // The replay's first record is out; two and three wait behind it, reading paused.
  RunLoopFor(*loop_, milliseconds(50));
  ASSERT_EQ(records(), 2u);
  EXPECT_EQ(record(1).value, "one");
  EXPECT_TRUE(p.waiting_for_kafka());
  p.OnDelivery(record(1).sequence(), Report(record(1), true));
  ASSERT_TRUE(RunUntil([&] { return records() >= 4; }));
  EXPECT_EQ(record(2).value, "two");
  EXPECT_EQ(record(3).value, "three");
  p.OnDelivery(record(2).sequence(), Report(record(2), true));
  p.OnDelivery(record(3).sequence(), Report(record(3), true));
  EXPECT_EQ(p.checkpoint(), "3");
}

TEST_F(StreamPipelineTest, BackpressurePausesReadingAndResumeReadingDeliversEverythingOnce) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!OpenStream(c)) return;
    c.Send("id: 1\ndata: a\n\nid: 2\ndata: b\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  host_->backpressured_now = true;
  StreamPipeline& p = Start(Config());
  // waiting_for_kafka() turns true only when OnBody answered kPause.
  ASSERT_TRUE(RunUntil([&] { return p.waiting_for_kafka(); }));
  RunLoopFor(*loop_, milliseconds(100));
  EXPECT_EQ(records(), 0u);
  EXPECT_EQ(p.stats().bytes, 0u) << "paused bytes must not be consumed";
  EXPECT_EQ(p.state(), StreamState::kOpen);

  host_->backpressured_now = false;
  // As the bridge does: from a timer, never from inside the transfer's callbacks.
  loop_->ScheduleAfter(milliseconds(0), [&] { p.ResumeReading(); });
  ASSERT_TRUE(RunUntil([&] { return records() >= 2; }));
  RunLoopFor(*loop_, milliseconds(50));
  ASSERT_EQ(records(), 2u) << "withheld bytes were delivered twice";
  EXPECT_EQ(record(0).value, "a");
  EXPECT_EQ(record(1).value, "b");
  EXPECT_FALSE(p.waiting_for_kafka());
  EXPECT_EQ(server_->request_count(), 1u);
}

TEST_F(StreamPipelineTest, CloseStopsReadingAndConnectingButDeliveriesStillSettle) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!OpenStream(c)) return;
    c.Send("id: 1\ndata: a\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  StreamPipeline& p = Start(Config());
  ASSERT_TRUE(RunUntil([&] { return records() >= 1; }));
  p.Close();
  p.Close();  // idempotent
  EXPECT_EQ(p.state(), StreamState::kClosed);
  ASSERT_TRUE(RunUntil([&] { return server_->peer_closes() >= 1; })) << "the connection stayed open";
  RunLoopFor(*loop_, milliseconds(200));  // ten times the reconnect delay
  EXPECT_EQ(server_->request_count(), 1u);
  EXPECT_EQ(p.state(), StreamState::kClosed);

  p.OnDelivery(record(0).sequence(), Report(record(0), true));
  EXPECT_EQ(p.checkpoint(), "1");
  EXPECT_TRUE(p.settled());
  RunLoopFor(*loop_, milliseconds(50));
  EXPECT_EQ(server_->request_count(), 1u);
}

TEST_F(StreamPipelineTest, NoContentStopsTheStream) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { c.SendHead(204, {}); });
  StreamPipeline& p = Start(Config());
  ASSERT_TRUE(RunUntil([&] { return p.state() == StreamState::kStopped; }))
      << "state " << StreamStateName(p.state());
  RunLoopFor(*loop_, milliseconds(200));
  EXPECT_EQ(server_->request_count(), 1u);
  EXPECT_EQ(p.state(), StreamState::kStopped);
}

TEST_F(StreamPipelineTest, ServerRetryFieldSetsTheReconnectDelay) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (!OpenStream(c)) return;
    if (req.index == 0) {
      // No event: nothing is in flight, so the reconnect need not wait for a delivery report.
      c.Send("retry: 200\n\n");
      return;  // a normal end: the next connect waits exactly the base delay
    }
    c.WaitForPeerClose(kDeadline);
  });
  config::StreamConfig config = Config();
  config.reconnect.initial_delay = milliseconds(60000);  // never reached within the test
  config.reconnect.max_delay = milliseconds(60000);
  config.reconnect.reset_after = milliseconds(0);  // every connection lived long enough: exact base
  StreamPipeline& p = Start(config);
  ASSERT_TRUE(RunUntil([&] { return p.state() == StreamState::kWaiting; }))
      << "state " << StreamStateName(p.state());
  EXPECT_LE(p.next_attempt_at() - loop_->now(), milliseconds(200));
  ASSERT_TRUE(RunUntil([&] { return server_->request_count() >= 2; }))
      << "state " << StreamStateName(p.state());
  const std::vector<ReceivedRequest> got = server_->requests();
  EXPECT_GE(got[1].received_at - got[0].received_at, milliseconds(200));
  EXPECT_EQ(p.stats().reconnects_by_reason[static_cast<int>(ReconnectReason::kEnd)], 1u);
}

TEST_F(StreamPipelineTest, NormalEndOfALongConnectionWithoutRetryWaitsTheInitialDelay) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (OpenStream(c)) c.Send("data: x\n\n");
  });
  config::StreamConfig config = Config();
  config.reconnect.initial_delay = milliseconds(60000);
  config.reconnect.max_delay = milliseconds(60000);
  config.reconnect.reset_after = milliseconds(0);
  StreamPipeline& p = Start(config);
  ASSERT_TRUE(RunUntil([&] { return p.state() == StreamState::kWaiting; }))
      << "state " << StreamStateName(p.state());
  EXPECT_GT(p.next_attempt_at() - loop_->now(), milliseconds(59000));
  EXPECT_EQ(p.attempt(), 0);
  EXPECT_EQ(server_->request_count(), 1u);
}

// A server that answers and hangs up at once must not be reopened at the base delay forever.
TEST_F(StreamPipelineTest, NormalEndOfAShortConnectionCountsAsAFailedAttempt) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (OpenStream(c)) c.Send("data: x\n\n");
  });
  config::StreamConfig config = Config();
  config.reconnect.initial_delay = milliseconds(60000);
  config.reconnect.max_delay = milliseconds(60000);
  StreamPipeline& p = Start(config);  // reset_after: the 60s default
  ASSERT_TRUE(RunUntil([&] { return p.state() == StreamState::kWaiting; }))
      << "state " << StreamStateName(p.state());
  const auto wait = p.next_attempt_at() - loop_->now();
  EXPECT_GT(wait, milliseconds(29000));  // jittered in [d/2, d], d = 60s
  EXPECT_LE(wait, milliseconds(60000));
  EXPECT_EQ(p.attempt(), 1);
}

TEST_F(StreamPipelineTest, ErrorStatusIsAFailureAndTheStreamReconnects) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (req.index == 0) {
      c.SendHead(500, {"Content-Type: text/plain", "Content-Length: 4"});
      c.Send("oops");
      return;
    }
    if (!OpenStream(c)) return;
    c.Send("id: 9\ndata: back\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  StreamPipeline& p = Start(Config());
  ASSERT_TRUE(RunUntil([&] { return records() >= 1; }));
  EXPECT_EQ(server_->request_count(), 2u);
  EXPECT_EQ(p.state(), StreamState::kOpen);
  EXPECT_EQ(p.attempt(), 1) << "the failure counts until the connection has lasted reset_after";
  EXPECT_EQ(p.stats().reconnects_by_reason[static_cast<int>(ReconnectReason::kStatus)], 1u);
  EXPECT_EQ(p.stats().connects, 1u);
  EXPECT_EQ(record(0).value, "back");
}

TEST_F(StreamPipelineTest, SilenceLongerThanIdleTimeoutReconnects) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (OpenStream(c)) c.WaitForPeerClose(kDeadline);  // a head, then nothing
  });
  config::StreamConfig config = Config();
  config.idle_timeout = milliseconds(100);
  StreamPipeline& p = Start(config);
  ASSERT_TRUE(RunUntil([&] { return server_->request_count() >= 2; }))
      << "state " << StreamStateName(p.state());
  EXPECT_GE(server_->peer_closes(), 1u);
  EXPECT_EQ(p.stats().reconnects_by_reason[static_cast<int>(ReconnectReason::kIdle)], 1u);
  const std::vector<ReceivedRequest> got = server_->requests();
  EXPECT_GE(got[1].received_at - got[0].received_at, milliseconds(100));
}

TEST_F(StreamPipelineTest, ReadingWithheldByBackpressureIsNotAnIdleTimeout) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!OpenStream(c)) return;
    c.Send("id: 1\ndata: a\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  config::StreamConfig config = Config();
  config.idle_timeout = milliseconds(100);
  host_->backpressured_now = true;
  StreamPipeline& p = Start(config);
  ASSERT_TRUE(RunUntil([&] { return p.waiting_for_kafka(); }));
  RunLoopFor(*loop_, milliseconds(400));  // four idle timeouts
  EXPECT_EQ(server_->request_count(), 1u);
  EXPECT_EQ(server_->peer_closes(), 0u);
  EXPECT_EQ(p.state(), StreamState::kOpen);
  host_->backpressured_now = false;
  p.ResumeReading();
  ASSERT_TRUE(RunUntil([&] { return records() >= 1; }));
  EXPECT_EQ(record(0).value, "a");
}

// A record Kafka refuses outright (too large, unknown topic) is never skipped: the stream
// replays from its checkpoint. Nothing after it in the response is produced (it would land
// before the refused record), and one refused chunk is one failure.
TEST_F(StreamPipelineTest, RefusedRecordsInOneChunkRewindOnce) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (!OpenStream(c)) return;
    if (req.index == 0) c.Send("id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  host_->produce_result = sink::ProduceResult::kRejected;
  config::StreamConfig config = Config();
  config.reconnect.initial_delay = milliseconds(60000);  // keep it waiting once it rewound
  config.reconnect.max_delay = milliseconds(60000);
  StreamPipeline& p = Start(config, "0");
  ASSERT_TRUE(RunUntil([&] { return records() >= 1 && p.state() == StreamState::kWaiting; }))
      << "state " << StreamStateName(p.state());
  ASSERT_TRUE(RunUntil([&] { return server_->peer_closes() >= 1; })) << "the connection stayed open";
  RunLoopFor(*loop_, milliseconds(50));
  EXPECT_EQ(p.checkpoint(), "0");
  EXPECT_EQ(records(), 1u) << "records after the refused one were handed to Kafka";
  EXPECT_EQ(p.stats().delivery_errors, 1u);
  EXPECT_EQ(p.stats().rewinds, 1u) << "each refused record of the chunk rewound the stream again";
  EXPECT_EQ(p.attempt(), 1) << "each refused record counted as another failed attempt";
}

// The rewind after a refused record runs from a zero-delay timer. Whoever owns the pipeline
// may destroy it before that timer runs (Bridge::Reload closes a removed stream and, as it is
// settled, erases it at once); the timer must not then run on the destroyed pipeline.
// Under AddressSanitizer a violation is reported as heap-use-after-free.
TEST_F(StreamPipelineTest, DestroyingThePipelineCancelsItsPendingRewind) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!OpenStream(c)) return;
    c.Send("id: 1\ndata: a\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  host_->produce_result = sink::ProduceResult::kRejected;
  bool destroyed = false;
  host_->on_produce = [&] {
    // Due before the pipeline's own zero-delay timer, so it runs first in the same pass.
    loop_->ScheduleAt(http::Clock::now() - milliseconds(1), [&] {
      pipeline_.reset();
      destroyed = true;
    });
  };
  Start(Config());
  ASSERT_TRUE(RunUntil([&] { return destroyed; }));
  RunLoopFor(*loop_, milliseconds(50));
  EXPECT_EQ(pipeline_, nullptr);
}

}  // namespace
}  // namespace sse2kafka::bridge
