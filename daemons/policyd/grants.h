// The grant lifecycle: create/extend from knocks, SPA and control commands, expiry on
// its own steady timer, revocation, reload of the profiles. Order for a new or extended
// grant: commit (grant row + audit) → kernel (GrantInstaller) → memory → broadcast
// (GrantObserver). Order for an end (expiry, revocation): revocation journal → kernel →
// memory → broadcast → commit, retried until it lands (grant_records.cpp): taking access
// away never waits for the disk. It knows the database only through Store.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/addr.h"
#include "common/result.h"
#include "ipc/messages.h"
#include "policyd/audit_queue.h"
#include "policyd/grant_install.h"
#include "policyd/revocation_journal.h"
#include "policyd/store.h"

namespace kg::policyd {

// What the grant lifecycle needs of a profile (the kernel side reads the full config).
struct GrantProfile {
  std::string name;
  std::chrono::seconds lifetime{3600};
  std::chrono::seconds max_lifetime{8 * 3600};
  uint32_t fwmark = 0;  // 0/0 when the profile has no mark
  uint32_t fwmark_mask = 0;
  friend bool operator==(const GrantProfile&, const GrantProfile&) = default;
};

// Kernel effects of grants. Production: KernelState (set elements with timeouts);
// tests: a recording implementation. Called after the grant's commit, before the
// broadcast; an error carries the kernel's reason.
class GrantInstaller {
 public:
  virtual ~GrantInstaller() = default;
  // Adds or re-adds (extend: new timeout) the grants' set elements.
  virtual Result<Ok> add(std::span<const GrantInstall> grants) = 0;
  // Removes them; returns how many conntrack entries went with them.
  virtual Result<size_t> remove(std::span<const GrantInstall> grants) = 0;
};

// Where grant changes go once they are in effect: the broadcast to verdictd and webd.
class GrantObserver {
 public:
  virtual ~GrantObserver() = default;
  // A knock for a grant door arrived; the grant follows shortly (hold until deadline).
  virtual void grant_pending(const IpAddr& source, const std::string& profile,
                             int64_t deadline_ns) = 0;
  virtual void grant_changed(ipc::GrantOp op, const ipc::GrantRecord& grant,
                             const std::string& reason) = 0;
  virtual void feed(const ipc::FeedEvent& event) = 0;
};

enum class GrantStatus { created, extended, unchanged, failed };
struct GrantResult {
  GrantRow grant;
  GrantStatus status = GrantStatus::created;
};

// "grant ID profile P method M origin O expires_ns N", the audit rows' description.
std::string describe_grant(const GrantRow& g);

class GrantBook {
 public:
  // `journal`: where revocations go before the database has them; nullopt: nowhere.
  GrantBook(boost::asio::io_context& io, Store& store, AuditQueue& audits,
            std::optional<RevocationJournal> journal);
  ~GrantBook();
  GrantBook(const GrantBook&) = delete;
  GrantBook& operator=(const GrantBook&) = delete;

  // Profiles a grant may name. Grants of profiles that went away are revoked ("profile
  // removed"); grants of profiles whose mark changed are broadcast again (remove + add).
  void set_profiles(std::vector<GrantProfile> profiles);
  void set_installer(GrantInstaller* installer) { installer_ = installer; }
  void set_observer(GrantObserver* observer) { observer_ = observer; }

  // Loads the active grants, closes those that expired while we were down, installs the
  // rest (one batch) and arms the expiry timer.
  Result<Ok> load();
  // Cancels the expiry timer and makes a last try at recording the ends still owed
  // (those left stay in the revocation journal for the next start).
  void shutdown();
  // The database took a commit: ends still owed are retried now, not after back-off.
  void database_writable();

  // A grant for (source, profile): created, or the active one extended (never past its
  // max). `duration`: nullopt = the profile's lifetime; capped at max_lifetime.
  Result<GrantResult> grant(const IpAddr& source, std::string_view profile, ipc::GrantMethod method,
                            std::string_view origin, std::optional<std::chrono::seconds> duration);
  // Many grants of one profile in one transaction and one kernel batch (bulk creation).
  Result<std::vector<GrantResult>> grant_many(std::span<const IpAddr> sources,
                                              std::string_view profile, ipc::GrantMethod method,
                                              std::string_view origin,
                                              std::optional<std::chrono::seconds> duration);
  // The grant part of an event's transaction (knock, SPA): row and audit in the caller's
  // open transaction. apply() the results once it has committed.
  Result<GrantResult> stage(const IpAddr& source, const GrantProfile& profile,
                            ipc::GrantMethod method, std::string_view origin,
                            std::optional<std::chrono::seconds> duration, int64_t now);
  // After the commit: kernel, memory, broadcast. Failed installs are marked failed.
  void apply(std::vector<GrantResult>& results);
  // nullopt: no active grant with that id.
  Result<std::optional<GrantResult>> extend(int64_t id,
                                            std::optional<std::chrono::seconds> duration,
                                            std::string_view by);
  // Revokes one grant by id, or every active grant of a source. Empty: none matched.
  Result<std::vector<GrantRow>> revoke_id(int64_t id, std::string_view by);
  Result<std::vector<GrantRow>> revoke_source(const IpAddr& source, std::string_view by);

  // Revocation and expiry take effect in the kernel, in memory and in the broadcast
  // first; the database records them after, retried until it can (grant_records.cpp).
  // Why grant `id`'s end is not in the database yet (the database's error); empty when
  // it is recorded, or the id is not an ended grant.
  std::string grant_end_pending(int64_t id) const;
  size_t grant_ends_pending() const { return pending_ends_.size(); }
  // The grants table as `knockgatectl grants` shows it: ends not yet recorded applied.
  Result<std::vector<GrantRow>> grant_rows(const GrantFilter& filter);

  const GrantProfile* find_profile(std::string_view name) const;
  size_t active_grant_count() const { return active_.size(); }
  // Every active grant as subscribers see it, by id.
  std::vector<ipc::GrantRecord> grant_records() const;
  // Every active grant as the kernel needs it (KernelState::reconcile at start/reload).
  std::vector<GrantInstall> active_installs() const;
  ipc::GrantRecord record_of(const GrantRow& row) const;
  // Expiry lateness statistics (for status and the benchmark): worst and last, in µs.
  int64_t worst_expiry_lateness_us() const { return worst_expiry_late_us_; }
  int64_t last_expiry_lateness_us() const { return last_expiry_late_us_; }
  uint64_t grants_expired() const { return grants_expired_; }

 private:
  struct Active {
    GrantRow row;
    IpAddr source;
  };
  Result<std::vector<GrantRow>> end_grants(std::vector<int64_t> ids, std::string_view state,
                                           std::string_view audit, std::string_view by,
                                           std::string_view reason);
  void remember_grant(const GrantRow& row);
  void forget_grant(int64_t id);
  Active* find_active(const std::string& source, std::string_view profile);
  GrantInstall install_of(const GrantRow& row) const;
  void feed(std::string_view kind, const GrantRow& row, int64_t audit_id, std::string_view extra);
  void record_install_failure(std::vector<GrantResult>& results, const std::string& why);
  void arm_grant_timer();
  void on_grant_timer();

  // ---- Ends the database has not recorded yet (grant_records.cpp)
  struct PendingEnd {
    GrantRow row;  // state, ended_ns and ended_by set
    std::string audit_kind;
    std::string detail;
    std::optional<size_t> tombstone;  // revocation journal slot
  };
  std::vector<std::optional<size_t>> write_tombstones(const std::vector<GrantRow>& ended);
  void queue_grant_ends(std::vector<PendingEnd> ends);
  bool record_grant_ends();
  void retry_grant_ends(bool soon);
  // End row + audit row, in the caller's transaction; the audit row only when the row was
  // still active, so writing the same end twice records it once.
  Result<bool> write_grant_end(const PendingEnd& end);
  Result<Ok> write_pending_end_of(const std::string& source, std::string_view profile);
  std::vector<GrantRow> apply_tombstones(std::vector<GrantRow> rows);

  boost::asio::io_context& io_;
  Store& store_;
  AuditQueue& audits_;
  std::vector<GrantProfile> profiles_;
  GrantInstaller* installer_ = nullptr;
  GrantObserver* observer_ = nullptr;
  std::map<int64_t, Active> active_;                 // by id
  std::map<std::string, int64_t> by_key_;            // source\0profile → id
  std::set<std::pair<int64_t, int64_t>> by_expiry_;  // (expires_ns, id)
  boost::asio::steady_timer expiry_timer_;
  bool expiry_timer_armed_ = false;
  int64_t expiry_timer_at_ = 0;
  int64_t worst_expiry_late_us_ = 0;
  int64_t last_expiry_late_us_ = 0;
  uint64_t grants_expired_ = 0;
  std::optional<RevocationJournal> journal_;
  std::map<int64_t, PendingEnd> pending_ends_;  // by grant id
  boost::asio::steady_timer record_timer_;
  std::chrono::milliseconds record_backoff_{0};
  std::string record_error_;    // the last failure to record pending ends; empty: none
  std::shared_ptr<int> alive_;  // timer handlers hold a weak_ptr: no use after destruction
};

}  // namespace kg::policyd
