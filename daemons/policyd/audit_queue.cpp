#include "policyd/audit_queue.h"

#include <boost/asio/post.hpp>
#include <cstddef>

#include "common/log.h"
#include "policyd/wall_clock.h"

namespace kg::policyd {

void AuditQueue::add(std::string_view kind, std::string_view door, std::string_view source,
                     std::string_view detail) {
  queue_.push_back(Row{wall_now_ns(), std::string(kind), std::string(door), std::string(source),
                       std::string(detail)});
  if (flush_posted_) return;
  flush_posted_ = true;
  std::weak_ptr<int> alive = alive_;
  boost::asio::post(io_, [this, alive] {
    if (alive.expired()) return;
    flush_posted_ = false;
    flush();
  });
}

Result<Ok> AuditQueue::commit(Store::Transaction& txn) {
  const size_t written = queue_.size();
  for (const Row& row : queue_) {
    auto r = store_.append_audit(row.time_ns, row.kind, row.door, row.source, row.detail);
    if (!r) return r.error();
  }
  auto committed = txn.commit();
  if (!committed) return committed.error();
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(written));
  return Ok{};
}

void AuditQueue::flush() {
  if (queue_.empty()) return;
  auto txn = store_.begin();
  Result<Ok> committed = txn ? commit(*txn) : Result<Ok>(txn.error());
  if (committed) return;
  kg::log::error(std::to_string(queue_.size()) +
                 " audit record(s) not written yet: " + committed.error().message);
  if (queue_.size() > kMaxQueued) {
    kg::log::error("dropping " + std::to_string(queue_.size() - kMaxQueued) +
                   " unwritten audit record(s)");
    queue_.erase(queue_.begin(),
                 queue_.begin() + static_cast<std::ptrdiff_t>(queue_.size() - kMaxQueued));
  }
}

}  // namespace kg::policyd
