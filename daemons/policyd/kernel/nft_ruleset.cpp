#include "policyd/kernel/nft_ruleset.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace kg::policyd {
namespace {

using config::Config;
using config::Direction;
using config::Profile;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return buf;
}

// { "kg-wan", "kg-wan2" }; interface names come from the validated config.
std::string iface_set(const std::vector<std::string>& names) {
  std::string s = "{ ";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) s += ", ";
    s += "\"" + names[i] + "\"";
  }
  return s + " }";
}

const char* ip_kw(Family f) {
  return f == Family::v6 ? "ip6" : "ip";
}

std::string prefix_set(const std::vector<IpPrefix>& prefixes, Family f) {
  std::string s;
  for (const auto& p : prefixes) {
    if (p.addr.family() != f) continue;
    if (!s.empty()) s += ", ";
    s += p.str();
  }
  return s.empty() ? s : "{ " + s + " }";
}

std::string ports(const config::PortRange& r) {
  return r.first == r.last ? std::to_string(r.first)
                           : std::to_string(r.first) + "-" + std::to_string(r.last);
}

// `meta mark & MASK == VALUE`, or nothing for a profile without fwmark.
std::string mark_match(const Profile& p) {
  if (!p.fwmark) return "";
  return "meta mark & " + hex32(p.fwmark->mask) + " == " + hex32(p.fwmark->value) + " ";
}

// `meta mark set meta mark & ~MASK | VALUE`: the profile's bits, the others kept.
std::string mark_set(const Profile& p) {
  return "meta mark set meta mark & " + hex32(~p.fwmark->mask) + " | " + hex32(p.fwmark->value);
}

// Every "this flow is what profile P allows" match, one per line to be completed with an
// action: the source (grant set, or the egress profile's static sources) and the flow
// (post-DNAT destination, protocol and port).
std::vector<std::string> profile_matches(const Profile& p) {
  std::vector<std::string> out;
  if (p.direction == Direction::inbound) {
    for (const auto& e : p.exposures) {
      if (e.self) continue;  // the gateway's own port: the input chain, never forwarded
      Family f = e.host.family();
      out.push_back(std::string(ip_kw(f)) + " saddr @" + grant_set_name(p.name, f) + " " +
                    ip_kw(f) + " daddr " + e.host.str() + " " + kg::proto_name(e.proto) +
                    " dport " + std::to_string(e.host_port));
    }
    return out;
  }
  for (Family f : {Family::v4, Family::v6}) {
    std::string dests = prefix_set(p.destinations, f);
    if (dests.empty()) continue;
    std::vector<std::string> sources;
    std::string statics = prefix_set(p.sources, f);
    if (!statics.empty()) sources.push_back(statics);
    sources.push_back("@" + grant_set_name(p.name, f));
    for (const auto& src : sources) {
      for (const auto& a : p.allow) {
        std::string flow;
        if (a.proto == config::AllowProto::icmp) {
          flow = f == Family::v6 ? "meta l4proto ipv6-icmp" : "meta l4proto icmp";
        } else {
          flow = std::string(config::allow_proto_name(a.proto)) + " dport " + ports(a.ports);
        }
        out.push_back(std::string(ip_kw(f)) + " saddr " + src + " " + ip_kw(f) + " daddr " + dests +
                      " " + flow);
      }
    }
  }
  return out;
}

// `{ 22, 8080, 1000-2000 }` for one protocol; empty when none.
std::string port_set(const std::vector<config::AllowRule>& rules, config::AllowProto proto) {
  std::set<std::pair<uint16_t, uint16_t>> seen;
  std::string s;
  for (const auto& r : rules) {
    if (r.proto != proto || !seen.insert({r.ports.first, r.ports.last}).second) continue;
    s += (s.empty() ? "" : ", ") + ports(r.ports);
  }
  return s.empty() ? s : "{ " + s + " }";
}

// The gateway's management ports: ManagementPorts plus the console's (WebListen, or the
// console's default port).
std::vector<config::AllowRule> management_ports(const config::Options& o) {
  std::vector<config::AllowRule> out = o.management_ports;
  if (o.web_listen.empty()) {
    out.push_back(
        {config::AllowProto::tcp, {config::kDefaultConsolePort, config::kDefaultConsolePort}});
  }
  for (const auto& e : o.web_listen) out.push_back({config::AllowProto::tcp, {e.port, e.port}});
  return out;
}

// `self` exposures as port rules, one per protocol.
std::vector<config::AllowRule> self_ports(const Config& config) {
  std::vector<config::AllowRule> out;
  for (const auto& p : config.profiles) {
    for (const auto& e : p.exposures) {
      if (!e.self) continue;
      out.push_back({e.proto == Proto::udp ? config::AllowProto::udp : config::AllowProto::tcp,
                     {e.public_port, e.public_port}});
    }
  }
  return out;
}

void line(std::string& s, const std::string& text) {
  s += "\t\t" + text + "\n";
}

void chain_head(std::string& s, const char* name, const char* hook_line) {
  s += "\tchain " + std::string(name) + " {\n";
  if (hook_line) s += "\t\t" + std::string(hook_line) + "\n";
}

void chain_end(std::string& s) {
  s += "\t}\n";
}

// A granted source reaching a port its profile exposes on the gateway itself.
void self_grant_rules(std::string& s, const Config& config) {
  for (const auto& p : config.profiles) {
    for (const auto& e : p.exposures) {
      if (!e.self) continue;
      for (Family f : {Family::v4, Family::v6}) {
        line(s, std::string(ip_kw(f)) + " saddr @" + grant_set_name(p.name, f) + " " +
                    kg::proto_name(e.proto) + " dport " + std::to_string(e.public_port) +
                    " accept");
      }
    }
  }
}

// `PREFIX dport SET VERDICT` for tcp and udp, skipping a protocol with no ports.
void per_proto(std::string& s, const std::string& prefix,
               const std::vector<config::AllowRule>& rules, const std::string& verdict) {
  for (auto proto : {config::AllowProto::tcp, config::AllowProto::udp}) {
    const std::string set = port_set(rules, proto);
    if (set.empty()) continue;
    line(s, prefix + config::allow_proto_name(proto) + " dport " + set + " " + verdict);
  }
}

// Host with `self` profiles, no roles: the exposed ports closed on the capture interfaces
// except for grants, the way knockd users close them with iptables.
void self_input_chain(std::string& s, const Config& config) {
  chain_head(s, "input", "type filter hook input priority filter; policy accept;");
  line(s, "ct state established,related accept");
  self_grant_rules(s, config);
  per_proto(s, "iifname " + iface_set(config.options.interfaces) + " ", self_ports(config),
            "counter drop");
  chain_end(s);
}

// The gateway protects itself. From a WAN interface it takes only established traffic,
// what `self` profiles expose to their grants, the SPA doors that need a socket, the ICMP
// that PMTU discovery and neighbour discovery need, and management from ManagementFrom;
// everything else addressed to any of its addresses is dropped and counted. Elsewhere only
// the management ports are restricted to ManagementFrom.
void gateway_input_chains(std::string& s, const Config& config) {
  const auto& o = config.options;
  const auto management = management_ports(o);
  chain_head(s, "input", "type filter hook input priority filter; policy accept;");
  line(s, "iif \"lo\" accept");
  line(s, "ct state established,related accept");
  // Loopback destinations arriving on a real interface are spoofed.
  line(s, "ip daddr 127.0.0.0/8 counter drop");
  line(s, "ip6 daddr ::1 counter drop");
  self_grant_rules(s, config);
  if (!o.wan_interfaces.empty())
    line(s, "iifname " + iface_set(o.wan_interfaces) + " jump input_wan");
  per_proto(s, "", management, "jump management");
  chain_end(s);

  if (!o.wan_interfaces.empty()) {
    chain_head(s, "input_wan", nullptr);
    line(s, "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept");
    line(s,
         "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, "
         "parameter-problem } accept");
    // Neighbour discovery and router adverts only from the link itself (hop limit 255).
    line(s,
         "ip6 hoplimit 255 icmpv6 type { nd-router-advert, nd-neighbor-solicit, "
         "nd-neighbor-advert } accept");
    line(s, "ip6 saddr fe80::/10 udp dport 546 accept");  // DHCPv6 client replies
    std::vector<config::AllowRule> spa;
    for (const auto& d : config.spa_doors) {
      if (d.transport != spa::Transport::udp)
        spa.push_back({config::AllowProto::tcp, {d.port, d.port}});
    }
    per_proto(s, "", spa, "accept");  // SPA over TCP and HTTP needs a listening socket
    per_proto(s, "", management, "jump management");
    line(s, "counter drop");
    chain_end(s);
  }

  chain_head(s, "management", nullptr);
  if (!o.management_interfaces.empty()) {
    line(s, "iifname " + iface_set(o.management_interfaces) + " accept");
  }
  for (Family f : {Family::v4, Family::v6}) {
    const std::string from = prefix_set(o.management_prefixes, f);
    if (!from.empty()) line(s, std::string(ip_kw(f)) + " saddr " + from + " accept");
  }
  line(s, "counter drop");
  chain_end(s);
}

}  // namespace

std::string nft_identifier(std::string_view profile_name) {
  return config::nft_safe_name(profile_name);
}

std::string grant_set_name(std::string_view profile_name, Family family) {
  return std::string(family == Family::v6 ? "grant6_" : "grant4_") + nft_identifier(profile_name);
}

Result<Ok> check_identifiers(const Config& config) {
  std::map<std::string, std::string> seen;
  for (const auto& p : config.profiles) {
    auto [it, fresh] = seen.emplace(nft_identifier(p.name), p.name);
    if (!fresh) {
      return Error{"profiles \"" + it->second + "\" and \"" + p.name +
                   "\" map to the same nftables name \"" + it->first + "\""};
    }
  }
  return Ok{};
}

uint32_t mark_union(const Config& config) {
  uint32_t u = 0;
  for (const auto& p : config.profiles) {
    if (p.fwmark) u |= p.fwmark->mask;
  }
  return u;
}

std::string queue_statement(const config::Options& o) {
  std::string s = "queue num " + std::to_string(o.verdict_queue_first);
  if (o.verdict_queue_count > 1) {
    s += "-" + std::to_string(o.verdict_queue_first + o.verdict_queue_count - 1);
  }
  std::vector<std::string> flags;
  if (o.verdict_fail_open) flags.emplace_back("bypass");
  if (o.verdict_queue_count > 1) flags.emplace_back("fanout");
  for (size_t i = 0; i < flags.size(); ++i) s += (i ? "," : " ") + flags[i];
  return s;
}

std::string ruleset_text(const Config& config, QueueMode mode) {
  const config::Mode kind = config.mode();
  if (kind == config::Mode::host) return "";
  const auto& o = config.options;
  const std::string wan = iface_set(o.wan_interfaces);
  const bool have_wan = !o.wan_interfaces.empty();
  const uint32_t marks = mark_union(config);

  // Replacing the table in one transaction: `add` makes `delete` succeed when it is absent.
  std::string s = "add table inet knockgate\ndelete table inet knockgate\n";
  s += "table inet knockgate {\n";
  s += "\tcomment \"managed by knockgate-policyd: changes here are undone\"\n";
  for (const auto& p : config.profiles) {
    s += "\tset " + grant_set_name(p.name, Family::v4) +
         " {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n";
    s += "\tset " + grant_set_name(p.name, Family::v6) +
         " {\n\t\ttype ipv6_addr\n\t\tflags timeout\n\t}\n";
  }

  if (kind == config::Mode::self) {
    self_input_chain(s, config);
    s += "}\n";
    return s;
  }
  gateway_input_chains(s, config);

  // Inbound exposures: the gateway's public port forwarded to the LAN host, for every
  // source: the gate decides after DNAT, so a SYN that overtakes its grant is held by
  // verdictd instead of reaching the gateway's own port.
  chain_head(s, "prerouting_nat", "type nat hook prerouting priority dstnat; policy accept;");
  if (have_wan) {
    for (const auto& p : config.profiles) {
      if (p.direction != Direction::inbound) continue;
      for (const auto& e : p.exposures) {
        if (e.self) continue;
        Family f = e.host.family();
        std::string target = f == Family::v6 ? "[" + e.host.str() + "]" : e.host.str();
        line(s, std::string("meta nfproto ") + (f == Family::v6 ? "ipv6" : "ipv4") + " iifname " +
                    wan + " fib daddr . iif type local " + kg::proto_name(e.proto) + " dport " +
                    std::to_string(e.public_port) + " dnat " + ip_kw(f) + " to " + target + ":" +
                    std::to_string(e.host_port));
      }
    }
  }
  chain_end(s);

  // The gate: after DNAT, before routing, so the verdict's mark selects the route table.
  chain_head(s, "gate", "type filter hook prerouting priority dstnat + 10; policy accept;");
  if (marks) {
    // Original direction only: the profile's route table steers the flow's way out; its
    // replies follow the main table back (a table with just `default via X` would send
    // them away from the client).
    line(s, "ct state established,related ct direction original ct mark & " + hex32(marks) +
                " != 0x00000000 meta mark set ct mark");
  }
  line(s, "ct state established,related accept");
  if (have_wan) line(s, "iifname " + wan + " fib daddr type unicast jump gate_new");
  for (const auto& p : config.profiles) {
    if (p.direction != Direction::egress) continue;
    for (Family f : {Family::v4, Family::v6}) {
      std::string from_lan = have_wan ? "iifname != " + wan + " " : "";
      std::string statics = prefix_set(p.sources, f);
      if (!statics.empty()) {
        line(s,
             from_lan + ip_kw(f) + " saddr " + statics + " fib daddr type unicast jump gate_new");
      }
      line(s, from_lan + ip_kw(f) + " saddr @" + grant_set_name(p.name, f) +
                  " fib daddr type unicast jump gate_new");
    }
  }
  chain_end(s);

  // Only the first packet of a flow goes to user space.
  chain_head(s, "gate_new", nullptr);
  line(s, "ct state new tcp flags & (fin|syn|rst|ack) == syn jump verdict");
  line(s, "meta l4proto tcp drop");
  line(s, "ct state new jump verdict");
  line(s, "drop");
  chain_end(s);

  // A bypassed queue (no verdictd, fail-open) resumes at the next hook, not at the next
  // rule: the kernel's own opinion (mark from the grant sets) is set before the queue, and
  // verdictd's NFQA_MARK replaces it when it answers.
  chain_head(s, "verdict", nullptr);
  if (o.verdict_fail_open) {
    for (const auto& p : config.profiles) {
      if (!p.fwmark) continue;
      for (const auto& m : profile_matches(p)) line(s, m + " " + mark_set(p));
    }
  }
  line(s, "jump " + std::string(kVerdictChain));
  // Reached only while the queue rule is missing (xt fallback: between loading this text
  // and inserting the target at the head of the queue chain).
  line(s, o.verdict_fail_open ? "counter accept" : "counter drop");
  chain_end(s);

  chain_head(s, std::string(kVerdictChain).c_str(), nullptr);
  if (mode == QueueMode::native) line(s, "counter " + queue_statement(o));
  chain_end(s);

  // Forward: the kernel's second opinion on the verdict, and the default deny.
  chain_head(s, "forward", "type filter hook forward priority filter; policy drop;");
  line(s, "ct state established,related accept");
  line(s, "ct state invalid drop");
  for (const auto& p : config.profiles) {
    for (const auto& m : profile_matches(p)) line(s, mark_match(p) + m + " accept");
  }
  if (have_wan) line(s, "iifname " + wan + " counter drop");
  for (const auto& p : config.profiles) {
    if (p.direction != Direction::egress) continue;
    for (Family f : {Family::v4, Family::v6}) {
      std::string statics = prefix_set(p.sources, f);
      if (!statics.empty()) line(s, std::string(ip_kw(f)) + " saddr " + statics + " counter drop");
      line(s, std::string(ip_kw(f)) + " saddr @" + grant_set_name(p.name, f) + " counter drop");
    }
  }
  line(s, "accept");  // hosts nobody gates: a normal router
  chain_end(s);

  if (marks) {
    chain_head(s, "postrouting_mark",
               "type filter hook postrouting priority mangle; policy accept;");
    line(s, "ct state new meta mark & " + hex32(marks) + " != 0x00000000 ct mark set meta mark");
    chain_end(s);
  }

  chain_head(s, "postrouting_nat", "type nat hook postrouting priority srcnat; policy accept;");
  if (have_wan) line(s, "oifname " + wan + " masquerade");
  chain_end(s);
  s += "}\n";
  return s;
}

namespace {

struct Element {
  std::string set;
  IpAddr addr;
  int64_t expires = 0;
};

// The grants as set elements, ordered by set and address, one per (set, address) with the
// latest expiry.
Result<std::vector<Element>> group(const Config& config, std::span<const GrantInstall> grants) {
  std::vector<Element> out;
  out.reserve(grants.size());
  for (const auto& g : grants) {
    if (!config.find_profile(g.profile)) {
      return Error{"grant " + std::to_string(g.id) + ": no profile \"" + g.profile + "\""};
    }
    if (g.source.empty()) return Error{"grant " + std::to_string(g.id) + ": no source address"};
    out.push_back(Element{grant_set_name(g.profile, g.source.family()), g.source, g.expires_ns});
  }
  std::sort(out.begin(), out.end(), [](const Element& a, const Element& b) {
    if (a.set != b.set) return a.set < b.set;
    if (a.addr != b.addr) return a.addr < b.addr;
    return a.expires > b.expires;  // the latest expiry first: it is the one kept
  });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const Element& a, const Element& b) {
                          return a.set == b.set && a.addr == b.addr;
                        }),
            out.end());
  return out;
}

// `VERB element inet knockgate SET { a, b }` per set, elements rendered by `item`.
template <typename F>
std::string per_set(const std::vector<Element>& elems, const char* verb, F item) {
  std::string s;
  const std::string* current = nullptr;
  for (const auto& e : elems) {
    if (!current || *current != e.set) {
      if (current) s += " }\n";
      s += std::string(verb) + " element inet knockgate " + e.set + " { ";
      current = &e.set;
    } else {
      s += ", ";
    }
    s += item(e);
  }
  if (current) s += " }\n";
  return s;
}

}  // namespace

Result<std::string> element_add_text(const Config& config, std::span<const GrantInstall> grants,
                                     int64_t now_ns, bool refresh) {
  auto grouped = group(config, grants);
  if (!grouped) return grouped.error();
  std::vector<Element> live;
  live.reserve(grouped->size());
  for (auto& e : *grouped) {
    if (e.expires > now_ns) live.push_back(std::move(e));
  }
  auto with_timeout = [&](const Element& e) {
    int64_t ms = (e.expires - now_ns + 999'999) / 1'000'000;  // rounded up: never early
    return e.addr.str() + " timeout " + std::to_string(ms < 1 ? 1 : ms) + "ms";
  };
  auto bare = [](const Element& e) { return e.addr.str(); };
  std::string s;
  if (refresh) {
    s += per_set(live, "add", with_timeout);
    s += per_set(live, "delete", bare);
  }
  s += per_set(live, "add", with_timeout);
  return s;
}

Result<std::string> element_delete_text(const Config& config,
                                        std::span<const GrantInstall> grants) {
  auto grouped = group(config, grants);
  if (!grouped) return grouped.error();
  // `add` first so that `delete` cannot fail on an element that already timed out: the
  // transaction's net effect is "absent" either way.
  std::string s =
      per_set(*grouped, "add", [](const Element& e) { return e.addr.str() + " timeout 1s"; });
  s += per_set(*grouped, "delete", [](const Element& e) { return e.addr.str(); });
  return s;
}

}  // namespace kg::policyd
