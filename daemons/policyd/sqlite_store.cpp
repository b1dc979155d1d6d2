#include "policyd/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace kg::policyd {

#define KG_GRANT_COLUMNS                                                                 \
  "id, source, profile, method, origin, created_ns, expires_ns, max_expires_ns, state, " \
  "ended_ns, ended_by, failure"

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
      {3, "grants",
       R"sql(
CREATE TABLE grants (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  source         TEXT NOT NULL,
  profile        TEXT NOT NULL,
  method         TEXT NOT NULL,
  origin         TEXT NOT NULL DEFAULT '',
  created_ns     INTEGER NOT NULL,
  expires_ns     INTEGER NOT NULL,
  max_expires_ns INTEGER NOT NULL,
  state          TEXT NOT NULL DEFAULT 'active'
                 CHECK (state IN ('active', 'expired', 'revoked', 'failed')),
  ended_ns       INTEGER,
  ended_by       TEXT,
  failure        TEXT
);
-- At most one active grant per (source, profile): knocking again extends it.
CREATE UNIQUE INDEX grants_active_by_source ON grants (source, profile) WHERE state = 'active';
CREATE INDEX grants_active_by_expiry ON grants (expires_ns) WHERE state = 'active';
CREATE INDEX audit_by_source ON audit (source, id);
)sql"},
      {4, "SPA replay cache",
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

namespace {

// The database's directory, created (0750: root and the admin group) when it is missing.
// When it cannot be, the error names the path that is missing and why.
Result<Ok> ensure_database_dir(const std::string& db_path) {
  const size_t slash = db_path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Ok{};  // the working directory, or /
  const std::string dir = db_path.substr(0, slash);
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Ok{};
    return Error{"Database " + db_path + ": " + dir + " is not a directory"};
  }
  if (errno != ENOENT) {
    return Error{"Database " + db_path + ": directory " + dir + ": " + std::strerror(errno)};
  }
  if (::mkdir(dir.c_str(), 0750) == 0) {
    (void)::chmod(dir.c_str(), 0750);  // whatever the umask
    return Ok{};
  }
  const int err = errno;
  if (err == EEXIST) return Ok{};  // created meanwhile
  if (err == ENOENT) {
    // Only the last directory is created: a missing parent is more likely a typo.
    std::string missing = dir.substr(0, dir.rfind('/'));
    for (std::string up = missing; !up.empty() && ::stat(up.c_str(), &st) != 0;
         up = up.substr(0, up.rfind('/'))) {
      missing = up;
    }
    return Error{"Database " + db_path + ": cannot create its directory " + dir + ": " + missing +
                 " does not exist"};
  }
  return Error{"Database " + db_path + ": cannot create its directory " + dir + ": " +
               std::strerror(err)};
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path) {
  if (auto dir = ensure_database_dir(path); !dir) return dir.error();
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
  for (const char* pragma : {"PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON"}) {
    auto ok = db.exec(pragma);
    if (!ok) return Error{std::string(pragma) + ": " + ok.error().message};
  }
  auto migrated = migrate(db, latest_schema_version());
  if (!migrated) return Error{path + ": " + migrated.error().message};

  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(*conn), path));
  auto prepared = store->prepare_statements();
  if (!prepared) return prepared.error();
  // Replaces SQLite's automatic checkpoint (which would fsync twice inside a commit, on
  // the knock's critical path): sync() checkpoints instead.
  sqlite3_wal_hook(store->db_.handle(), &SqliteStore::wal_hook, store.get());
  return store;
}

SqliteStore::~SqliteStore() {
  if (db_.is_open()) sqlite3_wal_hook(db_.handle(), nullptr, nullptr);
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

int SqliteStore::wal_hook(void* self, sqlite3* /*db*/, const char* /*name*/, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  store->unsynced_ = true;
  store->wal_pages_ = pages;
  store->notify_commit();
  return SQLITE_OK;
}

Result<Ok> SqliteStore::checkpoint() {
  // PASSIVE never waits for readers; with synchronous=NORMAL it syncs the WAL before
  // copying and the database after, so everything committed is durable either way.
  const int rc =
      sqlite3_wal_checkpoint_v2(db_.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  if (rc != SQLITE_OK) return Error{"checkpoint: " + db_.last_error()};
  unsynced_ = false;
  wal_pages_ = 0;
  return Ok{};
}

Result<Ok> SqliteStore::sync() {
  if (!unsynced_) return Ok{};
  if (wal_pages_ >= kForceCheckpointPages) return checkpoint();
  const std::string wal = path_ + "-wal";
  struct stat by_path {};
  if (::stat(wal.c_str(), &by_path) != 0) {
    return Error{"sync: " + wal + ": " + std::strerror(errno)};
  }
  struct stat ours {};
  if (wal_fd_ >= 0 && (::fstat(wal_fd_, &ours) != 0 || ours.st_ino != by_path.st_ino ||
                       ours.st_dev != by_path.st_dev)) {
    ::close(wal_fd_);
    wal_fd_ = -1;
  }
  if (wal_fd_ < 0) {
    wal_fd_ = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (wal_fd_ < 0) return Error{"sync: " + wal + ": " + std::strerror(errno)};
  }
  if (::fdatasync(wal_fd_) != 0) return Error{"sync: " + wal + ": " + std::strerror(errno)};
  unsynced_ = false;
  return Ok{};
}

Result<std::unique_ptr<Store>> open_database(const std::string& path) {
  auto store = SqliteStore::open(path);
  if (!store) return store.error();
  return std::unique_ptr<Store>(std::move(*store));
}

Result<Ok> SqliteStore::begin_transaction() {
  auto txn = sql::Transaction::begin(db_);
  if (!txn) return txn.error();
  txn_.emplace(std::move(*txn));
  return Ok{};
}

Result<Ok> SqliteStore::commit_transaction() {
  if (!txn_) return Error{"commit: transaction is not active"};
  auto committed = txn_->commit();
  txn_.reset();
  return committed;
}

void SqliteStore::rollback_transaction() {
  txn_.reset();
}

Result<Ok> SqliteStore::prepare_statements() {
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
      {&insert_grant_,
       "INSERT INTO grants (source, profile, method, origin, created_ns, expires_ns, "
       "max_expires_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
      {&update_grant_expires_,
       "UPDATE grants SET expires_ns = ?2 WHERE id = ?1 AND state = 'active'"},
      {&end_grant_,
       "UPDATE grants SET state = ?2, ended_ns = ?3, ended_by = ?4, failure = ?5 "
       "WHERE id = ?1 AND state = 'active'"},
      {&active_grants_,
       "SELECT " KG_GRANT_COLUMNS " FROM grants WHERE state = 'active' ORDER BY id"},
      {&grant_by_id_, "SELECT " KG_GRANT_COLUMNS " FROM grants WHERE id = ?1"},
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

Result<int64_t> SqliteStore::append_audit(int64_t time_ns, std::string_view kind,
                                          std::string_view door, std::string_view source,
                                          std::string_view detail) {
  insert_audit_.bind(1, time_ns).bind(2, kind).bind(3, door).bind(4, source).bind(5, detail);
  auto ok = insert_audit_.run();
  if (!ok) return ok.error();
  return db_.last_insert_rowid();
}

Result<bool> SqliteStore::mark_event_seen(uint64_t sender_boot_id, uint64_t event_id,
                                          int64_t now_ns) {
  // SQLite integers are signed 64-bit; the ids keep their bit patterns.
  insert_event_seen_.bind(1, static_cast<int64_t>(sender_boot_id))
      .bind(2, static_cast<int64_t>(event_id))
      .bind(3, now_ns);
  auto ok = insert_event_seen_.run();
  if (!ok) return ok.error();
  return db_.changes() == 1;
}

Result<int64_t> SqliteStore::prune_events_seen(int64_t older_than_ns) {
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

Result<std::optional<PendingStop>> SqliteStore::find_pending_stop(std::string_view door,
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

Result<int64_t> SqliteStore::insert_pending_stop(const PendingStop& stop) {
  insert_pending_.bind(1, stop.door)
      .bind(2, stop.source)
      .bind(3, stop.command)
      .bind(4, stop.due_time_ns)
      .bind(5, stop.created_ns);
  auto ok = insert_pending_.run();
  if (!ok) return ok.error();
  return db_.last_insert_rowid();
}

Result<Ok> SqliteStore::set_pending_stop_due(int64_t id, int64_t due_time_ns) {
  update_pending_due_.bind(1, id).bind(2, due_time_ns);
  return update_pending_due_.run();
}

Result<Ok> SqliteStore::delete_pending_stop(int64_t id) {
  delete_pending_.bind(1, id);
  return delete_pending_.run();
}

namespace {

// Every row of a prepared statement, read by `read_row`; the statement is reset after,
// error or not, so it can be bound and stepped again.
template <typename ReadRow>
auto read_all(sql::Statement& stmt, ReadRow read_row)
    -> Result<std::vector<decltype(read_row(stmt))>> {
  std::vector<decltype(read_row(stmt))> out;
  for (;;) {
    auto row = stmt.step();
    if (!row) {
      stmt.reset();
      return row.error();
    }
    if (!*row) break;
    out.push_back(read_row(stmt));
  }
  stmt.reset();
  return out;
}

AuditRecord read_audit(const sql::Statement& s) {
  AuditRecord r;
  r.id = s.column_int64(0);
  r.time_ns = s.column_int64(1);
  r.kind = s.column_text(2);
  r.door = s.column_text(3);
  r.source = s.column_text(4);
  r.detail = s.column_text(5);
  return r;
}

}  // namespace

Result<std::vector<PendingStop>> SqliteStore::pending_stops() {
  return read_all(all_pending_, read_pending);
}

Result<int64_t> SqliteStore::record_one_time_used(const OneTimeUse& use) {
  insert_one_time_.bind(1, use.door)
      .bind(2, use.file)
      .bind(3, use.line)
      .bind(4, use.sequence)
      .bind(5, use.time_ns);
  auto ok = insert_one_time_.run();
  if (!ok) return ok.error();
  return db_.last_insert_rowid();
}

Result<std::vector<AuditRecord>> SqliteStore::audit_after(int64_t after_id, int64_t limit) {
  audit_after_.bind(1, after_id).bind(2, limit);
  return read_all(audit_after_, read_audit);
}

namespace {

GrantRow read_grant(const sql::Statement& s) {
  GrantRow g;
  g.id = s.column_int64(0);
  g.source = s.column_text(1);
  g.profile = s.column_text(2);
  g.method = s.column_text(3);
  g.origin = s.column_text(4);
  g.created_ns = s.column_int64(5);
  g.expires_ns = s.column_int64(6);
  g.max_expires_ns = s.column_int64(7);
  g.state = s.column_text(8);
  g.ended_ns = s.column_is_null(9) ? 0 : s.column_int64(9);
  g.ended_by = s.column_text(10);
  g.failure = s.column_text(11);
  return g;
}

Result<std::vector<GrantRow>> read_grants(sql::Statement& stmt) {
  return read_all(stmt, read_grant);
}

}  // namespace

Result<int64_t> SqliteStore::insert_grant(const GrantRow& g) {
  insert_grant_.bind(1, g.source)
      .bind(2, g.profile)
      .bind(3, g.method)
      .bind(4, g.origin)
      .bind(5, g.created_ns)
      .bind(6, g.expires_ns)
      .bind(7, g.max_expires_ns);
  auto ok = insert_grant_.run();
  if (!ok) return ok.error();
  return db_.last_insert_rowid();
}

Result<Ok> SqliteStore::set_grant_expires(int64_t id, int64_t expires_ns) {
  update_grant_expires_.bind(1, id).bind(2, expires_ns);
  return update_grant_expires_.run();
}

Result<bool> SqliteStore::end_grant(int64_t id, std::string_view state, int64_t ended_ns,
                                    std::string_view ended_by, std::string_view failure) {
  end_grant_.bind(1, id).bind(2, state).bind(3, ended_ns);
  if (ended_by.empty()) {
    end_grant_.bind_null(4);
  } else {
    end_grant_.bind(4, ended_by);
  }
  if (failure.empty()) {
    end_grant_.bind_null(5);
  } else {
    end_grant_.bind(5, failure);
  }
  auto ok = end_grant_.run();
  if (!ok) return ok.error();
  return db_.changes() == 1;
}

Result<std::vector<GrantRow>> SqliteStore::active_grants() {
  return read_grants(active_grants_);
}

Result<std::optional<GrantRow>> SqliteStore::grant(int64_t id) {
  grant_by_id_.bind(1, id);
  auto rows = read_grants(grant_by_id_);
  if (!rows) return rows.error();
  if (rows->empty()) return std::optional<GrantRow>{};
  return std::optional<GrantRow>(std::move(rows->front()));
}

Result<std::vector<GrantRow>> SqliteStore::grants(const GrantFilter& filter) {
  // Built from fixed fragments; every value is a bound parameter.
  std::string text = "SELECT " KG_GRANT_COLUMNS " FROM grants WHERE 1";
  if (!filter.all) text += " AND state = 'active'";
  if (filter.source) text += " AND source = ?1";
  if (filter.profile) text += " AND profile = ?2";
  text += " ORDER BY id";
  if (filter.limit > 0) text += " LIMIT " + std::to_string(filter.limit);
  auto stmt = db_.prepare(text);
  if (!stmt) return stmt.error();
  if (filter.source) stmt->bind(1, *filter.source);
  if (filter.profile) stmt->bind(2, *filter.profile);
  return read_grants(*stmt);
}

Result<std::vector<AuditRecord>> SqliteStore::audit_query(const AuditFilter& filter) {
  std::string text = "SELECT id, time_ns, kind, door, source, detail FROM audit WHERE 1";
  if (filter.since_ns) text += " AND time_ns >= ?1";
  if (filter.until_ns) text += " AND time_ns < ?2";
  if (filter.source) text += " AND source = ?3";
  if (filter.kind) text += " AND kind = ?4";
  if (filter.before_id) text += " AND id < ?5";
  text += " ORDER BY id DESC LIMIT ?6";
  auto stmt = db_.prepare(text);
  if (!stmt) return stmt.error();
  if (filter.since_ns) stmt->bind(1, *filter.since_ns);
  if (filter.until_ns) stmt->bind(2, *filter.until_ns);
  if (filter.source) stmt->bind(3, *filter.source);
  if (filter.kind) stmt->bind(4, *filter.kind);
  if (filter.before_id) stmt->bind(5, *filter.before_id);
  stmt->bind(6, filter.limit);
  return read_all(*stmt, read_audit);
}

}  // namespace kg::policyd
