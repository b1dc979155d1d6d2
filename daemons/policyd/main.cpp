// knockgate-policyd: receives completed knocks from captured over the Unix socket,
// commits them to SQLite and runs the doors' knockd-style commands.
//
//   knockgate-policyd [-c FILE] [-n] [-d] [-v|-D]
#include <getopt.h>
#include <grp.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "common/knocklog.h"
#include "common/log.h"
#include "common/privdrop.h"
#include "config/config.h"
#include "ipc/messages.h"
#include "ipc/peer.h"
#include "ipc/server.h"
#include "policyd/config_bridge.h"
#include "policyd/policy.h"

namespace {

namespace asio = boost::asio;
using kg::policyd::PolicyCore;

constexpr const char* kProgram = "knockgate-policyd";
constexpr const char* kDefaultConfig = "/etc/knockgate/knockgate.conf";

struct Args {
  std::string config = kDefaultConfig;
  bool check_only = false;
  bool verbose = false;
  bool debug = false;
};

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: %s [-c FILE] [-n] [-d] [-v|-D]\n"
               "  -c, --config FILE  config file (default %s)\n"
               "  -n, --check        check the config and exit (0: valid, 1: errors)\n"
               "  -d, --daemon       accepted for knockd habits; policyd stays in the\n"
               "                     foreground (systemd Type=notify)\n"
               "  -v, --verbose      log every event\n"
               "  -D, --debug        debug output\n"
               "  -h, --help         this text\n"
               "  -V, --version      print the version\n",
               kProgram, kDefaultConfig);
}

// Returns the exit code to leave with, or nullopt to run.
std::optional<int> parse_args(int argc, char** argv, Args& args) {
  static const option long_options[] = {
      {"config", required_argument, nullptr, 'c'}, {"check", no_argument, nullptr, 'n'},
      {"daemon", no_argument, nullptr, 'd'},       {"verbose", no_argument, nullptr, 'v'},
      {"debug", no_argument, nullptr, 'D'},        {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},      {nullptr, 0, nullptr, 0}};
  int c = 0;
  while ((c = getopt_long(argc, argv, "c:ndvDhV", long_options, nullptr)) != -1) {
    switch (c) {
      case 'c':
        args.config = optarg;
        break;
      case 'n':
        args.check_only = true;
        break;
      case 'd':
        break;
      case 'v':
        args.verbose = true;
        break;
      case 'D':
        args.debug = args.verbose = true;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case 'V':
        std::printf("%s %s\n", kProgram, KG_SOFTWARE_VERSION);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  return std::nullopt;
}

kg::ipc::PeerPolicy peer_policy(const kg::config::Options& o) {
  kg::ipc::StandardPeerRules rules;
  auto capture = kg::lookup_user(o.capture_user);
  if (capture) {
    rules.capture_uid = static_cast<uid_t>(capture->uid);
  } else {
    kg::log::warn("CaptureUser " + o.capture_user + ": " + capture.error().message +
                  "; only root may send knock events");
  }
  // Only WebUser may claim the webd role (knockgate-webd drops to it after binding).
  if (auto web = kg::lookup_user(o.web_user)) rules.web_uid = static_cast<uid_t>(web->uid);
  if (const group* g = getgrnam(o.admin_group.c_str()); g != nullptr) {
    rules.admin_gid = g->gr_gid;
  } else {
    kg::log::info("AdminGroup " + o.admin_group + " does not exist; only root may control policyd");
  }
  return kg::ipc::standard_peer_policy(rules);
}

class Daemon {
 public:
  Daemon(Args args, kg::config::Config config)
      : args_(std::move(args)), config_(std::move(config)), signals_(io_) {}

  int run() {
    kg::knocklog::Options log_options;
    log_options.log_file = config_.options.log_file;
    log_options.use_syslog = config_.options.use_syslog;
    auto writer = kg::knocklog::Writer::open(log_options);
    if (!writer) return fail(writer.error().message);
    knocklog_ = std::move(*writer);

    warn_duplicate_doors(config_);
    PolicyCore::Options core_options;
    core_options.database_path = config_.options.database;
    auto core = PolicyCore::open(io_, *knocklog_, core_options, kg::policyd::door_actions(config_));
    if (!core) return fail(core.error().message);
    core_ = std::move(*core);
    auto started = core_->start();
    if (!started)
      return fail("database " + config_.options.database + ": " + started.error().message);

    if (auto dir = ensure_runtime_dir(config_.options.runtime_dir); !dir) {
      return fail(dir.error().message);
    }
    kg::ipc::ServerOptions server_options;
    server_options.socket_path = config_.options.runtime_dir + "/policyd.sock";
    // Reachable by every local user: who may say what is decided per connection from
    // SO_PEERCRED (captured's uid, the admin group, root), not by the file mode.
    server_options.socket_mode = 0666;
    server_options.program_name = kProgram;
    server_options.policy = peer_policy(config_.options);
    server_ = std::make_unique<kg::ipc::Server>(io_, std::move(server_options));
    server_->on_message(
        [this](const kg::ipc::SessionPtr& s, const kg::ipc::Message& m) { on_message(s, m); });
    // The library logs sessions opening and closing. A captured that (re)connects gets
    // the one-time doors' current state: it may have missed updates while away.
    server_->on_open([this](const kg::ipc::SessionPtr& s) {
      if (s->role() != kg::ipc::Role::captured) return;
      for (const auto& update : core_->one_time_snapshot()) s->send(door_sequence(update));
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
    if (auto listening = server_->start(); !listening) return fail(listening.error().message);

    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGHUP);
    wait_signal();

    kg::log::info("ready: database " + config_.options.database + ", " +
                  std::to_string(config_.doors.size()) + " door(s), " +
                  std::to_string(core_->scheduled_stop_count()) + " pending stop command(s)");
    sd_notify(0, "READY=1\nSTATUS=listening for knock events");
    io_.run();
    sd_notify(0, "STOPPING=1");
    return exit_code_;
  }

 private:
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
      kg::log::info(std::string("received ") + (signo == SIGINT ? "SIGINT" : "SIGTERM") +
                    ", stopping; pending stop commands stay in the database");
      core_->shutdown();
      server_->stop();
      io_.stop();
    });
  }

  void reload() {
    sd_notify(0, "RELOADING=1");
    knocklog_->write(kg::knocklog::rereading_config(args_.config));
    kg::config::ParseResult parsed = kg::config::parse_file(args_.config);
    if (!parsed.config) {
      for (const auto& d : parsed.errors) kg::log::error(d.str());
      kg::log::error("config not reloaded; the previous one stays in effect");
    } else {
      const kg::config::Options& old_o = config_.options;
      const kg::config::Options& new_o = parsed.config->options;
      if (old_o.database != new_o.database || old_o.runtime_dir != new_o.runtime_dir ||
          old_o.log_file != new_o.log_file || old_o.use_syslog != new_o.use_syslog ||
          old_o.capture_user != new_o.capture_user || old_o.admin_group != new_o.admin_group) {
        kg::log::warn(
            "Database, RuntimeDir, LogFile, UseSyslog, CaptureUser and AdminGroup "
            "changes take effect when policyd restarts");
      }
      warn_duplicate_doors(*parsed.config);
      core_->set_doors(kg::policyd::door_actions(*parsed.config));
      core_->audit_config_reload(args_.config);
      const kg::config::Options kept = config_.options;
      config_ = std::move(*parsed.config);
      config_.options = kept;
      kg::log::info("config reloaded: " + std::to_string(config_.doors.size()) + " door(s)");
    }
    // Also the logrotate hook: the log file is opened again by name.
    if (auto reopened = knocklog_->reopen(); !reopened) kg::log::error(reopened.error().message);
    sd_notify(0, "READY=1");
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
      kg::ipc::ControlReply reply;
      reply.request_id = control->request_id;
      reply.exit_code = 2;
      reply.err = std::string(kProgram) + ": '" + control->command +
                  "' is not a command this policyd version serves\n";
      session->send(reply);
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
    session->send(kg::ipc::EventAck{event.event_id});
  }

  Args args_;
  kg::config::Config config_;
  asio::io_context io_;
  asio::signal_set signals_;
  std::unique_ptr<kg::knocklog::Writer> knocklog_;
  std::unique_ptr<PolicyCore> core_;
  std::unique_ptr<kg::ipc::Server> server_;
  uint64_t events_handled_ = 0;
  int exit_code_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (auto code = parse_args(argc, argv, args)) return *code;
  kg::log::init(kProgram, args.debug ? kg::log::Level::debug : kg::log::Level::info);

  if (args.check_only) {
    std::string out;
    std::string err;
    const int code = kg::policyd::check_config(args.config, out, err);
    std::fputs(out.c_str(), stdout);
    std::fputs(err.c_str(), stderr);
    return code;
  }

  kg::config::ParseResult parsed = kg::config::parse_file(args.config);
  if (!parsed.config) {
    for (const auto& d : parsed.errors) std::fprintf(stderr, "%s\n", d.str().c_str());
    return 1;
  }
  // The database, its WAL and the log file are for root and the admin group only.
  ::umask(027);
  Daemon daemon(std::move(args), std::move(*parsed.config));
  return daemon.run();
}
