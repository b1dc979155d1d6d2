// webd's one connection to policyd (role webd): control commands (docs/protocol.md,
// docs/knockgatectl.8) with replies matched by request id, and the grant/feed subscription
// whose changes it hands on to the live stream and the counters.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ipc/client.h"
#include "ipc/control_commands.h"
#include "ipc/messages.h"

namespace kg::webd {

// exit_code 0..4 as policyd's contract; kUnavailable when policyd is not connected or did
// not answer in time.
inline constexpr int kUnavailable = 255;

struct ControlResult {
  int exit_code = kUnavailable;
  std::string out;
  std::string err;
};

class PolicyLink {
 public:
  using ReplyHandler = std::function<void(ControlResult)>;
  using DeltaHandler = std::function<void(const ipc::GrantDelta&)>;
  using FeedHandler = std::function<void(const ipc::FeedEvent&)>;
  using SnapshotHandler = std::function<void()>;

  PolicyLink(boost::asio::io_context& io, std::string socket_path,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~PolicyLink();
  PolicyLink(const PolicyLink&) = delete;
  PolicyLink& operator=(const PolicyLink&) = delete;

  Result<Ok> start();
  void stop();
  bool connected() const;

  // Runs `command` with `args` on policyd; `done` runs once, later, on the io_context
  // (also when policyd is not connected: kUnavailable).
  void control(ipc::control::Command command, const ipc::control::Args& args, ReplyHandler done);

  void on_delta(DeltaHandler h) { on_delta_ = std::move(h); }
  void on_feed(FeedHandler h) { on_feed_ = std::move(h); }
  void on_snapshot(SnapshotHandler h) { on_snapshot_ = std::move(h); }

  // The active grants as of the last snapshot plus deltas.
  const std::map<uint64_t, ipc::GrantRecord>& grants() const { return grants_; }
  uint64_t seq() const { return seq_; }
  // True while connected with a complete snapshot: grants() is then policyd's active set.
  bool has_snapshot() const { return have_snapshot_ && connected(); }

 private:
  struct Pending {
    ReplyHandler done;
    std::chrono::steady_clock::time_point deadline;
  };
  void on_message(const ipc::Message& m);
  void on_state(ipc::ClientState state);
  void fail_all(const std::string& why);
  void sweep();
  void subscribe();

  boost::asio::io_context& io_;
  std::unique_ptr<ipc::Client> client_;
  boost::asio::steady_timer sweeper_;
  std::chrono::milliseconds timeout_;
  uint32_t next_request_ = 1;
  std::map<uint32_t, Pending> pending_;
  std::map<uint64_t, ipc::GrantRecord> grants_;
  std::map<uint64_t, ipc::GrantRecord> incoming_;  // snapshot being assembled
  uint32_t subscribe_request_ = 0;
  uint64_t seq_ = 0;
  bool have_snapshot_ = false;
  DeltaHandler on_delta_;
  FeedHandler on_feed_;
  SnapshotHandler on_snapshot_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kg::webd
