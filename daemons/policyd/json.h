// A minimal JSON writer for policyd's control replies and feed events: objects, arrays,
// strings (escaped per RFC 8259), integers, booleans, null. Output only; nothing parses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kg::policyd::json {

// kg::json_quote (common/json_quote.h): `"text"` escaped, < > & too. Bytes ≥ 0x80 pass
// through (our strings are UTF-8 or ASCII).
std::string quote(std::string_view text);

// Builds one JSON value. Commas are inserted between members and elements.
class Writer {
 public:
  Writer& begin_object();
  Writer& end_object();
  Writer& begin_array();
  Writer& end_array();
  // Inside an object: the next member's name.
  Writer& key(std::string_view name);
  Writer& value(std::string_view text);
  Writer& value(const char* text) { return value(std::string_view(text)); }
  Writer& value(const std::string& text) { return value(std::string_view(text)); }
  Writer& value(int64_t number);
  Writer& value(uint64_t number);
  Writer& value(int number) { return value(static_cast<int64_t>(number)); }
  Writer& value(bool flag);
  Writer& null();
  // A value that is already JSON text.
  Writer& raw(std::string_view json);

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void separate();
  std::string out_;
  bool need_comma_ = false;
};

}  // namespace kg::policyd::json
