#include "http/http_client.h"

#include <sys/epoll.h>

#include <cstring>
#include <strings.h>

#include "http/header_values.h"

namespace sse2kafka::http {

struct HttpClient::Transfer {
  HttpClient* client = nullptr;
  TransferId id = 0;
  CURL* easy = nullptr;
  TransferObserver* observer = nullptr;
  HttpRequest request;

  // The current hop (changes on redirects).
  std::string url;
  std::string method;
  bool send_body = true;
  bool send_user_headers = true;
  int redirects = 0;
  curl_slist* header_list = nullptr;
  char error_buffer[CURL_ERROR_SIZE] = {};

  // The current response.
  std::string retry_after;
  std::string location;
  bool head_delivered = false;
  bool redirect_pending = false;

  bool cancelled = false;
  bool aborted = false;

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    curl_slist_free_all(header_list);
  }
};

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' ||
                        s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool HeaderNameIs(std::string_view line, std::string_view name, std::string_view* value) {
  if (line.size() <= name.size() || line[name.size()] != ':') return false;
  if (strncasecmp(line.data(), name.data(), name.size()) != 0) return false;
  *value = Trim(line.substr(name.size() + 1));
  return true;
}

bool IsRedirectStatus(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Resolves a Location value against the URL that sent it.
std::optional<std::string> ResolveLocation(const std::string& base, const std::string& location) {
  CURLU* u = curl_url();
  std::optional<std::string> resolved;
  if (curl_url_set(u, CURLUPART_URL, base.c_str(), 0) == CURLUE_OK &&
      curl_url_set(u, CURLUPART_URL, location.c_str(), 0) == CURLUE_OK) {
    char* out = nullptr;
    if (curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
      resolved = out;
      curl_free(out);
    }
  }
  curl_url_cleanup(u);
  return resolved;
}

}  // namespace

std::unique_ptr<HttpClient> HttpClient::Create(EventLoop& loop, std::string* error) {
  // Idempotent after the first call; main() calls it early so this is only a safety net.
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    *error = "curl_global_init failed";
    return nullptr;
  }
  CURLM* multi = curl_multi_init();
  if (!multi) {
    *error = "curl_multi_init failed";
    return nullptr;
  }
  std::unique_ptr<HttpClient> client(new HttpClient(loop, multi));
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &HttpClient::OnSocket);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, client.get());
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &HttpClient::OnTimer);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, client.get());
  // Streams to one HTTP/2 server share its connection.
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  return client;
}

HttpClient::HttpClient(EventLoop& loop, CURLM* multi) : loop_(loop), multi_(multi) {}

HttpClient::~HttpClient() {
  for (auto& [id, t] : transfers_) curl_multi_remove_handle(multi_, t->easy);
  transfers_.clear();
  loop_.Cancel(curl_timer_);
  curl_multi_cleanup(multi_);
}

TransferId HttpClient::Start(const HttpRequest& request, TransferObserver* observer,
                             std::string* error) {
  auto t = std::make_unique<Transfer>();
  t->client = this;
  t->id = next_id_++;
  t->observer = observer;
  t->request = request;
  t->url = request.url;
  t->method = request.method;
  t->easy = curl_easy_init();
  if (!t->easy) {
    *error = "curl_easy_init failed";
    return 0;
  }
  if (!Configure(*t, error)) return 0;
  const CURLMcode rc = curl_multi_add_handle(multi_, t->easy);
  if (rc != CURLM_OK) {
    *error = curl_multi_strerror(rc);
    return 0;
  }
  const TransferId id = t->id;
  transfers_.emplace(id, std::move(t));
  return id;
}

bool HttpClient::Configure(Transfer& t, std::string* error) {
  CURL* e = t.easy;
  const HttpRequest& r = t.request;
  curl_slist_free_all(t.header_list);
  t.header_list = nullptr;
  for (const std::string& h : r.protocol_headers) t.header_list = curl_slist_append(t.header_list, h.c_str());
  if (t.send_user_headers) {
    for (const std::string& h : r.user_headers) t.header_list = curl_slist_append(t.header_list, h.c_str());
  }
  // A body must not wait for "100 Continue": many SSE servers never send it.
  t.header_list = curl_slist_append(t.header_list, "Expect:");

  bool ok = curl_easy_setopt(e, CURLOPT_URL, t.url.c_str()) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, &t) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error_buffer) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.header_list) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &HttpClient::OnHeaderLine) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, &t) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpClient::OnBodyBytes) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, &t) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK;  // every encoding libcurl has
  ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(r.connect_timeout.count())) == CURLE_OK;
  // Keepalive probes find a peer that vanished without a FIN even on a silent stream.
  ok &= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 60L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 30L) == CURLE_OK;
  // Waiting for a connection that may multiplex only makes sense where HTTP/2 can happen;
  // on cleartext HTTP/1.1 it would hold a second stream behind a first that never ends.
  // libcurl before 8.0.0 breaks a second transfer on a reused h2c (prior knowledge)
  // connection ("Error in the HTTP2 framing layer", curl issue #10634): there, each h2c
  // stream gets its own connection.
  const bool h2c = r.version == HttpVersionPreference::kHttp2 && t.url.rfind("https:", 0) != 0;
  const bool h2c_reuse_broken = h2c && curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
  const bool may_multiplex =
      !h2c_reuse_broken && (r.version == HttpVersionPreference::kHttp2 ||
                            (r.version == HttpVersionPreference::kAuto && t.url.rfind("https:", 0) == 0));
  ok &= curl_easy_setopt(e, CURLOPT_PIPEWAIT, may_multiplex ? 1L : 0L) == CURLE_OK;
  if (h2c_reuse_broken) ok &= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) == CURLE_OK;
  if (!r.user_agent.empty()) ok &= curl_easy_setopt(e, CURLOPT_USERAGENT, r.user_agent.c_str()) == CURLE_OK;
  if (r.receive_buffer_size > 0) ok &= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, r.receive_buffer_size) == CURLE_OK;

  long version = CURL_HTTP_VERSION_2TLS;
  if (r.version == HttpVersionPreference::kHttp1_1) {
    version = CURL_HTTP_VERSION_1_1;
  } else if (r.version == HttpVersionPreference::kHttp2) {
    version = t.url.rfind("https:", 0) == 0 ? CURL_HTTP_VERSION_2_0
                                            : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  }
  ok &= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, version) == CURLE_OK;

  if (!r.tls.ca_file.empty()) ok &= curl_easy_setopt(e, CURLOPT_CAINFO, r.tls.ca_file.c_str()) == CURLE_OK;
  if (!r.tls.cert_file.empty()) ok &= curl_easy_setopt(e, CURLOPT_SSLCERT, r.tls.cert_file.c_str()) == CURLE_OK;
  if (!r.tls.key_file.empty()) ok &= curl_easy_setopt(e, CURLOPT_SSLKEY, r.tls.key_file.c_str()) == CURLE_OK;
  if (r.tls.insecure_skip_verify) {
    ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L) == CURLE_OK;
  }
  if (!r.proxy.empty()) ok &= curl_easy_setopt(e, CURLOPT_PROXY, r.proxy.c_str()) == CURLE_OK;

  if (t.send_body && r.body) {
    ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                           static_cast<curl_off_t>(r.body->size())) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body->data()) == CURLE_OK;
    if (t.method != "POST") ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t.method.c_str()) == CURLE_OK;
  } else if (t.method == "GET") {
    ok &= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
  } else if (t.method == "HEAD") {
    ok &= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK;
  } else {
    ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t.method.c_str()) == CURLE_OK;
  }
  if (!ok) {
    *error = "libcurl refused an option for " + RedactedUrl(t.url, t.request.secrets);
    return false;
  }
  return true;
}

void HttpClient::Cancel(TransferId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  if (in_curl_ > 0) {
    // libcurl forbids removing handles from inside its callbacks: the transfer goes quiet now
    // and is removed when the current curl call returns.
    it->second->cancelled = true;
    pending_cancels_.push_back(id);
    return;
  }
  Destroy(id);
}

void HttpClient::Resume(TransferId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  ++in_curl_;
  curl_easy_pause(it->second->easy, CURLPAUSE_CONT);
  --in_curl_;
  AfterCurlCall();
}

void HttpClient::Destroy(TransferId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  curl_multi_remove_handle(multi_, it->second->easy);
  transfers_.erase(it);
}

int HttpClient::OnSocket(CURL*, curl_socket_t fd, int what, void* client_ptr, void*) {
  auto* client = static_cast<HttpClient*>(client_ptr);
  if (what == CURL_POLL_REMOVE) {
    client->loop_.Unwatch(fd);
    return 0;
  }
  uint32_t events = 0;
  if (what & CURL_POLL_IN) events |= EPOLLIN;
  if (what & CURL_POLL_OUT) events |= EPOLLOUT;
  client->loop_.Watch(fd, events, [client, fd](uint32_t ready) {
    int action = 0;
    if (ready & EPOLLIN) action |= CURL_CSELECT_IN;
    if (ready & EPOLLOUT) action |= CURL_CSELECT_OUT;
    if (ready & (EPOLLERR | EPOLLHUP)) action |= CURL_CSELECT_ERR;
    client->Drive(fd, action);
  });
  return 0;
}

int HttpClient::OnTimer(CURLM*, long timeout_ms, void* client_ptr) {
  auto* client = static_cast<HttpClient*>(client_ptr);
  client->loop_.Cancel(client->curl_timer_);
  client->curl_timer_ = 0;
  if (timeout_ms >= 0) {
    // libcurl asks not to be driven from inside this callback: a zero timeout still goes
    // through the loop.
    client->curl_timer_ = client->loop_.ScheduleAfter(
        std::chrono::milliseconds(timeout_ms), [client] {
          client->curl_timer_ = 0;
          client->Drive(CURL_SOCKET_TIMEOUT, 0);
        });
  }
  return 0;
}

void HttpClient::Drive(curl_socket_t fd, int action) {
  int running = 0;
  ++in_curl_;
  curl_multi_socket_action(multi_, fd, action, &running);
  --in_curl_;
  AfterCurlCall();
}

void HttpClient::AfterCurlCall() {
  if (in_curl_ > 0) return;
  while (!pending_cancels_.empty()) {
    std::vector<TransferId> ids;
    ids.swap(pending_cancels_);
    for (TransferId id : ids) Destroy(id);
  }
  ReapFinished();
}

void HttpClient::ReapFinished() {
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    if (t) Finish(*t, msg->data.result);
  }
}

void HttpClient::Finish(Transfer& t, CURLcode code) {
  const TransferId id = t.id;
  if (t.cancelled) {
    Destroy(id);
    return;
  }
  TransferResult result;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &result.status);
  if (t.redirect_pending) {
    std::string error;
    if (FollowRedirect(t, &error)) return;
    result.curl_code = CURLE_TOO_MANY_REDIRECTS;
    result.error = error;
  } else if (t.aborted) {
    result.aborted_by_observer = true;
    result.error = "closed by the bridge";
  } else if (code != CURLE_OK) {
    result.curl_code = code;
    result.error = RedactUrlsIn(t.error_buffer[0] ? std::string(t.error_buffer) : curl_easy_strerror(code),
                                t.request.secrets);
  }
  TransferObserver* observer = t.observer;
  // Removed before the observer runs, so that it may start a new transfer right away.
  Destroy(id);
  observer->OnTransferDone(id, result);
}

bool HttpClient::FollowRedirect(Transfer& t, std::string* error) {
  long status = 0;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
  if (t.redirects >= t.request.max_redirects) {
    *error = "too many redirects (more than " + std::to_string(t.request.max_redirects) + ")";
    return false;
  }
  const std::optional<std::string> next = ResolveLocation(t.url, t.location);
  if (!next || (next->rfind("http://", 0) != 0 && next->rfind("https://", 0) != 0)) {
    *error = "redirect to an unusable Location: " + RedactedUrl(t.location, t.request.secrets);
    return false;
  }
  curl_multi_remove_handle(multi_, t.easy);
  // Fetch's rules: 303 turns any method but HEAD into GET; 301 and 302 turn POST into GET;
  // 307 and 308 keep method and body.
  if ((status == 303 && t.method != "HEAD") || ((status == 301 || status == 302) && t.method == "POST")) {
    t.method = "GET";
    t.send_body = false;
  }
  if (!t.request.keep_user_headers_across_origins && !SameOrigin(t.url, *next)) {
    t.send_user_headers = false;
  }
  t.url = *next;
  ++t.redirects;
  t.redirect_pending = false;
  t.head_delivered = false;
  t.location.clear();
  t.retry_after.clear();
  t.error_buffer[0] = '\0';
  curl_easy_reset(t.easy);
  if (!Configure(t, error)) return false;
  const CURLMcode rc = curl_multi_add_handle(multi_, t.easy);
  if (rc != CURLM_OK) {
    *error = curl_multi_strerror(rc);
    return false;
  }
  return true;
}

size_t HttpClient::OnHeaderLine(char* data, size_t size, size_t count, void* transfer) {
  auto& t = *static_cast<Transfer*>(transfer);
  const size_t n = size * count;
  if (t.cancelled) return 0;
  const std::string_view line(data, n);
  std::string_view value;
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after 1xx): forget what the previous one said.
    t.retry_after.clear();
    t.location.clear();
    return n;
  }
  if (HeaderNameIs(line, "retry-after", &value)) {
    t.retry_after = value;
  } else if (HeaderNameIs(line, "location", &value)) {
    t.location = value;
  } else if (Trim(line).empty()) {
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200) return n;  // informational; the real response follows
    if (IsRedirectStatus(status) && !t.location.empty()) {
      t.redirect_pending = true;
      return 0;  // no need to read the redirect's body: end this hop now
    }
    ResponseHead head;
    head.status = status;
    char* content_type = nullptr;
    curl_easy_getinfo(t.easy, CURLINFO_CONTENT_TYPE, &content_type);
    if (content_type) head.content_type = content_type;
    head.retry_after = t.retry_after;
    head.url = t.url;
    head.redirects = t.redirects;
    t.head_delivered = true;
    t.observer->OnResponseHead(t.id, head);
    if (t.cancelled) return 0;
  }
  return n;
}

size_t HttpClient::OnBodyBytes(char* data, size_t size, size_t count, void* transfer) {
  auto& t = *static_cast<Transfer*>(transfer);
  const size_t n = size * count;
  if (t.cancelled) return 0;
  if (!t.head_delivered) return n;  // a body without a head cannot happen with HTTP; be safe
  switch (t.observer->OnBody(t.id, std::string_view(data, n))) {
    case BodyAction::kContinue:
      return t.cancelled ? 0 : n;
    case BodyAction::kPause:
      return CURL_WRITEFUNC_PAUSE;
    case BodyAction::kAbort:
      t.aborted = true;
      return 0;
  }
  return n;
}

}  // namespace sse2kafka::http
