#include "verdictd/decision.h"

namespace kg::verdictd {

const char* reason_name(Reason r) {
  switch (r) {
    case Reason::granted:
      return "granted";
    case Reason::static_source:
      return "static_source";
    case Reason::decode_error:
      return "decode_error";
    case Reason::fragment:
      return "fragment";
    case Reason::icmp_error:
      return "icmp_error";
    case Reason::not_gated:
      return "not_gated";
    case Reason::no_grant:
      return "no_grant";
    case Reason::awaiting_grant:
      return "awaiting_grant";
  }
  return "?";
}

namespace {

bool is_icmp_error(uint8_t proto, uint8_t type) {
  if (proto == packet::ipproto::icmp) {
    return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
  }
  return type < 128;  // ICMPv6: types 0..127 are errors
}

}  // namespace

packet::Status flow_from_packet(std::span<const uint8_t> ip_packet, Flow& flow) {
  packet::Decoded d;
  const auto st = packet::decode_ip(ip_packet, d);
  flow = Flow{};
  if (st != packet::Status::ok) return st;
  flow.src = d.src;
  flow.dst = d.dst;
  flow.proto = d.l4_proto;
  flow.has_ports = d.has_ports;
  flow.dport = d.dport;
  flow.later_fragment = d.later_fragment;
  flow.is_icmp = d.has_icmp;
  flow.icmp_error = d.has_icmp && is_icmp_error(d.l4_proto, d.icmp_type);
  return st;
}

Decision decide(const Flow& flow, const GrantCache& cache, const ProfileSet& profiles,
                int64_t now_realtime_ns) {
  Decision d;
  if (flow.src.empty()) return d;  // decode failed upstream
  if (flow.later_fragment) {
    d.reason = Reason::fragment;
    return d;
  }
  if (flow.icmp_error) {
    d.reason = Reason::icmp_error;
    return d;
  }
  if (auto m = cache.find(flow, profiles, now_realtime_ns)) {
    d.verdict = Verdict::accept;
    d.reason = Reason::granted;
    d.match = *m;
    return d;
  }
  if (const uint16_t p = profiles.static_match(flow); p != kNoProfile) {
    d.verdict = Verdict::accept;
    d.reason = Reason::static_source;
    d.match = GrantMatch{0, p, profiles.at(p).mark, profiles.at(p).mask};
    return d;
  }
  if (!profiles.any_could_match(flow)) {
    d.reason = Reason::not_gated;
    return d;
  }
  // The SYN can overtake its grant (even the pending message): hold rather than drop, or
  // the client waits for TCP's 1 s retransmit.
  const SourceState st = cache.state(flow.src, now_realtime_ns);
  if (st.pending || !st.has_live_grant) {
    d.verdict = Verdict::hold;
    d.reason = Reason::awaiting_grant;
    return d;
  }
  d.reason = Reason::no_grant;
  return d;
}

}  // namespace kg::verdictd
