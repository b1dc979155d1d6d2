#include "policyd/config_bridge.h"

#include <map>

namespace kg::policyd {

std::vector<DoorActions> door_actions(const config::Config& config) {
  std::vector<DoorActions> out;
  out.reserve(config.doors.size());
  for (const config::Door& d : config.doors) {
    DoorActions a;
    a.name = d.name;
    a.start_command = d.start_command;
    a.start_command_6 = d.start_command_6;
    a.stop_command = d.stop_command;
    a.stop_command_6 = d.stop_command_6;
    a.cmd_timeout = std::chrono::seconds(d.cmd_timeout < 0 ? 0 : d.cmd_timeout);
    a.one_time_sequences = d.one_time_sequences;
    a.grant = d.grant;
    out.push_back(std::move(a));
  }
  // SPA doors have no commands, only the profile a valid packet grants.
  for (const config::SpaDoor& d : config.spa_doors) {
    DoorActions a;
    a.name = d.name;
    a.grant = d.grant;
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<GrantProfile> grant_profiles(const config::Config& config) {
  std::vector<GrantProfile> out;
  out.reserve(config.profiles.size());
  for (const config::Profile& p : config.profiles) {
    GrantProfile g;
    g.name = p.name;
    g.lifetime = p.lifetime;
    g.max_lifetime = p.max_lifetime;
    if (p.fwmark) {
      g.fwmark = p.fwmark->value;
      g.fwmark_mask = p.fwmark->mask;
    }
    out.push_back(std::move(g));
  }
  return out;
}

std::vector<std::string> duplicate_door_names(const config::Config& config) {
  std::map<std::string, int> seen;
  std::vector<std::string> dups;
  for (const config::Door& d : config.doors) {
    if (++seen[d.name] == 2) dups.push_back(d.name);
  }
  return dups;
}

}  // namespace kg::policyd
