// The ruleset text generator (policyd/nft_ruleset.h): what the shipped profiles produce,
// IPv6, several WAN interfaces, fail-open vs fail-closed, queue ranges, name collisions
// and the set element commands. The kernel's acceptance of this text is checked by
// tests/integration/test_kernel_state.py.
#include "policyd/kernel/nft_ruleset.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using kg::IpAddr;
using kg::policyd::element_add_text;
using kg::policyd::element_delete_text;
using kg::policyd::GrantInstall;
using kg::policyd::QueueMode;
using kg::policyd::ruleset_text;

kg::config::Config parse(const std::string& text) {
  auto r = kg::config::parse_text(text, "t.conf");
  std::string errors;
  for (const auto& e : r.errors) errors += e.str() + "\n";
  EXPECT_TRUE(r.config.has_value()) << errors;
  return r.config ? *r.config : kg::config::Config{};
}

kg::config::Config shipped() {
  auto r = kg::config::parse_file(std::string(KG_SOURCE_DIR) + "/etc/knockgate.conf");
  EXPECT_TRUE(r.config.has_value());
  return *r.config;
}

// The chain's body: the lines between `chain NAME {` and its closing brace.
std::vector<std::string> chain(const std::string& text, const std::string& name) {
  std::vector<std::string> lines;
  size_t at = text.find("\tchain " + name + " {\n");
  if (at == std::string::npos) return lines;
  at = text.find('\n', at) + 1;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    std::string l = text.substr(at, end - at);
    if (l == "\t}") break;
    lines.push_back(l.substr(l.find_first_not_of('\t')));
    at = end + 1;
  }
  return lines;
}

constexpr int64_t kNow = 1'700'000'000'000'000'000;
constexpr int64_t kSecond = 1'000'000'000;

TEST(NftRuleset, IdentifiersAndCollisions) {
  EXPECT_EQ(kg::policyd::nft_identifier("ssh-only"), "ssh_only");
  EXPECT_EQ(kg::policyd::nft_identifier("a.b-c_d"), "a_b_c_d");
  EXPECT_EQ(kg::policyd::grant_set_name("syslog-only", kg::Family::v6), "grant6_syslog_only");
  auto ok = kg::policyd::check_identifiers(shipped());
  EXPECT_TRUE(ok.ok());
  // The config loader refuses the clash with FILE:LINE already...
  auto r = kg::config::parse_text(
      "[profile a-b]\ndirection = inbound\nexpose = self tcp/22\n"
      "[profile a.b]\ndirection = inbound\nexpose = self tcp/23\n",
      "t.conf");
  ASSERT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1U);
  EXPECT_NE(r.errors[0].str().find("t.conf:4:"), std::string::npos) << r.errors[0].str();
  // ...and the ruleset refuses a Config built without it.
  kg::config::Config c = shipped();
  c.profiles.push_back(c.profiles[0]);
  c.profiles.back().name = "ssh.only";
  auto bad = kg::policyd::check_identifiers(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("\"ssh-only\" and \"ssh.only\""), std::string::npos)
      << bad.error().message;
  EXPECT_NE(bad.error().message.find("ssh_only"), std::string::npos);
}

TEST(NftRuleset, ShippedProfilesFailClosedXt) {
  auto c = shipped();
  std::string t = ruleset_text(c, QueueMode::xt_fallback);
  // One atomic replacement of our table and nothing else.
  EXPECT_EQ(
      t.rfind("add table inet knockgate\ndelete table inet knockgate\ntable inet knockgate {\n", 0),
      0U);
  EXPECT_EQ(t.find("table ip "), std::string::npos);
  for (const char* set :
       {"grant4_ssh_only", "grant6_ssh_only", "grant4_syslog_only", "grant6_syslog_only"}) {
    EXPECT_NE(t.find(std::string("\tset ") + set + " {\n"), std::string::npos) << set;
  }
  EXPECT_NE(t.find("type ipv4_addr\n\t\tflags timeout"), std::string::npos);

  EXPECT_EQ(
      chain(t, "prerouting_nat"),
      (std::vector<std::string>{
          "type nat hook prerouting priority dstnat; policy accept;",
          "meta nfproto ipv4 iifname { \"kg-wan\" } fib daddr . iif type local tcp dport 22 dnat "
          "ip to 192.168.50.10:22"}));
  EXPECT_EQ(chain(t, "gate"),
            (std::vector<std::string>{
                "type filter hook prerouting priority dstnat + 10; policy accept;",
                "ct state established,related ct direction original ct mark & 0xff000000 != "
                "0x00000000 meta mark set "
                "ct mark",
                "ct state established,related accept",
                "iifname { \"kg-wan\" } fib daddr type unicast jump gate_new",
                "iifname != { \"kg-wan\" } ip saddr { 192.168.50.20/32 } fib daddr type unicast "
                "jump gate_new",
                "iifname != { \"kg-wan\" } ip saddr @grant4_syslog_only fib daddr type unicast "
                "jump gate_new",
                "iifname != { \"kg-wan\" } ip6 saddr @grant6_syslog_only fib daddr type unicast "
                "jump gate_new"}));
  EXPECT_EQ(
      chain(t, "gate_new"),
      (std::vector<std::string>{"ct state new tcp flags & (fin|syn|rst|ack) == syn jump verdict",
                                "meta l4proto tcp drop", "ct state new jump verdict", "drop"}));
  // Fail-closed: no kernel marks, a drop after the (empty until inserted) queue chain.
  EXPECT_EQ(chain(t, "verdict"), (std::vector<std::string>{"jump verdict_queue", "counter drop"}));
  EXPECT_TRUE(chain(t, "verdict_queue").empty());
  EXPECT_NE(t.find("\tchain verdict_queue {\n"), std::string::npos);

  auto fwd = chain(t, "forward");
  ASSERT_GE(fwd.size(), 4U);
  EXPECT_EQ(fwd[0], "type filter hook forward priority filter; policy drop;");
  EXPECT_EQ(fwd[1], "ct state established,related accept");
  EXPECT_EQ(fwd[3],
            "meta mark & 0xff000000 == 0x10000000 ip saddr @grant4_ssh_only ip daddr "
            "192.168.50.10 tcp dport 22 accept");
  EXPECT_NE(std::find(fwd.begin(), fwd.end(),
                      "meta mark & 0xff000000 == 0x20000000 ip saddr { 192.168.50.20/32 } ip "
                      "daddr { 192.168.60.5/32 } udp dport 514 accept"),
            fwd.end());
  EXPECT_NE(std::find(fwd.begin(), fwd.end(),
                      "meta mark & 0xff000000 == 0x20000000 ip saddr @grant4_syslog_only ip "
                      "daddr { 192.168.60.5/32 } tcp dport 514 accept"),
            fwd.end());
  EXPECT_NE(std::find(fwd.begin(), fwd.end(), "iifname { \"kg-wan\" } counter drop"), fwd.end());
  EXPECT_NE(std::find(fwd.begin(), fwd.end(), "ip saddr { 192.168.50.20/32 } counter drop"),
            fwd.end());
  EXPECT_EQ(fwd.back(), "accept");  // LAN hosts nobody gates: a plain router

  EXPECT_EQ(chain(t, "postrouting_mark"),
            (std::vector<std::string>{
                "type filter hook postrouting priority mangle; policy accept;",
                "ct state new meta mark & 0xff000000 != 0x00000000 ct mark set meta mark"}));
  EXPECT_EQ(chain(t, "postrouting_nat"),
            (std::vector<std::string>{"type nat hook postrouting priority srcnat; policy accept;",
                                      "oifname { \"kg-wan\" } masquerade"}));
  EXPECT_EQ(kg::policyd::mark_union(c), 0xff000000U);
}

TEST(NftRuleset, NativeQueueAndRanges) {
  auto c = shipped();
  EXPECT_EQ(chain(ruleset_text(c, QueueMode::native), "verdict_queue"),
            (std::vector<std::string>{"counter queue num 0"}));
  c.options.verdict_fail_open = true;
  EXPECT_EQ(kg::policyd::queue_statement(c.options), "queue num 0 bypass");
  c.options.verdict_queue_first = 4;
  c.options.verdict_queue_count = 4;
  EXPECT_EQ(kg::policyd::queue_statement(c.options), "queue num 4-7 bypass,fanout");
  c.options.verdict_fail_open = false;
  EXPECT_EQ(kg::policyd::queue_statement(c.options), "queue num 4-7 fanout");
  auto parsed = parse(
      "[options]\nWanInterface = eth0\nVerdictQueue = 2-3\n[profile p]\ndirection = inbound\n"
      "expose = udp/53 -> 192.168.50.10:5353\n");
  EXPECT_EQ(chain(ruleset_text(parsed, QueueMode::native), "verdict_queue"),
            (std::vector<std::string>{"counter queue num 2-3 fanout"}));
}

TEST(NftRuleset, FailOpenMarksBeforeTheQueue) {
  auto c = shipped();
  c.options.verdict_fail_open = true;
  auto v = chain(ruleset_text(c, QueueMode::xt_fallback), "verdict");
  ASSERT_EQ(v.size(), 7U);
  EXPECT_EQ(v[0],
            "ip saddr @grant4_ssh_only ip daddr 192.168.50.10 tcp dport 22 meta mark set meta "
            "mark & 0x00ffffff | 0x10000000");
  EXPECT_EQ(v[5], "jump verdict_queue");
  EXPECT_EQ(v[6], "counter accept");
}

TEST(NftRuleset, Ipv6AndSeveralWanInterfaces) {
  auto c = parse(
      "[options]\nInterface = wan0,wan1\nWanInterface = wan0,wan1\nLanInterface = lan0\n"
      "[profile web6]\ndirection = inbound\nexpose = tcp/443 -> [fd00:50::10]:8443\n"
      "fwmark = 0x1000000/0xf000000\ntable = 200\n"
      "[profile ntp]\ndirection = egress\nsources = fd00:50::20, 192.168.50.21\n"
      "allow = udp/123, icmp\ndestination = 2001:db8:9::/48, 198.51.100.0/24\n");
  std::string t = ruleset_text(c, QueueMode::native);
  ASSERT_EQ(chain(t, "prerouting_nat").size(), 2U);
  EXPECT_EQ(
      chain(t, "prerouting_nat")[1],
      "meta nfproto ipv6 iifname { \"wan0\", \"wan1\" } fib daddr . iif type local tcp dport 443 "
      "dnat ip6 to [fd00:50::10]:8443");
  auto fwd = chain(t, "forward");
  auto has = [&](const std::string& l) {
    return std::find(fwd.begin(), fwd.end(), l) != fwd.end();
  };
  EXPECT_TRUE(
      has("meta mark & 0x0f000000 == 0x01000000 ip6 saddr @grant6_web6 ip6 daddr "
          "fd00:50::10 tcp dport 8443 accept"));
  // A profile without fwmark is checked by set membership and flow alone.
  EXPECT_TRUE(
      has("ip6 saddr { fd00:50::20/128 } ip6 daddr { 2001:db8:9::/48 } udp dport 123 "
          "accept"));
  EXPECT_TRUE(
      has("ip6 saddr @grant6_ntp ip6 daddr { 2001:db8:9::/48 } meta l4proto ipv6-icmp "
          "accept"));
  EXPECT_TRUE(
      has("ip saddr { 192.168.50.21/32 } ip daddr { 198.51.100.0/24 } meta l4proto icmp "
          "accept"));
  EXPECT_TRUE(has("iifname { \"wan0\", \"wan1\" } counter drop"));
  EXPECT_EQ(chain(t, "postrouting_nat")[1], "oifname { \"wan0\", \"wan1\" } masquerade");
  EXPECT_EQ(kg::policyd::mark_union(c), 0xf000000U);
  auto gate = chain(t, "gate");
  ASSERT_GE(gate.size(), 2U);
  EXPECT_EQ(gate[1],
            "ct state established,related ct direction original ct mark & 0x0f000000 != 0x00000000 "
            "meta mark "
            "set ct mark");
}

TEST(NftRuleset, NoMarksNoWan) {
  // A LAN-only gateway: no WAN to forward from, NAT to or drop on.
  auto c = parse(
      "[options]\nInterface = eth0\nLanInterface = eth1\n[profile p]\ndirection = inbound\n"
      "expose = tcp/22 -> 192.168.50.10:22\n");
  std::string t = ruleset_text(c, QueueMode::native);
  EXPECT_EQ(t.find("postrouting_mark"), std::string::npos);  // no marks: nothing to save
  EXPECT_EQ(t.find("ct mark"), std::string::npos);
  EXPECT_EQ(t.find("input_wan"), std::string::npos);
  EXPECT_EQ(t.find("wan"), std::string::npos);
  EXPECT_EQ(chain(t, "prerouting_nat").size(), 1U);
  EXPECT_EQ(chain(t, "postrouting_nat").size(), 1U);
  EXPECT_EQ(chain(t, "management"),
            (std::vector<std::string>{"iifname { \"eth1\" } accept", "counter drop"}));
}

// A plain knockd.conf changes nothing in the kernel: no table at all.
TEST(NftRuleset, HostModeInstallsNothing) {
  for (const char* name : {"knockd-classic.conf", "knockd-openclose.conf", "debian-default.conf",
                           "knockd-quirks.conf", "tcpflags.conf", "mixed-proto.conf"}) {
    auto r = kg::config::parse_file(std::string(KG_TEST_DATA) + "/config/good/" + name);
    ASSERT_TRUE(r.config.has_value()) << name;
    EXPECT_EQ(r.config->mode(), kg::config::Mode::host) << name;
    EXPECT_EQ(ruleset_text(*r.config, QueueMode::native), "") << name;
    EXPECT_EQ(ruleset_text(*r.config, QueueMode::xt_fallback), "") << name;
  }
}

// `expose = self` without interface roles: the grant sets and an input chain, nothing that
// forwards, translates or queues.
TEST(NftRuleset, SelfModeIsInputOnly) {
  auto c = parse(
      "[options]\nInterface = eth0\n[profile own-ssh]\ndirection = inbound\n"
      "expose = self tcp/22\nexpose = self udp/1194\n[door]\nsequence = 7000,8000\n"
      "grant = own-ssh\n");
  EXPECT_EQ(c.mode(), kg::config::Mode::self);
  std::string t = ruleset_text(c, QueueMode::native);
  EXPECT_NE(t.find("\tset grant4_own_ssh {"), std::string::npos);
  EXPECT_EQ(chain(t, "input"),
            (std::vector<std::string>{"type filter hook input priority filter; policy accept;",
                                      "ct state established,related accept",
                                      "ip saddr @grant4_own_ssh tcp dport 22 accept",
                                      "ip6 saddr @grant6_own_ssh tcp dport 22 accept",
                                      "ip saddr @grant4_own_ssh udp dport 1194 accept",
                                      "ip6 saddr @grant6_own_ssh udp dport 1194 accept",
                                      "iifname { \"eth0\" } tcp dport { 22 } counter drop",
                                      "iifname { \"eth0\" } udp dport { 1194 } counter drop"}));
  for (const char* absent : {"forward", "prerouting", "postrouting", "queue", "verdict", "nat"}) {
    EXPECT_EQ(t.find(absent), std::string::npos) << absent;
  }
}

// The gateway closes itself on the WAN: established, self grants, SPA sockets, the ICMP
// PMTU and neighbour discovery need, management only from ManagementFrom.
TEST(NftRuleset, GatewayInputPolicy) {
  auto c = shipped();
  std::string t = ruleset_text(c, QueueMode::native);
  EXPECT_EQ(chain(t, "input"),
            (std::vector<std::string>{
                "type filter hook input priority filter; policy accept;", "iif \"lo\" accept",
                "ct state established,related accept", "ip daddr 127.0.0.0/8 counter drop",
                "ip6 daddr ::1 counter drop", "iifname { \"kg-wan\" } jump input_wan",
                "tcp dport { 22, 8080 } jump management"}));
  EXPECT_EQ(chain(t, "input_wan"),
            (std::vector<std::string>{
                "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept",
                "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, "
                "parameter-problem } accept",
                "ip6 hoplimit 255 icmpv6 type { nd-router-advert, nd-neighbor-solicit, "
                "nd-neighbor-advert } accept",
                "ip6 saddr fe80::/10 udp dport 546 accept",
                "tcp dport { 22, 8080 } jump management", "counter drop"}));
  EXPECT_EQ(chain(t, "management"),
            (std::vector<std::string>{"iifname { \"kg-lan\" } accept", "counter drop"}));

  auto m = parse(
      "[options]\nWanInterface = wan0\nLanInterface = lan0\n"
      "ManagementFrom = 198.51.100.0/24, lan0, 2001:db8:5::7\nManagementPorts = tcp/22,udp/161\n"
      "WebListen = 10.0.0.1:8443\n"
      "[profile own]\ndirection = inbound\nexpose = self tcp/2222\n"
      "[spa s]\nport = 62201\nproto = tcp\ngrant = own\nSOURCE = ANY\nKEY = secret-key-1\n"
      "[spa u]\nport = 62202\ngrant = own\nSOURCE = ANY\nKEY = secret-key-2\n");
  std::string mt = ruleset_text(m, QueueMode::native);
  auto input = chain(mt, "input");
  ASSERT_EQ(input.size(), 10U);
  EXPECT_EQ(input[5], "ip saddr @grant4_own tcp dport 2222 accept");
  EXPECT_EQ(input[6], "ip6 saddr @grant6_own tcp dport 2222 accept");
  EXPECT_EQ(input[8], "tcp dport { 22, 8443 } jump management");
  EXPECT_EQ(input[9], "udp dport { 161 } jump management");
  auto wan = chain(mt, "input_wan");
  EXPECT_NE(std::find(wan.begin(), wan.end(), "tcp dport { 62201 } accept"), wan.end());
  EXPECT_EQ(mt.find("62202"), std::string::npos);  // UDP SPA is read by pcap, no socket
  EXPECT_EQ(chain(mt, "management"),
            (std::vector<std::string>{"iifname { \"lan0\" } accept",
                                      "ip saddr { 198.51.100.0/24 } accept",
                                      "ip6 saddr { 2001:db8:5::7/128 } accept", "counter drop"}));
  // A self port is never forwarded nor queued.
  EXPECT_EQ(chain(mt, "prerouting_nat").size(), 1U);
  EXPECT_EQ(mt.find("2222 dnat"), std::string::npos);
}

TEST(NftRuleset, ElementAdd) {
  auto c = shipped();
  std::vector<GrantInstall> g{
      {1, *IpAddr::parse("203.0.113.10"), "ssh-only", kNow + 60 * kSecond},
      {2, *IpAddr::parse("2001:db8:1::10"), "ssh-only", kNow + kSecond + 1},
      {3, *IpAddr::parse("203.0.113.11"), "ssh-only", kNow - kSecond},        // expired
      {4, *IpAddr::parse("203.0.113.10"), "ssh-only", kNow + 120 * kSecond},  // same source
      {5, *IpAddr::parse("192.168.50.30"), "syslog-only", kNow + 1},
  };
  auto t = element_add_text(c, g, kNow, false);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(*t,
            "add element inet knockgate grant4_ssh_only { 203.0.113.10 timeout 120000ms }\n"
            "add element inet knockgate grant4_syslog_only { 192.168.50.30 timeout 1ms }\n"
            "add element inet knockgate grant6_ssh_only { 2001:db8:1::10 timeout 1001ms }\n");
  auto r = element_add_text(c, std::span(g).first(1), kNow, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r,
            "add element inet knockgate grant4_ssh_only { 203.0.113.10 timeout 60000ms }\n"
            "delete element inet knockgate grant4_ssh_only { 203.0.113.10 }\n"
            "add element inet knockgate grant4_ssh_only { 203.0.113.10 timeout 60000ms }\n");
  auto none = element_add_text(c, std::span(g).subspan(2, 1), kNow, true);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
  std::vector<GrantInstall> unknown{{9, *IpAddr::parse("203.0.113.10"), "nope", kNow + kSecond}};
  auto bad = element_add_text(c, unknown, kNow, false);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("grant 9: no profile \"nope\""), std::string::npos);
}

TEST(NftRuleset, ElementDeleteNeverFailsOnAbsentElements) {
  auto c = shipped();
  std::vector<GrantInstall> g{
      {1, *IpAddr::parse("203.0.113.10"), "ssh-only", kNow - kSecond},
      {2, *IpAddr::parse("203.0.113.12"), "ssh-only", kNow + kSecond},
  };
  auto t = element_delete_text(c, g);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t,
            "add element inet knockgate grant4_ssh_only { 203.0.113.10 timeout 1s, 203.0.113.12 "
            "timeout 1s }\n"
            "delete element inet knockgate grant4_ssh_only { 203.0.113.10, 203.0.113.12 }\n");
}

}  // namespace
