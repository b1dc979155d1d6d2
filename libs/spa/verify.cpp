#include "spa/verify.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

#include "spa/hmac.h"

namespace kg::spa {

namespace {

Rejected reject(Reject r, std::string detail = {}) {
  return Rejected{r, std::move(detail), std::nullopt, 0};
}

bool source_allowed(const Stanza& s, const IpAddr& src) {
  if (s.sources.empty()) return true;
  return std::any_of(s.sources.begin(), s.sources.end(),
                     [&](const IpPrefix& p) { return p.contains(src); });
}

bool contains(const std::vector<ProtoPort>& list, const ProtoPort& p) {
  return std::find(list.begin(), list.end(), p) != list.end();
}

// Steps after a stanza has decrypted the packet.
Outcome check_plaintext(size_t index, const Stanza& s, std::string_view text, const Bytes& blob,
                        const IpAddr& source, int64_t now_s, const VerifyOptions& opt) {
  auto fail = [&](Reject r, std::string detail, int64_t skew = 0) -> Outcome {
    return Rejected{r, std::move(detail), index, skew};
  };
  auto parsed = parse_plaintext(text);
  if (auto* problem = std::get_if<PlaintextProblem>(&parsed)) {
    return fail(problem->kind == PlaintextError::digest ? Reject::bad_digest : Reject::bad_fields,
                problem->detail);
  }
  Plaintext& p = std::get<Plaintext>(parsed);
  const int64_t skew = p.timestamp - now_s;
  if (-skew > opt.max_age_s) {
    return fail(Reject::stale, "timestamp " + std::to_string(-skew) + " s old", skew);
  }
  if (skew > opt.max_age_s) {
    return fail(Reject::future, "timestamp " + std::to_string(skew) + " s ahead", skew);
  }
  if (p.type == MessageType::command) return fail(Reject::command_refused, "");
  if (carries_nat(p.type)) return fail(Reject::nat_refused, "");

  auto access = parse_access(p.message);
  if (!access) return fail(Reject::bad_access, access.error().message);
  if (!s.usernames.empty() &&
      std::find(s.usernames.begin(), s.usernames.end(), p.user) == s.usernames.end()) {
    return fail(Reject::user_not_allowed, "user \"" + p.user + "\"");
  }
  IpAddr grant = source;
  if (access->use_source) {
    if (s.require_source_address) return fail(Reject::source_required, "");
  } else if (access->allow_ip != source) {
    if (s.match_source_address) {
      return fail(Reject::source_mismatch, "allow address " + access->allow_ip.str());
    }
    grant = access->allow_ip;
  }
  for (const auto& pp : access->ports) {
    if (contains(s.restrict_ports, pp) || (!s.open_ports.empty() && !contains(s.open_ports, pp)) ||
        (s.profile_ports && !contains(*s.profile_ports, pp))) {
      return fail(Reject::port_not_allowed, proto_port_str(pp));
    }
  }

  Accepted a;
  a.stanza = index;
  a.grant_address = grant;
  a.replay_key = replay_key_of(blob);
  a.skew_s = skew;
  if (p.client_timeout) {
    a.timeout_s = std::min(*p.client_timeout, s.max_fw_timeout);
  } else {
    a.timeout_s = s.fw_access_timeout;
  }
  a.access = std::move(*access);
  a.plaintext = std::move(p);
  return a;
}

}  // namespace

std::array<uint8_t, 32> replay_key_of(std::span<const uint8_t> decoded_ciphertext) {
  const Bytes d = digest(DigestType::sha256, decoded_ciphertext);
  std::array<uint8_t, 32> out{};
  std::memcpy(out.data(), d.data(), out.size());
  return out;
}

std::optional<Reject> cheap_checks(std::string_view payload) {
  if (payload.size() < kMinPacket) return Reject::too_short;
  if (payload.size() > kMaxPacket) return Reject::too_long;
  if (payload.find('=') != std::string_view::npos) return Reject::padding;
  if (!is_b64_alphabet(payload)) return Reject::bad_alphabet;
  if (payload.substr(0, kSaltedB64Prefix.size()) == kSaltedB64Prefix) return Reject::salted_prefix;
  return std::nullopt;
}

Outcome verify(std::string_view payload, const IpAddr& source, int64_t now_s,
               const std::vector<Stanza>& stanzas, const VerifyOptions& opt) {
  if (auto r = cheap_checks(payload)) return reject(*r);

  bool any_source = false;
  bool hmac_passed = false;
  bool hmac_tried = false;
  bool plain_tried = false;  // a stanza without HMAC tried to decrypt it
  std::optional<Rejected> last_refusal;  // of the last stanza that decrypted the packet
  std::string with_prefix;
  for (size_t i = 0; i < stanzas.size(); ++i) {
    const Stanza& s = stanzas[i];
    if (!source_allowed(s, source)) continue;
    any_source = true;
    std::string_view ct_text = payload;
    if (s.hmac_key) {
      hmac_tried = true;
      const size_t mac_len = digest_b64_size(s.hmac_type);
      if (payload.size() <= mac_len + kMinPacket / 2) continue;
      ct_text = payload.substr(0, payload.size() - mac_len);
      with_prefix.assign(kSaltedB64Prefix);
      with_prefix.append(ct_text);
      if (!hmac_verify(s.hmac_type, *s.hmac_key, with_prefix, payload.substr(ct_text.size()))) {
        continue;
      }
      hmac_passed = true;
    } else {
      plain_tried = true;
      with_prefix.assign(kSaltedB64Prefix);
      with_prefix.append(ct_text);
    }
    auto blob = b64_decode(with_prefix);
    if (!blob) continue;
    auto plain = decrypt(s.mode, s.key, *blob);
    if (!plain) continue;
    const std::string_view text(reinterpret_cast<const char*>(plain->data()), plain->size());
    if (!looks_decrypted(text)) {
      OPENSSL_cleanse(plain->data(), plain->size());
      continue;
    }
    auto out = check_plaintext(i, s, text, *blob, source, now_s, opt);
    OPENSSL_cleanse(plain->data(), plain->size());
    if (std::holds_alternative<Accepted>(out)) return out;
    last_refusal = std::get<Rejected>(std::move(out));
  }
  if (last_refusal) return *std::move(last_refusal);
  if (!any_source) return reject(Reject::source_not_allowed);
  // The most telling reason: a matching HMAC or a stanza without HMAC means the packet
  // reached decryption; otherwise only HMACs were checked.
  if (hmac_passed) return reject(Reject::decrypt_failed, "HMAC matched, key did not");
  if (hmac_tried) {
    return reject(Reject::bad_hmac,
                  plain_tried ? "and no key of a stanza without HMAC decrypted it" : "");
  }
  return reject(Reject::decrypt_failed);
}

}  // namespace kg::spa
