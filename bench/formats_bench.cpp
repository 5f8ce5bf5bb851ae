// Cost per event of building a Kafka record in each format (and with a json: key), against raw,
// for a ~100-byte and a ~2 KB JSON event. Compare the figures with raw of the same size: the
// difference is what the format costs.
#include <benchmark/benchmark.h>

#include <string>

#include "sink/record_builder.h"

namespace {

using sse2kafka::config::KeyMode;
using sse2kafka::config::RecordFormat;
using sse2kafka::sink::EventView;
using sse2kafka::sink::RecordBuilder;

// A change-feed style event of about `size` bytes: a few fixed members and a text member
// (with the odd character that needs escaping) padded to length.
std::string JsonEvent(std::size_t size) {
  std::string event =
      R"({"meta":{"id":"3f2c9b1e-7a4d"},"rev":1234567,"bot":false,"comment":")";
  const std::string filler = "Fixed a typo in the \\\"History\\\" section; see talk page. ";
  while (event.size() + filler.size() + 2 < size) event += filler;
  event.append(size > event.size() + 2 ? size - event.size() - 2 : 0, 'x');
  event += "\"}";
  return event;
}

struct Setup {
  RecordFormat format;
  KeyMode key;
  const char* content_type;  // configured cloudevents.content_type; empty: detect
};

void BuildRecords(benchmark::State& state, Setup setup) {
  sse2kafka::config::StreamConfig stream;
  stream.name = "wiki";
  stream.url = "https://stream.example.org/v2/stream/recentchange";
  stream.topic = "wiki.recentchange";
  stream.format = setup.format;
  stream.key = setup.key;
  stream.key_pointer = "/meta/id";
  stream.cloudevents.type_prefix = "org.example.";
  stream.cloudevents.content_type = setup.content_type;
  stream.record_headers = {{"source", "wikimedia"}};
  RecordBuilder builder(stream, stream.url);

  const std::string data = JsonEvent(static_cast<std::size_t>(state.range(0)));
  sse2kafka::sink::JsonData check;
  if (data.size() != static_cast<std::size_t>(state.range(0)) || !check.Parse(data)) {
    state.SkipWithError("the generated event is not JSON of the asked size");
    return;
  }
  EventView event;
  event.type = "edit";
  event.data = data;
  event.last_event_id = R"([{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":1}])";
  event.id_in_block = true;
  event.dispatch_time_ms = 1795468072123;
  for (auto _ : state) {
    ++event.sequence;
    const auto& record = builder.Build(event);
    benchmark::DoNotOptimize(record.value.data());
    benchmark::DoNotOptimize(record.key);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(data.size()));
}

}  // namespace

BENCHMARK_CAPTURE(BuildRecords, raw, Setup{RecordFormat::kRaw, KeyMode::kStream, ""})
    ->Arg(100)->Arg(2048);
BENCHMARK_CAPTURE(BuildRecords, raw_json_key, Setup{RecordFormat::kRaw, KeyMode::kJsonPointer, ""})
    ->Arg(100)->Arg(2048);
BENCHMARK_CAPTURE(BuildRecords, ce_binary_detect,
                  Setup{RecordFormat::kCloudEventsBinary, KeyMode::kStream, ""})
    ->Arg(100)->Arg(2048);
BENCHMARK_CAPTURE(BuildRecords, ce_binary_configured,
                  Setup{RecordFormat::kCloudEventsBinary, KeyMode::kStream, "application/json"})
    ->Arg(100)->Arg(2048);
BENCHMARK_CAPTURE(BuildRecords, ce_structured,
                  Setup{RecordFormat::kCloudEventsStructured, KeyMode::kStream, ""})
    ->Arg(100)->Arg(2048);
BENCHMARK_CAPTURE(BuildRecords, ce_structured_json_key,
                  Setup{RecordFormat::kCloudEventsStructured, KeyMode::kJsonPointer, ""})
    ->Arg(100)->Arg(2048);
BENCHMARK_CAPTURE(BuildRecords, envelope, Setup{RecordFormat::kEnvelope, KeyMode::kStream, ""})
    ->Arg(100)->Arg(2048);

BENCHMARK_MAIN();
