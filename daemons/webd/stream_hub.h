// The live stream's fan-out: every Server-Sent Events client registers a sink; a published
// event is formatted once and shared by all of them. A client that cannot keep up is
// dropped by its connection (bounded queue), never slows the others.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace kg::webd {

class StreamHub {
 public:
  using Frame = std::shared_ptr<const std::string>;
  using Sink = std::function<void(const Frame&)>;

  // Registers a client; it gets the recent feed history first.
  uint64_t add(Sink sink);
  void remove(uint64_t id) { sinks_.erase(id); }
  // `event: NAME\ndata: JSON\n\n`; feed events are also kept for clients joining later.
  void publish(std::string_view event, std::string_view data_json, bool keep = false);
  size_t clients() const { return sinks_.size(); }
  uint64_t published() const { return published_; }

 private:
  static constexpr size_t kHistory = 50;
  std::map<uint64_t, Sink> sinks_;
  std::deque<Frame> history_;
  uint64_t next_id_ = 1;
  uint64_t published_ = 0;
};

}  // namespace kg::webd
