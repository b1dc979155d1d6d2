#include "config/spa_door.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/unique_fd.h"
#include "config/config.h"
#include "config/file_io.h"
#include "config/values.h"
#include "spa/base64.h"
#include "spa/stanza.h"
#include "spa/transport.h"

namespace kg::config {

namespace {

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

}  // namespace

std::vector<SpaAccess> SpaDoor::all_access() const {
  std::vector<SpaAccess> out = access;
  out.insert(out.end(), file_access.begin(), file_access.end());
  return out;
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
