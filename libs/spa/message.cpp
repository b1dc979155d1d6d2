#include "spa/message.h"

#include <openssl/crypto.h>

#include <charconv>
#include <vector>

#include "common/text.h"

namespace kg::spa {

namespace {

bool printable(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::optional<std::string> decode_text(std::string_view b64) {
  auto bytes = b64_decode(b64);
  if (!bytes) return std::nullopt;
  std::string s(bytes->begin(), bytes->end());
  if (!printable(s)) return std::nullopt;
  return s;
}

PlaintextProblem fields_problem(std::string detail) {
  return PlaintextProblem{PlaintextError::fields, std::move(detail)};
}

}  // namespace

bool looks_decrypted(std::string_view plaintext) {
  if (plaintext.size() <= kRandDigits) return false;
  for (size_t i = 0; i < kRandDigits; ++i) {
    if (plaintext[i] < '0' || plaintext[i] > '9') return false;
  }
  return plaintext[kRandDigits] == ':';
}

std::string encode_fields(const Plaintext& p) {
  std::string out = p.rand;
  out += ':' + b64_encode(p.user);
  out += ':' + std::to_string(p.timestamp);
  out += ':' + p.version;
  out += ':' + std::to_string(static_cast<int>(p.type));
  out += ':' + b64_encode(p.message);
  if (p.nat_access) out += ':' + b64_encode(*p.nat_access);
  if (p.server_auth) out += ':' + b64_encode(*p.server_auth);
  if (p.client_timeout) out += ':' + std::to_string(*p.client_timeout);
  return out;
}

std::string encode_plaintext(const Plaintext& p) {
  const std::string fields = encode_fields(p);
  return fields + ':' + b64_encode(digest(p.digest_type, fields));
}

std::variant<Plaintext, PlaintextProblem> parse_plaintext(std::string_view text) {
  if (!printable(text)) return fields_problem("plaintext is not printable");
  std::vector<std::string_view> f;
  size_t start = 0;
  while (true) {
    const size_t colon = text.find(':', start);
    if (colon == std::string_view::npos) {
      f.push_back(text.substr(start));
      break;
    }
    f.push_back(text.substr(start, colon - start));
    start = colon + 1;
  }
  if (f.size() < 7) return fields_problem("fewer than 7 fields");

  Plaintext p;
  if (f[0].size() != kRandDigits || !all_digits(f[0])) {
    return fields_problem("random field is not 16 digits");
  }
  p.rand = std::string(f[0]);
  if (f[1].empty() || f[1].size() > kMaxUserB64) return fields_problem("bad username length");
  auto user = decode_text(f[1]);
  if (!user || !valid_username(*user)) return fields_problem("bad username");
  p.user = std::move(*user);
  if (f[2].size() > kMaxTimestampDigits || !all_digits(f[2])) {
    return fields_problem("bad timestamp");
  }
  std::from_chars(f[2].data(), f[2].data() + f[2].size(), p.timestamp);
  if (f[3].empty() || f[3].size() > kMaxVersion) return fields_problem("bad version");
  p.version = std::string(f[3]);
  if (f[4].size() != 1 || f[4][0] < '0' || f[4][0] > '6') {
    return fields_problem("unknown message type");
  }
  p.type = static_cast<MessageType>(f[4][0] - '0');
  if (f[5].empty() || f[5].size() > kMaxMessageB64) return fields_problem("bad message length");
  auto message = decode_text(f[5]);
  if (!message || message->empty()) return fields_problem("message is not base64 text");
  p.message = std::move(*message);

  // Fields between the message and the digest: [nat] [server_auth] [timeout].
  const std::string_view digest_text = f.back();
  std::vector<std::string_view> extra(f.begin() + 6, f.end() - 1);
  const size_t needed = (carries_nat(p.type) ? 1U : 0U) + (carries_timeout(p.type) ? 1U : 0U);
  if (extra.size() != needed && extra.size() != needed + 1) {
    return fields_problem("wrong number of fields for message type " +
                          std::to_string(static_cast<int>(p.type)));
  }
  size_t i = 0;
  if (carries_nat(p.type)) {
    auto nat = decode_text(extra[i++]);
    if (!nat || nat->empty()) return fields_problem("bad NAT access field");
    p.nat_access = std::move(*nat);
  }
  if (extra.size() == needed + 1) {
    auto auth = decode_text(extra[i++]);
    if (!auth) return fields_problem("bad server auth field");
    p.server_auth = std::move(*auth);
  }
  if (carries_timeout(p.type)) {
    const auto t = extra[i++];
    uint32_t v = 0;
    if (t.empty() || t.size() > 5 || !all_digits(t)) return fields_problem("bad client timeout");
    std::from_chars(t.data(), t.data() + t.size(), v);
    if (v > kMaxClientTimeout) return fields_problem("client timeout too large");
    p.client_timeout = v;
  }

  // The digest: its length names the type; check in constant time anyway.
  const std::string_view covered = text.substr(0, text.size() - digest_text.size() - 1);
  bool found_type = false;
  for (DigestType t : kAllDigestTypes) {
    if (digest_b64_size(t) != digest_text.size()) continue;
    found_type = true;
    const std::string mine = b64_encode(digest(t, covered));
    if (CRYPTO_memcmp(mine.data(), digest_text.data(), mine.size()) == 0) {
      p.digest_type = t;
      return p;
    }
  }
  return PlaintextProblem{PlaintextError::digest,
                          found_type ? "digest does not match" : "digest has an unknown length"};
}

}  // namespace kg::spa
