#include "packet/decode.h"

#include <algorithm>

namespace kg::packet {
namespace {

constexpr uint16_t kEthertypeIpv4 = 0x0800;
constexpr uint16_t kEthertypeIpv6 = 0x86dd;
constexpr uint16_t kTpid8021q = 0x8100;
constexpr uint16_t kTpid8021ad = 0x88a8;
constexpr uint16_t kTpidQinqLegacy = 0x9100;

constexpr size_t kEthernetHeader = 14;
constexpr size_t kVlanTag = 4;
constexpr size_t kSllHeader = 16;
constexpr size_t kSll2Header = 20;
constexpr size_t kNullHeader = 4;
constexpr size_t kIpv4MinHeader = 20;
constexpr size_t kIpv6Header = 40;
constexpr size_t kTcpMinHeader = 20;
constexpr size_t kUdpHeader = 8;
constexpr size_t kIcmpHeader = 8;
constexpr size_t kIpv6FragmentHeader = 8;

// In cooked captures of netlink monitor devices the protocol field is a netlink family,
// not an ethertype.
constexpr uint16_t kArphrdNetlink = 824;

uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

uint32_t byte_swap32(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xff00U) | ((v << 8) & 0xff0000U) | (v << 24);
}

// The bytes of one IP packet as the decoder sees them. `end` is where reading stops:
// the smaller of what was captured and what the IP header claims (`claimed_end`), so
// link-layer padding is never read as packet data. Invariant: end <= claimed_end.
struct Window {
  const uint8_t* data;
  size_t end;
  size_t claimed_end;

  // Whether `len` bytes at `pos` can be read. A header cut off by the capture is
  // `truncated`; one that would run past the claimed end is a lie about a complete packet,
  // reported as `malformed`. Callers keep pos <= end (so nothing here can wrap).
  Status need(size_t pos, size_t len, Status malformed) const {
    if (len <= end - pos) return Status::ok;
    if (len > claimed_end - pos) return malformed;
    return Status::truncated;
  }

  std::span<const uint8_t> bytes(size_t from, size_t to) const {
    return std::span<const uint8_t>(data + from, to - from);
  }
};

Status decode_l4(const Window& w, size_t pos, uint8_t proto, bool is_v6, bool length_unknown,
                 Decoded& out) {
  out.l4_proto = proto;
  const uint8_t* p = w.data + pos;
  switch (proto) {
    case ipproto::tcp: {
      if (Status s = w.need(pos, kTcpMinHeader, Status::bad_l4_header); s != Status::ok) return s;
      const size_t header_len = static_cast<size_t>(p[12] >> 4) * 4;
      if (header_len < kTcpMinHeader) return Status::bad_l4_header;
      if (Status s = w.need(pos, header_len, Status::bad_l4_header); s != Status::ok) return s;
      out.has_ports = true;
      out.sport = be16(p);
      out.dport = be16(p + 2);
      out.tcp_flags = p[13];
      out.payload = w.bytes(pos + header_len, w.end);
      out.payload_truncated = w.claimed_end > w.end;
      return Status::ok;
    }
    case ipproto::udp: {
      if (Status s = w.need(pos, kUdpHeader, Status::bad_l4_header); s != Status::ok) return s;
      const size_t udp_len = be16(p + 4);
      size_t udp_claimed_end = 0;
      if (udp_len == 0 && length_unknown) {
        // RFC 2675: a UDP length of 0 in a jumbogram means "see the IP length".
        udp_claimed_end = w.claimed_end;
      } else if (udp_len < kUdpHeader) {
        return Status::bad_l4_header;
      } else {
        udp_claimed_end = pos + udp_len;
      }
      out.has_ports = true;
      out.sport = be16(p);
      out.dport = be16(p + 2);
      // Trust the smaller of the UDP and IP lengths: bytes after the UDP length are not
      // ours, and a UDP length beyond the packet cannot conjure bytes.
      const size_t data_end = std::min(udp_claimed_end, w.end);
      out.payload = w.bytes(pos + kUdpHeader, data_end);
      out.payload_truncated = udp_claimed_end > w.end;
      return Status::ok;
    }
    case ipproto::icmp:
    case ipproto::icmpv6: {
      // ICMP in IPv6 or ICMPv6 in IPv4 is nonsense; leave it undecoded like any unknown
      // protocol rather than misreading it.
      if ((proto == ipproto::icmpv6) != is_v6) break;
      if (Status s = w.need(pos, kIcmpHeader, Status::bad_l4_header); s != Status::ok) return s;
      out.has_icmp = true;
      out.icmp_type = p[0];
      out.icmp_code = p[1];
      out.payload = w.bytes(pos + kIcmpHeader, w.end);
      out.payload_truncated = w.claimed_end > w.end;
      return Status::ok;
    }
    case ipproto::no_next_header:
      // RFC 8200 4.7: whatever follows "no next header" is to be ignored.
      return Status::ok;
    default:
      break;
  }
  out.payload = w.bytes(pos, w.end);
  out.payload_truncated = w.claimed_end > w.end;
  return Status::ok;
}

Status decode_v4(std::span<const uint8_t> pkt, Decoded& out) {
  const uint8_t* p = pkt.data();
  const size_t captured = pkt.size();
  if (captured < 1) return Status::truncated;
  if ((p[0] >> 4) != 4) return Status::bad_ip_version;
  const size_t header_len = static_cast<size_t>(p[0] & 0x0f) * 4;
  if (header_len < kIpv4MinHeader) return Status::bad_ip_header;
  if (captured < 4) return Status::truncated;
  const size_t total_len = be16(p + 2);
  // Also rejects a total length of 0 (what GRO'd "BIG TCP" aggregates carry): never a
  // knock or an SPA packet, and off the wire the kernel drops it too.
  if (total_len < header_len) return Status::bad_ip_header;
  if (captured < header_len) return Status::truncated;

  out.ttl = p[8];
  out.src = IpAddr::v4(p + 12);
  out.dst = IpAddr::v4(p + 16);
  out.l4_proto = p[9];

  const uint16_t frag = be16(p + 6);
  const bool more_fragments = (frag & 0x2000) != 0;
  const auto frag_offset = static_cast<uint16_t>(frag & 0x1fff);
  out.fragment = more_fragments || frag_offset != 0;
  if (frag_offset != 0) {
    // The L4 header lives in the first fragment; the bytes here are mid-datagram data.
    out.later_fragment = true;
    return Status::ok;
  }

  const Window w{p, std::min(total_len, captured), total_len};
  return decode_l4(w, header_len, p[9], /*is_v6=*/false, /*length_unknown=*/false, out);
}

Status decode_v6(std::span<const uint8_t> pkt, Decoded& out) {
  const uint8_t* p = pkt.data();
  const size_t captured = pkt.size();
  if (captured < 1) return Status::truncated;
  if ((p[0] >> 4) != 6) return Status::bad_ip_version;
  if (captured < kIpv6Header) return Status::truncated;

  out.ttl = p[7];
  out.src = IpAddr::v6(p + 8);
  out.dst = IpAddr::v6(p + 24);

  // Payload length 0 is a jumbogram (RFC 2675) or a GRO aggregate over 64 KiB as Linux
  // hands it to pcap (BIG TCP, no jumbo option): the captured length is all we have.
  const size_t payload_len = be16(p + 4);
  const bool length_unknown = payload_len == 0;
  const size_t claimed_end = length_unknown ? captured : kIpv6Header + payload_len;
  const Window w{p, std::min(claimed_end, captured), claimed_end};

  uint8_t next = p[6];
  size_t pos = kIpv6Header;
  unsigned ext_headers = 0;
  for (;;) {
    size_t header_len = 0;
    switch (next) {
      case ipproto::hop_by_hop:
      case ipproto::routing:
      case ipproto::dest_options:
      case ipproto::ah: {
        // RFC 8200 4.3: hop-by-hop options may only follow the IPv6 header directly.
        if (next == ipproto::hop_by_hop && ext_headers != 0) return Status::bad_ip_header;
        if (++ext_headers > kMaxIpv6ExtHeaders) return Status::too_many_ext_headers;
        if (Status s = w.need(pos, 2, Status::bad_ip_header); s != Status::ok) return s;
        const size_t len_field = w.data[pos + 1];
        // AH counts 4-octet units minus 2 (RFC 4302); the others 8-octet units minus 1.
        header_len = next == ipproto::ah ? (len_field + 2) * 4 : (len_field + 1) * 8;
        if (Status s = w.need(pos, header_len, Status::bad_ip_header); s != Status::ok) return s;
        break;
      }
      case ipproto::fragment: {
        if (++ext_headers > kMaxIpv6ExtHeaders) return Status::too_many_ext_headers;
        if (Status s = w.need(pos, kIpv6FragmentHeader, Status::bad_ip_header); s != Status::ok) {
          return s;
        }
        const uint16_t offset_and_flags = be16(w.data + pos + 2);
        const bool more_fragments = (offset_and_flags & 1) != 0;
        const uint16_t frag_offset = static_cast<uint16_t>(offset_and_flags >> 3);
        // An atomic fragment (offset 0, no M flag, RFC 6946) is a whole datagram.
        if (more_fragments || frag_offset != 0) out.fragment = true;
        if (frag_offset != 0) {
          out.l4_proto = w.data[pos];
          out.later_fragment = true;
          return Status::ok;
        }
        header_len = kIpv6FragmentHeader;
        break;
      }
      default:
        // Upper layer, ESP (50: the rest is encrypted), mobility (135: carries no
        // further header in practice) or anything unknown: the chain ends here.
        return decode_l4(w, pos, next, /*is_v6=*/true, length_unknown, out);
    }
    next = w.data[pos];
    pos += header_len;
  }
}

// Walks stacked VLAN tags starting at `pos` (where `ethertype` came from just before),
// then hands the IP packet to its decoder.
Status decode_ethertype(std::span<const uint8_t> frame, size_t pos, uint16_t ethertype,
                        Decoded& out) {
  while (ethertype == kTpid8021q || ethertype == kTpid8021ad || ethertype == kTpidQinqLegacy) {
    if (out.vlan_tags == kMaxVlanTags) return Status::too_many_vlan_tags;
    if (frame.size() - pos < kVlanTag) return Status::truncated;
    if (out.vlan_tags == 0) out.vlan_id = static_cast<uint16_t>(be16(frame.data() + pos) & 0x0fff);
    ++out.vlan_tags;
    ethertype = be16(frame.data() + pos + 2);
    pos += kVlanTag;
  }
  switch (ethertype) {
    case kEthertypeIpv4:
      return decode_v4(frame.subspan(pos), out);
    case kEthertypeIpv6:
      return decode_v6(frame.subspan(pos), out);
    default:
      // ARP, LLDP, 802.3 length fields (<= 1500), MPLS, PPPoE, ...
      return Status::unsupported_link_proto;
  }
}

Status decode_null(std::span<const uint8_t> frame, Decoded& out) {
  if (frame.size() < kNullHeader) return Status::truncated;
  // The address family is in the capturing host's byte order (DLT_LOOP: network order).
  // Families are small numbers, so a value with high bits set is the other byte order.
  uint32_t family = le32(frame.data());
  if ((family & 0xffff0000U) != 0) family = byte_swap32(family);
  // AF_INET is 2 everywhere; AF_INET6 is 10 on Linux, 24 on NetBSD/OpenBSD, 28 on
  // FreeBSD, 30 on macOS.
  switch (family) {
    case 2:
      return decode_v4(frame.subspan(kNullHeader), out);
    case 10:
    case 24:
    case 28:
    case 30:
      return decode_v6(frame.subspan(kNullHeader), out);
    default:
      return Status::unsupported_link_proto;
  }
}

// Raw IP: the version nibble says which decoder applies.
Status decode_by_version(std::span<const uint8_t> packet, Decoded& out) {
  if (packet.empty()) return Status::truncated;
  switch (packet[0] >> 4) {
    case 4:
      return decode_v4(packet, out);
    case 6:
      return decode_v6(packet, out);
    default:
      return Status::bad_ip_version;
  }
}

}  // namespace

std::optional<Link> link_from_dlt(int dlt) {
  switch (dlt) {
    case dlt::null_loopback:
    case dlt::loop:
      return Link::null_loopback;
    case dlt::en10mb:
      return Link::ethernet;
    case dlt::raw:
    case dlt::linktype_raw:
      return Link::raw_ip;
    case dlt::linux_sll:
      return Link::linux_sll;
    case dlt::linux_sll2:
      return Link::linux_sll2;
    case dlt::ipv4:
      return Link::ipv4;
    case dlt::ipv6:
      return Link::ipv6;
    default:
      return std::nullopt;
  }
}

const char* link_str(Link link) {
  switch (link) {
    case Link::ethernet:
      return "ethernet";
    case Link::linux_sll:
      return "linux_sll";
    case Link::linux_sll2:
      return "linux_sll2";
    case Link::raw_ip:
      return "raw_ip";
    case Link::ipv4:
      return "ipv4";
    case Link::ipv6:
      return "ipv6";
    case Link::null_loopback:
      return "null_loopback";
  }
  return "unknown";
}

const char* status_str(Status status) {
  switch (status) {
    case Status::ok:
      return "ok";
    case Status::truncated:
      return "truncated";
    case Status::unsupported_link:
      return "unsupported link type";
    case Status::unsupported_link_proto:
      return "not IP";
    case Status::too_many_vlan_tags:
      return "too many VLAN tags";
    case Status::bad_ip_version:
      return "bad IP version";
    case Status::bad_ip_header:
      return "bad IP header";
    case Status::too_many_ext_headers:
      return "too many IPv6 extension headers";
    case Status::bad_l4_header:
      return "bad L4 header";
  }
  return "unknown status";
}

Status decode_ip(std::span<const uint8_t> packet, Decoded& out) {
  out = Decoded{};
  return decode_by_version(packet, out);
}

Status decode(Link link, std::span<const uint8_t> captured, Decoded& out) {
  out = Decoded{};
  switch (link) {
    case Link::ethernet:
      if (captured.size() < kEthernetHeader) return Status::truncated;
      return decode_ethertype(captured, kEthernetHeader, be16(captured.data() + 12), out);
    case Link::linux_sll:
      if (captured.size() < kSllHeader) return Status::truncated;
      if (be16(captured.data() + 2) == kArphrdNetlink) return Status::unsupported_link_proto;
      return decode_ethertype(captured, kSllHeader, be16(captured.data() + 14), out);
    case Link::linux_sll2:
      if (captured.size() < kSll2Header) return Status::truncated;
      if (be16(captured.data() + 8) == kArphrdNetlink) return Status::unsupported_link_proto;
      return decode_ethertype(captured, kSll2Header, be16(captured.data()), out);
    case Link::raw_ip:
      return decode_by_version(captured, out);
    case Link::ipv4:
      return decode_v4(captured, out);
    case Link::ipv6:
      return decode_v6(captured, out);
    case Link::null_loopback:
      return decode_null(captured, out);
  }
  return Status::unsupported_link;
}

}  // namespace kg::packet
