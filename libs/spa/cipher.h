// fwknop's Rijndael layer: OpenSSL-style salted key derivation (EVP_BytesToKey with MD5,
// one round) and AES-256 through OpenSSL EVP. The plaintext is PKCS#7-padded in every
// mode, as fwknop does.
#pragma once

#include <array>
#include <optional>
#include <span>
#include <string_view>

#include "common/result.h"
#include "spa/algorithms.h"
#include "spa/base64.h"

namespace kg::spa {

inline constexpr size_t kSaltSize = 8;
inline constexpr std::string_view kSaltedMagic = "Salted__";

struct KeyIv {
  std::array<uint8_t, 32> key{};
  std::array<uint8_t, 16> iv{};
};

// The password as the KDF sees it (legacy padding applied).
Bytes effective_password(EncryptionMode mode, std::span<const uint8_t> key);

KeyIv derive_key_iv(std::span<const uint8_t> password, std::span<const uint8_t, kSaltSize> salt);

// "Salted__" ‖ salt ‖ AES-256-<mode>(PKCS#7(plaintext)).
Bytes encrypt(EncryptionMode mode, std::span<const uint8_t> key, std::string_view plaintext,
              std::span<const uint8_t, kSaltSize> salt);

// The inverse; Error when the blob has no "Salted__" header, a bad length or bad padding.
// Success says nothing about the key being right: the caller checks the plaintext.
Result<Bytes> decrypt(EncryptionMode mode, std::span<const uint8_t> key,
                      std::span<const uint8_t> blob);

}  // namespace kg::spa
