// knockgate-policyd's system-call allow-lists (docs/security.md): one for the kernel
// writer (and the commands it runs, which inherit it), a narrower one for the engine.
#pragma once

#include "common/seccomp.h"

namespace kg::policyd {

seccomp::Profile writer_seccomp_profile();
seccomp::Profile engine_seccomp_profile();

}  // namespace kg::policyd
