// libFuzzer target for the packet decoder. Input: one selector byte choosing the pcap link
// type, then the frame. Any read past the frame, a payload span outside it, or a broken
// invariant of Decoded aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "packet/decode.h"

namespace {

using kg::packet::Decoded;
using kg::packet::Status;
namespace ipproto = kg::packet::ipproto;

// Selector byte modulo this table's size; 147 (DLT_USER0) stands for a link type the
// decoder must refuse. Seeds in corpus/fuzz_packet/ use these indices.
constexpr int kDlts[] = {
    kg::packet::dlt::en10mb,        kg::packet::dlt::linux_sll,
    kg::packet::dlt::linux_sll2,    kg::packet::dlt::raw,
    kg::packet::dlt::ipv4,          kg::packet::dlt::ipv6,
    kg::packet::dlt::null_loopback, kg::packet::dlt::loop,
    kg::packet::dlt::linktype_raw,  147,
};

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_packet: invariant broken: %s\n", what);
    std::abort();
  }
}

// Reads every payload byte so ASan sees a span that points outside the input.
uint32_t touch(std::span<const uint8_t> bytes) {
  uint32_t sum = 0;
  for (uint8_t b : bytes) sum += b;
  return sum;
}

void check(const Decoded& d, Status status, std::span<const uint8_t> input) {
  require(kg::packet::status_str(status) != nullptr, "status has a name");
  if (!d.payload.empty()) {
    require(d.payload.data() >= input.data() &&
                d.payload.data() + d.payload.size() <= input.data() + input.size(),
            "payload lies within the input");
  }
  static volatile uint32_t sink;
  sink = sink + touch(d.payload);

  if (d.has_ports) {
    require(d.l4_proto == ipproto::tcp || d.l4_proto == ipproto::udp, "ports only for TCP/UDP");
    require(!d.later_fragment, "no ports in a later fragment");
  }
  if (d.tcp_flags != 0) require(d.has_ports && d.l4_proto == ipproto::tcp, "flags only for TCP");
  if (d.has_icmp) {
    require(!d.has_ports, "ICMP has no ports");
    require(d.l4_proto == (d.src.is_v6() ? ipproto::icmpv6 : ipproto::icmp), "ICMP family");
  }
  if (d.later_fragment) require(d.fragment && d.payload.empty(), "later fragment: no payload");
  require(d.vlan_tags <= kg::packet::kMaxVlanTags, "VLAN tag bound");
  if (d.vlan_tags == 0) require(d.vlan_id == 0, "no VLAN id without a tag");
  require(d.src.family() == d.dst.family(), "one address family");
  if (status == Status::ok) {
    require(!d.src.empty(), "ok means addresses were decoded");
    // A TCP or UDP header that was not decoded is only acceptable in a later fragment.
    if (d.l4_proto == ipproto::tcp || d.l4_proto == ipproto::udp) {
      require(d.has_ports || d.later_fragment, "TCP/UDP decoded unless a later fragment");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int dlt = kDlts[data[0] % (sizeof kDlts / sizeof kDlts[0])];
  const std::span<const uint8_t> frame(data + 1, size - 1);

  Decoded decoded;
  decoded.has_ports = true;  // decode() must reset stale fields
  if (auto link = kg::packet::link_from_dlt(dlt)) {
    const Status status = kg::packet::decode(*link, frame, decoded);
    check(decoded, status, frame);
  } else {
    require(dlt == 147, "every listed DLT but the unknown one maps to a Link");
    const Status status = kg::packet::decode(static_cast<kg::packet::Link>(dlt), frame, decoded);
    require(status == Status::unsupported_link, "unknown link refused");
    check(decoded, status, frame);
  }

  // The same bytes as a bare IP packet (the NFQUEUE path).
  const Status ip_status = kg::packet::decode_ip(frame, decoded);
  check(decoded, ip_status, frame);
  return 0;
}
