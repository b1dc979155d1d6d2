// verdictd's user-space decision path (decode_ip + grant lookup + profile match) with 10
// and with 100 000 active grants: the "verdict rate within 10 %" at the cache level.
#include <benchmark/benchmark.h>

#include <vector>

#include "verdictd/decision.h"
#include "verdictd/grant_cache.h"
#include "verdictd/profiles.h"

namespace {

using namespace kg::verdictd;

constexpr int64_t kNow = int64_t{1700000000} * 1000000000;
// More packets than a cache holds grant slots for, so 100 000 grants are not all hot.
constexpr int kPackets = 16384;

struct Setup {
  kg::config::Config cfg;
  ProfileSet profiles;
  GrantCache cache{0x9e3779b97f4a7c15ULL};
  std::vector<std::vector<uint8_t>> packets;  // SYNs from granted sources spread over all

  explicit Setup(int grants) {
    auto r = kg::config::parse_text(
        "[profile ssh-only]\n direction = inbound\n expose = tcp/22 -> 192.168.50.10:22\n"
        " fwmark = 0x10000000/0xff000000\n table = 100\n",
        "bench.conf");
    cfg = *r.config;
    profiles = ProfileSet(cfg);
    for (int i = 0; i < grants; ++i) {
      kg::ipc::GrantRecord g;
      g.id = static_cast<uint64_t>(i + 1);
      g.source = kg::IpAddr::v4(0x0b000000U + static_cast<uint32_t>(i) * 7919U);
      g.profile = "ssh-only";
      g.expires_ns = kNow + int64_t{3600} * 1000000000;
      g.fwmark = 0x10000000;
      g.fwmark_mask = 0xff000000;
      cache.upsert(g, 0);
    }
    for (int i = 0; i < kPackets; ++i) {
      const uint32_t src = 0x0b000000U + static_cast<uint32_t>((i * 6151) % grants) * 7919U;
      std::vector<uint8_t> p(40, 0);
      p[0] = 0x45;
      p[3] = 40;
      p[8] = 64;
      p[9] = 6;
      for (unsigned b = 0; b < 4; ++b) p[12 + b] = static_cast<uint8_t>(src >> (24 - 8 * b));
      const uint8_t dst[4] = {192, 168, 50, 10};
      for (unsigned b = 0; b < 4; ++b) p[16 + b] = dst[b];
      p[23] = 22;
      p[32] = 0x50;
      p[33] = 0x02;
      packets.push_back(std::move(p));
    }
  }
};

void BM_Decide(benchmark::State& state) {
  Setup s(static_cast<int>(state.range(0)));
  size_t i = 0;
  uint64_t accepted = 0;
  for (auto _ : state) {
    Flow f;
    flow_from_packet(s.packets[i++ & (kPackets - 1)], f);
    const Decision d = decide(f, s.cache, s.profiles, kNow);
    accepted += d.verdict == Verdict::accept;
    benchmark::DoNotOptimize(d);
  }
  if (accepted != static_cast<uint64_t>(state.iterations()))
    state.SkipWithError("a granted SYN was not accepted");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Decide)->Arg(10)->Arg(100000);

}  // namespace

BENCHMARK_MAIN();
