// The SPA plaintext fields (fwknop's "encoded message") and their digest:
//   rand:b64(user):timestamp:version:type:b64(message)[:b64(nat)][:b64(server_auth)]
//   [:client_timeout]:b64(digest of everything before the last ':')
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/result.h"
#include "spa/digest.h"
#include "spa/stanza.h"

namespace kg::spa {

enum class MessageType : uint8_t {
  command = 0,
  access = 1,
  nat_access = 2,
  client_timeout_access = 3,
  client_timeout_nat_access = 4,
  local_nat_access = 5,
  client_timeout_local_nat_access = 6,
};

inline bool carries_nat(MessageType t) {
  return t == MessageType::nat_access || t == MessageType::client_timeout_nat_access ||
         t == MessageType::local_nat_access || t == MessageType::client_timeout_local_nat_access;
}
inline bool carries_timeout(MessageType t) {
  return t == MessageType::client_timeout_access || t == MessageType::client_timeout_nat_access ||
         t == MessageType::client_timeout_local_nat_access;
}

inline constexpr std::string_view kFwknopVersion = "3.0.0";  // what fwknop 2.6.10 sends
inline constexpr size_t kRandDigits = 16;
inline constexpr size_t kMaxUserB64 = 64;
inline constexpr size_t kMaxMessageB64 = 256;
inline constexpr size_t kMaxTimestampDigits = 12;
inline constexpr size_t kMaxVersion = 8;
inline constexpr uint32_t kMaxClientTimeout = 65536;

struct Plaintext {
  std::string rand;  // 16 decimal digits
  std::string user;  // decoded
  int64_t timestamp = 0;
  std::string version{kFwknopVersion};
  MessageType type = MessageType::access;
  std::string message;                     // decoded: "ADDR,proto/port[,...]"
  std::optional<std::string> nat_access;   // decoded: "host,port"
  std::optional<std::string> server_auth;  // decoded; parsed and ignored
  std::optional<uint32_t> client_timeout;
  DigestType digest_type = DigestType::sha256;
};

// True when `plaintext` looks like the output of a right key: 16 digits then ':'.
bool looks_decrypted(std::string_view plaintext);

// Fields only, without the digest: what the digest is computed over.
std::string encode_fields(const Plaintext& p);
// Fields, ':', digest.
std::string encode_plaintext(const Plaintext& p);

enum class PlaintextError : uint8_t { fields, digest };
struct PlaintextProblem {
  PlaintextError kind = PlaintextError::fields;
  std::string detail;
};

// Parses and checks the fields and the digest. The digest type follows from its length
// (for 43 and 86 characters SHA-2 is tried before SHA-3).
std::variant<Plaintext, PlaintextProblem> parse_plaintext(std::string_view text);

}  // namespace kg::spa
