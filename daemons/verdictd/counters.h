// What verdictd counts, reported in its StatusReply (and later as metrics).
#pragma once

#include <cstdint>
#include <vector>

#include "verdictd/decision.h"

namespace kg::verdictd {

struct VerdictCounters {
  uint64_t packets = 0;
  uint64_t accepted = 0;  // right away or after a hold
  uint64_t accepted_static = 0;
  uint64_t dropped_no_grant = 0;
  uint64_t dropped_not_gated = 0;
  uint64_t dropped_decode_error = 0;
  uint64_t dropped_fragment = 0;
  uint64_t dropped_icmp_error = 0;
  uint64_t dropped_hold_timeout = 0;
  uint64_t dropped_hold_full = 0;
  uint64_t held = 0;           // packets that entered the hold table
  uint64_t held_accepted = 0;  // of those, accepted when their grant arrived
  uint64_t held_dropped = 0;   // of those, dropped before the deadline (grant failed)

  void count_drop(Reason r) {
    switch (r) {
      case Reason::decode_error:
        ++dropped_decode_error;
        break;
      case Reason::fragment:
        ++dropped_fragment;
        break;
      case Reason::icmp_error:
        ++dropped_icmp_error;
        break;
      case Reason::not_gated:
        ++dropped_not_gated;
        break;
      default:
        ++dropped_no_grant;
        break;
    }
  }
};

struct ProfileCounters {
  uint64_t accepted = 0;
  uint64_t held_accepted = 0;
};

}  // namespace kg::verdictd
