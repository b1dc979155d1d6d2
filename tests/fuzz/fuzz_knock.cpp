// Fuzzes the knock engine with random door sets and a timed stream of packets and control
// calls. Two engines see the same stream:
//  - a roomy one (more slots than the input can name sources) must emit exactly what a
//    naive, obviously-correct model of knockd's rules emits, and never evict;
//  - a tight one (1..8 sources) must keep its invariants under constant eviction.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <tuple>
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

constexpr size_t kSources = 16;   // distinct source addresses the input can use
constexpr size_t kRoomy = 64;     // > kSources: the model engine never evicts

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_knock: %s\n", what);
  std::abort();
}

struct Event {
  char kind;  // 's'tage, 'o'pen, 't'imeout
  IpAddr src;
  size_t door;
  int stage;
  friend bool operator==(const Event& a, const Event& b) {
    return a.kind == b.kind && a.src == b.src && a.door == b.door && a.stage == b.stage;
  }
  friend bool operator<(const Event& a, const Event& b) {
    return std::tie(a.kind, a.src, a.door, a.stage) < std::tie(b.kind, b.src, b.door, b.stage);
  }
};

class Collect : public EventSink {
 public:
  void stage(const IpAddr& s, size_t d, int n) override { events.push_back({'s', s, d, n}); }
  void open(const IpAddr& s, size_t d) override { events.push_back({'o', s, d, 0}); }
  void timeout(const IpAddr& s, size_t d, int n) override { events.push_back({'t', s, d, n}); }
  std::vector<Event> events;
};

// knockd's rules, written the plain way: a list of attempts scanned for every packet.
class Model {
 public:
  explicit Model(std::vector<DoorSpec> doors) { reset_doors(std::move(doors)); }

  void expire(TimeNs now, std::vector<Event>& out) {
    now_ = std::max(now_, now);
    for (size_t i = 0; i < attempts_.size();) {
      if (attempts_[i].deadline <= now_) {
        out.push_back({'t', attempts_[i].src, attempts_[i].door, attempts_[i].stage});
        attempts_.erase(attempts_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }

  void packet(const Observation& p, std::vector<Event>& out) {
    expire(p.now, out);
    const Knock knock{p.proto, p.dport};
    bool relevant = false;
    for (size_t d = 0; d < doors_.size(); ++d) {
      if (!active(d) || !target_ok(d, p) || !flags_ok(d, p)) continue;
      const auto& seq = doors_[d].sequence;
      if (std::find(seq.begin(), seq.end(), knock) != seq.end()) relevant = true;
    }
    if (!relevant) return;

    std::vector<size_t> mine;
    for (size_t i = 0; i < attempts_.size(); ++i) {
      if (attempts_[i].src == p.src) mine.push_back(i);
    }
    std::sort(mine.begin(), mine.end(),
              [&](size_t a, size_t b) { return attempts_[a].door < attempts_[b].door; });
    bool had = false;
    std::vector<size_t> finished;
    for (size_t i : mine) {
      Attempt& a = attempts_[i];
      const DoorSpec& door = doors_[a.door];
      if (!target_ok(a.door, p)) continue;
      had = true;
      if (!flags_ok(a.door, p)) continue;
      if (door.sequence[static_cast<size_t>(a.stage)] == knock) {
        ++a.stage;
        out.push_back({'s', p.src, a.door, a.stage});
        if (static_cast<size_t>(a.stage) == door.sequence.size()) {
          out.push_back({'o', p.src, a.door, 0});
          finished.push_back(i);
        }
      } else if (!(door.tolerate_duplicates &&
                   door.sequence[static_cast<size_t>(a.stage - 1)] == knock)) {
        finished.push_back(i);
      }
    }
    std::sort(finished.rbegin(), finished.rend());
    for (size_t i : finished) attempts_.erase(attempts_.begin() + static_cast<std::ptrdiff_t>(i));
    if (had) return;

    for (size_t d = 0; d < doors_.size(); ++d) {
      if (!active(d) || !target_ok(d, p) || !flags_ok(d, p)) continue;
      if (!(doors_[d].sequence.front() == knock)) continue;
      out.push_back({'s', p.src, d, 1});
      if (doors_[d].sequence.size() == 1) {
        out.push_back({'o', p.src, d, 0});
      } else {
        const TimeNs timeout =
            std::max(0, doors_[d].seq_timeout_s) * kg::knock::kNanosPerSecond;
        attempts_.push_back({p.src, d, 1, now_ + timeout});
      }
    }
  }

  void update_doors(std::vector<DoorSpec> doors) {
    std::vector<bool> claimed(doors.size(), false);
    std::vector<size_t> map(doors_.size(), SIZE_MAX);
    for (size_t i = 0; i < doors_.size(); ++i) {
      if (!active(i)) continue;
      for (size_t j = 0; j < doors.size(); ++j) {
        if (!claimed[j] && doors_[i].same_sequence_rules(doors[j])) {
          claimed[j] = true;
          map[i] = j;
          break;
        }
      }
    }
    std::vector<Attempt> kept;
    for (Attempt a : attempts_) {
      if (map[a.door] == SIZE_MAX) continue;
      a.door = map[a.door];
      kept.push_back(a);
    }
    attempts_ = kept;
    reset_doors(std::move(doors));
  }

  void set_sequence(size_t door, std::vector<Knock> knocks) {
    if (door >= doors_.size()) return;
    doors_[door].sequence = std::move(knocks);
    drop(door);
  }

  void disable_door(size_t door) {
    if (door >= doors_.size()) return;
    enabled_[door] = false;
    drop(door);
  }

  size_t live() const { return attempts_.size(); }

 private:
  struct Attempt {
    IpAddr src;
    size_t door;
    int stage;
    TimeNs deadline;
  };

  void reset_doors(std::vector<DoorSpec> doors) {
    doors_ = std::move(doors);
    enabled_.assign(doors_.size(), true);
  }
  void drop(size_t door) {
    attempts_.erase(std::remove_if(attempts_.begin(), attempts_.end(),
                                   [&](const Attempt& a) { return a.door == door; }),
                    attempts_.end());
  }
  bool active(size_t d) const { return enabled_[d] && !doors_[d].sequence.empty(); }
  bool target_ok(size_t d, const Observation& p) const {
    return !doors_[d].target || *doors_[d].target == p.dst;
  }
  bool flags_ok(size_t d, const Observation& p) const {
    return p.proto == Proto::udp || doors_[d].tcpflags.matches(p.tcp_flags);
  }

  std::vector<DoorSpec> doors_;
  std::vector<bool> enabled_;
  std::vector<Attempt> attempts_;
  TimeNs now_ = INT64_MIN;
};

IpAddr source_addr(size_t i) {
  if (i % 4 == 3) {
    uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
    b[15] = static_cast<uint8_t>(i);
    return IpAddr::v6(b);
  }
  return IpAddr::v4(0xC6336400u + static_cast<uint32_t>(i));
}

IpAddr dest_addr(size_t i) {
  if (i == 2) {
    const uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return IpAddr::v6(b);
  }
  return IpAddr::v4(0xC0000201u + static_cast<uint32_t>(i));
}

Knock knock_from(FuzzedDataProvider& in) {
  // Few distinct knocks, so that sequences overlap and share first knocks often.
  const auto port = static_cast<uint16_t>(1000 + in.ConsumeIntegralInRange<int>(0, 5));
  return Knock{in.ConsumeBool() ? Proto::udp : Proto::tcp, port};
}

std::vector<Knock> sequence_from(FuzzedDataProvider& in) {
  std::vector<Knock> seq(in.ConsumeIntegralInRange<size_t>(0, 4));
  for (Knock& k : seq) k = knock_from(in);
  return seq;
}

std::vector<DoorSpec> doors_from(FuzzedDataProvider& in) {
  std::vector<DoorSpec> doors(in.ConsumeIntegralInRange<size_t>(0, 4));
  for (size_t i = 0; i < doors.size(); ++i) {
    DoorSpec& d = doors[i];
    d.name = std::string(1, static_cast<char>('A' + in.ConsumeIntegralInRange<int>(0, 2)));
    d.sequence = sequence_from(in);
    if (d.sequence.empty()) d.sequence.push_back(knock_from(in));
    const int target = in.ConsumeIntegralInRange<int>(0, 3);
    if (target < 3) d.target = dest_addr(static_cast<size_t>(target));
    // Often just SYN (knockd's usual `tcpflags = syn`), sometimes any mix.
    const unsigned set_mask = in.ConsumeBool() ? 0x02u : 0x3fu;
    d.tcpflags.must_set = static_cast<uint8_t>(in.ConsumeIntegral<uint8_t>() & set_mask);
    d.tcpflags.must_clear =
        static_cast<uint8_t>(in.ConsumeIntegral<uint8_t>() & 0x3fu & ~unsigned{d.tcpflags.must_set});
    d.seq_timeout_s = in.ConsumeIntegralInRange<int>(0, 3);
    d.tolerate_duplicates = in.ConsumeBool();
  }
  return doors;
}

void check(const Engine& engine, size_t max_sources) {
  const auto integrity = engine.check_integrity();
  if (!integrity.ok()) fail(integrity.error().message.c_str());
  if (engine.stats().tracked_sources > max_sources) fail("tracked sources above the bound");
}

void check_events(const Engine& engine, const std::vector<Event>& events) {
  for (const Event& e : events) {
    if (e.door >= engine.doors().size()) fail("event for a door that does not exist");
    const size_t len = engine.doors()[e.door].sequence.size();
    if (e.stage < 0 || static_cast<size_t>(e.stage) > len) fail("stage beyond the sequence");
  }
}

// Stage and open events must match in order; timeouts of one call may come in any order.
void compare(std::vector<Event> got, std::vector<Event> want) {
  auto split = [](std::vector<Event>& all) {
    std::vector<Event> timeouts;
    std::vector<Event> rest;
    for (const Event& e : all) (e.kind == 't' ? timeouts : rest).push_back(e);
    std::sort(timeouts.begin(), timeouts.end());
    return std::make_pair(timeouts, rest);
  };
  if (split(got) != split(want)) fail("engine and model disagree");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const size_t tight_max = in.ConsumeIntegralInRange<size_t>(1, 8);
  const uint64_t hash_key = in.ConsumeIntegral<uint64_t>();
  std::vector<DoorSpec> doors = doors_from(in);

  Engine roomy(doors, kRoomy, hash_key);
  Engine tight(doors, tight_max, hash_key);
  Model model(doors);
  TimeNs now = 0;

  while (in.remaining_bytes() > 0) {
    Collect got;
    Collect tight_got;
    std::vector<Event> want;
    const int op = in.ConsumeIntegralInRange<int>(0, 31);
    if (op < 26) {
      // Mostly packets; time moves in steps around the timeouts (0..3 s).
      now += in.ConsumeIntegralInRange<TimeNs>(0, 1'600'000'000);
      Observation p;
      p.src = source_addr(in.ConsumeIntegralInRange<size_t>(0, kSources - 1));
      p.dst = dest_addr(in.ConsumeIntegralInRange<size_t>(0, 3));
      const Knock k = knock_from(in);
      p.proto = k.proto;
      p.dport = k.port;
      p.tcp_flags = static_cast<uint8_t>(in.ConsumeIntegral<uint8_t>() & 0x3fu);
      p.now = now;
      roomy.on_packet(p, got);
      tight.on_packet(p, tight_got);
      model.packet(p, want);
    } else if (op == 26) {
      // A burst through the batched entry point (the model and the tight engine take the
      // packets one by one): it must not change a thing.
      std::vector<Observation> burst(in.ConsumeIntegralInRange<size_t>(1, 12));
      for (Observation& p : burst) {
        now += in.ConsumeIntegralInRange<TimeNs>(0, 400'000'000);
        p.src = source_addr(in.ConsumeIntegralInRange<size_t>(0, kSources - 1));
        p.dst = dest_addr(in.ConsumeIntegralInRange<size_t>(0, 3));
        const Knock k = knock_from(in);
        p.proto = k.proto;
        p.dport = k.port;
        p.tcp_flags = static_cast<uint8_t>(in.ConsumeIntegral<uint8_t>() & 0x3fu);
        p.now = now;
      }
      roomy.on_packets(burst.data(), burst.size(), got);
      for (const Observation& p : burst) {
        tight.on_packet(p, tight_got);
        model.packet(p, want);
      }
    } else if (op < 28) {
      now += in.ConsumeIntegralInRange<TimeNs>(0, 3'000'000'000);
      roomy.expire(now, got);
      tight.expire(now, tight_got);
      model.expire(now, want);
      const auto deadline = roomy.next_deadline();
      if (deadline && *deadline <= now) fail("a due deadline survived expire()");
    } else if (op == 28) {
      // A reload: either a fresh door set or the same one, which must keep everything.
      std::vector<DoorSpec> next = in.ConsumeBool() ? doors_from(in) : roomy.doors();
      roomy.update_doors(next);
      tight.update_doors(next);
      model.update_doors(next);
    } else if (op == 29) {
      const size_t door = in.ConsumeIntegralInRange<size_t>(0, 4);
      std::vector<Knock> seq = sequence_from(in);
      roomy.set_sequence(door, seq);
      tight.set_sequence(door, seq);
      model.set_sequence(door, seq);
    } else {
      const size_t door = in.ConsumeIntegralInRange<size_t>(0, 4);
      roomy.disable_door(door);
      tight.disable_door(door);
      model.disable_door(door);
    }

    check_events(roomy, got.events);
    check_events(tight, tight_got.events);
    compare(got.events, want);
    check(roomy, kRoomy);
    check(tight, tight_max);
    if (roomy.stats().evicted_probation + roomy.stats().evicted_protected != 0) {
      fail("the roomy engine evicted");
    }
    if (roomy.stats().live_attempts != model.live()) fail("live attempts differ from model");
  }
  return 0;
}
