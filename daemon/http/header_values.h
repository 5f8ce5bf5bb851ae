// Pure helpers for HTTP header values and URLs. No I/O; every function is total (bad input
// gives the documented "nothing" answer, never an exception).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sse2kafka::http {

// A Retry-After value (RFC 9110 section 10.2.3) as a wait from `now`: delay-seconds (ASCII
// digits; absurdly large values saturate at about 292 million years) or an HTTP-date in any of
// its three forms, IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94
// 08:49:37 GMT" (a two-digit year more than 50 years ahead means the previous century) and
// asctime "Sun Nov  6 08:49:37 1994". Surrounding spaces and tabs are ignored; month and day
// names are matched case-insensitively. A date at or before `now` gives 0; a later one is rounded
// up to whole milliseconds. nullopt when the value is neither (including impossible dates such
// as 31 Feb).
std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now);

// The essence of a Content-Type's MIME type (WHATWG MIME Sniffing "parse a MIME type"):
// "Text/Event-Stream; charset=utf-8" gives "text/event-stream". Type and subtype are lower-cased,
// parameters and surrounding whitespace dropped. Empty when type or subtype is missing or holds
// a character that is not an HTTP token code point.
std::string MimeEssence(std::string_view content_type);

// True when both URLs parse and have the same origin: scheme, host (case-insensitive) and port,
// an absent port being the scheme's default (80 for http, 443 for https). Unparsable: false.
bool SameOrigin(std::string_view url_a, std::string_view url_b);

// The URL with its userinfo ("user:password@" in the authority) removed, everything else kept
// byte for byte, for logs and the CloudEvents source. A URL without an authority ("scheme://")
// is returned as it is.
std::string RedactUrlUserinfo(std::string_view url);

// The URL with the query parameter name=value, both percent-encoded (every byte but ALPHA, DIGIT
// and "-._~"), appended at the end of the query. Parameters already there whose name decodes to
// `name` are removed, as are empty ones ("a=1&&b=2"); the others and any fragment are kept byte
// for byte.
std::string WithQueryParameter(std::string_view url, std::string_view name, std::string_view value);

}  // namespace sse2kafka::http
