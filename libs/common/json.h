// The one JSON writer of every daemon and tool (policyd's control replies and feed events,
// webd's API, knockgatectl watch): objects, arrays, strings (escaped per RFC 8259),
// integers, booleans, null. Output only; webd/json.h reads JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kg::json {

// `"text"` with quotes, backslashes and control characters escaped per RFC 8259, and
// < > & and DEL as \u00XX too, so JSON echoed into any context cannot open a tag. Bytes
// >= 0x80 pass through (the callers' texts are UTF-8 or were validated as such).
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
  // Whole numbers below 2^53 without a fraction, others in %.17g.
  Writer& number(double n);
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

}  // namespace kg::json
