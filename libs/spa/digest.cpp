#include "spa/digest.h"

#include <openssl/evp.h>

#include <stdexcept>
#include <string>

namespace kg::spa {

namespace {

const EVP_MD* md_of(DigestType t) {
  switch (t) {
    case DigestType::md5:
      return EVP_md5();
    case DigestType::sha1:
      return EVP_sha1();
    case DigestType::sha256:
      return EVP_sha256();
    case DigestType::sha384:
      return EVP_sha384();
    case DigestType::sha512:
      return EVP_sha512();
    case DigestType::sha3_256:
      return EVP_sha3_256();
    case DigestType::sha3_512:
      return EVP_sha3_512();
  }
  return EVP_sha256();
}

}  // namespace

Bytes digest(DigestType t, std::span<const uint8_t> data) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md_of(t), nullptr) != 1) {
    // Only a broken libcrypto gets here; there is no meaningful fallback.
    throw std::runtime_error("EVP_Digest failed");
  }
  out.resize(len);
  return out;
}

}  // namespace kg::spa
