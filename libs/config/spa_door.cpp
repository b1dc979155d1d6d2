#include "config/spa_door.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "config/config.h"
#include "config/file_io.h"
#include "config/values.h"
#include "spa/base64.h"
#include "spa/hmac.h"

namespace kg::config {

namespace {

// fwknopd's DEF_FW_ACCESS_TIMEOUT.
constexpr uint32_t kFwknopdAccessTimeout = 30;

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// fwknop writes Y/N; knockgate's own yes/no also works.
Result<bool> parse_yn(std::string_view v) {
  const auto l = to_lower(v);
  if (l == "y") return true;
  if (l == "n") return false;
  return parse_bool(v);
}

Result<uint32_t> parse_u32(std::string_view v, uint32_t max) {
  return parse_decimal(v, 0, max);
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

}  // namespace

std::vector<SpaAccess> SpaDoor::all_access() const {
  std::vector<SpaAccess> out = access;
  out.insert(out.end(), file_access.begin(), file_access.end());
  return out;
}

void SpaSectionReader::error(int line, const std::string& key, std::string message) {
  errors_.push_back(Diagnostic{file_, line, key, std::move(message)});
}

void SpaSectionReader::directive(int line, const std::string& key, std::string_view value) {
  if (!access_conf_only_) {
    if (key == "port") {
      auto v = parse_decimal(value, 1, 65535);
      if (!v) return error(line, key, v.error().message);
      door_.port = static_cast<uint16_t>(*v);
      return;
    }
    if (key == "proto") {
      auto t = spa::parse_transport(value);
      if (!t) return error(line, key, "\"" + std::string(value) + "\" is not udp, tcp or http");
      door_.transport = *t;
      return;
    }
    if (key == "grant") {
      if (!valid_profile_name(value)) {
        return error(line, key, "\"" + std::string(value) + "\" is not a valid profile name");
      }
      door_.grant = std::string(value);
      grant_line_ = line;
      return;
    }
    if (key == "max_spa_packet_age" || key == "max_age") {
      auto v = parse_duration(value);
      if (!v) return error(line, key, v.error().message);
      if (v->count() < 1 || v->count() > 86400) {
        return error(line, key, "must be between 1 second and 1 day");
      }
      door_.max_age_s = v->count();
      return;
    }
    if (key == "accessfile" || key == "access_file") {
      if (value.empty() || value[0] != '/') return error(line, key, "must be an absolute path");
      door_.access_file = std::string(value);
      return;
    }
  }
  if (key == "source") {
    finish_stanza();
    auto& list = access_conf_only_ ? door_.file_access : door_.access;
    SpaAccess a;
    a.file = file_;
    a.line = line;
    // An access.conf opens for fwknopd's 30 s unless it or the client says otherwise, so a
    // file moved from fwknopd keeps its windows; inline stanzas default to the profile's
    // lifetime.
    if (access_conf_only_) a.stanza.fw_access_timeout = kFwknopdAccessTimeout;
    if (to_lower(value) != "any") {
      auto v = parse_prefix_list(value);
      if (!v) {
        error(line, key, v.error().message);
      } else {
        a.stanza.sources = std::move(*v);
      }
    }
    list.push_back(std::move(a));
    target_ = &list;
    return;
  }
  if (target_ == nullptr) {
    static const char* const kStanzaKeys[] = {"key",
                                              "key_base64",
                                              "hmac_key",
                                              "hmac_key_base64",
                                              "hmac_digest_type",
                                              "encryption_mode",
                                              "require_username",
                                              "open_ports",
                                              "restrict_ports",
                                              "fw_access_timeout",
                                              "max_fw_timeout",
                                              "require_source_address",
                                              "match_source_address",
                                              "access_expire_epoch"};
    for (const char* k : kStanzaKeys) {
      if (key == k) return error(line, key, "access stanza keys must follow a SOURCE line");
    }
    return error(line, key, "unknown key in an SPA door");
  }
  stanza_key(line, key, value);
}

void SpaSectionReader::stanza_key(int line, const std::string& key, std::string_view value) {
  // In an access.conf a value ends at the first ';' (fwknopd's old `KEY: value;` form) and
  // parse_access_conf cuts it there; inline, a ';' would silently become part of a key.
  if (!access_conf_only_ && value.find(';') != std::string_view::npos) {
    return error(line, key,
                 "';' ends a value in fwknopd's access.conf: write the value without it (an "
                 "AccessFile may use the old `KEY: value;` form)");
  }
  SpaAccess& a = target_->back();
  spa::Stanza& s = a.stanza;
  if (key == "key" || key == "key_base64") {
    std::optional<spa::Bytes> k;
    if (key == "key") {
      k = spa::Bytes(value.begin(), value.end());
    } else {
      k = spa::b64_decode(value);
      if (!k) return error(line, key, "not valid base64");
    }
    if (k->empty() || k->size() > spa::kMaxEncryptionKeyBytes) {
      return error(line, key, "the key must be 1 to 32 bytes");
    }
    s.key = std::move(*k);
    have_key_ = true;
    key_line_ = line;
    return;
  }
  if (key == "hmac_key" || key == "hmac_key_base64") {
    std::optional<spa::Bytes> k;
    if (key == "hmac_key") {
      k = spa::Bytes(value.begin(), value.end());
    } else {
      k = spa::b64_decode(value);
      if (!k) return error(line, key, "not valid base64");
    }
    if (k->empty() || k->size() > spa::kMaxHmacKeyBytes) {
      return error(line, key, "the HMAC key must be 1 to 128 bytes");
    }
    s.hmac_key = std::move(*k);
    have_hmac_key_ = true;
    hmac_key_line_ = line;
    return;
  }
  if (key == "hmac_digest_type") {
    auto t = spa::parse_digest_name(value);
    if (!t) {
      return error(line, key,
                   "\"" + std::string(value) +
                       "\" is not md5, sha1, sha256, sha384, sha512, sha3_256 or sha3_512");
    }
    s.hmac_type = *t;
    return;
  }
  if (key == "encryption_mode") {
    auto m = spa::parse_encryption_mode(value);
    if (!m) {
      return error(line, key,
                   "\"" + std::string(value) + "\" is not CBC, ECB, CFB, OFB, CTR or legacy");
    }
    s.mode = *m;
    return;
  }
  if (key == "require_username") {
    s.usernames.clear();
    for (auto item : split_list(value)) {
      if (!spa::valid_username(item)) {
        return error(line, key, "\"" + std::string(item) + "\" is not a valid fwknop username");
      }
      s.usernames.emplace_back(item);
    }
    return;
  }
  if (key == "open_ports" || key == "restrict_ports") {
    auto v = spa::parse_proto_port_list(value);
    if (!v) return error(line, key, v.error().message);
    (key == "open_ports" ? s.open_ports : s.restrict_ports) = std::move(*v);
    return;
  }
  if (key == "fw_access_timeout" || key == "max_fw_timeout") {
    auto v = parse_u32(value, 8 * 86400);
    if (!v) return error(line, key, v.error().message);
    (key == "fw_access_timeout" ? s.fw_access_timeout : s.max_fw_timeout) = *v;
    return;
  }
  // REQUIRE_SOURCE is fwknopd's synonym of REQUIRE_SOURCE_ADDRESS.
  if (key == "require_source_address" || key == "require_source" ||
      key == "match_source_address") {
    auto v = parse_yn(value);
    if (!v) return error(line, key, v.error().message);
    (key == "match_source_address" ? s.match_source_address : s.require_source_address) = *v;
    return;
  }
  if (key == "access_expire_epoch") {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size() || v < 0) {
      return error(line, key, "not a Unix time");
    }
    a.expire_epoch = v;
    return;
  }
  static const char* const kUnsupported[] = {"gpg_decrypt_id",
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
  for (const char* k : kUnsupported) {
    if (key == k) return error(line, key, "fwknopd key not supported by knockgate (docs/spa.md)");
  }
  error(line, key, "unknown access stanza key");
}

void SpaSectionReader::finish_stanza() {
  if (target_ != nullptr && !target_->empty()) {
    const SpaAccess& a = target_->back();
    const spa::Stanza& s = a.stanza;
    if (!have_key_) {
      error(a.line, "key", "access stanza has no KEY or KEY_BASE64");
    } else if (s.hmac_key && *s.hmac_key == s.key) {
      error(std::max(key_line_, hmac_key_line_), "hmac_key",
            "the HMAC key must differ from the encryption key");
    }
    if (have_hmac_key_ && s.mode == spa::EncryptionMode::legacy) {
      error(a.line, "encryption_mode", "legacy mode cannot be used with an HMAC key");
    }
  }
  have_key_ = false;
  have_hmac_key_ = false;
  key_line_ = 0;
  hmac_key_line_ = 0;
}

void SpaSectionReader::finish() {
  finish_stanza();
  target_ = nullptr;
  if (access_conf_only_) return;
  if (door_.grant.empty()) {
    error(door_.line, "grant", "an SPA door needs grant = PROFILE");
  }
  if (door_.access.empty() && door_.access_file.empty()) {
    error(door_.line, "source",
          "an SPA door needs access stanzas (SOURCE = ... lines) or AccessFile = PATH");
  }
}

std::vector<SpaAccess> parse_access_conf(std::string_view text, const std::string& file,
                                         std::vector<Diagnostic>& errors) {
  const size_t first_error = errors.size();
  SpaDoor scratch;
  SpaSectionReader reader(file, scratch, errors, true);
  int line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const auto raw = trim(text.substr(start, end - start));
    start = end + 1;
    ++line;
    if (raw.empty() || raw[0] == '#') continue;
    if (raw.substr(0, 8) == "%include") {
      errors.push_back(Diagnostic{file, line, "%include", "not supported: list stanzas inline"});
      continue;
    }
    // fwknopd: "KEY   value" (whitespace) or "KEY: value"; knockgate also takes "KEY = value".
    size_t sep = raw.find_first_of(" \t:=");
    if (sep == std::string_view::npos) {
      errors.push_back(Diagnostic{file, line, to_lower(raw), "missing value"});
      continue;
    }
    const std::string key = to_lower(raw.substr(0, sep));
    auto rest = raw.substr(sep);
    while (!rest.empty() &&
           (rest[0] == ' ' || rest[0] == '\t' || rest[0] == ':' || rest[0] == '=')) {
      rest.remove_prefix(1);
    }
    // As fwknopd reads it: the value stops at the first ';' (`KEY: value;`).
    rest = rest.substr(0, rest.find(';'));
    reader.directive(line, key, trim(rest));
  }
  reader.finish();
  // This file's errors in line order (stanza checks at finish() come last otherwise).
  std::stable_sort(errors.begin() + static_cast<std::ptrdiff_t>(first_error), errors.end(),
                   [](const Diagnostic& a, const Diagnostic& b) { return a.line < b.line; });
  return std::move(scratch.file_access);
}

std::string dump_spa_doors(const std::vector<SpaDoor>& doors, Secrets secrets) {
  auto secret = [&](const auto& bytes) {
    return secrets == Secrets::shown ? spa::b64_encode(bytes) : std::string(kHiddenSecret);
  };
  std::string out;
  auto put = [&](std::string_view k, const std::string& v) {
    out += k;
    out += " = ";
    out += v;
    out += '\n';
  };
  auto ports = [](const std::vector<spa::ProtoPort>& list) {
    std::string s;
    for (const auto& p : list) s += (s.empty() ? "" : ",") + spa::proto_port_str(p);
    return s;
  };
  for (const auto& d : doors) {
    out += "\n[spa " + d.name + "]\n";
    put("port", std::to_string(d.port));
    put("proto", spa::transport_name(d.transport));
    put("grant", d.grant);
    put("max_spa_packet_age", std::to_string(d.max_age_s) + "s");
    if (!d.access_file.empty()) put("AccessFile", d.access_file);
    for (const auto& a : d.access) {
      const spa::Stanza& s = a.stanza;
      put("SOURCE", s.sources.empty() ? std::string("ANY") : format_prefix_list(s.sources));
      put("KEY_BASE64", secret(s.key));
      put("ENCRYPTION_MODE", spa::encryption_mode_name(s.mode));
      if (s.hmac_key) {
        put("HMAC_KEY_BASE64", secret(*s.hmac_key));
        put("HMAC_DIGEST_TYPE", spa::digest_name(s.hmac_type));
      }
      if (!s.usernames.empty()) {
        std::string u;
        for (const auto& n : s.usernames) u += (u.empty() ? "" : ",") + n;
        put("REQUIRE_USERNAME", u);
      }
      if (!s.open_ports.empty()) put("OPEN_PORTS", ports(s.open_ports));
      if (!s.restrict_ports.empty()) put("RESTRICT_PORTS", ports(s.restrict_ports));
      put("FW_ACCESS_TIMEOUT", std::to_string(s.fw_access_timeout));
      put("MAX_FW_TIMEOUT", std::to_string(s.max_fw_timeout));
      put("REQUIRE_SOURCE_ADDRESS", s.require_source_address ? "Y" : "N");
      put("MATCH_SOURCE_ADDRESS", s.match_source_address ? "Y" : "N");
      if (a.expire_epoch) put("ACCESS_EXPIRE_EPOCH", std::to_string(*a.expire_epoch));
    }
  }
  return out;
}

namespace {

// Key material must not be readable by anyone but the owner.
std::optional<std::string> loose_permissions(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return std::string("cannot stat");
  if ((st.st_mode & 077) != 0) {
    return "mode " + octal_mode(st.st_mode) +
           " lets group or other read keys (chmod 600, owned by the daemon's user)";
  }
  return std::nullopt;
}

}  // namespace

void load_spa_access_files(Config& config, const std::string& config_path,
                           std::vector<Diagnostic>& errors) {
  int first_inline_key_line = 0;
  for (const auto& d : config.spa_doors) {
    for (const auto& a : d.access) {
      if (first_inline_key_line == 0 || a.line < first_inline_key_line)
        first_inline_key_line = a.line;
    }
  }
  if (first_inline_key_line != 0) {
    UniqueFd fd(::open(config_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.valid()) {
      if (auto loose = loose_permissions(fd.get())) {
        errors.push_back(Diagnostic{config_path, first_inline_key_line, "key", *loose});
      }
    }
  }
  for (auto& d : config.spa_doors) {
    d.file_access.clear();
    if (d.access_file.empty()) continue;
    UniqueFd fd(::open(d.access_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) {
      errors.push_back(Diagnostic{config_path, d.line, "accessfile",
                                  d.access_file + ": cannot open: " + std::strerror(errno)});
      continue;
    }
    if (auto loose = loose_permissions(fd.get())) {
      errors.push_back(Diagnostic{d.access_file, 0, "", *loose});
      continue;
    }
    auto text = read_whole(fd.get());
    if (!text) {
      errors.push_back(Diagnostic{d.access_file, 0, "", text.error().message});
      continue;
    }
    d.file_access = parse_access_conf(*text, d.access_file, errors);
    if (d.file_access.empty() && d.access.empty()) {
      errors.push_back(Diagnostic{d.access_file, 0, "source", "no access stanza in the file"});
    }
  }
}

}  // namespace kg::config
