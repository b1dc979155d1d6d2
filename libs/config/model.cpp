// The config model's own functions (config.h): equality, look-ups, names.
#include "config/config.h"

namespace kg::config {

std::string Diagnostic::str() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

bool operator==(const Door& a, const Door& b) {
  return a.name == b.name && a.sequence == b.sequence &&
         a.one_time_sequences == b.one_time_sequences && a.seq_timeout == b.seq_timeout &&
         a.tcpflags == b.tcpflags && a.start_command == b.start_command &&
         a.start_command_6 == b.start_command_6 && a.stop_command == b.stop_command &&
         a.stop_command_6 == b.stop_command_6 && a.cmd_timeout == b.cmd_timeout &&
         a.target == b.target && a.grant == b.grant &&
         a.tolerate_duplicates == b.tolerate_duplicates;
}

bool operator==(const Profile& a, const Profile& b) {
  return a.name == b.name && a.direction == b.direction && a.exposures == b.exposures &&
         a.allow == b.allow && a.destinations == b.destinations && a.sources == b.sources &&
         a.fwmark == b.fwmark && a.table == b.table && a.routes == b.routes &&
         a.lifetime == b.lifetime && a.max_lifetime == b.max_lifetime && a.revoke == b.revoke;
}

bool operator==(const Config& a, const Config& b) {
  return a.options == b.options && a.doors == b.doors && a.profiles == b.profiles &&
         a.spa_doors == b.spa_doors;
}

const Profile* Config::find_profile(std::string_view name) const {
  for (const auto& p : profiles) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const char* direction_name(Direction d) {
  return d == Direction::egress ? "egress" : "inbound";
}

const char* allow_proto_name(AllowProto p) {
  switch (p) {
    case AllowProto::icmp:
      return "icmp";
    case AllowProto::udp:
      return "udp";
    case AllowProto::tcp:
      break;
  }
  return "tcp";
}

std::string nft_safe_name(std::string_view profile_name) {
  std::string id(profile_name);
  for (char& c : id) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) c = '_';
  }
  return id;
}

}  // namespace kg::config
