// The control commands policyd serves (docs/knockgatectl.8, docs/protocol.md), defined
// once: each command's name, options, synopsis, the roles that may run it, and the exit
// codes. policyd parses requests with it, knockgatectl prints its usage from it, and webd
// builds its requests from its typed options.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "ipc/messages.h"

namespace kg::ipc::control {

// The exit status of every control command (and of knockgatectl).
enum class Exit : uint8_t { ok = 0, failed = 1, usage = 2, not_found = 3, denied = 4 };
constexpr int exit_code(Exit e) {
  return static_cast<int>(e);
}

enum class Command : uint8_t {
  status,
  grants,
  grant,
  grant_many,
  extend,
  revoke,
  audit,
  profiles,
  doors,
  reload,
  login_lockout,
};

// Options a command may take besides --json (every command) and --as (webd, first).
enum class Option : uint8_t {
  source,
  profile,
  all,
  for_duration,
  since,
  until,
  kind,
  limit,
  before,
  account,
  failures,
  delay,
};

struct OptionSpec {
  Option id;
  std::string_view name;  // "--source"
  bool takes_value;
};

// Which roles may run a command.
inline constexpr uint8_t kCtl = 1;
inline constexpr uint8_t kWebd = 2;

struct CommandSpec {
  Command id;
  std::string_view name;
  std::vector<Option> options;
  size_t min_positional = 0;
  size_t max_positional = 0;
  std::string_view synopsis;  // the arguments, as the usage text shows them
  std::string_view summary;   // one line for knockgatectl --help
  uint8_t roles = kCtl | kWebd;
  bool changes_state = false;  // webd must name its web user (--as USER)

  bool takes(Option o) const;
  std::string usage() const;  // "NAME SYNOPSIS"
};

std::span<const CommandSpec> commands();
const CommandSpec* find_command(std::string_view name);
const CommandSpec& spec(Command c);
const OptionSpec& option(Option o);

// A refused request: the exit code and the message for stderr.
struct Refusal {
  Exit exit = Exit::usage;
  std::string message;
};

// A request's arguments, typed. Flags are present with an empty value.
struct Args {
  bool json = false;
  std::optional<std::string> as;  // webd: the web user who acts
  std::vector<std::string> positional;
  std::map<Option, std::string> options;

  bool has(Option o) const { return options.count(o) != 0; }
  const std::string* get(Option o) const;
  Args& set(Option o, std::string value = {});
};

// Only ctl and webd sessions run control commands.
std::optional<Refusal> refuse_role(Role caller);
// The command is not one this role may run.
std::optional<Refusal> refuse_command(const CommandSpec& command, Role caller);

struct Parsed {
  Args args;
  std::optional<Refusal> refusal;
};
// Reads a request's words against the command's spec: options anywhere, --as only first
// and only from webd, positional counts, and webd's --as for state changes.
Parsed parse(const CommandSpec& command, const std::vector<std::string>& words, Role caller);

// The request that carries `args` for `command` (the inverse of parse()).
ControlRequest make_request(uint32_t request_id, Command command, const Args& args);

// A whole decimal number in [min, max], without exceptions: `what: 'text' is not a
// number` or `what: 'text' is out of range (min-max)`.
Result<int64_t> parse_number(std::string_view what, std::string_view text, int64_t min,
                             int64_t max);

}  // namespace kg::ipc::control
