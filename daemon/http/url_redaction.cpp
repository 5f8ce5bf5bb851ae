#include "http/url_redaction.h"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <memory>

namespace sse2kafka::http {

namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
  return out;
}

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using UrlHandle = std::unique_ptr<CURLU, UrlDeleter>;

// The parsed URL, or null when libcurl refuses it (also non-absolute URLs).
UrlHandle Parse(std::string_view url) {
  UrlHandle u(curl_url());
  if (!u) return nullptr;
  const std::string text(url);
  if (curl_url_set(u.get(), CURLUPART_URL, text.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) return nullptr;
  return u;
}

std::string Part(CURLU* u, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(u, part, &value, 0) != CURLUE_OK || value == nullptr) return {};
  std::string out(value);
  curl_free(value);
  return out;
}

std::string WholeUrl(CURLU* u) { return Part(u, CURLUPART_URL); }

// A query parameter's name as a form decodes it ("+" is a space).
std::string DecodedName(std::string_view raw) {
  std::string name(raw);
  std::replace(name.begin(), name.end(), '+', ' ');
  int length = 0;
  char* decoded = curl_easy_unescape(nullptr, name.c_str(), static_cast<int>(name.size()), &length);
  if (decoded == nullptr) return name;
  std::string out(decoded, static_cast<std::size_t>(length));
  curl_free(decoded);
  return out;
}

std::string RedactedQuery(std::string_view query, const SecretQueryParameters& secrets) {
  if (secrets.whole_query()) return "***";
  std::string out;
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t amp = query.find('&', start);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view parameter = query.substr(start, amp - start);
    if (start > 0) out += '&';
    const std::size_t equals = parameter.find('=');
    if (equals != std::string_view::npos && secrets.IsSecret(DecodedName(parameter.substr(0, equals)))) {
      out.append(parameter.substr(0, equals));
      out += "=***";
    } else {
      out.append(parameter);
    }
    start = amp + 1;
  }
  return out;
}

constexpr std::array<std::string_view, 8> kSecretNames = {"key", "sig", "auth", "pwd",
                                                          "passwd", "jwt", "session", "sessionid"};
constexpr std::array<std::string_view, 9> kSecretParts = {"token", "secret", "password", "apikey", "api_key",
                                                          "api-key", "signature", "credential", "private"};

// What may be shown of text libcurl cannot parse (a relative or broken Location, say): the part
// before any query or fragment, and after the last '@' (what precedes it may be userinfo).
std::string UnparsableShown(std::string_view url) {
  const std::size_t cut = url.find_first_of("?#");
  std::string_view head = url.substr(0, cut);
  const std::size_t at = head.rfind('@');
  if (at != std::string_view::npos) head.remove_prefix(at + 1);
  std::string out(head);
  if (cut != std::string_view::npos && url[cut] == '?') out += "?***";
  return out;
}

}  // namespace

SecretQueryParameters::SecretQueryParameters(std::vector<std::string> extra) {
  for (const std::string& name : extra) {
    if (name == "*") {
      whole_query_ = true;
    } else {
      extra_.push_back(Lower(name));
    }
  }
}

bool SecretQueryParameters::IsSecret(std::string_view decoded_name) const {
  if (whole_query_) return true;
  const std::string name = Lower(decoded_name);
  if (std::find(extra_.begin(), extra_.end(), name) != extra_.end()) return true;
  if (std::find(kSecretNames.begin(), kSecretNames.end(), name) != kSecretNames.end()) return true;
  if (name.size() >= 3 && name.ends_with("key")) return true;
  return std::any_of(kSecretParts.begin(), kSecretParts.end(),
                     [&](std::string_view part) { return name.find(part) != std::string::npos; });
}

std::string RedactedUrl(std::string_view url, const SecretQueryParameters& secrets) {
  UrlHandle u = Parse(url);
  if (!u) return UnparsableShown(url);
  curl_url_set(u.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(u.get(), CURLUPART_PASSWORD, nullptr, 0);
  curl_url_set(u.get(), CURLUPART_OPTIONS, nullptr, 0);
  const std::string query = Part(u.get(), CURLUPART_QUERY);
  if (!query.empty()) {
    const std::string redacted = RedactedQuery(query, secrets);
    curl_url_set(u.get(), CURLUPART_QUERY, redacted.c_str(), 0);
  }
  std::string out = WholeUrl(u.get());
  return out.empty() ? UnparsableShown(url) : out;
}

std::string RedactUrlsIn(std::string_view text, const SecretQueryParameters& secrets) {
  std::string out;
  std::size_t done = 0;
  while (done < text.size()) {
    const std::size_t http = text.find("http://", done);
    const std::size_t https = text.find("https://", done);
    const std::size_t begin = std::min(http, https);
    if (begin == std::string_view::npos) break;
    std::size_t end = text.find_first_of(" \t\r\n\"'<>", begin);
    if (end == std::string_view::npos) end = text.size();
    out.append(text.substr(done, begin - done));
    out += RedactedUrl(text.substr(begin, end - begin), secrets);
    done = end;
  }
  out.append(text.substr(std::min(done, text.size())));
  return out;
}

std::string UrlWithoutCredentials(std::string_view url) {
  UrlHandle u = Parse(url);
  if (!u) return {};
  for (CURLUPart part : {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS, CURLUPART_QUERY,
                         CURLUPART_FRAGMENT}) {
    curl_url_set(u.get(), part, nullptr, 0);
  }
  return WholeUrl(u.get());
}

}  // namespace sse2kafka::http
