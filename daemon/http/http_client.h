// HTTP transfers driven by libcurl's multi interface on an EventLoop
// (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION / curl_multi_socket_action).
//
// The client knows requests, responses and bytes; it does not know what the bytes mean.
// Redirects are followed here rather than by libcurl, because libcurl would resend every
// custom header (an API key, say) to whatever host a redirect names; only Authorization is
// withheld by libcurl itself.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/event_loop.h"
#include "http/url_redaction.h"

namespace sse2kafka::http {

using TransferId = uint64_t;

enum class HttpVersionPreference { kAuto, kHttp1_1, kHttp2 };

struct TlsOptions {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool insecure_skip_verify = false;
};

struct HttpRequest {
  std::string url;
  std::string method = "GET";
  // "Name: value" lines the protocol needs (Accept, Last-Event-ID, ...): sent on every hop.
  std::vector<std::string> protocol_headers;
  // "Name: value" lines from the user's config: not sent to another origin after a redirect
  // unless keep_user_headers_across_origins.
  std::vector<std::string> user_headers;
  bool keep_user_headers_across_origins = false;
  std::optional<std::string> body;
  std::chrono::milliseconds connect_timeout{10000};
  TlsOptions tls;
  std::string proxy;  // empty: libcurl's environment variables (http_proxy, ...) apply
  HttpVersionPreference version = HttpVersionPreference::kAuto;
  int max_redirects = 10;
  std::string user_agent;
  long receive_buffer_size = 0;  // 0: libcurl's default
  // Which query values of this URL (and of redirect targets) are secret: every URL in an
  // error message of this transfer is redacted with it.
  SecretQueryParameters secrets;
};

struct ResponseHead {
  long status = 0;
  std::string content_type;  // as sent; empty when absent
  std::string retry_after;   // as sent; empty when absent
  std::string url;           // the URL that answered (after redirects)
  int redirects = 0;
};

enum class BodyAction {
  kContinue,  // the bytes were consumed
  kPause,     // the bytes were NOT consumed: stop reading; they come again after Resume
  kAbort,     // end the transfer (OnTransferDone follows with aborted_by_observer)
};

struct TransferResult {
  int curl_code = 0;          // CURLE_OK when the server ended the response normally
  std::string error;          // human-readable cause when curl_code != 0; URLs in it redacted
  long status = 0;            // HTTP status of the final response, 0 if none arrived
  bool aborted_by_observer = false;
  bool ok() const { return curl_code == 0 && !aborted_by_observer; }
};

// Receives one transfer's progress. Calls run on the loop thread.
class TransferObserver {
 public:
  virtual ~TransferObserver() = default;
  // The final response's status line and headers arrived (redirects already followed).
  virtual void OnResponseHead(TransferId id, const ResponseHead& head) = 0;
  // Body bytes (decompressed). See BodyAction for what the return value means.
  virtual BodyAction OnBody(TransferId id, std::string_view bytes) = 0;
  // The transfer ended; it no longer exists when this is called. Not called after Cancel.
  virtual void OnTransferDone(TransferId id, const TransferResult& result) = 0;
};

class HttpClient {
 public:
  // Sets up a curl multi handle on `loop`. nullptr with *error if libcurl refuses.
  static std::unique_ptr<HttpClient> Create(EventLoop& loop, std::string* error);
  ~HttpClient();  // cancels every transfer without notifying observers
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a transfer. Returns 0 with *error if libcurl refuses the request's options (for
  // example a bad client certificate path is only found later, as a transfer error).
  TransferId Start(const HttpRequest& request, TransferObserver* observer, std::string* error);

  // Ends a transfer; its observer hears nothing more from it. Safe to call from the
  // transfer's own callbacks, and with an id that already ended.
  void Cancel(TransferId id);

  // Resumes a transfer whose observer returned kPause; the withheld bytes are delivered
  // (possibly before Resume returns). Must not be called from that transfer's own callbacks.
  void Resume(TransferId id);

  std::size_t active_transfers() const { return transfers_.size(); }

 private:
  struct Transfer;
  HttpClient(EventLoop& loop, CURLM* multi);

  static int OnSocket(CURL* easy, curl_socket_t fd, int what, void* client, void* socket_data);
  static int OnTimer(CURLM* multi, long timeout_ms, void* client);
  static size_t OnHeaderLine(char* data, size_t size, size_t count, void* transfer);
  static size_t OnBodyBytes(char* data, size_t size, size_t count, void* transfer);

  bool Configure(Transfer& t, std::string* error);
  void Drive(curl_socket_t fd, int action);
  void ReapFinished();
  void Finish(Transfer& t, CURLcode code);
  bool FollowRedirect(Transfer& t, std::string* error);
  void Destroy(TransferId id);
  void AfterCurlCall();

  EventLoop& loop_;
  CURLM* multi_;
  TimerId curl_timer_ = 0;
  TransferId next_id_ = 1;
  int in_curl_ = 0;  // depth of curl calls on the stack; callbacks may be running
  std::vector<TransferId> pending_cancels_;
  std::unordered_map<TransferId, std::unique_ptr<Transfer>> transfers_;
};

}  // namespace sse2kafka::http
