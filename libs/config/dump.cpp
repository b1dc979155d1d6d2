#include "config/config.h"
#include "config/values.h"

namespace kg::config {
namespace {

void put(std::string& out, std::string_view key, std::string_view value) {
  out += key;
  out += " = ";
  out += value;
  out += '\n';
}

void put_key_only(std::string& out, std::string_view key) {
  out += key;
  out += " =\n";
}

}  // namespace

std::string dump(const Config& config, Secrets secrets) {
  std::string out;
  const Options& o = config.options;
  out += "[options]\n";
  if (o.use_syslog) out += "UseSyslog\n";
  if (!o.log_file.empty()) put(out, "LogFile", o.log_file);
  put(out, "PidFile", o.pid_file);
  put(out, "Interface", join(o.interfaces, ","));
  if (!o.wan_interfaces.empty()) put(out, "WanInterface", join(o.wan_interfaces, ","));
  if (!o.lan_interfaces.empty()) put(out, "LanInterface", join(o.lan_interfaces, ","));
  const std::string management = format_management_from(o.management_interfaces, o.management_prefixes);
  if (!management.empty()) put(out, "ManagementFrom", management);
  put(out, "ManagementPorts", format_allow(o.management_ports));
  put(out, "Database", o.database);
  put(out, "RuntimeDir", o.runtime_dir);
  put(out, "MaxTrackedSources", std::to_string(o.max_tracked_sources));
  put(out, "CaptureUser", o.capture_user);
  put(out, "PolicyUser", o.policy_user);
  if (!o.command_user.empty()) put(out, "CommandUser", o.command_user);
  put(out, "AdminGroup", o.admin_group);
  put(out, "VerdictQueue",
      o.verdict_queue_count == 1
          ? std::to_string(o.verdict_queue_first)
          : std::to_string(o.verdict_queue_first) + "-" +
                std::to_string(o.verdict_queue_first + o.verdict_queue_count - 1));
  put(out, "VerdictFailOpen", o.verdict_fail_open ? "yes" : "no");
  put(out, "VerdictHoldMs", std::to_string(o.verdict_hold_ms));
  put(out, "VerdictUser", o.verdict_user);
  if (!o.web_listen.empty()) put(out, "WebListen", format_web_listen(o.web_listen));
  put(out, "WebUser", o.web_user);
  if (!o.web_tls_certificate.empty()) put(out, "WebTlsCertificate", o.web_tls_certificate);
  if (!o.web_tls_key.empty()) put(out, "WebTlsKey", o.web_tls_key);
  put(out, "WebPasswordFile", o.web_password_file);
  put(out, "WebTokenFile", o.web_token_file);
  put(out, "WebRoot", o.web_root);

  for (const Profile& p : config.profiles) {
    out += "\n[profile " + p.name + "]\n";
    put(out, "direction", direction_name(p.direction));
    for (const auto& e : p.exposures) put(out, "expose", format_exposure(e));
    if (!p.allow.empty()) put(out, "allow", format_allow(p.allow));
    if (!p.destinations.empty()) put(out, "destination", format_prefix_list(p.destinations));
    if (!p.sources.empty()) put(out, "sources", format_prefix_list(p.sources));
    if (p.fwmark) put(out, "fwmark", format_fwmark(*p.fwmark));
    if (p.table) put(out, "table", std::to_string(*p.table));
    for (const auto& r : p.routes) put(out, "route", format_route(r));
    put(out, "lifetime", format_duration(p.lifetime));
    put(out, "max_lifetime", format_duration(p.max_lifetime));
    put(out, "revoke", p.revoke == Revoke::all_flows ? "all" : "new");
  }

  for (const Door& d : config.doors) {
    out += "\n[" + d.name + "]\n";
    if (!d.one_time_sequences.empty()) {
      put(out, "one_time_sequences", d.one_time_sequences);
    } else {
      put(out, "sequence", format_knock_sequence(d.sequence));
    }
    put(out, "seq_timeout", std::to_string(d.seq_timeout));
    if (d.tcpflags.any()) put(out, "tcpflags", tcpflags_str(d.tcpflags));
    if (d.target) put(out, "target", d.target->str());
    if (!d.start_command.empty()) put(out, "start_command", d.start_command);
    if (d.start_command_6) {
      // An empty _6 key is meaningful (nothing for IPv6), so it is written out too.
      if (d.start_command_6->empty()) {
        put_key_only(out, "start_command_6");
      } else {
        put(out, "start_command_6", *d.start_command_6);
      }
    }
    if (!d.stop_command.empty()) put(out, "stop_command", d.stop_command);
    if (d.stop_command_6) {
      if (d.stop_command_6->empty()) {
        put_key_only(out, "stop_command_6");
      } else {
        put(out, "stop_command_6", *d.stop_command_6);
      }
    }
    put(out, "cmd_timeout", std::to_string(d.cmd_timeout));
    if (!d.grant.empty()) put(out, "grant", d.grant);
    if (d.tolerate_duplicates) put(out, "tolerate_duplicates", "yes");
  }
  out += dump_spa_doors(config.spa_doors, secrets);
  return out;
}

}  // namespace kg::config
