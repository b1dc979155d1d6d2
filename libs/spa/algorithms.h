// The algorithms an access stanza names (fwknop's digest types and encryption modes), their
// spellings and key limits. Names only: no crypto, so readers of access stanzas (the config
// library) do not link OpenSSL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

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

// `legacy` is CBC with fwknop < 2.5's key handling: the key right-padded with '0' to 16
// bytes, or cut to 16.
enum class EncryptionMode : uint8_t { cbc, ecb, cfb, ofb, ctr, legacy };

const char* encryption_mode_name(EncryptionMode m);                          // "CBC", ..., "legacy"
std::optional<EncryptionMode> parse_encryption_mode(std::string_view name);  // any case

inline constexpr size_t kMaxEncryptionKeyBytes = 32;
inline constexpr size_t kMaxHmacKeyBytes = 128;

}  // namespace kg::spa
