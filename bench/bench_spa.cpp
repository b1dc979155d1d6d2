// SPA verifier under a bad-HMAC flood (docs/BENCHMARKS.md, "SPA"): packets of a real
// packet's length and alphabet whose HMAC is wrong, verified against a door with one and
// with three HMAC stanzas, on one core; one legitimate packet in every 1000 must still be
// accepted. Also: the cost of verifying a valid packet end to end.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "spa/encode.h"
#include "spa/verify.h"

namespace {

using namespace kg::spa;

constexpr int64_t kNow = 1800000000;
const kg::IpAddr kSrc = kg::IpAddr::v4(0xcb00710a);

Stanza stanza(int i) {
  Stanza s;
  s.key = random_bytes(32);
  s.hmac_key = random_bytes(64);
  s.label = "stanza" + std::to_string(i);
  return s;
}

std::string valid_packet(const Stanza& s) {
  Plaintext p;
  p.user = "alice";
  p.timestamp = kNow;
  p.message = "0.0.0.0,tcp/22";
  EncodeKeys k;
  k.key = s.key;
  k.hmac_key = s.hmac_key;
  return encode_packet(p, k);
}

std::vector<std::string> flood(size_t n, size_t len) {
  static const char* kAlpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::mt19937_64 rng(42);
  std::vector<std::string> out(n);
  for (auto& p : out) {
    p.resize(len);
    for (auto& c : p) c = kAlpha[rng() % 64];
    if (p.starts_with("U2FsdGVkX1")) p[0] = 'A';
  }
  return out;
}

void BM_BadHmacFlood(benchmark::State& state) {
  std::vector<Stanza> stanzas;
  for (int i = 0; i < state.range(0); ++i) stanzas.push_back(stanza(i));
  // The legitimate sender uses the last stanza: the worst case, every HMAC is computed.
  const std::string legit = valid_packet(stanzas.back());
  const auto packets = flood(4096, legit.size());
  size_t i = 0;
  uint64_t accepted = 0, legit_sent = 0, rejected = 0;
  for (auto _ : state) {
    const bool send_legit = (i % 1000) == 999;
    const std::string& p = send_legit ? legit : packets[i % packets.size()];
    auto out = verify(p, kSrc, kNow, stanzas);
    if (std::holds_alternative<Accepted>(out)) {
      ++accepted;
    } else {
      ++rejected;
    }
    legit_sent += send_legit ? 1 : 0;
    ++i;
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(static_cast<int64_t>(i));
  state.counters["legit_accepted_%"] =
      legit_sent == 0 ? 0.0
                      : 100.0 * static_cast<double>(accepted) / static_cast<double>(legit_sent);
  state.counters["rejected"] = static_cast<double>(rejected);
  state.counters["pkt_len"] = static_cast<double>(legit.size());
}
BENCHMARK(BM_BadHmacFlood)->Arg(1)->Arg(3);

void BM_CheapRejects(benchmark::State& state) {
  const std::vector<Stanza> stanzas{stanza(0)};
  std::string p(200, 'A');
  p[100] = '=';  // refused before any HMAC
  for (auto _ : state) benchmark::DoNotOptimize(verify(p, kSrc, kNow, stanzas));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CheapRejects);

void BM_ValidPacket(benchmark::State& state) {
  const std::vector<Stanza> stanzas{stanza(0)};
  const std::string legit = valid_packet(stanzas[0]);
  for (auto _ : state) benchmark::DoNotOptimize(verify(legit, kSrc, kNow, stanzas));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValidPacket);

}  // namespace

BENCHMARK_MAIN();
