#include "spa/algorithms.h"

#include <string>

#include "common/text.h"

namespace kg::spa {

const char* digest_name(DigestType t) {
  switch (t) {
    case DigestType::md5:
      return "md5";
    case DigestType::sha1:
      return "sha1";
    case DigestType::sha256:
      return "sha256";
    case DigestType::sha384:
      return "sha384";
    case DigestType::sha512:
      return "sha512";
    case DigestType::sha3_256:
      return "sha3_256";
    case DigestType::sha3_512:
      return "sha3_512";
  }
  return "sha256";
}

std::optional<DigestType> parse_digest_name(std::string_view name) {
  std::string lower;
  for (char c : name) {
    const char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    lower += l == '-' ? '_' : l;
  }
  for (DigestType t : kAllDigestTypes) {
    if (lower == digest_name(t)) return t;
  }
  return std::nullopt;
}

size_t digest_size(DigestType t) {
  switch (t) {
    case DigestType::md5:
      return 16;
    case DigestType::sha1:
      return 20;
    case DigestType::sha256:
    case DigestType::sha3_256:
      return 32;
    case DigestType::sha384:
      return 48;
    case DigestType::sha512:
    case DigestType::sha3_512:
      return 64;
  }
  return 32;
}

const char* encryption_mode_name(EncryptionMode m) {
  switch (m) {
    case EncryptionMode::cbc:
      return "CBC";
    case EncryptionMode::ecb:
      return "ECB";
    case EncryptionMode::cfb:
      return "CFB";
    case EncryptionMode::ofb:
      return "OFB";
    case EncryptionMode::ctr:
      return "CTR";
    case EncryptionMode::legacy:
      return "legacy";
  }
  return "CBC";
}

std::optional<EncryptionMode> parse_encryption_mode(std::string_view name) {
  const std::string lower = to_lower(name);
  if (lower == "cbc") return EncryptionMode::cbc;
  if (lower == "ecb") return EncryptionMode::ecb;
  if (lower == "cfb") return EncryptionMode::cfb;
  if (lower == "ofb") return EncryptionMode::ofb;
  if (lower == "ctr") return EncryptionMode::ctr;
  if (lower == "legacy") return EncryptionMode::legacy;
  return std::nullopt;
}

}  // namespace kg::spa
