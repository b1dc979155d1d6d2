// What policy routing the config asks for (policyd/routing.h, the pure part): one fwmark
// rule per profile with a table and family, fixed priorities in our range, the routes.
#include <gtest/gtest.h>

#include <string>

#include "policyd/kernel/routing.h"

namespace {

kg::config::Config shipped() {
  auto r = kg::config::parse_file(std::string(KG_SOURCE_DIR) + "/etc/knockgate.conf");
  EXPECT_TRUE(r.config.has_value());
  return *r.config;
}

TEST(PolicydRouting, ShippedProfiles) {
  auto rules = kg::policyd::wanted_rules(shipped());
  ASSERT_EQ(rules.size(), 4U);
  EXPECT_EQ(rules[0].str(), "ipv4 rule pref 10100 fwmark 0x10000000/0xff000000 lookup 100");
  EXPECT_EQ(rules[1].str(), "ipv6 rule pref 10100 fwmark 0x10000000/0xff000000 lookup 100");
  EXPECT_EQ(rules[2].str(), "ipv4 rule pref 10120 fwmark 0x20000000/0xff000000 lookup 120");
  EXPECT_EQ(rules[3].profile, "syslog-only");
  for (const auto& r : rules) {
    EXPECT_GE(r.priority, 10000U);
    EXPECT_LE(r.priority, 10999U);
  }
  auto routes = kg::policyd::wanted_routes(shipped());
  ASSERT_EQ(routes.size(), 1U);
  EXPECT_EQ(routes[0].str(), "route 0.0.0.0/0 via 192.168.70.2 table 120");
  EXPECT_EQ(routes[0].profile, "syslog-only");
}

TEST(PolicydRouting, PriorityFollowsTheTableAndStaysInRange) {
  auto parsed = kg::config::parse_text(
      "[profile a]\ndirection = inbound\nexpose = tcp/22 -> 192.168.50.10:22\n"
      "fwmark = 0x1000000/0xf000000\ntable = 4321\nroute = 10.0.0.0/8 dev eth1\n"
      "route = 2001:db8::/32 via fd00::1\n"
      "[profile b]\ndirection = inbound\nexpose = tcp/23 -> 192.168.50.10:23\n"
      "[options]\nWanInterface = eth0\n",
      "t.conf");
  ASSERT_TRUE(parsed.config.has_value());
  auto rules = kg::policyd::wanted_rules(*parsed.config);
  ASSERT_EQ(rules.size(), 2U);  // profile b has no table: no rule
  EXPECT_EQ(rules[0].priority, 10321U);
  auto routes = kg::policyd::wanted_routes(*parsed.config);
  ASSERT_EQ(routes.size(), 2U);
  EXPECT_EQ(routes[0].str(), "route 10.0.0.0/8 dev eth1 table 4321");
  EXPECT_EQ(routes[1].str(), "route 2001:db8::/32 via fd00::1 table 4321");
}

}  // namespace
