#include "policyd/engine.h"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/knocklog.h"
#include "common/log.h"
#include "common/privdrop.h"
#include "common/seccomp.h"
#include "config/config.h"
#include "ipc/messages.h"
#include "ipc/peer.h"
#include "ipc/server.h"
#include "policyd/broadcast.h"
#include "policyd/config_bridge.h"
#include "policyd/control.h"
#include "policyd/kernel_link.h"
#include "policyd/policy.h"
#include "policyd/seccomp_profile.h"
#include "policyd/state_files.h"

namespace {

namespace asio = boost::asio;
using kg::policyd::PolicyCore;
using Args = kg::DaemonOptions;

constexpr const char* kProgram = "knockgate-policyd";

kg::ipc::StandardPeerRules peer_rules(const kg::config::Options& o) {
  kg::ipc::StandardPeerRules rules;
  auto capture = kg::lookup_user(o.capture_user);
  if (capture) {
    rules.capture_uid = static_cast<uid_t>(capture->uid);
  } else {
    kg::log::warn("CaptureUser " + o.capture_user + ": " + capture.error().message +
                  "; only root may send knock events");
  }
  if (auto verdict = kg::lookup_user(o.verdict_user)) {
    rules.verdict_uid = static_cast<uid_t>(verdict->uid);
  }
  // Only WebUser may claim the webd role (knockgate-webd drops to it after binding).
  if (auto web = kg::lookup_user(o.web_user)) rules.web_uid = static_cast<uid_t>(web->uid);
  if (const group* g = getgrnam(o.admin_group.c_str()); g != nullptr) {
    rules.admin_gid = g->gr_gid;
  } else {
    kg::log::info("AdminGroup " + o.admin_group + " does not exist; only root may control policyd");
  }
  return rules;
}

class Engine {
 public:
  Engine(Args args, kg::config::Config config, int channel_fd)
      : args_(std::move(args)),
        config_(std::move(config)),
        signals_(io_),
        status_poll_(io_),
        broadcaster_([this] { return core_->grant_records(); }),
        started_(std::chrono::steady_clock::now()),
        channel_fd_(channel_fd) {}

  int run() {
    // As root, what needs it: the log file and the socket in RuntimeDir (both root's).
    kg::knocklog::Options log_options;
    log_options.log_file = config_.options.log_file;
    log_options.use_syslog = config_.options.use_syslog;
    auto writer = kg::knocklog::Writer::open(log_options);
    if (!writer) return fail(writer.error().message);
    knocklog_ = std::move(*writer);
    if (auto listening = listen(); !listening) return fail(listening.error().message);
    // Then the engine's own user for good: no capabilities, no way back.
    auto user = kg::policyd::engine_credentials(config_);
    if (!user) return fail(user.error().message);
    if (auto dropped = kg::drop_privileges(*user); !dropped) {
      return fail("cannot drop privileges: " + dropped.error().message);
    }
    // The engine never outlives its writer: a crash of the writer ends it as if both had
    // crashed, and the next start reconciles (credential changes clear this, so after them).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() == 1) return fail("the kernel writer is gone");
    auto link = kg::policyd::KernelLink::open(io_, channel_fd_, std::chrono::seconds(10));
    if (!link) return fail("kernel writer: " + link.error().message);
    link_ = std::move(*link);
    // Its own allow-list before it reads anything its user could have written (the
    // database, the one-time files).
    if (auto filtered = kg::seccomp::apply(kg::policyd::engine_seccomp_profile()); !filtered) {
      return fail(filtered.error().message);
    }

    warn_duplicate_doors(config_);
    PolicyCore::Options core_options;
    core_options.database_path = config_.options.database;
    auto core = PolicyCore::open(io_, *knocklog_, core_options, kg::policyd::door_actions(config_));
    if (!core) return fail(core.error().message);
    core_ = std::move(*core);
    core_->set_profiles(kg::policyd::grant_profiles(config_));
    core_->set_pending_hold(std::chrono::milliseconds(config_.options.verdict_hold_ms));
    core_->set_observer(&broadcaster_);
    kg::policyd::Control::Hooks hooks;
    hooks.config = [this]() -> const kg::config::Config& { return config_; };
    hooks.status = [this] { return status_info(); };
    hooks.reload = [this] { return reload_config(); };
    control_ = std::make_unique<kg::policyd::Control>(*core_, std::move(hooks));
    core_->set_installer(link_.get());
    core_->set_command_executor(link_.get());
    auto started = core_->start();
    if (!started)
      return fail("database " + config_.options.database + ": " + started.error().message);
    // Active grants back in the kernel, expired ones gone, our rules and routes as the
    // config says, foreign state untouched.
    // The writer reads the config again too: it may have changed since the writer started.
    reconcile("start", /*reload=*/true);
    link_->start([this](const std::string& why) { reconcile(why.c_str()); },
                 [this] {
                   kg::log::error("the kernel writer is gone; stopping");
                   exit_code_ = 1;
                   stop();
                 });

    server_->on_message(
        [this](const kg::ipc::SessionPtr& s, const kg::ipc::Message& m) { on_message(s, m); });
    // The library logs sessions opening and closing. A captured that (re)connects gets
    // the one-time doors' current state: it may have missed updates while away.
    server_->on_open([this](const kg::ipc::SessionPtr& s) {
      if (s->role() != kg::ipc::Role::captured) return;
      for (const auto& update : core_->one_time_snapshot()) s->send(door_sequence(update));
      s->send(kg::ipc::StatusRequest{++status_request_id_});
    });
    server_->on_close([this](const kg::ipc::SessionPtr& s, const std::string&) {
      broadcaster_.unsubscribe(s->id());
      if (s->role() == kg::ipc::Role::captured && captured_session_ == s->id()) {
        captured_status_.reset();
      }
    });
    core_->on_door_sequence_update([this](const kg::policyd::DoorSequenceUpdate& update) {
      const kg::ipc::Message m = door_sequence(update);
      size_t told = 0;
      for (const auto& s : server_->sessions()) {
        if (s->role() == kg::ipc::Role::captured && s->send(m)) ++told;
      }
      if (told == 0) {
        kg::log::warn(update.door +
                      ": no captured connected to tell about its one-time "
                      "sequence; it gets the state when it connects");
      }
    });
    poll_captured_status();
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGHUP);
    wait_signal();

    kg::log::info("ready: database " + config_.options.database + ", " +
                  std::to_string(config_.doors.size()) + " door(s), " +
                  std::to_string(core_->scheduled_stop_count()) + " pending stop command(s)");
    link_->engine_ready();
    io_.run();
    return exit_code_;
  }

 private:
  // The socket is bound as root (RuntimeDir is root's); sessions are accepted once the
  // loop runs, after the core is up.
  kg::Result<kg::Ok> listen() {
    if (auto dir = ensure_runtime_dir(config_.options.runtime_dir); !dir) return dir;
    kg::ipc::ServerOptions server_options;
    server_options.socket_path = config_.options.runtime_dir + "/policyd.sock";
    // Reachable by every local user: who may say what is decided per connection from
    // SO_PEERCRED (captured's uid, the admin group, root), not by the file mode.
    server_options.socket_mode = 0666;
    server_options.program_name = kProgram;
    const kg::ipc::StandardPeerRules rules = peer_rules(config_.options);
    server_options.policy = kg::ipc::standard_peer_policy(rules);
    // Root and the daemons' users keep connection slots that other users cannot fill.
    server_options.reserved_uids = kg::ipc::daemon_uids(rules);
    // Snapshots of many grants and big control replies are queued whole; a subscriber
    // that stops reading is still cut off at this bound.
    server_options.max_write_queue_bytes = size_t{64} * 1024 * 1024;
    server_ = std::make_unique<kg::ipc::Server>(io_, std::move(server_options));
    return server_->start();
  }

  int fail(const std::string& message) {
    kg::log::error(message);
    return 1;
  }

  static kg::Result<kg::Ok> ensure_runtime_dir(const std::string& dir) {
    // Our umask (027) would make a new directory 0750 root: captured, unprivileged, must
    // reach the socket inside it (the socket's peer check decides who may talk).
    if (::mkdir(dir.c_str(), 0755) == 0) {
      if (::chmod(dir.c_str(), 0755) == 0) return kg::Ok{};
    } else if (errno == EEXIST) {
      return kg::Ok{};
    }
    return kg::Error{"cannot create RuntimeDir " + dir + ": " + std::strerror(errno)};
  }

  static void warn_duplicate_doors(const kg::config::Config& config) {
    for (const std::string& name : kg::policyd::duplicate_door_names(config)) {
      kg::log::warn("door " + name +
                    " is defined more than once; knock events name the door, "
                    "so policyd runs the first definition's commands");
    }
  }

  void wait_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        reload();
        wait_signal();
        return;
      }
      kg::log::info(std::string("engine: received ") + (signo == SIGINT ? "SIGINT" : "SIGTERM") +
                    ", stopping");
      stop();
    });
  }

  void stop() {
    if (stopping_) return;
    stopping_ = true;
    core_->shutdown();
    status_poll_.cancel();
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    server_->stop();
    io_.stop();
  }

  void reload() {
    auto r = reload_config();
    if (!r) kg::log::error("config not reloaded; the previous one stays in effect");
  }

  kg::Result<std::string> reload_config() {
    knocklog_->write(kg::knocklog::rereading_config(args_.config_path));
    // The writer reads the file (as root: SPA keys may be root's alone), checks it whole
    // and adopts it; the engine parses the same bytes.
    auto text = link_->read_config();
    kg::config::ParseResult parsed;
    if (text) parsed = kg::config::parse_text(*text, args_.config_path);
    std::string summary;
    std::string errors;
    if (!text) {
      kg::log::error(text.error().message);
      errors = text.error().message + "\n";
    } else if (!parsed.config) {
      for (const auto& d : parsed.errors) {
        kg::log::error(d.str());
        errors += d.str() + "\n";
      }
    } else {
      const kg::config::Options& old_o = config_.options;
      const kg::config::Options& new_o = parsed.config->options;
      if (old_o.database != new_o.database || old_o.runtime_dir != new_o.runtime_dir ||
          old_o.log_file != new_o.log_file || old_o.use_syslog != new_o.use_syslog ||
          old_o.capture_user != new_o.capture_user || old_o.admin_group != new_o.admin_group ||
          old_o.pid_file != new_o.pid_file) {
        kg::log::warn(
            "Database, RuntimeDir, LogFile, UseSyslog, CaptureUser, AdminGroup and PidFile "
            "changes take effect when policyd restarts");
      }
      warn_duplicate_doors(*parsed.config);
      core_->set_doors(kg::policyd::door_actions(*parsed.config));
      core_->set_pending_hold(std::chrono::milliseconds(parsed.config->options.verdict_hold_ms));
      core_->audit_config_reload(args_.config_path);
      const kg::config::Options kept = config_.options;
      const size_t grants_before = core_->active_grant_count();
      // Grants of removed profiles are revoked ("profile removed"); changed marks are
      // broadcast again.
      core_->set_profiles(kg::policyd::grant_profiles(*parsed.config));
      config_ = std::move(*parsed.config);
      config_.options = kept;
      reconcile("reload");
      summary = "config reloaded: " + std::to_string(config_.doors.size()) + " door(s), " +
                std::to_string(config_.profiles.size()) + " profile(s), " +
                std::to_string(grants_before - core_->active_grant_count()) +
                " grant(s) revoked with their profile";
      kg::log::info(summary);
    }
    // Also the logrotate hook: the log file is opened again by name.
    if (auto reopened = knocklog_->reopen(); !reopened) kg::log::warn(reopened.error().message);
    if (!errors.empty())
      return kg::Error{errors + "config not reloaded; the previous one stays in effect"};
    return summary;
  }

  void reconcile(const char* why, bool reload = false) {
    auto installs = core_->active_installs();
    const size_t count = installs.size();
    auto summary = link_->reconcile(why, reload, std::move(installs));
    if (!summary) {
      kg::log::error(std::string("kernel reconcile (") + why + "): " + summary.error().message);
      return;
    }
    kg::log::info(std::string(why) + ": " + std::to_string(count) + " grant(s); " + *summary);
  }

  // captured's counters for `status`: asked every few seconds, the last answer kept.
  void poll_captured_status() {
    for (const auto& s : server_->sessions()) {
      if (s->role() == kg::ipc::Role::captured)
        s->send(kg::ipc::StatusRequest{++status_request_id_});
    }
    status_poll_.expires_after(std::chrono::seconds(2));
    status_poll_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) poll_captured_status();
    });
  }

  kg::policyd::StatusInfo status_info() {
    kg::policyd::StatusInfo s;
    s.version = KG_SOFTWARE_VERSION;
    s.pid = ::getpid();
    s.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                  started_)
                     .count();
    s.events_received = events_handled_;
    s.kernel_features = link_->features();
    s.policyd_extra = {
        {"doors", static_cast<uint64_t>(config_.doors.size())},
        {"profiles", static_cast<uint64_t>(config_.profiles.size())},
        {"pending_stops", static_cast<uint64_t>(core_->scheduled_stop_count())},
        {"running_commands", static_cast<uint64_t>(core_->running_commands())},
        {"sessions", static_cast<uint64_t>(server_->session_count())},
        {"subscribers", static_cast<uint64_t>(broadcaster_.subscriber_count())},
        {"subscribers_dropped", broadcaster_.subscribers_dropped()},
        {"broadcast_seq", broadcaster_.seq()},
        {"grant_ends_unrecorded", static_cast<uint64_t>(core_->grant_ends_pending())},
    };
    if (captured_status_) {
      s.captured = captured_status_->entries;
      s.captured_age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - captured_status_time_)
                              .count();
    }
    return s;
  }

  static std::string user_name(uid_t uid) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    char buf[4096];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
      return found->pw_name;
    }
    return "uid" + std::to_string(uid);
  }

  static kg::ipc::DoorSequence door_sequence(const kg::policyd::DoorSequenceUpdate& update) {
    kg::ipc::DoorSequence m;
    m.door = update.door;
    m.disabled = update.disabled || update.sequence.empty();
    if (!m.disabled) m.sequence = update.sequence;
    return m;
  }

  void on_message(const kg::ipc::SessionPtr& session, const kg::ipc::Message& message) {
    if (const auto* event = std::get_if<kg::ipc::KnockEvent>(&message)) {
      on_knock_event(session, *event);
    } else if (const auto* sub = std::get_if<kg::ipc::Subscribe>(&message)) {
      if (session->role() == kg::ipc::Role::captured) {
        session->close("captured may not subscribe to grants");
        return;
      }
      broadcaster_.subscribe(session, *sub);
    } else if (const auto* status = std::get_if<kg::ipc::StatusReply>(&message)) {
      if (session->role() == kg::ipc::Role::captured) {
        captured_status_ = *status;
        captured_status_time_ = std::chrono::steady_clock::now();
        captured_session_ = session->id();
      }
    } else if (const auto* request = std::get_if<kg::ipc::StatusRequest>(&message)) {
      kg::ipc::StatusReply reply;
      reply.request_id = request->request_id;
      reply.entries = {
          {"program", std::string(kProgram)},
          {"version", std::string(KG_SOFTWARE_VERSION)},
          {"doors", static_cast<uint64_t>(config_.doors.size())},
          {"pending_stops", static_cast<uint64_t>(core_->scheduled_stop_count())},
          {"running_commands", static_cast<uint64_t>(core_->running_commands())},
          {"sessions", static_cast<uint64_t>(server_->session_count())},
          {"events_handled", events_handled_},
      };
      session->send(reply);
    } else if (const auto* control = std::get_if<kg::ipc::ControlRequest>(&message)) {
      kg::policyd::Caller caller;
      caller.role = session->role();
      caller.user = user_name(session->peer().uid);
      kg::ipc::ControlReply reply = control_->handle(caller, *control);
      if (args_.verbose) {
        kg::log::info(session->describe() + ": " + control->command + " -> exit " +
                      std::to_string(reply.exit_code));
      }
      if (!session->send(reply) && session->is_open()) {
        kg::ipc::ControlReply too_big;
        too_big.request_id = control->request_id;
        too_big.exit_code = static_cast<uint8_t>(kg::ipc::control::Exit::failed);
        too_big.err = "the reply (" + std::to_string(reply.out.size()) +
                      " bytes) does not fit the frame limit you announced; use filters\n";
        session->send(too_big);
      }
    } else {
      session->close(std::string("unexpected ") + kg::ipc::message_name(message));
    }
  }

  void on_knock_event(const kg::ipc::SessionPtr& session, const kg::ipc::KnockEvent& event) {
    if (session->role() != kg::ipc::Role::captured) {
      session->close("KnockEvent from a peer that is not captured");
      return;
    }
    kg::policyd::KnockEventData data;
    data.sender_boot_id = session->hello().boot_id;
    data.event_id = event.event_id;
    data.door = event.door;
    data.source = event.source;
    data.time_ns = event.time_ns;
    if (event.method == kg::ipc::KnockMethod::spa) {
      data.spa = true;
      if (event.spa) {
        data.spa_replay_key = event.spa->replay_key;
        data.spa_summary = "user " + event.spa->user + " access";
        for (const auto& a : event.spa->access) {
          data.spa_summary += (a.proto == 6    ? " tcp/"
                               : a.proto == 17 ? " udp/"
                               : a.proto == 1  ? " icmp/"
                                               : " none/") +
                              std::to_string(a.port);
        }
        data.spa_summary += " timeout " + std::to_string(event.spa->timeout_s);
        data.spa_timeout_s = event.spa->timeout_s;
      }
    }
    auto outcome = core_->handle_knock(data);
    if (!outcome) {
      // Not committed, so not acknowledged: closing makes captured reconnect and send
      // the event again (it keeps unacknowledged events queued).
      kg::log::error("event " + std::to_string(event.event_id) + " from " + session->describe() +
                     " not committed: " + outcome.error().message);
      session->close("database error");
      return;
    }
    ++events_handled_;
    if (args_.verbose) {
      kg::log::info("event " + std::to_string(event.event_id) + ": " + event.source.str() + ": " +
                    event.door + ": " + kg::policyd::knock_outcome_name(*outcome));
    }
    // The action is out; now make the commit power-loss durable before captured forgets
    // the event. Posted, not done here: the grant deltas this event queued go out to
    // subscribers (verdictd first) when their writes complete on this loop, and must not
    // wait behind the fdatasync. A burst of events shares one sync: the first one posted
    // syncs everything committed so far, the rest find nothing unsynced.
    asio::post(io_, [this, session, id = event.event_id] {
      // No acknowledgement without durability: captured sends the event again, and the
      // dedup table recognises it.
      if (!core_->sync_now()) {
        session->close("database sync failed");
        return;
      }
      session->send(kg::ipc::EventAck{id});
    });
  }

  Args args_;
  kg::config::Config config_;
  asio::io_context io_;
  asio::signal_set signals_;
  std::unique_ptr<kg::knocklog::Writer> knocklog_;
  std::unique_ptr<PolicyCore> core_;
  std::unique_ptr<kg::ipc::Server> server_;
  std::unique_ptr<kg::policyd::KernelLink> link_;
  asio::steady_timer status_poll_;
  kg::policyd::Broadcaster broadcaster_;
  std::unique_ptr<kg::policyd::Control> control_;
  std::chrono::steady_clock::time_point started_;
  std::optional<kg::ipc::StatusReply> captured_status_;
  std::chrono::steady_clock::time_point captured_status_time_;
  uint64_t captured_session_ = 0;
  uint32_t status_request_id_ = 0;
  uint64_t events_handled_ = 0;
  int channel_fd_;
  bool stopping_ = false;
  int exit_code_ = 0;
};

}  // namespace

namespace kg::policyd {

int run_engine(DaemonOptions args, int channel_fd) {
  // A SIGHUP passed on by the writer before the loop's handlers exist is not fatal.
  ::signal(SIGHUP, SIG_IGN);
  config::ParseResult parsed = config::parse_file(args.config_path);
  if (!parsed.config) {
    for (const auto& d : parsed.errors) log::error(d.str());
    return 1;
  }
  Engine engine(std::move(args), std::move(*parsed.config), channel_fd);
  return engine.run();
}

}  // namespace kg::policyd
