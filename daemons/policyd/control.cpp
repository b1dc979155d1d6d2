#include "policyd/control.h"

#include <cstdio>
#include <ctime>
#include <map>
#include <set>

#include "config/values.h"
#include "policyd/json.h"

namespace kg::policyd {

namespace {

constexpr const char* kProgram = "knockgate-policyd";

// Options that take a value, and flags, per command.
struct Spec {
  std::set<std::string> with_value;
  std::set<std::string> flags;
  size_t min_positional = 0;
  size_t max_positional = 0;
  const char* usage;
  bool changes_state = false;
  bool webd_may = true;
};

const std::map<std::string, Spec>& specs() {
  static const std::map<std::string, Spec> table = {
      {"status", {{}, {}, 0, 0, "status [--json]", false, true}},
      {"grants",
       {{"--source", "--profile"},
        {"--all"},
        0,
        0,
        "grants [--source ADDR] [--profile P] [--all] [--json]",
        false,
        true}},
      {"grant",
       {{"--for"}, {}, 2, 2, "grant SOURCE PROFILE [--for DURATION] [--json]", true, true}},
      {"grant-many",
       {{"--for"},
        {},
        2,
        100000,
        "grant-many PROFILE SOURCE... [--for DURATION] [--json]",
        true,
        false}},
      {"extend", {{"--for"}, {}, 1, 1, "extend ID [--for DURATION] [--json]", true, true}},
      {"revoke", {{}, {}, 1, 1, "revoke ID|SOURCE [--json]", true, true}},
      {"audit",
       {{"--since", "--until", "--source", "--kind", "--limit", "--before"},
        {},
        0,
        0,
        "audit [--since T] [--until T] [--source A] [--kind K] [--limit N] [--before ID] "
        "[--json]",
        false,
        true}},
      {"profiles", {{}, {}, 0, 0, "profiles [--json]", false, true}},
      {"doors", {{}, {}, 0, 0, "doors [--json]", false, true}},
      {"reload", {{}, {}, 0, 0, "reload [--json]", true, false}},
      {"login-lockout",
       {{"--account", "--source", "--failures", "--delay"},
        {},
        0,
        0,
        "login-lockout [--account NAME] --source ADDR --failures N --delay SECONDS (webd only)",
        false,
        true}},
  };
  return table;
}

struct Args {
  bool json = false;
  std::optional<std::string> as;
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::set<std::string> flags;
};

ipc::ControlReply reply(uint32_t id, uint8_t code, std::string out, std::string err) {
  ipc::ControlReply r;
  r.request_id = id;
  r.exit_code = code;
  r.out = std::move(out);
  r.err = std::move(err);
  if (!r.err.empty() && r.err.back() != '\n') r.err.push_back('\n');
  return r;
}

// webd reports that failed console logins made an account (--account) or a source wait;
// the row goes to the audit log as web_login_lockout. Values are options, never
// positional words, so a user name that looks like an option is still just a value.
ipc::ControlReply login_lockout(uint32_t rid, const Caller& caller, const Args& args,
                                PolicyCore& core) {
  if (caller.role != ipc::Role::webd) {
    return reply(rid, exit_code::denied, "", "login-lockout: only webd reports login lockouts");
  }
  const auto option = [&args](const char* name) -> std::optional<std::string> {
    auto it = args.options.find(name);
    if (it == args.options.end()) return std::nullopt;
    return it->second;
  };
  const auto source = option("--source");
  const auto address = source ? IpAddr::parse(*source) : std::nullopt;
  if (!address) return reply(rid, exit_code::usage, "", "login-lockout: --source needs an address");
  uint64_t numbers[2] = {};
  const char* names[2] = {"--failures", "--delay"};
  for (int i = 0; i < 2; ++i) {
    const auto text = option(names[i]);
    if (!text || text->empty() || text->size() > 12 ||
        text->find_first_not_of("0123456789") != std::string::npos) {
      return reply(rid, exit_code::usage, "",
                   std::string("login-lockout: ") + names[i] + " needs a number");
    }
    numbers[i] = std::stoull(*text);
  }
  const auto account = option("--account");
  if (account && (account->empty() || account->size() > 64)) {
    return reply(rid, exit_code::usage, "", "login-lockout: --account needs 1 to 64 bytes");
  }
  json::Writer w;
  w.begin_object().key("scope").value(account ? "account" : "source");
  if (account) w.key("account").value(*account);
  w.key("failures").value(numbers[0]).key("delay_s").value(numbers[1]).end_object();
  core.audit_login_lockout(address->str(), w.str());
  return reply(rid, exit_code::ok, args.json ? "{\"audited\":true}\n" : "", "");
}

std::string fwmark_text(const GrantProfile* p) {
  if (p == nullptr || p->fwmark_mask == 0) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%08x/0x%08x", p->fwmark, p->fwmark_mask);
  return buf;
}

void grant_json(json::Writer& w, const GrantRow& g, const GrantProfile* profile) {
  w.begin_object()
      .key("id")
      .value(g.id)
      .key("source")
      .value(g.source)
      .key("profile")
      .value(g.profile)
      .key("method")
      .value(g.method)
      .key("origin")
      .value(g.origin)
      .key("created_ns")
      .value(g.created_ns)
      .key("created")
      .value(iso_time(g.created_ns))
      .key("expires_ns")
      .value(g.expires_ns)
      .key("expires")
      .value(iso_time(g.expires_ns))
      .key("max_expires_ns")
      .value(g.max_expires_ns)
      .key("state")
      .value(g.state);
  w.key("revoked_by");
  if (g.state == "revoked" && !g.ended_by.empty()) {
    w.value(g.ended_by);
  } else {
    w.null();
  }
  if (g.ended_ns != 0) w.key("ended_ns").value(g.ended_ns);
  if (!g.failure.empty()) w.key("failure").value(g.failure);
  const std::string mark = fwmark_text(profile);
  w.key("fwmark");
  if (mark.empty()) {
    w.null();
  } else {
    w.value(mark);
  }
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

Result<std::chrono::seconds> parse_control_duration(std::string_view text) {
  auto d = config::parse_duration(text);
  if (!d) return Error{"duration '" + std::string(text) + "': " + d.error().message};
  return *d;
}

Result<int64_t> parse_control_time(std::string_view text, int64_t now_ns) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos &&
      text.size() >= 12) {
    try {
      return static_cast<int64_t>(std::stoll(std::string(text)));
    } catch (...) {
      return Error{"time '" + std::string(text) + "' is out of range"};
    }
  }
  if (text.size() >= 19 && text[4] == '-' && text[10] == 'T') {
    struct tm tm {};
    const std::string s(text);
    const char* end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (end != nullptr && (*end == '\0' || (end[0] == 'Z' && end[1] == '\0'))) {
      return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000;
    }
    return Error{"time '" + s + "': expected YYYY-MM-DDTHH:MM:SS[Z] (UTC)"};
  }
  auto d = config::parse_duration(text);
  if (!d) {
    return Error{"time '" + std::string(text) +
                 "': expected ns since the epoch, YYYY-MM-DDTHH:MM:SSZ or a duration ago (10m)"};
  }
  return now_ns - static_cast<int64_t>(d->count()) * 1'000'000'000;
}

ipc::ControlReply Control::handle(const Caller& caller, const ipc::ControlRequest& request) {
  const uint32_t rid = request.request_id;
  const auto spec_it = specs().find(request.command);
  if (caller.role == ipc::Role::captured || caller.role == ipc::Role::verdictd) {
    return reply(rid, exit_code::denied, "",
                 std::string(kProgram) + ": role " + ipc::role_name(caller.role) +
                     " may not run control commands");
  }
  if (spec_it == specs().end()) {
    return reply(rid, exit_code::usage, "",
                 std::string(kProgram) + ": unknown command '" + request.command + "'");
  }
  const Spec& spec = spec_it->second;
  if (caller.role == ipc::Role::webd && !spec.webd_may) {
    return reply(rid, exit_code::denied, "", request.command + ": not permitted for webd");
  }

  // ---- arguments
  Args args;
  size_t i = 0;
  const auto& a = request.args;
  if (a.size() >= 1 && a[0] == "--as") {
    if (caller.role != ipc::Role::webd) {
      return reply(rid, exit_code::denied, "", "--as: only webd may act for another user");
    }
    if (a.size() < 2 || a[1].empty() || !config::valid_account_name(a[1])) {
      return reply(rid, exit_code::usage, "", "--as needs a user name");
    }
    args.as = a[1];
    i = 2;
  }
  for (; i < a.size(); ++i) {
    const std::string& t = a[i];
    if (t == "--json") {
      args.json = true;
    } else if (t == "--as") {
      return reply(rid, caller.role == ipc::Role::webd ? exit_code::usage : exit_code::denied, "",
                   "--as must be the first two arguments (webd only)");
    } else if (spec.flags.count(t) != 0) {
      args.flags.insert(t);
    } else if (spec.with_value.count(t) != 0) {
      if (i + 1 >= a.size()) return reply(rid, exit_code::usage, "", t + " needs a value");
      args.options[t] = a[++i];
    } else if (t.size() > 1 && t[0] == '-' && t != "-") {
      return reply(rid, exit_code::usage, "",
                   request.command + ": unknown option '" + t + "'\nusage: " + spec.usage);
    } else {
      args.positional.push_back(t);
    }
  }
  if (args.positional.size() < spec.min_positional ||
      args.positional.size() > spec.max_positional) {
    return reply(rid, exit_code::usage, "", std::string("usage: ") + spec.usage);
  }
  if (caller.role == ipc::Role::webd && spec.changes_state && !args.as) {
    return reply(rid, exit_code::denied, "",
                 request.command + ": webd must say which web user acts (--as USER)");
  }
  const std::string actor = args.as ? "web:" + *args.as : "ctl:" + caller.user;
  const ipc::GrantMethod method =
      caller.role == ipc::Role::webd ? ipc::GrantMethod::api : ipc::GrantMethod::ctl;

  std::optional<std::chrono::seconds> duration;
  if (auto f = args.options.find("--for"); f != args.options.end()) {
    auto d = parse_control_duration(f->second);
    if (!d) return reply(rid, exit_code::usage, "", d.error().message);
    duration = *d;
  }
  const std::string& cmd = request.command;
  json::Writer w;

  // ---- commands
  if (cmd == "status") {
    const StatusInfo s = hooks_.status();
    if (args.json) {
      w.begin_object().key("policyd").begin_object();
      w.key("version").value(s.version).key("pid").value(s.pid).key("uptime_s").value(s.uptime_s);
      w.key("grants_active").value(static_cast<uint64_t>(core_.active_grant_count()));
      w.key("events_received").value(s.events_received);
      w.key("grants_expired").value(core_.grants_expired());
      w.key("expiry_worst_late_us").value(core_.worst_expiry_lateness_us());
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
      return reply(rid, exit_code::ok, w.take() + "\n", "");
    }
    std::string out = "policyd " + s.version + " pid " + std::to_string(s.pid) + ", up " +
                      std::to_string(s.uptime_s) + " s\n";
    out += "  grants active:    " + std::to_string(core_.active_grant_count()) + "\n";
    out += "  events received:  " + std::to_string(s.events_received) + "\n";
    out += "  grants expired:   " + std::to_string(core_.grants_expired()) + " (worst " +
           std::to_string(core_.worst_expiry_lateness_us()) + " us late)\n";
    for (const auto& e : s.policyd_extra) out += "  " + e.key + ": " + status_value_text(e) + "\n";
    out += "  kernel: " + s.kernel_features + "\n";
    if (s.captured) {
      out += "captured (as of " + std::to_string(s.captured_age_ms) + " ms ago)\n";
      for (const auto& e : *s.captured) out += "  " + e.key + ": " + status_value_text(e) + "\n";
    } else {
      out += "captured: not connected\n";
    }
    return reply(rid, exit_code::ok, out, "");
  }

  if (cmd == "grants") {
    GrantFilter f;
    f.all = args.flags.count("--all") != 0;
    if (auto s = args.options.find("--source"); s != args.options.end()) {
      auto addr = IpAddr::parse(s->second);
      if (!addr) return reply(rid, exit_code::usage, "", "--source: not an address: " + s->second);
      f.source = addr->str();
    }
    if (auto p = args.options.find("--profile"); p != args.options.end()) f.profile = p->second;
    auto rows = core_.grant_rows(f);
    if (!rows) return reply(rid, exit_code::error, "", "database: " + rows.error().message);
    if (!args.json) return reply(rid, exit_code::ok, grants_table(*rows), "");
    w.begin_object().key("grants").begin_array();
    for (const auto& g : *rows) grant_json(w, g, core_.find_profile(g.profile));
    w.end_array().end_object();
    return reply(rid, exit_code::ok, w.take() + "\n", "");
  }

  auto one_grant = [&](const GrantRow& g, const char* verb) {
    if (args.json) {
      json::Writer out;
      out.begin_object().key("grant");
      grant_json(out, g, core_.find_profile(g.profile));
      out.end_object();
      return reply(rid, exit_code::ok, out.take() + "\n", "");
    }
    return reply(rid, exit_code::ok,
                 std::string(verb) + " grant " + std::to_string(g.id) + ": " + g.source + " " +
                     g.profile + " until " + iso_time(g.expires_ns) + "\n",
                 "");
  };

  if (cmd == "grant" || cmd == "grant-many") {
    std::vector<IpAddr> sources;
    std::string profile;
    const size_t first_source = cmd == "grant" ? 0 : 1;
    profile = cmd == "grant" ? args.positional[1] : args.positional[0];
    for (size_t k = first_source; k < args.positional.size(); ++k) {
      if (cmd == "grant" && k == 1) break;
      auto addr = IpAddr::parse(args.positional[k]);
      if (!addr) {
        return reply(rid, exit_code::usage, "", "not an IP address: '" + args.positional[k] + "'");
      }
      if (auto why = never_a_client(*addr)) {
        return reply(rid, exit_code::usage, "",
                     "refusing a grant for " + args.positional[k] + ": " + std::string(*why) +
                         " is never a client's source");
      }
      sources.push_back(*addr);
    }
    if (core_.find_profile(profile) == nullptr) {
      return reply(rid, exit_code::not_found, "", "no profile named '" + profile + "'");
    }
    auto results = core_.grant_many(sources, profile, method, actor, duration);
    if (!results) return reply(rid, exit_code::error, "", results.error().message);
    size_t failed = 0;
    std::string failures;
    for (const auto& r : *results) {
      if (r.status == PolicyCore::GrantStatus::failed) {
        ++failed;
        failures += "grant for " + r.grant.source + " failed: " + r.grant.failure + "\n";
      }
    }
    if (cmd == "grant") {
      const auto& r = results->front();
      if (r.status == PolicyCore::GrantStatus::failed) {
        return reply(rid, exit_code::error, "", failures);
      }
      return one_grant(r.grant, r.status == PolicyCore::GrantStatus::created    ? "created"
                                : r.status == PolicyCore::GrantStatus::extended ? "extended"
                                                                                : "kept");
    }
    if (args.json) {
      w.begin_object().key("grants").begin_array();
      for (const auto& r : *results) grant_json(w, r.grant, core_.find_profile(r.grant.profile));
      w.end_array().end_object();
      return reply(rid, failed ? exit_code::error : exit_code::ok, w.take() + "\n", failures);
    }
    return reply(rid, failed ? exit_code::error : exit_code::ok,
                 std::to_string(results->size() - failed) + " grant(s) in effect\n", failures);
  }

  if (cmd == "extend") {
    int64_t id = 0;
    try {
      size_t used = 0;
      id = std::stoll(args.positional[0], &used);
      if (used != args.positional[0].size() || id <= 0) throw 0;
    } catch (...) {
      return reply(rid, exit_code::usage, "",
                   "extend: '" + args.positional[0] + "' is not a grant id");
    }
    auto r = core_.extend(id, duration, actor);
    if (!r) return reply(rid, exit_code::error, "", r.error().message);
    if (!r->has_value()) {
      return reply(rid, exit_code::not_found, "", "no active grant " + std::to_string(id));
    }
    const auto& g = **r;
    if (g.status == PolicyCore::GrantStatus::failed) {
      return reply(rid, exit_code::error, "", "extension not installed: kernel refused it");
    }
    return one_grant(g.grant,
                     g.status == PolicyCore::GrantStatus::extended ? "extended" : "unchanged");
  }

  if (cmd == "revoke") {
    const std::string& target = args.positional[0];
    Result<std::vector<GrantRow>> revoked = std::vector<GrantRow>{};
    if (!target.empty() && target.find_first_not_of("0123456789") == std::string::npos) {
      int64_t id = 0;
      try {
        id = std::stoll(target);
      } catch (...) {
        return reply(rid, exit_code::usage, "", "revoke: '" + target + "' is out of range");
      }
      revoked = core_.revoke_id(id, actor);
    } else if (auto addr = IpAddr::parse(target)) {
      revoked = core_.revoke_source(*addr, actor);
    } else {
      return reply(rid, exit_code::usage, "",
                   "revoke: '" + target + "' is neither a grant id nor an address");
    }
    if (!revoked) return reply(rid, exit_code::error, "", revoked.error().message);
    if (revoked->empty()) {
      return reply(rid, exit_code::not_found, "", "no active grant matches '" + target + "'");
    }
    // Success means the kernel state is gone; the database record may still be owed.
    std::string pending;
    for (const auto& g : *revoked) {
      if (pending.empty()) pending = core_.grant_end_pending(g.id);
    }
    if (args.json) {
      w.begin_object().key("revoked").begin_array();
      for (const auto& g : *revoked) grant_json(w, g, core_.find_profile(g.profile));
      w.end_array().key("record_pending").value(!pending.empty());
      if (!pending.empty()) w.key("record_error").value(pending);
      w.end_object();
      return reply(rid, exit_code::ok, w.take() + "\n", "");
    }
    std::string out;
    for (const auto& g : *revoked) {
      out += "revoked grant " + std::to_string(g.id) + ": " + g.source + " " + g.profile + "\n";
    }
    if (!pending.empty()) {
      out += "database record pending (" + pending + "); policyd retries until it is written\n";
    }
    return reply(rid, exit_code::ok, out, "");
  }

  if (cmd == "audit") {
    AuditFilter f;
    const int64_t now = wall_now_ns();
    for (const auto& [name, target] :
         {std::pair<const char*, std::optional<int64_t>*>{"--since", &f.since_ns},
          {"--until", &f.until_ns}}) {
      if (auto o = args.options.find(name); o != args.options.end()) {
        auto t = parse_control_time(o->second, now);
        if (!t)
          return reply(rid, exit_code::usage, "", std::string(name) + ": " + t.error().message);
        *target = *t;
      }
    }
    for (const auto& [name, target] :
         {std::pair<const char*, std::optional<int64_t>*>{"--limit", nullptr},
          {"--before", &f.before_id}}) {
      auto o = args.options.find(name);
      if (o == args.options.end()) continue;
      int64_t n = 0;
      try {
        size_t used = 0;
        n = std::stoll(o->second, &used);
        if (used != o->second.size() || n <= 0) throw 0;
      } catch (...) {
        return reply(rid, exit_code::usage, "",
                     std::string(name) + ": '" + o->second + "' is not a positive number");
      }
      if (target != nullptr) {
        *target = n;
      } else {
        f.limit = std::min<int64_t>(n, 100000);
      }
    }
    if (auto s = args.options.find("--source"); s != args.options.end()) {
      auto addr = IpAddr::parse(s->second);
      f.source = addr ? addr->str() : s->second;
    }
    if (auto k = args.options.find("--kind"); k != args.options.end()) f.kind = k->second;
    core_.flush_audit();
    auto rows = core_.store().audit_query(f);
    if (!rows) return reply(rid, exit_code::error, "", "database: " + rows.error().message);
    const bool more = static_cast<int64_t>(rows->size()) == f.limit;
    if (args.json) {
      w.begin_object().key("entries").begin_array();
      for (const auto& r : *rows) {
        w.begin_object()
            .key("id")
            .value(r.id)
            .key("time_ns")
            .value(r.time_ns)
            .key("time")
            .value(iso_time(r.time_ns))
            .key("kind")
            .value(r.kind)
            .key("door")
            .value(r.door)
            .key("source")
            .value(r.source)
            .key("detail")
            .value(r.detail)
            .end_object();
      }
      w.end_array().key("next_before");
      if (more && !rows->empty()) {
        w.value(rows->back().id);
      } else {
        w.null();
      }
      w.end_object();
      return reply(rid, exit_code::ok, w.take() + "\n", "");
    }
    std::string out;
    for (const auto& r : *rows) {
      out += std::to_string(r.id) + " " + iso_time(r.time_ns) + " " + r.kind;
      if (!r.door.empty()) out += " door=" + r.door;
      if (!r.source.empty()) out += " source=" + r.source;
      if (!r.detail.empty()) out += " " + r.detail;
      out += "\n";
    }
    if (more && !rows->empty()) out += "(more: --before " + std::to_string(rows->back().id) + ")\n";
    return reply(rid, exit_code::ok, out, "");
  }

  if (cmd == "profiles") {
    const config::Config& c = hooks_.config();
    std::string out;
    w.begin_object().key("profiles").begin_array();
    for (const config::Profile& p : c.profiles) {
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
      if (p.fwmark) {
        w.value(config::format_fwmark(*p.fwmark));
      } else {
        w.null();
      }
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
    w.end_array().end_object();
    return reply(rid, exit_code::ok, args.json ? w.take() + "\n" : out, "");
  }

  if (cmd == "doors") {
    const config::Config& c = hooks_.config();
    std::string out;
    w.begin_object().key("doors").begin_array();
    for (const config::Door& d : c.doors) {
      const bool one_time = !d.one_time_sequences.empty();
      const std::string seq = one_time ? "" : config::format_knock_sequence(d.sequence);
      w.begin_object().key("name").value(d.name).key("sequence");
      if (one_time) {
        w.null();
      } else {
        w.value(seq);
      }
      w.key("seq_timeout").value(d.seq_timeout).key("tcpflags").value(tcpflags_str(d.tcpflags));
      w.key("grant");
      if (d.grant.empty()) {
        w.null();
      } else {
        w.value(d.grant);
      }
      w.key("one_time").value(one_time).key("method").value("knock").end_object();
      out += d.name + ": " + (one_time ? "one-time sequences " + d.one_time_sequences : seq) +
             ", timeout " + std::to_string(d.seq_timeout) + " s" +
             (d.grant.empty() ? "" : ", grant " + d.grant) + "\n";
    }
    w.end_array().end_object();
    return reply(rid, exit_code::ok, args.json ? w.take() + "\n" : out, "");
  }

  if (cmd == "login-lockout") return login_lockout(rid, caller, args, core_);

  if (cmd == "reload") {
    auto r = hooks_.reload();
    if (!r) return reply(rid, exit_code::error, "", r.error().message);
    if (args.json) {
      w.begin_object().key("reloaded").value(true).key("summary").value(*r).end_object();
      return reply(rid, exit_code::ok, w.take() + "\n", "");
    }
    return reply(rid, exit_code::ok, *r + "\n", "");
  }
  return reply(rid, exit_code::usage, "", "unknown command '" + cmd + "'");
}

}  // namespace kg::policyd
