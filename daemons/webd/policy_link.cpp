#include "webd/policy_link.h"

#include <boost/asio/post.hpp>

#include "common/log.h"

namespace kg::webd {

namespace asio = boost::asio;

PolicyLink::PolicyLink(asio::io_context& io, std::string socket_path,
                       std::chrono::milliseconds timeout)
    : io_(io), sweeper_(io), timeout_(timeout) {
  ipc::ClientOptions o;
  o.socket_path = std::move(socket_path);
  o.role = ipc::Role::webd;
  o.program_name = "knockgate-webd";
  o.max_frame_bytes = size_t{16} * 1024 * 1024;  // big grant lists and audit pages
  o.max_write_queue_bytes = size_t{4} * 1024 * 1024;
  o.ping_interval = std::chrono::seconds(15);
  client_ = std::make_unique<ipc::Client>(io, std::move(o));
  client_->on_message([this](const ipc::Message& m) { on_message(m); });
  client_->on_state([this](ipc::ClientState s, const std::string& detail) {
    if (s == ipc::ClientState::waiting && !detail.empty()) log::debug("policyd: " + detail);
    on_state(s);
  });
}

PolicyLink::~PolicyLink() {
  *alive_ = false;
  client_.reset();
}

Result<Ok> PolicyLink::start() {
  sweep();
  return client_->start();
}

void PolicyLink::stop() {
  sweeper_.cancel();
  client_->stop();
  fail_all("webd is stopping");
}

bool PolicyLink::connected() const {
  return client_->connected();
}

void PolicyLink::control(ipc::control::Command command, const ipc::control::Args& args,
                         ReplyHandler done) {
  auto fail_later = [this, &done](std::string why) {
    asio::post(io_, [done = std::move(done), why = std::move(why)] {
      done(ControlResult{kUnavailable, {}, why});
    });
  };
  if (!client_->connected()) return fail_later("policyd is not connected");
  const uint32_t id = next_request_++;
  if (next_request_ == 0) next_request_ = 1;
  const ipc::ControlRequest request = ipc::control::make_request(id, command, args);
  if (!client_->send(request)) return fail_later("cannot send to policyd");
  pending_[id] = Pending{std::move(done), std::chrono::steady_clock::now() + timeout_};
}

void PolicyLink::on_state(ipc::ClientState state) {
  if (state == ipc::ClientState::connected) {
    log::info("connected to policyd");
    subscribe();
    return;
  }
  if (!pending_.empty()) fail_all("policyd connection lost");
  have_snapshot_ = false;
}

void PolicyLink::subscribe() {
  ipc::Subscribe s;
  s.request_id = subscribe_request_ = next_request_++;
  s.topics = ipc::kTopicGrants | ipc::kTopicFeed;
  incoming_.clear();
  (void)client_->send(s);
}

void PolicyLink::on_message(const ipc::Message& m) {
  if (const auto* reply = std::get_if<ipc::ControlReply>(&m)) {
    auto it = pending_.find(reply->request_id);
    if (it == pending_.end()) return;  // timed out already
    ReplyHandler done = std::move(it->second.done);
    pending_.erase(it);
    done(ControlResult{reply->exit_code, reply->out, reply->err});
  } else if (const auto* snap = std::get_if<ipc::GrantSnapshot>(&m)) {
    if (snap->request_id != subscribe_request_) return;
    if (snap->first) incoming_.clear();
    for (const auto& g : snap->grants) incoming_[g.id] = g;
    if (snap->last) {
      grants_ = std::move(incoming_);
      incoming_.clear();
      seq_ = snap->seq;
      have_snapshot_ = true;
      if (on_snapshot_) on_snapshot_();
    }
  } else if (const auto* delta = std::get_if<ipc::GrantDelta>(&m)) {
    if (!have_snapshot_) return;
    if (delta->seq != seq_ + 1) {
      log::warn("grant delta " + std::to_string(delta->seq) + " after " + std::to_string(seq_) +
                ": subscribing again");
      have_snapshot_ = false;
      subscribe();
      return;
    }
    seq_ = delta->seq;
    switch (delta->op) {
      case ipc::GrantOp::add:
      case ipc::GrantOp::extend:
        grants_[delta->grant.id] = delta->grant;
        break;
      case ipc::GrantOp::remove:
        grants_.erase(delta->grant.id);
        break;
      case ipc::GrantOp::pending:
        break;
    }
    if (on_delta_) on_delta_(*delta);
  } else if (const auto* feed = std::get_if<ipc::FeedEvent>(&m)) {
    if (on_feed_) on_feed_(*feed);
  }
}

void PolicyLink::fail_all(const std::string& why) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    asio::post(io_, [done = std::move(p.done), why] {
      done(ControlResult{kUnavailable, {}, why});
    });
  }
}

void PolicyLink::sweep() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline <= now) {
      auto done = std::move(it->second.done);
      it = pending_.erase(it);
      done(ControlResult{kUnavailable, {}, "policyd did not answer in time"});
    } else {
      ++it;
    }
  }
  sweeper_.expires_after(std::chrono::seconds(1));
  sweeper_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (!ec && *alive) sweep();
  });
}

}  // namespace kg::webd
