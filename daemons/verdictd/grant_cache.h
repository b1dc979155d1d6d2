// The active grants as policyd broadcasts them, indexed for the packet path: an
// open-addressing table (linear probing, keyed hash, backward-shift deletion) from source
// address to that source's grants. Lookups never allocate; updates may.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/addr.h"
#include "ipc/messages.h"
#include "verdictd/profiles.h"

namespace kg::verdictd {

struct GrantMatch {
  uint64_t grant_id = 0;  // 0: a profile's static `sources`
  uint16_t profile = kNoProfile;
  uint32_t mark = 0;
  uint32_t mask = 0;
};

// What the cache knows of a source, for the hold decision.
struct SourceState {
  bool has_live_grant = false;  // at least one grant not yet expired
  bool pending = false;         // a pending delta whose deadline has not passed
};

class GrantCache {
 public:
  explicit GrantCache(uint64_t hash_key, size_t expected_sources = 16);

  // ---- updates (not on the packet path)
  // Adds the grant or replaces the one with the same id. `profile` is its index in the
  // current ProfileSet (kNoProfile: unknown here, it never matches).
  void upsert(const ipc::GrantRecord& g, uint16_t profile);
  bool extend(uint64_t id, int64_t expires_ns);
  bool remove(uint64_t id);
  void set_pending(const IpAddr& source, int64_t until_ns);
  void clear_pending(const IpAddr& source);
  // Forgets grants expired at `now_ns` and passed pending deadlines; returns grants removed.
  size_t purge(int64_t now_ns);
  // After a reload: profile indexes by name again.
  void reindex_profiles(const ProfileSet& profiles);
  void clear();

  // ---- packet path
  // The first live grant of f.src whose profile matches f.
  std::optional<GrantMatch> find(const Flow& f, const ProfileSet& profiles, int64_t now_ns) const;
  SourceState state(const IpAddr& source, int64_t now_ns) const;

  size_t grants() const { return by_id_.size(); }
  size_t sources() const { return used_; }
  size_t capacity() const { return slots_.size(); }

 private:
  struct Grant {
    uint64_t id = 0;
    int64_t expires_ns = 0;
    uint32_t mark = 0;
    uint32_t mask = 0;
    uint16_t profile = kNoProfile;
    int32_t next = -1;  // next grant of the same source, or the free list
  };
  struct Slot {
    IpAddr key;  // Family::none: empty
    int32_t head = -1;
    int64_t pending_until_ns = 0;
  };

  size_t bucket(const IpAddr& a) const;
  // Index of a's slot, or -1.
  int64_t find_slot(const IpAddr& a) const;
  size_t insert_slot(const IpAddr& a);  // finds or creates
  void erase_slot(size_t i);
  void maybe_erase_slot(size_t i);
  void grow();
  int32_t alloc_grant();

  uint64_t hash_key_;
  std::vector<Slot> slots_;  // power of two
  size_t used_ = 0;
  std::vector<Grant> pool_;
  int32_t free_ = -1;
  std::unordered_map<uint64_t, int32_t> by_id_;  // grant id → pool index
  std::vector<std::string> profile_names_;       // by pool index, for reindexing
  std::vector<IpAddr> sources_;                  // by pool index
};

}  // namespace kg::verdictd
