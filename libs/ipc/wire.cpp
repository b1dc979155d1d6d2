#include "ipc/wire.h"

namespace kg::ipc {

const char* wire_error_name(WireError e) {
  switch (e) {
    case WireError::none:
      return "none";
    case WireError::truncated:
      return "truncated";
    case WireError::oversized:
      return "oversized";
    case WireError::undersized:
      return "undersized";
    case WireError::trailing_bytes:
      return "trailing bytes";
    case WireError::bad_version:
      return "bad version";
    case WireError::bad_type:
      return "bad type";
    case WireError::bad_flags:
      return "bad flags";
    case WireError::bad_enum:
      return "bad enum value";
    case WireError::bad_utf8:
      return "bad utf-8";
    case WireError::string_has_nul:
      return "NUL in string";
    case WireError::count_too_large:
      return "count too large";
    case WireError::bad_address:
      return "bad address";
    case WireError::bad_value:
      return "bad value";
  }
  return "unknown";
}

bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned lead = *p;
    if (lead < 0x80) {
      ++p;
      continue;
    }
    size_t extra = 0;
    uint32_t cp = 0;
    uint32_t min_cp = 0;
    if ((lead & 0xE0U) == 0xC0U) {
      extra = 1, cp = lead & 0x1FU, min_cp = 0x80;
    } else if ((lead & 0xF0U) == 0xE0U) {
      extra = 2, cp = lead & 0x0FU, min_cp = 0x800;
    } else if ((lead & 0xF8U) == 0xF0U) {
      extra = 3, cp = lead & 0x07U, min_cp = 0x10000;
    } else {
      return false;  // continuation byte without a lead, or 0xF8..0xFF
    }
    if (static_cast<size_t>(end - p) <= extra) return false;
    for (size_t i = 1; i <= extra; ++i) {
      const unsigned c = p[i];
      if ((c & 0xC0U) != 0x80U) return false;
      cp = (cp << 6) | (c & 0x3FU);
    }
    // Overlong forms would let two encodings of one name compare unequal.
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += extra + 1;
  }
  return true;
}

void Writer::u16(uint16_t v) {
  out_.push_back(static_cast<uint8_t>(v >> 8));
  out_.push_back(static_cast<uint8_t>(v));
}

void Writer::u32(uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(v >> shift));
}

void Writer::u64(uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(v >> shift));
}

void Writer::string(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  out_.insert(out_.end(), s.begin(), s.end());
}

void Writer::bytes(std::span<const uint8_t> b) {
  u32(static_cast<uint32_t>(b.size()));
  out_.insert(out_.end(), b.begin(), b.end());
}

void Writer::ip_addr(const IpAddr& a) {
  u8(static_cast<uint8_t>(a.family()));
  out_.insert(out_.end(), a.data(), a.data() + a.size());
}

bool Reader::take(size_t n, const char* field) {
  if (!ok()) return false;
  if (remaining() < n) {
    fail(WireError::truncated, field);
    return false;
  }
  return true;
}

uint8_t Reader::u8(const char* field) {
  if (!take(1, field)) return 0;
  return in_[pos_++];
}

uint16_t Reader::u16(const char* field) {
  if (!take(2, field)) return 0;
  const auto v = static_cast<uint16_t>((in_[pos_] << 8) | in_[pos_ + 1]);
  pos_ += 2;
  return v;
}

uint32_t Reader::u32(const char* field) {
  if (!take(4, field)) return 0;
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | in_[pos_ + i];
  pos_ += 4;
  return v;
}

uint64_t Reader::u64(const char* field) {
  if (!take(8, field)) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | in_[pos_ + i];
  pos_ += 8;
  return v;
}

std::string Reader::string(const char* field) {
  const uint32_t n = u32(field);
  if (!take(n, field)) return {};
  std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
  pos_ += n;
  if (s.find('\0') != std::string::npos) {
    fail(WireError::string_has_nul, field);
    return {};
  }
  if (!valid_utf8(s)) {
    fail(WireError::bad_utf8, field);
    return {};
  }
  return s;
}

std::vector<uint8_t> Reader::bytes(const char* field) {
  const uint32_t n = u32(field);
  if (!take(n, field)) return {};
  std::vector<uint8_t> b(in_.begin() + static_cast<std::ptrdiff_t>(pos_),
                         in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
  pos_ += n;
  return b;
}

IpAddr Reader::ip_addr(const char* field) {
  const uint8_t family = u8(field);
  if (!ok()) return {};
  if (family == static_cast<uint8_t>(Family::v4)) {
    if (!take(4, field)) return {};
    const IpAddr a = IpAddr::v4(in_.data() + pos_);
    pos_ += 4;
    return a;
  }
  if (family == static_cast<uint8_t>(Family::v6)) {
    if (!take(16, field)) return {};
    const IpAddr a = IpAddr::v6(in_.data() + pos_);
    pos_ += 16;
    return a;
  }
  fail(WireError::bad_address, field);
  return {};
}

size_t Reader::count(size_t min_element_bytes, const char* field) {
  const uint32_t n = u32(field);
  if (!ok()) return 0;
  // Elements of zero size would make any count fit; every list element has some bytes.
  const size_t per = min_element_bytes == 0 ? 1 : min_element_bytes;
  if (n > remaining() / per) {
    fail(WireError::count_too_large, field);
    return 0;
  }
  return n;
}

Error Reader::fail(WireError why, std::string_view field) {
  if (ok()) {
    error_ = why;
    detail_ = std::string(field);
  }
  return as_error();
}

void Reader::expect_end() {
  if (ok() && remaining() != 0) {
    fail(WireError::trailing_bytes, std::to_string(remaining()) + " bytes after the body");
  }
}

Error Reader::as_error() const {
  return Error{std::string(wire_error_name(error_)) + (detail_.empty() ? "" : ": " + detail_)};
}

}  // namespace kg::ipc
