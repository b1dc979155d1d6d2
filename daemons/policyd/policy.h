// policyd's core: turns committed knock events into knockd-style actions. It owns the
// store, the command runner, the pending-stop timer, the one-time sequences, the SPA
// replay check and the grant book (grants.h), and runs on one asio io_context
// (single-threaded). The socket server in main.cpp feeds it events; tests call
// handle_knock() directly.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/addr.h"
#include "common/knock.h"
#include "common/knocklog.h"
#include "common/result.h"
#include "config/one_time.h"
#include "ipc/messages.h"
#include "policyd/audit_queue.h"
#include "policyd/command_runner.h"
#include "policyd/grants.h"
#include "policyd/store.h"
#include "policyd/wall_clock.h"

namespace kg::policyd {

// What policyd needs of a door: knockd's command keys, and knockgate's grant. Built
// from the config's door (see config_bridge.h) or directly by tests.
struct DoorActions {
  std::string name;
  std::string start_command;                   // `start_command` / `command`; empty: none
  std::optional<std::string> start_command_6;  // nullopt: fall back to start_command
  std::string stop_command;
  std::optional<std::string> stop_command_6;
  std::chrono::seconds cmd_timeout{10};
  std::string one_time_sequences;  // path of the door's one-time file; empty: none
  std::string grant;               // exposure profile the door grants; empty: none
};

// One completed knock as captured reports it.
struct KnockEventData {
  uint64_t sender_boot_id = 0;  // random per captured process
  uint64_t event_id = 0;        // per sender, increasing from 1
  std::string door;
  IpAddr source;
  int64_t time_ns = 0;  // CLOCK_REALTIME of the last knock packet
  // SPA events only (KnockEvent method spa): the replay key and a summary of the request
  // for the audit row ("user alice access tcp/22 timeout 0"). An SPA event without a
  // replay key is refused.
  bool spa = false;
  std::optional<std::array<uint8_t, 32>> spa_replay_key;
  std::string spa_summary;
  uint32_t spa_timeout_s = 0;  // access time the packet asked for; 0: the profile's lifetime
};

enum class KnockOutcome {
  opened,        // first knock: start command run, stop scheduled (as configured)
  reopened,      // stop already pending for this door and source: deferred, no start
  duplicate,     // the sender re-sent an event we had committed: nothing done again
  unknown_door,  // the door is not in our config: audited, nothing run
  spa_accepted,  // SPA packet used for the first time: recorded in the replay cache
  spa_replayed,  // SPA packet seen before (or without a replay key): refused, audited
};
const char* knock_outcome_name(KnockOutcome o);

// What policyd tells captured about a door after a one-time sequence was consumed.
struct DoorSequenceUpdate {
  std::string door;
  bool disabled = false;        // the one-time file ran out
  std::vector<Knock> sequence;  // the new active sequence (empty when disabled)
};

// knockd's sequence notation: "7000:tcp,8000:udp".
std::string sequence_text(const std::vector<Knock>& sequence);

// `%IP%` → source.str(), every occurrence; the only substitution, as knockd. The
// address text can only contain [0-9a-f.:], so nothing from a packet reaches the shell.
std::string expand_command(std::string_view command_template, const IpAddr& source);

// knockd's choice of command for a source: the `_6` variant for IPv6 when present (an
// empty `_6` means do nothing), otherwise the IPv4 one.
const std::string& select_command(const std::string& v4, const std::optional<std::string>& v6,
                                  const IpAddr& source);

class PolicyCore {
 public:
  struct Options {
    std::string database_path;
    size_t max_running_commands = 32;
    size_t max_queued_commands = 4096;
    // How long (source, event id) pairs are remembered for dedup of re-sent events.
    std::chrono::seconds dedup_retention = std::chrono::hours(24 * 7);
    // A due stop waits for the same knock's start command to finish (knockd runs them
    // in sequence), but never longer than this.
    std::chrono::seconds stop_waits_for_start = std::chrono::seconds(30);
    // Retry delay when a stop command cannot be spawned (fork limits, ...).
    std::chrono::seconds stop_retry = std::chrono::seconds(5);
  };

  // The production store (open_database(options.database_path)).
  static Result<std::unique_ptr<PolicyCore>> open(boost::asio::io_context& io,
                                                  knocklog::Writer& log, Options options,
                                                  std::vector<DoorActions> doors);
  // Any store; options.database_path still names the revocation journal's place.
  static Result<std::unique_ptr<PolicyCore>> open(boost::asio::io_context& io,
                                                  knocklog::Writer& log, Options options,
                                                  std::vector<DoorActions> doors,
                                                  std::unique_ptr<Store> store);
  ~PolicyCore();
  PolicyCore(const PolicyCore&) = delete;
  PolicyCore& operator=(const PolicyCore&) = delete;

  // Audits the start, loads every pending stop: overdue ones run now, the others are
  // scheduled. Call once, after open().
  Result<Ok> start();

  // Commits the event (dedup, audit, pending stop) and then starts its action. When
  // this returns ok the event is committed (it survives a crash of policyd); the sender
  // may be acknowledged after sync_now() (it then survives power loss too). An error
  // means nothing was committed and the sender should retry.
  Result<KnockOutcome> handle_knock(const KnockEventData& event);

  // New door set after a config reload. Pending stops keep their stored commands.
  void set_doors(std::vector<DoorActions> doors);
  void audit_config_reload(std::string_view path);
  // webd's report that failed console logins made an account or a source wait.
  void audit_login_lockout(std::string_view source, std::string_view detail_json);

  // ---- Grants: forwarded to the grant book (grants.h).
  GrantBook& grants() { return grants_; }
  void set_profiles(std::vector<GrantProfile> profiles) {
    grants_.set_profiles(std::move(profiles));
  }
  void set_installer(GrantInstaller* installer) { grants_.set_installer(installer); }
  // Where the doors' commands run; without this call, the in-process CommandRunner.
  void set_command_executor(CommandExecutor* executor) {
    executor_ = executor != nullptr ? executor : &runner_;
  }
  void set_observer(GrantObserver* observer) {
    observer_ = observer;
    grants_.set_observer(observer);
  }
  // How long verdictd may hold a SYN whose grant is pending.
  void set_pending_hold(std::chrono::milliseconds hold) { pending_hold_ = hold; }
  // Called by start().
  Result<Ok> load_grants() { return grants_.load(); }

  using GrantStatus = policyd::GrantStatus;
  using GrantResult = policyd::GrantResult;
  Result<GrantResult> grant(const IpAddr& source, std::string_view profile, ipc::GrantMethod method,
                            std::string_view origin, std::optional<std::chrono::seconds> duration) {
    return grants_.grant(source, profile, method, origin, duration);
  }
  Result<std::vector<GrantResult>> grant_many(std::span<const IpAddr> sources,
                                              std::string_view profile, ipc::GrantMethod method,
                                              std::string_view origin,
                                              std::optional<std::chrono::seconds> duration) {
    return grants_.grant_many(sources, profile, method, origin, duration);
  }
  Result<std::optional<GrantResult>> extend(int64_t id,
                                            std::optional<std::chrono::seconds> duration,
                                            std::string_view by) {
    return grants_.extend(id, duration, by);
  }
  Result<std::vector<GrantRow>> revoke_id(int64_t id, std::string_view by) {
    return grants_.revoke_id(id, by);
  }
  Result<std::vector<GrantRow>> revoke_source(const IpAddr& source, std::string_view by) {
    return grants_.revoke_source(source, by);
  }
  std::string grant_end_pending(int64_t id) const { return grants_.grant_end_pending(id); }
  size_t grant_ends_pending() const { return grants_.grant_ends_pending(); }
  Result<std::vector<GrantRow>> grant_rows(const GrantFilter& filter) {
    return grants_.grant_rows(filter);
  }
  const GrantProfile* find_profile(std::string_view name) const {
    return grants_.find_profile(name);
  }
  size_t active_grant_count() const { return grants_.active_grant_count(); }
  std::vector<ipc::GrantRecord> grant_records() const { return grants_.grant_records(); }
  std::vector<GrantInstall> active_installs() const { return grants_.active_installs(); }
  ipc::GrantRecord record_of(const GrantRow& row) const { return grants_.record_of(row); }
  int64_t worst_expiry_lateness_us() const { return grants_.worst_expiry_lateness_us(); }
  int64_t last_expiry_lateness_us() const { return grants_.last_expiry_lateness_us(); }
  uint64_t grants_expired() const { return grants_.grants_expired(); }

  // Clean stop: audits it and cancels the timers. Pending stops stay in the database
  // (the rules they would undo stay in place too) and run at the next start.
  void shutdown();

  // Sink for one-time sequence changes (main wires it to captured).
  void on_door_sequence_update(std::function<void(const DoorSequenceUpdate&)> sink) {
    sequence_update_sink_ = std::move(sink);
  }

  // The current state of every one-time door, for a captured that (re)connects and may
  // have missed updates.
  std::vector<DoorSequenceUpdate> one_time_snapshot() const;

  // Writes queued audit rows now (the loop does it on its own soon after they queue).
  void flush_audit();
  // Makes every commit so far durable on disk (see store.h); the loop also does it on its
  // own right after any handler that committed. False (logged) if the sync failed.
  bool sync_now();

  Store& store() { return *store_; }
  size_t scheduled_stop_count() const { return scheduled_.size(); }
  size_t running_commands() const { return executor_->running(); }

 private:
  using SteadyTime = std::chrono::steady_clock::time_point;
  struct Scheduled {
    PendingStop row;
    SteadyTime wake;                 // when the timer looks at it next
    bool timeout_logged = false;     // `command timeout` written for this due time
    bool waiting_for_start = false;  // due, but the start command is still running
  };

  PolicyCore(boost::asio::io_context& io, knocklog::Writer& log, Options options,
             std::unique_ptr<Store> store, std::optional<RevocationJournal> journal,
             std::vector<DoorActions> doors);

  const DoorActions* find_door(std::string_view name) const;
  static std::string key_of(std::string_view door, std::string_view source);

  void run_start_command(const DoorActions& door, const IpAddr& source, std::string command);
  void schedule(PendingStop row);
  void reschedule(int64_t id, SteadyTime wake);
  void unschedule(int64_t id);
  void arm_timer();
  void on_timer();
  void fire_stop(int64_t id);
  void start_finished(const std::string& key);
  void report_exit(const std::string& door, const std::string& source, const ExitStatus& status);
  void feed_knock(const std::string& door, const std::string& source, int64_t audit_id);

  // One-time sequences, in two steps around the event's commit: inside the transaction
  // the active line is read and recorded; after the commit it is marked used in the file
  // and captured is told the next sequence (or to disable the door).
  struct OneTimeStep {
    std::optional<config::OneTimeSequences> file;
    bool exhausted_before = false;
  };
  Result<OneTimeStep> record_one_time(const DoorActions& door, const std::string& source,
                                      int64_t now);
  void consume_one_time(const DoorActions& door, OneTimeStep& step, const std::string& source);
  // SPA events (policy_spa.cpp): the replay check inside the event's transaction.
  Result<KnockOutcome> handle_spa(const KnockEventData& event, const GrantProfile* profile,
                                  Store::Transaction& txn, const std::string& source, int64_t now);
  Result<OneTimeStep> commit_knock(Store::Transaction& txn, const DoorActions& door,
                                   const std::string& source, int64_t now);
  void announce_exhausted(const DoorActions& door, const std::string& source);

  boost::asio::io_context& io_;
  knocklog::Writer& log_;
  Options options_;
  std::unique_ptr<Store> store_;
  AuditQueue audits_;  // after store_, before grants_: destroyed in the reverse order
  GrantBook grants_;
  GrantObserver* observer_ = nullptr;
  std::chrono::milliseconds pending_hold_{25};
  std::vector<DoorActions> doors_;
  CommandRunner runner_;
  CommandExecutor* executor_ = &runner_;
  boost::asio::steady_timer timer_;
  // The store's checkpoint, run once no commit came for kIdleBeforeCheckpoint.
  boost::asio::steady_timer idle_checkpoint_;
  static constexpr std::chrono::milliseconds kIdleBeforeCheckpoint{50};
  void checkpoint_when_idle();
  std::map<int64_t, Scheduled> scheduled_;            // pending_stop id → schedule
  std::set<std::pair<SteadyTime, int64_t>> by_wake_;  // (wake, id), earliest first
  std::map<std::string, int64_t> stop_by_key_;        // door+source → pending_stop id
  std::map<std::string, int> starts_in_flight_;       // door+source → start commands running
  std::function<void(const DoorSequenceUpdate&)> sequence_update_sink_;
  uint64_t events_since_prune_ = 0;
  bool sync_posted_ = false;
  std::shared_ptr<int> alive_;  // timer handlers hold a weak_ptr: no use after destruction
};

}  // namespace kg::policyd
