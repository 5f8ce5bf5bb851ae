// URLs as they may be shown: userinfo gone, secret query values as ***, the rest as written.
#include "http/url_redaction.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sse2kafka::http {
namespace {

struct Case {
  std::string url;
  std::string shown;
};

TEST(RedactedUrlTest, UserinfoAndBuiltInSecretParametersAreHidden) {
  const SecretQueryParameters secrets;
  const std::vector<Case> cases = {
      {"https://feed.example/v1/stream", "https://feed.example/v1/stream"},
      {"https://u:p@feed.example:8443/s?x=1", "https://feed.example:8443/s?x=1"},
      {"https://feed.example/s?api_key=SECRET", "https://feed.example/s?api_key=***"},
      {"https://feed.example/s?since=now&token=SECRET&limit=5", "https://feed.example/s?since=now&token=***&limit=5"},
      {"https://feed.example/s?Access_Token=SECRET", "https://feed.example/s?Access_Token=***"},
      {"https://feed.example/s?apikey=A&key=B&sig=C&auth=D", "https://feed.example/s?apikey=***&key=***&sig=***&auth=***"},
      {"https://feed.example/s?client_secret=A&password=B&signature=C",
       "https://feed.example/s?client_secret=***&password=***&signature=***"},
      {"https://s3.example/o?X-Amz-Credential=A&X-Amz-Signature=B&X-Amz-Date=1",
       "https://s3.example/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1"},
      {"https://feed.example/s?subscription-key=A&x-api-key=B", "https://feed.example/s?subscription-key=***&x-api-key=***"},
      {"https://feed.example/s?%74oken=SECRET", "https://feed.example/s?%74oken=***"},  // percent-encoded name
      {"https://feed.example/s?token", "https://feed.example/s?token"},                   // no value: nothing to hide
      {"https://feed.example/s?stream=recentchange#frag", "https://feed.example/s?stream=recentchange#frag"},
  };
  for (const Case& c : cases) EXPECT_EQ(RedactedUrl(c.url, secrets), c.shown) << c.url;
}

TEST(RedactedUrlTest, ExtraNamesAndTheWholeQuery) {
  const SecretQueryParameters extra({"Account"});
  EXPECT_EQ(RedactedUrl("https://h/s?account=42&x=1", extra), "https://h/s?account=***&x=1");
  const SecretQueryParameters whole({"*"});
  EXPECT_TRUE(whole.whole_query());
  EXPECT_EQ(RedactedUrl("https://h/s?a=1&b=2#f", whole), "https://h/s?***#f");
  EXPECT_EQ(RedactedUrl("https://h/s", whole), "https://h/s");
}

TEST(RedactedUrlTest, UnparsableTextShowsNothingThatCouldBeSecret) {
  const SecretQueryParameters secrets;
  EXPECT_EQ(RedactedUrl("/relative/path?token=SECRET", secrets), "/relative/path?***");
  EXPECT_EQ(RedactedUrl("http://user:pw@host:99999/x?token=SECRET", secrets), "host:99999/x?***");
  EXPECT_EQ(RedactedUrl("", secrets), "");
}

TEST(RedactUrlsInTest, EveryUrlInAMessageIsRedacted) {
  const SecretQueryParameters secrets;
  EXPECT_EQ(RedactUrlsIn("redirect to 'https://a.example/x?token=S1' from http://u:p@b.example/y?key=S2 failed", secrets),
            "redirect to 'https://a.example/x?token=***' from http://b.example/y?key=*** failed");
  EXPECT_EQ(RedactUrlsIn("Could not resolve host: feed.example", secrets), "Could not resolve host: feed.example");
  EXPECT_EQ(RedactUrlsIn("", secrets), "");
}

TEST(UrlWithoutCredentialsTest, KeepsSchemeHostPortAndPathOnly) {
  EXPECT_EQ(UrlWithoutCredentials("https://u:p@feed.example:8443/v2/s?api_key=SECRET#f"),
            "https://feed.example:8443/v2/s");
  EXPECT_EQ(UrlWithoutCredentials("https://feed.example"), "https://feed.example/");
  EXPECT_EQ(UrlWithoutCredentials("not a url"), "");
}

}  // namespace
}  // namespace sse2kafka::http
