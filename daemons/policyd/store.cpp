#include "policyd/store.h"

#include <utility>

namespace kg::policyd {

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> list = {
      {1, "audit log, pending stop commands, event dedup",
       R"sql(
CREATE TABLE audit (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ns INTEGER NOT NULL,
  kind    TEXT NOT NULL,
  door    TEXT NOT NULL DEFAULT '',
  source  TEXT NOT NULL DEFAULT '',
  detail  TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER audit_no_update AFTER UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete AFTER DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;

CREATE TABLE pending_stop (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  door        TEXT NOT NULL,
  source      TEXT NOT NULL,
  command     TEXT NOT NULL,
  due_time_ns INTEGER NOT NULL,
  created_ns  INTEGER NOT NULL,
  UNIQUE (door, source)
);

CREATE TABLE event_seen (
  sender_boot_id INTEGER NOT NULL,
  event_id       INTEGER NOT NULL,
  seen_ns        INTEGER NOT NULL,
  PRIMARY KEY (sender_boot_id, event_id)
) WITHOUT ROWID;
)sql"},
      {2, "one-time sequences used, time indexes",
       R"sql(
CREATE TABLE one_time_used (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  door     TEXT NOT NULL,
  file     TEXT NOT NULL,
  line     INTEGER NOT NULL,
  sequence TEXT NOT NULL,
  time_ns  INTEGER NOT NULL
);
CREATE INDEX audit_by_time ON audit (time_ns);
CREATE INDEX event_seen_by_time ON event_seen (seen_ns);
)sql"},
      {3, "SPA replay cache",
       R"sql(
CREATE TABLE spa_replay (
  replay_key    TEXT PRIMARY KEY,
  first_seen_ns INTEGER NOT NULL,
  door          TEXT NOT NULL,
  source        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX spa_replay_by_time ON spa_replay (first_seen_ns);
)sql"},
  };
  return list;
}

int64_t latest_schema_version() {
  return migrations().back().version;
}

Result<Ok> migrate(sql::Connection& db, int64_t target) {
  // The version is read inside the write transaction so that two processes opening the
  // same file cannot both apply the same step.
  auto txn = sql::Transaction::begin(db);
  if (!txn) return txn.error();
  auto current = db.user_version();
  if (!current) return current.error();
  if (*current > latest_schema_version()) {
    return Error{"database schema version " + std::to_string(*current) +
                 " is newer than this knockgate understands (" +
                 std::to_string(latest_schema_version()) + "); refusing to open it"};
  }
  if (*current >= target) return Ok{};
  for (const Migration& m : migrations()) {
    if (m.version <= *current || m.version > target) continue;
    auto applied = db.exec(m.sql);
    if (!applied) {
      return Error{"schema migration " + std::to_string(m.version) + " (" + m.description +
                   "): " + applied.error().message};
    }
  }
  auto set = db.set_user_version(target);
  if (!set) return set.error();
  return txn->commit();
}

Result<std::unique_ptr<Store>> Store::open(const std::string& path) {
  auto conn = sql::Connection::open(path);
  if (!conn) return conn.error();
  sql::Connection& db = *conn;

  // WAL: readers (knockgatectl, the shell) never block the daemon's commits.
  auto mode = db.prepare("PRAGMA journal_mode = WAL");
  if (!mode) return mode.error();
  auto row = mode->step();
  if (!row) return row.error();
  if (!*row || mode->column_text(0) != "wal") {
    return Error{"cannot switch " + path + " to WAL journal mode"};
  }
  mode = sql::Statement{};  // finalize before the schema changes
  for (const char* pragma : {"PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON"}) {
    auto ok = db.exec(pragma);
    if (!ok) return Error{std::string(pragma) + ": " + ok.error().message};
  }
  auto migrated = migrate(db, latest_schema_version());
  if (!migrated) return Error{path + ": " + migrated.error().message};

  std::unique_ptr<Store> store(new Store(std::move(*conn)));
  auto prepared = store->prepare_statements();
  if (!prepared) return prepared.error();
  return store;
}

Result<Ok> Store::prepare_statements() {
  struct Item {
    sql::Statement* target;
    const char* text;
  };
  const Item items[] = {
      {&insert_audit_,
       "INSERT INTO audit (time_ns, kind, door, source, detail) VALUES (?1, ?2, ?3, ?4, ?5)"},
      {&insert_event_seen_,
       "INSERT OR IGNORE INTO event_seen (sender_boot_id, event_id, seen_ns) VALUES (?1, ?2, ?3)"},
      {&prune_event_seen_, "DELETE FROM event_seen WHERE seen_ns < ?1"},
      {&find_pending_,
       "SELECT id, door, source, command, due_time_ns, created_ns FROM pending_stop "
       "WHERE door = ?1 AND source = ?2"},
      {&insert_pending_,
       "INSERT INTO pending_stop (door, source, command, due_time_ns, created_ns) "
       "VALUES (?1, ?2, ?3, ?4, ?5)"},
      {&update_pending_due_, "UPDATE pending_stop SET due_time_ns = ?2 WHERE id = ?1"},
      {&delete_pending_, "DELETE FROM pending_stop WHERE id = ?1"},
      {&all_pending_,
       "SELECT id, door, source, command, due_time_ns, created_ns FROM pending_stop "
       "ORDER BY due_time_ns, id"},
      {&insert_one_time_,
       "INSERT INTO one_time_used (door, file, line, sequence, time_ns) "
       "VALUES (?1, ?2, ?3, ?4, ?5)"},
      {&audit_after_,
       "SELECT id, time_ns, kind, door, source, detail FROM audit WHERE id > ?1 "
       "ORDER BY id LIMIT ?2"},
      {&insert_spa_replay_,
       "INSERT OR IGNORE INTO spa_replay (replay_key, first_seen_ns, door, source) "
       "VALUES (?1, ?2, ?3, ?4)"},
      {&prune_spa_replay_, "DELETE FROM spa_replay WHERE first_seen_ns < ?1"},
  };
  for (const Item& item : items) {
    auto stmt = db_.prepare(item.text);
    if (!stmt) return stmt.error();
    *item.target = std::move(*stmt);
  }
  return Ok{};
}

Result<int64_t> Store::append_audit(int64_t time_ns, std::string_view kind, std::string_view door,
                                    std::string_view source, std::string_view detail) {
  insert_audit_.bind(1, time_ns).bind(2, kind).bind(3, door).bind(4, source).bind(5, detail);
  auto ok = insert_audit_.run();
  if (!ok) return ok.error();
  return db_.last_insert_rowid();
}

Result<bool> Store::mark_event_seen(uint64_t sender_boot_id, uint64_t event_id, int64_t now_ns) {
  // SQLite integers are signed 64-bit; the ids keep their bit patterns.
  insert_event_seen_.bind(1, static_cast<int64_t>(sender_boot_id))
      .bind(2, static_cast<int64_t>(event_id))
      .bind(3, now_ns);
  auto ok = insert_event_seen_.run();
  if (!ok) return ok.error();
  return db_.changes() == 1;
}

Result<int64_t> Store::prune_events_seen(int64_t older_than_ns) {
  prune_event_seen_.bind(1, older_than_ns);
  auto ok = prune_event_seen_.run();
  if (!ok) return ok.error();
  return db_.changes();
}

namespace {

PendingStop read_pending(const sql::Statement& s) {
  PendingStop p;
  p.id = s.column_int64(0);
  p.door = s.column_text(1);
  p.source = s.column_text(2);
  p.command = s.column_text(3);
  p.due_time_ns = s.column_int64(4);
  p.created_ns = s.column_int64(5);
  return p;
}

}  // namespace

Result<std::optional<PendingStop>> Store::find_pending_stop(std::string_view door,
                                                            std::string_view source) {
  find_pending_.bind(1, door).bind(2, source);
  auto row = find_pending_.step();
  if (!row) {
    find_pending_.reset();
    return row.error();
  }
  std::optional<PendingStop> found;
  if (*row) found = read_pending(find_pending_);
  find_pending_.reset();
  return found;
}

Result<int64_t> Store::insert_pending_stop(const PendingStop& stop) {
  insert_pending_.bind(1, stop.door)
      .bind(2, stop.source)
      .bind(3, stop.command)
      .bind(4, stop.due_time_ns)
      .bind(5, stop.created_ns);
  auto ok = insert_pending_.run();
  if (!ok) return ok.error();
  return db_.last_insert_rowid();
}

Result<Ok> Store::set_pending_stop_due(int64_t id, int64_t due_time_ns) {
  update_pending_due_.bind(1, id).bind(2, due_time_ns);
  return update_pending_due_.run();
}

Result<Ok> Store::delete_pending_stop(int64_t id) {
  delete_pending_.bind(1, id);
  return delete_pending_.run();
}

Result<std::vector<PendingStop>> Store::pending_stops() {
  std::vector<PendingStop> out;
  for (;;) {
    auto row = all_pending_.step();
    if (!row) {
      all_pending_.reset();
      return row.error();
    }
    if (!*row) break;
    out.push_back(read_pending(all_pending_));
  }
  all_pending_.reset();
  return out;
}

Result<int64_t> Store::record_one_time_used(const OneTimeUse& use) {
  insert_one_time_.bind(1, use.door)
      .bind(2, use.file)
      .bind(3, use.line)
      .bind(4, use.sequence)
      .bind(5, use.time_ns);
  auto ok = insert_one_time_.run();
  if (!ok) return ok.error();
  return db_.last_insert_rowid();
}

Result<std::vector<AuditRecord>> Store::audit_after(int64_t after_id, int64_t limit) {
  audit_after_.bind(1, after_id).bind(2, limit);
  std::vector<AuditRecord> out;
  for (;;) {
    auto row = audit_after_.step();
    if (!row) {
      audit_after_.reset();
      return row.error();
    }
    if (!*row) break;
    AuditRecord r;
    r.id = audit_after_.column_int64(0);
    r.time_ns = audit_after_.column_int64(1);
    r.kind = audit_after_.column_text(2);
    r.door = audit_after_.column_text(3);
    r.source = audit_after_.column_text(4);
    r.detail = audit_after_.column_text(5);
    out.push_back(std::move(r));
  }
  audit_after_.reset();
  return out;
}

}  // namespace kg::policyd
