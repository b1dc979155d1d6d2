// Keeps the GrantCache in step with policyd's grant broadcast: a snapshot (in chunks)
// replaces the state atomically when its last chunk arrives, deltas apply in sequence,
// a gap asks for a new snapshot while the old state keeps serving.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ipc/messages.h"
#include "verdictd/grant_cache.h"
#include "verdictd/profiles.h"

namespace kg::verdictd {

enum class SyncAction : uint8_t { none, resubscribe };

// Which sources a message changed, so held packets can be looked at again.
struct SyncChange {
  bool all = false;
  std::vector<IpAddr> sources;
};

struct SyncStats {
  uint64_t snapshots = 0;
  uint64_t deltas = 0;
  uint64_t gaps = 0;
  uint64_t stale_messages = 0;    // for an older subscription, or a duplicate delta
  uint64_t unknown_profiles = 0;  // grants for a profile our config does not have
};

class GrantSync {
 public:
  GrantSync(uint64_t hash_key, const ProfileSet& profiles);

  // The Subscribe to send now (new request id); later chunks of older requests are ignored.
  ipc::Subscribe subscribe();
  SyncAction on_snapshot(const ipc::GrantSnapshot& s, SyncChange& change);
  SyncAction on_delta(const ipc::GrantDelta& d, SyncChange& change);
  // After a reload: profile names resolve against the new set.
  void set_profiles(const ProfileSet& profiles);

  const GrantCache& cache() const { return *cache_; }
  GrantCache& cache() { return *cache_; }
  bool synced() const { return synced_; }      // a whole snapshot was applied at least once
  bool awaiting() const { return awaiting_; }  // a Subscribe is out, its snapshot not in
  uint64_t seq() const { return seq_; }
  const SyncStats& stats() const { return stats_; }

 private:
  uint16_t profile_index(const std::string& name);

  uint64_t hash_key_;
  const ProfileSet* profiles_;
  std::unique_ptr<GrantCache> cache_;
  uint32_t request_id_ = 0;
  bool awaiting_ = false;
  bool synced_ = false;
  uint64_t seq_ = 0;
  bool building_active_ = false;
  uint64_t building_seq_ = 0;
  std::vector<ipc::GrantRecord> building_;
  SyncStats stats_;
};

}  // namespace kg::verdictd
