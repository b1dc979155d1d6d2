// knockgate-webd's pieces without sockets: JSON reader/writer, request-target parsing,
// cookies, sessions and their timeouts, the login throttle, password and token stores,
// feed counters.
#include <gtest/gtest.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include "webd/auth.h"
#include "webd/feed_stats.h"
#include "webd/http.h"
#include "webd/json.h"
#include "webd/login_throttle.h"
#include "webd/server.h"

namespace kg::webd {
namespace {

using namespace std::chrono_literals;

class Sodium : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_GE(sodium_init(), 0); }
};
const auto* const kSodium = ::testing::AddGlobalTestEnvironment(new Sodium);

std::string temp_file(const std::string& text) {
  char path[] = "/tmp/webd_test.XXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  return path;
}

TEST(Json, ParsesAndSerialises) {
  auto v = json::parse(
      R"( {"a": [1, 2.5, -3e2, true, false, null], "b": "x\"\\\n\u00e9\ud83d\ude00"} )");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(json::serialize(*v),
            "{\"a\":[1,2.5,-300,true,false,null],\"b\":\"x\\\"\\\\\\n\xc3\xa9\xf0\x9f\x98\x80\"}");
  EXPECT_EQ(*v->find("b")->as_string(), "x\"\\\n\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(Json, RejectsBadInput) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "01x", "\"\\ud800\"", "\"a\nb\"", "nul",
                          "1 2", "{\"a\":1,}", "-", "1.", "\"\\x\""}) {
    EXPECT_FALSE(json::parse(bad)) << bad;
  }
  EXPECT_FALSE(json::parse(std::string(100, '[') + std::string(100, ']')));  // too deep
  EXPECT_TRUE(json::parse(std::string(30, '[') + std::string(30, ']')));
}

TEST(Json, QuoteEscapesMarkupAndControls) {
  EXPECT_EQ(json::quote("<script>&\x01"), "\"\\u003cscript\\u003e\\u0026\\u0001\"");
}

TEST(Http, TargetAndQuery) {
  auto t = parse_target("/api/v1/grants?source=203.0.113.1&profile=ssh%2Donly&all&x=a+b");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->path, "/api/v1/grants");
  EXPECT_EQ(t->query["source"], "203.0.113.1");
  EXPECT_EQ(t->query["profile"], "ssh-only");
  EXPECT_EQ(t->query["all"], "");
  EXPECT_EQ(t->query["x"], "a b");
  EXPECT_FALSE(parse_target("/a%2"));
  EXPECT_FALSE(parse_target("/a%zz"));
  EXPECT_FALSE(parse_target("/a%00"));
  EXPECT_FALSE(parse_target("*"));
  std::string many = "/x?";
  for (int i = 0; i < 40; ++i) many += "k" + std::to_string(i) + "=1&";
  EXPECT_FALSE(parse_target(many));
}

TEST(Http, Cookies) {
  EXPECT_EQ(cookie_value("a=1; kg_session=abc; b=2", "kg_session"), "abc");
  EXPECT_EQ(cookie_value("kg_session=x", "kg_session"), "x");
  EXPECT_EQ(cookie_value("xkg_session=x", "kg_session"), "");
  EXPECT_EQ(cookie_value("", "kg_session"), "");
}

TEST(Sessions, IdleAndAbsoluteTimeouts) {
  SessionStore::Limits limits;
  limits.idle = 10s;
  limits.absolute = 25s;
  SessionStore store(limits);
  const auto t0 = Clock::now();
  const Session& s = store.create("admin", t0);
  const std::string id = s.id;
  EXPECT_EQ(id.size(), 64U);
  EXPECT_EQ(s.csrf_token.size(), 64U);
  EXPECT_NE(s.csrf_token, id);
  ASSERT_NE(store.find(id, t0 + 9s), nullptr);
  ASSERT_NE(store.find(id, t0 + 18s), nullptr);  // touched at 9 s
  EXPECT_EQ(store.find(id, t0 + 26s), nullptr);  // absolute limit despite activity
  const std::string id2 = store.create("admin", t0).id;
  EXPECT_EQ(store.find(id2, t0 + 11s), nullptr);  // idle
  EXPECT_EQ(store.size(), 0U);
}

TEST(Sessions, BoundedCountEvictsLeastRecentlyUsed) {
  SessionStore::Limits limits;
  limits.max_sessions = 2;
  SessionStore store(limits);
  const auto t0 = Clock::now();
  const std::string a = store.create("a", t0).id;
  const std::string b = store.create("b", t0 + 1s).id;
  ASSERT_NE(store.find(a, t0 + 2s), nullptr);  // a used after b
  const std::string c = store.create("c", t0 + 3s).id;
  EXPECT_EQ(store.size(), 2U);
  EXPECT_EQ(store.find(b, t0 + 3s), nullptr);
  EXPECT_NE(store.find(a, t0 + 3s), nullptr);
  EXPECT_NE(store.find(c, t0 + 3s), nullptr);
}

LoginThrottle::Limits throttle_limits(size_t free_failures, std::chrono::seconds first,
                                      std::chrono::seconds cap) {
  LoginThrottle::Limits l;
  l.free_failures = free_failures;
  l.first_delay = first;
  l.max_delay = cap;
  return l;
}

std::string source_of(int i) {
  return "198.51.100." + std::to_string(i);
}

TEST(LoginThrottle, FailuresFromManySourcesThrottleTheAccount) {
  // Sources get more free failures than the account: each of 10 sources stays below its
  // own threshold, so only the account can stop the spread-out guessing.
  LoginThrottle t(throttle_limits(5, 1s, 900s), throttle_limits(10, 1s, 900s));
  const auto t0 = LoginThrottle::Clock::now();
  auto now = t0;
  size_t checked = 0;
  size_t refused = 0;
  for (int i = 0; i < 50; ++i) {
    const std::string source = source_of(i % 10);
    if (t.wait("admin", source, now)) {
      ++refused;
    } else {
      ++checked;
      (void)t.failed("admin", source, now);
    }
    now += 100ms;
  }
  EXPECT_GT(refused, 40U);  // 50 tries in 5 s: the account waited after its free failures
  EXPECT_LT(checked, 10U);
  EXPECT_TRUE(t.wait("admin", source_of(99), now)) << "a fresh source waits too";
  EXPECT_FALSE(t.wait("someone-else", source_of(99), now)) << "other accounts do not";
}

TEST(LoginThrottle, DelaysDoubleUpToTheCapAndEachLockoutIsReported) {
  LoginThrottle t(throttle_limits(3, 1s, 8s), throttle_limits(1000, 1s, 8s));
  auto now = LoginThrottle::Clock::now();
  std::vector<int64_t> delays;
  for (int i = 0; i < 8; ++i) {
    ASSERT_FALSE(t.wait("ghost", source_of(1), now)) << i;
    const auto lockouts = t.failed("ghost", source_of(1), now);
    if (i < 3) {
      EXPECT_TRUE(lockouts.empty()) << i;
      continue;
    }
    ASSERT_EQ(lockouts.size(), 1U) << i;
    EXPECT_EQ(lockouts[0].scope, LoginThrottle::Scope::account);
    EXPECT_EQ(lockouts[0].key, "ghost");
    EXPECT_EQ(lockouts[0].failures, static_cast<size_t>(i + 1));
    delays.push_back(lockouts[0].delay.count());
    auto wait = t.wait("ghost", source_of(2), now);
    ASSERT_TRUE(wait);
    EXPECT_EQ(*wait, lockouts[0].delay);
    now += lockouts[0].delay;  // exactly when the wait ends the next attempt is checked
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{1, 2, 4, 8, 8}));
}

TEST(LoginThrottle, RightPasswordAfterTheDelaySucceedsAndResets) {
  LoginThrottle t(throttle_limits(2, 4s, 60s), throttle_limits(2, 4s, 60s));
  auto now = LoginThrottle::Clock::now();
  for (int i = 0; i < 3; ++i) (void)t.failed("admin", source_of(1), now);
  auto wait = t.wait("admin", source_of(1), now + 1s);
  ASSERT_TRUE(wait);
  EXPECT_EQ(wait->count(), 3);  // rounded up, never 0 while waiting
  EXPECT_TRUE(t.wait("admin", source_of(1), now + 3999ms));
  EXPECT_FALSE(t.wait("admin", source_of(1), now + 4s)) << "the password is checked again";
  t.succeeded("admin", source_of(1));
  EXPECT_EQ(t.tracked(LoginThrottle::Scope::account), 0U);
  EXPECT_EQ(t.tracked(LoginThrottle::Scope::source), 0U);
  // Afresh: the free failures are free again.
  EXPECT_TRUE(t.failed("admin", source_of(1), now + 5s).empty());
}

TEST(LoginThrottle, SourceThrottleCoversEveryAccountItTries) {
  LoginThrottle t(throttle_limits(100, 1s, 60s), throttle_limits(3, 2s, 60s));
  auto now = LoginThrottle::Clock::now();
  std::vector<LoginThrottle::Lockout> last;
  for (int i = 0; i < 4; ++i) last = t.failed("user" + std::to_string(i), source_of(7), now);
  ASSERT_EQ(last.size(), 1U);
  EXPECT_EQ(last[0].scope, LoginThrottle::Scope::source);
  EXPECT_EQ(last[0].key, source_of(7));
  EXPECT_EQ(last[0].delay, 2s);
  EXPECT_TRUE(t.wait("user-never-tried", source_of(7), now + 1s));
  EXPECT_FALSE(t.wait("user-never-tried", source_of(8), now + 1s));
}

TEST(LoginThrottle, MemoryIsBoundedOldestEvictedAndQuietKeysForgotten) {
  LoginThrottle::Limits accounts = throttle_limits(0, 10s, 10s);
  accounts.max_keys = 100;
  accounts.forget_after = 600s;
  LoginThrottle::Limits sources = accounts;
  LoginThrottle t(accounts, sources);
  auto now = LoginThrottle::Clock::now();
  for (int i = 0; i < 1000; ++i) {
    (void)t.failed("name" + std::to_string(i), "2001:db8::" + std::to_string(i), now);
    now += 1ms;
  }
  EXPECT_EQ(t.tracked(LoginThrottle::Scope::account), 100U);
  EXPECT_EQ(t.tracked(LoginThrottle::Scope::source), 100U);
  EXPECT_FALSE(t.wait("name0", "2001:db8::ffff", now)) << "the oldest went first";
  EXPECT_TRUE(t.wait("name999", "2001:db8::ffff", now));
  // A key that fails again moves to the back of the eviction order.
  (void)t.failed("name900", "2001:db8::ffff", now);
  for (int i = 1000; i < 1099; ++i) (void)t.failed("name" + std::to_string(i), "2001:db8::1", now);
  EXPECT_TRUE(t.wait("name900", "2001:db8::1:1", now));
  EXPECT_FALSE(t.wait("name901", "2001:db8::1:1", now));
  // Nothing failed for forget_after: everything is dropped on the next look.
  EXPECT_FALSE(t.wait("name900", "2001:db8::1", now + 601s));
  EXPECT_EQ(t.tracked(LoginThrottle::Scope::account), 0U);
}

TEST(DescriptorLimit, SystemdUnitCoversMaxConnectionsAndReserve) {
  std::ifstream unit(std::string(KG_SOURCE_DIR) + "/etc/systemd/knockgate-webd.service");
  ASSERT_TRUE(unit);
  std::string line;
  std::optional<size_t> limit;
  while (std::getline(unit, line)) {
    if (line.rfind("LimitNOFILE=", 0) == 0) limit = std::stoul(line.substr(12));
  }
  ASSERT_TRUE(limit) << "the unit sets LimitNOFILE";
  EXPECT_GE(*limit, ServerOptions{}.max_connections + kReservedDescriptors);
}

TEST(Passwords, VerifiesArgon2idAndReloadsOnChange) {
  char hash[crypto_pwhash_STRBYTES];
  ASSERT_EQ(crypto_pwhash_str(hash, "secret99", 8, 2, size_t{19} << 20), 0);
  const std::string path = temp_file(std::string("admin:") + hash + "\n");
  PasswordStore store(path);
  ASSERT_TRUE(store.load());
  EXPECT_TRUE(store.verify("admin", "secret99"));
  EXPECT_FALSE(store.verify("admin", "secret98"));
  EXPECT_FALSE(store.verify("root", "secret99"));
  EXPECT_FALSE(store.verify("", ""));
  {
    std::ofstream out(path);
    out << "other:" << hash << "\nmore:" << hash << "\n";  // size changes: reloaded
  }
  EXPECT_FALSE(store.verify("admin", "secret99"));
  EXPECT_TRUE(store.verify("other", "secret99"));
  ::unlink(path.c_str());
  EXPECT_FALSE(store.verify("other", "secret99"));  // file gone: nobody
  const std::string bad = temp_file("admin:$2y$10$notargon\n");
  PasswordStore bad_store(bad);
  EXPECT_FALSE(bad_store.load());
  ::unlink(bad.c_str());
}

TEST(Tokens, StoredHashedComparedExactly) {
  const std::string token = "kgt_" + std::string(63, 'a') + "b";
  const std::string path = temp_file("ci:" + TokenStore::hash_hex(token) + "\n");
  TokenStore store(path);
  ASSERT_TRUE(store.load());
  EXPECT_EQ(store.verify(token), "ci");
  EXPECT_FALSE(store.verify("kgt_" + std::string(64, 'a')));
  EXPECT_FALSE(store.verify(token.substr(0, 67)));
  EXPECT_FALSE(store.verify(TokenStore::hash_hex(token)));  // the hash is not the token
  ::unlink(path.c_str());
}

TEST(FeedStats, CountsKindsReasonsAndBuckets) {
  FeedStats stats;
  ipc::FeedEvent e;
  e.time_ns = 600LL * 1'000'000'000;  // minute 10
  e.kind = "knock";
  stats.add(e);
  e.kind = "reject";
  e.detail_json = R"({"reason":"replay"})";
  stats.add(e);
  e.detail_json = "not json";
  stats.add(e);
  e.kind = "grant";
  stats.add(e);
  EXPECT_EQ(stats.by_kind().at("knock"), 1U);
  EXPECT_EQ(stats.by_kind().at("reject"), 2U);
  EXPECT_EQ(stats.rejects_by_reason().at("replay"), 1U);
  EXPECT_EQ(stats.rejects_by_reason().at("unknown"), 1U);
  const std::string j = stats.json(11);
  EXPECT_NE(j.find("{\"t\":600,\"knocks\":1,\"rejects\":2}"), std::string::npos) << j;
  EXPECT_NE(j.find("{\"t\":660,\"knocks\":0,\"rejects\":0}"), std::string::npos) << j;
  auto parsed = json::parse(j);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->find("buckets")->as_array()->size(), FeedStats::kBuckets);
}

}  // namespace
}  // namespace kg::webd
