#include "spa/reject.h"

namespace kg::spa {

const char* reject_name(Reject r) {
  switch (r) {
    case Reject::too_short:
      return "too_short";
    case Reject::too_long:
      return "too_long";
    case Reject::truncated:
      return "truncated";
    case Reject::bad_alphabet:
      return "bad_alphabet";
    case Reject::padding:
      return "padding";
    case Reject::salted_prefix:
      return "salted_prefix";
    case Reject::bad_http:
      return "bad_http";
    case Reject::source_not_allowed:
      return "source_not_allowed";
    case Reject::bad_hmac:
      return "bad_hmac";
    case Reject::decrypt_failed:
      return "decrypt_failed";
    case Reject::bad_fields:
      return "bad_fields";
    case Reject::bad_digest:
      return "bad_digest";
    case Reject::stale:
      return "stale";
    case Reject::future:
      return "future";
    case Reject::bad_access:
      return "bad_access";
    case Reject::command_refused:
      return "command_refused";
    case Reject::nat_refused:
      return "nat_refused";
    case Reject::source_required:
      return "source_required";
    case Reject::source_mismatch:
      return "source_mismatch";
    case Reject::user_not_allowed:
      return "user_not_allowed";
    case Reject::port_not_allowed:
      return "port_not_allowed";
    case Reject::replayed:
      return "replayed";
  }
  return "unknown";
}

const char* reject_text(Reject r) {
  switch (r) {
    case Reject::too_short:
      return "payload too short for SPA";
    case Reject::too_long:
      return "payload too long for SPA";
    case Reject::truncated:
      return "payload truncated in capture";
    case Reject::bad_alphabet:
      return "payload is not base64 text";
    case Reject::padding:
      return "payload contains '=' (fwknop never sends padding)";
    case Reject::salted_prefix:
      return "payload starts with U2FsdGVkX1 (fwknop strips it)";
    case Reject::bad_http:
      return "not an SPA HTTP GET request";
    case Reject::source_not_allowed:
      return "no access stanza allows this source";
    case Reject::bad_hmac:
      return "HMAC does not match (wrong HMAC key or HMAC digest type?)";
    case Reject::decrypt_failed:
      return "cannot decrypt (wrong key or encryption mode?)";
    case Reject::bad_fields:
      return "decrypted message is malformed";
    case Reject::bad_digest:
      return "message digest does not match";
    case Reject::stale:
      return "timestamp too old (client clock behind, or replay)";
    case Reject::future:
      return "timestamp in the future (client clock ahead)";
    case Reject::bad_access:
      return "access request is malformed";
    case Reject::command_refused:
      return "command messages are not accepted";
    case Reject::nat_refused:
      return "NAT access messages are not accepted";
    case Reject::source_required:
      return "0.0.0.0 sent but REQUIRE_SOURCE_ADDRESS is set (use -a or -R)";
    case Reject::source_mismatch:
      return "allow address differs from the packet source";
    case Reject::user_not_allowed:
      return "username not allowed";
    case Reject::port_not_allowed:
      return "requested proto/port not allowed";
    case Reject::replayed:
      return "packet already used (replay)";
  }
  return "unknown";
}

}  // namespace kg::spa
