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
  const std::string path(args[0]);
  auto result = config::parse_file(path);
  if (result.config) {
    // Doors' one-time sequence files must exist too, or the daemons would refuse to start.
    result.errors = config::check_external_files(*result.config);
  }
  if (!result.errors.empty()) {
    for (const auto& e : result.errors) {
      (void)std::fprintf(stderr, "%s\n", e.str().c_str());
    }
    return kExitFailed;
  }
  const std::string text = config::dump(*result.config);
  // A dump cut short (full disk, closed pipe) must not look like success.
  const bool written = std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
  return written && std::fflush(stdout) == 0 ? kExitOk : kExitFailed;
}

}  // namespace kg::ctl
