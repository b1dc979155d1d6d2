// Listening sockets and HTTP/1.1 connections (keep-alive, optional TLS) on the daemon's
// one io_context. Parsing limits and timeouts are enforced here; what a request means is
// App's business.
#pragma once

#include <array>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
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
  size_t max_connections = 1024;    // RLIMIT_NOFILE must cover these plus kReservedDescriptors
  size_t max_stream_backlog = 256;  // live-stream frames queued for one slow client
};

// Descriptors webd needs besides its connections: stdio, listeners, policyd's socket, the
// event loop's own, files being read. The systemd unit's LimitNOFILE covers
// max_connections plus these.
inline constexpr size_t kReservedDescriptors = 64;

// Raises the soft RLIMIT_NOFILE towards the hard limit when it is below max_connections +
// kReservedDescriptors; warns when even the hard limit is short (webd then runs out of
// descriptors before it reaches max_connections, and pauses accepting while it is out).
void ensure_descriptor_limit(size_t max_connections);

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
  void serve(boost::asio::ip::tcp::socket socket);
  // accept() failed for want of descriptors or memory: every listener waits (100 ms,
  // doubling to 1 s) instead of retrying at once, which would spin, as a listening socket
  // with clients waiting stays readable.
  void pause_accepting(const boost::system::error_code& ec);
  void wait_to_accept();
  bool resume_accepting();
  void accepted_during_exhaustion();
  void check_recovery_later();

  // Descriptors set aside at start and closed while accepts are paused, so that webd (and
  // the sanitizers' runtime in debug builds) still has some when connections took the rest.
  class Reserve {
   public:
    bool acquire();  // true when all are held
    void release();

   private:
    std::array<kg::UniqueFd, 2> fds_;
  };

  // One episode of running out: logged when it starts and when accepts have worked for a
  // second with no failure in between.
  struct Exhaustion {
    bool active = false;
    std::chrono::milliseconds pause{0};
    std::chrono::steady_clock::time_point since;
    std::chrono::steady_clock::time_point last_failure;
    uint64_t failures = 0;
    bool check_pending = false;
  };

  boost::asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  Reserve reserve_;
  bool paused_ = false;
  bool resume_posted_ = false;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer recovery_timer_;
  Exhaustion exhaustion_;
};

}  // namespace kg::webd
