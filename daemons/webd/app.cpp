#include "webd/app.h"

#include <cctype>
#include <cstdio>
#include <ctime>

#include "common/addr.h"
#include "common/log.h"
#include "webd/json.h"

namespace kg::webd {
namespace {

constexpr const char* kCookie = "kg_session";
constexpr const char* kCsp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

bool is_state_changing(http::verb v) {
  return v != http::verb::get && v != http::verb::head && v != http::verb::options;
}

// Argument checks before anything goes to policyd: values never look like options.
bool valid_id(std::string_view s) {
  if (s.empty() || s.size() > 19 || s[0] == '0') return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}
bool valid_duration(std::string_view s) {
  if (s.empty() || s.size() > 8) return false;
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  if (digits == 0) return false;
  return digits == s.size() || (digits + 1 == s.size() &&
                                std::string_view("smhd").find(s.back()) != std::string_view::npos);
}
bool valid_name(std::string_view s) {  // profile names, kinds
  if (s.empty() || s.size() > 64 || !std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return false;
  }
  return true;
}
bool valid_time(std::string_view s) {  // ISO-8601 or seconds: digits, -, :, T, Z, .
  if (s.empty() || s.size() > 40 || s[0] == '-') return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '-' && c != ':' && c != 'T' &&
        c != 'Z' && c != '.' && c != '+')
      return false;
  }
  return true;
}

http::status status_for_exit(int code) {
  switch (code) {
    case 0:
      return http::status::ok;
    case 1:
      return http::status::unprocessable_entity;
    case 2:
      return http::status::bad_request;
    case 3:
      return http::status::not_found;
    case 4:
      return http::status::forbidden;
    default:
      return http::status::service_unavailable;
  }
}

std::string error_body(const std::string& message) {
  std::string m = message;
  while (!m.empty() && (m.back() == '\n' || m.back() == '\r')) m.pop_back();
  json::Writer w;
  w.begin_object().key("error").value(m).end_object();
  return w.take();
}

using ipc::control::Command;
using ipc::control::Option;

// Every request asks for policyd's --json output.
ipc::control::Args json_args() {
  ipc::control::Args a;
  a.json = true;
  return a;
}

std::string iso_time(int64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[32];
  (void)std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::string grant_json(const ipc::GrantRecord& g) {
  char mark[32];
  (void)std::snprintf(mark, sizeof mark, "0x%08x/0x%08x", g.fwmark, g.fwmark_mask);
  json::Writer w;
  w.begin_object().key("id").value(g.id).key("source").value(g.source.str());
  w.key("profile").value(g.profile).key("method").value(ipc::grant_method_name(g.method));
  w.key("origin").value(g.origin);
  w.key("created_ns").value(g.created_ns).key("created").value(iso_time(g.created_ns));
  w.key("expires_ns").value(g.expires_ns).key("expires").value(iso_time(g.expires_ns));
  w.key("state").value("active").key("revoked_by").null().key("fwmark").value(mark);
  w.end_object();
  return w.take();
}

std::optional<json::Value> reply_object(const ControlResult& r) {
  if (r.exit_code != 0) return std::nullopt;
  auto v = json::parse(r.out);
  if (!v || v->as_object() == nullptr) return std::nullopt;
  return std::move(*v);
}

App::App(Options options, const StaticFiles& files, PolicyLink& link, StreamHub& hub)
    : options_(std::move(options)),
      files_(files),
      link_(link),
      hub_(hub),
      passwords_(options_.password_file),
      tokens_(options_.token_file),
      sessions_(options_.sessions),
      throttle_(options_.login_accounts, options_.login_sources),
      started_(std::chrono::steady_clock::now()) {
  if (auto r = passwords_.load(); !r) log::warn(r.error().message + ": nobody can log in");
  if (auto r = tokens_.load(); !r) log::info(r.error().message + ": no API tokens");
  link_.on_delta([this](const ipc::GrantDelta& d) { on_delta(d); });
  link_.on_feed([this](const ipc::FeedEvent& e) { on_feed(e); });
  link_.on_snapshot([this] {
    grants_cache_valid_ = false;
    grant_json_cache_.clear();
    json::Writer w;
    w.begin_object().key("seq").value(link_.seq()).end_object();
    hub_.publish("snapshot", w.take());
  });
}

void App::on_delta(const ipc::GrantDelta& d) {
  if (d.op == ipc::GrantOp::pending) return;
  grants_cache_valid_ = false;
  if (d.op == ipc::GrantOp::remove) grant_json_cache_.erase(d.grant.id);
  ++grant_events_;
  json::Writer w;
  w.begin_object().key("op").value(ipc::grant_op_name(d.op)).key("seq").value(d.seq);
  w.key("reason").value(d.reason).key("grant").raw(grant_json(d.grant)).end_object();
  hub_.publish("grant", w.take());
}

void App::on_feed(const ipc::FeedEvent& e) {
  feed_.add(e);
  json::Writer w;
  w.begin_object().key("audit_id").value(e.audit_id).key("time_ns").value(e.time_ns);
  w.key("time").value(iso_time(e.time_ns)).key("kind").value(e.kind).key("source");
  if (e.source) {
    w.value(e.source->str());
  } else {
    w.null();
  }
  w.key("rejection").value(FeedStats::is_rejection(e.kind)).key("detail");
  // The detail is another daemon's text: read and written again (one line, escaped).
  if (auto parsed = json::parse(e.detail_json); parsed && parsed->as_object() != nullptr) {
    json::write(w, *parsed);
  } else {
    w.begin_object().end_object();
  }
  w.end_object();
  hub_.publish("feed", w.take(), true);
}

void App::add_common_headers(Response& res) const {
  res.set(http::field::server, "knockgate-webd");
  res.set("Content-Security-Policy", kCsp);
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Frame-Options", "DENY");
  res.set("Referrer-Policy", "no-referrer");
  res.set("Cross-Origin-Opener-Policy", "same-origin");
  res.set("Cross-Origin-Resource-Policy", "same-origin");
  res.set("Permissions-Policy", "camera=(), microphone=(), geolocation=()");
  if (options_.tls) res.set("Strict-Transport-Security", "max-age=31536000");
}

Response App::error_response(http::status status, unsigned version, const std::string& message,
                             bool keep_alive) const {
  Response res{status, version};
  add_common_headers(res);
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = error_body(message);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

Response App::json_response(http::status status, const Request& req, std::string body) const {
  Response res{status, req.version()};
  add_common_headers(res);
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

void App::reply(Call& c, Response res) {
  ++responses_[res.result_int()];
  if (c.req.method() == http::verb::head) {
    const auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  c.done(Reply{std::move(res), false});
}

void App::reply_error(Call& c, http::status status, const std::string& message) {
  reply(c, error_response(status, c.req.version(), message, c.req.keep_alive()));
}

void App::handle(const Request& req, const ClientInfo& client, Done done) {
  auto target = parse_target(sv(req.target()));
  static const Target kEmpty;
  Call c{req, target ? *target : kEmpty, client, done};
  if (!target) return reply_error(c, http::status::bad_request, "malformed request target");
  route(c);
}

std::optional<App::Principal> App::authenticate(const Request& req) {
  if (auto auth = req.find(http::field::authorization); auth != req.end()) {
    const std::string_view value = sv(auth->value());
    if (value.substr(0, 7) != "Bearer ") return std::nullopt;
    auto name = tokens_.verify(value.substr(7));
    if (!name) return std::nullopt;
    return Principal{*name, true, nullptr};
  }
  if (auto cookie = req.find(http::field::cookie); cookie != req.end()) {
    const std::string id = cookie_value(sv(cookie->value()), kCookie);
    if (id.empty()) return std::nullopt;
    if (const Session* s = sessions_.find(id, Clock::now())) return Principal{s->user, false, s};
  }
  return std::nullopt;
}

bool App::origin_ok(const Request& req, bool tls) const {
  auto origin = req.find(http::field::origin);
  if (origin == req.end()) {
    // No Origin: only acceptable when the browser says the request is same-origin or
    // does not say at all (scripts); the CSRF token still has to match.
    auto site = req.find("Sec-Fetch-Site");
    return site == req.end() || sv(site->value()) == "same-origin" || sv(site->value()) == "none";
  }
  auto host = req.find(http::field::host);
  if (host == req.end()) return false;
  const std::string expected =
      std::string(tls ? "https://" : "http://") + std::string(sv(host->value()));
  return sv(origin->value()) == expected;
}

bool App::check_state_change(Call& c, const Principal& p) {
  if (p.token) return true;
  if (!origin_ok(c.req, c.client.tls)) {
    ++csrf_rejected_;
    reply_error(c, http::status::forbidden, "cross-origin request refused");
    return false;
  }
  auto token = c.req.find("X-CSRF-Token");
  if (token == c.req.end() || p.session == nullptr ||
      !constant_time_equal(sv(token->value()), p.session->csrf_token)) {
    ++csrf_rejected_;
    reply_error(c, http::status::forbidden, "missing or wrong X-CSRF-Token");
    return false;
  }
  return true;
}

void App::route(Call& c) {
  const std::string& path = c.target.path;
  const http::verb method = c.req.method();
  const bool api = path.rfind("/api/", 0) == 0;

  if (!api && path != "/metrics") {
    if (method != http::verb::get && method != http::verb::head) {
      return reply_error(c, http::status::method_not_allowed, "method not allowed");
    }
    return static_file(c);
  }
  if (path == "/api/v1/login") {
    if (method != http::verb::post)
      return reply_error(c, http::status::method_not_allowed, "use POST");
    return login(c);
  }

  auto principal = authenticate(c.req);
  if (!principal) return reply_error(c, http::status::unauthorized, "login required");
  if (is_state_changing(method) && !check_state_change(c, *principal)) return;

  auto only = [&](http::verb v) {
    if (method == v || (v == http::verb::get && method == http::verb::head)) return true;
    reply_error(c, http::status::method_not_allowed, "method not allowed");
    return false;
  };

  if (path == "/metrics") {
    if (only(http::verb::get)) metrics(c);
  } else if (path == "/api/v1/logout") {
    if (only(http::verb::post)) logout(c);
  } else if (path == "/api/v1/session") {
    if (only(http::verb::get)) session_info(c, *principal);
  } else if (path == "/api/v1/status") {
    if (only(http::verb::get)) status(c);
  } else if (path == "/api/v1/grants") {
    if (method == http::verb::get || method == http::verb::head) {
      grants_get(c);
    } else if (method == http::verb::post) {
      grants_create(c, *principal);
    } else if (method == http::verb::delete_) {
      auto src = c.target.query.find("source");
      if (src == c.target.query.end()) {
        return reply_error(c, http::status::bad_request, "DELETE /api/v1/grants needs ?source=");
      }
      grant_revoke(c, *principal, src->second);
    } else {
      reply_error(c, http::status::method_not_allowed, "method not allowed");
    }
  } else if (path.rfind("/api/v1/grants/", 0) == 0) {
    std::string rest = path.substr(15);
    const size_t slash = rest.find('/');
    const std::string id = rest.substr(0, slash);
    const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (!valid_id(id)) return reply_error(c, http::status::not_found, "no such grant");
    if (action.empty()) {
      if (only(http::verb::delete_)) grant_revoke(c, *principal, id);
    } else if (action == "extend") {
      if (only(http::verb::post)) grant_extend(c, *principal, id);
    } else {
      reply_error(c, http::status::not_found, "not found");
    }
  } else if (path == "/api/v1/doors") {
    if (only(http::verb::get)) run_command(c, Command::doors, json_args(), http::status::ok);
  } else if (path == "/api/v1/profiles") {
    if (only(http::verb::get)) run_command(c, Command::profiles, json_args(), http::status::ok);
  } else if (path == "/api/v1/audit") {
    if (only(http::verb::get)) audit(c);
  } else if (path == "/api/v1/counters") {
    if (only(http::verb::get)) counters(c);
  } else if (path == "/api/v1/stream") {
    if (only(http::verb::get)) stream(c);
  } else {
    reply_error(c, http::status::not_found, "not found");
  }
}

void App::login(Call& c) {
  if (!origin_ok(c.req, c.client.tls)) {
    ++csrf_rejected_;
    return reply_error(c, http::status::forbidden, "cross-origin request refused");
  }
  auto ct = c.req.find(http::field::content_type);
  if (ct == c.req.end() || sv(ct->value()).substr(0, 16) != "application/json") {
    return reply_error(c, http::status::unsupported_media_type, "send application/json");
  }
  auto body = json::parse(c.req.body());
  const json::Value* user = body ? body->find("username") : nullptr;
  const json::Value* password = body ? body->find("password") : nullptr;
  if (user == nullptr || password == nullptr || user->as_string() == nullptr ||
      password->as_string() == nullptr || user->as_string()->size() > 64 ||
      password->as_string()->size() > 1024) {
    return reply_error(c, http::status::bad_request,
                       "expected {\"username\":..., \"password\":...}");
  }
  const std::string& account = *user->as_string();
  const auto now = Clock::now();
  // While the account or the source waits, the password is not even checked: the answer
  // and its timing say nothing about it, nor about whether the account exists.
  if (auto wait = throttle_.wait(account, c.client.address, now)) {
    ++logins_blocked_;
    Response res = error_response(http::status::too_many_requests, c.req.version(),
                                  "too many failed logins; try again later", c.req.keep_alive());
    res.set(http::field::retry_after, std::to_string(wait->count()));
    return reply(c, std::move(res));
  }
  if (!passwords_.verify(account, *password->as_string())) {
    ++logins_failed_;
    log::warn("failed web login for " + json::quote(account) + " from " + c.client.address);
    // The wait runs from the answer, not from the start of the (slow) hash check.
    for (const auto& lockout : throttle_.failed(account, c.client.address, Clock::now())) {
      report_lockout(lockout, c.client);
    }
    return reply_error(c, http::status::unauthorized, "wrong user name or password");
  }
  ++logins_ok_;
  throttle_.succeeded(account, c.client.address);
  const Session& s = sessions_.create(*user->as_string(), now);
  log::info("web login: " + s.user + " from " + c.client.address);
  json::Writer w;
  w.begin_object().key("user").value(s.user).key("csrf_token").value(s.csrf_token).end_object();
  Response res = json_response(http::status::ok, c.req, w.take());
  std::string cookie = std::string(kCookie) + "=" + s.id + "; Path=/; HttpOnly; SameSite=Strict";
  if (options_.tls) cookie += "; Secure";
  res.set(http::field::set_cookie, cookie);
  reply(c, std::move(res));
}

void App::report_lockout(const LoginThrottle::Lockout& lockout, const ClientInfo& client) {
  ++login_lockouts_;
  const std::string what = lockout.scope == LoginThrottle::Scope::account
                               ? "account " + json::quote(lockout.key)
                               : "source " + lockout.key;
  log::warn("web login locked: " + what + " after " + std::to_string(lockout.failures) +
            " failed logins (last from " + client.address + "); next try in " +
            std::to_string(lockout.delay.count()) + " s");
  ipc::control::Args args;
  args.set(Option::source, client.address)
      .set(Option::failures, std::to_string(lockout.failures))
      .set(Option::delay, std::to_string(lockout.delay.count()));
  // Option values, never positional words: a user name like "--json" stays a value.
  if (lockout.scope == LoginThrottle::Scope::account) args.set(Option::account, lockout.key);
  link_.control(Command::login_lockout, args, [](const ControlResult& r) {
    // The log line above stays the record when policyd is away; a refusal is a bug.
    if (r.exit_code == kUnavailable) {
      log::debug("login lockout not audited: policyd not connected");
    } else if (r.exit_code != 0) {
      log::warn("login lockout not audited: " + r.err);
    }
  });
}

void App::logout(Call& c) {
  if (auto cookie = c.req.find(http::field::cookie); cookie != c.req.end()) {
    sessions_.erase(cookie_value(sv(cookie->value()), kCookie));
  }
  Response res = json_response(http::status::ok, c.req, "{}");
  res.set(http::field::set_cookie, std::string(kCookie) +
                                       "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" +
                                       (options_.tls ? "; Secure" : ""));
  reply(c, std::move(res));
}

void App::session_info(Call& c, const Principal& p) {
  json::Writer w;
  w.begin_object().key("user").value(p.user).key("via").value(p.token ? "token" : "session");
  if (p.session != nullptr) w.key("csrf_token").value(p.session->csrf_token);
  w.key("idle_timeout_s").value(static_cast<int64_t>(sessions_.limits().idle.count()));
  w.end_object();
  reply(c, json_response(http::status::ok, c.req, w.take()));
}

void App::run_command(Call& c, ipc::control::Command command, const ipc::control::Args& args,
                      http::status ok_status,
                      std::function<std::string(const ControlResult&)> shape) {
  // The request and the connection outlive this call: the connection waits for `done`.
  const Request& req = c.req;
  Done done = std::move(c.done);
  link_.control(command, args,
                [this, &req, done = std::move(done), ok_status,
                 shape = std::move(shape)](ControlResult r) mutable {
                  Call later{req, Target{}, ClientInfo{}, done};
                  if (r.exit_code != 0) {
                    const std::string why =
                        !r.err.empty() ? r.err : "policyd: exit " + std::to_string(r.exit_code);
                    return reply_error(later, status_for_exit(r.exit_code), why);
                  }
                  // policyd is trusted: a cheap shape check, not a full parse of what
                  // may be megabytes.
                  const size_t open = r.out.find_first_not_of(" \n\t");
                  const size_t close = r.out.find_last_not_of(" \n\t");
                  if (open == std::string::npos || r.out[open] != '{' || r.out[close] != '}') {
                    return reply_error(later, http::status::bad_gateway, "policyd sent no JSON");
                  }
                  reply(later, json_response(ok_status, req, shape ? shape(r) : std::move(r.out)));
                });
}

json::Value App::webd_status() const {
  const auto uptime =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
  json::Object webd;
  webd["version"] = json::Value{options_.version};
  webd["uptime_s"] = json::Value{static_cast<double>(uptime.count())};
  webd["sessions"] = json::Value{static_cast<double>(sessions_.size())};
  webd["stream_clients"] = json::Value{static_cast<double>(hub_.clients())};
  webd["policyd_connected"] = json::Value{link_.connected()};
  webd["grants_seen"] = json::Value{static_cast<double>(link_.grants().size())};
  return json::Value{std::move(webd)};
}

void App::status(Call& c) {
  json::Value webd = webd_status();
  if (!link_.connected()) {
    json::Object only;
    only["webd"] = std::move(webd);
    return reply(c, json_response(http::status::ok, c.req, json::serialize(json::Value{only})));
  }
  run_command(c, ipc::control::Command::status, json_args(), http::status::ok,
              [webd = std::move(webd)](const ControlResult& r) {
                // policyd's object with ours added.
                auto v = reply_object(r);
                if (!v) return r.out;
                std::get<json::Object>(v->v)["webd"] = webd;
                return json::serialize(*v);
              });
}

void App::grants_get(Call& c) {
  ipc::control::Args args = json_args();
  const auto& q = c.target.query;
  if (auto it = q.find("source"); it != q.end() && !it->second.empty()) {
    if (!IpAddr::parse(it->second))
      return reply_error(c, http::status::bad_request, "source: not an IP address");
    args.set(Option::source, it->second);
  }
  if (auto it = q.find("profile"); it != q.end() && !it->second.empty()) {
    if (!valid_name(it->second))
      return reply_error(c, http::status::bad_request, "profile: not a profile name");
    args.set(Option::profile, it->second);
  }
  const bool all = [&] {
    auto it = q.find("all");
    return it != q.end() && (it->second == "1" || it->second == "true");
  }();
  if (all) args.set(Option::all);
  if (!all && link_.has_snapshot()) {
    // The active set is already here (grant broadcast): answer from memory, in policyd's
    // order (by id), without a round trip through SQLite.
    auto source = q.find("source");
    auto profile = q.find("profile");
    std::optional<IpAddr> want_source;
    if (source != q.end() && !source->second.empty()) want_source = IpAddr::parse(source->second);
    const std::string* want_profile =
        profile != q.end() && !profile->second.empty() ? &profile->second : nullptr;
    const bool unfiltered = !want_source && want_profile == nullptr;
    if (unfiltered && grants_cache_valid_) {
      return reply(c, json_response(http::status::ok, c.req, grants_cache_));
    }
    std::string body = "{\"grants\":[";
    body.reserve(link_.grants().size() * 360 + 16);
    bool first = true;
    for (const auto& [id, g] : link_.grants()) {
      if (want_source && !(g.source == *want_source)) continue;
      if (want_profile != nullptr && g.profile != *want_profile) continue;
      if (!first) body += ',';
      first = false;
      body += grant_json_cached(g);
    }
    body += "]}";
    if (unfiltered) {
      grants_cache_ = body;
      grants_cache_valid_ = true;
    }
    return reply(c, json_response(http::status::ok, c.req, std::move(body)));
  }
  run_command(c, Command::grants, args, http::status::ok);
}

const std::string& App::grant_json_cached(const ipc::GrantRecord& g) {
  // Only the expiry of an active grant changes (extend); anything else is a new id.
  CachedGrantJson& slot = grant_json_cache_[g.id];
  if (slot.json.empty() || slot.expires_ns != g.expires_ns) {
    slot.expires_ns = g.expires_ns;
    slot.json = grant_json(g);
  }
  return slot.json;
}

ipc::control::Args App::acting(const Principal& p) {
  ipc::control::Args args = json_args();
  args.as = p.user;
  return args;
}

void App::grants_create(Call& c, const Principal& p) {
  auto body = json::parse(c.req.body());
  if (!body || body->as_object() == nullptr) {
    return reply_error(c, http::status::bad_request, "expected a JSON object");
  }
  const json::Value* source = body->find("source");
  const json::Value* profile = body->find("profile");
  const json::Value* duration = body->find("duration");
  if (source == nullptr || source->as_string() == nullptr || !IpAddr::parse(*source->as_string())) {
    return reply_error(c, http::status::bad_request, "source: an IPv4 or IPv6 address is required");
  }
  if (profile == nullptr || profile->as_string() == nullptr || !valid_name(*profile->as_string())) {
    return reply_error(c, http::status::bad_request, "profile: a profile name is required");
  }
  ipc::control::Args args = acting(p);
  args.positional = {IpAddr::parse(*source->as_string())->str(), *profile->as_string()};
  if (duration != nullptr && !duration->is_null()) {
    if (duration->as_string() == nullptr || !valid_duration(*duration->as_string())) {
      return reply_error(c, http::status::bad_request, "duration: like 90s, 10m, 2h");
    }
    args.set(Option::for_duration, *duration->as_string());
  }
  run_command(c, Command::grant, args, http::status::created);
}

void App::grant_extend(Call& c, const Principal& p, const std::string& id) {
  ipc::control::Args args = acting(p);
  args.positional = {id};
  if (!c.req.body().empty()) {
    auto body = json::parse(c.req.body());
    const json::Value* duration = body ? body->find("duration") : nullptr;
    if (!body || body->as_object() == nullptr)
      return reply_error(c, http::status::bad_request, "expected a JSON object");
    if (duration != nullptr && !duration->is_null()) {
      if (duration->as_string() == nullptr || !valid_duration(*duration->as_string())) {
        return reply_error(c, http::status::bad_request, "duration: like 90s, 10m, 2h");
      }
      args.set(Option::for_duration, *duration->as_string());
    }
  }
  run_command(c, Command::extend, args, http::status::ok);
}

void App::grant_revoke(Call& c, const Principal& p, const std::string& what) {
  std::string arg = what;
  if (!valid_id(what)) {
    auto addr = IpAddr::parse(what);
    if (!addr) return reply_error(c, http::status::bad_request, "source: not an IP address");
    arg = addr->str();
  }
  ipc::control::Args args = acting(p);
  args.positional = {arg};
  run_command(c, Command::revoke, args, http::status::ok);
}

void App::audit(Call& c) {
  ipc::control::Args args = json_args();
  const auto& q = c.target.query;
  for (const auto& [key, option] : {std::pair{"since", Option::since}, {"until", Option::until}}) {
    if (auto it = q.find(key); it != q.end() && !it->second.empty()) {
      if (!valid_time(it->second))
        return reply_error(c, http::status::bad_request, std::string(key) + ": not a time");
      args.set(option, it->second);
    }
  }
  if (auto it = q.find("source"); it != q.end() && !it->second.empty()) {
    if (!IpAddr::parse(it->second))
      return reply_error(c, http::status::bad_request, "source: not an IP address");
    args.set(Option::source, it->second);
  }
  if (auto it = q.find("kind"); it != q.end() && !it->second.empty()) {
    if (!valid_name(it->second))
      return reply_error(c, http::status::bad_request, "kind: not a kind");
    args.set(Option::kind, it->second);
  }
  for (const auto& [key, option] :
       {std::pair{"limit", Option::limit}, {"before", Option::before}}) {
    if (auto it = q.find(key); it != q.end() && !it->second.empty()) {
      if (!valid_id(it->second))
        return reply_error(c, http::status::bad_request, std::string(key) + ": not a number");
      args.set(option, it->second);
    }
  }
  run_command(c, Command::audit, args, http::status::ok);
}

void App::counters(Call& c) {
  const int64_t now_minute = static_cast<int64_t>(std::time(nullptr)) / 60;
  reply(c, json_response(http::status::ok, c.req, feed_.json(now_minute)));
}

void App::stream(Call& c) {
  Response res{http::status::ok, c.req.version()};
  add_common_headers(res);
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Accel-Buffering", "no");
  ++responses_[200];
  c.done(Reply{std::move(res), true});
}

void App::static_file(Call& c) {
  const StaticFile* f = files_.find(c.target.path);
  if (f == nullptr) return reply_error(c, http::status::not_found, "not found");
  Response res{http::status::ok, c.req.version()};
  add_common_headers(res);
  res.set(http::field::content_type, f->content_type);
  res.set(http::field::etag, f->etag);
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(c.req.keep_alive());
  if (auto inm = c.req.find(http::field::if_none_match);
      inm != c.req.end() && sv(inm->value()) == f->etag) {
    res.result(http::status::not_modified);
    ++responses_[304];
    return c.done(Reply{std::move(res), false});
  }
  res.body() = f->body;
  res.prepare_payload();
  reply(c, std::move(res));
}

}  // namespace kg::webd
