// fwknop's digests (the message digest inside the plaintext, the HMAC's hash) through
// OpenSSL EVP; their names are in spa/algorithms.h.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "spa/algorithms.h"
#include "spa/base64.h"

namespace kg::spa {

Bytes digest(DigestType t, std::span<const uint8_t> data);
inline Bytes digest(DigestType t, std::string_view text) {
  return digest(t, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

}  // namespace kg::spa
