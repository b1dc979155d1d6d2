// Grant ends (expiry, revocation) that have taken effect but are not in the database yet.
//
// end_grants() removes a grant from the kernel, from memory and from the subscribers
// (verdictd's cache) before it writes anything to the store, so a full or failing disk never
// keeps access open. The database record follows: committed at once when it can be,
// otherwise kept here and retried on a timer with back-off (100 ms doubling to 5 s) and
// after any other commit succeeds. Until then:
//   - the grant is gone from memory, so no reconcile, snapshot or `extend` brings it back,
//     and `knockgatectl grants` shows the pending state (grant_rows());
//   - a new grant for the same source and profile first writes the pending end in its own
//     transaction (the unique index allows one active row per source and profile);
//   - a revocation also sits in the revocation journal (revocation_journal.h), so a
//     restart with the row still `active` does not re-install it (apply_tombstones()).
//     An expiry needs no tombstone: at start every row past its expiry is closed anyway.
// A tombstone is freed only once its row is committed and synced.
#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <set>

#include "common/log.h"
#include "policyd/grants.h"

namespace kg::policyd {

namespace {
constexpr std::chrono::milliseconds kFirstRetry{100};
constexpr std::chrono::milliseconds kMaxRetry{5000};
}  // namespace

std::vector<std::optional<size_t>> GrantBook::write_tombstones(const std::vector<GrantRow>& ended) {
  std::vector<std::optional<size_t>> slots(ended.size());
  if (!journal_) return slots;
  for (size_t i = 0; i < ended.size(); ++i) {
    auto slot =
        journal_->add(ended[i].id, ended[i].created_ns, ended[i].ended_ns, ended[i].ended_by);
    if (slot) {
      slots[i] = *slot;
    } else {
      // The revocation still takes effect now; only a restart before the database has it
      // could bring this grant back.
      kg::log::error("grant " + std::to_string(ended[i].id) + ": " + slot.error().message);
    }
  }
  return slots;
}

void GrantBook::queue_grant_ends(std::vector<PendingEnd> ends) {
  bool tombstoned = false;
  for (PendingEnd& end : ends) {
    tombstoned = tombstoned || end.tombstone.has_value();
    const int64_t id = end.row.id;
    pending_ends_[id] = std::move(end);
  }
  // The kernel state is already gone; this makes the tombstones survive a power loss.
  if (tombstoned) {
    if (auto synced = journal_->sync(); !synced) kg::log::error(synced.error().message);
  }
  record_grant_ends();
}

Result<bool> GrantBook::write_grant_end(const PendingEnd& end) {
  auto changed = store_.end_grant(end.row.id, end.row.state, end.row.ended_ns, end.row.ended_by,
                                  end.row.failure);
  if (!changed) return changed.error();
  if (!*changed) return false;
  auto a = store_.append_audit(end.row.ended_ns, end.audit_kind, "", end.row.source, end.detail);
  if (!a) return a.error();
  return true;
}

Result<Ok> GrantBook::write_pending_end_of(const std::string& source, std::string_view profile) {
  for (const auto& [id, end] : pending_ends_) {
    if (end.row.source != source || end.row.profile != profile) continue;
    // Left in pending_ends_: if this transaction rolls back the end is still owed, and
    // if it commits the next record_grant_ends() finds the row ended and adds nothing.
    auto w = write_grant_end(end);
    if (!w) return w.error();
  }
  return Ok{};
}

bool GrantBook::record_grant_ends() {
  if (pending_ends_.empty()) return true;
  bool tombstoned = false;
  for (const auto& [id, end] : pending_ends_) tombstoned = tombstoned || end.tombstone;
  Result<Ok> done = [this, tombstoned]() -> Result<Ok> {
    auto txn = store_.begin();
    if (!txn) return txn.error();
    for (const auto& [id, end] : pending_ends_) {
      auto w = write_grant_end(end);
      if (!w) return w.error();
    }
    auto c = audits_.commit(*txn);
    if (!c) return c.error();
    // On disk before the tombstones go: a power loss must not leave an `active` row
    // without its tombstone. Expiries need none: the loop's posted sync covers them.
    return tombstoned ? store_.sync() : Result<Ok>(Ok{});
  }();
  if (!done) {
    if (record_error_ != done.error().message) {
      kg::log::error(std::to_string(pending_ends_.size()) +
                     " grant end(s) in effect but not recorded in the database yet (" +
                     done.error().message + "); retrying");
    }
    record_error_ = done.error().message;
    retry_grant_ends(false);
    return false;
  }
  for (const auto& [id, end] : pending_ends_) {
    if (!end.tombstone || !journal_) continue;
    // A slot left behind is harmless: at start its row is found ended and it is freed.
    if (auto c = journal_->clear(*end.tombstone); !c) kg::log::warn(c.error().message);
  }
  if (!record_error_.empty()) {
    kg::log::info("recorded " + std::to_string(pending_ends_.size()) +
                  " pending grant end(s) in the database");
  }
  pending_ends_.clear();
  record_error_.clear();
  record_backoff_ = std::chrono::milliseconds(0);
  record_timer_.cancel();
  return true;
}

void GrantBook::retry_grant_ends(bool soon) {
  if (soon) {
    record_backoff_ = std::chrono::milliseconds(0);
  } else {
    record_backoff_ =
        record_backoff_.count() == 0 ? kFirstRetry : std::min(record_backoff_ * 2, kMaxRetry);
  }
  record_timer_.expires_after(record_backoff_);
  std::weak_ptr<int> alive = alive_;
  record_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted || alive.expired()) return;
    record_grant_ends();
  });
}

std::vector<GrantRow> GrantBook::apply_tombstones(std::vector<GrantRow> rows) {
  if (!journal_ || journal_->loaded().empty()) return rows;
  std::map<std::pair<int64_t, int64_t>, const Tombstone*> by_grant;  // (id, created_ns)
  for (const Tombstone& t : journal_->loaded()) by_grant[{t.grant_id, t.created_ns}] = &t;
  std::set<size_t> owed;
  std::vector<GrantRow> live;
  live.reserve(rows.size());
  for (GrantRow& row : rows) {
    auto t = by_grant.find({row.id, row.created_ns});
    if (t == by_grant.end()) {
      live.push_back(std::move(row));
      continue;
    }
    PendingEnd end;
    end.row = std::move(row);
    end.row.state = "revoked";
    end.row.ended_ns = t->second->ended_ns;
    end.row.ended_by = t->second->ended_by;
    end.audit_kind = std::string(audit_kind::grant_revoke);
    end.detail = describe_grant(end.row) + "; revoked by " + end.row.ended_by +
                 " (recorded after a restart, from the revocation journal)";
    end.tombstone = t->second->slot;
    owed.insert(t->second->slot);
    const int64_t id = end.row.id;
    pending_ends_[id] = std::move(end);
  }
  // The others were recorded before the restart (their slot was not freed in time), or
  // belong to grants of another database.
  for (const Tombstone& t : journal_->loaded()) {
    if (owed.count(t.slot) == 0) (void)journal_->clear(t.slot);
  }
  if (!owed.empty()) {
    kg::log::warn(std::to_string(owed.size()) +
                  " grant(s) revoked before the restart are still active in the database; "
                  "they stay revoked (revocation journal " +
                  journal_->path() + ")");
  }
  return live;
}

std::string GrantBook::grant_end_pending(int64_t id) const {
  if (pending_ends_.count(id) == 0) return "";
  return record_error_.empty() ? "not written yet" : record_error_;
}

Result<std::vector<GrantRow>> GrantBook::grant_rows(const GrantFilter& filter) {
  auto rows = store_.grants(filter);
  if (!rows || pending_ends_.empty()) return rows;
  std::vector<GrantRow> out;
  out.reserve(rows->size());
  for (GrantRow& row : *rows) {
    auto p = pending_ends_.find(row.id);
    if (p != pending_ends_.end() && row.state == "active") {
      if (!filter.all) continue;
      row.state = p->second.row.state;
      row.ended_ns = p->second.row.ended_ns;
      row.ended_by = p->second.row.ended_by;
    }
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace kg::policyd
