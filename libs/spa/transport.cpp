#include "spa/transport.h"

namespace kg::spa {

const char* transport_name(Transport t) {
  switch (t) {
    case Transport::tcp:
      return "tcp";
    case Transport::http:
      return "http";
    case Transport::udp:
      break;
  }
  return "udp";
}

std::optional<Transport> parse_transport(std::string_view name) {
  if (name == "udp" || name == "UDP") return Transport::udp;
  if (name == "tcp" || name == "TCP") return Transport::tcp;
  if (name == "http" || name == "HTTP") return Transport::http;
  return std::nullopt;
}

std::optional<std::string> unwrap_http(std::string_view request) {
  constexpr std::string_view kGet = "GET /";
  if (request.substr(0, kGet.size()) != kGet) return std::nullopt;
  request.remove_prefix(kGet.size());
  const size_t space = request.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  if (request.substr(space + 1, 7) != "HTTP/1.") return std::nullopt;
  std::string out(request.substr(0, space));
  for (char& c : out) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    }
  }
  return out;
}

std::string wrap_http(std::string_view packet, std::string_view host) {
  std::string url(packet);
  for (char& c : url) {
    if (c == '+') {
      c = '-';
    } else if (c == '/') {
      c = '_';
    }
  }
  return "GET /" + url +
         " HTTP/1.1\r\nUser-Agent: Fwknop/2.6.10\r\nAccept: */*\r\nHost: " + std::string(host) +
         "\r\nConnection: close\r\n\r\n";
}

}  // namespace kg::spa
