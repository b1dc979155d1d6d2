// The connecting side (captured, verdictd, webd, knockgatectl): connects to policyd,
// introduces itself with Hello, keeps reconnecting with back-off, and delivers
// KnockEvents reliably: each stays queued until policyd acknowledges it and is sent
// again after every reconnect. Runs on the daemon's single io_context.
#pragma once

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
#include "ipc/backoff.h"
#include "ipc/messages.h"

namespace kg::ipc {

namespace detail {
struct ClientCore;
}

enum class ClientState : uint8_t {
  stopped,      // not started, stopped, or gave up (reconnect off)
  connecting,   // connect() in progress
  handshaking,  // Hello sent, waiting for Welcome
  connected,    // Welcome received
  waiting,      // backing off before the next attempt
};
const char* client_state_name(ClientState s);

struct ClientOptions {
  std::string socket_path;
  Role role = Role::ctl;
  std::string program_name;                        // empty: the executable's name
  size_t max_frame_bytes = kDefaultMaxFrameBytes;  // largest frame we accept (≥ 1 KiB)
  size_t max_queued_events = 10000;  // unacknowledged events kept; the oldest go first
  size_t max_write_queue_bytes = size_t{1024} * 1024;  // other messages waiting to be written
  BackoffPolicy backoff;
  uint64_t backoff_seed = 0;  // 0: random
  bool reconnect = true;      // false: one attempt, then stopped (knockgatectl)
  std::chrono::milliseconds handshake_timeout{5000};  // connect → Welcome
  std::chrono::milliseconds ping_interval{0};  // >0: Ping this often, drop if no Pong by the next
  uint64_t boot_id = 0;                        // 0: random (the normal case)
};

struct ClientStats {
  uint64_t events_queued = 0;  // send_event calls
  uint64_t events_sent = 0;    // frames written, re-sends included
  uint64_t events_resent = 0;  // of those, written again after a reconnect
  uint64_t events_acked = 0;
  uint64_t events_dropped = 0;  // pushed out of a full queue, or too big to ever send
  uint64_t connects = 0;        // handshakes completed
  size_t events_pending = 0;    // queued, not yet acknowledged
};

class Client {
 public:
  using MessageHandler = std::function<void(const Message&)>;
  using StateHandler = std::function<void(ClientState, const std::string& detail)>;

  Client(boost::asio::io_context& io, ClientOptions options);
  ~Client();  // stop()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Begins connecting. Fails only on unusable options (bad path, limits).
  Result<Ok> start();
  // Disconnects and stops retrying. Queued events stay for a later start().
  void stop();

  // Queues `event` under the next event id (returned; the event's own id is ignored) and
  // sends it when connected. It stays queued until an EventAck for that id.
  uint64_t send_event(KnockEvent event);
  // Any other client message, best effort: false unless connected (or if it cannot be
  // queued). KnockEvents must go through send_event.
  bool send(const Message& m);

  // Handlers run on the io_context and may send or stop(); they must not destroy the
  // Client itself (post that instead).
  // Messages from the server, after the handshake; Ping/Pong are handled inside.
  void on_message(MessageHandler handler);
  // Every state change, with the reason for failures ("connect: Connection refused").
  void on_state(StateHandler handler);

  ClientState state() const;
  bool connected() const { return state() == ClientState::connected; }
  // The server's Welcome while connected.
  const std::optional<Welcome>& welcome() const;
  uint64_t boot_id() const;
  ClientStats stats() const;
  std::vector<uint64_t> pending_event_ids() const;

 private:
  // Shared with pending handlers, which find it gone once the Client is destroyed.
  std::shared_ptr<detail::ClientCore> core_;
};

}  // namespace kg::ipc
