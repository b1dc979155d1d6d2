// The whole-section and whole-file checks of knockgate.conf: what no single line shows
// (a profile's keys together, names and marks across sections, the mode the file asks for).
#include <algorithm>

#include "config/parser.h"
#include "config/values.h"

namespace kg::config::detail {

void Parser::finish_profile(const Profile& p, const SectionState& st) {
  if (!st.has("direction")) {
    error(p.line, "direction", "missing (direction = inbound or direction = egress)");
  } else if (!st.failed("direction")) {
    if (p.direction == Direction::inbound) {
      for (std::string_view key : {"allow", "destination", "sources"}) {
        if (st.has(key)) {
          error(st.line_of(key), key, "only egress profiles take this key (this one is inbound)");
        }
      }
      if (p.exposures.empty() && !st.failed("expose")) {
        error(p.line, "expose", "an inbound profile needs at least one expose line");
      }
    } else {
      if (st.has("expose")) {
        error(st.line_of("expose"), "expose",
              "only inbound profiles take this key (this one is egress)");
      }
      if (p.allow.empty() && !st.failed("allow")) {
        error(p.line, "allow", "an egress profile needs an allow line");
      }
      if (p.destinations.empty() && !st.failed("destination")) {
        error(p.line, "destination",
              "an egress profile needs a destination line (0.0.0.0/0 for anywhere)");
      }
    }
  }
  for (size_t j = 0; j < p.exposures.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      if (p.exposures[i].proto == p.exposures[j].proto &&
          p.exposures[i].public_port == p.exposures[j].public_port) {
        error(st.expose_lines[j], "expose",
              std::string(proto_name(p.exposures[j].proto)) + "/" +
                  std::to_string(p.exposures[j].public_port) + " is already exposed at line " +
                  std::to_string(st.expose_lines[i]));
        break;
      }
    }
  }
  for (size_t j = 0; j < p.routes.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      if (p.routes[i].prefix == p.routes[j].prefix) {
        error(st.route_lines[j], "route",
              "a route to " + p.routes[j].prefix.str() + " is already given at line " +
                  std::to_string(st.route_lines[i]));
        break;
      }
    }
  }
  if (!p.routes.empty() && !p.table && !st.failed("table")) {
    error(st.route_lines.front(), "route", "routes need a table (table = N)");
  }
  if (p.table && !p.fwmark && !st.failed("fwmark")) {
    error(st.line_of("table"), "table", "a route table needs a fwmark that selects it");
  }
  if (p.fwmark && !p.table && !st.failed("table")) {
    error(st.line_of("fwmark"), "fwmark", "a fwmark needs a table to route by (table = N)");
  }
  if (p.max_lifetime < p.lifetime && !st.failed("lifetime") && !st.failed("max_lifetime")) {
    const std::string msg = "lifetime " + format_duration(p.lifetime) +
                            " is longer than max_lifetime " + format_duration(p.max_lifetime);
    if (st.line_of("max_lifetime") >= st.line_of("lifetime") && st.has("max_lifetime")) {
      error(st.line_of("max_lifetime"), "max_lifetime", msg);
    } else {
      error(st.line_of("lifetime"), "lifetime", msg);
    }
  }
}

void Parser::finish_file() {
  auto& opt = config_.options;
  if (!management_set_) opt.management_interfaces = opt.lan_interfaces;
  for (const auto& lan : opt.lan_interfaces) {
    if (std::find(opt.wan_interfaces.begin(), opt.wan_interfaces.end(), lan) !=
        opt.wan_interfaces.end()) {
      const bool wan_later = option_lines_["waninterface"] > option_lines_["laninterface"];
      error(wan_later ? option_lines_["waninterface"] : option_lines_["laninterface"],
            wan_later ? "waninterface" : "laninterface",
            "interface \"" + lan + "\" cannot be both WAN and LAN");
    }
  }

  // knockgate-webd serves HTTPS only with both halves of its key pair.
  if (opt.web_tls_certificate.empty() != opt.web_tls_key.empty()) {
    const bool cert = opt.web_tls_key.empty();
    error(option_lines_[cert ? "webtlscertificate" : "webtlskey"],
          cert ? "webtlscertificate" : "webtlskey",
          cert ? "WebTlsKey must be set too" : "WebTlsCertificate must be set too");
  }

  for (size_t i = 0; i < config_.doors.size(); ++i) {
    const Door& d = config_.doors[i];
    const SectionState& st = door_state_[i];
    if (d.sequence.empty() && d.one_time_sequences.empty() && !st.failed("sequence")) {
      std::string msg = "door \"" + d.name + "\" has an empty knock sequence";
      const auto lowered = to_lower(d.name);
      if (lowered == "options") {
        msg += " (the global section is spelled [options], in lower case)";
      } else if (lowered.rfind("profile", 0) == 0) {
        msg += " (profile sections are spelled [profile NAME], \"profile\" in lower case)";
      }
      error(d.line, "sequence", msg);
    }
    if (!d.grant.empty() && config_.find_profile(d.grant) == nullptr) {
      error(st.line_of("grant"), "grant",
            "no profile named \"" + d.grant + "\" (define it with [profile " + d.grant + "])");
    }
  }

  check_spa_doors();
  check_mode();

  const auto& profiles = config_.profiles;
  for (size_t j = 0; j < profiles.size(); ++j) {
    const Profile& later = profiles[j];
    const SectionState& st = profile_state_[j];
    for (size_t i = 0; i < j; ++i) {
      const Profile& earlier = profiles[i];
      const std::string where =
          "profile \"" + earlier.name + "\" at line " + std::to_string(earlier.line);
      if (earlier.name == later.name) {
        error(later.line, "section",
              "duplicate profile \"" + later.name + "\" (first defined at line " +
                  std::to_string(earlier.line) + ")");
      } else if (nft_safe_name(earlier.name) == nft_safe_name(later.name)) {
        // The gate's nftables sets are named after the profile with '-' and '.' as '_'.
        error(later.line, "section",
              "profile \"" + later.name + "\" and " + where + " have the same nftables name \"" +
                  nft_safe_name(later.name) + "\" ('-' and '.' become '_')");
      }
      if (earlier.fwmark && later.fwmark &&
          earlier.fwmark->can_match_same_packet_as(*later.fwmark)) {
        error(st.line_of("fwmark"), "fwmark",
              "mark " + format_fwmark(*later.fwmark) + " can match the same packets as mark " +
                  format_fwmark(*earlier.fwmark) + " of " + where);
      }
      if (earlier.table && later.table && *earlier.table == *later.table) {
        error(st.line_of("table"), "table",
              "table " + std::to_string(*later.table) + " is already used by " + where);
      }
    }
  }
}

// Forwarding needs interface roles: without them the config is knockd's host (and `self`)
// mode, which never touches forwarding. A port of the gateway cannot be both its own
// (`self`) and forwarded to a host.
void Parser::check_mode() {
  const bool roles =
      !config_.options.wan_interfaces.empty() || !config_.options.lan_interfaces.empty();
  // One error for the file, at the first profile that needs the gateway mode.
  const Profile* first_forwarding = nullptr;
  std::string names;
  size_t count = 0;
  for (const Profile& p : config_.profiles) {
    if (roles || !p.forwards()) continue;
    if (!first_forwarding) first_forwarding = &p;
    names += (names.empty() ? "\"" : ", \"") + p.name + "\"";
    ++count;
  }
  if (first_forwarding) {
    error(first_forwarding->line, "section",
          (count == 1 ? "profile " + names + " passes" : "profiles " + names + " pass") +
              " traffic through the gateway: declare the interface roles (WanInterface, "
              "LanInterface) for gateway mode; without them only `expose = self PROTO/PORT` "
              "profiles are possible");
  }
  for (size_t j = 0; j < config_.profiles.size(); ++j) {
    const Profile& p = config_.profiles[j];
    const SectionState& st = profile_state_[j];
    for (size_t k = 0; k < p.exposures.size() && k < st.expose_lines.size(); ++k) {
      const Exposure& mine = p.exposures[k];
      if (!mine.self) continue;
      for (size_t i = 0; i < config_.profiles.size(); ++i) {
        for (const Exposure& other : config_.profiles[i].exposures) {
          if (other.self || other.proto != mine.proto || other.public_port != mine.public_port) {
            continue;
          }
          error(st.expose_lines[k], "expose",
                std::string(proto_name(mine.proto)) + "/" + std::to_string(mine.public_port) +
                    " is forwarded to " + other.host.str() + " by profile \"" +
                    config_.profiles[i].name + "\" at line " +
                    std::to_string(config_.profiles[i].line) +
                    ": a port is either the gateway's own or forwarded");
        }
      }
    }
  }
}

void Parser::check_spa_doors() {
  for (size_t j = 0; j < config_.spa_doors.size(); ++j) {
    const SpaDoor& d = config_.spa_doors[j];
    if (!d.grant.empty() && config_.find_profile(d.grant) == nullptr) {
      error(d.line, "grant",
            "no profile named \"" + d.grant + "\" (define it with [profile " + d.grant + "])");
    }
    for (size_t i = 0; i < j; ++i) {
      const SpaDoor& e = config_.spa_doors[i];
      if (e.name == d.name) {
        error(
            d.line, "section",
            "duplicate SPA door \"" + d.name + "\" (first at line " + std::to_string(e.line) + ")");
      } else if (e.port == d.port &&
                 (e.transport == spa::Transport::udp) == (d.transport == spa::Transport::udp)) {
        error(d.line, "port",
              std::string(d.transport == spa::Transport::udp ? "udp" : "tcp") + "/" +
                  std::to_string(d.port) + " is already the port of SPA door \"" + e.name + "\"");
      }
    }
  }
}

}  // namespace kg::config::detail
