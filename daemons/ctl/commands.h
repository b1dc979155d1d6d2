// knockgatectl's subcommands. Each takes the arguments after its name and returns the
// process exit status: 0 success, 1 the command ran and found a problem, 2 usage error.
#pragma once

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

int run_check_config(const Args& args);
int run_passwd(const Args& args);

}  // namespace kg::ctl
