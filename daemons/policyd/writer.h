// policyd's privileged half, the kernel writer: the process systemd starts. It keeps uid 0
// with only the capabilities its job needs, installs the ruleset, set elements, ip rules
// and routes, deletes conntrack entries and runs the doors' knockd-style commands — on
// request of the engine, an unprivileged child it starts (fork + exec of this program),
// restarts when it dies, and talks to over a SOCK_SEQPACKET socketpair. It accepts only
// the closed request set of ipc/kernel_messages.h, each checked against its own config.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace kg::policyd {

struct WriterOptions {
  std::string config_path;
  std::string program_path;               // this executable, exec'd for the engine
  std::vector<std::string> engine_flags;  // -v / -D, passed on
};

// Runs until SIGTERM/SIGINT: then stops the engine, removes the kernel state and returns
// the exit code.
int run_kernel_writer(WriterOptions options, config::Config config);

// The engine end of the socketpair in the exec'd engine.
inline constexpr int kEngineChannelFd = 3;
// argv[1] of the exec'd engine.
inline constexpr const char* kEngineFlag = "--engine";

}  // namespace kg::policyd
