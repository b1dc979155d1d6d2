// A second Store backend, in memory, for tests: it shows that the engine (PolicyCore,
// GrantBook) needs nothing of SQLite beyond store.h. A transaction snapshots the state
// and puts it back on rollback; `fail_next_commit` makes the next commit fail, as a full
// disk would.
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "policyd/store.h"

class MemoryStore final : public kg::policyd::Store {
 public:
  using AuditRecord = kg::policyd::AuditRecord;
  using AuditFilter = kg::policyd::AuditFilter;
  using GrantFilter = kg::policyd::GrantFilter;
  using GrantRow = kg::policyd::GrantRow;
  using PendingStop = kg::policyd::PendingStop;
  template <typename T>
  using Result = kg::Result<T>;

  struct State {
    std::vector<AuditRecord> audit;
    std::set<std::pair<uint64_t, uint64_t>> events_seen;
    std::map<std::pair<uint64_t, uint64_t>, int64_t> event_time;
    std::map<int64_t, PendingStop> pending;
    std::vector<kg::policyd::OneTimeUse> one_time;
    std::map<int64_t, GrantRow> grants;
    std::map<std::string, int64_t> replay;  // key → first seen
    int64_t next_id = 1;
  };

  State state;
  bool fail_next_commit = false;
  int commits = 0;
  int syncs = 0;

  bool needs_sync() const override { return unsynced_; }
  Result<kg::Ok> sync() override {
    if (unsynced_) ++syncs;
    unsynced_ = false;
    return kg::Ok{};
  }

  Result<int64_t> append_audit(int64_t time_ns, std::string_view kind, std::string_view door,
                               std::string_view source, std::string_view detail) override {
    const int64_t id = state.next_id++;
    state.audit.push_back(AuditRecord{id, time_ns, std::string(kind), std::string(door),
                                      std::string(source), std::string(detail)});
    wrote();
    return id;
  }
  Result<std::vector<AuditRecord>> audit_query(const AuditFilter& f) override {
    std::vector<AuditRecord> out;
    for (auto it = state.audit.rbegin(); it != state.audit.rend(); ++it) {
      if (static_cast<int64_t>(out.size()) >= f.limit) break;
      if (f.since_ns && it->time_ns < *f.since_ns) continue;
      if (f.until_ns && it->time_ns >= *f.until_ns) continue;
      if (f.source && it->source != *f.source) continue;
      if (f.kind && it->kind != *f.kind) continue;
      if (f.before_id && it->id >= *f.before_id) continue;
      out.push_back(*it);
    }
    return out;
  }
  Result<std::vector<AuditRecord>> audit_after(int64_t after_id, int64_t limit) override {
    std::vector<AuditRecord> out;
    for (const AuditRecord& a : state.audit) {
      if (a.id > after_id && static_cast<int64_t>(out.size()) < limit) out.push_back(a);
    }
    return out;
  }

  Result<bool> mark_event_seen(uint64_t boot, uint64_t event, int64_t now_ns) override {
    const bool fresh = state.events_seen.insert({boot, event}).second;
    if (fresh) state.event_time[{boot, event}] = now_ns;
    wrote();
    return fresh;
  }
  Result<int64_t> prune_events_seen(int64_t older_than_ns) override {
    int64_t n = 0;
    for (auto it = state.event_time.begin(); it != state.event_time.end();) {
      if (it->second >= older_than_ns) {
        ++it;
        continue;
      }
      state.events_seen.erase(it->first);
      it = state.event_time.erase(it);
      ++n;
    }
    wrote();
    return n;
  }

  Result<std::optional<PendingStop>> find_pending_stop(std::string_view door,
                                                       std::string_view source) override {
    for (const auto& [id, p] : state.pending) {
      if (p.door == door && p.source == source) return std::optional<PendingStop>(p);
    }
    return std::optional<PendingStop>{};
  }
  Result<int64_t> insert_pending_stop(const PendingStop& stop) override {
    auto found = find_pending_stop(stop.door, stop.source);
    if (found && *found) return kg::Error{"pending stop for that door and source exists"};
    PendingStop row = stop;
    row.id = state.next_id++;
    state.pending[row.id] = row;
    wrote();
    return row.id;
  }
  Result<kg::Ok> set_pending_stop_due(int64_t id, int64_t due_time_ns) override {
    if (auto it = state.pending.find(id); it != state.pending.end()) {
      it->second.due_time_ns = due_time_ns;
    }
    wrote();
    return kg::Ok{};
  }
  Result<kg::Ok> delete_pending_stop(int64_t id) override {
    state.pending.erase(id);
    wrote();
    return kg::Ok{};
  }
  Result<std::vector<PendingStop>> pending_stops() override {
    std::vector<PendingStop> out;
    for (const auto& [id, p] : state.pending) out.push_back(p);
    std::sort(out.begin(), out.end(), [](const PendingStop& a, const PendingStop& b) {
      return std::pair(a.due_time_ns, a.id) < std::pair(b.due_time_ns, b.id);
    });
    return out;
  }

  Result<int64_t> record_one_time_used(const kg::policyd::OneTimeUse& use) override {
    state.one_time.push_back(use);
    wrote();
    return static_cast<int64_t>(state.one_time.size());
  }

  Result<int64_t> insert_grant(const GrantRow& grant) override {
    for (const auto& [id, g] : state.grants) {
      if (g.state == "active" && g.source == grant.source && g.profile == grant.profile) {
        return kg::Error{"an active grant of that source and profile exists"};
      }
    }
    GrantRow row = grant;
    row.id = state.next_id++;
    row.state = "active";
    state.grants[row.id] = row;
    wrote();
    return row.id;
  }
  Result<kg::Ok> set_grant_expires(int64_t id, int64_t expires_ns) override {
    auto it = state.grants.find(id);
    if (it != state.grants.end() && it->second.state == "active") {
      it->second.expires_ns = expires_ns;
    }
    wrote();
    return kg::Ok{};
  }
  Result<bool> end_grant(int64_t id, std::string_view to, int64_t ended_ns,
                         std::string_view ended_by, std::string_view failure) override {
    auto it = state.grants.find(id);
    if (it == state.grants.end() || it->second.state != "active") return false;
    it->second.state = std::string(to);
    it->second.ended_ns = ended_ns;
    it->second.ended_by = std::string(ended_by);
    it->second.failure = std::string(failure);
    wrote();
    return true;
  }
  Result<std::vector<GrantRow>> active_grants() override {
    GrantFilter f;
    return grants(f);
  }
  Result<std::optional<GrantRow>> grant(int64_t id) override {
    auto it = state.grants.find(id);
    if (it == state.grants.end()) return std::optional<GrantRow>{};
    return std::optional<GrantRow>(it->second);
  }
  Result<std::vector<GrantRow>> grants(const GrantFilter& f) override {
    std::vector<GrantRow> out;
    for (const auto& [id, g] : state.grants) {
      if (f.limit > 0 && static_cast<int64_t>(out.size()) >= f.limit) break;
      if (!f.all && g.state != "active") continue;
      if (f.source && g.source != *f.source) continue;
      if (f.profile && g.profile != *f.profile) continue;
      out.push_back(g);
    }
    return out;
  }

  Result<bool> check_and_record_replay(std::span<const uint8_t, 32> key, std::string_view,
                                       std::string_view, int64_t now_ns) override {
    const bool fresh = state.replay.emplace(std::string(key.begin(), key.end()), now_ns).second;
    wrote();
    return fresh;
  }
  Result<int64_t> prune_spa_replay(int64_t older_than_ns) override {
    int64_t n = 0;
    for (auto it = state.replay.begin(); it != state.replay.end();) {
      if (it->second < older_than_ns) {
        it = state.replay.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    wrote();
    return n;
  }

 protected:
  Result<kg::Ok> begin_transaction() override {
    if (snapshot_) return kg::Error{"begin transaction: one is open already"};
    snapshot_ = state;
    return kg::Ok{};
  }
  Result<kg::Ok> commit_transaction() override {
    if (!snapshot_) return kg::Error{"commit: transaction is not active"};
    if (fail_next_commit) {
      fail_next_commit = false;
      rollback_transaction();
      return kg::Error{"commit: disk full (MemoryStore)"};
    }
    snapshot_.reset();
    committed();
    return kg::Ok{};
  }
  void rollback_transaction() override {
    if (!snapshot_) return;
    state = std::move(*snapshot_);
    snapshot_.reset();
  }

 private:
  // A write outside a transaction commits on its own.
  void wrote() {
    if (!snapshot_) committed();
  }
  void committed() {
    ++commits;
    unsynced_ = true;
    notify_commit();
  }

  std::optional<State> snapshot_;
  bool unsynced_ = false;
};
