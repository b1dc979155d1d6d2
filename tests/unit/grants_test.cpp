// policyd's grants against a real SQLite file: creation from knocks and control, extension
// capped at the maximum, expiry on time, revocation, reload, kernel failures (through a
// recording GrantInstaller), restart after a crash; the broadcast (sequence numbers,
// chunked snapshots, slow subscribers); the control commands (parsing, output, exit
// codes, roles).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/knocklog.h"
#include "common/log.h"
#include "config/config.h"
#include "policyd/broadcast.h"
#include "policyd/control.h"
#include "policyd/policy.h"
#include "policyd/store.h"
#include "policyd_fixture.h"

using namespace std::chrono_literals;
using kg::IpAddr;
using kg::ipc::GrantOp;
using kg::policyd::Control;
using kg::policyd::DoorActions;
using kg::policyd::GrantInstall;
using kg::policyd::GrantProfile;
using kg::policyd::GrantRow;
using kg::policyd::KnockEventData;
using kg::policyd::PolicyCore;
using Clock = std::chrono::steady_clock;

namespace {

IpAddr ip(const char* text) {
  auto a = IpAddr::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddr{});
}

struct Change {
  GrantOp op;
  kg::ipc::GrantRecord grant;
  std::string reason;
};

class RecordingObserver final : public kg::policyd::GrantObserver {
 public:
  void grant_pending(const IpAddr& source, const std::string& profile,
                     int64_t deadline_ns) override {
    kg::ipc::GrantRecord r;
    r.source = source;
    r.profile = profile;
    r.expires_ns = deadline_ns;
    changes.push_back({GrantOp::pending, r, ""});
  }
  void grant_changed(GrantOp op, const kg::ipc::GrantRecord& g,
                     const std::string& reason) override {
    changes.push_back({op, g, reason});
  }
  void feed(const kg::ipc::FeedEvent& e) override { feeds.push_back(e); }
  size_t count(GrantOp op) const {
    size_t n = 0;
    for (const auto& c : changes) n += c.op == op ? 1u : 0u;
    return n;
  }
  std::vector<Change> changes;
  std::vector<kg::ipc::FeedEvent> feeds;
};

GrantProfile profile(const std::string& name, std::chrono::seconds lifetime,
                     std::chrono::seconds max, uint32_t mark = 0x10000000) {
  GrantProfile p;
  p.name = name;
  p.lifetime = lifetime;
  p.max_lifetime = max;
  p.fwmark = mark;
  p.fwmark_mask = 0xff000000;
  return p;
}

class GrantsTest : public PolicydFixture {
 protected:
  void open_core(std::vector<GrantProfile> profiles, std::vector<DoorActions> doors = {}) {
    PolicyCore::Options opt;
    opt.database_path = db_path_;
    auto core = PolicyCore::open(*io_, *log_, opt, std::move(doors));
    ASSERT_TRUE(core) << core.error().message;
    core_ = std::move(*core);
    core_->set_profiles(std::move(profiles));
    core_->set_installer(&installer_);
    core_->set_observer(&observer_);
    auto ok = core_->start();
    ASSERT_TRUE(ok) << ok.error().message;
  }
  void crash() {
    core_.reset();
    io_ = std::make_unique<boost::asio::io_context>();
  }
  PolicyCore::GrantResult grant(const char* source, const char* prof,
                                std::optional<std::chrono::seconds> d = std::nullopt) {
    auto r = core_->grant(ip(source), prof, kg::ipc::GrantMethod::ctl, "ctl:test", d);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : PolicyCore::GrantResult{};
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
  std::vector<GrantRow> rows(bool all = true) {
    kg::policyd::GrantFilter f;
    f.all = all;
    auto r = core_->store().grants(f);
    EXPECT_TRUE(r);
    return r ? *r : std::vector<GrantRow>{};
  }
  size_t audit_count(std::string_view kind) {
    core_->flush_audit();
    auto r = core_->store().audit_after(0, 1000000);
    size_t n = 0;
    for (const auto& a : *r) n += a.kind == kind ? 1u : 0u;
    return n;
  }

  RecordingInstaller installer_;
  RecordingObserver observer_;
};

int64_t secs(int64_t s) {
  return s * 1'000'000'000;
}

}  // namespace

// ---------------------------------------------------------------- lifecycle

TEST_F(GrantsTest, KnockOnGrantDoorCreatesCommitsInstallsThenBroadcasts) {
  DoorActions d;
  d.name = "openSSH";
  d.grant = "ssh-only";
  open_core({profile("ssh-only", 1h, 8h)}, {d});
  KnockEventData ev;
  ev.sender_boot_id = 7;
  ev.event_id = 1;
  ev.door = "openSSH";
  ev.source = ip("203.0.113.10");
  const int64_t before = kg::policyd::wall_now_ns();
  auto r = core_->handle_knock(ev);
  ASSERT_TRUE(r) << r.error().message;

  auto all = rows();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].source, "203.0.113.10");
  EXPECT_EQ(all[0].profile, "ssh-only");
  EXPECT_EQ(all[0].method, "knock");
  EXPECT_EQ(all[0].origin, "openSSH");
  EXPECT_EQ(all[0].state, "active");
  EXPECT_NEAR(static_cast<double>(all[0].expires_ns - before), 3600e9, 1e9);
  EXPECT_NEAR(static_cast<double>(all[0].max_expires_ns - before), 8 * 3600e9, 1e9);
  ASSERT_EQ(installer_.added.size(), 1u);
  EXPECT_EQ(installer_.added[0].id, static_cast<uint64_t>(all[0].id));
  // pending (before the commit, deadline = hold), then add; nothing else.
  ASSERT_EQ(observer_.changes.size(), 2u);
  EXPECT_EQ(observer_.changes[0].op, GrantOp::pending);
  EXPECT_EQ(observer_.changes[0].grant.source, ip("203.0.113.10"));
  EXPECT_NEAR(static_cast<double>(observer_.changes[0].grant.expires_ns - before), 25e6, 20e6);
  EXPECT_EQ(observer_.changes[1].op, GrantOp::add);
  EXPECT_EQ(observer_.changes[1].grant.fwmark, 0x10000000u);
  EXPECT_EQ(observer_.changes[1].grant.method, kg::ipc::GrantMethod::knock);
  EXPECT_EQ(audit_count("grant_create"), 1u);
  EXPECT_EQ(core_->active_grant_count(), 1u);
  // The feed saw the knock and the grant.
  ASSERT_GE(observer_.feeds.size(), 2u);
  EXPECT_EQ(observer_.feeds[0].kind, "knock");
  EXPECT_GT(observer_.feeds[0].audit_id, 0u);
  EXPECT_EQ(observer_.feeds[1].kind, "grant");
}

TEST_F(GrantsTest, UnknownProfileIsAuditedNotGranted) {
  DoorActions d;
  d.name = "openSSH";
  d.grant = "gone";
  open_core({profile("ssh-only", 1h, 8h)}, {d});
  KnockEventData ev;
  ev.sender_boot_id = 7;
  ev.event_id = 1;
  ev.door = "openSSH";
  ev.source = ip("203.0.113.10");
  ASSERT_TRUE(core_->handle_knock(ev));
  EXPECT_TRUE(rows().empty());
  EXPECT_EQ(audit_count("grant_requested"), 1u);
}

TEST_F(GrantsTest, KnockOrSpaFromAnAddressThatIsNeverAClientGrantsNothing) {
  DoorActions d;
  d.name = "openSSH";
  d.grant = "ssh-only";
  open_core({profile("ssh-only", 1h, 8h)}, {d});
  uint64_t event_id = 0;
  for (const char* spoofed : {"127.0.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "::1",
                              "ff02::1", "::ffff:198.51.100.7"}) {
    for (bool spa : {false, true}) {
      KnockEventData ev;
      ev.sender_boot_id = 7;
      ev.event_id = ++event_id;
      ev.door = "openSSH";
      ev.source = ip(spoofed);
      if (spa) {
        ev.spa = true;
        std::array<uint8_t, 32> key{};
        key.fill(static_cast<uint8_t>(event_id));
        ev.spa_replay_key = key;
      }
      auto r = core_->handle_knock(ev);
      ASSERT_TRUE(r) << spoofed << ": " << r.error().message;
    }
  }
  EXPECT_TRUE(rows().empty());
  EXPECT_TRUE(installer_.added.empty());
  EXPECT_TRUE(observer_.changes.empty());  // not even a pending hold
  EXPECT_EQ(audit_count("grant_requested"), 16u);
  EXPECT_EQ(audit_count("grant_create"), 0u);

  // The same check for a direct grant (the control API's path).
  auto r = core_->grant(ip("127.0.0.2"), "ssh-only", kg::ipc::GrantMethod::ctl, "ctl:test",
                        std::nullopt);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, PolicyCore::GrantStatus::failed);
  EXPECT_EQ(r->grant.failure,
            "127.0.0.2 is a loopback address (127.0.0.0/8), never a client's source");
  EXPECT_TRUE(rows().empty());
  EXPECT_EQ(grant("203.0.113.10", "ssh-only").status, PolicyCore::GrantStatus::created);
}

TEST_F(GrantsTest, KnockingAgainExtendsInsteadOfStackingAndStopsAtTheMaximum) {
  open_core({profile("p", 2s, 3s)});
  auto first = grant("192.0.2.1", "p");
  EXPECT_EQ(first.status, PolicyCore::GrantStatus::created);
  std::this_thread::sleep_for(1200ms);
  auto second = grant("192.0.2.1", "p");
  EXPECT_EQ(second.status, PolicyCore::GrantStatus::extended);
  EXPECT_EQ(second.grant.id, first.grant.id);
  // now + 2 s would pass created + 3 s: capped there.
  EXPECT_EQ(second.grant.expires_ns, first.grant.max_expires_ns);
  auto third = grant("192.0.2.1", "p");
  EXPECT_EQ(third.status, PolicyCore::GrantStatus::unchanged);
  EXPECT_EQ(rows().size(), 1u);
  EXPECT_EQ(observer_.count(GrantOp::add), 1u);
  EXPECT_EQ(observer_.count(GrantOp::extend), 1u);
  EXPECT_EQ(installer_.add_calls, 2);  // extension re-adds the element with the new timeout
  EXPECT_EQ(audit_count("grant_extend"), 1u);
}

TEST_F(GrantsTest, ControlDurationIsCappedAtMaxLifetime) {
  open_core({profile("p", 1h, 2h)});
  const int64_t before = kg::policyd::wall_now_ns();
  auto g = grant("192.0.2.1", "p", std::chrono::seconds(10 * 3600));
  EXPECT_LE(g.grant.expires_ns - before, secs(2 * 3600) + secs(1));
  EXPECT_GE(g.grant.expires_ns - before, secs(2 * 3600) - secs(1));
}

TEST_F(GrantsTest, ExpiresOnTimeAndIsRemovedEverywhere) {
  open_core({profile("p", 1s, 1h)});
  auto g = grant("192.0.2.1", "p");
  auto other = grant("192.0.2.2", "p", 30s);
  ASSERT_TRUE(run_until([&] { return core_->active_grant_count() == 1; }, 3s));
  const int64_t late_ns = kg::policyd::wall_now_ns() - g.grant.expires_ns;
  EXPECT_GE(late_ns, 0);
  EXPECT_LT(late_ns, 100'000'000) << "expiry late by " << late_ns << " ns";
  EXPECT_LT(core_->worst_expiry_lateness_us(), 100'000);
  auto all = rows();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].state, "expired");
  EXPECT_GT(all[0].ended_ns, 0);
  EXPECT_EQ(all[1].state, "active");
  ASSERT_EQ(installer_.removed.size(), 1u);
  EXPECT_EQ(installer_.removed[0].id, static_cast<uint64_t>(g.grant.id));
  ASSERT_EQ(observer_.count(GrantOp::remove), 1u);
  EXPECT_EQ(observer_.changes.back().reason, "expired");
  EXPECT_EQ(audit_count("grant_expire"), 1u);
  (void)other;
}

// Many grants expiring in the same few milliseconds: one transaction, one timer, on time.
TEST_F(GrantsTest, ManySimultaneousExpiriesStayWithin100ms) {
  open_core({profile("p", 3s, 1h)});
  std::vector<IpAddr> sources;
  for (uint32_t i = 0; i < 300; ++i) sources.push_back(IpAddr::v4(0x0a000000U + i));
  const auto t0 = Clock::now();
  auto r = core_->grant_many(sources, "p", kg::ipc::GrantMethod::ctl, "bench", std::nullopt);
  ASSERT_TRUE(r) << r.error().message;
  std::cerr << "300 grants created in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
            << " ms\n";
  ASSERT_EQ(core_->active_grant_count(), 300u);
  const int64_t expires = r->back().grant.expires_ns;
  ASSERT_TRUE(run_until([&] { return core_->active_grant_count() == 0; }, 8s));
  const int64_t done_late = kg::policyd::wall_now_ns() - expires;
  EXPECT_LT(core_->worst_expiry_lateness_us(), 100'000);
  // All 300 closed in one transaction. A loose bound: this is an ASan build on a shared
  // machine; the release figure under load is in docs/BENCHMARKS.md.
  EXPECT_LT(done_late, 2'000'000'000);
  EXPECT_EQ(installer_.removed.size(), 300u);
}

TEST_F(GrantsTest, RevokeByIdAndBySource) {
  open_core({profile("a", 1h, 8h), profile("b", 1h, 8h, 0x20000000)});
  auto g1 = grant("192.0.2.1", "a");
  grant("192.0.2.1", "b");
  grant("192.0.2.9", "a");
  auto none = core_->revoke_id(999, "ctl:root");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto one = core_->revoke_id(g1.grant.id, "ctl:root");
  ASSERT_TRUE(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].state, "revoked");
  EXPECT_EQ((*one)[0].ended_by, "ctl:root");
  auto by_source = core_->revoke_source(ip("192.0.2.1"), "web:alice");
  ASSERT_TRUE(by_source);
  EXPECT_EQ(by_source->size(), 1u);  // only the "b" grant was still active
  EXPECT_EQ(core_->active_grant_count(), 1u);
  EXPECT_EQ(installer_.removed.size(), 2u);
  EXPECT_EQ(observer_.changes.back().reason, "revoked by web:alice");
  EXPECT_EQ(audit_count("grant_revoke"), 2u);
  // A revoked (source, profile) can be granted afresh.
  auto again = grant("192.0.2.1", "a");
  EXPECT_EQ(again.status, PolicyCore::GrantStatus::created);
  EXPECT_NE(again.grant.id, g1.grant.id);
}

TEST_F(GrantsTest, KernelFailureMarksTheGrantFailedAndBroadcastsNoAdd) {
  open_core({profile("p", 1h, 8h)});
  installer_.fail_with = "nft: Error: Could not process rule: No such file or directory";
  auto g = grant("192.0.2.1", "p");
  EXPECT_EQ(g.status, PolicyCore::GrantStatus::failed);
  auto all = rows();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].state, "failed");
  EXPECT_EQ(all[0].failure, installer_.fail_with);
  EXPECT_EQ(core_->active_grant_count(), 0u);
  EXPECT_EQ(observer_.count(GrantOp::add), 0u);
  ASSERT_EQ(observer_.count(GrantOp::remove), 1u);
  EXPECT_EQ(observer_.changes.back().reason, "failed: " + installer_.fail_with);
  EXPECT_EQ(audit_count("grant_failed"), 1u);
  bool logged = false;
  for (const auto& d : diagnostics_)
    logged |= d.find("Could not process rule") != std::string::npos;
  EXPECT_TRUE(logged);
  // An extension the kernel refuses keeps the previous expiry.
  installer_.fail_with.clear();
  auto ok = grant("192.0.2.2", "p", 60s);
  installer_.fail_with = "netlink: Operation not permitted";
  auto ext = grant("192.0.2.2", "p", 600s);
  EXPECT_EQ(ext.status, PolicyCore::GrantStatus::failed);
  auto stored = core_->store().grant(ok.grant.id);
  ASSERT_TRUE(stored && stored->has_value());
  EXPECT_EQ((*stored)->state, "active");
  EXPECT_EQ((*stored)->expires_ns, ok.grant.expires_ns);
}

TEST_F(GrantsTest, ReloadRevokesGrantsOfRemovedProfilesAndRebroadcastsChangedMarks) {
  open_core({profile("a", 1h, 8h), profile("b", 1h, 8h, 0x20000000)});
  grant("192.0.2.1", "a");
  grant("192.0.2.2", "b");
  observer_.changes.clear();
  core_->set_profiles({profile("b", 1h, 8h, 0x30000000)});
  EXPECT_EQ(core_->active_grant_count(), 1u);
  auto all = rows();
  EXPECT_EQ(all[0].state, "revoked");
  EXPECT_EQ(all[0].ended_by, "reload");
  ASSERT_EQ(observer_.changes.size(), 3u);
  EXPECT_EQ(observer_.changes[0].op, GrantOp::remove);
  EXPECT_EQ(observer_.changes[0].reason, "profile removed");
  EXPECT_EQ(observer_.changes[1].op, GrantOp::remove);
  EXPECT_EQ(observer_.changes[2].op, GrantOp::add);
  EXPECT_EQ(observer_.changes[2].grant.fwmark, 0x30000000u);
}

TEST_F(GrantsTest, RestartAfterCrashRestoresLiveGrantsAndClosesExpiredOnes) {
  open_core({profile("p", 1h, 8h)});
  std::vector<IpAddr> sources;
  for (uint32_t i = 0; i < 100; ++i) sources.push_back(IpAddr::v4(0xc6336400U + i));
  ASSERT_TRUE(core_->grant_many(sources, "p", kg::ipc::GrantMethod::ctl, "t", std::nullopt));
  std::vector<IpAddr> short_lived = {ip("192.0.2.200"), ip("192.0.2.201")};
  ASSERT_TRUE(core_->grant_many(short_lived, "p", kg::ipc::GrantMethod::ctl, "t", 1s));
  crash();
  std::this_thread::sleep_for(1100ms);
  open_core({profile("p", 1h, 8h)});
  EXPECT_EQ(core_->active_grant_count(), 100u);
  EXPECT_EQ(core_->active_installs().size(), 100u);
  auto all = rows();
  EXPECT_EQ(all.size(), 102u);  // nothing duplicated, nothing lost
  size_t expired = 0;
  for (const auto& g : all) expired += g.state == "expired" ? 1u : 0u;
  EXPECT_EQ(expired, 2u);
  // A knock for a restored grant extends it rather than creating a second one.
  auto again = grant("198.51.100.0", "p");
  EXPECT_EQ(again.status, PolicyCore::GrantStatus::extended);
  EXPECT_EQ(rows().size(), 102u);
}

TEST_F(GrantsTest, SchemaRejectsTwoActiveGrantsForOneSourceAndProfile) {
  open_core({profile("p", 1h, 8h)});
  grant("192.0.2.1", "p");
  GrantRow dup;
  dup.source = "192.0.2.1";
  dup.profile = "p";
  dup.method = "ctl";
  dup.created_ns = 1;
  dup.expires_ns = 2;
  dup.max_expires_ns = 3;
  EXPECT_FALSE(core_->store().insert_grant(dup));
}

// ---------------------------------------------------------------- broadcast

namespace {

class FakeSession final : public kg::ipc::Session {
 public:
  FakeSession(uint64_t id, uint32_t max_frame, size_t max_messages = 1000000)
      : id_(id), max_messages_(max_messages) {
    hello_.role = kg::ipc::Role::verdictd;
    hello_.max_frame_bytes = max_frame;
  }
  uint64_t id() const override { return id_; }
  const kg::ipc::Hello& hello() const override { return hello_; }
  const kg::ipc::PeerCredentials& peer() const override { return peer_; }
  bool is_open() const override { return open_; }
  bool send(const kg::ipc::Message& m) override {
    if (!open_) return false;
    auto frame = kg::ipc::encode_frame(m, hello_.max_frame_bytes);
    if (!frame) return false;
    if (sent.size() >= max_messages_) {
      open_ = false;  // what the server does when the write queue overflows
      return false;
    }
    sent.push_back(m);
    return true;
  }
  void close(const std::string&) override { open_ = false; }
  std::string describe() const override { return "fake " + std::to_string(id_); }
  std::vector<kg::ipc::Message> sent;

 private:
  uint64_t id_;
  size_t max_messages_;
  kg::ipc::Hello hello_;
  kg::ipc::PeerCredentials peer_;
  bool open_ = true;
};

std::vector<kg::ipc::GrantRecord> many_records(size_t n) {
  std::vector<kg::ipc::GrantRecord> out;
  for (size_t i = 0; i < n; ++i) {
    kg::ipc::GrantRecord r;
    r.id = i + 1;
    r.source = IpAddr::v4(0x0a000000U + static_cast<uint32_t>(i));
    r.profile = "ssh-only";
    r.origin = "openSSH";
    r.expires_ns = 5;
    out.push_back(r);
  }
  return out;
}

}  // namespace

TEST(Broadcast, SnapshotChunksFitTheFrameLimitAndKeepEveryGrantInOrder) {
  const auto records = many_records(1000);
  for (size_t limit : {size_t{1024}, size_t{4096}, size_t{65536}, size_t{16} << 20}) {
    auto chunks = kg::policyd::snapshot_chunks(9, 42, records, limit);
    ASSERT_FALSE(chunks.empty());
    std::vector<kg::ipc::GrantRecord> joined;
    for (size_t i = 0; i < chunks.size(); ++i) {
      EXPECT_EQ(chunks[i].first, i == 0);
      EXPECT_EQ(chunks[i].last, i + 1 == chunks.size());
      EXPECT_EQ(chunks[i].seq, 42u);
      EXPECT_EQ(chunks[i].request_id, 9u);
      auto frame = kg::ipc::encode_frame(chunks[i], limit);
      ASSERT_TRUE(frame) << "chunk " << i << " over " << limit << ": " << frame.error().message;
      joined.insert(joined.end(), chunks[i].grants.begin(), chunks[i].grants.end());
    }
    EXPECT_EQ(joined, records);
    if (limit == 1024) {
      EXPECT_GT(chunks.size(), 10u);
    }
    if (limit == (size_t{16} << 20)) {
      EXPECT_EQ(chunks.size(), 1u);
    }
  }
  auto empty = kg::policyd::snapshot_chunks(1, 0, {}, 1024);
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0].first && empty[0].last);
}

TEST(Broadcast, DeltasCarryConsecutiveSeqAfterTheSnapshot) {
  auto records = many_records(3);
  kg::policyd::Broadcaster b([&] { return records; });
  b.grant_changed(GrantOp::add, records[0], "");  // seq 1, nobody listening
  auto s = std::make_shared<FakeSession>(1, 65536);
  kg::ipc::Subscribe sub;
  sub.request_id = 5;
  sub.topics = kg::ipc::kTopicGrants;
  ASSERT_TRUE(b.subscribe(s, sub));
  ASSERT_EQ(s->sent.size(), 1u);
  const auto& snap = std::get<kg::ipc::GrantSnapshot>(s->sent[0]);
  EXPECT_EQ(snap.seq, 1u);
  EXPECT_EQ(snap.request_id, 5u);
  EXPECT_EQ(snap.grants.size(), 3u);
  b.grant_pending(ip("192.0.2.1"), "ssh-only", 99);
  b.grant_changed(GrantOp::extend, records[1], "");
  b.grant_changed(GrantOp::remove, records[2], "expired");
  ASSERT_EQ(s->sent.size(), 4u);
  uint64_t expected = 2;
  for (size_t i = 1; i < 4; ++i) {
    const auto& d = std::get<kg::ipc::GrantDelta>(s->sent[i]);
    EXPECT_EQ(d.seq, expected++);
  }
  EXPECT_EQ(std::get<kg::ipc::GrantDelta>(s->sent[1]).op, GrantOp::pending);
  EXPECT_EQ(std::get<kg::ipc::GrantDelta>(s->sent[3]).reason, "expired");
  // Feed events only go to feed subscribers.
  kg::ipc::FeedEvent f;
  f.kind = "knock";
  b.feed(f);
  EXPECT_EQ(s->sent.size(), 4u);
  auto feeder = std::make_shared<FakeSession>(2, 65536);
  sub.topics = kg::ipc::kTopicFeed;
  ASSERT_TRUE(b.subscribe(feeder, sub));
  EXPECT_TRUE(feeder->sent.empty());  // no snapshot without the grants topic
  b.feed(f);
  ASSERT_EQ(feeder->sent.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<kg::ipc::FeedEvent>(feeder->sent[0]));
}

TEST(Broadcast, SlowSubscriberIsDroppedAndOthersKeepGoing) {
  auto records = many_records(1);
  kg::policyd::Broadcaster b([&] { return records; });
  auto slow = std::make_shared<FakeSession>(1, 65536, 3);
  auto fast = std::make_shared<FakeSession>(2, 65536);
  kg::ipc::Subscribe sub;
  ASSERT_TRUE(b.subscribe(slow, sub));
  ASSERT_TRUE(b.subscribe(fast, sub));
  for (int i = 0; i < 10; ++i) b.grant_changed(GrantOp::extend, records[0], "");
  EXPECT_FALSE(slow->is_open());
  EXPECT_EQ(b.subscriber_count(), 1u);
  EXPECT_EQ(b.subscribers_dropped(), 1u);
  EXPECT_EQ(fast->sent.size(), 11u);
  // Resubscribing gets a fresh snapshot at the current seq.
  auto back = std::make_shared<FakeSession>(3, 1024);
  ASSERT_TRUE(b.subscribe(back, sub));
  EXPECT_EQ(std::get<kg::ipc::GrantSnapshot>(back->sent[0]).seq, 10u);
}

// ---------------------------------------------------------------- control commands

namespace {

class ControlTest : public GrantsTest {
 protected:
  void SetUp() override {
    GrantsTest::SetUp();
    auto parsed = kg::config::parse_text(
        "[options]\n  Interface = eth0\n  WanInterface = eth0\n"
        "[profile ssh-only]\n  direction = inbound\n  expose = tcp/22 -> 192.168.50.10:22\n"
        "  fwmark = 0x10000000/0xff000000\n  table = 100\n  lifetime = 1h\n"
        "  max_lifetime = 8h\n"
        "[openSSH]\n  sequence = 7000,8000,9000\n  grant = ssh-only\n",
        "test.conf");
    ASSERT_TRUE(parsed.config) << (parsed.errors.empty() ? "" : parsed.errors[0].str());
    config_ = *parsed.config;
    open_core({profile("ssh-only", 1h, 8h)});
    Control::Hooks hooks;
    hooks.config = [this]() -> const kg::config::Config& { return config_; };
    hooks.status = [] {
      kg::policyd::StatusInfo s;
      s.version = "t";
      s.pid = 1;
      s.captured = std::vector<kg::ipc::StatusEntry>{{"packets", uint64_t{12}}};
      return s;
    };
    hooks.reload = [this]() -> kg::Result<std::string> {
      ++reloads_;
      return std::string("reloaded");
    };
    control_ = std::make_unique<Control>(*core_, hooks);
  }
  kg::ipc::ControlReply run(kg::ipc::Role role, std::string command,
                            std::vector<std::string> args) {
    kg::ipc::ControlRequest r;
    r.request_id = 77;
    r.command = std::move(command);
    r.args = std::move(args);
    kg::policyd::Caller c;
    c.role = role;
    c.user = "root";
    auto reply = control_->handle(c, r);
    EXPECT_EQ(reply.request_id, 77u);
    return reply;
  }
  kg::ipc::ControlReply ctl(std::string command, std::vector<std::string> args = {}) {
    return run(kg::ipc::Role::ctl, std::move(command), std::move(args));
  }
  kg::config::Config config_;
  std::unique_ptr<Control> control_;
  int reloads_ = 0;
};

}  // namespace

TEST_F(ControlTest, GrantListExtendRevokeWithJsonAndExitCodes) {
  auto g = ctl("grant", {"203.0.113.10", "ssh-only", "--for", "10m", "--json"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_NE(g.out.find("\"grant\":{\"id\":1,\"source\":\"203.0.113.10\""), std::string::npos)
      << g.out;
  EXPECT_NE(g.out.find("\"method\":\"ctl\",\"origin\":\"ctl:root\""), std::string::npos);
  EXPECT_NE(g.out.find("\"fwmark\":\"0x10000000/0xff000000\""), std::string::npos);
  EXPECT_NE(g.out.find("\"revoked_by\":null"), std::string::npos);
  EXPECT_EQ(g.out.back(), '\n');

  auto list = ctl("grants", {"--json"});
  ASSERT_EQ(list.exit_code, 0);
  EXPECT_EQ(list.out.rfind("{\"grants\":[{\"id\":1,", 0), 0u) << list.out;
  auto text = ctl("grants");
  EXPECT_NE(text.out.find("203.0.113.10"), std::string::npos);
  EXPECT_NE(text.out.find("ID"), std::string::npos);
  EXPECT_EQ(ctl("grants", {"--source", "192.0.2.99", "--json"}).out, "{\"grants\":[]}\n");
  EXPECT_EQ(ctl("grants", {"--source", "nonsense"}).exit_code, 2);

  auto ext = ctl("extend", {"1", "--for", "2h", "--json"});
  EXPECT_EQ(ext.exit_code, 0) << ext.err;
  EXPECT_EQ(ctl("extend", {"99"}).exit_code, 3);
  EXPECT_EQ(ctl("extend", {"x"}).exit_code, 2);
  EXPECT_EQ(ctl("extend", {"1", "--for", "soon"}).exit_code, 2);

  auto rv = ctl("revoke", {"203.0.113.10", "--json"});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
  EXPECT_NE(rv.out.find("\"revoked\":[{\"id\":1"), std::string::npos);
  EXPECT_NE(rv.out.find("\"state\":\"revoked\",\"revoked_by\":\"ctl:root\""), std::string::npos)
      << rv.out;
  auto again = ctl("revoke", {"1"});
  EXPECT_EQ(again.exit_code, 3);
  EXPECT_FALSE(again.err.empty());
  EXPECT_EQ(ctl("revoke", {"not-an-address"}).exit_code, 2);
  EXPECT_EQ(
      ctl("grants", {"--all", "--json"}).out.find("\"state\":\"revoked\"") != std::string::npos,
      true);
}

TEST_F(ControlTest, UsageAndUnknowns) {
  EXPECT_EQ(ctl("frobnicate").exit_code, 2);
  EXPECT_EQ(ctl("grant", {"203.0.113.10"}).exit_code, 2);
  EXPECT_EQ(ctl("grant", {"nonsense", "ssh-only"}).exit_code, 2);
  EXPECT_EQ(ctl("grant", {"203.0.113.10", "nope"}).exit_code, 3);
  EXPECT_EQ(ctl("grants", {"--bogus"}).exit_code, 2);
  EXPECT_EQ(ctl("grants", {"--source"}).exit_code, 2);
  EXPECT_EQ(ctl("audit", {"--limit", "0"}).exit_code, 2);
  EXPECT_EQ(ctl("audit", {"--since", "yesterday"}).exit_code, 2);
}

TEST_F(ControlTest, GrantForAnAddressThatIsNeverAClientIsRefused) {
  const std::pair<const char*, const char*> cases[] = {
      {"0.0.0.0", "an unspecified address (0.0.0.0/8)"},
      {"::", "the unspecified address (::)"},
      {"255.255.255.255", "the broadcast address (255.255.255.255)"},
      {"239.1.2.3", "a multicast address (224.0.0.0/4)"},
      {"ff05::2", "a multicast address (ff00::/8)"},
      {"127.0.0.1", "a loopback address (127.0.0.0/8)"},
      {"::1", "the loopback address (::1)"},
      {"::ffff:203.0.113.10", "an IPv4-mapped address (::ffff:0:0/96)"}};
  for (const auto& [source, why] : cases) {
    auto g = ctl("grant", {source, "ssh-only"});
    EXPECT_EQ(g.exit_code, 2) << source;
    EXPECT_EQ(g.err, "refusing a grant for " + std::string(source) + ": " + why +
                         " is never a client's source\n")
        << source;
    auto many = ctl("grant-many", {"ssh-only", "203.0.113.10", source});
    EXPECT_EQ(many.exit_code, 2) << source;
  }
  auto web = run(kg::ipc::Role::webd, "grant", {"--as", "alice", "127.0.0.1", "ssh-only"});
  EXPECT_EQ(web.exit_code, 2);
  EXPECT_EQ(ctl("grants", {"--all", "--json"}).out, "{\"grants\":[]}\n");
}

TEST_F(ControlTest, RolesAndAs) {
  using kg::ipc::Role;
  EXPECT_EQ(run(Role::captured, "grants", {}).exit_code, 4);
  EXPECT_EQ(run(Role::verdictd, "status", {}).exit_code, 4);
  // webd: read freely, change only as a named web user, never reload.
  EXPECT_EQ(run(Role::webd, "grants", {"--json"}).exit_code, 0);
  EXPECT_EQ(run(Role::webd, "grant", {"203.0.113.10", "ssh-only"}).exit_code, 4);
  EXPECT_EQ(run(Role::webd, "reload", {"--as", "alice"}).exit_code, 4);
  EXPECT_EQ(run(Role::webd, "grant-many", {"--as", "alice", "ssh-only", "192.0.2.1"}).exit_code, 4);
  auto g = run(Role::webd, "grant", {"--as", "alice", "203.0.113.10", "ssh-only", "--json"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_NE(g.out.find("\"method\":\"api\",\"origin\":\"web:alice\""), std::string::npos);
  EXPECT_EQ(run(Role::webd, "revoke", {"203.0.113.10", "--as", "alice"}).exit_code, 2);
  auto rv = run(Role::webd, "revoke", {"--as", "alice", "1", "--json"});
  EXPECT_EQ(rv.exit_code, 0);
  EXPECT_NE(rv.out.find("\"revoked_by\":\"web:alice\""), std::string::npos);
  // --as from ctl: permission denied.
  EXPECT_EQ(ctl("grant", {"--as", "alice", "203.0.113.10", "ssh-only"}).exit_code, 4);
  EXPECT_EQ(ctl("reload").exit_code, 0);
  EXPECT_EQ(reloads_, 1);
}

TEST_F(ControlTest, AuditPagesNewestFirst) {
  for (int i = 0; i < 5; ++i) {
    ctl("grant", {"192.0.2." + std::to_string(i + 1), "ssh-only"});
  }
  auto page = ctl("audit", {"--kind", "grant_create", "--limit", "3", "--json"});
  ASSERT_EQ(page.exit_code, 0) << page.err;
  EXPECT_NE(page.out.find("\"source\":\"192.0.2.5\""), std::string::npos);
  EXPECT_EQ(page.out.find("\"source\":\"192.0.2.1\""), std::string::npos);
  const auto pos = page.out.find("\"next_before\":");
  ASSERT_NE(pos, std::string::npos);
  const std::string next = page.out.substr(pos + 14, page.out.find('}', pos) - pos - 14);
  ASSERT_NE(next, "null");
  auto rest = ctl("audit", {"--kind", "grant_create", "--limit", "3", "--before", next, "--json"});
  EXPECT_NE(rest.out.find("\"source\":\"192.0.2.1\""), std::string::npos);
  EXPECT_NE(rest.out.find("\"next_before\":null"), std::string::npos);
  auto by_source = ctl("audit", {"--source", "192.0.2.2"});
  EXPECT_NE(by_source.out.find("grant_create"), std::string::npos);
  EXPECT_EQ(by_source.out.find("192.0.2.3"), std::string::npos);
  auto since = ctl("audit", {"--since", "1h", "--json"});
  EXPECT_NE(since.out.find("grant_create"), std::string::npos);
  auto until = ctl("audit", {"--until", "2000-01-01T00:00:00Z", "--json"});
  EXPECT_EQ(until.out, "{\"entries\":[],\"next_before\":null}\n");
}

TEST_F(ControlTest, StatusProfilesDoors) {
  auto st = ctl("status", {"--json"});
  ASSERT_EQ(st.exit_code, 0);
  EXPECT_NE(st.out.find("\"policyd\":{\"version\":\"t\""), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("\"captured\":{\"connected\":true"), std::string::npos);
  EXPECT_NE(st.out.find("\"packets\":12"), std::string::npos);
  EXPECT_NE(ctl("status").out.find("captured"), std::string::npos);
  auto pr = ctl("profiles", {"--json"});
  EXPECT_NE(pr.out.find("\"name\":\"ssh-only\",\"direction\":\"inbound\""), std::string::npos)
      << pr.out;
  EXPECT_NE(pr.out.find("\"lifetime_s\":3600,\"max_lifetime_s\":28800"), std::string::npos);
  auto dr = ctl("doors", {"--json"});
  EXPECT_NE(dr.out.find("\"name\":\"openSSH\",\"sequence\":\"7000:tcp,8000:tcp,9000:tcp\""),
            std::string::npos)
      << dr.out;
  EXPECT_NE(dr.out.find("\"grant\":\"ssh-only\""), std::string::npos);
}

TEST(ControlTime, ParsesTheDocumentedForms) {
  const int64_t now = 1'700'000'000'000'000'000;
  EXPECT_EQ(*kg::policyd::parse_control_time("1700000000000000000", now), now);
  EXPECT_EQ(*kg::policyd::parse_control_time("10m", now), now - 600'000'000'000);
  EXPECT_EQ(*kg::policyd::parse_control_time("2023-11-14T22:13:20Z", now), now);
  EXPECT_FALSE(kg::policyd::parse_control_time("2023-11-14T22:13:20+01", now));
  EXPECT_EQ(kg::policyd::iso_time(now), "2023-11-14T22:13:20.000Z");
}

TEST_F(ControlTest, LoginLockoutIsAuditedForWebdOnly) {
  using kg::ipc::Role;
  const std::vector<std::string> account = {"--account",  "--json", "--source", "198.51.100.7",
                                            "--failures", "6",      "--delay",  "1"};
  EXPECT_EQ(ctl("login-lockout", account).exit_code, 4);
  EXPECT_EQ(audit_count("web_login_lockout"), 0u);
  auto r = run(Role::webd, "login-lockout", account);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run(Role::webd, "login-lockout",
          {"--source", "2001:db8::1", "--failures", "7", "--delay", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(audit_count("web_login_lockout"), 2u);
  auto rows = ctl("audit", {"--kind", "web_login_lockout", "--json"});
  EXPECT_NE(rows.out.find("\"source\":\"198.51.100.7\""), std::string::npos) << rows.out;
  // A user name that looks like an option is still the value.
  EXPECT_NE(rows.out.find(R"(\"account\":\"--json\",\"failures\":6,\"delay_s\":1)"),
            std::string::npos)
      << rows.out;
  EXPECT_NE(rows.out.find(R"({\"scope\":\"source\",\"failures\":7,\"delay_s\":2})"),
            std::string::npos)
      << rows.out;
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--source", "nowhere", "--failures", "6", "--delay", "1"},
        {"--source", "192.0.2.1", "--failures", "-1", "--delay", "1"},
        {"--source", "192.0.2.1", "--failures", "6"},
        {"--account", std::string(65, 'a'), "--source", "192.0.2.1", "--failures", "6", "--delay",
         "1"}}) {
    EXPECT_EQ(run(Role::webd, "login-lockout", bad).exit_code, 2) << bad[1];
  }
  EXPECT_EQ(audit_count("web_login_lockout"), 2u);
}
