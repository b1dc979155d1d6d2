#include "ipc/admission.h"

#include <algorithm>
#include <utility>

namespace kg::ipc {

namespace {

// Distinct uids one summary names counts for; more only add to the totals.
constexpr size_t kMaxUidsTracked = 256;

std::string plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

AdmissionControl::AdmissionControl(ConnectionLimits limits, std::vector<uid_t> reserved_uids)
    : limits_(limits), reserved_uids_(std::move(reserved_uids)) {}

std::optional<std::string> AdmissionControl::invalid(const ConnectionLimits& l) {
  if (l.max_connections == 0) return "max_connections must be at least 1";
  if (l.reserved_connections >= l.max_connections) {
    return "reserved_connections must be below max_connections";
  }
  if (l.max_connections_per_uid == 0 || l.max_handshaking_per_uid == 0) {
    return "per-uid connection limits must be at least 1";
  }
  if (l.max_handshaking_per_uid > l.max_connections_per_uid) {
    return "max_handshaking_per_uid must not exceed max_connections_per_uid";
  }
  return std::nullopt;
}

bool AdmissionControl::reserved(uid_t uid) const {
  return uid == 0 ||
         std::find(reserved_uids_.begin(), reserved_uids_.end(), uid) != reserved_uids_.end();
}

Admission AdmissionControl::admit(uid_t uid) {
  if (total_ >= limits_.max_connections) return Admission::full;
  if (!reserved(uid) && total_ >= limits_.max_connections - limits_.reserved_connections) {
    return Admission::unreserved_full;
  }
  if (uid != 0) {
    const auto it = per_uid_.find(uid);
    if (it != per_uid_.end()) {
      if (it->second.all >= limits_.max_connections_per_uid) return Admission::uid_limit;
      if (it->second.handshaking >= limits_.max_handshaking_per_uid) {
        return Admission::uid_handshaking_limit;
      }
    }
  }
  Counts& c = per_uid_[uid];
  ++c.all;
  ++c.handshaking;
  ++total_;
  return Admission::admitted;
}

void AdmissionControl::authenticated(uid_t uid) {
  const auto it = per_uid_.find(uid);
  if (it != per_uid_.end() && it->second.handshaking > 0) --it->second.handshaking;
}

void AdmissionControl::release(uid_t uid, bool was_authenticated) {
  const auto it = per_uid_.find(uid);
  if (it == per_uid_.end()) return;
  if (!was_authenticated && it->second.handshaking > 0) --it->second.handshaking;
  if (it->second.all > 0) --it->second.all;
  if (total_ > 0) --total_;
  if (it->second.all == 0) per_uid_.erase(it);
}

size_t AdmissionControl::connections_of(uid_t uid) const {
  const auto it = per_uid_.find(uid);
  return it == per_uid_.end() ? 0 : it->second.all;
}

size_t AdmissionControl::handshaking_of(uid_t uid) const {
  const auto it = per_uid_.find(uid);
  return it == per_uid_.end() ? 0 : it->second.handshaking;
}

std::string AdmissionControl::describe(Admission a, uid_t uid) const {
  const std::string who = "uid " + std::to_string(uid);
  switch (a) {
    case Admission::admitted:
      return "admitted";
    case Admission::full:
      return "the server has its maximum of " + std::to_string(limits_.max_connections) +
             " connections";
    case Admission::unreserved_full:
      return "only the " + std::to_string(limits_.reserved_connections) +
             " connections reserved for root and the daemons' users are left";
    case Admission::uid_limit:
      return who + " already has " + std::to_string(limits_.max_connections_per_uid) +
             " connections";
    case Admission::uid_handshaking_limit:
      return who + " already has " + std::to_string(limits_.max_handshaking_per_uid) +
             " connections before Hello";
  }
  return "unknown";
}

RejectionLog::RejectionLog(size_t burst, std::chrono::milliseconds interval)
    : burst_(burst), interval_(interval) {}

bool RejectionLog::note(Rejection kind, uid_t uid, Clock::time_point now) {
  if (started_ && now >= *started_ + interval_) {
    // The interval ended without anyone asking for its summary; nothing was held back
    // then (a held-back line arms the caller's timer), so just begin anew.
    if (held_back_ == 0) reset();
  }
  if (!started_) started_ = now;
  ++counts_[static_cast<size_t>(kind)];
  if (by_uid_.size() < kMaxUidsTracked || by_uid_.count(uid) != 0) ++by_uid_[uid];
  if (logged_ < burst_) {
    ++logged_;
    return true;
  }
  ++held_back_;
  return false;
}

std::optional<RejectionLog::Clock::time_point> RejectionLog::summary_due() const {
  if (!started_ || held_back_ == 0) return std::nullopt;
  return *started_ + interval_;
}

std::optional<std::string> RejectionLog::summary(Clock::time_point now) {
  if (!started_ || now < *started_ + interval_) return std::nullopt;
  return flush(now);
}

std::optional<std::string> RejectionLog::flush(Clock::time_point now) {
  std::optional<std::string> out;
  if (held_back_ > 0) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - *started_);
    out = text(std::clamp(elapsed, std::chrono::milliseconds(0), interval_));
  }
  reset();
  return out;
}

void RejectionLog::reset() {
  started_.reset();
  logged_ = 0;
  held_back_ = 0;
  std::fill(std::begin(counts_), std::end(counts_), 0);
  by_uid_.clear();
}

std::string RejectionLog::text(std::chrono::milliseconds span) const {
  static constexpr const char* kWhat[kRejectionKinds] = {
      "over connection limits", "without peer credentials",     "without Hello in time",
      "refused at Hello",       "protocol errors before Hello", "closed by the peer before Hello"};
  uint64_t total = 0;
  std::string parts;
  for (size_t i = 0; i < kRejectionKinds; ++i) {
    if (counts_[i] == 0) continue;
    total += counts_[i];
    if (!parts.empty()) parts += ", ";
    parts += std::to_string(counts_[i]) + " " + kWhat[i];
  }
  std::string s = plural(total, "unauthenticated connection", "unauthenticated connections") +
                  " closed in " + std::to_string(span.count()) + " ms (" + parts + "); " +
                  std::to_string(held_back_) + " not logged one by one";
  const auto top =
      std::max_element(by_uid_.begin(), by_uid_.end(),
                       [](const auto& a, const auto& b) { return a.second < b.second; });
  if (top != by_uid_.end()) {
    s += "; most from uid " + std::to_string(top->first) + " (" + std::to_string(top->second) + ")";
    if (by_uid_.size() > 1) s += ", " + plural(by_uid_.size(), "uid", "uids") + " in all";
    if (by_uid_.size() >= kMaxUidsTracked) s += " or more";
  }
  return s;
}

}  // namespace kg::ipc
