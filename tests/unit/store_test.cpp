// The storage seam (store.h): the transaction contract on both backends (SQLite and a
// test's in-memory one), PolicyCore and GrantBook running on the in-memory store, and
// AuditQueue::commit, the one way the engine commits.
#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "memory_store.h"
#include "policyd/audit_queue.h"
#include "policyd/policy.h"
#include "policyd/sqlite_store.h"
#include "policyd_fixture.h"

using namespace std::chrono_literals;
using kg::IpAddr;
using kg::policyd::DoorActions;
using kg::policyd::GrantProfile;
using kg::policyd::GrantRow;
using kg::policyd::KnockEventData;
using kg::policyd::KnockOutcome;
using kg::policyd::PolicyCore;
using kg::policyd::Store;
using Clock = std::chrono::steady_clock;

namespace {

IpAddr ip(const char* text) {
  return IpAddr::parse(text).value_or(IpAddr{});
}

GrantRow grant_row(const char* source) {
  GrantRow g;
  g.source = source;
  g.profile = "ssh";
  g.method = "ctl";
  g.created_ns = 1;
  g.expires_ns = 2;
  g.max_expires_ns = 3;
  return g;
}

// What every backend promises about transactions and commits (store.h).
void check_transaction_contract(Store& store) {
  int commits_seen = 0;
  store.on_commit([&] { ++commits_seen; });
  kg::policyd::GrantFilter all;
  all.all = true;
  {
    auto txn = store.begin();
    ASSERT_TRUE(txn) << txn.error().message;
    ASSERT_TRUE(store.insert_grant(grant_row("192.0.2.1")));
    ASSERT_TRUE(store.append_audit(1, "grant_create", "", "192.0.2.1", ""));
  }  // destroyed without commit: rolled back
  EXPECT_TRUE(store.grants(all)->empty());
  EXPECT_TRUE(store.audit_after(0, 100)->empty());
  EXPECT_EQ(commits_seen, 0);

  auto txn = store.begin();
  ASSERT_TRUE(txn);
  ASSERT_TRUE(store.insert_grant(grant_row("192.0.2.1")));
  // One active grant per source and profile.
  EXPECT_FALSE(store.insert_grant(grant_row("192.0.2.1")));
  ASSERT_TRUE(txn->commit());
  EXPECT_FALSE(txn->commit());  // once only
  EXPECT_EQ(store.grants(all)->size(), 1U);
  EXPECT_GE(commits_seen, 1);
  EXPECT_TRUE(store.needs_sync());
  ASSERT_TRUE(store.sync());
  EXPECT_FALSE(store.needs_sync());

  // A write outside a transaction commits on its own, and says so.
  const int before = commits_seen;
  ASSERT_TRUE(store.append_audit(2, "daemon_start", "", "", ""));
  EXPECT_GT(commits_seen, before);
  store.on_commit(nullptr);
}

KnockEventData knock_event(uint64_t event_id, const char* source, const std::string& door) {
  KnockEventData ev;
  ev.sender_boot_id = 0x77;
  ev.event_id = event_id;
  ev.door = door;
  ev.source = ip(source);
  ev.time_ns = kg::policyd::wall_now_ns();
  return ev;
}

class MemoryStoreTest : public PolicydFixture {
 protected:
  void open_core() {
    auto store = std::make_unique<MemoryStore>();
    mem_ = store.get();
    DoorActions door;
    door.name = "web";
    door.grant = "ssh";
    PolicyCore::Options opt;
    opt.database_path = db_path_;  // the revocation journal's place
    auto core = PolicyCore::open(*io_, *log_, opt, {door}, std::move(store));
    ASSERT_TRUE(core) << core.error().message;
    core_ = std::move(*core);
    GrantProfile p;
    p.name = "ssh";
    p.lifetime = 60s;
    p.max_lifetime = 120s;
    core_->set_profiles({p});
    core_->set_installer(&installer_);
    auto ok = core_->start();
    ASSERT_TRUE(ok) << ok.error().message;
  }
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      io_->restart();
      io_->run_for(5ms);
    }
    return true;
  }
  size_t audits(std::string_view kind) {
    core_->flush_audit();
    size_t n = 0;
    for (const auto& a : mem_->state.audit) n += a.kind == kind ? 1U : 0U;
    return n;
  }

  MemoryStore* mem_ = nullptr;  // owned by core_
  RecordingInstaller installer_;
};

}  // namespace

TEST(StoreContract, SqliteStoreKeepsIt) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "store-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  {
    auto store = kg::policyd::SqliteStore::open(tmpl + "/knockgate.db");
    ASSERT_TRUE(store) << store.error().message;
    check_transaction_contract(**store);
  }
  std::filesystem::remove_all(tmpl);
}

TEST(StoreContract, MemoryStoreKeepsIt) {
  MemoryStore store;
  check_transaction_contract(store);
}

TEST_F(MemoryStoreTest, AKnockOnAGrantDoorCommitsAndGrantsOnceThroughAnyStore) {
  open_core();
  auto first = core_->handle_knock(knock_event(1, "192.0.2.10", "web"));
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, KnockOutcome::opened);
  auto again = core_->handle_knock(knock_event(1, "192.0.2.10", "web"));  // EventAck lost
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, KnockOutcome::duplicate);
  ASSERT_EQ(mem_->state.grants.size(), 1U);
  EXPECT_EQ(mem_->state.grants.begin()->second.source, "192.0.2.10");
  EXPECT_EQ(installer_.added.size(), 1U);
  EXPECT_EQ(core_->active_grant_count(), 1U);
  EXPECT_EQ(audits("knock_open"), 1U);
  EXPECT_EQ(audits("grant_create"), 1U);
  // The loop syncs what the handler committed.
  EXPECT_TRUE(run_until([&] { return !mem_->needs_sync(); }, 2s));
  EXPECT_GE(mem_->syncs, 1);
}

TEST_F(MemoryStoreTest, AFailedCommitLeavesNothingBehindAndTheEventCanBeSentAgain) {
  open_core();
  mem_->fail_next_commit = true;
  auto failed = core_->handle_knock(knock_event(1, "192.0.2.11", "web"));
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("disk full"), std::string::npos);
  EXPECT_TRUE(mem_->state.grants.empty());
  EXPECT_TRUE(mem_->state.events_seen.empty());
  EXPECT_TRUE(installer_.added.empty());  // nothing took effect
  EXPECT_EQ(core_->active_grant_count(), 0U);

  auto retried = core_->handle_knock(knock_event(1, "192.0.2.11", "web"));
  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_EQ(*retried, KnockOutcome::opened);
  EXPECT_EQ(mem_->state.grants.size(), 1U);
  EXPECT_EQ(installer_.added.size(), 1U);
}

TEST_F(MemoryStoreTest, RevocationAndExpiryAreRecordedThroughAnyStore) {
  open_core();
  auto kept = core_->grant(ip("192.0.2.20"), "ssh", kg::ipc::GrantMethod::ctl, "ctl:test", 60s);
  auto brief = core_->grant(ip("192.0.2.21"), "ssh", kg::ipc::GrantMethod::ctl, "ctl:test", 1s);
  ASSERT_TRUE(kept && brief);
  auto revoked = core_->revoke_id(kept->grant.id, "ctl:admin");
  ASSERT_TRUE(revoked);
  ASSERT_EQ(revoked->size(), 1U);
  EXPECT_EQ(mem_->state.grants.at(kept->grant.id).state, "revoked");
  EXPECT_EQ(mem_->state.grants.at(kept->grant.id).ended_by, "ctl:admin");
  ASSERT_TRUE(run_until([&] { return core_->grants_expired() == 1; }, 5s));
  EXPECT_EQ(mem_->state.grants.at(brief->grant.id).state, "expired");
  EXPECT_EQ(core_->active_grant_count(), 0U);
  EXPECT_EQ(core_->grant_ends_pending(), 0U);
  EXPECT_EQ(audits("grant_revoke"), 1U);
  EXPECT_EQ(audits("grant_expire"), 1U);
  EXPECT_EQ(installer_.removed.size(), 2U);
}

TEST_F(MemoryStoreTest, SpaReplayIsRefusedThroughAnyStore) {
  open_core();
  auto spa = [&](uint64_t event_id) {
    KnockEventData ev = knock_event(event_id, "192.0.2.30", "web");
    ev.spa = true;
    std::array<uint8_t, 32> key{};
    key.fill(0x5a);
    ev.spa_replay_key = key;
    ev.spa_summary = "user alice access tcp/22 timeout 0";
    auto r = core_->handle_knock(ev);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : KnockOutcome::unknown_door;
  };
  EXPECT_EQ(spa(1), KnockOutcome::spa_accepted);
  EXPECT_EQ(spa(2), KnockOutcome::spa_replayed);
  EXPECT_EQ(mem_->state.replay.size(), 1U);
  EXPECT_EQ(mem_->state.grants.size(), 1U);  // one packet grants once
}

TEST(AuditQueueTest, QueuedRowsStayUntilACommitLands) {
  boost::asio::io_context io;
  MemoryStore store;
  kg::policyd::AuditQueue queue(io, store);
  queue.add("command_run", "web", "192.0.2.40", "pid 1");
  queue.add("command_status", "web", "192.0.2.40", "exit 0");

  store.fail_next_commit = true;
  auto txn = store.begin();
  ASSERT_TRUE(txn);
  ASSERT_TRUE(store.append_audit(1, "knock_open", "web", "192.0.2.40", ""));
  EXPECT_FALSE(queue.commit(*txn));
  EXPECT_EQ(queue.size(), 2U);  // kept for the next commit
  EXPECT_TRUE(store.state.audit.empty());

  auto next = store.begin();
  ASSERT_TRUE(next);
  ASSERT_TRUE(store.append_audit(2, "knock_open", "web", "192.0.2.40", ""));
  ASSERT_TRUE(queue.commit(*next));
  EXPECT_EQ(queue.size(), 0U);
  ASSERT_EQ(store.state.audit.size(), 3U);
  EXPECT_EQ(store.state.audit[0].kind, "knock_open");  // the event's rows, then the queue
  EXPECT_EQ(store.state.audit[1].kind, "command_run");
  EXPECT_EQ(store.state.audit[2].kind, "command_status");
  io.run();  // the posted flush finds nothing left
  EXPECT_EQ(store.state.audit.size(), 3U);
}
