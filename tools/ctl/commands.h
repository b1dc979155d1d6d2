// knockgatectl's subcommands. Each takes the arguments after its name and returns the
// process exit status, ipc::control::Exit: 0 success, 1 the command ran and found a
// problem, 2 usage error, 3 not found, 4 permission denied (docs/knockgatectl.8).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ipc/control_commands.h"

namespace kg::ctl {

using Args = std::vector<std::string_view>;

using ipc::control::Exit;
inline constexpr int kExitOk = ipc::control::exit_code(Exit::ok);
inline constexpr int kExitFailed = ipc::control::exit_code(Exit::failed);
inline constexpr int kExitUsage = ipc::control::exit_code(Exit::usage);

// Options before the command: where policyd's socket is.
struct GlobalOptions {
  std::string socket;  // -s SOCKET
  std::string config;  // -c CONFIG: RuntimeDir/policyd.sock
  int timeout_s = 30;  // -t SECONDS
};

int run_check_config(const Args& args);
// Local: knockgate-webd's password and token files (passwd.cpp).
int run_passwd(const Args& args);
// Any policyd control command (ipc::control::commands()).
int run_remote(const GlobalOptions& global, std::string_view command, const Args& args);
int run_watch(const GlobalOptions& global, const Args& args);

}  // namespace kg::ctl
