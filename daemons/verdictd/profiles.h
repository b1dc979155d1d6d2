// The config's profiles in the compact form the packet path matches against: computed
// once per (re)load so a decision never touches strings or allocates.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/addr.h"
#include "config/config.h"

namespace kg::verdictd {

inline constexpr uint16_t kNoProfile = 0xffff;

// What the verdict needs of a queued packet. Filled from packet::Decoded.
struct Flow {
  IpAddr src;
  IpAddr dst;
  uint8_t proto = 0;  // IPPROTO_* after IPv6 extension headers
  bool has_ports = false;
  uint16_t dport = 0;
  bool is_icmp = false;     // ICMP in IPv4 or ICMPv6 in IPv6
  bool icmp_error = false;  // destination unreachable, time exceeded, ...: never a NEW flow
  bool later_fragment = false;
};

struct InboundTarget {
  IpAddr host;
  uint8_t proto = 0;
  uint16_t port = 0;
};

struct CompiledProfile {
  std::string name;
  config::Direction direction = config::Direction::inbound;
  uint32_t mark = 0;  // config fwmark (0/0 when the profile has none)
  uint32_t mask = 0;
  std::vector<InboundTarget> targets;  // inbound: post-DNAT destinations
  std::vector<IpPrefix> destinations;  // egress
  std::vector<config::AllowRule> allow;
  std::vector<IpPrefix> sources;  // egress: always granted

  // Whether `f` is a flow this profile lets through (source aside).
  bool matches(const Flow& f) const;
};

class ProfileSet {
 public:
  ProfileSet() = default;
  explicit ProfileSet(const config::Config& cfg);

  const std::vector<CompiledProfile>& all() const { return profiles_; }
  const CompiledProfile& at(uint16_t index) const { return profiles_[index]; }
  size_t size() const { return profiles_.size(); }
  uint16_t index_of(std::string_view name) const;  // kNoProfile if unknown

  // The first egress profile whose static `sources` hold f.src and that matches f.
  uint16_t static_match(const Flow& f) const;
  // Whether any profile could ever accept f (from some source): else it is dropped at once
  // instead of being held for a grant that could not help.
  bool any_could_match(const Flow& f) const;

 private:
  std::vector<CompiledProfile> profiles_;
  std::vector<uint16_t> with_sources_;  // indexes of egress profiles with static sources
};

}  // namespace kg::verdictd
