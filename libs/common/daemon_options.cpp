#include "common/daemon_options.h"

#include <getopt.h>

#include <cstring>

namespace kg {

std::optional<int> parse_daemon_options(int argc, char** argv, const char* program,
                                        const char* default_config, void (*usage)(std::FILE*),
                                        DaemonOptions& out, const char* extra_short) {
  static const option long_options[] = {
      {"config", required_argument, nullptr, 'c'}, {"check", no_argument, nullptr, 'n'},
      {"daemon", no_argument, nullptr, 'd'},       {"verbose", no_argument, nullptr, 'v'},
      {"debug", no_argument, nullptr, 'D'},        {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},      {nullptr, 0, nullptr, 0}};
  const std::string shorts = std::string("c:ndvDhV") + extra_short;
  out.config_path = default_config;
  optind = 1;
  int c = 0;
  while ((c = getopt_long(argc, argv, shorts.c_str(), long_options, nullptr)) != -1) {
    switch (c) {
      case 'c':
        out.config_path = optarg;
        break;
      case 'n':
        out.check_only = true;
        break;
      case 'd':
        break;
      case 'v':
        out.verbose = true;
        break;
      case 'D':
        out.debug = out.verbose = true;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case 'V':
        std::printf("%s %s\n", program, KG_SOFTWARE_VERSION);
        return 0;
      default:
        // getopt has already said what was wrong with an unknown option or a missing
        // argument; a daemon-specific option is returned as it is.
        if (c != '?' && c != ':' && std::strchr(extra_short, c) != nullptr) {
          out.extra.emplace_back(static_cast<char>(c), optarg != nullptr ? optarg : "");
          break;
        }
        usage(stderr);
        return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  return std::nullopt;
}

}  // namespace kg
