#include "webd/server.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <sstream>

#include "common/log.h"

namespace kg::webd {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

struct Server::Shared {
  App& app;
  StreamHub& hub;
  ServerOptions options;
  asio::ssl::context* tls;
  size_t connections = 0;
  bool stopped = false;
  std::function<void()> on_closed;  // a connection's descriptor is free again
};

namespace {

beast::tcp_stream& lowest(beast::tcp_stream& s) {
  return s;
}
beast::tcp_stream& lowest(beast::ssl_stream<beast::tcp_stream>& s) {
  return s.next_layer();
}

template <typename Stream>
class Connection : public std::enable_shared_from_this<Connection<Stream>> {
 public:
  Connection(std::shared_ptr<Server::Shared> shared, Stream stream, ClientInfo client)
      : shared_(std::move(shared)),
        stream_(std::move(stream)),
        client_(std::move(client)),
        heartbeat_(lowest(stream_).get_executor()) {
    ++shared_->connections;
    shared_->app.count_connection();
  }
  ~Connection() {
    --shared_->connections;
    if (hub_id_ != 0) shared_->hub.remove(hub_id_);
    if (!shared_->stopped && shared_->on_closed) shared_->on_closed();
  }

  void start() {
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      lowest(stream_).expires_after(shared_->options.request_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](const error_code& ec) {
                                if (!ec) self->read_request(true);
                              });
    } else {
      read_request(true);
    }
  }

 private:
  void read_request(bool first) {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_->options.limits.header_bytes));
    parser_->body_limit(shared_->options.limits.body_bytes);
    // Keep-alive: idle time for the next request's first bytes, then the request timeout.
    lowest(stream_).expires_after(first ? shared_->options.request_timeout
                                        : shared_->options.idle_timeout);
    // The head first: it is checked before any body byte is read (check_request).
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](const error_code& ec, size_t) { self->on_head(ec); });
  }

  void on_head(const error_code& ec) {
    if (ec) return on_read_error(ec);
    if (auto problem = check_request(parser_->get(), parser_->chunked(), shared_->options.limits)) {
      const unsigned version = parser_->get().version() == 10 ? 10 : 11;
      return fail(problem->status, version, problem->why);  // closes: the body is unread
    }
    if (parser_->is_done()) return on_body({});
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](const error_code& body_ec, size_t) {
                       self->on_body(body_ec);
                     });
  }

  void on_read_error(const error_code& ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof) {
      return close();
    }
    const unsigned version = 11;
    if (ec == http::error::header_limit) {
      return fail(http::status::request_header_fields_too_large, version,
                  "request headers too large");
    }
    if (ec == http::error::body_limit) {
      return fail(http::status::payload_too_large, version, "request body too large");
    }
    if (ec.category() == asio::error::get_ssl_category() ||
        ec == asio::ssl::error::stream_truncated) {
      return close();
    }
    fail(http::status::bad_request, version, "malformed request: " + ec.message());
  }

  void on_body(const error_code& ec) {
    if (ec) return on_read_error(ec);
    request_ = parser_->release();
    lowest(stream_).expires_after(shared_->options.write_timeout);
    shared_->app.handle(request_, client_, [self = this->shared_from_this()](Reply reply) {
      if (reply.stream) {
        self->begin_stream(std::move(reply.response));
      } else {
        self->write(std::move(reply.response));
      }
    });
  }

  void fail(http::status status, unsigned version, const std::string& why) {
    shared_->app.count_bad_request(status);
    write(shared_->app.error_response(status, version, why, false));
  }

  void write(Response res) {
    auto owned = std::make_shared<Response>(std::move(res));
    lowest(stream_).expires_after(shared_->options.write_timeout);
    http::async_write(stream_, *owned,
                      [self = this->shared_from_this(), owned](const error_code& ec, size_t) {
                        if (ec || !owned->keep_alive() || self->shared_->stopped)
                          return self->close();
                        self->read_request(false);
                      });
  }

  // ---- Server-Sent Events: the head, then frames as the hub publishes them.
  void begin_stream(Response head) {
    std::string text = "HTTP/1.1 200 OK\r\n";
    for (const auto& f : head) {
      text += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
    }
    text += "Connection: close\r\n\r\nretry: 3000\n\n";
    queue_.push_back(std::make_shared<const std::string>(std::move(text)));
    lowest(stream_).expires_never();
    std::weak_ptr<Connection> weak = this->shared_from_this();
    hub_id_ = shared_->hub.add([weak](const StreamHub::Frame& f) {
      if (auto self = weak.lock()) self->push(f);
    });
    write_next();
    watch_close();
    heartbeat();
  }

  void push(const StreamHub::Frame& f) {
    if (closed_) return;
    if (queue_.size() >= shared_->options.max_stream_backlog) {
      log::warn("live-stream client " + client_.address + " too slow; dropped");
      return close();
    }
    queue_.push_back(f);
    if (queue_.size() == 1 && !writing_) write_next();
  }

  void write_next() {
    if (writing_ || queue_.empty() || closed_) return;
    writing_ = true;
    auto frame = queue_.front();
    asio::async_write(stream_, asio::buffer(*frame),
                      [self = this->shared_from_this(), frame](const error_code& ec, size_t) {
                        self->writing_ = false;
                        if (ec) return self->close();
                        self->queue_.pop_front();
                        self->write_next();
                      });
  }

  // The client sends nothing on a stream; a read completing means it went away.
  void watch_close() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = this->shared_from_this()](const error_code& ec, size_t) {
                              if (ec) return self->close();
                              self->watch_close();
                            });
  }

  void heartbeat() {
    heartbeat_.expires_after(shared_->options.stream_heartbeat);
    heartbeat_.async_wait(
        [weak = std::weak_ptr<Connection>(this->shared_from_this())](const error_code& ec) {
          auto self = weak.lock();
          if (ec || !self || self->closed_) return;
          static const auto kPing = std::make_shared<const std::string>(": keep-alive\n\n");
          self->push(kPing);
          self->heartbeat();
        });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    heartbeat_.cancel();
    if (hub_id_ != 0) {
      shared_->hub.remove(hub_id_);
      hub_id_ = 0;
    }
    error_code ignored;
    lowest(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest(stream_).close();
  }

  std::shared_ptr<Server::Shared> shared_;
  Stream stream_;
  ClientInfo client_;
  beast::flat_buffer buffer_{8192};
  std::optional<http::request_parser<http::string_body>> parser_;
  Request request_;
  std::deque<StreamHub::Frame> queue_;
  bool writing_ = false;
  bool closed_ = false;
  uint64_t hub_id_ = 0;
  asio::steady_timer heartbeat_;
  char discard_[256];
};

constexpr std::chrono::milliseconds kFirstAcceptPause{100};
constexpr std::chrono::milliseconds kLongestAcceptPause{1000};
constexpr std::chrono::seconds kRecoveredAfter{1};

// accept(2) failures that mean "out of descriptors or memory", which retrying at once
// cannot fix.
bool out_of_resources(const error_code& ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory ||
         ec == error_code(ENFILE, asio::error::get_system_category());
}

}  // namespace

bool Server::Reserve::acquire() {
  for (auto& fd : fds_) {
    if (!fd.valid()) fd = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return false;
  }
  return true;
}

void Server::Reserve::release() {
  for (auto& fd : fds_) fd.reset();
}

void ensure_descriptor_limit(size_t max_connections) {
  const rlim_t needed = max_connections + kReservedDescriptors;
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    log::warn(std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
    return;
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    struct rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? needed : std::min(needed, limit.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    log::warn("open files limit (RLIMIT_NOFILE) is " + std::to_string(limit.rlim_cur) +
              ", below the " + std::to_string(needed) + " that " + std::to_string(max_connections) +
              " connections need; webd pauses accepting when it runs out");
  }
}

Server::Server(asio::io_context& io, App& app, StreamHub& hub, ServerOptions options,
               asio::ssl::context* tls)
    : io_(io),
      shared_(std::make_shared<Shared>(Shared{app, hub, options, tls, 0, false, {}})),
      retry_timer_(io),
      recovery_timer_(io) {
  // While accepts are paused, a closing connection may be what lets them resume: try then
  // rather than only when the retry timer fires.
  shared_->on_closed = [this] {
    if (!paused_ || resume_posted_) return;
    resume_posted_ = true;
    asio::post(io_, [this, shared = shared_] {
      if (shared->stopped) return;
      resume_posted_ = false;
      if (paused_) (void)resume_accepting();
    });
  };
}

Server::~Server() {
  stop();
}

Result<Ok> Server::listen(const tcp::endpoint& endpoint) {
  auto acceptor = std::make_unique<tcp::acceptor>(io_);
  error_code ec;
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && endpoint.address().is_v6()) acceptor->set_option(asio::ip::v6_only(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::ostringstream where;
    where << endpoint;
    return Error{"listen on " + where.str() + ": " + ec.message()};
  }
  acceptors_.push_back(std::move(acceptor));
  return Ok{};
}

std::vector<tcp::endpoint> Server::endpoints() const {
  std::vector<tcp::endpoint> out;
  for (const auto& a : acceptors_) {
    error_code ec;
    auto e = a->local_endpoint(ec);
    if (!ec) out.push_back(e);
  }
  return out;
}

void Server::start() {
  if (!reserve_.acquire()) log::warn("cannot set aside reserve descriptors");
  for (size_t i = 0; i < acceptors_.size(); ++i) accept(i);
}

void Server::stop() {
  shared_->stopped = true;
  retry_timer_.cancel();
  recovery_timer_.cancel();
  for (auto& a : acceptors_) {
    error_code ignored;
    a->close(ignored);
  }
}

void Server::accept(size_t index) {
  acceptors_[index]->async_accept(
      [this, index, shared = shared_](const error_code& ec, tcp::socket socket) {
        if (shared->stopped) return;
        if (out_of_resources(ec)) return pause_accepting(ec);
        if (ec == asio::error::operation_aborted) return;  // stop(), or a pause of all
        if (!ec) {
          if (exhaustion_.active) accepted_during_exhaustion();
          serve(std::move(socket));
        }
        if (!paused_) accept(index);
      });
}

void Server::serve(tcp::socket socket) {
  error_code peer_ec;
  const auto peer = socket.remote_endpoint(peer_ec);
  if (peer_ec || shared_->connections >= shared_->options.max_connections) {
    error_code ignored;
    socket.close(ignored);
    return;
  }
  (void)socket.set_option(tcp::no_delay(true), peer_ec);
  ClientInfo client{peer.address().to_string(), shared_->tls != nullptr};
  if (shared_->tls != nullptr) {
    std::make_shared<Connection<beast::ssl_stream<beast::tcp_stream>>>(
        shared_,
        beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *shared_->tls),
        std::move(client))
        ->start();
  } else {
    std::make_shared<Connection<beast::tcp_stream>>(shared_, beast::tcp_stream(std::move(socket)),
                                                    std::move(client))
        ->start();
  }
}

// Out of descriptors is a state of the whole process, so every listener pauses. The
// reserve is handed back first: while paused, webd itself still has descriptors to read
// files, reconnect to policyd and log with.
void Server::pause_accepting(const error_code& ec) {
  reserve_.release();
  Exhaustion& e = exhaustion_;
  const auto now = std::chrono::steady_clock::now();
  if (!e.active) {
    e = Exhaustion{true, kFirstAcceptPause, now, now, 0, e.check_pending};
    log::warn("cannot accept connections: " + ec.message() + " (" +
              std::to_string(shared_->connections) + " open); retrying every " +
              std::to_string(kFirstAcceptPause.count()) + " to " +
              std::to_string(kLongestAcceptPause.count()) + " ms until it recovers");
  } else if (!paused_) {
    e.pause = std::min(e.pause * 2, kLongestAcceptPause);
  }
  ++e.failures;
  e.last_failure = now;
  if (paused_) return;  // another listener's failure in the same moment
  paused_ = true;
  for (auto& a : acceptors_) {
    error_code ignored;
    a->cancel(ignored);
  }
  wait_to_accept();
}

void Server::wait_to_accept() {
  retry_timer_.expires_after(exhaustion_.pause);
  retry_timer_.async_wait([this, shared = shared_](const error_code& ec) {
    if (shared->stopped || ec || !paused_) return;
    if (resume_accepting()) return;
    ++exhaustion_.failures;
    exhaustion_.last_failure = std::chrono::steady_clock::now();
    exhaustion_.pause = std::min(exhaustion_.pause * 2, kLongestAcceptPause);
    wait_to_accept();
  });
}

// Accept again only once the reserve is back: until then descriptors are still short.
bool Server::resume_accepting() {
  if (!reserve_.acquire()) return false;
  paused_ = false;
  retry_timer_.cancel();
  for (size_t i = 0; i < acceptors_.size(); ++i) accept(i);
  return true;
}

// Accepts work again; the episode ends once they have worked for kRecoveredAfter without
// a failure, so a server hovering at its limit logs one episode, not one per connection.
void Server::accepted_during_exhaustion() {
  exhaustion_.pause = kFirstAcceptPause;
  check_recovery_later();
}

// Looks again every kRecoveredAfter while the episode lasts: a failure just before the
// check must not leave the episode open when no further accept comes to ask.
void Server::check_recovery_later() {
  if (exhaustion_.check_pending) return;
  exhaustion_.check_pending = true;
  recovery_timer_.expires_after(kRecoveredAfter);
  recovery_timer_.async_wait([this, shared = shared_](const error_code& ec) {
    if (shared->stopped || ec) return;
    Exhaustion& e = exhaustion_;
    e.check_pending = false;
    if (!e.active) return;
    const auto now = std::chrono::steady_clock::now();
    if (paused_ || now - e.last_failure < kRecoveredAfter) return check_recovery_later();
    const auto lasted =
        std::chrono::duration_cast<std::chrono::milliseconds>(e.last_failure - e.since);
    log::info("accepting connections again; out of resources for " +
              std::to_string(lasted.count()) + " ms, " + std::to_string(e.failures) +
              " accept attempts paused");
    e.active = false;
  });
}

}  // namespace kg::webd
