#include "ipc/internal.h"

#include <sys/random.h>
#include <time.h>

#include "common/hash.h"

namespace kg::ipc::internal {

uint64_t random_u64() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
    // No entropy source is a broken system; still avoid handing out a constant.
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    v = mix64(static_cast<uint64_t>(now.tv_nsec) ^ process_hash_key() ^
              (static_cast<uint64_t>(now.tv_sec) << 32));
  }
  return v == 0 ? 1 : v;
}

const char* software_version() {
  return KG_SOFTWARE_VERSION;
}

}  // namespace kg::ipc::internal
