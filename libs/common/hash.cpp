#include "common/hash.h"

#include <sys/random.h>

namespace kg {

uint64_t process_hash_key() {
  static const uint64_t key = [] {
    uint64_t k = 0x9e3779b97f4a7c15ULL;
    // getrandom() on a 64-bit read never returns short once the pool is initialised.
    if (getrandom(&k, sizeof k, 0) != static_cast<ssize_t>(sizeof k)) k ^= 0x5bd1e995ULL;
    return k;
  }();
  return key;
}

}  // namespace kg
