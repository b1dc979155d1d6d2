// The process log: one line per event, `program[pid]: level: message`, to stderr until
// syslog/journal output is added. Single-threaded daemons, so no locking.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kg::log {

enum class Level : uint8_t { debug = 0, info = 1, warn = 2, error = 3 };

// Sets the program name for the prefix (default: the executable's short name) and the
// lowest level written (default: info). Call once at start.
void init(std::string program, Level lowest);
void set_level(Level lowest);
Level level();
bool enabled(Level l);

const char* level_name(Level l);
// "debug", "info", "warn"/"warning", "error"; nullopt for anything else.
std::optional<Level> parse_level(std::string_view text);

// Replaces stderr as the destination (tests capture lines; later work adds syslog).
// The sink receives the level and the message without the prefix. nullptr restores stderr.
using Sink = std::function<void(Level, const std::string& message)>;
void set_sink(Sink sink);

void write(Level l, const std::string& message);
inline void debug(const std::string& message) {
  write(Level::debug, message);
}
inline void info(const std::string& message) {
  write(Level::info, message);
}
inline void warn(const std::string& message) {
  write(Level::warn, message);
}
inline void error(const std::string& message) {
  write(Level::error, message);
}

}  // namespace kg::log
