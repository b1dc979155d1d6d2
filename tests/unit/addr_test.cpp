#include "common/addr.h"

#include <gtest/gtest.h>

#include "common/hash.h"

namespace kg {
namespace {

TEST(IpAddr, ParsesAndFormatsV4) {
  auto a = IpAddr::parse("192.0.2.7");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v4());
  EXPECT_EQ(a->str(), "192.0.2.7");
  EXPECT_EQ(*a, IpAddr::v4(0xC0000207U));
}

TEST(IpAddr, ParsesAndCompressesV6) {
  auto a = IpAddr::parse("2001:0db8:0000:0000:0000:0000:0000:0001");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v6());
  EXPECT_EQ(a->str(), "2001:db8::1");
}

TEST(IpAddr, RejectsJunk) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", "::g", "abc",
                          "1.2.3.-1", "01234567890123456789012345678901234567890123456789"}) {
    EXPECT_FALSE(IpAddr::parse(bad)) << bad;
  }
}

TEST(IpAddr, V4AndV6AreDistinctEvenWithSameBytes) {
  uint8_t bytes[16] = {192, 0, 2, 1};
  EXPECT_NE(IpAddr::v4(bytes), IpAddr::v6(bytes));
  const uint64_t key = process_hash_key();
  EXPECT_NE(hash_addr(IpAddr::v4(bytes), key), hash_addr(IpAddr::v6(bytes), key));
}

TEST(IpPrefix, ContainsByPrefixLength) {
  auto p = IpPrefix::parse("10.1.0.0/15");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->contains(*IpAddr::parse("10.0.255.1")));
  EXPECT_TRUE(p->contains(*IpAddr::parse("10.1.0.1")));
  EXPECT_FALSE(p->contains(*IpAddr::parse("10.2.0.1")));
  EXPECT_FALSE(p->contains(*IpAddr::parse("::1")));
  auto h = IpPrefix::parse("2001:db8::1");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->length, 128);
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/33"));
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/"));
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/8x"));
}

TEST(NeverAClient, RefusesAddressesNoClientCanSendFrom) {
  for (const char* text : {"0.0.0.0", "0.1.2.3", "255.255.255.255", "224.0.0.1", "239.255.255.255",
                           "127.0.0.1", "127.255.0.9", "::", "::1", "ff02::1", "ff0e::1234",
                           "::ffff:192.0.2.1", "::ffff:127.0.0.1"}) {
    auto a = IpAddr::parse(text);
    ASSERT_TRUE(a) << text;
    EXPECT_TRUE(never_a_client(*a)) << text;
  }
  EXPECT_EQ(never_a_client(*IpAddr::parse("::ffff:192.0.2.1")),
            "an IPv4-mapped address (::ffff:0:0/96)");
  EXPECT_EQ(never_a_client(*IpAddr::parse("224.0.0.1")), "a multicast address (224.0.0.0/4)");
  EXPECT_TRUE(never_a_client(IpAddr{}));
}

TEST(NeverAClient, AcceptsOrdinarySources) {
  for (const char* text : {"1.0.0.0", "192.0.2.1", "198.51.100.8", "223.255.255.255", "240.0.0.1",
                           "255.255.255.254", "10.0.0.1", "2001:db8::1", "fe80::1", "::2",
                           "::0.0.0.2", "fe00::1", "2001:db8::ffff:c000:201"}) {
    auto a = IpAddr::parse(text);
    ASSERT_TRUE(a) << text;
    EXPECT_FALSE(never_a_client(*a)) << text;
  }
}

}  // namespace
}  // namespace kg
