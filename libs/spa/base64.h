// Base64 as fwknop uses it: the standard alphabet, every trailing '=' removed on output;
// input may come with or without padding.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kg::spa {

using Bytes = std::vector<uint8_t>;

// Standard base64 without '=' padding.
std::string b64_encode(std::span<const uint8_t> data);
inline std::string b64_encode(std::string_view text) {
  return b64_encode(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// Decodes standard base64 with or without trailing '=' (at most two). nullopt for any
// other character or an impossible length (4n+1).
std::optional<Bytes> b64_decode(std::string_view text);

// True when every character is in [A-Za-z0-9+/].
bool is_b64_alphabet(std::string_view text);

}  // namespace kg::spa
