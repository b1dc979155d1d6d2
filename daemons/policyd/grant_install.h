// The grant shape of the kernel side, defined once with the engine ↔ kernel writer
// messages (ipc/kernel_messages.h).
#pragma once

#include "ipc/kernel_messages.h"

namespace kg::policyd {

using ipc::GrantInstall;

}  // namespace kg::policyd
