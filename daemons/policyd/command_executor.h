// Where policyd's engine sends the doors' knockd-style commands: the kernel writer in
// the daemon (KernelLink), the in-process CommandRunner in tests. A job names its door,
// start or stop, and the source, so an executor that trusts only its own config can
// rebuild the command; `command` is the engine's expansion, for logs and the audit.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>

#include "common/addr.h"
#include "common/result.h"

namespace kg::policyd {

// How a child ended, with knockd's status number: the exit code, or 128 + signal.
struct ExitStatus {
  bool exited = false;  // false: killed by a signal
  int code = 0;         // exit code when exited
  int signal = 0;       // signal number when killed
  int status_code() const { return exited ? code : 128 + signal; }
  bool success() const { return exited && code == 0; }
  std::string describe() const;  // "exit 0", "exit 3", "signal 9"
};

struct CommandJob {
  std::string command;  // `%IP%` already expanded
  std::string door;
  bool stop = false;
  IpAddr source;
  // Called once: with the pid when the child was spawned, or with the spawn error.
  std::function<void(Result<pid_t>)> on_start;
  // Called when a spawned child has exited (never if spawning failed).
  std::function<void(const ExitStatus&)> on_exit;
};

enum class CommandSubmitted { started, queued, rejected };

// An executor's "never as asked" (a door or command its config does not have), as
// opposed to a failure worth retrying: the error message starts with "refused: ".
inline bool is_refusal(const Error& e) {
  return e.message.rfind("refused: ", 0) == 0;
}

class CommandExecutor {
 public:
  virtual ~CommandExecutor() = default;
  // A limited job may wait for a slot; an unlimited one (stop commands, which must run
  // on time and are bounded by the pending_stop table) is started at once.
  virtual CommandSubmitted submit(CommandJob job, bool limited = true) = 0;
  virtual size_t running() const = 0;
};

}  // namespace kg::policyd
