// policyd's database: schema, migrations and the typed operations the daemon needs.
// Everything that must survive a crash or power loss is committed with WAL and
// synchronous=FULL before it takes effect.
#pragma once

#include <cstdint>
#include <memory>
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
inline constexpr std::string_view one_time_error = "one_time_error";  // file unusable
inline constexpr std::string_view grant_requested = "grant_requested";
inline constexpr std::string_view daemon_start = "daemon_start";
inline constexpr std::string_view daemon_stop = "daemon_stop";
inline constexpr std::string_view config_reload = "config_reload";
inline constexpr std::string_view spa_accepted = "spa_accepted";  // verified, first use
inline constexpr std::string_view spa_replayed = "spa_replayed";  // second use refused
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
  // Opens or creates the database, sets WAL/synchronous=FULL/foreign_keys and migrates
  // it to the latest schema.
  static Result<std::unique_ptr<Store>> open(const std::string& path);

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
  explicit Store(sql::Connection db) : db_(std::move(db)) {}
  Result<Ok> prepare_statements();

  sql::Connection db_;
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
  sql::Statement insert_spa_replay_;
  sql::Statement prune_spa_replay_;
};

}  // namespace kg::policyd
