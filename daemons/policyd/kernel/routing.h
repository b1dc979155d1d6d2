// Policy routing of the profiles through libnl-route-3: one `fwmark MARK/MASK lookup TABLE`
// rule per profile and family, and the profile's routes in its table. Everything we add
// carries our routing protocol number, so "ours" is a property the kernel keeps for us:
// reconciling and cleaning up are a netlink dump and a comparison, never `ip` text.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/addr.h"
#include "common/result.h"
#include "config/config.h"

struct nl_sock;

namespace kg::policyd {

// "kg"; /etc/iproute2/rt_protos has nothing at 107.
inline constexpr uint8_t kRouteProtocol = 0x6b;
inline constexpr uint32_t kRulePriorityFirst = 10000;  // our rules: 10000-10999

struct WantedRule {
  Family family = Family::v4;
  uint32_t priority = 0;
  uint32_t mark = 0, mask = 0, table = 0;
  std::string profile;
  friend auto operator<=>(const WantedRule& a, const WantedRule& b) {
    return std::tie(a.family, a.priority, a.mark, a.mask, a.table) <=>
           std::tie(b.family, b.priority, b.mark, b.mask, b.table);
  }
  friend bool operator==(const WantedRule& a, const WantedRule& b) { return (a <=> b) == 0; }
  std::string str() const;
};

struct WantedRoute {
  uint32_t table = 0;
  IpPrefix destination;
  std::optional<IpAddr> gateway;
  std::string device;  // empty: the kernel's choice
  std::string profile;
  std::string str() const;
};

// Pure: what the config asks for. Priority = 10000 + table % 1000, fixed per profile.
std::vector<WantedRule> wanted_rules(const config::Config& config);
std::vector<WantedRoute> wanted_routes(const config::Config& config);

struct RoutingCounts {
  size_t rules_added = 0, rules_removed = 0, routes_added = 0, routes_removed = 0;
  std::vector<std::string> failures;  // one line per object that could not be changed
};

class Routing {
 public:
  static Result<std::unique_ptr<Routing>> open();
  ~Routing();
  Routing(const Routing&) = delete;
  Routing& operator=(const Routing&) = delete;

  // Our rules and routes made equal to the config's: stale and duplicate ones deleted,
  // missing ones added. Objects that fail are listed in `failures`; the rest is done.
  Result<RoutingCounts> reconcile(const config::Config& config);
  // Every rule and route with our protocol deleted.
  Result<RoutingCounts> remove_all();

  // Link and address notifications.
  int event_fd() const;
  // Reads every pending notification; true when one of `devices` came (back) up or got
  // an address, or when `any_device` and any link did.
  bool process_events(const std::set<std::string>& devices, bool any_device);

 private:
  Routing(nl_sock* requests, nl_sock* events) : sk_(requests), events_(events) {}
  Result<RoutingCounts> sync(const std::vector<WantedRule>& rules,
                             const std::vector<WantedRoute>& routes);
  nl_sock* sk_;
  nl_sock* events_;
  std::map<int, bool> link_up_;  // ifindex → last seen IFF_UP && IFF_RUNNING
};

}  // namespace kg::policyd
