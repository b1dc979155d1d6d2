#include "policyd/kernel/kernel_state.h"

#include <time.h>

#include <map>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "policyd/kernel/conntrack.h"
#include "policyd/kernel/nft.h"
#include "policyd/kernel/nft_netlink.h"
#include "policyd/kernel/routing.h"

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

struct SetElementKey {
  uint32_t set = 0;  // profile index * 2 + (v6 ? 1 : 0)
  IpAddr addr;
  bool operator==(const SetElementKey&) const = default;
};
struct SetElementHash {
  size_t operator()(const SetElementKey& k) const {
    uint64_t h = 1469598103934665603ULL ^ k.set;  // FNV-1a
    for (size_t i = 0; i < k.addr.size(); ++i) h = (h ^ k.addr.data()[i]) * 1099511628211ULL;
    return static_cast<size_t>(h);
  }
};

std::string join_failures(const std::vector<std::string>& failures) {
  std::string s;
  for (const auto& f : failures) s += (s.empty() ? "" : "; ") + f;
  return s;
}

}  // namespace

std::string ReconcileReport::summary() const {
  std::string elements =
      ruleset_replaced ? "ruleset replaced, " + std::to_string(elements_added) + " elements loaded"
                       : "ruleset unchanged, elements +" + std::to_string(elements_added) + "/-" +
                             std::to_string(elements_removed);
  return "reconcile: " + elements + ", ip rules +" + std::to_string(ip_rules_added) + "/-" +
         std::to_string(ip_rules_removed) + ", routes +" + std::to_string(routes_added) + "/-" +
         std::to_string(routes_removed) + ", conntrack -" + std::to_string(conntrack_deleted);
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
                                               std::span<const GrantInstall> grants) {
  if (auto ids = check_identifiers(config); !ids) return ids.error();
  config_ = config;
  ReconcileReport report;
  const int64_t now = realtime_ns();

  // Our table's chains and rules as the kernel has them, against what we loaded last.
  auto listing = nfnl_->fingerprint(kTable);
  if (!listing) return listing.error();
  std::string text = ruleset_text(config, queue_mode_);
  if (text.empty()) return reconcile_host_mode(config, !listing->empty());
  const bool replace =
      listing->empty() || text != installed_text_ || *listing != installed_listing_;

  // The grant sets, indexed profile * 2 + (v6 ? 1 : 0).
  std::unordered_map<std::string, uint32_t> profile_index;
  for (uint32_t i = 0; i < config.profiles.size(); ++i) profile_index[config.profiles[i].name] = i;
  auto set_of = [](uint32_t profile, Family f) { return profile * 2 + (f == Family::v6 ? 1 : 0); };

  // What the kernel should have: every live grant, the latest expiry per source and set.
  std::unordered_map<SetElementKey, const GrantInstall*, SetElementHash> want;
  want.reserve(grants.size());
  for (const auto& g : grants) {
    auto p = profile_index.find(g.profile);
    if (p == profile_index.end()) {
      return Error{"grant " + std::to_string(g.id) + ": no profile \"" + g.profile + "\""};
    }
    if (g.expires_ns <= now || g.source.empty()) continue;
    auto [it, fresh] =
        want.emplace(SetElementKey{set_of(p->second, g.source.family()), g.source}, &g);
    if (!fresh && g.expires_ns > it->second->expires_ns) it->second = &g;
  }

  std::vector<GrantInstall> to_add, to_remove;
  if (replace) {
    // The table is replaced with every live grant in one transaction: no need to read the
    // old elements (a 100 000-element dump costs about a second); the counts say what was
    // loaded.
    report.ruleset_replaced = true;
    report.elements_added = want.size();
    to_add.reserve(want.size());
    for (const auto& [k, g] : want) to_add.push_back(*g);
  } else {
    std::unordered_map<SetElementKey, uint64_t, SetElementHash> have;  // → ms left
    have.reserve(want.size());
    for (uint32_t i = 0; i < config.profiles.size(); ++i) {
      for (Family f : {Family::v4, Family::v6}) {
        auto elems = nfnl_->dump_set(kTable, grant_set_name(config.profiles[i].name, f), f);
        if (!elems) return elems.error();
        for (const auto& e : *elems) have[SetElementKey{set_of(i, f), e.addr}] = e.expires_ms;
      }
    }
    for (const auto& [k, g] : want) {
      auto it = have.find(k);
      if (it == have.end()) {
        ++report.elements_added;
        to_add.push_back(*g);
        continue;
      }
      // An element that would time out early is refreshed; one that lives a little longer
      // than asked is fine (policyd removes it on time) unless it is far off.
      auto left = static_cast<int64_t>(it->second);
      int64_t want_ms = (g->expires_ns - now) / 1'000'000;
      if (left < want_ms - 1000 || left > want_ms + 60'000) to_add.push_back(*g);
    }
    for (const auto& [k, ms] : have) {
      if (want.count(k)) continue;
      ++report.elements_removed;
      to_remove.push_back(GrantInstall{0, k.addr, config.profiles[k.set / 2].name, 0});
    }
  }

  std::string batch;
  if (replace) {
    batch = text;
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
    if (queue_mode_ == QueueMode::xt_fallback && config.mode() == config::Mode::gateway) {
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

  return reconcile_routing(config, report);
}

// The profiles' ip rules and routes, counted into `report`; failures name every object.
Result<ReconcileReport> KernelState::reconcile_routing(const config::Config& config,
                                                       ReconcileReport report) {
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

// Host mode owns nothing in the kernel: a table of ours left by an earlier gateway or self
// config goes, with our ip rules and routes; nothing else is touched.
Result<ReconcileReport> KernelState::reconcile_host_mode(const config::Config& config,
                                                         bool table_present) {
  ReconcileReport report;
  if (table_present) {
    auto ran = nft_->run("add table inet knockgate\ndelete table inet knockgate\n");
    if (!ran) return ran.error();
    report.ruleset_replaced = true;
  }
  installed_text_.clear();
  installed_listing_.clear();
  return reconcile_routing(config, report);
}

Result<Ok> KernelState::add_grants(std::span<const GrantInstall> grants) {
  auto text = element_add_text(config_, grants, realtime_ns(), /*refresh=*/true);
  if (!text) return text.error();
  if (text->empty()) return Ok{};
  auto ran = nft_->run(*text);
  if (!ran) return ran.error();
  return Ok{};
}

Result<size_t> KernelState::remove_grants(std::span<const GrantInstall> grants) {
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
  // Host mode never had a table: an add-then-delete would still show in `nft monitor`.
  Result<std::string> ran = std::string{};
  if (!installed_text_.empty() || config_.mode() != config::Mode::host) {
    ran = nft_->run("add table inet knockgate\ndelete table inet knockgate\n");
  }
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
  return std::string("mode ") + config::mode_name(config_.mode()) + ", " +
         (queue_mode_ == QueueMode::native ? "nfqueue: nft queue statement"
                                           : "nfqueue: xt NFQUEUE via nft_compat (no nft queue)");
}

}  // namespace kg::policyd
