// What a knock is and what a door asks of a packet: the vocabulary the config parser
// produces and the knock engine, the packet decoder and the knock client consume.
#pragma once

#include <cstdint>
#include <string>

namespace kg {

enum class Proto : uint8_t { tcp = 6, udp = 17 };

inline const char* proto_name(Proto p) {
  return p == Proto::udp ? "udp" : "tcp";
}

struct Knock {
  Proto proto = Proto::tcp;
  uint16_t port = 0;
  friend bool operator==(const Knock&, const Knock&) = default;
};

// TCP flag bits as they sit in byte 13 of the TCP header.
namespace tcpflag {
inline constexpr uint8_t fin = 0x01;
inline constexpr uint8_t syn = 0x02;
inline constexpr uint8_t rst = 0x04;
inline constexpr uint8_t psh = 0x08;
inline constexpr uint8_t ack = 0x10;
inline constexpr uint8_t urg = 0x20;
}  // namespace tcpflag

// knockd's `tcpflags`: listed flags must be set, `!`-flags must be clear, the rest are
// don't-care. UDP packets always pass.
struct TcpFlagsTest {
  uint8_t must_set = 0;
  uint8_t must_clear = 0;
  bool matches(uint8_t flags) const {
    return (flags & must_set) == must_set && (flags & must_clear) == 0;
  }
  bool any() const { return (must_set | must_clear) != 0; }
  friend bool operator==(const TcpFlagsTest&, const TcpFlagsTest&) = default;
};

// "syn,!ack" style rendering, in knockd's flag order.
std::string tcpflags_str(const TcpFlagsTest& t);

}  // namespace kg
