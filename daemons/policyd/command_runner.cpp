#include "policyd/command_runner.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

namespace kg::policyd {

std::string ExitStatus::describe() const {
  return exited ? "exit " + std::to_string(code) : "signal " + std::to_string(signal);
}

namespace {

// posix_spawn attributes and file actions as RAII holders.
struct SpawnAttr {
  posix_spawnattr_t attr{};
  int rc = posix_spawnattr_init(&attr);
  ~SpawnAttr() {
    if (rc == 0) posix_spawnattr_destroy(&attr);
  }
};

struct SpawnActions {
  posix_spawn_file_actions_t actions{};
  int rc = posix_spawn_file_actions_init(&actions);
  ~SpawnActions() {
    if (rc == 0) posix_spawn_file_actions_destroy(&actions);
  }
};

Error spawn_error(const char* what, int rc) {
  return Error{std::string(what) + ": " + std::strerror(rc)};
}

// The same child as posix_spawn makes below, but with a change of user before the exec,
// which posix_spawn cannot do. Between fork and exec only async-signal-safe calls.
Result<pid_t> fork_shell_as(char* const argv[], char* const envp[],
                            const CommandRunner::RunAs& as) {
  const pid_t pid = ::fork();
  if (pid < 0) return Error{std::string("fork: ") + std::strerror(errno)};
  if (pid > 0) return pid;
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0 || ::dup2(null_fd, STDIN_FILENO) < 0) ::_exit(126);
  ::close_range(3, ~0U, 0);
  if (::chdir("/") != 0) ::_exit(126);
  if (::setgroups(as.groups.size(), as.groups.data()) != 0 ||
      ::setresgid(as.gid, as.gid, as.gid) != 0 || ::setresuid(as.uid, as.uid, as.uid) != 0) {
    ::_exit(126);
  }
  ::execve("/bin/sh", argv, envp);
  ::_exit(127);
}

// `sh -c COMMAND` with the fixed environment, as the char* arrays exec wants (it does
// not write them).
struct ShellArgs {
  explicit ShellArgs(const std::string& command) : script(command) {}
  ShellArgs(const ShellArgs&) = delete;
  ShellArgs& operator=(const ShellArgs&) = delete;
  std::string arg0 = "sh", arg1 = "-c", script, path = kCommandPath;
  char* argv[4] = {arg0.data(), arg1.data(), script.data(), nullptr};
  char* envp[2] = {path.data(), nullptr};
};

}  // namespace

Result<pid_t> CommandRunner::spawn_shell(const std::string& command, const RunAs* as) {
  ShellArgs args(command);
  if (as != nullptr) return fork_shell_as(args.argv, args.envp, *as);
  SpawnAttr attr;
  if (attr.rc != 0) return spawn_error("posix_spawnattr_init", attr.rc);
  // The daemon's handlers (asio's) and mask must not leak into the admin's command.
  sigset_t all_signals;
  sigset_t no_signals;
  sigfillset(&all_signals);
  sigemptyset(&no_signals);
  const short flags = POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  int rc = posix_spawnattr_setflags(&attr.attr, flags);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr.attr, &no_signals);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr.attr, &all_signals);
  if (rc != 0) return spawn_error("posix_spawnattr", rc);

  SpawnActions actions;
  if (actions.rc != 0) return spawn_error("posix_spawn_file_actions_init", actions.rc);
  rc = posix_spawn_file_actions_addopen(&actions.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions.actions, 3);
  if (rc == 0) rc = posix_spawn_file_actions_addchdir_np(&actions.actions, "/");
  if (rc != 0) return spawn_error("posix_spawn_file_actions", rc);

  pid_t pid = -1;
  rc = posix_spawn(&pid, "/bin/sh", &actions.actions, &attr.attr, args.argv, args.envp);
  if (rc != 0) return spawn_error("posix_spawn /bin/sh", rc);
  return pid;
}

CommandRunner::CommandRunner(boost::asio::io_context& io, size_t max_running, size_t max_queued)
    : sigchld_(io, SIGCHLD),
      max_running_(max_running == 0 ? 1 : max_running),
      max_queued_(max_queued),
      alive_(std::make_shared<int>(0)) {
  arm();
}

CommandRunner::~CommandRunner() {
  boost::system::error_code ignored;
  sigchld_.cancel(ignored);
}

void CommandRunner::arm() {
  std::weak_ptr<int> alive = alive_;
  sigchld_.async_wait([this, alive](const boost::system::error_code& ec, int) {
    // A completion already queued when the runner went away must not touch it.
    if (ec == boost::asio::error::operation_aborted || alive.expired()) return;
    reap();
    arm();
  });
}

void CommandRunner::reap() {
  // SIGCHLD coalesces: one signal may stand for several exits, so poll every child.
  std::vector<std::pair<Child, ExitStatus>> finished;
  for (auto it = children_.begin(); it != children_.end();) {
    int status = 0;
    pid_t r = 0;
    do {
      r = ::waitpid(it->first, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
      ++it;
      continue;
    }
    ExitStatus es;
    if (r > 0 && WIFEXITED(status)) {
      es.exited = true;
      es.code = WEXITSTATUS(status);
    } else if (r > 0 && WIFSIGNALED(status)) {
      es.signal = WTERMSIG(status);
    } else if (r > 0) {
      ++it;  // stopped/continued: not an exit
      continue;
    } else {
      // ECHILD: someone else reaped it; report it as an unknown failure.
      es.exited = true;
      es.code = 255;
    }
    if (it->second.limited) --limited_running_;
    finished.emplace_back(std::move(it->second), es);
    it = children_.erase(it);
  }
  // Callbacks may submit new jobs; they run after the bookkeeping is consistent.
  for (auto& [child, status] : finished) {
    if (child.job.on_exit) child.job.on_exit(status);
  }
  start_queued();
}

CommandRunner::Submitted CommandRunner::submit(Job job, bool limited) {
  // Unlimited jobs skip the queue, up to a hard bound on children of any kind: whoever
  // submits them cannot make the gateway fork without end.
  if (!limited && children_.size() < max_running_ * kUnlimitedFactor) {
    start(std::move(job), false);
    return Submitted::started;
  }
  // Past that bound an unlimited job waits like a limited one.
  if (limited_running_ < max_running_) {
    start(std::move(job), true);
    return Submitted::started;
  }
  if (queue_.size() >= max_queued_) return Submitted::rejected;
  queue_.push_back(std::move(job));
  return Submitted::queued;
}

void CommandRunner::start(Job job, bool limited) {
  auto pid = spawn_shell(job.command, run_as_ ? &*run_as_ : nullptr);
  if (!pid) {
    if (job.on_start) job.on_start(pid.error());
    return;
  }
  const pid_t child = *pid;
  auto on_start = std::move(job.on_start);
  children_.emplace(child, Child{std::move(job), limited});
  if (limited) ++limited_running_;
  if (on_start) on_start(child);
}

void CommandRunner::start_queued() {
  while (!queue_.empty() && limited_running_ < max_running_) {
    Job job = std::move(queue_.front());
    queue_.pop_front();
    start(std::move(job), true);
  }
}

}  // namespace kg::policyd
