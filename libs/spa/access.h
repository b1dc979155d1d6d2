// The access request inside an SPA message: "ALLOW_IP,proto/port[,proto/port...]".
// fwknop's ALLOW_IP is dotted IPv4 with 0.0.0.0 for "the packet's source". knockgate's
// extension (docs/spa.md): an IPv6 address there, with "::" for "the packet's source".
// fwknopd's IPv4 check refuses such a message as malformed, so it fails closed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/addr.h"
#include "common/result.h"

namespace kg::spa {

// IANA protocol number (tcp 6, udp 17, icmp 1) or 0 for fwknop's "none".
struct ProtoPort {
  uint8_t proto = 6;
  uint16_t port = 0;
  friend bool operator==(const ProtoPort&, const ProtoPort&) = default;
  friend bool operator<(const ProtoPort& a, const ProtoPort& b) {
    return a.proto != b.proto ? a.proto < b.proto : a.port < b.port;
  }
};

std::string proto_port_str(const ProtoPort& p);  // "tcp/22"
// "tcp/22"; proto tcp|udp|icmp|none (any case), port 1-65535.
Result<ProtoPort> parse_proto_port(std::string_view text);
// "tcp/22,udp/53" (spaces around items allowed).
Result<std::vector<ProtoPort>> parse_proto_port_list(std::string_view text);

struct AccessRequest {
  IpAddr allow_ip;          // as sent; the unspecified address means "use the source"
  bool use_source = false;  // allow_ip was 0.0.0.0 or ::
  std::vector<ProtoPort> ports;
};

Result<AccessRequest> parse_access(std::string_view message);
std::string format_access(const AccessRequest& a);

}  // namespace kg::spa
