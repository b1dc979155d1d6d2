// HTTP types and helpers shared by the request handler and the connection code.
#pragma once

#include <boost/beast/http.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kg::webd {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Boost 1.74's Beast speaks boost::string_view.
inline std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

// Limits on what a client may send (docs/knockgate-webd.8).
struct HttpLimits {
  size_t header_bytes = 8 * 1024;  // request line + headers; more: 431
  size_t header_count = 64;        // more: 431
  size_t body_bytes = 64 * 1024;   // more: 413
  size_t target_bytes = 2048;      // request-target; more: 414
};

// What a request head may be refused for, checked before any body byte is read: too many
// header fields (431), too long a target (414), an HTTP version other than 1.0/1.1 (505),
// no Host in 1.1 (400), a chunked body (411: the API's bodies are small JSON documents
// and every client sends Content-Length; refusing chunked also keeps Beast 1.74's
// chunk-header parser, which asserts on some malformed input, off the attack surface).
// nullopt: acceptable.
struct RequestProblem {
  http::status status;
  const char* why;
};
std::optional<RequestProblem> check_request(const Request& head, bool chunked,
                                            const HttpLimits& limits);

// Splits `/path?x=1&y=2` and percent-decodes the parts. nullopt on bad escapes or too many
// parameters.
struct Target {
  std::string path;
  std::map<std::string, std::string> query;
};
std::optional<Target> parse_target(std::string_view target);
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);

// The value of cookie `name` in a Cookie header, or empty.
std::string cookie_value(std::string_view header, std::string_view name);

}  // namespace kg::webd
