// The request handler: routing, authentication, CSRF and Origin checks, the JSON API
// (each call one policyd control command), static files, /metrics. It has no sockets of
// its own, so the fuzz target and the tests drive it exactly as a connection does.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "webd/auth.h"
#include "webd/feed_stats.h"
#include "webd/http.h"
#include "webd/json.h"
#include "webd/login_throttle.h"
#include "webd/policy_link.h"
#include "webd/static_files.h"
#include "webd/stream_hub.h"

namespace kg::webd {

struct ClientInfo {
  std::string address;  // the peer's IP address, for the login throttle and logs
  bool tls = false;
};

struct Reply {
  Response response;
  bool stream = false;  // the response is an event-stream head; the connection joins the hub
};

class App {
 public:
  using Done = std::function<void(Reply)>;

  struct Options {
    std::string password_file;
    std::string token_file;
    bool tls = false;
    std::string version = "0";
    SessionStore::Limits sessions;
    LoginThrottle::Limits login_accounts;
    LoginThrottle::Limits login_sources;
  };

  App(Options options, const StaticFiles& files, PolicyLink& link, StreamHub& hub);

  // `done` runs exactly once, now or later on the io_context.
  void handle(const Request& req, const ClientInfo& client, Done done);

  // Security headers every response carries (also the ones the connection makes itself:
  // 400, 413, 431).
  void add_common_headers(Response& res) const;
  Response error_response(http::status status, unsigned version, const std::string& message,
                          bool keep_alive) const;

  // Counters the connection layer reports.
  void count_connection() { ++connections_total_; }
  void count_bad_request(http::status s) { ++responses_[static_cast<unsigned>(s)]; }
  size_t sessions() const { return sessions_.size(); }

 private:
  struct Principal {
    std::string user;    // passed to policyd as --as USER
    bool token = false;  // API token: no CSRF (not an ambient credential)
    const Session* session = nullptr;
  };
  struct Call {
    const Request& req;
    const Target& target;
    const ClientInfo& client;
    Done& done;
  };

  // The request arguments of a state change: --json, and --as the principal's user.
  static ipc::control::Args acting(const Principal& p);

  void route(Call& c);
  std::optional<Principal> authenticate(const Request& req);
  // Origin (when sent) must be this server; session requests need the CSRF token.
  bool check_state_change(Call& c, const Principal& p);
  bool origin_ok(const Request& req, bool tls) const;

  void login(Call& c);
  // Logs a lockout and writes it to policyd's audit log (web_login_lockout).
  void report_lockout(const LoginThrottle::Lockout& lockout, const ClientInfo& client);
  void logout(Call& c);
  void session_info(Call& c, const Principal& p);
  void run_command(Call& c, ipc::control::Command command, const ipc::control::Args& args,
                   http::status ok_status,
                   std::function<std::string(const ControlResult&)> shape = {});
  // webd's own part of GET /api/status.
  json::Value webd_status() const;
  void status(Call& c);
  void grants_get(Call& c);
  void grants_create(Call& c, const Principal& p);
  void grant_extend(Call& c, const Principal& p, const std::string& id);
  void grant_revoke(Call& c, const Principal& p, const std::string& what);
  void audit(Call& c);
  void counters(Call& c);
  void stream(Call& c);
  void metrics(Call& c);
  void static_file(Call& c);

  Response json_response(http::status status, const Request& req, std::string body) const;
  void reply(Call& c, Response res);
  void reply_error(Call& c, http::status status, const std::string& message);
  void on_delta(const ipc::GrantDelta& d);
  void on_feed(const ipc::FeedEvent& e);

  Options options_;
  const StaticFiles& files_;
  PolicyLink& link_;
  StreamHub& hub_;
  PasswordStore passwords_;
  TokenStore tokens_;
  SessionStore sessions_;
  LoginThrottle throttle_;
  FeedStats feed_;
  std::chrono::steady_clock::time_point started_;
  std::map<unsigned, uint64_t> responses_;
  uint64_t logins_ok_ = 0, logins_failed_ = 0, logins_blocked_ = 0, csrf_rejected_ = 0;
  uint64_t login_lockouts_ = 0;
  uint64_t connections_total_ = 0;
  uint64_t grant_events_ = 0;
  // The unfiltered active list, serialised once per grant change (10 000 grants: 2.9 MB),
  // assembled from each grant's JSON, serialised once per version of that grant: a knock
  // between two list requests costs one grant_json(), not 10 000.
  const std::string& grant_json_cached(const ipc::GrantRecord& g);
  std::string grants_cache_;
  bool grants_cache_valid_ = false;
  struct CachedGrantJson {
    int64_t expires_ns = 0;
    std::string json;
  };
  std::unordered_map<uint64_t, CachedGrantJson> grant_json_cache_;
};

// A grant as the API shows it (the shape of policyd's `grants --json` items).
std::string grant_json(const ipc::GrantRecord& g);

// policyd's --json reply as a value: nullopt when the command failed or the text is not a
// JSON object. Replies passed through whole (grant lists, audit pages) are not parsed.
std::optional<json::Value> reply_object(const ControlResult& r);

// Every number in a JSON document as Prometheus samples `PREFIX_path_to_value VALUE`.
void flatten_metrics(const json::Value& v, const std::string& prefix, std::string& out);

}  // namespace kg::webd
