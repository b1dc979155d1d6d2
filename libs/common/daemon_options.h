// The command line every knockgate daemon shares, OpenBSD-daemon style:
//   -c, --config FILE   the config file
//   -n, --check         check the config and exit (0 valid, 1 errors)
//   -d, --daemon        accepted for knockd habits; daemons stay in the foreground
//                       (systemd Type=notify)
//   -v, --verbose       more log lines;  -D, --debug  debug output
//   -h, --help          the daemon's usage;  -V, --version  the version
// A daemon adds its own short options (getopt syntax, e.g. "i:") and gets them back in
// `extra`, in command-line order.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/log.h"

namespace kg {

struct DaemonOptions {
  std::string config_path;
  bool check_only = false;
  bool verbose = false;
  bool debug = false;
  std::vector<std::pair<char, std::string>> extra;

  log::Level level() const { return debug ? log::Level::debug : log::Level::info; }
};

// Parses argv into `out` (config_path starts as `default_config`). Returns the exit code to
// leave with now (0 after -h or -V, 2 after a usage error, with `usage` printed), or
// nullopt to run.
std::optional<int> parse_daemon_options(int argc, char** argv, const char* program,
                                        const char* default_config, void (*usage)(std::FILE*),
                                        DaemonOptions& out, const char* extra_short = "");

}  // namespace kg
