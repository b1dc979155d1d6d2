// The one key table of knockgate.conf (every section's keys, [spa NAME] and access stanza
// keys included) and the handlers of [options], door and profile keys.
#include "config/parser.h"
#include "config/values.h"

namespace kg::config::detail {

const Parser::KeyInfo* Parser::find_key(std::string_view lowered, bool spa) {
  static const KeyInfo kKeys[] = {
      {"logfile", "", Section::options, &Parser::on_logfile},
      {"pidfile", "", Section::options, &Parser::on_pidfile},
      {"interface", "", Section::options, &Parser::on_interface},
      {"waninterface", "", Section::options, &Parser::on_wan_interface},
      {"laninterface", "", Section::options, &Parser::on_lan_interface},
      {"managementfrom", "", Section::options, &Parser::on_management_from},
      {"managementports", "", Section::options, &Parser::on_management_ports},
      {"database", "", Section::options, &Parser::on_database},
      {"runtimedir", "", Section::options, &Parser::on_runtime_dir},
      {"maxtrackedsources", "", Section::options, &Parser::on_max_tracked_sources},
      {"captureuser", "", Section::options, &Parser::on_capture_user},
      {"policyuser", "", Section::options, &Parser::on_policy_user},
      {"commanduser", "", Section::options, &Parser::on_command_user},
      {"admingroup", "", Section::options, &Parser::on_admin_group},
      {"verdictqueue", "", Section::options, &Parser::on_verdict_queue},
      {"verdictfailopen", "", Section::options, &Parser::on_verdict_fail_open},
      {"verdictholdms", "", Section::options, &Parser::on_verdict_hold_ms},
      {"verdictuser", "", Section::options, &Parser::on_verdict_user},
      {"weblisten", "", Section::options, &Parser::on_web_listen},
      {"webuser", "", Section::options, &Parser::on_web_user},
      {"webtlscertificate", "", Section::options, &Parser::on_web_path},
      {"webtlskey", "", Section::options, &Parser::on_web_path},
      {"webpasswordfile", "", Section::options, &Parser::on_web_path},
      {"webtokenfile", "", Section::options, &Parser::on_web_path},
      {"webroot", "", Section::options, &Parser::on_web_path},
      {"usesyslog", "", Section::options, &Parser::on_usesyslog_value},
      {"sequence", "", Section::door, &Parser::on_sequence},
      {"one_time_sequences", "", Section::door, &Parser::on_one_time_sequences},
      {"seq_timeout", "timeout", Section::door, &Parser::on_seq_timeout},
      {"tcpflags", "", Section::door, &Parser::on_tcpflags},
      {"start_command", "command", Section::door, &Parser::on_start_command},
      {"start_command_6", "command_6", Section::door, &Parser::on_start_command_6},
      {"stop_command", "", Section::door, &Parser::on_stop_command},
      {"stop_command_6", "", Section::door, &Parser::on_stop_command_6},
      {"cmd_timeout", "", Section::door, &Parser::on_cmd_timeout},
      {"target", "", Section::door, &Parser::on_target},
      {"grant", "", Section::door, &Parser::on_grant},
      {"tolerate_duplicates", "", Section::door, &Parser::on_tolerate_duplicates},
      {"direction", "", Section::profile, &Parser::on_direction},
      {"expose", "", Section::profile, &Parser::on_expose},
      {"allow", "", Section::profile, &Parser::on_allow},
      {"destination", "", Section::profile, &Parser::on_destination},
      {"sources", "", Section::profile, &Parser::on_sources},
      {"fwmark", "", Section::profile, &Parser::on_fwmark},
      {"table", "", Section::profile, &Parser::on_table},
      {"route", "", Section::profile, &Parser::on_route},
      {"lifetime", "", Section::profile, &Parser::on_lifetime},
      {"max_lifetime", "", Section::profile, &Parser::on_max_lifetime},
      {"revoke", "", Section::profile, &Parser::on_revoke},
      // [spa NAME]: the door's own keys, then fwknopd's access.conf keys.
      {"port", "", Section::spa, &Parser::on_spa_port},
      {"proto", "", Section::spa, &Parser::on_spa_proto},
      {"grant", "", Section::spa, &Parser::on_spa_grant},
      {"max_spa_packet_age", "max_age", Section::spa, &Parser::on_spa_max_age},
      {"accessfile", "access_file", Section::spa, &Parser::on_spa_access_file},
      {"source", "", Section::stanza, &Parser::on_source},
      {"key", "key_base64", Section::stanza, &Parser::on_key},
      {"hmac_key", "hmac_key_base64", Section::stanza, &Parser::on_hmac_key},
      {"hmac_digest_type", "", Section::stanza, &Parser::on_hmac_digest_type},
      {"encryption_mode", "", Section::stanza, &Parser::on_encryption_mode},
      {"require_username", "", Section::stanza, &Parser::on_require_username},
      {"open_ports", "", Section::stanza, &Parser::on_port_list},
      {"restrict_ports", "", Section::stanza, &Parser::on_port_list},
      {"fw_access_timeout", "", Section::stanza, &Parser::on_fw_timeout},
      {"max_fw_timeout", "", Section::stanza, &Parser::on_fw_timeout},
      // REQUIRE_SOURCE is fwknopd's synonym of REQUIRE_SOURCE_ADDRESS.
      {"require_source_address", "require_source", Section::stanza, &Parser::on_source_address},
      {"match_source_address", "", Section::stanza, &Parser::on_source_address},
      {"access_expire_epoch", "", Section::stanza, &Parser::on_access_expire_epoch},
  };
  for (const auto& k : kKeys) {
    const bool spa_key = k.section == Section::spa || k.section == Section::stanza;
    if (spa_key != spa) continue;
    if (k.name == lowered || (!k.alias.empty() && k.alias == lowered)) return &k;
  }
  return nullptr;
}

// ---- [options] ----

// Reached from any section: knockd accepts the bare flag anywhere.
void Parser::on_usesyslog_value(const Directive& d) {
  error(d.line, d.key, "UseSyslog is a bare flag: write \"UseSyslog\" alone, without '='");
}

void Parser::on_pidfile(const Directive& d) {
  if (d.value.empty()) return value_error(d, Error{"empty path"});
  config_.options.pid_file = std::string(d.value);
}

void Parser::on_interface(const Directive& d) {
  auto v = parse_interface_list(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.interfaces = std::move(*v);
}

void Parser::on_wan_interface(const Directive& d) {
  auto v = parse_interface_list(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.wan_interfaces = std::move(*v);
}

void Parser::on_lan_interface(const Directive& d) {
  auto v = parse_interface_list(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.lan_interfaces = std::move(*v);
}

void Parser::on_management_from(const Directive& d) {
  auto v = parse_management_from(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.management_interfaces = std::move(v->interfaces);
  config_.options.management_prefixes = std::move(v->prefixes);
  management_set_ = true;
}

void Parser::on_management_ports(const Directive& d) {
  auto v = parse_management_ports(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.management_ports = std::move(*v);
}

void Parser::on_database(const Directive& d) {
  if (d.value.empty() || d.value[0] != '/')
    return value_error(d, Error{"must be an absolute path"});
  config_.options.database = std::string(d.value);
}

void Parser::on_runtime_dir(const Directive& d) {
  if (d.value.empty() || d.value[0] != '/')
    return value_error(d, Error{"must be an absolute path"});
  config_.options.runtime_dir = std::string(d.value);
}

void Parser::on_max_tracked_sources(const Directive& d) {
  auto v = parse_decimal(d.value, 16, 16777216);
  if (!v) return value_error(d, v.error());
  config_.options.max_tracked_sources = *v;
}

void Parser::set_account(const Directive& d, std::string& field, const char* kind) {
  if (!valid_account_name(d.value)) {
    return value_error(d,
                       Error{"\"" + std::string(d.value) + "\" is not a valid " + kind + " name"});
  }
  field = std::string(d.value);
}

void Parser::on_capture_user(const Directive& d) {
  set_account(d, config_.options.capture_user, "user");
}

void Parser::on_policy_user(const Directive& d) {
  set_account(d, config_.options.policy_user, "user");
}

void Parser::on_command_user(const Directive& d) {
  set_account(d, config_.options.command_user, "user");
}

void Parser::on_admin_group(const Directive& d) {
  set_account(d, config_.options.admin_group, "group");
}

void Parser::on_verdict_queue(const Directive& d) {
  // "N" or "FIRST-LAST", like iptables' --queue-balance.
  const size_t dash = d.value.find('-');
  auto first = parse_decimal(d.value.substr(0, dash), 0, 65535);
  if (!first) return value_error(d, first.error());
  uint32_t last = *first;
  if (dash != std::string_view::npos) {
    auto l = parse_decimal(d.value.substr(dash + 1), 0, 65535);
    if (!l) return value_error(d, l.error());
    if (*l < *first) return value_error(d, Error{"the range's end is below its start"});
    if (*l - *first >= 64) return value_error(d, Error{"at most 64 queues"});
    last = *l;
  }
  config_.options.verdict_queue_first = static_cast<uint16_t>(*first);
  config_.options.verdict_queue_count = static_cast<uint16_t>(last - *first + 1);
}

void Parser::on_verdict_fail_open(const Directive& d) {
  auto v = parse_bool(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.verdict_fail_open = *v;
}

void Parser::on_verdict_hold_ms(const Directive& d) {
  auto v = parse_decimal(d.value, 0, 1000);
  if (!v) return value_error(d, v.error());
  config_.options.verdict_hold_ms = *v;
}

void Parser::on_verdict_user(const Directive& d) {
  set_account(d, config_.options.verdict_user, "user");
}

// ---- knockgate-webd ----

void Parser::on_web_listen(const Directive& d) {
  auto v = parse_web_listen(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.web_listen = std::move(*v);
}

void Parser::on_web_user(const Directive& d) {
  set_account(d, config_.options.web_user, "user");
}

// WebTlsCertificate, WebTlsKey, WebPasswordFile, WebTokenFile, WebRoot: absolute paths.
void Parser::on_web_path(const Directive& d) {
  if (d.value.empty() || d.value[0] != '/')
    return value_error(d, Error{"must be an absolute path"});
  Options& o = config_.options;
  const std::string key = to_lower(d.key);
  std::string* target = key == "webtlscertificate" ? &o.web_tls_certificate
                        : key == "webtlskey"       ? &o.web_tls_key
                        : key == "webpasswordfile" ? &o.web_password_file
                        : key == "webtokenfile"    ? &o.web_token_file
                                                   : &o.web_root;
  *target = std::string(d.value);
}

// ---- doors ----

void Parser::on_sequence(const Directive& d) {
  auto v = parse_knock_sequence(d.value);
  if (!v) return value_error(d, v.error());
  door().sequence = std::move(*v);  // the last of sequence / one_time_sequences wins
  door().one_time_sequences.clear();
}

void Parser::on_one_time_sequences(const Directive& d) {
  if (d.value.empty()) {
    state().failed_keys.insert("sequence");  // it stood for the sequence: no cascade
    return value_error(d, Error{"empty path"});
  }
  door().one_time_sequences = std::string(d.value);
  door().sequence.clear();
  state().failed_keys.erase("sequence");  // an earlier bad sequence line no longer matters
}

void Parser::on_seq_timeout(const Directive& d) {
  auto v = parse_seconds(d.value);
  if (!v) return value_error(d, v.error());
  door().seq_timeout = *v;
}

void Parser::on_tcpflags(const Directive& d) {
  auto v = parse_tcpflags(d.value, door().tcpflags);  // repeated lines add up, as in knockd
  if (!v) return value_error(d, v.error());
  door().tcpflags = *v;
}

void Parser::on_cmd_timeout(const Directive& d) {
  auto v = parse_seconds(d.value);
  if (!v) return value_error(d, v.error());
  door().cmd_timeout = *v;
}

void Parser::on_target(const Directive& d) {
  auto a = IpAddr::parse(d.value);
  if (!a) return value_error(d, Error{"\"" + std::string(d.value) + "\" is not an IP address"});
  door().target = *a;
}

void Parser::on_grant(const Directive& d) {
  if (!valid_profile_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid profile name"});
  }
  door().grant = std::string(d.value);
}

void Parser::on_tolerate_duplicates(const Directive& d) {
  auto v = parse_bool(d.value);
  if (!v) return value_error(d, v.error());
  door().tolerate_duplicates = *v;
}

// ---- profiles ----

void Parser::on_direction(const Directive& d) {
  const auto v = to_lower(d.value);
  if (v == "inbound") {
    profile().direction = Direction::inbound;
  } else if (v == "egress") {
    profile().direction = Direction::egress;
  } else {
    value_error(d, Error{"\"" + std::string(d.value) + "\" is not inbound or egress"});
  }
}

void Parser::on_expose(const Directive& d) {
  auto v = parse_exposure(d.value);
  if (!v) return value_error(d, v.error());
  profile().exposures.push_back(*v);
  state().expose_lines.push_back(d.line);
}

void Parser::on_allow(const Directive& d) {
  auto v = parse_allow(d.value);
  if (!v) return value_error(d, v.error());
  auto& allow = profile().allow;
  allow.insert(allow.end(), v->begin(), v->end());
}

void Parser::on_destination(const Directive& d) {
  auto v = parse_prefix_list(d.value);
  if (!v) return value_error(d, v.error());
  auto& dst = profile().destinations;
  dst.insert(dst.end(), v->begin(), v->end());
}

void Parser::on_sources(const Directive& d) {
  auto v = parse_prefix_list(d.value);
  if (!v) return value_error(d, v.error());
  auto& src = profile().sources;
  src.insert(src.end(), v->begin(), v->end());
}

void Parser::on_fwmark(const Directive& d) {
  auto v = parse_fwmark(d.value);
  if (!v) return value_error(d, v.error());
  profile().fwmark = *v;
}

void Parser::on_table(const Directive& d) {
  auto v = parse_table(d.value);
  if (!v) return value_error(d, v.error());
  profile().table = *v;
}

void Parser::on_route(const Directive& d) {
  auto v = parse_route(d.value);
  if (!v) return value_error(d, v.error());
  profile().routes.push_back(*v);
  state().route_lines.push_back(d.line);
}

void Parser::on_lifetime(const Directive& d) {
  auto v = parse_duration(d.value);
  if (!v) return value_error(d, v.error());
  profile().lifetime = *v;
}

void Parser::on_max_lifetime(const Directive& d) {
  auto v = parse_duration(d.value);
  if (!v) return value_error(d, v.error());
  profile().max_lifetime = *v;
}

void Parser::on_revoke(const Directive& d) {
  const auto v = to_lower(d.value);
  if (v == "new") {
    profile().revoke = Revoke::new_flows;
  } else if (v == "all") {
    profile().revoke = Revoke::all_flows;
  } else {
    value_error(d, Error{"\"" + std::string(d.value) + "\" is not new or all"});
  }
}

}  // namespace kg::config::detail
