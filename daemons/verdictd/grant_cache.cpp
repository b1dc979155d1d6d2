#include "verdictd/grant_cache.h"

#include <bit>

#include "common/hash.h"

namespace kg::verdictd {

GrantCache::GrantCache(uint64_t hash_key, size_t expected_sources) : hash_key_(hash_key) {
  slots_.resize(std::bit_ceil(std::max<size_t>(16, expected_sources * 2)));
}

size_t GrantCache::bucket(const IpAddr& a) const {
  return static_cast<size_t>(hash_addr(a, hash_key_)) & (slots_.size() - 1);
}

int64_t GrantCache::find_slot(const IpAddr& a) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = bucket(a);; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.key.empty()) return -1;
    if (s.key == a) return static_cast<int64_t>(i);
  }
}

size_t GrantCache::insert_slot(const IpAddr& a) {
  if (const int64_t found = find_slot(a); found >= 0) return static_cast<size_t>(found);
  if ((used_ + 1) * 2 > slots_.size()) grow();  // load ≤ 1/2 keeps probes short
  const size_t mask = slots_.size() - 1;
  size_t i = bucket(a);
  while (!slots_[i].key.empty()) i = (i + 1) & mask;
  slots_[i] = Slot{a, -1, 0};
  ++used_;
  return i;
}

void GrantCache::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  const size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.key.empty()) continue;
    size_t i = bucket(s.key);
    while (!slots_[i].key.empty()) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

// Backward-shift deletion: no tombstones, so lookups of absent keys stay short.
void GrantCache::erase_slot(size_t i) {
  const size_t mask = slots_.size() - 1;
  slots_[i] = Slot{};
  --used_;
  size_t hole = i;
  for (size_t j = (i + 1) & mask; !slots_[j].key.empty(); j = (j + 1) & mask) {
    const size_t home = bucket(slots_[j].key);
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const bool home_between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_between) {
      slots_[hole] = slots_[j];
      slots_[j] = Slot{};
      hole = j;
    }
  }
}

void GrantCache::maybe_erase_slot(size_t i) {
  if (slots_[i].head < 0 && slots_[i].pending_until_ns == 0) erase_slot(i);
}

int32_t GrantCache::alloc_grant() {
  if (free_ >= 0) {
    const int32_t g = free_;
    free_ = pool_[static_cast<size_t>(g)].next;
    return g;
  }
  pool_.emplace_back();
  profile_names_.emplace_back();
  sources_.emplace_back();
  return static_cast<int32_t>(pool_.size() - 1);
}

void GrantCache::upsert(const ipc::GrantRecord& g, uint16_t profile) {
  if (auto it = by_id_.find(g.id); it != by_id_.end()) {
    if (sources_[static_cast<size_t>(it->second)] != g.source) {
      remove(g.id);
    } else {
      Grant& e = pool_[static_cast<size_t>(it->second)];
      e.expires_ns = g.expires_ns;
      e.mark = g.fwmark;
      e.mask = g.fwmark_mask;
      e.profile = profile;
      profile_names_[static_cast<size_t>(it->second)] = g.profile;
      return;
    }
  }
  const size_t slot = insert_slot(g.source);
  const int32_t idx = alloc_grant();
  const auto u = static_cast<size_t>(idx);
  pool_[u] = Grant{g.id, g.expires_ns, g.fwmark, g.fwmark_mask, profile, slots_[slot].head};
  profile_names_[u] = g.profile;
  sources_[u] = g.source;
  slots_[slot].head = idx;
  by_id_[g.id] = idx;
}

bool GrantCache::extend(uint64_t id, int64_t expires_ns) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  pool_[static_cast<size_t>(it->second)].expires_ns = expires_ns;
  return true;
}

bool GrantCache::remove(uint64_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  const int32_t idx = it->second;
  by_id_.erase(it);
  const int64_t slot = find_slot(sources_[static_cast<size_t>(idx)]);
  if (slot >= 0) {
    Slot& s = slots_[static_cast<size_t>(slot)];
    int32_t* link = &s.head;
    while (*link >= 0 && *link != idx) link = &pool_[static_cast<size_t>(*link)].next;
    if (*link == idx) *link = pool_[static_cast<size_t>(idx)].next;
    maybe_erase_slot(static_cast<size_t>(slot));
  }
  pool_[static_cast<size_t>(idx)] = Grant{};
  pool_[static_cast<size_t>(idx)].next = free_;
  profile_names_[static_cast<size_t>(idx)].clear();
  free_ = idx;
  return true;
}

void GrantCache::set_pending(const IpAddr& source, int64_t until_ns) {
  if (until_ns <= 0) return;
  Slot& s = slots_[insert_slot(source)];
  s.pending_until_ns = std::max(s.pending_until_ns, until_ns);
}

void GrantCache::clear_pending(const IpAddr& source) {
  const int64_t slot = find_slot(source);
  if (slot < 0) return;
  slots_[static_cast<size_t>(slot)].pending_until_ns = 0;
  maybe_erase_slot(static_cast<size_t>(slot));
}

size_t GrantCache::purge(int64_t now_ns) {
  std::vector<uint64_t> expired;
  for (const auto& [id, idx] : by_id_) {
    if (pool_[static_cast<size_t>(idx)].expires_ns <= now_ns) expired.push_back(id);
  }
  for (const uint64_t id : expired) remove(id);
  std::vector<IpAddr> stale;
  for (const Slot& s : slots_) {
    if (!s.key.empty() && s.pending_until_ns != 0 && s.pending_until_ns <= now_ns) {
      stale.push_back(s.key);
    }
  }
  for (const auto& a : stale) clear_pending(a);
  return expired.size();
}

void GrantCache::reindex_profiles(const ProfileSet& profiles) {
  for (const auto& [id, idx] : by_id_) {
    pool_[static_cast<size_t>(idx)].profile =
        profiles.index_of(profile_names_[static_cast<size_t>(idx)]);
  }
}

void GrantCache::clear() {
  for (Slot& s : slots_) s = Slot{};
  used_ = 0;
  pool_.clear();
  profile_names_.clear();
  sources_.clear();
  free_ = -1;
  by_id_.clear();
}

std::optional<GrantMatch> GrantCache::find(const Flow& f, const ProfileSet& profiles,
                                           int64_t now_ns) const {
  const int64_t slot = find_slot(f.src);
  if (slot < 0) return std::nullopt;
  for (int32_t g = slots_[static_cast<size_t>(slot)].head; g >= 0;
       g = pool_[static_cast<size_t>(g)].next) {
    const Grant& e = pool_[static_cast<size_t>(g)];
    // Checked here, not only when the remove delta comes: a late delta must not extend it.
    if (e.expires_ns <= now_ns || e.profile >= profiles.size()) continue;
    if (profiles.at(e.profile).matches(f)) return GrantMatch{e.id, e.profile, e.mark, e.mask};
  }
  return std::nullopt;
}

SourceState GrantCache::state(const IpAddr& source, int64_t now_ns) const {
  SourceState st;
  const int64_t slot = find_slot(source);
  if (slot < 0) return st;
  const Slot& s = slots_[static_cast<size_t>(slot)];
  st.pending = s.pending_until_ns > now_ns;
  for (int32_t g = s.head; g >= 0; g = pool_[static_cast<size_t>(g)].next) {
    if (pool_[static_cast<size_t>(g)].expires_ns > now_ns) {
      st.has_live_grant = true;
      break;
    }
  }
  return st;
}

}  // namespace kg::verdictd
