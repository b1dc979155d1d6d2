#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/knock.h"
#include "packet/decode.h"

namespace kg::packet {
namespace {

// ---------------------------------------------------------------------------------------
// Frame builder: crafts frames layer by layer, innermost first, so each outer layer can
// fill in the lengths of what it wraps. Overrides let a test make a header lie.

using Bytes = std::vector<uint8_t>;

void put8(Bytes& b, unsigned v) {
  b.push_back(static_cast<uint8_t>(v));
}
void put16(Bytes& b, unsigned v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, v >> 16);
  put16(b, v & 0xffff);
}
void append(Bytes& b, const Bytes& more) {
  b.insert(b.end(), more.begin(), more.end());
}
Bytes join(Bytes a, const Bytes& b) {
  append(a, b);
  return a;
}
Bytes addr_bytes(const char* text) {
  auto a = IpAddr::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  if (!a) return {};
  return Bytes(a->data(), a->data() + a->size());
}
Bytes filled(size_t n, uint8_t first = 0xa0) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(first + i);
  return b;
}

struct Tcp {
  uint16_t sport = 40000;
  uint16_t dport = 7000;
  uint8_t flags = tcpflag::syn;
  Bytes options{};  // padded to a multiple of 4 by the builder
  Bytes payload{};
  std::optional<uint8_t> data_offset_words{};  // override
};
Bytes tcp(const Tcp& t) {
  Bytes opts = t.options;
  while (opts.size() % 4 != 0) opts.push_back(1);  // NOP padding
  Bytes b;
  put16(b, t.sport);
  put16(b, t.dport);
  put32(b, 0x01020304);  // seq
  put32(b, 0);           // ack
  const unsigned words =
      t.data_offset_words ? *t.data_offset_words : static_cast<unsigned>(5 + opts.size() / 4);
  put8(b, words << 4);
  put8(b, t.flags);
  put16(b, 64240);  // window
  put16(b, 0);      // checksum: the decoder does not verify it
  put16(b, 0);      // urgent pointer
  append(b, opts);
  append(b, t.payload);
  return b;
}

struct Udp {
  uint16_t sport = 40000;
  uint16_t dport = 62201;
  Bytes payload{};
  std::optional<uint16_t> length{};  // override
};
Bytes udp(const Udp& u) {
  Bytes b;
  put16(b, u.sport);
  put16(b, u.dport);
  put16(b, u.length ? *u.length : static_cast<unsigned>(8 + u.payload.size()));
  put16(b, 0);
  append(b, u.payload);
  return b;
}

Bytes icmp(uint8_t type, uint8_t code, const Bytes& payload) {
  Bytes b;
  put8(b, type);
  put8(b, code);
  put16(b, 0);       // checksum
  put32(b, 0x1234);  // identifier + sequence for echo
  append(b, payload);
  return b;
}

struct V4 {
  const char* src = "192.0.2.1";
  const char* dst = "198.51.100.7";
  uint8_t proto = ipproto::tcp;
  uint8_t ttl = 64;
  Bytes options{};           // padded to a multiple of 4 by the builder
  uint16_t frag_offset = 0;  // in 8-byte units
  bool more_fragments = false;
  bool dont_fragment = false;
  std::optional<uint16_t> total_length{};  // overrides
  std::optional<uint8_t> ihl_words{};
  uint8_t version = 4;
};
Bytes ipv4(const V4& v, const Bytes& l4) {
  Bytes opts = v.options;
  while (opts.size() % 4 != 0) opts.push_back(0);  // end of option list
  const unsigned ihl = v.ihl_words ? *v.ihl_words : static_cast<unsigned>(5 + opts.size() / 4);
  Bytes b;
  put8(b, static_cast<unsigned>(v.version << 4) | (ihl & 0x0f));
  put8(b, 0);
  put16(b, v.total_length ? *v.total_length : static_cast<unsigned>(20 + opts.size() + l4.size()));
  put16(b, 0x4242);  // identification
  put16(b, (v.more_fragments ? 0x2000U : 0U) | (v.dont_fragment ? 0x4000U : 0U) | v.frag_offset);
  put8(b, v.ttl);
  put8(b, v.proto);
  put16(b, 0);  // header checksum, filled in below
  append(b, addr_bytes(v.src));
  append(b, addr_bytes(v.dst));
  append(b, opts);
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < b.size(); i += 2) sum += static_cast<uint32_t>(b[i] << 8 | b[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  b[10] = static_cast<uint8_t>(~sum >> 8);
  b[11] = static_cast<uint8_t>(~sum);
  append(b, l4);
  return b;
}

struct V6 {
  const char* src = "2001:db8::1";
  const char* dst = "2001:db8:1::7";
  uint8_t next = ipproto::tcp;
  uint8_t hop_limit = 64;
  std::optional<uint16_t> payload_length{};  // override
  uint8_t version = 6;
};
Bytes ipv6(const V6& v, const Bytes& rest) {
  Bytes b;
  put32(b, static_cast<uint32_t>(v.version) << 28);
  put16(b, v.payload_length ? *v.payload_length : static_cast<unsigned>(rest.size()));
  put8(b, v.next);
  put8(b, v.hop_limit);
  append(b, addr_bytes(v.src));
  append(b, addr_bytes(v.dst));
  append(b, rest);
  return b;
}
// Hop-by-hop, routing or destination options header of `units` 8-octet units.
Bytes ext6(uint8_t next, unsigned units = 1) {
  Bytes b;
  put8(b, next);
  put8(b, units - 1);
  // PadN option filling the rest (a valid body for hop-by-hop / destination options).
  put8(b, 1);
  put8(b, units * 8 - 4);
  b.resize(units * 8, 0);
  return b;
}
// Authentication header with a 12-byte ICV: 24 bytes, length field (24/4)-2 = 4.
Bytes ah6(uint8_t next) {
  Bytes b;
  put8(b, next);
  put8(b, 4);
  put16(b, 0);
  put32(b, 0x100);  // SPI
  put32(b, 1);      // sequence
  append(b, filled(12, 0x10));
  return b;
}
Bytes frag6(uint8_t next, uint16_t offset_units, bool more) {
  Bytes b;
  put8(b, next);
  put8(b, 0);
  put16(b, static_cast<unsigned>(offset_units << 3) | (more ? 1U : 0U));
  put32(b, 0xabcdef01);
  return b;
}

using Tag = std::pair<uint16_t, uint16_t>;  // TPID, TCI
Bytes ether(uint16_t ethertype, const Bytes& l3, const std::vector<Tag>& tags = {},
            size_t min_frame = 0) {
  Bytes b = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  for (const auto& [tpid, tci] : tags) {
    put16(b, tpid);
    put16(b, tci);
  }
  put16(b, ethertype);
  append(b, l3);
  if (b.size() < min_frame) b.resize(min_frame, 0);  // Ethernet padding
  return b;
}
Bytes sll(uint16_t protocol, const Bytes& l3, uint16_t hatype = 1) {
  Bytes b;
  put16(b, 0);  // PACKET_HOST
  put16(b, hatype);
  put16(b, 6);
  append(b, {0x02, 0, 0, 0, 0, 0x01, 0, 0});
  put16(b, protocol);
  append(b, l3);
  return b;
}
Bytes sll2(uint16_t protocol, const Bytes& l3, uint16_t hatype = 1) {
  Bytes b;
  put16(b, protocol);
  put16(b, 0);
  put32(b, 3);  // ifindex
  put16(b, hatype);
  put8(b, 0);  // PACKET_HOST
  put8(b, 6);
  append(b, {0x02, 0, 0, 0, 0, 0x01, 0, 0});
  append(b, l3);
  return b;
}
Bytes null_lo(uint32_t family, const Bytes& l3, bool big_endian) {
  Bytes b;
  if (big_endian) {
    put32(b, family);
  } else {
    for (int i = 0; i < 4; ++i) put8(b, family >> (8 * i));
  }
  append(b, l3);
  return b;
}

// ---------------------------------------------------------------------------------------
// Decoding helpers. Every decode runs on a heap block of exactly the frame's length, so
// AddressSanitizer reports any read past the captured bytes.

class Exact {
 public:
  explicit Exact(const Bytes& b) : size_(b.size()), buf_(new uint8_t[b.empty() ? 1 : b.size()]) {
    if (!b.empty()) std::memcpy(buf_.get(), b.data(), b.size());
  }
  std::span<const uint8_t> span() const { return {buf_.get(), size_}; }
  bool contains(std::span<const uint8_t> s) const {
    if (s.empty()) return true;
    return s.data() >= buf_.get() && s.data() + s.size() <= buf_.get() + size_;
  }

 private:
  size_t size_;
  std::unique_ptr<uint8_t[]> buf_;
};

struct Outcome {
  Status status;
  Decoded d;
  Bytes payload{};
};

Outcome run(Link link, const Bytes& frame) {
  Exact exact(frame);
  Outcome r{};
  r.status = decode(link, exact.span(), r.d);
  EXPECT_TRUE(exact.contains(r.d.payload)) << "payload outside the captured bytes";
  r.payload.assign(r.d.payload.begin(), r.d.payload.end());
  r.d.payload = {};  // the block is gone after return
  return r;
}

Outcome run_ip(const Bytes& packet) {
  Exact exact(packet);
  Outcome r{};
  r.status = decode_ip(exact.span(), r.d);
  EXPECT_TRUE(exact.contains(r.d.payload));
  r.payload.assign(r.d.payload.begin(), r.d.payload.end());
  r.d.payload = {};
  return r;
}

IpAddr ip(const char* text) {
  return *IpAddr::parse(text);
}

Bytes v4_tcp_syn() {
  return ipv4({}, tcp({}));
}
Bytes v6_udp(const Bytes& payload) {
  return ipv6({.next = ipproto::udp}, udp({.payload = payload}));
}

// ---------------------------------------------------------------------------------------

TEST(LinkFromDlt, MapsPcapValues) {
  EXPECT_EQ(link_from_dlt(0), Link::null_loopback);
  EXPECT_EQ(link_from_dlt(108), Link::null_loopback);
  EXPECT_EQ(link_from_dlt(1), Link::ethernet);
  EXPECT_EQ(link_from_dlt(12), Link::raw_ip);
  EXPECT_EQ(link_from_dlt(101), Link::raw_ip);
  EXPECT_EQ(link_from_dlt(113), Link::linux_sll);
  EXPECT_EQ(link_from_dlt(276), Link::linux_sll2);
  EXPECT_EQ(link_from_dlt(228), Link::ipv4);
  EXPECT_EQ(link_from_dlt(229), Link::ipv6);
  for (int unknown : {-1, 6, 9, 105, 127, 147, 220, 9999}) {
    EXPECT_FALSE(link_from_dlt(unknown)) << unknown;
  }
}

TEST(Strings, EveryStatusAndLinkHasAName) {
  for (int s = 0; s <= static_cast<int>(Status::bad_l4_header); ++s) {
    EXPECT_STRNE(status_str(static_cast<Status>(s)), "unknown status") << s;
  }
  EXPECT_STREQ(status_str(Status::truncated), "truncated");
  for (int l = 0; l <= static_cast<int>(Link::null_loopback); ++l) {
    EXPECT_STRNE(link_str(static_cast<Link>(l)), "unknown") << l;
  }
}

TEST(Ethernet, Ipv4TcpSyn) {
  const Bytes frame = ether(0x0800, ipv4({.ttl = 57}, tcp({.sport = 51000, .dport = 7000})));
  Outcome r = run(Link::ethernet, frame);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.src, ip("192.0.2.1"));
  EXPECT_EQ(r.d.dst, ip("198.51.100.7"));
  EXPECT_EQ(r.d.ttl, 57);
  EXPECT_EQ(r.d.l4_proto, ipproto::tcp);
  EXPECT_TRUE(r.d.has_ports);
  EXPECT_EQ(r.d.sport, 51000);
  EXPECT_EQ(r.d.dport, 7000);
  EXPECT_EQ(r.d.tcp_flags, tcpflag::syn);
  EXPECT_FALSE(r.d.fragment);
  EXPECT_FALSE(r.d.later_fragment);
  EXPECT_FALSE(r.d.has_icmp);
  EXPECT_EQ(r.d.vlan_tags, 0);
  EXPECT_EQ(r.d.vlan_id, 0);
  EXPECT_TRUE(r.payload.empty());
  EXPECT_FALSE(r.d.payload_truncated);
}

TEST(Ethernet, Ipv6Udp) {
  const Bytes frame = ether(0x86dd, v6_udp({'h', 'i'}));
  Outcome r = run(Link::ethernet, frame);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.src, ip("2001:db8::1"));
  EXPECT_EQ(r.d.dst, ip("2001:db8:1::7"));
  EXPECT_EQ(r.d.ttl, 64);
  EXPECT_EQ(r.d.l4_proto, ipproto::udp);
  EXPECT_TRUE(r.d.has_ports);
  EXPECT_EQ(r.d.dport, 62201);
  EXPECT_EQ(r.d.tcp_flags, 0);
  EXPECT_EQ(r.payload, (Bytes{'h', 'i'}));
}

TEST(Ethernet, PaddingIsNotPayload) {
  // `knock -u` sends a 1-byte datagram: 43 bytes of frame, padded to the 60-byte minimum.
  const Bytes frame = ether(0x0800, ipv4({.proto = ipproto::udp}, udp({.payload = {0}})), {}, 60);
  ASSERT_EQ(frame.size(), 60u);
  Outcome r = run(Link::ethernet, frame);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, Bytes{0});
  EXPECT_FALSE(r.d.payload_truncated);

  // The same for a TCP SYN (54 bytes + 6 padding) and for IPv6.
  r = run(Link::ethernet, ether(0x0800, v4_tcp_syn(), {}, 60));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.payload.empty());
  r = run(Link::ethernet, ether(0x86dd, ipv6({.next = ipproto::no_next_header}, {}), {}, 60));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.payload.empty());
  r = run(Link::ethernet, ether(0x86dd, v6_udp({7}), {}, 128));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, Bytes{7});
}

TEST(Ethernet, SingleVlanTag) {
  const Bytes frame = ether(0x0800, v4_tcp_syn(), {{0x8100, 0x2000 | 100}});  // PCP 1, VID 100
  Outcome r = run(Link::ethernet, frame);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.vlan_tags, 1);
  EXPECT_EQ(r.d.vlan_id, 100);
  EXPECT_EQ(r.d.dport, 7000);
}

TEST(Ethernet, DoubleTagAndQinQRecordOuterVid) {
  for (uint16_t outer_tpid : {uint16_t{0x88a8}, uint16_t{0x9100}, uint16_t{0x8100}}) {
    const Bytes frame = ether(0x86dd, v6_udp({1, 2}), {{outer_tpid, 0xe000 | 4094}, {0x8100, 100}});
    Outcome r = run(Link::ethernet, frame);
    ASSERT_EQ(r.status, Status::ok) << outer_tpid;
    EXPECT_EQ(r.d.vlan_tags, 2);
    EXPECT_EQ(r.d.vlan_id, 4094);
    EXPECT_EQ(r.d.dport, 62201);
    EXPECT_EQ(r.payload, (Bytes{1, 2}));
  }
}

TEST(Ethernet, UpToFourTagsThenRefused) {
  std::vector<Tag> tags = {{0x88a8, 10}, {0x8100, 20}, {0x9100, 30}, {0x8100, 40}};
  Outcome r = run(Link::ethernet, ether(0x0800, v4_tcp_syn(), tags));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.vlan_tags, 4);
  EXPECT_EQ(r.d.vlan_id, 10);
  EXPECT_EQ(r.d.dport, 7000);

  tags.push_back({0x8100, 50});
  EXPECT_EQ(run(Link::ethernet, ether(0x0800, v4_tcp_syn(), tags)).status,
            Status::too_many_vlan_tags);
}

TEST(Ethernet, NonIpIsUnsupported) {
  Bytes arp{};
  put16(arp, 1);
  put16(arp, 0x0800);
  put8(arp, 6);
  put8(arp, 4);
  put16(arp, 1);
  arp.resize(28, 0);
  EXPECT_EQ(run(Link::ethernet, ether(0x0806, arp)).status, Status::unsupported_link_proto);
  EXPECT_EQ(run(Link::ethernet, ether(0x0806, arp, {{0x8100, 5}})).status,
            Status::unsupported_link_proto);
  // 802.3 length field followed by LLC, LLDP, MPLS, PPPoE session.
  for (uint16_t type : {uint16_t{46}, uint16_t{0x88cc}, uint16_t{0x8847}, uint16_t{0x8864}}) {
    EXPECT_EQ(run(Link::ethernet, ether(type, v4_tcp_syn())).status, Status::unsupported_link_proto)
        << type;
  }
}

TEST(Ethernet, EthertypeMustMatchIpVersion) {
  EXPECT_EQ(run(Link::ethernet, ether(0x0800, v6_udp({}))).status, Status::bad_ip_version);
  EXPECT_EQ(run(Link::ethernet, ether(0x86dd, v4_tcp_syn())).status, Status::bad_ip_version);
}

TEST(LinuxSll, Ipv4Ipv6AndVlan) {
  Outcome r = run(Link::linux_sll, sll(0x0800, v4_tcp_syn()));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.src, ip("192.0.2.1"));
  EXPECT_EQ(r.d.dport, 7000);

  r = run(Link::linux_sll, sll(0x86dd, v6_udp({9})));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.dst, ip("2001:db8:1::7"));
  EXPECT_EQ(r.payload, Bytes{9});

  // A tag the kernel did not strip sits between the cooked header and the IP packet.
  Bytes tagged{};
  put16(tagged, 0x0000 | 300);
  put16(tagged, 0x0800);
  append(tagged, v4_tcp_syn());
  r = run(Link::linux_sll, sll(0x8100, tagged));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.vlan_tags, 1);
  EXPECT_EQ(r.d.vlan_id, 300);
  EXPECT_EQ(r.d.dport, 7000);

  // Tunnel devices (ARPHRD_NONE) carry an ethertype as well.
  EXPECT_EQ(run(Link::linux_sll, sll(0x0800, v4_tcp_syn(), 0xfffe)).status, Status::ok);
}

TEST(LinuxSll, NonIpAndNetlinkAreUnsupported) {
  EXPECT_EQ(run(Link::linux_sll, sll(0x0806, filled(28))).status, Status::unsupported_link_proto);
  EXPECT_EQ(run(Link::linux_sll, sll(0x0004, filled(28))).status,  // 802.2 LLC
            Status::unsupported_link_proto);
  // On a netlink monitor the protocol field is a netlink family; 0x0800 means nothing.
  EXPECT_EQ(run(Link::linux_sll, sll(0x0800, v4_tcp_syn(), 824)).status,
            Status::unsupported_link_proto);
  EXPECT_EQ(run(Link::linux_sll, Bytes(15, 0)).status, Status::truncated);
}

TEST(LinuxSll2, Ipv4Ipv6AndVlan) {
  Outcome r = run(Link::linux_sll2, sll2(0x0800, v4_tcp_syn()));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.dport, 7000);

  r = run(Link::linux_sll2, sll2(0x86dd, v6_udp({5, 6})));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, (Bytes{5, 6}));

  Bytes tagged{};
  put16(tagged, 42);
  put16(tagged, 0x86dd);
  append(tagged, v6_udp({}));
  r = run(Link::linux_sll2, sll2(0x8100, tagged));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.vlan_id, 42);
  EXPECT_EQ(r.d.dport, 62201);

  EXPECT_EQ(run(Link::linux_sll2, sll2(0x0806, filled(28))).status, Status::unsupported_link_proto);
  EXPECT_EQ(run(Link::linux_sll2, sll2(0x0800, v4_tcp_syn(), 824)).status,
            Status::unsupported_link_proto);
  EXPECT_EQ(run(Link::linux_sll2, Bytes(19, 0)).status, Status::truncated);
}

TEST(RawIp, VersionNibbleSelectsTheDecoder) {
  Outcome r = run(Link::raw_ip, v4_tcp_syn());
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.d.src.is_v4());
  r = run(Link::raw_ip, v6_udp({}));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.d.src.is_v6());
  EXPECT_EQ(run(Link::raw_ip, ipv4({.version = 5}, tcp({}))).status, Status::bad_ip_version);
  EXPECT_EQ(run(Link::raw_ip, Bytes{}).status, Status::truncated);

  // decode_ip is the same decoder without a link layer (NFQUEUE).
  r = run_ip(v4_tcp_syn());
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.dport, 7000);
  r = run_ip(v6_udp({3}));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, Bytes{3});
  EXPECT_EQ(run_ip(Bytes{0x00}).status, Status::bad_ip_version);
  EXPECT_EQ(run_ip(Bytes{}).status, Status::truncated);
}

TEST(RawIp, Ipv4AndIpv6LinksAcceptOnlyTheirVersion) {
  EXPECT_EQ(run(Link::ipv4, v4_tcp_syn()).status, Status::ok);
  EXPECT_EQ(run(Link::ipv4, v6_udp({})).status, Status::bad_ip_version);
  EXPECT_EQ(run(Link::ipv6, v6_udp({})).status, Status::ok);
  EXPECT_EQ(run(Link::ipv6, v4_tcp_syn()).status, Status::bad_ip_version);
  EXPECT_EQ(run(Link::ipv4, Bytes{}).status, Status::truncated);
  EXPECT_EQ(run(Link::ipv6, Bytes{}).status, Status::truncated);
}

TEST(NullLoopback, BothByteOrdersAndEveryInet6Value) {
  for (bool big_endian : {false, true}) {
    Outcome r = run(Link::null_loopback, null_lo(2, v4_tcp_syn(), big_endian));
    ASSERT_EQ(r.status, Status::ok) << big_endian;
    EXPECT_EQ(r.d.dport, 7000);
    for (uint32_t af6 : {10u, 24u, 28u, 30u}) {
      r = run(Link::null_loopback, null_lo(af6, v6_udp({}), big_endian));
      ASSERT_EQ(r.status, Status::ok) << af6 << " " << big_endian;
      EXPECT_EQ(r.d.dport, 62201);
    }
    EXPECT_EQ(run(Link::null_loopback, null_lo(17, v4_tcp_syn(), big_endian)).status,
              Status::unsupported_link_proto);
    // The family says IPv4, the packet is IPv6.
    EXPECT_EQ(run(Link::null_loopback, null_lo(2, v6_udp({}), big_endian)).status,
              Status::bad_ip_version);
  }
  EXPECT_EQ(run(Link::null_loopback, Bytes{2, 0, 0}).status, Status::truncated);
}

TEST(Link, UnknownLinkValueIsRefused) {
  Decoded d;
  d.has_ports = true;
  const Bytes frame = v4_tcp_syn();
  EXPECT_EQ(decode(static_cast<Link>(200), frame, d), Status::unsupported_link);
  EXPECT_FALSE(d.has_ports);
}

TEST(Decoded, IsResetOnEveryCall) {
  Exact syn(ether(0x0800, ipv4({}, tcp({.payload = {1, 2, 3}})), {{0x8100, 7}}));
  Decoded d;
  ASSERT_EQ(decode(Link::ethernet, syn.span(), d), Status::ok);
  ASSERT_TRUE(d.has_ports);
  Exact arp(ether(0x0806, filled(28)));
  EXPECT_EQ(decode(Link::ethernet, arp.span(), d), Status::unsupported_link_proto);
  EXPECT_FALSE(d.has_ports);
  EXPECT_EQ(d.dport, 0);
  EXPECT_TRUE(d.src.empty());
  EXPECT_TRUE(d.payload.empty());
  EXPECT_EQ(d.vlan_tags, 0);
  EXPECT_EQ(decode(Link::ipv6, syn.span(), d), Status::bad_ip_version);
  EXPECT_EQ(d.vlan_tags, 0);
}

// ---------------------------------------------------------------------------------------
// IPv4

TEST(Ipv4, OptionsAreSkipped) {
  for (size_t option_bytes : {4u, 8u, 20u, 40u}) {
    Bytes options = {0x94, 0x04, 0, 0};  // router alert
    options.resize(option_bytes, 1);     // NOPs
    const Bytes pkt = ipv4({.options = options}, tcp({.dport = 443, .payload = {0xaa}}));
    Outcome r = run(Link::raw_ip, pkt);
    ASSERT_EQ(r.status, Status::ok) << option_bytes;
    EXPECT_EQ(r.d.dport, 443);
    EXPECT_EQ(r.payload, Bytes{0xaa});
    EXPECT_EQ(r.d.dst, ip("198.51.100.7"));
  }
}

TEST(Ipv4, ImpossibleHeaderLengths) {
  // IHL below 5.
  for (uint8_t ihl = 0; ihl < 5; ++ihl) {
    EXPECT_EQ(run(Link::raw_ip, ipv4({.ihl_words = ihl}, tcp({}))).status, Status::bad_ip_header)
        << int{ihl};
  }
  // Total length shorter than the header.
  EXPECT_EQ(run(Link::raw_ip, ipv4({.total_length = 19}, tcp({}))).status, Status::bad_ip_header);
  EXPECT_EQ(run(Link::raw_ip, ipv4({.total_length = 0}, tcp({}))).status, Status::bad_ip_header);
  // IHL 15 (60 bytes) in a 40-byte packet whose total length says 40: a lie.
  EXPECT_EQ(run(Link::raw_ip, ipv4({.ihl_words = 15}, tcp({}))).status, Status::bad_ip_header);
  // IHL 15 with a total length of 100 but only 40 bytes captured: cut by the capture.
  EXPECT_EQ(run(Link::raw_ip, ipv4({.total_length = 100, .ihl_words = 15}, tcp({}))).status,
            Status::truncated);
}

TEST(Ipv4, TotalLengthBeyondCaptureTruncatesPayload) {
  // Snap length cut: the IP header claims 1000 bytes, 20 + 20 + 4 were captured.
  const Bytes pkt = ipv4({.total_length = 1000}, tcp({.payload = {1, 2, 3, 4}}));
  Outcome r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.d.has_ports);
  EXPECT_EQ(r.payload, (Bytes{1, 2, 3, 4}));
  EXPECT_TRUE(r.d.payload_truncated);
}

TEST(Ipv4, TotalLengthShorterThanCaptureEndsThePacket) {
  // Total length says the TCP payload is 2 bytes; 3 trailing bytes are not ours.
  Bytes pkt = ipv4({}, tcp({.payload = {1, 2}}));
  append(pkt, {0xee, 0xee, 0xee});
  Outcome r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, (Bytes{1, 2}));
  EXPECT_FALSE(r.d.payload_truncated);
}

TEST(Ipv4, FirstFragmentHasPorts) {
  const Bytes pkt = ipv4({.proto = ipproto::udp, .more_fragments = true},
                         udp({.payload = filled(16), .length = 1400}));
  Outcome r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.d.fragment);
  EXPECT_FALSE(r.d.later_fragment);
  EXPECT_TRUE(r.d.has_ports);
  EXPECT_EQ(r.d.dport, 62201);
  EXPECT_EQ(r.payload, filled(16));
  EXPECT_TRUE(r.d.payload_truncated);  // the rest of the datagram is in later fragments
}

TEST(Ipv4, LaterFragmentsHaveNoL4Header) {
  // Bytes that look like a TCP header must not be read as one in a later fragment.
  for (bool more : {true, false}) {
    const Bytes pkt =
        ipv4({.frag_offset = 185, .more_fragments = more}, tcp({.dport = 7000, .payload = {1}}));
    Outcome r = run(Link::raw_ip, pkt);
    ASSERT_EQ(r.status, Status::ok);
    EXPECT_TRUE(r.d.fragment);
    EXPECT_TRUE(r.d.later_fragment);
    EXPECT_FALSE(r.d.has_ports);
    EXPECT_EQ(r.d.dport, 0);
    EXPECT_EQ(r.d.tcp_flags, 0);
    EXPECT_EQ(r.d.l4_proto, ipproto::tcp);
    EXPECT_TRUE(r.payload.empty());
    EXPECT_EQ(r.d.src, ip("192.0.2.1"));
  }
  // Offset 1 (8 bytes), the smallest later fragment.
  EXPECT_TRUE(run(Link::raw_ip, ipv4({.frag_offset = 1}, filled(8))).d.later_fragment);
}

TEST(Ipv4, DontFragmentIsNotAFragment) {
  Outcome r = run(Link::raw_ip, ipv4({.dont_fragment = true}, tcp({})));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_FALSE(r.d.fragment);
  EXPECT_TRUE(r.d.has_ports);
}

TEST(Ipv4, TinyFirstFragmentIsRefused) {
  // RFC 1858: a first fragment too short to hold the TCP header (flags in the next one).
  const Bytes segment = tcp({});
  const Bytes pkt = ipv4({.more_fragments = true}, Bytes(segment.begin(), segment.begin() + 8));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::bad_l4_header);
}

TEST(Ipv4, OtherProtocolsCarryTheIpPayload) {
  const Bytes gre = filled(12);
  Outcome r = run(Link::raw_ip, ipv4({.proto = 47}, gre));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.l4_proto, 47);
  EXPECT_FALSE(r.d.has_ports);
  EXPECT_FALSE(r.d.has_icmp);
  EXPECT_EQ(r.payload, gre);
}

// ---------------------------------------------------------------------------------------
// IPv6 extension headers

TEST(Ipv6, EachExtensionHeaderKindIsWalked) {
  struct Case {
    const char* name;
    uint8_t type;
    Bytes header;
  };
  const Case cases[] = {
      {"hop-by-hop", ipproto::hop_by_hop, ext6(ipproto::tcp)},
      {"routing", ipproto::routing, ext6(ipproto::tcp, 3)},
      {"destination options", ipproto::dest_options, ext6(ipproto::tcp, 2)},
      {"authentication", ipproto::ah, ah6(ipproto::tcp)},
      {"atomic fragment", ipproto::fragment, frag6(ipproto::tcp, 0, false)},
  };
  for (const Case& c : cases) {
    const Bytes pkt =
        ipv6({.next = c.type}, join(c.header, tcp({.dport = 2222, .payload = {4, 5}})));
    Outcome r = run(Link::raw_ip, pkt);
    ASSERT_EQ(r.status, Status::ok) << c.name;
    EXPECT_EQ(r.d.l4_proto, ipproto::tcp) << c.name;
    EXPECT_TRUE(r.d.has_ports) << c.name;
    EXPECT_EQ(r.d.dport, 2222) << c.name;
    EXPECT_EQ(r.payload, (Bytes{4, 5})) << c.name;
    EXPECT_FALSE(r.d.fragment) << c.name;
  }
}

TEST(Ipv6, LongChain) {
  Bytes chain = ext6(ipproto::dest_options);   // hop-by-hop
  append(chain, ext6(ipproto::routing, 2));    // destination options
  append(chain, ext6(ipproto::fragment));      // routing
  append(chain, frag6(ipproto::ah, 0, true));  // first fragment
  append(chain, ah6(ipproto::dest_options));   // AH
  append(chain, ext6(ipproto::udp, 4));        // destination options
  append(chain, udp({.dport = 500, .payload = {9, 9, 9}}));
  Outcome r = run(Link::ethernet, ether(0x86dd, ipv6({.next = ipproto::hop_by_hop}, chain)));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.l4_proto, ipproto::udp);
  EXPECT_TRUE(r.d.fragment);
  EXPECT_FALSE(r.d.later_fragment);
  EXPECT_EQ(r.d.dport, 500);
  EXPECT_EQ(r.payload, (Bytes{9, 9, 9}));
}

TEST(Ipv6, FragmentHeaderFirstAndLater) {
  Outcome r = run(Link::raw_ip, ipv6({.next = ipproto::fragment},
                                     join(frag6(ipproto::tcp, 0, true), tcp({.dport = 80}))));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.d.fragment);
  EXPECT_FALSE(r.d.later_fragment);
  EXPECT_TRUE(r.d.has_ports);
  EXPECT_EQ(r.d.dport, 80);

  for (bool more : {true, false}) {
    r = run(Link::raw_ip, ipv6({.next = ipproto::fragment},
                               join(frag6(ipproto::tcp, 181, more), tcp({.dport = 80}))));
    ASSERT_EQ(r.status, Status::ok);
    EXPECT_TRUE(r.d.fragment);
    EXPECT_TRUE(r.d.later_fragment);
    EXPECT_FALSE(r.d.has_ports);
    EXPECT_EQ(r.d.dport, 0);
    EXPECT_EQ(r.d.l4_proto, ipproto::tcp);
    EXPECT_TRUE(r.payload.empty());
  }
}

TEST(Ipv6, FinalHeaders) {
  // ESP: the rest is encrypted. Mobility: final. Neither has ports.
  for (uint8_t final_proto : {ipproto::esp, ipproto::mobility}) {
    const Bytes body = join(ext6(ipproto::tcp), tcp({}));
    Outcome r = run(Link::raw_ip, ipv6({.next = final_proto}, body));
    ASSERT_EQ(r.status, Status::ok) << int{final_proto};
    EXPECT_EQ(r.d.l4_proto, final_proto);
    EXPECT_FALSE(r.d.has_ports);
    EXPECT_EQ(r.payload, body);
  }
  // No next header: nothing follows, whatever bytes are there.
  Outcome r = run(Link::raw_ip, ipv6({.next = ipproto::dest_options},
                                     join(ext6(ipproto::no_next_header), tcp({}))));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.l4_proto, ipproto::no_next_header);
  EXPECT_FALSE(r.d.has_ports);
  EXPECT_TRUE(r.payload.empty());
}

TEST(Ipv6, ChainLengthIsBounded) {
  auto chain_of = [](unsigned n) {
    Bytes chain;
    for (unsigned i = 0; i < n; ++i) {
      append(chain, ext6(i + 1 < n ? ipproto::dest_options : ipproto::udp));
    }
    append(chain, udp({}));
    return ipv6({.next = ipproto::dest_options}, chain);
  };
  Outcome r = run(Link::raw_ip, chain_of(kMaxIpv6ExtHeaders));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.dport, 62201);
  EXPECT_EQ(run(Link::raw_ip, chain_of(kMaxIpv6ExtHeaders + 1)).status,
            Status::too_many_ext_headers);
}

TEST(Ipv6, HopByHopOnlyDirectlyAfterTheHeader) {
  const Bytes pkt = ipv6({.next = ipproto::dest_options},
                         join(join(ext6(ipproto::hop_by_hop), ext6(ipproto::tcp)), tcp({})));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::bad_ip_header);
}

TEST(Ipv6, ExtensionHeaderLengthLies) {
  // Routing header claiming 256 * 8 bytes inside a packet whose payload length is 28.
  Bytes routing = ext6(ipproto::tcp);
  routing[1] = 255;
  Bytes pkt = ipv6({.next = ipproto::routing}, join(routing, tcp({})));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::bad_ip_header);
  // The same with a payload length of 4000 of which only 28 bytes were captured.
  pkt = ipv6({.next = ipproto::routing, .payload_length = 4000}, join(routing, tcp({})));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::truncated);
  // AH length beyond the packet.
  Bytes ah = ah6(ipproto::tcp);
  ah[1] = 200;
  EXPECT_EQ(run(Link::raw_ip, ipv6({.next = ipproto::ah}, join(ah, tcp({})))).status,
            Status::bad_ip_header);
  // A fragment header cut in half by the payload length.
  pkt = ipv6({.next = ipproto::fragment, .payload_length = 4}, frag6(ipproto::tcp, 0, true));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::bad_ip_header);
}

TEST(Ipv6, PayloadLengthHugeOrZero) {
  // 65535 claimed, 8 + 3 captured: a snap-length cut.
  Bytes pkt = ipv6({.next = ipproto::udp, .payload_length = 65535}, udp({.payload = {1, 2, 3}}));
  Outcome r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, (Bytes{1, 2, 3}));
  EXPECT_FALSE(r.d.payload_truncated);  // the UDP length says 11 bytes: all there
  pkt = ipv6({.next = ipproto::tcp, .payload_length = 65535}, tcp({.payload = {1, 2, 3}}));
  r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, (Bytes{1, 2, 3}));
  EXPECT_TRUE(r.d.payload_truncated);

  // 0: jumbogram / GRO aggregate; the captured length is the end, and a UDP length of
  // 0 means the same.
  pkt = ipv6({.next = ipproto::udp, .payload_length = 0}, udp({.payload = {4, 5}, .length = 0}));
  r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, (Bytes{4, 5}));
  pkt = ipv6({.next = ipproto::tcp, .payload_length = 0}, tcp({.payload = {6}}));
  r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, Bytes{6});
  // Outside a jumbogram a UDP length of 0 is malformed.
  pkt = ipv6({.next = ipproto::udp}, udp({.payload = {4, 5}, .length = 0}));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::bad_l4_header);
}

TEST(Ipv6, ShortOrWrongVersion) {
  EXPECT_EQ(run(Link::raw_ip, Bytes(39, 0x60)).status, Status::truncated);
  EXPECT_EQ(run(Link::ipv6, ipv6({.version = 4}, {})).status, Status::bad_ip_version);
}

// ---------------------------------------------------------------------------------------
// TCP, UDP, ICMP

TEST(Tcp, OptionsAndPayload) {
  const Bytes options = {2, 4,  0x05, 0xb4,                    // MSS 1460
                         4, 2,                                 // SACK permitted
                         8, 10, 0,    0,    0, 1, 0, 0, 0, 0,  // timestamps
                         1, 3,  3,    7};                      // NOP, window scale 7
  const Bytes pkt = ipv4({}, tcp({.options = options, .payload = filled(5)}));
  Outcome r = run(Link::raw_ip, pkt);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, filled(5));
  // The longest possible options block (data offset 15).
  const Bytes max = ipv4({}, tcp({.options = Bytes(40, 1), .payload = {0x42}}));
  r = run(Link::raw_ip, max);
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, Bytes{0x42});
}

TEST(Tcp, EveryFlagBitIsKept) {
  const uint8_t bits[] = {tcpflag::fin, tcpflag::syn, tcpflag::rst,     tcpflag::psh,
                          tcpflag::ack, tcpflag::urg, tcpflag_ecn::ece, tcpflag_ecn::cwr};
  for (uint8_t bit : bits) {
    Outcome r = run(Link::raw_ip, ipv4({}, tcp({.flags = bit})));
    ASSERT_EQ(r.status, Status::ok);
    EXPECT_EQ(r.d.tcp_flags, bit);
  }
  Outcome r = run(Link::raw_ip, ipv6({}, tcp({.flags = 0xff})));
  EXPECT_EQ(r.d.tcp_flags, 0xff);
  r = run(Link::raw_ip,
          ipv4({}, tcp({.flags = tcpflag::syn | tcpflag_ecn::ece | tcpflag_ecn::cwr})));
  EXPECT_EQ(r.d.tcp_flags, 0xc2);
}

TEST(Tcp, DataOffsetLies) {
  for (uint8_t words = 0; words < 5; ++words) {
    EXPECT_EQ(run(Link::raw_ip, ipv4({}, tcp({.data_offset_words = words}))).status,
              Status::bad_l4_header)
        << int{words};
  }
  // Data offset 15 (60 bytes) in a 20-byte segment: a lie about a complete packet.
  Bytes pkt = ipv4({}, tcp({.data_offset_words = 15}));
  Outcome r = run(Link::raw_ip, pkt);
  EXPECT_EQ(r.status, Status::bad_l4_header);
  EXPECT_FALSE(r.d.has_ports);
  // The same when the IP length leaves room for it but the capture stopped early.
  pkt = ipv4({.total_length = 200}, tcp({.data_offset_words = 15}));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::truncated);
  // A TCP header cut short inside a complete IP packet.
  pkt = ipv4({}, filled(12));
  EXPECT_EQ(run(Link::raw_ip, pkt).status, Status::bad_l4_header);
}

TEST(Udp, LengthSmallerThanAvailable) {
  // UDP says 2 bytes of data; 6 more bytes follow inside the IP packet.
  Bytes datagram = udp({.payload = filled(8), .length = 10});
  Outcome r = run(Link::raw_ip, ipv4({.proto = ipproto::udp}, datagram));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, filled(2));
  EXPECT_FALSE(r.d.payload_truncated);
  // Exactly a header.
  r = run(Link::raw_ip, ipv4({.proto = ipproto::udp}, udp({.payload = filled(4), .length = 8})));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.payload.empty());
}

TEST(Udp, LengthLargerThanAvailable) {
  for (uint16_t length : {uint16_t{13}, uint16_t{1000}, uint16_t{65535}}) {
    Outcome r = run(Link::raw_ip,
                    ipv4({.proto = ipproto::udp}, udp({.payload = filled(4), .length = length})));
    ASSERT_EQ(r.status, Status::ok) << length;
    EXPECT_EQ(r.payload, filled(4));
    EXPECT_TRUE(r.d.payload_truncated);
  }
  // Captured shorter than both IP and UDP lengths claim (snap length).
  Outcome r = run(Link::raw_ip, ipv4({.proto = ipproto::udp, .total_length = 1500},
                                     udp({.payload = filled(4), .length = 1480})));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.payload, filled(4));
  EXPECT_TRUE(r.d.payload_truncated);
}

TEST(Udp, ImpossibleLength) {
  for (uint16_t length : {uint16_t{0}, uint16_t{1}, uint16_t{7}}) {
    Outcome r = run(Link::raw_ip, ipv4({.proto = ipproto::udp}, udp({.length = length})));
    EXPECT_EQ(r.status, Status::bad_l4_header) << length;
    EXPECT_FALSE(r.d.has_ports);
  }
  EXPECT_EQ(run(Link::raw_ip, ipv4({.proto = ipproto::udp}, filled(7))).status,
            Status::bad_l4_header);
}

TEST(Icmp, TypeCodeAndPayload) {
  Outcome r = run(Link::ethernet,
                  ether(0x0800, ipv4({.proto = ipproto::icmp}, icmp(8, 0, {'s', 'p', 'a'}))));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.d.has_icmp);
  EXPECT_FALSE(r.d.has_ports);
  EXPECT_EQ(r.d.icmp_type, 8);
  EXPECT_EQ(r.d.icmp_code, 0);
  EXPECT_EQ(r.payload, (Bytes{'s', 'p', 'a'}));

  r = run(Link::raw_ip, ipv4({.proto = ipproto::icmp}, icmp(3, 3, filled(28))));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.icmp_type, 3);
  EXPECT_EQ(r.d.icmp_code, 3);

  // An ICMP header cut short inside a complete packet.
  EXPECT_EQ(run(Link::raw_ip, ipv4({.proto = ipproto::icmp}, filled(4))).status,
            Status::bad_l4_header);
}

TEST(Icmp, Icmpv6) {
  Outcome r =
      run(Link::raw_ip, ipv6({.next = ipproto::icmpv6}, icmp(128, 0, filled(6))));  // echo request
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_TRUE(r.d.has_icmp);
  EXPECT_EQ(r.d.icmp_type, 128);
  EXPECT_EQ(r.payload, filled(6));
  // Behind a hop-by-hop header (MLD reports look like this).
  r = run(Link::raw_ip, ipv6({.next = ipproto::hop_by_hop},
                             join(ext6(ipproto::icmpv6), icmp(143, 0, filled(20)))));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.d.icmp_type, 143);
  EXPECT_EQ(r.d.l4_proto, ipproto::icmpv6);
}

TEST(Icmp, WrongFamilyIsNotDecoded) {
  Outcome r = run(Link::raw_ip, ipv4({.proto = ipproto::icmpv6}, icmp(128, 0, {})));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_FALSE(r.d.has_icmp);
  r = run(Link::raw_ip, ipv6({.next = ipproto::icmp}, icmp(8, 0, {})));
  ASSERT_EQ(r.status, Status::ok);
  EXPECT_FALSE(r.d.has_icmp);
}

// ---------------------------------------------------------------------------------------
// Truncation at every byte offset, and random corruption.

struct Sample {
  const char* name;
  Link link;
  Bytes frame{};
};

std::vector<Sample> valid_frames() {
  Bytes v6_chain = ext6(ipproto::routing);
  append(v6_chain, ext6(ipproto::fragment, 2));
  append(v6_chain, frag6(ipproto::ah, 0, true));
  append(v6_chain, ah6(ipproto::tcp));
  append(v6_chain, tcp({.options = {2, 4, 5, 0xb4}, .payload = filled(9)}));
  const Bytes tcp_opts =
      tcp({.flags = 0x18, .options = {2, 4, 5, 0xb4, 4, 2}, .payload = filled(7)});
  return {
      {"eth v4 tcp options", Link::ethernet,
       ether(0x0800, ipv4({.options = {0x94, 4, 0, 0}}, tcp_opts), {}, 60)},
      {"eth qinq v6 udp", Link::ethernet,
       ether(0x86dd, v6_udp(filled(11)), {{0x88a8, 3}, {0x8100, 4}})},
      {"eth v6 ext chain", Link::ethernet,
       ether(0x86dd, ipv6({.next = ipproto::hop_by_hop}, v6_chain))},
      {"eth v4 icmp", Link::ethernet,
       ether(0x0800, ipv4({.proto = ipproto::icmp}, icmp(8, 0, filled(4))), {}, 60)},
      {
          "eth v4 udp first fragment",
          Link::ethernet,
          ether(0x0800, ipv4({.proto = ipproto::udp, .more_fragments = true},
                             udp({.payload = filled(6), .length = 300}))),
      },
      {"sll v4 udp", Link::linux_sll,
       sll(0x0800, ipv4({.proto = ipproto::udp}, udp({.payload = filled(3)})))},
      {"sll vlan v6 icmpv6", Link::linux_sll,
       sll(0x8100, join(Bytes{0, 9, 0x86, 0xdd},
                        ipv6({.next = ipproto::icmpv6}, icmp(128, 0, filled(2)))))},
      {"sll2 v6 tcp", Link::linux_sll2, sll2(0x86dd, ipv6({}, tcp_opts))},
      {"raw v4 tcp", Link::raw_ip, ipv4({}, tcp_opts)},
      {"ipv6 link dest-opts udp", Link::ipv6,
       ipv6({.next = ipproto::dest_options}, join(ext6(ipproto::udp, 2), udp({.payload = {1}})))},
      {"ipv4 link later fragment", Link::ipv4, ipv4({.frag_offset = 3}, filled(16))},
      {"null v6 tcp", Link::null_loopback, null_lo(30, ipv6({}, tcp_opts), false)},
      {"loop v4 udp", Link::null_loopback,
       null_lo(2, ipv4({.proto = ipproto::udp}, udp({.payload = filled(2)})), true)},
  };
}

TEST(Truncation, EveryPrefixIsOkOrTruncated) {
  for (const Sample& s : valid_frames()) {
    const Outcome full = run(s.link, s.frame);
    ASSERT_EQ(full.status, Status::ok) << s.name;
    for (size_t len = 0; len < s.frame.size(); ++len) {
      const Bytes prefix(s.frame.begin(), s.frame.begin() + static_cast<std::ptrdiff_t>(len));
      const Outcome r = run(s.link, prefix);
      ASSERT_TRUE(r.status == Status::ok || r.status == Status::truncated)
          << s.name << " prefix " << len << ": " << status_str(r.status);
      if (r.status != Status::ok) continue;
      // Whatever a prefix yields agrees with the whole frame; only the payload shrinks.
      EXPECT_EQ(r.d.src, full.d.src) << s.name << " " << len;
      EXPECT_EQ(r.d.dst, full.d.dst) << s.name << " " << len;
      EXPECT_EQ(r.d.l4_proto, full.d.l4_proto) << s.name << " " << len;
      EXPECT_EQ(r.d.has_ports, full.d.has_ports) << s.name << " " << len;
      EXPECT_EQ(r.d.dport, full.d.dport) << s.name << " " << len;
      EXPECT_EQ(r.d.tcp_flags, full.d.tcp_flags) << s.name << " " << len;
      EXPECT_EQ(r.d.has_icmp, full.d.has_icmp) << s.name << " " << len;
      EXPECT_EQ(r.d.later_fragment, full.d.later_fragment) << s.name << " " << len;
      EXPECT_EQ(r.d.vlan_id, full.d.vlan_id) << s.name << " " << len;
      ASSERT_LE(r.payload.size(), full.payload.size()) << s.name << " " << len;
      EXPECT_TRUE(std::equal(r.payload.begin(), r.payload.end(), full.payload.begin()))
          << s.name << " " << len;
      if (r.payload.size() < full.payload.size()) {
        EXPECT_TRUE(r.d.payload_truncated) << s.name << " " << len;
      }
    }
  }
}

TEST(Truncation, HeadersCutShortAreTruncatedNotOk) {
  // A SYN cut anywhere before the end of its TCP header must never yield ports.
  const Bytes frame = ether(0x0800, v4_tcp_syn());
  for (size_t len = 0; len < frame.size(); ++len) {
    const Bytes prefix(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_EQ(run(Link::ethernet, prefix).status, Status::truncated) << len;
  }
}

TEST(Corruption, RandomMutationsKeepInvariants) {
  // A deterministic mini-fuzzer that runs with every unit test run (the libFuzzer target
  // goes further): flip, overwrite and cut bytes of valid frames.
  std::mt19937 rng(20240531);
  const std::vector<Sample> samples = valid_frames();
  unsigned ok = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    const Sample& s = samples[rng() % samples.size()];
    Bytes frame = s.frame;
    const unsigned edits = 1 + rng() % 4;
    for (unsigned e = 0; e < edits && !frame.empty(); ++e) {
      const size_t at = rng() % frame.size();
      switch (rng() % 4) {
        case 0:
          frame[at] = static_cast<uint8_t>(frame[at] ^ (1u << (rng() % 8)));
          break;
        case 1:
          frame[at] = static_cast<uint8_t>(rng());
          break;
        case 2:
          frame[at] = (rng() % 2) ? 0xff : 0x00;
          break;
        default:
          frame.resize(at);
          break;
      }
    }
    const Outcome r = run(s.link, frame);  // run() checks the payload lies in the buffer
    if (r.d.has_ports) {
      EXPECT_TRUE(r.d.l4_proto == ipproto::tcp || r.d.l4_proto == ipproto::udp);
      EXPECT_FALSE(r.d.later_fragment);
    }
    if (r.d.later_fragment) {
      EXPECT_TRUE(r.d.fragment);
    }
    EXPECT_LE(r.d.vlan_tags, kMaxVlanTags);
    if (r.status == Status::ok) ++ok;
  }
  EXPECT_GT(ok, 1000u);  // the mutations did not just produce garbage
}

// ---------------------------------------------------------------------------------------
// Real captures: frames the kernel and libpcap produced (tests/data/packet/capture.sh), so
// the decoder is checked against bytes this file's builder did not make.

struct Capture {
  int linktype = -1;
  std::vector<Bytes> records;
};

// Minimal classic-pcap reader (both byte orders, micro- and nanosecond magic).
std::optional<Capture> read_pcap(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  Bytes file;
  uint8_t chunk[4096];
  size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) file.insert(file.end(), chunk, chunk + n);
  std::fclose(f);
  if (file.size() < 24) return std::nullopt;
  auto u32 = [&](size_t at, bool swap) {
    uint32_t v = 0;
    std::memcpy(&v, file.data() + at, 4);
    return swap ? __builtin_bswap32(v) : v;
  };
  const uint32_t magic = u32(0, false);
  bool swap = false;
  if (magic == 0xa1b2c3d4U || magic == 0xa1b23c4dU) {
    swap = false;
  } else if (magic == 0xd4c3b2a1U || magic == 0x4d3cb2a1U) {
    swap = true;
  } else {
    return std::nullopt;
  }
  Capture c;
  c.linktype = static_cast<int>(u32(20, swap) & 0x0fffffff);
  size_t at = 24;
  while (file.size() - at >= 16) {
    const size_t caplen = u32(at + 8, swap);
    at += 16;
    if (caplen > file.size() - at) return std::nullopt;
    c.records.emplace_back(file.begin() + static_cast<std::ptrdiff_t>(at),
                           file.begin() + static_cast<std::ptrdiff_t>(at + caplen));
    at += caplen;
  }
  if (at != file.size()) return std::nullopt;
  return c;
}

struct Seen {
  Outcome o;
  Bytes frame;
  size_t ip_offset;
};

// Decodes every record; all must be IP that decodes, or ARP refused as not IP.
std::vector<Seen> decode_capture(const char* file, int expected_linktype, size_t ip_offset,
                                 size_t proto_offset) {
  const auto capture = read_pcap(std::string(KG_TEST_DATA) + "/packet/" + file);
  EXPECT_TRUE(capture.has_value()) << file;
  if (!capture) return {};
  EXPECT_EQ(capture->linktype, expected_linktype) << file;
  const auto link = link_from_dlt(capture->linktype);
  EXPECT_TRUE(link.has_value()) << file;
  if (!link) return {};
  std::vector<Seen> seen;
  for (size_t i = 0; i < capture->records.size(); ++i) {
    const Bytes& frame = capture->records[i];
    Outcome o = run(*link, frame);
    if (o.status == Status::unsupported_link_proto) {
      // Only ARP (ethertype / cooked protocol field 0x0806).
      EXPECT_GE(frame.size(), proto_offset + 2) << file << " record " << i;
      if (frame.size() >= proto_offset + 2) {
        EXPECT_EQ(frame[proto_offset] << 8 | frame[proto_offset + 1], 0x0806)
            << file << " record " << i;
      }
      continue;
    }
    EXPECT_EQ(o.status, Status::ok) << file << " record " << i << ": " << status_str(o.status);
    seen.push_back({std::move(o), frame, ip_offset});
  }
  EXPECT_GE(seen.size(), 5u) << file;
  return seen;
}

template <typename Pred>
size_t count_if_seen(const std::vector<Seen>& seen, Pred pred) {
  size_t n = 0;
  for (const Seen& s : seen) {
    if (pred(s.o.d, s)) ++n;
  }
  return n;
}

Bytes text(const char* t) {
  return Bytes(t, t + std::strlen(t));
}

void expect_gateway_view(const char* file, int linktype, size_t ip_offset, size_t proto_offset) {
  SCOPED_TRACE(file);
  const std::vector<Seen> seen = decode_capture(file, linktype, ip_offset, proto_offset);
  const IpAddr client4 = ip("192.0.2.1"), gw4 = ip("192.0.2.2");
  const IpAddr client6 = ip("2001:db8:7::1"), gw6 = ip("2001:db8:7::2");

  // The knocks: a kernel TCP SYN (with MSS/SACK/TS/WS options) for each family.
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen&) {
                            return d.src == client4 && d.dst == gw4 && d.l4_proto == ipproto::tcp &&
                                   d.has_ports && d.dport == 7000 && d.tcp_flags == tcpflag::syn &&
                                   !d.fragment;
                          }),
            1u);
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen&) {
                            return d.src == client6 && d.dst == gw6 && d.dport == 7001 &&
                                   d.tcp_flags == tcpflag::syn;
                          }),
            1u);
  // The gateway's RST+ACK answers.
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen&) {
                            return d.src == gw4 && d.sport == 7000 &&
                                   d.tcp_flags == (tcpflag::rst | tcpflag::ack);
                          }),
            1u);

  // SPA-like UDP datagrams: the payload is exactly what was sent.
  // (Structured bindings cannot be captured by lambdas in C++20 as clang 14 implements it.)
  for (const auto& expected : {std::pair{client4, text("knockgate-spa-v4")},
                               std::pair{client6, text("knockgate-spa-v6")}}) {
    const IpAddr& src = expected.first;
    const Bytes& payload = expected.second;
    const size_t n = count_if_seen(seen, [&](const Decoded& d, const Seen& s) {
      return d.src == src && d.l4_proto == ipproto::udp && d.dport == 62201 &&
             s.o.payload == payload && !d.payload_truncated;
    });
    EXPECT_EQ(n, 1u) << src.str();
  }

  // ICMP echo both ways, port unreachable, and the ICMPv6 equivalents.
  auto icmp_count = [&](const IpAddr& src, uint8_t type, uint8_t code) {
    return count_if_seen(seen, [&](const Decoded& d, const Seen&) {
      return d.src == src && d.has_icmp && d.icmp_type == type && d.icmp_code == code &&
             !d.fragment;
    });
  };
  EXPECT_EQ(icmp_count(client4, 8, 0), 1u);
  EXPECT_EQ(icmp_count(gw4, 0, 0), 1u);
  EXPECT_EQ(icmp_count(gw4, 3, 3), 2u);  // for 62201 and for the fragmented 62202
  EXPECT_EQ(icmp_count(client6, 128, 0), 1u);
  EXPECT_EQ(icmp_count(gw6, 129, 0), 1u);
  EXPECT_EQ(icmp_count(gw6, 1, 4), 1u);

  // 3000-byte pings: first fragments decode their ICMP header, later ones nothing, and the
  // capture's 256-byte snap length shows as a truncated payload.
  for (const IpAddr& src : {client4, client6}) {
    EXPECT_EQ(count_if_seen(seen,
                            [&](const Decoded& d, const Seen&) {
                              return d.src == src && d.fragment && !d.later_fragment &&
                                     d.has_icmp && d.payload_truncated;
                            }),
              1u)
        << src.str();
    EXPECT_EQ(count_if_seen(seen,
                            [&](const Decoded& d, const Seen&) {
                              return d.src == src && d.later_fragment && !d.has_icmp &&
                                     !d.has_ports && d.payload.empty() &&
                                     d.l4_proto == (src.is_v4() ? ipproto::icmp : ipproto::icmpv6);
                            }),
              2u)
        << src.str();
  }
  // The fragmented 3000-byte UDP datagram: ports in the first fragment only.
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen& s) {
                            return d.src == client4 && d.fragment && !d.later_fragment &&
                                   d.dport == 62202 && d.payload_truncated &&
                                   s.o.payload.size() > 100 && s.o.payload[0] == 'x';
                          }),
            1u);
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen&) {
                            return d.src == client4 && d.later_fragment &&
                                   d.l4_proto == ipproto::udp;
                          }),
            2u);

  // hping3 SYN carrying the record-route option (IHL > 5) in both directions.
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen& s) {
                            return (d.dport == 7002 || d.sport == 7002) &&
                                   (s.frame[s.ip_offset] & 0x0f) > 5;
                          }),
            2u);
  // All eight flag bits.
  EXPECT_EQ(
      count_if_seen(seen, [&](const Decoded& d,
                              const Seen&) { return d.dport == 7003 && d.tcp_flags == 0xff; }),
      1u);
  // MLDv2 reports: ICMPv6 143 behind a hop-by-hop header (next header 0 in the IPv6 header).
  EXPECT_GE(count_if_seen(seen,
                          [&](const Decoded& d, const Seen& s) {
                            return d.has_icmp && d.icmp_type == 143 &&
                                   d.l4_proto == ipproto::icmpv6 &&
                                   s.frame[s.ip_offset + 6] == ipproto::hop_by_hop;
                          }),
            1u);
}

TEST(RealCaptures, EthernetOnTheGateway) {
  expect_gateway_view("eth.pcap", 1, 14, 12);
}
TEST(RealCaptures, CookedV1OnAny) {
  expect_gateway_view("sll.pcap", 113, 16, 14);
}
TEST(RealCaptures, CookedV2OnAny) {
  expect_gateway_view("sll2.pcap", 276, 20, 0);
}

TEST(RealCaptures, RawIpOnATunDevice) {
  const std::vector<Seen> seen = decode_capture("raw.pcap", 101, 0, 0);
  const IpAddr client4 = ip("10.77.0.1");
  EXPECT_GE(count_if_seen(seen,
                          [&](const Decoded& d, const Seen&) {
                            return d.src == client4 && d.dst == ip("10.77.0.5") &&
                                   d.dport == 7000 && d.tcp_flags == tcpflag::syn;
                          }),
            1u);
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen& s) {
                            return d.src == client4 && d.dport == 62201 &&
                                   s.o.payload == text("knockgate-tun");
                          }),
            1u);
  EXPECT_EQ(count_if_seen(seen,
                          [&](const Decoded& d, const Seen&) {
                            return d.src == client4 && d.has_icmp && d.icmp_type == 8;
                          }),
            1u);
  EXPECT_GE(count_if_seen(seen,
                          [&](const Decoded& d, const Seen&) {
                            return d.src == ip("fd00:77::1") && d.dst == ip("fd00:77::5") &&
                                   d.dport == 7001 && d.tcp_flags == tcpflag::syn;
                          }),
            1u);
}

// The fuzz seeds (written by tests/data/packet/make_fuzz_seeds.py) must stay meaningful:
// each is a selector byte (index into fuzz_packet.cpp's kDlts) and a frame that decodes.
TEST(FuzzSeeds, EverySeedDecodes) {
  constexpr int kFuzzDlts[] = {1, 113, 276, 12, 228, 229, 0, 108, 101, 147};
  const std::filesystem::path dir =
      std::filesystem::path(KG_SOURCE_DIR) / "tests/fuzz/corpus/fuzz_packet";
  size_t seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::FILE* f = std::fopen(entry.path().c_str(), "rb");
    ASSERT_NE(f, nullptr) << entry.path();
    Bytes seed(entry.file_size());
    const size_t got = std::fread(seed.data(), 1, seed.size(), f);
    std::fclose(f);
    ASSERT_EQ(got, seed.size());
    ASSERT_GE(seed.size(), 2u) << entry.path();
    const auto link = link_from_dlt(kFuzzDlts[seed[0] % std::size(kFuzzDlts)]);
    ASSERT_TRUE(link.has_value()) << entry.path();
    const Outcome o = run(*link, Bytes(seed.begin() + 1, seed.end()));
    EXPECT_EQ(o.status, Status::ok) << entry.path();
    ++seeds;
  }
  EXPECT_GE(seeds, 15u);
}
}  // namespace
}  // namespace kg::packet
