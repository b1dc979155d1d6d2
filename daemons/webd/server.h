// Listening sockets and HTTP/1.1 connections (keep-alive, optional TLS) on the daemon's
// one io_context. Parsing limits and timeouts are enforced here; what a request means is
// App's business.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "webd/app.h"
#include "webd/http.h"
#include "webd/stream_hub.h"

namespace kg::webd {

struct ServerOptions {
  HttpLimits limits;
  std::chrono::seconds request_timeout{15};  // the whole request, first byte to last
  std::chrono::seconds idle_timeout{60};     // keep-alive wait for the next request
  std::chrono::seconds write_timeout{30};
  std::chrono::seconds stream_heartbeat{25};
  size_t max_connections = 1024;
  size_t max_stream_backlog = 256;  // live-stream frames queued for one slow client
};

class Server {
 public:
  // `tls` null: plain HTTP.
  Server(boost::asio::io_context& io, App& app, StreamHub& hub, ServerOptions options,
         boost::asio::ssl::context* tls);
  ~Server();
  // Binds (as root, before privileges are dropped) and listens.
  Result<Ok> listen(const boost::asio::ip::tcp::endpoint& endpoint);
  void start();
  void stop();
  std::vector<boost::asio::ip::tcp::endpoint> endpoints() const;

  struct Shared;  // what connections need; outlives the Server while they run

 private:
  void accept(size_t index);
  boost::asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
};

}  // namespace kg::webd
