// IPv4/IPv6 address value type shared by the decoder, the knock engine, the config
// and the message channel. IPv4 is stored in the first 4 bytes; the rest stay zero so
// that equality and hashing can look at all 16 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace kg {

enum class Family : uint8_t { none = 0, v4 = 4, v6 = 6 };

class IpAddr {
 public:
  constexpr IpAddr() = default;

  static IpAddr v4(const uint8_t* four_bytes) {
    IpAddr a;
    a.family_ = Family::v4;
    std::memcpy(a.bytes_.data(), four_bytes, 4);
    return a;
  }
  static IpAddr v4(uint32_t host_order) {
    const uint8_t b[4] = {static_cast<uint8_t>(host_order >> 24),
                          static_cast<uint8_t>(host_order >> 16),
                          static_cast<uint8_t>(host_order >> 8), static_cast<uint8_t>(host_order)};
    return v4(b);
  }
  static IpAddr v6(const uint8_t* sixteen_bytes) {
    IpAddr a;
    a.family_ = Family::v6;
    std::memcpy(a.bytes_.data(), sixteen_bytes, 16);
    return a;
  }

  // Strict textual parse: dotted quad (no leading zeros ambiguity beyond inet_pton's rules)
  // or RFC 4291 IPv6. Returns nullopt on anything else.
  static std::optional<IpAddr> parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::v4; }
  bool is_v6() const { return family_ == Family::v6; }
  bool empty() const { return family_ == Family::none; }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return family_ == Family::v4 ? 4 : family_ == Family::v6 ? 16 : 0; }

  // IPv4 dotted quad or compressed IPv6 (inet_ntop), as knockd substitutes for %IP%.
  std::string str() const;

  friend bool operator==(const IpAddr& a, const IpAddr& b) {
    return a.family_ == b.family_ && a.bytes_ == b.bytes_;
  }
  friend bool operator<(const IpAddr& a, const IpAddr& b) {
    if (a.family_ != b.family_) return a.family_ < b.family_;
    return a.bytes_ < b.bytes_;
  }

 private:
  std::array<uint8_t, 16> bytes_{};
  Family family_ = Family::none;
};

// A prefix such as 192.0.2.0/24 or 2001:db8::/32; a bare address is a host prefix.
struct IpPrefix {
  IpAddr addr;
  uint8_t length = 0;
  static std::optional<IpPrefix> parse(std::string_view text);
  bool contains(const IpAddr& a) const;
  std::string str() const;
  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;
};

// Why `a` can never be the source of a client's packets, or nullopt when it can be:
// unspecified (0.0.0.0/8, ::), limited broadcast (255.255.255.255), multicast
// (224.0.0.0/4, ff00::/8), loopback (127.0.0.0/8, ::1) or IPv4-mapped IPv6
// (::ffff:0:0/96, which never appears on the wire). A grant for such an address could
// only open the gate to spoofed packets. An empty address is "no address".
std::optional<std::string_view> never_a_client(const IpAddr& a);

}  // namespace kg
