// policyd's engine: grants, profiles, SQLite, the socket server for captured, verdictd,
// webd and knockgatectl, the grant broadcast. Started by the kernel writer (writer.h) with
// the channel on descriptor kEngineChannelFd; it binds its socket as root, then runs as
// PolicyUser with no capabilities, NoNewPrivs and its seccomp allow-list, and asks the
// writer for every kernel change and command.
#pragma once

#include "common/daemon_options.h"

namespace kg::policyd {

// Reads the config, runs until SIGTERM or until the writer goes; returns the exit code.
int run_engine(DaemonOptions args, int channel_fd);

}  // namespace kg::policyd
