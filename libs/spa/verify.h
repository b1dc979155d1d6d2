// The SPA verifier: one payload in, an accepted request or exactly one rejection reason
// out. The order is fixed and cheapest first (docs/spa.md, "Verification order"):
//   length, alphabet, '=', "U2FsdGVkX1" prefix → per stanza in file order (the first that
//   accepts wins): SOURCE, HMAC (constant time) before any decryption, decryption → fields
//   by message type → digest → age window (both directions) → message type → username →
//   allow address vs source → requested ports ⊆ OPEN_PORTS and the profile.
// As in fwknopd, a stanza that decrypts the packet but refuses it after decryption hands it
// to the next stanza (several stanzas may share one key pair with other usernames or
// ports); when none accepts, the refusal is that of the last stanza that decrypted it.
// The replay check is policyd's (it owns the persistent cache); `replay_key` is what it
// keys on: SHA-256 of the decoded ciphertext bytes, so re-encodings of the same packet
// ('=' appended, other unused base64 bits) share one key.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/addr.h"
#include "spa/cipher.h"
#include "spa/digest.h"
#include "spa/message.h"
#include "spa/reject.h"
#include "spa/stanza.h"

namespace kg::spa {

inline constexpr size_t kMinPacket = 96;
inline constexpr size_t kMaxPacket = 1500;
inline constexpr std::string_view kSaltedB64Prefix = "U2FsdGVkX1";

struct VerifyOptions {
  int64_t max_age_s = 120;
};

struct Accepted {
  size_t stanza = 0;
  Plaintext plaintext;
  AccessRequest access;
  IpAddr grant_address;  // the source, or the allow address when MATCH_SOURCE_ADDRESS = N
  std::array<uint8_t, 32> replay_key{};
  uint32_t timeout_s = 0;  // 0 = the profile's lifetime
  int64_t skew_s = 0;      // timestamp - now
};

struct Rejected {
  Reject reason = Reject::too_short;
  std::string detail;            // no key material, no plaintext beyond field names
  std::optional<size_t> stanza;  // set once a stanza has decrypted the packet
  int64_t skew_s = 0;            // for stale/future: timestamp - now
};

using Outcome = std::variant<Accepted, Rejected>;

// The cheap checks alone (length, alphabet, '=', prefix); nullopt when they pass.
std::optional<Reject> cheap_checks(std::string_view payload);

Outcome verify(std::string_view payload, const IpAddr& source, int64_t now_s,
               const std::vector<Stanza>& stanzas, const VerifyOptions& opt = {});

// The replay key of a payload's ciphertext part (for tests and tools).
std::array<uint8_t, 32> replay_key_of(std::span<const uint8_t> decoded_ciphertext);

}  // namespace kg::spa
