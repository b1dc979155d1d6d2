// libFuzzer target for verdictd's packet path: decode_ip of whatever the queue hands over
// (truncated copies, garbage, IPv6 extension chains) and the decision against a fixed set
// of profiles and grants. Input: one byte choosing the copy range cut (0 = none), then the
// packet. An accept must come from a live grant or static source whose profile matches.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>

#include "verdictd/decision.h"
#include "verdictd/grant_cache.h"
#include "verdictd/hold_table.h"
#include "verdictd/profiles.h"

namespace {

using namespace kg::verdictd;

constexpr const char* kConf = R"([options]
  Interface = kg-wan
  WanInterface = kg-wan
[profile ssh-only]
  direction = inbound
  expose = tcp/22 -> 192.168.50.10:22
  expose = udp/5060 -> [fd00:50::10]:5060
  fwmark = 0x10000000/0xff000000
  table = 100
[profile syslog-only]
  direction = egress
  sources = 192.168.50.20, fd00:50::20
  allow = udp/514,tcp/514,icmp
  destination = 192.168.60.0/24, fd00:60::/64
  fwmark = 0x20000000/0xff000000
  table = 120
)";

constexpr int64_t kNow = int64_t{1700000000} * 1000000000;

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_verdict: invariant broken: %s\n", what);
    std::abort();
  }
}

struct World {
  kg::config::Config cfg;
  ProfileSet profiles;
  GrantCache cache{42};
  HoldTable hold{64};
  World() {
    auto r = kg::config::parse_text(kConf, "fuzz.conf");
    require(r.config.has_value(), "fuzz config parses");
    cfg = *r.config;
    profiles = ProfileSet(cfg);
    const char* sources[] = {"203.0.113.10", "2001:db8:1::10", "192.0.2.1", "::ffff:203.0.113.10"};
    uint64_t id = 1;
    for (const char* s : sources) {
      kg::ipc::GrantRecord g;
      g.id = id++;
      g.source = *kg::IpAddr::parse(s);
      g.profile = "ssh-only";
      g.expires_ns = id % 2 == 0 ? kNow + 1000000000 : kNow - 1;  // some already expired
      g.fwmark = 0x10000000;
      g.fwmark_mask = 0xff000000;
      cache.upsert(g, profiles.index_of(g.profile));
    }
    cache.set_pending(*kg::IpAddr::parse("203.0.113.11"), kNow + 25000000);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World w;
  if (size < 1) return 0;
  const size_t cut = data[0] == 0 ? size - 1 : std::min<size_t>(data[0], size - 1);
  // A heap copy of exactly the cut length: ASan sees any read past the queue's copy.
  auto* copy = static_cast<uint8_t*>(std::malloc(cut == 0 ? 1 : cut));
  if (cut > 0) std::memcpy(copy, data + 1, cut);
  Flow flow;
  const auto status = flow_from_packet(std::span<const uint8_t>(copy, cut), flow);
  Decision d;
  if (status == kg::packet::Status::ok) {
    require(!flow.src.empty() && flow.src.family() == flow.dst.family(), "flow addresses");
    d = decide(flow, w.cache, w.profiles, kNow);
  }
  if (d.verdict == Verdict::accept) {
    require(d.match.profile < w.profiles.size(), "accept names a profile");
    require(w.profiles.at(d.match.profile).matches(flow), "accepted flow matches its profile");
    require(!flow.later_fragment && !flow.icmp_error, "no accept for fragments/ICMP errors");
    const uint32_t mark = verdict_mark(0xdeadbeef, d.match);
    require((mark & d.match.mask) == (d.match.mark & d.match.mask), "mark carries the profile");
    require((mark & ~d.match.mask) == (0xdeadbeefU & ~d.match.mask), "mark keeps other bits");
  }
  if (d.verdict == Verdict::hold) {
    HeldPacket h;
    h.flow = flow;
    h.deadline_ns = static_cast<int64_t>(size);
    if (!w.hold.add(h)) w.hold.expire(INT64_MAX, [](const HeldPacket&) {});
    require(w.hold.live() <= w.hold.capacity(), "hold table bounded");
  }
  std::free(copy);
  return 0;
}
