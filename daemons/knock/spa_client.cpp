#include "spa_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/unique_fd.h"
#include "knock_client.h"
#include "spa/access.h"
#include "spa/base64.h"

namespace kg::knockclient {

namespace {

Error usage(std::string m) {
  return Error{std::move(m)};
}

Result<spa::Bytes> key_bytes(std::string_view value, bool base64, const char* what) {
  if (!base64) return spa::Bytes(value.begin(), value.end());
  auto b = spa::b64_decode(value);
  if (!b) return Error{std::string(what) + ": not valid base64"};
  return *b;
}

}  // namespace

bool wants_spa(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "--") break;
    if (a == "--spa" || a == "--key-gen" || a == "-k") return true;
  }
  return false;
}

Result<SpaOptions> parse_spa_command_line(const std::vector<std::string>& args) {
  SpaOptions o;
  std::optional<std::string> key, key_b64, hmac, hmac_b64;
  std::optional<spa::DigestType> hmac_type;
  std::optional<spa::EncryptionMode> mode;
  std::vector<std::string> operands;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::optional<std::string> attached;
    if (a.starts_with("--") && a.find('=') != std::string::npos) {
      attached = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
    }
    auto value = [&]() -> Result<std::string> {
      if (attached) return *attached;
      if (i + 1 >= args.size()) return usage("option " + a + " needs a value");
      return args[++i];
    };
    auto take = [&](std::string& into) -> Result<Ok> {
      auto v = value();
      if (!v) return v.error();
      into = *v;
      return Ok{};
    };
    std::string v;
    if (a == "--spa") continue;
    if (a == "-h" || a == "--help") {
      o.help = true;
    } else if (a == "-k" || a == "--key-gen") {
      o.key_gen = true;
    } else if (a == "-D" || a == "--destination") {
      if (auto r = take(o.host); !r) return r.error();
    } else if (a == "-A" || a == "--access") {
      if (auto r = take(v); !r) return r.error();
      o.access.push_back(v);
    } else if (a == "-a" || a == "--allow-ip") {
      if (auto r = take(v); !r) return r.error();
      o.allow_ip = v;
    } else if (a == "-s" || a == "--source-ip") {
      o.use_source = true;
    } else if (a == "-R" || a == "--resolve-ip-https") {
      return usage("-R (resolve the external address over HTTPS) is not supported: use -a or -s");
    } else if (a == "-U" || a == "--spoof-user") {
      if (auto r = take(o.user); !r) return r.error();
    } else if (a == "--key-rijndael") {
      if (auto r = take(v); !r) return r.error();
      key = v;
    } else if (a == "--key-base64-rijndael") {
      if (auto r = take(v); !r) return r.error();
      key_b64 = v;
    } else if (a == "--key-hmac") {
      if (auto r = take(v); !r) return r.error();
      hmac = v;
    } else if (a == "--key-base64-hmac") {
      if (auto r = take(v); !r) return r.error();
      hmac_b64 = v;
    } else if (a == "--use-hmac") {
      o.use_hmac = true;
    } else if (a == "--hmac-digest-type") {
      if (auto r = take(v); !r) return r.error();
      hmac_type = spa::parse_digest_name(v);
      if (!hmac_type) return usage("unknown HMAC digest type '" + v + "'");
    } else if (a == "-m" || a == "--digest-type") {
      if (auto r = take(v); !r) return r.error();
      auto d = spa::parse_digest_name(v);
      if (!d) return usage("unknown digest type '" + v + "'");
      o.digest = *d;
    } else if (a == "-M" || a == "--encryption-mode") {
      if (auto r = take(v); !r) return r.error();
      mode = spa::parse_encryption_mode(v);
      if (!mode) return usage("unknown encryption mode '" + v + "'");
    } else if (a == "-P" || a == "--server-proto") {
      if (auto r = take(v); !r) return r.error();
      auto t = spa::parse_transport(v);
      if (!t) return usage("-P takes udp, tcp or http (got '" + v + "')");
      o.transport = *t;
    } else if (a == "-p" || a == "--server-port") {
      if (auto r = take(v); !r) return r.error();
      unsigned p = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), p);
      if (ec != std::errc() || end != v.data() + v.size() || p < 1 || p > 65535) {
        return usage("bad port '" + v + "'");
      }
      o.port = static_cast<uint16_t>(p);
    } else if (a == "-f" || a == "--fw-timeout") {
      if (auto r = take(v); !r) return r.error();
      unsigned t = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), t);
      if (ec != std::errc() || end != v.data() + v.size() || t > spa::kMaxClientTimeout) {
        return usage("bad timeout '" + v + "'");
      }
      o.client_timeout = t;
    } else if (a == "-4") {
      o.family = 4;
    } else if (a == "-6") {
      o.family = 6;
    } else if (a == "--test" || a == "-T") {
      o.test = true;
    } else if (a == "-v" || a == "--verbose") {
      o.verbose = true;
    } else if (a == "--") {
      operands.insert(operands.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    } else if (!a.empty() && a[0] == '-') {
      return usage("unknown SPA option " + a);
    } else {
      operands.push_back(a);
    }
  }
  if (o.help || o.key_gen) {
    if (hmac_type) o.keys.hmac_type = *hmac_type;
    return o;
  }
  if (!operands.empty()) {
    if (!o.host.empty() || operands.size() > 1) return usage("one destination only");
    o.host = operands[0];
  }
  if (o.host.empty()) return usage("no destination (-D HOST)");
  if (o.access.empty()) return usage("no access request (-A proto/port)");
  if (!o.allow_ip && !o.use_source) {
    return usage("give the address to allow: -a ADDRESS, or -s for the packet's source");
  }
  if (key && key_b64) return usage("give --key-rijndael or --key-base64-rijndael, not both");
  if (!key && !key_b64) return usage("no encryption key (--key-rijndael / --key-base64-rijndael)");
  auto k = key_bytes(key ? *key : *key_b64, !key, "--key-base64-rijndael");
  if (!k) return k.error();
  if (k->empty() || k->size() > spa::kMaxEncryptionKeyBytes) {
    return usage("the encryption key must be 1 to 32 bytes");
  }
  o.keys.key = std::move(*k);
  o.have_key = true;
  if (mode) o.keys.mode = *mode;
  if (hmac && hmac_b64) return usage("give --key-hmac or --key-base64-hmac, not both");
  if (hmac || hmac_b64) {
    auto h = key_bytes(hmac ? *hmac : *hmac_b64, !hmac, "--key-base64-hmac");
    if (!h) return h.error();
    if (h->empty() || h->size() > 128) return usage("the HMAC key must be 1 to 128 bytes");
    o.keys.hmac_key = std::move(*h);
    o.use_hmac = true;
  } else if (o.use_hmac) {
    return usage("--use-hmac needs --key-hmac or --key-base64-hmac");
  }
  if (hmac_type) o.keys.hmac_type = *hmac_type;
  if (o.keys.hmac_key && *o.keys.hmac_key == o.keys.key) {
    return usage("the HMAC key must differ from the encryption key");
  }
  if (o.keys.hmac_key && o.keys.mode == spa::EncryptionMode::legacy) {
    return usage("legacy encryption mode cannot be used with an HMAC (as in fwknop)");
  }
  if (o.user.empty()) {
    const char* u = std::getenv("USER");
    o.user = (u != nullptr && *u != '\0') ? u : "root";
  }
  if (!spa::valid_username(o.user)) return usage("username '" + o.user + "' is not valid for SPA");
  return o;
}

std::string spa_usage_text(std::string_view program) {
  std::string p(program);
  return "usage: " + p +
         " --spa -D HOST -A PROTO/PORT[,...] (-a ADDRESS | -s) KEY-OPTIONS [options]\n"
         "       " +
         p +
         " --key-gen [--hmac-digest-type TYPE]\n"
         "SPA packets as fwknop 2.6.10's client makes them (docs/spa.md):\n"
         "  -D, --destination HOST     gateway to send to (or the first operand)\n"
         "  -A, --access PROTO/PORT    access to request, e.g. tcp/22 (repeatable)\n"
         "  -a, --allow-ip ADDRESS     address to open for (IPv6: knockgate extension)\n"
         "  -s, --source-ip            open for the packet's source (0.0.0.0, or :: over IPv6)\n"
         "  -U, --spoof-user NAME      username in the packet (default $USER)\n"
         "  --key-rijndael KEY | --key-base64-rijndael B64     encryption key (1-32 bytes)\n"
         "  --key-hmac KEY | --key-base64-hmac B64             HMAC key (implies --use-hmac)\n"
         "  --use-hmac  --hmac-digest-type md5|sha1|sha256|sha384|sha512|sha3_256|sha3_512\n"
         "  -m, --digest-type TYPE     inner message digest (default sha256)\n"
         "  -M, --encryption-mode cbc|ecb|cfb|ofb|ctr|legacy (default cbc)\n"
         "  -P, --server-proto udp|tcp|http   transport (default udp)\n"
         "  -p, --server-port PORT     destination port (default 62201; 80 for http)\n"
         "  -f, --fw-timeout SECONDS   ask for this access time\n"
         "  -4, -6                     address family of the destination\n"
         "  -k, --key-gen              print a new KEY_BASE64 and HMAC_KEY_BASE64\n"
         "  -T, --test                 print the packet, do not send it\n"
         "  -v, --verbose\n";
}

Result<std::string> build_spa_packet(const SpaOptions& o, const IpAddr& destination) {
  std::string allow;
  if (o.allow_ip) {
    auto a = IpAddr::parse(*o.allow_ip);
    if (!a) return Error{"-a: '" + *o.allow_ip + "' is not an IP address"};
    allow = a->str();
  } else {
    allow = destination.is_v6() ? "::" : "0.0.0.0";
  }
  std::string message = allow;
  for (const auto& item : o.access) {
    auto list = spa::parse_proto_port_list(item);
    if (!list) return Error{"-A " + item + ": " + list.error().message};
    for (const auto& pp : *list) message += "," + spa::proto_port_str(pp);
  }
  spa::Plaintext p;
  p.user = o.user;
  p.timestamp = static_cast<int64_t>(std::time(nullptr));
  p.message = message;
  p.digest_type = o.digest;
  if (o.client_timeout) {
    p.type = spa::MessageType::client_timeout_access;
    p.client_timeout = *o.client_timeout;
  }
  std::string packet = spa::encode_packet(p, o.keys);
  if (packet.size() > 1500) return Error{"the packet would exceed 1500 bytes"};
  return packet;
}

Result<std::string> send_spa_packet(const SpaOptions& o, const std::string& packet) {
  auto target = resolve(o.host, o.family == 4   ? FamilyWanted::v4
                                : o.family == 6 ? FamilyWanted::v6
                                                : FamilyWanted::any);
  if (!target) return target.error();
  const uint16_t port =
      o.port.value_or(o.transport == spa::Transport::http ? uint16_t{80} : uint16_t{62201});
  sockaddr_storage addr = target->addr;
  if (addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(port);
  }
  const bool udp = o.transport == spa::Transport::udp;
  UniqueFd fd(::socket(addr.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error{std::string("socket: ") + std::strerror(errno)};
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
  const std::string where = std::string(spa::transport_name(o.transport)) + " " + target->ip.str() +
                            " port " + std::to_string(port);
  if (udp) {
    if (::sendto(fd.get(), packet.data(), packet.size(), 0, sa, target->addr_len) < 0) {
      return Error{"send to " + where + ": " + std::strerror(errno)};
    }
    return "sent " + std::to_string(packet.size()) + " bytes to " + where;
  }
  if (::connect(fd.get(), sa, target->addr_len) != 0) {
    return Error{"connect to " + where + ": " + std::strerror(errno)};
  }
  const std::string data =
      o.transport == spa::Transport::http ? spa::wrap_http(packet, o.host) : packet;
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{"send to " + where + ": " + std::strerror(errno)};
    }
    off += static_cast<size_t>(n);
  }
  return "sent " + std::to_string(data.size()) + " bytes to " + where;
}

}  // namespace kg::knockclient
