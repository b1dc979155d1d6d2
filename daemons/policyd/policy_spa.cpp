// policyd's side of SPA: the replay cache check, in the same transaction as the event's
// dedup row, so a packet is accepted once across restarts and crashes. The grant an
// accepted SPA event leads to commits in the same transaction, so one packet grants once.
#include "common/log.h"
#include "policyd/policy.h"

namespace kg::policyd {

namespace {

// Replay keys outlive every packet that could still pass captured's age check
// (MAX_SPA_PACKET_AGE is at most a day, both directions).
constexpr int64_t kReplayKeepNs = int64_t{2} * 86400 * 1'000'000'000;

}  // namespace

Result<KnockOutcome> PolicyCore::handle_spa(const KnockEventData& event,
                                            const GrantProfile* profile, Store::Transaction& txn,
                                            const std::string& source, int64_t now) {
  bool first_use = false;
  if (event.spa_replay_key) {
    auto fresh = store_->check_and_record_replay(*event.spa_replay_key, event.door, source, now);
    if (!fresh) return fresh.error();
    first_use = *fresh;
  }
  const std::string detail = "event " + std::to_string(event.event_id) + " " + event.spa_summary;
  const auto kind = first_use ? audit_kind::spa_accepted : audit_kind::spa_replayed;
  auto a = store_->append_audit(now, kind, event.door, source,
                                event.spa_replay_key ? detail : detail + " (no replay key)");
  if (!a) return a.error();
  if (first_use && ++events_since_prune_ % 1024 == 0) {
    auto pruned = store_->prune_spa_replay(now - kReplayKeepNs);
    if (!pruned) return pruned.error();
  }
  // The grant commits with the replay record: a packet grants once, and only once.
  std::vector<GrantResult> granted;
  if (first_use && profile != nullptr) {
    std::optional<std::chrono::seconds> duration;
    if (event.spa_timeout_s > 0) duration = std::chrono::seconds(event.spa_timeout_s);
    auto g =
        grants_.stage(event.source, *profile, ipc::GrantMethod::spa, event.door, duration, now);
    if (!g) return g.error();
    granted.push_back(std::move(*g));
  }
  auto c = audits_.commit(txn);
  if (!c) return c.error();
  if (first_use) {
    kg::log::info(source + ": " + event.door + ": SPA accepted (" + event.spa_summary + ")");
    grants_.apply(granted);
    return KnockOutcome::spa_accepted;
  }
  kg::log::warn(source + ": " + event.door +
                (event.spa_replay_key ? ": SPA packet refused: replayed (already used)"
                                      : ": SPA event without a replay key refused"));
  return KnockOutcome::spa_replayed;
}

}  // namespace kg::policyd
