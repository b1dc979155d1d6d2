// A small RAII layer over the SQLite3 C API: a connection, prepared statements and
// transactions. Errors come back as kg::Result with SQLite's message; nothing throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kg::sql {

class Statement;

class Connection {
 public:
  Connection() = default;
  ~Connection();
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Opens (creating if missing) a database file in serialized, no-follow mode.
  static Result<Connection> open(const std::string& path);

  // Runs one or more statements that return no rows of interest.
  Result<Ok> exec(const std::string& sql);
  Result<Statement> prepare(std::string_view sql);

  Result<int64_t> user_version();
  Result<Ok> set_user_version(int64_t version);

  int64_t last_insert_rowid() const;
  int64_t changes() const;
  std::string last_error() const;
  bool is_open() const { return db_ != nullptr; }
  sqlite3* handle() { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement() = default;
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based as in SQLite. Text is copied (SQLITE_TRANSIENT).
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, std::string_view value);
  Statement& bind_null(int index);

  // true: a row is ready; false: done. Errors include the statement's SQL.
  Result<bool> step();
  // Steps to completion, for statements that return no rows.
  Result<Ok> run();
  // Resets and clears bindings so the statement can be reused.
  void reset();

  int64_t column_int64(int column) const;
  std::string column_text(int column) const;
  bool column_is_null(int column) const;

 private:
  friend class Connection;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  void note_bind(int rc);
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_status_ = 0;  // first failed bind, reported by the next step()
};

// BEGIN IMMEDIATE on construction (the write lock is taken up front, so a commit cannot
// fail with a busy upgrade); rolls back on destruction unless commit() succeeded.
class Transaction {
 public:
  static Result<Transaction> begin(Connection& db);
  ~Transaction();
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Result<Ok> commit();

 private:
  explicit Transaction(Connection* db) : db_(db) {}
  Connection* db_ = nullptr;  // null once committed or rolled back
};

}  // namespace kg::sql
