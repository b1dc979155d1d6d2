#include "spa/cipher.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "spa/digest.h"

namespace kg::spa {

namespace {

constexpr size_t kBlock = 16;

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

const EVP_CIPHER* cipher_of(EncryptionMode m) {
  switch (m) {
    case EncryptionMode::ecb:
      return EVP_aes_256_ecb();
    case EncryptionMode::cfb:
      return EVP_aes_256_cfb128();
    case EncryptionMode::ofb:
      return EVP_aes_256_ofb();
    case EncryptionMode::ctr:
      return EVP_aes_256_ctr();
    case EncryptionMode::cbc:
    case EncryptionMode::legacy:
      break;
  }
  return EVP_aes_256_cbc();
}

// One EVP pass with padding off: we pad and unpad ourselves, the same for all modes.
Bytes run_cipher(EncryptionMode mode, const KeyIv& kiv, std::span<const uint8_t> in,
                 bool encrypting) {
  std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter> ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_CipherInit_ex(ctx.get(), cipher_of(mode), nullptr, kiv.key.data(), kiv.iv.data(),
                                encrypting ? 1 : 0) != 1) {
    throw std::runtime_error("EVP cipher init failed");
  }
  EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
  Bytes out(in.size() + kBlock);
  int len = 0;
  int tail = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &tail) != 1) {
    throw std::runtime_error("EVP cipher failed");
  }
  out.resize(static_cast<size_t>(len + tail));
  return out;
}

}  // namespace

Bytes effective_password(EncryptionMode mode, std::span<const uint8_t> key) {
  Bytes pw(key.begin(), key.end());
  if (mode == EncryptionMode::legacy) pw.resize(16, '0');
  return pw;
}

KeyIv derive_key_iv(std::span<const uint8_t> password, std::span<const uint8_t, kSaltSize> salt) {
  // D1 = MD5(pw ‖ salt), Di = MD5(Di-1 ‖ pw ‖ salt): 48 bytes, key then IV.
  std::array<uint8_t, 48> material{};
  Bytes prev;
  size_t filled = 0;
  while (filled < material.size()) {
    Bytes input(prev.size() + password.size() + salt.size());
    if (!prev.empty()) std::memcpy(input.data(), prev.data(), prev.size());
    if (!password.empty())
      std::memcpy(input.data() + prev.size(), password.data(), password.size());
    std::memcpy(input.data() + prev.size() + password.size(), salt.data(), salt.size());
    prev = digest(DigestType::md5, input);
    OPENSSL_cleanse(input.data(), input.size());
    const size_t n = std::min(prev.size(), material.size() - filled);
    std::memcpy(material.data() + filled, prev.data(), n);
    filled += n;
  }
  KeyIv out;
  std::memcpy(out.key.data(), material.data(), 32);
  std::memcpy(out.iv.data(), material.data() + 32, 16);
  OPENSSL_cleanse(material.data(), material.size());
  OPENSSL_cleanse(prev.data(), prev.size());
  return out;
}

Bytes encrypt(EncryptionMode mode, std::span<const uint8_t> key, std::string_view plaintext,
              std::span<const uint8_t, kSaltSize> salt) {
  Bytes pw = effective_password(mode, key);
  KeyIv kiv = derive_key_iv(pw, salt);
  OPENSSL_cleanse(pw.data(), pw.size());
  const size_t pad = kBlock - plaintext.size() % kBlock;
  Bytes padded(plaintext.size() + pad, static_cast<uint8_t>(pad));
  if (!plaintext.empty()) std::memcpy(padded.data(), plaintext.data(), plaintext.size());
  Bytes ct = run_cipher(mode, kiv, padded, true);
  OPENSSL_cleanse(&kiv, sizeof kiv);
  // Sized once and filled with memcpy (GCC 12 -O3 misreads vector::insert here).
  Bytes out(kSaltedMagic.size() + kSaltSize + ct.size());
  std::memcpy(out.data(), kSaltedMagic.data(), kSaltedMagic.size());
  std::memcpy(out.data() + kSaltedMagic.size(), salt.data(), kSaltSize);
  std::memcpy(out.data() + kSaltedMagic.size() + kSaltSize, ct.data(), ct.size());
  return out;
}

Result<Bytes> decrypt(EncryptionMode mode, std::span<const uint8_t> key,
                      std::span<const uint8_t> blob) {
  constexpr size_t kHeader = kSaltedMagic.size() + kSaltSize;
  if (blob.size() < kHeader + kBlock ||
      std::memcmp(blob.data(), kSaltedMagic.data(), kSaltedMagic.size()) != 0) {
    return Error{"no salted header"};
  }
  const auto body = blob.subspan(kHeader);
  if (body.size() % kBlock != 0) return Error{"ciphertext is not a whole number of blocks"};
  Bytes pw = effective_password(mode, key);
  KeyIv kiv = derive_key_iv(pw, blob.subspan(kSaltedMagic.size()).first<kSaltSize>());
  OPENSSL_cleanse(pw.data(), pw.size());
  Bytes pt = run_cipher(mode, kiv, body, false);
  OPENSSL_cleanse(&kiv, sizeof kiv);
  const uint8_t pad = pt.back();
  bool pad_ok = pad >= 1 && pad <= kBlock;
  for (size_t i = 0; pad_ok && i < pad; ++i) pad_ok = pt[pt.size() - 1 - i] == pad;
  if (!pad_ok) {
    OPENSSL_cleanse(pt.data(), pt.size());
    return Error{"bad padding"};
  }
  pt.resize(pt.size() - pad);
  return pt;
}

}  // namespace kg::spa
