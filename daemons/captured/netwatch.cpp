#include "captured/netwatch.h"

#include <net/if.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace kg::captured {

NetWatch::NetWatch(std::vector<std::string> names, ChangeFn fn)
    : names_(std::move(names)), on_change_(std::move(fn)) {}

NetWatch::~NetWatch() {
  if (mngr_ != nullptr) nl_cache_mngr_free(mngr_);  // frees the caches it manages too
}

Result<std::unique_ptr<NetWatch>> NetWatch::open(std::vector<std::string> names, ChangeFn fn) {
  std::unique_ptr<NetWatch> w(new NetWatch(std::move(names), std::move(fn)));
  int err = nl_cache_mngr_alloc(nullptr, NETLINK_ROUTE, NL_AUTO_PROVIDE, &w->mngr_);
  if (err < 0) return Error{std::string("netlink cache manager: ") + nl_geterror(err)};
  err = nl_cache_mngr_add(w->mngr_, "route/link", &NetWatch::on_cache_change, w.get(), &w->links_);
  if (err < 0) return Error{std::string("netlink link cache: ") + nl_geterror(err)};
  err = nl_cache_mngr_add(w->mngr_, "route/addr", &NetWatch::on_cache_change, w.get(), &w->addrs_);
  if (err < 0) return Error{std::string("netlink address cache: ") + nl_geterror(err)};
  w->refresh();
  return w;
}

int NetWatch::fd() const {
  return nl_cache_mngr_get_fd(mngr_);
}

void NetWatch::on_readable() {
  const int err = nl_cache_mngr_data_ready(mngr_);
  if (err < 0) {
    // Notifications were lost (typically ENOBUFS under a burst of changes): the caches may
    // be stale, so re-read both from a dump rather than trust them.
    log::warn(std::string("netlink notifications lost (") + nl_geterror(err) +
              "); re-reading interfaces and addresses");
    resync();
  }
  refresh();
}

void NetWatch::resync() {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) return;
  int err = nl_connect(sock, NETLINK_ROUTE);
  if (err >= 0) err = nl_cache_refill(sock, links_);
  if (err >= 0) err = nl_cache_refill(sock, addrs_);
  if (err < 0) log::error(std::string("netlink resync failed: ") + nl_geterror(err));
  nl_socket_free(sock);
}

void NetWatch::set_names(std::vector<std::string> names) {
  names_ = std::move(names);
  state_.clear();
  refresh();
}

void NetWatch::on_cache_change(nl_cache*, nl_object*, int, void*) {
  // The caches are updated before the callback; refresh() after data_ready reads them once
  // per batch of notifications instead of once per object.
}

void NetWatch::refresh() {
  std::vector<InterfaceState> next;
  next.reserve(names_.size());
  for (const auto& name : names_) {
    InterfaceState st;
    st.name = name;
    rtnl_link* link = rtnl_link_get_by_name(links_, name.c_str());
    if (link != nullptr) {
      st.ifindex = rtnl_link_get_ifindex(link);
      st.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
      rtnl_link_put(link);
    }
    if (st.ifindex != 0) {
      for (nl_object* o = nl_cache_get_first(addrs_); o != nullptr; o = nl_cache_get_next(o)) {
        auto* a = reinterpret_cast<rtnl_addr*>(o);
        if (rtnl_addr_get_ifindex(a) != st.ifindex) continue;
        nl_addr* local = rtnl_addr_get_local(a);
        if (local == nullptr) continue;
        const auto* bytes = static_cast<const uint8_t*>(nl_addr_get_binary_addr(local));
        if (nl_addr_get_family(local) == AF_INET && nl_addr_get_len(local) == 4) {
          st.addrs.push_back(IpAddr::v4(bytes));
        } else if (nl_addr_get_family(local) == AF_INET6 && nl_addr_get_len(local) == 16) {
          st.addrs.push_back(IpAddr::v6(bytes));
        }
      }
      std::sort(st.addrs.begin(), st.addrs.end());
    }
    next.push_back(std::move(st));
  }
  if (next != state_) {
    state_ = std::move(next);
    if (on_change_) on_change_(state_);
  }
}

}  // namespace kg::captured
