#include "ipc/backoff.h"

#include <algorithm>

#include "common/hash.h"
#include "ipc/internal.h"

namespace kg::ipc {

Backoff::Backoff(BackoffPolicy policy, uint64_t seed) : policy_(policy), rng_state_(seed) {
  if (rng_state_ == 0) rng_state_ = internal::random_u64();
  policy_.initial = std::max(policy_.initial, std::chrono::milliseconds(1));
  policy_.max = std::max(policy_.max, policy_.initial);
  policy_.jitter = std::clamp(policy_.jitter, 0.0, 1.0);
}

std::chrono::milliseconds Backoff::next() {
  // Doubling stops at the ceiling; the shift is capped so it cannot overflow.
  const auto initial = static_cast<uint64_t>(policy_.initial.count());
  const auto ceiling = static_cast<uint64_t>(policy_.max.count());
  uint64_t base = initial << std::min(attempt_, 30U);
  base = std::min(base, ceiling);
  if (attempt_ < 31) ++attempt_;

  rng_state_ += 0x9e3779b97f4a7c15ULL;                                           // splitmix64 step
  const double unit = static_cast<double>(mix64(rng_state_) >> 11) * 0x1.0p-53;  // [0, 1)
  const double shaved = static_cast<double>(base) * policy_.jitter * unit;
  const auto delay = static_cast<int64_t>(static_cast<double>(base) - shaved);
  return std::chrono::milliseconds(std::max<int64_t>(delay, 1));
}

}  // namespace kg::ipc
