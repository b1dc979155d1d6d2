#include "policyd/policy.h"

#include <boost/asio/post.hpp>
#include <cstddef>

#include "common/json.h"
#include "common/log.h"

namespace kg::policyd {

namespace {

constexpr std::string_view kIpPlaceholder = "%IP%";

int64_t to_ns(std::chrono::nanoseconds d) {
  return static_cast<int64_t>(d.count());
}

// An address as knockd substitutes it; anything but [0-9a-f.:] would be a bug in
// IpAddr::str() and must never reach a shell.
bool shell_safe_address(const std::string& text) {
  if (text.empty()) return false;
  for (char c : text) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

knocklog::Entry entry_for_source(std::string_view source, std::string_view door,
                                 std::string_view suffix, std::string_view event) {
  knocklog::Entry e;
  e.message.append(source).append(": ").append(door).append(": ").append(suffix);
  e.event = std::string(event);
  e.door = std::string(door);
  e.source = std::string(source);
  return e;
}

}  // namespace

const char* knock_outcome_name(KnockOutcome o) {
  switch (o) {
    case KnockOutcome::opened:
      return "opened";
    case KnockOutcome::reopened:
      return "reopened";
    case KnockOutcome::duplicate:
      return "duplicate";
    case KnockOutcome::unknown_door:
      return "unknown_door";
    case KnockOutcome::spa_accepted:
      return "spa_accepted";
    case KnockOutcome::spa_replayed:
      return "spa_replayed";
  }
  return "?";
}

std::string expand_command(std::string_view command_template, const IpAddr& source) {
  const std::string ip = source.str();
  std::string out;
  out.reserve(command_template.size() + 16);
  size_t pos = 0;
  for (;;) {
    const size_t hit = command_template.find(kIpPlaceholder, pos);
    if (hit == std::string_view::npos) break;
    out.append(command_template.substr(pos, hit - pos));
    out.append(ip);
    pos = hit + kIpPlaceholder.size();
  }
  out.append(command_template.substr(pos));
  return out;
}

const std::string& select_command(const std::string& v4, const std::optional<std::string>& v6,
                                  const IpAddr& source) {
  if (source.is_v6() && v6.has_value()) return *v6;
  return v4;
}

PolicyCore::PolicyCore(boost::asio::io_context& io, knocklog::Writer& log, Options options,
                       std::unique_ptr<Store> store, std::optional<RevocationJournal> journal,
                       std::vector<DoorActions> doors)
    : io_(io),
      log_(log),
      options_(std::move(options)),
      store_(std::move(store)),
      audits_(io, *store_),
      grants_(io, *store_, audits_, std::move(journal)),
      doors_(std::move(doors)),
      runner_(io, options_.max_running_commands, options_.max_queued_commands),
      timer_(io),
      idle_checkpoint_(io),
      alive_(std::make_shared<int>(0)) {}

PolicyCore::~PolicyCore() {
  timer_.cancel();
  flush_audit();
}

Result<std::unique_ptr<PolicyCore>> PolicyCore::open(boost::asio::io_context& io,
                                                     knocklog::Writer& log, Options options,
                                                     std::vector<DoorActions> doors) {
  auto store = open_database(options.database_path);
  if (!store) return store.error();
  return open(io, log, std::move(options), std::move(doors), std::move(*store));
}

Result<std::unique_ptr<PolicyCore>> PolicyCore::open(boost::asio::io_context& io,
                                                     knocklog::Writer& log, Options options,
                                                     std::vector<DoorActions> doors,
                                                     std::unique_ptr<Store> store) {
  // Reserved now, while there is space: revocations must not need any later.
  auto journal = RevocationJournal::open(options.database_path + "-revocations");
  if (!journal) return journal.error();
  std::unique_ptr<PolicyCore> core(new PolicyCore(io, log, std::move(options), std::move(store),
                                                  std::move(*journal), std::move(doors)));
  // Whatever committed in a handler is synced right after it, once its action is out.
  PolicyCore* self = core.get();
  core->store_->on_commit([self] {
    if (self->sync_posted_) return;
    self->sync_posted_ = true;
    boost::asio::post(self->io_, [self] {
      self->sync_posted_ = false;
      self->sync_now();
      self->checkpoint_when_idle();
      // The database takes writes again: grant ends still owed need not wait for back-off.
      self->grants_.database_writable();
    });
  });
  return core;
}

void PolicyCore::checkpoint_when_idle() {
  if (!store_->checkpoint_due()) return;
  // Every commit pushes it back: it runs in the first quiet moment.
  idle_checkpoint_.expires_after(kIdleBeforeCheckpoint);
  std::weak_ptr<int> alive = alive_;
  idle_checkpoint_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    if (auto done = store_->checkpoint(); !done) kg::log::error("database: " + done.error().message);
  });
}

bool PolicyCore::sync_now() {
  auto synced = store_->sync();
  if (!synced) kg::log::error("database: " + synced.error().message);
  return static_cast<bool>(synced);
}

Result<Ok> PolicyCore::start() {
  const int64_t now = wall_now_ns();
  auto pruned = store_->prune_events_seen(now - to_ns(options_.dedup_retention));
  if (!pruned) return pruned.error();
  auto started = store_->append_audit(now, audit_kind::daemon_start, "", "", "");
  if (!started) return started.error();
  auto rows = store_->pending_stops();
  if (!rows) return rows.error();
  size_t overdue = 0;
  for (PendingStop& row : *rows) {
    if (row.due_time_ns <= now) ++overdue;
    schedule(std::move(row));
  }
  if (!rows->empty()) {
    kg::log::info("loaded " + std::to_string(rows->size()) + " pending stop command(s), " +
                  std::to_string(overdue) + " overdue");
  }
  // Overdue stops fire from the timer right away, after start() has returned.
  arm_timer();
  return load_grants();
}

void PolicyCore::shutdown() {
  timer_.cancel();
  grants_.shutdown();
  audits_.add(
      audit_kind::daemon_stop, "", "",
      std::to_string(scheduled_.size()) + " pending stop command(s) kept for the next start");
  flush_audit();
  scheduled_.clear();
  by_wake_.clear();
  stop_by_key_.clear();
}

void PolicyCore::set_doors(std::vector<DoorActions> doors) {
  doors_ = std::move(doors);
}

void PolicyCore::audit_config_reload(std::string_view path) {
  audits_.add(audit_kind::config_reload, "", "", path);
}

void PolicyCore::audit_login_lockout(std::string_view source, std::string_view detail_json) {
  audits_.add(audit_kind::web_login_lockout, "", source, detail_json);
}

const DoorActions* PolicyCore::find_door(std::string_view name) const {
  for (const DoorActions& d : doors_) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

std::string PolicyCore::key_of(std::string_view door, std::string_view source) {
  std::string key(door);
  key.push_back('\0');  // door names cannot contain NUL, so the pair is unambiguous
  key.append(source);
  return key;
}

Result<KnockOutcome> PolicyCore::handle_knock(const KnockEventData& event) {
  const int64_t now = wall_now_ns();
  const std::string source = event.source.str();
  if (!shell_safe_address(source)) {
    return Error{"knock event " + std::to_string(event.event_id) + " has no usable source address"};
  }
  const DoorActions* door = find_door(event.door);
  const GrantProfile* profile =
      door != nullptr && !door->grant.empty() ? grants_.find_profile(door->grant) : nullptr;
  if (profile != nullptr && observer_ != nullptr && !never_a_client(event.source)) {
    // Before the commit: verdictd holds this source's SYNs until the grant is in.
    observer_->grant_pending(event.source, profile->name,
                             now + static_cast<int64_t>(pending_hold_.count()) * 1'000'000);
  }
  std::vector<GrantResult> granted;
  auto grant_step = [&]() -> Result<Ok> {
    if (door->grant.empty()) return Ok{};
    if (profile == nullptr) {
      auto g = store_->append_audit(now, audit_kind::grant_requested, door->name, source,
                                    "profile " + door->grant + " is not configured; no grant");
      if (!g) return g.error();
      return Ok{};
    }
    auto r = grants_.stage(event.source, *profile, ipc::GrantMethod::knock, door->name,
                           std::nullopt, now);
    if (!r) return r.error();
    granted.push_back(std::move(*r));
    return Ok{};
  };

  auto txn = store_->begin();
  if (!txn) return txn.error();
  auto fresh = store_->mark_event_seen(event.sender_boot_id, event.event_id, now);
  if (!fresh) return fresh.error();
  if (!*fresh) {
    // Committed before, but the EventAck got lost: acknowledge again, act never twice.
    kg::log::debug("event " + std::to_string(event.event_id) + " re-sent; already handled");
    return KnockOutcome::duplicate;
  }
  if (event.spa) return handle_spa(event, profile, *txn, source, now);
  const std::string detail =
      "event " + std::to_string(event.event_id) + " knock_time_ns " + std::to_string(event.time_ns);

  if (door == nullptr) {
    auto a = store_->append_audit(now, audit_kind::unknown_door, event.door, source, detail);
    if (!a) return a.error();
    auto c = audits_.commit(*txn);
    if (!c) return c.error();
    kg::log::warn(source + ": " + event.door +
                  ": knock for a door policyd does not know "
                  "(configs out of step?); nothing run");
    return KnockOutcome::unknown_door;
  }

  auto pending = store_->find_pending_stop(door->name, source);
  if (!pending) return pending.error();
  if (pending->has_value()) {
    // The rule the start command added is still in place: running it again would stack
    // a duplicate that a single stop command would not remove. Keep the one rule and
    // move its removal.
    const PendingStop& row = **pending;
    const int64_t due = now + to_ns(door->cmd_timeout);
    auto u = store_->set_pending_stop_due(row.id, due);
    if (!u) return u.error();
    auto a = store_->append_audit(
        now, audit_kind::knock_reopen, door->name, source,
        detail + "; already open, stop deferred to due_ns " + std::to_string(due));
    if (!a) return a.error();
    if (auto g = grant_step(); !g) return g.error();
    auto one_time = commit_knock(*txn, *door, source, now);
    if (!one_time) return one_time.error();
    log_.write(
        entry_for_source(source, door->name, "OPEN SESAME (already open, stop deferred)", "open"));
    feed_knock(door->name, source, *a);
    grants_.apply(granted);
    if (!door->one_time_sequences.empty()) consume_one_time(*door, *one_time, source);
    PendingStop moved = row;
    moved.due_time_ns = due;
    unschedule(row.id);
    schedule(std::move(moved));
    arm_timer();
    return KnockOutcome::reopened;
  }

  auto a = store_->append_audit(now, audit_kind::knock_open, door->name, source, detail);
  if (!a) return a.error();
  const int64_t knock_audit_id = *a;
  if (auto g = grant_step(); !g) return g.error();
  std::string start_command = expand_command(
      select_command(door->start_command, door->start_command_6, event.source), event.source);
  std::string stop_command = expand_command(
      select_command(door->stop_command, door->stop_command_6, event.source), event.source);
  std::optional<PendingStop> stop;
  if (!stop_command.empty()) {
    // Stored in the event's transaction: once the start may have run, its undo is durable.
    PendingStop row;
    row.door = door->name;
    row.source = source;
    row.command = std::move(stop_command);
    row.created_ns = now;
    row.due_time_ns = now + to_ns(door->cmd_timeout);
    auto id = store_->insert_pending_stop(row);
    if (!id) return id.error();
    row.id = *id;
    stop = std::move(row);
  }
  auto one_time = commit_knock(*txn, *door, source, now);
  if (!one_time) return one_time.error();

  log_.write(knocklog::open_sesame(event.source, door->name));
  feed_knock(door->name, source, knock_audit_id);
  grants_.apply(granted);
  if (!door->one_time_sequences.empty()) consume_one_time(*door, *one_time, source);
  if (!start_command.empty()) run_start_command(*door, event.source, std::move(start_command));
  if (stop) {
    schedule(std::move(*stop));
    arm_timer();
  }
  if (++events_since_prune_ >= 10000) {
    events_since_prune_ = 0;
    auto p = store_->prune_events_seen(now - to_ns(options_.dedup_retention));
    if (!p) kg::log::warn("pruning event dedup table: " + p.error().message);
  }
  return KnockOutcome::opened;
}

void PolicyCore::feed_knock(const std::string& door, const std::string& source, int64_t audit_id) {
  if (observer_ == nullptr) return;
  ipc::FeedEvent e;
  e.audit_id = static_cast<uint64_t>(audit_id);
  e.time_ns = wall_now_ns();
  e.kind = "knock";
  e.source = IpAddr::parse(source);
  e.detail_json = "{\"door\":" + json::quote(door) + "}";
  observer_->feed(e);
}

void PolicyCore::run_start_command(const DoorActions& door, const IpAddr& source,
                                   std::string command) {
  const std::string door_name = door.name;
  const std::string src = source.str();
  const std::string key = key_of(door_name, src);
  log_.write(knocklog::running_command(door_name, command));
  ++starts_in_flight_[key];

  CommandRunner::Job job;
  job.command = command;
  job.door = door_name;
  job.source = source;
  job.on_start = [this, door_name, src, key, command](Result<pid_t> pid) {
    if (pid) {
      audits_.add(audit_kind::command_run, door_name, src,
                  "pid " + std::to_string(*pid) + ": " + command);
      return;
    }
    kg::log::error(door_name + ": cannot run command: " + pid.error().message);
    audits_.add(audit_kind::command_failed, door_name, src, pid.error().message);
    start_finished(key);
  };
  job.on_exit = [this, door_name, src, key](const ExitStatus& status) {
    report_exit(door_name, src, status);
    start_finished(key);
  };
  switch (executor_->submit(std::move(job))) {
    case CommandRunner::Submitted::started:
      break;
    case CommandRunner::Submitted::queued:
      kg::log::warn(door_name + ": " + std::to_string(executor_->running()) +
                    " commands running; start command for " + src + " queued");
      break;
    case CommandRunner::Submitted::rejected:
      kg::log::error(door_name + ": command queue full; start command for " + src + " dropped");
      audits_.add(audit_kind::command_dropped, door_name, src, command);
      start_finished(key);
      break;
  }
}

void PolicyCore::report_exit(const std::string& door, const std::string& source,
                             const ExitStatus& status) {
  if (!status.success()) log_.write(knocklog::command_status(door, status.status_code()));
  audits_.add(audit_kind::command_status, door, source, status.describe());
}

void PolicyCore::start_finished(const std::string& key) {
  auto it = starts_in_flight_.find(key);
  if (it != starts_in_flight_.end() && --it->second <= 0) starts_in_flight_.erase(it);
  if (starts_in_flight_.count(key) != 0) return;
  // knockd runs the stop after the start has finished; a stop that fell due meanwhile
  // runs now.
  auto stop = stop_by_key_.find(key);
  if (stop == stop_by_key_.end()) return;
  auto s = scheduled_.find(stop->second);
  if (s != scheduled_.end() && s->second.waiting_for_start) fire_stop(s->first);
}

void PolicyCore::schedule(PendingStop row) {
  const int64_t id = row.id;
  const std::string key = key_of(row.door, row.source);
  Scheduled s;
  s.wake = steady_from_wall(row.due_time_ns);
  s.row = std::move(row);
  by_wake_.emplace(s.wake, id);
  stop_by_key_[key] = id;
  scheduled_[id] = std::move(s);
}

void PolicyCore::reschedule(int64_t id, SteadyTime wake) {
  auto it = scheduled_.find(id);
  if (it == scheduled_.end()) return;
  by_wake_.erase({it->second.wake, id});
  it->second.wake = wake;
  by_wake_.emplace(wake, id);
}

void PolicyCore::unschedule(int64_t id) {
  auto it = scheduled_.find(id);
  if (it == scheduled_.end()) return;
  by_wake_.erase({it->second.wake, id});
  auto k = stop_by_key_.find(key_of(it->second.row.door, it->second.row.source));
  if (k != stop_by_key_.end() && k->second == id) stop_by_key_.erase(k);
  scheduled_.erase(it);
}

void PolicyCore::arm_timer() {
  if (by_wake_.empty()) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(by_wake_.begin()->first);
  std::weak_ptr<int> alive = alive_;
  timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted || alive.expired()) return;
    on_timer();
  });
}

void PolicyCore::on_timer() {
  const SteadyTime now = std::chrono::steady_clock::now();
  // Collect first: firing changes the index.
  std::vector<int64_t> due;
  for (const auto& [wake, id] : by_wake_) {
    if (wake > now) break;
    due.push_back(id);
  }
  for (int64_t id : due) fire_stop(id);
  arm_timer();
}

void PolicyCore::fire_stop(int64_t id) {
  auto it = scheduled_.find(id);
  if (it == scheduled_.end()) return;
  Scheduled& s = it->second;
  const std::string door = s.row.door;
  const std::string source = s.row.source;
  const std::string command = s.row.command;
  const std::string key = key_of(door, source);

  if (!s.timeout_logged) {
    s.timeout_logged = true;
    log_.write(entry_for_source(source, door, "command timeout", "command_timeout"));
    audits_.add(audit_kind::command_timeout, door, source, "");
  }
  if (starts_in_flight_.count(key) != 0) {
    if (!s.waiting_for_start) {
      s.waiting_for_start = true;
      reschedule(id, std::chrono::steady_clock::now() + options_.stop_waits_for_start);
      arm_timer();
      return;
    }
    kg::log::warn(source + ": " + door + ": start command still running after " +
                  std::to_string(options_.stop_waits_for_start.count()) +
                  " s; running the stop command anyway");
  }
  unschedule(id);

  log_.write(knocklog::running_command(door, command));
  CommandRunner::Job job;
  job.command = command;
  job.door = door;
  job.stop = true;
  job.source = IpAddr::parse(source).value_or(IpAddr{});
  job.on_start = [this, id, door, source, command](Result<pid_t> pid) {
    if (!pid && is_refusal(pid.error())) {
      // The kernel writer knows no such stop any more (its door left the config before a
      // restart): retrying cannot help. The row goes, with the reason in the audit.
      kg::log::error(door + ": stop command for " + source + " not run: " + pid.error().message);
      audits_.add(audit_kind::command_failed, door, source, pid.error().message);
      auto txn = store_->begin();
      Result<Ok> done = txn ? store_->delete_pending_stop(id) : Result<Ok>(txn.error());
      if (done) done = audits_.commit(*txn);
      if (!done) kg::log::error(door + ": pending stop row kept: " + done.error().message);
      return;
    }
    if (!pid) {
      // Keep the row: retry soon, and at the next start if we die meanwhile.
      kg::log::error(door + ": cannot run stop command: " + pid.error().message + "; retrying in " +
                     std::to_string(options_.stop_retry.count()) + " s");
      audits_.add(audit_kind::command_failed, door, source, pid.error().message);
      PendingStop row;
      row.id = id;
      row.door = door;
      row.source = source;
      row.command = command;
      row.due_time_ns = wall_now_ns() + to_ns(options_.stop_retry);
      schedule(std::move(row));
      scheduled_[id].timeout_logged = true;
      arm_timer();
      return;
    }
    // The row goes only once the stop runs: a crash before this line runs it again at
    // the next start (at least once, never lost).
    // stop_run goes through the queue: it follows command_timeout and the other rows
    // queued meanwhile, and shares their commit.
    audits_.add(audit_kind::stop_run, door, source, "pid " + std::to_string(*pid) + ": " + command);
    auto txn = store_->begin();
    Result<Ok> done = txn ? store_->delete_pending_stop(id) : Result<Ok>(txn.error());
    if (done) done = audits_.commit(*txn);
    if (!done) {
      kg::log::error(door + ": stop command for " + source + " ran but its database row remains (" +
                     done.error().message + "); it will run again at the next start");
    }
  };
  job.on_exit = [this, door, source](const ExitStatus& status) {
    report_exit(door, source, status);
  };
  (void)executor_->submit(std::move(job), /*limited=*/false);
}

std::string sequence_text(const std::vector<Knock>& sequence) {
  std::string out;
  for (const Knock& k : sequence) {
    if (!out.empty()) out.push_back(',');
    out += std::to_string(k.port);
    out.push_back(':');
    out += proto_name(k.proto);
  }
  return out;
}

// The tail of every knock's transaction: the one-time line used (if any) and the audit
// rows queued since the last commit go in with the event, then it commits.
Result<PolicyCore::OneTimeStep> PolicyCore::commit_knock(Store::Transaction& txn,
                                                         const DoorActions& door,
                                                         const std::string& source, int64_t now) {
  OneTimeStep one_time;
  if (!door.one_time_sequences.empty()) {
    auto step = record_one_time(door, source, now);
    if (!step) return step.error();
    one_time = std::move(*step);
  }
  auto c = audits_.commit(txn);
  if (!c) return c.error();
  return one_time;
}

Result<PolicyCore::OneTimeStep> PolicyCore::record_one_time(const DoorActions& door,
                                                            const std::string& source,
                                                            int64_t now) {
  OneTimeStep step;
  auto file = config::OneTimeSequences::open(door.one_time_sequences, /*writable=*/true);
  if (!file) {
    // The knock itself was valid (captured matched it); it is acted on, and the broken
    // file is reported rather than turning into a refused event that is sent forever.
    kg::log::error(door.name + ": one-time sequences: " + file.error().message);
    auto a = store_->append_audit(now, audit_kind::one_time_error, door.name, source,
                                  file.error().message);
    if (!a) return a.error();
    return step;
  }
  if (file->exhausted()) {
    step.exhausted_before = true;
    return step;
  }
  OneTimeUse use;
  use.door = door.name;
  use.file = door.one_time_sequences;
  use.line = file->active_line();
  use.sequence = sequence_text(file->active());
  use.time_ns = now;
  auto r = store_->record_one_time_used(use);
  if (!r) return r.error();
  auto a = store_->append_audit(now, audit_kind::one_time_used, door.name, source,
                                use.file + ":" + std::to_string(use.line) + ": " + use.sequence);
  if (!a) return a.error();
  step.file = std::move(*file);
  return step;
}

void PolicyCore::consume_one_time(const DoorActions& door, OneTimeStep& step,
                                  const std::string& source) {
  if (step.exhausted_before) {
    announce_exhausted(door, source);
    return;
  }
  if (!step.file) return;  // unusable file, already reported
  auto next = step.file->consume();
  if (!next) {
    // Recorded as used in the database, but the file still offers it: say so loudly.
    kg::log::error(door.name +
                   ": could not mark the used one-time sequence: " + next.error().message);
    audits_.add(audit_kind::one_time_error, door.name, source, next.error().message);
    return;
  }
  if (!next->has_value()) {
    announce_exhausted(door, source);
    return;
  }
  kg::log::info(door.name + ": next one-time sequence is " + sequence_text(**next));
  if (sequence_update_sink_) sequence_update_sink_(DoorSequenceUpdate{door.name, false, **next});
}

void PolicyCore::announce_exhausted(const DoorActions& door, const std::string& source) {
  log_.write(knocklog::one_time_exhausted(door.name));
  audits_.add(audit_kind::one_time_exhausted, door.name, source, door.one_time_sequences);
  if (sequence_update_sink_) sequence_update_sink_(DoorSequenceUpdate{door.name, true, {}});
}

std::vector<DoorSequenceUpdate> PolicyCore::one_time_snapshot() const {
  std::vector<DoorSequenceUpdate> out;
  for (const DoorActions& d : doors_) {
    if (d.one_time_sequences.empty()) continue;
    auto file = config::OneTimeSequences::open(d.one_time_sequences, /*writable=*/false);
    if (!file) {
      kg::log::error(d.name + ": one-time sequences: " + file.error().message);
      continue;
    }
    out.push_back(DoorSequenceUpdate{d.name, file->exhausted(), file->active()});
  }
  return out;
}

void PolicyCore::flush_audit() {
  audits_.flush();
}

}  // namespace kg::policyd
