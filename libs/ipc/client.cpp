#include "ipc/client.h"

#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <deque>

#include "common/log.h"
#include "ipc/internal.h"

namespace kg::ipc {

namespace asio = boost::asio;
using Stream = asio::local::stream_protocol;
using boost::system::error_code;

const char* client_state_name(ClientState s) {
  switch (s) {
    case ClientState::stopped:
      return "stopped";
    case ClientState::connecting:
      return "connecting";
    case ClientState::handshaking:
      return "handshaking";
    case ClientState::connected:
      return "connected";
    case ClientState::waiting:
      return "waiting";
  }
  return "?";
}

namespace detail {

namespace {
// Events go out in batches of about this many bytes: a long backlog after a reconnect
// is written without holding a second copy of the whole queue.
constexpr size_t kEventBatchBytes = size_t{64} * 1024;

bool event_id_less(const KnockEvent& e, uint64_t id) {
  return e.event_id < id;
}
}  // namespace

// One connection attempt and, if it succeeds, the connection. Handlers carry the Link
// they were started for and ignore themselves once it is no longer the current one.
struct Link {
  Link(asio::io_context& io, size_t max_frame) : socket(io), reader(max_frame) {}
  Stream::socket socket;
  FrameReader reader;
  std::deque<std::vector<uint8_t>> control;  // Hello, Pong, Ping, send(): before events
  size_t control_bytes = 0;
  size_t control_in_flight = 0;
  std::vector<uint8_t> event_batch;  // events being written
  bool writing = false;
  bool closed = false;
  uint64_t next_event_id = 0;  // lowest event id not yet written on this link
  size_t peer_max_frame = kMinMaxFrameBytes;
};

struct ClientCore : std::enable_shared_from_this<ClientCore> {
  ClientCore(asio::io_context& context, ClientOptions opts)
      : io(context),
        options(std::move(opts)),
        backoff(options.backoff, options.backoff_seed),
        retry_timer(context),
        handshake_timer(context),
        ping_timer(context),
        boot_id(options.boot_id != 0 ? options.boot_id : internal::random_u64()) {
    if (options.program_name.empty()) options.program_name = program_invocation_short_name;
    options.max_frame_bytes = std::max(options.max_frame_bytes, kMinMaxFrameBytes);
    options.max_queued_events = std::max<size_t>(options.max_queued_events, 1);
  }

  void set_state(ClientState s, const std::string& detail) {
    if (s == state) return;
    state = s;
    if (on_state) on_state(s, detail);
  }

  void connect() {
    set_state(ClientState::connecting, {});
    if (state != ClientState::connecting) return;  // stopped from the state handler
    link = std::make_shared<Link>(io, options.max_frame_bytes);
    link->socket.async_connect(Stream::endpoint(options.socket_path),
                               [weak = weak_from_this(), l = link](const error_code& ec) {
                                 if (auto core = weak.lock()) core->on_connect(l, ec);
                               });
  }

  void on_connect(const std::shared_ptr<Link>& l, const error_code& ec) {
    if (l != link) return;
    if (ec) {
      fail(l, "connect: " + ec.message());
      return;
    }
    set_state(ClientState::handshaking, {});
    if (l != link) return;
    Hello hello;
    hello.role = options.role;
    hello.pid = static_cast<uint32_t>(getpid());
    hello.boot_id = boot_id;
    hello.max_frame_bytes = static_cast<uint32_t>(options.max_frame_bytes);
    hello.program = options.program_name;
    if (!queue_control(l, hello)) {
      fail(l, "cannot send Hello");
      return;
    }
    handshake_timer.expires_after(options.handshake_timeout);
    handshake_timer.async_wait([weak = weak_from_this(), l](const error_code& wait_ec) {
      auto core = weak.lock();
      if (!core || wait_ec || l != core->link || core->state != ClientState::handshaking) return;
      core->fail(l, "no Welcome within " + std::to_string(core->options.handshake_timeout.count()) +
                        " ms");
    });
    read_more(l);
  }

  void read_more(const std::shared_ptr<Link>& l) {
    const auto space = l->reader.prepare();
    l->socket.async_read_some(asio::buffer(space.data(), space.size()),
                              [weak = weak_from_this(), l](const error_code& ec, size_t n) {
                                if (auto core = weak.lock()) core->on_read(l, ec, n);
                              });
  }

  void on_read(const std::shared_ptr<Link>& l, const error_code& ec, size_t n) {
    if (l != link || l->closed) return;
    if (ec) {
      fail(l, ec == asio::error::eof ? std::string("server closed the connection")
                                     : "read: " + ec.message());
      return;
    }
    l->reader.commit(n);
    for (;;) {
      DecodeResult next = l->reader.next();
      if (next.failed()) {
        fail(l, "malformed frame from the server: " + next.reason());
        return;
      }
      if (!next.ok()) break;
      handle(l, *next.message);
      if (l != link || l->closed) return;  // the message or a handler ended this link
    }
    read_more(l);
  }

  void handle(const std::shared_ptr<Link>& l, const Message& m) {
    if (state == ClientState::handshaking) {
      if (const auto* welcome_msg = std::get_if<Welcome>(&m)) {
        on_welcome(l, *welcome_msg);
      } else if (const auto* refused = std::get_if<Refused>(&m)) {
        fail(l, "refused by the server: " + refused->reason);
      } else {
        fail(l, std::string("protocol error: expected Welcome, got ") + message_name(m));
      }
      return;
    }
    if (message_sender(m) == Sender::client || std::holds_alternative<Welcome>(m) ||
        std::holds_alternative<Refused>(m)) {
      fail(l, std::string("protocol error: unexpected ") + message_name(m) + " from the server");
      return;
    }
    if (const auto* ping = std::get_if<Ping>(&m)) {
      queue_control(l, Pong{ping->nonce});
      return;
    }
    if (const auto* pong = std::get_if<Pong>(&m)) {
      if (pong->nonce == ping_nonce) ping_outstanding = false;
      return;
    }
    if (const auto* ack = std::get_if<EventAck>(&m)) on_ack(ack->event_id);
    if (on_message) on_message(m);
  }

  void on_welcome(const std::shared_ptr<Link>& l, const Welcome& w) {
    handshake_timer.cancel();
    welcome = w;
    l->peer_max_frame = w.max_frame_bytes;
    l->next_event_id = 0;  // everything unacknowledged goes (again) on this link
    backoff.reset();
    last_failure.clear();
    ++stats.connects;
    log::info("connected to " + w.server_program + " pid " + std::to_string(w.server_pid) + " on " +
              options.socket_path + " as " + role_name(options.role) + " (session " +
              std::to_string(w.session_id) + ", " + std::to_string(events.size()) +
              " events to send)");
    set_state(ClientState::connected, {});
    if (l != link) return;  // the state handler may have stopped us
    arm_ping(l);
    write_more(l);
  }

  void on_ack(uint64_t id) {
    auto it = std::lower_bound(events.begin(), events.end(), id, event_id_less);
    if (it == events.end() || it->event_id != id) return;  // dropped, or acked twice
    events.erase(it);
    ++stats.events_acked;
    if (dropped_in_streak > 0 && events.size() < options.max_queued_events) {
      log::warn("event queue below its limit again; " + std::to_string(dropped_in_streak) +
                " oldest unacknowledged events were dropped");
      dropped_in_streak = 0;
    }
  }

  void arm_ping(const std::shared_ptr<Link>& l) {
    if (options.ping_interval.count() <= 0) return;
    ping_timer.expires_after(options.ping_interval);
    ping_timer.async_wait([weak = weak_from_this(), l](const error_code& ec) {
      auto core = weak.lock();
      if (!core || ec || l != core->link || core->state != ClientState::connected) return;
      if (core->ping_outstanding) {
        core->fail(l,
                   "no Pong within " + std::to_string(core->options.ping_interval.count()) + " ms");
        return;
      }
      core->ping_outstanding = true;
      core->ping_nonce = internal::random_u64();
      if (!core->queue_control(l, Ping{core->ping_nonce})) return;
      core->arm_ping(l);
    });
  }

  // Frames other than events: written before any event batch.
  bool queue_control(const std::shared_ptr<Link>& l, const Message& m) {
    std::vector<uint8_t> frame;
    if (auto appended = append_frame(frame, m, l->peer_max_frame); !appended) {
      log::error("cannot send to " + options.socket_path + ": " + appended.error().message);
      return false;
    }
    if (l->control_bytes + frame.size() > options.max_write_queue_bytes) {
      fail(l, "write queue over " + std::to_string(options.max_write_queue_bytes) +
                  " bytes: the server is not reading");
      return false;
    }
    l->control_bytes += frame.size();
    l->control.push_back(std::move(frame));
    write_more(l);
    return true;
  }

  void fill_event_batch(const std::shared_ptr<Link>& l) {
    auto it = std::lower_bound(events.begin(), events.end(), l->next_event_id, event_id_less);
    while (it != events.end() && l->event_batch.size() < kEventBatchBytes) {
      if (auto appended = append_frame(l->event_batch, *it, l->peer_max_frame); !appended) {
        // Too big for this server, now and after any reconnect: drop it, loudly.
        log::error("dropping event " + std::to_string(it->event_id) + ": " +
                   appended.error().message);
        ++stats.events_dropped;
        l->next_event_id = it->event_id + 1;
        it = events.erase(it);
        continue;
      }
      if (it->event_id <= highest_sent_id) {
        ++stats.events_resent;
      } else {
        highest_sent_id = it->event_id;
      }
      ++stats.events_sent;
      l->next_event_id = it->event_id + 1;
      ++it;
    }
  }

  void write_more(const std::shared_ptr<Link>& l) {
    if (l->writing || l->closed) return;
    std::vector<asio::const_buffer> buffers;
    if (!l->control.empty()) {
      l->control_in_flight = l->control.size();
      for (const auto& frame : l->control) buffers.emplace_back(frame.data(), frame.size());
    } else if (state == ClientState::connected) {
      fill_event_batch(l);
      if (l->event_batch.empty()) return;
      buffers.emplace_back(l->event_batch.data(), l->event_batch.size());
    } else {
      return;
    }
    l->writing = true;
    asio::async_write(l->socket, buffers,
                      [weak = weak_from_this(), l](const error_code& ec, size_t) {
                        if (auto core = weak.lock()) core->on_written(l, ec);
                      });
  }

  void on_written(const std::shared_ptr<Link>& l, const error_code& ec) {
    l->writing = false;
    if (l != link || l->closed) return;
    if (ec) {
      fail(l, "write: " + ec.message());
      return;
    }
    for (; l->control_in_flight > 0; --l->control_in_flight) {
      l->control_bytes -= l->control.front().size();
      l->control.pop_front();
    }
    l->event_batch.clear();
    write_more(l);
  }

  void close_link() {
    if (!link) return;
    link->closed = true;
    error_code ignored;
    link->socket.close(ignored);
    link.reset();
    handshake_timer.cancel();
    ping_timer.cancel();
    ping_outstanding = false;
    welcome.reset();
  }

  // The connection attempt or connection `l` ended. One log line per change of
  // situation: a lost connection, or a new reason for failing to (re)connect.
  void fail(const std::shared_ptr<Link>& l, const std::string& reason) {
    if (l != link) return;
    auto keep = shared_from_this();  // a state handler may destroy the Client
    const bool was_connected = state == ClientState::connected;
    close_link();
    if (was_connected) {
      log::warn("lost connection to " + options.socket_path + ": " + reason +
                (options.reconnect ? "; reconnecting" : ""));
      last_failure = reason;
    } else if (reason != last_failure) {
      log::warn("cannot connect to " + options.socket_path + ": " + reason +
                (options.reconnect ? "; retrying with back-off" : ""));
      last_failure = reason;
    }
    if (!options.reconnect) {
      set_state(ClientState::stopped, reason);
      return;
    }
    const auto delay = backoff.next();
    set_state(ClientState::waiting, reason);
    if (state != ClientState::waiting) return;  // stopped from the state handler
    retry_timer.expires_after(delay);
    retry_timer.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto core = weak.lock();
      if (!core || ec || core->state != ClientState::waiting) return;
      core->connect();
    });
  }

  void stop() {
    if (state == ClientState::stopped) return;
    const bool was_connected = state == ClientState::connected;
    retry_timer.cancel();
    close_link();
    if (was_connected) log::info("disconnected from " + options.socket_path);
    if (dropped_in_streak > 0) {
      log::warn(std::to_string(dropped_in_streak) +
                " unacknowledged events were dropped from the full queue");
      dropped_in_streak = 0;
    }
    set_state(ClientState::stopped, "stopped");
  }

  asio::io_context& io;
  ClientOptions options;
  Backoff backoff;
  asio::steady_timer retry_timer;
  asio::steady_timer handshake_timer;
  asio::steady_timer ping_timer;
  uint64_t boot_id;
  ClientState state = ClientState::stopped;
  std::shared_ptr<Link> link;
  std::optional<Welcome> welcome;
  std::string last_failure;
  bool ping_outstanding = false;
  uint64_t ping_nonce = 0;

  std::deque<KnockEvent> events;  // unacknowledged, ascending event id
  uint64_t next_event_id = 1;
  uint64_t highest_sent_id = 0;
  uint64_t dropped_in_streak = 0;
  ClientStats stats;

  Client::MessageHandler on_message;
  Client::StateHandler on_state;
};

}  // namespace detail

Client::Client(asio::io_context& io, ClientOptions options)
    : core_(std::make_shared<detail::ClientCore>(io, std::move(options))) {}

Client::~Client() {
  // The daemon's handlers may point at objects already gone; do not call them now.
  core_->on_message = nullptr;
  core_->on_state = nullptr;
  try {
    core_->stop();
  } catch (...) {
    // Only a failed allocation for a log line gets here; destroying the core closes the rest.
  }
}

Result<Ok> Client::start() {
  auto& core = *core_;
  if (core.state != ClientState::stopped) return Ok{};
  const std::string& path = core.options.socket_path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Error{"socket path '" + path + "' is empty or too long"};
  }
  if (core.options.max_frame_bytes > UINT32_MAX) return Error{"max_frame_bytes above 2^32-1"};
  core.last_failure.clear();
  core.backoff.reset();
  core.connect();
  return Ok{};
}

void Client::stop() {
  core_->stop();
}

uint64_t Client::send_event(KnockEvent event) {
  auto& core = *core_;
  event.event_id = core.next_event_id++;
  ++core.stats.events_queued;
  if (core.events.size() >= core.options.max_queued_events) {
    core.events.pop_front();
    ++core.stats.events_dropped;
    if (core.dropped_in_streak++ == 0) {
      log::warn("event queue full (" + std::to_string(core.options.max_queued_events) +
                " unacknowledged): dropping the oldest events");
    }
  }
  core.events.push_back(std::move(event));
  if (core.link && core.state == ClientState::connected) core.write_more(core.link);
  return core.events.back().event_id;
}

bool Client::send(const Message& m) {
  auto& core = *core_;
  if (core.state != ClientState::connected || !core.link) return false;
  if (std::holds_alternative<KnockEvent>(m) || message_sender(m) == Sender::server) {
    log::error(std::string("Client::send: ") + message_name(m) + " cannot be sent this way");
    return false;
  }
  return core.queue_control(core.link, m);
}

void Client::on_message(MessageHandler handler) {
  core_->on_message = std::move(handler);
}
void Client::on_state(StateHandler handler) {
  core_->on_state = std::move(handler);
}
ClientState Client::state() const {
  return core_->state;
}
const std::optional<Welcome>& Client::welcome() const {
  return core_->welcome;
}
uint64_t Client::boot_id() const {
  return core_->boot_id;
}

ClientStats Client::stats() const {
  ClientStats s = core_->stats;
  s.events_pending = core_->events.size();
  return s;
}

std::vector<uint64_t> Client::pending_event_ids() const {
  std::vector<uint64_t> ids;
  ids.reserve(core_->events.size());
  for (const auto& e : core_->events) ids.push_back(e.event_id);
  return ids;
}

}  // namespace kg::ipc
