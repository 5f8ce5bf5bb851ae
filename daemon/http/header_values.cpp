#include "http/header_values.h"

#include <curl/curl.h>

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>

namespace sse2kafka::http {
namespace {

constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }
constexpr bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr char ToLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ToLower(a[i]) != ToLower(b[i])) return false;
  }
  return true;
}

std::string_view TrimSpacesAndTabs(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Reads an HTTP-date from left to right; every method consumes input only when it matches.
class DateCursor {
 public:
  explicit DateCursor(std::string_view text) : rest_(text) {}

  bool Literal(std::string_view expected) {
    if (rest_.size() < expected.size() || !EqualsIgnoreCase(rest_.substr(0, expected.size()), expected)) {
      return false;
    }
    rest_.remove_prefix(expected.size());
    return true;
  }

  // Between min_digits and max_digits ASCII digits.
  bool Number(std::size_t min_digits, std::size_t max_digits, int* value) {
    std::size_t n = 0;
    int v = 0;
    while (n < rest_.size() && n < max_digits && IsDigit(rest_[n])) v = v * 10 + (rest_[n++] - '0');
    if (n < min_digits) return false;
    rest_.remove_prefix(n);
    *value = v;
    return true;
  }

  // One of `names` (case-insensitive); *index is its position.
  template <std::size_t N>
  bool OneOf(const std::array<std::string_view, N>& names, int* index) {
    for (std::size_t i = 0; i < N; ++i) {
      if (Literal(names[i])) {
        *index = static_cast<int>(i);
        return true;
      }
    }
    return false;
  }

  // hh:mm:ss with a leap second allowed.
  bool TimeOfDay(int* seconds_of_day) {
    int h = 0, m = 0, s = 0;
    if (!Number(2, 2, &h) || !Literal(":") || !Number(2, 2, &m) || !Literal(":") || !Number(2, 2, &s)) return false;
    if (h > 23 || m > 59 || s > 60) return false;
    *seconds_of_day = h * 3600 + m * 60 + s;
    return true;
  }

  bool AtEnd() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> kShortDays = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kLongDays = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                       "Friday", "Saturday", "Sunday"};

struct CivilTime {
  int year = 0;
  int month = 0;  // 0-based index into kMonths
  int day = 0;
  int seconds_of_day = 0;
};

// "Sun, 06 Nov 1994 08:49:37 GMT"
bool ParseImfFixdate(std::string_view text, CivilTime* t) {
  DateCursor c(text);
  int weekday = 0;
  return c.OneOf(kShortDays, &weekday) && c.Literal(", ") && c.Number(2, 2, &t->day) && c.Literal(" ") &&
         c.OneOf(kMonths, &t->month) && c.Literal(" ") && c.Number(4, 4, &t->year) && c.Literal(" ") &&
         c.TimeOfDay(&t->seconds_of_day) && c.Literal(" GMT") && c.AtEnd();
}

// "Sunday, 06-Nov-94 08:49:37 GMT"; the year is returned as its two digits.
bool ParseRfc850(std::string_view text, CivilTime* t) {
  DateCursor c(text);
  int weekday = 0;
  return c.OneOf(kLongDays, &weekday) && c.Literal(", ") && c.Number(2, 2, &t->day) && c.Literal("-") &&
         c.OneOf(kMonths, &t->month) && c.Literal("-") && c.Number(2, 2, &t->year) && c.Literal(" ") &&
         c.TimeOfDay(&t->seconds_of_day) && c.Literal(" GMT") && c.AtEnd();
}

// "Sun Nov  6 08:49:37 1994" (the day is two digits, or a space and one digit).
bool ParseAsctime(std::string_view text, CivilTime* t) {
  DateCursor c(text);
  int weekday = 0;
  if (!c.OneOf(kShortDays, &weekday) || !c.Literal(" ") || !c.OneOf(kMonths, &t->month) || !c.Literal(" ")) {
    return false;
  }
  const bool day_ok = c.Literal(" ") ? c.Number(1, 1, &t->day) : c.Number(2, 2, &t->day);
  return day_ok && c.Literal(" ") && c.TimeOfDay(&t->seconds_of_day) && c.Literal(" ") &&
         c.Number(4, 4, &t->year) && c.AtEnd();
}

// RFC 9110 5.6.7: a two-digit year more than 50 years in the future is the most recent past year
// with those digits.
int FullYearFromTwoDigits(int two_digits, int current_year) {
  int year = current_year - current_year % 100 + two_digits;
  if (year > current_year + 50) {
    year -= 100;
  } else if (year + 100 <= current_year + 50) {
    year += 100;
  }
  return year;
}

std::optional<std::chrono::sys_seconds> ToSysSeconds(const CivilTime& t) {
  const std::chrono::year_month_day date{std::chrono::year{t.year},
                                         std::chrono::month{static_cast<unsigned>(t.month + 1)},
                                         std::chrono::day{static_cast<unsigned>(t.day)}};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days(date) + std::chrono::seconds(t.seconds_of_day);
}

std::optional<std::chrono::milliseconds> ParseDelaySeconds(std::string_view digits) {
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1000;
  int64_t seconds = 0;
  for (char c : digits) {
    if (!IsDigit(c)) return std::nullopt;
    seconds = seconds > (kMaxSeconds - (c - '0')) / 10 ? kMaxSeconds : seconds * 10 + (c - '0');
  }
  return std::chrono::milliseconds(seconds * 1000);
}

bool IsTokenCodePoint(char c) {
  return IsDigit(c) || IsAlpha(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenCodePoint(c)) return false;
  }
  return true;
}

bool IsHttpWhitespace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

struct CurlUrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};
struct CurlStringDeleter {
  void operator()(char* s) const { curl_free(s); }
};
using CurlUrl = std::unique_ptr<CURLU, CurlUrlDeleter>;
using CurlString = std::unique_ptr<char, CurlStringDeleter>;

struct Origin {
  std::string scheme;
  std::string host;
  std::string port;
};

std::optional<Origin> OriginOf(std::string_view url) {
  CurlUrl handle(curl_url());
  if (!handle) return std::nullopt;
  const std::string text(url);
  if (curl_url_set(handle.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) return std::nullopt;
  auto part = [&](CURLUPart which, unsigned flags) -> std::optional<std::string> {
    char* raw = nullptr;
    if (curl_url_get(handle.get(), which, &raw, flags) != CURLUE_OK) return std::nullopt;
    CurlString owned(raw);
    return std::string(raw);
  };
  auto scheme = part(CURLUPART_SCHEME, 0);
  auto host = part(CURLUPART_HOST, 0);
  auto port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!scheme || !host || !port) return std::nullopt;
  Origin origin{std::move(*scheme), std::move(*host), std::move(*port)};
  for (char& c : origin.scheme) c = ToLower(c);
  for (char& c : origin.host) c = ToLower(c);
  return origin;
}

bool IsSchemeChar(char c) { return IsAlpha(c) || IsDigit(c) || c == '+' || c == '-' || c == '.'; }

// Where the authority of `url` starts and ends ("scheme://" authority ["/" | "?" | "#" ...]),
// or nullopt when the URL has none.
std::optional<std::pair<std::size_t, std::size_t>> AuthorityBounds(std::string_view url) {
  const std::size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0 || !IsAlpha(url[0])) return std::nullopt;
  for (std::size_t i = 0; i < colon; ++i) {
    if (!IsSchemeChar(url[i])) return std::nullopt;
  }
  if (url.substr(colon + 1, 2) != "//") return std::nullopt;
  const std::size_t begin = colon + 3;
  std::size_t end = url.find_first_of("/?#", begin);
  if (end == std::string_view::npos) end = url.size();
  return std::make_pair(begin, end);
}

int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding of a query parameter name: "+" is a space, %XX a
// byte; a "%" not followed by two hex digits stays as it is.
std::string FormDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (char c : s) {
    if (IsAlpha(c) || IsDigit(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0x0F];
    }
  }
  return out;
}

}  // namespace

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now) {
  using std::chrono::milliseconds;
  value = TrimSpacesAndTabs(value);
  if (value.empty()) return std::nullopt;
  if (IsDigit(value.front())) return ParseDelaySeconds(value);

  CivilTime t;
  if (ParseRfc850(value, &t)) {
    const int current_year =
        static_cast<int>(std::chrono::year_month_day(std::chrono::floor<std::chrono::days>(now)).year());
    t.year = FullYearFromTwoDigits(t.year, current_year);
  } else if (!ParseImfFixdate(value, &t) && !ParseAsctime(value, &t)) {
    return std::nullopt;
  }
  const auto when = ToSysSeconds(t);
  if (!when) return std::nullopt;
  // In milliseconds: nanosecond time points overflow for dates past 2262. Subtracting the floor
  // of `now` rounds the wait up.
  const milliseconds wait =
      std::chrono::time_point_cast<milliseconds>(*when).time_since_epoch() -
      std::chrono::floor<milliseconds>(now).time_since_epoch();
  return wait > milliseconds::zero() ? wait : milliseconds::zero();
}

std::string MimeEssence(std::string_view content_type) {
  while (!content_type.empty() && IsHttpWhitespace(content_type.front())) content_type.remove_prefix(1);
  while (!content_type.empty() && IsHttpWhitespace(content_type.back())) content_type.remove_suffix(1);
  const std::size_t slash = content_type.find('/');
  if (slash == std::string_view::npos) return {};
  const std::string_view type = content_type.substr(0, slash);
  std::string_view subtype = content_type.substr(slash + 1);
  subtype = subtype.substr(0, subtype.find(';'));
  while (!subtype.empty() && IsHttpWhitespace(subtype.back())) subtype.remove_suffix(1);
  if (!IsToken(type) || !IsToken(subtype)) return {};
  std::string essence;
  essence.reserve(type.size() + 1 + subtype.size());
  for (char c : type) essence += ToLower(c);
  essence += '/';
  for (char c : subtype) essence += ToLower(c);
  return essence;
}

bool SameOrigin(std::string_view url_a, std::string_view url_b) {
  const auto a = OriginOf(url_a);
  const auto b = OriginOf(url_b);
  return a && b && a->scheme == b->scheme && a->host == b->host && a->port == b->port;
}

std::string RedactUrlUserinfo(std::string_view url) {
  const auto bounds = AuthorityBounds(url);
  if (!bounds) return std::string(url);
  const auto [begin, end] = *bounds;
  const std::size_t at = url.substr(begin, end - begin).rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  std::string out(url.substr(0, begin));
  out += url.substr(begin + at + 1);
  return out;
}

std::string WithQueryParameter(std::string_view url, std::string_view name, std::string_view value) {
  const std::size_t hash = url.find('#');
  const std::string_view fragment = hash == std::string_view::npos ? std::string_view() : url.substr(hash);
  const std::string_view head = url.substr(0, hash);
  const std::size_t question = head.find('?');
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : head.substr(question + 1);

  std::string out(head.substr(0, question));
  out += '?';
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t amp = query.find('&', start);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view parameter = query.substr(start, amp - start);
    if (!parameter.empty() && FormDecode(parameter.substr(0, parameter.find('='))) != name) {
      out += parameter;
      out += '&';
    }
    start = amp + 1;
  }
  out += PercentEncode(name);
  out += '=';
  out += PercentEncode(value);
  out += fragment;
  return out;
}

}  // namespace sse2kafka::http
