// GrantBook: creation, extension, expiry, revocation, reload (see grants.h).
#include "policyd/grants.h"

#include <algorithm>

#include "common/json.h"
#include "common/log.h"
#include "policyd/wall_clock.h"

namespace kg::policyd {

namespace {

std::string grant_key(std::string_view source, std::string_view profile) {
  std::string key(source);
  key.push_back('\0');
  key.append(profile);
  return key;
}

int64_t seconds_ns(std::chrono::seconds s) {
  return static_cast<int64_t>(s.count()) * 1'000'000'000;
}

}  // namespace

GrantBook::GrantBook(boost::asio::io_context& io, Store& store, AuditQueue& audits,
                     std::optional<RevocationJournal> journal)
    : io_(io),
      store_(store),
      audits_(audits),
      expiry_timer_(io),
      journal_(std::move(journal)),
      record_timer_(io),
      alive_(std::make_shared<int>(0)) {}

GrantBook::~GrantBook() {
  expiry_timer_.cancel();
  record_timer_.cancel();
}

void GrantBook::shutdown() {
  expiry_timer_.cancel();
  // A last try; revocations still owed stay in the revocation journal for the next start.
  record_grant_ends();
  record_timer_.cancel();
}

void GrantBook::database_writable() {
  if (!pending_ends_.empty()) retry_grant_ends(true);
}

std::string describe_grant(const GrantRow& g) {
  return "grant " + std::to_string(g.id) + " profile " + g.profile + " method " + g.method +
         (g.origin.empty() ? "" : " origin " + g.origin) + " expires_ns " +
         std::to_string(g.expires_ns);
}

const GrantProfile* GrantBook::find_profile(std::string_view name) const {
  for (const GrantProfile& p : profiles_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

GrantBook::Active* GrantBook::find_active(const std::string& source, std::string_view profile) {
  auto k = by_key_.find(grant_key(source, profile));
  if (k == by_key_.end()) return nullptr;
  auto it = active_.find(k->second);
  return it == active_.end() ? nullptr : &it->second;
}

GrantInstall GrantBook::install_of(const GrantRow& row) const {
  GrantInstall g;
  g.id = static_cast<uint64_t>(row.id);
  g.source = IpAddr::parse(row.source).value_or(IpAddr{});
  g.profile = row.profile;
  g.expires_ns = row.expires_ns;
  return g;
}

ipc::GrantRecord GrantBook::record_of(const GrantRow& row) const {
  ipc::GrantRecord r;
  r.id = static_cast<uint64_t>(row.id);
  r.source = IpAddr::parse(row.source).value_or(IpAddr{});
  r.profile = row.profile;
  r.method = ipc::parse_grant_method(row.method).value_or(ipc::GrantMethod::ctl);
  r.origin = row.origin;
  r.created_ns = row.created_ns;
  r.expires_ns = row.expires_ns;
  if (const GrantProfile* p = find_profile(row.profile)) {
    r.fwmark = p->fwmark;
    r.fwmark_mask = p->fwmark_mask;
  }
  return r;
}

std::vector<ipc::GrantRecord> GrantBook::grant_records() const {
  std::vector<ipc::GrantRecord> out;
  out.reserve(active_.size());
  for (const auto& [id, a] : active_) out.push_back(record_of(a.row));
  return out;
}

std::vector<GrantInstall> GrantBook::active_installs() const {
  std::vector<GrantInstall> out;
  out.reserve(active_.size());
  for (const auto& [id, a] : active_) out.push_back(install_of(a.row));
  return out;
}

void GrantBook::remember_grant(const GrantRow& row) {
  forget_grant(row.id);
  Active a;
  a.row = row;
  a.source = IpAddr::parse(row.source).value_or(IpAddr{});
  by_key_[grant_key(row.source, row.profile)] = row.id;
  by_expiry_.emplace(row.expires_ns, row.id);
  active_.emplace(row.id, std::move(a));
}

void GrantBook::forget_grant(int64_t id) {
  auto it = active_.find(id);
  if (it == active_.end()) return;
  by_expiry_.erase({it->second.row.expires_ns, id});
  auto k = by_key_.find(grant_key(it->second.row.source, it->second.row.profile));
  if (k != by_key_.end() && k->second == id) by_key_.erase(k);
  active_.erase(it);
}

void GrantBook::feed(std::string_view kind, const GrantRow& row, int64_t audit_id,
                     std::string_view extra) {
  if (observer_ == nullptr) return;
  ipc::FeedEvent e;
  e.audit_id = audit_id > 0 ? static_cast<uint64_t>(audit_id) : 0;
  e.time_ns = wall_now_ns();
  e.kind = std::string(kind);
  e.source = IpAddr::parse(row.source);
  json::Writer w;
  w.begin_object()
      .key("id")
      .value(row.id)
      .key("profile")
      .value(row.profile)
      .key("method")
      .value(row.method)
      .key("origin")
      .value(row.origin)
      .key("expires_ns")
      .value(row.expires_ns);
  if (!extra.empty()) w.key("reason").value(extra);
  w.end_object();
  e.detail_json = w.take();
  observer_->feed(e);
}

Result<Ok> GrantBook::load() {
  auto rows = store_.active_grants();
  if (!rows) return rows.error();
  // Revoked before the restart, but the database never heard: they stay revoked.
  *rows = apply_tombstones(std::move(*rows));
  const int64_t now = wall_now_ns();
  std::vector<int64_t> expired;
  for (GrantRow& row : *rows) {
    if (row.expires_ns <= now) {
      expired.push_back(row.id);
    }
    remember_grant(row);
  }
  if (!expired.empty()) {
    // Closed in the database; their kernel elements timed out on their own (and a
    // reconcile removes any that remain).
    auto txn = store_.begin();
    if (!txn) return txn.error();
    for (int64_t id : expired) {
      auto e = store_.end_grant(id, "expired", now, "", "");
      if (!e) return e.error();
      const GrantRow& row = active_.at(id).row;
      auto a = store_.append_audit(now, audit_kind::grant_expire, "", row.source,
                                   describe_grant(row) + "; expired while policyd was down");
      if (!a) return a.error();
    }
    auto c = audits_.commit(*txn);
    if (!c) return c.error();
    for (int64_t id : expired) forget_grant(id);
  }
  if (!rows->empty()) {
    kg::log::info("loaded " + std::to_string(active_.size()) + " active grant(s); " +
                  std::to_string(expired.size()) + " expired while policyd was down");
  }
  arm_grant_timer();
  record_grant_ends();  // the tombstoned ones; retried on its own if it fails
  return Ok{};
}

Result<GrantResult> GrantBook::stage(const IpAddr& source, const GrantProfile& profile,
                                     ipc::GrantMethod method, std::string_view origin,
                                     std::optional<std::chrono::seconds> duration, int64_t now) {
  const std::string src = source.str();
  std::chrono::seconds lifetime = duration.value_or(profile.lifetime);
  lifetime = std::min(lifetime, profile.max_lifetime);
  // The audit's door column names a door only for knocks; ctl/api origins are in detail.
  const std::string_view door = method == ipc::GrantMethod::knock ? origin : std::string_view();
  GrantResult result;
  if (auto why = never_a_client(source)) {
    // Only a spoofed packet carries such a source; every path (knock, SPA, ctl, API)
    // comes through here. Audited, never stored as a grant, never installed.
    result.grant.source = src;
    result.grant.profile = profile.name;
    result.grant.method = ipc::grant_method_name(method);
    result.grant.origin = std::string(origin);
    result.grant.state = "refused";
    result.grant.failure = src + " is " + std::string(*why) + ", never a client's source";
    result.status = GrantStatus::failed;
    auto au = store_.append_audit(now, audit_kind::grant_requested, door, src,
                                  "profile " + profile.name + " refused: " + result.grant.failure);
    if (!au) return au.error();
    kg::log::warn("no grant of " + profile.name + ": " + result.grant.failure);
    return result;
  }
  if (Active* a = find_active(src, profile.name)) {
    result.grant = a->row;
    const int64_t wanted = std::min(now + seconds_ns(lifetime), a->row.max_expires_ns);
    if (wanted <= a->row.expires_ns) {
      result.status = GrantStatus::unchanged;  // already lasts that long (or at its max)
      return result;
    }
    auto u = store_.set_grant_expires(a->row.id, wanted);
    if (!u) return u.error();
    result.grant.expires_ns = wanted;
    result.status = GrantStatus::extended;
    auto au =
        store_.append_audit(now, audit_kind::grant_extend, door, src, describe_grant(result.grant));
    if (!au) return au.error();
    return result;
  }
  // An ended grant of this source and profile not yet recorded still holds the unique
  // (source, profile) slot of active rows: its end goes into this transaction first.
  if (auto e = write_pending_end_of(src, profile.name); !e) return e.error();
  GrantRow row;
  row.source = src;
  row.profile = profile.name;
  row.method = ipc::grant_method_name(method);
  row.origin = std::string(origin);
  row.created_ns = now;
  row.expires_ns = now + seconds_ns(lifetime);
  row.max_expires_ns = now + seconds_ns(profile.max_lifetime);
  auto id = store_.insert_grant(row);
  if (!id) return id.error();
  row.id = *id;
  auto au = store_.append_audit(now, audit_kind::grant_create, door, src, describe_grant(row));
  if (!au) return au.error();
  result.grant = std::move(row);
  result.status = GrantStatus::created;
  return result;
}

// The kernel refused: never leave it half-installed silently. New grants are marked
// failed; extensions go back to their previous expiry (the old element still holds).
void GrantBook::record_install_failure(std::vector<GrantResult>& results, const std::string& why) {
  const int64_t now = wall_now_ns();
  auto txn = store_.begin();
  Result<Ok> done = txn ? Result<Ok>(Ok{}) : Result<Ok>(txn.error());
  for (GrantResult& r : results) {
    if (!done) break;
    if (r.status == GrantStatus::created) {
      auto e = store_.end_grant(r.grant.id, "failed", now, "", why);
      if (!e) done = e.error();
      r.grant.state = "failed";
      r.grant.ended_ns = now;
      r.grant.failure = why;
    } else if (r.status == GrantStatus::extended) {
      const Active* a = find_active(r.grant.source, r.grant.profile);
      if (a != nullptr) {
        auto u = store_.set_grant_expires(r.grant.id, a->row.expires_ns);
        if (!u) done = u.error();
        r.grant.expires_ns = a->row.expires_ns;
      }
    } else {
      continue;
    }
    if (!done) break;
    auto au = store_.append_audit(now, audit_kind::grant_failed, r.grant.origin, r.grant.source,
                                  describe_grant(r.grant) + ": " + why);
    if (!au) done = au.error();
  }
  if (done) done = audits_.commit(*txn);
  if (!done) kg::log::error("recording the failed grant(s): " + done.error().message);
  for (GrantResult& r : results) {
    if (r.status == GrantStatus::created) {
      // Releases verdictd's hold on the source's pending SYNs.
      if (observer_ != nullptr) {
        observer_->grant_changed(ipc::GrantOp::remove, record_of(r.grant), "failed: " + why);
      }
      feed("failed", r.grant, 0, why);
    }
    if (r.status == GrantStatus::created || r.status == GrantStatus::extended) {
      r.status = GrantStatus::failed;
    }
  }
}

void GrantBook::apply(std::vector<GrantResult>& results) {
  std::vector<GrantInstall> batch;
  for (const GrantResult& r : results) {
    if (r.status == GrantStatus::created || r.status == GrantStatus::extended) {
      batch.push_back(install_of(r.grant));
    }
  }
  if (batch.empty()) return;
  Result<Ok> installed = installer_ != nullptr ? installer_->add(batch) : Result<Ok>(Ok{});
  if (!installed) {
    kg::log::error("kernel refused " + std::to_string(batch.size()) +
                   " grant(s): " + installed.error().message);
    record_install_failure(results, installed.error().message);
    return;
  }
  for (const GrantResult& r : results) {
    if (r.status == GrantStatus::created) {
      remember_grant(r.grant);
      if (observer_ != nullptr) observer_->grant_changed(ipc::GrantOp::add, record_of(r.grant), "");
      feed("grant", r.grant, 0, "");
    } else if (r.status == GrantStatus::extended) {
      remember_grant(r.grant);
      if (observer_ != nullptr) {
        observer_->grant_changed(ipc::GrantOp::extend, record_of(r.grant), "");
      }
      feed("extend", r.grant, 0, "");
    }
  }
  arm_grant_timer();
}

Result<GrantResult> GrantBook::grant(const IpAddr& source, std::string_view profile,
                                     ipc::GrantMethod method, std::string_view origin,
                                     std::optional<std::chrono::seconds> duration) {
  auto many = grant_many(std::span<const IpAddr>(&source, 1), profile, method, origin, duration);
  if (!many) return many.error();
  return std::move(many->front());
}

Result<std::vector<GrantResult>> GrantBook::grant_many(
    std::span<const IpAddr> sources, std::string_view profile_name, ipc::GrantMethod method,
    std::string_view origin, std::optional<std::chrono::seconds> duration) {
  const GrantProfile* profile = find_profile(profile_name);
  if (profile == nullptr) return Error{"no profile named " + std::string(profile_name)};
  for (const IpAddr& s : sources) {
    if (s.empty()) return Error{"a grant needs a source address"};
  }
  const int64_t now = wall_now_ns();
  std::vector<GrantResult> results;
  results.reserve(sources.size());
  std::set<IpAddr> seen;
  auto txn = store_.begin();
  if (!txn) return txn.error();
  for (const IpAddr& s : sources) {
    if (!seen.insert(s).second) continue;  // once per source and batch
    auto r = stage(s, *profile, method, origin, duration, now);
    if (!r) return r.error();
    results.push_back(std::move(*r));
  }
  auto c = audits_.commit(*txn);
  if (!c) return c.error();
  apply(results);
  return results;
}

Result<std::optional<GrantResult>> GrantBook::extend(int64_t id,
                                                     std::optional<std::chrono::seconds> duration,
                                                     std::string_view by) {
  auto it = active_.find(id);
  if (it == active_.end()) return std::optional<GrantResult>{};
  const GrantRow row = it->second.row;
  const GrantProfile* profile = find_profile(row.profile);
  if (profile == nullptr) return Error{"grant " + std::to_string(id) + "'s profile is gone"};
  const int64_t now = wall_now_ns();
  std::chrono::seconds lifetime =
      std::min(duration.value_or(profile->lifetime), profile->max_lifetime);
  GrantResult result;
  result.grant = row;
  const int64_t wanted = std::min(now + seconds_ns(lifetime), row.max_expires_ns);
  if (wanted <= row.expires_ns) {
    result.status = GrantStatus::unchanged;
    return std::optional<GrantResult>(std::move(result));
  }
  auto txn = store_.begin();
  if (!txn) return txn.error();
  auto u = store_.set_grant_expires(id, wanted);
  if (!u) return u.error();
  result.grant.expires_ns = wanted;
  result.status = GrantStatus::extended;
  auto au = store_.append_audit(now, audit_kind::grant_extend, "", row.source,
                                describe_grant(result.grant) + " by " + std::string(by));
  if (!au) return au.error();
  auto c = audits_.commit(*txn);
  if (!c) return c.error();
  std::vector<GrantResult> results{std::move(result)};
  apply(results);
  return std::optional<GrantResult>(std::move(results.front()));
}

Result<std::vector<GrantRow>> GrantBook::end_grants(std::vector<int64_t> ids,
                                                    std::string_view state, std::string_view audit,
                                                    std::string_view by, std::string_view reason) {
  std::vector<GrantRow> ended;
  const int64_t now = wall_now_ns();
  for (int64_t id : ids) {
    auto it = active_.find(id);
    if (it == active_.end()) continue;
    GrantRow row = it->second.row;
    row.state = std::string(state);
    row.ended_ns = now;
    row.ended_by = std::string(by);
    ended.push_back(std::move(row));
  }
  if (ended.empty()) return ended;
  // A revocation is written to its preallocated journal slot first (no new disk space
  // needed): a restart before the database has it must not bring the grant back.
  std::vector<std::optional<size_t>> slots = state == "revoked"
                                                 ? write_tombstones(ended)
                                                 : std::vector<std::optional<size_t>>(ended.size());

  std::vector<GrantInstall> batch;
  batch.reserve(ended.size());
  for (const GrantRow& row : ended) batch.push_back(install_of(row));
  if (installer_ != nullptr) {
    auto removed = installer_->remove(batch);
    if (!removed) {
      // The elements carry their own timeouts; a stale one dies with it at the latest,
      // and the next reconcile removes it.
      kg::log::warn("removing " + std::to_string(batch.size()) +
                    " grant(s) from the kernel: " + removed.error().message);
    }
  }
  const std::string kind = state == "expired" ? "expire" : state == "revoked" ? "revoke" : "end";
  std::vector<PendingEnd> ends;
  ends.reserve(ended.size());
  for (size_t i = 0; i < ended.size(); ++i) {
    const GrantRow& row = ended[i];
    const ipc::GrantRecord record = record_of(row);
    forget_grant(row.id);
    if (observer_ != nullptr) {
      observer_->grant_changed(ipc::GrantOp::remove, record, std::string(reason));
    }
    feed(kind, row, 0, reason);
    ends.push_back(
        {row, std::string(audit), describe_grant(row) + "; " + std::string(reason), slots[i]});
  }
  arm_grant_timer();
  // Only now the database: committed here if it can be, otherwise retried with back-off.
  queue_grant_ends(std::move(ends));
  return ended;
}

Result<std::vector<GrantRow>> GrantBook::revoke_id(int64_t id, std::string_view by) {
  if (active_.count(id) == 0) return std::vector<GrantRow>{};
  return end_grants({id}, "revoked", audit_kind::grant_revoke, by, "revoked by " + std::string(by));
}

Result<std::vector<GrantRow>> GrantBook::revoke_source(const IpAddr& source, std::string_view by) {
  std::vector<int64_t> ids;
  for (const auto& [id, a] : active_) {
    if (a.source == source) ids.push_back(id);
  }
  return end_grants(std::move(ids), "revoked", audit_kind::grant_revoke, by,
                    "revoked by " + std::string(by));
}

void GrantBook::set_profiles(std::vector<GrantProfile> profiles) {
  std::vector<GrantProfile> old = std::move(profiles_);
  profiles_ = std::move(profiles);
  std::vector<int64_t> gone;
  std::vector<int64_t> remarked;
  for (const auto& [id, a] : active_) {
    const GrantProfile* now = find_profile(a.row.profile);
    if (now == nullptr) {
      gone.push_back(id);
      continue;
    }
    for (const GrantProfile& before : old) {
      if (before.name == now->name &&
          (before.fwmark != now->fwmark || before.fwmark_mask != now->fwmark_mask)) {
        remarked.push_back(id);
      }
    }
  }
  if (!gone.empty()) {
    auto ended = end_grants(std::move(gone), "revoked", audit_kind::grant_revoke, "reload",
                            "profile removed");
    if (!ended) kg::log::error("revoking grants of removed profiles: " + ended.error().message);
  }
  // Subscribers must never mark with a stale value: the grant goes and comes back.
  for (int64_t id : remarked) {
    auto it = active_.find(id);
    if (it == active_.end() || observer_ == nullptr) continue;
    const ipc::GrantRecord record = record_of(it->second.row);
    observer_->grant_changed(ipc::GrantOp::remove, record, "profile changed");
    observer_->grant_changed(ipc::GrantOp::add, record, "");
  }
}

void GrantBook::arm_grant_timer() {
  if (by_expiry_.empty()) {
    expiry_timer_armed_ = false;
    expiry_timer_.cancel();
    return;
  }
  const int64_t first = by_expiry_.begin()->first;
  if (expiry_timer_armed_ && expiry_timer_at_ == first) return;
  expiry_timer_armed_ = true;
  expiry_timer_at_ = first;
  expiry_timer_.expires_at(steady_from_wall(first));
  std::weak_ptr<int> alive = alive_;
  expiry_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted || alive.expired()) return;
    expiry_timer_armed_ = false;
    on_grant_timer();
  });
}

void GrantBook::on_grant_timer() {
  const int64_t now = wall_now_ns();
  std::vector<int64_t> due;
  for (const auto& [expires, id] : by_expiry_) {
    if (expires > now) break;
    const int64_t late_us = (now - expires) / 1000;
    worst_expiry_late_us_ = std::max(worst_expiry_late_us_, late_us);
    last_expiry_late_us_ = late_us;
    due.push_back(id);
  }
  grants_expired_ += due.size();
  // Kernel, memory and broadcast act now; the database records it when it can.
  (void)end_grants(std::move(due), "expired", audit_kind::grant_expire, "", "expired");
  arm_grant_timer();
}

}  // namespace kg::policyd
