// Text helpers shared by every reader of knockd-style files (knockgate.conf, access.conf,
// knockgate-knock's client file, one-time sequence files).
#pragma once

#include <string>
#include <string_view>

namespace kg {

// The C isspace() set in the "C" locale: ' ', '\t', '\n', '\v', '\f', '\r'.
constexpr bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Both ends, is_space() set, as knockd trims lines and values.
std::string_view trim(std::string_view s);

// ASCII only: names and keywords, never locale-dependent.
std::string to_lower(std::string_view s);

// Not empty and nothing but ASCII '0'..'9' (no sign, no space).
bool all_digits(std::string_view s);

}  // namespace kg
