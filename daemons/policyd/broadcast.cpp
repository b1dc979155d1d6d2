#include "policyd/broadcast.h"

#include "common/log.h"

namespace kg::policyd {

namespace {

size_t frame_size(const ipc::Message& m) {
  auto frame = ipc::encode_frame(m, UINT32_MAX);
  return frame ? frame->size() : 0;
}

}  // namespace

std::vector<ipc::GrantSnapshot> snapshot_chunks(uint32_t request_id, uint64_t seq,
                                                std::span<const ipc::GrantRecord> grants,
                                                size_t max_frame_bytes) {
  ipc::GrantSnapshot empty;
  empty.request_id = request_id;
  empty.seq = seq;
  const size_t base = frame_size(empty);
  std::vector<ipc::GrantSnapshot> chunks;
  ipc::GrantSnapshot current = empty;
  size_t current_size = base;
  for (const ipc::GrantRecord& g : grants) {
    ipc::GrantSnapshot one = empty;
    one.grants.push_back(g);
    const size_t cost = frame_size(one) - base;
    if (!current.grants.empty() && current_size + cost > max_frame_bytes) {
      chunks.push_back(std::move(current));
      current = empty;
      current_size = base;
    }
    current.grants.push_back(g);
    current_size += cost;
  }
  chunks.push_back(std::move(current));
  for (size_t i = 0; i < chunks.size(); ++i) {
    chunks[i].first = i == 0;
    chunks[i].last = i + 1 == chunks.size();
  }
  return chunks;
}

bool Broadcaster::subscribe(const ipc::SessionPtr& session, const ipc::Subscribe& request) {
  subscribers_[session->id()] = Subscriber{session, request.topics};
  if ((request.topics & ipc::kTopicGrants) == 0) return true;
  const std::vector<ipc::GrantRecord> grants = snapshot_();
  const auto chunks =
      snapshot_chunks(request.request_id, seq_, grants, session->hello().max_frame_bytes);
  for (const auto& chunk : chunks) {
    if (!session->send(chunk)) {
      subscribers_.erase(session->id());
      ++dropped_;
      kg::log::warn("grant snapshot to " + session->describe() + " not sent (" +
                    std::to_string(grants.size()) + " grants); dropped the subscriber");
      if (session->is_open()) session->close("grant snapshot could not be sent");
      return false;
    }
  }
  kg::log::info(session->describe() + " subscribed: " + std::to_string(grants.size()) +
                " grant(s) in " + std::to_string(chunks.size()) + " frame(s) at seq " +
                std::to_string(seq_));
  return true;
}

void Broadcaster::send_to(uint32_t topic, const ipc::Message& m) {
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    auto session = it->second.session.lock();
    if (!session || !session->is_open()) {
      it = subscribers_.erase(it);
      continue;
    }
    if ((it->second.topics & topic) == 0) {
      ++it;
      continue;
    }
    if (!session->send(m)) {
      // Over its write-queue bound (the session closed itself, logged) or a frame it
      // cannot take: either way it has a gap now and must resubscribe.
      ++dropped_;
      kg::log::warn("dropping grant subscriber " + session->describe() + ": " +
                    ipc::message_name(m) + " could not be queued");
      if (session->is_open()) session->close("subscriber missed a grant change");
      it = subscribers_.erase(it);
      continue;
    }
    ++it;
  }
}

void Broadcaster::grant_pending(const IpAddr& source, const std::string& profile,
                                int64_t deadline_ns) {
  ipc::GrantDelta d;
  d.seq = ++seq_;
  d.op = ipc::GrantOp::pending;
  d.grant.id = 0;
  d.grant.source = source;
  d.grant.profile = profile;
  d.grant.method = ipc::GrantMethod::knock;
  d.grant.expires_ns = deadline_ns;
  send_to(ipc::kTopicGrants, d);
}

void Broadcaster::grant_changed(ipc::GrantOp op, const ipc::GrantRecord& grant,
                                const std::string& reason) {
  ipc::GrantDelta d;
  d.seq = ++seq_;
  d.op = op;
  d.grant = grant;
  d.reason = reason;
  send_to(ipc::kTopicGrants, d);
}

void Broadcaster::feed(const ipc::FeedEvent& event) {
  send_to(ipc::kTopicFeed, event);
}

}  // namespace kg::policyd
