#include "captured/daemon.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <chrono>
#include <csignal>

#include "common/log.h"
#include "packet/decode.h"

namespace kg::captured {

namespace {

knock::TimeNs monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<knock::TimeNs>(ts.tv_sec) * knock::kNanosPerSecond + ts.tv_nsec;
}

// A pcap batch is at most this many packets, so timers and netlink are never starved.
constexpr int kDispatchBatch = 256;

}  // namespace

std::vector<knock::DoorSpec> door_specs(
    const config::Config& cfg,
    const std::vector<std::pair<std::string, std::vector<Knock>>>& one_time_active) {
  std::vector<knock::DoorSpec> specs;
  for (const auto& d : cfg.doors) {
    knock::DoorSpec s;
    s.name = d.name;
    s.sequence = d.sequence;
    s.target = d.target;
    s.tcpflags = d.tcpflags;
    s.seq_timeout_s = d.seq_timeout;
    s.tolerate_duplicates = d.tolerate_duplicates;
    if (!d.one_time_sequences.empty()) {
      // An empty sequence leaves the door inactive until policyd names its active one.
      s.sequence.clear();
      for (const auto& [path, seq] : one_time_active) {
        if (path == d.one_time_sequences) s.sequence = seq;
      }
    }
    specs.push_back(std::move(s));
  }
  return specs;
}

// Engine events become knockd's log lines; an Open also becomes a KnockEvent to policyd.
class Daemon::Sink final : public knock::EventSink {
 public:
  explicit Sink(Daemon& d) : d_(d) {}
  void set_packet(const IpAddr& dst, int64_t realtime_ns) {
    dst_ = dst;
    realtime_ns_ = realtime_ns;
  }
  void stage(const IpAddr& source, size_t door, int stage) override {
    d_.log_line(knocklog::stage(source, door_name(door), static_cast<unsigned>(stage)),
                stage == 1 ? "stage 1" : "stage");
  }
  void open(const IpAddr& source, size_t door) override {
    // policyd writes OPEN SESAME once the event is committed: one line per open.
    log::debug(source.str() + ": " + door_name(door) + ": completed");
    ipc::KnockEvent ev;
    ev.door = door_name(door);
    ev.source = source;
    ev.destination = dst_.family() == source.family() ? dst_ : source;
    ev.time_ns = realtime_ns_;
    ev.method = ipc::KnockMethod::knock;
    ev.config_generation = d_.config_generation_;
    d_.policyd_->send_event(std::move(ev));
  }
  void timeout(const IpAddr& source, size_t door, int stage) override {
    d_.log_line(knocklog::sequence_timeout(source, door_name(door), static_cast<unsigned>(stage)),
                "sequence timeout");
  }

 private:
  const std::string& door_name(size_t door) const { return d_.engine_.doors()[door].name; }
  Daemon& d_;
  IpAddr dst_;
  int64_t realtime_ns_ = 0;
};

Daemon::Daemon(boost::asio::io_context& io, DaemonSetup setup)
    : io_(io),
      setup_(std::move(setup)),
      engine_({}, setup_.config.options.max_tracked_sources),
      capture_fd_(io),
      expiry_timer_(io),
      summary_timer_(io),
      signals_(io, SIGHUP, SIGTERM, SIGINT),
      limiter_(setup_.stage_lines_per_second, std::chrono::seconds(1)),
      sink_(std::make_unique<Sink>(*this)) {
  engine_.update_doors(door_specs(setup_.config, setup_.one_time_active));
  spa_ = std::make_unique<SpaGate>(setup_.config);
}

Daemon::~Daemon() {
  // The descriptors belong to libpcap and libnl; asio must not close them.
  if (capture_fd_.is_open()) capture_fd_.release();
  if (netlink_fd_ && netlink_fd_->is_open()) netlink_fd_->release();
}

Result<Ok> Daemon::start() {
  auto nw = NetWatch::open(setup_.interfaces,
                           [this](const std::vector<InterfaceState>& s) { on_interfaces(s); });
  if (!nw) return Error{"netlink: " + nw.error().message};
  netwatch_ = std::move(*nw);
  netlink_fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, netwatch_->fd());
  on_interfaces(netwatch_->state());

  ipc::ClientOptions co;
  co.socket_path = setup_.config.options.runtime_dir + "/policyd.sock";
  co.role = ipc::Role::captured;
  co.program_name = "knockgate-captured";
  policyd_ = std::make_unique<ipc::Client>(io_, co);
  policyd_->on_message([this](const ipc::Message& m) { on_policyd_message(m); });
  // The client logs its own failures once per state change; say when it is usable.
  policyd_->on_state([](ipc::ClientState s, const std::string&) {
    if (s == ipc::ClientState::connected) log::info("connected to policyd");
  });
  if (auto r = policyd_->start(); !r) return Error{"policyd channel: " + r.error().message};

  setup_spa();
  capture_fd_.assign(setup_.capture->fd());
  arm_capture_read();
  arm_netlink_read();
  arm_signals();
  summary_timer_.expires_after(std::chrono::seconds(1));
  summary_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) flush_suppressed();
  });

  std::string names;
  for (const auto& n : setup_.interfaces) names += (names.empty() ? "" : ",") + n;
  setup_.knock_log->write(knocklog::starting_up(names));
  sd_notify(0, "READY=1");
  return Ok{};
}

void Daemon::log_line(const knocklog::Entry& e, const char* limit_kind) {
  if (limit_kind != nullptr) {
    auto d = limiter_.admit(limit_kind, knocklog::RateLimiter::Clock::now());
    if (d.summary) setup_.knock_log->write(knocklog::Entry{*d.summary, "suppressed", "", ""});
    if (!d.emit) return;
  }
  setup_.knock_log->write(e);
  log::debug(e.message);
}

void Daemon::flush_suppressed() {
  for (const auto& line : limiter_.flush(knocklog::RateLimiter::Clock::now())) {
    setup_.knock_log->write(knocklog::Entry{line, "suppressed", "", ""});
  }
  spa_->flush_log_summary();
  if (stopping_) return;
  summary_timer_.expires_after(std::chrono::seconds(1));
  summary_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) flush_suppressed();
  });
}

void Daemon::arm_capture_read() {
  capture_fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                         [this](const boost::system::error_code& ec) {
                           if (ec || stopping_) return;
                           on_capture_readable();
                           arm_capture_read();
                         });
}

void Daemon::on_capture_readable() {
  const auto link = packet::link_from_dlt(setup_.capture->linktype());
  if (!link) {  // cannot happen with the SLL2 handle we open; never spin on it
    log::error("capture link type " + std::to_string(setup_.capture->linktype()) +
               " not decodable; exiting");
    exit_code_ = 1;
    stop();
    return;
  }
  packet::Decoded pkt;
  auto r = setup_.capture->dispatch(
      kDispatchBatch, [&](int64_t realtime_ns, int, std::span<const uint8_t> bytes) {
        const auto status = packet::decode(*link, bytes, pkt);
        if (status != packet::Status::ok) {
          ++decode_errors_;
          return;
        }
        if (!pkt.has_ports ||
            (pkt.l4_proto != packet::ipproto::tcp && pkt.l4_proto != packet::ipproto::udp)) {
          ++not_knockable_;
          return;
        }
        if (std::find(accepted_destinations_.begin(), accepted_destinations_.end(), pkt.dst) ==
            accepted_destinations_.end()) {
          ++not_for_us_;
          return;
        }
        if (pkt.l4_proto == packet::ipproto::udp) {
          for (size_t i = 0; i < spa_->doors().size(); ++i) {
            const auto& d = spa_->doors()[i];
            if (d.transport != spa::Transport::udp || d.port != pkt.dport) continue;
            on_spa_payload(i,
                           std::string_view(reinterpret_cast<const char*>(pkt.payload.data()),
                                            pkt.payload.size()),
                           pkt.payload_truncated, pkt.src, pkt.dst, realtime_ns);
            return;  // an SPA port is not also a knock port
          }
        }
        knock::Observation o;
        o.src = pkt.src;
        o.dst = pkt.dst;
        o.proto = pkt.l4_proto == packet::ipproto::tcp ? Proto::tcp : Proto::udp;
        o.dport = pkt.dport;
        o.tcp_flags = pkt.tcp_flags;
        o.now = monotonic_ns();
        sink_->set_packet(pkt.dst, realtime_ns);
        engine_.on_packet(o, *sink_);
      });
  if (!r) {
    // A capture socket that keeps failing would spin this loop: give up after a run of
    // errors and let the service manager restart us with a fresh socket.
    if (++capture_errors_in_row_ == 1 || capture_errors_in_row_ % 10 == 0)
      log::error(r.error().message);
    if (capture_errors_in_row_ >= 50) {
      log::error("capture keeps failing; exiting");
      exit_code_ = 1;
      stop();
      return;
    }
  } else {
    capture_errors_in_row_ = 0;
  }
  arm_expiry_timer();
}

void Daemon::arm_expiry_timer() {
  const auto deadline = engine_.next_deadline();
  if (!deadline) {
    expiry_timer_.cancel();
    return;
  }
  // steady_clock is CLOCK_MONOTONIC on Linux, the engine's clock.
  const auto when = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(*deadline));
  if (expiry_timer_.expiry() == when) return;
  expiry_timer_.expires_at(when);
  expiry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    engine_.expire(monotonic_ns(), *sink_);
    arm_expiry_timer();
  });
}

void Daemon::arm_netlink_read() {
  netlink_fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          [this](const boost::system::error_code& ec) {
                            if (ec || stopping_) return;
                            netwatch_->on_readable();
                            arm_netlink_read();
                          });
}

void Daemon::on_interfaces(const std::vector<InterfaceState>& state) {
  // One log line per change of each interface, never one per retry.
  for (const auto& now : state) {
    const InterfaceState* before = nullptr;
    for (const auto& b : interfaces_) {
      if (b.name == now.name) before = &b;
    }
    const bool was_present = before != nullptr && before->ifindex != 0;
    if (now.ifindex == 0) {
      if (before == nullptr || was_present) {
        log::warn("interface " + now.name + " is absent; waiting for it to appear");
      }
      continue;
    }
    if (!was_present || before->ifindex != now.ifindex) {
      log::info("interface " + now.name + " present (index " + std::to_string(now.ifindex) +
                "); capturing on it");
    }
    if ((!was_present || before->up) && !now.up) {
      log::warn("interface " + now.name + " is down; waiting for it to come up");
    } else if (was_present && !before->up && now.up) {
      log::info("interface " + now.name + " is up again");
    }
    if (now.addrs.empty() && (!was_present || !before->addrs.empty())) {
      log::warn("interface " + now.name + " has no address; doors without a target wait for one");
    } else if (!now.addrs.empty() && (!was_present || before->addrs != now.addrs)) {
      std::string list;
      for (const auto& a : now.addrs) list += (list.empty() ? "" : " ") + a.str();
      log::info("interface " + now.name + " addresses: " + list);
    }
  }
  interfaces_ = state;
  install_filter();
}

void Daemon::install_filter() {
  FilterInputs in;
  for (const auto& st : interfaces_) {
    if (st.ifindex == 0) continue;
    in.ifindexes.push_back(st.ifindex);
    in.local_addrs.insert(in.local_addrs.end(), st.addrs.begin(), st.addrs.end());
  }
  const auto& doors = engine_.doors();
  for (size_t i = 0; i < doors.size(); ++i) {
    if (!engine_.door_active(i)) continue;
    in.doors.push_back({doors[i].sequence, doors[i].tcpflags, doors[i].target});
  }
  for (const auto& d : spa_->doors()) {
    if (d.transport == spa::Transport::udp) in.extra_ports.push_back(Knock{Proto::udp, d.port});
  }
  const std::string expr = build_filter(in);
  if (expr == active_filter_) return;
  if (auto r = setup_.capture->set_filter(expr); !r) {
    ++filter_errors_;
    log::error("capture filter not installed: " + r.error().message +
               "; capturing nothing until a filter can be installed");
    // Fail closed: an old filter may name interfaces or addresses that are no longer ours.
    if (auto closed = setup_.capture->set_filter(kMatchNothing); !closed) {
      log::error("cannot close the capture either: " + closed.error().message + "; exiting");
      exit_code_ = 1;
      stop();
      return;
    }
    active_filter_ = kMatchNothing;
    accepted_destinations_.clear();
    return;
  }
  active_filter_ = expr;
  // The same destinations, checked again in user space: the kernel filter is the fast
  // path, this is the guarantee.
  accepted_destinations_ = in.local_addrs;
  for (const auto& d : in.doors) {
    if (d.target) accepted_destinations_.push_back(*d.target);
  }
  log::debug("capture filter: " + expr);
}

void Daemon::arm_signals() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      reload();
    } else {
      stop();
    }
  });
}

void Daemon::reload() {
  arm_signals();
  const std::string& path = setup_.config.file;
  setup_.knock_log->write(knocklog::rereading_config(path));
  auto parsed = config::parse_file(path);
  if (!parsed.config) {
    for (const auto& d : parsed.errors) log::error(d.str());
    log::error("reload failed; keeping the running configuration");
    return;
  }
  // One-time files may be unreadable to us now; keep the sequences we already know.
  auto specs = door_specs(*parsed.config, setup_.one_time_active);
  const bool interfaces_changed =
      !setup_.interfaces_from_command_line &&
      parsed.config->options.interfaces != setup_.config.options.interfaces;
  setup_.config = std::move(*parsed.config);
  engine_.update_doors(std::move(specs));
  spa_ = std::make_unique<SpaGate>(setup_.config);
  setup_spa();
  ++config_generation_;
  if (auto r = setup_.knock_log->reopen(); !r) log::warn("log file: " + r.error().message);
  if (interfaces_changed) {
    setup_.interfaces = setup_.config.options.interfaces;
    netwatch_->set_names(setup_.interfaces);  // calls on_interfaces → install_filter
  } else {
    install_filter();
  }
  arm_expiry_timer();
  log::info("configuration reloaded (generation " + std::to_string(config_generation_) + ", " +
            std::to_string(engine_.doors().size()) + " doors)");
}

void Daemon::stop() {
  if (stopping_) return;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  setup_.knock_log->write(knocklog::shutting_down());
  const auto pending = policyd_->stats().events_pending;
  if (pending != 0) {
    log::warn(std::to_string(pending) + " knock events not yet acknowledged by policyd are lost");
  }
  boost::system::error_code ignored;
  capture_fd_.cancel(ignored);
  netlink_fd_->cancel(ignored);
  expiry_timer_.cancel();
  summary_timer_.cancel();
  signals_.cancel(ignored);
  if (spa_listener_) spa_listener_->stop();
  policyd_->stop();
  io_.stop();
}

void Daemon::on_policyd_message(const ipc::Message& m) {
  if (const auto* seq = std::get_if<ipc::DoorSequence>(&m)) {
    apply_door_sequence(*seq);
    return;
  }
  if (const auto* req = std::get_if<ipc::StatusRequest>(&m)) {
    ipc::StatusReply reply;
    reply.request_id = req->request_id;
    reply.entries = status_entries();
    policyd_->send(reply);
  }
}

// policyd (root) consumes one-time sequences and tells us the next active one: after each
// use, and as a snapshot whenever we connect.
void Daemon::apply_door_sequence(const ipc::DoorSequence& m) {
  const std::vector<Knock> next = m.disabled ? std::vector<Knock>{} : m.sequence;
  bool changed = false;
  for (size_t i = 0; i < setup_.config.doors.size() && i < engine_.doors().size(); ++i) {
    const auto& door = setup_.config.doors[i];
    if (door.name != m.door || door.one_time_sequences.empty()) continue;
    bool known = false;
    for (auto& [path, seq] : setup_.one_time_active) {
      if (path == door.one_time_sequences) {
        seq = next;
        known = true;
      }
    }
    if (!known) setup_.one_time_active.emplace_back(door.one_time_sequences, next);
    // A snapshot repeating what we have must not drop attempts in progress.
    if (engine_.doors()[i].sequence == next) continue;
    engine_.set_sequence(i, next);
    changed = true;
    log::info("door " + m.door + ": " +
              (next.empty() ? std::string("no one-time sequence left, disabled")
                            : "next one-time sequence active"));
  }
  if (changed) install_filter();
}

std::vector<ipc::StatusEntry> Daemon::status_entries() {
  const auto cs = setup_.capture->stats();
  const auto& es = engine_.stats();
  const auto ipc_stats = policyd_->stats();
  std::vector<ipc::StatusEntry> e;
  auto add = [&](const char* k, uint64_t v) { e.push_back({k, v}); };
  add("pcap_received", cs.received);
  add("pcap_dropped", cs.dropped);
  add("pcap_if_dropped", cs.if_dropped);
  add("decode_errors", decode_errors_);
  add("not_knockable", not_knockable_);
  add("not_for_us", not_for_us_);
  add("filter_errors", filter_errors_);
  add("engine_packets", es.packets);
  add("engine_ignored", es.ignored);
  add("attempts_started", es.started);
  add("knocks_opened", es.opens);
  add("sequence_timeouts", es.timeouts);
  add("attempts_invalidated", es.invalidated);
  add("sources_tracked", es.tracked_sources);
  add("sources_evicted_stage1", es.evicted_probation);
  add("sources_evicted_protected", es.evicted_protected);
  add("log_lines_suppressed", limiter_.suppressed_total());
  add("events_pending", ipc_stats.events_pending);
  add("events_dropped", ipc_stats.events_dropped);
  add("config_generation", config_generation_);
  add("spa_accepted", spa_->accepted());
  for (size_t i = 0; i < spa::kRejectCount; ++i) {
    e.push_back({std::string("spa_rejected_") + spa::reject_name(spa::kAllRejects[i]),
                 spa_->rejected()[i]});
  }
  add("spa_log_lines_suppressed", spa_->log_lines_suppressed());
  e.push_back({"filter", active_filter_});
  return e;
}

void Daemon::setup_spa() {
  if (spa_listener_) spa_listener_->stop();
  spa_listener_.reset();
  bool any_stream = false;
  for (const auto& d : spa_->doors()) any_stream = any_stream || d.transport != spa::Transport::udp;
  if (!any_stream) return;
  spa_listener_ = std::make_unique<SpaListener>(
      io_, [this](size_t door, std::string data, bool complete, const IpAddr& src,
                  const IpAddr& dst) { on_spa_stream(door, std::move(data), complete, src, dst); });
  for (size_t i = 0; i < spa_->doors().size(); ++i) {
    const auto& d = spa_->doors()[i];
    if (d.transport == spa::Transport::udp) continue;
    if (auto r = spa_listener_->listen(i, d.port, d.transport); !r) {
      log::error("SPA door " + d.name + ": " + r.error().message + "; door unusable");
    } else {
      log::info("SPA door " + d.name + ": listening on " + spa::transport_name(d.transport) +
                " port " + std::to_string(d.port));
    }
  }
}

void Daemon::on_spa_payload(size_t door, std::string_view payload, bool truncated,
                            const IpAddr& src, const IpAddr& dst, int64_t realtime_ns) {
  auto ev = spa_->handle(door, payload, truncated, src, dst, realtime_ns, config_generation_);
  if (ev) policyd_->send_event(std::move(*ev));
}

void Daemon::on_spa_stream(size_t door, std::string data, bool complete, const IpAddr& src,
                           const IpAddr& dst) {
  if (stopping_ || door >= spa_->doors().size()) return;
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t now_ns = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  if (spa_->doors()[door].transport == spa::Transport::http) {
    auto inner = spa::unwrap_http(data);
    if (!inner) {
      spa_->reject(door, spa::Reject::bad_http, src);
      return;
    }
    on_spa_payload(door, *inner, false, src, dst, now_ns);
    return;
  }
  // fwknop -P tcp writes the packet and closes; a connection cut by our deadline or cap
  // may hold a partial packet.
  on_spa_payload(door, data, !complete && data.size() >= SpaListener::kMaxBytes, src, dst, now_ns);
}

}  // namespace kg::captured
