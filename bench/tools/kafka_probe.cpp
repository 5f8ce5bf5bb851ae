// kafka_probe: what the end-to-end benchmarks (bench/run.sh) need to know from Kafka.
//
//   kafka_probe wait    --brokers B --topic T --count N [--timeout-ms 60000] [--interval-ms 10]
//       Polls the topic's high watermarks until their sum reaches N (on a topic that started
//       empty, the number of records ever appended, even after the mock broker dropped old ones).
//       Prints {"reached":true|false,"records":SUM,"at_unix_ns":WHEN} — WHEN is the poll that saw
//       the sum reach N. Exit 0 when reached, 3 on timeout.
//   kafka_probe last    --brokers B --topic T [--timeout-ms 10000]
//       Prints one JSON line per non-empty partition with its last record:
//       {"partition","low","high","offset","key","sse_id","value_head"} (value_head: the first
//       160 bytes of the value). Exit 0, or 1 when a partition's last record could not be read.
//   kafka_probe latency --brokers B --topic T --count N [--skip K] [--timeout-ms 60000]
//       Reads the topic from the beginning until N records arrived; for each record after the
//       first K takes receipt time (CLOCK_REALTIME when the consumer returned it) minus the send
//       time in the value's "t": member (Unix ns) and prints
//       {"records","measured","min_ms","p50_ms","p90_ms","p99_ms","p999_ms","max_ms","mean_ms"}.
//       Exit 0 when N arrived, 3 on timeout (the figures then cover what did arrive).
// Options for every mode: -X name=value sets a librdkafka property of the probe's consumer.

#include <librdkafka/rdkafka.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int64_t UnixNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Options {
  std::string mode;
  std::string brokers;
  std::string topic;
  long long count = 0;
  long long skip = 0;
  long long timeout_ms = 60000;
  long long interval_ms = 10;
  std::vector<std::pair<std::string, std::string>> properties;
};

std::optional<long long> ParseNumber(const char* text) {
  char* end = nullptr;
  long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || value < 0) return std::nullopt;
  return value;
}

std::optional<Options> ParseOptions(int argc, char** argv) {
  auto fail = [](const std::string& message) -> std::optional<Options> {
    std::fprintf(stderr, "kafka_probe: %s\n", message.c_str());
    return std::nullopt;
  };
  if (argc < 2) return fail("usage: kafka_probe wait|last|latency --brokers B --topic T [...]");
  Options options;
  options.mode = argv[1];
  if (options.mode != "wait" && options.mode != "last" && options.mode != "latency") {
    return fail("unknown mode '" + options.mode + "'");
  }
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) return fail(std::string(arg) + " needs a value");
    const char* value = argv[++i];
    if (arg == "--brokers") {
      options.brokers = value;
    } else if (arg == "--topic") {
      options.topic = value;
    } else if (arg == "-X") {
      std::string_view property = value;
      size_t eq = property.find('=');
      if (eq == std::string_view::npos || eq == 0) return fail("-X wants name=value");
      options.properties.emplace_back(std::string(property.substr(0, eq)), std::string(property.substr(eq + 1)));
    } else if (arg == "--count" || arg == "--skip" || arg == "--timeout-ms" || arg == "--interval-ms") {
      std::optional<long long> number = ParseNumber(value);
      if (!number) return fail(std::string(arg) + " wants a non-negative number");
      if (arg == "--count") options.count = *number;
      if (arg == "--skip") options.skip = *number;
      if (arg == "--timeout-ms") options.timeout_ms = *number;
      if (arg == "--interval-ms") options.interval_ms = std::max(1LL, *number);
    } else {
      return fail("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (options.brokers.empty() || options.topic.empty()) return fail("--brokers and --topic are required");
  return options;
}

struct ConsumerDeleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
};
using Consumer = std::unique_ptr<rd_kafka_t, ConsumerDeleter>;

// A consumer that never joins a group (partitions are assigned by hand). The mock broker holds
// an empty fetch for the full fetch.wait.max.ms, so a short wait keeps receipt times honest.
// On failure prints why and returns nullptr.
Consumer MakeConsumer(const Options& options) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", options.brokers},
      {"group.id", "kafka_probe"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"allow.auto.create.topics", "false"},
      {"fetch.wait.max.ms", "2"},
      {"fetch.error.backoff.ms", "2"},
      {"log_level", "3"},
  };
  settings.insert(settings.end(), options.properties.begin(), options.properties.end());
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "kafka_probe: %s\n", errstr);
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    std::fprintf(stderr, "kafka_probe: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return Consumer(rk);
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// The topic's partition count, asking until the deadline; nullopt when it never showed up.
std::optional<int> PartitionCount(rd_kafka_t* rk, const std::string& topic, Clock::time_point deadline) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  std::optional<int> count;
  while (rkt != nullptr && !count && Clock::now() < deadline) {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, rkt, &md, std::clamp(RemainingMs(deadline), 1, 2000)) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < md->topic_cnt; ++i) {
        if (topic == md->topics[i].topic && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topics[i].partition_cnt > 0) {
          count = md->topics[i].partition_cnt;
        }
      }
      rd_kafka_metadata_destroy(md);
    }
    if (!count) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (rkt != nullptr) rd_kafka_topic_destroy(rkt);
  return count;
}

// Sum of the partitions' high watermarks; nullopt when a query failed.
std::optional<int64_t> HighWatermarkSum(rd_kafka_t* rk, const std::string& topic, int partitions,
                                        std::vector<std::pair<int64_t, int64_t>>* per_partition = nullptr) {
  int64_t sum = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0;
    int64_t high = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::nullopt;
    }
    sum += high;
    if (per_partition != nullptr) per_partition->emplace_back(low, high);
  }
  return sum;
}

void PrintJsonString(std::string_view text) {
  std::putchar('"');
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      std::printf("\\%c", c);
    } else if (c < 0x20 || c >= 0x7f) {
      std::printf("\\u%04x", c);
    } else {
      std::putchar(c);
    }
  }
  std::putchar('"');
}

int RunWait(rd_kafka_t* rk, const Options& options) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
  std::optional<int> partitions = PartitionCount(rk, options.topic, deadline);
  if (!partitions) {
    std::printf("{\"reached\":false,\"records\":0,\"at_unix_ns\":0,\"error\":\"topic not found\"}\n");
    return 3;
  }
  int64_t last = 0;
  for (;;) {
    std::optional<int64_t> sum = HighWatermarkSum(rk, options.topic, *partitions);
    const int64_t now = UnixNs();
    if (sum) last = *sum;
    if (sum && *sum >= options.count) {
      std::printf("{\"reached\":true,\"records\":%lld,\"at_unix_ns\":%lld}\n", static_cast<long long>(*sum),
                  static_cast<long long>(now));
      return 0;
    }
    if (Clock::now() >= deadline) {
      std::printf("{\"reached\":false,\"records\":%lld,\"at_unix_ns\":%lld}\n", static_cast<long long>(last),
                  static_cast<long long>(now));
      return 3;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options.interval_ms));
  }
}

int RunLast(rd_kafka_t* rk, const Options& options) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
  std::optional<int> partitions = PartitionCount(rk, options.topic, deadline);
  if (!partitions) {
    std::fprintf(stderr, "kafka_probe: topic %s not found\n", options.topic.c_str());
    return 1;
  }
  std::vector<std::pair<int64_t, int64_t>> marks;
  if (!HighWatermarkSum(rk, options.topic, *partitions, &marks)) {
    std::fprintf(stderr, "kafka_probe: watermarks of %s unavailable\n", options.topic.c_str());
    return 1;
  }
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(*partitions);
  int wanted = 0;
  for (int p = 0; p < *partitions; ++p) {
    if (marks[static_cast<size_t>(p)].second > marks[static_cast<size_t>(p)].first) {
      rd_kafka_topic_partition_list_add(list, options.topic.c_str(), p)->offset = marks[static_cast<size_t>(p)].second - 1;
      ++wanted;
    }
  }
  if (wanted > 0) rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<bool> seen(static_cast<size_t>(*partitions), false);
  int found = 0;
  while (found < wanted && Clock::now() < deadline) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, std::min(RemainingMs(deadline), 100));
    if (msg == nullptr) continue;
    const size_t p = static_cast<size_t>(msg->partition);
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && p < seen.size() && !seen[p] &&
        msg->offset == marks[p].second - 1) {
      seen[p] = true;
      ++found;
      std::string sse_id;
      rd_kafka_headers_t* headers = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      if (rd_kafka_message_headers(msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          rd_kafka_header_get_last(headers, "sse.id", &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR && value) {
        sse_id.assign(static_cast<const char*>(value), size);
      }
      std::printf("{\"partition\":%d,\"low\":%lld,\"high\":%lld,\"offset\":%lld,\"key\":", msg->partition,
                  static_cast<long long>(marks[p].first), static_cast<long long>(marks[p].second),
                  static_cast<long long>(msg->offset));
      if (msg->key) {
        PrintJsonString(std::string_view(static_cast<const char*>(msg->key), msg->key_len));
      } else {
        std::printf("null");
      }
      std::printf(",\"sse_id\":");
      PrintJsonString(sse_id);
      std::printf(",\"value_head\":");
      PrintJsonString(std::string_view(static_cast<const char*>(msg->payload), std::min<size_t>(msg->len, 160)));
      std::printf("}\n");
    }
    rd_kafka_message_destroy(msg);
  }
  std::fflush(stdout);
  if (found < wanted) {
    std::fprintf(stderr, "kafka_probe: read the last record of %d of %d partitions\n", found, wanted);
    return 1;
  }
  return 0;
}

// The send time in a value shaped {"n":N,"t":T,...}; nullopt when there is none.
std::optional<int64_t> SendTime(const rd_kafka_message_t* msg) {
  std::string_view value(static_cast<const char*>(msg->payload), msg->payload ? msg->len : 0);
  size_t at = value.find("\"t\":");
  if (at == std::string_view::npos) return std::nullopt;
  int64_t t = 0;
  size_t digits = 0;
  for (size_t i = at + 4; i < value.size() && value[i] >= '0' && value[i] <= '9'; ++i, ++digits) {
    t = t * 10 + (value[i] - '0');
  }
  if (digits == 0) return std::nullopt;
  return t;
}

double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(index, sorted.size() - 1)]) / 1e6;
}

int RunLatency(rd_kafka_t* rk, const Options& options) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
  std::optional<int> partitions = PartitionCount(rk, options.topic, deadline);
  if (!partitions) {
    std::fprintf(stderr, "kafka_probe: topic %s not found\n", options.topic.c_str());
    return 3;
  }
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(*partitions);
  for (int p = 0; p < *partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, options.topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::fprintf(stderr, "kafka_probe: consuming %s\n", options.topic.c_str());

  std::vector<int64_t> latencies;
  latencies.reserve(static_cast<size_t>(std::max(0LL, options.count - options.skip)));
  long long records = 0;
  long long untimed = 0;
  while (records < options.count && Clock::now() < deadline) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, std::min(RemainingMs(deadline), 100));
    if (msg == nullptr) continue;
    const int64_t received = UnixNs();
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (records >= options.skip) {
        if (std::optional<int64_t> sent = SendTime(msg)) {
          latencies.push_back(received - *sent);
        } else {
          ++untimed;
        }
      }
      ++records;
    }
    rd_kafka_message_destroy(msg);
  }
  std::vector<int64_t> sorted = latencies;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (int64_t v : sorted) mean += static_cast<double>(v) / 1e6;
  if (!sorted.empty()) mean /= static_cast<double>(sorted.size());
  std::printf(
      "{\"records\":%lld,\"measured\":%zu,\"untimed\":%lld,\"min_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
      "\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f}\n",
      records, sorted.size(), untimed, Percentile(sorted, 0), Percentile(sorted, 0.5), Percentile(sorted, 0.9),
      Percentile(sorted, 0.99), Percentile(sorted, 0.999), Percentile(sorted, 1), mean);
  std::fflush(stdout);
  return records >= options.count ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> options = ParseOptions(argc, argv);
  if (!options) return 2;
  Consumer consumer = MakeConsumer(*options);
  if (!consumer) return 1;
  if (options->mode == "wait") return RunWait(consumer.get(), *options);
  if (options->mode == "last") return RunLast(consumer.get(), *options);
  return RunLatency(consumer.get(), *options);
}
