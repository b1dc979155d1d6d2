// Fuzzes the SPA parser and decoder (libs/spa). The first byte picks the entry point so
// the fuzzer reaches past the HMAC and the cipher:
//   0: the bytes as a received packet, verified against three stanzas (HMAC, legacy
//      without HMAC, CTR); 1: the bytes as a plaintext, encrypted under the legacy
//      stanza's key and then verified (reaches field parsing, digest, age, access rules);
//   2: parse_plaintext / parse_access directly; 3: an HTTP request, unwrapped and verified.
// Invariants: no crash or sanitizer report; an accepted packet names a stanza that exists;
// verification is deterministic (same outcome and replay key twice).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "spa/access.h"
#include "spa/base64.h"
#include "spa/encode.h"
#include "spa/transport.h"
#include "spa/verify.h"

namespace {

using namespace kg::spa;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

Bytes bytes_of(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

const std::vector<Stanza>& stanzas() {
  static const std::vector<Stanza> s = [] {
    std::vector<Stanza> v(3);
    v[0].key = *b64_decode("pwczPhemmcJqsBpRrPjZWsiXfxFUY4GXO0Z8D/QEV/A=");
    v[0].hmac_key = *b64_decode(
        "QgPNwQ5XkZ5T7hfJx2Hl2NMODfopUJE9W/1n9VEfMS2v4xAdBxZq1rk2dXibwbkspTWfHlOxwEhhI0T6mz94Mw==");
    v[1].key = bytes_of("short");
    v[1].mode = EncryptionMode::legacy;
    v[1].usernames = {"carol", "alice"};
    v[1].profile_ports = std::vector<ProtoPort>{{6, 22}, {17, 53}};
    v[2].key = bytes_of("modekey");
    v[2].mode = EncryptionMode::ctr;
    v[2].hmac_key = bytes_of("modehmackey");
    v[2].hmac_type = DigestType::sha384;
    v[2].match_source_address = false;
    return v;
  }();
  return s;
}

const kg::IpAddr kSource = kg::IpAddr::v4(0x01020304);

void check(std::string_view payload, int64_t now) {
  const auto a = verify(payload, kSource, now, stanzas());
  const auto b = verify(payload, kSource, now, stanzas());
  if (a.index() != b.index()) fail("verify is not deterministic");
  if (const auto* acc = std::get_if<Accepted>(&a)) {
    if (acc->stanza >= stanzas().size()) fail("accepted by a stanza that does not exist");
    if (acc->replay_key != std::get<Accepted>(b).replay_key) fail("replay key changed");
    if (payload.find('=') != std::string_view::npos) fail("accepted a payload with '='");
  } else if (std::get<Rejected>(a).reason != std::get<Rejected>(b).reason) {
    fail("rejection reason is not deterministic");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 4096) return 0;
  const uint8_t mode = data[0] & 3;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode) {
    case 0:
      check(rest, 1795429819);
      break;
    case 1: {
      // Deterministic salt so a crash reproduces.
      const std::array<uint8_t, kSaltSize> salt{1, 2, 3, 4, 5, 6, 7, 8};
      const std::string full =
          b64_encode(encrypt(EncryptionMode::legacy, bytes_of("short"), rest, salt));
      if (full.size() > kSaltedB64Prefix.size())
        check(std::string_view(full).substr(10), 1795429867);
      break;
    }
    case 2: {
      auto p = parse_plaintext(rest);
      if (auto* ok = std::get_if<Plaintext>(&p)) {
        (void)parse_access(ok->message);
        // What we parsed re-encodes to a plaintext that parses again.
        if (!std::holds_alternative<Plaintext>(parse_plaintext(encode_plaintext(*ok)))) {
          fail("re-encoded plaintext does not parse");
        }
      }
      (void)parse_access(rest);
      (void)b64_decode(rest);
      break;
    }
    default: {
      auto inner = unwrap_http(rest);
      if (inner) check(*inner, 1795443694);
      break;
    }
  }
  return 0;
}
