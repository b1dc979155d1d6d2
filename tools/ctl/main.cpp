// knockgatectl: the administrator's command line. check-config runs locally; every other
// command is served by policyd over its control socket (remote.cpp).
//
//   knockgatectl [-s SOCKET | -c CONFIG] [-t SECONDS] COMMAND [ARGS...]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/log.h"
#include "ctl/commands.h"

namespace kg::ctl {
namespace {

struct Remote {
  std::string_view name;
  std::string_view synopsis;
  std::string_view summary;
};

constexpr Remote kRemote[] = {
    {"status", "[--json]", "policyd's and captured's state and counters"},
    {"grants", "[--source A] [--profile P] [--all] [--json]", "list grants (active unless --all)"},
    {"grant", "SOURCE PROFILE [--for DURATION] [--json]", "grant SOURCE the profile (or extend)"},
    {"grant-many", "PROFILE SOURCE... [--for D] [--json]", "many grants in one transaction"},
    {"extend", "ID [--for DURATION] [--json]", "extend an active grant (up to its maximum)"},
    {"revoke", "ID|SOURCE [--json]", "revoke a grant, or every grant of a source"},
    {"audit", "[--since T] [--until T] [--source A] [--kind K] [--limit N] [--before ID] [--json]",
     "the audit log, newest first"},
    {"profiles", "[--json]", "the configured exposure profiles"},
    {"doors", "[--json]", "the configured doors"},
    {"reload", "[--json]", "make policyd re-read its configuration"},
};

void print_usage(std::FILE* to) {
  (void)std::fputs(
      "usage: knockgatectl [-s SOCKET | -c CONFIG] [-t SECONDS] COMMAND [ARGS...]\n"
      "       knockgatectl --help | --version\n\ncommands:\n",
      to);
  (void)std::fprintf(to, "  %-24s %s\n", "check-config FILE",
                     "check a knockgate.conf and print it normalised (local)");
  for (const auto& c : kRemote) {
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
}

int dispatch(int argc, char** argv) {
  GlobalOptions global;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if ((a == "-s" || a == "-c" || a == "-t") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (a == "-s") global.socket = value;
      if (a == "-c") global.config = value;
      if (a == "-t") {
        char* end = nullptr;
        const long t = std::strtol(value.c_str(), &end, 10);
        if (*end != '\0' || t <= 0 || t > 3600) {
          (void)std::fputs("knockgatectl: -t needs 1..3600 seconds\n", stderr);
          return kExitUsage;
        }
        global.timeout_s = static_cast<int>(t);
      }
    } else {
      break;
    }
  }
  if (i >= argc) {
    print_usage(stderr);
    return kExitUsage;
  }
  const std::string_view name = argv[i];
  if (name == "-h" || name == "--help" || name == "help") {
    print_usage(stdout);
    return kExitOk;
  }
  if (name == "-V" || name == "--version") {
    (void)std::puts("knockgatectl " KG_VERSION);
    return kExitOk;
  }
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
  for (const auto& c : kRemote) {
    if (c.name == name) {
      if (args.size() == 1 && (args[0] == "-h" || args[0] == "--help")) {
        (void)std::fprintf(stdout, "usage: knockgatectl %.*s %.*s\n%.*s\n",
                           static_cast<int>(c.name.size()), c.name.data(),
                           static_cast<int>(c.synopsis.size()), c.synopsis.data(),
                           static_cast<int>(c.summary.size()), c.summary.data());
        return kExitOk;
      }
      return run_remote(global, name, args);
    }
  }
  (void)std::fprintf(stderr, "knockgatectl: unknown command \"%s\"\n", argv[i]);
  print_usage(stderr);
  return kExitUsage;
}

}  // namespace
}  // namespace kg::ctl

int main(int argc, char** argv) {
  // Connection chatter stays out of the output; failures are reported by the command.
  kg::log::init("knockgatectl", kg::log::Level::error);
  return kg::ctl::dispatch(argc, argv);
}
