// Revocation and expiry that do not depend on the database: the revocation journal
// (preallocated slots, torn slots, full journal), grant ends recorded after the kernel
// and retried while the database cannot be written (a second connection holds its write
// lock), tombstones honoured at restart; policyd's PidFile and the database directory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "policyd/pid_file.h"
#include "policyd/policy.h"
#include "policyd/revocation_journal.h"
#include "policyd/sqlite_store.h"
#include "policyd_fixture.h"

using namespace std::chrono_literals;
using kg::IpAddr;
using kg::policyd::GrantInstall;
using kg::policyd::GrantProfile;
using kg::policyd::GrantRow;
using kg::policyd::PidFile;
using kg::policyd::PolicyCore;
using kg::policyd::RevocationJournal;

namespace {

using Installer = RecordingInstaller;

class Observer final : public kg::policyd::GrantObserver {
 public:
  void grant_pending(const IpAddr&, const std::string&, int64_t) override {}
  void grant_changed(kg::ipc::GrantOp op, const kg::ipc::GrantRecord& g,
                     const std::string&) override {
    if (op == kg::ipc::GrantOp::remove) removed.push_back(g.id);
  }
  void feed(const kg::ipc::FeedEvent&) override {}
  std::vector<uint64_t> removed;
};

// Holds the database's write lock from a second connection: every write transaction of
// policyd then fails (after its busy timeout), as it does on a full disk.
class WriteLock {
 public:
  explicit WriteLock(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  void release() {
    if (db_ == nullptr) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }
  ~WriteLock() { release(); }

 private:
  sqlite3* db_ = nullptr;
};

class GrantRecordsTest : public PolicydFixture {
 protected:
  void open_core() {
    PolicyCore::Options opt;
    opt.database_path = db_path_;
    auto core = PolicyCore::open(*io_, *log_, opt, {});
    ASSERT_TRUE(core) << core.error().message;
    core_ = std::move(*core);
    GrantProfile p;
    p.name = "p";
    p.fwmark = 0x10000000;
    p.fwmark_mask = 0xff000000;
    core_->set_profiles({p});
    core_->set_installer(&installer_);
    core_->set_observer(&observer_);
    auto ok = core_->start();
    ASSERT_TRUE(ok) << ok.error().message;
  }
  void crash() {
    core_.reset();
    io_ = std::make_unique<boost::asio::io_context>();
  }
  GrantRow grant(const char* source) {
    auto r =
        core_->grant(*IpAddr::parse(source), "p", kg::ipc::GrantMethod::ctl, "ctl:t", std::nullopt);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? r->grant : GrantRow{};
  }
  std::vector<GrantRow> db_rows() {
    kg::policyd::GrantFilter f;
    f.all = true;
    auto r = core_->store().grants(f);
    EXPECT_TRUE(r);
    return r ? *r : std::vector<GrantRow>{};
  }
  size_t audits(std::string_view kind) {
    auto r = core_->store().audit_after(0, 100000);
    size_t n = 0;
    for (const auto& a : *r) n += a.kind == kind ? 1u : 0u;
    return n;
  }
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      io_->restart();
      io_->run_for(10ms);
    }
    return true;
  }
  Installer installer_;
  Observer observer_;
};

}  // namespace

// ---------------------------------------------------------------- revocation journal

TEST_F(GrantRecordsTest, JournalIsPreallocatedAndKeepsTombstonesAcrossReopen) {
  const std::string path = dir_ + "/j";
  {
    auto j = RevocationJournal::open(path);
    ASSERT_TRUE(j) << j.error().message;
    EXPECT_TRUE(j->loaded().empty());
    ASSERT_TRUE(j->add(7, 111, 1234, "ctl:root"));
    auto second = j->add(9, 222, 5678, std::string(60, 'x'));  // truncated to kMaxBy
    ASSERT_TRUE(second);
    ASSERT_TRUE(j->sync());
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size),
            RevocationJournal::kSlots * RevocationJournal::kRecordSize);
  // Allocated, not a sparse file: later writes need no new blocks.
  EXPECT_GE(static_cast<size_t>(st.st_blocks) * 512, static_cast<size_t>(st.st_size));
  auto j = RevocationJournal::open(path);
  ASSERT_TRUE(j);
  ASSERT_EQ(j->loaded().size(), 2u);
  EXPECT_EQ(j->loaded()[0].grant_id, 7);
  EXPECT_EQ(j->loaded()[0].created_ns, 111);
  EXPECT_EQ(j->loaded()[0].ended_ns, 1234);
  EXPECT_EQ(j->loaded()[0].ended_by, "ctl:root");
  EXPECT_EQ(j->loaded()[1].ended_by, std::string(RevocationJournal::kMaxBy, 'x'));
  ASSERT_TRUE(j->clear(j->loaded()[0].slot));
  auto again = RevocationJournal::open(path);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->loaded().size(), 1u);
  EXPECT_EQ(again->loaded()[0].grant_id, 9);
}

TEST_F(GrantRecordsTest, JournalIgnoresATornSlotAndRefusesWhenFull) {
  const std::string path = dir_ + "/j";
  {
    auto j = RevocationJournal::open(path);
    ASSERT_TRUE(j);
    ASSERT_TRUE(j->add(7, 1, 1, "a"));
  }
  {
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const char junk = 0x55;
    ASSERT_EQ(::pwrite(fd, &junk, 1, 20), 1);  // inside slot 0: the checksum no longer holds
    ::close(fd);
  }
  auto j = RevocationJournal::open(path);
  ASSERT_TRUE(j);
  EXPECT_TRUE(j->loaded().empty());
  for (size_t i = 0; i < RevocationJournal::kSlots; ++i) {
    ASSERT_TRUE(j->add(static_cast<int64_t>(i + 1), 1, 1, "x"));
  }
  auto full = j->add(999999, 1, 1, "x");
  ASSERT_FALSE(full);
  EXPECT_NE(full.error().message.find("is full"), std::string::npos) << full.error().message;
}

// ---------------------------------------------------------------- kernel first, record later

TEST_F(GrantRecordsTest, RevokeActsOnTheKernelWhileTheDatabaseCannotBeWrittenAndRecordsLater) {
  open_core();
  const GrantRow g = grant("192.0.2.1");
  WriteLock lock(db_path_);
  auto revoked = core_->revoke_id(g.id, "ctl:root");  // waits out the busy timeout once
  ASSERT_TRUE(revoked) << revoked.error().message;
  ASSERT_EQ(revoked->size(), 1u);
  ASSERT_EQ(installer_.removed.size(), 1u);
  EXPECT_EQ(installer_.removed[0].id, static_cast<uint64_t>(g.id));
  ASSERT_EQ(observer_.removed.size(), 1u);
  EXPECT_EQ(core_->active_grant_count(), 0u);
  EXPECT_EQ(core_->grant_ends_pending(), 1u);
  EXPECT_NE(core_->grant_end_pending(g.id).find("locked"), std::string::npos)
      << core_->grant_end_pending(g.id);
  // What `knockgatectl grants` shows: not active; with --all, revoked.
  kg::policyd::GrantFilter active;
  EXPECT_TRUE(core_->grant_rows(active)->empty());
  kg::policyd::GrantFilter all;
  all.all = true;
  ASSERT_EQ(core_->grant_rows(all)->size(), 1u);
  EXPECT_EQ(core_->grant_rows(all)->front().state, "revoked");
  EXPECT_EQ(db_rows().front().state, "active");  // the database has not heard yet
  lock.release();
  ASSERT_TRUE(run_until([&] { return core_->grant_ends_pending() == 0; }, 10s));
  EXPECT_EQ(db_rows().front().state, "revoked");
  EXPECT_EQ(db_rows().front().ended_by, "ctl:root");
  EXPECT_EQ(audits("grant_revoke"), 1u);
  EXPECT_TRUE(RevocationJournal::open(db_path_ + "-revocations")->loaded().empty());
}

TEST_F(GrantRecordsTest, ANewGrantOfTheSameSourceWritesTheOwedEndFirst) {
  open_core();
  const GrantRow g = grant("192.0.2.1");
  {
    WriteLock lock(db_path_);
    ASSERT_TRUE(core_->revoke_id(g.id, "ctl:root"));
  }
  ASSERT_EQ(core_->grant_ends_pending(), 1u);
  // Before the retry has run: the old row is still `active` in the database.
  const GrantRow again = grant("192.0.2.1");
  EXPECT_NE(again.id, g.id);
  ASSERT_TRUE(run_until([&] { return core_->grant_ends_pending() == 0; }, 10s));
  auto rows = db_rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id == g.id ? rows[0].state : rows[1].state, "revoked");
  EXPECT_EQ(rows[0].id == g.id ? rows[1].state : rows[0].state, "active");
  EXPECT_EQ(audits("grant_revoke"), 1u);  // written once, not again by the retry
}

TEST_F(GrantRecordsTest, ARevocationTheDatabaseNeverGotStaysRevokedAfterARestart) {
  open_core();
  const GrantRow g = grant("192.0.2.1");
  const GrantRow other = grant("192.0.2.2");
  {
    WriteLock lock(db_path_);
    ASSERT_TRUE(core_->revoke_id(g.id, "ctl:root"));
    crash();  // before any retry: the row says active, the journal says revoked
  }
  installer_.added.clear();
  open_core();
  EXPECT_EQ(core_->active_grant_count(), 1u);
  auto installs = core_->active_installs();
  ASSERT_EQ(installs.size(), 1u);
  EXPECT_EQ(installs[0].id, static_cast<uint64_t>(other.id));
  EXPECT_EQ(core_->grant_ends_pending(), 0u);  // recorded during start
  auto rows = db_rows();
  EXPECT_EQ(rows[0].id == g.id ? rows[0].state : rows[1].state, "revoked");
  EXPECT_EQ(rows[0].id == g.id ? rows[0].ended_by : rows[1].ended_by, "ctl:root");
  EXPECT_EQ(audits("grant_revoke"), 1u);
  EXPECT_TRUE(RevocationJournal::open(db_path_ + "-revocations")->loaded().empty());
}

TEST_F(GrantRecordsTest, ATombstoneOfAnotherDatabasesGrantWithTheSameIdIsIgnored) {
  open_core();
  const GrantRow g = grant("192.0.2.1");
  ASSERT_EQ(g.id, 1);
  crash();
  {
    // As if left from a database that was deleted while its journal stayed.
    auto j = RevocationJournal::open(db_path_ + "-revocations");
    ASSERT_TRUE(j);
    ASSERT_TRUE(j->add(g.id, g.created_ns - 1, g.created_ns, "ctl:old"));
  }
  open_core();
  EXPECT_EQ(core_->active_grant_count(), 1u);
  EXPECT_EQ(db_rows().front().state, "active");
  EXPECT_TRUE(RevocationJournal::open(db_path_ + "-revocations")->loaded().empty());
}

// ---------------------------------------------------------------- database directory

TEST_F(GrantRecordsTest, TheDatabaseDirectoryIsCreatedWithMode0750) {
  const std::string path = dir_ + "/state/knockgate.db";
  auto store = kg::policyd::SqliteStore::open(path);
  ASSERT_TRUE(store) << store.error().message;
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
}

TEST_F(GrantRecordsTest, AMissingParentOfTheDatabaseDirectoryIsNamed) {
  const std::string path = dir_ + "/no/such/knockgate.db";
  auto store = kg::policyd::SqliteStore::open(path);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().message, "Database " + path + ": cannot create its directory " + dir_ +
                                       "/no/such: " + dir_ + "/no does not exist");
}

// ---------------------------------------------------------------- PidFile

namespace {
std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}
}  // namespace

TEST_F(GrantRecordsTest, PidFileIsWrittenAndRemovedAndARunningOwnerIsRefused) {
  const std::string path = dir_ + "/policyd.pid";
  {
    auto pid = PidFile::create(path);
    ASSERT_TRUE(pid) << pid.error().message;
    EXPECT_EQ(slurp(path), std::to_string(::getpid()) + "\n");
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);
    // A second policyd while this one runs (its lock is held).
    auto second = PidFile::create(path);
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message.find("is running"), std::string::npos)
        << second.error().message;
    EXPECT_EQ(slurp(path), std::to_string(::getpid()) + "\n");
  }
  EXPECT_FALSE(std::filesystem::exists(path));  // removed at exit
  // No temporary file left behind either.
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().rfind("policyd.pid", 0), std::string::npos) << e.path();
  }
}

TEST_F(GrantRecordsTest, AStalePidFileIsReplacedAndALiveUnlockedOneRefused) {
  const std::string path = dir_ + "/policyd.pid";
  for (const std::string& stale :
       {std::to_string(dead_pid()) + "\n", std::string("garbage"), std::string("")}) {
    write_file(path, stale);
    auto pid = PidFile::create(path);
    ASSERT_TRUE(pid) << pid.error().message;
    EXPECT_EQ(slurp(path), std::to_string(::getpid()) + "\n");
  }
  {
    // A policyd killed with SIGKILL whose parent has not collected it yet (a zombie).
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    siginfo_t info{};
    ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
    write_file(path, std::to_string(child) + "\n");
    auto pid = PidFile::create(path);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(pid) << pid.error().message;
  }
  // knockd does not lock its pid file: a live process named in it is enough.
  write_file(path, std::to_string(::getppid()) + "\n");
  auto refused = PidFile::create(path);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("names process " + std::to_string(::getppid())),
            std::string::npos)
      << refused.error().message;
  EXPECT_EQ(slurp(path), std::to_string(::getppid()) + "\n");  // left alone
  // A missing directory is reported with the path.
  auto nodir = PidFile::create(dir_ + "/none/x.pid");
  ASSERT_FALSE(nodir);
  EXPECT_NE(nodir.error().message.find(dir_ + "/none/x.pid"), std::string::npos);
}
