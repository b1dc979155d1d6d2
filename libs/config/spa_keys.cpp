// The handlers of [spa NAME] keys and access stanza keys (fwknopd's access.conf keys,
// written inline or read from an AccessFile). The keys themselves are in the one key
// table (keys.cpp).
#include <algorithm>
#include <charconv>

#include "config/parser.h"
#include "config/values.h"
#include "spa/stanza.h"
#include "spa/transport.h"

namespace kg::config::detail {

namespace {

// fwknopd's DEF_FW_ACCESS_TIMEOUT.
constexpr uint32_t kFwknopdAccessTimeout = 30;

// fwknopd keys knockgate refuses by name rather than as unknown.
constexpr std::string_view kUnsupportedFwknopdKeys[] = {"gpg_decrypt_id",
                                                        "gpg_decrypt_pw",
                                                        "gpg_home_dir",
                                                        "gpg_remote_id",
                                                        "gpg_allow_no_pw",
                                                        "gpg_require_sig",
                                                        "gpg_ignore_sig_verify_error",
                                                        "gpg_fingerprint_id",
                                                        "gpg_exe",
                                                        "enable_cmd_exec",
                                                        "enable_cmd_sudo_exec",
                                                        "cmd_exec_user",
                                                        "cmd_exec_group",
                                                        "cmd_sudo_exec_user",
                                                        "cmd_sudo_exec_group",
                                                        "cmd_cycle_open",
                                                        "cmd_cycle_close",
                                                        "cmd_cycle_timer",
                                                        "force_nat",
                                                        "force_snat",
                                                        "force_masquerade",
                                                        "forward_all",
                                                        "disable_dnat",
                                                        "destination",
                                                        "access_expire",
                                                        "gpg_disable_sig"};

bool unsupported_fwknopd_key(std::string_view key) {
  for (std::string_view k : kUnsupportedFwknopdKeys) {
    if (key == k) return true;
  }
  return false;
}

// fwknop writes Y/N; knockgate's own yes/no also works.
Result<bool> parse_yn(std::string_view v) {
  const auto l = to_lower(v);
  if (l == "y") return true;
  if (l == "n") return false;
  return parse_bool(v);
}

std::vector<std::string_view> split_list(std::string_view v) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    out.push_back(trim(v.substr(start, comma - start)));
    start = comma + 1;
  }
  return out;
}

// KEY is the text itself, KEY_BASE64 its base64; both must decode to 1..max bytes.
Result<spa::Bytes> key_bytes(const Directive& d, std::string_view base64_key, size_t max,
                             const char* too_long) {
  std::optional<spa::Bytes> k;
  if (d.key != base64_key) {
    k = spa::Bytes(d.value.begin(), d.value.end());
  } else {
    k = spa::b64_decode(d.value);
    if (!k) return Error{"not valid base64"};
  }
  if (k->empty() || k->size() > max) return Error{too_long};
  return std::move(*k);
}

}  // namespace

// Door keys first (not in an AccessFile), then SOURCE, which opens a stanza, then the
// keys of the open stanza.
void Parser::spa_directive(const Directive& d) {
  const KeyInfo* info = find_key(d.key, true);
  if (info != nullptr && info->section == Section::spa && !spa_.access_conf_only) {
    return (this->*(info->handler))(d);
  }
  if (info != nullptr && info->handler == &Parser::on_source) return on_source(d);
  const bool stanza_key = info != nullptr && info->section == Section::stanza;
  if (spa_.stanzas == nullptr) {
    if (stanza_key) return error(d.line, d.key, "access stanza keys must follow a SOURCE line");
    return error(d.line, d.key, "unknown key in an SPA door");
  }
  // In an access.conf a value ends at the first ';' (fwknopd's old `KEY: value;` form) and
  // run_access_conf cuts it there; inline, a ';' would silently become part of a key.
  if (!spa_.access_conf_only && d.value.find(';') != std::string_view::npos) {
    return error(d.line, d.key,
                 "';' ends a value in fwknopd's access.conf: write the value without it (an "
                 "AccessFile may use the old `KEY: value;` form)");
  }
  if (stanza_key) return (this->*(info->handler))(d);
  if (unsupported_fwknopd_key(d.key)) {
    return error(d.line, d.key, "fwknopd key not supported by knockgate (docs/spa.md)");
  }
  error(d.line, d.key, "unknown access stanza key");
}

// ---- [spa NAME] ----

void Parser::on_spa_port(const Directive& d) {
  auto v = parse_decimal(d.value, 1, 65535);
  if (!v) return error(d.line, d.key, v.error().message);
  spa_.door->port = static_cast<uint16_t>(*v);
}

void Parser::on_spa_proto(const Directive& d) {
  auto t = spa::parse_transport(d.value);
  if (!t) return error(d.line, d.key, "\"" + std::string(d.value) + "\" is not udp, tcp or http");
  spa_.door->transport = *t;
}

void Parser::on_spa_grant(const Directive& d) {
  if (!valid_profile_name(d.value)) {
    return error(d.line, d.key, "\"" + std::string(d.value) + "\" is not a valid profile name");
  }
  spa_.door->grant = std::string(d.value);
}

void Parser::on_spa_max_age(const Directive& d) {
  auto v = parse_duration(d.value);
  if (!v) return error(d.line, d.key, v.error().message);
  if (v->count() < 1 || v->count() > 86400) {
    return error(d.line, d.key, "must be between 1 second and 1 day");
  }
  spa_.door->max_age_s = v->count();
}

void Parser::on_spa_access_file(const Directive& d) {
  if (d.value.empty() || d.value[0] != '/') return error(d.line, d.key, "must be an absolute path");
  spa_.door->access_file = std::string(d.value);
}

// ---- access stanzas ----

void Parser::on_source(const Directive& d) {
  finish_stanza();
  auto& list = spa_.access_conf_only ? spa_.door->file_access : spa_.door->access;
  SpaAccess a;
  a.file = file_;
  a.line = d.line;
  // An access.conf opens for fwknopd's 30 s unless it or the client says otherwise, so a
  // file moved from fwknopd keeps its windows; inline stanzas default to the profile's
  // lifetime.
  if (spa_.access_conf_only) a.stanza.fw_access_timeout = kFwknopdAccessTimeout;
  if (to_lower(d.value) != "any") {
    auto v = parse_prefix_list(d.value);
    if (!v) {
      error(d.line, d.key, v.error().message);
    } else {
      a.stanza.sources = std::move(*v);
    }
  }
  list.push_back(std::move(a));
  spa_.stanzas = &list;
}

void Parser::on_key(const Directive& d) {
  auto k = key_bytes(d, "key_base64", spa::kMaxEncryptionKeyBytes, "the key must be 1 to 32 bytes");
  if (!k) return error(d.line, d.key, k.error().message);
  stanza().stanza.key = std::move(*k);
  spa_.have_key = true;
  spa_.key_line = d.line;
}

void Parser::on_hmac_key(const Directive& d) {
  auto k =
      key_bytes(d, "hmac_key_base64", spa::kMaxHmacKeyBytes, "the HMAC key must be 1 to 128 bytes");
  if (!k) return error(d.line, d.key, k.error().message);
  stanza().stanza.hmac_key = std::move(*k);
  spa_.have_hmac_key = true;
  spa_.hmac_key_line = d.line;
}

void Parser::on_hmac_digest_type(const Directive& d) {
  auto t = spa::parse_digest_name(d.value);
  if (!t) {
    return error(d.line, d.key,
                 "\"" + std::string(d.value) +
                     "\" is not md5, sha1, sha256, sha384, sha512, sha3_256 or sha3_512");
  }
  stanza().stanza.hmac_type = *t;
}

void Parser::on_encryption_mode(const Directive& d) {
  auto m = spa::parse_encryption_mode(d.value);
  if (!m) {
    return error(d.line, d.key,
                 "\"" + std::string(d.value) + "\" is not CBC, ECB, CFB, OFB, CTR or legacy");
  }
  stanza().stanza.mode = *m;
}

void Parser::on_require_username(const Directive& d) {
  auto& usernames = stanza().stanza.usernames;
  usernames.clear();
  for (auto item : split_list(d.value)) {
    if (!spa::valid_username(item)) {
      return error(d.line, d.key, "\"" + std::string(item) + "\" is not a valid fwknop username");
    }
    usernames.emplace_back(item);
  }
}

// OPEN_PORTS, RESTRICT_PORTS.
void Parser::on_port_list(const Directive& d) {
  auto v = spa::parse_proto_port_list(d.value);
  if (!v) return error(d.line, d.key, v.error().message);
  spa::Stanza& s = stanza().stanza;
  (d.key == "open_ports" ? s.open_ports : s.restrict_ports) = std::move(*v);
}

// FW_ACCESS_TIMEOUT, MAX_FW_TIMEOUT: seconds, at most 8 days.
void Parser::on_fw_timeout(const Directive& d) {
  auto v = parse_decimal(d.value, 0, 8 * 86400);
  if (!v) return error(d.line, d.key, v.error().message);
  spa::Stanza& s = stanza().stanza;
  (d.key == "fw_access_timeout" ? s.fw_access_timeout : s.max_fw_timeout) = *v;
}

// REQUIRE_SOURCE_ADDRESS (REQUIRE_SOURCE), MATCH_SOURCE_ADDRESS.
void Parser::on_source_address(const Directive& d) {
  auto v = parse_yn(d.value);
  if (!v) return error(d.line, d.key, v.error().message);
  spa::Stanza& s = stanza().stanza;
  (d.key == "match_source_address" ? s.match_source_address : s.require_source_address) = *v;
}

void Parser::on_access_expire_epoch(const Directive& d) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(d.value.data(), d.value.data() + d.value.size(), v);
  if (ec != std::errc() || end != d.value.data() + d.value.size() || v < 0) {
    return error(d.line, d.key, "not a Unix time");
  }
  stanza().expire_epoch = v;
}

void Parser::finish_stanza() {
  if (spa_.stanzas != nullptr && !spa_.stanzas->empty()) {
    const SpaAccess& a = spa_.stanzas->back();
    const spa::Stanza& s = a.stanza;
    if (!spa_.have_key) {
      error(a.line, "key", "access stanza has no KEY or KEY_BASE64");
    } else if (s.hmac_key && *s.hmac_key == s.key) {
      error(std::max(spa_.key_line, spa_.hmac_key_line), "hmac_key",
            "the HMAC key must differ from the encryption key");
    }
    if (spa_.have_hmac_key && s.mode == spa::EncryptionMode::legacy) {
      error(a.line, "encryption_mode", "legacy mode cannot be used with an HMAC key");
    }
  }
  spa_.have_key = false;
  spa_.have_hmac_key = false;
  spa_.key_line = 0;
  spa_.hmac_key_line = 0;
}

void Parser::finish_spa_door() {
  finish_stanza();
  spa_.stanzas = nullptr;
  const SpaDoor& door = *spa_.door;
  if (door.grant.empty()) {
    error(door.line, "grant", "an SPA door needs grant = PROFILE");
  }
  if (door.access.empty() && door.access_file.empty()) {
    error(door.line, "source",
          "an SPA door needs access stanzas (SOURCE = ... lines) or AccessFile = PATH");
  }
}

}  // namespace kg::config::detail
