#include "support/loopback_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace sse2kafka::test_support {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Blocking calls wake this often to look at the stop flag.
constexpr milliseconds kPollSlice{20};
// A client that has not finished its request by then is not coming.
constexpr milliseconds kRequestTimeout{10000};
constexpr std::size_t kMaxRequestBytes = 1 << 20;

int PollMillis(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp(left, milliseconds(0), kPollSlice).count());
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

}  // namespace

std::optional<std::string> ReceivedRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n.size() == name.size() && strncasecmp(n.data(), name.data(), name.size()) == 0) return v;
  }
  return std::nullopt;
}

bool ServerConnection::Send(std::string_view bytes) {
  const auto deadline = Clock::now() + kRequestTimeout;
  while (!bytes.empty()) {
    if (stopping_.load() || Clock::now() >= deadline) return false;
    pollfd p{fd_, POLLOUT, 0};
    const int ready = poll(&p, 1, PollMillis(deadline));
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool ServerConnection::SendHead(int status, const std::vector<std::string>& header_lines) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + ReasonPhrase(status) + "\r\n";
  for (const std::string& line : header_lines) head += line + "\r\n";
  head += "Connection: close\r\n\r\n";
  return Send(head);
}

bool ServerConnection::WaitForPeerClose(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  char scratch[4096];
  while (!stopping_.load() && Clock::now() < deadline) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = poll(&p, 1, PollMillis(deadline));
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    const ssize_t n = recv(fd_, scratch, sizeof scratch, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      ++peer_closes_;
      return true;
    }
  }
  return false;
}

bool ServerConnection::WaitUntil(const std::function<bool()>& condition, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!stopping_.load()) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return false;
}

std::unique_ptr<LoopbackHttpServer> LoopbackHttpServer::Start(Handler handler, std::string* error) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return nullptr;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    *error = std::string("bind/listen on 127.0.0.1: ") + std::strerror(errno);
    close(fd);
    return nullptr;
  }
  std::unique_ptr<LoopbackHttpServer> server(
      new LoopbackHttpServer(fd, ntohs(addr.sin_port), std::move(handler)));
  server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

LoopbackHttpServer::LoopbackHttpServer(int listen_fd, uint16_t port, Handler handler)
    : listen_fd_(listen_fd), port_(port), handler_(std::move(handler)) {}

LoopbackHttpServer::~LoopbackHttpServer() {
  stopping_ = true;
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
    threads.swap(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
  close(listen_fd_);
}

std::string LoopbackHttpServer::Url(std::string_view path, std::string_view host) const {
  return "http://" + std::string(host) + ":" + std::to_string(port_) + std::string(path);
}

std::vector<ReceivedRequest> LoopbackHttpServer::requests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return requests_;
}

std::size_t LoopbackHttpServer::request_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return requests_.size();
}

void LoopbackHttpServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(kPollSlice.count())) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mutex_);
    open_fds_.push_back(fd);
    connection_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void LoopbackHttpServer::Serve(int fd) {
  ReceivedRequest request;
  if (ReadRequest(fd, &request)) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      request.index = requests_.size();
      requests_.push_back(request);
    }
    ServerConnection connection(fd, stopping_, peer_closes_);
    handler_(request, connection);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  open_fds_.erase(std::find(open_fds_.begin(), open_fds_.end(), fd));
  shutdown(fd, SHUT_WR);
  close(fd);
}

bool LoopbackHttpServer::ReadRequest(int fd, ReceivedRequest* request) {
  const auto deadline = Clock::now() + kRequestTimeout;
  std::string buffer;
  std::size_t head_end = std::string::npos;
  std::size_t body_size = 0;
  char chunk[4096];
  for (;;) {
    if (head_end == std::string::npos) {
      head_end = buffer.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        // Parse the head once it is complete; the body size follows from it.
        std::string_view head(buffer.data(), head_end);
        std::size_t line_end = head.find("\r\n");
        std::string_view request_line = head.substr(0, line_end);
        const std::size_t sp1 = request_line.find(' ');
        const std::size_t sp2 = request_line.rfind(' ');
        if (sp1 == std::string_view::npos || sp2 == sp1) return false;
        request->method = std::string(request_line.substr(0, sp1));
        request->target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
        while (line_end != std::string_view::npos) {
          const std::size_t start = line_end + 2;
          line_end = head.find("\r\n", start);
          std::string_view line = head.substr(start, line_end == std::string_view::npos ? head.npos : line_end - start);
          const std::size_t colon = line.find(':');
          if (colon == std::string_view::npos) continue;
          request->headers.emplace_back(std::string(line.substr(0, colon)),
                                        std::string(Trim(line.substr(colon + 1))));
        }
        if (auto length = request->Header("Content-Length")) {
          const auto [end, ec] = std::from_chars(length->data(), length->data() + length->size(), body_size);
          if (ec != std::errc() || end != length->data() + length->size()) return false;
        }
      }
    }
    if (head_end != std::string::npos && buffer.size() >= head_end + 4 + body_size) {
      request->body = buffer.substr(head_end + 4, body_size);
      request->received_at = Clock::now();
      return true;
    }
    if (stopping_.load() || Clock::now() >= deadline || buffer.size() > kMaxRequestBytes) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, PollMillis(deadline));
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    const ssize_t n = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return false;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

}  // namespace sse2kafka::test_support
