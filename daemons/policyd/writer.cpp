#include "policyd/writer.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "common/log.h"
#include "common/privdrop.h"
#include "common/seccomp.h"
#include "config/file_io.h"
#include "config/spa_door.h"
#include "ipc/kernel_messages.h"
#include "policyd/command_runner.h"
#include "policyd/config_bridge.h"
#include "policyd/kernel/kernel_state.h"
#include "policyd/policy.h"
#include "policyd/seccomp_profile.h"
#include "policyd/state_files.h"
#include "policyd/wall_clock.h"

namespace kg::policyd {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// What the writer's job needs: nftables, ip rules, routes and conntrack (NET_ADMIN); the
// admin's commands, which inherit this set as root (NET_ADMIN, NET_RAW: iptables, nft,
// ip); signalling the engine, which runs as another user (KILL); starting the engine and
// letting it become its own user (SETUID, SETGID).
constexpr std::initializer_list<int> kWriterCapabilities = {CAP_NET_ADMIN, CAP_NET_RAW, CAP_KILL,
                                                            CAP_SETUID, CAP_SETGID};

// Limits of the admin's commands, as knockgate-policyd always had them.
constexpr size_t kMaxRunningCommands = 32;
constexpr size_t kMaxQueuedCommands = 4096;
// Engine datagrams handled per wake-up of the event loop.
constexpr int kDatagramsPerWakeup = 64;
// Door sets of earlier configs kept for stop commands still due.
constexpr size_t kRememberedConfigs = 16;

// CommandUser: nullopt for root (unset), else the user with its groups.
Result<std::optional<CommandRunner::RunAs>> command_user(const std::string& name) {
  if (name.empty()) return std::optional<CommandRunner::RunAs>();
  auto creds = lookup_user(name);
  if (!creds) return Error{"CommandUser " + name + ": " + creds.error().message};
  CommandRunner::RunAs as;
  as.uid = static_cast<uid_t>(creds->uid);
  as.gid = static_cast<gid_t>(creds->gid);
  int count = 64;
  as.groups.resize(static_cast<size_t>(count));
  if (::getgrouplist(name.c_str(), as.gid, as.groups.data(), &count) < 0) {
    as.groups.resize(static_cast<size_t>(count));
    ::getgrouplist(name.c_str(), as.gid, as.groups.data(), &count);
  }
  as.groups.resize(static_cast<size_t>(count));
  return std::optional<CommandRunner::RunAs>(std::move(as));
}

class KernelWriter {
 public:
  KernelWriter(WriterOptions options, config::Config config)
      : options_(std::move(options)),
        config_(std::move(config)),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        sigchld_(io_, SIGCHLD),
        restart_timer_(io_),
        kill_timer_(io_),
        runner_(io_, kMaxRunningCommands, kMaxQueuedCommands) {}

  int run();

 private:
  Result<Ok> spawn_engine();
  void read_channel();
  void drain_channel();
  void handle(std::span<const uint8_t> datagram);
  ipc::KernelReply apply(const ipc::AddGrants& m);
  ipc::KernelReply apply(const ipc::RemoveGrants& m);
  ipc::KernelReply apply(ipc::Reconcile m);
  void run_command(const ipc::RunCommand& m);
  Result<Ok> check_grant(const ipc::GrantInstall& g, int64_t now_ns) const;
  Result<Ok> check_grants(std::span<const ipc::GrantInstall> grants) const;
  // Derived from config_ whenever it changes (remember_doors): what check_grant needs.
  std::map<std::string, std::chrono::seconds, std::less<>> max_lifetime_;
  template <typename Change>
  ipc::KernelReply checked_change(uint32_t request_id, std::span<const ipc::GrantInstall> grants,
                                  Change change);
  Result<std::string> command_for(const ipc::RunCommand& m) const;
  // Reads and adopts the config file (kept: the options that need a restart); the text.
  Result<std::string> reload_config();
  void read_config(uint32_t request_id);
  void remember_doors();
  void send(ipc::KernelMessage m);
  void drop_engine(const char* why);
  void take_chunk(std::vector<ipc::GrantInstall> grants);
  // The chunks before a request, merged into its grants; false (and the refusal sent)
  // when a chunk was refused.
  bool take_chunks(uint32_t request_id, std::vector<ipc::GrantInstall>& grants);
  void wait_signal();
  void wait_child();
  void on_engine_exit(int status);
  void watch_netlink();
  void begin_stop(const char* why);
  void finish_stop();

  WriterOptions options_;
  config::Config config_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::signal_set sigchld_;
  asio::steady_timer restart_timer_;
  asio::steady_timer kill_timer_;
  CommandRunner runner_;
  std::unique_ptr<KernelState> kernel_;
  std::unique_ptr<asio::posix::stream_descriptor> netlink_;
  std::unique_ptr<asio::posix::stream_descriptor> channel_;
  std::vector<ipc::GrantInstall> chunks_;  // GrantChunks waiting for their request
  bool chunks_refused_ = false;
  std::string chunks_refusal_;
  std::vector<uint8_t> receive_buf_ = std::vector<uint8_t>(ipc::kKernelDatagramBytes + 1);
  uint64_t generation_ = 0;                      // engines started so far
  std::vector<std::vector<DoorActions>> doors_;  // of the configs read, the newest last
  pid_t engine_ = -1;
  Clock::time_point engine_started_;
  std::chrono::seconds backoff_{1};
  bool ready_notified_ = false;
  bool stopping_ = false;
  int exit_code_ = 0;
};

int KernelWriter::run() {
  remember_doors();
  auto kernel = KernelState::open(config_);
  if (!kernel) {
    log::error("kernel: " + kernel.error().message);
    return 1;
  }
  kernel_ = std::move(*kernel);
  log::info("kernel: " + kernel_->features());
  if (auto owned = hand_state_to_engine(config_); !owned) {
    log::error(owned.error().message);
    return 1;
  }
  if (auto as = command_user(config_.options.command_user); !as) {
    log::error(as.error().message);
    return 1;
  } else {
    runner_.set_run_as(std::move(*as));
  }
  if (auto kept = keep_only_capabilities(kWriterCapabilities); !kept) {
    log::error("kernel writer: " + kept.error().message);
    return 1;
  }
  // The engine inherits this filter too, beneath its own narrower one.
  if (auto filtered = seccomp::apply(writer_seccomp_profile()); !filtered) {
    log::error(filtered.error().message);
    return 1;
  }
  if (auto spawned = spawn_engine(); !spawned) {
    log::error(spawned.error().message);
    return 1;
  }
  wait_signal();
  wait_child();
  watch_netlink();
  io_.run();
  return exit_code_;
}

Result<Ok> KernelWriter::spawn_engine() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Error{std::string("socketpair: ") + std::strerror(errno)};
  }
  // The writer's end goes to asio below; the engine's is closed here once it is spawned.
  channel_ = std::make_unique<asio::posix::stream_descriptor>(io_, pair[0]);
  struct CloseOnExit {
    int fd;
    ~CloseOnExit() { ::close(fd); }
  } theirs{pair[1]};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // dup2 clears FD_CLOEXEC on the copy: only the channel (and stdio) cross the exec.
  posix_spawn_file_actions_adddup2(&actions, theirs.fd, kEngineChannelFd);
  // Nothing else of the writer's crosses: its netlink sockets were opened as root.
  posix_spawn_file_actions_addclosefrom_np(&actions, kEngineChannelFd + 1);
  std::vector<std::string> args = {options_.program_path, kEngineFlag, "-c", options_.config_path};
  args.insert(args.end(), options_.engine_flags.begin(), options_.engine_flags.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0) envp.push_back(*e);  // readiness is ours
  }
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, options_.program_path.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    channel_.reset();
    return Error{"cannot start the engine: " + std::string(std::strerror(rc))};
  }
  engine_ = pid;
  ++generation_;
  engine_started_ = Clock::now();
  chunks_.clear();
  chunks_refused_ = false;
  channel_->non_blocking(true);
  log::info("engine started (pid " + std::to_string(pid) + ")");
  send(ipc::WriterReady{kernel_->features()});
  read_channel();
  return Ok{};
}

void KernelWriter::read_channel() {
  channel_->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, ch = channel_.get()](const boost::system::error_code& ec) {
                         if (ec || ch != channel_.get()) return;
                         drain_channel();
                       });
}

void KernelWriter::drain_channel() {
  std::vector<uint8_t>& buf = receive_buf_;
  // A bounded batch per wake-up: signals, children and the netlink watch get their turn
  // however fast the engine sends.
  for (int handled = 0; handled < kDatagramsPerWakeup; ++handled) {
    const ssize_t n = ::recv(channel_->native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      // End of file (or an empty datagram, which no engine sends): the engine is gone or
      // broken; either way it ends here and SIGCHLD restarts it.
      drop_engine("its channel closed");
      return;
    }
    if (static_cast<size_t>(n) > ipc::kKernelDatagramBytes) {
      log::error("engine: refused a datagram over " + std::to_string(ipc::kKernelDatagramBytes) +
                 " bytes");
      send(ipc::KernelReply{0, false, 0, "refused: datagram too large"});
      continue;
    }
    handle({buf.data(), static_cast<size_t>(n)});
    if (!channel_ || !channel_->is_open()) return;
  }
  read_channel();
}

void KernelWriter::handle(std::span<const uint8_t> datagram) {
  auto decoded = ipc::decode_kernel_message(datagram);
  if (!decoded) {
    log::error("engine: refused a request: " + decoded.error().message);
    send(ipc::KernelReply{0, false, 0, "refused: " + decoded.error().message});
    return;
  }
  ipc::KernelMessage& m = *decoded;
  if (auto* chunk = std::get_if<ipc::GrantChunk>(&m)) {
    take_chunk(std::move(chunk->grants));
    return;
  }
  if (auto* add = std::get_if<ipc::AddGrants>(&m)) {
    if (take_chunks(add->request_id, add->grants)) send(apply(*add));
  } else if (auto* remove = std::get_if<ipc::RemoveGrants>(&m)) {
    if (take_chunks(remove->request_id, remove->grants)) send(apply(*remove));
  } else if (auto* reconcile = std::get_if<ipc::Reconcile>(&m)) {
    if (take_chunks(reconcile->request_id, reconcile->grants)) send(apply(std::move(*reconcile)));
  } else if (auto* command = std::get_if<ipc::RunCommand>(&m)) {
    run_command(*command);
  } else if (auto* read = std::get_if<ipc::ReadConfig>(&m)) {
    read_config(read->request_id);
  } else if (std::holds_alternative<ipc::EngineReady>(m)) {
    backoff_ = std::chrono::seconds(1);
    if (!ready_notified_) {
      ready_notified_ = true;
      sd_notify(0, "READY=1\nSTATUS=listening for knock events");
    } else {
      sd_notify(0, "STATUS=listening for knock events (engine restarted)");
    }
  } else {
    chunks_.clear();
    log::error(std::string("engine: refused ") + ipc::kernel_message_name(m) +
               ": not a request the kernel writer takes");
    send(ipc::KernelReply{
        0, false, 0, std::string("refused: ") + ipc::kernel_message_name(m) + " is not a request"});
  }
}

void KernelWriter::take_chunk(std::vector<ipc::GrantInstall> grants) {
  if (chunks_refused_) return;
  auto checked = check_grants(grants);
  if (checked && chunks_.size() + grants.size() > ipc::kKernelMaxGrants) {
    checked = Error{"refused: a grant list over " + std::to_string(ipc::kKernelMaxGrants)};
  }
  if (!checked) {
    // The request these chunks belong to is refused whole when it comes.
    log::error("engine: " + checked.error().message);
    chunks_refused_ = true;
    chunks_refusal_ = checked.error().message;
    chunks_.clear();
    return;
  }
  chunks_.insert(chunks_.end(), std::make_move_iterator(grants.begin()),
                 std::make_move_iterator(grants.end()));
}

bool KernelWriter::take_chunks(uint32_t request_id, std::vector<ipc::GrantInstall>& grants) {
  if (chunks_refused_) {
    chunks_refused_ = false;
    chunks_.clear();
    send(ipc::KernelReply{request_id, false, 0, chunks_refusal_});
    return false;
  }
  if (!chunks_.empty()) {
    chunks_.insert(chunks_.end(), std::make_move_iterator(grants.begin()),
                   std::make_move_iterator(grants.end()));
    grants = std::move(chunks_);
    chunks_.clear();
  }
  return true;
}

Result<Ok> KernelWriter::check_grant(const ipc::GrantInstall& g, int64_t now_ns) const {
  auto profile = max_lifetime_.find(g.profile);
  if (profile == max_lifetime_.end()) {
    return Error{"refused: grant " + std::to_string(g.id) + " names profile " +
                 g.profile.substr(0, 64) + ", which the config does not define"};
  }
  if (g.expires_ns <= 0) return Error{"refused: grant " + std::to_string(g.id) + " has no expiry"};
  // No grant outlives its profile's maximum (a minute of slack for clocks and queues).
  const auto longest = std::chrono::nanoseconds(profile->second + std::chrono::minutes(1));
  if (g.expires_ns - now_ns > longest.count()) {
    return Error{"refused: grant " + std::to_string(g.id) + " expires beyond profile " + g.profile +
                 "'s max_lifetime"};
  }
  return Ok{};
}

Result<Ok> KernelWriter::check_grants(std::span<const ipc::GrantInstall> grants) const {
  const int64_t now_ns = wall_now_ns();
  for (const auto& g : grants) {
    if (auto checked = check_grant(g, now_ns); !checked) return checked;
  }
  return Ok{};
}

// The reply to a set-element request: refused unless every grant passes check_grants,
// else what `change` (the kernel call, returning a count) says.
template <typename Change>
ipc::KernelReply KernelWriter::checked_change(uint32_t request_id,
                                              std::span<const ipc::GrantInstall> grants,
                                              Change change) {
  ipc::KernelReply reply{request_id, false, 0, {}};
  if (auto checked = check_grants(grants); !checked) {
    log::error("engine: " + checked.error().message);
    reply.text = checked.error().message;
    return reply;
  }
  Result<size_t> done = change();
  reply.ok = static_cast<bool>(done);
  if (done) {
    reply.count = *done;
  } else {
    reply.text = done.error().message;
  }
  return reply;
}

ipc::KernelReply KernelWriter::apply(const ipc::AddGrants& m) {
  return checked_change(m.request_id, m.grants, [&]() -> Result<size_t> {
    auto added = kernel_->add_grants(m.grants);
    if (!added) return added.error();
    return m.grants.size();
  });
}

ipc::KernelReply KernelWriter::apply(const ipc::RemoveGrants& m) {
  return checked_change(m.request_id, m.grants, [&] { return kernel_->remove_grants(m.grants); });
}

Result<std::string> KernelWriter::reload_config() {
  auto text = config::read_file(options_.config_path);
  if (!text) return Error{options_.config_path + ": " + text.error().message};
  config::ParseResult parsed = config::parse_text(*text, options_.config_path);
  if (parsed.config && !parsed.config->spa_doors.empty()) {
    config::load_spa_access_files(*parsed.config, options_.config_path, parsed.errors);
  }
  if (!parsed.config || !parsed.errors.empty()) {
    std::string why = "config " + options_.config_path + " not reloaded";
    for (const auto& d : parsed.errors) why += "\n" + d.str();
    return Error{why};
  }
  const config::Options kept = config_.options;
  config_ = std::move(*parsed.config);
  config_.options = kept;  // Database, RuntimeDir, users...: at restart, as for the engine
  remember_doors();
  return std::move(*text);
}

void KernelWriter::read_config(uint32_t request_id) {
  auto text = reload_config();
  if (!text) {
    send(ipc::KernelReply{request_id, false, 0, text.error().message});
    return;
  }
  for (size_t at = 0; at < text->size(); at += ipc::kConfigTextChunk) {
    send(ipc::ConfigText{text->substr(at, ipc::kConfigTextChunk)});
  }
  send(ipc::KernelReply{request_id, true, text->size(), {}});
}

ipc::KernelReply KernelWriter::apply(ipc::Reconcile m) {
  ipc::KernelReply reply{m.request_id, false, 0, {}};
  if (m.reload) {
    if (auto reloaded = reload_config(); !reloaded) {
      reply.text = reloaded.error().message;
      return reply;
    }
  }
  // A grant of a profile the config no longer has cannot be installed: the engine
  // revokes those itself; left out here so the rest still reconciles.
  const int64_t now_ns = wall_now_ns();
  const auto unknown =
      std::erase_if(m.grants, [&](const ipc::GrantInstall& g) { return !check_grant(g, now_ns); });
  if (unknown != 0) {
    log::warn("reconcile: " + std::to_string(unknown) +
              " grant(s) left out (a profile the config does not define, or an expiry beyond "
              "its max_lifetime)");
  }
  auto report = kernel_->reconcile(config_, m.grants);
  reply.ok = static_cast<bool>(report);
  reply.count = m.grants.size();
  reply.text = report ? report->summary() : report.error().message;
  return reply;
}

Result<std::string> KernelWriter::command_for(const ipc::RunCommand& m) const {
  // The current config first; for a stop, also the doors of earlier configs this writer
  // read, so a stop still due for a door a reload removed or changed runs what its start
  // was paired with.
  std::string refusal = "refused: door " + m.door + " is not configured";
  for (auto generation = doors_.rbegin(); generation != doors_.rend(); ++generation) {
    for (const DoorActions& door : *generation) {
      if (door.name != m.door) continue;  // the first definition, as the engine does
      const std::string& chosen =
          m.stop ? select_command(door.stop_command, door.stop_command_6, m.source)
                 : select_command(door.start_command, door.start_command_6, m.source);
      if (!chosen.empty()) return expand_command(chosen, m.source);
      refusal = "refused: door " + m.door + " has no " + (m.stop ? "stop" : "start") +
                " command for " + m.source.str();
      break;
    }
    if (!m.stop) break;
  }
  return Error{refusal};
}

void KernelWriter::remember_doors() {
  max_lifetime_.clear();
  for (const auto& p : config_.profiles) max_lifetime_.emplace(p.name, p.max_lifetime);
  doors_.push_back(door_actions(config_));
  if (doors_.size() > kRememberedConfigs) doors_.erase(doors_.begin());
}

void KernelWriter::run_command(const ipc::RunCommand& m) {
  auto command = command_for(m);
  if (!command) {
    log::error("engine: " + command.error().message);
    send(ipc::KernelReply{m.request_id, false, 0, command.error().message});
    return;
  }
  CommandJob job;
  job.command = *command;
  job.door = m.door;
  job.stop = m.stop;
  job.source = m.source;
  const uint32_t id = m.request_id;
  const uint64_t job_id = m.job_id;
  // A command outlives the engine that asked for it; its news is for that engine only.
  job.on_start = [this, id, generation = generation_](Result<pid_t> pid) {
    if (generation != generation_) return;
    if (pid) {
      send(ipc::KernelReply{id, true, static_cast<uint64_t>(*pid), {}});
    } else {
      send(ipc::KernelReply{id, false, 0, pid.error().message});
    }
  };
  job.on_exit = [this, job_id, generation = generation_](const ExitStatus& status) {
    if (generation != generation_) return;
    send(ipc::CommandExited{job_id, status.exited, status.code, status.signal});
  };
  const bool limited = !m.stop;  // stops run on time, bounded by the pending-stop table
  switch (runner_.submit(std::move(job), limited)) {
    case CommandSubmitted::started:
      break;
    case CommandSubmitted::queued:
      log::warn(m.door + ": " + std::to_string(runner_.running()) +
                " commands running; start command for " + m.source.str() + " queued");
      break;
    case CommandSubmitted::rejected:
      log::error(m.door + ": command queue full; start command for " + m.source.str() + " dropped");
      send(ipc::KernelReply{id, false, 0, "command queue full; dropped"});
      break;
  }
}

void KernelWriter::send(ipc::KernelMessage m) {
  if (!channel_ || !channel_->is_open()) return;
  if (auto* reply = std::get_if<ipc::KernelReply>(&m); reply && reply->text.size() > 4096) {
    reply->text.resize(4096);  // config diagnostics can be long; a reply must fit
  }
  auto bytes = ipc::encode_kernel_message(m);
  if (!bytes) {
    log::error("kernel writer: " + bytes.error().message);
    return;
  }
  for (;;) {
    const ssize_t n = ::send(channel_->native_handle(), bytes->data(), bytes->size(), MSG_NOSIGNAL);
    if (n >= 0) return;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // The engine reads while it sends; one that has not read for 5 s is stuck or
      // hostile, and a reply must not be dropped: it is ended and restarted.
      pollfd p{channel_->native_handle(), POLLOUT, 0};
      if (::poll(&p, 1, 5000) > 0) continue;
      drop_engine("it does not read its replies");
      return;
    }
    log::warn(std::string("kernel writer: cannot send ") + ipc::kernel_message_name(m) +
              " to the engine: " + std::strerror(errno));
    return;
  }
}

void KernelWriter::drop_engine(const char* why) {
  if (channel_) {
    boost::system::error_code ignored;
    channel_->close(ignored);
  }
  if (engine_ > 0) {
    log::error(std::string("engine: ") + why + "; ending it");
    ::kill(engine_, SIGKILL);
  }
}

void KernelWriter::wait_signal() {
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      // The engine reads the config and asks for a reconcile with reload.
      if (engine_ > 0) ::kill(engine_, SIGHUP);
      wait_signal();
      return;
    }
    begin_stop(signo == SIGINT ? "SIGINT" : "SIGTERM");
  });
}

void KernelWriter::wait_child() {
  sigchld_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    if (engine_ > 0) {
      int status = 0;
      pid_t r = 0;
      do {
        r = ::waitpid(engine_, &status, WNOHANG);
      } while (r < 0 && errno == EINTR);
      if (r == engine_) on_engine_exit(status);
    }
    if (!io_.stopped()) wait_child();
  });
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

void KernelWriter::on_engine_exit(int status) {
  engine_ = -1;
  if (channel_) {
    boost::system::error_code ignored;
    channel_->close(ignored);
  }
  if (stopping_) {
    finish_stop();
    return;
  }
  // Grants in the kernel keep their timeouts; knocks wait for the new engine, which
  // reconciles when it starts.
  if (Clock::now() - engine_started_ > std::chrono::minutes(1)) backoff_ = std::chrono::seconds(1);
  log::error("engine exited (" + describe_wait_status(status) + "); restarting it in " +
             std::to_string(backoff_.count()) + " s");
  sd_notify(0, "STATUS=engine exited; restarting");
  restart_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, std::chrono::seconds(30));
  restart_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    if (auto spawned = spawn_engine(); !spawned) {
      log::error(spawned.error().message);
      exit_code_ = 1;
      begin_stop("engine restart failure");
    }
  });
}

void KernelWriter::watch_netlink() {
  const int fd = kernel_->netlink_fd();
  if (fd < 0) return;
  if (!netlink_) netlink_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  netlink_->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec) return;
                         if (kernel_->process_netlink()) send(ipc::ReconcileNeeded{"link up"});
                         watch_netlink();
                       });
}

void KernelWriter::begin_stop(const char* why) {
  if (stopping_) return;
  stopping_ = true;
  log::info(std::string("received ") + why +
            ", stopping; pending stop commands stay in the database");
  sd_notify(0, "STOPPING=1");
  restart_timer_.cancel();
  if (engine_ <= 0) {
    finish_stop();
    return;
  }
  ::kill(engine_, SIGTERM);
  kill_timer_.expires_after(std::chrono::seconds(10));
  kill_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || engine_ <= 0) return;
    log::warn("engine still running 10 s after SIGTERM; killing it");
    ::kill(engine_, SIGKILL);
  });
}

void KernelWriter::finish_stop() {
  kill_timer_.cancel();
  if (netlink_) {
    boost::system::error_code ignored;
    netlink_->cancel(ignored);
    netlink_->release();  // the descriptor belongs to KernelState
  }
  // Clean stop: everything we installed goes, nothing else. Grants stay in the database
  // and come back at the next start.
  if (auto removed = kernel_->remove_all(); !removed) {
    log::error("kernel cleanup: " + removed.error().message);
  } else {
    log::info("kernel state removed");
  }
  io_.stop();
}

}  // namespace

int run_kernel_writer(WriterOptions options, config::Config config) {
  KernelWriter writer(std::move(options), std::move(config));
  return writer.run();
}

}  // namespace kg::policyd
