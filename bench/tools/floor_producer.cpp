// floor_producer: the latency floor of the end-to-end benchmarks (bench/run.sh, scenario S4).
//
// Usage: floor_producer --brokers B --topic T --count N [--rate 1000] [--size 100] [-X name=value]...
//
// A plain librdkafka producer that sends N records at `rate` per second (an absolute schedule,
// so a late wakeup does not slow the rate) with values shaped like sse_source's event data,
// {"n":N,"t":T,"pad":"xxx…"} of `size` bytes, T being the Unix time in ns taken just before the
// record is handed to librdkafka. A consumer measuring receipt minus T (kafka_probe latency)
// then gives what the broker and the client library alone cost: the floor for the bridge.
// Producer properties are librdkafka's defaults plus -X (pass the bridge's settings, e.g.
// -X linger.ms=5 -X enable.idempotence=true -X acks=all, for a like-for-like floor).
// Prints {"produced","delivered","failed"} after flushing; exit 0 when every record was
// delivered, 1 otherwise, 2 on bad arguments.

#include <librdkafka/rdkafka.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

struct Options {
  std::string brokers;
  std::string topic;
  long long count = 0;
  double rate = 1000;
  size_t size = 100;
  std::vector<std::pair<std::string, std::string>> properties;
};

std::optional<Options> ParseOptions(int argc, char** argv) {
  auto fail = [](const std::string& message) -> std::optional<Options> {
    std::fprintf(stderr, "floor_producer: %s\n", message.c_str());
    return std::nullopt;
  };
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) return fail(std::string(arg) + " needs a value");
    const char* value = argv[++i];
    char* end = nullptr;
    if (arg == "--brokers") {
      options.brokers = value;
    } else if (arg == "--topic") {
      options.topic = value;
    } else if (arg == "--count") {
      options.count = std::strtoll(value, &end, 10);
      if (*end != '\0' || options.count <= 0) return fail("--count wants a positive number");
    } else if (arg == "--rate") {
      options.rate = std::strtod(value, &end);
      if (*end != '\0' || !(options.rate > 0)) return fail("--rate wants a positive number");
    } else if (arg == "--size") {
      long long size = std::strtoll(value, &end, 10);
      if (*end != '\0' || size < 0 || size > (1 << 24)) return fail("--size wants 0 to 16777216");
      options.size = static_cast<size_t>(size);
    } else if (arg == "-X") {
      std::string_view property = value;
      size_t eq = property.find('=');
      if (eq == std::string_view::npos || eq == 0) return fail("-X wants name=value");
      options.properties.emplace_back(std::string(property.substr(0, eq)), std::string(property.substr(eq + 1)));
    } else {
      return fail("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (options.brokers.empty() || options.topic.empty() || options.count <= 0) {
    return fail("--brokers, --topic and --count are required");
  }
  return options;
}

int64_t NowNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void SleepUntil(int64_t monotonic_ns) {
  timespec ts{};
  ts.tv_sec = monotonic_ns / 1000000000;
  ts.tv_nsec = monotonic_ns % 1000000000;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
  }
}

// The record value: {"n":N,"t":T,"pad":"xxx"} of `size` bytes (longer when size is too small).
std::string Value(long long n, int64_t unix_ns, size_t size) {
  std::string value = "{\"n\":" + std::to_string(n) + ",\"t\":" + std::to_string(unix_ns) + ",\"pad\":\"";
  if (size > value.size() + 2) value.append(size - value.size() - 2, 'x');
  value += "\"}";
  return value;
}

struct Tally {
  long long delivered = 0;
  long long failed = 0;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* tally = static_cast<Tally*>(opaque);
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++tally->delivered;
  } else {
    ++tally->failed;
    std::fprintf(stderr, "floor_producer: delivery failed: %s\n", rd_kafka_err2str(msg->err));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> options = ParseOptions(argc, argv);
  if (!options) return 2;
  Tally tally;
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> settings = {{"bootstrap.servers", options->brokers},
                                                               {"log_level", "3"}};
  settings.insert(settings.end(), options->properties.begin(), options->properties.end());
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "floor_producer: %s\n", errstr);
      rd_kafka_conf_destroy(conf);
      return 2;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, OnDelivery);
  rd_kafka_conf_set_opaque(conf, &tally);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    std::fprintf(stderr, "floor_producer: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  // As the bridge does at start-up: learn the topic's metadata first, so that the first record
  // does not wait for a refresh.
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, options->topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);

  const int64_t origin = NowNs(CLOCK_MONOTONIC);
  const double interval_ns = 1e9 / options->rate;
  long long produced = 0;
  for (long long n = 1; n <= options->count; ++n) {
    SleepUntil(origin + static_cast<int64_t>(static_cast<double>(n - 1) * interval_ns));
    std::string value = Value(n, NowNs(CLOCK_REALTIME), options->size);
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(options->topic.c_str()),
                                    RD_KAFKA_V_VALUE(value.data(), value.size()),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 10);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "floor_producer: produce: %s\n", rd_kafka_err2str(err));
      break;
    }
    ++produced;
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 30000);
  std::printf("{\"produced\":%lld,\"delivered\":%lld,\"failed\":%lld}\n", produced, tally.delivered, tally.failed);
  std::fflush(stdout);
  rd_kafka_destroy(rk);
  return produced == options->count && tally.delivered == produced ? 0 : 1;
}
