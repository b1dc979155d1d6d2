// Bounds-checked, zero-copy decoding of captured frames (libpcap) and bare IP packets
// (NFQUEUE). The decoder never reads past the bytes it is given whatever the headers
// claim, never allocates and never throws; it runs once per captured packet.
//
// What it extracts is what the knock matcher (addresses, L4 protocol, ports, TCP flags)
// and the SPA verifier (the L4 payload) need. docs/packet-decoder.md has the rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "common/addr.h"

namespace kg::packet {

// Link-layer framings we decode. Several pcap DLT values can map to one of these.
enum class Link : uint8_t {
  ethernet,       // DLT_EN10MB, with up to kMaxVlanTags 802.1Q/802.1ad tags
  linux_sll,      // DLT_LINUX_SLL ("any" device, cooked v1)
  linux_sll2,     // DLT_LINUX_SLL2 (cooked v2)
  raw_ip,         // DLT_RAW / LINKTYPE_RAW: IPv4 or IPv6, told apart by the version nibble
  ipv4,           // DLT_IPV4: IPv4 only
  ipv6,           // DLT_IPV6: IPv6 only
  null_loopback,  // DLT_NULL (host byte order) and DLT_LOOP (network byte order)
};

// pcap data-link type values (pcap/dlt.h); kept here so callers need not include pcap.
namespace dlt {
inline constexpr int null_loopback = 0;
inline constexpr int en10mb = 1;
inline constexpr int raw = 12;
inline constexpr int linktype_raw = 101;  // what savefiles store for DLT_RAW
inline constexpr int loop = 108;
inline constexpr int linux_sll = 113;
inline constexpr int ipv4 = 228;
inline constexpr int ipv6 = 229;
inline constexpr int linux_sll2 = 276;
}  // namespace dlt

// The Link for a pcap_datalink() value, or nullopt for a link type we cannot decode.
std::optional<Link> link_from_dlt(int dlt);
const char* link_str(Link link);

inline constexpr unsigned kMaxVlanTags = 4;
// IPv6 extension headers walked before giving up: real traffic has two or three, a longer
// chain is an attempt to make per-packet work unbounded or to hide the L4 header.
inline constexpr unsigned kMaxIpv6ExtHeaders = 16;

enum class Status : uint8_t {
  ok,
  truncated,               // a header we need runs past the captured bytes (snaplen)
  unsupported_link,        // not a Link value we know (a cast from untrusted input)
  unsupported_link_proto,  // link layer carries something other than IP (ARP, LLC, ...)
  too_many_vlan_tags,      // more than kMaxVlanTags stacked VLAN tags
  bad_ip_version,          // version nibble does not match the framing
  bad_ip_header,           // impossible IPv4/IPv6 header or extension header lengths
  too_many_ext_headers,    // IPv6 extension header chain longer than kMaxIpv6ExtHeaders
  bad_l4_header,           // impossible TCP/UDP/ICMP header inside the IP packet
};

const char* status_str(Status status);

// Protocol numbers the decoder interprets (IANA "Assigned Internet Protocol Numbers").
namespace ipproto {
inline constexpr uint8_t hop_by_hop = 0;
inline constexpr uint8_t icmp = 1;
inline constexpr uint8_t tcp = 6;
inline constexpr uint8_t udp = 17;
inline constexpr uint8_t routing = 43;
inline constexpr uint8_t fragment = 44;
inline constexpr uint8_t esp = 50;
inline constexpr uint8_t ah = 51;
inline constexpr uint8_t icmpv6 = 58;
inline constexpr uint8_t no_next_header = 59;
inline constexpr uint8_t dest_options = 60;
inline constexpr uint8_t mobility = 135;
}  // namespace ipproto

// ECN bits of the TCP flags byte; FIN..URG are kg::tcpflag in common/knock.h.
namespace tcpflag_ecn {
inline constexpr uint8_t ece = 0x40;
inline constexpr uint8_t cwr = 0x80;
}  // namespace tcpflag_ecn

struct Decoded {
  IpAddr src;
  IpAddr dst;
  uint8_t ttl = 0;       // IPv4 TTL or IPv6 hop limit
  uint8_t l4_proto = 0;  // protocol after any IPv6 extension headers (ipproto::...)

  bool fragment = false;        // part of a fragmented datagram (first or later)
  bool later_fragment = false;  // not the first fragment: it carries no L4 header

  bool has_ports = false;  // TCP or UDP header decoded
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t tcp_flags = 0;  // TCP byte 13 as is: FIN..URG plus ECE/CWR

  bool has_icmp = false;  // ICMP (in IPv4) or ICMPv6 (in IPv6) header decoded
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;

  uint8_t vlan_tags = 0;  // stacked VLAN tags seen in the link header
  uint16_t vlan_id = 0;   // VID of the outermost tag (0 when untagged)

  // Bytes after the L4 header: TCP data, UDP data, ICMP data after its 8-byte header.
  // For other protocols, the bytes after the IP header chain; empty for later fragments
  // and "no next header". Always lies within the captured bytes and within the IP (and
  // UDP) lengths, so Ethernet padding never shows up here.
  std::span<const uint8_t> payload;
  // The headers claim more payload than `payload` holds: cut by the snap length, by a
  // UDP length beyond the IP packet, or because this is a first fragment. SPA must not
  // verify a truncated payload.
  bool payload_truncated = false;
};

// Decodes one captured frame of the given link type into `out` (which is reset first).
// On any status other than ok, `out` holds what was decoded before the problem (useful
// for logging the source) and must not be used for matching.
Status decode(Link link, std::span<const uint8_t> captured, Decoded& out);

// Decodes a bare IPv4 or IPv6 packet (what NFQUEUE hands over); same rules as decode().
Status decode_ip(std::span<const uint8_t> packet, Decoded& out);

}  // namespace kg::packet
