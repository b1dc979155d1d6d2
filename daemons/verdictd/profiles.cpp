#include "verdictd/profiles.h"

#include "packet/decode.h"

namespace kg::verdictd {

bool CompiledProfile::matches(const Flow& f) const {
  if (f.later_fragment || f.icmp_error) return false;
  if (direction == config::Direction::inbound) {
    if (!f.has_ports) return false;
    for (const auto& t : targets) {
      if (t.port == f.dport && t.proto == f.proto && t.host == f.dst) return true;
    }
    return false;
  }
  bool dst_ok = destinations.empty();  // no `destination` key: any destination
  for (const auto& d : destinations) {
    if (d.contains(f.dst)) {
      dst_ok = true;
      break;
    }
  }
  if (!dst_ok) return false;
  for (const auto& a : allow) {
    if (a.proto == config::AllowProto::icmp) {
      if (f.is_icmp) return true;
      continue;
    }
    if (f.has_ports && f.proto == static_cast<uint8_t>(a.proto) && f.dport >= a.ports.first &&
        f.dport <= a.ports.last) {
      return true;
    }
  }
  return false;
}

ProfileSet::ProfileSet(const config::Config& cfg) {
  for (const auto& p : cfg.profiles) {
    CompiledProfile c;
    c.name = p.name;
    c.direction = p.direction;
    if (p.fwmark) {
      c.mark = p.fwmark->value;
      c.mask = p.fwmark->mask;
    }
    for (const auto& e : p.exposures) {
      if (e.self) continue;  // the gateway's own port: decided by the input chain, not queued
      c.targets.push_back({e.host, static_cast<uint8_t>(e.proto), e.host_port});
    }
    c.destinations = p.destinations;
    c.allow = p.allow;
    c.sources = p.sources;
    if (c.direction == config::Direction::egress && !c.sources.empty()) {
      with_sources_.push_back(static_cast<uint16_t>(profiles_.size()));
    }
    profiles_.push_back(std::move(c));
    if (profiles_.size() >= kNoProfile) break;  // cannot happen with a sane config
  }
}

uint16_t ProfileSet::index_of(std::string_view name) const {
  for (size_t i = 0; i < profiles_.size(); ++i) {
    if (profiles_[i].name == name) return static_cast<uint16_t>(i);
  }
  return kNoProfile;
}

uint16_t ProfileSet::static_match(const Flow& f) const {
  for (const uint16_t i : with_sources_) {
    const auto& p = profiles_[i];
    for (const auto& s : p.sources) {
      if (s.contains(f.src)) {
        if (p.matches(f)) return i;
        break;
      }
    }
  }
  return kNoProfile;
}

bool ProfileSet::any_could_match(const Flow& f) const {
  for (const auto& p : profiles_) {
    if (p.matches(f)) return true;
  }
  return false;
}

}  // namespace kg::verdictd
