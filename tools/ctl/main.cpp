// knockgatectl: the administrator's command line. check-config runs locally; every other
// command is served by policyd over its control socket (remote.cpp).
//
//   knockgatectl [-s SOCKET | -c CONFIG] [-t SECONDS] COMMAND [ARGS...]
#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/log.h"
#include "ctl/commands.h"
#include "ipc/control_commands.h"

namespace kg::ctl {
namespace {

int print_table_usage(std::FILE* to) {
  (void)std::fputs(
      "usage: knockgatectl [-s SOCKET | -c CONFIG] [-t SECONDS] COMMAND [ARGS...]\n"
      "       knockgatectl --help | --version\n\ncommands:\n",
      to);
  (void)std::fprintf(to, "  %-24s %s\n", "check-config FILE",
                     "check a knockgate.conf and print it normalised (local)");
  for (const auto& c : ipc::control::commands()) {
    if ((c.roles & ipc::control::kCtl) == 0) continue;
    (void)std::fprintf(to, "  %-.*s %.*s\n      %.*s\n", static_cast<int>(c.name.size()),
                       c.name.data(), static_cast<int>(c.synopsis.size()), c.synopsis.data(),
                       static_cast<int>(c.summary.size()), c.summary.data());
  }
  (void)std::fprintf(to, "  %-24s %s\n", "passwd [USER] | --token NAME",
                     "set a web console password or create an API token (local)");
  (void)std::fprintf(to, "  %-24s %s\n", "watch [--feed] [--count N]",
                     "print the grant broadcast (and live feed) as JSON lines");
  (void)std::fputs(
      "\n-s SOCKET  policyd's socket (default: RuntimeDir/policyd.sock from the config)\n"
      "-c CONFIG  config to read RuntimeDir from (default /etc/knockgate/knockgate.conf)\n"
      "-t SECONDS how long to wait for policyd's answer (default 30)\n"
      "exit: 0 ok, 1 error, 2 usage, 3 not found, 4 permission denied. See knockgatectl(8).\n",
      to);
  return 0;
}

enum class Early { run, help, version, usage, refused };

// The options before COMMAND. getopt stops at the first word that is not an option ('+'),
// so the command's own options stay the command's.
Early parse_global(int argc, char** argv, GlobalOptions& global) {
  static const option long_options[] = {
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {nullptr, 0, nullptr, 0},
  };
  optind = 1;
  opterr = 0;  // our own messages, in knockgatectl's words
  int c = 0;
  while ((c = getopt_long(argc, argv, "+:s:c:t:hV", long_options, nullptr)) != -1) {
    switch (c) {
      case 's':
        global.socket = optarg;
        break;
      case 'c':
        global.config = optarg;
        break;
      case 't': {
        auto t = ipc::control::parse_number("-t", optarg, 1, 3600);
        if (!t) {
          (void)std::fputs("knockgatectl: -t needs 1..3600 seconds\n", stderr);
          return Early::refused;
        }
        global.timeout_s = static_cast<int>(*t);
        break;
      }
      case 'h':
        return Early::help;
      case 'V':
        return Early::version;
      case ':':
        (void)std::fprintf(stderr, "knockgatectl: option '-%c' needs a value\n", optopt);
        return Early::refused;
      default:
        if (optopt != 0) {
          (void)std::fprintf(stderr, "knockgatectl: unknown option '-%c'\n", optopt);
        } else {
          (void)std::fprintf(stderr, "knockgatectl: unknown option '%s'\n", argv[optind - 1]);
        }
        return Early::refused;
    }
  }
  return optind < argc ? Early::run : Early::usage;
}

int dispatch(int argc, char** argv) {
  GlobalOptions global;
  switch (parse_global(argc, argv, global)) {
    case Early::help:
      return print_table_usage(stdout);
    case Early::version:
      (void)std::puts("knockgatectl " KG_VERSION);
      return kExitOk;
    case Early::usage:
      (void)print_table_usage(stderr);
      return kExitUsage;
    case Early::refused:  // the message is out; the whole usage would bury it
      (void)std::fputs("try knockgatectl --help\n", stderr);
      return kExitUsage;
    case Early::run:
      break;
  }
  const int i = optind;
  const std::string_view name = argv[i];
  if (name == "help") return print_table_usage(stdout);
  Args args;
  for (int k = i + 1; k < argc; ++k) args.emplace_back(argv[k]);
  if (name == "check-config") return run_check_config(args);
  if (name == "passwd") {
    // Local: the global -c names the config whose Web* keys it uses.
    if (!global.config.empty()) {
      args.insert(args.begin(), {std::string_view("-c"), std::string_view(global.config)});
    }
    return run_passwd(args);
  }
  if (name == "watch") return run_watch(global, args);
  const ipc::control::CommandSpec* c = ipc::control::find_command(name);
  if (c != nullptr && (c->roles & ipc::control::kCtl) != 0) {
    if (args.size() == 1 && (args[0] == "-h" || args[0] == "--help")) {
      (void)std::fprintf(stdout, "usage: knockgatectl %s\n%.*s\n", c->usage().c_str(),
                         static_cast<int>(c->summary.size()), c->summary.data());
      return kExitOk;
    }
    return run_remote(global, name, args);
  }
  (void)std::fprintf(stderr, "knockgatectl: unknown command \"%s\"\n", argv[i]);
  (void)print_table_usage(stderr);
  return kExitUsage;
}

}  // namespace
}  // namespace kg::ctl

int main(int argc, char** argv) {
  // Connection chatter stays out of the output; failures are reported by the command.
  kg::log::init("knockgatectl", kg::log::Level::error);
  return kg::ctl::dispatch(argc, argv);
}
