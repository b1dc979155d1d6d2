#include "verdictd/daemon.h"

#include <pthread.h>
#include <sched.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
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
      fail_open_(setup_.config.options.verdict_fail_open),
      hold_timer_(io),
      purge_timer_(io),
      signals_(io, SIGHUP, SIGTERM, SIGINT),
      profile_counters_(profiles_.size()) {}

Daemon::~Daemon() {
  stopping_readers_ = true;
  for (auto& r : readers_) {
    if (r->thread.joinable()) r->thread.join();
  }
}

Result<Ok> Daemon::start() {
  started_monotonic_ = clock_ns(CLOCK_MONOTONIC);
  for (size_t i = 0; i < setup_.queues.size(); ++i) {
    readers_.push_back(
        std::make_unique<Reader>(*this, *setup_.queues[i], static_cast<uint16_t>(i)));
    control_.emplace_back(setup_.queues[i]->number());
  }

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
      std::lock_guard lock(mu_);
      policyd_->send(sync_.subscribe());
    } else if (s == ipc::ClientState::waiting && !detail.empty()) {
      log::debug("policyd: " + detail);
    }
  });
  if (auto r = policyd_->start(); !r) return Error{"policyd channel: " + r.error().message};

  arm_signals();
  arm_purge_timer();
  for (auto& r : readers_) {
    Reader* reader = r.get();
    reader->thread = std::thread([this, reader] { read_loop(*reader); });
  }
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
  // Readers finish their batch and see the flag within their read timeout.
  stopping_readers_ = true;
  for (auto& r : readers_) {
    if (r->thread.joinable()) r->thread.join();
  }
  // Held packets get their answer now rather than when the socket closes.
  {
    std::lock_guard lock(mu_);
    hold_.expire(INT64_MAX, [this](const HeldPacket& p) {
      control_drop(p.queue_index, p.packet_id);
      ++counters_.dropped_hold_timeout;
    });
  }
  flush_control();
  hold_timer_.cancel();
  purge_timer_.cancel();
  signals_.cancel();
  if (policyd_) policyd_->stop();
}

// With CPU fanout the kernel puts a packet on queue first + (cpu % count): the reader of
// queue k runs on exactly those CPUs (of the ones we may use), so the SYN, its verdict and
// the re-injected handshake stay on one CPU's caches and need no cross-CPU wake-up.
void Daemon::pin_reader(const Reader& r) const {
  const size_t count = readers_.size();
  if (count < 2) return;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  cpu_set_t mine;
  CPU_ZERO(&mine);
  for (size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed) && cpu % count == r.index) CPU_SET(cpu, &mine);
  }
  if (CPU_COUNT(&mine) == 0) return;  // more queues than CPUs: this one gets no packets
  if (pthread_setaffinity_np(pthread_self(), sizeof mine, &mine) != 0) {
    boost::asio::post(io_, [n = r.queue.number()] {
      log::warn("queue " + std::to_string(n) + ": cannot pin its reader to its CPUs");
    });
  }
}

void Daemon::read_loop(Reader& r) {
  // Signals belong to the io_context thread's signal_set.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  // "queue-N" in ps -L, top -H and /proc/PID/task/*/comm (at most 15 characters).
  pthread_setname_np(pthread_self(),
                     ("queue-" + std::to_string(r.queue.number())).substr(0, 15).c_str());
  pin_reader(r);
  while (!stopping_readers_.load(std::memory_order_relaxed)) {
    const uint64_t enobufs = r.queue.stats().enobufs.load(std::memory_order_relaxed);
    const size_t got = r.queue.read();
    if (got > 0) {
      r.now_realtime = clock_ns(CLOCK_REALTIME);
      r.now_monotonic = clock_ns(CLOCK_MONOTONIC);
      r.held = false;
      {
        std::lock_guard lock(mu_);
        r.queue.dispatch(r);
      }
      r.queue.send(r.batch);
      if (r.held) boost::asio::post(io_, [this] { rearm_hold_timer(); });
    }
    // Overflow is counted per event; the log says so at most once a second.
    const uint64_t total = r.queue.stats().enobufs.load(std::memory_order_relaxed);
    if (total != enobufs) {
      const int64_t now = clock_ns(CLOCK_MONOTONIC);
      int64_t last = last_overflow_log_ns_.load(std::memory_order_relaxed);
      if (now - last >= 1000000000 && last_overflow_log_ns_.compare_exchange_strong(last, now)) {
        boost::asio::post(io_, [n = r.queue.number(), total, fail_open = fail_open_] {
          log::warn("queue " + std::to_string(n) + ": socket overflow (ENOBUFS), the kernel " +
                    (fail_open ? "passed" : "dropped") + " packets; total " +
                    std::to_string(total));
        });
      }
    }
  }
}

void Daemon::Reader::on_packet(NfQueue& /*q*/, const QueuedPacket& p) {
  daemon.judge(*this, p);
}

void Daemon::judge(Reader& r, const QueuedPacket& p) {
  ++counters_.packets;
  Flow flow;
  Decision d;
  if (flow_from_packet(p.payload, flow) == packet::Status::ok) {
    d = decide(flow, sync_.cache(), profiles_, r.now_realtime);
  }
  if (r.batch.full()) r.queue.send(r.batch);
  switch (d.verdict) {
    case Verdict::accept:
      r.batch.accept(p.id, d.match.mask != 0, verdict_mark(p.mark, d.match));
      ++counters_.accepted;
      if (d.reason == Reason::static_source) ++counters_.accepted_static;
      if (d.match.profile < profile_counters_.size()) ++profile_counters_[d.match.profile].accepted;
      return;
    case Verdict::drop:
      r.batch.drop(p.id);
      counters_.count_drop(d.reason);
      if (log::enabled(log::Level::debug)) {
        log::debug("drop " + flow.src.str() + " -> " + flow.dst.str() + ":" +
                   std::to_string(flow.dport) + ": " + reason_name(d.reason));
      }
      return;
    case Verdict::hold: {
      HeldPacket h;
      h.packet_id = p.id;
      h.queue_index = r.index;
      h.packet_mark = p.mark;
      h.deadline_ns = r.now_monotonic + hold_ns_;
      h.flow = flow;
      if (hold_ns_ <= 0 || !hold_.add(h)) {
        r.batch.drop(p.id);
        ++counters_.dropped_hold_full;
        return;
      }
      ++counters_.held;
      r.held = true;
      if (log::enabled(log::Level::debug)) {
        log::debug("hold " + flow.src.str() + " -> " + flow.dst.str() + ":" +
                   std::to_string(flow.dport) + ": awaiting grant");
      }
      return;
    }
  }
}

void Daemon::control_accept(uint16_t queue_index, uint32_t packet_id, bool set_mark,
                            uint32_t mark) {
  VerdictBatch& b = control_[queue_index];
  if (b.full()) setup_.queues[queue_index]->send(b);
  b.accept(packet_id, set_mark, mark);
}

void Daemon::control_drop(uint16_t queue_index, uint32_t packet_id) {
  VerdictBatch& b = control_[queue_index];
  if (b.full()) setup_.queues[queue_index]->send(b);
  b.drop(packet_id);
}

void Daemon::flush_control() {
  for (size_t i = 0; i < control_.size(); ++i) setup_.queues[i]->send(control_[i]);
}

// Under mu_.
void Daemon::apply_change(const SyncChange& change) {
  if (hold_.live() == 0) return;
  const int64_t now_realtime = clock_ns(CLOCK_REALTIME);
  auto look_again = [this, now_realtime](const HeldPacket& p) {
    const Decision d = decide(p.flow, sync_.cache(), profiles_, now_realtime);
    if (d.verdict == Verdict::accept) {
      control_accept(p.queue_index, p.packet_id, d.match.mask != 0,
                     verdict_mark(p.packet_mark, d.match));
      ++counters_.accepted;
      ++counters_.held_accepted;
      if (d.match.profile < profile_counters_.size()) {
        ++profile_counters_[d.match.profile].accepted;
        ++profile_counters_[d.match.profile].held_accepted;
      }
      return true;
    }
    if (d.verdict == Verdict::drop) {
      control_drop(p.queue_index, p.packet_id);
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
  flush_control();
  rearm_hold_timer_locked();
}

void Daemon::rearm_hold_timer() {
  std::lock_guard lock(mu_);
  rearm_hold_timer_locked();
}

void Daemon::rearm_hold_timer_locked() {
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
  std::lock_guard lock(mu_);
  hold_.expire(now, [this](const HeldPacket& p) {
    control_drop(p.queue_index, p.packet_id);
    ++counters_.dropped_hold_timeout;
    if (log::enabled(log::Level::debug)) {
      log::debug("drop " + p.flow.src.str() + " -> " + p.flow.dst.str() + ":" +
                 std::to_string(p.flow.dport) + ": hold timeout");
    }
  });
  flush_control();
  rearm_hold_timer_locked();
}

void Daemon::arm_purge_timer() {
  purge_timer_.expires_after(std::chrono::seconds(1));
  purge_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    {
      std::lock_guard lock(mu_);
      sync_.cache().purge(clock_ns(CLOCK_REALTIME));
    }
    arm_purge_timer();
  });
}

void Daemon::on_policyd_message(const ipc::Message& m) {
  if (const auto* req = std::get_if<ipc::StatusRequest>(&m)) {
    policyd_->send(status(req->request_id));
    return;
  }
  SyncChange change;
  SyncAction action = SyncAction::none;
  std::lock_guard lock(mu_);
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
  std::lock_guard lock(mu_);
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
  std::lock_guard lock(mu_);
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
  for (const auto& q : setup_.queues) {
    const std::string k = "queue." + std::to_string(q->number()) + ".";
    const auto& s = q->stats();
    add(k + "packets", s.packets);
    add(k + "verdicts", s.verdicts);
    add(k + "enobufs", s.enobufs);
    add(k + "receive_errors", s.receive_errors);
    add(k + "send_errors", s.send_errors);
    add(k + "kernel_errors", s.kernel_errors);
    const auto [qdrop, udrop] = kernel_queue_drops(q->number());
    add(k + "kernel_queue_dropped", qdrop);
    add(k + "kernel_user_dropped", udrop);
    text(k + "features", q->features());
  }
  for (size_t i = 0; i < profiles_.size(); ++i) {
    const std::string k = "profile." + profiles_.at(static_cast<uint16_t>(i)).name + ".";
    add(k + "accepted", profile_counters_[i].accepted);
    add(k + "held_accepted", profile_counters_[i].held_accepted);
  }
  return r;
}

}  // namespace kg::verdictd
