#include "captured/spa_listener.h"

#include <boost/asio/ip/v6_only.hpp>

#include "common/log.h"

namespace kg::captured {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

IpAddr from_asio(const asio::ip::address& a) {
  if (a.is_v4()) return IpAddr::v4(a.to_v4().to_uint());
  const auto v6 = a.to_v6();
  if (v6.is_v4_mapped())
    return IpAddr::v4(asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_uint());
  const auto b = v6.to_bytes();
  return IpAddr::v6(b.data());
}

}  // namespace

struct SpaListener::Acceptor {
  Acceptor(asio::io_context& io, size_t d, spa::Transport t)
      : acceptor(io), door(d), transport(t) {}
  tcp::acceptor acceptor;
  size_t door;
  spa::Transport transport;
};

struct SpaListener::Connection : std::enable_shared_from_this<Connection> {
  Connection(asio::io_context& io, tcp::socket s) : socket(std::move(s)), deadline(io) {}
  tcp::socket socket;
  asio::steady_timer deadline;
  std::string data;
  std::array<char, 512> chunk{};
  bool done = false;
  bool http = false;
  std::function<void(bool complete)> finish;

  // Reads until the peer closes (tcp), the request head ends (http), or the cap.
  void read() {
    socket.async_read_some(asio::buffer(chunk), [self = shared_from_this()](
                                                    const boost::system::error_code& ec, size_t n) {
      if (self->done) return;
      const size_t room = kMaxBytes - std::min(kMaxBytes, self->data.size());
      self->data.append(self->chunk.data(), std::min(n, room));
      if (ec == asio::error::eof) return self->finish(true);
      if (ec) return self->finish(false);
      if (self->http && self->data.find("\r\n\r\n") != std::string::npos) {
        return self->finish(true);
      }
      if (self->data.size() >= kMaxBytes) return self->finish(false);
      self->read();
    });
  }
};

SpaListener::SpaListener(asio::io_context& io, Handler handler)
    : io_(io), handler_(std::move(handler)) {}

SpaListener::~SpaListener() {
  *alive_ = false;
  stop();
}

Result<Ok> SpaListener::listen(size_t door, uint16_t port, spa::Transport transport) {
  auto a = std::make_shared<Acceptor>(io_, door, transport);
  boost::system::error_code ec;
  // Dual-stack first; a host without IPv6 gets IPv4 only.
  a->acceptor.open(tcp::v6(), ec);
  if (!ec) {
    a->acceptor.set_option(asio::ip::v6_only(false), ec);
    a->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    a->acceptor.bind(tcp::endpoint(tcp::v6(), port), ec);
  }
  if (ec) {
    boost::system::error_code ignored;
    a->acceptor.close(ignored);
    ec.clear();
    a->acceptor.open(tcp::v4(), ec);
    if (!ec) a->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) a->acceptor.bind(tcp::endpoint(tcp::v4(), port), ec);
  }
  if (!ec) a->acceptor.listen(static_cast<int>(kMaxConnections), ec);
  if (ec) return Error{"SPA tcp/" + std::to_string(port) + ": " + ec.message()};
  acceptors_.push_back(a);
  accept_next(a);
  return Ok{};
}

void SpaListener::stop() {
  for (auto& a : acceptors_) {
    boost::system::error_code ignored;
    a->acceptor.close(ignored);
  }
  acceptors_.clear();
}

void SpaListener::accept_next(const std::shared_ptr<Acceptor>& a) {
  a->acceptor.async_accept([this, a, alive = alive_, open = open_connections_](
                               const boost::system::error_code& ec, tcp::socket socket) {
    if (!*alive || !a->acceptor.is_open()) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) accept_next(a);
      return;
    }
    if (*open >= kMaxConnections) {
      boost::system::error_code ignored;
      socket.close(ignored);  // over the cap: the client may retry
      accept_next(a);
      return;
    }
    ++*open;
    auto conn = std::make_shared<Connection>(io_, std::move(socket));
    boost::system::error_code e1, e2;
    const auto peer = conn->socket.remote_endpoint(e1);
    const auto local = conn->socket.local_endpoint(e2);
    if (e1 || e2) {
      --*open;
      accept_next(a);
      return;
    }
    const IpAddr src = from_asio(peer.address());
    const IpAddr dst = from_asio(local.address());
    const size_t door = a->door;
    conn->http = a->transport == spa::Transport::http;
    // The callback holds the connection only weakly: the pending read and the timer own it.
    std::weak_ptr<Connection> weak = conn;
    conn->finish = [this, weak, open, alive, door, src, dst](bool complete) {
      auto c = weak.lock();
      if (!c || c->done) return;
      c->done = true;
      --*open;
      c->deadline.cancel();
      boost::system::error_code ignored;
      c->socket.shutdown(tcp::socket::shutdown_both, ignored);
      c->socket.close(ignored);
      if (*alive) handler_(door, std::move(c->data), complete, src, dst);
    };
    conn->deadline.expires_after(kReadDeadline);
    conn->deadline.async_wait([conn](const boost::system::error_code& tec) {
      if (!tec) conn->finish(false);
    });
    conn->read();
    accept_next(a);
  });
}

}  // namespace kg::captured
