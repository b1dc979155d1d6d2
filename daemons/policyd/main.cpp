// knockgate-policyd: records grants in SQLite and makes the kernel enforce them, in two
// processes (docs/architecture.md): this one, the kernel writer, keeps root with a few
// capabilities; the engine it starts (this program again, with --engine) runs as
// PolicyUser and does everything else.
//
//   knockgate-policyd [-c FILE] [-n] [-d] [-v|-D]
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/daemon_options.h"
#include "common/log.h"
#include "config/config.h"
#include "policyd/config_bridge.h"
#include "policyd/engine.h"
#include "policyd/pid_file.h"
#include "policyd/writer.h"

namespace {

constexpr const char* kProgram = "knockgate-policyd";
constexpr const char* kDefaultConfig = kg::config::kDefaultPath;

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: %s [-c FILE] [-n] [-d] [-v|-D]\n"
               "  -c, --config FILE  config file (default %s)\n"
               "  -n, --check        check the config and exit (0: valid, 1: errors)\n"
               "  -d, --daemon       accepted for knockd habits; policyd stays in the\n"
               "                     foreground (systemd Type=notify)\n"
               "  -v, --verbose      log every event\n"
               "  -D, --debug        debug output\n"
               "  -h, --help         this text\n"
               "  -V, --version      print the version\n",
               kProgram, kDefaultConfig);
}

std::string own_executable() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  return std::string(buf.data(), static_cast<size_t>(n));
}

int run_writer(kg::DaemonOptions args) {
  kg::config::ParseResult parsed = kg::config::parse_file(args.config_path);
  if (!parsed.config) {
    for (const auto& d : parsed.errors) std::fprintf(stderr, "%s\n", d.str().c_str());
    return 1;
  }
  // The database, its WAL and the log file are for their owner and the admin group only.
  ::umask(027);
  // Before anything else: a second policyd must not touch the database or the kernel.
  auto pid_file = kg::policyd::PidFile::create(parsed.config->options.pid_file);
  if (!pid_file) {
    kg::log::error(pid_file.error().message);
    return 1;
  }
  for (const std::string& name : kg::policyd::duplicate_door_names(*parsed.config)) {
    kg::log::warn("door " + name +
                  " is defined more than once; knock events name the door, "
                  "so policyd runs the first definition's commands");
  }
  kg::policyd::WriterOptions options;
  options.config_path = args.config_path;
  options.program_path = own_executable();
  if (options.program_path.empty()) {
    kg::log::error(std::string("cannot find this program's path: ") + std::strerror(errno));
    return 1;
  }
  if (args.debug) {
    options.engine_flags.emplace_back("-D");
  } else if (args.verbose) {
    options.engine_flags.emplace_back("-v");
  }
  return kg::policyd::run_kernel_writer(std::move(options), std::move(*parsed.config));
}

}  // namespace

int main(int argc, char** argv) {
  // The engine: started by the writer as `knockgate-policyd --engine -c FILE [-v|-D]`.
  const bool engine = argc > 1 && std::strcmp(argv[1], kg::policyd::kEngineFlag) == 0;
  if (engine) {
    argv[1] = argv[0];
    ++argv;
    --argc;
  }
  kg::DaemonOptions args;
  if (auto code = kg::parse_daemon_options(argc, argv, kProgram, kDefaultConfig, usage, args)) {
    return *code;
  }
  kg::log::init(kProgram, args.level());
  if (engine) return kg::policyd::run_engine(std::move(args), kg::policyd::kEngineChannelFd);

  if (args.check_only) return kg::config::print_check_result(kg::config::check(args.config_path));
  return run_writer(std::move(args));
}
