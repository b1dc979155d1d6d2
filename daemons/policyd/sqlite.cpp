#include "policyd/sqlite.h"

#include <sqlite3.h>

#include <utility>

namespace kg::sql {

namespace {

std::string error_of(sqlite3* db, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : "out of memory";
  return msg;
}

}  // namespace

Connection::~Connection() {
  // sqlite3_close_v2 defers the close until every statement is finalized, so member
  // destruction order of the owners cannot leak the handle.
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

Connection::Connection(Connection&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

Result<Connection> Connection::open(const std::string& path) {
  sqlite3* db = nullptr;
  const int flags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  Connection conn(db);  // owns the handle even when opening failed
  if (rc != SQLITE_OK) return Error{error_of(db, "cannot open database " + path)};
  sqlite3_extended_result_codes(db, 1);
  // Readers (knockgatectl, the sqlite3 shell) may hold the database briefly.
  sqlite3_busy_timeout(db, 5000);
  return conn;
}

Result<Ok> Connection::exec(const std::string& sql) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    std::string text = message != nullptr ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    return Error{text};
  }
  return Ok{};
}

Result<Statement> Connection::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return Error{error_of(db_, "prepare " + std::string(sql))};
  return Statement(db_, stmt);
}

Result<int64_t> Connection::user_version() {
  auto stmt = prepare("PRAGMA user_version");
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  if (!*row) return Error{"PRAGMA user_version returned no row"};
  return stmt->column_int64(0);
}

Result<Ok> Connection::set_user_version(int64_t version) {
  // PRAGMA takes no bound parameters; the value is an integer we produce.
  return exec("PRAGMA user_version = " + std::to_string(version));
}

int64_t Connection::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}
int64_t Connection::changes() const {
  return sqlite3_changes64(db_);
}
std::string Connection::last_error() const {
  return db_ != nullptr ? sqlite3_errmsg(db_) : "";
}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      bind_status_(std::exchange(other.bind_status_, SQLITE_OK)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
    bind_status_ = std::exchange(other.bind_status_, SQLITE_OK);
  }
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  note_bind(sqlite3_bind_int64(stmt_, index, value));
  return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
  // A default-constructed view has no data pointer, which SQLite would bind as NULL;
  // an empty text is still text.
  const char* data = value.data() != nullptr ? value.data() : "";
  note_bind(sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  return *this;
}

Statement& Statement::bind_null(int index) {
  note_bind(sqlite3_bind_null(stmt_, index));
  return *this;
}

Result<bool> Statement::step() {
  if (bind_status_ != SQLITE_OK) {
    const int rc = std::exchange(bind_status_, SQLITE_OK);
    return Error{std::string("bind: ") + sqlite3_errstr(rc)};
  }
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  const char* sql = sqlite3_sql(stmt_);
  return Error{error_of(db_, sql != nullptr ? sql : "step")};
}

Result<Ok> Statement::run() {
  for (;;) {
    auto row = step();
    if (!row) {
      reset();
      return row.error();
    }
    if (!*row) break;
  }
  reset();
  return Ok{};
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_status_ = SQLITE_OK;
}

void Statement::note_bind(int rc) {
  if (rc != SQLITE_OK && bind_status_ == SQLITE_OK) bind_status_ = rc;
}

int64_t Statement::column_int64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

std::string Statement::column_text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  const int size = sqlite3_column_bytes(stmt_, column);
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(size));
}

bool Statement::column_is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

Result<Transaction> Transaction::begin(Connection& db) {
  auto ok = db.exec("BEGIN IMMEDIATE");
  if (!ok) return Error{"begin transaction: " + ok.error().message};
  return Transaction(&db);
}

Transaction::Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Transaction::~Transaction() {
  if (db_ != nullptr) (void)db_->exec("ROLLBACK");
}

Result<Ok> Transaction::commit() {
  if (db_ == nullptr) return Error{"commit: transaction is not active"};
  auto ok = db_->exec("COMMIT");
  if (!ok) {
    // A failed COMMIT may leave the transaction open (e.g. SQLITE_BUSY); roll it back
    // so the connection is usable again, and report the failure.
    (void)db_->exec("ROLLBACK");
    db_ = nullptr;
    return Error{"commit: " + ok.error().message};
  }
  db_ = nullptr;
  return Ok{};
}

}  // namespace kg::sql
