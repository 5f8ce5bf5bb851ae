#include "ops/admin_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>

#include "ops/metrics.h"

namespace sse2kafka::ops {
namespace {

// Scrapes and probes are small and rare: a few workers are plenty, and they bound how many
// threads a misbehaving client can keep busy.
constexpr std::size_t kWorkerThreads = 4;
// An idle keep-alive connection holds a worker; Prometheus reconnects cheaply.
constexpr time_t kKeepAliveSeconds = 2;
constexpr time_t kReadTimeoutSeconds = 5;
constexpr auto kStopPollInterval = std::chrono::milliseconds(10);

constexpr const char* kTextType = "text/plain; charset=utf-8";

struct HostPort {
  std::string host;
  int port = 0;
};

// "HOST:PORT" or "[IPv6]:PORT" (the config loader has checked the shape already).
std::optional<HostPort> ParseListen(std::string_view listen) {
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = listen.substr(0, colon);
  const std::string_view port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  const auto [end, failure] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (host.empty() || failure != std::errc() || end != port_text.data() + port_text.size() || port < 0 ||
      port > 65535) {
    return std::nullopt;
  }
  return HostPort{std::string(host), port};
}

// SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a second daemon could
// bind the same port and take half of the scrapes instead of failing to start.
void AdminSocketOptions(socket_t sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

void ServeText(httplib::Response& response, int status, std::string body) {
  response.status = status;
  response.set_content(std::move(body), kTextType);
}

void RouteEndpoints(httplib::Server& server, const MetricsPublisher& publisher) {
  server.Get("/metrics", [&publisher](const httplib::Request&, httplib::Response& response) {
    const std::shared_ptr<const MetricsSnapshot> snapshot = publisher.Latest();
    if (snapshot == nullptr) return ServeText(response, 503, "no metrics published yet\n");
    response.set_content(RenderPrometheus(*snapshot, std::chrono::steady_clock::now()), kPrometheusContentType);
  });

  server.Get("/healthz", [&publisher](const httplib::Request&, httplib::Response& response) {
    const std::shared_ptr<const MetricsSnapshot> snapshot = publisher.Latest();
    if (IsHealthy(snapshot.get(), publisher.interval(), std::chrono::steady_clock::now())) {
      return ServeText(response, 200, "ok\n");
    }
    ServeText(response, 503, snapshot == nullptr ? "event loop: no metrics published yet\n"
                                                 : "event loop: not turning (metrics are stale)\n");
  });

  server.Get("/readyz", [&publisher](const httplib::Request&, httplib::Response& response) {
    const std::shared_ptr<const MetricsSnapshot> snapshot = publisher.Latest();
    const Readiness readiness =
        EvaluateReadiness(snapshot.get(), publisher.interval(), std::chrono::steady_clock::now());
    if (readiness.ready) return ServeText(response, 200, "ready\n");
    std::string body = "not ready\n";
    for (const std::string& problem : readiness.problems) body += "- " + problem + "\n";
    ServeText(response, 503, std::move(body));
  });

  server.Get("/streams", [&publisher](const httplib::Request&, httplib::Response& response) {
    const std::shared_ptr<const MetricsSnapshot> snapshot = publisher.Latest();
    if (snapshot == nullptr) return ServeText(response, 503, "no metrics published yet\n");
    response.set_content(RenderStreamsJson(*snapshot), "application/json");
  });

  server.set_exception_handler([](const httplib::Request&, httplib::Response& response, std::exception_ptr failure) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(std::move(failure));
    } catch (const std::exception& exception) {
      what = exception.what();
    } catch (...) {
    }
    ServeText(response, 500, "internal error: " + what + "\n");
  });
}

}  // namespace

AdminServer::AdminServer() = default;

AdminServer::~AdminServer() { Stop(); }

bool AdminServer::Start(const std::string& listen, const MetricsPublisher& publisher, std::string* error) {
  const std::optional<HostPort> address = ParseListen(listen);
  if (!address) {
    *error = "admin.listen \"" + listen + "\" is not HOST:PORT";
    return false;
  }

  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  server->set_socket_options(AdminSocketOptions);
  server->set_tcp_nodelay(true);  // answers are one write; do not wait for the client's ACK
  server->set_keep_alive_timeout(kKeepAliveSeconds);
  server->set_read_timeout(kReadTimeoutSeconds);
  server->set_write_timeout(kReadTimeoutSeconds);
  RouteEndpoints(*server, publisher);

  // cpp-httplib does not report why binding failed; errno still holds the bind's reason.
  errno = 0;
  const int port =
      address->port == 0 ? server->bind_to_any_port(address->host) : (server->bind_to_port(address->host, address->port)
                                                                           ? address->port
                                                                           : -1);
  if (port < 0) {
    const int cause = errno;
    *error = "cannot listen on admin.listen " + listen +
             (cause != 0 ? std::string(": ") + std::strerror(cause) : std::string(": address not usable"));
    return false;
  }

  std::promise<void> finished;
  finished_ = finished.get_future();
  server_ = std::move(server);
  port_ = port;
  thread_ = std::thread([server = server_.get(), finished = std::move(finished)]() mutable {
    server->listen_after_bind();
    finished.set_value();
  });
  return true;
}

void AdminServer::Stop() {
  if (!thread_.joinable()) return;
  // httplib's stop() acts only once the listening thread has entered its accept loop, which may
  // not have happened yet right after Start: repeat until the thread says it has left.
  do {
    server_->stop();
  } while (finished_.wait_for(kStopPollInterval) != std::future_status::ready);
  thread_.join();
  server_.reset();
}

}  // namespace sse2kafka::ops
