// knockgate-knock's SPA mode: fwknop-compatible packets (the same key, digest, HMAC and
// mode options as fwknop 2.6.10's client) sent over UDP, TCP or HTTP, plus knockgate's
// IPv6 extension (an IPv6 allow address; docs/spa.md). Entered with --spa or --key-gen.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/addr.h"
#include "common/result.h"
#include "spa/encode.h"
#include "spa/transport.h"

namespace kg::knockclient {

struct SpaOptions {
  std::string host;                     // -D/--destination or the first operand
  std::vector<std::string> access;      // -A proto/port[,proto/port] (may repeat)
  std::optional<std::string> allow_ip;  // -a
  bool use_source = false;              // -s: 0.0.0.0 (:: for an IPv6 destination)
  std::string user;                     // -U, default $USER
  spa::EncodeKeys keys;
  bool have_key = false;
  bool use_hmac = false;                             // --use-hmac (implied by an HMAC key)
  spa::DigestType digest = spa::DigestType::sha256;  // -m/--digest-type
  spa::Transport transport = spa::Transport::udp;    // -P
  std::optional<uint16_t> port;                      // -p
  std::optional<uint32_t> client_timeout;            // -f/--fw-timeout
  int family = 0;                                    // -4 → 4, -6 → 6
  bool key_gen = false;
  bool test = false;  // --test: print, do not send
  bool verbose = false;
  bool help = false;
};

Result<SpaOptions> parse_spa_command_line(const std::vector<std::string>& args);
std::string spa_usage_text(std::string_view program);

// The SPA text for these options (the allow address resolved against the destination).
Result<std::string> build_spa_packet(const SpaOptions& o, const IpAddr& destination);

// Sends `packet` to the destination as the options say; returns a one-line summary.
Result<std::string> send_spa_packet(const SpaOptions& o, const std::string& packet);

// True when argv asks for SPA mode (--spa or --key-gen anywhere).
bool wants_spa(const std::vector<std::string>& args);

}  // namespace kg::knockclient
