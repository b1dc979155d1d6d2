// policyd's kernel layer: makes the kernel match the
// config and the active grants, touching nothing that is not ours — `table inet knockgate`
// (nftables), ip rules and routes carrying our routing protocol, and conntrack entries of
// revoked grants. docs/datapath.md describes the state it installs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/result.h"
#include "config/config.h"
#include "policyd/grant_install.h"
#include "policyd/kernel/nft_ruleset.h"

namespace kg::policyd {

class Nft;
class NftNetlink;
class Routing;
class Conntrack;

// When the table was replaced, elements_added counts the elements loaded with it and
// elements_removed is 0 (the old elements are not read: they went with the old table).
struct ReconcileReport {
  size_t elements_added = 0, elements_removed = 0, ip_rules_added = 0, ip_rules_removed = 0,
         routes_added = 0, routes_removed = 0, conntrack_deleted = 0;
  bool ruleset_replaced = false;
  std::string summary() const;  // one log line
};

class KernelState {
 public:
  // Probes features (nft `queue` statement, else xt NFQUEUE through nft_compat), opens the
  // libnftables context and the netlink sockets. Changes nothing yet.
  static Result<std::unique_ptr<KernelState>> open(const config::Config& config);
  ~KernelState();
  KernelState(const KernelState&) = delete;
  KernelState& operator=(const KernelState&) = delete;

  // Makes the kernel match config + grants exactly: the base ruleset (atomic replace, set
  // elements in the same transaction) when it differs from what we installed, the grant
  // elements, one fwmark ip rule per profile and family, the profiles' routes. Removes our
  // stale rules, routes and elements. An error lists every object that failed (the rest is
  // installed) with the kernel's reason.
  Result<ReconcileReport> reconcile(const config::Config& config,
                                    std::span<const GrantInstall> grants);
  // One nft transaction; an existing element gets the new timeout (extend).
  Result<Ok> add_grants(std::span<const GrantInstall> grants);
  // Elements removed (already expired ones are fine); for profiles with `revoke = all` the
  // source's conntrack entries of that profile (ct mark & mask) are deleted too. Returns
  // how many conntrack entries went.
  Result<size_t> remove_grants(std::span<const GrantInstall> grants);
  // Clean stop: deletes table inet knockgate and our tagged ip rules and routes.
  Result<Ok> remove_all();

  // Link/address events. When readable call process_netlink(); true means "a link we
  // route through came back: call reconcile()".
  int netlink_fd() const;
  bool process_netlink();
  std::string features() const;

 private:
  KernelState() = default;
  Result<ReconcileReport> reconcile_host_mode(const config::Config& config, bool table_present);
  Result<ReconcileReport> reconcile_routing(const config::Config& config, ReconcileReport report);
  config::Config config_;
  std::unique_ptr<Nft> nft_;
  std::unique_ptr<NftNetlink> nfnl_;
  std::unique_ptr<Routing> routing_;
  std::unique_ptr<Conntrack> conntrack_;
  QueueMode queue_mode_ = QueueMode::native;
  std::string installed_text_;     // the ruleset text we loaded last
  std::string installed_listing_;  // the kernel's chains and rules right after (fingerprint)
};

}  // namespace kg::policyd
