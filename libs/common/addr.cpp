#include "common/addr.h"

#include <arpa/inet.h>

#include <charconv>

namespace kg {

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  uint8_t raw[16];
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, raw) == 1) return v4(raw);
    return std::nullopt;
  }
  if (inet_pton(AF_INET6, buf, raw) == 1) return v6(raw);
  return std::nullopt;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  switch (family_) {
    case Family::v4:
      inet_ntop(AF_INET, bytes_.data(), buf, sizeof buf);
      break;
    case Family::v6:
      inet_ntop(AF_INET6, bytes_.data(), buf, sizeof buf);
      break;
    case Family::none:
      return "-";
  }
  return buf;
}

std::optional<IpPrefix> IpPrefix::parse(std::string_view text) {
  const auto slash = text.find('/');
  auto addr = IpAddr::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  const unsigned max_len = addr->is_v4() ? 32U : 128U;
  unsigned len = max_len;
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (ec != std::errc{} || ptr != digits.data() + digits.size() || len > max_len) {
      return std::nullopt;
    }
  }
  return IpPrefix{*addr, static_cast<uint8_t>(len)};
}

bool IpPrefix::contains(const IpAddr& a) const {
  if (a.family() != addr.family()) return false;
  const unsigned full = length / 8U;
  if (std::memcmp(a.data(), addr.data(), full) != 0) return false;
  const unsigned rest = length % 8U;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xFFU << (8U - rest));
  return (a.data()[full] & mask) == (addr.data()[full] & mask);
}

std::string IpPrefix::str() const {
  return addr.str() + "/" + std::to_string(length);
}

std::optional<std::string_view> never_a_client(const IpAddr& a) {
  const uint8_t* b = a.data();
  if (a.is_v4()) {
    if (b[0] == 0) return "an unspecified address (0.0.0.0/8)";
    if (b[0] == 127) return "a loopback address (127.0.0.0/8)";
    if ((b[0] & 0xF0U) == 0xE0U) return "a multicast address (224.0.0.0/4)";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) {
      return "the broadcast address (255.255.255.255)";
    }
    return std::nullopt;
  }
  if (a.is_v6()) {
    static constexpr uint8_t kZero[16] = {};
    static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (std::memcmp(b, kZero, 16) == 0) return "the unspecified address (::)";
    if (std::memcmp(b, kZero, 15) == 0 && b[15] == 1) return "the loopback address (::1)";
    if (b[0] == 0xFF) return "a multicast address (ff00::/8)";
    if (std::memcmp(b, kMappedPrefix, 12) == 0) {
      return "an IPv4-mapped address (::ffff:0:0/96)";
    }
    return std::nullopt;
  }
  return "no address";
}

}  // namespace kg
