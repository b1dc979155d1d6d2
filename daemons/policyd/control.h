// The control commands policyd serves to knockgatectl and webd (docs/knockgatectl.8,
// docs/protocol.md): the commands, their options and roles are ipc/control_commands.h;
// here each command's handler, text and --json output, exit codes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "ipc/control_commands.h"
#include "ipc/messages.h"
#include "policyd/control_output.h"
#include "policyd/policy.h"

namespace kg::policyd {

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

  // One parsed request as its handler sees it.
  struct Request {
    uint32_t id = 0;
    const Caller& caller;
    const ipc::control::Args& args;
    std::string actor;  // "ctl:USER" or "web:USER", for the audit log
    ipc::GrantMethod method = ipc::GrantMethod::ctl;
    std::optional<std::chrono::seconds> duration;  // --for
  };

 private:
  using Handler = ipc::ControlReply (Control::*)(const Request&);
  static Handler handler(ipc::control::Command command);

  ipc::ControlReply status(const Request& r);
  ipc::ControlReply grants(const Request& r);
  ipc::ControlReply grant(const Request& r);
  ipc::ControlReply grant_many(const Request& r);
  ipc::ControlReply extend(const Request& r);
  ipc::ControlReply revoke(const Request& r);
  ipc::ControlReply audit(const Request& r);
  ipc::ControlReply profiles(const Request& r);
  ipc::ControlReply doors(const Request& r);
  ipc::ControlReply reload(const Request& r);
  ipc::ControlReply login_lockout(const Request& r);

  // The sources of grant/grant-many, checked; or the reply that refuses them.
  Result<std::vector<IpAddr>> client_sources(const std::vector<std::string>& words);

  PolicyCore& core_;
  Hooks hooks_;
};

// `30s`, `10m`, `2h`, `1d`, or plain seconds.
Result<std::chrono::seconds> parse_control_duration(std::string_view text);
// Audit times: ns since the epoch, `YYYY-MM-DDTHH:MM:SS[Z]` (UTC), or a duration ago (`10m`).
Result<int64_t> parse_control_time(std::string_view text, int64_t now_ns);

}  // namespace kg::policyd
