// knockgate-captured's system-call allow-list (docs/security.md).
#pragma once

#include "common/seccomp.h"

namespace kg::captured {

// stream_spa_doors: the config has SPA doors over TCP or HTTP, whose listeners captured
// (re)opens at start and on every reload; only then may it make TCP sockets.
seccomp::Profile seccomp_profile(bool stream_spa_doors);

}  // namespace kg::captured
