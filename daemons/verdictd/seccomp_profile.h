// knockgate-verdictd's system-call allow-list (docs/security.md).
#pragma once

#include "common/seccomp.h"

namespace kg::verdictd {

seccomp::Profile seccomp_profile();

}  // namespace kg::verdictd
