// knockgate-captured: detects knocks. Opens its capture socket and log file as root,
// drops to CaptureUser with no capabilities, then only parses packets and reports
// completed knocks to policyd. It never runs commands.
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <cstring>
#include <string>

#include "captured/daemon.h"
#include "captured/seccomp_profile.h"
#include "common/daemon_options.h"
#include "common/log.h"
#include "common/privdrop.h"
#include "config/config.h"
#include "config/one_time.h"
#include "config/values.h"

namespace {

constexpr const char* kDefaultConfig = kg::config::kDefaultPath;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: knockgate-captured [-c FILE] [-i IF[,IF...]] [-n] [-d] [-v|-D] [-V]\n"
               "  -c FILE  config file (default %s)\n"
               "  -i IF    capture on these interfaces instead of the config's Interface\n"
               "  -n       check the config, print it normalised, exit 0 (ok) or 1\n"
               "  -d       accepted for knockd habits; the daemon stays in the foreground\n"
               "  -v, -D   verbose, debug\n"
               "  -V       version\n",
               kDefaultConfig);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kg;
  DaemonOptions args;
  if (auto code = parse_daemon_options(argc, argv, "knockgate-captured", kDefaultConfig, usage,
                                       args, "i:")) {
    return *code;
  }
  std::string interfaces_arg;
  for (const auto& [letter, value] : args.extra) {
    if (letter == 'i') interfaces_arg = value;
  }
  log::init("knockgate-captured", args.level());

  // -n also checks the one-time files; a running daemon only needs them readable (an
  // exhausted file disables its door, as at run time, instead of stopping every door).
  if (args.check_only) return config::print_check_result(config::check(args.config_path));
  auto parsed = config::parse_file(args.config_path);
  if (!parsed.errors.empty()) {
    for (const auto& d : parsed.errors) std::fprintf(stderr, "%s\n", d.str().c_str());
    return 1;
  }

  captured::DaemonSetup setup;
  setup.config = std::move(*parsed.config);
  setup.interfaces_from_command_line = !interfaces_arg.empty();
  setup.interfaces = setup.config.options.interfaces;
  if (setup.interfaces_from_command_line) {
    auto names = config::parse_interface_list(interfaces_arg);  // the Interface key's rules
    if (!names) {
      std::fprintf(stderr, "knockgate-captured: -i: %s\n", names.error().message.c_str());
      return 2;
    }
    setup.interfaces = std::move(*names);
  }
  if (setup.interfaces.empty()) {
    std::fprintf(stderr, "knockgate-captured: no interface to capture on\n");
    return 1;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr,
                 "knockgate-captured: must start as root to open the capture socket "
                 "(it then runs as %s with no capabilities)\n",
                 setup.config.options.capture_user.c_str());
    return 1;
  }

  // Everything that needs root happens here, before the drop.
  for (const auto& door : setup.config.doors) {
    if (door.one_time_sequences.empty()) continue;
    auto ots = config::OneTimeSequences::open(door.one_time_sequences, false);
    if (!ots) {
      std::fprintf(stderr, "knockgate-captured: %s\n", ots.error().message.c_str());
      return 1;
    }
    if (ots->exhausted()) {
      std::fprintf(stderr, "knockgate-captured: door %s: no sequence left in %s; door disabled\n",
                   door.name.c_str(), door.one_time_sequences.c_str());
    }
    setup.one_time_active.emplace_back(door.one_time_sequences, ots->active());
  }
  knocklog::Options lo;
  lo.log_file = setup.config.options.log_file;
  lo.use_syslog = setup.config.options.use_syslog;
  auto writer = knocklog::Writer::open(lo);
  if (!writer) {
    std::fprintf(stderr, "knockgate-captured: %s\n", writer.error().message.c_str());
    return 1;
  }
  setup.knock_log = std::move(*writer);
  captured::CaptureOptions capture_options;
  // SPA payloads run up to 1500 bytes; knocks need headers only.
  if (!setup.config.spa_doors.empty()) capture_options.snaplen = 1700;
  auto capture = captured::Capture::open(capture_options);
  if (!capture) {
    std::fprintf(stderr, "knockgate-captured: %s\n", capture.error().message.c_str());
    return 1;
  }
  setup.capture = std::move(*capture);

  auto user = lookup_user(setup.config.options.capture_user);
  if (!user) {
    std::fprintf(stderr, "knockgate-captured: CaptureUser: %s\n", user.error().message.c_str());
    return 1;
  }
  if (auto r = drop_privileges(*user); !r) {
    std::fprintf(stderr, "knockgate-captured: privilege drop failed: %s\n",
                 r.error().message.c_str());
    return 1;
  }
  log::info("running as " + setup.config.options.capture_user + " (uid " +
            std::to_string(user->uid) + "), no capabilities");

  const bool stream_spa_doors =
      std::any_of(setup.config.spa_doors.begin(), setup.config.spa_doors.end(),
                  [](const auto& d) { return d.transport != spa::Transport::udp; });
  boost::asio::io_context io;
  captured::Daemon daemon(io, std::move(setup));
  if (auto r = daemon.start(); !r) {
    log::error(r.error().message);
    return 1;
  }
  if (auto r = seccomp::apply(captured::seccomp_profile(stream_spa_doors)); !r) {
    log::error(r.error().message);
    return 1;
  }
  io.run();
  return daemon.exit_code();
}
