// mock_broker: a Kafka-protocol test broker process built on librdkafka's mock cluster.
//
// Usage: mock_broker [--brokers N] [--topic NAME[:PARTITIONS]]... [--default-partitions N]
//
// Prints exactly one line "BOOTSTRAP host:port,..." on stdout once the brokers listen, then reads
// one command per line on stdin and answers "ok" or "error <message>" per line:
//   ping
//   down <broker_id> | up <broker_id> | down-all | up-all
//   rtt <broker_id> <ms>
//   create-topic <name> [<partitions>]
//   produce-errors <count> <error> [<error>...]      one error repeated count times, or count errors
//   request-errors <api_key> <count> <error> [<error>...]
//   clear-errors <api_key>
//   topic-error <topic> <error>                       error returned in the topic's metadata (0 clears)
//   leader <topic> <partition> <broker_id>
// <error> is a number or a librdkafka error name (NOT_LEADER_FOR_PARTITION, MSG_SIZE_TOO_LARGE, ...;
// case-insensitive, with or without the RD_KAFKA_RESP_ERR_ prefix).
// Exits 0 on SIGTERM or SIGINT. At end of input it only stops reading: fd 0 stays open, because a
// broker thread could otherwise be handed fd 0 for a new connection and lose it when it is reused.
//
// Topics a client asks for that do not exist are created by the mock's metadata handler with its
// fixed default of 4 partitions (librdkafka 2.0.2 has no call to change that default), so tests
// that need another count, or one partition for a total order, pass --topic or create-topic.
// --default-partitions (default 1) applies to --topic and create-topic without an explicit count.
// A command's reply comes once the mock applied it; that can take up to a second (the mock's
// control queue is served between its I/O polls).

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

struct TopicSpec {
  std::string name;
  int partitions = 0;  // 0: use --default-partitions
};

struct BrokerOptions {
  int brokers = 1;
  int default_partitions = 1;
  std::vector<TopicSpec> topics;
};

std::optional<long long> parse_integer(std::string_view text) {
  long long value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return std::nullopt;
  }
  return value;
}

// Parses argv. On failure prints the problem to stderr and returns nullopt.
std::optional<BrokerOptions> parse_options(int argc, char** argv) {
  BrokerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: mock_broker [--brokers N] [--topic NAME[:PARTITIONS]]... [--default-partitions N]\n");
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "mock_broker: %s needs a value\n", argv[i]);
      return std::nullopt;
    }
    std::string_view value = argv[++i];
    if (arg == "--brokers" || arg == "--default-partitions") {
      auto number = parse_integer(value);
      if (!number || *number < 1 || *number > 1000) {
        std::fprintf(stderr, "mock_broker: %s wants a number from 1 to 1000, got '%s'\n", argv[i - 1],
                     argv[i]);
        return std::nullopt;
      }
      (arg == "--brokers" ? options.brokers : options.default_partitions) = static_cast<int>(*number);
    } else if (arg == "--topic") {
      TopicSpec topic;
      auto colon = value.rfind(':');
      topic.name = std::string(value.substr(0, colon));
      if (colon != std::string_view::npos) {
        auto number = parse_integer(value.substr(colon + 1));
        if (!number || *number < 1 || *number > 100000) {
          std::fprintf(stderr, "mock_broker: bad partition count in --topic '%s'\n", argv[i]);
          return std::nullopt;
        }
        topic.partitions = static_cast<int>(*number);
      }
      if (topic.name.empty()) {
        std::fprintf(stderr, "mock_broker: empty topic name in --topic '%s'\n", argv[i]);
        return std::nullopt;
      }
      options.topics.push_back(std::move(topic));
    } else {
      std::fprintf(stderr, "mock_broker: unknown argument '%s'\n", argv[i - 1]);
      return std::nullopt;
    }
  }
  return options;
}

// Translates error names and numbers to librdkafka error codes.
class ErrorCodeNames {
 public:
  ErrorCodeNames() {
    const struct rd_kafka_err_desc* descs = nullptr;
    size_t count = 0;
    rd_kafka_get_err_descs(&descs, &count);
    for (size_t i = 0; i < count; ++i) {
      if (descs[i].name != nullptr) {
        entries_.push_back({upper(descs[i].name), descs[i].code});
      }
    }
  }

  // Returns the code for "29", "TOPIC_AUTHORIZATION_FAILED" or "rd_kafka_resp_err_topic_authorization_failed";
  // nullopt for anything else.
  std::optional<rd_kafka_resp_err_t> lookup(std::string_view text) const {
    if (auto number = parse_integer(text)) {
      return static_cast<rd_kafka_resp_err_t>(*number);
    }
    std::string name = upper(text);
    constexpr std::string_view prefix = "RD_KAFKA_RESP_ERR_";
    if (name.starts_with(prefix)) {
      name.erase(0, prefix.size());
    }
    for (const auto& entry : entries_) {
      if (entry.name == name) {
        return entry.code;
      }
    }
    return std::nullopt;
  }

 private:
  struct Entry {
    std::string name;
    rd_kafka_resp_err_t code;
  };

  static std::string upper(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::toupper(c); });
    return out;
  }

  std::vector<Entry> entries_;
};

// Owns the librdkafka handle that hosts the mock cluster, and the cluster.
// Every call returns an empty string on success, else a one-line description of the failure.
class MockCluster {
 public:
  // Starts `brokers` mock brokers on loopback. On failure returns nullptr and fills *error.
  static std::unique_ptr<MockCluster> start(int brokers, std::string* error) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // The hosting handle never talks to the brokers; keep its own logging out of our stderr.
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == nullptr) {
      *error = std::string("rd_kafka_new: ") + errstr;
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
    rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
    if (cluster == nullptr) {
      *error = "rd_kafka_mock_cluster_new failed";
      rd_kafka_destroy(rk);
      return nullptr;
    }
    return std::unique_ptr<MockCluster>(new MockCluster(rk, cluster, brokers));
  }

  ~MockCluster() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(rk_);
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }
  int broker_count() const { return brokers_; }

  std::string create_topic(const std::string& name, int partitions) {
    int replication = std::min(3, brokers_);
    return describe(rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, replication));
  }
  std::string set_down(int broker_id) { return describe(rd_kafka_mock_broker_set_down(cluster_, broker_id)); }
  std::string set_up(int broker_id) { return describe(rd_kafka_mock_broker_set_up(cluster_, broker_id)); }
  std::string set_rtt(int broker_id, int ms) {
    return describe(rd_kafka_mock_broker_set_rtt(cluster_, broker_id, ms));
  }
  std::string set_leader(const std::string& topic, int partition, int broker_id) {
    return describe(rd_kafka_mock_partition_set_leader(cluster_, topic.c_str(), partition, broker_id));
  }
  std::string push_request_errors(int api_key, const std::vector<rd_kafka_resp_err_t>& errors) {
    rd_kafka_mock_push_request_errors_array(cluster_, static_cast<int16_t>(api_key), errors.size(),
                                            errors.data());
    return {};
  }
  std::string clear_request_errors(int api_key) {
    rd_kafka_mock_clear_request_errors(cluster_, static_cast<int16_t>(api_key));
    return {};
  }
  std::string set_topic_error(const std::string& topic, rd_kafka_resp_err_t err) {
    rd_kafka_mock_topic_set_error(cluster_, topic.c_str(), err);
    return {};
  }

 private:
  MockCluster(rd_kafka_t* rk, rd_kafka_mock_cluster_t* cluster, int brokers)
      : rk_(rk), cluster_(cluster), brokers_(brokers) {}

  static std::string describe(rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      return {};
    }
    return std::string(rd_kafka_err2name(err)) + ": " + rd_kafka_err2str(err);
  }

  rd_kafka_t* rk_;
  rd_kafka_mock_cluster_t* cluster_;
  int brokers_;
};

// Executes one command line against the cluster and returns the reply line ("ok" / "error ...").
class CommandInterpreter {
 public:
  CommandInterpreter(MockCluster& cluster, int default_partitions)
      : cluster_(cluster), default_partitions_(default_partitions) {}

  std::string execute(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string word; in >> word;) {
      words.push_back(word);
    }
    if (words.empty()) {
      return "error empty command";
    }
    std::string failure = dispatch(words);
    return failure.empty() ? "ok" : "error " + failure;
  }

 private:
  static constexpr int kProduceApiKey = 0;

  std::string dispatch(const std::vector<std::string>& words) {
    const std::string& verb = words[0];
    const size_t args = words.size() - 1;
    if (verb == "ping" && args == 0) {
      return {};
    }
    if ((verb == "down" || verb == "up") && args == 1) {
      auto id = number(words[1]);
      if (!id) return "broker id must be a number";
      return verb == "down" ? cluster_.set_down(*id) : cluster_.set_up(*id);
    }
    if ((verb == "down-all" || verb == "up-all") && args == 0) {
      // Mock broker ids run from 1 to the broker count.
      for (int id = 1; id <= cluster_.broker_count(); ++id) {
        std::string failure = verb == "down-all" ? cluster_.set_down(id) : cluster_.set_up(id);
        if (!failure.empty()) return "broker " + std::to_string(id) + ": " + failure;
      }
      return {};
    }
    if (verb == "rtt" && args == 2) {
      auto id = number(words[1]);
      auto ms = number(words[2]);
      if (!id || !ms || *ms < 0) return "usage: rtt <broker_id> <ms>";
      return cluster_.set_rtt(*id, *ms);
    }
    if (verb == "create-topic" && (args == 1 || args == 2)) {
      int partitions = default_partitions_;
      if (args == 2) {
        auto count = number(words[2]);
        if (!count || *count < 1) return "partition count must be a positive number";
        partitions = *count;
      }
      return cluster_.create_topic(words[1], partitions);
    }
    if (verb == "produce-errors" && args >= 2) {
      return push_errors(kProduceApiKey, words, 1);
    }
    if (verb == "request-errors" && args >= 3) {
      auto api_key = number(words[1]);
      if (!api_key || *api_key < 0) return "api key must be a number";
      return push_errors(*api_key, words, 2);
    }
    if (verb == "clear-errors" && args == 1) {
      auto api_key = number(words[1]);
      if (!api_key || *api_key < 0) return "api key must be a number";
      return cluster_.clear_request_errors(*api_key);
    }
    if (verb == "topic-error" && args == 2) {
      auto err = names_.lookup(words[2]);
      if (!err) return "unknown error '" + words[2] + "'";
      return cluster_.set_topic_error(words[1], *err);
    }
    if (verb == "leader" && args == 3) {
      auto partition = number(words[2]);
      auto id = number(words[3]);
      if (!partition || !id) return "usage: leader <topic> <partition> <broker_id>";
      return cluster_.set_leader(words[1], *partition, *id);
    }
    return "unknown command or wrong argument count: '" + verb + "'";
  }

  // words[first] is the count, the rest are error names or codes: one repeated count times,
  // or exactly count of them.
  std::string push_errors(int api_key, const std::vector<std::string>& words, size_t first) {
    auto count = number(words[first]);
    if (!count || *count < 1) return "error count must be a positive number";
    std::vector<rd_kafka_resp_err_t> codes;
    for (size_t i = first + 1; i < words.size(); ++i) {
      auto err = names_.lookup(words[i]);
      if (!err) return "unknown error '" + words[i] + "'";
      codes.push_back(*err);
    }
    if (codes.size() == 1) {
      codes.assign(static_cast<size_t>(*count), codes[0]);
    } else if (codes.size() != static_cast<size_t>(*count)) {
      return "give one error or exactly <count> errors";
    }
    return cluster_.push_request_errors(api_key, codes);
  }

  static std::optional<int> number(const std::string& text) {
    auto value = parse_integer(text);
    if (!value || *value < -2147483648LL || *value > 2147483647LL) return std::nullopt;
    return static_cast<int>(*value);
  }

  MockCluster& cluster_;
  int default_partitions_;
  ErrorCodeNames names_;
};

// Splits bytes read from stdin into lines.
class LineReader {
 public:
  // Appends data; returns the complete lines now available (without line ends).
  std::vector<std::string> feed(const char* data, size_t size) {
    buffer_.append(data, size);
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t nl; (nl = buffer_.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string line = buffer_.substr(start, nl - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines.push_back(std::move(line));
    }
    buffer_.erase(0, start);
    return lines;
  }
  // The unterminated last line at end of input, if any.
  std::string rest() { return std::exchange(buffer_, {}); }

 private:
  std::string buffer_;
};

void reply(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Serves stdin commands until SIGTERM/SIGINT. Returns the process exit status.
int serve(CommandInterpreter& interpreter, int signal_fd) {
  LineReader lines;
  bool stdin_open = true;
  char buf[4096];
  for (;;) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    int rc = ::poll(fds, stdin_open ? 2 : 1, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      std::perror("mock_broker: poll");
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      return 0;
    }
    if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        stdin_open = false;
        std::string last = lines.rest();
        if (!last.empty()) reply(interpreter.execute(last));
        continue;
      }
      for (const auto& line : lines.feed(buf, static_cast<size_t>(n))) {
        reply(interpreter.execute(line));
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parse_options(argc, argv);
  if (!options) return 2;

  // Block the stop signals before librdkafka starts its threads, so that they inherit the mask
  // and the signals are only ever read from the signalfd.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int signal_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::perror("mock_broker: signalfd");
    return 1;
  }

  std::string error;
  auto cluster = MockCluster::start(options->brokers, &error);
  if (!cluster) {
    std::fprintf(stderr, "mock_broker: %s\n", error.c_str());
    return 1;
  }
  for (const auto& topic : options->topics) {
    int partitions = topic.partitions > 0 ? topic.partitions : options->default_partitions;
    std::string failure = cluster->create_topic(topic.name, partitions);
    if (!failure.empty()) {
      std::fprintf(stderr, "mock_broker: creating topic %s: %s\n", topic.name.c_str(), failure.c_str());
      return 1;
    }
  }
  reply("BOOTSTRAP " + cluster->bootstraps());

  CommandInterpreter interpreter(*cluster, options->default_partitions);
  int status = serve(interpreter, signal_fd);
  cluster.reset();
  ::close(signal_fd);
  return status;
}
