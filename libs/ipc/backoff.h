// Reconnect delays: start small, double up to a ceiling, and shave a random part off
// each so that clients restarted together do not retry in lockstep.
#pragma once

#include <chrono>
#include <cstdint>

namespace kg::ipc {

struct BackoffPolicy {
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds max{5000};
  double jitter = 0.2;  // each delay is uniform in [base * (1 - jitter), base]
};

class Backoff {
 public:
  // seed 0 takes one from the kernel's random pool.
  explicit Backoff(BackoffPolicy policy, uint64_t seed = 0);

  // The delay before the next attempt; each call doubles the base up to the maximum.
  std::chrono::milliseconds next();
  // After a success: the next failure starts again from the initial delay.
  void reset() { attempt_ = 0; }
  unsigned attempts() const { return attempt_; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  uint64_t rng_state_;
  unsigned attempt_ = 0;
};

}  // namespace kg::ipc
