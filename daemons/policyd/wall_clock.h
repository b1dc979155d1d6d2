// The two clocks of policyd's timers: the database and the messages keep wall time
// (CLOCK_REALTIME, it must mean the same after a restart), the timers wait on the
// monotonic clock so wall-clock steps do not move them.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>

namespace kg::policyd {

inline int64_t wall_now_ns() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<int64_t>(ts.tv_nsec);
}

// The steady-clock instant at which the wall clock will read `wall_ns`.
inline std::chrono::steady_clock::time_point steady_from_wall(int64_t wall_ns) {
  const int64_t delta = wall_ns - wall_now_ns();
  return std::chrono::steady_clock::now() + std::chrono::nanoseconds(delta);
}

}  // namespace kg::policyd
