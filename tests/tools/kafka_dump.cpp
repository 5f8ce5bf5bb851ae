// kafka_dump: reads Kafka topics from the beginning and prints one JSON object per record.
//
// Usage: kafka_dump --brokers B --topic T [--topic T2 ...] [--count N] [--timeout-ms T]
//                   [--idle-ms T [--min N]] [--eof] [--isolation read_committed|read_uncommitted]
//                   [-X name=value ...]
//        kafka_dump --brokers B --topic T [--topic T2 ...] --watermarks [--timeout-ms T]
//
// No consumer group is joined: every partition of every topic is assigned explicitly from its
// first offset. Topics that do not exist yet are waited for. (librdkafka 2.0.2's mock broker
// creates a topic, with 4 partitions, as soon as any client asks for its metadata, so against
// mock_broker this tool's own lookup creates a missing topic.)
// The run stops at the first of:
//   --count N     N records printed
//   --timeout-ms  T ms after start (default 10000)
//   --idle-ms T   T ms without a new record, once at least --min records (default 0) were printed
//   --eof         every partition of every topic has been read up to its end
// and exits 0. Usage errors exit 2, Kafka errors that stop the run exit 1.
//
// Record lines:
//   {"topic","partition","offset","key","value","headers":[[name,value],...],"timestamp_ms","timestamp_type"}
// key and value are strings or null (an empty value is ""). When a key or value is not valid
// UTF-8 it is printed as "key_b64"/"value_b64" (base64) instead, and "key"/"value" are left out.
// A header value that is not valid UTF-8 is printed as {"b64": "..."}. timestamp_type is
// "create_time", "log_append_time" or "none".
// --watermarks prints {"topic","partition","low","high"} per partition of each existing topic, and
// nothing for a topic that does not exist.

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

struct DumpOptions {
  std::string brokers;
  std::vector<std::string> topics;
  std::optional<long long> count;
  long long timeout_ms = 10000;
  std::optional<long long> idle_ms;
  long long min_records = 0;
  bool stop_at_eof = false;
  bool watermarks = false;
  std::string isolation = "read_committed";
  std::vector<std::pair<std::string, std::string>> properties;
};

std::optional<long long> parse_number(const char* text) {
  char* end = nullptr;
  errno = 0;
  long long value = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0) return std::nullopt;
  return value;
}

std::optional<DumpOptions> parse_options(int argc, char** argv) {
  DumpOptions options;
  auto fail = [](const std::string& message) -> std::optional<DumpOptions> {
    std::fprintf(stderr, "kafka_dump: %s\n", message.c_str());
    return std::nullopt;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--watermarks") {
      options.watermarks = true;
      continue;
    }
    if (arg == "--eof") {
      options.stop_at_eof = true;
      continue;
    }
    if (i + 1 >= argc) return fail(std::string(arg) + " needs a value");
    const char* value = argv[++i];
    if (arg == "--brokers") {
      options.brokers = value;
    } else if (arg == "--topic") {
      options.topics.emplace_back(value);
    } else if (arg == "--isolation") {
      options.isolation = value;
      if (options.isolation != "read_committed" && options.isolation != "read_uncommitted") {
        return fail("--isolation wants read_committed or read_uncommitted");
      }
    } else if (arg == "-X") {
      std::string_view property = value;
      auto eq = property.find('=');
      if (eq == std::string_view::npos || eq == 0) return fail("-X wants name=value");
      options.properties.emplace_back(std::string(property.substr(0, eq)),
                                      std::string(property.substr(eq + 1)));
    } else if (arg == "--count" || arg == "--timeout-ms" || arg == "--idle-ms" || arg == "--min") {
      auto number = parse_number(value);
      if (!number) return fail(std::string(arg) + " wants a non-negative number");
      if (arg == "--count") options.count = *number;
      if (arg == "--timeout-ms") options.timeout_ms = *number;
      if (arg == "--idle-ms") options.idle_ms = *number;
      if (arg == "--min") options.min_records = *number;
    } else {
      return fail("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (options.brokers.empty()) return fail("--brokers is required");
  if (options.topics.empty()) return fail("at least one --topic is required");
  return options;
}

bool is_valid_utf8(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Reject overlong forms, surrogates and values beyond U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += len;
  }
  return true;
}

std::string base64(const unsigned char* s, size_t n) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t chunk = static_cast<uint32_t>(s[i]) << 16;
    if (i + 1 < n) chunk |= static_cast<uint32_t>(s[i + 1]) << 8;
    if (i + 2 < n) chunk |= s[i + 2];
    out += kAlphabet[(chunk >> 18) & 63];
    out += kAlphabet[(chunk >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(chunk >> 6) & 63] : '=';
    out += i + 2 < n ? kAlphabet[chunk & 63] : '=';
  }
  return out;
}

// Sets json[name] to the bytes as a string, null when absent, or json[name + "_b64"] when the
// bytes are not UTF-8.
void put_bytes(Json& json, const std::string& name, const void* data, size_t size) {
  if (data == nullptr) {
    json[name] = nullptr;
    return;
  }
  const auto* bytes = static_cast<const unsigned char*>(data);
  if (is_valid_utf8(bytes, size)) {
    json[name] = std::string(static_cast<const char*>(data), size);
  } else {
    json[name + "_b64"] = base64(bytes, size);
  }
}

Json header_value(const void* data, size_t size) {
  if (data == nullptr) return nullptr;
  const auto* bytes = static_cast<const unsigned char*>(data);
  if (is_valid_utf8(bytes, size)) return std::string(static_cast<const char*>(data), size);
  return Json{{"b64", base64(bytes, size)}};
}

Json record_json(const rd_kafka_message_t* msg) {
  Json json;
  json["topic"] = rd_kafka_topic_name(msg->rkt);
  json["partition"] = msg->partition;
  json["offset"] = msg->offset;
  put_bytes(json, "key", msg->key, msg->key_len);
  put_bytes(json, "value", msg->payload, msg->len);
  Json headers = Json::array();
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t idx = 0; rd_kafka_header_get_all(hdrs, idx, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++idx) {
      headers.push_back(Json::array({std::string(name), header_value(value, size)}));
    }
  }
  json["headers"] = std::move(headers);
  rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  int64_t ts = rd_kafka_message_timestamp(msg, &type);
  json["timestamp_ms"] = ts;
  json["timestamp_type"] = type == RD_KAFKA_TIMESTAMP_CREATE_TIME       ? "create_time"
                           : type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? "log_append_time"
                                                                        : "none";
  return json;
}

void print_line(const Json& json) {
  std::string line = json.dump();
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
}

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
};
using Consumer = std::unique_ptr<rd_kafka_t, HandleDeleter>;

// Creates the consumer. On failure prints why and returns nullptr.
Consumer make_consumer(const DumpOptions& options) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", options.brokers},
      // A group id is needed for the consumer poll API; the group is never joined (no subscribe).
      {"group.id", "kafka_dump"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      {"allow.auto.create.topics", "false"},
      {"isolation.level", options.isolation},
      // The mock broker holds an empty fetch for the full wait: keep it short.
      {"fetch.wait.max.ms", "50"},
      {"fetch.error.backoff.ms", "50"},
      {"reconnect.backoff.ms", "50"},
      {"reconnect.backoff.max.ms", "500"},
      {"topic.metadata.refresh.interval.ms", "1000"},
      {"log_level", "3"},
  };
  settings.insert(settings.end(), options.properties.begin(), options.properties.end());
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "kafka_dump: %s\n", errstr);
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    std::fprintf(stderr, "kafka_dump: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return Consumer(rk);
}

// Asks the cluster for a topic's partition count. Returns nullopt when the topic does not exist
// (yet) or the cluster could not be asked within timeout_ms.
std::optional<int> partition_count(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (rkt == nullptr) return std::nullopt;
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  std::optional<int> count;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < md->topic_cnt; ++i) {
      const auto& t = md->topics[i];
      if (topic == t.topic && t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0) {
        count = t.partition_cnt;
      }
    }
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(rkt);
  return count;
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

int print_watermarks(rd_kafka_t* rk, const DumpOptions& options, Clock::time_point deadline) {
  for (const auto& topic : options.topics) {
    auto partitions = partition_count(rk, topic, std::max(1, remaining_ms(deadline)));
    if (!partitions) {
      std::fprintf(stderr, "kafka_dump: topic %s not found\n", topic.c_str());
      continue;
    }
    for (int p = 0; p < *partitions; ++p) {
      int64_t low = 0;
      int64_t high = 0;
      rd_kafka_resp_err_t err =
          rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, std::max(1, remaining_ms(deadline)));
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::fprintf(stderr, "kafka_dump: watermarks of %s/%d: %s\n", topic.c_str(), p, rd_kafka_err2str(err));
        return 1;
      }
      print_line(Json{{"topic", topic}, {"partition", p}, {"low", low}, {"high", high}});
    }
  }
  std::fflush(stdout);
  return 0;
}

// Reads the topics and prints their records until a stop condition of the options holds.
class Dumper {
 public:
  Dumper(rd_kafka_t* rk, const DumpOptions& options)
      : rk_(rk), options_(options), started_(Clock::now()),
        deadline_(started_ + std::chrono::milliseconds(options.timeout_ms)), last_record_(started_) {
    for (const auto& topic : options.topics) unassigned_.insert(topic);
  }

  int run() {
    auto next_metadata_check = Clock::now();
    while (!done()) {
      if (!unassigned_.empty() && Clock::now() >= next_metadata_check) {
        if (int rc = assign_known_topics(); rc != 0) return rc;
        next_metadata_check = Clock::now() + std::chrono::milliseconds(100);
      }
      int wait = std::min(remaining_ms(deadline_), 50);
      rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk_, wait);
      if (msg == nullptr) continue;
      int rc = handle(msg);
      rd_kafka_message_destroy(msg);
      if (rc != 0) return rc;
    }
    std::fflush(stdout);
    return 0;
  }

 private:
  bool done() const {
    auto now = Clock::now();
    if (now >= deadline_) return true;
    if (options_.count && printed_ >= *options_.count) return true;
    if (options_.idle_ms && printed_ >= options_.min_records &&
        now - last_record_ >= std::chrono::milliseconds(*options_.idle_ms)) {
      return true;
    }
    if (options_.stop_at_eof && unassigned_.empty() && at_end_.size() == assigned_count_) return true;
    return false;
  }

  int assign_known_topics() {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(8);
    for (auto it = unassigned_.begin(); it != unassigned_.end();) {
      auto partitions = partition_count(rk_, *it, std::clamp(remaining_ms(deadline_), 1, 1000));
      if (!partitions) {
        ++it;
        continue;
      }
      for (int p = 0; p < *partitions; ++p) {
        rd_kafka_topic_partition_list_add(list, it->c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
      }
      assigned_count_ += static_cast<size_t>(*partitions);
      it = unassigned_.erase(it);
    }
    int rc = 0;
    if (list->cnt > 0) {
      rd_kafka_error_t* error = rd_kafka_incremental_assign(rk_, list);
      if (error != nullptr) {
        std::fprintf(stderr, "kafka_dump: assign: %s\n", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        rc = 1;
      }
    }
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
  }

  int handle(const rd_kafka_message_t* msg) {
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end_.insert({rd_kafka_topic_name(msg->rkt), msg->partition});
      return 0;
    }
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Transient errors (broker down, leader moves) are retried by librdkafka; only report them.
      std::fprintf(stderr, "kafka_dump: %s\n", rd_kafka_message_errstr(msg));
      return 0;
    }
    if (options_.count && printed_ >= *options_.count) return 0;
    at_end_.erase({rd_kafka_topic_name(msg->rkt), msg->partition});
    print_line(record_json(msg));
    ++printed_;
    last_record_ = Clock::now();
    return 0;
  }

  rd_kafka_t* rk_;
  const DumpOptions& options_;
  Clock::time_point started_;
  Clock::time_point deadline_;
  Clock::time_point last_record_;
  std::set<std::string> unassigned_;
  size_t assigned_count_ = 0;
  std::set<std::pair<std::string, int32_t>> at_end_;
  long long printed_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  auto options = parse_options(argc, argv);
  if (!options) return 2;
  Consumer consumer = make_consumer(*options);
  if (!consumer) return 1;
  if (options->watermarks) {
    auto deadline = Clock::now() + std::chrono::milliseconds(options->timeout_ms);
    return print_watermarks(consumer.get(), *options, deadline);
  }
  return Dumper(consumer.get(), *options).run();
}
