// knockgate-verdictd: one reading thread per queue (blocking recvmmsg, decide, one
// sendmsg of verdicts), and one io_context thread for everything else: the grant
// subscription to policyd, the hold table's timer, signals, status. The state both sides
// touch (grant cache, profiles, hold table, counters) is behind one mutex, taken once per
// read batch. With several queues (CPU fanout) each reader is pinned to the CPUs whose
// packets the kernel puts on its queue, so a SYN is decided on the CPU that queued it.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "ipc/client.h"
#include "verdictd/counters.h"
#include "verdictd/grant_sync.h"
#include "verdictd/hold_table.h"
#include "verdictd/nfqueue.h"
#include "verdictd/profiles.h"

namespace kg::verdictd {

inline constexpr size_t kHoldCapacity = 4096;

struct DaemonSetup {
  config::Config config;
  std::string config_path;  // re-read on SIGHUP
  std::vector<std::unique_ptr<NfQueue>> queues;
};

class Daemon final {
 public:
  Daemon(boost::asio::io_context& io, DaemonSetup setup);
  ~Daemon();
  Result<Ok> start();
  void stop();
  int exit_code() const { return exit_code_; }

 private:
  // One queue's reader: its thread, and the verdicts of its current batch.
  struct Reader final : NfQueue::Sink {
    Reader(Daemon& d, NfQueue& q, uint16_t i) : daemon(d), queue(q), index(i), batch(q.number()) {}
    void on_packet(NfQueue& q, const QueuedPacket& p) override;
    Daemon& daemon;
    NfQueue& queue;
    uint16_t index;
    VerdictBatch batch;
    int64_t now_realtime = 0;  // per read batch
    int64_t now_monotonic = 0;
    bool held = false;  // this batch held a packet: the hold timer needs a look
    std::thread thread;
  };

  void read_loop(Reader& r);
  void pin_reader(const Reader& r) const;
  void judge(Reader& r, const QueuedPacket& p);  // under mu_
  // Verdicts decided on the io_context thread (held packets, timeouts, stop).
  void control_accept(uint16_t queue_index, uint32_t packet_id, bool set_mark, uint32_t mark);
  void control_drop(uint16_t queue_index, uint32_t packet_id);
  void on_policyd_message(const ipc::Message& m);
  void apply_change(const SyncChange& change);
  void rearm_hold_timer();
  void rearm_hold_timer_locked();
  void on_hold_timer();
  void arm_purge_timer();
  void arm_signals();
  void reload();
  void flush_control();
  ipc::StatusReply status(uint32_t request_id) const;

  boost::asio::io_context& io_;
  DaemonSetup setup_;
  // Guards what the readers and the io_context thread share: profiles_, sync_, hold_,
  // hold_ns_, counters_, profile_counters_.
  mutable std::mutex mu_;
  ProfileSet profiles_;
  GrantSync sync_;
  HoldTable hold_;
  int64_t hold_ns_;
  const bool fail_open_;  // VerdictFailOpen takes effect at restart
  std::vector<std::unique_ptr<Reader>> readers_;
  std::vector<VerdictBatch> control_;  // per queue, io_context thread only
  std::atomic<bool> stopping_readers_{false};
  std::unique_ptr<ipc::Client> policyd_;
  boost::asio::steady_timer hold_timer_;
  int64_t hold_timer_at_ = 0;  // monotonic ns the timer is armed for; 0: not armed
  boost::asio::steady_timer purge_timer_;
  boost::asio::signal_set signals_;
  VerdictCounters counters_;
  std::vector<ProfileCounters> profile_counters_;
  int64_t started_monotonic_ = 0;
  std::atomic<int64_t> last_overflow_log_ns_{0};
  bool stopping_ = false;
  int exit_code_ = 0;
};

}  // namespace kg::verdictd
