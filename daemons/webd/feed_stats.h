// What webd counts from policyd's feed: events by kind, rejections by reason, and
// one-minute buckets of knocks and rejections for the console's chart (last hour).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "ipc/messages.h"

namespace kg::webd {

class FeedStats {
 public:
  struct Bucket {
    int64_t minute = 0;  // Unix time / 60
    uint64_t knocks = 0;
    uint64_t rejects = 0;
  };
  static constexpr size_t kBuckets = 60;

  void add(const ipc::FeedEvent& e);
  // Rejections: kind "reject", or any kind starting "reject"/"spa_reject"; reason from the
  // detail's "reason" member.
  static bool is_rejection(const std::string& kind);

  const std::map<std::string, uint64_t>& by_kind() const { return by_kind_; }
  const std::map<std::string, uint64_t>& rejects_by_reason() const { return by_reason_; }
  // JSON for /api/v1/counters: buckets up to `now_minute`, gaps filled with zeros.
  std::string json(int64_t now_minute) const;

 private:
  std::map<std::string, uint64_t> by_kind_;
  std::map<std::string, uint64_t> by_reason_;
  std::deque<Bucket> buckets_;
};

}  // namespace kg::webd
