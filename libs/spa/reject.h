// Why an SPA packet was refused. Every refusal has exactly one reason; the names are what
// logs, counters (captured status) and docs/spa.md use.
#pragma once

#include <cstdint>
#include <string_view>

namespace kg::spa {

enum class Reject : uint8_t {
  too_short,           // payload shorter than kMinPacket
  too_long,            // payload longer than kMaxPacket
  truncated,           // the capture or the IP headers cut the payload
  bad_alphabet,        // a byte outside [A-Za-z0-9+/]
  padding,             // '=' in the payload (fwknopd's replay gap: refused outright)
  salted_prefix,       // starts with "U2FsdGVkX1", which fwknop never transmits
  bad_http,            // -P http: not a "GET /<packet>" request
  source_not_allowed,  // no access stanza's SOURCE covers the packet source
  bad_hmac,            // HMAC missing or wrong for every candidate stanza
  decrypt_failed,      // no stanza's key decrypts it (wrong key or garbage)
  bad_fields,          // decrypted, but the fields are malformed
  bad_digest,          // the inner digest does not match
  stale,               // timestamp older than the age window
  future,              // timestamp ahead of the age window
  bad_access,          // the access message does not parse ("ADDR,proto/port")
  command_refused,     // message type 0 (command): knockgate runs no remote commands
  nat_refused,         // NAT message types: not supported
  source_required,     // 0.0.0.0 / :: sent but REQUIRE_SOURCE_ADDRESS is set
  source_mismatch,     // the allow address differs from the packet source
  user_not_allowed,    // REQUIRE_USERNAME does not list the sender's user
  port_not_allowed,    // a requested proto/port is not in OPEN_PORTS / the profile, or restricted
  replayed,            // policyd has seen these bytes before (decided in policyd)
};

inline constexpr Reject kAllRejects[] = {Reject::too_short,
                                         Reject::too_long,
                                         Reject::truncated,
                                         Reject::bad_alphabet,
                                         Reject::padding,
                                         Reject::salted_prefix,
                                         Reject::bad_http,
                                         Reject::source_not_allowed,
                                         Reject::bad_hmac,
                                         Reject::decrypt_failed,
                                         Reject::bad_fields,
                                         Reject::bad_digest,
                                         Reject::stale,
                                         Reject::future,
                                         Reject::bad_access,
                                         Reject::command_refused,
                                         Reject::nat_refused,
                                         Reject::source_required,
                                         Reject::source_mismatch,
                                         Reject::user_not_allowed,
                                         Reject::port_not_allowed,
                                         Reject::replayed};

inline constexpr size_t kRejectCount = sizeof(kAllRejects) / sizeof(kAllRejects[0]);

// "bad_hmac" etc.
const char* reject_name(Reject r);
// One sentence for an operator, e.g. "HMAC does not match (wrong HMAC key or type?)".
const char* reject_text(Reject r);

}  // namespace kg::spa
