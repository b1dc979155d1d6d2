#include "webd/http.h"

namespace kg::webd {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_digit(s[i + 1]);
      const int lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      const char decoded = static_cast<char>(hi * 16 + lo);
      if (decoded == '\0') return std::nullopt;
      out += decoded;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<Target> parse_target(std::string_view target) {
  static constexpr size_t kMaxParams = 32;
  Target t;
  const size_t q = target.find('?');
  auto path = percent_decode(target.substr(0, q), false);
  if (!path || path->empty() || (*path)[0] != '/') return std::nullopt;
  t.path = std::move(*path);
  if (q == std::string_view::npos) return t;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view item = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (item.empty()) continue;
    if (t.query.size() == kMaxParams) return std::nullopt;
    const size_t eq = item.find('=');
    auto key = percent_decode(item.substr(0, eq), true);
    auto value = percent_decode(
        eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1), true);
    if (!key || !value) return std::nullopt;
    t.query[*key] = *value;
  }
  return t;
}

std::optional<RequestProblem> check_request(const Request& req, bool chunked,
                                            const HttpLimits& limits) {
  if (static_cast<size_t>(std::distance(req.begin(), req.end())) > limits.header_count) {
    return RequestProblem{http::status::request_header_fields_too_large, "too many header fields"};
  }
  if (req.target().size() > limits.target_bytes) {
    return RequestProblem{http::status::uri_too_long, "request target too long"};
  }
  if (req.version() != 11 && req.version() != 10) {
    return RequestProblem{http::status::http_version_not_supported, "HTTP/1.x only"};
  }
  if (req.version() == 11 && req.find(http::field::host) == req.end()) {
    return RequestProblem{http::status::bad_request, "Host header required"};
  }
  if (chunked) {
    return RequestProblem{http::status::length_required,
                          "chunked request bodies are not accepted; send Content-Length"};
  }
  return std::nullopt;
}

std::string cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t semi = header.find(';');
    std::string_view item = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view{} : header.substr(semi + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    const size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == name) {
      return std::string(item.substr(eq + 1));
    }
  }
  return {};
}

}  // namespace kg::webd
