// knockgatectl: the administrator's command line. A dispatcher over subcommands; each
// lives in its own file and is listed in kCommands.
#include <cstdio>
#include <string>
#include <string_view>

#include "commands.h"

namespace kg::ctl {
namespace {

constexpr Command kCommands[] = {
    {"check-config", "FILE", "check a knockgate.conf and print it normalised", &run_check_config},
    {"passwd", "[USER] | --token NAME", "set a web console password or create an API token",
     &run_passwd},
};

void print_usage(std::FILE* to) {
  (void)std::fputs(
      "usage: knockgatectl COMMAND [ARGS...]\n"
      "       knockgatectl --help | --version\n\ncommands:\n",
      to);
  for (const auto& c : kCommands) {
    const std::string head = std::string(c.name) + " " + std::string(c.synopsis);
    (void)std::fprintf(to, "  %-24s %.*s\n", head.c_str(), static_cast<int>(c.summary.size()),
                       c.summary.data());
  }
  (void)std::fputs("\nRun 'knockgatectl COMMAND --help' for a command's details.\n", to);
}

int dispatch(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return kExitUsage;
  }
  const std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    print_usage(stdout);
    return kExitOk;
  }
  if (name == "-V" || name == "--version") {
    (void)std::puts("knockgatectl " KG_VERSION);
    return kExitOk;
  }
  for (const auto& c : kCommands) {
    if (c.name == name) {
      Args args;
      for (int i = 2; i < argc; ++i) {
        args.emplace_back(argv[i]);
      }
      return c.run(args);
    }
  }
  (void)std::fprintf(stderr, "knockgatectl: unknown command \"%s\"\n", argv[1]);
  print_usage(stderr);
  return kExitUsage;
}

}  // namespace
}  // namespace kg::ctl

int main(int argc, char** argv) {
  return kg::ctl::dispatch(argc, argv);
}
