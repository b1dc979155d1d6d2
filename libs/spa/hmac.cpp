#include "spa/hmac.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <memory>
#include <stdexcept>

namespace kg::spa {

namespace {

struct MacDeleter {
  void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
};
struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};

// Fetched once: EVP_MAC_fetch is a provider lookup, too slow for every packet of a flood.
EVP_MAC* hmac_algorithm() {
  static const std::unique_ptr<EVP_MAC, MacDeleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) throw std::runtime_error("OpenSSL has no HMAC");
  return mac.get();
}

const char* ossl_digest_name(DigestType t) {
  switch (t) {
    case DigestType::md5:
      return "MD5";
    case DigestType::sha1:
      return "SHA1";
    case DigestType::sha256:
      return "SHA256";
    case DigestType::sha384:
      return "SHA384";
    case DigestType::sha512:
      return "SHA512";
    case DigestType::sha3_256:
      return "SHA3-256";
    case DigestType::sha3_512:
      return "SHA3-512";
  }
  return "SHA256";
}

}  // namespace

Bytes hmac(DigestType t, std::span<const uint8_t> key, std::string_view data) {
  std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(EVP_MAC_CTX_new(hmac_algorithm()));
  if (!ctx) throw std::runtime_error("EVP_MAC_CTX_new failed");
  char* name = const_cast<char*>(ossl_digest_name(t));
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, name, 0),
                               OSSL_PARAM_construct_end()};
  // A zero-length key is legal HMAC; OpenSSL wants a non-null pointer for it.
  static const uint8_t kEmpty = 0;
  const uint8_t* k = key.empty() ? &kEmpty : key.data();
  if (EVP_MAC_init(ctx.get(), k, key.size(), params) != 1 ||
      EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) !=
          1) {
    throw std::runtime_error("HMAC computation failed");
  }
  Bytes out(EVP_MAX_MD_SIZE);
  size_t len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1) {
    throw std::runtime_error("HMAC computation failed");
  }
  out.resize(len);
  return out;
}

std::string hmac_b64(DigestType t, std::span<const uint8_t> key, std::string_view data) {
  return b64_encode(hmac(t, key, data));
}

bool hmac_verify(DigestType t, std::span<const uint8_t> key, std::string_view data,
                 std::string_view expected_b64) {
  const std::string mine = hmac_b64(t, key, data);
  // The length is public (it follows from the configured type); only the bytes are secret.
  if (mine.size() != expected_b64.size()) return false;
  return CRYPTO_memcmp(mine.data(), expected_b64.data(), mine.size()) == 0;
}

}  // namespace kg::spa
