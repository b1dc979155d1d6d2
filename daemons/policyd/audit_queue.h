// Audit rows for what happens after an event's commit (command spawned, exited, ...) are
// queued and written together: with the next transaction that commits anyway, or by a
// flush posted to the loop. One fsync then covers many rows, and none of them delays the
// next knock's commit. Failures are logged, never fatal.
//
// commit() is the one way the engine (PolicyCore, GrantBook) commits a transaction: the
// queued rows go into it, and leave the queue only once it has committed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "policyd/store.h"

namespace kg::policyd {

class AuditQueue {
 public:
  AuditQueue(boost::asio::io_context& io, Store& store)
      : io_(io), store_(store), alive_(std::make_shared<int>(0)) {}
  AuditQueue(const AuditQueue&) = delete;
  AuditQueue& operator=(const AuditQueue&) = delete;

  // Queues a row stamped now and posts a flush to the loop.
  void add(std::string_view kind, std::string_view door, std::string_view source,
           std::string_view detail);
  // Writes the queued rows into `txn` and commits it; the rows are dropped once it has
  // committed. On an error nothing is committed and the rows stay queued.
  Result<Ok> commit(Store::Transaction& txn);
  // Writes the queue now, in a transaction of its own.
  void flush();
  size_t size() const { return queue_.size(); }

  // Kept for the next attempt while the database fails, within reason: a database that
  // stays broken must not grow memory without bound.
  static constexpr size_t kMaxQueued = 100000;

 private:
  struct Row {
    int64_t time_ns;
    std::string kind, door, source, detail;
  };

  boost::asio::io_context& io_;
  Store& store_;
  std::vector<Row> queue_;
  bool flush_posted_ = false;
  std::shared_ptr<int> alive_;  // the posted flush holds a weak_ptr
};

}  // namespace kg::policyd
