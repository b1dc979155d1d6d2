// The capture filter is checked by running it, in libpcap's own BPF interpreter, on
// cooked-v2 packets built here: what passes must be exactly what could be a knock.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstring>
#include <vector>

#include "captured/filter.h"

namespace kg::captured {
namespace {

struct Pkt {
  int ifindex = 3;
  std::string dst = "203.0.113.1";
  Proto proto = Proto::tcp;
  uint16_t dport = 7000;
  uint8_t flags = tcpflag::syn;
  uint8_t v6_next_header = 0;  // non-zero: put an extension header of this type first
};

std::vector<uint8_t> build_sll2(const Pkt& p) {
  const auto dst = *IpAddr::parse(p.dst);
  std::vector<uint8_t> f(20, 0);
  const uint16_t ethertype = dst.is_v4() ? 0x0800 : 0x86dd;
  f[0] = static_cast<uint8_t>(ethertype >> 8);
  f[1] = static_cast<uint8_t>(ethertype & 0xff);
  const uint32_t idx = htonl(static_cast<uint32_t>(p.ifindex));
  std::memcpy(&f[4], &idx, 4);
  f[8] = 0x00;
  f[9] = 0x01;  // ARPHRD_ETHER
  f[10] = 0;    // PACKET_HOST
  f[11] = 6;
  const uint8_t l4proto = p.proto == Proto::tcp ? 6 : 17;
  std::vector<uint8_t> l4(p.proto == Proto::tcp ? 20 : 8, 0);
  l4[2] = static_cast<uint8_t>(p.dport >> 8);
  l4[3] = static_cast<uint8_t>(p.dport & 0xff);
  if (p.proto == Proto::tcp) {
    l4[12] = 0x50;
    l4[13] = p.flags;
  } else {
    l4[5] = 8;
  }
  if (dst.is_v4()) {
    std::vector<uint8_t> ip(20, 0);
    ip[0] = 0x45;
    const auto total = static_cast<uint16_t>(20 + l4.size());
    ip[2] = static_cast<uint8_t>(total >> 8);
    ip[3] = static_cast<uint8_t>(total & 0xff);
    ip[8] = 64;
    ip[9] = l4proto;
    ip[12] = 198;
    ip[13] = 51;
    ip[14] = 100;
    ip[15] = 7;
    std::memcpy(&ip[16], dst.data(), 4);
    f.insert(f.end(), ip.begin(), ip.end());
  } else {
    std::vector<uint8_t> ext;
    if (p.v6_next_header != 0) ext = {l4proto, 0, 1, 4, 0, 0, 0, 0};  // 8-byte option header
    std::vector<uint8_t> ip(40, 0);
    ip[0] = 0x60;
    const auto plen = static_cast<uint16_t>(ext.size() + l4.size());
    ip[4] = static_cast<uint8_t>(plen >> 8);
    ip[5] = static_cast<uint8_t>(plen & 0xff);
    ip[6] = p.v6_next_header != 0 ? p.v6_next_header : l4proto;
    ip[7] = 64;
    ip[8] = 0x20;
    ip[9] = 0x01;
    ip[23] = 7;
    std::memcpy(&ip[24], dst.data(), 16);
    f.insert(f.end(), ip.begin(), ip.end());
    f.insert(f.end(), ext.begin(), ext.end());
  }
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

class FilterRun {
 public:
  explicit FilterRun(const std::string& expr) {
    dead_ = pcap_open_dead(DLT_LINUX_SLL2, 256);
    ok_ = pcap_compile(dead_, &prog_, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0;
    if (!ok_) error_ = pcap_geterr(dead_);
  }
  ~FilterRun() {
    if (ok_) pcap_freecode(&prog_);
    pcap_close(dead_);
  }
  FilterRun(const FilterRun&) = delete;
  FilterRun& operator=(const FilterRun&) = delete;
  bool compiled() const { return ok_; }
  const std::string& error() const { return error_; }
  bool passes(const Pkt& p) const {
    const auto bytes = build_sll2(p);
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<bpf_u_int32>(bytes.size());
    return pcap_offline_filter(&prog_, &h, bytes.data()) != 0;
  }

 private:
  pcap_t* dead_ = nullptr;
  bpf_program prog_{};
  bool ok_ = false;
  std::string error_;
};

FilterInputs lab_inputs() {
  FilterInputs in;
  in.ifindexes = {3};
  in.local_addrs = {*IpAddr::parse("203.0.113.1"), *IpAddr::parse("2001:db8:1::1")};
  in.doors.push_back({{{Proto::tcp, 7000}, {Proto::tcp, 8000}, {Proto::udp, 9000}},
                      TcpFlagsTest{tcpflag::syn, tcpflag::ack},
                      std::nullopt});
  in.doors.push_back({{{Proto::tcp, 5000}}, TcpFlagsTest{}, IpAddr::parse("192.0.2.80")});
  return in;
}

TEST(CaptureFilter, PassesExactlyTheKnocks) {
  FilterRun f(build_filter(lab_inputs()));
  ASSERT_TRUE(f.compiled()) << f.error();
  EXPECT_TRUE(f.passes({}));
  EXPECT_TRUE(f.passes({.dport = 8000}));
  EXPECT_TRUE(f.passes({.proto = Proto::udp, .dport = 9000}));
  EXPECT_FALSE(f.passes({.dport = 7001})) << "port in no door";
  EXPECT_FALSE(f.passes({.proto = Proto::udp, .dport = 7000})) << "wrong protocol";
  EXPECT_FALSE(f.passes({.flags = tcpflag::syn | tcpflag::ack})) << "!ack";
  EXPECT_FALSE(f.passes({.flags = tcpflag::ack})) << "syn required";
  EXPECT_FALSE(f.passes({.ifindex = 4})) << "not a capture interface";
  EXPECT_FALSE(f.passes({.dst = "203.0.113.2"})) << "not a local address";
  EXPECT_TRUE(f.passes({.dst = "2001:db8:1::1"}));
  EXPECT_TRUE(f.passes({.dst = "192.0.2.80", .dport = 5000, .flags = tcpflag::ack})) << "target";
  EXPECT_FALSE(f.passes({.dst = "203.0.113.1", .dport = 5000})) << "door with target";
}

TEST(CaptureFilter, Ipv6ExtensionHeadersReachUserSpace) {
  FilterRun f(build_filter(lab_inputs()));
  ASSERT_TRUE(f.compiled()) << f.error();
  EXPECT_TRUE(f.passes({.dst = "2001:db8:1::1", .dport = 7000, .v6_next_header = 0}));
  EXPECT_TRUE(f.passes({.dst = "2001:db8:1::1", .dport = 7000, .v6_next_header = 60}));
  EXPECT_FALSE(f.passes({.dst = "2001:db8:1::2", .dport = 7000, .v6_next_header = 60}));
}

TEST(CaptureFilter, NothingToListenOnMatchesNothing) {
  FilterInputs in = lab_inputs();
  in.ifindexes.clear();
  EXPECT_EQ(build_filter(in), kMatchNothing);
  in = lab_inputs();
  in.local_addrs.clear();
  in.doors.pop_back();  // the door with a target would still be knockable
  EXPECT_EQ(build_filter(in), kMatchNothing);
  FilterRun f(kMatchNothing);
  ASSERT_TRUE(f.compiled());
  EXPECT_FALSE(f.passes({}));
}

TEST(CaptureFilter, ExtraPortsIgnoreFlags) {
  FilterInputs in = lab_inputs();
  in.extra_ports = {{Proto::udp, 62201}, {Proto::tcp, 62201}};
  FilterRun f(build_filter(in));
  ASSERT_TRUE(f.compiled()) << f.error();
  EXPECT_TRUE(f.passes({.proto = Proto::udp, .dport = 62201}));
  EXPECT_TRUE(f.passes({.dport = 62201, .flags = tcpflag::ack | tcpflag::psh}));
}

}  // namespace
}  // namespace kg::captured
