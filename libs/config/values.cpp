#include "config/values.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "common/text.h"

namespace kg::config {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string quoted(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// Splits at every separator; "a,,b" gives three items, "" gives one empty item.
std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(separator, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !is_space(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

// Decimal digits only; nullopt on anything else or on overflow of 64 bits.
std::optional<uint64_t> decimal_u64(std::string_view s) {
  if (!all_digits(s)) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// `0x` hex or decimal, as a 32-bit value.
std::optional<uint32_t> hex_or_decimal_u32(std::string_view s) {
  uint64_t v = 0;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    const auto digits = s.substr(2);
    if (digits.size() > 8) return std::nullopt;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, 16);
    if (ec != std::errc{} || ptr != digits.data() + digits.size()) return std::nullopt;
  } else {
    auto d = decimal_u64(s);
    if (!d || *d > 0xffffffffULL) return std::nullopt;
    v = *d;
  }
  return static_cast<uint32_t>(v);
}

std::string hex(uint32_t v) {
  char buf[16];
  const int n = std::snprintf(buf, sizeof buf, "0x%x", v);
  return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0U);
}

// A port 1-65535 given as decimal digits.
Result<uint16_t> parse_port(std::string_view text) {
  if (text.empty()) return Error{"missing port number"};
  if (!all_digits(text)) return Error{"port " + quoted(text) + " is not a number"};
  auto v = decimal_u64(text);
  if (!v || *v == 0 || *v > 65535) {
    return Error{"port " + std::string(text) + " is out of range (1-65535)"};
  }
  return static_cast<uint16_t>(*v);
}

// The prefix with every bit past its length cleared.
IpPrefix network_of(const IpPrefix& p) {
  uint8_t bytes[16] = {};
  std::memcpy(bytes, p.addr.data(), p.addr.size());
  const unsigned full = p.length / 8U;
  const unsigned rest = p.length % 8U;
  for (size_t i = full; i < p.addr.size(); ++i) {
    if (i == full && rest != 0) {
      bytes[i] = static_cast<uint8_t>(bytes[i] & (0xFFU << (8U - rest)));
    } else {
      bytes[i] = 0;
    }
  }
  return IpPrefix{p.addr.is_v4() ? IpAddr::v4(bytes) : IpAddr::v6(bytes), p.length};
}

Result<IpPrefix> parse_network(std::string_view text) {
  auto p = IpPrefix::parse(text);
  if (!p) return Error{quoted(text) + " is not an address or prefix"};
  const IpPrefix network = network_of(*p);
  if (network.addr != p->addr) {
    return Error{quoted(text) + " has host bits set (did you mean " + network.str() + "?)"};
  }
  return *p;
}

Result<IpAddr> parse_address(std::string_view text) {
  auto a = IpAddr::parse(text);
  if (!a) return Error{quoted(text) + " is not an IP address"};
  return *a;
}

struct FlagName {
  std::string_view name;
  uint8_t bit;
};
constexpr FlagName kFlags[] = {{"fin", tcpflag::fin}, {"syn", tcpflag::syn}, {"rst", tcpflag::rst},
                               {"psh", tcpflag::psh}, {"ack", tcpflag::ack}, {"urg", tcpflag::urg}};

}  // namespace

bool has_inline_comment(std::string_view value) {
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '#' && (i == 0 || is_space(value[i - 1]))) return true;
  }
  return false;
}

Result<std::vector<Knock>> parse_knock_sequence(std::string_view text) {
  text = trim(text);
  if (text.empty()) return Error{"empty knock sequence"};
  const auto items = split(text, ',');
  if (items.size() > kMaxSequenceLength) {
    return Error{"too many ports in knock sequence (" + std::to_string(items.size()) +
                 ", at most " + std::to_string(kMaxSequenceLength) + ")"};
  }
  std::vector<Knock> out;
  out.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto item = trim(items[i]);
    if (item.empty()) return Error{"empty item " + std::to_string(i + 1) + " in knock sequence"};
    const size_t colon = item.find(':');
    Knock k;
    auto port = parse_port(trim(item.substr(0, colon)));
    if (!port) return port.error();
    k.port = *port;
    if (colon != std::string_view::npos) {
      const auto proto_text = trim(item.substr(colon + 1));
      const auto proto = to_lower(proto_text);
      if (proto == "tcp") {
        k.proto = Proto::tcp;
      } else if (proto == "udp") {
        k.proto = Proto::udp;
      } else if (proto.empty()) {
        return Error{"missing protocol after ':' in " + quoted(item)};
      } else {
        return Error{"unknown protocol " + quoted(proto_text) +
                     " in knock sequence (expected tcp or udp)"};
      }
    }
    out.push_back(k);
  }
  return out;
}

std::string format_knock_sequence(const std::vector<Knock>& sequence) {
  std::string out;
  for (const auto& k : sequence) {
    if (!out.empty()) out += ',';
    out += std::to_string(k.port);
    out += ':';
    out += proto_name(k.proto);
  }
  return out;
}

Result<TcpFlagsTest> parse_tcpflags(std::string_view text, TcpFlagsTest base) {
  for (const auto token : split(text, ',')) {
    const bool negated = !token.empty() && token[0] == '!';
    const std::string name = to_lower(negated ? token.substr(1) : token);
    const FlagName* found = nullptr;
    for (const auto& f : kFlags) {
      if (f.name == name) found = &f;
    }
    if (found == nullptr) {
      std::string msg = "unrecognized flag " + quoted(token);
      if (token.empty()) {
        msg += " (empty item in the list)";
      } else if (trim(token) != token) {
        msg += " (no spaces around flags: write e.g. \"syn,ack\")";
      } else {
        msg += " (expected fin, syn, rst, psh, ack or urg, each optionally with a leading !)";
      }
      return Error{msg};
    }
    const auto bit = found->bit;
    if (negated) {
      base.must_clear = static_cast<uint8_t>(base.must_clear | bit);
      base.must_set = static_cast<uint8_t>(base.must_set & ~bit);
    } else {
      base.must_set = static_cast<uint8_t>(base.must_set | bit);
      base.must_clear = static_cast<uint8_t>(base.must_clear & ~bit);
    }
  }
  return base;
}

Result<int> parse_seconds(std::string_view text) {
  auto v = decimal_u64(text);
  if (!v) return Error{quoted(text) + " is not a non-negative whole number of seconds"};
  if (*v > 2147483647ULL) return Error{std::string(text) + " is too large (at most 2147483647)"};
  return static_cast<int>(*v);
}

Result<uint32_t> parse_decimal(std::string_view text, uint32_t min, uint32_t max) {
  auto v = decimal_u64(text);
  if (!v) return Error{quoted(text) + " is not a whole number"};
  if (*v < min || *v > max) {
    return Error{std::string(text) + " is out of range (" + std::to_string(min) + "-" +
                 std::to_string(max) + ")"};
  }
  return static_cast<uint32_t>(*v);
}

Result<std::chrono::seconds> parse_duration(std::string_view text) {
  static constexpr uint64_t kMaxSeconds = 365ULL * 86400ULL;
  uint64_t unit = 1;
  std::string_view digits = text;
  if (!text.empty() && !is_digit(text.back())) {
    switch (text.back()) {
      case 's':
      case 'S':
        unit = 1;
        break;
      case 'm':
      case 'M':
        unit = 60;
        break;
      case 'h':
      case 'H':
        unit = 3600;
        break;
      case 'd':
      case 'D':
        unit = 86400;
        break;
      default:
        return Error{quoted(text) + " is not a duration (e.g. 90, 90s, 15m, 2h, 1d)"};
    }
    digits.remove_suffix(1);
  }
  auto v = decimal_u64(digits);
  if (!v || digits.size() > 12) {
    return Error{quoted(text) + " is not a duration (e.g. 90, 90s, 15m, 2h, 1d)"};
  }
  if (*v == 0) return Error{"duration must be positive"};
  if (*v * unit > kMaxSeconds) return Error{quoted(text) + " is too long (at most 365d)"};
  return std::chrono::seconds(static_cast<std::chrono::seconds::rep>(*v * unit));
}

std::string format_duration(std::chrono::seconds d) {
  const auto s = d.count();
  if (s > 0 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s > 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s > 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

Result<bool> parse_bool(std::string_view text) {
  const auto v = to_lower(text);
  if (v == "yes" || v == "true" || v == "on") return true;
  if (v == "no" || v == "false" || v == "off") return false;
  return Error{quoted(text) + " is not yes or no"};
}

Result<FwMark> parse_fwmark(std::string_view text) {
  static constexpr uint32_t kMwan3Bits = 0x3f00;
  static constexpr uint32_t kPbrBits = 0x00ff0000;
  const size_t slash = text.find('/');
  const auto value_text = text.substr(0, slash);
  FwMark m;
  auto value = hex_or_decimal_u32(value_text);
  if (!value) {
    return Error{"mark " + quoted(value_text) + " is not a 32-bit number (hex 0x... or decimal)"};
  }
  m.value = *value;
  if (slash != std::string_view::npos) {
    const auto mask_text = text.substr(slash + 1);
    auto mask = hex_or_decimal_u32(mask_text);
    if (!mask) {
      return Error{"mask " + quoted(mask_text) + " is not a 32-bit number (hex 0x... or decimal)"};
    }
    m.mask = *mask;
  }
  if (m.mask == 0) return Error{"mask 0 covers no bits"};
  if ((m.value & ~m.mask) != 0) {
    return Error{"mark " + hex(m.value) + " has bits outside its mask " + hex(m.mask)};
  }
  if (m.value == 0) return Error{"mark 0 would match unmarked packets"};
  const bool mwan3 = (m.mask & kMwan3Bits) != 0;
  const bool pbr = (m.mask & kPbrBits) != 0;
  if (mwan3 || pbr) {
    std::string which;
    if (mwan3) which = "0x3f00 (OpenWrt mwan3)";
    if (pbr) which += std::string(mwan3 ? " and " : "") + "0x00ff0000 (OpenWrt pbr)";
    return Error{"mask " + hex(m.mask) + " overlaps bits other software owns: " + which +
                 "; give a mask that leaves them out, e.g. 0x10000000/0xff000000"};
  }
  return m;
}

std::string format_fwmark(const FwMark& mark) {
  return hex(mark.value) + "/" + hex(mark.mask);
}

Result<uint32_t> parse_table(std::string_view text) {
  auto v = hex_or_decimal_u32(text);
  if (!v) return Error{quoted(text) + " is not a table number"};
  switch (*v) {
    case 253:
      return Error{"table 253 is the kernel's default table"};
    case 254:
      return Error{"table 254 is the kernel's main table"};
    case 255:
      return Error{"table 255 is the kernel's local table"};
    default:
      break;
  }
  if (*v == 0 || *v == 0xffffffffU) {
    return Error{"table " + std::string(text) + " is out of range (1-4294967294)"};
  }
  return *v;
}

Result<Route> parse_route(std::string_view text) {
  const auto words = split_whitespace(text);
  if (words.empty()) return Error{"empty route"};
  Route r;
  bool is_default = false;
  if (to_lower(words[0]) == "default") {
    is_default = true;
  } else {
    auto p = parse_network(words[0]);
    if (!p) return p.error();
    r.prefix = *p;
  }
  bool have_via = false;
  bool have_dev = false;
  for (size_t i = 1; i < words.size(); i += 2) {
    const auto word = to_lower(words[i]);
    if (word != "via" && word != "dev") {
      return Error{"unexpected " + quoted(words[i]) + " (expected \"via ADDR\" or \"dev IF\")"};
    }
    if (i + 1 >= words.size()) return Error{"missing value after " + quoted(words[i])};
    const auto arg = words[i + 1];
    if (word == "via") {
      if (have_via) return Error{"\"via\" given twice"};
      have_via = true;
      auto gw = parse_address(arg);
      if (!gw) return gw.error();
      r.gateway = *gw;
    } else {
      if (have_dev) return Error{"\"dev\" given twice"};
      have_dev = true;
      if (!valid_interface_name(arg)) return Error{quoted(arg) + " is not an interface name"};
      r.device = std::string(arg);
    }
  }
  if (!have_via && !have_dev) return Error{"a route needs \"via ADDR\", \"dev IF\" or both"};
  if (is_default) {
    const bool v6 = r.gateway && r.gateway->is_v6();
    r.prefix = *IpPrefix::parse(v6 ? "::/0" : "0.0.0.0/0");
  } else if (r.gateway && r.gateway->family() != r.prefix.addr.family()) {
    return Error{"gateway " + r.gateway->str() + " and destination " + r.prefix.str() +
                 " are of different address families"};
  }
  return r;
}

std::string format_route(const Route& route) {
  std::string out;
  const Family default_family = route.gateway ? route.gateway->family() : Family::v4;
  if (route.prefix.length == 0 && route.prefix.addr.family() == default_family) {
    out = "default";
  } else {
    out = route.prefix.str();
  }
  if (route.gateway) out += " via " + route.gateway->str();
  if (!route.device.empty()) out += " dev " + route.device;
  return out;
}

namespace {

// "tcp/22" of an exposure: protocol and public port.
Result<Ok> parse_exposed_port(std::string_view text, std::string_view form, Exposure& e) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return Error{std::string(form)};
  const auto proto = to_lower(trim(text.substr(0, slash)));
  if (proto == "tcp") {
    e.proto = Proto::tcp;
  } else if (proto == "udp") {
    e.proto = Proto::udp;
  } else {
    return Error{"unknown protocol " + quoted(text.substr(0, slash)) + " (expected tcp or udp)"};
  }
  auto public_port = parse_port(trim(text.substr(slash + 1)));
  if (!public_port) return public_port.error();
  e.public_port = *public_port;
  e.host_port = e.public_port;
  return Ok{};
}

}  // namespace

Result<Exposure> parse_exposure(std::string_view text) {
  static const std::string kForm = "expected \"PROTO/PORT -> ADDR[:PORT]\" or \"self PROTO/PORT\"";
  Exposure e;
  const auto lowered = to_lower(trim(text));
  if (lowered.rfind("self", 0) == 0 &&
      (lowered.size() == 4 || lowered[4] == ' ' || lowered[4] == '\t')) {
    const auto rest = trim(trim(text).substr(4));
    if (rest.empty()) return Error{"missing PROTO/PORT after \"self\" (e.g. self tcp/22)"};
    if (rest.find("->") != std::string_view::npos) {
      return Error{
          "\"self\" exposes a port of the gateway itself: write \"self PROTO/PORT\" "
          "without \"->\""};
    }
    if (auto r = parse_exposed_port(rest, kForm, e); !r) return r.error();
    e.self = true;
    return e;
  }
  const size_t arrow = text.find("->");
  if (arrow == std::string_view::npos) return Error{kForm};
  const auto left = trim(text.substr(0, arrow));
  const auto right = trim(text.substr(arrow + 2));
  if (auto r = parse_exposed_port(left, kForm, e); !r) return r.error();

  std::string_view host_text = right;
  std::string_view port_text;
  bool has_port = false;
  if (!right.empty() && right[0] == '[') {
    const size_t close = right.find(']');
    if (close == std::string_view::npos) return Error{"missing ']' in " + quoted(right)};
    host_text = right.substr(1, close - 1);
    const auto rest = right.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Error{"unexpected " + quoted(rest) + " after ']'"};
      port_text = rest.substr(1);
      has_port = true;
    }
    auto a = IpAddr::parse(host_text);
    if (!a || !a->is_v6()) return Error{quoted(host_text) + " is not an IPv6 address"};
  } else if (right.find(':') != std::string_view::npos && right.find(':') == right.rfind(':')) {
    // One colon: IPv4 with a port. More colons: a bare IPv6 address.
    const size_t colon = right.find(':');
    host_text = right.substr(0, colon);
    port_text = right.substr(colon + 1);
    has_port = true;
  }
  if (host_text.empty()) return Error{"missing address after \"->\""};
  auto host = parse_address(host_text);
  if (!host) return host.error();
  e.host = *host;
  if (has_port) {
    auto port = parse_port(port_text);
    if (!port) return port.error();
    e.host_port = *port;
  }
  return e;
}

std::string format_exposure(const Exposure& e) {
  if (e.self)
    return "self " + std::string(proto_name(e.proto)) + "/" + std::to_string(e.public_port);
  std::string out = std::string(proto_name(e.proto)) + "/" + std::to_string(e.public_port) + " -> ";
  if (e.host.is_v6()) {
    out += "[" + e.host.str() + "]";
  } else {
    out += e.host.str();
  }
  return out + ":" + std::to_string(e.host_port);
}

Result<std::vector<AllowRule>> parse_allow(std::string_view text) {
  std::vector<AllowRule> out;
  const auto items = split(text, ',');
  for (size_t i = 0; i < items.size(); ++i) {
    const auto item = trim(items[i]);
    if (item.empty()) return Error{"empty item " + std::to_string(i + 1) + " in the list"};
    const size_t slash = item.find('/');
    const auto proto = to_lower(trim(item.substr(0, slash)));
    AllowRule rule;
    if (proto == "icmp") {
      if (slash != std::string_view::npos) return Error{"icmp takes no port: write just \"icmp\""};
      rule.proto = AllowProto::icmp;
      out.push_back(rule);
      continue;
    }
    if (proto == "tcp") {
      rule.proto = AllowProto::tcp;
    } else if (proto == "udp") {
      rule.proto = AllowProto::udp;
    } else {
      return Error{"unknown protocol " + quoted(item.substr(0, slash)) +
                   " (expected tcp, udp or icmp)"};
    }
    if (slash == std::string_view::npos) {
      std::string msg = proto;
      msg.append(" needs a port: ").append(proto).append("/PORT or ").append(proto);
      return Error{msg.append("/FIRST-LAST")};
    }
    const auto ports = trim(item.substr(slash + 1));
    const size_t dash = ports.find('-');
    auto first = parse_port(trim(ports.substr(0, dash)));
    if (!first) return first.error();
    rule.ports = {*first, *first};
    if (dash != std::string_view::npos) {
      auto last = parse_port(trim(ports.substr(dash + 1)));
      if (!last) return last.error();
      if (*last < *first) return Error{"port range " + quoted(ports) + " is backwards"};
      rule.ports.last = *last;
    }
    out.push_back(rule);
  }
  return out;
}

std::string format_allow(const std::vector<AllowRule>& rules) {
  std::string out;
  for (const auto& r : rules) {
    if (!out.empty()) out += ',';
    out += allow_proto_name(r.proto);
    if (r.proto == AllowProto::icmp) continue;
    out += "/" + std::to_string(r.ports.first);
    if (r.ports.last != r.ports.first) out += "-" + std::to_string(r.ports.last);
  }
  return out;
}

Result<std::vector<IpPrefix>> parse_prefix_list(std::string_view text) {
  std::vector<IpPrefix> out;
  const auto items = split(text, ',');
  for (size_t i = 0; i < items.size(); ++i) {
    const auto item = trim(items[i]);
    if (item.empty()) return Error{"empty item " + std::to_string(i + 1) + " in the list"};
    auto p = parse_network(item);
    if (!p) return p.error();
    out.push_back(*p);
  }
  return out;
}

std::string format_prefix_list(const std::vector<IpPrefix>& prefixes) {
  std::string out;
  for (const auto& p : prefixes) {
    if (!out.empty()) out += ',';
    // Host prefixes are written as plain addresses, the way people write them.
    const bool host = p.length == (p.addr.is_v4() ? 32 : 128);
    out += host ? p.addr.str() : p.str();
  }
  return out;
}

bool valid_interface_name(std::string_view name) {
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == ':' || is_space(c) || c == '\0' || c == ',') return false;
  }
  return true;
}

Result<std::vector<std::string>> parse_interface_list(std::string_view text) {
  std::vector<std::string> out;
  const auto items = split(text, ',');
  for (size_t i = 0; i < items.size(); ++i) {
    const auto item = trim(items[i]);
    if (item.empty()) return Error{"empty item " + std::to_string(i + 1) + " in the list"};
    if (!valid_interface_name(item)) {
      return Error{quoted(item) + " is not an interface name (1-15 bytes, no '/', ':' or spaces)"};
    }
    for (const auto& seen : out) {
      if (seen == item) return Error{"interface " + quoted(item) + " is listed twice"};
    }
    out.emplace_back(item);
  }
  return out;
}

Result<ManagementFrom> parse_management_from(std::string_view text) {
  ManagementFrom out;
  const auto items = split(text, ',');
  for (size_t i = 0; i < items.size(); ++i) {
    const auto item = trim(items[i]);
    if (item.empty()) return Error{"empty item " + std::to_string(i + 1) + " in the list"};
    // An address or prefix is never taken for an interface name.
    if (IpPrefix::parse(item) || IpAddr::parse(item)) {
      auto p = parse_network(item);
      if (!p) return p.error();
      out.prefixes.push_back(*p);
      continue;
    }
    if (!valid_interface_name(item)) {
      return Error{quoted(item) + " is neither an address, a prefix nor an interface name"};
    }
    if (std::find(out.interfaces.begin(), out.interfaces.end(), item) != out.interfaces.end()) {
      return Error{"interface " + quoted(item) + " is listed twice"};
    }
    out.interfaces.emplace_back(item);
  }
  return out;
}

std::string format_management_from(const std::vector<std::string>& interfaces,
                                   const std::vector<IpPrefix>& prefixes) {
  std::string out = join(interfaces, ",");
  const std::string nets = format_prefix_list(prefixes);
  if (!out.empty() && !nets.empty()) out += ',';
  return out + nets;
}

Result<std::vector<AllowRule>> parse_management_ports(std::string_view text) {
  auto rules = parse_allow(text);
  if (!rules) return rules.error();
  for (const auto& r : *rules) {
    if (r.proto == AllowProto::icmp) return Error{"icmp is not a port: list tcp/PORT or udp/PORT"};
  }
  return rules;
}

std::string WebEndpoint::str() const {
  const std::string host =
      address.family() == Family::v6 ? "[" + address.str() + "]" : address.str();
  return host + ":" + std::to_string(port);
}

Result<std::vector<WebEndpoint>> parse_web_listen(std::string_view text) {
  std::vector<WebEndpoint> out;
  const auto items = split(text, ',');
  for (size_t i = 0; i < items.size(); ++i) {
    const auto item = trim(items[i]);
    if (item.empty()) return Error{"empty item " + std::to_string(i + 1) + " in the list"};
    std::string_view host;
    std::string_view port;
    if (item.front() == '[') {
      const size_t close = item.find("]:");
      if (close == std::string_view::npos) return Error{quoted(item) + " is not [IPv6]:PORT"};
      host = item.substr(1, close - 1);
      port = item.substr(close + 2);
    } else {
      const size_t colon = item.rfind(':');
      if (colon == std::string_view::npos || item.find(':') != colon) {
        return Error{quoted(item) + " is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)"};
      }
      host = item.substr(0, colon);
      port = item.substr(colon + 1);
    }
    auto address = IpAddr::parse(host);
    if (!address) return Error{quoted(host) + " is not an IP address"};
    if (item.front() == '[' && address->family() != Family::v6) {
      return Error{quoted(host) + " in brackets is not an IPv6 address"};
    }
    auto p = parse_decimal(port, 1, 65535);
    if (!p) return Error{"port of " + quoted(item) + ": " + p.error().message};
    WebEndpoint e{*address, static_cast<uint16_t>(*p)};
    for (const auto& seen : out) {
      if (seen == e) return Error{quoted(item) + " is listed twice"};
    }
    if (out.size() == 16) return Error{"at most 16 endpoints"};
    out.push_back(e);
  }
  return out;
}

std::string format_web_listen(const std::vector<WebEndpoint>& endpoints) {
  std::string out;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (i > 0) out += ",";
    out += endpoints[i].str();
  }
  return out;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    out += items[i];
  }
  return out;
}

bool valid_profile_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c);
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

bool valid_account_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (i == 0) {
      if (!letter) return false;
      continue;
    }
    if (c == '$' && i == name.size() - 1) continue;
    if (!letter && !is_digit(c) && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace kg::config
