// NEW flows whose verdict waits for a grant (the SYN that overtook its knock's grant).
// A fixed ring in arrival order: bounded memory, O(1) insert and expiry; when it is full
// the caller drops at once. Entries resolved early stay as dead slots until they reach
// the front.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "verdictd/profiles.h"

namespace kg::verdictd {

struct HeldPacket {
  uint32_t packet_id = 0;
  uint16_t queue_index = 0;  // which of the daemon's queues
  uint32_t packet_mark = 0;
  int64_t deadline_ns = 0;  // CLOCK_MONOTONIC
  Flow flow;
  bool live = false;
};

class HoldTable {
 public:
  explicit HoldTable(size_t capacity) : ring_(capacity == 0 ? 1 : capacity) {}

  // False when full.
  bool add(const HeldPacket& p) {
    if (count_ == ring_.size()) return false;
    ring_[(head_ + count_) % ring_.size()] = p;
    ring_[(head_ + count_) % ring_.size()].live = true;
    ++count_;
    ++live_;
    return true;
  }

  // Calls f(packet) for each live entry from `source` (all if source is empty); an entry
  // is resolved (removed) when f returns true.
  template <typename F>
  size_t resolve(const IpAddr& source, F&& f) {
    size_t resolved = 0;
    for (size_t k = 0; k < count_; ++k) {
      HeldPacket& p = ring_[(head_ + k) % ring_.size()];
      if (!p.live || (!source.empty() && p.flow.src != source)) continue;
      if (f(static_cast<const HeldPacket&>(p))) {
        p.live = false;
        --live_;
        ++resolved;
      }
    }
    trim();
    return resolved;
  }

  // Removes entries whose deadline passed, calling f(packet) for each live one.
  template <typename F>
  size_t expire(int64_t now_ns, F&& f) {
    size_t expired = 0;
    while (count_ > 0) {
      HeldPacket& p = ring_[head_];
      if (p.live && p.deadline_ns > now_ns) break;
      if (p.live) {
        p.live = false;
        --live_;
        ++expired;
        f(static_cast<const HeldPacket&>(p));
      }
      pop();
    }
    return expired;
  }

  // The front's deadline: deadlines grow in arrival order (one hold time for all).
  std::optional<int64_t> next_deadline() const {
    if (count_ == 0) return std::nullopt;
    return ring_[head_].deadline_ns;
  }
  size_t live() const { return live_; }
  size_t slots_used() const { return count_; }
  size_t capacity() const { return ring_.size(); }

 private:
  void pop() {
    head_ = (head_ + 1) % ring_.size();
    --count_;
  }
  void trim() {
    while (count_ > 0 && !ring_[head_].live) pop();
  }

  std::vector<HeldPacket> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  size_t live_ = 0;
};

}  // namespace kg::verdictd
