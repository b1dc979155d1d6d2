// HMAC (RFC 2104) over the transmitted ciphertext text, as fwknop computes it, through
// OpenSSL 3's EVP_MAC; comparison in constant time.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "spa/digest.h"

namespace kg::spa {

Bytes hmac(DigestType t, std::span<const uint8_t> key, std::string_view data);

// The HMAC as fwknop appends it: unpadded base64.
std::string hmac_b64(DigestType t, std::span<const uint8_t> key, std::string_view data);

// True when `expected_b64` is the HMAC of `data`. Runs in time independent of where the
// first difference lies (CRYPTO_memcmp over equal-length strings).
bool hmac_verify(DigestType t, std::span<const uint8_t> key, std::string_view data,
                 std::string_view expected_b64);

}  // namespace kg::spa
