// One JSON string literal, for every daemon that writes JSON (policyd's control replies,
// webd's API).
#pragma once

#include <string>
#include <string_view>

namespace kg {

// `"text"` with quotes, backslashes and control characters escaped per RFC 8259, and
// < > & and DEL as \u00XX too, so JSON echoed into any context cannot open a tag. Bytes
// >= 0x80 pass through (the callers' texts are UTF-8 or were validated as such).
std::string json_quote(std::string_view text);

}  // namespace kg
