// Runs the admin's knockd-style commands as `/bin/sh -c CMD` children without blocking
// the event loop: posix_spawn with its own session (setsid), stdin from /dev/null, a
// minimal fixed environment, cwd /, every descriptor above 2 closed, default signal
// dispositions and an empty signal mask. Children are reaped on SIGCHLD through a
// boost::asio::signal_set; only our own pids are waited for.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/result.h"

namespace kg::policyd {

// How a child ended, with knockd's status number: the exit code, or 128 + signal.
struct ExitStatus {
  bool exited = false;  // false: killed by a signal
  int code = 0;         // exit code when exited
  int signal = 0;       // signal number when killed
  int status_code() const { return exited ? code : 128 + signal; }
  bool success() const { return exited && code == 0; }
  std::string describe() const;  // "exit 0", "exit 3", "signal 9"
};

inline constexpr const char* kCommandPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

class CommandRunner {
 public:
  struct Job {
    std::string command;
    // Called once: with the pid when the child was spawned, or with the spawn error.
    std::function<void(Result<pid_t>)> on_start;
    // Called when a spawned child has exited (never if spawning failed).
    std::function<void(const ExitStatus&)> on_exit;
  };

  enum class Submitted { started, queued, rejected };

  // At most `max_running` limited jobs run at once; up to `max_queued` more wait in FIFO
  // order; beyond that submit() rejects (a flood of completed knocks must not fork-bomb
  // the gateway nor grow memory without bound).
  CommandRunner(boost::asio::io_context& io, size_t max_running, size_t max_queued);
  // Children keep running (they have their own session); they are no longer reaped by
  // this object.
  ~CommandRunner();
  CommandRunner(const CommandRunner&) = delete;
  CommandRunner& operator=(const CommandRunner&) = delete;

  // A limited job may wait for a slot; an unlimited one (stop commands, which must run
  // on time and are bounded by the pending_stop table) is spawned at once.
  Submitted submit(Job job, bool limited = true);

  size_t running() const { return children_.size(); }
  size_t queued() const { return queue_.size(); }

  // Spawns one `/bin/sh -c command` child as described above; exposed for tests.
  static Result<pid_t> spawn_shell(const std::string& command);

 private:
  struct Child {
    Job job;
    bool limited = true;
  };
  void arm();
  void reap();
  void start(Job job, bool limited);
  void start_queued();

  boost::asio::signal_set sigchld_;
  size_t max_running_;
  size_t max_queued_;
  size_t limited_running_ = 0;
  std::map<pid_t, Child> children_;
  std::deque<Job> queue_;
  std::shared_ptr<int> alive_;  // handlers hold a weak_ptr: no use after destruction
};

}  // namespace kg::policyd
