// Bounds-checked big-endian encoder/decoder for message bodies. Everything a peer sends
// goes through Reader: every read checks the remaining length first, and the first
// failure sticks (later reads return zero values), so a decoder reads all its fields and
// checks ok() once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/addr.h"
#include "common/result.h"

namespace kg::ipc {

// Why a frame or body was rejected. Stable names (wire_error_name) appear in log lines.
enum class WireError : uint8_t {
  none = 0,
  truncated,        // a field runs past the end of the frame or body
  oversized,        // frame length above the channel's maximum
  undersized,       // frame length shorter than the 4-byte frame header
  trailing_bytes,   // the body decoded but bytes were left over
  bad_version,      // protocol version this side does not speak
  bad_type,         // message type unknown
  bad_flags,        // reserved flags not zero
  bad_enum,         // an enumerated field holds a value with no meaning
  bad_utf8,         // a string is not well-formed UTF-8
  string_has_nul,   // a string contains U+0000
  count_too_large,  // an element count larger than the rest of the body could hold
  bad_address,      // an address of unknown family or mismatched families
  bad_value,        // a field value the message does not allow (e.g. event id 0)
};

const char* wire_error_name(WireError e);

// True if `text` is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool valid_utf8(std::string_view text);

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}

  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  // u32 byte length, then the bytes. Callers keep strings UTF-8 without NUL: the
  // receiving Reader rejects anything else.
  void string(std::string_view s);
  void bytes(std::span<const uint8_t> b);
  // u8 family (4 or 6), then 4 or 16 address bytes. An empty address writes family 0,
  // which no Reader accepts: it is a sender bug, caught at the first peer.
  void ip_addr(const IpAddr& a);
  // u32 element count for a list that follows.
  void count(size_t n) { u32(static_cast<uint32_t>(n)); }

  size_t size() const { return out_.size(); }

 private:
  std::vector<uint8_t>& out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}

  // `field` names what is being read; it goes into the failure detail and log line.
  uint8_t u8(const char* field);
  uint16_t u16(const char* field);
  uint32_t u32(const char* field);
  uint64_t u64(const char* field);
  int64_t i64(const char* field) { return static_cast<int64_t>(u64(field)); }
  std::string string(const char* field);
  std::vector<uint8_t> bytes(const char* field);
  IpAddr ip_addr(const char* field);
  // A u32 element count, checked against what is left: each element needs at least
  // `min_element_bytes`, so a count that cannot fit fails before anything is allocated.
  size_t count(size_t min_element_bytes, const char* field);

  // Records the first failure (later ones are ignored) and returns it as an Error so a
  // decoder can `return r.fail(...)`.
  Error fail(WireError why, std::string_view field);
  // Fails with trailing_bytes if anything is left; call after the last field.
  void expect_end();

  bool ok() const { return error_ == WireError::none; }
  WireError error() const { return error_; }
  const std::string& error_detail() const { return detail_; }
  // The failure as a kg::Error ("truncated: door"), for decoders' Result returns.
  Error as_error() const;
  size_t remaining() const { return in_.size() - pos_; }

 private:
  bool take(size_t n, const char* field);
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  WireError error_ = WireError::none;
  std::string detail_;
};

}  // namespace kg::ipc
