// A tiny scriptable HTTP/1.1 server on 127.0.0.1 for tests of the HTTP client and the stream
// pipeline. It listens on a kernel-chosen port, reads each request (head and Content-Length
// body) on a thread of its own, records it, and hands it to the test's handler, which writes
// whatever response it likes through a ServerConnection. After the handler returns the
// connection is closed, so every response should say "Connection: close" (SendHead does).
//
// The handler runs on the connection's thread, concurrently with the test's event loop and
// with other connections' handlers: whatever it shares with the test must be thread-safe
// (atomics, or the server's own request list).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sse2kafka::test_support {

struct ReceivedRequest {
  std::size_t index = 0;  // order of arrival, from 0
  std::string method;
  std::string target;  // as written in the request line, e.g. "/a/b?x=1"
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;
  std::chrono::steady_clock::time_point received_at;

  // The value of the first header called `name` (case-insensitive); nullopt when absent.
  std::optional<std::string> Header(std::string_view name) const;
};

// One accepted connection, as seen by a handler.
class ServerConnection {
 public:
  ServerConnection(int fd, const std::atomic<bool>& stopping, std::atomic<std::size_t>& peer_closes)
      : fd_(fd), stopping_(stopping), peer_closes_(peer_closes) {}

  // Writes all of `bytes`. False when the peer is gone or the server is stopping.
  bool Send(std::string_view bytes);
  // Writes "HTTP/1.1 <status> <reason>", `header_lines` ("Name: value") and
  // "Connection: close", then the blank line. False as Send.
  bool SendHead(int status, const std::vector<std::string>& header_lines);
  // Waits until the client closes its end of the connection (counted in
  // LoopbackHttpServer::peer_closes). False when `timeout` passes or the server stops first.
  // Bytes the client sends meanwhile are discarded.
  bool WaitForPeerClose(std::chrono::milliseconds timeout);
  // Polls `condition` until it holds. False when `timeout` passes or the server stops first.
  bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

 private:
  int fd_;
  const std::atomic<bool>& stopping_;
  std::atomic<std::size_t>& peer_closes_;
};

class LoopbackHttpServer {
 public:
  using Handler = std::function<void(const ReceivedRequest&, ServerConnection&)>;

  // Listens on 127.0.0.1 with a port the kernel picks. nullptr with *error when the socket
  // cannot be set up.
  static std::unique_ptr<LoopbackHttpServer> Start(Handler handler, std::string* error);
  // Stops accepting, wakes every handler (their Send/Wait calls fail) and joins the threads.
  ~LoopbackHttpServer();
  LoopbackHttpServer(const LoopbackHttpServer&) = delete;
  LoopbackHttpServer& operator=(const LoopbackHttpServer&) = delete;

  uint16_t port() const { return port_; }
  // "http://<host>:<port><path>"; `host` "localhost" gives a different origin from 127.0.0.1.
  std::string Url(std::string_view path, std::string_view host = "127.0.0.1") const;

  // Copies of the requests received so far, in order of arrival.
  std::vector<ReceivedRequest> requests() const;
  std::size_t request_count() const;
  // Connections whose client closed while their handler waited in WaitForPeerClose.
  std::size_t peer_closes() const { return peer_closes_.load(); }

 private:
  LoopbackHttpServer(int listen_fd, uint16_t port, Handler handler);
  void AcceptLoop();
  void Serve(int fd);
  // Reads one request head and body; false when the client went away or sent garbage.
  bool ReadRequest(int fd, ReceivedRequest* request);

  int listen_fd_;
  uint16_t port_;
  Handler handler_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> peer_closes_{0};

  mutable std::mutex mutex_;
  std::vector<ReceivedRequest> requests_;
  std::vector<int> open_fds_;
  std::vector<std::thread> connection_threads_;
  std::thread accept_thread_;
};

}  // namespace sse2kafka::test_support
