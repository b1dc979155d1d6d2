// The verdict for one queued packet: pure function of the packet, the grant cache and the
// profiles (docs/verdictd.md "Decision order").
#pragma once

#include <cstdint>
#include <span>

#include "packet/decode.h"
#include "verdictd/grant_cache.h"
#include "verdictd/profiles.h"

namespace kg::verdictd {

enum class Verdict : uint8_t { accept, drop, hold };

enum class Reason : uint8_t {
  granted,         // a live grant of the source matches
  static_source,   // an egress profile's `sources` holds the source
  decode_error,    // not an IP packet we can read (garbage, truncated header, ...)
  fragment,        // a non-first fragment: no L4 header to judge
  icmp_error,      // an ICMP error that conntrack did not relate to a flow
  not_gated,       // no profile could accept this flow from anyone
  no_grant,        // the source holds grants, none for this flow
  awaiting_grant,  // hold: the source's grant is pending or it has none yet
};
const char* reason_name(Reason r);

struct Decision {
  Verdict verdict = Verdict::drop;
  Reason reason = Reason::decode_error;
  GrantMatch match;  // accept only
};

// Fills `flow` from a raw IPv4/IPv6 packet (possibly cut at the queue's copy range).
// Returns the decoder's status; `flow` is only meaningful on ok.
packet::Status flow_from_packet(std::span<const uint8_t> ip_packet, Flow& flow);

Decision decide(const Flow& flow, const GrantCache& cache, const ProfileSet& profiles,
                int64_t now_realtime_ns);

// The packet mark an accept carries: the profile's bits replaced, the others kept.
inline uint32_t verdict_mark(uint32_t packet_mark, const GrantMatch& m) {
  return (packet_mark & ~m.mask) | (m.mark & m.mask);
}

}  // namespace kg::verdictd
