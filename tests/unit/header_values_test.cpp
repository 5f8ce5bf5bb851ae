#include "http/header_values.h"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

namespace sse2kafka::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::sys_days;
using std::chrono::system_clock;
using namespace std::chrono_literals;

// 1994-11-06 08:49:00 UTC, 37 seconds before the RFC's example date.
const system_clock::time_point kRfcNow = sys_days(1994y / 11 / 6) + 8h + 49min;

std::optional<milliseconds> Ms(int64_t value) { return milliseconds(value); }

TEST(ParseRetryAfterTest, DelaySeconds) {
  EXPECT_EQ(ParseRetryAfter("120", kRfcNow), Ms(120000));
  EXPECT_EQ(ParseRetryAfter("0", kRfcNow), Ms(0));
  EXPECT_EQ(ParseRetryAfter("00012", kRfcNow), Ms(12000));
  EXPECT_EQ(ParseRetryAfter("  5 ", kRfcNow), Ms(5000));
  EXPECT_EQ(ParseRetryAfter("\t7\t", kRfcNow), Ms(7000));
}

TEST(ParseRetryAfterTest, HugeDelaySecondsSaturates) {
  const auto huge = ParseRetryAfter("99999999999999999999999999999", kRfcNow);
  ASSERT_TRUE(huge);
  EXPECT_GT(*huge, std::chrono::hours(24 * 365 * 1000000LL));
  EXPECT_EQ(ParseRetryAfter("9223372036854775807", kRfcNow), huge);
}

TEST(ParseRetryAfterTest, RejectsWhatIsNeitherForm) {
  for (const char* bad : {"", "   ", "-1", "+5", "1.5", "12a", "1 2", "abc", "0x10", "5s",
                          "Sun, 06 Nov 1994 08:49:37",           // no zone
                          "Sun, 06 Nov 1994 08:49:37 UTC",       // only GMT is allowed
                          "Sun, 06 Nov 1994 08:49:37 GMT junk",  // trailing text
                          "Sun, 6 Nov 1994 08:49:37 GMT",        // one-digit day in IMF-fixdate
                          "Sun, 06 Nov 94 08:49:37 GMT",         // two-digit year in IMF-fixdate
                          "Xyz, 06 Nov 1994 08:49:37 GMT",       // no such day
                          "Sun, 06 Noo 1994 08:49:37 GMT",       // no such month
                          "Sun, 31 Feb 1994 08:49:37 GMT",       // no such date
                          "Sun, 29 Feb 2023 08:49:37 GMT",       // not a leap year
                          "Sun, 06 Nov 1994 24:00:00 GMT",       // no hour 24
                          "Sun, 06 Nov 1994 08:60:00 GMT",       // no minute 60
                          "Sun, 06 Nov 1994 08:49:61 GMT",       // not even a leap second
                          "Sun, 06 Nov 1994 8:49:37 GMT",        // one-digit hour
                          "Sun 06 Nov 1994 08:49:37 GMT",        // no comma
                          "Sun, 06-Nov-94 08:49:37 GMT",         // RFC 850 needs the full day name
                          "Sunday, 06-Nov-1994 08:49:37 GMT",    // RFC 850 has a two-digit year
                          "Sun Nov 6 08:49:37 1994",             // asctime pads the day to two
                          "Sun Nov  6 08:49:37 94",              // asctime has a four-digit year
                          "Sun Nov  6 08:49:37 1994 GMT"}) {     // asctime has no zone
    EXPECT_EQ(ParseRetryAfter(bad, kRfcNow), std::nullopt) << '"' << bad << '"';
  }
}

TEST(ParseRetryAfterTest, AllThreeDateFormsOfTheSameInstant) {
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", kRfcNow), Ms(37000));
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", kRfcNow), Ms(37000));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:49:37 1994", kRfcNow), Ms(37000));
  EXPECT_EQ(ParseRetryAfter("Wed Nov 16 08:49:37 1994", kRfcNow), Ms((10 * 86400 + 37) * 1000LL));
  EXPECT_EQ(ParseRetryAfter("  Sun, 06 Nov 1994 08:49:37 GMT\t", kRfcNow), Ms(37000));
}

TEST(ParseRetryAfterTest, NamesAreCaseInsensitive) {
  EXPECT_EQ(ParseRetryAfter("sun, 06 NOV 1994 08:49:37 gmt", kRfcNow), Ms(37000));
  EXPECT_EQ(ParseRetryAfter("SUNDAY, 06-nov-94 08:49:37 GMT", kRfcNow), Ms(37000));
}

TEST(ParseRetryAfterTest, TheDayNameIsNotCheckedAgainstTheDate) {
  // Senders get the weekday wrong; the date is what matters.
  EXPECT_EQ(ParseRetryAfter("Mon, 06 Nov 1994 08:49:37 GMT", kRfcNow), Ms(37000));
}

TEST(ParseRetryAfterTest, PastAndPresentDatesGiveZero) {
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:00 GMT", kRfcNow), Ms(0));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:48:59 GMT", kRfcNow), Ms(0));
  EXPECT_EQ(ParseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", kRfcNow), Ms(0));
  EXPECT_EQ(ParseRetryAfter("Mon, 01 Jan 0001 00:00:00 GMT", kRfcNow), Ms(0));
}

TEST(ParseRetryAfterTest, SubSecondNowRoundsTheWaitUp) {
  const auto now = kRfcNow + 500ms + 250us;
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now), Ms(36500));
}

TEST(ParseRetryAfterTest, LeapDayAndLeapSecond) {
  const auto now = sys_days(2024y / 2 / 28) + 23h + 59min + 59s;
  EXPECT_EQ(ParseRetryAfter("Thu, 29 Feb 2024 00:00:00 GMT", now), Ms(1000));
  EXPECT_EQ(ParseRetryAfter("Wed, 28 Feb 2024 23:59:60 GMT", now), Ms(1000));
}

TEST(ParseRetryAfterTest, FarFutureDatesDoNotOverflow) {
  const auto now = sys_days(2025y / 6 / 1);
  const auto wait = ParseRetryAfter("Fri, 31 Dec 9999 23:59:59 GMT", now);
  const milliseconds expected = std::chrono::duration_cast<milliseconds>(
      (sys_days(9999y / 12 / 31) + 23h + 59min + 59s) - std::chrono::time_point_cast<seconds>(now));
  EXPECT_EQ(wait, expected);
}

TEST(ParseRetryAfterTest, TwoDigitYearsFollowTheFiftyYearRule) {
  const auto now = sys_days(2025y / 6 / 1);
  // 25 is this year.
  EXPECT_EQ(ParseRetryAfter("Sunday, 01-Jun-25 00:00:10 GMT", now), Ms(10000));
  // 75 is 2075, 50 years ahead: not "more than 50 years in the future".
  const auto year_2075 = ParseRetryAfter("Tuesday, 01-Jan-75 00:00:00 GMT", now);
  EXPECT_EQ(year_2075, std::chrono::duration_cast<milliseconds>(sys_days(2075y / 1 / 1) - now));
  // 76 would be 2076, more than 50 years ahead: it means 1976, in the past.
  EXPECT_EQ(ParseRetryAfter("Thursday, 01-Jan-76 00:00:00 GMT", now), Ms(0));
  // Late in a century, small years belong to the next one.
  const auto late = sys_days(2095y / 1 / 1);
  EXPECT_EQ(ParseRetryAfter("Wednesday, 01-Jan-10 00:00:00 GMT", late),
            std::chrono::duration_cast<milliseconds>(sys_days(2110y / 1 / 1) - late));
}

TEST(MimeEssenceTest, LowerCasesAndDropsParameters) {
  EXPECT_EQ(MimeEssence("text/event-stream"), "text/event-stream");
  EXPECT_EQ(MimeEssence("Text/Event-Stream; charset=utf-8"), "text/event-stream");
  EXPECT_EQ(MimeEssence("TEXT/EVENT-STREAM;charset=\"utf-8\";x=y"), "text/event-stream");
  EXPECT_EQ(MimeEssence("  text/event-stream  "), "text/event-stream");
  EXPECT_EQ(MimeEssence("\ttext/plain \r\n"), "text/plain");
  EXPECT_EQ(MimeEssence("text/event-stream ; charset=utf-8"), "text/event-stream");
  EXPECT_EQ(MimeEssence("text/event-stream;"), "text/event-stream");
  EXPECT_EQ(MimeEssence("application/vnd.api+json"), "application/vnd.api+json");
  EXPECT_EQ(MimeEssence("x-!#$%&'*+-.^_`|~/y"), "x-!#$%&'*+-.^_`|~/y");
}

TEST(MimeEssenceTest, InvalidTypesGiveEmpty) {
  for (const char* bad : {"", "   ", "text", "text/", "/plain", "text /plain", "text/ plain", "text/plain/x",
                          "te(xt/plain", "text/pl@in", "text/\"plain\"", "t\xC3\xA9xt/plain", ";text/plain",
                          "text/;charset=utf-8"}) {
    EXPECT_EQ(MimeEssence(bad), "") << '"' << bad << '"';
  }
}

TEST(SameOriginTest, DefaultPortsAndCase) {
  EXPECT_TRUE(SameOrigin("http://a.example/x", "http://a.example:80/y?z#f"));
  EXPECT_TRUE(SameOrigin("https://A.Example/", "https://a.example:443"));
  EXPECT_TRUE(SameOrigin("HTTPS://a.example/", "https://a.example/other"));
  EXPECT_TRUE(SameOrigin("http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b"));
  EXPECT_TRUE(SameOrigin("http://[::1]:8080/a", "http://[::1]:8080/b"));
}

TEST(SameOriginTest, UserinfoDoesNotMatter) {
  EXPECT_TRUE(SameOrigin("https://user:secret@a.example/feed", "https://a.example/feed"));
}

TEST(SameOriginTest, DifferentSchemeHostOrPort) {
  EXPECT_FALSE(SameOrigin("http://a.example/", "https://a.example/"));
  EXPECT_FALSE(SameOrigin("http://a.example:443/", "https://a.example/"));
  EXPECT_FALSE(SameOrigin("http://a.example/", "http://b.example/"));
  EXPECT_FALSE(SameOrigin("http://a.example/", "http://sub.a.example/"));
  EXPECT_FALSE(SameOrigin("http://a.example:8080/", "http://a.example:8081/"));
  EXPECT_FALSE(SameOrigin("http://a.example:8080/", "http://a.example/"));
  EXPECT_FALSE(SameOrigin("http://127.0.0.1/", "http://localhost/"));
}

TEST(SameOriginTest, UnparsableIsNeverTheSame) {
  EXPECT_FALSE(SameOrigin("", ""));
  EXPECT_FALSE(SameOrigin("not a url", "not a url"));
  EXPECT_FALSE(SameOrigin("http://a.example/", "http://"));
  EXPECT_FALSE(SameOrigin("http://a.example:99999/", "http://a.example:99999/"));
}

TEST(RedactUrlUserinfoTest, RemovesUserAndPassword) {
  EXPECT_EQ(RedactUrlUserinfo("https://user:pass@example.org/path?q=1#f"), "https://example.org/path?q=1#f");
  EXPECT_EQ(RedactUrlUserinfo("https://user@example.org"), "https://example.org");
  EXPECT_EQ(RedactUrlUserinfo("http://u:p@127.0.0.1:8080/x"), "http://127.0.0.1:8080/x");
  EXPECT_EQ(RedactUrlUserinfo("HTTP://U:P@H/"), "HTTP://H/");
  EXPECT_EQ(RedactUrlUserinfo("https://:secret@host/"), "https://host/");
  EXPECT_EQ(RedactUrlUserinfo("https://u:p%40ss@host?x"), "https://host?x");
  EXPECT_EQ(RedactUrlUserinfo("https://u:p@ss@host/x"), "https://host/x") << "everything up to the last @";
  EXPECT_EQ(RedactUrlUserinfo("http://u:p@[::1]:80/"), "http://[::1]:80/");
}

TEST(RedactUrlUserinfoTest, LeavesEverythingElseByteForByte) {
  for (const char* same : {"https://example.org/path@not-userinfo", "https://example.org?mail=a@b.c",
                           "https://example.org#a@b", "https://example.org/A%20b/?x=%zz", "http://[::1]:80/",
                           "mailto:someone@example.org", "not a url @ all", "", "https://"}) {
    EXPECT_EQ(RedactUrlUserinfo(same), same);
  }
}

TEST(WithQueryParameterTest, AppendsToAUrlWithoutQuery) {
  EXPECT_EQ(WithQueryParameter("http://h/p", "lastEventId", "42"), "http://h/p?lastEventId=42");
  EXPECT_EQ(WithQueryParameter("http://h", "id", "1"), "http://h?id=1");
  EXPECT_EQ(WithQueryParameter("http://h/p?", "id", "1"), "http://h/p?id=1");
}

TEST(WithQueryParameterTest, KeepsOtherParametersAndTheFragment) {
  EXPECT_EQ(WithQueryParameter("http://h/p?a=1&b=%2F", "id", "42"), "http://h/p?a=1&b=%2F&id=42");
  EXPECT_EQ(WithQueryParameter("http://h/p?a=1#frag?x&id=3", "id", "42"), "http://h/p?a=1&id=42#frag?x&id=3");
  EXPECT_EQ(WithQueryParameter("http://h/p#frag", "id", "42"), "http://h/p?id=42#frag");
  EXPECT_EQ(WithQueryParameter("http://h/p?&&a=1&", "id", "42"), "http://h/p?a=1&id=42");
}

TEST(WithQueryParameterTest, ReplacesEveryParameterOfThatName) {
  EXPECT_EQ(WithQueryParameter("http://h/p?id=1&a=2&id=3", "id", "4"), "http://h/p?a=2&id=4");
  EXPECT_EQ(WithQueryParameter("http://h/p?id&a=2", "id", "4"), "http://h/p?a=2&id=4");
  EXPECT_EQ(WithQueryParameter("http://h/p?id=&a=2", "id", "4"), "http://h/p?a=2&id=4");
  EXPECT_EQ(WithQueryParameter("http://h/p?%69d=1&a=2", "id", "4"), "http://h/p?a=2&id=4") << "encoded name";
  EXPECT_EQ(WithQueryParameter("http://h/p?last+id=1", "last id", "4"), "http://h/p?last%20id=4");
}

TEST(WithQueryParameterTest, OtherNamesAreNotReplaced) {
  EXPECT_EQ(WithQueryParameter("http://h/p?idx=1&xid=2&ID=3", "id", "4"), "http://h/p?idx=1&xid=2&ID=3&id=4");
}

TEST(WithQueryParameterTest, PercentEncodesNameAndValue) {
  EXPECT_EQ(WithQueryParameter("http://h/", "last event", "a b&c=d/\xC3\xA9#?+%~._-"),
            "http://h/?last%20event=a%20b%26c%3Dd%2F%C3%A9%23%3F%2B%25~._-");
  EXPECT_EQ(WithQueryParameter("http://h/", "id", ""), "http://h/?id=");
  EXPECT_EQ(WithQueryParameter("http://h/", "id", std::string("a\0b\n", 4)), "http://h/?id=a%00b%0A");
}

}  // namespace
}  // namespace sse2kafka::http
