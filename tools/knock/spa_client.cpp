#include "knock/spa_client.h"

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
#include "knock/command_words.h"
#include "knock/knock_client.h"
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

namespace {

// Codes of the long options without a short form.
enum SpaOption : int {
  kSpa = 256,
  kKeyRijndael,
  kKeyBase64Rijndael,
  kKeyHmac,
  kKeyBase64Hmac,
  kUseHmac,
  kHmacDigestType,
};

const option kSpaLongOptions[] = {
    {"spa", no_argument, nullptr, kSpa},
    {"help", no_argument, nullptr, 'h'},
    {"key-gen", no_argument, nullptr, 'k'},
    {"destination", required_argument, nullptr, 'D'},
    {"access", required_argument, nullptr, 'A'},
    {"allow-ip", required_argument, nullptr, 'a'},
    {"source-ip", no_argument, nullptr, 's'},
    {"resolve-ip-https", no_argument, nullptr, 'R'},
    {"spoof-user", required_argument, nullptr, 'U'},
    {"key-rijndael", required_argument, nullptr, kKeyRijndael},
    {"key-base64-rijndael", required_argument, nullptr, kKeyBase64Rijndael},
    {"key-hmac", required_argument, nullptr, kKeyHmac},
    {"key-base64-hmac", required_argument, nullptr, kKeyBase64Hmac},
    {"use-hmac", no_argument, nullptr, kUseHmac},
    {"hmac-digest-type", required_argument, nullptr, kHmacDigestType},
    {"digest-type", required_argument, nullptr, 'm'},
    {"encryption-mode", required_argument, nullptr, 'M'},
    {"server-proto", required_argument, nullptr, 'P'},
    {"server-port", required_argument, nullptr, 'p'},
    {"fw-timeout", required_argument, nullptr, 'f'},
    {"test", no_argument, nullptr, 'T'},
    {"verbose", no_argument, nullptr, 'v'},
    {nullptr, 0, nullptr, 0},
};

// The options as given, before the key checks of parse_spa_command_line.
struct SpaWords {
  std::optional<std::string> key, key_b64, hmac, hmac_b64;
  std::optional<spa::DigestType> hmac_type;
  std::optional<spa::EncryptionMode> mode;
};

Result<Ok> apply_spa_option(SpaOptions& o, SpaWords& w, int code, const std::string& v) {
  switch (code) {
    case kSpa:
      break;
    case 'h':
      o.help = true;
      break;
    case 'k':
      o.key_gen = true;
      break;
    case 'D':
      o.host = v;
      break;
    case 'A':
      o.access.push_back(v);
      break;
    case 'a':
      o.allow_ip = v;
      break;
    case 's':
      o.use_source = true;
      break;
    case 'R':
      return usage("-R (resolve the external address over HTTPS) is not supported: use -a or -s");
    case 'U':
      o.user = v;
      break;
    case kKeyRijndael:
      w.key = v;
      break;
    case kKeyBase64Rijndael:
      w.key_b64 = v;
      break;
    case kKeyHmac:
      w.hmac = v;
      break;
    case kKeyBase64Hmac:
      w.hmac_b64 = v;
      break;
    case kUseHmac:
      o.use_hmac = true;
      break;
    case kHmacDigestType:
      w.hmac_type = spa::parse_digest_name(v);
      if (!w.hmac_type) return usage("unknown HMAC digest type '" + v + "'");
      break;
    case 'm': {
      auto d = spa::parse_digest_name(v);
      if (!d) return usage("unknown digest type '" + v + "'");
      o.digest = *d;
      break;
    }
    case 'M':
      w.mode = spa::parse_encryption_mode(v);
      if (!w.mode) return usage("unknown encryption mode '" + v + "'");
      break;
    case 'P': {
      auto t = spa::parse_transport(v);
      if (!t) return usage("-P takes udp, tcp or http (got '" + v + "')");
      o.transport = *t;
      break;
    }
    case 'p': {
      unsigned p = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), p);
      if (ec != std::errc() || end != v.data() + v.size() || p < 1 || p > 65535) {
        return usage("bad port '" + v + "'");
      }
      o.port = static_cast<uint16_t>(p);
      break;
    }
    case 'f': {
      unsigned t = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), t);
      if (ec != std::errc() || end != v.data() + v.size() || t > spa::kMaxClientTimeout) {
        return usage("bad timeout '" + v + "'");
      }
      o.client_timeout = t;
      break;
    }
    case '4':
      o.family = 4;
      break;
    case '6':
      o.family = 6;
      break;
    case 'T':
      o.test = true;
      break;
    case 'v':
      o.verbose = true;
      break;
    default:
      break;
  }
  return Ok{};
}

}  // namespace

Result<SpaOptions> parse_spa_command_line(const std::vector<std::string>& args) {
  SpaOptions o;
  SpaWords w;
  std::vector<std::string> operands;
  auto apply = [&](int code, const std::string& value) {
    return apply_spa_option(o, w, code, value);
  };
  auto refuse = [](const OptionError& e) {
    if (e.kind == OptionError::Kind::needs_value)
      return usage("option " + e.word + " needs a value");
    if (e.kind == OptionError::Kind::takes_no_value) {
      return usage("option " + e.word + " takes no value");
    }
    return usage("unknown SPA option " + e.word);
  };
  if (auto r = scan_options(args, "hkD:A:a:sRU:m:M:P:p:f:46Tv", kSpaLongOptions, apply, refuse,
                            operands);
      !r) {
    return r.error();
  }
  auto& [key, key_b64, hmac, hmac_b64, hmac_type, mode] = w;
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
