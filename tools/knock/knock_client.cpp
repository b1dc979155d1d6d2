#include "knock/knock_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/text.h"
#include "common/unique_fd.h"
#include "knock/command_words.h"

namespace kg::knockclient {
namespace {

// Decimal 0..limit with no sign, blanks or junk; nullopt otherwise.
std::optional<long> parse_decimal(std::string_view s, long limit) {
  if (!all_digits(s) || s.size() > 10) return std::nullopt;
  long v = 0;
  for (char c : s) {
    v = v * 10 + (c - '0');
    if (v > limit) return std::nullopt;
  }
  return v;
}

std::optional<Proto> parse_proto(std::string_view text) {
  const std::string p = to_lower(trim(text));
  if (p == "tcp") return Proto::tcp;
  if (p == "udp") return Proto::udp;
  return std::nullopt;
}

Error err(std::string message) {
  return Error{std::move(message)};
}

// The knockd sequence item: a numeric port, then an optional ":proto".
Result<Knock> parse_item(std::string_view text, Proto default_proto, bool allow_service) {
  const std::string_view item = trim(text);
  std::string_view port_text = item;
  Proto proto = default_proto;
  if (const size_t colon = item.find(':'); colon != std::string_view::npos) {
    port_text = trim(item.substr(0, colon));
    const std::string_view proto_text = item.substr(colon + 1);
    const auto p = parse_proto(proto_text);
    if (!p) {
      return err("'" + std::string(item) + "': unknown protocol '" + std::string(trim(proto_text)) +
                 "' (tcp or udp)");
    }
    proto = *p;
  }
  if (port_text.empty()) return err("'" + std::string(item) + "': missing port");
  if (all_digits(port_text)) {
    const auto port = parse_decimal(port_text, 65535);
    if (!port || *port == 0) {
      return err("'" + std::string(item) + "': port must be 1-65535");
    }
    return Knock{proto, static_cast<uint16_t>(*port)};
  }
  if (allow_service) {
    // knock resolves ports with getaddrinfo, so service names work there too.
    const std::string name(port_text);
    if (const servent* s = ::getservbyname(name.c_str(), proto_name(proto))) {
      return Knock{proto, ntohs(static_cast<uint16_t>(s->s_port))};
    }
    return err("'" + std::string(item) + "': not a port number or a known " + proto_name(proto) +
               " service");
  }
  return err("'" + std::string(item) + "': port must be a number 1-65535");
}

// knockd's tcpflags tokens; repeated lines add up.
Result<Ok> add_tcpflags(std::string_view value, TcpFlagsTest& test) {
  std::string_view rest = value;
  while (true) {
    const size_t comma = rest.find(',');
    std::string_view token = trim(rest.substr(0, comma));
    bool must_clear = false;
    if (!token.empty() && token.front() == '!') {
      must_clear = true;
      token.remove_prefix(1);
    }
    const std::string name = to_lower(token);
    uint8_t bit = 0;
    if (name == "fin")
      bit = tcpflag::fin;
    else if (name == "syn")
      bit = tcpflag::syn;
    else if (name == "rst")
      bit = tcpflag::rst;
    else if (name == "psh")
      bit = tcpflag::psh;
    else if (name == "ack")
      bit = tcpflag::ack;
    else if (name == "urg")
      bit = tcpflag::urg;
    else
      return err("unrecognized flag '" + std::string(token) + "'");
    if (must_clear) {
      test.must_clear = static_cast<uint8_t>(test.must_clear | bit);
    } else {
      test.must_set = static_cast<uint8_t>(test.must_set | bit);
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return Ok{};
}

std::optional<FamilyWanted> parse_family(std::string_view text) {
  const std::string f = to_lower(trim(text));
  if (f == "4" || f == "ipv4" || f == "inet") return FamilyWanted::v4;
  if (f == "6" || f == "ipv6" || f == "inet6") return FamilyWanted::v6;
  if (f == "any" || f == "both") return FamilyWanted::any;
  return std::nullopt;
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Keys of knockd and knockgate doors that only the server uses.
bool is_server_door_key(const std::string& key) {
  static const char* const keys[] = {
      "seq_timeout", "timeout",         "command",        "start_command", "stop_command",
      "command_6",   "start_command_6", "stop_command_6", "cmd_timeout",   "grant"};
  for (const char* k : keys) {
    if (key == k) return true;
  }
  return false;
}

enum class SectionKind : uint8_t { none, skipped, client_door, knockd_door };

}  // namespace

Result<Knock> parse_hit(std::string_view text, Proto default_proto) {
  return parse_item(text, default_proto, /*allow_service=*/true);
}

Result<std::vector<Knock>> parse_sequence(std::string_view text) {
  std::vector<Knock> out;
  std::string_view rest = text;
  while (true) {
    const size_t comma = rest.find(',');
    auto hit = parse_item(rest.substr(0, comma), Proto::tcp, /*allow_service=*/false);
    if (!hit) return hit.error();
    out.push_back(*hit);
    if (out.size() > kMaxSequence) {
      return err("too many ports (knockd allows " + std::to_string(kMaxSequence) + ")");
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return out;
}

Result<int> parse_millis(std::string_view text, std::string_view what) {
  const auto v = parse_decimal(trim(text), 86'400'000);
  if (!v) {
    return err(std::string(what) + " must be a number of milliseconds 0-86400000, not '" +
               std::string(text) + "'");
  }
  return static_cast<int>(*v);
}

// ---------------------------------------------------------------- command line

std::string usage_text(std::string_view program) {
  std::string p(program);
  return "usage: " + p + " [options] <host> <port[:proto]> [port[:proto]] ...\n" + "       " + p +
         " [options] -c FILE [-p DOOR] [host]\n"
         "       " +
         p +
         " [options] -p DOOR [host]\n"
         "options:\n"
         "  -u, --udp            make all port hits use UDP (default is TCP)\n"
         "  -d, --delay <t>      wait <t> milliseconds after each port hit\n"
         "  -4, --ipv4           force usage of IPv4\n"
         "  -6, --ipv6           force usage of IPv6\n"
         "  -v, --verbose        be verbose\n"
         "  -c, --config <file>  read the door from a client file or knockd/knockgate config\n"
         "  -p, --door <name>    the door to knock (also --profile); default file:\n"
         "                       $XDG_CONFIG_HOME/knockgate/knock.conf\n"
         "      --wait <t>       wait <t> milliseconds after the last hit\n"
         "  -V, --version        display version\n"
         "  -h, --help           this help\n"
         "\n"
         "example:  " +
         p + " myserver.example.com 123:tcp 456:udp 789:tcp\n";
}

Result<Options> parse_command_line(const std::vector<std::string>& args) {
  Options o;
  std::vector<std::string> positional;
  constexpr int kWait = 256;  // --wait has no short form
  static const option long_options[] = {
      {"udp", no_argument, nullptr, 'u'},          {"delay", required_argument, nullptr, 'd'},
      {"ipv4", no_argument, nullptr, '4'},         {"ipv6", no_argument, nullptr, '6'},
      {"verbose", no_argument, nullptr, 'v'},      {"version", no_argument, nullptr, 'V'},
      {"help", no_argument, nullptr, 'h'},         {"config", required_argument, nullptr, 'c'},
      {"door", required_argument, nullptr, 'p'},   {"profile", required_argument, nullptr, 'p'},
      {"wait", required_argument, nullptr, kWait}, {nullptr, 0, nullptr, 0}};

  auto apply = [&](int code, const std::string& value) -> Result<Ok> {
    switch (code) {
      case 'u':
        o.all_udp = true;
        break;
      case 'd':
      case kWait: {
        auto ms = parse_millis(value, code == 'd' ? "delay" : "wait");
        if (!ms) return ms.error();
        (code == 'd' ? o.delay_ms : o.wait_ms) = *ms;
        break;
      }
      case '4':
      case '6': {
        const FamilyWanted want = code == '4' ? FamilyWanted::v4 : FamilyWanted::v6;
        if (o.family && *o.family != want) {
          return err("-4 and -6 exclude each other");
        }
        o.family = want;
        break;
      }
      case 'v':
        o.verbose = true;
        break;
      case 'V':
        o.version = true;
        break;
      case 'h':
        o.help = true;
        break;
      case 'c':
        if (value.empty()) return err("-c needs a file name");
        o.config_file = value;
        break;
      case 'p':
        if (value.empty()) return err("-p needs a door name");
        o.door_name = value;
        break;
      default:
        break;
    }
    return Ok{};
  };
  auto refuse = [](const OptionError& e) {
    switch (e.kind) {
      case OptionError::Kind::needs_value:
        return err("option '" + e.word + "' needs a value");
      case OptionError::Kind::takes_no_value:
        return err("option '" + e.word + "' takes no value");
      default:
        return err("unknown option '" + e.word + "'");
    }
  };
  if (auto r = scan_options(args, "ud:46vVhc:p:", long_options, apply, refuse, positional); !r) {
    return r.error();
  }

  if (o.help || o.version) return o;
  const bool from_config = o.config_file || o.door_name;
  if (from_config) {
    if (positional.size() > 1) {
      return err("with -c or -p the door gives the ports; only a host may follow");
    }
    if (o.all_udp)
      return err("-u cannot be used with -c or -p: the door's sequence sets protocols");
    if (!positional.empty()) o.host = positional[0];
    return o;
  }
  if (positional.size() < 2) return err("need a host and at least one port");
  o.host = positional[0];
  for (size_t i = 1; i < positional.size(); ++i) {
    auto hit = parse_hit(positional[i], Proto::tcp);
    if (!hit) return hit.error();
    // knock's -u makes every hit UDP, even one written "port:tcp".
    if (o.all_udp) hit->proto = Proto::udp;
    o.hits.push_back(*hit);
  }
  return o;
}

// ---------------------------------------------------------------- client configuration

Result<ClientConfig> parse_client_config(std::string_view text, const std::string& file_name) {
  ClientConfig config;
  SectionKind kind = SectionKind::none;
  ClientDoor* door = nullptr;
  std::string target;  // of the current door, used when it has no host
  int line_no = 0;

  auto where = [&](int line, const std::string& key) {
    return file_name + ":" + std::to_string(line) + ": " + (key.empty() ? "" : key + ": ");
  };
  auto finish_door = [&]() -> Result<Ok> {
    if (!door) return Ok{};
    if (door->host.empty()) door->host = target;
    if (door->sequence.empty() && door->one_time_file.empty()) {
      return err(where(door->line, "") + "door '" + door->name +
                 "' has no sequence or one_time_sequences");
    }
    door = nullptr;
    target.clear();
    return Ok{};
  };

  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t nl = text.find('\n', pos);
    const std::string_view raw =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;

    if (line.front() == '[') {
      if (line.back() != ']') return err(where(line_no, "") + "section header without ']'");
      auto done = finish_door();
      if (!done) return done.error();
      const std::string_view name = trim(line.substr(1, line.size() - 2));
      if (name.empty()) return err(where(line_no, "") + "bad section name");
      const size_t space = name.find_first_of(" \t");
      if (name == "options") {
        kind = SectionKind::skipped;
      } else if (space != std::string_view::npos) {
        if (to_lower(name.substr(0, space)) == "door") {
          const std::string_view door_name = trim(name.substr(space + 1));
          kind = SectionKind::client_door;
          config.doors.push_back(ClientDoor{});
          door = &config.doors.back();
          door->name = std::string(door_name);
        } else {
          kind = SectionKind::skipped;  // a knockgate section such as [profile NAME]
        }
      } else {
        kind = SectionKind::knockd_door;
        config.doors.push_back(ClientDoor{});
        door = &config.doors.back();
        door->name = std::string(name);
      }
      if (door) {
        door->file = file_name;
        door->line = line_no;
      }
      continue;
    }

    if (kind == SectionKind::none) {
      return err(where(line_no, "") + "all directives must belong to a section");
    }
    if (kind == SectionKind::skipped) continue;

    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return err(where(line_no, to_lower(line)) + "expected 'key = value'");
    }
    const std::string key = to_lower(trim(line.substr(0, eq)));
    const std::string_view value = trim(line.substr(eq + 1));

    if (key == "sequence") {
      auto seq = parse_sequence(value);
      if (!seq) return err(where(line_no, key) + seq.error().message);
      door->sequence = std::move(*seq);
      door->one_time_file.clear();  // the last of sequence/one_time_sequences wins
    } else if (key == "one_time_sequences") {
      if (value.empty()) return err(where(line_no, key) + "needs a file name");
      std::string path(value);
      if (path.front() != '/') path = dir_of(file_name) + "/" + path;
      door->one_time_file = std::move(path);
      door->sequence.clear();
    } else if (key == "host") {
      if (value.empty()) return err(where(line_no, key) + "needs a host name or address");
      door->host = std::string(value);
    } else if (key == "target") {
      target = std::string(value);
    } else if (key == "delay" || key == "wait") {
      auto ms = parse_millis(value, key);
      if (!ms) return err(where(line_no, key) + ms.error().message);
      (key == "delay" ? door->delay_ms : door->wait_ms) = *ms;
    } else if (key == "family") {
      const auto f = parse_family(value);
      if (!f) return err(where(line_no, key) + "must be 4, 6 or any");
      door->family = *f;
    } else if (key == "tcpflags") {
      TcpFlagsTest test = door->tcpflags.value_or(TcpFlagsTest{});
      auto r = add_tcpflags(value, test);
      if (!r) return err(where(line_no, key) + r.error().message);
      door->tcpflags = test;
    } else if (is_server_door_key(key)) {
      // The server's business; nothing for the client to do.
    } else if (kind == SectionKind::client_door) {
      return err(where(line_no, key) + "unknown key");
    }
    // In knockd/knockgate doors, keys of later knockgate versions are the server's
    // business: its own parser validates that file.
  }
  auto done = finish_door();
  if (!done) return done.error();
  return config;
}

Result<ClientConfig> load_client_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return err(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return err(path + ": read error");
  return parse_client_config(text.str(), path);
}

Result<const ClientDoor*> pick_door(const ClientConfig& config,
                                    const std::optional<std::string>& name) {
  std::string names;
  for (const ClientDoor& d : config.doors) names += (names.empty() ? "" : ", ") + d.name;
  if (!name) {
    if (config.doors.size() == 1) return &config.doors.front();
    if (config.doors.empty()) return err("no door in the configuration");
    return err("several doors (" + names + "): choose one with -p");
  }
  const ClientDoor* found = nullptr;
  for (const ClientDoor& d : config.doors) {
    if (d.name != *name) continue;
    if (found) {
      return err("door '" + *name + "' is defined twice (" + found->file + ":" +
                 std::to_string(found->line) + " and line " + std::to_string(d.line) + ")");
    }
    found = &d;
  }
  if (!found) {
    return err("no door '" + *name + "'" + (names.empty() ? "" : " (doors: " + names + ")"));
  }
  return found;
}

std::string default_config_path() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg == '/') {
    return std::string(xdg) + "/knockgate/knock.conf";
  }
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.config/knockgate/knock.conf";
}

bool plain_syn_satisfies(const TcpFlagsTest& test) {
  return test.matches(tcpflag::syn);
}

// ---------------------------------------------------------------- one-time sequences

Result<OneTimePick> pick_one_time(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return err(path + ": cannot open: " + std::strerror(errno));
  std::string raw;
  size_t offset = 0;
  int line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    const size_t this_offset = offset;
    offset += raw.size() + 1;
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    auto seq = parse_sequence(line);
    if (!seq) continue;  // knockd skips lines it cannot parse
    return OneTimePick{std::move(*seq), this_offset, line_no};
  }
  return err(path + ": no unused sequence left");
}

Result<Ok> consume_one_time(const std::string& path, const OneTimePick& pick) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return err(path + ": cannot open for writing: " + std::strerror(errno));
  const char used = '#';
  if (::pwrite(fd.get(), &used, 1, static_cast<off_t>(pick.line_offset)) != 1) {
    return err(path + ": cannot mark line " + std::to_string(pick.line) +
               " used: " + std::strerror(errno));
  }
  if (::fsync(fd.get()) != 0) return err(path + ": fsync: " + std::strerror(errno));
  return Ok{};
}

// ---------------------------------------------------------------- sending

Result<Target> resolve(const std::string& host, FamilyWanted family) {
  addrinfo hints{};
  hints.ai_family = family == FamilyWanted::v4   ? AF_INET
                    : family == FamilyWanted::v6 ? AF_INET6
                                                 : AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;  // one entry per address
  addrinfo* raw = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &raw);
  if (rc != 0) {
    return err("cannot resolve '" + host +
               "': " + (rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(raw, &::freeaddrinfo);
  for (const addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
    Target t;
    if (ai->ai_family == AF_INET && ai->ai_addrlen == sizeof(sockaddr_in)) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      t.ip = IpAddr::v4(reinterpret_cast<const uint8_t*>(&sin->sin_addr));
    } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen == sizeof(sockaddr_in6)) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      t.ip = IpAddr::v6(reinterpret_cast<const uint8_t*>(&sin6->sin6_addr));
    } else {
      continue;
    }
    std::memcpy(&t.addr, ai->ai_addr, ai->ai_addrlen);
    t.addr_len = ai->ai_addrlen;
    return t;
  }
  return err("cannot resolve '" + host + "': no address of the wanted family");
}

std::string hit_line(const Target& target, const Knock& hit) {
  return std::string("hitting ") + proto_name(hit.proto) + " " + target.ip.str() + ":" +
         std::to_string(hit.port);
}

Result<Ok> send_hit(const Target& target, const Knock& hit) {
  sockaddr_storage addr = target.addr;
  if (addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(hit.port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(hit.port);
  }
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
  const std::string what =
      std::string(proto_name(hit.proto)) + " " + target.ip.str() + ":" + std::to_string(hit.port);

  if (hit.proto == Proto::tcp) {
    UniqueFd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return err(what + ": socket: " + std::strerror(errno));
    // The kernel sends the SYN inside connect(); closing the half-open socket sends
    // nothing more, so the hit is exactly one SYN.
    if (::connect(fd.get(), sa, target.addr_len) != 0 && errno != EINPROGRESS &&
        errno != ECONNREFUSED) {
      return err(what + ": " + std::strerror(errno));
    }
    return Ok{};
  }
  UniqueFd fd(::socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return err(what + ": socket: " + std::strerror(errno));
  const unsigned char payload = 0;
  if (::sendto(fd.get(), &payload, 1, 0, sa, target.addr_len) != 1) {
    return err(what + ": " + std::strerror(errno));
  }
  return Ok{};
}

}  // namespace kg::knockclient
