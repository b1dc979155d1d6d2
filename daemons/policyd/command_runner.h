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
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/command_executor.h"

namespace kg::policyd {

inline constexpr const char* kCommandPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

class CommandRunner final : public CommandExecutor {
 public:
  using Job = CommandJob;
  using Submitted = CommandSubmitted;

  // At most `max_running` limited jobs run at once; up to `max_queued` more wait in FIFO
  // order; beyond that submit() rejects (a flood of completed knocks must not fork-bomb
  // the gateway nor grow memory without bound).
  CommandRunner(boost::asio::io_context& io, size_t max_running, size_t max_queued);
  // Children keep running (they have their own session); they are no longer reaped by
  // this object.
  ~CommandRunner();
  CommandRunner(const CommandRunner&) = delete;
  CommandRunner& operator=(const CommandRunner&) = delete;

  Submitted submit(Job job, bool limited = true) override;

  size_t running() const override { return children_.size(); }
  size_t queued() const { return queue_.size(); }

  // Who the commands run as when not as this process's user (`CommandUser`).
  struct RunAs {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups, looked up once
  };
  void set_run_as(std::optional<RunAs> who) { run_as_ = std::move(who); }

  // Spawns one `/bin/sh -c command` child as described above, as `as` when given;
  // exposed for tests.
  static Result<pid_t> spawn_shell(const std::string& command, const RunAs* as = nullptr);

 private:
  struct Child {
    Job job;
    bool limited = true;
  };
  // Children of any kind at most: max_running times this.
  static constexpr size_t kUnlimitedFactor = 8;
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
  std::optional<RunAs> run_as_;
  std::shared_ptr<int> alive_;  // handlers hold a weak_ptr: no use after destruction
};

}  // namespace kg::policyd
