#include "policyd/control.h"

#include <algorithm>
#include <ctime>

#include "common/json.h"
#include "config/values.h"

namespace kg::policyd {

namespace {

using ipc::control::Command;
using ipc::control::Exit;
using ipc::control::Option;

constexpr int64_t kMaxId = INT64_MAX;
constexpr int64_t kMaxAuditLimit = 100000;

ipc::ControlReply reply(uint32_t id, Exit code, std::string out, std::string err) {
  ipc::ControlReply r;
  r.request_id = id;
  r.exit_code = static_cast<uint8_t>(code);
  r.out = std::move(out);
  r.err = std::move(err);
  if (!r.err.empty() && r.err.back() != '\n') r.err.push_back('\n');
  return r;
}

ipc::ControlReply ok(const Control::Request& r, std::string out) {
  return reply(r.id, Exit::ok, std::move(out), "");
}

ipc::ControlReply fail(const Control::Request& r, Exit code, std::string err) {
  return reply(r.id, code, "", std::move(err));
}

const char* status_verb(PolicyCore::GrantStatus s) {
  switch (s) {
    case PolicyCore::GrantStatus::created:
      return "created";
    case PolicyCore::GrantStatus::extended:
      return "extended";
    default:
      return "kept";
  }
}

}  // namespace

Result<std::chrono::seconds> parse_control_duration(std::string_view text) {
  auto d = config::parse_duration(text);
  if (!d) return Error{"duration '" + std::string(text) + "': " + d.error().message};
  return *d;
}

Result<int64_t> parse_control_time(std::string_view text, int64_t now_ns) {
  if (text.size() >= 12 && text.find_first_not_of("0123456789") == std::string_view::npos) {
    auto ns = ipc::control::parse_number("time", text, 0, INT64_MAX);
    if (!ns) return Error{"time '" + std::string(text) + "' is out of range"};
    return *ns;
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

Control::Handler Control::handler(Command command) {
  switch (command) {
    case Command::status:
      return &Control::status;
    case Command::grants:
      return &Control::grants;
    case Command::grant:
      return &Control::grant;
    case Command::grant_many:
      return &Control::grant_many;
    case Command::extend:
      return &Control::extend;
    case Command::revoke:
      return &Control::revoke;
    case Command::audit:
      return &Control::audit;
    case Command::profiles:
      return &Control::profiles;
    case Command::doors:
      return &Control::doors;
    case Command::reload:
      return &Control::reload;
    case Command::login_lockout:
      return &Control::login_lockout;
  }
  return nullptr;
}

ipc::ControlReply Control::handle(const Caller& caller, const ipc::ControlRequest& request) {
  const uint32_t rid = request.request_id;
  if (auto refused = ipc::control::refuse_role(caller.role)) {
    return reply(rid, refused->exit, "", refused->message);
  }
  const ipc::control::CommandSpec* spec = ipc::control::find_command(request.command);
  if (spec == nullptr) {
    return reply(rid, Exit::usage, "",
                 "knockgate-policyd: unknown command '" + request.command + "'");
  }
  if (auto refused = ipc::control::refuse_command(*spec, caller.role)) {
    return reply(rid, refused->exit, "", refused->message);
  }
  const ipc::control::Parsed parsed = ipc::control::parse(*spec, request.args, caller.role);
  if (parsed.refusal) return reply(rid, parsed.refusal->exit, "", parsed.refusal->message);
  const ipc::control::Args& args = parsed.args;
  if (args.as && !config::valid_account_name(*args.as)) {
    return reply(rid, Exit::usage, "", "--as needs a user name");
  }
  Request r{rid,
            caller,
            args,
            args.as ? "web:" + *args.as : "ctl:" + caller.user,
            caller.role == ipc::Role::webd ? ipc::GrantMethod::api : ipc::GrantMethod::ctl,
            std::nullopt};
  if (const std::string* text = args.get(Option::for_duration)) {
    auto d = parse_control_duration(*text);
    if (!d) return reply(rid, Exit::usage, "", d.error().message);
    r.duration = *d;
  }
  return (this->*handler(spec->id))(r);
}

ipc::ControlReply Control::status(const Request& r) {
  const StatusInfo s = hooks_.status();
  return ok(r, r.args.json ? status_json(s, core_) : status_text(s, core_));
}

ipc::ControlReply Control::grants(const Request& r) {
  GrantFilter f;
  f.all = r.args.has(Option::all);
  if (const std::string* source = r.args.get(Option::source)) {
    auto addr = IpAddr::parse(*source);
    if (!addr) return fail(r, Exit::usage, "--source: not an address: " + *source);
    f.source = addr->str();
  }
  if (const std::string* profile = r.args.get(Option::profile)) f.profile = *profile;
  auto rows = core_.grant_rows(f);
  if (!rows) return fail(r, Exit::failed, "database: " + rows.error().message);
  if (!r.args.json) return ok(r, grants_table(*rows));
  json::Writer w;
  w.begin_object().key("grants").begin_array();
  for (const auto& g : *rows) grant_json(w, g, core_.find_profile(g.profile));
  w.end_array().end_object();
  return ok(r, w.take() + "\n");
}

Result<std::vector<IpAddr>> Control::client_sources(const std::vector<std::string>& words) {
  std::vector<IpAddr> sources;
  for (const std::string& word : words) {
    auto addr = IpAddr::parse(word);
    if (!addr) return Error{"not an IP address: '" + word + "'"};
    if (auto why = never_a_client(*addr)) {
      return Error{"refusing a grant for " + word + ": " + std::string(*why) +
                   " is never a client's source"};
    }
    sources.push_back(*addr);
  }
  return sources;
}

ipc::ControlReply Control::grant(const Request& r) {
  auto sources = client_sources({r.args.positional[0]});
  if (!sources) return fail(r, Exit::usage, sources.error().message);
  const std::string& profile = r.args.positional[1];
  if (core_.find_profile(profile) == nullptr) {
    return fail(r, Exit::not_found, "no profile named '" + profile + "'");
  }
  auto results = core_.grant_many(*sources, profile, r.method, r.actor, r.duration);
  if (!results) return fail(r, Exit::failed, results.error().message);
  const auto& g = results->front();
  if (g.status == PolicyCore::GrantStatus::failed) {
    return fail(r, Exit::failed,
                "grant for " + g.grant.source + " failed: " + g.grant.failure + "\n");
  }
  return ok(r, one_grant(g.grant, core_.find_profile(g.grant.profile), status_verb(g.status),
                         r.args.json));
}

ipc::ControlReply Control::grant_many(const Request& r) {
  const std::string& profile = r.args.positional[0];
  auto sources = client_sources({r.args.positional.begin() + 1, r.args.positional.end()});
  if (!sources) return fail(r, Exit::usage, sources.error().message);
  if (core_.find_profile(profile) == nullptr) {
    return fail(r, Exit::not_found, "no profile named '" + profile + "'");
  }
  auto results = core_.grant_many(*sources, profile, r.method, r.actor, r.duration);
  if (!results) return fail(r, Exit::failed, results.error().message);
  size_t failed = 0;
  std::string failures;
  for (const auto& g : *results) {
    if (g.status == PolicyCore::GrantStatus::failed) {
      ++failed;
      failures += "grant for " + g.grant.source + " failed: " + g.grant.failure + "\n";
    }
  }
  const Exit code = failed ? Exit::failed : Exit::ok;
  if (!r.args.json) {
    return reply(r.id, code, std::to_string(results->size() - failed) + " grant(s) in effect\n",
                 failures);
  }
  json::Writer w;
  w.begin_object().key("grants").begin_array();
  for (const auto& g : *results) grant_json(w, g.grant, core_.find_profile(g.grant.profile));
  w.end_array().end_object();
  return reply(r.id, code, w.take() + "\n", failures);
}

ipc::ControlReply Control::extend(const Request& r) {
  auto id = ipc::control::parse_number("extend", r.args.positional[0], 1, kMaxId);
  if (!id) return fail(r, Exit::usage, id.error().message);
  auto extended = core_.extend(*id, r.duration, r.actor);
  if (!extended) return fail(r, Exit::failed, extended.error().message);
  if (!extended->has_value()) {
    return fail(r, Exit::not_found, "no active grant " + std::to_string(*id));
  }
  const auto& g = **extended;
  if (g.status == PolicyCore::GrantStatus::failed) {
    return fail(r, Exit::failed, "extension not installed: kernel refused it");
  }
  return ok(r, one_grant(g.grant, core_.find_profile(g.grant.profile),
                         g.status == PolicyCore::GrantStatus::extended ? "extended" : "unchanged",
                         r.args.json));
}

ipc::ControlReply Control::revoke(const Request& r) {
  const std::string& target = r.args.positional[0];
  Result<std::vector<GrantRow>> revoked = std::vector<GrantRow>{};
  if (!target.empty() && target.find_first_not_of("0123456789") == std::string::npos) {
    auto id = ipc::control::parse_number("revoke", target, 0, kMaxId);
    if (!id) return fail(r, Exit::usage, id.error().message);
    revoked = core_.revoke_id(*id, r.actor);
  } else if (auto addr = IpAddr::parse(target)) {
    revoked = core_.revoke_source(*addr, r.actor);
  } else {
    return fail(r, Exit::usage, "revoke: '" + target + "' is neither a grant id nor an address");
  }
  if (!revoked) return fail(r, Exit::failed, revoked.error().message);
  if (revoked->empty()) return fail(r, Exit::not_found, "no active grant matches '" + target + "'");
  // Success means the kernel state is gone; the database record may still be owed.
  std::string pending;
  for (const auto& g : *revoked) {
    if (pending.empty()) pending = core_.grant_end_pending(g.id);
  }
  if (r.args.json) {
    json::Writer w;
    w.begin_object().key("revoked").begin_array();
    for (const auto& g : *revoked) grant_json(w, g, core_.find_profile(g.profile));
    w.end_array().key("record_pending").value(!pending.empty());
    if (!pending.empty()) w.key("record_error").value(pending);
    w.end_object();
    return ok(r, w.take() + "\n");
  }
  std::string out;
  for (const auto& g : *revoked) {
    out += "revoked grant " + std::to_string(g.id) + ": " + g.source + " " + g.profile + "\n";
  }
  if (!pending.empty()) {
    out += "database record pending (" + pending + "); policyd retries until it is written\n";
  }
  return ok(r, out);
}

ipc::ControlReply Control::audit(const Request& r) {
  AuditFilter f;
  const int64_t now = wall_now_ns();
  for (const auto& [option, target] :
       {std::pair{Option::since, &f.since_ns}, std::pair{Option::until, &f.until_ns}}) {
    if (const std::string* text = r.args.get(option)) {
      auto t = parse_control_time(*text, now);
      if (!t) {
        return fail(r, Exit::usage,
                    std::string(ipc::control::option(option).name) + ": " + t.error().message);
      }
      *target = *t;
    }
  }
  if (const std::string* text = r.args.get(Option::limit)) {
    auto n = ipc::control::parse_number("--limit", *text, 1, INT64_MAX);
    if (!n) return fail(r, Exit::usage, n.error().message);
    f.limit = std::min(*n, kMaxAuditLimit);
  }
  if (const std::string* text = r.args.get(Option::before)) {
    auto n = ipc::control::parse_number("--before", *text, 1, kMaxId);
    if (!n) return fail(r, Exit::usage, n.error().message);
    f.before_id = *n;
  }
  if (const std::string* source = r.args.get(Option::source)) {
    auto addr = IpAddr::parse(*source);
    f.source = addr ? addr->str() : *source;
  }
  if (const std::string* kind = r.args.get(Option::kind)) f.kind = *kind;
  core_.flush_audit();
  auto rows = core_.store().audit_query(f);
  if (!rows) return fail(r, Exit::failed, "database: " + rows.error().message);
  const bool more = static_cast<int64_t>(rows->size()) == f.limit;
  return ok(r, r.args.json ? audit_json(*rows, more) : audit_text(*rows, more));
}

ipc::ControlReply Control::profiles(const Request& r) {
  return ok(r, profiles_output(hooks_.config(), r.args.json));
}

ipc::ControlReply Control::doors(const Request& r) {
  return ok(r, doors_output(hooks_.config(), r.args.json));
}

ipc::ControlReply Control::reload(const Request& r) {
  auto summary = hooks_.reload();
  if (!summary) return fail(r, Exit::failed, summary.error().message);
  if (!r.args.json) return ok(r, *summary + "\n");
  json::Writer w;
  w.begin_object().key("reloaded").value(true).key("summary").value(*summary).end_object();
  return ok(r, w.take() + "\n");
}

// webd reports that failed console logins made an account (--account) or a source wait;
// the row goes to the audit log as web_login_lockout. Values are options, never
// positional words, so a user name that looks like an option is still just a value.
ipc::ControlReply Control::login_lockout(const Request& r) {
  const std::string* source = r.args.get(Option::source);
  const auto address = source ? IpAddr::parse(*source) : std::nullopt;
  if (!address) return fail(r, Exit::usage, "login-lockout: --source needs an address");
  int64_t numbers[2] = {};
  const Option names[2] = {Option::failures, Option::delay};
  for (int i = 0; i < 2; ++i) {
    const std::string* text = r.args.get(names[i]);
    const std::string what = "login-lockout: " + std::string(ipc::control::option(names[i]).name);
    if (text == nullptr) return fail(r, Exit::usage, what + " needs a number");
    auto n = ipc::control::parse_number(what, *text, 0, 999'999'999'999);
    if (!n) return fail(r, Exit::usage, n.error().message);
    numbers[i] = *n;
  }
  const std::string* account = r.args.get(Option::account);
  if (account && (account->empty() || account->size() > 64)) {
    return fail(r, Exit::usage, "login-lockout: --account needs 1 to 64 bytes");
  }
  json::Writer w;
  w.begin_object().key("scope").value(account ? "account" : "source");
  if (account) w.key("account").value(*account);
  w.key("failures").value(numbers[0]).key("delay_s").value(numbers[1]).end_object();
  core_.audit_login_lockout(address->str(), w.str());
  return ok(r, r.args.json ? "{\"audited\":true}\n" : "");
}

}  // namespace kg::policyd
