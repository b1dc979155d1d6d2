#include "captured/spa_gate.h"

#include <algorithm>

#include "common/log.h"

namespace kg::captured {

namespace {

size_t index_of(spa::Reject r) {
  for (size_t i = 0; i < spa::kRejectCount; ++i) {
    if (spa::kAllRejects[i] == r) return i;
  }
  return 0;
}

std::vector<spa::ProtoPort> profile_ports(const config::Profile& p) {
  std::vector<spa::ProtoPort> out;
  for (const auto& e : p.exposures) {
    out.push_back({static_cast<uint8_t>(e.proto == Proto::tcp ? 6 : 17), e.public_port});
  }
  for (const auto& a : p.allow) {  // egress profiles: what they allow
    if (a.proto == config::AllowProto::icmp) continue;
    for (uint32_t port = a.ports.first; port <= a.ports.last && port != 0; ++port) {
      out.push_back({static_cast<uint8_t>(a.proto), static_cast<uint16_t>(port)});
      if (out.size() > 4096) break;
    }
  }
  return out;
}

}  // namespace

std::string describe_rejection(const spa::Rejected& r) {
  std::string out = std::string(spa::reject_name(r.reason)) + " (" + spa::reject_text(r.reason);
  if (!r.detail.empty()) out += ": " + r.detail;
  out += ")";
  if (r.reason == spa::Reject::stale || r.reason == spa::Reject::future) {
    const int64_t skew = r.skew_s;
    out += "; the client's clock is " + std::to_string(skew < 0 ? -skew : skew) + " s " +
           (skew < 0 ? "behind" : "ahead of") +
           " this gateway's (or the packet was captured and replayed later): sync the "
           "client with NTP";
  }
  return out;
}

SpaGate::SpaGate(const config::Config& cfg) {
  for (const auto& d : cfg.spa_doors) {
    SpaDoorRuntime r;
    r.name = d.name;
    r.port = d.port;
    r.transport = d.transport;
    r.options.max_age_s = d.max_age_s;
    const config::Profile* profile = cfg.find_profile(d.grant);
    for (const auto& a : d.all_access()) {
      spa::Stanza s = a.stanza;
      s.label = a.file + ":" + std::to_string(a.line);
      if (profile != nullptr) s.profile_ports = profile_ports(*profile);
      r.all_stanzas.push_back(std::move(s));
      r.expire.push_back(a.expire_epoch);
    }
    doors_.push_back(std::move(r));
  }
}

const SpaDoorRuntime* SpaGate::udp_door(uint16_t port) const {
  for (const auto& d : doors_) {
    if (d.transport == spa::Transport::udp && d.port == port) return &d;
  }
  return nullptr;
}

void SpaGate::refresh_expiry(SpaDoorRuntime& d, int64_t now_s) {
  if (d.stanzas_built_for == now_s) return;
  const bool first = d.stanzas_built_for < 0;
  d.stanzas_built_for = now_s;
  std::vector<spa::Stanza> live;
  for (size_t i = 0; i < d.all_stanzas.size(); ++i) {
    if (d.expire[i] && *d.expire[i] <= now_s) continue;
    live.push_back(d.all_stanzas[i]);
  }
  if (!first && live.size() != d.stanzas.size()) {
    log::info("SPA door " + d.name + ": " + std::to_string(d.all_stanzas.size() - live.size()) +
              " access stanza(s) expired (ACCESS_EXPIRE_EPOCH)");
  }
  d.stanzas = std::move(live);
}

bool SpaGate::should_log(const IpAddr& src, spa::Reject reason) {
  const auto now = Clock::now();
  auto suppress = [&] {
    ++suppressed_;
    ++unlogged_[index_of(reason)];
    return false;
  };
  const auto key = std::make_pair(src, reason);
  auto it = last_logged_.find(key);
  if (it != last_logged_.end() && now - it->second < kLogInterval) return suppress();
  if (now - second_start_ >= std::chrono::seconds(1)) {
    second_start_ = now;
    lines_this_second_ = 0;
  }
  if (lines_this_second_ >= kMaxLinesPerSecond) return suppress();
  if (last_logged_.size() >= kMaxLogKeys) {
    // Pruned at most once a second: a full table must not cost a scan per packet.
    if (now - last_prune_ >= std::chrono::seconds(1)) {
      last_prune_ = now;
      std::erase_if(last_logged_, [&](const auto& kv) { return now - kv.second >= kLogInterval; });
    }
    if (last_logged_.size() >= kMaxLogKeys) return suppress();
  }
  ++lines_this_second_;
  last_logged_[key] = now;
  return true;
}

void SpaGate::flush_log_summary() {
  std::string parts;
  uint64_t total = 0;
  for (size_t i = 0; i < spa::kRejectCount; ++i) {
    if (unlogged_[i] == 0) continue;
    parts += std::string(parts.empty() ? "" : ", ") + spa::reject_name(spa::kAllRejects[i]) + " " +
             std::to_string(unlogged_[i]);
    total += unlogged_[i];
  }
  unlogged_.fill(0);
  if (total == 0) return;
  log::warn("SPA: " + std::to_string(total) + " more refused packets not logged one by one (" +
            parts + ")");
}

void SpaGate::reject(size_t door, spa::Reject reason, const IpAddr& src,
                     const std::string& detail) {
  ++rejected_[index_of(reason)];
  if (!should_log(src, reason)) return;
  spa::Rejected r;
  r.reason = reason;
  r.detail = detail;
  log::warn("SPA from " + src.str() + " to door " + doors_[door].name +
            " refused: " + describe_rejection(r));
}

std::optional<ipc::KnockEvent> SpaGate::handle(size_t door, std::string_view payload,
                                               bool truncated, const IpAddr& src, const IpAddr& dst,
                                               int64_t realtime_ns, uint32_t config_generation) {
  SpaDoorRuntime& d = doors_[door];
  if (truncated) {
    reject(door, spa::Reject::truncated, src);
    return std::nullopt;
  }
  const int64_t now_s = realtime_ns / 1'000'000'000;
  refresh_expiry(d, now_s);
  auto outcome = spa::verify(payload, src, now_s, d.stanzas, d.options);
  if (auto* r = std::get_if<spa::Rejected>(&outcome)) {
    ++rejected_[index_of(r->reason)];
    if (should_log(src, r->reason)) {
      std::string where;
      if (r->stanza) where = " [stanza " + d.stanzas[*r->stanza].label + "]";
      log::warn("SPA from " + src.str() + " to door " + d.name +
                " refused: " + describe_rejection(*r) + where);
    }
    return std::nullopt;
  }
  auto& a = std::get<spa::Accepted>(outcome);
  ++accepted_;
  ipc::KnockEvent ev;
  ev.door = d.name;
  ev.source = a.grant_address;
  ev.destination = dst.family() == a.grant_address.family() ? dst : a.grant_address;
  ev.time_ns = realtime_ns;
  ev.method = ipc::KnockMethod::spa;
  ev.config_generation = config_generation;
  ipc::SpaRequest req;
  req.replay_key = a.replay_key;
  req.user = a.plaintext.user;
  for (const auto& p : a.access.ports) req.access.push_back({p.proto, p.port});
  req.timeout_s = a.timeout_s;
  ev.spa = std::move(req);
  log::info("SPA from " + src.str() + " to door " + d.name + " verified: user " + a.plaintext.user +
            ", access " + spa::format_access(a.access) + ", stanza " + d.stanzas[a.stanza].label +
            ", clock skew " + std::to_string(a.skew_s) + " s; sent to policyd");
  return ev;
}

}  // namespace kg::captured
