// verdictd's packet path: profiles compiled from a config, the grant cache (IPv4/IPv6,
// expiry, deletion), snapshot/delta synchronisation with gaps, decisions on crafted
// packets (truncated copies, fragments, ICMP errors, IPv6 extension headers), the hold
// table's bounds, and no allocation per packet.
#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "verdictd/decision.h"
#include "verdictd/grant_cache.h"
#include "verdictd/grant_sync.h"
#include "verdictd/hold_table.h"
#include "verdictd/profiles.h"

namespace {
bool g_count_allocations = false;
size_t g_allocations = 0;
void* counted_alloc(size_t size) noexcept {
  if (g_count_allocations) ++g_allocations;
  return std::malloc(size == 0 ? 1 : size);
}
}  // namespace

void* operator new(size_t size) {
  if (void* p = counted_alloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) {
  if (void* p = counted_alloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  return counted_alloc(size);
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return counted_alloc(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace kg::verdictd {
namespace {

constexpr const char* kConf = R"([options]
  Interface = kg-wan
  WanInterface = kg-wan
[profile ssh-only]
  direction = inbound
  expose = tcp/22 -> 192.168.50.10:22
  expose = tcp/2222 -> [fd00:50::10]:22
  fwmark = 0x10000000/0xff000000
  table = 100
[profile syslog-only]
  direction = egress
  sources = 192.168.50.20
  allow = udp/514,tcp/514,icmp
  destination = 192.168.60.0/24
  fwmark = 0x20000000/0xff000000
  table = 120
[profile web-out]
  direction = egress
  allow = tcp/80-443
  destination = 198.51.100.0/24
  fwmark = 0x30000000/0xff000000
  table = 130
)";

constexpr int64_t kSec = 1000000000;
constexpr int64_t kNow = 1700000000 * kSec;

config::Config load() {
  auto r = config::parse_text(kConf, "t.conf");
  if (!r.config) {
    for (const auto& d : r.errors) ADD_FAILURE() << d.str();
    std::abort();
  }
  return *r.config;
}

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

Flow tcp(const char* src, const char* dst, uint16_t port) {
  Flow f;
  f.src = ip(src);
  f.dst = ip(dst);
  f.proto = 6;
  f.has_ports = true;
  f.dport = port;
  return f;
}

ipc::GrantRecord grant(uint64_t id, const char* src, const char* profile, int64_t expires,
                       uint32_t mark = 0x10000000) {
  ipc::GrantRecord g;
  g.id = id;
  g.source = ip(src);
  g.profile = profile;
  g.expires_ns = expires;
  g.created_ns = kNow - kSec;
  g.fwmark = mark;
  g.fwmark_mask = 0xff000000;
  return g;
}

// ---- crafted packets
void put16(std::vector<uint8_t>& p, size_t at, uint16_t v) {
  p[at] = static_cast<uint8_t>(v >> 8);
  p[at + 1] = static_cast<uint8_t>(v);
}

std::vector<uint8_t> ipv4(const char* src, const char* dst, uint8_t proto, std::vector<uint8_t> l4,
                          uint16_t frag = 0) {
  std::vector<uint8_t> p(20);
  p[0] = 0x45;
  put16(p, 2, static_cast<uint16_t>(20 + l4.size()));
  put16(p, 6, frag);
  p[8] = 64;
  p[9] = proto;
  const IpAddr s = ip(src), d = ip(dst);
  std::copy(s.data(), s.data() + 4, p.begin() + 12);
  std::copy(d.data(), d.data() + 4, p.begin() + 16);
  p.insert(p.end(), l4.begin(), l4.end());
  return p;
}

std::vector<uint8_t> tcp_syn(uint16_t dport) {
  std::vector<uint8_t> t(20);
  put16(t, 0, 40000);
  put16(t, 2, dport);
  t[12] = 0x50;
  t[13] = 0x02;
  return t;
}

std::vector<uint8_t> udp_hdr(uint16_t dport, size_t payload = 4) {
  std::vector<uint8_t> u(8 + payload);
  put16(u, 0, 40000);
  put16(u, 2, dport);
  put16(u, 4, static_cast<uint16_t>(8 + payload));
  return u;
}

std::vector<uint8_t> ipv6(const char* src, const char* dst, std::vector<uint8_t> ext_then_l4,
                          uint8_t first_next) {
  std::vector<uint8_t> p(40);
  p[0] = 0x60;
  put16(p, 4, static_cast<uint16_t>(ext_then_l4.size()));
  p[6] = first_next;
  p[7] = 64;
  const IpAddr s = ip(src), d = ip(dst);
  std::copy(s.data(), s.data() + 16, p.begin() + 8);
  std::copy(d.data(), d.data() + 16, p.begin() + 24);
  p.insert(p.end(), ext_then_l4.begin(), ext_then_l4.end());
  return p;
}

class VerdictTest : public ::testing::Test {
 protected:
  config::Config cfg = load();
  ProfileSet profiles{cfg};
  GrantCache cache{0x1234};
  uint16_t ssh = profiles.index_of("ssh-only");
  uint16_t syslog = profiles.index_of("syslog-only");
  uint16_t web = profiles.index_of("web-out");

  Decision decide_bytes(const std::vector<uint8_t>& bytes, size_t cut = SIZE_MAX) {
    Flow f;
    std::span<const uint8_t> view(bytes.data(), std::min(cut, bytes.size()));
    if (flow_from_packet(view, f) != packet::Status::ok) return Decision{};
    return decide(f, cache, profiles, kNow);
  }
};

TEST_F(VerdictTest, ProfilesCompile) {
  ASSERT_EQ(profiles.size(), 3U);
  EXPECT_NE(ssh, kNoProfile);
  EXPECT_EQ(profiles.index_of("nope"), kNoProfile);
  EXPECT_EQ(profiles.at(ssh).mark, 0x10000000U);
  EXPECT_EQ(profiles.at(ssh).mask, 0xff000000U);
  EXPECT_TRUE(profiles.at(ssh).matches(tcp("203.0.113.10", "192.168.50.10", 22)));
  EXPECT_FALSE(profiles.at(ssh).matches(tcp("203.0.113.10", "192.168.50.10", 23)));
  EXPECT_FALSE(profiles.at(ssh).matches(tcp("203.0.113.10", "192.168.50.11", 22)));
  Flow u = tcp("203.0.113.10", "192.168.50.10", 22);
  u.proto = 17;
  EXPECT_FALSE(profiles.at(ssh).matches(u));
  EXPECT_TRUE(profiles.at(ssh).matches(tcp("2001:db8:1::10", "fd00:50::10", 22)));
  EXPECT_TRUE(profiles.at(web).matches(tcp("192.168.50.30", "198.51.100.7", 443)));
  EXPECT_FALSE(profiles.at(web).matches(tcp("192.168.50.30", "198.51.100.7", 444)));
  EXPECT_FALSE(profiles.at(web).matches(tcp("192.168.50.30", "198.51.101.7", 80)));
}

TEST_F(VerdictTest, GrantLookupIpv4AndIpv6WithMark) {
  cache.upsert(grant(1, "203.0.113.10", "ssh-only", kNow + 60 * kSec), ssh);
  cache.upsert(grant(2, "2001:db8:1::10", "ssh-only", kNow + 60 * kSec), ssh);
  auto m = cache.find(tcp("203.0.113.10", "192.168.50.10", 22), profiles, kNow);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->grant_id, 1U);
  EXPECT_EQ(verdict_mark(0x00000abc, *m), 0x10000abcU);  // other bits kept
  EXPECT_EQ(verdict_mark(0x7f000001, *m), 0x10000001U);  // our bits replaced
  m = cache.find(tcp("2001:db8:1::10", "fd00:50::10", 22), profiles, kNow);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->grant_id, 2U);
  EXPECT_FALSE(cache.find(tcp("203.0.113.11", "192.168.50.10", 22), profiles, kNow));
  EXPECT_FALSE(cache.find(tcp("203.0.113.10", "192.168.50.10", 80), profiles, kNow));
  // An IPv4 address and the IPv6 address with the same leading bytes are different keys.
  cache.upsert(grant(3, "::cb00:710a", "ssh-only", kNow + 60 * kSec), ssh);
  EXPECT_EQ(cache.find(tcp("203.0.113.10", "192.168.50.10", 22), profiles, kNow)->grant_id, 1U);
}

TEST_F(VerdictTest, ExpiredGrantNeverMatchesEvenBeforeItsRemove) {
  cache.upsert(grant(1, "203.0.113.10", "ssh-only", kNow + kSec), ssh);
  const Flow f = tcp("203.0.113.10", "192.168.50.10", 22);
  EXPECT_TRUE(cache.find(f, profiles, kNow));
  EXPECT_FALSE(cache.find(f, profiles, kNow + kSec));  // expires_ns itself is too late
  EXPECT_EQ(decide(f, cache, profiles, kNow + 2 * kSec).verdict, Verdict::hold);
  EXPECT_TRUE(cache.extend(1, kNow + 10 * kSec));
  EXPECT_TRUE(cache.find(f, profiles, kNow + 2 * kSec));
  EXPECT_EQ(cache.purge(kNow + 20 * kSec), 1U);
  EXPECT_EQ(cache.grants(), 0U);
  EXPECT_EQ(cache.sources(), 0U);
}

TEST_F(VerdictTest, SeveralGrantsPerSourceAndRemoval) {
  cache.upsert(grant(1, "192.168.50.30", "web-out", kNow + 60 * kSec, 0x30000000), web);
  cache.upsert(grant(2, "192.168.50.30", "syslog-only", kNow + 60 * kSec, 0x20000000), syslog);
  auto m = cache.find(tcp("192.168.50.30", "198.51.100.1", 80), profiles, kNow);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->profile, web);
  m = cache.find(tcp("192.168.50.30", "192.168.60.5", 514), profiles, kNow);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->mark, 0x20000000U);
  EXPECT_TRUE(cache.remove(1));
  EXPECT_FALSE(cache.remove(1));
  EXPECT_FALSE(cache.find(tcp("192.168.50.30", "198.51.100.1", 80), profiles, kNow));
  EXPECT_TRUE(cache.find(tcp("192.168.50.30", "192.168.60.5", 514), profiles, kNow));
  EXPECT_EQ(cache.sources(), 1U);
  EXPECT_TRUE(cache.remove(2));
  EXPECT_EQ(cache.sources(), 0U);
}

TEST_F(VerdictTest, UnknownProfileNeverMatchesUntilReindexed) {
  cache.upsert(grant(1, "203.0.113.10", "ssh-only", kNow + 60 * kSec), kNoProfile);
  const Flow f = tcp("203.0.113.10", "192.168.50.10", 22);
  EXPECT_FALSE(cache.find(f, profiles, kNow));
  cache.reindex_profiles(profiles);
  EXPECT_TRUE(cache.find(f, profiles, kNow));
}

// Many sources in, many out: backward-shift deletion keeps every survivor reachable.
TEST_F(VerdictTest, HashTableChurnKeepsEveryEntryReachable) {
  std::mt19937 rng(7);
  std::vector<uint64_t> live;
  auto addr_of = [](uint64_t id) { return IpAddr::v4(static_cast<uint32_t>(0x0a000000U + id)); };
  for (uint64_t id = 1; id <= 20000; ++id) {
    ipc::GrantRecord g = grant(id, "10.0.0.1", "ssh-only", kNow + 60 * kSec);
    g.source = addr_of(id);
    cache.upsert(g, ssh);
    live.push_back(id);
    if (rng() % 3 == 0) {
      const size_t k = rng() % live.size();
      ASSERT_TRUE(cache.remove(live[k]));
      live[k] = live.back();
      live.pop_back();
    }
  }
  EXPECT_EQ(cache.grants(), live.size());
  EXPECT_EQ(cache.sources(), live.size());
  for (const uint64_t id : live) {
    Flow f = tcp("10.0.0.1", "192.168.50.10", 22);
    f.src = addr_of(id);
    ASSERT_TRUE(cache.find(f, profiles, kNow)) << id;
  }
  EXPECT_LE(cache.sources() * 2, cache.capacity());
}

TEST_F(VerdictTest, DecisionOrderOnCraftedPackets) {
  // Inbound, post-DNAT destination, no grant: held (its grant may be on the way).
  const auto syn = ipv4("203.0.113.10", "192.168.50.10", 6, tcp_syn(22));
  Decision d = decide_bytes(syn);
  EXPECT_EQ(d.verdict, Verdict::hold);
  // Granted: accepted with the grant's mark.
  cache.upsert(grant(1, "203.0.113.10", "ssh-only", kNow + 60 * kSec), ssh);
  d = decide_bytes(syn);
  EXPECT_EQ(d.verdict, Verdict::accept);
  EXPECT_EQ(d.reason, Reason::granted);
  EXPECT_EQ(d.match.mark, 0x10000000U);
  // The same source, another LAN port: it has a grant, not for this: dropped at once.
  d = decide_bytes(ipv4("203.0.113.10", "192.168.50.10", 6, tcp_syn(80)));
  EXPECT_EQ(d.verdict, Verdict::drop);
  EXPECT_EQ(d.reason, Reason::not_gated);
  cache.upsert(grant(2, "203.0.113.10", "web-out", kNow + 60 * kSec), web);
  d = decide_bytes(ipv4("203.0.113.10", "198.51.100.9", 6, tcp_syn(22)));
  EXPECT_EQ(d.reason, Reason::not_gated);
  d = decide_bytes(ipv4("203.0.113.10", "192.168.60.5", 17, udp_hdr(514)));
  EXPECT_EQ(d.verdict, Verdict::drop);
  EXPECT_EQ(d.reason, Reason::no_grant);  // syslog-only exists, the source lacks it
  // Static egress source: UDP and ICMP echo pass with the profile's mark.
  d = decide_bytes(ipv4("192.168.50.20", "192.168.60.5", 17, udp_hdr(514)));
  EXPECT_EQ(d.verdict, Verdict::accept);
  EXPECT_EQ(d.reason, Reason::static_source);
  EXPECT_EQ(d.match.mark, 0x20000000U);
  std::vector<uint8_t> echo(8);
  echo[0] = 8;
  d = decide_bytes(ipv4("192.168.50.20", "192.168.60.5", 1, echo));
  EXPECT_EQ(d.verdict, Verdict::accept);
  // ICMP error (port unreachable) that conntrack did not relate: dropped.
  std::vector<uint8_t> unreach(8 + 28);
  unreach[0] = 3;
  unreach[1] = 3;
  d = decide_bytes(ipv4("192.168.50.20", "192.168.60.5", 1, unreach));
  EXPECT_EQ(d.reason, Reason::icmp_error);
  // A later fragment carries no ports: dropped.
  d = decide_bytes(ipv4("192.168.50.20", "192.168.60.5", 17, udp_hdr(514), 0x0010));
  EXPECT_EQ(d.verdict, Verdict::drop);
  EXPECT_EQ(d.reason, Reason::fragment);
  // Garbage and cut headers: dropped, never read beyond the copy.
  EXPECT_EQ(decide_bytes({0x45, 0, 0}).reason, Reason::decode_error);
  EXPECT_EQ(decide_bytes(syn, 30).reason, Reason::decode_error);  // TCP header cut
  // Cut after the ports (the queue's copy range): still decided.
  auto big = ipv4("203.0.113.10", "192.168.50.10", 6, tcp_syn(22));
  big.resize(1400);
  put16(big, 2, 1400);
  EXPECT_EQ(decide_bytes(big, 64).verdict, Verdict::accept);
}

TEST_F(VerdictTest, Ipv6WithExtensionHeadersAndTruncatedCopy) {
  cache.upsert(grant(1, "2001:db8:1::10", "ssh-only", kNow + 60 * kSec), ssh);
  // Hop-by-hop, destination options, then TCP.
  std::vector<uint8_t> chain;
  chain.insert(chain.end(), {60, 0, 1, 4, 0, 0, 0, 0});  // hop-by-hop → dest options
  chain.insert(chain.end(), {6, 0, 1, 4, 0, 0, 0, 0});   // dest options → TCP
  const auto l4 = tcp_syn(22);
  chain.insert(chain.end(), l4.begin(), l4.end());
  const auto pkt = ipv6("2001:db8:1::10", "fd00:50::10", chain, 0);
  Decision d = decide_bytes(pkt);
  EXPECT_EQ(d.verdict, Verdict::accept);
  EXPECT_EQ(decide_bytes(pkt, 40 + 16 + 20).verdict, Verdict::accept);  // TCP header is in
  // The decoder wants the whole TCP header: a copy cut inside it fails closed.
  EXPECT_EQ(decide_bytes(pkt, 40 + 16 + 4).reason, Reason::decode_error);
  // A chain longer than the decoder walks: dropped.
  std::vector<uint8_t> longchain;
  for (int i = 0; i < 20; ++i) longchain.insert(longchain.end(), {60, 0, 1, 4, 0, 0, 0, 0});
  longchain.insert(longchain.end(), l4.begin(), l4.end());
  EXPECT_EQ(decide_bytes(ipv6("2001:db8:1::10", "fd00:50::10", longchain, 60)).verdict,
            Verdict::drop);
}

TEST_F(VerdictTest, PendingHoldsEvenASourceWithOtherGrants) {
  cache.upsert(grant(1, "203.0.113.10", "web-out", kNow + 60 * kSec, 0x30000000), web);
  const Flow f = tcp("203.0.113.10", "192.168.50.10", 22);
  EXPECT_EQ(decide(f, cache, profiles, kNow).reason, Reason::no_grant);
  cache.set_pending(f.src, kNow + kSec / 40);
  EXPECT_EQ(decide(f, cache, profiles, kNow).verdict, Verdict::hold);
  EXPECT_EQ(decide(f, cache, profiles, kNow + kSec).reason, Reason::no_grant);  // deadline past
  cache.clear_pending(f.src);
  EXPECT_EQ(decide(f, cache, profiles, kNow).reason, Reason::no_grant);
}

TEST_F(VerdictTest, PacketPathDoesNotAllocate) {
  for (uint64_t id = 1; id <= 1000; ++id) {
    ipc::GrantRecord g = grant(id, "10.0.0.1", "ssh-only", kNow + 60 * kSec);
    g.source = IpAddr::v4(static_cast<uint32_t>(0x0a000000U + id));
    cache.upsert(g, ssh);
  }
  const auto syn = ipv4("10.0.0.5", "192.168.50.10", 6, tcp_syn(22));
  const auto other = ipv4("10.9.0.5", "192.168.50.10", 6, tcp_syn(22));
  const auto egress = ipv4("192.168.50.20", "192.168.60.5", 17, udp_hdr(514));
  g_allocations = 0;
  g_count_allocations = true;
  Decision a = decide_bytes(syn), b = decide_bytes(other), c = decide_bytes(egress);
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 0U);
  EXPECT_EQ(a.verdict, Verdict::accept);
  EXPECT_EQ(b.verdict, Verdict::hold);
  EXPECT_EQ(c.verdict, Verdict::accept);
}

// ---- snapshot / delta synchronisation
ipc::GrantSnapshot snap(uint32_t req, uint64_t seq, bool first, bool last,
                        std::vector<ipc::GrantRecord> g) {
  ipc::GrantSnapshot s;
  s.request_id = req;
  s.seq = seq;
  s.first = first;
  s.last = last;
  s.grants = std::move(g);
  return s;
}

ipc::GrantDelta delta(uint64_t seq, ipc::GrantOp op, ipc::GrantRecord g) {
  ipc::GrantDelta d;
  d.seq = seq;
  d.op = op;
  d.grant = std::move(g);
  return d;
}

TEST_F(VerdictTest, SnapshotInChunksReplacesStateAtLast) {
  GrantSync sync(1, profiles);
  SyncChange ch;
  const auto sub = sync.subscribe();
  const Flow a = tcp("203.0.113.10", "192.168.50.10", 22);
  const Flow b = tcp("203.0.113.11", "192.168.50.10", 22);
  EXPECT_EQ(sync.on_snapshot(snap(sub.request_id, 5, true, false,
                                  {grant(1, "203.0.113.10", "ssh-only", kNow + kSec * 60)}),
                             ch),
            SyncAction::none);
  EXPECT_FALSE(sync.cache().find(a, profiles, kNow));  // not before `last`
  EXPECT_FALSE(ch.all);
  sync.on_snapshot(snap(sub.request_id, 5, false, true,
                        {grant(2, "203.0.113.11", "ssh-only", kNow + kSec * 60)}),
                   ch);
  EXPECT_TRUE(ch.all);
  EXPECT_TRUE(sync.synced());
  EXPECT_EQ(sync.seq(), 5U);
  EXPECT_TRUE(sync.cache().find(a, profiles, kNow));
  EXPECT_TRUE(sync.cache().find(b, profiles, kNow));

  // Deltas in order apply; a duplicate is ignored; a gap asks for a new snapshot and the
  // old state keeps serving until it is in.
  EXPECT_EQ(
      sync.on_delta(delta(6, ipc::GrantOp::remove, grant(1, "203.0.113.10", "ssh-only", kNow)), ch),
      SyncAction::none);
  EXPECT_FALSE(sync.cache().find(a, profiles, kNow));
  EXPECT_EQ(sync.on_delta(
                delta(6, ipc::GrantOp::add, grant(9, "203.0.113.10", "ssh-only", kNow + kSec)), ch),
            SyncAction::none);
  EXPECT_FALSE(sync.cache().find(a, profiles, kNow));  // duplicate seq ignored
  EXPECT_EQ(
      sync.on_delta(delta(8, ipc::GrantOp::remove, grant(2, "203.0.113.11", "ssh-only", kNow)), ch),
      SyncAction::resubscribe);
  EXPECT_TRUE(sync.cache().find(b, profiles, kNow));  // gap: not applied
  EXPECT_EQ(sync.stats().gaps, 1U);
  const auto sub2 = sync.subscribe();
  // Deltas before the new snapshot are covered by it; chunks of the old request ignored.
  sync.on_delta(delta(7, ipc::GrantOp::add, grant(3, "203.0.113.12", "ssh-only", kNow + kSec)), ch);
  sync.on_snapshot(snap(sub.request_id, 5, true, true, {}), ch);
  EXPECT_TRUE(sync.cache().find(b, profiles, kNow));  // still the old state
  ch = {};
  sync.on_snapshot(snap(sub2.request_id, 8, true, true,
                        {grant(3, "203.0.113.12", "ssh-only", kNow + kSec * 60)}),
                   ch);
  EXPECT_TRUE(ch.all);
  EXPECT_FALSE(sync.cache().find(b, profiles, kNow));
  EXPECT_TRUE(sync.cache().find(tcp("203.0.113.12", "192.168.50.10", 22), profiles, kNow));
  EXPECT_EQ(sync.seq(), 8U);
}

TEST_F(VerdictTest, DeltaOpsPendingAddExtend) {
  GrantSync sync(1, profiles);
  SyncChange ch;
  const auto sub = sync.subscribe();
  sync.on_snapshot(snap(sub.request_id, 1, true, true, {}), ch);
  const Flow a = tcp("203.0.113.10", "192.168.50.10", 22);
  ipc::GrantRecord p = grant(0, "203.0.113.10", "ssh-only", kNow + kSec / 40);
  ch = {};
  sync.on_delta(delta(2, ipc::GrantOp::pending, p), ch);
  ASSERT_EQ(ch.sources.size(), 1U);
  EXPECT_EQ(ch.sources[0], a.src);
  EXPECT_TRUE(sync.cache().state(a.src, kNow).pending);
  sync.on_delta(delta(3, ipc::GrantOp::add, grant(4, "203.0.113.10", "ssh-only", kNow + kSec)), ch);
  EXPECT_FALSE(sync.cache().state(a.src, kNow).pending);
  EXPECT_EQ(decide(a, sync.cache(), profiles, kNow).verdict, Verdict::accept);
  sync.on_delta(
      delta(4, ipc::GrantOp::extend, grant(4, "203.0.113.10", "ssh-only", kNow + 5 * kSec)), ch);
  EXPECT_EQ(decide(a, sync.cache(), profiles, kNow + 2 * kSec).verdict, Verdict::accept);
  // A snapshot chunk that does not start a snapshot: start over.
  const auto sub2 = sync.subscribe();
  EXPECT_EQ(sync.on_snapshot(snap(sub2.request_id, 9, false, true, {}), ch),
            SyncAction::resubscribe);
}

// ---- hold table
TEST(HoldTable, BoundedFifoWithEarlyResolution) {
  HoldTable t(4);
  auto held = [](uint32_t id, const char* src, int64_t deadline) {
    HeldPacket h;
    h.packet_id = id;
    h.flow.src = *IpAddr::parse(src);
    h.deadline_ns = deadline;
    return h;
  };
  EXPECT_TRUE(t.add(held(1, "192.0.2.1", 100)));
  EXPECT_TRUE(t.add(held(2, "192.0.2.2", 110)));
  EXPECT_TRUE(t.add(held(3, "192.0.2.1", 120)));
  EXPECT_TRUE(t.add(held(4, "192.0.2.3", 130)));
  EXPECT_FALSE(t.add(held(5, "192.0.2.4", 140)));  // full: the caller drops
  EXPECT_EQ(t.live(), 4U);
  std::vector<uint32_t> ids;
  EXPECT_EQ(t.resolve(*IpAddr::parse("192.0.2.1"),
                      [&](const HeldPacket& p) {
                        ids.push_back(p.packet_id);
                        return true;
                      }),
            2U);
  EXPECT_EQ(ids, (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(t.live(), 2U);
  EXPECT_EQ(*t.next_deadline(), 110);  // the dead front slot went away
  EXPECT_TRUE(t.add(held(6, "192.0.2.5", 150)));
  ids.clear();
  EXPECT_EQ(t.expire(125, [&](const HeldPacket& p) { ids.push_back(p.packet_id); }), 1U);
  EXPECT_EQ(ids, (std::vector<uint32_t>{2}));
  ids.clear();
  // Not resolved: stays.
  t.resolve(IpAddr{}, [&](const HeldPacket& p) {
    ids.push_back(p.packet_id);
    return false;
  });
  EXPECT_EQ(ids, (std::vector<uint32_t>{4, 6}));
  EXPECT_EQ(t.expire(INT64_MAX, [](const HeldPacket&) {}), 2U);
  EXPECT_FALSE(t.next_deadline());
  EXPECT_EQ(t.live(), 0U);
}

}  // namespace
}  // namespace kg::verdictd
