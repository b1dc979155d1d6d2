// Follows the capture interfaces and their addresses through rtnetlink (libnl-route-3
// cache manager): interfaces that appear late, go down, lose or gain addresses, or are
// deleted and re-created are noticed as they happen, not read once at start.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/addr.h"
#include "common/result.h"

struct nl_cache;
struct nl_cache_mngr;
struct nl_object;

namespace kg::captured {

struct InterfaceState {
  std::string name;
  int ifindex = 0;  // 0: absent
  bool up = false;  // IFF_UP and carrier-independent
  std::vector<IpAddr> addrs;
  friend bool operator==(const InterfaceState&, const InterfaceState&) = default;
};

class NetWatch {
 public:
  using ChangeFn = std::function<void(const std::vector<InterfaceState>&)>;

  // Opens the netlink socket (no privilege needed to read). `names` are the interfaces
  // to follow; `on_change` is called with the new state whenever it differs.
  static Result<std::unique_ptr<NetWatch>> open(std::vector<std::string> names, ChangeFn on_change);
  NetWatch(const NetWatch&) = delete;
  NetWatch& operator=(const NetWatch&) = delete;
  ~NetWatch();

  int fd() const;
  // Call when fd() is readable: applies the kernel's notifications.
  void on_readable();
  const std::vector<InterfaceState>& state() const { return state_; }
  void set_names(std::vector<std::string> names);

 private:
  NetWatch(std::vector<std::string> names, ChangeFn fn);
  void refresh();
  void resync();
  static void on_cache_change(nl_cache*, nl_object*, int, void* self);

  std::vector<std::string> names_;
  ChangeFn on_change_;
  nl_cache_mngr* mngr_ = nullptr;
  nl_cache* links_ = nullptr;
  nl_cache* addrs_ = nullptr;
  std::vector<InterfaceState> state_;
};

}  // namespace kg::captured
