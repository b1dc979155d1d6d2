// knockgate-verdictd's event loop: the queues' sockets, the grant subscription to policyd,
// the hold table's timer, signals. Everything runs on one io_context, one thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "counters.h"
#include "grant_sync.h"
#include "hold_table.h"
#include "ipc/client.h"
#include "nfqueue.h"
#include "profiles.h"

namespace kg::verdictd {

inline constexpr size_t kHoldCapacity = 4096;

struct DaemonSetup {
  config::Config config;
  std::string config_path;  // re-read on SIGHUP
  std::vector<std::unique_ptr<NfQueue>> queues;
};

class Daemon final : private NfQueue::Sink {
 public:
  Daemon(boost::asio::io_context& io, DaemonSetup setup);
  ~Daemon();
  Result<Ok> start();
  void stop();
  int exit_code() const { return exit_code_; }

 private:
  struct QueueIo {
    NfQueue* queue = nullptr;
    std::unique_ptr<boost::asio::posix::stream_descriptor> fd;
  };

  void on_packet(NfQueue& queue, const QueuedPacket& p) override;
  void arm_queue(size_t index);
  void on_queue_readable(size_t index);
  void on_policyd_message(const ipc::Message& m);
  void apply_change(const SyncChange& change);
  void rearm_hold_timer();
  void on_hold_timer();
  void arm_purge_timer();
  void arm_signals();
  void reload();
  void flush_all();
  ipc::StatusReply status(uint32_t request_id) const;
  uint16_t queue_index(const NfQueue& q) const;

  boost::asio::io_context& io_;
  DaemonSetup setup_;
  ProfileSet profiles_;
  GrantSync sync_;
  HoldTable hold_;
  int64_t hold_ns_;
  std::vector<QueueIo> queue_io_;
  std::unique_ptr<ipc::Client> policyd_;
  boost::asio::steady_timer hold_timer_;
  int64_t hold_timer_at_ = 0;  // monotonic ns the timer is armed for; 0: not armed
  boost::asio::steady_timer purge_timer_;
  boost::asio::signal_set signals_;
  VerdictCounters counters_;
  std::vector<ProfileCounters> profile_counters_;
  int64_t now_realtime_ = 0;  // per read batch
  int64_t now_monotonic_ = 0;
  int64_t started_monotonic_ = 0;
  int64_t last_overflow_log_ns_ = 0;
  bool stopping_ = false;
  int exit_code_ = 0;
};

}  // namespace kg::verdictd
