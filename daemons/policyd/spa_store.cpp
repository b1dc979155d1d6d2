// The SPA replay cache: one row per accepted SPA packet, keyed on SHA-256 of its decoded
// ciphertext (KnockEvent.spa.replay_key). Kept across restarts; see docs/spa.md.
#include "policyd/sqlite_store.h"

namespace kg::policyd {

Result<bool> SqliteStore::check_and_record_replay(std::span<const uint8_t, 32> replay_key,
                                                  std::string_view door, std::string_view source,
                                                  int64_t now_ns) {
  static const char* const kHex = "0123456789abcdef";
  std::string key;
  key.reserve(64);
  for (uint8_t b : replay_key) {
    key += kHex[b >> 4];
    key += kHex[b & 15];
  }
  insert_spa_replay_.bind(1, key).bind(2, now_ns).bind(3, door).bind(4, source);
  auto ok = insert_spa_replay_.run();
  if (!ok) return ok.error();
  return db_.changes() == 1;
}

Result<int64_t> SqliteStore::prune_spa_replay(int64_t older_than_ns) {
  prune_spa_replay_.bind(1, older_than_ns);
  auto ok = prune_spa_replay_.run();
  if (!ok) return ok.error();
  return db_.changes();
}

}  // namespace kg::policyd
