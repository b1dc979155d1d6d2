// knockgate-verdictd: decides the NEW flows the gate queues. Opens and binds its NFQUEUE
// queues as root, then runs as VerdictUser with CAP_NET_ADMIN only (verdicts are
// nfnetlink messages). Grants come from policyd's broadcast; docs/verdictd.md.
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <string>

#include "common/daemon_options.h"
#include "common/log.h"
#include "common/privdrop.h"
#include "config/config.h"
#include "verdictd/daemon.h"
#include "verdictd/privileges.h"
#include "verdictd/seccomp_profile.h"

namespace {

constexpr const char* kDefaultConfig = kg::config::kDefaultPath;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: knockgate-verdictd [-c FILE] [-n] [-d] [-v|-D] [-V]\n"
               "  -c FILE  config file (default %s)\n"
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
  if (auto code =
          parse_daemon_options(argc, argv, "knockgate-verdictd", kDefaultConfig, usage, args)) {
    return *code;
  }
  log::init("knockgate-verdictd", args.level());

  if (args.check_only) {
    // verdictd never reads the doors' one-time sequence files.
    return config::print_check_result(
        config::check(args.config_path, config::ExternalFiles::unchecked));
  }
  auto parsed = config::parse_file(args.config_path);
  if (!parsed.errors.empty()) {
    for (const auto& d : parsed.errors) std::fprintf(stderr, "%s\n", d.str().c_str());
    return 1;
  }

  verdictd::DaemonSetup setup;
  setup.config = std::move(*parsed.config);
  setup.config_path = args.config_path;
  const auto& o = setup.config.options;

  // Credentials are looked up before anything is opened: a missing user is a config error.
  std::optional<Credentials> user;
  if (geteuid() == 0) {
    auto u = lookup_user(o.verdict_user);
    if (!u) {
      std::fprintf(stderr, "knockgate-verdictd: VerdictUser: %s\n", u.error().message.c_str());
      return 1;
    }
    user = *u;
  }

  for (uint32_t i = 0; i < o.verdict_queue_count; ++i) {
    verdictd::QueueOptions qo;
    qo.number = static_cast<uint16_t>(o.verdict_queue_first + i);
    qo.fail_open = o.verdict_fail_open;
    auto q = verdictd::NfQueue::open(qo);
    if (!q) {
      std::fprintf(stderr, "knockgate-verdictd: %s\n", q.error().message.c_str());
      return 1;
    }
    setup.queues.push_back(std::move(*q));
  }

  if (user) {
    if (auto r = verdictd::drop_to_user_keeping_net_admin(*user); !r) {
      std::fprintf(stderr, "knockgate-verdictd: privilege drop failed: %s\n",
                   r.error().message.c_str());
      return 1;
    }
    log::info("running as " + o.verdict_user + " (uid " + std::to_string(user->uid) +
              "), CAP_NET_ADMIN only");
  } else {
    if (auto r = verdictd::keep_only_net_admin(); !r) {
      std::fprintf(stderr, "knockgate-verdictd: %s\n", r.error().message.c_str());
      return 1;
    }
    log::info("running as uid " + std::to_string(getuid()) + ", CAP_NET_ADMIN only");
  }

  boost::asio::io_context io;
  verdictd::Daemon daemon(io, std::move(setup));
  if (auto r = daemon.start(); !r) {
    log::error(r.error().message);
    return 1;
  }
  if (auto r = seccomp::apply(verdictd::seccomp_profile()); !r) {
    log::error(r.error().message);
    return 1;
  }
  io.run();
  return daemon.exit_code();
}
