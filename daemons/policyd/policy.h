// policyd's core: turns committed knock events into knockd-style actions. It owns the
// database, the command runner and the pending-stop timer, and runs on one asio
// io_context (single-threaded). The socket server in main.cpp feeds it events; tests
// call handle_knock() directly.
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
#include "policyd/command_runner.h"
#include "policyd/revocation_journal.h"
#include "policyd/store.h"

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

// What the grant lifecycle needs of a profile (the kernel side reads the full config).
struct GrantProfile {
  std::string name;
  std::chrono::seconds lifetime{3600};
  std::chrono::seconds max_lifetime{8 * 3600};
  uint32_t fwmark = 0;  // 0/0 when the profile has no mark
  uint32_t fwmark_mask = 0;
  friend bool operator==(const GrantProfile&, const GrantProfile&) = default;
};

// An active grant as the kernel needs it; the kernel layer's own InstalledGrant is kept
// apart so the kernel code and this one can change without a shared header.
struct GrantInstall {
  uint64_t id = 0;
  IpAddr source;
  std::string profile;
  int64_t expires_ns = 0;  // CLOCK_REALTIME ns
};

// Kernel effects of grants. Production: KernelState (set elements with timeouts);
// tests: a recording implementation. Called after the grant's commit, before the
// broadcast; an error carries the kernel's reason.
class GrantInstaller {
 public:
  virtual ~GrantInstaller() = default;
  // Adds or re-adds (extend: new timeout) the grants' set elements.
  virtual Result<Ok> add(std::span<const GrantInstall> grants) = 0;
  // Removes them; returns how many conntrack entries went with them.
  virtual Result<size_t> remove(std::span<const GrantInstall> grants) = 0;
};

// Where grant changes go once they are in effect: the broadcast to verdictd and webd.
class GrantObserver {
 public:
  virtual ~GrantObserver() = default;
  // A knock for a grant door arrived; the grant follows shortly (hold until deadline).
  virtual void grant_pending(const IpAddr& source, const std::string& profile,
                             int64_t deadline_ns) = 0;
  virtual void grant_changed(ipc::GrantOp op, const ipc::GrantRecord& grant,
                             const std::string& reason) = 0;
  virtual void feed(const ipc::FeedEvent& event) = 0;
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

  static Result<std::unique_ptr<PolicyCore>> open(boost::asio::io_context& io,
                                                  knocklog::Writer& log, Options options,
                                                  std::vector<DoorActions> doors);
  ~PolicyCore();
  PolicyCore(const PolicyCore&) = delete;
  PolicyCore& operator=(const PolicyCore&) = delete;

  // Audits the start, loads every pending stop: overdue ones run now, the others are
  // scheduled. Call once, after open().
  Result<Ok> start();

  // Commits the event (dedup, audit, pending stop) and then starts its action. When
  // this returns ok the event is durable and the sender may be acknowledged; an error
  // means nothing was committed and the sender should retry.
  Result<KnockOutcome> handle_knock(const KnockEventData& event);

  // New door set after a config reload. Pending stops keep their stored commands.
  void set_doors(std::vector<DoorActions> doors);
  void audit_config_reload(std::string_view path);
  // webd's report that failed console logins made an account or a source wait.
  void audit_login_lockout(std::string_view source, std::string_view detail_json);

  // ---- Grants (grants.cpp)
  // Profiles a grant may name. Grants of profiles that went away are revoked ("profile
  // removed"); grants of profiles whose mark changed are broadcast again (remove + add).
  void set_profiles(std::vector<GrantProfile> profiles);
  void set_installer(GrantInstaller* installer) { installer_ = installer; }
  void set_observer(GrantObserver* observer) { observer_ = observer; }
  // How long verdictd may hold a SYN whose grant is pending.
  void set_pending_hold(std::chrono::milliseconds hold) { pending_hold_ = hold; }

  // Loads the active grants, closes those that expired while we were down, installs the
  // rest (one batch) and arms the expiry timer. Called by start().
  Result<Ok> load_grants();

  enum class GrantStatus { created, extended, unchanged, failed };
  struct GrantResult {
    GrantRow grant;
    GrantStatus status = GrantStatus::created;
  };
  // A grant for (source, profile): created, or the active one extended (never past its
  // max). `duration`: nullopt = the profile's lifetime; capped at max_lifetime.
  Result<GrantResult> grant(const IpAddr& source, std::string_view profile, ipc::GrantMethod method,
                            std::string_view origin, std::optional<std::chrono::seconds> duration);
  // Many grants of one profile in one transaction and one kernel batch (bulk creation).
  Result<std::vector<GrantResult>> grant_many(std::span<const IpAddr> sources,
                                              std::string_view profile, ipc::GrantMethod method,
                                              std::string_view origin,
                                              std::optional<std::chrono::seconds> duration);
  // nullopt: no active grant with that id.
  Result<std::optional<GrantResult>> extend(int64_t id,
                                            std::optional<std::chrono::seconds> duration,
                                            std::string_view by);
  // Revokes one grant by id, or every active grant of a source. Empty: none matched.
  Result<std::vector<GrantRow>> revoke_id(int64_t id, std::string_view by);
  Result<std::vector<GrantRow>> revoke_source(const IpAddr& source, std::string_view by);
  // Revocation and expiry take effect in the kernel, in memory and in the broadcast
  // first; the database records them after, retried until it can (grant_records.cpp).
  // Why grant `id`'s end is not in the database yet (the database's error); empty when
  // it is recorded, or the id is not an ended grant.
  std::string grant_end_pending(int64_t id) const;
  size_t grant_ends_pending() const { return pending_ends_.size(); }
  // The grants table as `knockgatectl grants` shows it: ends not yet recorded applied.
  Result<std::vector<GrantRow>> grant_rows(const GrantFilter& filter);

  const GrantProfile* find_profile(std::string_view name) const;
  size_t active_grant_count() const { return grants_.size(); }
  // Every active grant as subscribers see it, by id.
  std::vector<ipc::GrantRecord> grant_records() const;
  // Every active grant as the kernel needs it (KernelState::reconcile at start/reload).
  std::vector<GrantInstall> active_installs() const;
  ipc::GrantRecord record_of(const GrantRow& row) const;
  // Expiry lateness statistics (for status and the benchmark): worst and last, in µs.
  int64_t worst_expiry_lateness_us() const { return worst_expiry_late_us_; }
  int64_t last_expiry_lateness_us() const { return last_expiry_late_us_; }
  uint64_t grants_expired() const { return grants_expired_; }

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
  // own right after any handler that committed.
  void sync_now();

  Store& store() { return *store_; }
  size_t scheduled_stop_count() const { return scheduled_.size(); }
  size_t running_commands() const { return runner_.running(); }

 private:
  using SteadyTime = std::chrono::steady_clock::time_point;
  struct Scheduled {
    PendingStop row;
    SteadyTime wake;                 // when the timer looks at it next
    bool timeout_logged = false;     // `command timeout` written for this due time
    bool waiting_for_start = false;  // due, but the start command is still running
  };

  bool sync_posted_ = false;
  PolicyCore(boost::asio::io_context& io, knocklog::Writer& log, Options options,
             std::unique_ptr<Store> store, std::vector<DoorActions> doors);

  const DoorActions* find_door(std::string_view name) const;
  static std::string key_of(std::string_view door, std::string_view source);

  void run_start_command(const DoorActions& door, const IpAddr& source, std::string command);
  void schedule(PendingStop row);
  void reschedule(int64_t id, SteadyTime wake);
  void unschedule(int64_t id);
  SteadyTime steady_from_wall(int64_t wall_ns) const;
  void arm_timer();
  void on_timer();
  void fire_stop(int64_t id);
  void start_finished(const std::string& key);
  void report_exit(const std::string& door, const std::string& source, const ExitStatus& status);

  // Audit rows for what happens after an event's commit (command spawned, exited, ...)
  // are queued and written together: with the next transaction that commits anyway, or
  // by a flush posted to the loop. One fsync then covers many rows, and none of them
  // delays the next knock's commit. Failures are logged, never fatal.
  struct QueuedAudit {
    int64_t time_ns;
    std::string kind, door, source, detail;
  };
  void audit_later(std::string_view kind, std::string_view door, std::string_view source,
                   std::string_view detail);
  // Writes the queue inside the caller's transaction; returns how many rows it wrote, to
  // be dropped with drop_written_audits() once that transaction has committed.
  Result<size_t> write_queued_audits();
  void drop_written_audits(size_t count);

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
                                  sql::Transaction& txn,
                                  const std::string& source, int64_t now);
  Result<OneTimeStep> commit_knock(sql::Transaction& txn, const DoorActions& door,
                                   const std::string& source, int64_t now);
  void announce_exhausted(const DoorActions& door, const std::string& source);

  // ---- Grants (grants.cpp)
  struct Active {
    GrantRow row;
    IpAddr source;
  };
  Result<GrantResult> grant_in_txn(const IpAddr& source, const GrantProfile& profile,
                                   ipc::GrantMethod method, std::string_view origin,
                                   std::optional<std::chrono::seconds> duration, int64_t now);
  // After the commit: kernel, memory, broadcast. Failed installs are marked failed.
  void apply_grants(std::vector<GrantResult>& results);
  Result<std::vector<GrantRow>> end_grants(std::vector<int64_t> ids, std::string_view state,
                                           std::string_view audit, std::string_view by,
                                           std::string_view reason);
  void forget_grant(int64_t id);
  // ---- Ends the database has not recorded yet (grant_records.cpp)
  struct PendingEnd {
    GrantRow row;  // state, ended_ns and ended_by set
    std::string audit_kind;
    std::string detail;
    std::optional<size_t> tombstone;  // revocation journal slot
  };
  std::vector<std::optional<size_t>> write_tombstones(const std::vector<GrantRow>& ended);
  void queue_grant_ends(std::vector<PendingEnd> ends);
  bool record_grant_ends();
  void retry_grant_ends(bool soon);
  // End row + audit row, in the caller's transaction; the audit row only when the row was
  // still active, so writing the same end twice records it once.
  Result<bool> write_grant_end(const PendingEnd& end);
  Result<Ok> write_pending_end_of(const std::string& source, std::string_view profile);
  std::vector<GrantRow> apply_tombstones(std::vector<GrantRow> rows);
  void feed_knock(const std::string& door, const std::string& source, int64_t audit_id);
  void remember_grant(const GrantRow& row);
  void arm_grant_timer();
  void on_grant_timer();
  void feed(std::string_view kind, const GrantRow& row, int64_t audit_id, std::string_view extra);
  GrantInstall install_of(const GrantRow& row) const;
  Active* find_active(const std::string& source, std::string_view profile);

  std::vector<GrantProfile> profiles_;
  GrantInstaller* installer_ = nullptr;
  GrantObserver* observer_ = nullptr;
  std::chrono::milliseconds pending_hold_{25};
  std::map<int64_t, Active> grants_;                        // active, by id
  std::map<std::string, int64_t> grant_by_key_;             // source\0profile → id
  std::set<std::pair<int64_t, int64_t>> grants_by_expiry_;  // (expires_ns, id)
  std::unique_ptr<boost::asio::steady_timer> grant_timer_;
  bool grant_timer_armed_ = false;
  int64_t grant_timer_at_ = 0;
  int64_t worst_expiry_late_us_ = 0;
  int64_t last_expiry_late_us_ = 0;
  uint64_t grants_expired_ = 0;
  std::optional<RevocationJournal> journal_;
  std::map<int64_t, PendingEnd> pending_ends_;  // by grant id
  std::unique_ptr<boost::asio::steady_timer> record_timer_;
  std::chrono::milliseconds record_backoff_{0};
  std::string record_error_;  // the last failure to record pending ends; empty: none

  boost::asio::io_context& io_;
  knocklog::Writer& log_;
  Options options_;
  std::unique_ptr<Store> store_;
  std::vector<DoorActions> doors_;
  CommandRunner runner_;
  boost::asio::steady_timer timer_;
  std::map<int64_t, Scheduled> scheduled_;            // pending_stop id → schedule
  std::set<std::pair<SteadyTime, int64_t>> by_wake_;  // (wake, id), earliest first
  std::map<std::string, int64_t> stop_by_key_;        // door+source → pending_stop id
  std::map<std::string, int> starts_in_flight_;       // door+source → start commands running
  std::function<void(const DoorSequenceUpdate&)> sequence_update_sink_;
  uint64_t events_since_prune_ = 0;
  std::vector<QueuedAudit> audit_queue_;
  bool audit_flush_posted_ = false;
  std::shared_ptr<int> alive_;  // timer handlers hold a weak_ptr: no use after destruction
};

int64_t wall_now_ns();
// "grant ID profile P method M origin O expires_ns N", the audit rows' description.
std::string describe_grant(const GrantRow& g);

}  // namespace kg::policyd
