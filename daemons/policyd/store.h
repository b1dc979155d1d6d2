// policyd's storage seam: what the engine (PolicyCore, GrantBook) needs to keep across
// restarts, as an abstract class. The engine depends on this header only; the production
// backend is SQLite (sqlite_store.h), opened by open_database(). A second backend (a
// replicated store, a test's in-memory one) implements Store in a file of its own.
//
// The contract every backend keeps:
//   - writes between begin() and Transaction::commit() land together or not at all;
//   - a commit is atomic and survives a crash of policyd as soon as commit() returns;
//   - sync() makes every commit so far durable across power loss; policyd calls it
//     after the action a commit allows has started and before it acknowledges the event
//     to captured (docs/policyd.md, "Durability");
//   - every commit, in a transaction or not, calls the on_commit() listener.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kg::policyd {

// Audit record kinds. The audit table is append-only (triggers reject UPDATE/DELETE).
namespace audit_kind {
inline constexpr std::string_view knock_open = "knock_open";            // OPEN SESAME accepted
inline constexpr std::string_view knock_reopen = "knock_reopen";        // re-knock, stop deferred
inline constexpr std::string_view unknown_door = "unknown_door";        // event for a door we lack
inline constexpr std::string_view command_run = "command_run";          // start command spawned
inline constexpr std::string_view command_status = "command_status";    // a command exited
inline constexpr std::string_view command_failed = "command_failed";    // could not spawn
inline constexpr std::string_view command_dropped = "command_dropped";  // queue full
inline constexpr std::string_view command_timeout = "command_timeout";  // stop is due
inline constexpr std::string_view stop_run = "stop_run";                // stop command spawned
inline constexpr std::string_view one_time_used = "one_time_used";
inline constexpr std::string_view one_time_exhausted = "one_time_exhausted";
inline constexpr std::string_view one_time_error = "one_time_error";    // file unusable
inline constexpr std::string_view grant_requested = "grant_requested";  // profile unknown
inline constexpr std::string_view grant_create = "grant_create";
inline constexpr std::string_view grant_extend = "grant_extend";
inline constexpr std::string_view grant_expire = "grant_expire";
inline constexpr std::string_view grant_revoke = "grant_revoke";
inline constexpr std::string_view grant_failed = "grant_failed";  // kernel refused it
inline constexpr std::string_view daemon_start = "daemon_start";
inline constexpr std::string_view daemon_stop = "daemon_stop";
inline constexpr std::string_view config_reload = "config_reload";
inline constexpr std::string_view spa_accepted = "spa_accepted";  // verified, first use
inline constexpr std::string_view spa_replayed = "spa_replayed";  // second use refused
// Failed console logins made an account or a source wait (reported by webd).
inline constexpr std::string_view web_login_lockout = "web_login_lockout";
}  // namespace audit_kind

struct AuditRecord {
  int64_t id = 0;
  int64_t time_ns = 0;
  std::string kind;
  std::string door;
  std::string source;
  std::string detail;
};

struct PendingStop {
  int64_t id = 0;
  std::string door;
  std::string source;   // kg::IpAddr::str() of the knocking address
  std::string command;  // already expanded: %IP% substituted when the knock was accepted
  int64_t due_time_ns = 0;
  int64_t created_ns = 0;
};

struct OneTimeUse {
  std::string door;
  std::string file;
  int64_t line = 0;
  std::string sequence;
  int64_t time_ns = 0;
};

// One row of the grants table. `source` is IpAddr::str(); `method` knock|spa|ctl|api;
// `state` active|expired|revoked|failed. ended_* and failure are empty while active.
struct GrantRow {
  int64_t id = 0;
  std::string source;
  std::string profile;
  std::string method;
  std::string origin;
  int64_t created_ns = 0;
  int64_t expires_ns = 0;
  int64_t max_expires_ns = 0;  // extensions never go past this (created + max_lifetime)
  std::string state = "active";
  int64_t ended_ns = 0;
  std::string ended_by;
  std::string failure;
};

struct GrantFilter {
  std::optional<std::string> source;
  std::optional<std::string> profile;
  bool all = false;   // false: active only
  int64_t limit = 0;  // 0: no limit
};

// Newest first; `before_id` pages backwards.
struct AuditFilter {
  std::optional<int64_t> since_ns, until_ns, before_id;
  std::optional<std::string> source, kind;
  int64_t limit = 100;
};

// The operations the engine uses. Writes outside a transaction commit on their own.
class Store {
 public:
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // A write transaction. Rolls back when destroyed without a successful commit(); a
  // failed commit() has rolled back too. At most one is open at a time.
  class Transaction {
   public:
    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction();
    Result<Ok> commit();

   private:
    friend class Store;
    explicit Transaction(Store* store) : store_(store) {}
    Store* store_ = nullptr;  // null once committed or rolled back
  };
  Result<Transaction> begin();

  // ---- Durability
  // True when commits since the last sync() are not yet durable across power loss.
  virtual bool needs_sync() const = 0;
  // Makes every commit so far durable across power loss. No-op when nothing is unsynced.
  virtual Result<Ok> sync() = 0;
  // Housekeeping the backend would like done when the engine is idle (SQLite: a WAL
  // checkpoint); checkpoint() does it. Backends without any keep the defaults.
  virtual bool checkpoint_due() const { return false; }
  virtual Result<Ok> checkpoint() { return Ok{}; }
  // Called after every commit: policyd posts a sync() to its loop.
  void on_commit(std::function<void()> listener) { commit_listener_ = std::move(listener); }

  // ---- Audit (append-only)
  virtual Result<int64_t> append_audit(int64_t time_ns, std::string_view kind,
                                       std::string_view door, std::string_view source,
                                       std::string_view detail) = 0;
  virtual Result<std::vector<AuditRecord>> audit_query(const AuditFilter& filter) = 0;
  // Audit rows with id > after_id, oldest first, at most `limit`.
  virtual Result<std::vector<AuditRecord>> audit_after(int64_t after_id, int64_t limit) = 0;

  // ---- Event dedup
  // Records (sender boot id, event id); false when it was already recorded: the sender
  // re-sent an event whose EventAck it never received.
  virtual Result<bool> mark_event_seen(uint64_t sender_boot_id, uint64_t event_id,
                                       int64_t now_ns) = 0;
  // Forgets dedup entries older than the cutoff; returns how many went.
  virtual Result<int64_t> prune_events_seen(int64_t older_than_ns) = 0;

  // ---- Pending stop commands (at most one per door and source)
  virtual Result<std::optional<PendingStop>> find_pending_stop(std::string_view door,
                                                               std::string_view source) = 0;
  virtual Result<int64_t> insert_pending_stop(const PendingStop& stop) = 0;
  virtual Result<Ok> set_pending_stop_due(int64_t id, int64_t due_time_ns) = 0;
  virtual Result<Ok> delete_pending_stop(int64_t id) = 0;
  // Every pending stop, earliest due first.
  virtual Result<std::vector<PendingStop>> pending_stops() = 0;

  // ---- One-time sequences
  virtual Result<int64_t> record_one_time_used(const OneTimeUse& use) = 0;

  // ---- Grants. Callers wrap changes in a transaction together with their audit rows.
  // Fails when the source already has an active grant of that profile.
  virtual Result<int64_t> insert_grant(const GrantRow& grant) = 0;
  // Changes an active grant's expiry; an ended grant stays as it is.
  virtual Result<Ok> set_grant_expires(int64_t id, int64_t expires_ns) = 0;
  // Moves an active grant to `state`; false if it was not active.
  virtual Result<bool> end_grant(int64_t id, std::string_view state, int64_t ended_ns,
                                 std::string_view ended_by, std::string_view failure) = 0;
  // Active grants by id.
  virtual Result<std::vector<GrantRow>> active_grants() = 0;
  virtual Result<std::optional<GrantRow>> grant(int64_t id) = 0;
  // By id.
  virtual Result<std::vector<GrantRow>> grants(const GrantFilter& filter) = 0;

  // ---- SPA replay cache
  // Records the key and returns true on its first use; false when it was seen before (a
  // replay). Call inside the event's transaction.
  virtual Result<bool> check_and_record_replay(std::span<const uint8_t, 32> replay_key,
                                               std::string_view door, std::string_view source,
                                               int64_t now_ns) = 0;
  // Forgets replay keys older than the cutoff (packets that old fail the age check).
  virtual Result<int64_t> prune_spa_replay(int64_t older_than_ns) = 0;

 protected:
  Store() = default;
  // Called by the backend after every commit.
  void notify_commit() {
    if (commit_listener_) commit_listener_();
  }
  virtual Result<Ok> begin_transaction() = 0;
  // Rolls back when it fails.
  virtual Result<Ok> commit_transaction() = 0;
  virtual void rollback_transaction() = 0;

 private:
  std::function<void()> commit_listener_;
};

// The production backend (SQLite, sqlite_store.h) at `path`.
Result<std::unique_ptr<Store>> open_database(const std::string& path);

}  // namespace kg::policyd
