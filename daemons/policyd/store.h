// policyd's database: schema, migrations and the typed operations the daemon needs.
// Everything is committed before it takes effect. Commits run in WAL mode with
// synchronous=NORMAL: atomic, and durable across a crash of policyd (the WAL is in the
// page cache), but not yet across power loss. sync() makes them durable on disk; policyd
// calls it right after the action a commit allows has started, so the ~2 ms fsync of this
// disk is off the knock-to-action path. Power loss in that window also wipes the kernel
// state (firewall rules, routes) the action made, and captured still holds the event:
// EventAck follows sync().
#pragma once

#include <cstdint>
#include <memory>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "policyd/sqlite.h"

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

// One schema step. Migrations are applied in order, all pending ones in one transaction
// at open; PRAGMA user_version records the last one applied.
struct Migration {
  int64_t version;
  const char* description;
  const char* sql;
};
const std::vector<Migration>& migrations();
int64_t latest_schema_version();

// Applies the migrations after the database's version up to `target` (inclusive) in one
// transaction. Refuses a database whose version is newer than the code knows.
Result<Ok> migrate(sql::Connection& db, int64_t target);

class Store {
 public:
  // Opens or creates the database (and its directory, mode 0750, when that is missing),
  // sets WAL/synchronous=NORMAL/foreign_keys and migrates it to the latest schema.
  static Result<std::unique_ptr<Store>> open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // True when commits since the last sync() are not yet on disk.
  bool needs_sync() const { return unsynced_; }
  // fdatasync of the WAL; a checkpoint (which syncs WAL and database) instead once the WAL
  // has grown past kCheckpointPages. No-op when nothing is unsynced.
  Result<Ok> sync();
  // Called after every commit (from SQLite's WAL hook): policyd posts a sync() to its loop.
  void on_commit(std::function<void()> listener) { commit_listener_ = std::move(listener); }
  static constexpr int kCheckpointPages = 1000;

  sql::Connection& connection() { return db_; }
  Result<sql::Transaction> begin() { return sql::Transaction::begin(db_); }
  Result<int64_t> schema_version() { return db_.user_version(); }

  Result<int64_t> append_audit(int64_t time_ns, std::string_view kind, std::string_view door,
                               std::string_view source, std::string_view detail);
  // Records (sender boot id, event id); false when it was already recorded: the sender
  // re-sent an event whose EventAck it never received.
  Result<bool> mark_event_seen(uint64_t sender_boot_id, uint64_t event_id, int64_t now_ns);
  // Forgets dedup entries older than the cutoff; returns how many went.
  Result<int64_t> prune_events_seen(int64_t older_than_ns);

  Result<std::optional<PendingStop>> find_pending_stop(std::string_view door,
                                                       std::string_view source);
  Result<int64_t> insert_pending_stop(const PendingStop& stop);
  Result<Ok> set_pending_stop_due(int64_t id, int64_t due_time_ns);
  Result<Ok> delete_pending_stop(int64_t id);
  Result<std::vector<PendingStop>> pending_stops();

  Result<int64_t> record_one_time_used(const OneTimeUse& use);

  // Grants. Callers wrap changes in a transaction together with their audit rows.
  Result<int64_t> insert_grant(const GrantRow& grant);
  Result<Ok> set_grant_expires(int64_t id, int64_t expires_ns);
  // Moves an active grant to `state`; false if it was not active.
  Result<bool> end_grant(int64_t id, std::string_view state, int64_t ended_ns,
                         std::string_view ended_by, std::string_view failure);
  Result<std::vector<GrantRow>> active_grants();
  Result<std::optional<GrantRow>> grant(int64_t id);
  Result<std::vector<GrantRow>> grants(const GrantFilter& filter);
  Result<std::vector<AuditRecord>> audit_query(const AuditFilter& filter);
  // The SPA replay cache (spa_store.cpp). Records the key and returns true on its first
  // use; false when it was seen before (a replay). Call inside the event's transaction.
  Result<bool> check_and_record_replay(std::span<const uint8_t, 32> replay_key,
                                       std::string_view door, std::string_view source,
                                       int64_t now_ns);
  // Forgets replay keys older than the cutoff (packets that old fail the age check).
  Result<int64_t> prune_spa_replay(int64_t older_than_ns);

  // Audit rows with id > after_id, oldest first, at most `limit`.
  Result<std::vector<AuditRecord>> audit_after(int64_t after_id, int64_t limit);

 private:
  Store(sql::Connection db, std::string path) : db_(std::move(db)), path_(std::move(path)) {}
  Result<Ok> prepare_statements();
  static int wal_hook(void* self, sqlite3* db, const char* name, int pages);

  sql::Connection db_;
  std::string path_;
  int wal_fd_ = -1;  // our own descriptor of PATH-wal, for fdatasync
  bool unsynced_ = false;
  int wal_pages_ = 0;
  std::function<void()> commit_listener_;
  sql::Statement insert_audit_;
  sql::Statement insert_event_seen_;
  sql::Statement prune_event_seen_;
  sql::Statement find_pending_;
  sql::Statement insert_pending_;
  sql::Statement update_pending_due_;
  sql::Statement delete_pending_;
  sql::Statement all_pending_;
  sql::Statement insert_one_time_;
  sql::Statement audit_after_;
  sql::Statement insert_grant_;
  sql::Statement update_grant_expires_;
  sql::Statement end_grant_;
  sql::Statement active_grants_;
  sql::Statement grant_by_id_;
  sql::Statement insert_spa_replay_;
  sql::Statement prune_spa_replay_;
};

}  // namespace kg::policyd
