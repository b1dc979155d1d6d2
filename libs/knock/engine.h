// The knock engine: knockd 0.8's sequence matching (reference/knockd-behaviour.md §2),
// without knockd's defects, in bounded memory. Pure logic: no I/O, no clock, no logging.
// The caller passes packets and time and receives events through an EventSink.
//
// Matching, for a packet from S to D (proto, dport, tcp flags) at time `now`:
//  1. attempts with now - start >= seq_timeout are gone (Timeout events, emitted on time
//     by expire(); on_packet runs expire(now) first);
//  2. a packet relevant to no active door (target, knock and tcpflags) is ignored;
//  3. every live attempt of S whose door's target matches D: a TCP packet failing the
//     door's tcpflags is ignored for it; the door's next knock advances it (Stage n, and
//     Open after the last knock); with tolerate_duplicates, a repeat of the knock just
//     matched is ignored; anything else invalidates it;
//  4. only if S had no such attempt: every door whose target, first knock and tcpflags
//     match starts an attempt at stage 1.
//
// Bounded tracking (segmented eviction): at most max_sources sources are tracked, all
// storage is allocated at construction. A source is tracked while it has a live attempt.
// Sources live in one of two FIFO segments:
//  - probation: every live attempt is at stage 1 (what a spoofed-source flood produces,
//    one packet per fake source);
//  - protected: some live attempt is at stage >= 2 (moved to the tail on each advance).
// When a new source needs a slot and none is free, the oldest probation source is
// evicted; a protected source is evicted only when probation is empty. Guarantees:
//  - a flood of first knocks from new sources never evicts a source past stage 1;
//  - a stage-1 source is evicted only after every probation source older than it was.
//
// Threading: none; one Engine per thread. EventSink callbacks must not call back into
// the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/addr.h"
#include "common/hash.h"
#include "common/knock.h"
#include "common/result.h"
#include "knock/flat_array.h"

namespace kg::knock {

using TimeNs = int64_t;  // the caller's monotonic clock, nanoseconds
inline constexpr TimeNs kNanosPerSecond = 1'000'000'000;

struct DoorSpec {
  std::string name;
  std::vector<Knock> sequence;
  std::optional<IpAddr> target;  // knockd `Target`: only packets to this address count
  TcpFlagsTest tcpflags;
  int seq_timeout_s = 25;  // measured from the first knock; 0 = multi-knock never completes
  bool tolerate_duplicates = false;  // a repeat of the knock just matched is not an error

  // What update_doors() compares to decide whether an in-progress attempt survives.
  bool same_sequence_rules(const DoorSpec& other) const {
    return name == other.name && sequence == other.sequence && target == other.target &&
           tcpflags == other.tcpflags && seq_timeout_s == other.seq_timeout_s;
  }
};

struct Observation {
  IpAddr src;
  IpAddr dst;
  Proto proto = Proto::tcp;
  uint16_t dport = 0;
  uint8_t tcp_flags = 0;  // ignored for UDP
  TimeNs now = 0;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // `stage` counts the knocks matched so far (1 at the first knock).
  virtual void stage(const IpAddr& source, size_t door, int stage) = 0;
  // Follows the stage event of the last knock; the attempt is over.
  virtual void open(const IpAddr& source, size_t door) = 0;
  // The sequence timed out at `stage`; the attempt is over.
  virtual void timeout(const IpAddr& source, size_t door, int stage) = 0;
};

struct Stats {
  uint64_t packets = 0;             // on_packet calls
  uint64_t ignored = 0;             // packets relevant to no active door
  uint64_t started = 0;             // attempts started (1-knock doors included)
  uint64_t stages = 0;              // stage events
  uint64_t opens = 0;               // completed attempts
  uint64_t timeouts = 0;            // expired attempts
  uint64_t invalidated = 0;         // attempts broken by a wrong knock
  uint64_t dropped = 0;             // dropped by update_doors/set_sequence/disable_door,
                                    // or not stored for lack of a slot (kMaxAttemptSlots)
  uint64_t evicted_attempts = 0;    // attempts lost with an evicted source
  uint64_t evicted_probation = 0;   // sources evicted at stage 1
  uint64_t evicted_protected = 0;   // sources evicted past stage 1
  uint64_t duplicates_ignored = 0;  // tolerated repeats of the last-matched knock
  size_t tracked_sources = 0;
  size_t live_attempts = 0;
  // started == opens + timeouts + invalidated + dropped + evicted_attempts + live_attempts
};

class Engine {
 public:
  // Sequences longer than this cannot be tracked; such a door is inactive.
  static constexpr size_t kMaxSequenceLength = 0xFFFE;
  // Doors beyond this index are inactive (attempts store the door in 16 bits).
  static constexpr size_t kMaxDoors = 0xFFFE;
  // Attempt slots per source are capped here. Only a config with more doors sharing one
  // first knock than this can hit the cap; the doors beyond it then start no attempt
  // (counted in Stats::dropped).
  static constexpr size_t kMaxAttemptSlots = 64;
  // Indices are 32-bit (sources x slots < 2^31); max_sources is clamped to
  // [1, kMaxSources].
  static constexpr size_t kMaxSources = size_t{1} << 25;

  // Allocates everything the packet path will ever use. `hash_key` is for reproducible
  // fuzzing; production code keeps the per-process random key.
  Engine(std::vector<DoorSpec> doors, size_t max_sources,
         uint64_t hash_key = kg::process_hash_key());
  Engine(Engine&&) noexcept = default;
  Engine& operator=(Engine&&) noexcept = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Expires due attempts, then matches the packet. O(1) expected, no allocation.
  // Time is treated as monotonic: an earlier `now` than seen before counts as the latest.
  void on_packet(const Observation& packet, EventSink& sink);
  // The same as on_packet() for each packet in order, faster on large tables: it fetches
  // the table slots of packets a few places ahead while it works on the current one.
  void on_packets(const Observation* packets, size_t count, EventSink& sink);
  // Emits Timeout for every attempt whose deadline (start + seq_timeout) is <= now.
  // O(number of distinct timeouts + expired).
  void expire(TimeNs now, EventSink& sink);
  // Earliest deadline of a live attempt: arm a timer for it and call expire().
  std::optional<TimeNs> next_deadline() const;

  // Reload (SIGHUP): attempts of doors whose same_sequence_rules() match a door of the new
  // set are kept (doors pair up in order when several are identical); the rest are dropped.
  // These three walk every source record (O(max_sources)) and allocate only if the doors
  // now need more attempt slots per source; not for the packet path.
  void update_doors(std::vector<DoorSpec> doors);
  // One-time sequence rotation: the door's attempts are dropped.
  void set_sequence(size_t door, std::vector<Knock> knocks);
  // The door stops matching (one-time sequences ran out); its attempts are dropped.
  void disable_door(size_t door);

  bool door_active(size_t door) const;
  const std::vector<DoorSpec>& doors() const { return doors_; }
  const Stats& stats() const { return stats_; }
  size_t max_sources() const { return max_sources_; }
  size_t attempts_per_source() const { return attempt_slots_; }
  // Every byte this engine owns: tables, per-source records, attempt slots, doors.
  size_t memory_bytes() const;

  // Walks every structure and checks its invariants (for tests and fuzzing). O(size).
  Result<Ok> check_integrity() const;

 private:
  static constexpr uint32_t kNil = 0xFFFFFFFFu;
  static constexpr uint16_t kNoDoor = 0xFFFF;
  enum Segment : uint8_t { kFree = 0, kProbation = 1, kProtected = 2 };

  // One tracked source: 32 bytes, plus attempt_slots_ attempts and its hash slots.
  struct Source {
    IpAddr addr;
    uint8_t segment = kFree;
    uint16_t live = 0;       // live attempts among this source's slots
    uint32_t hash = 0;       // low half of the keyed hash: finds its table slot, no rehash
    uint32_t prev = 0;       // segment list; free list uses next only
    uint32_t next = 0;
  };
  // One attempt: 24 bytes. Free when door == kNoDoor.
  struct Attempt {
    TimeNs deadline = 0;     // start + seq_timeout
    uint32_t prev = 0;       // FIFO of its timeout class, in deadline order
    uint32_t next = 0;
    uint16_t door = 0;
    uint16_t stage = 0;      // knocks matched: 1 .. sequence length - 1 while live
  };
  struct Slot {
    uint32_t source;         // kNil when empty
    uint32_t hash;           // low bits of the keyed hash: home bucket and quick compare
  };
  // Attempts of all doors with one seq_timeout: starts are monotonic, so are deadlines.
  struct TimeoutClass {
    TimeNs timeout = 0;
    uint32_t head = 0;
    uint32_t tail = 0;
  };
  struct KeyEntry {
    uint16_t door;
    bool first;              // the door's first knock
  };
  struct KeyBucket {
    uint32_t key;            // knock key + 1, 0 when empty
    uint32_t begin;          // range in key_entries_
    uint32_t count;
  };
  struct DoorState {
    bool enabled = true;     // false after disable_door()
    bool active = false;     // enabled and a trackable, non-empty sequence
    uint32_t timeout_class = 0;
  };

  void configure(const std::vector<uint32_t>& attempt_door_map);
  void rebuild_door_index();
  size_t required_attempt_slots() const;
  bool relevant_and_starters(const Observation& packet, uint32_t key, size_t& starters);

  void prefetch_next_victim() const;
  uint32_t find_source(const IpAddr& addr, uint64_t hash) const;
  void table_insert(uint32_t source, uint64_t hash);
  void table_erase(uint32_t source);
  uint32_t allocate_source(const IpAddr& addr, uint64_t hash);
  void evict_one();
  void release_source(uint32_t source);
  void segment_append(uint32_t source, uint8_t segment);
  void segment_unlink(uint32_t source);
  void refresh_segment(uint32_t source, bool advanced);

  bool add_attempt(uint32_t source, uint16_t door, TimeNs now);
  void remove_attempt(uint32_t attempt);
  void class_append(uint32_t cls, uint32_t attempt);
  void class_unlink(uint32_t cls, uint32_t attempt);
  size_t sorted_attempts(uint32_t source, uint32_t* out) const;

  std::vector<DoorSpec> doors_;
  std::vector<DoorState> door_state_;
  std::vector<TimeoutClass> classes_;
  std::vector<KeyEntry> key_entries_;  // (door, is first knock) grouped by knock
  std::vector<KeyBucket> key_table_;   // open-addressed: knock -> range of key_entries_
  uint32_t key_mask_ = 0;

  size_t max_sources_ = 0;
  size_t attempt_slots_ = 1;  // per source: the most attempts one source can hold at once
  uint64_t hash_key_ = 0;
  FlatArray<Slot> table_;       // open addressing, load <= 0.5, backward-shift deletion
  uint64_t table_mask_ = 0;
  FlatArray<Source> sources_;
  FlatArray<Attempt> attempts_;  // attempt_slots_ per source, index = source*slots + j
  uint32_t free_head_ = 0;         // free source records, linked through Source::next
  uint32_t seg_head_[3] = {};
  uint32_t seg_tail_[3] = {};

  std::vector<uint16_t> starters_;     // scratch: doors a packet starts
  std::vector<uint32_t> order_;        // scratch: a source's attempts in door order
  TimeNs last_now_ = INT64_MIN;
  Stats stats_;
};

}  // namespace kg::knock
