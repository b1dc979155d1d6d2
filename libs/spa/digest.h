// fwknop's digest types: the message digest inside the plaintext and the HMAC algorithm.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "spa/base64.h"

namespace kg::spa {

enum class DigestType : uint8_t { md5, sha1, sha256, sha384, sha512, sha3_256, sha3_512 };

inline constexpr DigestType kAllDigestTypes[] = {
    DigestType::md5,    DigestType::sha1,     DigestType::sha256,  DigestType::sha384,
    DigestType::sha512, DigestType::sha3_256, DigestType::sha3_512};

// fwknop's spelling: "md5", "sha1", "sha256", "sha384", "sha512", "sha3_256", "sha3_512".
const char* digest_name(DigestType t);
// Case-insensitive; also accepts "sha3-256"/"sha3-512".
std::optional<DigestType> parse_digest_name(std::string_view name);

size_t digest_size(DigestType t);  // bytes
// Length of the digest as unpadded base64 (22, 27, 43, 64, 86).
inline size_t digest_b64_size(DigestType t) {
  return (digest_size(t) * 4 + 2) / 3;
}

Bytes digest(DigestType t, std::span<const uint8_t> data);
inline Bytes digest(DigestType t, std::string_view text) {
  return digest(t, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

}  // namespace kg::spa
