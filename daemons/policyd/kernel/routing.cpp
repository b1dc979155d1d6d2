#include "policyd/kernel/routing.h"

#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace kg::policyd {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
void put_cache(nl_cache* c) {
  nl_cache_free(c);
}
void put_addr(nl_addr* a) {
  nl_addr_put(a);
}
void put_msg(nl_msg* m) {
  nlmsg_free(m);
}
using CachePtr = std::unique_ptr<nl_cache, Deleter<nl_cache, put_cache>>;
using AddrPtr = std::unique_ptr<nl_addr, Deleter<nl_addr, put_addr>>;
using MsgPtr = std::unique_ptr<nl_msg, Deleter<nl_msg, put_msg>>;
using RulePtr = std::unique_ptr<rtnl_rule, Deleter<rtnl_rule, rtnl_rule_put>>;
using RoutePtr = std::unique_ptr<rtnl_route, Deleter<rtnl_route, rtnl_route_put>>;

int af(Family f) {
  return f == Family::v6 ? AF_INET6 : AF_INET;
}

AddrPtr to_nl(const IpAddr& a, int prefix_len) {
  nl_addr* n = nl_addr_build(a.is_v6() ? AF_INET6 : AF_INET, a.data(), a.size());
  if (n) nl_addr_set_prefixlen(n, prefix_len);
  return AddrPtr(n);
}

std::optional<IpAddr> from_nl(nl_addr* a) {
  if (!a) return std::nullopt;
  auto* bytes = static_cast<const uint8_t*>(nl_addr_get_binary_addr(a));
  if (nl_addr_get_family(a) == AF_INET && nl_addr_get_len(a) == 4) return IpAddr::v4(bytes);
  if (nl_addr_get_family(a) == AF_INET6 && nl_addr_get_len(a) == 16) return IpAddr::v6(bytes);
  return std::nullopt;
}

// The kernel's answer to one request: errno and the extended-ack text when there is one
// ("Nexthop has invalid gateway").
struct Ack {
  int error = 0;
  std::string message;
};

int on_error(sockaddr_nl*, nlmsgerr* err, void* arg) {
  auto* ack = static_cast<Ack*>(arg);
  ack->error = -err->error;
  // Extended ack TLVs follow the error (and the echoed request unless it was capped).
  auto* nlh = reinterpret_cast<nlmsghdr*>(reinterpret_cast<char*>(err) - NLMSG_HDRLEN);
  if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
    size_t offset = sizeof(nlmsgerr);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - NLMSG_HDRLEN;
    if (NLMSG_HDRLEN + offset < nlh->nlmsg_len) {
      auto* attrs = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(err) + offset);
      int len = static_cast<int>(nlh->nlmsg_len - NLMSG_HDRLEN - offset);
      nlattr* a = nla_find(attrs, len, NLMSGERR_ATTR_MSG);
      if (a) ack->message = nla_get_string(a);
    }
  }
  return NL_STOP;
}

// Sends one request and waits for its ack; the error text is the kernel's.
Result<Ok> talk(nl_sock* sk, nl_msg* msg) {
  Ack ack;
  nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, on_error, &ack);
  int rc = nl_send_auto(sk, msg);
  if (rc >= 0) rc = nl_wait_for_ack(sk);
  nl_socket_modify_err_cb(sk, NL_CB_DEFAULT, nullptr, nullptr);
  if (ack.error != 0) {
    std::string text = std::strerror(ack.error);
    if (!ack.message.empty()) text += " (" + ack.message + ")";
    return Error{text};
  }
  if (rc < 0) return Error{nl_geterror(rc)};
  return Ok{};
}

RulePtr make_rule(const WantedRule& w) {
  RulePtr r(rtnl_rule_alloc());
  if (!r) return r;
  rtnl_rule_set_family(r.get(), af(w.family));
  rtnl_rule_set_prio(r.get(), w.priority);
  rtnl_rule_set_mark(r.get(), w.mark);
  rtnl_rule_set_mask(r.get(), w.mask);
  rtnl_rule_set_table(r.get(), w.table);
  rtnl_rule_set_action(r.get(), FR_ACT_TO_TBL);
  rtnl_rule_set_protocol(r.get(), kRouteProtocol);
  return r;
}

Result<RoutePtr> make_route(const WantedRoute& w) {
  RoutePtr r(rtnl_route_alloc());
  if (!r) return Error{"out of memory"};
  int family = w.destination.addr.is_v6() ? AF_INET6 : AF_INET;
  rtnl_route_set_family(r.get(), static_cast<uint8_t>(family));
  rtnl_route_set_table(r.get(), w.table);
  rtnl_route_set_protocol(r.get(), kRouteProtocol);
  rtnl_route_set_type(r.get(), RTN_UNICAST);
  AddrPtr dst = to_nl(w.destination.addr, w.destination.length);
  if (!dst || rtnl_route_set_dst(r.get(), dst.get()) < 0) return Error{"bad destination"};
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!nh) return Error{"out of memory"};
  if (w.gateway) {
    AddrPtr gw = to_nl(*w.gateway, w.gateway->is_v6() ? 128 : 32);
    rtnl_route_nh_set_gateway(nh, gw.get());
  }
  if (!w.device.empty()) {
    unsigned idx = if_nametoindex(w.device.c_str());
    if (idx == 0) {
      rtnl_route_nh_free(nh);
      return Error{"device " + w.device + ": " + std::strerror(errno)};
    }
    rtnl_route_nh_set_ifindex(nh, static_cast<int>(idx));
  }
  rtnl_route_add_nexthop(r.get(), nh);  // the route owns it
  rtnl_route_set_scope(r.get(),
                       static_cast<uint8_t>(w.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK));
  return r;
}

struct RouteKey {
  uint32_t table = 0;
  std::optional<IpPrefix> dst;
  std::optional<IpAddr> gateway;
  int ifindex = 0;
  bool operator==(const RouteKey&) const = default;
};

RouteKey key_of(rtnl_route* r) {
  RouteKey k;
  k.table = rtnl_route_get_table(r);
  nl_addr* dst = rtnl_route_get_dst(r);
  if (auto a = from_nl(dst)) {
    k.dst = IpPrefix{*a, static_cast<uint8_t>(nl_addr_get_prefixlen(dst))};
  } else if (dst) {
    // A default route's dst may come back empty-addressed: 0.0.0.0/0 or ::/0.
    uint8_t zero[16] = {};
    IpAddr any = nl_addr_get_family(dst) == AF_INET6 ? IpAddr::v6(zero) : IpAddr::v4(zero);
    k.dst = IpPrefix{any, static_cast<uint8_t>(nl_addr_get_prefixlen(dst))};
  }
  if (rtnl_route_get_nnexthops(r) > 0) {
    rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    k.gateway = from_nl(rtnl_route_nh_get_gateway(nh));
    k.ifindex = rtnl_route_nh_get_ifindex(nh);
  }
  return k;
}

template <typename T>
void for_each(nl_cache* cache, const std::function<void(T*)>& f) {
  for (nl_object* o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
    f(reinterpret_cast<T*>(o));
  }
}

bool rule_is_ours(rtnl_rule* r) {
  uint8_t proto = 0;
  return rtnl_rule_get_protocol(r, &proto) == 0 && proto == kRouteProtocol;
}

}  // namespace

std::string WantedRule::str() const {
  char buf[128];
  std::snprintf(buf, sizeof buf,
                "%s rule pref %" PRIu32 " fwmark 0x%" PRIx32 "/0x%" PRIx32 " lookup %" PRIu32,
                family == Family::v6 ? "ipv6" : "ipv4", priority, mark, mask, table);
  return buf;
}

std::string WantedRoute::str() const {
  std::string s = "route " + destination.str();
  if (gateway) s += " via " + gateway->str();
  if (!device.empty()) s += " dev " + device;
  return s + " table " + std::to_string(table);
}

std::vector<WantedRule> wanted_rules(const config::Config& config) {
  std::vector<WantedRule> out;
  for (const auto& p : config.profiles) {
    if (!p.fwmark || !p.table) continue;
    for (Family f : {Family::v4, Family::v6}) {
      out.push_back(WantedRule{f, kRulePriorityFirst + *p.table % 1000, p.fwmark->value,
                               p.fwmark->mask, *p.table, p.name});
    }
  }
  return out;
}

std::vector<WantedRoute> wanted_routes(const config::Config& config) {
  std::vector<WantedRoute> out;
  for (const auto& p : config.profiles) {
    if (!p.table) continue;
    for (const auto& r : p.routes) {
      out.push_back(WantedRoute{*p.table, r.prefix, r.gateway, r.device, p.name});
    }
  }
  return out;
}

Result<std::unique_ptr<Routing>> Routing::open() {
  nl_sock* sk = nl_socket_alloc();
  nl_sock* ev = nl_socket_alloc();
  auto fail = [&](const std::string& what, int rc) -> Error {
    if (sk) nl_socket_free(sk);
    if (ev) nl_socket_free(ev);
    return Error{"rtnetlink: " + what + ": " + nl_geterror(rc)};
  };
  if (!sk || !ev) return fail("socket", -NLE_NOMEM);
  int rc = nl_connect(sk, NETLINK_ROUTE);
  if (rc < 0) return fail("connect", rc);
  int one = 1;
  // The kernel's own words on failures (extended ack); harmless where unsupported.
  setsockopt(nl_socket_get_fd(sk), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  nl_socket_disable_seq_check(ev);
  rc = nl_connect(ev, NETLINK_ROUTE);
  if (rc < 0) return fail("connect", rc);
  rc = nl_socket_add_memberships(ev, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, 0);
  if (rc < 0) return fail("subscribe", rc);
  rc = nl_socket_set_nonblocking(ev);
  if (rc < 0) return fail("nonblocking", rc);
  std::unique_ptr<Routing> routing(new Routing(sk, ev));
  // Links already up are not news: only a change to up is.
  nl_cache* links = nullptr;
  if (rtnl_link_alloc_cache(routing->sk_, AF_UNSPEC, &links) == 0) {
    CachePtr owned(links);
    for_each<rtnl_link>(links, [&](rtnl_link* l) {
      unsigned flags = rtnl_link_get_flags(l);
      routing->link_up_[rtnl_link_get_ifindex(l)] = (flags & IFF_UP) && (flags & IFF_RUNNING);
    });
  }
  return routing;
}

Routing::~Routing() {
  nl_socket_free(sk_);
  nl_socket_free(events_);
}

Result<RoutingCounts> Routing::reconcile(const config::Config& config) {
  return sync(wanted_rules(config), wanted_routes(config));
}

Result<RoutingCounts> Routing::remove_all() {
  return sync({}, {});
}

Result<RoutingCounts> Routing::sync(const std::vector<WantedRule>& rules,
                                    const std::vector<WantedRoute>& routes) {
  RoutingCounts counts;

  // Rules: keep one of each wanted rule, delete every other rule of ours (stale ones and
  // duplicates), then add the missing ones with NLM_F_EXCL (rules have no REPLACE).
  nl_cache* raw = nullptr;
  int rc = rtnl_rule_alloc_cache(sk_, AF_UNSPEC, &raw);
  if (rc < 0) return Error{std::string("rtnetlink: dump rules: ") + nl_geterror(rc)};
  CachePtr rule_cache(raw);
  std::vector<bool> present(rules.size(), false);
  std::vector<rtnl_rule*> doomed;
  for_each<rtnl_rule>(rule_cache.get(), [&](rtnl_rule* r) {
    if (!rule_is_ours(r)) return;
    WantedRule got{rtnl_rule_get_family(r) == AF_INET6 ? Family::v6 : Family::v4,
                   rtnl_rule_get_prio(r),
                   rtnl_rule_get_mark(r),
                   rtnl_rule_get_mask(r),
                   rtnl_rule_get_table(r),
                   {}};
    for (size_t i = 0; i < rules.size(); ++i) {
      if (!present[i] && rules[i] == got && rtnl_rule_get_action(r) == FR_ACT_TO_TBL) {
        present[i] = true;
        return;
      }
    }
    doomed.push_back(r);
  });
  for (rtnl_rule* r : doomed) {
    nl_msg* m = nullptr;
    rc = rtnl_rule_build_delete_request(r, 0, &m);
    if (rc < 0) return Error{std::string("rtnetlink: ") + nl_geterror(rc)};
    MsgPtr msg(m);
    auto done = talk(sk_, msg.get());
    if (done) {
      ++counts.rules_removed;
    } else {
      counts.failures.push_back("delete rule pref " + std::to_string(rtnl_rule_get_prio(r)) + ": " +
                                done.error().message);
    }
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    if (present[i]) continue;
    RulePtr r = make_rule(rules[i]);
    nl_msg* m = nullptr;
    rc = r ? rtnl_rule_build_add_request(r.get(), NLM_F_EXCL, &m) : -NLE_NOMEM;
    if (rc < 0) return Error{std::string("rtnetlink: ") + nl_geterror(rc)};
    MsgPtr msg(m);
    auto done = talk(sk_, msg.get());
    if (done) {
      ++counts.rules_added;
    } else {
      counts.failures.push_back("add " + rules[i].str() + " (profile " + rules[i].profile +
                                "): " + done.error().message);
    }
  }

  // Routes: the same, keyed by table, destination, gateway and device.
  rc = rtnl_route_alloc_cache(sk_, AF_UNSPEC, 0, &raw);
  if (rc < 0) return Error{std::string("rtnetlink: dump routes: ") + nl_geterror(rc)};
  CachePtr route_cache(raw);
  std::vector<RouteKey> want_keys;
  for (const auto& w : routes) {
    RouteKey k{w.table, w.destination, w.gateway, 0};
    if (!w.device.empty()) k.ifindex = static_cast<int>(if_nametoindex(w.device.c_str()));
    want_keys.push_back(k);
  }
  std::vector<bool> route_present(routes.size(), false);
  std::vector<rtnl_route*> stale;
  for_each<rtnl_route>(route_cache.get(), [&](rtnl_route* r) {
    if (rtnl_route_get_protocol(r) != kRouteProtocol) return;
    RouteKey got = key_of(r);
    for (size_t i = 0; i < routes.size(); ++i) {
      RouteKey w = want_keys[i];
      if (routes[i].device.empty()) w.ifindex = got.ifindex;  // the kernel chose it
      if (!route_present[i] && w == got) {
        route_present[i] = true;
        return;
      }
    }
    stale.push_back(r);
  });
  for (rtnl_route* r : stale) {
    nl_msg* m = nullptr;
    rc = rtnl_route_build_del_request(r, 0, &m);
    if (rc < 0) return Error{std::string("rtnetlink: ") + nl_geterror(rc)};
    MsgPtr msg(m);
    auto done = talk(sk_, msg.get());
    if (done) {
      ++counts.routes_removed;
    } else {
      counts.failures.push_back("delete route in table " + std::to_string(rtnl_route_get_table(r)) +
                                ": " + done.error().message);
    }
  }
  for (size_t i = 0; i < routes.size(); ++i) {
    if (route_present[i]) continue;
    auto what = [&] { return "add " + routes[i].str() + " (profile " + routes[i].profile + "): "; };
    auto route = make_route(routes[i]);
    if (!route) {
      counts.failures.push_back(what() + route.error().message);
      continue;
    }
    nl_msg* m = nullptr;
    rc = rtnl_route_build_add_request(route->get(), NLM_F_CREATE | NLM_F_REPLACE, &m);
    if (rc < 0) return Error{std::string("rtnetlink: ") + nl_geterror(rc)};
    MsgPtr msg(m);
    auto done = talk(sk_, msg.get());
    if (done) {
      ++counts.routes_added;
    } else {
      counts.failures.push_back(what() + done.error().message);
    }
  }
  return counts;
}

int Routing::event_fd() const {
  return nl_socket_get_fd(events_);
}

namespace {

struct EventScan {
  const std::set<std::string>* devices;
  bool any_device;
  std::map<int, bool>* link_up;
  bool hit = false;
};

bool watched(const EventScan& s, int ifindex, const char* name) {
  if (s.any_device) return true;
  char buf[IF_NAMESIZE] = {};
  if (!name) name = if_indextoname(static_cast<unsigned>(ifindex), buf);
  return name && s.devices->count(name) > 0;
}

int on_event(nl_msg* msg, void* arg) {
  auto* s = static_cast<EventScan*>(arg);
  nlmsghdr* nlh = nlmsg_hdr(msg);
  if (nlh->nlmsg_type == RTM_NEWLINK && nlmsg_datalen(nlh) >= static_cast<int>(sizeof(ifinfomsg))) {
    auto* ifi = static_cast<ifinfomsg*>(nlmsg_data(nlh));
    bool up = (ifi->ifi_flags & IFF_UP) && (ifi->ifi_flags & IFF_RUNNING);
    nlattr* name_attr = nlmsg_find_attr(nlh, sizeof(ifinfomsg), IFLA_IFNAME);
    const char* name = name_attr ? nla_get_string(name_attr) : nullptr;
    auto it = s->link_up->find(ifi->ifi_index);
    bool was_up = it != s->link_up->end() && it->second;
    (*s->link_up)[ifi->ifi_index] = up;
    if (up && !was_up && watched(*s, ifi->ifi_index, name)) s->hit = true;
  } else if (nlh->nlmsg_type == RTM_DELLINK &&
             nlmsg_datalen(nlh) >= static_cast<int>(sizeof(ifinfomsg))) {
    s->link_up->erase(static_cast<ifinfomsg*>(nlmsg_data(nlh))->ifi_index);
  } else if (nlh->nlmsg_type == RTM_NEWADDR &&
             nlmsg_datalen(nlh) >= static_cast<int>(sizeof(ifaddrmsg))) {
    auto* ifa = static_cast<ifaddrmsg*>(nlmsg_data(nlh));
    if (watched(*s, static_cast<int>(ifa->ifa_index), nullptr)) s->hit = true;
  }
  return NL_OK;
}

}  // namespace

bool Routing::process_events(const std::set<std::string>& devices, bool any_device) {
  EventScan scan{&devices, any_device, &link_up_};
  nl_socket_modify_cb(events_, NL_CB_VALID, NL_CB_CUSTOM, on_event, &scan);
  for (;;) {
    int rc = nl_recvmsgs_default(events_);
    if (rc < 0) {
      // -NLE_NOMEM is how libnl reports ENOBUFS (lost notifications): reconcile to be safe.
      if (rc == -NLE_NOMEM) scan.hit = true;
      break;
    }
  }
  return scan.hit;
}

}  // namespace kg::policyd
