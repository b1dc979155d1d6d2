// A keyed 64-bit hash for tables whose keys an attacker chooses (spoofed source
// addresses). The key is random per process, so collisions cannot be planned offline.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/addr.h"

namespace kg {

inline uint64_t mix64(uint64_t x) {
  // Stafford's variant 13 of the splitmix64 finaliser: full avalanche, 2 multiplies.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Reads a 64-bit key from the kernel's random pool once per process.
uint64_t process_hash_key();

inline uint64_t hash_addr(const IpAddr& a, uint64_t key) {
  uint64_t lo = 0;
  uint64_t hi = 0;
  std::memcpy(&lo, a.data(), 8);
  std::memcpy(&hi, a.data() + 8, 8);
  uint64_t h = mix64(lo ^ key);
  h = mix64(h ^ hi ^ (static_cast<uint64_t>(a.family()) << 56));
  return h;
}

}  // namespace kg
