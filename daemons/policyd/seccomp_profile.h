// knockgate-policyd's system-call allow-list (docs/security.md).
#pragma once

#include "common/seccomp.h"

namespace kg::policyd {

seccomp::Profile seccomp_profile();

}  // namespace kg::policyd
