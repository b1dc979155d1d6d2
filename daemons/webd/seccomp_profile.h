// knockgate-webd's system-call allow-list (docs/security.md).
#pragma once

#include "common/seccomp.h"

namespace kg::webd {

seccomp::Profile seccomp_profile();

}  // namespace kg::webd
