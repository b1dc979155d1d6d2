#include "captured/filter.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace kg::captured {

namespace {

std::string host_clause(const IpAddr& a) {
  return (a.is_v4() ? "ip dst host " : "ip6 dst host ") + a.str();
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i != 0) out += sep;
    out += parts[i];
  }
  return out;
}

std::string port_list(const std::set<uint16_t>& ports) {
  std::vector<std::string> p;
  p.reserve(ports.size());
  for (uint16_t port : ports) p.push_back(std::to_string(port));
  return ports.size() == 1 ? p.front() : "(" + join(p, " or ") + ")";
}

// TCP flag tests in the kernel only for IPv4, where the TCP header offset is known from
// the IHL. IPv6 packets carrying extension headers are passed whole to user space (the
// decoder walks the chain), so a knock behind a hop-by-hop header is not lost.
std::string tcp_clause(const std::set<uint16_t>& ports, const TcpFlagsTest& flags) {
  std::string c = "tcp dst port " + port_list(ports);
  if (!flags.any()) return c;
  const unsigned mask = flags.must_set | flags.must_clear;
  return "(" + c + " and (ip6 or tcp[13] & " + std::to_string(mask) +
         " == " + std::to_string(flags.must_set) + "))";
}

}  // namespace

std::string build_filter(const FilterInputs& in) {
  if (in.ifindexes.empty()) return kMatchNothing;

  std::vector<std::string> door_clauses;
  const auto local = [&] {
    std::vector<std::string> hosts;
    for (const auto& a : in.local_addrs) hosts.push_back(host_clause(a));
    return hosts.empty() ? std::string() : "(" + join(hosts, " or ") + ")";
  }();

  // Doors with the same destination and flags share one clause.
  struct Group {
    std::string dst;
    std::set<uint16_t> tcp, udp;
  };
  std::vector<std::pair<std::pair<std::string, TcpFlagsTest>, Group>> groups;
  auto group_for = [&](const std::string& dst, const TcpFlagsTest& f) -> Group& {
    for (auto& [key, g] : groups) {
      if (key.first == dst && key.second == f) return g;
    }
    groups.push_back({{dst, f}, Group{dst, {}, {}}});
    return groups.back().second;
  };
  for (const auto& door : in.doors) {
    const std::string dst = door.target ? "(" + host_clause(*door.target) + ")" : local;
    if (dst.empty()) continue;  // no address yet: this door cannot be knocked
    Group& g = group_for(dst, door.tcpflags);
    for (const auto& k : door.knocks) (k.proto == Proto::tcp ? g.tcp : g.udp).insert(k.port);
  }
  for (const auto& [key, g] : groups) {
    std::vector<std::string> l4;
    if (!g.tcp.empty()) l4.push_back(tcp_clause(g.tcp, key.second));
    if (!g.udp.empty()) l4.push_back("udp dst port " + port_list(g.udp));
    if (l4.empty()) continue;
    door_clauses.push_back("(" + g.dst + " and (" + join(l4, " or ") + "))");
  }
  if (!in.extra_ports.empty() && !local.empty()) {
    std::set<uint16_t> tcp, udp;
    for (const auto& k : in.extra_ports) (k.proto == Proto::tcp ? tcp : udp).insert(k.port);
    std::vector<std::string> l4;
    if (!tcp.empty()) l4.push_back("tcp dst port " + port_list(tcp));
    if (!udp.empty()) l4.push_back("udp dst port " + port_list(udp));
    door_clauses.push_back("(" + local + " and (" + join(l4, " or ") + "))");
  }
  // IPv6 with extension headers: the fixed-offset port tests above cannot see the ports.
  std::vector<std::string> v6_hosts;
  for (const auto& a : in.local_addrs) {
    if (a.is_v6()) v6_hosts.push_back(host_clause(a));
  }
  for (const auto& door : in.doors) {
    if (door.target && door.target->is_v6()) v6_hosts.push_back(host_clause(*door.target));
  }
  std::sort(v6_hosts.begin(), v6_hosts.end());
  v6_hosts.erase(std::unique(v6_hosts.begin(), v6_hosts.end()), v6_hosts.end());
  if (!v6_hosts.empty() && !door_clauses.empty()) {
    door_clauses.push_back("((" + join(v6_hosts, " or ") +
                           ") and ip6[6] != 6 and ip6[6] != 17 and ip6[6] != 58)");
  }
  if (door_clauses.empty()) return kMatchNothing;

  std::vector<std::string> ifs;
  for (int i : in.ifindexes) ifs.push_back("ifindex " + std::to_string(i));
  return "(" + join(ifs, " or ") + ") and (" + join(door_clauses, " or ") + ")";
}

}  // namespace kg::captured
