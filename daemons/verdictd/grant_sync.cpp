#include "verdictd/grant_sync.h"

namespace kg::verdictd {

GrantSync::GrantSync(uint64_t hash_key, const ProfileSet& profiles)
    : hash_key_(hash_key), profiles_(&profiles), cache_(std::make_unique<GrantCache>(hash_key)) {}

ipc::Subscribe GrantSync::subscribe() {
  ipc::Subscribe s;
  s.request_id = ++request_id_;
  s.topics = ipc::kTopicGrants;
  awaiting_ = true;
  building_active_ = false;
  building_.clear();
  return s;
}

uint16_t GrantSync::profile_index(const std::string& name) {
  const uint16_t i = profiles_->index_of(name);
  if (i == kNoProfile) ++stats_.unknown_profiles;
  return i;
}

void GrantSync::set_profiles(const ProfileSet& profiles) {
  profiles_ = &profiles;
  cache_->reindex_profiles(profiles);
}

SyncAction GrantSync::on_snapshot(const ipc::GrantSnapshot& s, SyncChange& change) {
  if (!awaiting_ || s.request_id != request_id_) {
    ++stats_.stale_messages;
    return SyncAction::none;
  }
  if (s.first) {
    building_active_ = true;
    building_seq_ = s.seq;
    building_.clear();
  } else if (!building_active_ || s.seq != building_seq_) {
    // A chunk without its beginning, or chunks of two different states: start over.
    ++stats_.gaps;
    return SyncAction::resubscribe;
  }
  building_.insert(building_.end(), s.grants.begin(), s.grants.end());
  if (!s.last) return SyncAction::none;

  // The whole snapshot is in: build the new state aside, then swap it in at once.
  auto fresh = std::make_unique<GrantCache>(hash_key_, building_.size());
  for (const auto& g : building_) fresh->upsert(g, profile_index(g.profile));
  cache_ = std::move(fresh);
  building_.clear();
  building_.shrink_to_fit();
  building_active_ = false;
  awaiting_ = false;
  synced_ = true;
  seq_ = s.seq;
  ++stats_.snapshots;
  change.all = true;
  return SyncAction::none;
}

SyncAction GrantSync::on_delta(const ipc::GrantDelta& d, SyncChange& change) {
  if (awaiting_ || !synced_) {  // the coming snapshot includes it
    ++stats_.stale_messages;
    return SyncAction::none;
  }
  if (d.seq <= seq_) {
    ++stats_.stale_messages;
    return SyncAction::none;
  }
  if (d.seq != seq_ + 1) {
    ++stats_.gaps;
    return SyncAction::resubscribe;  // the old state serves until the snapshot is in
  }
  seq_ = d.seq;
  ++stats_.deltas;
  switch (d.op) {
    case ipc::GrantOp::add:
      cache_->upsert(d.grant, profile_index(d.grant.profile));
      cache_->clear_pending(d.grant.source);
      break;
    case ipc::GrantOp::extend:
      if (!cache_->extend(d.grant.id, d.grant.expires_ns)) {
        cache_->upsert(d.grant, profile_index(d.grant.profile));
      }
      break;
    case ipc::GrantOp::remove:
      if (d.grant.id != 0) cache_->remove(d.grant.id);
      cache_->clear_pending(d.grant.source);
      break;
    case ipc::GrantOp::pending:
      cache_->set_pending(d.grant.source, d.grant.expires_ns);
      break;
  }
  change.sources.push_back(d.grant.source);
  return SyncAction::none;
}

}  // namespace kg::verdictd
