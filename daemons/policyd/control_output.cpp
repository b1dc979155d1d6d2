#include "policyd/control_output.h"

#include <cstdio>
#include <ctime>

#include "config/values.h"

namespace kg::policyd {
namespace {

std::string fwmark_text(const GrantProfile* p) {
  if (p == nullptr || p->fwmark_mask == 0) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%08x/0x%08x", p->fwmark, p->fwmark_mask);
  return buf;
}

void value_or_null(json::Writer& w, bool present, std::string_view text) {
  if (present) {
    w.value(text);
  } else {
    w.null();
  }
}

std::string status_value_json(const ipc::StatusEntry& e) {
  if (const auto* n = std::get_if<uint64_t>(&e.value)) return std::to_string(*n);
  return json::quote(std::get<std::string>(e.value));
}

std::string status_value_text(const ipc::StatusEntry& e) {
  if (const auto* n = std::get_if<uint64_t>(&e.value)) return std::to_string(*n);
  return std::get<std::string>(e.value);
}

std::vector<std::string> strings_of_prefixes(const std::vector<IpPrefix>& list) {
  std::vector<std::string> out;
  for (const auto& p : list) out.push_back(p.str());
  return out;
}

void string_array(json::Writer& w, const std::vector<std::string>& items) {
  w.begin_array();
  for (const auto& s : items) w.value(s);
  w.end_array();
}

// One profile's JSON object and its text lines.
void profile_output(const config::Profile& p, json::Writer& w, std::string& out) {
  std::vector<std::string> exposures, allow, routes;
  for (const auto& e : p.exposures) exposures.push_back(config::format_exposure(e));
  for (const auto& r : p.allow) allow.push_back(config::format_allow({r}));
  for (const auto& r : p.routes) routes.push_back(config::format_route(r));
  const std::string revoke = p.revoke == config::Revoke::all_flows ? "all" : "new";
  w.begin_object()
      .key("name")
      .value(p.name)
      .key("direction")
      .value(config::direction_name(p.direction));
  w.key("exposures");
  string_array(w, exposures);
  w.key("allow");
  string_array(w, allow);
  w.key("destinations");
  string_array(w, strings_of_prefixes(p.destinations));
  w.key("sources");
  string_array(w, strings_of_prefixes(p.sources));
  w.key("fwmark");
  value_or_null(w, p.fwmark.has_value(), p.fwmark ? config::format_fwmark(*p.fwmark) : "");
  w.key("table");
  if (p.table) {
    w.value(static_cast<uint64_t>(*p.table));
  } else {
    w.null();
  }
  w.key("routes");
  string_array(w, routes);
  w.key("lifetime_s").value(static_cast<int64_t>(p.lifetime.count()));
  w.key("max_lifetime_s").value(static_cast<int64_t>(p.max_lifetime.count()));
  w.key("revoke").value(revoke);
  w.end_object();
  out += p.name + " (" + config::direction_name(p.direction) + ")\n";
  for (const auto& e : exposures) out += "  expose " + e + "\n";
  if (!allow.empty()) out += "  allow " + config::format_allow(p.allow) + "\n";
  if (!p.destinations.empty()) {
    out += "  destination " + config::format_prefix_list(p.destinations) + "\n";
  }
  if (!p.sources.empty()) out += "  sources " + config::format_prefix_list(p.sources) + "\n";
  if (p.fwmark) out += "  fwmark " + config::format_fwmark(*p.fwmark) + "\n";
  if (p.table) out += "  table " + std::to_string(*p.table) + "\n";
  for (const auto& r : routes) out += "  route " + r + "\n";
  out += "  lifetime " + config::format_duration(p.lifetime) + ", max " +
         config::format_duration(p.max_lifetime) + ", revoke " + revoke + "\n";
}

}  // namespace

std::string iso_time(int64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  const int ms = static_cast<int>((ns % 1'000'000'000) / 1'000'000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms < 0 ? 0 : ms);
  return buf;
}

void grant_json(json::Writer& w, const GrantRow& g, const GrantProfile* profile) {
  w.begin_object().key("id").value(g.id).key("source").value(g.source);
  w.key("profile").value(g.profile).key("method").value(g.method).key("origin").value(g.origin);
  w.key("created_ns").value(g.created_ns).key("created").value(iso_time(g.created_ns));
  w.key("expires_ns").value(g.expires_ns).key("expires").value(iso_time(g.expires_ns));
  w.key("max_expires_ns").value(g.max_expires_ns).key("state").value(g.state);
  w.key("revoked_by");
  value_or_null(w, g.state == "revoked" && !g.ended_by.empty(), g.ended_by);
  if (g.ended_ns != 0) w.key("ended_ns").value(g.ended_ns);
  if (!g.failure.empty()) w.key("failure").value(g.failure);
  const std::string mark = fwmark_text(profile);
  w.key("fwmark");
  value_or_null(w, !mark.empty(), mark);
  w.end_object();
}

std::string grants_table(const std::vector<GrantRow>& rows) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-8s %-39s %-16s %-6s %-16s %-24s %s\n", "ID", "SOURCE",
                "PROFILE", "METHOD", "ORIGIN", "EXPIRES", "STATE");
  out += line;
  for (const GrantRow& g : rows) {
    std::string state = g.state;
    if (g.state == "revoked" && !g.ended_by.empty()) state += " by " + g.ended_by;
    if (!g.failure.empty()) state += ": " + g.failure;
    std::snprintf(line, sizeof line, "%-8lld %-39s %-16s %-6s %-16s %-24s %s\n",
                  static_cast<long long>(g.id), g.source.c_str(), g.profile.c_str(),
                  g.method.c_str(), g.origin.c_str(), iso_time(g.expires_ns).c_str(),
                  state.c_str());
    out += line;
  }
  return out;
}

std::string one_grant(const GrantRow& g, const GrantProfile* profile, const char* verb, bool json) {
  if (json) {
    json::Writer out;
    out.begin_object().key("grant");
    grant_json(out, g, profile);
    out.end_object();
    return out.take() + "\n";
  }
  return std::string(verb) + " grant " + std::to_string(g.id) + ": " + g.source + " " + g.profile +
         " until " + iso_time(g.expires_ns) + "\n";
}

std::string status_json(const StatusInfo& s, const PolicyCore& core) {
  json::Writer w;
  w.begin_object().key("policyd").begin_object();
  w.key("version").value(s.version).key("pid").value(s.pid).key("uptime_s").value(s.uptime_s);
  w.key("grants_active").value(static_cast<uint64_t>(core.active_grant_count()));
  w.key("events_received").value(s.events_received);
  w.key("grants_expired").value(core.grants_expired());
  w.key("expiry_worst_late_us").value(core.worst_expiry_lateness_us());
  for (const auto& e : s.policyd_extra) w.key(e.key).raw(status_value_json(e));
  w.key("kernel").begin_object().key("features").value(s.kernel_features).end_object();
  w.end_object();
  w.key("captured");
  if (s.captured) {
    w.begin_object().key("connected").value(true).key("age_ms").value(s.captured_age_ms);
    for (const auto& e : *s.captured) w.key(e.key).raw(status_value_json(e));
    w.end_object();
  } else {
    w.begin_object().key("connected").value(false).end_object();
  }
  w.end_object();
  return w.take() + "\n";
}

std::string status_text(const StatusInfo& s, const PolicyCore& core) {
  std::string out = "policyd " + s.version + " pid " + std::to_string(s.pid) + ", up " +
                    std::to_string(s.uptime_s) + " s\n";
  out += "  grants active:    " + std::to_string(core.active_grant_count()) + "\n";
  out += "  events received:  " + std::to_string(s.events_received) + "\n";
  out += "  grants expired:   " + std::to_string(core.grants_expired()) + " (worst " +
         std::to_string(core.worst_expiry_lateness_us()) + " us late)\n";
  for (const auto& e : s.policyd_extra) out += "  " + e.key + ": " + status_value_text(e) + "\n";
  out += "  kernel: " + s.kernel_features + "\n";
  if (s.captured) {
    out += "captured (as of " + std::to_string(s.captured_age_ms) + " ms ago)\n";
    for (const auto& e : *s.captured) out += "  " + e.key + ": " + status_value_text(e) + "\n";
  } else {
    out += "captured: not connected\n";
  }
  return out;
}

std::string audit_json(const std::vector<AuditRecord>& rows, bool more) {
  json::Writer w;
  w.begin_object().key("entries").begin_array();
  for (const auto& r : rows) {
    w.begin_object().key("id").value(r.id).key("time_ns").value(r.time_ns);
    w.key("time").value(iso_time(r.time_ns)).key("kind").value(r.kind).key("door").value(r.door);
    w.key("source").value(r.source).key("detail").value(r.detail).end_object();
  }
  w.end_array().key("next_before");
  if (more && !rows.empty()) {
    w.value(rows.back().id);
  } else {
    w.null();
  }
  w.end_object();
  return w.take() + "\n";
}

std::string audit_text(const std::vector<AuditRecord>& rows, bool more) {
  std::string out;
  for (const auto& r : rows) {
    out += std::to_string(r.id) + " " + iso_time(r.time_ns) + " " + r.kind;
    if (!r.door.empty()) out += " door=" + r.door;
    if (!r.source.empty()) out += " source=" + r.source;
    if (!r.detail.empty()) out += " " + r.detail;
    out += "\n";
  }
  if (more && !rows.empty()) out += "(more: --before " + std::to_string(rows.back().id) + ")\n";
  return out;
}

std::string profiles_output(const config::Config& c, bool json) {
  std::string out;
  json::Writer w;
  w.begin_object().key("profiles").begin_array();
  for (const config::Profile& p : c.profiles) profile_output(p, w, out);
  w.end_array().end_object();
  return json ? w.take() + "\n" : out;
}

std::string doors_output(const config::Config& c, bool json) {
  std::string out;
  json::Writer w;
  w.begin_object().key("doors").begin_array();
  for (const config::Door& d : c.doors) {
    const bool one_time = !d.one_time_sequences.empty();
    const std::string seq = one_time ? "" : config::format_knock_sequence(d.sequence);
    w.begin_object().key("name").value(d.name).key("sequence");
    value_or_null(w, !one_time, seq);
    w.key("seq_timeout").value(d.seq_timeout).key("tcpflags").value(tcpflags_str(d.tcpflags));
    w.key("grant");
    value_or_null(w, !d.grant.empty(), d.grant);
    w.key("one_time").value(one_time).key("method").value("knock").end_object();
    out += d.name + ": " + (one_time ? "one-time sequences " + d.one_time_sequences : seq) +
           ", timeout " + std::to_string(d.seq_timeout) + " s" +
           (d.grant.empty() ? "" : ", grant " + d.grant) + "\n";
  }
  w.end_array().end_object();
  return json ? w.take() + "\n" : out;
}

}  // namespace kg::policyd
