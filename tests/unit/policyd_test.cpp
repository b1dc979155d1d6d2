// policyd's core against real SQLite files and real /bin/sh children that leave marker
// files: schema and migrations, append-only audit, knockd-style commands with %IP%, stop
// commands on time, re-knock while a stop is pending, crash survival, event dedup.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/knocklog.h"
#include "common/log.h"
#include "policyd/command_runner.h"
#include "policyd/policy.h"
#include "policyd/sqlite.h"
#include "policyd/sqlite_store.h"
#include "policyd_fixture.h"

using namespace std::chrono_literals;
using kg::policyd::DoorActions;
using kg::policyd::KnockEventData;
using kg::policyd::KnockOutcome;
using kg::policyd::PolicyCore;
using kg::policyd::SqliteStore;
using Clock = std::chrono::steady_clock;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) {
  return std::filesystem::exists(path);
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

kg::IpAddr ip(const char* text) {
  auto a = kg::IpAddr::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(kg::IpAddr{});
}

// Single-quoted for /bin/sh: test paths come from mkdtemp and contain no quote.
std::string q(const std::string& s) {
  return "'" + s + "'";
}

int64_t count_rows(kg::sql::Connection& db, const std::string& sql) {
  auto stmt = db.prepare(sql);
  EXPECT_TRUE(stmt) << (stmt ? "" : stmt.error().message);
  if (!stmt) return -1;
  auto row = stmt->step();
  EXPECT_TRUE(row && *row);
  return stmt->column_int64(0);
}

class PolicydTest : public PolicydFixture {
 protected:
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  void open_core(std::vector<DoorActions> doors, bool start = true) {
    PolicyCore::Options opt;
    opt.database_path = db_path_;
    auto core = PolicyCore::open(*io_, *log_, opt, std::move(doors));
    ASSERT_TRUE(core) << core.error().message;
    core_ = std::move(*core);
    if (start) {
      auto ok = core_->start();
      ASSERT_TRUE(ok) << ok.error().message;
    }
  }

  // What a kill -9 leaves: the object and its loop vanish without shutdown().
  void crash() {
    core_.reset();
    io_ = std::make_unique<boost::asio::io_context>();
  }

  KnockOutcome knock(const std::string& door, const char* source, uint64_t event_id,
                     uint64_t boot_id = 0x1234) {
    KnockEventData ev;
    ev.sender_boot_id = boot_id;
    ev.event_id = event_id;
    ev.door = door;
    ev.source = ip(source);
    ev.time_ns = kg::policyd::wall_now_ns();
    auto r = core_->handle_knock(ev);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : KnockOutcome::unknown_door;
  }

  // Runs the loop until `done` or the timeout; true if `done` became true.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      io_->restart();
      io_->run_for(10ms);
    }
    return true;
  }
  void run_for(std::chrono::milliseconds d) {
    run_until([] { return false; }, d);
  }
  // Waits until the file holds at least one whole line: the shell creates it (>>) before it
  // writes, so existence alone races with the content.
  bool wait_file(const std::string& p, std::chrono::milliseconds timeout = 5s) {
    return run_until(
        [&] {
          if (!exists(p)) return false;
          const std::string text = read_file(p);
          return !text.empty() && text.back() == '\n';
        },
        timeout);
  }
  // Waits for every child to be reaped (their exit statuses audited).
  bool wait_idle(std::chrono::milliseconds timeout = 5s) {
    return run_until([&] { return core_->running_commands() == 0; }, timeout);
  }

  std::vector<kg::policyd::AuditRecord> audit() {
    core_->flush_audit();
    auto rows = core_->store().audit_after(0, 10000);
    EXPECT_TRUE(rows);
    return rows ? *rows : std::vector<kg::policyd::AuditRecord>{};
  }
  size_t audit_count(std::string_view kind) {
    size_t n = 0;
    for (const auto& r : audit()) n += r.kind == kind ? 1u : 0u;
    return n;
  }
};

// A door whose start and stop commands append "%IP%" to files in the test directory.
DoorActions marker_door(const std::string& dir, const std::string& name,
                        std::chrono::seconds timeout) {
  DoorActions d;
  d.name = name;
  d.start_command = "echo %IP% >> " + q(dir + "/" + name + ".start");
  d.stop_command = "echo %IP% >> " + q(dir + "/" + name + ".stop");
  d.cmd_timeout = timeout;
  return d;
}

}  // namespace

// ---------------------------------------------------------------- schema and migrations

TEST_F(PolicydTest, CreatesTheLatestSchemaInWalMode) {
  auto store = SqliteStore::open(db_path_);
  ASSERT_TRUE(store) << store.error().message;
  auto version = (*store)->schema_version();
  ASSERT_TRUE(version);
  EXPECT_EQ(*version, kg::policyd::latest_schema_version());
  auto& db = (*store)->connection();
  for (const char* table : {"audit", "pending_stop", "event_seen", "one_time_used"}) {
    EXPECT_EQ(count_rows(db, std::string("SELECT count(*) FROM sqlite_master WHERE type='table' "
                                         "AND name='") +
                                 table + "'"),
              1)
        << table;
  }
  auto mode = db.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode);
  ASSERT_TRUE(*mode->step());
  EXPECT_EQ(mode->column_text(0), "wal");
  EXPECT_EQ(count_rows(db, "PRAGMA synchronous"), 1);  // NORMAL; sync() makes it durable
  EXPECT_EQ(count_rows(db, "PRAGMA foreign_keys"), 1);
}

// Commits are synced by us, not by SQLite: the WAL hook marks them, sync() clears the
// mark, and a grown WAL is checkpointed into the database (and so shrinks to nothing
// new) instead of inside a commit.
TEST_F(PolicydTest, SyncMakesCommitsDurableAndAGrownWalIsCheckpointedWhenAsked) {
  auto opened = SqliteStore::open(db_path_);
  ASSERT_TRUE(opened) << opened.error().message;
  SqliteStore& store = **opened;
  int notified = 0;
  store.on_commit([&] { ++notified; });
  EXPECT_FALSE(store.needs_sync());
  auto a = store.append_audit(1, "test", "", "", "one");
  ASSERT_TRUE(a);
  EXPECT_TRUE(store.needs_sync());
  EXPECT_EQ(notified, 1);
  ASSERT_TRUE(store.sync());
  EXPECT_FALSE(store.needs_sync());

  // Grow the WAL past the checkpoint threshold without SQLite checkpointing on its own.
  const std::string big(3000, 'x');
  for (int i = 0; i < SqliteStore::kCheckpointPages + 50; ++i) {
    ASSERT_TRUE(store.append_audit(i, "test", "", "", big));
  }
  const auto wal_size = std::filesystem::file_size(db_path_ + "-wal");
  EXPECT_GT(wal_size, static_cast<uintmax_t>(SqliteStore::kCheckpointPages) * 4096U);
  auto& db = store.connection();
  // The checkpoint is due but waits for the engine's quiet moment: sync() only syncs.
  EXPECT_TRUE(store.checkpoint_due());
  ASSERT_TRUE(store.sync());
  EXPECT_FALSE(store.needs_sync());
  EXPECT_TRUE(store.checkpoint_due());
  ASSERT_TRUE(store.checkpoint());
  EXPECT_FALSE(store.checkpoint_due());
  // After the checkpoint the next commit starts the WAL over from its beginning.
  ASSERT_TRUE(store.append_audit(1, "test", "", "", "after"));
  auto frames = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
  ASSERT_TRUE(frames);
  ASSERT_TRUE(*frames->step());
  EXPECT_LT(frames->column_int64(1), 10);  // log frames: only the last commit's
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM audit WHERE kind = 'test'"),
            SqliteStore::kCheckpointPages + 52);
}

TEST_F(PolicydTest, AGrownWalIsCheckpointedOnceTheEngineIsQuiet) {
  open_core({});
  uint64_t id = 1;
  while (!core_->store().checkpoint_due() && id < 20000) knock("nowhere", "192.0.2.9", id++);
  ASSERT_TRUE(core_->store().checkpoint_due()) << id << " knocks";
  // The sync after the commits runs at once (the handlers ready now); the checkpoint
  // waits for a quiet moment.
  io_->restart();
  io_->poll();
  EXPECT_FALSE(core_->store().needs_sync());
  EXPECT_TRUE(core_->store().checkpoint_due());
  run_for(300ms);
  EXPECT_FALSE(core_->store().checkpoint_due());
}

TEST_F(PolicydTest, MigratesAnOlderDatabaseKeepingItsRows) {
  {
    auto conn = kg::sql::Connection::open(db_path_);
    ASSERT_TRUE(conn);
    ASSERT_TRUE(kg::policyd::migrate(*conn, 1));
    ASSERT_TRUE(
        conn->exec("INSERT INTO audit (time_ns, kind, door, source, detail) "
                   "VALUES (1, 'knock_open', 'ssh', '192.0.2.1', 'from v1')"));
    ASSERT_TRUE(
        conn->exec("INSERT INTO pending_stop (door, source, command, due_time_ns, "
                   "created_ns) VALUES ('ssh', '192.0.2.1', 'true', 5, 1)"));
    EXPECT_EQ(*conn->user_version(), 1);
    EXPECT_EQ(count_rows(*conn, "SELECT count(*) FROM sqlite_master WHERE name='one_time_used'"),
              0);
  }
  auto store = SqliteStore::open(db_path_);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(*(*store)->schema_version(), kg::policyd::latest_schema_version());
  auto& db = (*store)->connection();
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM sqlite_master WHERE name='one_time_used'"), 1);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM audit WHERE detail='from v1'"), 1);
  auto pending = (*store)->pending_stops();
  ASSERT_TRUE(pending);
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].command, "true");
  // Migrated stores work: the new table takes rows.
  kg::policyd::OneTimeUse use{"otp", "/etc/otp", 3, "7000,8000", 9};
  EXPECT_TRUE((*store)->record_one_time_used(use));
}

TEST_F(PolicydTest, MigrationsAreOrderedAndEndAtTheLatest) {
  int64_t previous = 0;
  for (const auto& m : kg::policyd::migrations()) {
    EXPECT_EQ(m.version, previous + 1);
    previous = m.version;
  }
  EXPECT_EQ(previous, kg::policyd::latest_schema_version());
}

TEST_F(PolicydTest, RefusesADatabaseNewerThanTheCode) {
  {
    auto conn = kg::sql::Connection::open(db_path_);
    ASSERT_TRUE(conn);
    ASSERT_TRUE(conn->set_user_version(kg::policyd::latest_schema_version() + 1));
  }
  auto store = SqliteStore::open(db_path_);
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("newer"), std::string::npos) << store.error().message;
  // And it was left as it was.
  auto conn = kg::sql::Connection::open(db_path_);
  ASSERT_TRUE(conn);
  EXPECT_EQ(*conn->user_version(), kg::policyd::latest_schema_version() + 1);
}

TEST_F(PolicydTest, AuditIsAppendOnly) {
  auto store = SqliteStore::open(db_path_);
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->append_audit(1, "knock_open", "ssh", "192.0.2.1", "original"));
  auto& db = (*store)->connection();
  auto update = db.exec("UPDATE audit SET detail = 'forged'");
  ASSERT_FALSE(update);
  EXPECT_NE(update.error().message.find("append-only"), std::string::npos);
  EXPECT_FALSE(db.exec("DELETE FROM audit"));
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM audit WHERE detail = 'original'"), 1);
  // Appending still works after the rejected statements.
  EXPECT_TRUE((*store)->append_audit(2, "knock_open", "ssh", "192.0.2.2", ""));
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM audit"), 2);
}

TEST_F(PolicydTest, TransactionRollsBackUnlessCommitted) {
  auto store = SqliteStore::open(db_path_);
  ASSERT_TRUE(store);
  {
    auto txn = (*store)->begin();
    ASSERT_TRUE(txn);
    ASSERT_TRUE((*store)->append_audit(1, "knock_open", "ssh", "192.0.2.1", ""));
  }  // no commit
  EXPECT_EQ(count_rows((*store)->connection(), "SELECT count(*) FROM audit"), 0);
  {
    auto txn = (*store)->begin();
    ASSERT_TRUE(txn);
    ASSERT_TRUE((*store)->append_audit(1, "knock_open", "ssh", "192.0.2.1", ""));
    ASSERT_TRUE(txn->commit());
  }
  EXPECT_EQ(count_rows((*store)->connection(), "SELECT count(*) FROM audit"), 1);
}

// ---------------------------------------------------------------- commands and %IP%

TEST(PolicydCommands, ExpandsEveryIpPlaceholder) {
  EXPECT_EQ(kg::policyd::expand_command("iptables -A INPUT -s %IP% -j ACCEPT # %IP%%IP%",
                                        ip("192.0.2.7")),
            "iptables -A INPUT -s 192.0.2.7 -j ACCEPT # 192.0.2.7192.0.2.7");
  EXPECT_EQ(kg::policyd::expand_command("ip6tables -s %IP%", ip("2001:DB8:0:0::1")),
            "ip6tables -s 2001:db8::1");
  EXPECT_EQ(kg::policyd::expand_command("no placeholder, %ip% is not one", ip("192.0.2.7")),
            "no placeholder, %ip% is not one");
  EXPECT_EQ(kg::policyd::expand_command("%IP", ip("192.0.2.7")), "%IP");
  EXPECT_EQ(kg::policyd::expand_command("", ip("192.0.2.7")), "");
}

TEST(PolicydCommands, SelectsTheIpv6VariantLikeKnockd) {
  const std::string v4 = "v4";
  const std::optional<std::string> v6 = "v6";
  const std::optional<std::string> empty6 = "";
  const std::optional<std::string> absent;
  EXPECT_EQ(kg::policyd::select_command(v4, v6, ip("192.0.2.1")), "v4");
  EXPECT_EQ(kg::policyd::select_command(v4, v6, ip("2001:db8::1")), "v6");
  EXPECT_EQ(kg::policyd::select_command(v4, absent, ip("2001:db8::1")), "v4");
  EXPECT_EQ(kg::policyd::select_command(v4, empty6, ip("2001:db8::1")), "");
}

TEST_F(PolicydTest, ChildRunsInACleanSessionWithNoInheritedDescriptors) {
  // A descriptor without O_CLOEXEC: the child must still not see it.
  const int opened = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(opened, 3);
  const int leaked = ::dup2(opened, 100);
  ::close(opened);
  ASSERT_EQ(leaked, 100);
  setenv("KG_SECRET_FROM_PARENT", "1", 1);
  const std::string out = path("child");
  kg::policyd::CommandRunner runner(*io_, 4, 4);
  bool exited = false;
  kg::policyd::CommandRunner::Job job;
  // `exec >` redirects for good (a `{ } >` group would make the shell save fd 1 at
  // fd 10) and the glob lists the shell's own descriptors without a pipe or subshell.
  job.command = "exec > " + q(out) +
                "; env; printf 'fds'; for f in /proc/$$/fd/*; do printf ' %s' ${f##*/}; done; "
                "echo; echo stdin $(readlink /proc/$$/fd/0); echo sid $(cut -d' ' -f6 "
                "/proc/$$/stat) pid $$; echo cwd $(pwd)";
  job.on_exit = [&](const kg::policyd::ExitStatus& s) {
    EXPECT_TRUE(s.success()) << s.describe();
    exited = true;
  };
  runner.submit(std::move(job));
  ASSERT_TRUE(run_until([&] { return exited; }, 5s));
  ::close(leaked);
  unsetenv("KG_SECRET_FROM_PARENT");
  const std::string text = read_file(out);
  EXPECT_NE(text.find("PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("KG_SECRET_FROM_PARENT"), std::string::npos) << text;
  EXPECT_EQ(text.find("HOME="), std::string::npos) << text;
  // 3 is the directory the glob is reading; nothing of ours (fd 100, asio's epoll and
  // eventfd, SQLite's files) reached the child.
  EXPECT_NE(text.find("fds 0 1 2 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("stdin /dev/null"), std::string::npos) << text;
  EXPECT_NE(text.find("cwd /\n"), std::string::npos) << text;
  // setsid: the shell leads its own session.
  std::istringstream sid_line(text.substr(text.find("sid ")));
  std::string word, sid, pid;
  sid_line >> word >> sid >> word >> pid;
  EXPECT_EQ(sid, pid) << text;
}

TEST_F(PolicydTest, ReportsExitCodesAndSignals) {
  kg::policyd::CommandRunner runner(*io_, 4, 4);
  std::vector<kg::policyd::ExitStatus> statuses(2);
  int done = 0;
  kg::policyd::CommandRunner::Job a;
  a.command = "exit 7";
  a.on_exit = [&](const kg::policyd::ExitStatus& s) {
    statuses[0] = s;
    ++done;
  };
  kg::policyd::CommandRunner::Job b;
  b.command = "kill -9 $$";
  b.on_exit = [&](const kg::policyd::ExitStatus& s) {
    statuses[1] = s;
    ++done;
  };
  runner.submit(std::move(a));
  runner.submit(std::move(b));
  ASSERT_TRUE(run_until([&] { return done == 2; }, 5s));
  EXPECT_EQ(statuses[0].describe(), "exit 7");
  EXPECT_EQ(statuses[0].status_code(), 7);
  EXPECT_EQ(statuses[1].describe(), "signal 9");
  EXPECT_EQ(statuses[1].status_code(), 137);
}

TEST_F(PolicydTest, LimitsConcurrentCommandsAndQueuesTheRest) {
  kg::policyd::CommandRunner runner(*io_, 2, 1);
  int exited = 0;
  auto job = [&](const std::string& cmd) {
    kg::policyd::CommandRunner::Job j;
    j.command = cmd;
    j.on_exit = [&](const kg::policyd::ExitStatus&) { ++exited; };
    return j;
  };
  using S = kg::policyd::CommandRunner::Submitted;
  EXPECT_EQ(runner.submit(job("sleep 0.2")), S::started);
  EXPECT_EQ(runner.submit(job("sleep 0.2")), S::started);
  EXPECT_EQ(runner.submit(job("echo queued > " + q(path("queued")))), S::queued);
  EXPECT_EQ(runner.submit(job("true")), S::rejected);
  EXPECT_EQ(runner.submit(job("true"), /*limited=*/false), S::started);  // stops never wait
  EXPECT_FALSE(exists(path("queued")));
  ASSERT_TRUE(run_until([&] { return exited == 4; }, 5s));
  EXPECT_TRUE(exists(path("queued")));
  EXPECT_EQ(runner.running(), 0u);
  EXPECT_EQ(runner.queued(), 0u);
}

TEST_F(PolicydTest, OpenRunsStartCommandWithTheIpv4Address) {
  open_core({marker_door(dir_, "ssh", 60s)});
  EXPECT_EQ(knock("ssh", "192.0.2.7", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("ssh.start")));
  ASSERT_TRUE(wait_idle());
  EXPECT_EQ(read_file(path("ssh.start")), "192.0.2.7\n");
  EXPECT_FALSE(exists(path("ssh.stop")));  // not before cmd_timeout
  EXPECT_EQ(audit_count("knock_open"), 1u);
  EXPECT_EQ(audit_count("command_run"), 1u);
  EXPECT_EQ(audit_count("command_status"), 1u);
  const std::string log = read_file(log_path_);
  EXPECT_NE(log.find("] 192.0.2.7: ssh: OPEN SESAME\n"), std::string::npos) << log;
  EXPECT_NE(log.find("] ssh: running command: echo 192.0.2.7 >> "), std::string::npos) << log;
}

TEST_F(PolicydTest, Ipv6UsesTheUnderscore6Command) {
  DoorActions d = marker_door(dir_, "ssh", 60s);
  d.start_command_6 = "echo v6 %IP% >> " + q(path("ssh.start6"));
  open_core({d});
  EXPECT_EQ(knock("ssh", "2001:db8::42", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("ssh.start6")));
  ASSERT_TRUE(wait_idle());
  EXPECT_EQ(read_file(path("ssh.start6")), "v6 2001:db8::42\n");
  EXPECT_FALSE(exists(path("ssh.start")));
}

TEST_F(PolicydTest, Ipv6FallsBackToTheIpv4Command) {
  open_core({marker_door(dir_, "ssh", 1s)});
  EXPECT_EQ(knock("ssh", "2001:db8:0:0:0:0:0:9", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("ssh.start")));
  EXPECT_EQ(read_file(path("ssh.start")), "2001:db8::9\n");
  ASSERT_TRUE(wait_file(path("ssh.stop"), 4s));  // the stop falls back too
  EXPECT_EQ(read_file(path("ssh.stop")), "2001:db8::9\n");
}

TEST_F(PolicydTest, EmptyUnderscore6CommandsDoNothingForIpv6) {
  DoorActions d = marker_door(dir_, "ssh", 1s);
  d.start_command_6 = "";
  d.stop_command_6 = "";
  open_core({d});
  EXPECT_EQ(knock("ssh", "2001:db8::1", 1), KnockOutcome::opened);
  EXPECT_EQ(core_->running_commands(), 0u);
  EXPECT_EQ(core_->scheduled_stop_count(), 0u);  // no stop to schedule either
  run_for(1500ms);
  EXPECT_FALSE(exists(path("ssh.start")));
  EXPECT_FALSE(exists(path("ssh.stop")));
  EXPECT_EQ(audit_count("knock_open"), 1u);
  EXPECT_EQ(audit_count("command_run"), 0u);
  // IPv4 still uses the IPv4 commands.
  EXPECT_EQ(knock("ssh", "192.0.2.3", 2), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("ssh.start")));
}

TEST_F(PolicydTest, AuditAndPendingStopAreCommittedBeforeTheStartCommandRuns) {
  // The start command itself reads the database (WAL lets it while we hold it open).
  DoorActions d;
  d.name = "ssh";
  d.start_command = "sqlite3 " + q(db_path_) +
                    " \"SELECT count(*) FROM audit WHERE kind='knock_open' AND "
                    "source='%IP%'; SELECT count(*) FROM pending_stop WHERE source='%IP%'; "
                    "SELECT count(*) FROM event_seen;\" > " +
                    q(path("seen")) + " 2>&1";
  d.stop_command = "true";
  d.cmd_timeout = 60s;
  open_core({d});
  EXPECT_EQ(knock("ssh", "192.0.2.55", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_idle());
  EXPECT_EQ(read_file(path("seen")), "1\n1\n1\n");
}

TEST_F(PolicydTest, NonZeroStatusIsLoggedAndTheStopStillRuns) {
  DoorActions d = marker_door(dir_, "ssh", 1s);
  d.start_command = "exit 3";
  open_core({d});
  EXPECT_EQ(knock("ssh", "192.0.2.8", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("ssh.stop"), 4s));
  ASSERT_TRUE(wait_idle());
  const std::string log = read_file(log_path_);
  EXPECT_NE(log.find("] ssh: command returned non-zero status code (3)\n"), std::string::npos)
      << log;
  EXPECT_NE(log.find("] 192.0.2.8: ssh: command timeout\n"), std::string::npos) << log;
  bool saw = false;
  for (const auto& r : audit()) saw |= r.kind == "command_status" && r.detail == "exit 3";
  EXPECT_TRUE(saw);
}

// ---------------------------------------------------------------- stop commands

TEST_F(PolicydTest, StopCommandRunsAfterCmdTimeout) {
  open_core({marker_door(dir_, "ssh", 1s)});
  const auto knocked = Clock::now();
  EXPECT_EQ(knock("ssh", "192.0.2.9", 1), KnockOutcome::opened);
  EXPECT_EQ(core_->scheduled_stop_count(), 1u);
  ASSERT_TRUE(wait_file(path("ssh.stop"), 4s));
  const auto elapsed = Clock::now() - knocked;
  EXPECT_GE(elapsed, 1s);
  EXPECT_LT(elapsed, 1700ms);  // on time (the margin is for loaded CI machines)
  EXPECT_EQ(read_file(path("ssh.stop")), "192.0.2.9\n");
  ASSERT_TRUE(wait_idle());
  EXPECT_EQ(core_->scheduled_stop_count(), 0u);
  auto pending = core_->store().pending_stops();
  ASSERT_TRUE(pending);
  EXPECT_TRUE(pending->empty());
  EXPECT_EQ(audit_count("command_timeout"), 1u);
  EXPECT_EQ(audit_count("stop_run"), 1u);
  const std::string log = read_file(log_path_);
  // knockd's order: open, start, timeout, stop.
  const auto open_at = log.find("192.0.2.9: ssh: OPEN SESAME");
  const auto timeout_at = log.find("192.0.2.9: ssh: command timeout");
  const auto stop_at = log.find("ssh: running command: echo 192.0.2.9 >> " + q(path("ssh.stop")));
  ASSERT_NE(open_at, std::string::npos);
  ASSERT_NE(timeout_at, std::string::npos);
  ASSERT_NE(stop_at, std::string::npos);
  EXPECT_LT(open_at, timeout_at);
  EXPECT_LT(timeout_at, stop_at);
}

TEST_F(PolicydTest, StopWaitsForItsStartCommandToFinish) {
  DoorActions d;
  d.name = "slow";
  d.start_command = "sleep 1; touch " + q(path("start-done"));
  d.stop_command = "test -f " + q(path("start-done")) + " && touch " + q(path("stop-after")) +
                   " || touch " + q(path("stop-before"));
  d.cmd_timeout = 0s;
  open_core({d});
  EXPECT_EQ(knock("slow", "192.0.2.10", 1), KnockOutcome::opened);
  ASSERT_TRUE(
      run_until([&] { return exists(path("stop-after")) || exists(path("stop-before")); }, 5s));
  EXPECT_TRUE(exists(path("stop-after")));
}

TEST_F(PolicydTest, ReKnockWhileStopPendingExtendsInsteadOfRerunningStart) {
  open_core({marker_door(dir_, "ssh", 1s)});
  const auto first = Clock::now();
  EXPECT_EQ(knock("ssh", "192.0.2.11", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("ssh.start")));
  run_until([&] { return Clock::now() - first >= 600ms; }, 2s);
  const auto second = Clock::now();
  EXPECT_EQ(knock("ssh", "192.0.2.11", 2), KnockOutcome::reopened);
  // Another source is independent and opens normally.
  EXPECT_EQ(knock("ssh", "192.0.2.12", 3), KnockOutcome::opened);
  ASSERT_TRUE(run_until([&] { return count_lines(path("ssh.stop")) == 2; }, 4s));
  ASSERT_TRUE(wait_idle());
  const auto stopped = Clock::now();
  // The start ran once for .11 (no stacked duplicate rule), once for .12.
  EXPECT_EQ(read_file(path("ssh.start")), "192.0.2.11\n192.0.2.12\n");
  // .12 (due at second+1s) and .11 (moved to second+1s) stop after the re-knock's timeout.
  EXPECT_GE(stopped - second, 1s);
  EXPECT_GE(stopped - first, 1600ms);
  const std::string stops = read_file(path("ssh.stop"));
  EXPECT_NE(stops.find("192.0.2.11\n"), std::string::npos);
  EXPECT_NE(stops.find("192.0.2.12\n"), std::string::npos);
  EXPECT_EQ(audit_count("knock_reopen"), 1u);
  EXPECT_EQ(audit_count("stop_run"), 2u);
  const std::string log = read_file(log_path_);
  EXPECT_NE(log.find("] 192.0.2.11: ssh: OPEN SESAME (already open, stop deferred)\n"),
            std::string::npos)
      << log;
  // After the stop ran, the next knock is a fresh open again.
  EXPECT_EQ(knock("ssh", "192.0.2.11", 4), KnockOutcome::opened);
  ASSERT_TRUE(run_until([&] { return count_lines(path("ssh.start")) == 3; }, 4s));
}

TEST_F(PolicydTest, PendingStopRunsOnTimeAfterACrash) {
  open_core({marker_door(dir_, "ssh", 2s)});
  const auto knocked = Clock::now();
  EXPECT_EQ(knock("ssh", "192.0.2.20", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("ssh.start")));
  crash();
  EXPECT_FALSE(exists(path("ssh.stop")));
  // A new process opens the same database; the stop is still due at knock + 2 s.
  open_core({marker_door(dir_, "ssh", 2s)});
  EXPECT_EQ(core_->scheduled_stop_count(), 1u);
  ASSERT_TRUE(wait_file(path("ssh.stop"), 5s));
  const auto elapsed = Clock::now() - knocked;
  EXPECT_GE(elapsed, 2s);
  EXPECT_LT(elapsed, 2700ms);
  EXPECT_EQ(read_file(path("ssh.stop")), "192.0.2.20\n");
  ASSERT_TRUE(wait_idle());
  auto pending = core_->store().pending_stops();
  ASSERT_TRUE(pending);
  EXPECT_TRUE(pending->empty());
}

TEST_F(PolicydTest, OverdueStopsRunAtOnceOnStartEvenForRemovedDoors) {
  open_core({marker_door(dir_, "ssh", 1s)});
  EXPECT_EQ(knock("ssh", "192.0.2.21", 1), KnockOutcome::opened);
  EXPECT_EQ(knock("ssh", "2001:db8::21", 2), KnockOutcome::opened);
  ASSERT_TRUE(run_until([&] { return count_lines(path("ssh.start")) == 2; }, 4s));
  crash();
  std::this_thread::sleep_for(1200ms);  // "policyd was down" past the due time
  // The door is gone from the new config: the stored, expanded command still runs.
  open_core({});
  const auto started = Clock::now();
  ASSERT_TRUE(run_until([&] { return count_lines(path("ssh.stop")) == 2; }, 4s));
  EXPECT_LT(Clock::now() - started, 800ms);
  const std::string stops = read_file(path("ssh.stop"));
  EXPECT_NE(stops.find("192.0.2.21\n"), std::string::npos);
  EXPECT_NE(stops.find("2001:db8::21\n"), std::string::npos);
}

TEST_F(PolicydTest, CleanShutdownKeepsPendingStopsForTheNextStart) {
  open_core({marker_door(dir_, "ssh", 1s)});
  EXPECT_EQ(knock("ssh", "192.0.2.22", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_idle());
  core_->shutdown();
  run_for(1300ms);
  EXPECT_FALSE(exists(path("ssh.stop")));  // not run at stop, not run while stopped
  auto pending = core_->store().pending_stops();
  ASSERT_TRUE(pending);
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ(audit_count("daemon_stop"), 1u);
  core_.reset();
  open_core({marker_door(dir_, "ssh", 1s)});
  ASSERT_TRUE(wait_file(path("ssh.stop"), 2s));
}

// ---------------------------------------------------------------- events

TEST_F(PolicydTest, ReSentEventIsAcknowledgedButNotActedOnTwice) {
  DoorActions d = marker_door(dir_, "cmd", 1s);
  d.stop_command.clear();  // a `command`-only door: every new knock runs it
  open_core({d});
  EXPECT_EQ(knock("cmd", "192.0.2.30", 7, 0xAAAA), KnockOutcome::opened);
  EXPECT_EQ(knock("cmd", "192.0.2.30", 7, 0xAAAA), KnockOutcome::duplicate);
  // The same id from a restarted captured (new boot id) is a new event.
  EXPECT_EQ(knock("cmd", "192.0.2.30", 7, 0xBBBB), KnockOutcome::opened);
  ASSERT_TRUE(run_until([&] { return count_lines(path("cmd.start")) == 2; }, 4s));
  ASSERT_TRUE(wait_idle());
  run_for(200ms);
  EXPECT_EQ(count_lines(path("cmd.start")), 2u);
  EXPECT_EQ(audit_count("knock_open"), 2u);
  // Dedup survives a restart too.
  crash();
  open_core({d});
  EXPECT_EQ(knock("cmd", "192.0.2.30", 7, 0xAAAA), KnockOutcome::duplicate);
}

TEST_F(PolicydTest, UnknownDoorIsAuditedAndNothingRuns) {
  open_core({marker_door(dir_, "ssh", 1s)});
  EXPECT_EQ(knock("nosuchdoor", "192.0.2.40", 1), KnockOutcome::unknown_door);
  EXPECT_EQ(core_->running_commands(), 0u);
  EXPECT_EQ(core_->scheduled_stop_count(), 0u);
  EXPECT_EQ(audit_count("unknown_door"), 1u);
}

TEST_F(PolicydTest, GrantDoorIsRecordedAndAudited) {
  DoorActions d;
  d.name = "lan-ssh";
  d.grant = "ssh-only";
  open_core({d});
  EXPECT_EQ(knock("lan-ssh", "192.0.2.50", 1), KnockOutcome::opened);
  EXPECT_EQ(core_->running_commands(), 0u);
  bool saw = false;
  for (const auto& r : audit()) {
    saw |= r.kind == "grant_requested" && r.source == "192.0.2.50" &&
           r.detail.find("ssh-only") != std::string::npos;
  }
  EXPECT_TRUE(saw);
}

// ---------------------------------------------------------------- one-time sequences

namespace {
void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}
}  // namespace

TEST_F(PolicydTest, OneTimeSequenceIsConsumedRecordedAndAnnounced) {
  const std::string ots = path("otp.seq");
  write_text(ots, "# one-time sequences\n 7000,8000,9000\n 1111:udp,2222\n");
  DoorActions d = marker_door(dir_, "otp", 1s);
  d.stop_command.clear();
  d.one_time_sequences = ots;
  open_core({d});
  std::vector<kg::policyd::DoorSequenceUpdate> updates;
  core_->on_door_sequence_update(
      [&](const kg::policyd::DoorSequenceUpdate& u) { updates.push_back(u); });

  auto snapshot = core_->one_time_snapshot();
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].door, "otp");
  EXPECT_FALSE(snapshot[0].disabled);
  EXPECT_EQ(kg::policyd::sequence_text(snapshot[0].sequence), "7000:tcp,8000:tcp,9000:tcp");

  EXPECT_EQ(knock("otp", "192.0.2.60", 1), KnockOutcome::opened);
  EXPECT_EQ(read_file(ots), "# one-time sequences\n#7000,8000,9000\n 1111:udp,2222\n");
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_FALSE(updates[0].disabled);
  EXPECT_EQ(kg::policyd::sequence_text(updates[0].sequence), "1111:udp,2222:tcp");
  auto& db = sqlite_store(*core_).connection();
  EXPECT_EQ(count_rows(db,
                       "SELECT count(*) FROM one_time_used WHERE door='otp' AND line=2 AND "
                       "sequence='7000:tcp,8000:tcp,9000:tcp' AND file='" +
                           ots + "'"),
            1);

  EXPECT_EQ(knock("otp", "192.0.2.61", 2), KnockOutcome::opened);
  EXPECT_EQ(read_file(ots), "# one-time sequences\n#7000,8000,9000\n#1111:udp,2222\n");
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_TRUE(updates[1].disabled);
  EXPECT_TRUE(updates[1].sequence.empty());
  EXPECT_EQ(audit_count("one_time_used"), 2u);
  EXPECT_EQ(audit_count("one_time_exhausted"), 1u);
  const std::string log = read_file(log_path_);
  EXPECT_NE(log.find("] no more sequences left in the one time sequences file for door otp --> "
                     "disabling the door\n"),
            std::string::npos)
      << log;
  // Both knocks were valid and ran their command.
  ASSERT_TRUE(run_until([&] { return count_lines(path("otp.start")) == 2; }, 4s));
  auto after = core_->one_time_snapshot();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_TRUE(after[0].disabled);
}

TEST_F(PolicydTest, ReKnockOfAOneTimeDoorStillUsesUpItsSequence) {
  const std::string ots = path("otp.seq");
  write_text(ots, " 1,2\n 3,4\n 5,6\n");
  DoorActions d = marker_door(dir_, "otp", 60s);
  d.one_time_sequences = ots;
  open_core({d});
  EXPECT_EQ(knock("otp", "192.0.2.62", 1), KnockOutcome::opened);
  EXPECT_EQ(knock("otp", "192.0.2.62", 2), KnockOutcome::reopened);
  EXPECT_EQ(read_file(ots), "#1,2\n#3,4\n 5,6\n");
  EXPECT_EQ(count_rows(sqlite_store(*core_).connection(), "SELECT count(*) FROM one_time_used"), 2);
}

TEST_F(PolicydTest, UnusableOneTimeFileIsReportedAndTheKnockStillActs) {
  DoorActions d = marker_door(dir_, "otp", 60s);
  d.one_time_sequences = path("missing.seq");
  open_core({d});
  EXPECT_EQ(knock("otp", "192.0.2.63", 1), KnockOutcome::opened);
  ASSERT_TRUE(wait_file(path("otp.start")));
  EXPECT_EQ(audit_count("one_time_error"), 1u);
}

TEST_F(PolicydTest, AuditRecordsTheDaemonLifecycle) {
  open_core({});
  EXPECT_EQ(audit_count("daemon_start"), 1u);
  core_->audit_config_reload("/etc/knockgate/knockgate.conf");
  core_->shutdown();
  EXPECT_EQ(audit_count("config_reload"), 1u);
  EXPECT_EQ(audit_count("daemon_stop"), 1u);
}

// ---------------------------------------------------------------- SPA replay cache

namespace {
KnockEventData spa_event(uint64_t event_id, uint8_t key_byte, uint64_t boot_id = 0x5678) {
  KnockEventData ev;
  ev.sender_boot_id = boot_id;
  ev.event_id = event_id;
  ev.door = "gate";
  ev.source = ip("192.0.2.9");
  ev.time_ns = kg::policyd::wall_now_ns();
  ev.spa = true;
  std::array<uint8_t, 32> key{};
  key.fill(key_byte);
  ev.spa_replay_key = key;
  ev.spa_summary = "user alice access tcp/22 timeout 0";
  return ev;
}
}  // namespace

TEST_F(PolicydTest, SpaReplayIsRefusedEvenAfterARestart) {
  open_core({});
  auto outcome = [&](const KnockEventData& ev) {
    auto r = core_->handle_knock(ev);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : KnockOutcome::unknown_door;
  };
  EXPECT_EQ(outcome(spa_event(1, 0xaa)), KnockOutcome::spa_accepted);
  EXPECT_EQ(outcome(spa_event(1, 0xaa)), KnockOutcome::duplicate);  // ack lost, re-sent
  EXPECT_EQ(outcome(spa_event(2, 0xaa)), KnockOutcome::spa_replayed);
  EXPECT_EQ(outcome(spa_event(3, 0xbb)), KnockOutcome::spa_accepted);
  crash();
  open_core({});
  // A new captured (new boot id) replaying the first packet after policyd restarted.
  EXPECT_EQ(outcome(spa_event(1, 0xaa, 0x9999)), KnockOutcome::spa_replayed);
  KnockEventData no_key = spa_event(2, 0xcc, 0x9999);
  no_key.spa_replay_key.reset();
  EXPECT_EQ(outcome(no_key), KnockOutcome::spa_replayed);
  EXPECT_EQ(audit_count("spa_accepted"), 2U);
  EXPECT_EQ(audit_count("spa_replayed"), 3U);
  EXPECT_EQ(count_rows(sqlite_store(*core_).connection(), "SELECT count(*) FROM spa_replay"), 2);
  size_t replay_lines = 0;
  for (const auto& d : diagnostics_) {
    replay_lines += d == "192.0.2.9: gate: SPA packet refused: replayed (already used)" ? 1U : 0U;
  }
  EXPECT_EQ(replay_lines, 2U);
}
