#include "spa/encode.h"

#include <openssl/rand.h>

#include <stdexcept>

#include "spa/hmac.h"
#include "spa/verify.h"

namespace kg::spa {

Bytes random_bytes(size_t n) {
  Bytes out(n);
  if (n != 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return out;
}

std::string random_digits(size_t n) {
  std::string out;
  while (out.size() < n) {
    for (uint8_t b : random_bytes(n)) {
      if (b < 250 && out.size() < n) out += static_cast<char>('0' + b % 10);  // no bias
    }
  }
  return out;
}

std::string encode_packet(Plaintext p, const EncodeKeys& keys,
                          std::optional<std::array<uint8_t, kSaltSize>> salt) {
  if (p.rand.empty()) p.rand = random_digits(kRandDigits);
  std::array<uint8_t, kSaltSize> s{};
  if (salt) {
    s = *salt;
  } else {
    const Bytes r = random_bytes(kSaltSize);
    std::copy(r.begin(), r.end(), s.begin());
  }
  const Bytes blob = encrypt(keys.mode, keys.key, encode_plaintext(p), s);
  std::string text = b64_encode(blob);  // starts with U2FsdGVkX1
  std::string out = text.substr(kSaltedB64Prefix.size());
  if (keys.hmac_key) out += hmac_b64(keys.hmac_type, *keys.hmac_key, text);
  return out;
}

GeneratedKeys generate_keys(DigestType hmac_type) {
  const size_t hmac_len =
      (hmac_type == DigestType::sha512 || hmac_type == DigestType::sha3_512) ? 128 : 64;
  auto padded = [](const Bytes& b) {
    std::string s = b64_encode(b);
    while (s.size() % 4 != 0) s += '=';
    return s;
  };
  return {padded(random_bytes(32)), padded(random_bytes(hmac_len))};
}

}  // namespace kg::spa
