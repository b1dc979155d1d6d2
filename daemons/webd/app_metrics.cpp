// GET /metrics: webd's own counters and, when policyd is connected, every number of
// policyd's status reply, in the Prometheus text format.
#include <string>

#include "webd/app.h"

namespace kg::webd {
namespace {

std::string metric_name(const std::string& raw) {
  std::string out;
  for (char c : raw) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

std::string prom_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void flatten_metrics(const json::Value& v, const std::string& prefix, std::string& out) {
  if (const double* d = v.as_number()) {
    char buf[64];
    (void)std::snprintf(buf, sizeof buf, "%.17g", *d);
    out += prefix + " " + buf + "\n";
  } else if (const bool* b = v.as_bool()) {
    out += prefix + (*b ? " 1\n" : " 0\n");
  } else if (const json::Object* o = v.as_object()) {
    for (const auto& [k, member] : *o) flatten_metrics(member, prefix + "_" + metric_name(k), out);
  }
}

void App::metrics(Call& c) {
  std::string out;
  auto counter = [&out](const std::string& name, const std::string& help, const std::string& type) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  counter("knockgate_webd_up", "webd is serving", "gauge");
  out += "knockgate_webd_up 1\n";
  counter("knockgate_webd_policyd_connected", "webd has a connection to policyd", "gauge");
  out += std::string("knockgate_webd_policyd_connected ") + (link_.connected() ? "1" : "0") + "\n";
  counter("knockgate_grants_active", "active grants as webd sees them", "gauge");
  out += "knockgate_grants_active " + std::to_string(link_.grants().size()) + "\n";
  counter("knockgate_grant_events_total", "grant changes received (add, extend, remove)",
          "counter");
  out += "knockgate_grant_events_total " + std::to_string(grant_events_) + "\n";
  counter("knockgate_feed_events_total", "feed events by kind (knock, spa, reject, grant, ...)",
          "counter");
  for (const auto& [kind, n] : feed_.by_kind()) {
    out += "knockgate_feed_events_total{kind=\"" + prom_label(kind) + "\"} " + std::to_string(n) +
           "\n";
  }
  counter("knockgate_rejections_total", "rejected knocks and SPA packets by reason", "counter");
  for (const auto& [reason, n] : feed_.rejects_by_reason()) {
    out += "knockgate_rejections_total{reason=\"" + prom_label(reason) + "\"} " +
           std::to_string(n) + "\n";
  }
  counter("knockgate_webd_stream_clients", "connected live-stream clients", "gauge");
  out += "knockgate_webd_stream_clients " + std::to_string(hub_.clients()) + "\n";
  counter("knockgate_webd_sessions", "logged-in console sessions", "gauge");
  out += "knockgate_webd_sessions " + std::to_string(sessions_.size()) + "\n";
  counter("knockgate_webd_logins_total", "login attempts by result", "counter");
  out += "knockgate_webd_logins_total{result=\"ok\"} " + std::to_string(logins_ok_) + "\n";
  out += "knockgate_webd_logins_total{result=\"failed\"} " + std::to_string(logins_failed_) + "\n";
  out += "knockgate_webd_logins_total{result=\"rate_limited\"} " + std::to_string(logins_blocked_) +
         "\n";
  counter("knockgate_webd_login_lockouts_total",
          "login waits started for an account or a source (each also audited)", "counter");
  out += "knockgate_webd_login_lockouts_total " + std::to_string(login_lockouts_) + "\n";
  counter("knockgate_webd_csrf_rejected_total",
          "state-changing requests refused by the CSRF/Origin check", "counter");
  out += "knockgate_webd_csrf_rejected_total " + std::to_string(csrf_rejected_) + "\n";
  counter("knockgate_webd_connections_total", "HTTP connections accepted", "counter");
  out += "knockgate_webd_connections_total " + std::to_string(connections_total_) + "\n";
  counter("knockgate_webd_responses_total", "HTTP responses by status code", "counter");
  for (const auto& [code, n] : responses_) {
    out += "knockgate_webd_responses_total{code=\"" + std::to_string(code) + "\"} " +
           std::to_string(n) + "\n";
  }
  auto finish = [this, &req = c.req](Done& done, std::string text) {
    Response res{http::status::ok, req.version()};
    add_common_headers(res);
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    res.body() = std::move(text);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    ++responses_[200];
    done(Reply{std::move(res), false});
  };
  if (!link_.connected()) return finish(c.done, std::move(out));
  // policyd's status counters (its own and those it relays from captured and verdictd:
  // knocks, verdicts, pcap and queue drops), every number under knockgate_status_*.
  Done done = std::move(c.done);
  ipc::control::Args args;
  args.json = true;
  link_.control(ipc::control::Command::status, args,
                [finish, out = std::move(out), done = std::move(done)](ControlResult r) mutable {
                  if (auto v = reply_object(r)) flatten_metrics(*v, "knockgate_status", out);
                  finish(done, std::move(out));
                });
}

}  // namespace kg::webd
