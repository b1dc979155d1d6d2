// knockgate-captured's event loop: packets → decoder → knock engine → knockd-style log
// lines and KnockEvents to policyd. One io_context, no threads. Everything that needs root
// (the capture socket, the log file) is opened by main() before the privilege drop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <vector>

#include "captured/capture.h"
#include "captured/filter.h"
#include "captured/netwatch.h"
#include "captured/spa_gate.h"
#include "captured/spa_listener.h"
#include "common/knocklog.h"
#include "config/config.h"
#include "ipc/client.h"
#include "knock/engine.h"

namespace kg::captured {

// The engine's doors from the config. One-time doors take their active sequence from
// `one_time_active` (keyed by file path); a door whose file is missing there or exhausted
// gets an empty sequence, which keeps it inactive.
std::vector<knock::DoorSpec> door_specs(
    const config::Config& cfg,
    const std::vector<std::pair<std::string, std::vector<Knock>>>& one_time_active);

struct DaemonSetup {
  config::Config config;
  std::vector<std::string> interfaces;  // -i or the config's Interface list
  bool interfaces_from_command_line = false;
  std::unique_ptr<Capture> capture;
  std::unique_ptr<knocklog::Writer> knock_log;
  std::vector<std::pair<std::string, std::vector<Knock>>> one_time_active;
  uint32_t stage_lines_per_second = 100;
};

class Daemon {
 public:
  Daemon(boost::asio::io_context& io, DaemonSetup setup);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Opens netlink, the channel to policyd, signals and timers. After this, run the io.
  Result<Ok> start();
  int exit_code() const { return exit_code_; }

 private:
  class Sink;
  void arm_capture_read();
  void on_capture_readable();
  void arm_netlink_read();
  void arm_expiry_timer();
  void on_interfaces(const std::vector<InterfaceState>& state);
  void install_filter();
  void arm_signals();
  void reload();
  void stop();
  void on_policyd_message(const ipc::Message& m);
  void apply_door_sequence(const ipc::DoorSequence& m);
  void log_line(const knocklog::Entry& e, const char* limit_kind);
  void flush_suppressed();
  std::vector<ipc::StatusEntry> status_entries();
  // SPA doors (spa_gate.h): UDP through the capture, TCP/HTTP through spa_listener.
  void setup_spa();
  void on_spa_payload(size_t door, std::string_view payload, bool truncated, const IpAddr& src,
                      const IpAddr& dst, int64_t realtime_ns);
  void on_spa_stream(size_t door, std::string data, bool complete, const IpAddr& src,
                     const IpAddr& dst);

  boost::asio::io_context& io_;
  DaemonSetup setup_;
  knock::Engine engine_;
  std::unique_ptr<NetWatch> netwatch_;
  std::unique_ptr<ipc::Client> policyd_;
  boost::asio::posix::stream_descriptor capture_fd_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> netlink_fd_;
  boost::asio::steady_timer expiry_timer_;
  boost::asio::steady_timer summary_timer_;
  boost::asio::signal_set signals_;
  knocklog::RateLimiter limiter_;
  std::unique_ptr<Sink> sink_;
  std::unique_ptr<SpaGate> spa_;
  std::unique_ptr<SpaListener> spa_listener_;
  std::vector<InterfaceState> interfaces_;
  std::string active_filter_;
  uint32_t config_generation_ = 1;
  bool stopping_ = false;
  std::vector<IpAddr> accepted_destinations_;  // local addresses and door targets
  int exit_code_ = 0;
  unsigned capture_errors_in_row_ = 0;
  // Counters for status.
  uint64_t decode_errors_ = 0;
  uint64_t not_knockable_ = 0;
  uint64_t not_for_us_ = 0;
  uint64_t filter_errors_ = 0;
};

}  // namespace kg::captured
