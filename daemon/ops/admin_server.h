// The admin HTTP endpoints (`admin.listen`), served by cpp-httplib on threads of their own:
//   GET /metrics  Prometheus text format
//   GET /healthz  200 "ok" while the event loop turns, else 503
//   GET /readyz   200 "ready" when Kafka is reachable and every stream is connected or in a
//                 normal backoff, else 503 with one line per problem
//   GET /streams  JSON array describing each stream
// Every answer is rendered from MetricsPublisher::Latest(): the server never touches an object
// the event loop owns, and a slow scrape never holds the loop up.
#pragma once

#include <future>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace sse2kafka::ops {

class MetricsPublisher;

class AdminServer {
 public:
  AdminServer();
  // Stops the server if it runs.
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds `listen` ("HOST:PORT", "[IPv6]:PORT"; port 0 picks a free port) and starts serving
  // from `publisher`, which must outlive the server. Returns false with *error naming the address
  // (and the system's reason when it gives one) if the address is malformed or cannot be bound;
  // nothing runs then. Call at most once per AdminServer.
  bool Start(const std::string& listen, const MetricsPublisher& publisher, std::string* error);

  // The bound port (useful after listening on port 0); 0 when not started.
  int port() const { return port_; }

  // Stops accepting, lets requests in progress finish, and joins the server's threads.
  // Idempotent; a no-op when Start was not called or failed.
  void Stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::future<void> finished_;  // ready once the listening thread has left the accept loop
  int port_ = 0;
};

}  // namespace sse2kafka::ops
