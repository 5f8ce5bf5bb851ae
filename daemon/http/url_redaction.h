// URLs as they may be shown: in logs, admin endpoints, error messages and Kafka records.
//
// Many SSE APIs take their key in the query string (browser EventSource cannot send headers),
// so a URL is as secret as a header: userinfo and the values of credential-like query
// parameters never leave the process. Parsing is libcurl's URL API, the parser the requests
// themselves go through. Pure functions; no I/O.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sse2kafka::http {

// Which query parameters of a stream's URL hold secrets.
//
// Built in: a parameter whose name (percent-decoded, compared ignoring case) is one of
//   key, sig, auth, pwd, passwd, jwt, session, sessionid
// or contains one of
//   token, secret, password, apikey, api_key, api-key, signature, credential, private
// or ends in "key" (subscription-key, x-api-key, accesskey, ...). That covers token,
// access_token, refresh_token, api_key, apikey, client_secret, password, auth, sig, signature,
// AWS's X-Amz-Signature / X-Amz-Credential / X-Amz-Security-Token and Google's
// X-Goog-Signature / X-Goog-Credential. `extra` adds names (exact, ignoring case); "*" among
// them makes the whole query secret.
class SecretQueryParameters {
 public:
  explicit SecretQueryParameters(std::vector<std::string> extra = {});

  bool IsSecret(std::string_view decoded_name) const;
  bool whole_query() const { return whole_query_; }

 private:
  std::vector<std::string> extra_;  // lower-cased
  bool whole_query_ = false;
};

// `url` without userinfo and with the value of every secret query parameter shown as "***"
// (the whole query as "***" when it is all secret); scheme, host, port, path, the other
// parameters and the fragment as written. Text that is not an absolute URL libcurl can parse
// comes back as "(unparsable URL)", so that nothing in it can leak.
std::string RedactedUrl(std::string_view url, const SecretQueryParameters& secrets);

// `text` (an error message, libcurl's included) with every http:// or https:// URL in it
// redacted as RedactedUrl does; a URL runs to the next space, quote, angle bracket or end.
std::string RedactUrlsIn(std::string_view text, const SecretQueryParameters& secrets);

// scheme://host[:port]/path of `url`: no userinfo, query or fragment. What a record may carry
// as the CloudEvents source, since a query may hold a credential. Unparsable: empty.
std::string UrlWithoutCredentials(std::string_view url);

}  // namespace sse2kafka::http
