// txn_probe: a scripted Kafka producer, for tests that drive a Kafka transaction step by step.
//
// Usage: txn_probe --brokers B --topic T [--transactional-id ID] [--partition N] [--timeout-ms MS]
//                  [-X name=value ...] STEP...
// Steps, run in order:
//   init                init_transactions()
//   begin               begin_transaction()
//   produce:V1,V2,...   one record per value (no key) to --topic, partition --partition (default 0),
//   produce@P:V1,...    or partition P; waits until every record is acknowledged or failed
//   commit | abort      commit_transaction() / abort_transaction()
//   wait                prints its step line, then blocks until a line arrives on stdin (fails
//                       at end of input)
//   exit                leaves at once: no commit, no abort, no flush (as if the process died)
// Without --transactional-id the producer is a plain (non-transactional) one.
// Every step prints one JSON object on stdout, e.g.
//   {"step":"produce","ok":true,"offsets":[0,1]}
//   {"step":"commit","ok":false,"error":"_FENCED","code":-144,"message":"...","fatal":true,
//    "retriable":false,"abortable":false,"fatal_error":"_FENCED"}
// "error"/"code" name librdkafka's error (for produce: the first failed delivery); "fatal",
// "retriable" and "abortable" (txn_requires_abort) are its flags; "fatal_error" is set when the
// producer as a whole is in a fatal state (rd_kafka_fatal_error), whatever the step.
// Exits 0 when every step succeeded, 1 at the first failed step (later steps do not run), 2 on
// usage errors.

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

struct ProbeOptions {
  std::string brokers;
  std::string topic;
  std::string transactional_id;
  int partition = 0;
  int timeout_ms = 10000;
  std::vector<std::pair<std::string, std::string>> properties;
  std::vector<std::string> steps;
};

std::optional<int> parse_int(std::string_view text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  std::string copy(text);
  long value = std::strtol(copy.c_str(), &end, 10);
  if (*end != '\0' || value < -1 || value > 100000000) return std::nullopt;
  return static_cast<int>(value);
}

// Parses argv; on failure prints the problem to stderr and returns nullopt.
std::optional<ProbeOptions> parse_options(int argc, char** argv) {
  ProbeOptions options;
  auto fail = [](const std::string& message) -> std::optional<ProbeOptions> {
    std::fprintf(stderr, "txn_probe: %s\n", message.c_str());
    return std::nullopt;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!arg.starts_with("-")) {
      options.steps.emplace_back(arg);
      continue;
    }
    if (i + 1 >= argc) return fail(std::string(arg) + " needs a value");
    std::string_view value = argv[++i];
    if (arg == "--brokers") {
      options.brokers = value;
    } else if (arg == "--topic") {
      options.topic = value;
    } else if (arg == "--transactional-id") {
      options.transactional_id = value;
    } else if (arg == "--partition" || arg == "--timeout-ms") {
      auto number = parse_int(value);
      if (!number || *number < 0) return fail(std::string(arg) + " wants a non-negative number");
      (arg == "--partition" ? options.partition : options.timeout_ms) = *number;
    } else if (arg == "-X") {
      auto eq = value.find('=');
      if (eq == std::string_view::npos || eq == 0) return fail("-X wants name=value");
      options.properties.emplace_back(std::string(value.substr(0, eq)), std::string(value.substr(eq + 1)));
    } else {
      return fail("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (options.brokers.empty()) return fail("--brokers is required");
  if (options.steps.empty()) return fail("no steps given");
  return options;
}

// What a produce step sent: one slot per record, filled by the delivery report callback.
struct Delivery {
  bool done = false;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  int64_t offset = -1;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  auto* slot = static_cast<Delivery*>(msg->_private);
  if (slot == nullptr) return;
  slot->done = true;
  slot->err = msg->err;
  slot->offset = msg->offset;
}

struct ProducerDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using ProducerHandle = std::unique_ptr<rd_kafka_t, ProducerDeleter>;

// Creates the producer. On failure prints why and returns nullptr.
ProducerHandle make_producer(const ProbeOptions& options) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", options.brokers},
      {"linger.ms", "0"},
      {"reconnect.backoff.ms", "50"},
      {"reconnect.backoff.max.ms", "500"},
  };
  if (options.transactional_id.empty()) {
    settings.emplace_back("message.timeout.ms", std::to_string(options.timeout_ms));
  } else {
    // librdkafka derives message.timeout.ms from transaction.timeout.ms (it may not exceed it).
    settings.emplace_back("transactional.id", options.transactional_id);
  }
  settings.insert(settings.end(), options.properties.begin(), options.properties.end());
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "txn_probe: %s\n", errstr);
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    std::fprintf(stderr, "txn_probe: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return ProducerHandle(rk);
}

// Runs steps against one producer and prints a JSON line per step.
class StepRunner {
 public:
  StepRunner(rd_kafka_t* rk, const ProbeOptions& options) : rk_(rk), options_(options) {}

  // Runs one step; returns whether it succeeded (its line is printed either way).
  bool run(const std::string& step) {
    if (step == "init") return report(step, rd_kafka_init_transactions(rk_, options_.timeout_ms));
    if (step == "begin") return report(step, rd_kafka_begin_transaction(rk_));
    if (step == "commit") return report(step, rd_kafka_commit_transaction(rk_, options_.timeout_ms));
    if (step == "abort") return report(step, rd_kafka_abort_transaction(rk_, options_.timeout_ms));
    if (step == "wait") return wait_for_stdin();
    if (step == "exit") {
      print(Json{{"step", "exit"}, {"ok", true}});
      std::fflush(stdout);
      std::_Exit(0);
    }
    if (step.starts_with("produce")) return produce(step);
    print(Json{{"step", step}, {"ok", false}, {"error", "unknown step"}});
    return false;
  }

 private:
  // Takes ownership of error (may be null: success).
  bool report(const std::string& step, rd_kafka_error_t* error) {
    Json line{{"step", step}, {"ok", error == nullptr}};
    if (error != nullptr) {
      line["error"] = rd_kafka_error_name(error);
      line["code"] = static_cast<int>(rd_kafka_error_code(error));
      line["message"] = rd_kafka_error_string(error);
      line["fatal"] = rd_kafka_error_is_fatal(error) != 0;
      line["retriable"] = rd_kafka_error_is_retriable(error) != 0;
      line["abortable"] = rd_kafka_error_txn_requires_abort(error) != 0;
      rd_kafka_error_destroy(error);
    }
    add_fatal_state(line);
    print(line);
    return line["ok"].get<bool>();
  }

  // "produce:a,b" or "produce@2:a,b".
  bool produce(const std::string& step) {
    auto colon = step.find(':');
    int partition = options_.partition;
    if (colon == std::string::npos) {
      print(Json{{"step", step}, {"ok", false}, {"error", "produce wants produce:V1,V2,..."}});
      return false;
    }
    if (step.compare(0, 8, "produce@") == 0) {
      auto number = parse_int(std::string_view(step).substr(8, colon - 8));
      if (!number) {
        print(Json{{"step", step}, {"ok", false}, {"error", "bad partition in produce@P:"}});
        return false;
      }
      partition = *number;
    }
    std::vector<std::string> values;
    std::string_view rest = std::string_view(step).substr(colon + 1);
    for (size_t start = 0; start <= rest.size();) {
      size_t comma = rest.find(',', start);
      if (comma == std::string_view::npos) comma = rest.size();
      values.emplace_back(rest.substr(start, comma - start));
      start = comma + 1;
    }
    std::vector<Delivery> slots(values.size());
    Json line{{"step", "produce"}};
    for (size_t i = 0; i < values.size(); ++i) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(options_.topic.c_str()), RD_KAFKA_V_PARTITION(partition),
          RD_KAFKA_V_VALUE(values[i].data(), values[i].size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_OPAQUE(&slots[i]), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        slots[i].done = true;
        slots[i].err = err;
      }
    }
    auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms + 5000);
    while (!all_done(slots) && Clock::now() < deadline) {
      rd_kafka_poll(rk_, 50);
    }
    Json offsets = Json::array();
    std::optional<rd_kafka_resp_err_t> failure;
    for (const auto& slot : slots) {
      offsets.push_back(slot.offset);
      if (!slot.done && !failure) failure = RD_KAFKA_RESP_ERR__TIMED_OUT;
      if (slot.done && slot.err != RD_KAFKA_RESP_ERR_NO_ERROR && !failure) failure = slot.err;
    }
    line["ok"] = !failure.has_value();
    line["offsets"] = std::move(offsets);
    if (failure) {
      line["error"] = rd_kafka_err2name(*failure);
      line["code"] = static_cast<int>(*failure);
      line["message"] = rd_kafka_err2str(*failure);
    }
    add_fatal_state(line);
    print(line);
    return !failure.has_value();
  }

  bool wait_for_stdin() {
    print(Json{{"step", "wait"}, {"ok", true}});
    std::string ignored;
    if (!std::getline(std::cin, ignored)) {
      print(Json{{"step", "wait"}, {"ok", false}, {"error", "stdin closed"}});
      return false;
    }
    return true;
  }

  void add_fatal_state(Json& line) {
    char reason[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(rk_, reason, sizeof reason);
    if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) {
      line["fatal_error"] = rd_kafka_err2name(fatal);
      line["fatal_reason"] = reason;
    }
  }

  static bool all_done(const std::vector<Delivery>& slots) {
    for (const auto& slot : slots) {
      if (!slot.done) return false;
    }
    return true;
  }

  static void print(const Json& line) {
    std::string text = line.dump();
    text += '\n';
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }

  rd_kafka_t* rk_;
  const ProbeOptions& options_;
};

}  // namespace

int main(int argc, char** argv) {
  auto options = parse_options(argc, argv);
  if (!options) return 2;
  ProducerHandle producer = make_producer(*options);
  if (!producer) return 2;
  StepRunner runner(producer.get(), *options);
  for (const auto& step : options->steps) {
    if (!runner.run(step)) return 1;
  }
  return 0;
}
