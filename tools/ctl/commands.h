// knockgatectl's subcommands. Each takes the arguments after its name and returns the
// process exit status: 0 success, 1 the command ran and found a problem, 2 usage error,
// 3 not found, 4 permission denied (policyd's control commands, docs/knockgatectl.8).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kg::ctl {

using Args = std::vector<std::string_view>;

struct Command {
  std::string_view name;
  std::string_view synopsis;  // arguments, as shown in the usage text
  std::string_view summary;
  int (*run)(const Args& args);
};

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotFound = 3;
inline constexpr int kExitDenied = 4;

// Options before the command: where policyd's socket is.
struct GlobalOptions {
  std::string socket;  // -s SOCKET
  std::string config;  // -c CONFIG: RuntimeDir/policyd.sock
  int timeout_s = 30;  // -t SECONDS
};

int run_check_config(const Args& args);
// Local: knockgate-webd's password and token files (passwd.cpp).
int run_passwd(const Args& args);
// Any policyd control command (status, grants, grant, extend, revoke, audit, profiles,
// doors, reload, grant-many).
int run_remote(const GlobalOptions& global, std::string_view command, const Args& args);
int run_watch(const GlobalOptions& global, const Args& args);

}  // namespace kg::ctl
