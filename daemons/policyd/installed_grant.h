// What the kernel needs to know of an active grant: id, source, profile, expiry.
// Its own header so the pure ruleset generator does not depend on the kernel handles.
#pragma once

#include <cstdint>
#include <string>

#include "common/addr.h"

namespace kg::policyd {

struct InstalledGrant {
  uint64_t id = 0;
  IpAddr source;
  std::string profile;
  int64_t expires_ns = 0;  // CLOCK_REALTIME ns since epoch; element timeout = expires - now
};

}  // namespace kg::policyd
