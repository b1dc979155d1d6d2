#include "common/log.h"

#include <unistd.h>

#include <cerrno>

namespace kg::log {

namespace {

struct State {
  std::string program = program_invocation_short_name;
  Level lowest = Level::info;
  Sink sink;
};

State& state() {
  static State s;
  return s;
}

}  // namespace

void init(std::string program, Level lowest) {
  if (!program.empty()) state().program = std::move(program);
  state().lowest = lowest;
}

void set_level(Level lowest) {
  state().lowest = lowest;
}
Level level() {
  return state().lowest;
}
bool enabled(Level l) {
  return l >= state().lowest;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warning";
    case Level::error:
      return "error";
  }
  return "?";
}

std::optional<Level> parse_level(std::string_view text) {
  if (text == "debug") return Level::debug;
  if (text == "info") return Level::info;
  if (text == "warn" || text == "warning") return Level::warn;
  if (text == "error") return Level::error;
  return std::nullopt;
}

void set_sink(Sink sink) {
  state().sink = std::move(sink);
}

void write(Level l, const std::string& message) {
  if (!enabled(l)) return;
  State& s = state();
  if (s.sink) {
    s.sink(l, message);
    return;
  }
  std::string line = s.program + "[" + std::to_string(getpid()) + "]: " + level_name(l) + ": ";
  // A message never spans lines and carries no terminal controls: peer-supplied strings
  // (program names, refusal reasons) cannot forge a second log line.
  for (const char c : message) {
    const auto byte = static_cast<unsigned char>(c);
    line += (byte < 0x20 && c != '\t') || byte == 0x7f ? ' ' : c;
  }
  line += '\n';
  // One write(2) per line so lines from several processes sharing stderr do not interleave.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to report a broken stderr
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace kg::log
