// What a StreamPipeline needs from the bridge that runs it: the loop, the HTTP client, and a
// way to hand records to Kafka that keeps the process-wide in-flight accounting.
#pragma once

#include <cstdint>
#include <string>

#include "http/event_loop.h"
#include "http/http_client.h"
#include "sink/kafka_producer.h"

namespace sse2kafka::bridge {

class PipelineHost {
 public:
  virtual ~PipelineHost() = default;
  virtual http::EventLoop& loop() = 0;
  virtual http::HttpClient& http() = 0;
  // Hands a record to the producer. kQueued records are counted in flight until their
  // delivery report arrives.
  virtual sink::ProduceResult Produce(const sink::OutgoingRecord& record, std::string* error) = 0;
  // True while the events or bytes in flight are over the configured limit: pipelines stop
  // reading until the host calls StreamPipeline::ResumeReading.
  virtual bool backpressured() const = 0;
  // True when records go into Kafka transactions (exactly-once): a failed delivery then dooms the
  // whole transaction, so the pipeline does not rewind by itself; the host aborts and calls
  // StreamPipeline::RewindTo with the last committed checkpoint.
  virtual bool transactional() const { return false; }
  // The pipeline's delivery tokens carry its slot in the high bits.
  static uint64_t Token(uint32_t slot, uint64_t sequence) {
    return (static_cast<uint64_t>(slot) << kSequenceBits) | (sequence & kSequenceMask);
  }
  static uint32_t SlotOf(uint64_t token) { return static_cast<uint32_t>(token >> kSequenceBits); }
  static uint64_t SequenceOf(uint64_t token) { return token & kSequenceMask; }
  static constexpr int kSequenceBits = 40;  // a trillion events per stream per process run
  static constexpr uint64_t kSequenceMask = (uint64_t{1} << kSequenceBits) - 1;
};

}  // namespace sse2kafka::bridge
