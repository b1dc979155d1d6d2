#include "daemon.h"

#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <sstream>

#include "common/hash.h"
#include "common/log.h"

namespace kg::verdictd {

namespace {

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Datagrams read per wake-up of one queue: bounded so other queues, the subscription and
// the hold timer are never starved; verdicts of a round go out in one sendmsg.
constexpr size_t kReadsPerRound = 256;

// /proc/net/netfilter/nfnetlink_queue: queue_dropped and user_dropped of queue `num`.
std::pair<uint64_t, uint64_t> kernel_queue_drops(uint16_t num) {
  std::ifstream in("/proc/net/netfilter/nfnetlink_queue");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    uint64_t qnum = 0, portid = 0, total = 0, mode = 0, range = 0, qdrop = 0, udrop = 0;
    if (f >> qnum >> portid >> total >> mode >> range >> qdrop >> udrop && qnum == num) {
      return {qdrop, udrop};
    }
  }
  return {0, 0};
}

}  // namespace

Daemon::Daemon(boost::asio::io_context& io, DaemonSetup setup)
    : io_(io),
      setup_(std::move(setup)),
      profiles_(setup_.config),
      sync_(process_hash_key(), profiles_),
      hold_(kHoldCapacity),
      hold_ns_(static_cast<int64_t>(setup_.config.options.verdict_hold_ms) * 1000000),
      hold_timer_(io),
      purge_timer_(io),
      signals_(io, SIGHUP, SIGTERM, SIGINT),
      profile_counters_(profiles_.size()) {}

Daemon::~Daemon() {
  // The sockets belong to the NfQueue objects; asio must not close them.
  for (auto& q : queue_io_) {
    if (q.fd && q.fd->is_open()) q.fd->release();
  }
}

Result<Ok> Daemon::start() {
  started_monotonic_ = clock_ns(CLOCK_MONOTONIC);
  for (auto& q : setup_.queues) {
    QueueIo qi;
    qi.queue = q.get();
    qi.fd = std::make_unique<boost::asio::posix::stream_descriptor>(io_, q->fd());
    queue_io_.push_back(std::move(qi));
  }
  for (size_t i = 0; i < queue_io_.size(); ++i) arm_queue(i);

  ipc::ClientOptions co;
  co.socket_path = setup_.config.options.runtime_dir + "/policyd.sock";
  co.role = ipc::Role::verdictd;
  co.program_name = "knockgate-verdictd";
  co.max_frame_bytes = size_t{16} * 1024 * 1024;  // big snapshot chunks are fine
  policyd_ = std::make_unique<ipc::Client>(io_, co);
  policyd_->on_message([this](const ipc::Message& m) { on_policyd_message(m); });
  policyd_->on_state([this](ipc::ClientState s, const std::string& detail) {
    if (s == ipc::ClientState::connected) {
      // Every (re)connect starts a fresh subscription; the old grants serve until the
      // snapshot is in.
      log::info("connected to policyd; subscribing to grants");
      policyd_->send(sync_.subscribe());
    } else if (s == ipc::ClientState::waiting && !detail.empty()) {
      log::debug("policyd: " + detail);
    }
  });
  if (auto r = policyd_->start(); !r) return Error{"policyd channel: " + r.error().message};

  arm_signals();
  arm_purge_timer();
  std::string queues;
  for (const auto& q : setup_.queues) {
    queues +=
        (queues.empty() ? "" : ", ") + std::to_string(q->number()) + " (" + q->features() + ")";
  }
  log::info("serving queue " + queues + "; hold " +
            std::to_string(setup_.config.options.verdict_hold_ms) + " ms, " +
            std::to_string(profiles_.size()) + " profiles");
  sd_notify(0, "READY=1\nSTATUS=serving verdicts");
  return Ok{};
}

void Daemon::stop() {
  if (stopping_) return;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  // Held packets get their answer now rather than when the socket closes.
  hold_.expire(INT64_MAX, [this](const HeldPacket& p) {
    queue_io_[p.queue_index].queue->drop(p.packet_id);
    ++counters_.dropped_hold_timeout;
  });
  flush_all();
  for (auto& q : queue_io_) q.fd->cancel();
  hold_timer_.cancel();
  purge_timer_.cancel();
  signals_.cancel();
  if (policyd_) policyd_->stop();
}

uint16_t Daemon::queue_index(const NfQueue& q) const {
  for (size_t i = 0; i < queue_io_.size(); ++i) {
    if (queue_io_[i].queue == &q) return static_cast<uint16_t>(i);
  }
  return 0;
}

void Daemon::arm_queue(size_t index) {
  queue_io_[index].fd->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                  [this, index](const boost::system::error_code& ec) {
                                    if (ec || stopping_) return;
                                    on_queue_readable(index);
                                    arm_queue(index);
                                  });
}

void Daemon::on_queue_readable(size_t index) {
  now_realtime_ = clock_ns(CLOCK_REALTIME);
  now_monotonic_ = clock_ns(CLOCK_MONOTONIC);
  const uint64_t enobufs = queue_io_[index].queue->stats().enobufs;
  queue_io_[index].queue->receive(*this, kReadsPerRound);
  queue_io_[index].queue->flush();
  // Overflow is counted per event; the log says so at most once a second.
  if (queue_io_[index].queue->stats().enobufs != enobufs &&
      now_monotonic_ - last_overflow_log_ns_ >= 1000000000) {
    last_overflow_log_ns_ = now_monotonic_;
    log::warn("queue " + std::to_string(queue_io_[index].queue->number()) +
              ": socket overflow (ENOBUFS), the kernel " +
              (setup_.config.options.verdict_fail_open ? "passed" : "dropped") +
              " packets; total " + std::to_string(queue_io_[index].queue->stats().enobufs));
  }
  rearm_hold_timer();
}

void Daemon::on_packet(NfQueue& queue, const QueuedPacket& p) {
  ++counters_.packets;
  Flow flow;
  Decision d;
  if (flow_from_packet(p.payload, flow) == packet::Status::ok) {
    d = decide(flow, sync_.cache(), profiles_, now_realtime_);
  }
  switch (d.verdict) {
    case Verdict::accept:
      queue.accept(p.id, d.match.mask != 0, verdict_mark(p.mark, d.match));
      ++counters_.accepted;
      if (d.reason == Reason::static_source) ++counters_.accepted_static;
      if (d.match.profile < profile_counters_.size()) ++profile_counters_[d.match.profile].accepted;
      return;
    case Verdict::drop:
      queue.drop(p.id);
      counters_.count_drop(d.reason);
      if (log::enabled(log::Level::debug)) {
        log::debug("drop " + flow.src.str() + " -> " + flow.dst.str() + ":" +
                   std::to_string(flow.dport) + ": " + reason_name(d.reason));
      }
      return;
    case Verdict::hold: {
      HeldPacket h;
      h.packet_id = p.id;
      h.queue_index = queue_index(queue);
      h.packet_mark = p.mark;
      h.deadline_ns = now_monotonic_ + hold_ns_;
      h.flow = flow;
      if (hold_ns_ <= 0 || !hold_.add(h)) {
        queue.drop(p.id);
        ++counters_.dropped_hold_full;
        return;
      }
      ++counters_.held;
      if (log::enabled(log::Level::debug)) {
        log::debug("hold " + flow.src.str() + " -> " + flow.dst.str() + ":" +
                   std::to_string(flow.dport) + ": awaiting grant");
      }
      return;
    }
  }
}

void Daemon::flush_all() {
  for (auto& q : queue_io_) q.queue->flush();
}

void Daemon::apply_change(const SyncChange& change) {
  if (hold_.live() == 0) return;
  now_realtime_ = clock_ns(CLOCK_REALTIME);
  auto look_again = [this](const HeldPacket& p) {
    const Decision d = decide(p.flow, sync_.cache(), profiles_, now_realtime_);
    NfQueue& q = *queue_io_[p.queue_index].queue;
    if (d.verdict == Verdict::accept) {
      q.accept(p.packet_id, d.match.mask != 0, verdict_mark(p.packet_mark, d.match));
      ++counters_.accepted;
      ++counters_.held_accepted;
      if (d.match.profile < profile_counters_.size()) {
        ++profile_counters_[d.match.profile].accepted;
        ++profile_counters_[d.match.profile].held_accepted;
      }
      return true;
    }
    if (d.verdict == Verdict::drop) {
      q.drop(p.packet_id);
      counters_.count_drop(d.reason);
      ++counters_.held_dropped;
      return true;
    }
    return false;
  };
  if (change.all) {
    hold_.resolve(IpAddr{}, look_again);
  } else {
    for (const auto& s : change.sources) hold_.resolve(s, look_again);
  }
  flush_all();
  rearm_hold_timer();
}

void Daemon::rearm_hold_timer() {
  const auto next = hold_.next_deadline();
  if (!next || (hold_timer_at_ != 0 && hold_timer_at_ <= *next)) return;
  hold_timer_at_ = *next;
  hold_timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(*next)));
  hold_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    hold_timer_at_ = 0;
    on_hold_timer();
  });
}

void Daemon::on_hold_timer() {
  const int64_t now = clock_ns(CLOCK_MONOTONIC);
  hold_.expire(now, [this](const HeldPacket& p) {
    queue_io_[p.queue_index].queue->drop(p.packet_id);
    ++counters_.dropped_hold_timeout;
    if (log::enabled(log::Level::debug)) {
      log::debug("drop " + p.flow.src.str() + " -> " + p.flow.dst.str() + ":" +
                 std::to_string(p.flow.dport) + ": hold timeout");
    }
  });
  flush_all();
  rearm_hold_timer();
}

void Daemon::arm_purge_timer() {
  purge_timer_.expires_after(std::chrono::seconds(1));
  purge_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    sync_.cache().purge(clock_ns(CLOCK_REALTIME));
    arm_purge_timer();
  });
}

void Daemon::on_policyd_message(const ipc::Message& m) {
  SyncChange change;
  SyncAction action = SyncAction::none;
  if (const auto* snap = std::get_if<ipc::GrantSnapshot>(&m)) {
    action = sync_.on_snapshot(*snap, change);
    if (change.all) {
      log::info("grant snapshot at seq " + std::to_string(sync_.seq()) + ": " +
                std::to_string(sync_.cache().grants()) + " grants");
    }
  } else if (const auto* delta = std::get_if<ipc::GrantDelta>(&m)) {
    action = sync_.on_delta(*delta, change);
    log::debug(std::string("grant ") + ipc::grant_op_name(delta->op) + " " +
               delta->grant.source.str() + " " + delta->grant.profile + " seq " +
               std::to_string(delta->seq));
  } else if (const auto* req = std::get_if<ipc::StatusRequest>(&m)) {
    policyd_->send(status(req->request_id));
    return;
  } else {
    return;
  }
  if (action == SyncAction::resubscribe) {
    log::warn("grant broadcast: sequence gap at seq " + std::to_string(sync_.seq()) +
              "; resubscribing (the current grants keep serving)");
    policyd_->send(sync_.subscribe());
  }
  apply_change(change);
}

void Daemon::arm_signals() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      reload();
      arm_signals();
      return;
    }
    log::info(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    stop();
  });
}

void Daemon::reload() {
  sd_notify(0, "RELOADING=1");
  auto parsed = config::parse_file(setup_.config_path);
  if (!parsed.config) {
    for (const auto& d : parsed.errors) log::error(d.str());
    log::error("reload failed; keeping the running profiles");
    sd_notify(0, "READY=1");
    return;
  }
  const auto& old_o = setup_.config.options;
  const auto& new_o = parsed.config->options;
  if (old_o.verdict_queue_first != new_o.verdict_queue_first ||
      old_o.verdict_queue_count != new_o.verdict_queue_count ||
      old_o.verdict_fail_open != new_o.verdict_fail_open ||
      old_o.runtime_dir != new_o.runtime_dir || old_o.verdict_user != new_o.verdict_user) {
    log::warn("VerdictQueue, VerdictFailOpen, VerdictUser and RuntimeDir take effect at restart");
  }
  // Counters follow their profile by name.
  std::vector<ProfileCounters> counters;
  ProfileSet fresh(*parsed.config);
  for (const auto& p : fresh.all()) {
    const uint16_t old = profiles_.index_of(p.name);
    counters.push_back(old < profile_counters_.size() ? profile_counters_[old] : ProfileCounters{});
  }
  profiles_ = std::move(fresh);
  profile_counters_ = std::move(counters);
  sync_.set_profiles(profiles_);
  hold_ns_ = static_cast<int64_t>(new_o.verdict_hold_ms) * 1000000;
  setup_.config = std::move(*parsed.config);
  log::info("reloaded " + setup_.config_path + ": " + std::to_string(profiles_.size()) +
            " profiles");
  SyncChange all;
  all.all = true;
  apply_change(all);
  sd_notify(0, "READY=1");
}

ipc::StatusReply Daemon::status(uint32_t request_id) const {
  ipc::StatusReply r;
  r.request_id = request_id;
  auto add = [&](std::string key, uint64_t v) { r.entries.push_back({std::move(key), v}); };
  auto text = [&](std::string key, std::string v) {
    r.entries.push_back({std::move(key), std::move(v)});
  };
  text("version", KG_SOFTWARE_VERSION);
  add("pid", static_cast<uint64_t>(getpid()));
  add("uptime_s",
      static_cast<uint64_t>((clock_ns(CLOCK_MONOTONIC) - started_monotonic_) / 1000000000));
  add("grants_active", sync_.cache().grants());
  add("grant_sources", sync_.cache().sources());
  add("grant_seq", sync_.seq());
  text("grant_sync", sync_.synced() ? (sync_.awaiting() ? "resyncing" : "synced") : "waiting");
  add("grant_snapshots", sync_.stats().snapshots);
  add("grant_deltas", sync_.stats().deltas);
  add("grant_gaps", sync_.stats().gaps);
  add("grant_unknown_profiles", sync_.stats().unknown_profiles);
  const auto& c = counters_;
  add("packets", c.packets);
  add("accepted", c.accepted);
  add("accepted_static", c.accepted_static);
  add("dropped_no_grant", c.dropped_no_grant);
  add("dropped_not_gated", c.dropped_not_gated);
  add("dropped_decode_error", c.dropped_decode_error);
  add("dropped_fragment", c.dropped_fragment);
  add("dropped_icmp_error", c.dropped_icmp_error);
  add("dropped_hold_timeout", c.dropped_hold_timeout);
  add("dropped_hold_full", c.dropped_hold_full);
  add("held", c.held);
  add("held_accepted", c.held_accepted);
  add("held_dropped", c.held_dropped);
  add("held_now", hold_.live());
  for (const auto& qi : queue_io_) {
    const std::string k = "queue." + std::to_string(qi.queue->number()) + ".";
    const auto& s = qi.queue->stats();
    add(k + "packets", s.packets);
    add(k + "verdicts", s.verdicts);
    add(k + "enobufs", s.enobufs);
    add(k + "receive_errors", s.receive_errors);
    add(k + "send_errors", s.send_errors);
    add(k + "kernel_errors", s.kernel_errors);
    const auto [qdrop, udrop] = kernel_queue_drops(qi.queue->number());
    add(k + "kernel_queue_dropped", qdrop);
    add(k + "kernel_user_dropped", udrop);
    text(k + "features", qi.queue->features());
  }
  for (size_t i = 0; i < profiles_.size(); ++i) {
    const std::string k = "profile." + profiles_.at(static_cast<uint16_t>(i)).name + ".";
    add(k + "accepted", profile_counters_[i].accepted);
    add(k + "held_accepted", profile_counters_[i].held_accepted);
  }
  return r;
}

}  // namespace kg::verdictd
