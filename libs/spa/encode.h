// The sending side (knockgate-knock): builds the packet fwknop's client would send.
#pragma once

#include <optional>
#include <string>

#include "spa/cipher.h"
#include "spa/message.h"

namespace kg::spa {

struct EncodeKeys {
  Bytes key;  // 1-32 bytes
  EncryptionMode mode = EncryptionMode::cbc;
  std::optional<Bytes> hmac_key;
  DigestType hmac_type = DigestType::sha256;
};

// `salt` absent: 8 random bytes. The plaintext's rand field is filled with 16 random
// digits when empty.
std::string encode_packet(Plaintext p, const EncodeKeys& keys,
                          std::optional<std::array<uint8_t, kSaltSize>> salt = std::nullopt);

std::string random_digits(size_t n);
Bytes random_bytes(size_t n);

// fwknop --key-gen: a 32-byte encryption key and an HMAC key (64 bytes, 128 for SHA-512
// and SHA3-512), both base64 with padding, as fwknop prints them.
struct GeneratedKeys {
  std::string key_b64;
  std::string hmac_key_b64;
};
GeneratedKeys generate_keys(DigestType hmac_type);

}  // namespace kg::spa
