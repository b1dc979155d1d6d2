#include "knock/engine.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace kg::knock {

namespace {

// One number per (proto, port): the index into relevance tables.
uint32_t knock_key(Proto proto, uint16_t port) {
  return (proto == Proto::udp ? 0x10000u : 0u) | port;
}

uint32_t knock_key(const Knock& k) { return knock_key(k.proto, k.port); }

// Knock keys come from the config, not from packets, but a packet picks which one is
// looked up; multiplicative hashing spreads the config's keys well enough.
uint32_t key_bucket(uint32_t key, uint32_t mask) {
  return static_cast<uint32_t>((uint64_t{key} * 0x9E3779B1u) >> 7) & mask;
}

size_t round_up_pow2(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

TimeNs saturating_add(TimeNs a, TimeNs b) {
  if (b > 0 && a > std::numeric_limits<TimeNs>::max() - b) {
    return std::numeric_limits<TimeNs>::max();
  }
  return a + b;
}

TimeNs timeout_ns(const DoorSpec& door) {
  // A negative timeout cannot come from the config; treat it like knockd's 0.
  return door.seq_timeout_s <= 0 ? 0 : TimeNs{door.seq_timeout_s} * kNanosPerSecond;
}

bool target_matches(const DoorSpec& door, const IpAddr& dst) {
  return !door.target || *door.target == dst;
}

bool flags_pass(const DoorSpec& door, const Observation& p) {
  return p.proto == Proto::udp || door.tcpflags.matches(p.tcp_flags);
}

}  // namespace

Engine::Engine(std::vector<DoorSpec> doors, size_t max_sources, uint64_t hash_key)
    : doors_(std::move(doors)),
      max_sources_(std::clamp<size_t>(max_sources, 1, kMaxSources)),
      hash_key_(hash_key) {
  const size_t table_size = round_up_pow2(2 * max_sources_);
  table_ = FlatArray<Slot>(table_size, Slot{kNil, 0});
  table_mask_ = table_size - 1;

  sources_ = FlatArray<Source>(max_sources_, Source{});
  for (size_t i = 0; i < max_sources_; ++i) {
    sources_[i].next = i + 1 < max_sources_ ? static_cast<uint32_t>(i + 1) : kNil;
  }
  free_head_ = 0;
  for (int seg = 0; seg < 3; ++seg) {
    seg_head_[seg] = kNil;
    seg_tail_[seg] = kNil;
  }

  // No attempts exist yet; configure() sizes the attempt slots from the doors.
  attempt_slots_ = 0;
  configure(std::vector<uint32_t>(doors_.size(), kNil));
}

// ---------------------------------------------------------------------------------------
// Packet path

void Engine::on_packet(const Observation& packet, EventSink& sink) {
  ++stats_.packets;
  // The two table slots this packet most likely touches are random memory: the new
  // source's and, when full, the next victim's. Fetch both now so the misses overlap
  // with each other and with the work before the lookup.
  const uint64_t hash = hash_addr(packet.src, hash_key_);
  __builtin_prefetch(&table_[hash & table_mask_]);
  prefetch_next_victim();
  expire(packet.now, sink);
  const TimeNs now = last_now_;

  const uint32_t key = knock_key(packet.proto, packet.dport);
  size_t starters = 0;
  if (!relevant_and_starters(packet, key, starters)) {
    ++stats_.ignored;
    return;
  }

  const Knock knock{packet.proto, packet.dport};
  uint32_t source = find_source(packet.src, hash);

  if (source != kNil) {
    bool had_attempt = false;
    bool advanced = false;
    const size_t count = sorted_attempts(source, order_.data());
    for (size_t i = 0; i < count; ++i) {
      const uint32_t id = order_[i];
      Attempt& attempt = attempts_[id];
      const uint16_t door_index = attempt.door;
      const DoorSpec& door = doors_[door_index];
      if (!target_matches(door, packet.dst)) continue;
      had_attempt = true;
      if (!flags_pass(door, packet)) continue;  // knockd: ignored for this attempt, no reset

      if (door.sequence[attempt.stage] == knock) {
        ++attempt.stage;
        ++stats_.stages;
        sink.stage(packet.src, door_index, attempt.stage);
        if (attempt.stage == door.sequence.size()) {
          ++stats_.opens;
          sink.open(packet.src, door_index);
          remove_attempt(id);
        } else {
          advanced = true;
        }
      } else if (door.tolerate_duplicates && door.sequence[attempt.stage - 1u] == knock) {
        ++stats_.duplicates_ignored;  // a retransmitted knock, not a wrong one
      } else {
        ++stats_.invalidated;
        remove_attempt(id);
      }
    }
    if (sources_[source].live == 0) {
      release_source(source);
      source = kNil;
    } else {
      refresh_segment(source, advanced);
    }
    // A packet judged by a live attempt never starts a new one (knockd).
    if (had_attempt) return;
  }

  if (starters == 0) return;
  bool needs_storage = false;
  for (size_t i = 0; i < starters; ++i) {
    if (doors_[starters_[i]].sequence.size() > 1) needs_storage = true;
  }
  if (needs_storage && source == kNil) source = allocate_source(packet.src, hash);

  for (size_t i = 0; i < starters; ++i) {
    const uint16_t door_index = starters_[i];
    ++stats_.started;
    if (doors_[door_index].sequence.size() == 1) {
      ++stats_.stages;
      sink.stage(packet.src, door_index, 1);
      ++stats_.opens;
      sink.open(packet.src, door_index);
    } else if (add_attempt(source, door_index, now)) {
      ++stats_.stages;
      sink.stage(packet.src, door_index, 1);
    } else {
      ++stats_.dropped;  // more doors share this first knock than kMaxAttemptSlots
    }
  }
  if (source != kNil && sources_[source].live == 0) release_source(source);
  // The next new source will evict the segment head: start fetching its table slot now,
  // while the caller gets the next packet.
  prefetch_next_victim();
}

void Engine::prefetch_next_victim() const {
  if (free_head_ != kNil) return;
  const uint32_t victim =
      seg_head_[kProbation] != kNil ? seg_head_[kProbation] : seg_head_[kProtected];
  if (victim != kNil) __builtin_prefetch(&table_[sources_[victim].hash & table_mask_]);
}

void Engine::on_packets(const Observation* packets, size_t count, EventSink& sink) {
  // Far enough ahead to cover a memory round trip, near enough to stay in cache.
  constexpr size_t kAhead = 6;
  // The source about kAhead places after the probation head: under a flood, the victim
  // of the packet kAhead later. Only a hint: any index is safe to prefetch from.
  uint32_t victim_ahead = kNil;
  for (size_t i = 0; i < count; ++i) {
    if (i + kAhead < count) {
      const uint64_t hash = hash_addr(packets[i + kAhead].src, hash_key_);
      __builtin_prefetch(&table_[hash & table_mask_]);
    }
    if (free_head_ == kNil) {
      if (victim_ahead == kNil || sources_[victim_ahead].segment != kProbation) {
        victim_ahead = seg_head_[kProbation];
        for (size_t k = 0; k < kAhead && victim_ahead != kNil; ++k) {
          victim_ahead = sources_[victim_ahead].next;
        }
      } else {
        victim_ahead = sources_[victim_ahead].next;
      }
      if (victim_ahead != kNil) {
        __builtin_prefetch(&table_[sources_[victim_ahead].hash & table_mask_]);
      }
    }
    on_packet(packets[i], sink);
  }
}

bool Engine::relevant_and_starters(const Observation& packet, uint32_t key, size_t& starters) {
  uint32_t b = key_bucket(key, key_mask_);
  while (key_table_[b].key != 0 && key_table_[b].key != key + 1) b = (b + 1) & key_mask_;
  const KeyBucket& bucket = key_table_[b];
  if (bucket.key == 0) return false;

  bool relevant = false;
  for (uint32_t i = bucket.begin; i < bucket.begin + bucket.count; ++i) {
    const KeyEntry& entry = key_entries_[i];
    const DoorSpec& door = doors_[entry.door];
    if (!target_matches(door, packet.dst) || !flags_pass(door, packet)) continue;
    relevant = true;
    if (entry.first) starters_[starters++] = entry.door;
  }
  return relevant;
}

void Engine::expire(TimeNs now, EventSink& sink) {
  if (now > last_now_) last_now_ = now;
  now = last_now_;
  for (TimeoutClass& cls : classes_) {
    while (cls.head != kNil && attempts_[cls.head].deadline <= now) {
      const uint32_t id = cls.head;
      const uint32_t source = static_cast<uint32_t>(id / attempt_slots_);
      const IpAddr addr = sources_[source].addr;
      const uint16_t door = attempts_[id].door;
      const int stage = attempts_[id].stage;
      ++stats_.timeouts;
      remove_attempt(id);
      if (sources_[source].live == 0) {
        release_source(source);
      } else {
        refresh_segment(source, false);
      }
      sink.timeout(addr, door, stage);
    }
  }
}

std::optional<TimeNs> Engine::next_deadline() const {
  std::optional<TimeNs> earliest;
  for (const TimeoutClass& cls : classes_) {
    if (cls.head == kNil) continue;
    const TimeNs d = attempts_[cls.head].deadline;
    if (!earliest || d < *earliest) earliest = d;
  }
  return earliest;
}

// ---------------------------------------------------------------------------------------
// Source table: open addressing, linear probing, backward-shift deletion

uint32_t Engine::find_source(const IpAddr& addr, uint64_t hash) const {
  const uint32_t tag = static_cast<uint32_t>(hash);
  uint64_t i = hash & table_mask_;
  for (;;) {
    const Slot& slot = table_[i];
    if (slot.source == kNil) return kNil;
    if (slot.hash == tag && sources_[slot.source].addr == addr) return slot.source;
    i = (i + 1) & table_mask_;
  }
}

void Engine::table_insert(uint32_t source, uint64_t hash) {
  uint64_t i = hash & table_mask_;
  while (table_[i].source != kNil) i = (i + 1) & table_mask_;
  table_[i] = Slot{source, static_cast<uint32_t>(hash)};
}

void Engine::table_erase(uint32_t source) {
  uint64_t hole = sources_[source].hash & table_mask_;
  while (table_[hole].source != source) hole = (hole + 1) & table_mask_;
  // Pull later members of the probe run back into the hole, so lookups never need
  // tombstones and the table never degrades.
  uint64_t j = hole;
  for (;;) {
    j = (j + 1) & table_mask_;
    if (table_[j].source == kNil) break;
    const uint64_t home = table_[j].hash & table_mask_;
    if (((j - home) & table_mask_) >= ((j - hole) & table_mask_)) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = Slot{kNil, 0};
}

uint32_t Engine::allocate_source(const IpAddr& addr, uint64_t hash) {
  if (free_head_ == kNil) evict_one();
  const uint32_t source = free_head_;
  Source& rec = sources_[source];
  free_head_ = rec.next;
  rec.addr = addr;
  rec.hash = static_cast<uint32_t>(hash);
  rec.live = 0;
  table_insert(source, hash);
  segment_append(source, kProbation);
  ++stats_.tracked_sources;
  return source;
}

void Engine::evict_one() {
  const bool from_probation = seg_head_[kProbation] != kNil;
  const uint32_t victim = from_probation ? seg_head_[kProbation] : seg_head_[kProtected];
  ++(from_probation ? stats_.evicted_probation : stats_.evicted_protected);
  const size_t base = size_t{victim} * attempt_slots_;
  for (size_t j = 0; j < attempt_slots_; ++j) {
    if (attempts_[base + j].door == kNoDoor) continue;
    ++stats_.evicted_attempts;
    remove_attempt(static_cast<uint32_t>(base + j));
  }
  release_source(victim);
}

void Engine::release_source(uint32_t source) {
  table_erase(source);
  segment_unlink(source);
  Source& rec = sources_[source];
  rec.segment = kFree;
  rec.next = free_head_;
  free_head_ = source;
  --stats_.tracked_sources;
}

void Engine::segment_append(uint32_t source, uint8_t segment) {
  Source& rec = sources_[source];
  rec.segment = segment;
  rec.next = kNil;
  rec.prev = seg_tail_[segment];
  if (rec.prev == kNil) {
    seg_head_[segment] = source;
  } else {
    sources_[rec.prev].next = source;
  }
  seg_tail_[segment] = source;
}

void Engine::segment_unlink(uint32_t source) {
  Source& rec = sources_[source];
  const uint8_t segment = rec.segment;
  if (rec.prev == kNil) {
    seg_head_[segment] = rec.next;
  } else {
    sources_[rec.prev].next = rec.next;
  }
  if (rec.next == kNil) {
    seg_tail_[segment] = rec.prev;
  } else {
    sources_[rec.next].prev = rec.prev;
  }
}

void Engine::refresh_segment(uint32_t source, bool advanced) {
  const size_t base = size_t{source} * attempt_slots_;
  uint16_t max_stage = 0;
  for (size_t j = 0; j < attempt_slots_; ++j) {
    const Attempt& a = attempts_[base + j];
    if (a.door != kNoDoor) max_stage = std::max(max_stage, a.stage);
  }
  const uint8_t wanted = max_stage >= 2 ? kProtected : kProbation;
  const uint8_t current = sources_[source].segment;
  // Protected is kept in order of last progress, so the least active goes first.
  if (wanted != current || (wanted == kProtected && advanced)) {
    segment_unlink(source);
    segment_append(source, wanted);
  }
}

// ---------------------------------------------------------------------------------------
// Attempts and their timeout FIFOs

bool Engine::add_attempt(uint32_t source, uint16_t door, TimeNs now) {
  const size_t base = size_t{source} * attempt_slots_;
  size_t j = 0;
  while (j < attempt_slots_ && attempts_[base + j].door != kNoDoor) ++j;
  // attempt_slots_ covers every start unless kMaxAttemptSlots capped it.
  if (j == attempt_slots_) return false;
  const uint32_t id = static_cast<uint32_t>(base + j);
  Attempt& a = attempts_[id];
  a.door = door;
  a.stage = 1;
  a.deadline = saturating_add(now, timeout_ns(doors_[door]));
  class_append(door_state_[door].timeout_class, id);
  ++sources_[source].live;
  ++stats_.live_attempts;
  return true;
}

void Engine::remove_attempt(uint32_t id) {
  Attempt& a = attempts_[id];
  class_unlink(door_state_[a.door].timeout_class, id);
  a.door = kNoDoor;
  --sources_[id / attempt_slots_].live;
  --stats_.live_attempts;
}

void Engine::class_append(uint32_t cls, uint32_t id) {
  TimeoutClass& c = classes_[cls];
  Attempt& a = attempts_[id];
  a.next = kNil;
  a.prev = c.tail;
  if (c.tail == kNil) {
    c.head = id;
  } else {
    attempts_[c.tail].next = id;
  }
  c.tail = id;
}

void Engine::class_unlink(uint32_t cls, uint32_t id) {
  TimeoutClass& c = classes_[cls];
  const Attempt& a = attempts_[id];
  if (a.prev == kNil) {
    c.head = a.next;
  } else {
    attempts_[a.prev].next = a.next;
  }
  if (a.next == kNil) {
    c.tail = a.prev;
  } else {
    attempts_[a.next].prev = a.prev;
  }
}

size_t Engine::sorted_attempts(uint32_t source, uint32_t* out) const {
  const size_t base = size_t{source} * attempt_slots_;
  size_t n = 0;
  for (size_t j = 0; j < attempt_slots_; ++j) {
    if (attempts_[base + j].door == kNoDoor) continue;
    // Insertion sort by door: events of one packet come out in door order.
    size_t k = n++;
    const uint32_t id = static_cast<uint32_t>(base + j);
    while (k > 0 && attempts_[out[k - 1]].door > attempts_[id].door) {
      out[k] = out[k - 1];
      --k;
    }
    out[k] = id;
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// Doors: construction, reload, rotation

bool Engine::door_active(size_t door) const {
  return door < door_state_.size() && door_state_[door].active;
}

void Engine::update_doors(std::vector<DoorSpec> doors) {
  // Pair each old door with the first unclaimed identical new door, in order.
  std::vector<uint32_t> map(doors_.size(), kNil);
  std::vector<bool> claimed(doors.size(), false);
  for (size_t i = 0; i < doors_.size(); ++i) {
    if (!door_state_[i].active) continue;
    for (size_t j = 0; j < doors.size() && j < kMaxDoors; ++j) {
      if (!claimed[j] && doors_[i].same_sequence_rules(doors[j])) {
        claimed[j] = true;
        map[i] = static_cast<uint32_t>(j);
        break;
      }
    }
  }
  doors_ = std::move(doors);
  door_state_.assign(doors_.size(), DoorState{});  // a reload re-enables disabled doors
  configure(map);
}

void Engine::set_sequence(size_t door, std::vector<Knock> knocks) {
  if (door >= doors_.size()) return;
  std::vector<uint32_t> map(doors_.size());
  for (size_t i = 0; i < map.size(); ++i) map[i] = static_cast<uint32_t>(i);
  map[door] = kNil;
  doors_[door].sequence = std::move(knocks);
  configure(map);
}

void Engine::disable_door(size_t door) {
  if (door >= doors_.size()) return;
  std::vector<uint32_t> map(doors_.size());
  for (size_t i = 0; i < map.size(); ++i) map[i] = static_cast<uint32_t>(i);
  map[door] = kNil;
  door_state_[door].enabled = false;
  configure(map);
}

size_t Engine::required_attempt_slots() const {
  // Attempts start together only from one packet, and only when the source holds no live
  // attempt of a door that packet could judge (same target, or untargeted). So a source
  // holds at most: for untargeted doors, one start's worth (the largest group sharing a
  // first knock); plus, per distinct target, one start's worth of that target's doors.
  struct Row {
    std::optional<IpAddr> target;
    uint32_t first_key;
  };
  std::vector<Row> rows;
  for (size_t d = 0; d < doors_.size(); ++d) {
    if (!door_state_[d].active) continue;
    rows.push_back(Row{doors_[d].target, knock_key(doors_[d].sequence.front())});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.target != b.target) return a.target < b.target;  // nullopt sorts first
    return a.first_key < b.first_key;
  });
  size_t total = 0;
  size_t i = 0;
  while (i < rows.size()) {
    size_t largest_group = 0;
    size_t j = i;
    while (j < rows.size() && rows[j].target == rows[i].target) {
      size_t k = j;
      while (k < rows.size() && rows[k].target == rows[j].target &&
             rows[k].first_key == rows[j].first_key) {
        ++k;
      }
      largest_group = std::max(largest_group, k - j);
      j = k;
    }
    total += largest_group;
    i = j;
  }
  return std::clamp<size_t>(total, 1, kMaxAttemptSlots);
}

void Engine::configure(const std::vector<uint32_t>& attempt_door_map) {
  door_state_.resize(doors_.size());
  std::vector<TimeNs> timeouts;
  for (size_t d = 0; d < doors_.size(); ++d) {
    DoorState& st = door_state_[d];
    const size_t len = doors_[d].sequence.size();
    st.active = st.enabled && d < kMaxDoors && len > 0 && len <= kMaxSequenceLength;
    if (st.active) timeouts.push_back(timeout_ns(doors_[d]));
  }
  std::sort(timeouts.begin(), timeouts.end());
  timeouts.erase(std::unique(timeouts.begin(), timeouts.end()), timeouts.end());
  classes_.assign(timeouts.size(), TimeoutClass{0, kNil, kNil});
  for (size_t c = 0; c < timeouts.size(); ++c) classes_[c].timeout = timeouts[c];
  for (size_t d = 0; d < doors_.size(); ++d) {
    if (!door_state_[d].active) continue;
    const auto it = std::lower_bound(timeouts.begin(), timeouts.end(), timeout_ns(doors_[d]));
    door_state_[d].timeout_class = static_cast<uint32_t>(it - timeouts.begin());
  }

  // Grow the per-source attempt slots if the doors need more (never shrink: cheap, and
  // keeps a reload from moving memory back and forth).
  const size_t slots = std::max(attempt_slots_, required_attempt_slots());
  if (slots != attempt_slots_) {
    FlatArray<Attempt> grown(max_sources_ * slots, Attempt{0, kNil, kNil, kNoDoor, 0});
    for (size_t s = 0; s < max_sources_; ++s) {
      for (size_t j = 0; j < attempt_slots_; ++j) {
        grown[s * slots + j] = attempts_[s * attempt_slots_ + j];
      }
    }
    attempts_ = std::move(grown);
    attempt_slots_ = slots;
  }

  // Renumber surviving attempts, drop the others; the FIFOs are rebuilt below.
  std::vector<std::pair<TimeNs, uint32_t>> live;
  for (size_t s = 0; s < max_sources_; ++s) {
    if (sources_[s].segment == kFree) continue;
    const uint32_t source = static_cast<uint32_t>(s);
    for (size_t j = 0; j < attempt_slots_; ++j) {
      Attempt& a = attempts_[s * attempt_slots_ + j];
      if (a.door == kNoDoor) continue;
      const uint32_t mapped = a.door < attempt_door_map.size() ? attempt_door_map[a.door] : kNil;
      if (mapped == kNil || !door_state_[mapped].active) {
        a.door = kNoDoor;
        --sources_[s].live;
        --stats_.live_attempts;
        ++stats_.dropped;
      } else {
        a.door = static_cast<uint16_t>(mapped);
        live.emplace_back(a.deadline, static_cast<uint32_t>(s * attempt_slots_ + j));
      }
    }
    if (sources_[s].live == 0) {
      release_source(source);
    } else {
      refresh_segment(source, false);
    }
  }
  std::stable_sort(live.begin(), live.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [deadline, id] : live) {
    class_append(door_state_[attempts_[id].door].timeout_class, id);
  }

  rebuild_door_index();
  starters_.assign(doors_.size(), 0);
  order_.assign(attempt_slots_, 0);
}

void Engine::rebuild_door_index() {
  struct Row {
    uint32_t key;
    uint16_t door;
    bool first;
  };
  std::vector<Row> rows;
  for (size_t d = 0; d < doors_.size(); ++d) {
    if (!door_state_[d].active) continue;
    const auto& seq = doors_[d].sequence;
    for (size_t pos = 0; pos < seq.size(); ++pos) {
      rows.push_back(Row{knock_key(seq[pos]), static_cast<uint16_t>(d), pos == 0});
    }
  }
  // One entry per (knock, door), ordered by door so starts come out in door order.
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.key != b.key) return a.key < b.key;
    if (a.door != b.door) return a.door < b.door;
    return a.first > b.first;
  });
  rows.erase(std::unique(rows.begin(), rows.end(),
                         [](const Row& a, const Row& b) {
                           return a.key == b.key && a.door == b.door;
                         }),
             rows.end());

  size_t distinct = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i == 0 || rows[i].key != rows[i - 1].key) ++distinct;
  }
  const size_t buckets = round_up_pow2(std::max<size_t>(4 * distinct, 8));
  key_table_.assign(buckets, KeyBucket{0, 0, 0});
  key_mask_ = static_cast<uint32_t>(buckets - 1);
  key_entries_.clear();
  key_entries_.reserve(rows.size());
  size_t i = 0;
  while (i < rows.size()) {
    const uint32_t key = rows[i].key;
    const uint32_t begin = static_cast<uint32_t>(key_entries_.size());
    for (; i < rows.size() && rows[i].key == key; ++i) {
      key_entries_.push_back(KeyEntry{rows[i].door, rows[i].first});
    }
    uint32_t b = key_bucket(key, key_mask_);
    while (key_table_[b].key != 0) b = (b + 1) & key_mask_;
    key_table_[b] =
        KeyBucket{key + 1, begin, static_cast<uint32_t>(key_entries_.size()) - begin};
  }
}

// ---------------------------------------------------------------------------------------
// Accounting and self-checks

size_t Engine::memory_bytes() const {
  size_t bytes = sizeof(*this);
  bytes += table_.allocated_bytes();
  bytes += sources_.allocated_bytes();
  bytes += attempts_.allocated_bytes();
  bytes += key_table_.capacity() * sizeof(KeyBucket);
  bytes += key_entries_.capacity() * sizeof(KeyEntry);
  bytes += classes_.capacity() * sizeof(TimeoutClass);
  bytes += door_state_.capacity() * sizeof(DoorState);
  bytes += starters_.capacity() * sizeof(uint16_t);
  bytes += order_.capacity() * sizeof(uint32_t);
  bytes += doors_.capacity() * sizeof(DoorSpec);
  for (const DoorSpec& d : doors_) {
    bytes += d.name.capacity() + d.sequence.capacity() * sizeof(Knock);
  }
  return bytes;
}

Result<Ok> Engine::check_integrity() const {
  auto fail = [](std::string what) { return Result<Ok>(Error{"engine: " + std::move(what)}); };

  size_t listed = 0;
  size_t attempts_seen = 0;
  for (uint8_t seg : {uint8_t{kProbation}, uint8_t{kProtected}}) {
    uint32_t prev = kNil;
    for (uint32_t s = seg_head_[seg]; s != kNil; s = sources_[s].next) {
      if (++listed > max_sources_) return fail("segment list cycle");
      const Source& rec = sources_[s];
      if (rec.segment != seg) return fail("source in the wrong segment list");
      if (rec.prev != prev) return fail("segment back link");
      prev = s;
      const uint64_t hash = hash_addr(rec.addr, hash_key_);
      if (rec.hash != static_cast<uint32_t>(hash)) return fail("stored hash");
      if (find_source(rec.addr, hash) != s) return fail("tracked source not found in the table");
      size_t live = 0;
      uint16_t max_stage = 0;
      const size_t base = size_t{s} * attempt_slots_;
      for (size_t j = 0; j < attempt_slots_; ++j) {
        const Attempt& a = attempts_[base + j];
        if (a.door == kNoDoor) continue;
        ++live;
        if (a.door >= doors_.size() || !door_state_[a.door].active) {
          return fail("attempt of an inactive door");
        }
        if (a.stage < 1 || a.stage >= doors_[a.door].sequence.size()) {
          return fail("attempt stage out of range");
        }
        for (size_t k = 0; k < j; ++k) {
          if (attempts_[base + k].door == a.door) return fail("two attempts of one door");
        }
        max_stage = std::max(max_stage, a.stage);
      }
      if (live == 0 || live != rec.live) return fail("live attempt count");
      if ((max_stage >= 2) != (seg == kProtected)) return fail("segment does not fit stage");
      attempts_seen += live;
    }
    if (seg_tail_[seg] != prev) return fail("segment tail");
  }
  if (listed != stats_.tracked_sources) return fail("tracked_sources");
  if (attempts_seen != stats_.live_attempts) return fail("live_attempts");

  size_t free_count = 0;
  for (uint32_t s = free_head_; s != kNil; s = sources_[s].next) {
    if (sources_[s].segment != kFree) return fail("free list holds a tracked source");
    if (++free_count > max_sources_) return fail("free list cycle");
  }
  if (free_count + listed != max_sources_) return fail("sources leaked");

  size_t occupied = 0;
  for (uint64_t i = 0; i <= table_mask_; ++i) {
    const Slot& slot = table_[i];
    if (slot.source == kNil) continue;
    ++occupied;
    if (slot.source >= max_sources_ || sources_[slot.source].segment == kFree) {
      return fail("table slot names an untracked source");
    }
    if (slot.hash != static_cast<uint32_t>(hash_addr(sources_[slot.source].addr, hash_key_))) {
      return fail("table slot hash");
    }
    for (uint64_t k = slot.hash & table_mask_; k != i; k = (k + 1) & table_mask_) {
      if (table_[k].source == kNil) return fail("hole in a probe run");
    }
  }
  if (occupied != listed) return fail("table entry count");

  size_t in_classes = 0;
  for (size_t c = 0; c < classes_.size(); ++c) {
    uint32_t prev = kNil;
    TimeNs last = std::numeric_limits<TimeNs>::min();
    for (uint32_t id = classes_[c].head; id != kNil; id = attempts_[id].next) {
      if (++in_classes > attempts_.size()) return fail("timeout list cycle");
      const Attempt& a = attempts_[id];
      if (a.door == kNoDoor || door_state_[a.door].timeout_class != c) {
        return fail("attempt in the wrong timeout list");
      }
      if (a.prev != prev) return fail("timeout list back link");
      if (a.deadline < last) return fail("timeout list out of deadline order");
      last = a.deadline;
      prev = id;
    }
    if (classes_[c].tail != prev) return fail("timeout list tail");
  }
  if (in_classes != stats_.live_attempts) return fail("attempts missing from timeout lists");

  const Stats& st = stats_;
  if (st.started != st.opens + st.timeouts + st.invalidated + st.dropped + st.evicted_attempts +
                        st.live_attempts) {
    return fail("attempt accounting");
  }
  return Ok{};
}

}  // namespace kg::knock
