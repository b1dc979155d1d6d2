// knockgatectl's commands served by policyd: the arguments travel as a ControlRequest over
// policyd's control socket; the ControlReply's out/err/exit code become ours. `watch`
// subscribes to the grant broadcast and prints it, one JSON object per line.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "common/json.h"
#include "config/config.h"
#include "ctl/commands.h"
#include "ipc/client.h"
#include "ipc/messages.h"

namespace kg::ctl {

namespace {

constexpr size_t kMaxFrame = size_t{16} * 1024 * 1024;  // big grant lists fit one reply
constexpr const char* kDefaultConfig = kg::config::kDefaultPath;
constexpr const char* kDefaultSocket = "/run/knockgate/policyd.sock";

std::string socket_path(const GlobalOptions& g) {
  if (!g.socket.empty()) return g.socket;
  const std::string config = g.config.empty() ? kDefaultConfig : g.config;
  auto parsed = config::parse_file(config);
  if (parsed.config) return parsed.config->options.runtime_dir + "/policyd.sock";
  if (!g.config.empty()) {
    for (const auto& e : parsed.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    return {};
  }
  return kDefaultSocket;  // default config unreadable: the default RuntimeDir
}

bool write_all(std::FILE* to, const std::string& text) {
  return std::fwrite(text.data(), 1, text.size(), to) == text.size() && std::fflush(to) == 0;
}

ipc::ClientOptions client_options(const std::string& path) {
  ipc::ClientOptions o;
  o.socket_path = path;
  o.role = ipc::Role::ctl;
  o.program_name = "knockgatectl";
  o.max_frame_bytes = kMaxFrame;
  o.max_write_queue_bytes = kMaxFrame;
  o.reconnect = false;
  return o;
}

void grant_json(json::Writer& w, const ipc::GrantRecord& g) {
  char mark[32];
  std::snprintf(mark, sizeof mark, "0x%08x/0x%08x", g.fwmark, g.fwmark_mask);
  w.begin_object().key("id").value(g.id).key("source").value(g.source.str());
  w.key("profile").value(g.profile).key("method").value(ipc::grant_method_name(g.method));
  w.key("created_ns").value(g.created_ns).key("expires_ns").value(g.expires_ns);
  w.key("fwmark").value(mark).end_object();
}

// One broadcast message as the JSON line `watch` prints; empty for other messages.
std::string watch_line(const ipc::Message& m) {
  json::Writer w;
  if (const auto* snap = std::get_if<ipc::GrantSnapshot>(&m)) {
    w.begin_object().key("snapshot").begin_object().key("seq").value(snap->seq);
    w.key("first").value(snap->first).key("last").value(snap->last).key("grants").begin_array();
    for (const auto& g : snap->grants) grant_json(w, g);
    w.end_array().end_object().end_object();
  } else if (const auto* d = std::get_if<ipc::GrantDelta>(&m)) {
    w.begin_object().key("delta").begin_object().key("seq").value(d->seq);
    w.key("op").value(ipc::grant_op_name(d->op)).key("grant");
    grant_json(w, d->grant);
    w.key("reason").value(d->reason).end_object().end_object();
  } else if (const auto* f = std::get_if<ipc::FeedEvent>(&m)) {
    w.begin_object().key("feed").begin_object().key("kind").value(f->kind);
    w.key("source").value(f->source ? f->source->str() : "");
    w.key("audit_id").value(f->audit_id);
    w.key("detail").raw(f->detail_json.empty() ? "{}" : f->detail_json);
    w.end_object().end_object();
  }
  return w.take();
}

}  // namespace

int run_remote(const GlobalOptions& global, std::string_view command, const Args& args) {
  const std::string path = socket_path(global);
  if (path.empty()) return kExitFailed;
  boost::asio::io_context io;
  ipc::Client client(io, client_options(path));
  std::optional<int> exit_code;
  std::string failure;
  ipc::ControlRequest request;
  request.request_id = 1;
  request.command = std::string(command);
  for (auto a : args) request.args.emplace_back(a);

  client.on_state([&](ipc::ClientState s, const std::string& detail) {
    if (s == ipc::ClientState::connected) {
      if (!client.send(request)) failure = "cannot send the request";
    } else if (s == ipc::ClientState::stopped && !exit_code) {
      failure = detail.empty() ? "disconnected" : detail;
      io.stop();
    }
  });
  client.on_message([&](const ipc::Message& m) {
    const auto* r = std::get_if<ipc::ControlReply>(&m);
    if (r == nullptr || r->request_id != request.request_id) return;
    const bool out_ok = write_all(stdout, r->out);
    (void)write_all(stderr, r->err);
    exit_code = out_ok ? r->exit_code : kExitFailed;
    client.stop();
    io.stop();
  });
  boost::asio::steady_timer deadline(io);
  deadline.expires_after(std::chrono::seconds(global.timeout_s));
  deadline.async_wait([&](const boost::system::error_code& ec) {
    if (ec) return;
    failure = "no answer from policyd within " + std::to_string(global.timeout_s) + " s";
    io.stop();
  });
  if (auto started = client.start(); !started) {
    std::fprintf(stderr, "knockgatectl: %s\n", started.error().message.c_str());
    return kExitFailed;
  }
  io.run();
  if (exit_code) return *exit_code;
  std::fprintf(stderr, "knockgatectl: %s: %s\n", path.c_str(),
               failure.empty() ? "no reply" : failure.c_str());
  return kExitFailed;
}

int run_watch(const GlobalOptions& global, const Args& args) {
  uint32_t topics = ipc::kTopicGrants;
  long count = -1;  // messages to print before exiting; -1: forever
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--feed") {
      topics |= ipc::kTopicFeed;
    } else if (args[i] == "--count" && i + 1 < args.size()) {
      auto n = ipc::control::parse_number("--count", args[++i], 1, INT32_MAX);
      if (!n) {
        std::fprintf(stderr, "knockgatectl: watch %s\n", n.error().message.c_str());
        return kExitUsage;
      }
      count = static_cast<long>(*n);
    } else {
      (void)std::fputs("usage: knockgatectl watch [--feed] [--count N]\n", stderr);
      return kExitUsage;
    }
  }
  const std::string path = socket_path(global);
  if (path.empty()) return kExitFailed;
  boost::asio::io_context io;
  ipc::Client client(io, client_options(path));
  int result = kExitFailed;
  auto printed = [&] {
    (void)std::fflush(stdout);
    if (count > 0 && --count == 0) {
      result = kExitOk;
      client.stop();
      io.stop();
    }
  };
  client.on_state([&](ipc::ClientState s, const std::string& detail) {
    if (s == ipc::ClientState::connected) {
      ipc::Subscribe sub;
      sub.request_id = 1;
      sub.topics = topics;
      client.send(sub);
    } else if (s == ipc::ClientState::stopped) {
      if (result != kExitOk)
        std::fprintf(stderr, "knockgatectl: %s: %s\n", path.c_str(), detail.c_str());
      io.stop();
    }
  });
  client.on_message([&](const ipc::Message& m) {
    const std::string line = watch_line(m);
    if (line.empty()) return;
    std::printf("%s\n", line.c_str());
    printed();
  });
  if (auto started = client.start(); !started) {
    std::fprintf(stderr, "knockgatectl: %s\n", started.error().message.c_str());
    return kExitFailed;
  }
  io.run();
  return result;
}

}  // namespace kg::ctl
