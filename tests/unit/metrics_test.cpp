// The admin endpoints: snapshots handed from the loop to the server, their Prometheus and JSON
// renderings (checked by promtool when it is installed), the health and readiness rules, the
// HTTP server on loopback, and the librdkafka statistics summary the Kafka metrics come from.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ops/admin_server.h"
#include "ops/metrics.h"
#include "sink/embedded_cluster.h"
#include "sink/kafka_producer.h"

namespace sse2kafka::ops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using std::chrono::system_clock;

constexpr milliseconds kInterval{1000};

StreamMetrics Stream(std::string name, StreamPhase phase, int attempt = 0) {
  StreamMetrics stream;
  stream.name = std::move(name);
  stream.phase = phase;
  stream.attempt = attempt;
  stream.url = "https://example.test/feed";
  return stream;
}

// A snapshot of a healthy process: two open streams with some traffic, brokers up.
MetricsSnapshot HealthySnapshot(SteadyTime now) {
  MetricsSnapshot snapshot;
  snapshot.process.version = "1.2.3";
  snapshot.process.loop_turns = 4242;
  snapshot.process.producer_queue_depth = 7;
  snapshot.process.in_flight_events = 5;
  snapshot.process.in_flight_bytes = 2048;
  snapshot.process.backpressure_episodes = 2;
  snapshot.process.fatal_producer_resets = 1;
  snapshot.process.kafka_stats_interval = milliseconds(5000);
  KafkaStatsMetrics stats;
  stats.received_at = now - seconds(1);
  stats.brokers_up = 2;
  stats.brokers_total = 3;
  stats.queue_messages = 5;
  stats.queue_bytes = 2048;
  stats.tx_messages = 1000;
  stats.tx_message_bytes = 50000;
  stats.tx_bytes = 60000;
  stats.avg_rtt = std::chrono::microseconds(12500);
  snapshot.process.kafka_stats = stats;

  StreamMetrics wiki = Stream("wiki", StreamPhase::kOpen);
  wiki.events = 12;
  wiki.bytes = 3456;
  wiki.records_produced = 11;
  wiki.records_delivered = 10;
  wiki.delivery_errors = 1;
  wiki.filtered = 1;
  wiki.oversized = 0;
  wiki.connects = 4;
  wiki.rewinds = 1;
  wiki.reconnects = {.network = 1, .status = 0, .idle = 3, .end = 0, .rewind = 1};
  wiki.last_event_unix_ms = 1714564800123;  // 2024-05-01T12:00:00.123Z
  wiki.last_event_id = "id-12";
  wiki.checkpoint = "id-10";
  wiki.in_flight_events = 2;
  snapshot.streams.push_back(wiki);

  StreamMetrics odd = Stream("odd \"name\" \\ here", StreamPhase::kWaiting, 1);
  odd.next_retry_unix_ms = 1714564801000;
  odd.paused = true;
  snapshot.streams.push_back(odd);
  return snapshot;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---------------------------------------------------------------------------------------------
// Prometheus rendering

TEST(RenderPrometheusTest, FleetMetricsOnlyWithTheKafkaStateBackend) {
  const SteadyTime now = steady_clock::now();
  MetricsSnapshot snapshot = HealthySnapshot(now);
  EXPECT_FALSE(Contains(RenderPrometheus(snapshot, now), "sse2kafka_owned_partitions"));
  snapshot.process.fleet = true;
  snapshot.process.owned_partitions = 8;
  snapshot.process.owned_streams = 100;
  snapshot.process.ownership_changes = 16;
  snapshot.process.transactions_committed = 1234;
  snapshot.process.transactions_aborted = 2;
  const std::string text = RenderPrometheus(snapshot, now);
  EXPECT_TRUE(Contains(text, "sse2kafka_owned_partitions 8\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_owned_streams 100\n"));
  EXPECT_TRUE(Contains(text, "# TYPE sse2kafka_ownership_changes_total counter\nsse2kafka_ownership_changes_total 16\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_transactions_total{outcome=\"committed\"} 1234\n"
                             "sse2kafka_transactions_total{outcome=\"aborted\"} 2\n"));
}

TEST(RenderPrometheusTest, ShowsEveryStreamCounterWithItsLabels) {
  const SteadyTime now = steady_clock::now();
  MetricsSnapshot snapshot = HealthySnapshot(now);
  snapshot.taken_at = now - milliseconds(1500);
  const std::string text = RenderPrometheus(snapshot, now);

  EXPECT_TRUE(Contains(text, "sse2kafka_build_info{version=\"1.2.3\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_loop_turns_total 4242\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_metrics_snapshot_age_seconds 1.5\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_producer_queue_depth 7\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_in_flight_events 5\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_in_flight_bytes 2048\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_backpressured 0\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_streams_paused 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_fatal_producer_resets_total 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_connected{stream=\"wiki\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_events_total{stream=\"wiki\"} 12\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_bytes_total{stream=\"wiki\"} 3456\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_records_delivered_total{stream=\"wiki\"} 10\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_delivery_errors_total{stream=\"wiki\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_filtered_total{stream=\"wiki\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_oversized_total{stream=\"wiki\"} 0\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_in_flight_events{stream=\"wiki\"} 2\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_last_event_timestamp_seconds{stream=\"wiki\"} 1714564800.123\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_reconnects_total{stream=\"wiki\",reason=\"network\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_reconnects_total{stream=\"wiki\",reason=\"idle\"} 3\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_reconnects_total{stream=\"wiki\",reason=\"rewind\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_state{stream=\"wiki\",state=\"open\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_state{stream=\"wiki\",state=\"waiting\"} 0\n"));
  // Label values escape backslashes and quotes.
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_connected{stream=\"odd \\\"name\\\" \\\\ here\"} 0\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_paused{stream=\"odd \\\"name\\\" \\\\ here\"} 1\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_consecutive_failures{stream=\"odd \\\"name\\\" \\\\ here\"} 1\n"));
  // librdkafka's statistics, in base units.
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_brokers_up 2\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_brokers 3\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_tx_messages_total 1000\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_tx_bytes_total 60000\n"));
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_broker_rtt_seconds 0.0125\n"));
}

TEST(RenderPrometheusTest, EveryFamilyHasHelpAndTypeOnceAndItsSamplesTogether) {
  const SteadyTime now = steady_clock::now();
  const std::string text = RenderPrometheus(HealthySnapshot(now), now);
  std::map<std::string, std::string> types;  // family → type
  std::set<std::string> helped;
  std::set<std::string> finished;  // families whose samples are over
  std::string current;
  for (const std::string& line : Lines(text)) {
    ASSERT_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.insert(name).second) << "second HELP for " << name;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type;
      fields >> name >> type;
      EXPECT_TRUE(types.emplace(name, type).second) << "second TYPE for " << name;
      EXPECT_TRUE(helped.count(name)) << "TYPE before HELP for " << name;
      EXPECT_EQ(name.rfind("sse2kafka_", 0), 0u) << name;
      EXPECT_EQ(name.ends_with("_total"), type == "counter") << name << " is a " << type;
      if (!current.empty()) finished.insert(current);
      current = name;
      continue;
    }
    const std::string name = line.substr(0, line.find_first_of("{ "));
    EXPECT_EQ(name, current) << "sample outside its family: " << line;
    EXPECT_FALSE(finished.count(name)) << "family " << name << " split";
  }
  EXPECT_GE(types.size(), 30u);
}

TEST(RenderPrometheusTest, KafkaStatisticsAreAbsentUntilTheFirstReport) {
  const SteadyTime now = steady_clock::now();
  MetricsSnapshot snapshot = HealthySnapshot(now);
  snapshot.process.kafka_stats.reset();
  const std::string text = RenderPrometheus(snapshot, now);
  EXPECT_FALSE(Contains(text, "sse2kafka_kafka_"));
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_events_total"));
}

// Runs promtool over `text`; returns its exit status and output.
std::pair<int, std::string> Promtool(const std::string& text) {
  const std::filesystem::path file =
      std::filesystem::path(testing::TempDir()) / ("metrics_test_" + std::to_string(::getpid()) + ".prom");
  std::ofstream(file) << text;
  const std::string command = "/usr/bin/promtool check metrics < " + file.string() + " 2>&1";
  std::string output;
  int status = -1;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[512];
    for (std::size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
    status = pclose(pipe);
  }
  std::filesystem::remove(file);
  return {status, output};
}

TEST(RenderPrometheusTest, PromtoolAcceptsTheExposition) {
  if (!std::filesystem::exists("/usr/bin/promtool")) GTEST_SKIP() << "promtool is not installed (Debian: prometheus)";
  const SteadyTime now = steady_clock::now();
  const auto [status, output] = Promtool(RenderPrometheus(HealthySnapshot(now), now));
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "");

  MetricsSnapshot empty;
  const auto [empty_status, empty_output] = Promtool(RenderPrometheus(empty, now));
  EXPECT_EQ(empty_status, 0) << empty_output;
}

TEST(RenderPrometheusTest, PromtoolRejectsABrokenExposition) {
  // Shows that the check above can fail.
  if (!std::filesystem::exists("/usr/bin/promtool")) GTEST_SKIP() << "promtool is not installed (Debian: prometheus)";
  const auto [status, output] = Promtool("sse2kafka_things_total 1\n");
  EXPECT_NE(status, 0);
  EXPECT_TRUE(Contains(output, "no help text")) << output;
}

// ---------------------------------------------------------------------------------------------
// /streams JSON

TEST(RenderStreamsJsonTest, DescribesEachStream) {
  const SteadyTime now = steady_clock::now();
  const nlohmann::json streams = nlohmann::json::parse(RenderStreamsJson(HealthySnapshot(now)));
  ASSERT_TRUE(streams.is_array());
  ASSERT_EQ(streams.size(), 2u);
  const nlohmann::json& wiki = streams[0];
  EXPECT_EQ(wiki["name"], "wiki");
  EXPECT_EQ(wiki["state"], "open");
  EXPECT_EQ(wiki["connected"], true);
  EXPECT_EQ(wiki["url"], "https://example.test/feed");
  EXPECT_EQ(wiki["last_event_id"], "id-12");
  EXPECT_EQ(wiki["checkpoint"], "id-10");
  EXPECT_EQ(wiki["attempt"], 0);
  EXPECT_TRUE(wiki["next_retry_at"].is_null());
  EXPECT_EQ(wiki["last_event_at"], "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(wiki["in_flight_events"], 2);
  EXPECT_EQ(wiki["counters"]["events"], 12);
  EXPECT_EQ(wiki["counters"]["records_delivered"], 10);
  EXPECT_EQ(wiki["counters"]["reconnects"]["idle"], 3);
  EXPECT_EQ(wiki["counters"]["rewinds"], 1);

  const nlohmann::json& odd = streams[1];
  EXPECT_EQ(odd["name"], "odd \"name\" \\ here");
  EXPECT_EQ(odd["state"], "waiting");
  EXPECT_EQ(odd["attempt"], 1);
  EXPECT_EQ(odd["next_retry_at"], "2024-05-01T12:00:01.000Z");
  EXPECT_TRUE(odd["last_event_at"].is_null());
  EXPECT_EQ(odd["paused"], true);
}

TEST(RenderStreamsJsonTest, InvalidUtf8IsReplacedNotThrown) {
  MetricsSnapshot snapshot;
  snapshot.streams.push_back(Stream("s", StreamPhase::kOpen));
  snapshot.streams[0].last_event_id = std::string("ab\xff", 3);
  const nlohmann::json streams = nlohmann::json::parse(RenderStreamsJson(snapshot));
  EXPECT_EQ(streams[0]["last_event_id"], "ab\xEF\xBF\xBD");
}

TEST(RenderStreamsJsonTest, NoStreamsIsAnEmptyArray) { EXPECT_EQ(RenderStreamsJson(MetricsSnapshot{}), "[]"); }

TEST(UnixMillisTest, ConvertsASteadyInstantToWallTime) {
  const SteadyTime steady_now = steady_clock::now();
  const WallTime wall_now = WallTime(milliseconds(1714564800000));
  EXPECT_EQ(UnixMillis(steady_now + milliseconds(2500), steady_now, wall_now), 1714564802500);
  EXPECT_EQ(UnixMillis(steady_now - milliseconds(100), steady_now, wall_now), 1714564799900);
}

// ---------------------------------------------------------------------------------------------
// Publisher

TEST(MetricsPublisherTest, LatestIsNullUntilTheFirstPublish) {
  MetricsPublisher publisher(kInterval);
  EXPECT_EQ(publisher.Latest(), nullptr);
  EXPECT_EQ(publisher.interval(), kInterval);
}

TEST(MetricsPublisherTest, StampsTimeAndKeepsOldSnapshotsAliveForTheirReaders) {
  MetricsPublisher publisher(kInterval);
  const SteadyTime t0 = steady_clock::now();
  const WallTime w0 = system_clock::now();
  MetricsSnapshot first;
  first.process.loop_turns = 1;
  publisher.PublishAt(first, t0, w0);
  const std::shared_ptr<const MetricsSnapshot> held = publisher.Latest();
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->taken_at, t0);
  EXPECT_EQ(held->taken_at_wall, w0);

  MetricsSnapshot second;
  second.process.loop_turns = 2;
  publisher.PublishAt(second, t0 + kInterval, w0 + kInterval);
  EXPECT_EQ(publisher.Latest()->process.loop_turns, 2u);
  EXPECT_EQ(held->process.loop_turns, 1u);  // a reader's snapshot does not change under it
}

TEST(MetricsPublisherTest, RecordsWhenDeliveriesLastGrew) {
  MetricsPublisher publisher(kInterval);
  const SteadyTime t0 = steady_clock::now();
  const WallTime w0 = system_clock::now();
  auto publish = [&](int second, uint64_t delivered_a, std::optional<uint64_t> delivered_b) {
    MetricsSnapshot snapshot;
    snapshot.streams.push_back(Stream("a", StreamPhase::kOpen));
    snapshot.streams.back().records_delivered = delivered_a;
    if (delivered_b) {
      snapshot.streams.push_back(Stream("b", StreamPhase::kOpen));
      snapshot.streams.back().records_delivered = *delivered_b;
    }
    publisher.PublishAt(std::move(snapshot), t0 + seconds(second), w0 + seconds(second));
    return publisher.Latest()->last_delivery_at;
  };
  EXPECT_EQ(publish(0, 0, 0), std::nullopt);
  EXPECT_EQ(publish(1, 5, 0), t0 + seconds(1));
  EXPECT_EQ(publish(2, 5, 0), t0 + seconds(1));  // no progress: the time stays
  EXPECT_EQ(publish(3, 5, std::nullopt), t0 + seconds(1));  // b removed
  EXPECT_EQ(publish(4, 0, std::nullopt), t0 + seconds(1));  // a restarted: counters from zero
  EXPECT_EQ(publish(5, 1, std::nullopt), t0 + seconds(5));
  EXPECT_EQ(publish(6, 1, 3), t0 + seconds(6));  // b is back with deliveries
}

// ---------------------------------------------------------------------------------------------
// Health and readiness

TEST(HealthTest, HealthyWhileTheNewestSnapshotIsYoungerThanThreeIntervals) {
  const SteadyTime now = steady_clock::now();
  MetricsSnapshot snapshot;
  EXPECT_FALSE(IsHealthy(nullptr, kInterval, now));
  snapshot.taken_at = now - milliseconds(2999);
  EXPECT_TRUE(IsHealthy(&snapshot, kInterval, now));
  snapshot.taken_at = now - milliseconds(3000);
  EXPECT_FALSE(IsHealthy(&snapshot, kInterval, now));
}

class ReadinessTest : public testing::Test {
 protected:
  ReadinessTest() : now_(steady_clock::now()), snapshot_(HealthySnapshot(now_)) { snapshot_.taken_at = now_; }

  Readiness Evaluate() const { return EvaluateReadiness(&snapshot_, kInterval, now_); }

  // The problems in one string, for messages and matching.
  std::string Problems() const {
    std::string all;
    for (const std::string& problem : Evaluate().problems) all += problem + "\n";
    return all;
  }

  SteadyTime now_;
  MetricsSnapshot snapshot_;
};

TEST_F(ReadinessTest, ReadyWhenBrokersAreUpAndStreamsOpenOrInEarlyBackoff) {
  snapshot_.streams.push_back(Stream("connecting", StreamPhase::kConnecting, 0));
  snapshot_.streams.push_back(Stream("acks", StreamPhase::kAwaitingAcks, 2));
  snapshot_.streams.push_back(Stream("failing", StreamPhase::kFailing, kMaxConsecutiveFailuresWhenReady - 1));
  snapshot_.streams.push_back(Stream("done", StreamPhase::kStopped, 0));
  const Readiness readiness = Evaluate();
  EXPECT_TRUE(readiness.ready) << Problems();
  EXPECT_TRUE(readiness.problems.empty());
}

TEST_F(ReadinessTest, NotReadyWithoutASnapshot) {
  const Readiness readiness = EvaluateReadiness(nullptr, kInterval, now_);
  EXPECT_FALSE(readiness.ready);
  ASSERT_EQ(readiness.problems.size(), 1u);
  EXPECT_TRUE(Contains(readiness.problems[0], "no metrics"));
}

TEST_F(ReadinessTest, NotReadyWhenTheLoopIsStuck) {
  snapshot_.taken_at = now_ - seconds(10);
  snapshot_.process.kafka_stats->received_at = now_ - seconds(1);
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_TRUE(Contains(Problems(), "event loop")) << Problems();
}

TEST_F(ReadinessTest, NotReadyWhileStopping) {
  snapshot_.process.stopping = true;
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_TRUE(Contains(Problems(), "stopping")) << Problems();
}

TEST_F(ReadinessTest, StreamWithTooManyConsecutiveFailuresIsNamed) {
  snapshot_.streams.push_back(Stream("broken", StreamPhase::kWaiting, kMaxConsecutiveFailuresWhenReady));
  const Readiness readiness = Evaluate();
  EXPECT_FALSE(readiness.ready);
  ASSERT_EQ(readiness.problems.size(), 1u) << Problems();
  EXPECT_EQ(readiness.problems[0], "stream broken: waiting after 3 consecutive failed connects");
}

// Brokers answer (UP) but refuse the login: the classified line is the reason, not the brokers.
TEST_F(ReadinessTest, AConnectionProblemIsTheKafkaReason) {
  snapshot_.process.kafka_connection_problem = "authentication failed for user bridge with SASL mechanism PLAIN: x";
  snapshot_.process.kafka_connection_cause = "authentication";
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_EQ(Problems(), "kafka: authentication failed for user bridge with SASL mechanism PLAIN: x\n");
}

TEST_F(ReadinessTest, AStreamWhoseRecordsKafkaRefusesIsNamed) {
  StreamMetrics refused = Stream("orders", StreamPhase::kWaiting);
  refused.kafka_refusal = "topic orders: TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed";
  snapshot_.streams.push_back(refused);
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_EQ(Problems(), "stream orders: Kafka refuses its records: topic orders: TOPIC_AUTHORIZATION_FAILED: "
                        "Broker: Topic authorization failed\n");
  const nlohmann::json streams = nlohmann::json::parse(RenderStreamsJson(snapshot_));
  EXPECT_EQ(streams.back()["kafka_refusal"], refused.kafka_refusal);
  EXPECT_TRUE(streams.front()["kafka_refusal"].is_null());
  const std::string text = RenderPrometheus(snapshot_, now_);
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_kafka_refused{stream=\"orders\"} 1")) << text;
  EXPECT_TRUE(Contains(text, "sse2kafka_stream_kafka_refused{stream=\"wiki\"} 0")) << text;
}

TEST_F(ReadinessTest, ConnectionErrorsAreCountedByCause) {
  snapshot_.process.kafka_connection_errors = {{"authentication", 4}, {"tls", 0}, {"security_protocol", 0}};
  snapshot_.process.kafka_connection_cause = "authentication";
  const std::string text = RenderPrometheus(snapshot_, now_);
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_connection_errors_total{cause=\"authentication\"} 4")) << text;
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_connection_problem{cause=\"authentication\"} 1")) << text;
  EXPECT_TRUE(Contains(text, "sse2kafka_kafka_connection_problem{cause=\"tls\"} 0")) << text;
}

TEST_F(ReadinessTest, ClosedStreamIsNotReady) {
  snapshot_.streams.push_back(Stream("gone", StreamPhase::kClosed));
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_EQ(Problems(), "stream gone: closed\n");
}

TEST_F(ReadinessTest, NoBrokerUpAndNoRecentDeliveryIsNotReady) {
  snapshot_.process.kafka_stats->brokers_up = 0;
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_TRUE(Contains(Problems(), "kafka: 0 of 3 brokers up")) << Problems();
}

// Two of three brokers down: the one left is UP but refuses every acks=all record
// (NOT_ENOUGH_REPLICAS). Records waiting with none delivered for a window is not ready.
TEST_F(ReadinessTest, RecordsInFlightWithNoneDeliveredIsNotReadyEvenWithABrokerUp) {
  snapshot_.process.kafka_stats->brokers_up = 1;
  snapshot_.process.in_flight_events = 120;
  snapshot_.last_delivery_at = now_ - seconds(30);
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_TRUE(Contains(Problems(), "kafka: 120 records in flight and none delivered in the last")) << Problems();
  EXPECT_TRUE(Contains(Problems(), "(1 of 3 brokers up)")) << Problems();
  snapshot_.last_delivery_at = now_ - seconds(1);
  EXPECT_TRUE(Evaluate().ready) << Problems();
  snapshot_.last_delivery_at = now_ - seconds(30);
  snapshot_.process.in_flight_events = 0;  // idle: nothing waits, a broker is up
  EXPECT_TRUE(Evaluate().ready) << Problems();
}

TEST_F(ReadinessTest, StaleStatisticsDoNotCount) {
  snapshot_.process.kafka_stats->received_at = now_ - seconds(11);  // more than two 5 s intervals
  EXPECT_FALSE(Evaluate().ready);
  snapshot_.process.kafka_stats->received_at = now_ - seconds(9);
  EXPECT_TRUE(Evaluate().ready) << Problems();
}

TEST_F(ReadinessTest, RecentDeliveryMakesKafkaReachableWithoutStatistics) {
  snapshot_.process.kafka_stats.reset();
  EXPECT_FALSE(Evaluate().ready);
  EXPECT_TRUE(Contains(Problems(), "no statistics from librdkafka yet")) << Problems();
  snapshot_.last_delivery_at = now_ - seconds(4);
  EXPECT_TRUE(Evaluate().ready) << Problems();
  snapshot_.last_delivery_at = now_ - seconds(7);  // beyond the 5 s interval plus one publish
  EXPECT_FALSE(Evaluate().ready);
}

TEST_F(ReadinessTest, WithStatisticsOffOnlyDeliveriesShowKafkaIsReachable) {
  snapshot_.process.kafka_stats.reset();
  snapshot_.process.kafka_stats_interval = milliseconds(0);
  EXPECT_TRUE(Contains(Problems(), "statistics are off")) << Problems();
  snapshot_.last_delivery_at = now_ - seconds(5);
  EXPECT_TRUE(Evaluate().ready) << Problems();
}

TEST_F(ReadinessTest, EveryProblemIsListed) {
  snapshot_.process.kafka_stats->brokers_up = 0;
  snapshot_.streams.push_back(Stream("x", StreamPhase::kConnecting, 5));
  snapshot_.streams.push_back(Stream("y", StreamPhase::kFailing, 4));
  EXPECT_EQ(Evaluate().problems.size(), 3u) << Problems();
}

// ---------------------------------------------------------------------------------------------
// The HTTP server

class AdminServerTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start("127.0.0.1:0", publisher_, &error)) << error;
    ASSERT_GT(server_.port(), 0);
  }

  httplib::Result Get(const std::string& path) {
    httplib::Client client("127.0.0.1", server_.port());
    client.set_connection_timeout(5);
    client.set_read_timeout(5);
    return client.Get(path);
  }

  MetricsPublisher publisher_{kInterval};
  AdminServer server_;
};

TEST_F(AdminServerTest, EverythingIsUnavailableBeforeTheFirstSnapshot) {
  for (const char* path : {"/metrics", "/healthz", "/readyz", "/streams"}) {
    const httplib::Result result = Get(path);
    ASSERT_TRUE(result) << path << ": " << httplib::to_string(result.error());
    EXPECT_EQ(result->status, 503) << path;
    EXPECT_TRUE(Contains(result->body, "no metrics published yet")) << path << ": " << result->body;
  }
}

TEST_F(AdminServerTest, ServesEachEndpointFromTheNewestSnapshot) {
  publisher_.Publish(HealthySnapshot(steady_clock::now()));

  const httplib::Result metrics = Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), kPrometheusContentType);
  EXPECT_TRUE(Contains(metrics->body, "sse2kafka_build_info{version=\"1.2.3\"} 1\n"));
  EXPECT_TRUE(Contains(metrics->body, "sse2kafka_stream_events_total{stream=\"wiki\"} 12\n"));

  const httplib::Result health = Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");

  const httplib::Result ready = Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;
  EXPECT_EQ(ready->body, "ready\n");

  const httplib::Result streams = Get("/streams");
  ASSERT_TRUE(streams);
  EXPECT_EQ(streams->status, 200);
  EXPECT_EQ(streams->get_header_value("Content-Type"), "application/json");
  const nlohmann::json parsed = nlohmann::json::parse(streams->body);
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0]["name"], "wiki");

  const httplib::Result missing = Get("/nothing-here");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(AdminServerTest, ReadyzListsTheFailingStreams) {
  MetricsSnapshot snapshot = HealthySnapshot(steady_clock::now());
  snapshot.streams.push_back(Stream("down", StreamPhase::kWaiting, 7));
  publisher_.Publish(std::move(snapshot));
  const httplib::Result ready = Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_EQ(ready->body, "not ready\n- stream down: waiting after 7 consecutive failed connects\n");
  const httplib::Result health = Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);  // unready is not unhealthy
}

TEST_F(AdminServerTest, HealthzFailsWhenTheSnapshotIsStale) {
  MetricsPublisher stale_publisher(milliseconds(1));
  AdminServer server;
  std::string error;
  ASSERT_TRUE(server.Start("127.0.0.1:0", stale_publisher, &error)) << error;
  stale_publisher.PublishAt(MetricsSnapshot{}, steady_clock::now() - seconds(1), system_clock::now());
  httplib::Client client("127.0.0.1", server.port());
  const httplib::Result health = client.Get("/healthz");
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 503);
  EXPECT_TRUE(Contains(health->body, "not turning")) << health->body;
}

TEST_F(AdminServerTest, StartFailsClearlyWhenThePortIsTaken) {
  AdminServer second;
  std::string error;
  const std::string listen = "127.0.0.1:" + std::to_string(server_.port());
  EXPECT_FALSE(second.Start(listen, publisher_, &error));
  EXPECT_TRUE(Contains(error, listen)) << error;
  EXPECT_TRUE(Contains(error, "Address already in use")) << error;
  EXPECT_EQ(second.port(), 0);
  second.Stop();  // harmless after a failed Start
}

TEST(AdminServerStartTest, RefusesAMalformedAddress) {
  MetricsPublisher publisher(kInterval);
  for (const char* listen : {"", "localhost", ":9464", "127.0.0.1:http", "127.0.0.1:70000", "[::1]"}) {
    AdminServer server;
    std::string error;
    EXPECT_FALSE(server.Start(listen, publisher, &error)) << listen;
    EXPECT_TRUE(Contains(error, "is not HOST:PORT")) << listen << ": " << error;
  }
}

TEST(AdminServerStartTest, ListensOnIpv6Loopback) {
  MetricsPublisher publisher(kInterval);
  AdminServer server;
  std::string error;
  if (!server.Start("[::1]:0", publisher, &error)) GTEST_SKIP() << "no IPv6 loopback here: " << error;
  publisher.Publish(MetricsSnapshot{});
  httplib::Client client("::1", server.port());
  client.set_connection_timeout(5);
  const httplib::Result health = client.Get("/healthz");
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 200);
}

TEST(AdminServerStartTest, StopRightAfterStartReturnsAndClosesThePort) {
  MetricsPublisher publisher(kInterval);
  for (int round = 0; round < 20; ++round) {
    AdminServer server;
    std::string error;
    ASSERT_TRUE(server.Start("127.0.0.1:0", publisher, &error)) << error;
    const int port = server.port();
    const auto started = steady_clock::now();
    server.Stop();
    server.Stop();  // idempotent
    EXPECT_LT(steady_clock::now() - started, seconds(5));
    // Nothing listens any more. (Binding the port again would race with other programs'
    // outgoing connections, which the kernel may give the freed port.)
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(2);
    const httplib::Result answer = client.Get("/healthz");
    EXPECT_FALSE(answer);
    EXPECT_EQ(answer.error(), httplib::Error::Connection);
  }
}

// Readers see whole snapshots while the loop publishes new ones: every sample of one scrape
// comes from the same generation.
TEST_F(AdminServerTest, KeepsAnsweringWhileSnapshotsAreSwapped) {
  constexpr int kAnswersPerReader = 200;
  constexpr uint64_t kMaxGenerations = 100000000;
  const auto deadline = steady_clock::now() + seconds(60);
  std::atomic<bool> publishing_done{false};
  std::atomic<int> metrics_answers{0};
  std::atomic<int> streams_answers{0};
  uint64_t published = 0;

  auto snapshot_of = [](uint64_t generation) {
    MetricsSnapshot snapshot;
    snapshot.process.version = "test";
    snapshot.process.loop_turns = generation;
    for (int i = 0; i < 3; ++i) {
      StreamMetrics stream = Stream("s" + std::to_string(i), StreamPhase::kOpen);
      stream.events = generation;
      stream.last_event_id = "g" + std::to_string(generation);
      snapshot.streams.push_back(std::move(stream));
    }
    return snapshot;
  };
  publisher_.Publish(snapshot_of(0));

  // Publishes for as long as the readers are reading, so that swaps overlap renders.
  std::thread loop([&] {
    while ((metrics_answers < kAnswersPerReader || streams_answers < kAnswersPerReader) &&
           published < kMaxGenerations && steady_clock::now() < deadline) {
      publisher_.Publish(snapshot_of(++published));
      std::this_thread::yield();  // two cores: leave the server and the readers some
    }
    publishing_done = true;
  });

  struct ReaderResult {
    int failures = 0;
    std::string first_failure;
  };
  auto read = [&](ReaderResult& result, std::atomic<int>& answers, const std::string& path) {
    httplib::Client client("127.0.0.1", server_.port());
    client.set_keep_alive(true);
    client.set_read_timeout(5);
    // One more request after publishing ends, so that readers also see the final generation.
    for (int request = 0; request < 100000 && steady_clock::now() < deadline; ++request) {
      const bool last_round = publishing_done.load();
      const httplib::Result answer = client.Get(path);
      std::string problem;
      if (!answer) {
        problem = "request failed: " + httplib::to_string(answer.error());
      } else if (answer->status != 200) {
        problem = "status " + std::to_string(answer->status);
      } else if (path == "/metrics") {
        const std::string marker = "\nsse2kafka_loop_turns_total ";
        const std::size_t at = answer->body.find(marker);
        const std::string generation =
            at == std::string::npos
                ? "?"
                : answer->body.substr(at + marker.size(),
                                      answer->body.find('\n', at + marker.size()) - at - marker.size());
        for (int i = 0; i < 3; ++i) {
          const std::string sample =
              "sse2kafka_stream_events_total{stream=\"s" + std::to_string(i) + "\"} " + generation + "\n";
          if (!Contains(answer->body, sample)) problem = "torn snapshot: missing " + sample;
        }
      } else {
        const nlohmann::json streams = nlohmann::json::parse(answer->body);
        if (streams.size() != 3) problem = "torn snapshot: " + answer->body;
        for (const nlohmann::json& stream : streams) {
          if (stream["last_event_id"] != "g" + std::to_string(stream["counters"]["events"].get<uint64_t>())) {
            problem = "torn snapshot: " + stream.dump();
          }
        }
      }
      ++answers;
      if (!problem.empty() && result.failures++ == 0) result.first_failure = problem;
      if (last_round) break;
    }
  };
  ReaderResult metrics_reader, streams_reader;
  std::thread metrics_thread(read, std::ref(metrics_reader), std::ref(metrics_answers), "/metrics");
  std::thread streams_thread(read, std::ref(streams_reader), std::ref(streams_answers), "/streams");
  loop.join();
  metrics_thread.join();
  streams_thread.join();

  EXPECT_GE(metrics_answers.load(), kAnswersPerReader);
  EXPECT_GE(streams_answers.load(), kAnswersPerReader);
  EXPECT_GT(published, 1u);
  EXPECT_EQ(metrics_reader.failures, 0) << metrics_reader.first_failure;
  EXPECT_EQ(streams_reader.failures, 0) << streams_reader.first_failure;
  EXPECT_EQ(publisher_.Latest()->process.loop_turns, published);
}

}  // namespace
}  // namespace sse2kafka::ops

// ---------------------------------------------------------------------------------------------
// librdkafka statistics in the producer

namespace sse2kafka::sink {
namespace {

using std::chrono::seconds;
using std::chrono::steady_clock;

// Shaped like librdkafka 2.0's report (STATISTICS.md), cut down.
constexpr const char* kSampleStatistics = R"({
  "name": "sse2kafka#producer-1", "client_id": "sse2kafka", "type": "producer",
  "ts": 5016483227792, "time": 1527060869, "replyq": 0,
  "msg_cnt": 22710, "msg_size": 704010, "msg_max": 500000, "msg_size_max": 1073741824,
  "tx": 631, "tx_bytes": 168584479, "rx": 631, "rx_bytes": 63568, "txmsgs": 4300753, "txmsg_bytes": 133323343,
  "brokers": {
    ":0/internal": {"name": ":0/internal", "nodeid": -1, "source": "internal", "state": "UP",
                    "rtt": {"avg": 0, "cnt": 0}, "toppars": {}},
    "localhost:9092/2": {"name": "localhost:9092/2", "nodeid": 2, "source": "learned", "state": "UP",
                         "rtt": {"min": 100, "max": 900, "avg": 1000, "cnt": 3},
                         "req": {"Produce": 12}, "toppars": {"test-1": {"topic": "test", "partition": 1}}},
    "localhost:9093/3": {"name": "localhost:9093/3", "nodeid": 3, "source": "learned", "state": "UP",
                         "rtt": {"avg": 3000, "cnt": 1}},
    "localhost:9094/bootstrap": {"name": "localhost:9094/bootstrap", "nodeid": -1, "source": "configured",
                                 "state": "DOWN", "rtt": {"avg": 0, "cnt": 0}}
  },
  "topics": {"test": {"topic": "test", "partitions": {"0": {"partition": 0, "msgq_cnt": 1}}}}
})";

TEST(ProducerStatsTest, SummarizesBrokersQueuesAndRoundTrips) {
  const std::optional<ProducerStatsSummary> summary = SummarizeProducerStats(kSampleStatistics);
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->brokers_total, 3);  // the internal broker does not count
  EXPECT_EQ(summary->brokers_up, 2);
  EXPECT_EQ(summary->msg_cnt, 22710);
  EXPECT_EQ(summary->msg_size, 704010);
  EXPECT_EQ(summary->txmsgs, 4300753);
  EXPECT_EQ(summary->txmsg_bytes, 133323343);
  EXPECT_EQ(summary->tx_bytes, 168584479);
  EXPECT_EQ(summary->avg_rtt, std::chrono::microseconds(1500));  // (1000·3 + 3000·1) / 4
}

TEST(ProducerStatsTest, RefusesWhatIsNotAJsonObject) {
  EXPECT_FALSE(SummarizeProducerStats("").has_value());
  EXPECT_FALSE(SummarizeProducerStats("{\"brokers\": ").has_value());
  EXPECT_FALSE(SummarizeProducerStats("[1, 2]").has_value());
  const std::optional<ProducerStatsSummary> bare = SummarizeProducerStats("{}");
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(bare->brokers_total, 0);
  EXPECT_EQ(bare->avg_rtt, std::chrono::microseconds(0));
}

class ProducerStatisticsTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    cluster_ = EmbeddedCluster::Start(1, &error);
    ASSERT_NE(cluster_, nullptr) << error;
  }

  std::unique_ptr<KafkaProducer> NewProducer(PropertyList properties) {
    ProducerSettings settings;
    settings.bootstrap_servers = cluster_->bootstrap_servers();
    settings.properties = std::move(properties);
    settings.max_in_flight_events = 1000;
    settings.max_in_flight_bytes = 1 << 20;
    std::string error;
    auto producer = KafkaProducer::Create(settings, &error);
    EXPECT_NE(producer, nullptr) << error;
    return producer;
  }

  std::unique_ptr<EmbeddedCluster> cluster_;
};

class CountingHandler : public DeliveryHandler {
 public:
  void OnDelivery(const DeliveryReport& report) override { delivered += report.ok ? 1 : 0; }
  void OnFatalError(const std::string&) override {}
  int delivered = 0;
};

TEST_F(ProducerStatisticsTest, DefaultIntervalUnlessTheUserSetsOne) {
  EXPECT_EQ(NewProducer({})->statistics_interval(), kDefaultStatisticsInterval);
  EXPECT_EQ(NewProducer({{"statistics.interval.ms", "250"}})->statistics_interval(), std::chrono::milliseconds(250));
  auto off = NewProducer({{"statistics.interval.ms", "0"}});
  EXPECT_EQ(off->statistics_interval(), std::chrono::milliseconds(0));
  EXPECT_FALSE(off->stats().has_value());
}

TEST_F(ProducerStatisticsTest, PollServesStatisticsShowingTheBrokerUp) {
  auto producer = NewProducer({{"statistics.interval.ms", "100"}});
  ASSERT_NE(producer, nullptr);
  EXPECT_FALSE(producer->stats().has_value());
  OutgoingRecord record;
  record.topic = "stats";
  record.value = "hello";
  record.token = 1;
  std::string error;
  ASSERT_EQ(producer->Produce(record, &error), ProduceResult::kQueued) << error;

  CountingHandler handler;
  const auto deadline = steady_clock::now() + seconds(15);
  auto up_and_delivered = [&] {
    return handler.delivered == 1 && producer->stats() && producer->stats()->brokers_up >= 1 &&
           producer->stats()->txmsgs >= 1;
  };
  while (!up_and_delivered() && steady_clock::now() < deadline) {
    pollfd wakeup{producer->wakeup_fd(), POLLIN, 0};
    if (poll(&wakeup, 1, 100) > 0) producer->Poll(handler);
  }
  ASSERT_TRUE(up_and_delivered()) << "delivered " << handler.delivered << ", stats "
                                  << (producer->stats() ? std::to_string(producer->stats()->brokers_up) : "none");
  const ProducerStatsSummary& stats = *producer->stats();
  EXPECT_EQ(stats.brokers_total, 1) << "one mock broker";
  EXPECT_GE(stats.tx_bytes, 1);
  EXPECT_LE(steady_clock::now() - stats.received_at, seconds(15));
}

}  // namespace
}  // namespace sse2kafka::sink
