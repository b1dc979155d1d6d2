// Knock engine throughput and memory against the acceptance figures in
// docs/BENCHMARKS.md: >= 5 M packets/s on one core, <= 256 bytes per tracked source,
// memory flat at the configured bound however many sources come.
//
//   bench_engine --benchmark_filter='Flood|Mixed'      throughput
//   bench_engine --benchmark_filter='Memory/65536/'    memory, one process per case, so
//   bench_engine --benchmark_filter='Memory/1048576/'  that RSS figures are the case's own
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "knock/engine.h"

namespace {

using kg::IpAddr;
using kg::Knock;
using kg::Proto;
using kg::knock::DoorSpec;
using kg::knock::Engine;
using kg::knock::EventSink;
using kg::knock::Observation;
using kg::knock::TimeNs;

constexpr size_t kDoors = 10;
constexpr size_t kPackets = 1'000'000;
constexpr TimeNs kPacketGapNs = 1000;  // 1 M packets/s of arrivals: one pass is 1 s

uint16_t knock_port(size_t door, size_t stage) {
  return static_cast<uint16_t>(10000 * (stage + 1) + door);
}

// Ten three-knock doors with `tcpflags = syn`, distinct first knocks: the usual setup.
std::vector<DoorSpec> ten_doors() {
  std::vector<DoorSpec> doors;
  for (size_t d = 0; d < kDoors; ++d) {
    DoorSpec door;
    door.name = "door" + std::to_string(d);
    for (size_t s = 0; s < 3; ++s) door.sequence.push_back(Knock{Proto::tcp, knock_port(d, s)});
    door.tcpflags.must_set = kg::tcpflag::syn;
    doors.push_back(door);
  }
  return doors;
}

struct XorShift {
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
};

Observation syn(const IpAddr& src, uint16_t port, TimeNs now) {
  Observation o;
  o.src = src;
  o.dst = IpAddr::v4(0xC0000201u);  // 192.0.2.1
  o.proto = Proto::tcp;
  o.dport = port;
  o.tcp_flags = kg::tcpflag::syn;
  o.now = now;
  return o;
}

// Counts events through the virtual interface, as the capture daemon's sink would.
class CountingSink : public EventSink {
 public:
  void stage(const IpAddr&, size_t, int) override { ++stages; }
  void open(const IpAddr&, size_t) override { ++opens; }
  void timeout(const IpAddr&, size_t, int) override { ++timeouts; }
  uint64_t stages = 0, opens = 0, timeouts = 0;
};

struct Stream {
  std::vector<Observation> packets;
  uint64_t complete_sequences = 0;  // legitimate sequences whose three knocks are all in
};

// Every packet from a fresh random IPv4 source to the first knock of a random door: each
// starts an attempt, and once the table is full each one forces an eviction.
const Stream& flood_stream() {
  static const Stream stream = [] {
    Stream s;
    s.packets.reserve(kPackets);
    XorShift rng;
    for (size_t i = 0; i < kPackets; ++i) {
      const uint64_t r = rng.next();
      s.packets.push_back(syn(IpAddr::v4(static_cast<uint32_t>(r)),
                              knock_port((r >> 40) % kDoors, 0),
                              static_cast<TimeNs>(i) * kPacketGapNs));
    }
    return s;
  }();
  return stream;
}

// 90 % flood as above, 10 % legitimate knockers doing full sequences, a few of them in
// flight at any time (their knocks are tens of packets apart, as a real client's are).
const Stream& mixed_stream() {
  static const Stream stream = [] {
    struct Knocker {
      uint32_t addr;
      size_t door;
      size_t next;
    };
    Stream s;
    s.packets.reserve(kPackets);
    XorShift rng;
    std::vector<Knocker> in_flight;
    uint32_t legit_addr = 0x0A000000u;  // 10.0.0.0/8: never collides with flood picks below
    for (size_t i = 0; i < kPackets; ++i) {
      const uint64_t r = rng.next();
      const TimeNs now = static_cast<TimeNs>(i) * kPacketGapNs;
      // Near the end no new knocker starts, so none is left half way for the next pass.
      const bool may_start = i + 2000 < kPackets;
      if (r % 10 != 0 || (!may_start && in_flight.empty())) {
        const auto src = static_cast<uint32_t>(r >> 32) | 0x80000000u;
        s.packets.push_back(syn(IpAddr::v4(src), knock_port((r >> 8) % kDoors, 0), now));
        continue;
      }
      if (may_start && in_flight.size() < 8 && (in_flight.empty() || (r >> 16) % 3 == 0)) {
        in_flight.push_back(Knocker{legit_addr++, (r >> 24) % kDoors, 0});
      }
      const size_t pick = (r >> 4) % in_flight.size();
      Knocker& k = in_flight[pick];
      s.packets.push_back(syn(IpAddr::v4(k.addr), knock_port(k.door, k.next), now));
      if (++k.next == 3) {
        ++s.complete_sequences;
        in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(pick));
      }
    }
    return s;
  }();
  return stream;
}

uint32_t v4_host_order(const IpAddr& a) {
  const uint8_t* b = a.data();
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | uint32_t{b[3]};
}

void run_stream(benchmark::State& state, const Stream& stream) {
  Engine engine(ten_doors(), static_cast<size_t>(state.range(0)));
  CountingSink sink;
  // One untimed pass fills the table, so the timed passes run in the full, evicting state.
  for (const Observation& p : stream.packets) engine.on_packet(p, sink);
  TimeNs offset = 0;
  const uint64_t opens_before = sink.opens;
  const uint64_t evicted_before = engine.stats().evicted_probation + engine.stats().evicted_protected;
  uint64_t passes = 0;
  for (auto _ : state) {
    // Each pass is later and comes from other sources (the stream's IPv4 sources XOR a
    // per-pass salt), so every pass is a fresh flood, not a replay of tracked sources.
    ++passes;
    offset += static_cast<TimeNs>(kPackets) * kPacketGapNs;
    const auto salt = static_cast<uint32_t>(passes * 0x9E3779B1u) & 0x7FFFFFFFu;
    for (const Observation& p : stream.packets) {
      Observation q = p;
      q.src = IpAddr::v4(v4_host_order(p.src) ^ salt);  // salt keeps flood and legit apart
      q.now += offset;
      engine.on_packet(q, sink);
    }
  }
  benchmark::DoNotOptimize(sink.stages);
  const auto processed = static_cast<double>(passes * kPackets);
  state.SetItemsProcessed(static_cast<int64_t>(passes * kPackets));
  state.counters["pkt/s"] = benchmark::Counter(processed, benchmark::Counter::kIsRate);
  state.counters["bytes/source"] =
      static_cast<double>(engine.memory_bytes()) / static_cast<double>(engine.max_sources());
  // Share of timed packets that had to evict a tracked source to be tracked themselves.
  state.counters["evicted/pkt"] =
      static_cast<double>(engine.stats().evicted_probation + engine.stats().evicted_protected -
                          evicted_before) /
      processed;
  if (stream.complete_sequences > 0 && passes > 0) {
    // Share of the legitimate sequences that opened despite the flood.
    state.counters["legit_opened_%"] =
        100.0 * static_cast<double>(sink.opens - opens_before) /
        static_cast<double>(stream.complete_sequences * passes);
  }
}

void run_stream_batched(benchmark::State& state, const Stream& stream) {
  Engine engine(ten_doors(), static_cast<size_t>(state.range(0)));
  CountingSink sink;
  engine.on_packets(stream.packets.data(), stream.packets.size(), sink);
  std::vector<Observation> batch(256);
  TimeNs offset = 0;
  uint64_t passes = 0;
  for (auto _ : state) {
    ++passes;
    offset += static_cast<TimeNs>(kPackets) * kPacketGapNs;
    const auto salt = static_cast<uint32_t>(passes * 0x9E3779B1u) & 0x7FFFFFFFu;
    for (size_t i = 0; i < stream.packets.size(); i += batch.size()) {
      const size_t n = std::min(batch.size(), stream.packets.size() - i);
      for (size_t j = 0; j < n; ++j) {
        batch[j] = stream.packets[i + j];
        batch[j].src = IpAddr::v4(v4_host_order(batch[j].src) ^ salt);
        batch[j].now += offset;
      }
      engine.on_packets(batch.data(), n, sink);
    }
  }
  benchmark::DoNotOptimize(sink.stages);
  const auto processed = static_cast<double>(passes * kPackets);
  state.counters["pkt/s"] = benchmark::Counter(processed, benchmark::Counter::kIsRate);
}

void BM_Flood(benchmark::State& state) { run_stream(state, flood_stream()); }
void BM_FloodBatched(benchmark::State& state) { run_stream_batched(state, flood_stream()); }
void BM_Mixed(benchmark::State& state) { run_stream(state, mixed_stream()); }

// VmRSS / VmHWM of this process, in KiB.
long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t len = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, len, field) == 0 && line.size() > len && line[len] == ':') {
      return std::stol(line.substr(len + 1));
    }
  }
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so the peak is this case's own.
void reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
}

// 10 M distinct sources, generated on the fly (no packet array in the RSS figures).
void BM_Memory(benchmark::State& state) {
  const auto max_sources = static_cast<size_t>(state.range(0));
  constexpr uint64_t kSources = 10'000'000;
  for (auto _ : state) {
    reset_peak_rss();
    const long rss_start = status_kib("VmRSS");
    Engine engine(ten_doors(), max_sources);
    const long rss_built = status_kib("VmRSS");
    CountingSink sink;
    XorShift rng;
    long rss_mid = 0;
    for (uint64_t i = 0; i < kSources; ++i) {
      const uint64_t r = rng.next();
      // i itself in the low 32 bits keeps all 10 M sources distinct.
      engine.on_packet(syn(IpAddr::v4(static_cast<uint32_t>(i * 2654435761u)),
                           knock_port((r >> 40) % kDoors, 0), static_cast<TimeNs>(i) * 100),
                       sink);
      if (i == kSources / 2) rss_mid = status_kib("VmRSS");
    }
    const long rss_end = status_kib("VmRSS");
    const long hwm = status_kib("VmHWM");
    state.counters["bytes/source"] =
        static_cast<double>(engine.memory_bytes()) / static_cast<double>(max_sources);
    state.counters["engine_MiB"] = static_cast<double>(engine.memory_bytes()) / 1048576.0;
    // Absolute process figures: run this case alone (--benchmark_filter) so that memory
    // freed by earlier cases is not reused and hidden from the RSS.
    state.counters["rss_start_MiB"] = static_cast<double>(rss_start) / 1024.0;
    state.counters["rss_built_MiB"] = static_cast<double>(rss_built) / 1024.0;
    state.counters["rss_5M_MiB"] = static_cast<double>(rss_mid) / 1024.0;
    state.counters["rss_10M_MiB"] = static_cast<double>(rss_end) / 1024.0;
    state.counters["peak_MiB"] = static_cast<double>(hwm) / 1024.0;
    state.counters["tracked"] = static_cast<double>(engine.stats().tracked_sources);
    state.counters["pkt/s"] =
        benchmark::Counter(static_cast<double>(kSources), benchmark::Counter::kIsRate);
  }
}

}  // namespace

BENCHMARK(BM_Flood)->Arg(65536)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_FloodBatched)->Arg(65536)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Mixed)->Arg(65536)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Memory)->Arg(65536)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->Iterations(1);

BENCHMARK_MAIN();
