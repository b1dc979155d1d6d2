// knockgate.conf: knockd's INI-style format, read with knockd 0.8's semantics, plus
// knockgate's own [options] keys, door keys and [profile NAME] sections.
// docs/knockgate.conf.5 is the user-facing description of everything parsed here.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/addr.h"
#include "common/knock.h"
#include "config/spa_door.h"

namespace kg::config {

// Where every daemon and tool looks without -c.
inline constexpr const char* kDefaultPath = "/etc/knockgate/knockgate.conf";

// One problem in a config file. str() renders `FILE:LINE: key: message`; the line is left
// out when it is 0 (the file as a whole) and the key when it is empty.
struct Diagnostic {
  std::string file;
  int line = 0;
  std::string key;  // canonical lower-case key name, "section" for header problems
  std::string message;
  std::string str() const;
  friend bool operator==(const Diagnostic&, const Diagnostic&) = default;
};

inline constexpr std::size_t kMaxSequenceLength = 32;  // knockd's SEQ_MAX

// A door: a knock sequence and what completing it does. `line` is where its header is and
// is not part of equality (a re-written file has the same settings on other lines).
struct Door {
  std::string name;
  int line = 0;
  std::vector<Knock> sequence;     // empty when one_time_sequences is used
  std::string one_time_sequences;  // path; empty when `sequence` is used
  int seq_timeout = 25;
  TcpFlagsTest tcpflags;
  std::string start_command;                   // empty: run nothing
  std::optional<std::string> start_command_6;  // absent: IPv6 falls back to start_command
  std::string stop_command;
  std::optional<std::string> stop_command_6;  // absent: falls back; "" = nothing for IPv6
  int cmd_timeout = 10;
  std::optional<IpAddr> target;
  std::string grant;  // profile name; empty when the door grants nothing
  bool tolerate_duplicates = false;

  friend bool operator==(const Door& a, const Door& b);
};

enum class Direction : uint8_t { inbound, egress };
enum class Revoke : uint8_t { new_flows, all_flows };  // `revoke = new` | `revoke = all`
enum class AllowProto : uint8_t { icmp = 1, tcp = 6, udp = 17 };

const char* direction_name(Direction d);
const char* allow_proto_name(AllowProto p);

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

// One `allow` item: tcp/udp with a port range, or icmp (no ports; ICMP or ICMPv6 by the
// destination's family).
struct AllowRule {
  AllowProto proto = AllowProto::tcp;
  PortRange ports;  // {0, 0} for icmp
  friend bool operator==(const AllowRule&, const AllowRule&) = default;
};

// `expose = tcp/2222 -> 192.168.50.10:22`: a public port on the WAN address forwarded to a
// LAN host. `expose = self tcp/22`: a port of the gateway itself (its own sshd), the
// classic knockd use; `host` is empty and host_port == public_port.
struct Exposure {
  Proto proto = Proto::tcp;
  uint16_t public_port = 0;
  IpAddr host;
  uint16_t host_port = 0;
  bool self = false;
  friend bool operator==(const Exposure&, const Exposure&) = default;
};

// A packet mark with the bits it owns. Two marks can match the same packet when they
// agree on every bit both masks cover.
struct FwMark {
  uint32_t value = 0;
  uint32_t mask = 0xffffffffU;
  bool can_match_same_packet_as(const FwMark& other) const {
    return ((value ^ other.value) & mask & other.mask) == 0;
  }
  friend bool operator==(const FwMark&, const FwMark&) = default;
};

// A route in the profile's table: `PREFIX via ADDR dev IF`, via and/or dev.
struct Route {
  IpPrefix prefix;  // `default` is 0.0.0.0/0 (or ::/0 with an IPv6 gateway)
  std::optional<IpAddr> gateway;
  std::string device;  // empty: the kernel picks it from the gateway
  friend bool operator==(const Route&, const Route&) = default;
};

struct Profile {
  std::string name;
  int line = 0;  // header line; not part of equality
  Direction direction = Direction::inbound;
  std::vector<Exposure> exposures;     // inbound only
  std::vector<AllowRule> allow;        // egress only
  std::vector<IpPrefix> destinations;  // egress only
  std::vector<IpPrefix> sources;       // egress only: hosts holding the profile for good
  std::optional<FwMark> fwmark;
  std::optional<uint32_t> table;
  std::vector<Route> routes;
  std::chrono::seconds lifetime{3600};
  std::chrono::seconds max_lifetime{8 * 3600};
  Revoke revoke = Revoke::new_flows;

  // Whether the profile passes traffic through the gateway (an egress profile, or an
  // exposure forwarded to a host) rather than only to the gateway itself.
  bool forwards() const;
  bool has_self_exposure() const;
  friend bool operator==(const Profile& a, const Profile& b);
};

// knockgate-webd's port when WebListen is not set.
inline constexpr uint16_t kDefaultConsolePort = 8080;

// `WebListen` item: ADDR:PORT, IPv6 as [ADDR]:PORT.
struct WebEndpoint {
  IpAddr address;
  uint16_t port = 0;
  std::string str() const;
  friend bool operator==(const WebEndpoint&, const WebEndpoint&) = default;
};

struct Options {
  bool use_syslog = false;
  std::string log_file;  // empty: no log file
  std::string pid_file = "/var/run/knockd.pid";
  std::vector<std::string> interfaces{"eth0"};  // capture interfaces
  std::vector<std::string> wan_interfaces;      // empty unless WanInterface is given
  std::vector<std::string> lan_interfaces;
  // Where the gateway's management ports may be reached from: interface names and
  // prefixes (`ManagementFrom`). After parsing, unset means the LAN interfaces.
  std::vector<std::string> management_interfaces;
  std::vector<IpPrefix> management_prefixes;
  // The gateway's own management services (`ManagementPorts`, default tcp/22); the
  // console's ports (WebListen, or 8080) are management ports too.
  std::vector<AllowRule> management_ports{AllowRule{AllowProto::tcp, {22, 22}}};
  std::string database = "/var/lib/knockgate/knockgate.db";
  std::string runtime_dir = "/run/knockgate";
  uint32_t max_tracked_sources = 65536;
  std::string capture_user = "knockgate";
  // policyd's engine (grants, database, sockets) runs as this user; its kernel writer
  // stays root.
  std::string policy_user = "knockgate-policy";
  // The doors' knockd-style commands run as this user; empty: root, as knockd.
  std::string command_user;
  std::string admin_group = "knockgate-admin";
  // NFQUEUE numbers the gate sends NEW flows to (verdictd binds them all; more than one
  // spreads flows over queues by CPU). `VerdictQueue = 0` or `VerdictQueue = 0-3`.
  uint16_t verdict_queue_first = 0;
  uint16_t verdict_queue_count = 1;
  bool verdict_fail_open = false;  // no verdictd or a full queue: drop (no) or pass (yes)
  uint32_t verdict_hold_ms = 25;   // longest hold of a NEW flow whose grant is pending
  std::string verdict_user = "knockgate-verdict";
  // knockgate-webd. Empty web_listen: 127.0.0.1 and the LAN interfaces' addresses, port 8080.
  std::vector<WebEndpoint> web_listen;
  std::string web_user = "knockgate-web";
  std::string web_tls_certificate;  // both set: HTTPS only
  std::string web_tls_key;
  std::string web_password_file = "/etc/knockgate/web.passwd";
  std::string web_token_file = "/etc/knockgate/web.tokens";
  std::string web_root = "/usr/share/knockgate/web";
  friend bool operator==(const Options&, const Options&) = default;
};

// What the config asks of the kernel, by what it declares:
//   host     no interface roles, no profiles: pcap and commands only, exactly knockd; no
//            kernel state at all.
//   self     no interface roles, only `expose = self` profiles: an input chain that keeps
//            the exposed ports of the gateway closed on the capture interfaces except for
//            grants.
//   gateway  WanInterface or LanInterface declared: the input policy, forwarding gate,
//            NFQUEUE, NAT, marks and route tables.
enum class Mode : uint8_t { host, self, gateway };
const char* mode_name(Mode m);

struct Config {
  std::string file;  // where it was read from; not part of equality
  Options options;
  std::vector<Door> doors;  // file order; two doors may share a name, as in knockd
  std::vector<Profile> profiles;
  std::vector<SpaDoor> spa_doors;  // [spa NAME] sections, file order

  const Profile* find_profile(std::string_view name) const;
  Mode mode() const;
  friend bool operator==(const Config& a, const Config& b);
};

// `config` is set only when `errors` is empty. Errors are every problem of the file,
// ordered by line.
struct ParseResult {
  std::optional<Config> config;
  std::vector<Diagnostic> errors;
};

ParseResult parse_file(const std::string& path);
// The name a profile's nftables objects carry: ssh-only → ssh_only. Two profiles with the
// same nftables name are a config error.
std::string nft_safe_name(std::string_view profile_name);
ParseResult parse_text(std::string_view text, const std::string& file_name);

// Whether dump() writes SPA keys. Everything that prints a config for people (check-config,
// a daemon's -n) hides them, as fwknopd -D does; only a round trip needs them.
enum class Secrets : uint8_t { hidden, shown };
inline constexpr std::string_view kHiddenSecret = "(secret, not shown)";

// The config normalised: canonical key names, one key per line, defaults written out.
// With Secrets::shown, parsing the output gives a Config equal to the input; with
// Secrets::hidden each key's value is kHiddenSecret.
std::string dump(const Config& config, Secrets secrets = Secrets::hidden);

// Checks what parsing leaves alone because it lives outside the file: every door's
// one-time sequence file must be readable and hold at least one usable sequence.
std::vector<Diagnostic> check_external_files(const Config& config);

// Whether check() also reads the doors' one-time sequence files. The programs that use them
// (check-config, captured, policyd) check them; verdictd and webd never read them.
enum class ExternalFiles : uint8_t { checked, unchecked };

// What `knockgatectl check-config FILE` and every daemon's -n report: the file parsed, then
// (ExternalFiles::checked) its external files checked (check_external_files).
struct CheckResult {
  int exit_code = 1;             // 0: usable; 1: not
  std::string out;               // the normalised config, secrets hidden, when usable
  std::string err;               // one `FILE:LINE: key: message` line per problem
  std::optional<Config> config;  // when usable, for a program's own further checks
};
CheckResult check(const std::string& path, ExternalFiles external = ExternalFiles::checked);

// Writes `out` to stdout and `err` to stderr and returns the exit code; a write cut short
// (full disk, closed pipe) turns success into 1, so a partial dump never looks valid.
int print_check_result(const CheckResult& result);

}  // namespace kg::config
