#include "ipc/server.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>

#include "common/log.h"
#include "ipc/internal.h"

namespace kg::ipc {

namespace asio = boost::asio;
using Stream = asio::local::stream_protocol;
using boost::system::error_code;

namespace {

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// A leftover socket file from a crashed server is removed; a live server, or a path that
// is not a socket at all, is left alone and reported.
Result<Ok> clear_stale_socket(asio::io_context& io, const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok{};
    return Error{errno_text("stat " + path)};
  }
  if (!S_ISSOCK(st.st_mode)) return Error{path + " exists and is not a socket"};

  // A Unix-socket connect answers at once: accepted by a live server, or refused.
  Stream::socket probe(io);
  error_code ec;
  probe.connect(Stream::endpoint(path), ec);
  if (!ec) return Error{"another server is listening on " + path};
  if (ec != asio::error::connection_refused) return Error{"probing " + path + ": " + ec.message()};
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error{errno_text("unlink " + path)};
  log::info("removed stale socket " + path);
  return Ok{};
}

// Tells a peer turned away at accept why, if its socket buffer takes the frame at once
// (a fresh one always does); never waits for a peer that may not read.
void tell_refused(Stream::socket& socket, const std::string& reason) {
  std::vector<uint8_t> frame;
  if (!append_frame(frame, Refused{reason}, kMinMaxFrameBytes).ok()) return;
  [[maybe_unused]] const ssize_t sent =
      ::send(socket.native_handle(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

// While accept fails (out of descriptors…) the connection stays in the backlog, so an
// immediate retry would spin; this spaces the retries.
constexpr std::chrono::milliseconds kAcceptRetry{100};

}  // namespace

namespace detail {

class Connection;

struct ServerCore {
  ServerCore(asio::io_context& context, ServerOptions opts)
      : io(context),
        options(std::move(opts)),
        acceptor(context),
        accept_retry(context),
        summary_timer(context),
        boot_id(options.boot_id != 0 ? options.boot_id : internal::random_u64()),
        admission(options.limits, options.reserved_uids),
        rejections(options.rejection_log_burst, options.rejection_log_interval) {}

  void accept_next();
  void on_accept(const error_code& ec, Stream::socket socket);
  void accept_failed(const error_code& ec);
  void admit(Stream::socket socket);
  // One line for something an unauthenticated peer caused, unless the interval's
  // budget is spent; then it is only counted for the summary line.
  void note(Rejection kind, uid_t uid, log::Level level, const std::string& line);
  void arm_summary();
  void stop();

  asio::io_context& io;
  ServerOptions options;
  Stream::acceptor acceptor;
  asio::steady_timer accept_retry;
  asio::steady_timer summary_timer;
  uint64_t boot_id;
  uint64_t next_session_id = 1;
  std::map<uint64_t, std::shared_ptr<Connection>> connections;  // handshaking and open
  size_t open_sessions = 0;
  AdmissionControl admission;
  RejectionLog rejections;
  bool summary_armed = false;
  bool running = false;
  uint64_t accept_failures = 0;  // in a row
  bool socket_created = false;
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
  Server::MessageHandler on_message;
  Server::OpenHandler on_open;
  Server::CloseHandler on_close;
  std::weak_ptr<ServerCore> self;
};

class Connection final : public Session, public std::enable_shared_from_this<Connection> {
 public:
  Connection(const std::shared_ptr<ServerCore>& core, uint64_t id, Stream::socket socket,
             PeerCredentials peer)
      : core_(core),
        id_(id),
        socket_(std::move(socket)),
        timer_(core->io),
        peer_(peer),
        reader_(core->options.max_frame_bytes),
        max_write_queue_bytes_(core->options.max_write_queue_bytes) {}

  void start(std::chrono::milliseconds handshake_timeout) {
    timer_.expires_after(handshake_timeout);
    timer_.async_wait([self = shared_from_this(), handshake_timeout](const error_code& ec) {
      if (ec || self->state_ == State::closed) return;
      if (self->state_ == State::handshaking) {
        self->finish("no Hello within " + std::to_string(handshake_timeout.count()) + " ms",
                     log::Level::warn, Rejection::no_hello);
      } else if (self->state_ == State::closing) {
        self->finish("peer did not take the Refused message", std::nullopt);
      }
    });
    read_more();
  }

  // Session
  uint64_t id() const override { return id_; }
  const Hello& hello() const override { return hello_; }
  const PeerCredentials& peer() const override { return peer_; }
  bool is_open() const override { return state_ == State::open; }
  bool send(const Message& m) override {
    if (state_ != State::open) return false;
    // Hello, Welcome and Refused belong to the handshake; client messages would only
    // make the peer hang up.
    if (message_sender(m) == Sender::client || std::holds_alternative<Welcome>(m) ||
        std::holds_alternative<Refused>(m)) {
      log::error(std::string("Session::send: ") + message_name(m) + " cannot be sent this way");
      return false;
    }
    return queue(m);
  }
  void close(const std::string& reason) override { finish(reason, log::Level::info); }

  std::string describe() const override {
    std::string s = "session " + std::to_string(id_) + " (";
    if (has_hello_) s += std::string(role_name(hello_.role)) + " ";
    s += "pid " + std::to_string(peer_.pid) + " uid " + std::to_string(peer_.uid);
    s += has_hello_ ? " " + hello_.program : ", before Hello";
    return s + ")";
  }

  // Closes with one log line at `level` (none when the reason was already logged).
  // Before the handshake completed, the line goes through the rate limit as `kind`.
  void finish(const std::string& reason, std::optional<log::Level> level,
              std::optional<Rejection> kind = std::nullopt) {
    if (state_ == State::closed) return;
    auto self = shared_from_this();  // the core's map may hold the last reference
    const bool was_open = state_ == State::open;
    state_ = State::closed;
    auto core = core_.lock();
    if (level) {
      const std::string line = "closing " + describe() + ": " + reason;
      if (core && kind && !was_open) {
        core->note(*kind, peer_.uid, *level, line);
      } else {
        log::write(*level, line);
      }
    }
    error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
    pending_.clear();
    pending_bytes_ = 0;
    if (!core) return;
    core->connections.erase(id_);
    core->admission.release(peer_.uid, was_open);
    if (!was_open) return;
    --core->open_sessions;
    if (core->on_close) core->on_close(self, reason);
  }

 private:
  enum class State { handshaking, open, closing, closed };

  void read_more() {
    const auto space = reader_.prepare();
    socket_.async_read_some(
        asio::buffer(space.data(), space.size()),
        [self = shared_from_this()](const error_code& ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(const error_code& ec, size_t n) {
    if (state_ == State::closed) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      if (state_ == State::closing) {
        finish("refused", std::nullopt);
      } else if (ec == asio::error::eof || ec == asio::error::connection_reset) {
        finish("closed by peer", log::Level::info, Rejection::closed_early);
      } else {
        finish("read: " + ec.message(), log::Level::warn, Rejection::protocol_error);
      }
      return;
    }
    reader_.commit(n);
    // After a refusal nothing the peer says matters; keep reading only to see it hang up.
    while (state_ == State::handshaking || state_ == State::open) {
      DecodeResult next = reader_.next();
      if (next.failed()) {
        finish("malformed frame: " + next.reason(), log::Level::warn, Rejection::protocol_error);
        return;
      }
      if (!next.ok()) break;
      handle(*next.message);
    }
    // A refused peer's further frames are ignored, not buffered.
    if (state_ == State::closing) reader_ = FrameReader(reader_.max_frame_bytes());
    if (state_ != State::closed) read_more();
  }

  void handle(const Message& m) {
    if (state_ == State::handshaking) {
      if (const auto* hello = std::get_if<Hello>(&m)) {
        handle_hello(*hello);
      } else {
        finish(std::string("expected Hello, got ") + message_name(m), log::Level::warn,
               Rejection::protocol_error);
      }
      return;
    }
    if (std::holds_alternative<Hello>(m)) {
      finish("second Hello", log::Level::warn);
      return;
    }
    if (message_sender(m) == Sender::server) {
      finish(std::string(message_name(m)) + " may only come from the server", log::Level::warn);
      return;
    }
    if (const auto* ping = std::get_if<Ping>(&m)) {
      queue(Pong{ping->nonce});
      return;
    }
    if (std::holds_alternative<Pong>(m)) return;
    auto core = core_.lock();
    if (core && core->on_message) core->on_message(shared_from_this(), m);
  }

  void handle_hello(const Hello& hello) {
    auto core = core_.lock();
    if (!core) return;
    hello_ = hello;
    has_hello_ = true;
    peer_max_frame_ = hello.max_frame_bytes;
    if (hello.protocol_version < 1) {
      refuse("protocol version " + std::to_string(hello.protocol_version) + " is not supported");
      return;
    }
    if (hello.pid != static_cast<uint32_t>(peer_.pid)) {
      refuse("Hello claims pid " + std::to_string(hello.pid) + " but the socket's peer is pid " +
             std::to_string(peer_.pid));
      return;
    }
    const PeerDecision decision = core->options.policy
                                      ? core->options.policy(hello, peer_)
                                      : PeerDecision::refuse("the server has no peer policy");
    if (!decision.accepted) {
      refuse(decision.reason);
      return;
    }
    state_ = State::open;
    timer_.cancel();
    ++core->open_sessions;
    core->admission.authenticated(peer_.uid);

    Welcome welcome;
    welcome.protocol_version = std::min(hello.protocol_version, kProtocolVersion);
    welcome.server_pid = static_cast<uint32_t>(getpid());
    welcome.server_boot_id = core->boot_id;
    welcome.session_id = id_;
    welcome.max_frame_bytes = static_cast<uint32_t>(core->options.max_frame_bytes);
    welcome.server_program = core->options.program_name;
    welcome.software_version = internal::software_version();
    if (!queue(welcome)) return;
    log::info("opened " + describe());
    if (core->on_open) core->on_open(shared_from_this());
  }

  void refuse(const std::string& reason) {
    if (auto core = core_.lock()) {
      core->note(Rejection::refused, peer_.uid, log::Level::warn,
                 "refusing " + describe() + ": " + reason);
    }
    state_ = State::closing;  // the handshake timer still bounds how long this may take
    if (!queue(Refused{reason})) finish("refused", std::nullopt);
  }

  bool queue(const Message& m) {
    std::vector<uint8_t> frame;
    if (auto appended = append_frame(frame, m, peer_max_frame_); !appended) {
      log::error("cannot send to " + describe() + ": " + appended.error().message);
      return false;
    }
    if (pending_bytes_ + frame.size() > max_write_queue_bytes_) {
      finish("write queue over " + std::to_string(max_write_queue_bytes_) +
                 " bytes: the peer is not reading",
             log::Level::warn);
      return false;
    }
    pending_bytes_ += frame.size();
    pending_.push_back(std::move(frame));
    write_more();
    return true;
  }

  void write_more() {
    if (writing_ || pending_.empty() || state_ == State::closed) return;
    writing_ = true;
    in_flight_ = pending_.size();
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(in_flight_);
    for (const auto& frame : pending_) buffers.emplace_back(frame.data(), frame.size());
    // deque::push_back keeps element addresses, so frames queued meanwhile are safe.
    asio::async_write(socket_, buffers, [self = shared_from_this()](const error_code& ec, size_t) {
      self->on_written(ec);
    });
  }

  void on_written(const error_code& ec) {
    writing_ = false;
    if (state_ == State::closed) return;
    if (ec) {
      if (state_ == State::closing) {
        finish("refused", std::nullopt);
      } else {
        const bool gone = ec == asio::error::broken_pipe || ec == asio::error::connection_reset;
        finish("write: " + ec.message(), gone ? log::Level::info : log::Level::warn);
      }
      return;
    }
    for (size_t i = 0; i < in_flight_; ++i) {
      pending_bytes_ -= pending_.front().size();
      pending_.pop_front();
    }
    in_flight_ = 0;
    if (state_ == State::closing && pending_.empty()) {
      // Refused is on its way; half-close so the peer reads it, then EOF.
      error_code ignored;
      socket_.shutdown(Stream::socket::shutdown_send, ignored);
      finish("refused", std::nullopt);
      return;
    }
    write_more();
  }

  std::weak_ptr<ServerCore> core_;
  uint64_t id_;
  Stream::socket socket_;
  asio::steady_timer timer_;
  PeerCredentials peer_;
  Hello hello_;
  bool has_hello_ = false;
  State state_ = State::handshaking;
  FrameReader reader_;
  // Until the peer says otherwise, send only what every endpoint accepts.
  size_t peer_max_frame_ = kMinMaxFrameBytes;
  std::deque<std::vector<uint8_t>> pending_;
  size_t pending_bytes_ = 0;
  size_t in_flight_ = 0;
  bool writing_ = false;
  size_t max_write_queue_bytes_;
};

void ServerCore::accept_next() {
  if (!running) return;
  acceptor.async_accept([weak = self](const error_code& ec, Stream::socket socket) {
    if (auto core = weak.lock()) core->on_accept(ec, std::move(socket));
  });
}

void ServerCore::on_accept(const error_code& ec, Stream::socket socket) {
  if (!running || ec == asio::error::operation_aborted) return;
  if (ec) {
    accept_failed(ec);
    return;
  }
  if (accept_failures > 0) {
    log::info("accepting on " + options.socket_path + " again after " +
              std::to_string(accept_failures) + " failed attempt(s)");
    accept_failures = 0;
  }
  admit(std::move(socket));
  accept_next();
}

void ServerCore::accept_failed(const error_code& ec) {
  // Out of descriptors and the like: say so once, back off, keep serving the sessions.
  if (accept_failures++ == 0) {
    log::warn("accept on " + options.socket_path + ": " + ec.message() + "; retrying every " +
              std::to_string(kAcceptRetry.count()) + " ms");
  }
  accept_retry.expires_after(kAcceptRetry);
  accept_retry.async_wait([weak = self](const error_code& wait_ec) {
    if (auto core = weak.lock(); core && !wait_ec) core->accept_next();
  });
}

void ServerCore::admit(Stream::socket socket) {
  // The kernel's word on who connected, before the peer has said anything.
  auto peer = peer_credentials(socket.native_handle());
  if (!peer) {
    note(Rejection::no_credentials, static_cast<uid_t>(-1), log::Level::warn,
         "dropping a connection on " + options.socket_path + ": " + peer.error().message);
    return;
  }
  if (const Admission a = admission.admit(peer->uid); a != Admission::admitted) {
    const std::string why = admission.describe(a, peer->uid);
    note(Rejection::over_limit, peer->uid, log::Level::warn,
         "closing a new connection (pid " + std::to_string(peer->pid) + " uid " +
             std::to_string(peer->uid) + "): " + why);
    tell_refused(socket, why);
    return;
  }
  const uint64_t id = next_session_id++;
  auto connection = std::make_shared<Connection>(self.lock(), id, std::move(socket), *peer);
  connections.emplace(id, connection);
  connection->start(options.handshake_timeout);
}

void ServerCore::note(Rejection kind, uid_t uid, log::Level level, const std::string& line) {
  if (rejections.note(kind, uid, std::chrono::steady_clock::now())) {
    log::write(level, line);
  } else {
    arm_summary();
  }
}

void ServerCore::arm_summary() {
  const auto due = rejections.summary_due();
  if (summary_armed || !due) return;
  summary_armed = true;
  summary_timer.expires_at(*due);
  summary_timer.async_wait([weak = self](const error_code& ec) {
    auto core = weak.lock();
    if (!core || ec) return;
    core->summary_armed = false;
    if (auto line = core->rejections.summary(std::chrono::steady_clock::now())) {
      log::warn(core->options.socket_path + ": " + *line);
    }
  });
}

void ServerCore::stop() {
  if (!running) return;
  running = false;
  error_code ignored;
  acceptor.close(ignored);
  accept_retry.cancel();
  summary_timer.cancel();
  summary_armed = false;
  // finish() erases from the map: close from a copy.
  std::vector<std::shared_ptr<Connection>> all;
  for (auto& [id, connection] : connections) all.push_back(connection);
  for (auto& connection : all) connection->finish("server stopping", log::Level::debug);
  connections.clear();
  if (auto line = rejections.flush(std::chrono::steady_clock::now())) {
    log::warn(options.socket_path + ": " + *line);
  }
  if (socket_created) {
    struct stat st {};
    // Remove only the file we made: a successor may already have bound its own.
    if (lstat(options.socket_path.c_str(), &st) == 0 && st.st_dev == socket_dev &&
        st.st_ino == socket_ino) {
      ::unlink(options.socket_path.c_str());
    }
    socket_created = false;
  }
  log::info("stopped listening on " + options.socket_path);
}

}  // namespace detail

Server::Server(asio::io_context& io, ServerOptions options)
    : core_(std::make_shared<detail::ServerCore>(io, std::move(options))) {
  core_->self = core_;
}

Server::~Server() {
  // The daemon's handlers may point at objects already gone; do not call them now.
  core_->on_message = nullptr;
  core_->on_open = nullptr;
  core_->on_close = nullptr;
  try {
    core_->stop();
  } catch (...) {
    // Only a failed allocation for a log line gets here; destroying the core closes the rest.
  }
}

Result<Ok> Server::start() {
  auto& core = *core_;
  const ServerOptions& o = core.options;
  if (core.running) return Error{"server already started"};
  if (!o.policy) return Error{"no peer policy given"};
  if (o.max_frame_bytes < kMinMaxFrameBytes || o.max_frame_bytes > UINT32_MAX) {
    return Error{"max_frame_bytes must be between " + std::to_string(kMinMaxFrameBytes) +
                 " and 2^32-1"};
  }
  if (auto invalid = AdmissionControl::invalid(o.limits)) return Error{*invalid};
  if (o.rejection_log_interval.count() <= 0)
    return Error{"rejection_log_interval must be positive"};
  if (o.socket_path.empty() || o.socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Error{"socket path '" + o.socket_path + "' is empty or too long"};
  }
  if (auto cleared = clear_stale_socket(core.io, o.socket_path); !cleared) return cleared.error();

  error_code ec;
  core.acceptor.open(Stream(), ec);
  if (ec) return Error{"socket: " + ec.message()};
  // Create the file owner-only; group and mode are set below, so there is no moment
  // when it is open to more than intended.
  const mode_t old_umask = ::umask(0177);
  core.acceptor.bind(Stream::endpoint(o.socket_path), ec);
  ::umask(old_umask);
  if (ec) {
    core.acceptor.close(ec);
    return Error{"bind " + o.socket_path + ": " + ec.message()};
  }
  struct stat st {};
  if (lstat(o.socket_path.c_str(), &st) == 0) {
    core.socket_created = true;
    core.socket_dev = st.st_dev;
    core.socket_ino = st.st_ino;
  }
  auto fail = [&](const std::string& message) -> Result<Ok> {
    error_code ignored;
    core.acceptor.close(ignored);
    ::unlink(o.socket_path.c_str());
    core.socket_created = false;
    return Error{message};
  };
  if (o.socket_group &&
      ::chown(o.socket_path.c_str(), static_cast<uid_t>(-1), *o.socket_group) != 0) {
    return fail(
        errno_text("chgrp " + o.socket_path + " to gid " + std::to_string(*o.socket_group)));
  }
  if (::chmod(o.socket_path.c_str(), o.socket_mode) != 0) {
    return fail(errno_text("chmod " + o.socket_path));
  }
  core.acceptor.listen(SOMAXCONN, ec);
  if (ec) return fail("listen " + o.socket_path + ": " + ec.message());
  core.running = true;
  core.accept_next();
  log::info("listening on " + o.socket_path);
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
                      o.limits.max_connections + 64 > files.rlim_cur) {
    log::warn("up to " + std::to_string(o.limits.max_connections) + " connections on " +
              o.socket_path + " are close to the descriptor limit of " +
              std::to_string(files.rlim_cur) + "; accepts may fail");
  }
  return Ok{};
}

void Server::stop() {
  core_->stop();
}

void Server::on_message(MessageHandler handler) {
  core_->on_message = std::move(handler);
}
void Server::on_open(OpenHandler handler) {
  core_->on_open = std::move(handler);
}
void Server::on_close(CloseHandler handler) {
  core_->on_close = std::move(handler);
}

size_t Server::session_count() const {
  return core_->open_sessions;
}

size_t Server::connection_count() const {
  return core_->connections.size();
}

std::vector<SessionPtr> Server::sessions() const {
  std::vector<SessionPtr> out;
  for (const auto& [id, connection] : core_->connections) {
    if (connection->is_open()) out.push_back(connection);
  }
  return out;
}

uint64_t Server::boot_id() const {
  return core_->boot_id;
}

}  // namespace kg::ipc
