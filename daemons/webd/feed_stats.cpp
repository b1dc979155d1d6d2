#include "webd/feed_stats.h"

#include "webd/json.h"

namespace kg::webd {

bool FeedStats::is_rejection(const std::string& kind) {
  return kind.rfind("reject", 0) == 0 || kind.rfind("spa_reject", 0) == 0 || kind == "refused";
}

void FeedStats::add(const ipc::FeedEvent& e) {
  static constexpr size_t kMaxLabels = 64;  // bounded label sets for /metrics
  const std::string kind = e.kind.size() <= 32 ? e.kind : e.kind.substr(0, 32);
  if (by_kind_.size() < kMaxLabels || by_kind_.count(kind) != 0) ++by_kind_[kind];
  const bool knock = kind == "knock" || kind == "spa";
  const bool reject = is_rejection(kind);
  if (reject) {
    std::string reason = "unknown";
    if (auto detail = json::parse(e.detail_json)) {
      if (const auto* r = detail->find("reason"); r != nullptr && r->as_string() != nullptr) {
        reason = r->as_string()->substr(0, 48);
      }
    }
    if (by_reason_.size() < kMaxLabels || by_reason_.count(reason) != 0) ++by_reason_[reason];
  }
  if (!knock && !reject) return;
  const int64_t minute = e.time_ns / 60'000'000'000LL;
  if (buckets_.empty() || buckets_.back().minute < minute) {
    buckets_.push_back(Bucket{minute, 0, 0});
    while (buckets_.size() > kBuckets) buckets_.pop_front();
  }
  for (auto it = buckets_.rbegin(); it != buckets_.rend(); ++it) {
    if (it->minute == minute) {
      (knock ? it->knocks : it->rejects) += 1;
      break;
    }
  }
}

std::string FeedStats::json(int64_t now_minute) const {
  json::Writer w;
  w.begin_object().key("bucket_s").value(60).key("buckets").begin_array();
  size_t b = 0;
  for (int64_t m = now_minute - static_cast<int64_t>(kBuckets) + 1; m <= now_minute; ++m) {
    while (b < buckets_.size() && buckets_[b].minute < m) ++b;
    uint64_t knocks = 0;
    uint64_t rejects = 0;
    if (b < buckets_.size() && buckets_[b].minute == m) {
      knocks = buckets_[b].knocks;
      rejects = buckets_[b].rejects;
    }
    w.begin_object().key("t").value(m * 60).key("knocks").value(knocks);
    w.key("rejects").value(rejects).end_object();
  }
  w.end_array().key("by_kind").begin_object();
  for (const auto& [k, n] : by_kind_) w.key(k).value(n);
  w.end_object().key("rejects_by_reason").begin_object();
  for (const auto& [k, n] : by_reason_) w.key(k).value(n);
  w.end_object().end_object();
  return w.take();
}

}  // namespace kg::webd
