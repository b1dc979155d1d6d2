// The control commands policyd serves to knockgatectl and webd (docs/knockgatectl.8,
// docs/protocol.md): argument parsing, role checks, text and --json output, exit codes.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "ipc/messages.h"
#include "policyd/policy.h"

namespace kg::policyd {

namespace exit_code {
inline constexpr uint8_t ok = 0;
inline constexpr uint8_t error = 1;
inline constexpr uint8_t usage = 2;
inline constexpr uint8_t not_found = 3;
inline constexpr uint8_t denied = 4;
}  // namespace exit_code

// What `status` shows besides the core's own counters.
struct StatusInfo {
  std::string version;
  int64_t pid = 0;
  int64_t uptime_s = 0;
  uint64_t events_received = 0;
  std::string kernel_features;
  std::vector<ipc::StatusEntry> policyd_extra;  // sessions, subscribers, seq, ...
  // captured's last StatusReply (policyd polls it); nullopt: not connected.
  std::optional<std::vector<ipc::StatusEntry>> captured;
  int64_t captured_age_ms = 0;  // how old that reply is
};

// Who is asking: the session's role and, for ctl, the peer's user name.
struct Caller {
  ipc::Role role = ipc::Role::ctl;
  std::string user;  // ctl: the peer uid's name (or "uid N")
};

class Control {
 public:
  struct Hooks {
    std::function<const config::Config&()> config;
    std::function<StatusInfo()> status;
    // Re-reads the config; ok: a one-line summary; error: every problem, one per line.
    std::function<Result<std::string>()> reload;
  };
  Control(PolicyCore& core, Hooks hooks) : core_(core), hooks_(std::move(hooks)) {}

  ipc::ControlReply handle(const Caller& caller, const ipc::ControlRequest& request);

 private:
  PolicyCore& core_;
  Hooks hooks_;
};

// ISO-8601 UTC with milliseconds: 2026-11-23T14:05:00.123Z.
std::string iso_time(int64_t ns);
// `30s`, `10m`, `2h`, `1d`, or plain seconds.
Result<std::chrono::seconds> parse_control_duration(std::string_view text);
// Audit times: ns since the epoch, `YYYY-MM-DDTHH:MM:SS[Z]` (UTC), or a duration ago (`10m`).
Result<int64_t> parse_control_time(std::string_view text, int64_t now_ns);

}  // namespace kg::policyd
