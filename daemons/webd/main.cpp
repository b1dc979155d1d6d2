// knockgate-webd: the web console and JSON API. Binds its listening sockets as root,
// drops to WebUser, and from then on can do only what policyd lets the webd role do.
//
//   knockgate-webd [-c FILE] [-D]
#include <ifaddrs.h>
#include <net/if.h>
#include <sodium.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>

#include "common/daemon_options.h"
#include "common/log.h"
#include "common/privdrop.h"
#include "config/config.h"
#include "webd/app.h"
#include "webd/policy_link.h"
#include "webd/seccomp_profile.h"
#include "webd/server.h"
#include "webd/static_files.h"
#include "webd/stream_hub.h"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr const char* kProgram = "knockgate-webd";
constexpr const char* kDefaultConfig = kg::config::kDefaultPath;
constexpr uint16_t kDefaultPort = kg::config::kDefaultConsolePort;

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: %s [-c FILE] [-n] [-d] [-v|-D]\n"
               "  -c, --config FILE  config file (default %s)\n"
               "  -n, --check        check the config and the console files, print the\n"
               "                     config normalised, exit 0 (valid) or 1 (errors)\n"
               "  -d, --daemon       accepted for knockd habits; webd stays in the\n"
               "                     foreground (systemd Type=notify)\n"
               "  -v, --verbose      accepted; webd logs the same either way\n"
               "  -D, --debug        debug output\n"
               "  -h, --help         this text\n"
               "  -V, --version      print the version\n",
               kProgram, kDefaultConfig);
}

// WebListen, or 127.0.0.1 and every address of the LAN interfaces (never WAN) on 8080.
std::vector<tcp::endpoint> listen_endpoints(const kg::config::Options& o) {
  std::vector<tcp::endpoint> out;
  if (!o.web_listen.empty()) {
    for (const auto& e : o.web_listen) {
      out.emplace_back(asio::ip::make_address(e.address.str()), e.port);
    }
    return out;
  }
  out.emplace_back(asio::ip::make_address_v4("127.0.0.1"), kDefaultPort);
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_name == nullptr) continue;
    if (std::find(o.lan_interfaces.begin(), o.lan_interfaces.end(), i->ifa_name) ==
        o.lan_interfaces.end())
      continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(static_cast<const void*>(i->ifa_addr));
      ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 =
          reinterpret_cast<const sockaddr_in6*>(static_cast<const void*>(i->ifa_addr));
      if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) continue;  // would need a scope id
      ::inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    } else {
      continue;
    }
    out.emplace_back(asio::ip::make_address(text), kDefaultPort);
  }
  ::freeifaddrs(list);
  return out;
}

// -n: the config (FILE:LINE errors), then what webd itself needs from it: the console's
// files under WebRoot.
int check(const std::string& config_path) {
  // webd never reads the doors' one-time sequence files.
  kg::config::CheckResult result =
      kg::config::check(config_path, kg::config::ExternalFiles::unchecked);
  if (result.config) {
    kg::webd::StaticFiles files;
    if (auto r = files.load(result.config->options.web_root); !r) {
      result.out.clear();
      result.err = config_path + ": " + r.error().message + "\n";
      result.exit_code = 1;
    }
  }
  return kg::config::print_check_result(result);
}

int run(const std::string& config_path) {
  kg::config::ParseResult parsed = kg::config::parse_file(config_path);
  if (!parsed.config) {
    for (const auto& d : parsed.errors) std::fprintf(stderr, "%s\n", d.str().c_str());
    return 1;
  }
  const kg::config::Options& o = parsed.config->options;
  if (sodium_init() < 0) {
    kg::log::error("libsodium cannot initialise");
    return 1;
  }

  asio::io_context io;
  kg::webd::StaticFiles files;
  if (auto r = files.load(o.web_root); !r) {
    kg::log::error(r.error().message);
    return 1;
  }

  std::optional<asio::ssl::context> tls;
  if (!o.web_tls_certificate.empty()) {
    tls.emplace(asio::ssl::context::tls_server);
    tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    boost::system::error_code ec;
    tls->use_certificate_chain_file(o.web_tls_certificate, ec);
    if (ec) {
      kg::log::error("WebTlsCertificate " + o.web_tls_certificate + ": " + ec.message());
      return 1;
    }
    tls->use_private_key_file(o.web_tls_key, asio::ssl::context::pem, ec);
    if (ec) {
      kg::log::error("WebTlsKey " + o.web_tls_key + ": " + ec.message());
      return 1;
    }
  }

  kg::webd::StreamHub hub;
  kg::webd::PolicyLink link(io, o.runtime_dir + "/policyd.sock");
  kg::webd::App::Options app_options;
  app_options.password_file = o.web_password_file;
  app_options.token_file = o.web_token_file;
  app_options.tls = tls.has_value();
  app_options.version = KG_SOFTWARE_VERSION;
  kg::webd::App app(app_options, files, link, hub);
  kg::webd::ensure_descriptor_limit(kg::webd::ServerOptions{}.max_connections);
  kg::webd::Server server(io, app, hub, kg::webd::ServerOptions{}, tls ? &*tls : nullptr);
  size_t listening = 0;
  for (const auto& endpoint : listen_endpoints(o)) {
    if (auto r = server.listen(endpoint); !r) {
      kg::log::error(r.error().message);
      if (!o.web_listen.empty()) return 1;  // configured endpoints must all work
      continue;
    }
    ++listening;
  }
  if (listening == 0) {
    kg::log::error("no address to listen on");
    return 1;
  }

  if (::geteuid() == 0) {
    auto user = kg::lookup_user(o.web_user);
    if (!user) {
      kg::log::error("WebUser " + o.web_user + ": " + user.error().message);
      return 1;
    }
    if (auto dropped = kg::drop_privileges(*user); !dropped) {
      kg::log::error("cannot drop privileges: " + dropped.error().message);
      return 1;
    }
  }

  if (auto r = link.start(); !r) {
    kg::log::error(r.error().message);
    return 1;
  }
  server.start();
  if (auto r = kg::seccomp::apply(kg::webd::seccomp_profile()); !r) {
    kg::log::error(r.error().message);
    return 1;
  }
  std::string where;
  for (const auto& e : server.endpoints()) {
    std::ostringstream s;
    s << e;
    where += (where.empty() ? "" : ", ") + std::string(tls ? "https://" : "http://") + s.str();
  }
  kg::log::info("listening on " + where + " as " + o.web_user + "; " +
                std::to_string(files.size()) + " console files");

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    kg::log::info("stopping");
    server.stop();
    link.stop();
    io.stop();
  });
  sd_notify(0, "READY=1");
  io.run();
  sd_notify(0, "STOPPING=1");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  kg::DaemonOptions args;
  if (auto code = kg::parse_daemon_options(argc, argv, kProgram, kDefaultConfig, usage, args)) {
    return *code;
  }
  if (args.check_only) return check(args.config_path);
  std::signal(SIGPIPE, SIG_IGN);
  kg::log::init(kProgram, args.level());
  return run(args.config_path);
}
