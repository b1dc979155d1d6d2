// TCP and HTTP SPA doors: fwknop -P tcp / -P http connect, write the packet and close,
// so something must accept. captured listens (no privilege needed), reads at most one
// packet's worth per connection with a deadline, and hands the text to the SPA gate; the
// handshake has proven the source address. Connections are capped.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/addr.h"
#include "common/result.h"
#include "spa/transport.h"

namespace kg::captured {

class SpaListener {
 public:
  // door index, received bytes, peer, local address
  using Handler = std::function<void(size_t door, std::string data, bool complete,
                                     const IpAddr& src, const IpAddr& dst)>;
  static constexpr size_t kMaxConnections = 64;
  static constexpr size_t kMaxBytes = 2048;
  static constexpr std::chrono::seconds kReadDeadline{3};

  SpaListener(boost::asio::io_context& io, Handler handler);
  ~SpaListener();
  SpaListener(const SpaListener&) = delete;
  SpaListener& operator=(const SpaListener&) = delete;

  // Listens on `port` for door `door`; dual-stack where IPv6 exists.
  Result<Ok> listen(size_t door, uint16_t port, spa::Transport transport);
  void stop();

 private:
  struct Acceptor;
  struct Connection;
  void accept_next(const std::shared_ptr<Acceptor>& a);

  boost::asio::io_context& io_;
  Handler handler_;
  std::vector<std::shared_ptr<Acceptor>> acceptors_;
  std::shared_ptr<size_t> open_connections_ = std::make_shared<size_t>(0);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kg::captured
