// The SQLite backend of Store: schema, migrations, prepared statements. Commits run in
// WAL mode with synchronous=NORMAL: atomic, and durable across a crash of policyd (the
// WAL is in the page cache), but not yet across power loss. sync() makes them durable on
// disk; policyd calls it right after the action a commit allows has started, so the
// ~2 ms fsync of this disk is off the knock-to-action path. Power loss in that window
// also wipes the kernel state (firewall rules, routes) the action made, and captured
// still holds the event: EventAck follows sync().
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
#include "policyd/sqlite.h"
#include "policyd/store.h"

struct sqlite3;

namespace kg::policyd {

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

class SqliteStore final : public Store {
 public:
  // Opens or creates the database (and its directory, mode 0750, when that is missing),
  // sets WAL/synchronous=NORMAL/foreign_keys and migrates it to the latest schema.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path);
  ~SqliteStore() override;

  // True when commits since the last sync() are not yet on disk.
  bool needs_sync() const override { return unsynced_; }
  // fdatasync of the WAL; a checkpoint (which syncs WAL and database) instead once the WAL
  // has grown past kForceCheckpointPages. No-op when nothing is unsynced.
  Result<Ok> sync() override;
  // Past kCheckpointPages a checkpoint is due; the engine runs it once no commit came for
  // a moment, so its copy and two fsyncs (milliseconds) do not delay a knock's grant.
  // Under a steady stream of commits the WAL grows to kForceCheckpointPages (64 MiB) and
  // sync() checkpoints then.
  bool checkpoint_due() const override { return wal_pages_ >= kCheckpointPages; }
  Result<Ok> checkpoint() override;
  static constexpr int kCheckpointPages = 1000;
  static constexpr int kForceCheckpointPages = 16000;

  // For tests and tools that read the tables directly.
  sql::Connection& connection() { return db_; }
  Result<int64_t> schema_version() { return db_.user_version(); }

  Result<int64_t> append_audit(int64_t time_ns, std::string_view kind, std::string_view door,
                               std::string_view source, std::string_view detail) override;
  Result<std::vector<AuditRecord>> audit_query(const AuditFilter& filter) override;
  Result<std::vector<AuditRecord>> audit_after(int64_t after_id, int64_t limit) override;
  Result<bool> mark_event_seen(uint64_t sender_boot_id, uint64_t event_id, int64_t now_ns) override;
  Result<int64_t> prune_events_seen(int64_t older_than_ns) override;
  Result<std::optional<PendingStop>> find_pending_stop(std::string_view door,
                                                       std::string_view source) override;
  Result<int64_t> insert_pending_stop(const PendingStop& stop) override;
  Result<Ok> set_pending_stop_due(int64_t id, int64_t due_time_ns) override;
  Result<Ok> delete_pending_stop(int64_t id) override;
  Result<std::vector<PendingStop>> pending_stops() override;
  Result<int64_t> record_one_time_used(const OneTimeUse& use) override;
  Result<int64_t> insert_grant(const GrantRow& grant) override;
  Result<Ok> set_grant_expires(int64_t id, int64_t expires_ns) override;
  Result<bool> end_grant(int64_t id, std::string_view state, int64_t ended_ns,
                         std::string_view ended_by, std::string_view failure) override;
  Result<std::vector<GrantRow>> active_grants() override;
  Result<std::optional<GrantRow>> grant(int64_t id) override;
  Result<std::vector<GrantRow>> grants(const GrantFilter& filter) override;
  // spa_store.cpp: one row per accepted SPA packet, keyed on its replay key.
  Result<bool> check_and_record_replay(std::span<const uint8_t, 32> replay_key,
                                       std::string_view door, std::string_view source,
                                       int64_t now_ns) override;
  Result<int64_t> prune_spa_replay(int64_t older_than_ns) override;

 protected:
  Result<Ok> begin_transaction() override;
  Result<Ok> commit_transaction() override;
  void rollback_transaction() override;

 private:
  SqliteStore(sql::Connection db, std::string path) : db_(std::move(db)), path_(std::move(path)) {}
  Result<Ok> prepare_statements();
  static int wal_hook(void* self, sqlite3* db, const char* name, int pages);

  sql::Connection db_;
  std::string path_;
  int wal_fd_ = -1;  // our own descriptor of PATH-wal, for fdatasync
  bool unsynced_ = false;
  int wal_pages_ = 0;
  std::optional<sql::Transaction> txn_;  // the open Store::Transaction
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
