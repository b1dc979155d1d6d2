#include "policyd/kernel_state.h"

#include <time.h>

#include <map>
#include <set>
#include <utility>
#include <vector>

#include "policyd/conntrack.h"
#include "policyd/nft.h"
#include "policyd/nft_netlink.h"
#include "policyd/routing.h"

namespace kg::policyd {
namespace {

const std::string kTable(kTableName);

int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// A queue rule in a scratch table, checked but never committed.
const char* kQueueProbe =
    "add table inet knockgate_probe\n"
    "add chain inet knockgate_probe probe { type filter hook prerouting priority 0; }\n"
    "add rule inet knockgate_probe probe queue num 0 bypass\n";

using ElementKey = std::pair<std::string, IpAddr>;  // set name, address

std::string join_failures(const std::vector<std::string>& failures) {
  std::string s;
  for (const auto& f : failures) s += (s.empty() ? "" : "; ") + f;
  return s;
}

}  // namespace

std::string ReconcileReport::summary() const {
  return std::string("reconcile: ruleset ") + (ruleset_replaced ? "replaced" : "unchanged") +
         ", elements +" + std::to_string(elements_added) + "/-" + std::to_string(elements_removed) +
         ", ip rules +" + std::to_string(ip_rules_added) + "/-" + std::to_string(ip_rules_removed) +
         ", routes +" + std::to_string(routes_added) + "/-" + std::to_string(routes_removed) +
         ", conntrack -" + std::to_string(conntrack_deleted);
}

Result<std::unique_ptr<KernelState>> KernelState::open(const config::Config& config) {
  if (auto ids = check_identifiers(config); !ids) return ids.error();
  std::unique_ptr<KernelState> ks(new KernelState());
  ks->config_ = config;
  auto nft = Nft::open();
  if (!nft) return nft.error();
  ks->nft_ = std::move(*nft);
  auto nfnl = NftNetlink::open();
  if (!nfnl) return nfnl.error();
  ks->nfnl_ = std::move(*nfnl);
  auto routing = Routing::open();
  if (!routing) return routing.error();
  ks->routing_ = std::move(*routing);
  auto ct = Conntrack::open();
  if (!ct) return ct.error();
  ks->conntrack_ = std::move(*ct);

  auto probe = ks->nft_->check(kQueueProbe);
  if (probe) {
    ks->queue_mode_ = QueueMode::native;
  } else if (probe.error().message.find("No such file or directory") != std::string::npos) {
    ks->queue_mode_ = QueueMode::xt_fallback;  // CONFIG_NFT_QUEUE not set
  } else {
    return Error{"probing the nft queue statement: " + probe.error().message};
  }
  return ks;
}

KernelState::~KernelState() = default;

Result<ReconcileReport> KernelState::reconcile(const config::Config& config,
                                               std::span<const InstalledGrant> grants) {
  if (auto ids = check_identifiers(config); !ids) return ids.error();
  config_ = config;
  ReconcileReport report;
  const int64_t now = realtime_ns();

  // What the kernel has: our table's rules and every grant set's elements.
  auto listing = nfnl_->fingerprint(kTable);
  if (!listing) return listing.error();
  const bool table_exists = !listing->empty();
  std::map<ElementKey, uint64_t> have;  // → ms left
  std::map<std::string, std::string> set_profile;
  for (const auto& p : config.profiles) {
    for (Family f : {Family::v4, Family::v6}) {
      std::string set = grant_set_name(p.name, f);
      set_profile[set] = p.name;
      if (!table_exists) continue;
      auto elems = nfnl_->dump_set(kTable, set, f);
      if (!elems) continue;  // a set the table lacks: the ruleset is replaced below
      for (const auto& e : *elems) have[{set, e.addr}] = e.expires_ms;
    }
  }
  // What it should have.
  std::map<ElementKey, const InstalledGrant*> want;
  for (const auto& g : grants) {
    if (!config.find_profile(g.profile)) {
      return Error{"grant " + std::to_string(g.id) + ": no profile \"" + g.profile + "\""};
    }
    if (g.expires_ns <= now) continue;
    ElementKey k{grant_set_name(g.profile, g.source.family()), g.source};
    auto [it, fresh] = want.emplace(k, &g);
    if (!fresh && g.expires_ns > it->second->expires_ns) it->second = &g;
  }

  std::string text = ruleset_text(config, queue_mode_);
  bool replace = !table_exists || text != installed_text_ || *listing != installed_listing_;
  std::vector<InstalledGrant> to_add, to_remove;
  for (const auto& [k, g] : want) {
    auto it = have.find(k);
    int64_t want_ms = (g->expires_ns - now) / 1'000'000;
    bool stale_timeout = it != have.end() && (static_cast<int64_t>(it->second) < want_ms - 1000 ||
                                              static_cast<int64_t>(it->second) > want_ms + 1000);
    if (it == have.end() || stale_timeout || replace) to_add.push_back(*g);
    if (it == have.end()) ++report.elements_added;
  }
  for (const auto& [k, ms] : have) {
    if (want.count(k)) continue;
    ++report.elements_removed;
    to_remove.push_back(InstalledGrant{0, k.second, set_profile[k.first], 0});
  }

  std::string batch;
  if (replace) {
    batch = text;
    report.ruleset_replaced = true;
  } else if (!to_remove.empty()) {
    auto del = element_delete_text(config, to_remove);
    if (!del) return del.error();
    batch += *del;
  }
  auto add = element_add_text(config, to_add, now, /*refresh=*/!replace);
  if (!add) return add.error();
  batch += *add;
  if (!batch.empty()) {
    auto ran = nft_->run(batch);
    if (!ran) return ran.error();
  }
  if (replace) {
    if (queue_mode_ == QueueMode::xt_fallback) {
      // Until this lands the verdict chain ends in its default (drop when fail-closed).
      XtQueue q{config.options.verdict_queue_first, config.options.verdict_queue_count,
                config.options.verdict_fail_open};
      auto ins = nfnl_->insert_xt_queue(kTable, std::string(kVerdictChain), q);
      if (!ins) return ins.error();
    }
    auto after = nfnl_->fingerprint(kTable);
    if (!after) return after.error();
    installed_text_ = std::move(text);
    installed_listing_ = std::move(*after);
  }

  auto routed = routing_->reconcile(config);
  if (!routed) return routed.error();
  report.ip_rules_added = routed->rules_added;
  report.ip_rules_removed = routed->rules_removed;
  report.routes_added = routed->routes_added;
  report.routes_removed = routed->routes_removed;
  if (!routed->failures.empty()) {
    return Error{report.summary() + "; failed: " + join_failures(routed->failures)};
  }
  return report;
}

Result<Ok> KernelState::add_grants(std::span<const InstalledGrant> grants) {
  auto text = element_add_text(config_, grants, realtime_ns(), /*refresh=*/true);
  if (!text) return text.error();
  if (text->empty()) return Ok{};
  auto ran = nft_->run(*text);
  if (!ran) return ran.error();
  return Ok{};
}

Result<size_t> KernelState::remove_grants(std::span<const InstalledGrant> grants) {
  auto text = element_delete_text(config_, grants);
  if (!text) return text.error();
  if (!text->empty()) {
    auto ran = nft_->run(*text);
    if (!ran) return ran.error();
  }
  size_t deleted = 0;
  for (const auto& g : grants) {
    const config::Profile* p = config_.find_profile(g.profile);
    if (!p || p->revoke != config::Revoke::all_flows) continue;
    // Without a fwmark the profile's flows cannot be told apart: all of the source's go.
    uint32_t value = p->fwmark ? p->fwmark->value : 0;
    uint32_t mask = p->fwmark ? p->fwmark->mask : 0;
    auto n = conntrack_->delete_flows(g.source, value, mask);
    if (!n) return n.error();
    deleted += *n;
  }
  return deleted;
}

Result<Ok> KernelState::remove_all() {
  auto ran = nft_->run("add table inet knockgate\ndelete table inet knockgate\n");
  installed_text_.clear();
  installed_listing_.clear();
  auto routed = routing_->remove_all();
  if (!ran) return ran.error();
  if (!routed) return routed.error();
  if (!routed->failures.empty()) return Error{"failed: " + join_failures(routed->failures)};
  return Ok{};
}

int KernelState::netlink_fd() const {
  return routing_->event_fd();
}

bool KernelState::process_netlink() {
  std::set<std::string> devices;
  bool any = false;
  for (const auto& r : wanted_routes(config_)) {
    if (r.device.empty()) {
      any = true;  // the kernel picks the device from the gateway: any link may matter
    } else {
      devices.insert(r.device);
    }
  }
  return routing_->process_events(devices, any);
}

std::string KernelState::features() const {
  return queue_mode_ == QueueMode::native ? "nfqueue: nft queue statement"
                                          : "nfqueue: xt NFQUEUE via nft_compat (no nft queue)";
}

}  // namespace kg::policyd
