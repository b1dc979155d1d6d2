// How SPA text travels: bare (UDP datagram or TCP data) or as fwknop's HTTP request
// "GET /<packet with + as - and / as _> HTTP/1.1".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kg::spa {

enum class Transport : uint8_t { udp, tcp, http };

const char* transport_name(Transport t);
std::optional<Transport> parse_transport(std::string_view name);  // udp|tcp|http

// The SPA text inside an HTTP request, with the URL-safe characters mapped back; nullopt
// when the bytes are not "GET /X HTTP/1.x".
std::optional<std::string> unwrap_http(std::string_view request);
// A request as fwknop -P http writes it.
std::string wrap_http(std::string_view packet, std::string_view host);

}  // namespace kg::spa
