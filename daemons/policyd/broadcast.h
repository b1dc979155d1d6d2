// The grant broadcast (docs/protocol.md "grant broadcast"): subscribers (verdictd, webd,
// knockgatectl for debugging) get a snapshot of the active grants cut to their frame
// limit, then one GrantDelta per change with seq = previous + 1, and FeedEvents if they
// asked for the feed. A subscriber that does not read is cut off by the session's bounded
// write queue (it reconnects, resubscribes and gets a new snapshot); policyd never waits.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <vector>

#include "ipc/messages.h"
#include "ipc/server.h"
#include "policyd/policy.h"

namespace kg::policyd {

// The snapshot as frames no larger than `max_frame_bytes`: first..last, at least one.
std::vector<ipc::GrantSnapshot> snapshot_chunks(uint32_t request_id, uint64_t seq,
                                                std::span<const ipc::GrantRecord> grants,
                                                size_t max_frame_bytes);

class Broadcaster final : public GrantObserver {
 public:
  using SnapshotSource = std::function<std::vector<ipc::GrantRecord>()>;
  explicit Broadcaster(SnapshotSource snapshot) : snapshot_(std::move(snapshot)) {}

  // A Subscribe from `session`: (re)registers its topics and, for grants, sends the
  // snapshot as of the current seq. Returns false if the session was dropped.
  bool subscribe(const ipc::SessionPtr& session, const ipc::Subscribe& request);
  void unsubscribe(uint64_t session_id) { subscribers_.erase(session_id); }

  void grant_pending(const IpAddr& source, const std::string& profile,
                     int64_t deadline_ns) override;
  void grant_changed(ipc::GrantOp op, const ipc::GrantRecord& grant,
                     const std::string& reason) override;
  void feed(const ipc::FeedEvent& event) override;

  uint64_t seq() const { return seq_; }
  size_t subscriber_count() const { return subscribers_.size(); }
  uint64_t subscribers_dropped() const { return dropped_; }

 private:
  struct Subscriber {
    std::weak_ptr<ipc::Session> session;
    uint32_t topics = 0;
  };
  void send_to(uint32_t topic, const ipc::Message& m);

  SnapshotSource snapshot_;
  std::map<uint64_t, Subscriber> subscribers_;  // by session id
  uint64_t seq_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace kg::policyd
