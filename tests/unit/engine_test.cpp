// The knock engine against knockd 0.8's matching rules (reference/knockd-behaviour.md §2)
// and knockgate's deliberate differences. Most cases are scenarios: doors, a timed list of
// packets and control calls, and the exact events expected.
#include "knock/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace {

// Counts allocations while a test asks it to: proves the packet path allocates nothing.
bool g_count_allocations = false;
size_t g_allocations = 0;

}  // namespace

namespace {
void* counted_alloc(size_t size) noexcept {
  if (g_count_allocations) ++g_allocations;
  return std::malloc(size == 0 ? 1 : size);
}
}  // namespace

// Every unaligned form, so that no allocation of ours pairs with the sanitizer's own.
void* operator new(size_t size) {
  if (void* p = counted_alloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) {
  if (void* p = counted_alloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace kg::knock {
namespace {

constexpr const char* kGw = "192.0.2.1";
constexpr uint8_t SYN = tcpflag::syn;
constexpr uint8_t ACK = tcpflag::ack;

IpAddr ip(const std::string& text) {
  auto a = IpAddr::parse(text);
  if (!a) ADD_FAILURE() << "bad address in test: " << text;
  return a ? *a : IpAddr{};
}

Knock T(uint16_t port) { return Knock{Proto::tcp, port}; }
Knock U(uint16_t port) { return Knock{Proto::udp, port}; }

DoorSpec door(std::string name, std::vector<Knock> seq, int timeout_s = 25) {
  DoorSpec d;
  d.name = std::move(name);
  d.sequence = std::move(seq);
  d.seq_timeout_s = timeout_s;
  return d;
}
DoorSpec with_flags(DoorSpec d, uint8_t must_set, uint8_t must_clear) {
  d.tcpflags = TcpFlagsTest{must_set, must_clear};
  return d;
}
DoorSpec with_target(DoorSpec d, const std::string& target) {
  d.target = ip(target);
  return d;
}
DoorSpec tolerant(DoorSpec d) {
  d.tolerate_duplicates = true;
  return d;
}

TimeNs at(double seconds) { return std::llround(seconds * 1e9); }

struct Step {
  enum Kind { kPacket, kExpire, kReload, kSetSequence, kDisable } kind = kPacket;
  double t = 0;
  std::string src;
  std::string dst = kGw;
  Proto proto = Proto::tcp;
  uint16_t port = 0;
  uint8_t flags = SYN;
  std::vector<DoorSpec> doors;
  size_t door = 0;
  std::vector<Knock> knocks;
};

Step tcp(double t, const std::string& src, uint16_t port, uint8_t flags = SYN,
         const std::string& dst = kGw) {
  Step s;
  s.t = t;
  s.src = src;
  s.port = port;
  s.flags = flags;
  s.dst = dst;
  return s;
}
Step syn_to(double t, const std::string& src, const std::string& dst, uint16_t port) {
  return tcp(t, src, port, SYN, dst);
}
Step udp(double t, const std::string& src, uint16_t port, const std::string& dst = kGw) {
  Step s = tcp(t, src, port, 0, dst);
  s.proto = Proto::udp;
  return s;
}
Step expire_at(double t) {
  Step s;
  s.kind = Step::kExpire;
  s.t = t;
  return s;
}
Step reload(std::vector<DoorSpec> doors) {
  Step s;
  s.kind = Step::kReload;
  s.doors = std::move(doors);
  return s;
}
Step rotate(size_t door_index, std::vector<Knock> knocks) {
  Step s;
  s.kind = Step::kSetSequence;
  s.door = door_index;
  s.knocks = std::move(knocks);
  return s;
}
Step disable(size_t door_index) {
  Step s;
  s.kind = Step::kDisable;
  s.door = door_index;
  return s;
}

std::string S(const std::string& src, const std::string& d, int stage) {
  return "stage " + src + " " + d + " " + std::to_string(stage);
}
std::string O(const std::string& src, const std::string& d) { return "open " + src + " " + d; }
std::string TO(const std::string& src, const std::string& d, int stage) {
  return "timeout " + src + " " + d + " " + std::to_string(stage);
}

// Records events as text, naming doors by the engine's current door list.
class Recorder : public EventSink {
 public:
  explicit Recorder(const Engine& engine) : engine_(engine) {}
  void stage(const IpAddr& s, size_t d, int n) override {
    events.push_back(S(s.str(), name(d), n));
  }
  void open(const IpAddr& s, size_t d) override { events.push_back(O(s.str(), name(d))); }
  void timeout(const IpAddr& s, size_t d, int n) override {
    events.push_back(TO(s.str(), name(d), n));
  }
  std::vector<std::string> events;

 private:
  std::string name(size_t d) const {
    return d < engine_.doors().size() ? engine_.doors()[d].name : "?" + std::to_string(d);
  }
  const Engine& engine_;
};

// Drops events: for flood tests that only look at outcomes.
class NullSink : public EventSink {
 public:
  void stage(const IpAddr&, size_t, int) override { ++stages; }
  void open(const IpAddr&, size_t) override { ++opens; }
  void timeout(const IpAddr&, size_t, int) override { ++timeouts; }
  size_t stages = 0, opens = 0, timeouts = 0;
};

Observation observation(const Step& s) {
  Observation o;
  o.src = ip(s.src);
  o.dst = ip(s.dst);
  o.proto = s.proto;
  o.dport = s.port;
  o.tcp_flags = s.flags;
  o.now = at(s.t);
  return o;
}

void run_steps(Engine& engine, const std::vector<Step>& steps, EventSink& sink) {
  for (const Step& s : steps) {
    switch (s.kind) {
      case Step::kPacket: engine.on_packet(observation(s), sink); break;
      case Step::kExpire: engine.expire(at(s.t), sink); break;
      case Step::kReload: engine.update_doors(s.doors); break;
      case Step::kSetSequence: engine.set_sequence(s.door, s.knocks); break;
      case Step::kDisable: engine.disable_door(s.door); break;
    }
  }
}

struct Scenario {
  std::string name;
  std::vector<DoorSpec> doors;
  std::vector<Step> steps;
  std::vector<std::string> expected;
};

const std::string c1 = "198.51.100.1";
const std::string c2 = "198.51.100.2";
const std::string v6 = "2001:db8:1::5";

DoorSpec abc(int timeout_s = 25) { return door("A", {T(7000), T(8000), T(9000)}, timeout_s); }

Scenario concurrent_knockers() {
  // 40 sources knock the same door, interleaved knock by knock; one of them breaks its
  // own attempt half way. Upstream knockd loses other sources' progress here.
  Scenario sc{"ConcurrentKnockersNeverInterfere", {abc()}, {}, {}};
  const uint16_t ports[] = {7000, 8000, 9000};
  std::vector<std::string> sources;
  for (int i = 0; i < 40; ++i) sources.push_back("198.51.100." + std::to_string(10 + i));
  double t = 0;
  for (int k = 0; k < 3; ++k) {
    for (size_t i = 0; i < sources.size(); ++i) {
      t += 0.001;
      if (i == 0 && k == 1) {
        sc.steps.push_back(tcp(t, sources[i], 9000));  // wrong knock: source 0 only
        continue;
      }
      if (i == 0 && k == 2) continue;
      sc.steps.push_back(tcp(t, sources[i], ports[k]));
      sc.expected.push_back(S(sources[i], "A", k + 1));
      if (k == 2) sc.expected.push_back(O(sources[i], "A"));
    }
  }
  return sc;
}

std::vector<Scenario> scenarios() {
  std::vector<Scenario> all = {
      {"RightSequenceOpens",
       {abc()},
       {tcp(0, c1, 7000), tcp(1, c1, 8000), tcp(2, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"WrongOrderInvalidatesAndNextPacketIsFresh",
       {abc()},
       {tcp(0, c1, 7000), tcp(1, c1, 9000), tcp(2, c1, 8000), tcp(3, c1, 9000),
        tcp(4, c1, 7000), tcp(5, c1, 8000), tcp(6, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"PortInNoDoorIsIgnored",
       {abc()},
       {tcp(0, c1, 7000), tcp(1, c1, 22), udp(1.5, c1, 8000), tcp(2, c1, 8000),
        tcp(3, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"PortOfAnotherDoorInvalidates",
       {abc(), door("B", {T(5000), T(6000)})},
       {tcp(0, c1, 7000), tcp(1, c1, 6000), tcp(2, c1, 8000), tcp(3, c1, 9000)},
       {S(c1, "A", 1)}},

      {"BreakingPacketNeverStartsAnAttempt",
       {abc(), door("B", {T(5000), T(6000)})},
       {tcp(0, c1, 7000), tcp(1, c1, 5000), tcp(2, c1, 6000), tcp(3, c1, 5000),
        tcp(4, c1, 6000)},
       {S(c1, "A", 1), S(c1, "B", 1), S(c1, "B", 2), O(c1, "B")}},

      {"TimeoutMeasuredFromFirstKnock",
       {abc(5)},
       {tcp(0, c1, 7000), tcp(4, c1, 8000), tcp(8, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), TO(c1, "A", 2)}},

      {"TimeoutBoundaryIsInclusive",
       {abc(5)},
       {tcp(0, c1, 7000), tcp(1, c1, 8000), tcp(5, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), TO(c1, "A", 2)}},

      {"LastNanosecondBeforeTimeoutCompletes",
       {abc(5)},
       {tcp(0, c1, 7000), tcp(1, c1, 8000), tcp(4.999999999, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"TimeoutFiresOnTimeFromExpire",
       {abc(5)},
       {tcp(0, c1, 7000), expire_at(4.9), expire_at(5.0), tcp(5.1, c1, 8000)},
       {S(c1, "A", 1), TO(c1, "A", 1)}},

      {"TimeoutThenFreshStart",
       {abc(5)},
       {tcp(0, c1, 7000), tcp(6, c1, 7000), tcp(7, c1, 8000), tcp(8, c1, 9000)},
       {S(c1, "A", 1), TO(c1, "A", 1), S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3),
        O(c1, "A")}},

      {"TcpFlagsMismatchIsIgnoredNotReset",
       {with_flags(abc(), SYN, ACK)},
       {tcp(0, c1, 7000, ACK), tcp(1, c1, 7000, SYN), tcp(2, c1, 8000, ACK),
        tcp(3, c1, 8000, SYN | ACK), tcp(4, c1, 9000, SYN | ACK), tcp(5, c1, 8000, SYN),
        tcp(6, c1, 9000, SYN | tcpflag::psh)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"FlagsPassingForOneDoorOnlyLeavesTheOtherAlone",
       // B counts any TCP segment, so an ACK on 8000 is relevant; A (SYN only) ignores it.
       {with_flags(abc(), SYN, 0), door("B", {T(8000), T(5000)})},
       {tcp(0, c1, 7000), tcp(1, c1, 8000, ACK), tcp(2, c1, 8000), tcp(3, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"UdpAlwaysPassesTheFlagTest",
       {with_flags(door("A", {U(7000), T(8000), U(9000)}), SYN, ACK)},
       {udp(0, c1, 7000), tcp(1, c1, 8000, SYN), udp(2, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"ProtocolIsPartOfTheKnock",
       {door("A", {T(7000), U(7000), T(8000)})},
       {udp(0, c1, 7000), tcp(1, c1, 7000), tcp(2, c1, 7000), tcp(3, c1, 7000),
        udp(4, c1, 7000), tcp(5, c1, 8000)},
       {S(c1, "A", 1), S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"SharedFirstKnockStartsBothDoors",
       {door("A", {T(7000), T(8000)}), door("B", {T(7000), T(9000)})},
       {tcp(0, c1, 7000), tcp(1, c1, 8000), tcp(2, c1, 7000), tcp(3, c1, 9000)},
       {S(c1, "A", 1), S(c1, "B", 1), S(c1, "A", 2), O(c1, "A"), S(c1, "A", 1),
        S(c1, "B", 1), S(c1, "B", 2), O(c1, "B")}},

      {"SharedFirstKnockWithOneKnockDoor",
       {door("A", {T(7000)}), door("B", {T(7000), T(8000)})},
       {tcp(0, c1, 7000), tcp(1, c1, 8000)},
       {S(c1, "A", 1), O(c1, "A"), S(c1, "B", 1), S(c1, "B", 2), O(c1, "B")}},

      {"TargetMismatchIsIgnored",
       {with_target(door("A", {T(7000), T(8000)}), "192.0.2.1")},
       {syn_to(0, c1, "192.0.2.2", 7000), syn_to(1, c1, "192.0.2.1", 7000),
        syn_to(2, c1, "192.0.2.2", 8000), syn_to(3, c1, "192.0.2.1", 8000)},
       {S(c1, "A", 1), S(c1, "A", 2), O(c1, "A")}},

      {"TargetsKeepSeparateAttempts",
       {with_target(door("A", {T(7000), T(8000)}), "192.0.2.1"),
        with_target(door("B", {T(7000), T(9000)}), "192.0.2.2"),
        door("C", {T(5000), T(6000)})},
       {syn_to(0, c1, "192.0.2.1", 7000), syn_to(1, c1, "192.0.2.2", 7000),
        syn_to(2, c1, "192.0.2.3", 5000), syn_to(3, c1, "192.0.2.1", 8000),
        syn_to(4, c1, "192.0.2.2", 9000), syn_to(5, c1, "192.0.2.3", 6000)},
       // 8000 to .1 also judges the untargeted C, which it breaks.
       {S(c1, "A", 1), S(c1, "B", 1), S(c1, "C", 1), S(c1, "A", 2), O(c1, "A"),
        S(c1, "B", 2), O(c1, "B")}},

      concurrent_knockers(),

      {"InterleavedSourcesBreakOnlyThemselves",
       {abc()},
       {tcp(0, c1, 7000), tcp(0.1, c2, 7000), tcp(0.2, c1, 9000), tcp(0.3, c2, 8000),
        tcp(0.4, c2, 9000)},
       {S(c1, "A", 1), S(c2, "A", 1), S(c2, "A", 2), S(c2, "A", 3), O(c2, "A")}},

      {"Ipv6KnocksWork",
       {with_target(door("V6", {T(7000), U(8000)}), "2001:db8::1"), abc()},
       {syn_to(0, v6, "2001:db8::1", 7000), tcp(0.5, c1, 7000), udp(1, v6, 8000, "2001:db8::1"),
        syn_to(1.5, v6, "2001:db8::2", 7000), tcp(2, c1, 8000), tcp(3, c1, 9000)},
       // udp 8000 advances V6 and breaks the untargeted A that the same first knock started.
       {S(v6, "V6", 1), S(v6, "A", 1), S(c1, "A", 1), S(v6, "V6", 2), O(v6, "V6"),
        S(v6, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"DuplicateBreaksWithoutTolerance",
       {abc()},
       {tcp(0, c1, 7000), tcp(0.5, c1, 7000), tcp(1, c1, 8000), tcp(2, c1, 7000),
        tcp(3, c1, 8000), tcp(4, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"DuplicateToleratedWhenEnabled",
       {tolerant(abc())},
       {tcp(0, c1, 7000), tcp(0.5, c1, 7000), tcp(1, c1, 8000), tcp(1.5, c1, 8000),
        tcp(1.6, c1, 8000), tcp(2, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"ToleranceCoversOnlyTheKnockJustMatched",
       {tolerant(abc())},
       {tcp(0, c1, 7000), tcp(1, c1, 8000), tcp(2, c1, 7000), tcp(3, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2)}},

      {"RepeatedKnockInSequenceAdvancesFirst",
       {tolerant(door("A", {T(7000), T(7000), T(8000)}))},
       {tcp(0, c1, 7000), tcp(1, c1, 7000), tcp(2, c1, 7000), tcp(3, c1, 8000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c1, "A", 3), O(c1, "A")}},

      {"SeqTimeoutZeroNeverCompletesMultiKnock",
       {door("A", {T(7000), T(8000)}, 0)},
       {tcp(0, c1, 7000), tcp(0, c1, 8000), tcp(1, c1, 7000), expire_at(1)},
       {S(c1, "A", 1), TO(c1, "A", 1), S(c1, "A", 1), TO(c1, "A", 1)}},

      {"SeqTimeoutZeroOneKnockDoorOpens",
       {door("A", {U(7000)}, 0)},
       {udp(0, c1, 7000)},
       {S(c1, "A", 1), O(c1, "A")}},

      {"OneKnockDoorOpensEveryTime",
       {door("A", {T(7000)})},
       {tcp(0, c1, 7000), tcp(1, c1, 7000)},
       {S(c1, "A", 1), O(c1, "A"), S(c1, "A", 1), O(c1, "A")}},

      {"EarlierTimestampCountsAsLatest",
       {abc(5)},
       {tcp(10, c1, 7000), tcp(3, c1, 8000), tcp(15, c1, 9000)},
       {S(c1, "A", 1), S(c1, "A", 2), TO(c1, "A", 2)}},

      {"ReloadKeepsUnchangedDoorsAndDropsChanged",
       {abc(), door("B", {T(5000), T(6000), T(4000)})},
       {tcp(0, c1, 7000), tcp(1, c1, 8000), tcp(1, c2, 5000),
        reload({door("B", {T(5000), T(6001), T(4000)}), abc()}), tcp(2, c1, 9000),
        tcp(3, c2, 6000), tcp(4, c2, 6001), tcp(5, c2, 5000), tcp(6, c2, 6001),
        tcp(7, c2, 4000)},
       {S(c1, "A", 1), S(c1, "A", 2), S(c2, "B", 1), S(c1, "A", 3), O(c1, "A"), S(c2, "B", 1),
        S(c2, "B", 2), S(c2, "B", 3), O(c2, "B")}},

      {"ReloadDropsDoorWithChangedTimeoutOrTarget",
       {abc(), door("B", {T(5000), T(6000)})},
       {tcp(0, c1, 7000), tcp(0, c2, 5000),
        reload({abc(20), with_target(door("B", {T(5000), T(6000)}), kGw)}), tcp(1, c1, 8000),
        tcp(1, c2, 6000)},
       {S(c1, "A", 1), S(c2, "B", 1)}},

      {"ReloadRemovingADoorDropsItsAttempts",
       {abc(), door("B", {T(5000), T(6000)})},
       {tcp(0, c1, 7000), tcp(0, c2, 5000), reload({door("B", {T(5000), T(6000)})}),
        tcp(1, c1, 8000), tcp(1, c2, 6000)},
       {S(c1, "A", 1), S(c2, "B", 1), S(c2, "B", 2), O(c2, "B")}},

      {"ReloadKeepsDeadlines",
       {abc(5)},
       {tcp(0, c1, 7000), reload({door("Z", {T(1)}), abc(5)}), expire_at(4.9), expire_at(5)},
       {S(c1, "A", 1), TO(c1, "A", 1)}},

      {"SetSequenceDropsTheDoorsAttempts",
       {abc(), door("B", {T(5000), T(6000)})},
       {tcp(0, c1, 7000), tcp(0, c2, 5000), rotate(0, {T(7100), T(8100)}), tcp(1, c1, 8000),
        tcp(2, c1, 7000), tcp(3, c1, 7100), tcp(4, c1, 8100), tcp(5, c2, 6000)},
       {S(c1, "A", 1), S(c2, "B", 1), S(c1, "A", 1), S(c1, "A", 2), O(c1, "A"),
        S(c2, "B", 2), O(c2, "B")}},

      {"DisabledDoorMatchesNothing",
       {abc(), door("B", {T(5000), T(6000)})},
       {tcp(0, c1, 7000), disable(0), tcp(1, c1, 8000), tcp(2, c1, 7000), tcp(3, c1, 5000),
        tcp(4, c1, 6000)},
       {S(c1, "A", 1), S(c1, "B", 1), S(c1, "B", 2), O(c1, "B")}},
  };
  return all;
}

void PrintTo(const Scenario& sc, std::ostream* os) { *os << sc.name; }

class EngineScenario : public ::testing::TestWithParam<Scenario> {};

TEST_P(EngineScenario, EmitsExactlyTheExpectedEvents) {
  const Scenario& sc = GetParam();
  Engine engine(sc.doors, 64);
  Recorder rec(engine);
  run_steps(engine, sc.steps, rec);
  EXPECT_EQ(rec.events, sc.expected);
  const auto integrity = engine.check_integrity();
  EXPECT_TRUE(integrity.ok()) << (integrity.ok() ? "" : integrity.error().message);
}

INSTANTIATE_TEST_SUITE_P(Knockd, EngineScenario, ::testing::ValuesIn(scenarios()),
                         [](const ::testing::TestParamInfo<Scenario>& param_info) {
                           return param_info.param.name;
                         });

void expect_integrity(const Engine& engine) {
  const auto r = engine.check_integrity();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
}

Observation syn(uint32_t src_v4, uint16_t port, TimeNs now) {
  Observation o;
  o.src = IpAddr::v4(src_v4);
  o.dst = IpAddr::v4(0xC0000201);  // kGw, built without parsing: no allocation in loops
  o.proto = Proto::tcp;
  o.dport = port;
  o.tcp_flags = SYN;
  o.now = now;
  return o;
}

TEST(Engine, CountsOutcomes) {
  Engine engine({abc(5), door("B", {T(5000), T(6000)})}, 16);
  NullSink sink;
  engine.on_packet(syn(1, 22, at(0)), sink);      // ignored: in no door
  engine.on_packet(syn(1, 7000, at(0)), sink);    // started
  engine.on_packet(syn(1, 5000, at(1)), sink);    // invalidated
  engine.on_packet(syn(2, 7000, at(1)), sink);    // started
  engine.on_packet(syn(2, 8000, at(2)), sink);    // stage 2
  engine.on_packet(syn(3, 5000, at(2)), sink);    // started
  engine.on_packet(syn(3, 6000, at(3)), sink);    // open
  engine.expire(at(10), sink);                    // source 2 times out
  const Stats& st = engine.stats();
  EXPECT_EQ(st.packets, 7u);
  EXPECT_EQ(st.ignored, 1u);
  EXPECT_EQ(st.started, 3u);
  EXPECT_EQ(st.stages, 5u);
  EXPECT_EQ(st.opens, 1u);
  EXPECT_EQ(st.invalidated, 1u);
  EXPECT_EQ(st.timeouts, 1u);
  EXPECT_EQ(st.tracked_sources, 0u);
  EXPECT_EQ(st.live_attempts, 0u);
  expect_integrity(engine);
}

TEST(Engine, NextDeadlineIsTheEarliestAcrossTimeouts) {
  Engine engine({abc(10), door("B", {T(5000), T(6000)}, 3)}, 16);
  NullSink sink;
  EXPECT_FALSE(engine.next_deadline());
  engine.on_packet(syn(1, 7000, at(1)), sink);
  EXPECT_EQ(engine.next_deadline(), at(11));
  engine.on_packet(syn(2, 5000, at(2)), sink);
  EXPECT_EQ(engine.next_deadline(), at(5));
  engine.expire(at(5), sink);
  EXPECT_EQ(sink.timeouts, 1u);
  EXPECT_EQ(engine.next_deadline(), at(11));
  engine.expire(at(11), sink);
  EXPECT_FALSE(engine.next_deadline());
}

TEST(Engine, AttemptSlotsFollowTheLargestGroupSharingAFirstKnock) {
  EXPECT_EQ(Engine({abc(), door("B", {T(5000), T(6000)})}, 8).attempts_per_source(), 1u);
  EXPECT_EQ(Engine({abc(), door("B", {T(7000), T(6000)}), door("C", {T(7000), T(1)}),
                    door("D", {T(5000), T(2)})},
                   8)
                .attempts_per_source(),
            3u);
  // Per target one start's worth, plus the untargeted doors' largest group.
  EXPECT_EQ(Engine({with_target(abc(), "192.0.2.1"), with_target(abc(), "192.0.2.2"),
                    door("C", {T(5000), T(6000)})},
                   8)
                .attempts_per_source(),
            3u);
}

TEST(Engine, DoorsBeyondTheSlotCapStartNothing) {
  std::vector<DoorSpec> doors;
  const size_t count = Engine::kMaxAttemptSlots + 6;
  for (size_t d = 0; d < count; ++d) {
    doors.push_back(door("D" + std::to_string(d), {T(7000), T(static_cast<uint16_t>(20000 + d))}));
  }
  Engine engine(doors, 4);
  EXPECT_EQ(engine.attempts_per_source(), Engine::kMaxAttemptSlots);
  NullSink sink;
  engine.on_packet(syn(1, 7000, at(0)), sink);
  EXPECT_EQ(sink.stages, Engine::kMaxAttemptSlots);
  EXPECT_EQ(engine.stats().dropped, 6u);
  engine.on_packet(syn(1, 20000 + Engine::kMaxAttemptSlots - 1, at(1)), sink);
  EXPECT_EQ(sink.opens, 1u);
  expect_integrity(engine);
}

TEST(Engine, ReloadGrowsAttemptSlotsKeepingProgress) {
  Engine engine({abc()}, 8);
  Recorder rec(engine);
  engine.on_packet(syn(1, 7000, at(0)), rec);
  engine.on_packet(syn(1, 8000, at(1)), rec);
  engine.update_doors({abc(), door("B", {T(7000), T(5000)}), door("C", {T(7000), T(6000)})});
  EXPECT_EQ(engine.attempts_per_source(), 3u);
  expect_integrity(engine);
  engine.on_packet(syn(1, 9000, at(2)), rec);
  engine.on_packet(syn(2, 7000, at(3)), rec);
  engine.on_packet(syn(2, 6000, at(4)), rec);
  const std::vector<std::string> expected = {
      S("0.0.0.1", "A", 1), S("0.0.0.1", "A", 2), S("0.0.0.1", "A", 3), O("0.0.0.1", "A"),
      S("0.0.0.2", "A", 1), S("0.0.0.2", "B", 1), S("0.0.0.2", "C", 1), S("0.0.0.2", "C", 2),
      O("0.0.0.2", "C")};
  EXPECT_EQ(rec.events, expected);
  expect_integrity(engine);
}

TEST(Engine, RotationToASharedFirstKnockGrowsSlots) {
  Engine engine({abc(), door("B", {T(5000), T(6000)})}, 8);
  NullSink sink;
  engine.on_packet(syn(1, 7000, at(0)), sink);
  engine.set_sequence(1, {T(7000), T(6000)});
  EXPECT_EQ(engine.attempts_per_source(), 2u);
  engine.on_packet(syn(1, 8000, at(1)), sink);  // source 1 keeps A's progress
  engine.on_packet(syn(1, 9000, at(2)), sink);
  EXPECT_EQ(sink.opens, 1u);
  engine.on_packet(syn(2, 7000, at(3)), sink);
  engine.on_packet(syn(2, 6000, at(4)), sink);
  EXPECT_EQ(sink.opens, 2u);
  expect_integrity(engine);
}

TEST(Engine, InactiveDoorsAreSkipped) {
  Engine engine({door("empty", {}), abc()}, 8);
  EXPECT_FALSE(engine.door_active(0));
  EXPECT_TRUE(engine.door_active(1));
  EXPECT_FALSE(engine.door_active(2));
  engine.disable_door(1);
  EXPECT_FALSE(engine.door_active(1));
  NullSink sink;
  engine.on_packet(syn(1, 7000, at(0)), sink);
  EXPECT_EQ(engine.stats().ignored, 1u);
  engine.update_doors({abc()});  // a reload brings the door back
  EXPECT_TRUE(engine.door_active(0));
  engine.set_sequence(7, {T(1)});  // out of range: no effect
  engine.disable_door(7);
  expect_integrity(engine);
}

// ----- Bounded tracking under a spoofed-source flood ------------------------------------

constexpr size_t kMax = 64;
constexpr uint32_t kLegit = 0xC6336401;  // 198.51.100.1
constexpr uint32_t kFloodBase = 0x0A000000;

TEST(EngineFlood, SourcePastStageOneSurvivesTenfoldFlood) {
  Engine engine({abc()}, kMax);
  NullSink sink;
  TimeNs t = 0;
  engine.on_packet(syn(kLegit, 7000, t), sink);
  engine.on_packet(syn(kLegit, 8000, ++t), sink);
  for (uint32_t i = 0; i < 10 * kMax; ++i) engine.on_packet(syn(kFloodBase + i, 7000, ++t), sink);
  EXPECT_EQ(engine.stats().tracked_sources, kMax);
  EXPECT_EQ(engine.stats().evicted_protected, 0u);
  EXPECT_EQ(engine.stats().evicted_probation, 10 * kMax - (kMax - 1));
  engine.on_packet(syn(kLegit, 9000, ++t), sink);
  EXPECT_EQ(sink.opens, 1u);
  expect_integrity(engine);
}

// A stage-1 source goes only after every older stage-1 source went: with `older` sources
// ahead of it and kMax slots, it survives exactly kMax - 1 newer arrivals.
TEST(EngineFlood, StageOneSourceIsEvictedOnlyAfterAllOlderOnes) {
  for (const size_t newer : {kMax - 1, kMax}) {
    Engine engine({abc()}, kMax);
    NullSink sink;
    TimeNs t = 0;
    const uint32_t older = 10;
    for (uint32_t i = 0; i < older; ++i) engine.on_packet(syn(kFloodBase + i, 7000, ++t), sink);
    engine.on_packet(syn(kLegit, 7000, ++t), sink);
    for (uint32_t i = 0; i < newer; ++i) {
      engine.on_packet(syn(kFloodBase + older + i, 7000, ++t), sink);
    }
    engine.on_packet(syn(kLegit, 8000, ++t), sink);
    engine.on_packet(syn(kLegit, 9000, ++t), sink);
    EXPECT_EQ(sink.opens, newer < kMax ? 1u : 0u) << "newer arrivals: " << newer;
    expect_integrity(engine);
  }
}

TEST(EngineFlood, ProtectedSourcesGoOldestProgressFirstWhenNothingElseIsLeft) {
  Engine engine({abc()}, kMax);
  NullSink sink;
  TimeNs t = 0;
  for (uint32_t i = 0; i < kMax; ++i) engine.on_packet(syn(kFloodBase + i, 7000, ++t), sink);
  for (uint32_t i = 0; i < kMax; ++i) engine.on_packet(syn(kFloodBase + i, 8000, ++t), sink);
  // Every slot is past stage 1. Source 0 was promoted first; touching it again would not
  // move it (only progress does), so it is the oldest and goes first.
  engine.on_packet(syn(kLegit, 7000, ++t), sink);
  EXPECT_EQ(engine.stats().evicted_protected, 1u);
  engine.on_packet(syn(kFloodBase + 0, 9000, ++t), sink);
  EXPECT_EQ(sink.opens, 0u);
  engine.on_packet(syn(kFloodBase + 1, 9000, ++t), sink);
  EXPECT_EQ(sink.opens, 1u);
  // The newcomer is the only probation source: the next newcomer evicts it first.
  engine.on_packet(syn(kLegit + 1, 7000, ++t), sink);
  EXPECT_EQ(engine.stats().evicted_probation, 0u);  // a slot was free after the open
  engine.on_packet(syn(kLegit + 2, 7000, ++t), sink);
  EXPECT_EQ(engine.stats().evicted_probation, 1u);
  engine.on_packet(syn(kLegit, 8000, ++t), sink);
  EXPECT_EQ(sink.stages, 2 * kMax + 1 + 1 + 1 + 1);  // no stage 2 for the evicted one
  expect_integrity(engine);
}

TEST(EngineFlood, ProgressMovesAProtectedSourceToTheBack) {
  Engine engine({door("A", {T(7000), T(8000), T(9000), T(10000)})}, 4);
  NullSink sink;
  TimeNs t = 0;
  for (uint32_t i = 0; i < 4; ++i) engine.on_packet(syn(kFloodBase + i, 7000, ++t), sink);
  for (uint32_t i = 0; i < 4; ++i) engine.on_packet(syn(kFloodBase + i, 8000, ++t), sink);
  engine.on_packet(syn(kFloodBase + 0, 9000, ++t), sink);  // source 0 progresses: now newest
  engine.on_packet(syn(kLegit, 7000, ++t), sink);          // evicts source 1
  engine.on_packet(syn(kFloodBase + 0, 10000, ++t), sink);
  engine.on_packet(syn(kFloodBase + 1, 9000, ++t), sink);
  EXPECT_EQ(sink.opens, 1u);
  EXPECT_EQ(engine.stats().evicted_protected, 1u);
  EXPECT_EQ(sink.stages, 4u + 4u + 1u + 1u + 1u);
  expect_integrity(engine);
}

TEST(EngineFlood, MemoryIsBoundedAndFlatUnderOneMillionSources) {
  std::vector<DoorSpec> doors;
  for (uint16_t d = 0; d < 10; ++d) {
    doors.push_back(door("D" + std::to_string(d),
                         {T(static_cast<uint16_t>(10000 + d)), T(static_cast<uint16_t>(20000 + d)),
                          T(static_cast<uint16_t>(30000 + d))}));
  }
  Engine engine(doors, 4096);
  const size_t before = engine.memory_bytes();
  EXPECT_LE(before / engine.max_sources(), 256u);
  NullSink sink;
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  g_allocations = 0;
  g_count_allocations = true;
  for (uint32_t i = 0; i < 1'000'000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const auto port = static_cast<uint16_t>(10000 + (x >> 40) % 10);
    engine.on_packet(syn(static_cast<uint32_t>(x), port, TimeNs{i} * 1000), sink);
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 0u);
  EXPECT_EQ(engine.memory_bytes(), before);
  EXPECT_EQ(engine.stats().tracked_sources, 4096u);
  EXPECT_GT(engine.stats().evicted_probation, 990'000u);
  expect_integrity(engine);
}

TEST(EngineFlood, BytesPerSourceStayWithinBudget) {
  // 10 doors with distinct first knocks (one attempt slot), and up to 8 doors sharing one.
  for (size_t shared = 1; shared <= 8; ++shared) {
    std::vector<DoorSpec> doors;
    for (uint16_t d = 0; d < 10; ++d) {
      const auto first = static_cast<uint16_t>(d < shared ? 10000 : 10000 + d);
      doors.push_back(door("D" + std::to_string(d), {T(first), T(static_cast<uint16_t>(20000 + d))}));
    }
    for (size_t max : {size_t{1000}, size_t{65536}, size_t{1} << 20}) {
      if (max > 65536 && shared != 1 && shared != 8) continue;  // the extremes suffice
      Engine engine(doors, max);
      EXPECT_EQ(engine.attempts_per_source(), shared);
      EXPECT_LE(engine.memory_bytes() / max, 256u) << shared << " shared, max " << max;
    }
  }
}

TEST(Engine, PacketPathDoesNotAllocateWithManyAttemptsPerSource) {
  Engine engine({abc(), door("B", {T(7000), T(5000)}), door("C", {T(7000), T(6000)})}, 8);
  NullSink sink;
  engine.on_packet(syn(1, 7000, at(0)), sink);  // warm: nothing lazily allocated either way
  g_allocations = 0;
  g_count_allocations = true;
  for (uint32_t i = 0; i < 1000; ++i) {
    engine.on_packet(syn(i % 20, i % 3 == 0 ? 7000 : (i % 3 == 1 ? 8000 : 6000), at(i)), sink);
    engine.expire(at(i), sink);
    (void)engine.next_deadline();
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 0u);
  expect_integrity(engine);
}

TEST(Engine, BatchedPacketsGiveTheSameEventsAsOneByOne) {
  const std::vector<DoorSpec> doors = {abc(1), door("B", {T(7000), U(5000)}),
                                       tolerant(door("C", {T(8000), T(8000), T(9000)}))};
  Engine single(doors, 32, 42);
  Engine batched(doors, 32, 42);
  Recorder single_events(single);
  Recorder batched_events(batched);
  std::vector<Observation> stream;
  uint64_t x = 12345;
  const uint16_t ports[] = {7000, 8000, 9000, 5000, 22};
  for (uint32_t i = 0; i < 20'000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    Observation o = syn(static_cast<uint32_t>(x >> 58), ports[(x >> 40) % 5], at(i * 0.001));
    if ((x >> 20) % 4 == 0) o.proto = Proto::udp;
    stream.push_back(o);
  }
  for (const Observation& o : stream) single.on_packet(o, single_events);
  for (size_t i = 0; i < stream.size(); i += 100) {
    batched.on_packets(stream.data() + i, std::min<size_t>(100, stream.size() - i), batched_events);
  }
  EXPECT_EQ(single_events.events, batched_events.events);
  EXPECT_GT(single.stats().opens, 10u);
  EXPECT_GT(single.stats().evicted_probation, 0u);
  expect_integrity(batched);
}

TEST(Engine, ClampsMaxSources) {
  Engine engine({abc()}, 0);
  EXPECT_EQ(engine.max_sources(), 1u);
  NullSink sink;
  engine.on_packet(syn(1, 7000, at(0)), sink);
  engine.on_packet(syn(2, 7000, at(1)), sink);
  engine.on_packet(syn(2, 8000, at(2)), sink);
  engine.on_packet(syn(2, 9000, at(3)), sink);
  EXPECT_EQ(sink.opens, 1u);
  EXPECT_EQ(engine.stats().evicted_probation, 1u);
  expect_integrity(engine);
}

}  // namespace
}  // namespace kg::knock
