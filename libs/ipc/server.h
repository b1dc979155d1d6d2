// policyd's side of the channel: listens on a Unix socket, checks every peer's
// credentials and Hello, then hands typed messages to the daemon. Runs on the daemon's
// single io_context; nothing here is thread-safe, nothing needs to be.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "ipc/admission.h"
#include "ipc/messages.h"
#include "ipc/peer.h"

namespace kg::ipc {

namespace detail {
struct ServerCore;
}

// One accepted, authenticated connection. Handles stay valid after the connection
// closes; send() then returns false.
class Session {
 public:
  virtual ~Session() = default;
  virtual uint64_t id() const = 0;
  virtual const Hello& hello() const = 0;
  Role role() const { return hello().role; }
  virtual const PeerCredentials& peer() const = 0;
  virtual bool is_open() const = 0;
  // Queues `m` for the peer. False if the session is closed, if the frame is larger
  // than the peer accepts (logged, session stays open), or if the write queue would
  // exceed its bound (the session is then closed: a peer that does not read is cut off).
  virtual bool send(const Message& m) = 0;
  // Closes now, with one log line giving `reason`; the daemon's on_close runs.
  virtual void close(const std::string& reason) = 0;
  // "session 3 (captured pid 1234 uid 998 knockgate-captured)", for log lines.
  virtual std::string describe() const = 0;
};
using SessionPtr = std::shared_ptr<Session>;

struct ServerOptions {
  std::string socket_path;            // e.g. /run/knockgate/policyd.sock
  std::optional<gid_t> socket_group;  // chgrp of the socket file; unset: our gid
  mode_t socket_mode = 0660;
  std::string program_name;                            // sent in Welcome
  size_t max_frame_bytes = kDefaultMaxFrameBytes;      // largest frame we accept
  size_t max_write_queue_bytes = size_t{1024} * 1024;  // per session
  // Checked at accept with the peer's SO_PEERCRED uid, before it says anything.
  ConnectionLimits limits;
  // Besides root, the uids that may use ConnectionLimits::reserved_connections: the
  // daemons' users, so that a flood from other users never locks them out.
  std::vector<uid_t> reserved_uids;
  // accept → Hello. A peer that has not sent a Hello by then is closed; one that was
  // refused must have read its Refused by then.
  std::chrono::milliseconds handshake_timeout{1000};
  // Lines about unauthenticated peers (over a limit, no Hello, refused, malformed before
  // Hello): this many per interval one by one, then one summary line with the counts.
  size_t rejection_log_burst = 5;
  std::chrono::milliseconds rejection_log_interval{10000};
  uint64_t boot_id = 0;  // 0: random
  PeerPolicy policy;     // required: no policy, no peers
};

class Server {
 public:
  using MessageHandler = std::function<void(const SessionPtr&, const Message&)>;
  using OpenHandler = std::function<void(const SessionPtr&)>;
  using CloseHandler = std::function<void(const SessionPtr&, const std::string& reason)>;

  Server(boost::asio::io_context& io, ServerOptions options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Removes a stale socket file (refusing if a server still answers on it or the path is
  // not a socket), binds with the configured mode and group, and starts accepting.
  Result<Ok> start();
  // Closes every session and the listener and removes the socket file we created.
  void stop();

  // Handlers run on the io_context and may send, close sessions or stop() the server;
  // they must not destroy the Server itself (post that instead).
  // Messages after the handshake, except Ping/Pong, which the library answers itself.
  void on_message(MessageHandler handler);
  void on_open(OpenHandler handler);    // after Welcome was queued
  void on_close(CloseHandler handler);  // only for sessions that were opened

  size_t session_count() const;     // authenticated sessions
  size_t connection_count() const;  // sessions and connections before or at Hello
  std::vector<SessionPtr> sessions() const;
  uint64_t boot_id() const;

 private:
  // Shared with pending handlers, which find it gone once the Server is destroyed.
  std::shared_ptr<detail::ServerCore> core_;
};

}  // namespace kg::ipc
