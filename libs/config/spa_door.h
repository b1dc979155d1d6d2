// SPA doors: `[spa NAME]` sections of knockgate.conf. A door names a port, a transport and
// the profile a valid packet grants; its access stanzas use fwknopd's access.conf keys
// unchanged (written inline, each starting with SOURCE, or read from `AccessFile`).
// docs/knockgate.conf.5 (section "SPA DOORS") and docs/spa.md describe them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spa/stanza.h"
#include "spa/transport.h"

namespace kg::config {

struct Diagnostic;
struct Config;

// One access stanza and where it came from.
struct SpaAccess {
  std::string file;  // not part of equality
  int line = 0;      // its SOURCE line; not part of equality
  spa::Stanza stanza;
  std::optional<int64_t> expire_epoch;  // ACCESS_EXPIRE_EPOCH
  friend bool operator==(const SpaAccess& a, const SpaAccess& b) {
    return a.stanza == b.stanza && a.expire_epoch == b.expire_epoch;
  }
};

inline constexpr uint16_t kDefaultSpaPort = 62201;

struct SpaDoor {
  std::string name;
  int line = 0;  // not part of equality
  uint16_t port = kDefaultSpaPort;
  spa::Transport transport = spa::Transport::udp;
  std::string grant;              // profile name (required)
  int64_t max_age_s = 120;        // MAX_SPA_PACKET_AGE, both directions
  std::string access_file;        // AccessFile; empty = none
  std::vector<SpaAccess> access;  // inline stanzas, file order
  // Stanzas read from access_file by load_spa_access_files(); not part of equality (a
  // dump names the file, not its contents).
  std::vector<SpaAccess> file_access;

  // Inline stanzas, then the file's: the order they are tried in.
  std::vector<SpaAccess> all_access() const;

  friend bool operator==(const SpaDoor& a, const SpaDoor& b) {
    return a.name == b.name && a.port == b.port && a.transport == b.transport &&
           a.grant == b.grant && a.max_age_s == b.max_age_s && a.access_file == b.access_file &&
           a.access == b.access;
  }
};

// The `[spa NAME]` sections in normal form (keys as KEY_BASE64, or kHiddenSecret), for dump().
enum class Secrets : uint8_t;
std::string dump_spa_doors(const std::vector<SpaDoor>& doors, Secrets secrets);

// A fwknopd access.conf: `KEY VALUE` or `KEY: VALUE` lines, stanzas starting at SOURCE.
std::vector<SpaAccess> parse_access_conf(std::string_view text, const std::string& file,
                                         std::vector<Diagnostic>& errors);

// Loads every door's AccessFile (refusing files that group or other can read) and refuses
// a config file holding inline keys that group or other can read. parse_file() calls it.
void load_spa_access_files(Config& config, const std::string& config_path,
                           std::vector<Diagnostic>& errors);

}  // namespace kg::config
