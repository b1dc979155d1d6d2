// knockgatectl check-config FILE: parse, then print the normalised config or every error.
#include <cstdio>
#include <string>

#include "config/config.h"
#include "ctl/commands.h"

namespace kg::ctl {

int run_check_config(const Args& args) {
  if (args.size() == 1 && (args[0] == "-h" || args[0] == "--help")) {
    (void)std::fputs(
        "usage: knockgatectl check-config FILE\n"
        "Reads FILE as knockgate.conf (knockd.conf files are read unchanged). On success it\n"
        "prints the normalised configuration and exits 0; otherwise it prints every error,\n"
        "one per line as FILE:LINE: key: message, on stderr and exits 1.\n",
        stdout);
    return kExitOk;
  }
  if (args.size() != 1 || args[0].empty() || args[0][0] == '-') {
    (void)std::fputs("usage: knockgatectl check-config FILE\n", stderr);
    return kExitUsage;
  }
  return config::print_check_result(config::check(std::string(args[0])));
}

}  // namespace kg::ctl
