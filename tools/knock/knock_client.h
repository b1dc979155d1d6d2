// knockgate-knock: the port-knock client. knockd's `knock` command line, plus doors read
// from a client file or a knockd/knockgate config, one-time sequences, and a wait after
// the last hit. Everything but main() lives here so the unit tests can reach it.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/addr.h"
#include "common/result.h"
#include "common/knock.h"

namespace kg::knockclient {

// ---- hits and sequences

// "7000", "7000:udp", "7000:tcp" (protocol case-insensitive, surrounding blanks ignored).
// A bare port uses `default_proto`. Ports are 1-65535.
Result<Knock> parse_hit(std::string_view text, Proto default_proto);
// knockd's `sequence` value: comma-separated hits, default protocol tcp, at most 32.
Result<std::vector<Knock>> parse_sequence(std::string_view text);
inline constexpr size_t kMaxSequence = 32;  // knockd's limit

// ---- the command line

enum class FamilyWanted : uint8_t { any, v4, v6 };

struct Options {
  std::string host;
  std::vector<Knock> hits;  // from the command line
  bool all_udp = false;
  std::optional<int> delay_ms;  // after every hit, like knock's -d
  std::optional<int> wait_ms;   // once, after the last hit
  std::optional<FamilyWanted> family;
  bool verbose = false;
  std::optional<std::string> config_file;
  std::optional<std::string> door_name;
  bool help = false;
  bool version = false;
};

// Parses argv[1..] with getopt_long: short options may be clustered (-uv), values attached
// (-d500) or separate, long ones as --delay=500 or --delay 500; "--" ends the options.
// Errors are usage errors (exit 1).
Result<Options> parse_command_line(const std::vector<std::string>& args);
std::string usage_text(std::string_view program);

// ---- client configuration

// One door as the client needs it. Read from a client file
//   [door NAME]            (or [NAME], knockd style; [options] and "[kind NAME]"
//   host = gw.example.net   sections of a knockgate.conf are skipped)
//   sequence = 7000,8000:udp,9000      or   one_time_sequences = FILE
//   delay = 100   wait = 500   family = 4|6|any
// Server-side door keys (seq_timeout, tcpflags, command…) are accepted and ignored; a
// `target` is the host to knock when no `host` is given.
struct ClientDoor {
  std::string name;
  std::string file;  // where it was read from
  int line = 0;      // its section header line
  std::string host;
  std::vector<Knock> sequence;
  std::string one_time_file;  // absolute, or relative to the config file's directory
  std::optional<int> delay_ms;
  std::optional<int> wait_ms;
  std::optional<FamilyWanted> family;
  std::optional<TcpFlagsTest> tcpflags;  // to warn when a plain SYN cannot satisfy it
};

struct ClientConfig {
  std::vector<ClientDoor> doors;
};

// Errors read "FILE:LINE: key: what is wrong".
Result<ClientConfig> parse_client_config(std::string_view text, const std::string& file_name);
Result<ClientConfig> load_client_config(const std::string& path);

// The door named `name`; with no name, the only door of the file. The error names the
// doors there are.
Result<const ClientDoor*> pick_door(const ClientConfig& config,
                                    const std::optional<std::string>& name);

// The default client file: $XDG_CONFIG_HOME/knockgate/knock.conf or
// ~/.config/knockgate/knock.conf.
std::string default_config_path();

// A plain SYN (what a TCP hit sends) passes the door's tcpflags test.
bool plain_syn_satisfies(const TcpFlagsTest& test);

// ---- one-time sequences (knockd's file format, shared with the server)

struct OneTimePick {
  std::vector<Knock> sequence;
  size_t line_offset = 0;  // byte offset of the line; its first byte becomes '#'
  int line = 0;
};

// The first line that is not blank, not a comment and parses; error when none is left.
Result<OneTimePick> pick_one_time(const std::string& path);
// Marks the picked line used, in place, as knockd does.
Result<Ok> consume_one_time(const std::string& path, const OneTimePick& pick);

// ---- sending

struct Target {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  IpAddr ip;
};

Result<Target> resolve(const std::string& host, FamilyWanted family);
// "hitting tcp 203.0.113.1:7000" — knock's verbose line.
std::string hit_line(const Target& target, const Knock& hit);
// TCP: one non-blocking connect (the SYN), then close. UDP: one datagram, a single 0x00.
Result<Ok> send_hit(const Target& target, const Knock& hit);

// Parses a millisecond count 0..86400000.
Result<int> parse_millis(std::string_view text, std::string_view what);

}  // namespace kg::knockclient
