// HttpClient against a scripted loopback server: what is sent (method, headers, body), what
// comes back (head, body in order, gzip decoded), flow control (pause, resume, abort, cancel
// from inside callbacks), redirects with fetch's method rules and the cross-origin header rule,
// and failures.
#include "http/http_client.h"

#include <curl/curl.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "http/event_loop.h"
#include "support/loopback_http_server.h"
#include "support/run_loop.h"

namespace sse2kafka::http {
namespace {

using std::chrono::milliseconds;
using test_support::LoopbackHttpServer;
using test_support::ReceivedRequest;
using test_support::RunLoopFor;
using test_support::RunLoopUntil;
using test_support::ServerConnection;
using ::testing::Optional;

constexpr milliseconds kDeadline{10000};

// Bytes whose every position differs from its neighbours, so that a lost, repeated or
// reordered piece cannot go unnoticed.
std::string Pattern(std::size_t n) {
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
  return out;
}

std::string Gzip(std::string_view in) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out(deflateBound(&zs, in.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END ? out : std::string();
}

// Sends a complete response with a Content-Length.
void Respond(ServerConnection& c, int status, std::vector<std::string> headers, std::string_view body) {
  headers.push_back("Content-Length: " + std::to_string(body.size()));
  if (c.SendHead(status, headers)) c.Send(body);
}

// The server as "localhost" when the request came to 127.0.0.1: same port, another origin.
std::string OtherOriginUrl(const ReceivedRequest& req, std::string_view path) {
  const std::string host = req.Header("Host").value_or("");
  return "http://localhost" + host.substr(std::min(host.find(':'), host.size())) + std::string(path);
}

// Records everything a transfer reports; tests plug in what the observer answers.
class Recorder final : public TransferObserver {
 public:
  void OnResponseHead(TransferId id, const ResponseHead& head) override {
    heads.push_back(head);
    if (on_head) on_head(id, head);
  }
  BodyAction OnBody(TransferId id, std::string_view bytes) override {
    offered.emplace_back(bytes);
    const BodyAction action = on_body ? on_body(id, bytes) : BodyAction::kContinue;
    if (action == BodyAction::kContinue) accepted.append(bytes);
    return action;
  }
  void OnTransferDone(TransferId, const TransferResult& r) override {
    ++done_calls;
    result = r;
  }

  std::function<void(TransferId, const ResponseHead&)> on_head;
  std::function<BodyAction(TransferId, std::string_view)> on_body;

  std::vector<ResponseHead> heads;
  std::vector<std::string> offered;  // every OnBody call's bytes, whatever the answer
  std::string accepted;              // the bytes answered with kContinue, in order
  std::optional<TransferResult> result;
  int done_calls = 0;
};

class HttpClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Loopback only: no proxy from the environment may get in between.
    setenv("no_proxy", "*", 1);
    setenv("NO_PROXY", "*", 1);
  }

  void SetUp() override {
    std::string error;
    loop_ = EventLoop::Create(&error);
    ASSERT_NE(loop_, nullptr) << error;
    client_ = HttpClient::Create(*loop_, &error);
    ASSERT_NE(client_, nullptr) << error;
  }

  void TearDown() override {
    client_.reset();  // closes connections, which ends handlers waiting for the peer
    server_.reset();
  }

  void Serve(LoopbackHttpServer::Handler handler) {
    std::string error;
    server_ = LoopbackHttpServer::Start(std::move(handler), &error);
    ASSERT_NE(server_, nullptr) << error;
  }

  // Starts `request` with `recorder` and turns the loop until the transfer is done.
  TransferId RunToCompletion(const HttpRequest& request, Recorder& recorder) {
    std::string error;
    const TransferId id = client_->Start(request, &recorder, &error);
    EXPECT_NE(id, 0u) << error;
    if (id == 0) return 0;
    EXPECT_TRUE(RunLoopUntil(*loop_, [&] { return recorder.result.has_value(); }, kDeadline))
        << "the transfer did not finish";
    return id;
  }

  std::unique_ptr<LoopbackHttpServer> server_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<HttpClient> client_;
};

// ---- what is sent ----------------------------------------------------------------------------

TEST_F(HttpClientTest, GetSendsProtocolAndUserHeadersAsGiven) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {"Content-Type: text/plain"}, "ok"); });
  HttpRequest request;
  request.url = server_->Url("/events?since=5");
  request.protocol_headers = {"Accept: text/event-stream", "Last-Event-ID: 42"};
  request.user_headers = {"X-Api-Key: k-123", "Authorization: Bearer tok"};
  request.user_agent = "test-agent/1.0";
  Recorder r;
  RunToCompletion(request, r);

  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "GET");
  EXPECT_EQ(got[0].target, "/events?since=5");
  EXPECT_THAT(got[0].Header("Accept"), Optional(std::string("text/event-stream")));
  EXPECT_THAT(got[0].Header("Last-Event-ID"), Optional(std::string("42")));
  EXPECT_THAT(got[0].Header("X-Api-Key"), Optional(std::string("k-123")));
  EXPECT_THAT(got[0].Header("Authorization"), Optional(std::string("Bearer tok")));
  EXPECT_THAT(got[0].Header("User-Agent"), Optional(std::string("test-agent/1.0")));
  EXPECT_EQ(got[0].Header("Content-Length"), std::nullopt);
  EXPECT_EQ(got[0].body, "");

  ASSERT_TRUE(r.result.has_value());
  EXPECT_TRUE(r.result->ok()) << r.result->error;
  EXPECT_EQ(r.result->status, 200);
  EXPECT_EQ(r.accepted, "ok");
}

TEST_F(HttpClientTest, PostSendsItsBodyByteForByteWithoutWaitingForContinue) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {}, "done"); });
  // Large enough that libcurl would ask for "100 Continue" if it were allowed to, and with a
  // NUL inside so that the length, not the C string, decides what is sent.
  std::string body = "{\"query\":\"a\"}" + std::string(1, '\0') + Pattern(64 * 1024);
  HttpRequest request;
  request.url = server_->Url("/subscribe");
  request.method = "POST";
  request.body = body;
  request.protocol_headers = {"Content-Type: application/json"};
  Recorder r;
  RunToCompletion(request, r);

  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "POST");
  EXPECT_EQ(got[0].body, body);
  EXPECT_THAT(got[0].Header("Content-Type"), Optional(std::string("application/json")));
  EXPECT_EQ(got[0].Header("Expect"), std::nullopt);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_TRUE(r.result->ok()) << r.result->error;
  EXPECT_EQ(r.accepted, "done");
}

TEST_F(HttpClientTest, OtherMethodWithBodySendsThatMethodAndBody) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {}, ""); });
  HttpRequest request;
  request.url = server_->Url("/x");
  request.method = "PUT";
  request.body = "replace";
  Recorder r;
  RunToCompletion(request, r);
  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "PUT");
  EXPECT_EQ(got[0].body, "replace");
}

// ---- what comes back -------------------------------------------------------------------------

TEST_F(HttpClientTest, ResponseHeadCarriesStatusContentTypeAndRetryAfter) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    Respond(c, 503, {"Content-Type: text/plain; charset=utf-8", "Retry-After: 120"}, "busy");
  });
  HttpRequest request;
  request.url = server_->Url("/feed");
  Recorder r;
  RunToCompletion(request, r);

  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_EQ(r.heads[0].status, 503);
  EXPECT_EQ(r.heads[0].content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(r.heads[0].retry_after, "120");
  EXPECT_EQ(r.heads[0].url, request.url);
  EXPECT_EQ(r.heads[0].redirects, 0);
  EXPECT_EQ(r.accepted, "busy");
  ASSERT_TRUE(r.result.has_value());
  EXPECT_EQ(r.result->curl_code, CURLE_OK);
  EXPECT_EQ(r.result->status, 503);
  EXPECT_FALSE(r.result->aborted_by_observer);
  EXPECT_EQ(r.done_calls, 1);
}

TEST_F(HttpClientTest, HeadWithoutContentTypeOrRetryAfterLeavesThemEmpty) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {}, "x"); });
  HttpRequest request;
  request.url = server_->Url("/");
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_EQ(r.heads[0].content_type, "");
  EXPECT_EQ(r.heads[0].retry_after, "");
}

TEST_F(HttpClientTest, BodyBytesArriveInOrderAcrossManyWrites) {
  const std::string payload = Pattern(1 << 20);
  Serve([payload](const ReceivedRequest&, ServerConnection& c) {
    // No Content-Length: the body ends when the server closes, as a stream does.
    if (!c.SendHead(200, {"Content-Type: application/octet-stream"})) return;
    std::size_t sent = 0;
    for (std::size_t piece = 1; sent < payload.size(); piece = piece * 3 + 17) {
      const std::size_t n = std::min(piece, payload.size() - sent);
      if (!c.Send(std::string_view(payload).substr(sent, n))) return;
      sent += n;
    }
  });
  HttpRequest request;
  request.url = server_->Url("/big");
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_TRUE(r.result->ok()) << r.result->error;
  EXPECT_EQ(r.accepted.size(), payload.size());
  EXPECT_TRUE(r.accepted == payload) << "body bytes were lost, repeated or reordered";
}

TEST_F(HttpClientTest, GzipEncodedBodyIsDecoded) {
  const std::string plain = "data: " + std::string(20000, 'z') + "\n\n";
  const std::string compressed = Gzip(plain);
  ASSERT_FALSE(compressed.empty());
  ASSERT_LT(compressed.size(), plain.size());
  Serve([compressed](const ReceivedRequest&, ServerConnection& c) {
    Respond(c, 200, {"Content-Type: text/event-stream", "Content-Encoding: gzip"}, compressed);
  });
  HttpRequest request;
  request.url = server_->Url("/gz");
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_TRUE(r.result->ok()) << r.result->error;
  EXPECT_TRUE(r.accepted == plain) << "got " << r.accepted.size() << " bytes";
  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 1u);
  const std::optional<std::string> accept_encoding = got[0].Header("Accept-Encoding");
  ASSERT_TRUE(accept_encoding.has_value());
  EXPECT_NE(accept_encoding->find("gzip"), std::string::npos) << *accept_encoding;
}

// ---- flow control ----------------------------------------------------------------------------

TEST_F(HttpClientTest, PauseWithholdsBytesAndResumeDeliversTheSameBytesAgain) {
  const std::string payload = Pattern(200 * 1024);
  Serve([payload](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {}, payload); });
  std::string withheld;
  Recorder r;
  r.on_body = [&](TransferId, std::string_view bytes) {
    if (withheld.empty()) {
      withheld = std::string(bytes);
      return BodyAction::kPause;
    }
    return BodyAction::kContinue;
  };
  HttpRequest request;
  request.url = server_->Url("/p");
  std::string error;
  const TransferId id = client_->Start(request, &r, &error);
  ASSERT_NE(id, 0u) << error;
  ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return !withheld.empty(); }, kDeadline));

  RunLoopFor(*loop_, milliseconds(100));
  EXPECT_EQ(r.offered.size(), 1u) << "bytes were delivered while paused";
  EXPECT_FALSE(r.result.has_value());
  EXPECT_EQ(r.accepted, "");

  client_->Resume(id);
  ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return r.result.has_value(); }, kDeadline));
  EXPECT_TRUE(r.result->ok()) << r.result->error;
  ASSERT_GE(r.offered.size(), 2u);
  EXPECT_EQ(r.accepted.substr(0, withheld.size()), withheld) << "the withheld chunk did not come first";
  EXPECT_EQ(r.accepted.size(), payload.size());
  EXPECT_TRUE(r.accepted == payload) << "bytes were lost or duplicated across the pause";
}

TEST_F(HttpClientTest, RepeatedPauseAndResumeLosesAndRepeatsNothing) {
  const std::string payload = Pattern(512 * 1024);
  Serve([payload](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {}, payload); });
  int calls = 0;
  int pauses = 0;
  Recorder r;
  r.on_body = [&](TransferId id, std::string_view) {
    // Every other offer is refused; the resume comes from the loop, never from this callback.
    if (++calls % 2 == 1 && pauses < 500) {
      ++pauses;
      loop_->ScheduleAfter(milliseconds(0), [this, id] { client_->Resume(id); });
      return BodyAction::kPause;
    }
    return BodyAction::kContinue;
  };
  HttpRequest request;
  request.url = server_->Url("/pp");
  std::string error;
  ASSERT_NE(client_->Start(request, &r, &error), 0u) << error;
  ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return r.result.has_value(); }, kDeadline));
  EXPECT_TRUE(r.result->ok()) << r.result->error;
  EXPECT_GT(pauses, 1);
  EXPECT_TRUE(r.accepted == payload) << "got " << r.accepted.size() << " of " << payload.size() << " bytes";
}

// Backpressure pauses gzip-encoded streams too: the decoded bytes must survive pausing.
TEST_F(HttpClientTest, PauseAndResumeOfAGzipEncodedBodyLosesAndRepeatsNothing) {
  std::string plain;
  for (int i = 0; plain.size() < 600 * 1024; ++i) {
    plain += "id: " + std::to_string(i) + "\ndata: {\"n\":" + std::to_string(i * 7919 % 100003) + "}\n\n";
  }
  const std::string compressed = Gzip(plain);
  ASSERT_FALSE(compressed.empty());
  Serve([compressed](const ReceivedRequest&, ServerConnection& c) {
    Respond(c, 200, {"Content-Type: text/event-stream", "Content-Encoding: gzip"}, compressed);
  });
  int calls = 0;
  int pauses = 0;
  Recorder r;
  r.on_body = [&](TransferId id, std::string_view) {
    if (++calls % 2 == 1 && pauses < 500) {
      ++pauses;
      loop_->ScheduleAfter(milliseconds(0), [this, id] { client_->Resume(id); });
      return BodyAction::kPause;
    }
    return BodyAction::kContinue;
  };
  HttpRequest request;
  request.url = server_->Url("/gzp");
  std::string error;
  ASSERT_NE(client_->Start(request, &r, &error), 0u) << error;
  ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return r.result.has_value(); }, kDeadline));
  EXPECT_TRUE(r.result->ok()) << r.result->error;
  EXPECT_GT(pauses, 1);
  EXPECT_TRUE(r.accepted == plain) << "got " << r.accepted.size() << " of " << plain.size() << " bytes";
}

TEST_F(HttpClientTest, AbortEndsTheTransferAsAbortedByObserver) {
  const std::string payload = Pattern(256 * 1024);
  Serve([payload](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {}, payload); });
  Recorder r;
  r.on_body = [](TransferId, std::string_view) { return BodyAction::kAbort; };
  HttpRequest request;
  request.url = server_->Url("/a");
  RunToCompletion(request, r);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_TRUE(r.result->aborted_by_observer);
  EXPECT_FALSE(r.result->ok());
  EXPECT_EQ(r.result->status, 200);
  EXPECT_EQ(r.offered.size(), 1u);
  EXPECT_EQ(r.done_calls, 1);
  EXPECT_EQ(client_->active_transfers(), 0u);
}

TEST_F(HttpClientTest, CancelFromInsideOnBodyStopsEverythingWithoutDone) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!c.SendHead(200, {"Content-Type: text/event-stream"})) return;
    if (!c.Send("data: first\n\n")) return;
    c.WaitForPeerClose(kDeadline);
    c.Send("data: never read\n\n");
  });
  Recorder r;
  r.on_body = [this](TransferId id, std::string_view) {
    client_->Cancel(id);
    client_->Cancel(id);  // twice is harmless
    return BodyAction::kContinue;
  };
  HttpRequest request;
  request.url = server_->Url("/c");
  std::string error;
  ASSERT_NE(client_->Start(request, &r, &error), 0u) << error;
  ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return server_->peer_closes() > 0; }, kDeadline))
      << "the connection was not closed";
  RunLoopFor(*loop_, milliseconds(50));
  EXPECT_EQ(r.offered.size(), 1u);
  EXPECT_EQ(r.done_calls, 0);
  EXPECT_EQ(client_->active_transfers(), 0u);
}

TEST_F(HttpClientTest, CancelFromInsideOnResponseHeadStopsEverythingWithoutDone) {
  Serve([](const ReceivedRequest&, ServerConnection& c) {
    if (!c.SendHead(200, {"Content-Type: text/event-stream"})) return;
    c.Send("data: x\n\n");
    c.WaitForPeerClose(kDeadline);
  });
  Recorder r;
  r.on_head = [this](TransferId id, const ResponseHead&) { client_->Cancel(id); };
  HttpRequest request;
  request.url = server_->Url("/h");
  std::string error;
  ASSERT_NE(client_->Start(request, &r, &error), 0u) << error;
  ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return server_->peer_closes() > 0; }, kDeadline))
      << "the connection was not closed";
  RunLoopFor(*loop_, milliseconds(50));
  EXPECT_EQ(r.heads.size(), 1u);
  EXPECT_TRUE(r.offered.empty());
  EXPECT_EQ(r.done_calls, 0);
  EXPECT_EQ(client_->active_transfers(), 0u);
}

TEST_F(HttpClientTest, CancelOfAFinishedOrUnknownTransferDoesNothing) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { Respond(c, 200, {}, "x"); });
  HttpRequest request;
  request.url = server_->Url("/");
  Recorder r;
  const TransferId id = RunToCompletion(request, r);
  client_->Cancel(id);
  client_->Cancel(id + 100);
  client_->Resume(id + 100);
  EXPECT_EQ(r.done_calls, 1);
  EXPECT_EQ(client_->active_transfers(), 0u);
}

TEST_F(HttpClientTest, ObserverMayStartTheNextTransferFromOnTransferDone) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) { Respond(c, 200, {}, req.target); });
  HttpRequest first;
  first.url = server_->Url("/one");
  HttpRequest second;
  second.url = server_->Url("/two");
  Recorder r2;
  std::string error;

  class Chain final : public TransferObserver {
   public:
    Chain(HttpClient& client, const HttpRequest& next, Recorder& next_recorder)
        : client_(client), next_(next), next_recorder_(next_recorder) {}
    void OnResponseHead(TransferId, const ResponseHead&) override {}
    BodyAction OnBody(TransferId, std::string_view) override { return BodyAction::kContinue; }
    void OnTransferDone(TransferId, const TransferResult&) override {
      std::string e;
      started = client_.Start(next_, &next_recorder_, &e);
    }
    TransferId started = 0;

   private:
    HttpClient& client_;
    const HttpRequest& next_;
    Recorder& next_recorder_;
  } chain(*client_, second, r2);

  ASSERT_NE(client_->Start(first, &chain, &error), 0u) << error;
  ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return r2.result.has_value(); }, kDeadline));
  EXPECT_NE(chain.started, 0u);
  EXPECT_TRUE(r2.result->ok()) << r2.result->error;
  EXPECT_EQ(r2.accepted, "/two");
}

// ---- redirects -------------------------------------------------------------------------------

struct MethodRule {
  int status;
  const char* method;
  const char* expected_method;
  bool body_kept;
};

class RedirectMethodTest : public HttpClientTest, public ::testing::WithParamInterface<MethodRule> {};

TEST_P(RedirectMethodTest, FollowsFetchMethodRules) {
  const MethodRule rule = GetParam();
  Serve([rule](const ReceivedRequest& req, ServerConnection& c) {
    if (req.index == 0) {
      Respond(c, rule.status, {"Location: /next"}, "moved");
    } else {
      Respond(c, 200, {"Content-Type: text/event-stream"}, "data: hi\n\n");
    }
  });
  HttpRequest request;
  request.url = server_->Url("/start");
  request.method = rule.method;
  request.body = "payload";
  request.protocol_headers = {"Accept: text/event-stream"};
  Recorder r;
  RunToCompletion(request, r);

  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].method, rule.method);
  EXPECT_EQ(got[0].body, "payload");
  EXPECT_EQ(got[1].target, "/next");
  EXPECT_EQ(got[1].method, rule.expected_method);
  EXPECT_EQ(got[1].body, rule.body_kept ? "payload" : "");
  if (!rule.body_kept) {
    EXPECT_EQ(got[1].Header("Content-Length").value_or("0"), "0");
  }
  EXPECT_THAT(got[1].Header("Accept"), Optional(std::string("text/event-stream")));

  ASSERT_EQ(r.heads.size(), 1u) << "a followed redirect must not be reported as a head";
  EXPECT_EQ(r.heads[0].status, 200);
  EXPECT_EQ(r.heads[0].redirects, 1);
  EXPECT_EQ(r.heads[0].url, server_->Url("/next"));
  EXPECT_EQ(r.accepted, "data: hi\n\n");
  ASSERT_TRUE(r.result.has_value());
  EXPECT_TRUE(r.result->ok()) << r.result->error;
}

INSTANTIATE_TEST_SUITE_P(
    FetchRules, RedirectMethodTest,
    ::testing::Values(MethodRule{302, "POST", "GET", false}, MethodRule{301, "POST", "GET", false},
                      MethodRule{303, "POST", "GET", false}, MethodRule{303, "PUT", "GET", false},
                      MethodRule{307, "POST", "POST", true}, MethodRule{308, "PUT", "PUT", true},
                      MethodRule{302, "PUT", "PUT", true}),
    [](const ::testing::TestParamInfo<MethodRule>& param_info) {
      return std::to_string(param_info.param.status) + "_" + param_info.param.method;
    });

TEST_F(HttpClientTest, RelativeLocationIsResolvedAgainstTheUrlThatSentIt) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (req.index == 0) {
      Respond(c, 302, {"Location: next?x=1"}, "");
    } else if (req.index == 1) {
      Respond(c, 307, {"Location: ../up"}, "");
    } else {
      Respond(c, 200, {}, "end");
    }
  });
  HttpRequest request;
  request.url = server_->Url("/a/b/start");
  Recorder r;
  RunToCompletion(request, r);
  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].target, "/a/b/next?x=1");
  EXPECT_EQ(got[2].target, "/a/up");
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_EQ(r.heads[0].url, server_->Url("/a/up"));
  EXPECT_EQ(r.heads[0].redirects, 2);
  EXPECT_EQ(r.accepted, "end");
}

TEST_F(HttpClientTest, CrossOriginRedirectDropsUserHeadersButKeepsProtocolHeaders) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (req.index == 0) {
      Respond(c, 302, {"Location: " + OtherOriginUrl(req, "/elsewhere")}, "");
    } else {
      Respond(c, 200, {}, "there");
    }
  });
  const std::string other_origin_url = server_->Url("/elsewhere", "localhost");
  HttpRequest request;
  request.url = server_->Url("/here");
  request.protocol_headers = {"Accept: text/event-stream", "Last-Event-ID: 7"};
  request.user_headers = {"X-Api-Key: secret", "Authorization: Bearer secret"};
  Recorder r;
  RunToCompletion(request, r);

  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got[0].Header("X-Api-Key"), Optional(std::string("secret")));
  EXPECT_THAT(got[1].Header("Host"), Optional("localhost:" + std::to_string(server_->port())));
  EXPECT_EQ(got[1].Header("X-Api-Key"), std::nullopt);
  EXPECT_EQ(got[1].Header("Authorization"), std::nullopt);
  EXPECT_THAT(got[1].Header("Accept"), Optional(std::string("text/event-stream")));
  EXPECT_THAT(got[1].Header("Last-Event-ID"), Optional(std::string("7")));
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_EQ(r.heads[0].url, other_origin_url);
  EXPECT_EQ(r.accepted, "there");
}

TEST_F(HttpClientTest, SameOriginRedirectKeepsUserHeaders) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (req.index == 0) {
      Respond(c, 301, {"Location: /same"}, "");
    } else {
      Respond(c, 200, {}, "");
    }
  });
  HttpRequest request;
  request.url = server_->Url("/here");
  request.user_headers = {"X-Api-Key: secret"};
  Recorder r;
  RunToCompletion(request, r);
  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got[1].Header("X-Api-Key"), Optional(std::string("secret")));
}

TEST_F(HttpClientTest, KeepUserHeadersAcrossOriginsKeepsThem) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    if (req.index == 0) {
      Respond(c, 307, {"Location: " + OtherOriginUrl(req, "/elsewhere")}, "");
    } else {
      Respond(c, 200, {}, "");
    }
  });
  HttpRequest request;
  request.url = server_->Url("/here");
  request.user_headers = {"X-Api-Key: secret"};
  request.keep_user_headers_across_origins = true;
  Recorder r;
  RunToCompletion(request, r);
  const std::vector<ReceivedRequest> got = server_->requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got[1].Header("Host"), Optional("localhost:" + std::to_string(server_->port())));
  EXPECT_THAT(got[1].Header("X-Api-Key"), Optional(std::string("secret")));
}

TEST_F(HttpClientTest, MoreThanMaxRedirectsFailsWithAnError) {
  Serve([](const ReceivedRequest& req, ServerConnection& c) {
    Respond(c, 302, {"Location: /hop" + std::to_string(req.index + 1)}, "");
  });
  HttpRequest request;
  request.url = server_->Url("/hop0");
  request.max_redirects = 2;
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_FALSE(r.result->ok());
  EXPECT_EQ(r.result->curl_code, CURLE_TOO_MANY_REDIRECTS);
  EXPECT_FALSE(r.result->error.empty());
  EXPECT_TRUE(r.heads.empty());
  EXPECT_EQ(server_->request_count(), 3u);  // the first request and the two hops allowed
}

TEST_F(HttpClientTest, RedirectWithoutLocationIsDeliveredAsAHead) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { Respond(c, 302, {"Content-Type: text/plain"}, "nowhere"); });
  HttpRequest request;
  request.url = server_->Url("/r");
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_EQ(r.heads[0].status, 302);
  EXPECT_EQ(r.heads[0].redirects, 0);
  EXPECT_EQ(r.accepted, "nowhere");
  ASSERT_TRUE(r.result.has_value());
  EXPECT_EQ(r.result->curl_code, CURLE_OK);
  EXPECT_EQ(r.result->status, 302);
  EXPECT_EQ(server_->request_count(), 1u);
}

TEST_F(HttpClientTest, RedirectToAnotherSchemeFailsWithAnError) {
  Serve([](const ReceivedRequest&, ServerConnection& c) { Respond(c, 302, {"Location: ftp://127.0.0.1/file"}, ""); });
  HttpRequest request;
  request.url = server_->Url("/r");
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_FALSE(r.result->ok());
  EXPECT_NE(r.result->curl_code, CURLE_OK);
  EXPECT_THAT(r.result->error, ::testing::HasSubstr("Location"));
  EXPECT_TRUE(r.heads.empty());
  EXPECT_EQ(server_->request_count(), 1u);
}

// ---- failures --------------------------------------------------------------------------------

TEST_F(HttpClientTest, ConnectionRefusedEndsWithACurlError) {
  // A port that was free a moment ago: nothing listens there.
  uint16_t port = 0;
  {
    std::string error;
    auto probe = LoopbackHttpServer::Start([](const ReceivedRequest&, ServerConnection&) {}, &error);
    ASSERT_NE(probe, nullptr) << error;
    port = probe->port();
  }
  HttpRequest request;
  request.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_EQ(r.result->curl_code, CURLE_COULDNT_CONNECT) << r.result->error;
  EXPECT_FALSE(r.result->error.empty());
  EXPECT_EQ(r.result->status, 0);
  EXPECT_FALSE(r.result->aborted_by_observer);
  EXPECT_TRUE(r.heads.empty());
  EXPECT_EQ(r.done_calls, 1);
}

TEST_F(HttpClientTest, ServerClosingBeforeAnyResponseIsAnError) {
  Serve([](const ReceivedRequest&, ServerConnection&) {});  // closes without a byte
  HttpRequest request;
  request.url = server_->Url("/");
  Recorder r;
  RunToCompletion(request, r);
  ASSERT_TRUE(r.result.has_value());
  EXPECT_NE(r.result->curl_code, CURLE_OK);
  EXPECT_FALSE(r.result->error.empty());
  EXPECT_TRUE(r.heads.empty());
}

}  // namespace
}  // namespace sse2kafka::http
