// sse_source: a fast loopback SSE server for the end-to-end benchmarks (bench/run.sh).
//
// Usage: sse_source [--host 127.0.0.1] [--port 0] [--backlog 4096] [--listeners 8]
// Prints "LISTENING <port>" on stdout once it accepts connections; serves until SIGTERM/SIGINT
// (exit 0). One thread, one epoll loop, non-blocking sockets, HTTP/1.1 with keep-alive.
//
// Every path other than the control paths below serves numbered events, shaped by the query:
//   /any/path?events=N&size=S&rate=R&start=K&at_end=end|hang
//   events  the last event number served; 0 (default) serves forever
//   size    bytes of each event's data (default 100); the data is the JSON text
//           {"n":N,"t":T,"pad":"xxx…"} padded to `size`, where T is the send time (Unix ns,
//           CLOCK_REALTIME, taken just before the write that carries the event)
//   rate    events per second on this connection; 0 (default) is as fast as the socket takes them
//   start   the first number when the request has no numeric Last-Event-ID (default 1)
//   at_end  after event `events`: end the response (default) or hang (send nothing more)
// Each event is "id: N\ndata: DATA\n\n"; a request with "Last-Event-ID: K" starts at K + 1. The
// body is chunked: a full-speed stream writes batches of about 64 KiB, a paced stream one write
// per due instant. A paced stream's first event comes after a phase spread over one interval,
// so that thousands of 1-per-second streams do not all fire in the same millisecond.
//
// Control paths (answered with a short body and Connection: close):
//   /_stats     JSON counters since the last reset (see Stats::ToJson)
//   /_reset     zeroes those counters (the per-path last IDs stay, for resumed_exact)
//   /_pause     stops sending events on every stream (connections stay open); /_resume restarts
//               them, paced streams on a fresh schedule from now
//   /_last_ids  "PATH ID\n" for every path that was sent an event, ID the newest one sent

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

int64_t NowNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
int64_t MonotonicNs() { return NowNs(CLOCK_MONOTONIC); }
int64_t UnixNs() { return NowNs(CLOCK_REALTIME); }

std::optional<uint64_t> ParseUnsigned(std::string_view text) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<double> ParseRate(std::string_view text) {
  std::string copy(text);
  char* end = nullptr;
  double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || !(value >= 0)) return std::nullopt;
  return value;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// What one request asks for (the query of a stream path).
struct StreamSpec {
  uint64_t events = 0;  // last number served; 0: forever
  uint64_t start = 1;
  size_t size = 100;
  double rate = 0;      // events per second; 0: full speed
  bool hang_at_end = false;

  // Parses "events=1&size=2..."; unknown names are an error so that a typo does not silently
  // benchmark something else. On failure returns nullopt and sets *error.
  static std::optional<StreamSpec> FromQuery(std::string_view query, std::string* error) {
    StreamSpec spec;
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      std::string_view name = pair.substr(0, eq);
      std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      std::optional<uint64_t> number = ParseUnsigned(value);
      if (name == "events" && number) {
        spec.events = *number;
      } else if (name == "start" && number) {
        spec.start = *number;
      } else if (name == "size" && number && *number <= (1u << 24)) {
        spec.size = static_cast<size_t>(*number);
      } else if (name == "rate" && ParseRate(value)) {
        spec.rate = *ParseRate(value);
      } else if (name == "at_end" && (value == "end" || value == "hang")) {
        spec.hang_at_end = value == "hang";
      } else {
        *error = "bad query parameter '" + std::string(pair) + "'";
        return std::nullopt;
      }
    }
    return spec;
  }
};

// Appends SSE events in the wire format described at the top of the file.
class EventFormatter {
 public:
  // Appends event n with data of `size` bytes stamped with send time `unix_ns`.
  static void Append(std::string& out, uint64_t n, size_t size, int64_t unix_ns) {
    out.append("id: ");
    AppendNumber(out, n);
    out.append("\ndata: ");
    const size_t data_start = out.size();
    out.append("{\"n\":");
    AppendNumber(out, n);
    out.append(",\"t\":");
    AppendNumber(out, static_cast<uint64_t>(unix_ns));
    out.append(",\"pad\":\"");
    // The closing two characters of the data count towards `size`.
    const size_t fixed = out.size() - data_start + 2;
    if (size > fixed) out.append(size - fixed, 'x');
    out.append("\"}\n\n");
  }

 private:
  static void AppendNumber(std::string& out, uint64_t value) {
    char digits[24];
    out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
  }
};

// Counters served at /_stats. Times are Unix ns; 0 means "not yet".
struct Stats {
  uint64_t requests = 0;              // stream requests since the reset
  uint64_t requests_with_last_event_id = 0;
  uint64_t resumed_exact = 0;         // Last-Event-ID equal to the newest ID sent on that path
  uint64_t events_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t streams_open = 0;          // responses being streamed now (not reset)
  uint64_t max_streams_open = 0;
  uint64_t connections_open = 0;      // not reset
  int64_t first_request_unix_ns = 0;
  int64_t last_request_unix_ns = 0;
  int64_t last_stream_open_unix_ns = 0;  // when the newest stream response head was queued
  bool paused = false;

  void Reset() {
    requests = requests_with_last_event_id = resumed_exact = events_sent = bytes_sent = 0;
    max_streams_open = streams_open;
    first_request_unix_ns = last_request_unix_ns = last_stream_open_unix_ns = 0;
  }

  std::string ToJson() const {
    char buf[1024];
    int n = std::snprintf(
        buf, sizeof buf,
        "{\"requests\":%llu,\"requests_with_last_event_id\":%llu,\"resumed_exact\":%llu,"
        "\"events_sent\":%llu,\"bytes_sent\":%llu,\"streams_open\":%llu,\"max_streams_open\":%llu,"
        "\"connections_open\":%llu,\"first_request_unix_ns\":%lld,\"last_request_unix_ns\":%lld,"
        "\"last_stream_open_unix_ns\":%lld,\"paused\":%s,\"now_unix_ns\":%lld}\n",
        static_cast<unsigned long long>(requests), static_cast<unsigned long long>(requests_with_last_event_id),
        static_cast<unsigned long long>(resumed_exact), static_cast<unsigned long long>(events_sent),
        static_cast<unsigned long long>(bytes_sent), static_cast<unsigned long long>(streams_open),
        static_cast<unsigned long long>(max_streams_open), static_cast<unsigned long long>(connections_open),
        static_cast<long long>(first_request_unix_ns), static_cast<long long>(last_request_unix_ns),
        static_cast<long long>(last_stream_open_unix_ns), paused ? "true" : "false",
        static_cast<long long>(UnixNs()));
    return std::string(buf, static_cast<size_t>(n));
  }
};

// One accepted socket: reads a request, then streams a response (or answers a control path).
struct Connection {
  enum class Phase { kReadingRequest, kStreaming, kClosingAfterWrite };

  int fd = -1;
  uint64_t serial = 0;  // distinguishes a reused fd in the pacing queue
  Phase phase = Phase::kReadingRequest;
  std::string in;
  std::string out;
  size_t out_offset = 0;
  bool want_write = false;  // EPOLLOUT registered

  // While streaming:
  std::string path;
  StreamSpec spec;
  uint64_t next_n = 1;
  bool ended = false;         // past `events`: nothing more to send
  bool keep_alive = true;
  int64_t paced_origin_ns = 0;  // monotonic: event k of this schedule is due at origin + k/rate
  uint64_t paced_sent = 0;      // events sent on this schedule
  uint64_t schedule = 0;        // which schedule the pacing queue's entries belong to

  size_t pending() const { return out.size() - out_offset; }
};

// The server: owns every socket and the event loop.
class SseSource {
 public:
  // Binds host:port and starts listening. On failure returns nullptr and prints why.
  // `listeners` sockets share the port (SO_REUSEPORT), each with its own accept queue of
  // `backlog`, so that a bridge opening ten thousand streams at once does not overflow one queue
  // (a dropped SYN is retried after 1, 3, 7 s and would show up as a slow start).
  static std::unique_ptr<SseSource> Create(const std::string& host, uint16_t port, int backlog, int listeners) {
    auto server = std::unique_ptr<SseSource>(new SseSource());
    if (!server->Setup(host, port, backlog, listeners)) return nullptr;
    return server;
  }

  ~SseSource() {
    for (auto& [fd, conn] : connections_) ::close(fd);
    for (int fd : listen_fds_) ::close(fd);
    for (int fd : {epoll_fd_, timer_fd_, signal_fd_}) {
      if (fd >= 0) ::close(fd);
    }
  }

  uint16_t port() const { return port_; }

  // Serves until SIGTERM or SIGINT. Returns the exit status.
  int Run() {
    std::vector<epoll_event> events(1024);
    while (!stopping_) {
      int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("sse_source: epoll_wait");
        return 1;
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[static_cast<size_t>(i)].data.fd;
        const uint32_t mask = events[static_cast<size_t>(i)].events;
        if (std::find(listen_fds_.begin(), listen_fds_.end(), fd) != listen_fds_.end()) {
          AcceptAll(fd);
        } else if (fd == timer_fd_) {
          uint64_t expirations = 0;
          (void)!::read(timer_fd_, &expirations, sizeof expirations);
          RunDuePacedStreams();
        } else if (fd == signal_fd_) {
          stopping_ = true;
        } else {
          OnConnectionEvent(fd, mask);
        }
      }
    }
    return 0;
  }

 private:
  static constexpr size_t kFullSpeedBatch = 64 * 1024;
  static constexpr size_t kMaxWritePerWakeup = 1 << 20;
  static constexpr size_t kMaxRequestHead = 64 * 1024;
  // A paced stream that fell this far behind skips ahead instead of bursting.
  static constexpr uint64_t kMaxCatchUpEvents = 1000;

  struct Due {
    int64_t at_ns;
    int fd;
    uint64_t serial;
    uint64_t schedule;
    bool operator>(const Due& other) const { return at_ns > other.at_ns; }
  };

  SseSource() = default;

  bool Setup(const std::string& host, uint16_t port, int backlog, int listeners) {
    RaiseFileLimit();
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    signal_fd_ = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (signal_fd_ < 0 || epoll_fd_ < 0 || timer_fd_ < 0) {
      std::perror("sse_source: setup");
      return false;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
      std::fprintf(stderr, "sse_source: --host wants an IPv4 address, got '%s'\n", host.c_str());
      return false;
    }
    for (int i = 0; i < listeners; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        std::perror("sse_source: socket");
        return false;
      }
      listen_fds_.push_back(fd);
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      // The first socket picks the port (port 0: any free one); the others join it.
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, backlog) != 0) {
        std::perror("sse_source: bind/listen");
        return false;
      }
      socklen_t len = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      port_ = ntohs(addr.sin_port);
    }
    std::vector<int> watched = listen_fds_;
    watched.push_back(timer_fd_);
    watched.push_back(signal_fd_);
    for (int fd : watched) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    }
    return true;
  }

  // Thousands of streams need thousands of sockets; the soft limit is often 1024.
  static void RaiseFileLimit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
      limit.rlim_cur = limit.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &limit);
    }
  }

  void AcceptAll(int listen_fd) {
    for (;;) {
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) std::perror("sse_source: accept");
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto conn = std::make_unique<Connection>();
      conn->fd = fd;
      conn->serial = ++serial_;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.fd = fd;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
      connections_[fd] = std::move(conn);
      ++stats_.connections_open;
    }
  }

  void OnConnectionEvent(int fd, uint32_t mask) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    Connection& conn = *it->second;
    if (mask & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      if (!ReadInput(conn)) {
        Close(fd);
        return;
      }
    }
    if (conn.phase == Connection::Phase::kReadingRequest && !HandleRequests(conn)) {
      Close(fd);
      return;
    }
    if (!Pump(conn)) Close(fd);
  }

  // Reads what the peer sent. Returns false when the peer closed or failed.
  bool ReadInput(Connection& conn) {
    char buf[16384];
    for (;;) {
      ssize_t n = ::read(conn.fd, buf, sizeof buf);
      if (n > 0) {
        // A streaming response ignores further input (clients do not pipeline here).
        if (conn.phase == Connection::Phase::kReadingRequest) conn.in.append(buf, static_cast<size_t>(n));
        if (conn.in.size() > kMaxRequestHead) return false;
        continue;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }

  // Starts the response to a complete request head, if one arrived. Returns false on a request
  // that cannot be served (the connection is closed).
  bool HandleRequests(Connection& conn) {
    size_t head_end = conn.in.find("\r\n\r\n");
    if (head_end == std::string::npos) return true;
    std::string head = conn.in.substr(0, head_end);
    conn.in.erase(0, head_end + 4);

    std::string_view rest = head;
    size_t eol = rest.find("\r\n");
    std::string_view request_line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    size_t sp1 = request_line.find(' ');
    size_t sp2 = request_line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 <= sp1) return false;
    std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    bool http10 = request_line.substr(sp2 + 1) == "HTTP/1.0";

    std::optional<uint64_t> last_event_id;
    bool has_last_event_id = false;
    bool close_requested = http10;
    while (!rest.empty()) {
      eol = rest.find("\r\n");
      std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = Trim(line.substr(0, colon));
      std::string_view value = Trim(line.substr(colon + 1));
      if (EqualsIgnoreCase(name, "Last-Event-ID")) {
        has_last_event_id = true;
        last_event_id = ParseUnsigned(value);
      } else if (EqualsIgnoreCase(name, "Connection") && EqualsIgnoreCase(value, "close")) {
        close_requested = true;
      }
    }

    size_t qmark = target.find('?');
    std::string path(target.substr(0, qmark));
    std::string_view query = qmark == std::string_view::npos ? std::string_view() : target.substr(qmark + 1);
    if (path.starts_with("/_")) {
      AnswerControl(conn, path);
      return true;
    }
    std::string error;
    std::optional<StreamSpec> spec = StreamSpec::FromQuery(query, &error);
    if (!spec) {
      Answer(conn, "400 Bad Request", "text/plain", error + "\n");
      return true;
    }
    StartStream(conn, std::move(path), *spec, has_last_event_id, last_event_id, !close_requested);
    return true;
  }

  void StartStream(Connection& conn, std::string path, const StreamSpec& spec, bool has_last_event_id,
                   std::optional<uint64_t> last_event_id, bool keep_alive) {
    const int64_t now = UnixNs();
    ++stats_.requests;
    if (stats_.first_request_unix_ns == 0) stats_.first_request_unix_ns = now;
    stats_.last_request_unix_ns = now;
    if (has_last_event_id) {
      ++stats_.requests_with_last_event_id;
      auto sent = last_sent_.find(path);
      if (last_event_id && sent != last_sent_.end() && sent->second == *last_event_id) ++stats_.resumed_exact;
    }
    conn.phase = Connection::Phase::kStreaming;
    conn.path = std::move(path);
    conn.spec = spec;
    conn.next_n = last_event_id ? *last_event_id + 1 : spec.start;
    conn.ended = false;
    conn.keep_alive = keep_alive;
    conn.out.append(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    ++stats_.streams_open;
    stats_.max_streams_open = std::max(stats_.max_streams_open, stats_.streams_open);
    stats_.last_stream_open_unix_ns = now;
    FinishIfDone(conn);
    if (spec.rate > 0 && !conn.ended) StartSchedule(conn, true);
  }

  // Puts a paced stream on a fresh schedule from now. The first stream's phase is spread over
  // one interval by a low-discrepancy sequence, so equal streams do not fire together.
  void StartSchedule(Connection& conn, bool spread) {
    const double interval_ns = 1e9 / conn.spec.rate;
    double phase = 0;
    if (spread) {
      phase_seed_ += 0.6180339887498949;
      phase_seed_ -= static_cast<double>(static_cast<int64_t>(phase_seed_));
      phase = phase_seed_ * interval_ns;
    }
    conn.paced_origin_ns = MonotonicNs() + static_cast<int64_t>(phase);
    conn.paced_sent = 0;
    ++conn.schedule;
    Schedule(conn, conn.paced_origin_ns);
  }

  void Schedule(const Connection& conn, int64_t at_ns) {
    due_.push(Due{at_ns, conn.fd, conn.serial, conn.schedule});
    if (due_.top().at_ns == at_ns) ArmTimer();
  }

  void ArmTimer() {
    itimerspec spec{};
    if (!due_.empty()) {
      int64_t at = std::max<int64_t>(due_.top().at_ns, 1);
      spec.it_value.tv_sec = at / 1000000000;
      spec.it_value.tv_nsec = at % 1000000000;
    }
    ::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void RunDuePacedStreams() {
    const int64_t now = MonotonicNs();
    std::vector<int> to_close;
    while (!due_.empty() && due_.top().at_ns <= now) {
      Due due = due_.top();
      due_.pop();
      auto it = connections_.find(due.fd);
      if (it == connections_.end() || it->second->serial != due.serial ||
          it->second->schedule != due.schedule) {
        continue;
      }
      Connection& conn = *it->second;
      if (conn.phase != Connection::Phase::kStreaming || conn.ended || paused_) continue;
      const double interval_ns = 1e9 / conn.spec.rate;
      // Every event due by now: its index k runs while origin + k·interval <= now.
      uint64_t due_count = static_cast<uint64_t>(static_cast<double>(now - conn.paced_origin_ns) / interval_ns) + 1;
      if (due_count > conn.paced_sent + kMaxCatchUpEvents) conn.paced_sent = due_count - kMaxCatchUpEvents;
      uint64_t batch = due_count > conn.paced_sent ? due_count - conn.paced_sent : 0;
      if (batch > 0) {
        AppendEvents(conn, batch);
        conn.paced_sent += batch;
      }
      if (!conn.ended) {
        Schedule(conn, conn.paced_origin_ns +
                           static_cast<int64_t>(static_cast<double>(conn.paced_sent) * interval_ns));
      }
      if (!Pump(conn)) to_close.push_back(conn.fd);
    }
    for (int fd : to_close) Close(fd);
    ArmTimer();
  }

  // Appends up to `max_events` events (fewer at `events`) as one chunk; appends the terminating
  // chunk when the response ends here.
  void AppendEvents(Connection& conn, uint64_t max_events, size_t max_bytes = SIZE_MAX) {
    batch_.clear();
    const int64_t stamp = UnixNs();
    uint64_t count = 0;
    while (count < max_events && batch_.size() < max_bytes &&
           (conn.spec.events == 0 || conn.next_n <= conn.spec.events)) {
      EventFormatter::Append(batch_, conn.next_n, conn.spec.size, stamp);
      ++conn.next_n;
      ++count;
    }
    if (count > 0) {
      char size_line[32];
      int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", batch_.size());
      conn.out.append(size_line, static_cast<size_t>(len));
      conn.out.append(batch_);
      conn.out.append("\r\n");
      stats_.events_sent += count;
      stats_.bytes_sent += batch_.size();
      last_sent_[conn.path] = conn.next_n - 1;
    }
    FinishIfDone(conn);
  }

  // Past the last event: ends the response (terminating chunk) or, with at_end=hang, just stops.
  void FinishIfDone(Connection& conn) {
    if (conn.ended || conn.spec.events == 0 || conn.next_n <= conn.spec.events) return;
    conn.ended = true;
    if (!conn.spec.hang_at_end) {
      conn.out.append("0\r\n\r\n");
      --stats_.streams_open;
      if (!conn.keep_alive) conn.phase = Connection::Phase::kClosingAfterWrite;
    }
  }

  // Writes what is pending and, for a full-speed stream, generates more while the socket takes
  // it (bounded per wakeup so that one stream does not starve the others). Keeps EPOLLOUT
  // registered exactly while there is more to write. Returns false when the connection is done.
  bool Pump(Connection& conn) {
    size_t written_now = 0;
    for (;;) {
      if (conn.pending() == 0) {
        conn.out.clear();
        conn.out_offset = 0;
        if (conn.phase == Connection::Phase::kClosingAfterWrite) return false;
        if (conn.phase == Connection::Phase::kStreaming && conn.ended && !conn.spec.hang_at_end) {
          // The response ended normally: the connection may carry the next request.
          conn.phase = Connection::Phase::kReadingRequest;
          if (!conn.in.empty() && !HandleRequests(conn)) return false;
          if (conn.pending() == 0) break;
          continue;
        }
        const bool full_speed = conn.phase == Connection::Phase::kStreaming && conn.spec.rate == 0 &&
                                !conn.ended && !paused_;
        if (!full_speed || written_now >= kMaxWritePerWakeup) break;
        AppendEvents(conn, UINT64_MAX, kFullSpeedBatch);
      }
      ssize_t n = ::send(conn.fd, conn.out.data() + conn.out_offset, conn.pending(), MSG_NOSIGNAL);
      if (n > 0) {
        conn.out_offset += static_cast<size_t>(n);
        written_now += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return false;
    }
    const bool more = conn.pending() > 0 || (conn.phase == Connection::Phase::kStreaming &&
                                             conn.spec.rate == 0 && !conn.ended && !paused_);
    SetWantWrite(conn, more);
    return true;
  }

  void SetWantWrite(Connection& conn, bool want) {
    if (conn.want_write == want) return;
    conn.want_write = want;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u);
    ev.data.fd = conn.fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev);
  }

  void AnswerControl(Connection& conn, const std::string& path) {
    if (path == "/_stats") {
      stats_.paused = paused_;
      Answer(conn, "200 OK", "application/json", stats_.ToJson());
    } else if (path == "/_reset") {
      stats_.Reset();
      Answer(conn, "200 OK", "text/plain", "ok\n");
    } else if (path == "/_pause" || path == "/_resume") {
      SetPaused(path == "/_pause");
      Answer(conn, "200 OK", "text/plain", "ok\n");
    } else if (path == "/_last_ids") {
      std::string body;
      for (const auto& [stream_path, id] : last_sent_) {
        body += stream_path;
        body += ' ';
        body += std::to_string(id);
        body += '\n';
      }
      Answer(conn, "200 OK", "text/plain", body);
    } else {
      Answer(conn, "404 Not Found", "text/plain", "unknown control path\n");
    }
  }

  void SetPaused(bool paused) {
    if (paused_ == paused) return;
    paused_ = paused;
    if (paused) return;
    for (auto& [fd, conn] : connections_) {
      if (conn->phase != Connection::Phase::kStreaming || conn->ended) continue;
      if (conn->spec.rate > 0) {
        StartSchedule(*conn, false);
      } else {
        SetWantWrite(*conn, true);
      }
    }
  }

  static void Answer(Connection& conn, const char* status, const char* type, const std::string& body) {
    conn.out += "HTTP/1.1 ";
    conn.out += status;
    conn.out += "\r\nContent-Type: ";
    conn.out += type;
    conn.out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    conn.out += body;
    conn.phase = Connection::Phase::kClosingAfterWrite;
  }

  void Close(int fd) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    const Connection& conn = *it->second;
    if (conn.phase == Connection::Phase::kStreaming && !(conn.ended && !conn.spec.hang_at_end)) {
      --stats_.streams_open;
    }
    --stats_.connections_open;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    connections_.erase(it);
  }

  int epoll_fd_ = -1;
  std::vector<int> listen_fds_;
  int timer_fd_ = -1;
  int signal_fd_ = -1;
  uint16_t port_ = 0;
  bool stopping_ = false;
  bool paused_ = false;
  uint64_t serial_ = 0;
  double phase_seed_ = 0;
  std::unordered_map<int, std::unique_ptr<Connection>> connections_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due_;
  std::unordered_map<std::string, uint64_t> last_sent_;
  std::string batch_;
  Stats stats_;
};

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int backlog = 4096;
  int listeners = 8;
};

std::optional<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: sse_source [--host 127.0.0.1] [--port 0] [--backlog 4096] [--listeners 8]\n");
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "sse_source: %s needs a value\n", argv[i]);
      return std::nullopt;
    }
    std::string_view value = argv[++i];
    std::optional<uint64_t> number = ParseUnsigned(value);
    if (arg == "--host") {
      options.host = std::string(value);
    } else if (arg == "--port" && number && *number <= 65535) {
      options.port = static_cast<uint16_t>(*number);
    } else if (arg == "--backlog" && number && *number >= 1 && *number <= 65535) {
      options.backlog = static_cast<int>(*number);
    } else if (arg == "--listeners" && number && *number >= 1 && *number <= 64) {
      options.listeners = static_cast<int>(*number);
    } else {
      std::fprintf(stderr, "sse_source: bad argument %s %s\n", argv[i - 1], argv[i]);
      return std::nullopt;
    }
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> options = ParseOptions(argc, argv);
  if (!options) return 2;
  std::unique_ptr<SseSource> server = SseSource::Create(options->host, options->port, options->backlog, options->listeners);
  if (!server) return 1;
  std::printf("LISTENING %u\n", static_cast<unsigned>(server->port()));
  std::fflush(stdout);
  return server->Run();
}
