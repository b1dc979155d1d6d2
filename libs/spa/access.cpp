#include "spa/access.h"

#include <charconv>

#include "common/text.h"

namespace kg::spa {

namespace {

const char* proto_name(uint8_t p) {
  switch (p) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    default:
      return "none";
  }
}

}  // namespace

std::string proto_port_str(const ProtoPort& p) {
  return std::string(proto_name(p.proto)) + "/" + std::to_string(p.port);
}

Result<ProtoPort> parse_proto_port(std::string_view text) {
  text = trim(text);
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Error{"\"" + std::string(text) + "\" is not proto/port"};
  }
  const std::string proto = to_lower(text.substr(0, slash));
  ProtoPort out;
  if (proto == "tcp") {
    out.proto = 6;
  } else if (proto == "udp") {
    out.proto = 17;
  } else if (proto == "icmp") {
    out.proto = 1;
  } else if (proto == "none") {
    out.proto = 0;
  } else {
    return Error{"unknown protocol \"" + proto + "\""};
  }
  const auto port = text.substr(slash + 1);
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (port.empty() || port.size() > 5 || ec != std::errc() || end != port.data() + port.size() ||
      v < 1 || v > 65535) {
    return Error{"bad port \"" + std::string(port) + "\""};
  }
  out.port = static_cast<uint16_t>(v);
  return out;
}

Result<std::vector<ProtoPort>> parse_proto_port_list(std::string_view text) {
  std::vector<ProtoPort> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    auto item = parse_proto_port(text.substr(start, comma - start));
    if (!item) return item.error();
    out.push_back(*item);
    start = comma + 1;
  }
  return out;
}

Result<AccessRequest> parse_access(std::string_view message) {
  const size_t comma = message.find(',');
  if (comma == std::string_view::npos) return Error{"no proto/port list"};
  const auto addr_text = message.substr(0, comma);
  auto addr = IpAddr::parse(addr_text);
  if (!addr) return Error{"allow address \"" + std::string(addr_text) + "\" is not an IP"};
  AccessRequest a;
  a.allow_ip = *addr;
  a.use_source = true;
  for (size_t i = 0; i < addr->size(); ++i) a.use_source = a.use_source && addr->data()[i] == 0;
  auto ports = parse_proto_port_list(message.substr(comma + 1));
  if (!ports) return ports.error();
  if (ports->size() > 16) return Error{"more than 16 proto/port items"};
  a.ports = std::move(*ports);
  return a;
}

std::string format_access(const AccessRequest& a) {
  std::string out = a.allow_ip.str();
  for (const auto& p : a.ports) out += "," + proto_port_str(p);
  return out;
}

}  // namespace kg::spa
