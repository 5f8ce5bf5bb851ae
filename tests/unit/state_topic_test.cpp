// The state topic: Kafka's murmur2 partitioning (known vectors, and librdkafka's own partitioner
// as the judge), the checkpoint value, creating the topic and reading checkpoints back.
//
// Brokers: librdkafka's mock cluster (EmbeddedCluster) for metadata, produce and fetch; it has no
// CreateTopics, no DescribeConfigs and names no controller, so the creation paths run against
// FakeAdminBroker below, a single-broker Kafka protocol server that speaks just ApiVersions,
// Metadata, CreateTopics and DescribeConfigs at the versions librdkafka 2.0.2 negotiates.
#include "sink/state_topic.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sink/embedded_cluster.h"

namespace sse2kafka::sink {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

long long MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

// ---------------------------------------------------------------------------------------------
// FakeAdminBroker

// Big-endian Kafka protocol primitives (non-flexible versions only).
class ProtocolWriter {
 public:
  void Int8(int8_t v) { bytes_.push_back(static_cast<char>(v)); }
  void Int16(int16_t v) { Unsigned(static_cast<uint16_t>(v), 2); }
  void Int32(int32_t v) { Unsigned(static_cast<uint32_t>(v), 4); }
  void Bool(bool v) { Int8(v ? 1 : 0); }
  void String(const std::string& s) {
    Int16(static_cast<int16_t>(s.size()));
    bytes_ += s;
  }
  void NullableString(const std::optional<std::string>& s) {
    if (s) {
      String(*s);
    } else {
      Int16(-1);
    }
  }
  const std::string& bytes() const { return bytes_; }

 private:
  void Unsigned(uint32_t v, int size) {
    for (int shift = (size - 1) * 8; shift >= 0; shift -= 8) bytes_.push_back(static_cast<char>((v >> shift) & 0xff));
  }
  std::string bytes_;
};

class ProtocolReader {
 public:
  explicit ProtocolReader(std::string_view bytes) : bytes_(bytes) {}
  int8_t Int8() { return static_cast<int8_t>(Unsigned(1)); }
  int16_t Int16() { return static_cast<int16_t>(Unsigned(2)); }
  int32_t Int32() { return static_cast<int32_t>(Unsigned(4)); }
  bool Bool() { return Int8() != 0; }
  std::optional<std::string> NullableString() {
    const int16_t size = Int16();
    if (size < 0) return std::nullopt;
    if (!Have(static_cast<std::size_t>(size))) return std::string();
    std::string s(bytes_.substr(at_, static_cast<std::size_t>(size)));
    at_ += static_cast<std::size_t>(size);
    return s;
  }
  std::string String() { return NullableString().value_or(""); }
  bool ok() const { return ok_; }

 private:
  bool Have(std::size_t n) {
    if (bytes_.size() - at_ < n) ok_ = false;
    return ok_;
  }
  uint32_t Unsigned(int size) {
    if (!Have(static_cast<std::size_t>(size))) return 0;
    uint32_t v = 0;
    for (int i = 0; i < size; ++i) v = v << 8 | static_cast<unsigned char>(bytes_[at_++]);
    return v;
  }
  std::string_view bytes_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

constexpr int16_t kApiMetadata = 3;
constexpr int16_t kApiVersions = 18;
constexpr int16_t kApiCreateTopics = 19;
constexpr int16_t kApiDescribeConfigs = 32;
constexpr int16_t kUnknownTopicOrPartition = 3;
constexpr int16_t kUnsupportedVersion = 35;
constexpr int16_t kTopicAlreadyExists = 36;
constexpr int16_t kNotController = 41;
constexpr int16_t kPolicyViolation = 44;
constexpr int16_t kTopicAuthorizationFailed = 29;
constexpr int32_t kFakeBrokerId = 1;

// One broker (id 1, also the controller) holding topic definitions only.
class FakeAdminBroker {
 public:
  struct Topic {
    int32_t partitions = 1;
    std::string cleanup_policy = "delete";
  };
  struct CreateRequest {
    std::string name;
    int32_t partitions = 0;
    int16_t replication_factor = 0;
    std::map<std::string, std::string> configs;
  };
  // How the broker answers CreateTopics (each answer is used once, then it creates normally).
  struct CreateAnswer {
    int16_t error = 0;
    std::string message;
    std::optional<Topic> created_by_someone_else;  // the topic appears as if another client made it
  };

  static std::unique_ptr<FakeAdminBroker> Start() {
    std::unique_ptr<FakeAdminBroker> broker(new FakeAdminBroker());
    broker->listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (broker->listener_ < 0 || bind(broker->listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(broker->listener_, 16) != 0 ||
        getsockname(broker->listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        pipe2(broker->wake_, O_CLOEXEC) != 0) {
      return nullptr;
    }
    broker->port_ = ntohs(address.sin_port);
    broker->thread_ = std::thread([raw = broker.get()] { raw->Run(); });
    return broker;
  }

  ~FakeAdminBroker() {
    stop_ = true;
    if (wake_[1] >= 0 && write(wake_[1], "x", 1) < 0) std::cerr << "fake broker: cannot wake its thread\n";
    if (thread_.joinable()) thread_.join();
    for (const auto& [fd, buffer] : clients_) close(fd);
    for (int fd : {listener_, wake_[0], wake_[1]}) {
      if (fd >= 0) close(fd);
    }
  }

  std::string bootstrap_servers() const { return "127.0.0.1:" + std::to_string(port_); }

  void AddTopic(const std::string& name, Topic topic) {
    std::lock_guard lock(mutex_);
    topics_[name] = std::move(topic);
  }
  void AnswerNextCreate(CreateAnswer answer) {
    std::lock_guard lock(mutex_);
    create_answers_.push_back(std::move(answer));
  }
  void RefuseAllCreates(int16_t error, std::string message) {
    std::lock_guard lock(mutex_);
    refuse_all_creates_ = CreateAnswer{error, std::move(message), std::nullopt};
  }
  void FailDescribeConfigs(int16_t error, std::string message) {
    std::lock_guard lock(mutex_);
    describe_error_ = std::make_pair(error, std::move(message));
  }
  std::vector<CreateRequest> create_requests() const {
    std::lock_guard lock(mutex_);
    return create_requests_;
  }
  std::optional<Topic> topic(const std::string& name) const {
    std::lock_guard lock(mutex_);
    auto it = topics_.find(name);
    return it == topics_.end() ? std::nullopt : std::optional<Topic>(it->second);
  }

 private:
  FakeAdminBroker() = default;

  void Run() {
    // Bounded by the destructor: it sets stop_ and wakes the poll.
    while (!stop_) {
      std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
      for (const auto& [fd, buffer] : clients_) fds.push_back({fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), 200) <= 0) continue;
      if (fds[1].revents & POLLIN) {
        const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client >= 0) clients_[client];
      }
      for (std::size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        if (!Serve(fds[i].fd)) {
          close(fds[i].fd);
          clients_.erase(fds[i].fd);
        }
      }
    }
  }

  // Reads what the client sent and answers every complete request; false when it is gone.
  bool Serve(int fd) {
    char chunk[65536];
    const ssize_t got = read(fd, chunk, sizeof chunk);
    if (got <= 0) return false;
    std::string& buffer = clients_[fd];
    buffer.append(chunk, static_cast<std::size_t>(got));
    while (buffer.size() >= 4) {
      ProtocolReader size_reader(buffer);
      const int32_t size = size_reader.Int32();
      if (size < 0 || buffer.size() < 4 + static_cast<std::size_t>(size)) break;
      const std::string request = buffer.substr(4, static_cast<std::size_t>(size));
      buffer.erase(0, 4 + static_cast<std::size_t>(size));
      std::optional<std::string> body = Answer(request);
      if (!body) return false;
      ProtocolWriter frame;
      frame.Int32(static_cast<int32_t>(body->size()));
      std::string out = frame.bytes() + *body;
      for (std::size_t sent = 0; sent < out.size();) {
        const ssize_t n = write(fd, out.data() + sent, out.size() - sent);
        if (n <= 0) return false;
        sent += static_cast<std::size_t>(n);
      }
    }
    return true;
  }

  // The response (correlation id and body) to one request; nullopt closes the connection.
  std::optional<std::string> Answer(const std::string& request) {
    ProtocolReader in(request);
    const int16_t api_key = in.Int16();
    const int16_t api_version = in.Int16();
    const int32_t correlation_id = in.Int32();
    in.NullableString();  // client id
    ProtocolWriter out;
    out.Int32(correlation_id);
    std::lock_guard lock(mutex_);
    switch (api_key) {
      case kApiVersions:
        WriteApiVersions(api_version, out);
        return out.bytes();
      case kApiMetadata:
        if (!WriteMetadata(api_version, in, out)) return std::nullopt;
        return out.bytes();
      case kApiCreateTopics:
        if (!WriteCreateTopics(api_version, in, out)) return std::nullopt;
        return out.bytes();
      case kApiDescribeConfigs:
        if (!WriteDescribeConfigs(in, out)) return std::nullopt;
        return out.bytes();
      default:
        return std::nullopt;
    }
  }

  static void WriteApiVersions(int16_t version, ProtocolWriter& out) {
    // A newer ApiVersions than v0 is answered in v0 with UNSUPPORTED_VERSION (KIP-511), and the
    // client asks again with v0.
    if (version > 0) {
      out.Int16(kUnsupportedVersion);
      out.Int32(1);
      for (int16_t v : {kApiVersions, int16_t{0}, int16_t{0}}) out.Int16(v);
      return;
    }
    const int16_t apis[][3] = {
        {kApiVersions, 0, 0}, {kApiMetadata, 0, 1}, {kApiCreateTopics, 0, 4}, {kApiDescribeConfigs, 0, 0}};
    out.Int16(0);
    out.Int32(static_cast<int32_t>(std::size(apis)));
    for (const auto& api : apis) {
      for (int16_t v : api) out.Int16(v);
    }
  }

  bool WriteMetadata(int16_t version, ProtocolReader& in, ProtocolWriter& out) {
    const int32_t requested = in.Int32();
    std::vector<std::string> names;
    for (int32_t i = 0; i < requested; ++i) names.push_back(in.String());
    if (!in.ok()) return false;
    const bool all = requested < 0 || (version == 0 && requested == 0);
    if (all) {
      for (const auto& [name, topic] : topics_) names.push_back(name);
    }
    out.Int32(1);  // brokers
    out.Int32(kFakeBrokerId);
    out.String("127.0.0.1");
    out.Int32(port_);
    if (version >= 1) {
      out.NullableString(std::nullopt);  // rack
      out.Int32(kFakeBrokerId);          // controller
    }
    out.Int32(static_cast<int32_t>(names.size()));
    for (const std::string& name : names) {
      auto it = topics_.find(name);
      out.Int16(it == topics_.end() ? kUnknownTopicOrPartition : int16_t{0});
      out.String(name);
      if (version >= 1) out.Bool(false);  // internal
      const int32_t partitions = it == topics_.end() ? 0 : it->second.partitions;
      out.Int32(partitions);
      for (int32_t p = 0; p < partitions; ++p) {
        out.Int16(0);
        out.Int32(p);
        out.Int32(kFakeBrokerId);  // leader
        out.Int32(1);              // replicas
        out.Int32(kFakeBrokerId);
        out.Int32(1);  // in-sync replicas
        out.Int32(kFakeBrokerId);
      }
    }
    return true;
  }

  bool WriteCreateTopics(int16_t version, ProtocolReader& in, ProtocolWriter& out) {
    std::vector<CreateRequest> requests;
    const int32_t count = in.Int32();
    for (int32_t i = 0; i < count && in.ok(); ++i) {
      CreateRequest request;
      request.name = in.String();
      request.partitions = in.Int32();
      request.replication_factor = in.Int16();
      const int32_t assignments = in.Int32();
      for (int32_t a = 0; a < assignments && in.ok(); ++a) {
        in.Int32();
        const int32_t brokers = in.Int32();
        for (int32_t b = 0; b < brokers && in.ok(); ++b) in.Int32();
      }
      const int32_t configs = in.Int32();
      for (int32_t c = 0; c < configs && in.ok(); ++c) {
        std::string name = in.String();
        request.configs[name] = in.NullableString().value_or("");
      }
      requests.push_back(std::move(request));
    }
    in.Int32();                   // timeout
    if (version >= 1) in.Bool();  // validate only
    if (!in.ok()) return false;

    if (version >= 2) out.Int32(0);  // throttle time
    out.Int32(static_cast<int32_t>(requests.size()));
    for (const CreateRequest& request : requests) {
      create_requests_.push_back(request);
      CreateAnswer answer;
      if (!create_answers_.empty()) {
        answer = create_answers_.front();
        create_answers_.erase(create_answers_.begin());
      } else if (refuse_all_creates_) {
        answer = *refuse_all_creates_;
      } else if (topics_.contains(request.name)) {
        answer.error = kTopicAlreadyExists;
        answer.message = "Topic '" + request.name + "' already exists.";
      } else {
        auto policy = request.configs.find("cleanup.policy");
        topics_[request.name] = Topic{request.partitions < 0 ? 3 : request.partitions,
                                      policy == request.configs.end() ? "delete" : policy->second};
      }
      if (answer.created_by_someone_else) topics_[request.name] = *answer.created_by_someone_else;
      out.String(request.name);
      out.Int16(answer.error);
      if (version >= 1) {
        out.NullableString(answer.error == 0 ? std::nullopt : std::optional<std::string>(answer.message));
      }
    }
    return true;
  }

  bool WriteDescribeConfigs(ProtocolReader& in, ProtocolWriter& out) {
    std::vector<std::pair<int8_t, std::string>> resources;
    const int32_t count = in.Int32();
    for (int32_t i = 0; i < count && in.ok(); ++i) {
      const int8_t type = in.Int8();
      std::string name = in.String();
      const int32_t keys = in.Int32();
      for (int32_t k = 0; k < keys && in.ok(); ++k) in.String();
      resources.emplace_back(type, std::move(name));
    }
    if (!in.ok()) return false;
    out.Int32(0);  // throttle time
    out.Int32(static_cast<int32_t>(resources.size()));
    for (const auto& [type, name] : resources) {
      auto topic = topics_.find(name);
      int16_t error = 0;
      std::optional<std::string> message;
      if (describe_error_) {
        error = describe_error_->first;
        message = describe_error_->second;
      } else if (topic == topics_.end()) {
        error = kUnknownTopicOrPartition;
        message = "no such topic";
      }
      out.Int16(error);
      out.NullableString(message);
      out.Int8(type);
      out.String(name);
      if (error != 0) {
        out.Int32(0);
        continue;
      }
      const std::pair<std::string, std::string> configs[] = {{"cleanup.policy", topic->second.cleanup_policy},
                                                             {"retention.ms", "604800000"}};
      out.Int32(static_cast<int32_t>(std::size(configs)));
      for (const auto& [config, value] : configs) {
        out.String(config);
        out.NullableString(value);
        out.Bool(false);  // read only
        out.Bool(false);  // default
        out.Bool(false);  // sensitive
      }
    }
    return true;
  }

  int listener_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::map<int, std::string> clients_;  // fd -> bytes received and not yet answered

  mutable std::mutex mutex_;
  std::map<std::string, Topic> topics_;
  std::vector<CreateRequest> create_requests_;
  std::vector<CreateAnswer> create_answers_;
  std::optional<CreateAnswer> refuse_all_creates_;
  std::optional<std::pair<int16_t, std::string>> describe_error_;
};

// ---------------------------------------------------------------------------------------------
// Producing test records to the mock cluster with plain librdkafka.

struct TestRecord {
  std::optional<std::string> key;
  std::optional<std::string> value;  // nullopt: tombstone
  int32_t partition = RD_KAFKA_PARTITION_UA;
};

struct Delivery {
  rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR__FAIL;
  int32_t partition = -1;
  bool reported = false;
};

// The record's index travels as the message opaque: reports of different partitions come back
// in any order.
void CollectDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
  auto& deliveries = *static_cast<std::vector<Delivery>*>(opaque);
  const auto index = reinterpret_cast<uintptr_t>(message->_private);
  if (index < deliveries.size()) deliveries[index] = {message->err, message->partition, true};
}

// Produces `records` in order (offsets within a partition follow that order) with the given
// partitioner and returns one delivery per record, in the records' order.
std::vector<Delivery> ProduceRecords(const std::string& bootstrap, const std::string& topic,
                                     const std::vector<TestRecord>& records,
                                     const char* partitioner = "murmur2_random") {
  std::vector<Delivery> deliveries(records.size());
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [name, value] :
       std::vector<std::pair<const char*, const char*>>{{"bootstrap.servers", bootstrap.c_str()},
                                                        {"partitioner", partitioner},
                                                        {"linger.ms", "5"},
                                                        {"enable.idempotence", "true"}}) {
    EXPECT_EQ(rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr), RD_KAFKA_CONF_OK) << errstr;
  }
  rd_kafka_conf_set_opaque(conf, &deliveries);
  rd_kafka_conf_set_dr_msg_cb(conf, &CollectDelivery);
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  EXPECT_NE(producer, nullptr) << errstr;
  if (producer == nullptr) return deliveries;
  rd_kafka_topic_t* handle = rd_kafka_topic_new(producer, topic.c_str(), nullptr);
  // Metadata first: the 2.0.2 producer otherwise holds the first record for a refresh (~1 s).
  const rd_kafka_metadata_t* metadata = nullptr;
  if (rd_kafka_metadata(producer, 0, handle, &metadata, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_metadata_destroy(metadata);
  }
  for (std::size_t index = 0; index < records.size(); ++index) {
    const TestRecord& record = records[index];
    const void* key = record.key ? record.key->data() : nullptr;
    const std::size_t key_size = record.key ? record.key->size() : 0;
    void* value = record.value ? const_cast<char*>(record.value->data()) : nullptr;
    const std::size_t value_size = record.value ? record.value->size() : 0;
    const rd_kafka_resp_err_t result = rd_kafka_producev(
        producer, RD_KAFKA_V_RKT(handle), RD_KAFKA_V_PARTITION(record.partition), RD_KAFKA_V_KEY(key, key_size),
        RD_KAFKA_V_VALUE(value, value_size), RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(index)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    EXPECT_EQ(result, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(result);
  }
  EXPECT_EQ(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_destroy(handle);
  rd_kafka_destroy(producer);
  for (const Delivery& delivery : deliveries) {
    EXPECT_TRUE(delivery.reported);
    EXPECT_EQ(delivery.error, RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  return deliveries;
}

// One mock cluster for the suite (each test uses topics of its own): starting and stopping one
// costs about a second.
class StateTopicMockTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string error;
    shared_cluster_ = EmbeddedCluster::Start(3, &error).release();
    ASSERT_NE(shared_cluster_, nullptr) << error;
  }
  static void TearDownTestSuite() {
    delete shared_cluster_;
    shared_cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster(), nullptr); }

  virtual EmbeddedCluster* cluster() const { return shared_cluster_; }

  StateTopicSettings Settings(const std::string& topic, int32_t partitions = 24) const {
    StateTopicSettings settings;
    settings.bootstrap_servers = cluster()->bootstrap_servers();
    settings.topic = topic;
    settings.partitions = partitions;
    return settings;
  }

  void CreateTopic(const std::string& topic, int partitions) {
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster()->mock(), topic.c_str(), partitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  std::vector<Delivery> Produce(const std::string& topic, const std::vector<TestRecord>& records,
                                const char* partitioner = "murmur2_random") {
    return ProduceRecords(cluster()->bootstrap_servers(), topic, records, partitioner);
  }

 private:
  static EmbeddedCluster* shared_cluster_;
};

EmbeddedCluster* StateTopicMockTest::shared_cluster_ = nullptr;

// A cluster of its own, for tests that take its brokers down.
class StateTopicDownTest : public StateTopicMockTest {
 protected:
  void SetUp() override {
    std::string error;
    own_cluster_ = EmbeddedCluster::Start(3, &error);
    ASSERT_NE(own_cluster_, nullptr) << error;
  }

  EmbeddedCluster* cluster() const override { return own_cluster_.get(); }

  void SetAllBrokersDown() {
    for (int32_t broker = 1; broker <= 3; ++broker) {
      ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster()->mock(), broker), RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  }

 private:
  std::unique_ptr<EmbeddedCluster> own_cluster_;
};

std::vector<int32_t> AllPartitions(int32_t count) {
  std::vector<int32_t> partitions;
  for (int32_t p = 0; p < count; ++p) partitions.push_back(p);
  return partitions;
}

// ---------------------------------------------------------------------------------------------
// Partitioning

TEST(StatePartitionTest, Murmur2MatchesLibrdkafkaUnitTestVectors) {
  // librdkafka src/rdmurmur2.c, unittest_murmur2 (java_murmur2_results).
  const std::string unaligned = "PreAmbleWillBeRemoved,ThePrePartThatIs";
  const std::vector<std::pair<std::string, uint32_t>> vectors = {
      {"kafka", 0xd067cf64},
      {"giberish123456789", 0x8f552b0c},
      {"1234", 0x9fc97b14},
      {"234", 0xe7c009ca},
      {"34", 0x873930da},
      {"4", 0x5a4b5ca1},
      {unaligned, 0x78424f1c},
      {unaligned.substr(1), 0x4a62b377},
      {unaligned.substr(2), 0xe0e4e09e},
      {unaligned.substr(3), 0x62b8b43f},
      {"", 0x106e08d9},
  };
  for (const auto& [key, hash] : vectors) EXPECT_EQ(KafkaMurmur2(key), static_cast<int32_t>(hash)) << key;
}

TEST(StatePartitionTest, Murmur2MatchesKafkaUtilsTestVectors) {
  // Apache Kafka, clients UtilsTest.testMurmur2.
  const std::vector<std::pair<std::string, int32_t>> vectors = {
      {"21", -973932308},
      {"foobar", -790332482},
      {"a-little-bit-long-string", -985981536},
      {"a-little-bit-longer-string", -1486304829},
      {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
      {"abc", 479470107},
  };
  for (const auto& [key, hash] : vectors) EXPECT_EQ(KafkaMurmur2(key), hash) << key;
}

TEST(StatePartitionTest, PartitionIsPositiveHashModuloCount) {
  // toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16.
  EXPECT_EQ(StatePartitionFor("foobar", 50), 16);
  // "kafka" hashes to 0xd067cf64: the sign bit is cleared, not the value negated.
  EXPECT_EQ(StatePartitionFor("kafka", 1000), static_cast<int32_t>((0xd067cf64u & 0x7fffffffu) % 1000u));
  EXPECT_EQ(StatePartitionFor("anything", 1), 0);
  EXPECT_EQ(StatePartitionFor("anything", 0), -1);
  EXPECT_EQ(StatePartitionFor("anything", -3), -1);
  // Bytes above 0x7f are hashed as unsigned bytes (Java masks them with 0xff).
  EXPECT_EQ(KafkaMurmur2("\xc3\xa9t\xc3\xa9"), KafkaMurmur2(std::string("\xc3\xa9t\xc3\xa9")));
}

TEST_F(StateTopicMockTest, PartitionsAgreeWithLibrdkafkaMurmur2RandomPartitioner) {
  const std::map<std::string, int32_t> topics = {{"partitioning-7", 7}, {"partitioning-24", 24}};
  std::vector<std::string> names = {"",
                                    "a",
                                    "ab",
                                    "abc",
                                    "abcd",
                                    "wiki",
                                    "stream-\xc3\xa9t\xc3\xa9",
                                    "\xf0\x9f\x8c\x8a-waves",
                                    "a longer stream name with spaces and / slashes"};
  for (int i = 0; i < 150; ++i) names.push_back("stream-" + std::to_string(i * 7919));
  for (const auto& [topic, partitions] : topics) {
    CreateTopic(topic, partitions);
    std::vector<TestRecord> records;
    for (const std::string& name : names) records.push_back({name, "v", RD_KAFKA_PARTITION_UA});
    const std::vector<Delivery> deliveries = Produce(topic, records);
    ASSERT_EQ(deliveries.size(), names.size());
    std::set<int32_t> used;
    for (std::size_t i = 0; i < names.size(); ++i) {
      EXPECT_EQ(StatePartitionFor(names[i], partitions), deliveries[i].partition) << "key \"" << names[i] << "\"";
      used.insert(deliveries[i].partition);
    }
    EXPECT_EQ(used.size(), static_cast<std::size_t>(partitions)) << "the keys should spread over every partition";
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoint value

TEST(CheckpointValueTest, EncodesTheDocumentedObject) {
  EXPECT_EQ(EncodeCheckpointValue("42", "host-a/1234", 1700000000123),
            R"({"last_event_id":"42","instance":"host-a/1234","written_at":"2023-11-14T22:13:20.123Z"})");
  EXPECT_EQ(EncodeCheckpointValue("", "h/1", 0),
            R"({"last_event_id":"","instance":"h/1","written_at":"1970-01-01T00:00:00.000Z"})");
}

TEST(CheckpointValueTest, RoundTripsAnyValidUtf8Id) {
  for (std::string id :
       {std::string(""), std::string("0"), std::string("quote \" backslash \\ slash /"),
        std::string("line\nbreak\r\ttab\x01"), std::string("caf\xc3\xa9 \xf0\x9f\x8c\x8a \xe2\x80\xa8"),
        std::string(5000, 'x'), std::string(R"([{"topic":"eqiad.edits","offset":12}])")}) {
    const std::string value = EncodeCheckpointValue(id, "host/1", 1);
    EXPECT_EQ(DecodeCheckpointValue(value), id) << value;
  }
}

TEST(CheckpointValueTest, InvalidUtf8BecomesReplacementCharacter) {
  const std::string value = EncodeCheckpointValue(
      "a\xff"
      "b\xc3",
      "h\x80/1", 1);
  EXPECT_EQ(DecodeCheckpointValue(value),
            "a\xef\xbf\xbd"
            "b\xef\xbf\xbd");
  EXPECT_NE(value.find(R"("instance":"h)"
                       "\xef\xbf\xbd"
                       R"(/1")"),
            std::string::npos)
      << value;
}

TEST(CheckpointValueTest, DecodeAcceptsExtraMembersAndAnyOrder) {
  EXPECT_EQ(DecodeCheckpointValue(R"({"written_at":"x","last_event_id":"7","future":[1,2]})"), "7");
  EXPECT_EQ(DecodeCheckpointValue(R"(  {"last_event_id" : "\u00e9"}  )"), "\xc3\xa9");
}

TEST(CheckpointValueTest, DecodeRejectsWhatIsNotACheckpoint) {
  for (std::string_view value :
       {std::string_view(""), std::string_view("7"), std::string_view("\"7\""), std::string_view("null"),
        std::string_view("[\"7\"]"), std::string_view("{}"), std::string_view(R"({"last_event_id":7})"),
        std::string_view(R"({"last_event_id":null})"), std::string_view(R"({"last_event_id":["7"]})"),
        std::string_view(R"({"id":"7"})"), std::string_view(R"({"last_event_id":"7")"),
        std::string_view(R"({"last_event_id":"7"} trailing)"), std::string_view("{\"last_event_id\":\"\xff\"}"),
        std::string_view("\0\0\0", 3)}) {
    EXPECT_EQ(DecodeCheckpointValue(value), std::nullopt) << value;
  }
}

// ---------------------------------------------------------------------------------------------
// EnsureStateTopic against FakeAdminBroker (CreateTopics, DescribeConfigs)

class StateTopicFakeBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = FakeAdminBroker::Start();
    ASSERT_NE(broker_, nullptr);
  }

  StateTopicSettings Settings(int32_t partitions = 6, int32_t replication_factor = 3) const {
    StateTopicSettings settings;
    settings.bootstrap_servers = broker_->bootstrap_servers();
    settings.topic = "_sse2kafka_state";
    settings.partitions = partitions;
    settings.replication_factor = replication_factor;
    return settings;
  }

  std::unique_ptr<FakeAdminBroker> broker_;
  std::vector<std::string> warnings_;
  std::string error_;
};

TEST_F(StateTopicFakeBrokerTest, CreatesMissingTopicCompactedWithGivenPartitionsAndReplication) {
  const auto partitions = EnsureStateTopic(Settings(6, 3), milliseconds(5000), &warnings_, &error_);
  ASSERT_EQ(partitions, 6) << error_;
  EXPECT_TRUE(warnings_.empty()) << warnings_.front();
  const auto requests = broker_->create_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].name, "_sse2kafka_state");
  EXPECT_EQ(requests[0].partitions, 6);
  EXPECT_EQ(requests[0].replication_factor, 3);
  EXPECT_EQ(requests[0].configs, (std::map<std::string, std::string>{{"cleanup.policy", "compact"}}));
  ASSERT_TRUE(broker_->topic("_sse2kafka_state"));
  EXPECT_EQ(broker_->topic("_sse2kafka_state")->partitions, 6);
}

TEST_F(StateTopicFakeBrokerTest, BrokerDefaultReplicationIsRequestedAsMinusOne) {
  ASSERT_EQ(EnsureStateTopic(Settings(4, -1), milliseconds(5000), &warnings_, &error_), 4) << error_;
  ASSERT_EQ(broker_->create_requests().size(), 1u);
  EXPECT_EQ(broker_->create_requests()[0].replication_factor, -1);
}

TEST_F(StateTopicFakeBrokerTest, ExistingTopicKeepsItsPartitionCountWithAWarning) {
  broker_->AddTopic("_sse2kafka_state", {12, "compact"});
  ASSERT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), 12) << error_;
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("12 partitions"), std::string::npos) << warnings_[0];
  EXPECT_NE(warnings_[0].find("configured 6"), std::string::npos) << warnings_[0];
  EXPECT_TRUE(broker_->create_requests().empty());
}

TEST_F(StateTopicFakeBrokerTest, ExistingCompactedTopicWithSameCountGivesNoWarning) {
  broker_->AddTopic("_sse2kafka_state", {6, "compact,delete"});
  ASSERT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), 6) << error_;
  EXPECT_TRUE(warnings_.empty()) << warnings_.front();
}

// Retention would delete the checkpoints of quiet streams: a start on such a topic is refused,
// with the fix in the message.
TEST_F(StateTopicFakeBrokerTest, ExistingTopicThatIsNotCompactedIsAStartupError) {
  broker_->AddTopic("_sse2kafka_state", {6, "delete"});
  EXPECT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), std::nullopt);
  EXPECT_NE(error_.find("cleanup.policy=delete, not compact"), std::string::npos) << error_;
  EXPECT_NE(error_.find("--add-config cleanup.policy=compact"), std::string::npos) << error_;
  EXPECT_TRUE(broker_->create_requests().empty());
}

TEST_F(StateTopicFakeBrokerTest, FailingDescribeConfigsIsAWarningThatThePolicyWasNotChecked) {
  broker_->AddTopic("_sse2kafka_state", {6, "compact"});
  broker_->FailDescribeConfigs(kTopicAuthorizationFailed, "not allowed to describe configs");
  ASSERT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), 6) << error_;
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("could not check the cleanup.policy"), std::string::npos) << warnings_[0];
}

TEST_F(StateTopicFakeBrokerTest, RefusalToCreateIsNoErrorWhenTheTopicExists) {
  broker_->AddTopic("_sse2kafka_state", {6, "compact"});
  broker_->RefuseAllCreates(kTopicAuthorizationFailed, "not authorized to create topics");
  ASSERT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), 6) << error_;
  EXPECT_TRUE(warnings_.empty()) << warnings_.front();
}

TEST_F(StateTopicFakeBrokerTest, RefusalToCreateAMissingTopicIsAnErrorWithTheBrokersReason) {
  broker_->RefuseAllCreates(kPolicyViolation, "topics must be created by the platform team");
  EXPECT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), std::nullopt);
  EXPECT_NE(error_.find("cannot be created"), std::string::npos) << error_;
  EXPECT_NE(error_.find("POLICY_VIOLATION"), std::string::npos) << error_;
  EXPECT_NE(error_.find("platform team"), std::string::npos) << error_;
}

TEST_F(StateTopicFakeBrokerTest, RefusedBecauseAnotherInstanceCreatedItMeanwhile) {
  broker_->AnswerNextCreate({kTopicAuthorizationFailed, "not authorized", FakeAdminBroker::Topic{8, "compact"}});
  ASSERT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), 8) << error_;
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("8 partitions"), std::string::npos) << warnings_[0];
}

TEST_F(StateTopicFakeBrokerTest, AlreadyExistsMeansAnotherInstanceWonTheRace) {
  broker_->AnswerNextCreate({kTopicAlreadyExists, "exists", FakeAdminBroker::Topic{8, "compact"}});
  ASSERT_EQ(EnsureStateTopic(Settings(6), milliseconds(5000), &warnings_, &error_), 8) << error_;
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("8 partitions"), std::string::npos) << warnings_[0];
}

TEST_F(StateTopicFakeBrokerTest, NotControllerIsRetriedThroughTheController) {
  broker_->AnswerNextCreate({kNotController, "this is not the controller", std::nullopt});
  ASSERT_EQ(EnsureStateTopic(Settings(5), milliseconds(5000), &warnings_, &error_), 5) << error_;
  EXPECT_EQ(broker_->create_requests().size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// EnsureStateTopic against the mock cluster

TEST_F(StateTopicMockTest, EnsureUsesAPreCreatedTopicAndSaysThePolicyCannotBeChecked) {
  CreateTopic("state-existing", 3);
  std::vector<std::string> warnings;
  std::string error;
  const auto start = Clock::now();
  ASSERT_EQ(EnsureStateTopic(Settings("state-existing", 6), milliseconds(5000), &warnings, &error), 3) << error;
  EXPECT_LT(MillisSince(start), 2000);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("3 partitions, not the configured 6"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("could not check the cleanup.policy"), std::string::npos) << warnings[1];
}

TEST_F(StateTopicMockTest, EnsureAutoCreatesWhereCreateTopicsIsNotSupportedAndSaysSo) {
  std::vector<std::string> warnings;
  std::string error;
  const auto start = Clock::now();
  const auto partitions = EnsureStateTopic(Settings("state-missing", 6), milliseconds(5000), &warnings, &error);
  ASSERT_TRUE(partitions.has_value()) << error;
  EXPECT_GE(*partitions, 1);
  EXPECT_LT(MillisSince(start), 3000);
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("cannot create topics (no CreateTopics API)"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("cleanup.policy=compact"), std::string::npos) << warnings[0];
  // Now it exists: the next start uses it as it is.
  warnings.clear();
  EXPECT_EQ(EnsureStateTopic(Settings("state-missing", 6), milliseconds(5000), &warnings, &error), partitions);
}

TEST_F(StateTopicDownTest, EnsureTimesOutWhenNoBrokerAnswers) {
  SetAllBrokersDown();
  std::vector<std::string> warnings;
  std::string error;
  const auto start = Clock::now();
  EXPECT_EQ(EnsureStateTopic(Settings("state-down"), milliseconds(1500), &warnings, &error), std::nullopt);
  const auto elapsed = MillisSince(start);
  EXPECT_GE(elapsed, 1400);
  EXPECT_LT(elapsed, 4000);
  EXPECT_NE(error.find("no kafka broker answered"), std::string::npos) << error;
  std::cout << "[ timing ] ensure with brokers down, timeout 1500 ms: " << elapsed << " ms: " << error << "\n";
}

TEST(EnsureStateTopicTest, RefusedPropertyIsAnError) {
  StateTopicSettings settings;
  settings.bootstrap_servers = "127.0.0.1:1";
  settings.topic = "t";
  settings.properties = {{"socket.timeout.ms", "soon"}};
  std::vector<std::string> warnings;
  std::string error;
  EXPECT_EQ(EnsureStateTopic(settings, milliseconds(1000), &warnings, &error), std::nullopt);
  EXPECT_NE(error.find("socket.timeout.ms"), std::string::npos) << error;
}

// ---------------------------------------------------------------------------------------------
// ReadStateCheckpoints against the mock cluster

std::string Checkpoint(const std::string& id) { return EncodeCheckpointValue(id, "test/1", 1700000000000); }

TEST_F(StateTopicMockTest, ReadReturnsTheNewestCheckpointPerKeyAcrossPartitions) {
  CreateTopic("state-read", 4);
  Produce("state-read",
          {
              {"a", Checkpoint("a1"), 0},
              {"b", Checkpoint("b1"), 1},
              {"a", Checkpoint("a2"), 0},
              {"c", Checkpoint("c1"), 2},
              {"a", Checkpoint("a3"), 0},
              {"c", std::nullopt, 2},  // tombstone: c has no checkpoint
              {"d", Checkpoint("d1"), 3},
              {"d", std::string("not json"), 3},  // skipped: d keeps d1
              {"e", Checkpoint("e1"), 3},
              {"e", std::nullopt, 3},
              {"e", Checkpoint(""), 3},                  // an empty id is a checkpoint
              {std::nullopt, Checkpoint("keyless"), 1},  // skipped
              {"b", Checkpoint("b2"), 1},
          },
          "consistent");
  std::string error;
  const auto all = ReadStateCheckpoints(Settings("state-read"), {0, 1, 2, 3}, false, milliseconds(5000), &error);
  ASSERT_TRUE(all) << error;
  EXPECT_EQ(*all, (std::map<std::string, std::string>{{"a", "a3"}, {"b", "b2"}, {"d", "d1"}, {"e", ""}}));

  const auto some = ReadStateCheckpoints(Settings("state-read"), {3, 0}, false, milliseconds(5000), &error);
  ASSERT_TRUE(some) << error;
  EXPECT_EQ(*some, (std::map<std::string, std::string>{{"a", "a3"}, {"d", "d1"}, {"e", ""}}));
}

TEST_F(StateTopicMockTest, ReadCommittedReturnsAgainstTheMock) {
  // The mock writes no transaction markers, so this shows only that the read_committed path
  // (ends from the last stable offset, EOF on it) finishes with the same result.
  CreateTopic("state-committed", 2);
  Produce("state-committed", {{"x", Checkpoint("x1"), 0}, {"x", Checkpoint("x2"), 0}, {"y", Checkpoint("y1"), 1}},
          "consistent");
  std::string error;
  const auto start = Clock::now();
  const auto read = ReadStateCheckpoints(Settings("state-committed"), {0, 1}, true, milliseconds(5000), &error);
  ASSERT_TRUE(read) << error;
  EXPECT_LT(MillisSince(start), 300);
  EXPECT_EQ(*read, (std::map<std::string, std::string>{{"x", "x2"}, {"y", "y1"}}));
}

TEST_F(StateTopicMockTest, ReadOfEmptyPartitionsIsQuick) {
  CreateTopic("state-empty", 24);
  for (bool read_committed : {false, true}) {
    std::string error;
    const auto start = Clock::now();
    const auto read =
        ReadStateCheckpoints(Settings("state-empty"), AllPartitions(24), read_committed, milliseconds(5000), &error);
    const auto elapsed = MillisSince(start);
    ASSERT_TRUE(read) << error;
    EXPECT_TRUE(read->empty());
    EXPECT_LT(elapsed, 300) << "read_committed=" << read_committed;
    std::cout << "[ timing ] empty 24-partition read (read_committed=" << read_committed << "): " << elapsed << " ms\n";
  }
}

TEST_F(StateTopicMockTest, ReadOfNoPartitionsContactsNoBroker) {
  StateTopicSettings settings = Settings("unused");
  settings.bootstrap_servers = "127.0.0.1:1";
  std::string error;
  const auto read = ReadStateCheckpoints(settings, {}, false, milliseconds(5000), &error);
  ASSERT_TRUE(read) << error;
  EXPECT_TRUE(read->empty());
}

TEST_F(StateTopicMockTest, ReadOf300CheckpointsFrom24PartitionsIsFast) {
  CreateTopic("state-300", 24);
  std::vector<TestRecord> records;
  for (int round = 1; round <= 2; ++round) {
    for (int i = 0; i < 300; ++i) {
      const std::string stream = "stream-" + std::to_string(i);
      records.push_back({stream, Checkpoint(stream + "#" + std::to_string(round)), RD_KAFKA_PARTITION_UA});
    }
  }
  Produce("state-300", records);

  for (bool read_committed : {false, true}) {
    std::string error;
    const auto start = Clock::now();
    const auto read =
        ReadStateCheckpoints(Settings("state-300"), AllPartitions(24), read_committed, milliseconds(10000), &error);
    const auto elapsed = MillisSince(start);
    ASSERT_TRUE(read) << error;
    ASSERT_EQ(read->size(), 300u);
    for (int i = 0; i < 300; ++i) {
      const std::string stream = "stream-" + std::to_string(i);
      EXPECT_EQ(read->at(stream), stream + "#2");
    }
    std::cout << "[ timing ] 300 checkpoints (600 records) from 24 partitions (read_committed=" << read_committed
              << "): " << elapsed << " ms\n";
    EXPECT_LT(elapsed, 500);
  }

  // Only the partitions asked for: each stream is found in the partition murmur2 gives it.
  std::string error;
  const auto part = ReadStateCheckpoints(Settings("state-300"), {5}, false, milliseconds(10000), &error);
  ASSERT_TRUE(part) << error;
  EXPECT_FALSE(part->empty());
  for (const auto& [stream, id] : *part) EXPECT_EQ(StatePartitionFor(stream, 24), 5) << stream;
}

TEST_F(StateTopicMockTest, ReadOfAPartitionThatDoesNotExistFails) {
  CreateTopic("state-small", 2);
  std::string error;
  const auto start = Clock::now();
  EXPECT_EQ(ReadStateCheckpoints(Settings("state-small"), {0, 7}, false, milliseconds(3000), &error), std::nullopt);
  EXPECT_LT(MillisSince(start), 3500);
  EXPECT_NE(error.find("state-small"), std::string::npos) << error;
  EXPECT_NE(error.find("partition 7"), std::string::npos) << error;
}

TEST_F(StateTopicDownTest, ReadTimesOutWhenNoBrokerAnswers) {
  CreateTopic("state-down", 4);
  Produce("state-down", {{"a", Checkpoint("a1"), 0}}, "consistent");
  SetAllBrokersDown();
  std::string error;
  const auto start = Clock::now();
  EXPECT_EQ(ReadStateCheckpoints(Settings("state-down"), {0, 1, 2, 3}, false, milliseconds(1500), &error),
            std::nullopt);
  const auto elapsed = MillisSince(start);
  EXPECT_GE(elapsed, 1400);
  EXPECT_LT(elapsed, 4000);
  EXPECT_NE(error.find("state-down"), std::string::npos) << error;
  std::cout << "[ timing ] read with brokers down, timeout 1500 ms: " << elapsed << " ms: " << error << "\n";
}

}  // namespace
}  // namespace sse2kafka::sink
