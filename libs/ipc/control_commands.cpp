#include "ipc/control_commands.h"

#include <algorithm>
#include <charconv>

namespace kg::ipc::control {
namespace {

constexpr OptionSpec kOptions[] = {
    {Option::source, "--source", true},     {Option::profile, "--profile", true},
    {Option::all, "--all", false},          {Option::for_duration, "--for", true},
    {Option::since, "--since", true},       {Option::until, "--until", true},
    {Option::kind, "--kind", true},         {Option::limit, "--limit", true},
    {Option::before, "--before", true},     {Option::account, "--account", true},
    {Option::failures, "--failures", true}, {Option::delay, "--delay", true},
};

const std::vector<CommandSpec>& table() {
  using O = Option;
  static const std::vector<CommandSpec> commands = {
      {Command::status,
       "status",
       {},
       0,
       0,
       "[--json]",
       "policyd's and captured's state and counters"},
      {Command::grants,
       "grants",
       {O::source, O::profile, O::all},
       0,
       0,
       "[--source ADDR] [--profile P] [--all] [--json]",
       "list grants (active unless --all)"},
      {Command::grant,
       "grant",
       {O::for_duration},
       2,
       2,
       "SOURCE PROFILE [--for DURATION] [--json]",
       "grant SOURCE the profile (or extend)",
       kCtl | kWebd,
       true},
      {Command::grant_many,
       "grant-many",
       {O::for_duration},
       2,
       100000,
       "PROFILE SOURCE... [--for DURATION] [--json]",
       "many grants in one transaction",
       kCtl,
       true},
      {Command::extend,
       "extend",
       {O::for_duration},
       1,
       1,
       "ID [--for DURATION] [--json]",
       "extend an active grant (up to its maximum)",
       kCtl | kWebd,
       true},
      {Command::revoke,
       "revoke",
       {},
       1,
       1,
       "ID|SOURCE [--json]",
       "revoke a grant, or every grant of a source",
       kCtl | kWebd,
       true},
      {Command::audit,
       "audit",
       {O::since, O::until, O::source, O::kind, O::limit, O::before},
       0,
       0,
       "[--since T] [--until T] [--source A] [--kind K] [--limit N] [--before ID] [--json]",
       "the audit log, newest first"},
      {Command::profiles, "profiles", {}, 0, 0, "[--json]", "the configured exposure profiles"},
      {Command::doors, "doors", {}, 0, 0, "[--json]", "the configured doors"},
      {Command::reload,
       "reload",
       {},
       0,
       0,
       "[--json]",
       "make policyd re-read its configuration",
       kCtl,
       true},
      {Command::login_lockout,
       "login-lockout",
       {O::account, O::source, O::failures, O::delay},
       0,
       0,
       "[--account NAME] --source ADDR --failures N --delay SECONDS",
       "webd reports a console login lockout (audited)",
       kWebd},
  };
  return commands;
}

uint8_t role_bit(Role r) {
  switch (r) {
    case Role::ctl:
      return kCtl;
    case Role::webd:
      return kWebd;
    default:
      return 0;
  }
}

const OptionSpec* find_option(const CommandSpec& command, std::string_view name) {
  for (const OptionSpec& o : kOptions) {
    if (o.name == name) return command.takes(o.id) ? &o : nullptr;
  }
  return nullptr;
}

Parsed refused(Exit exit, std::string message) {
  Parsed p;
  p.refusal = Refusal{exit, std::move(message)};
  return p;
}

}  // namespace

bool CommandSpec::takes(Option o) const {
  return std::find(options.begin(), options.end(), o) != options.end();
}

std::string CommandSpec::usage() const {
  return std::string(name) + " " + std::string(synopsis);
}

std::span<const CommandSpec> commands() {
  return table();
}

const CommandSpec* find_command(std::string_view name) {
  for (const CommandSpec& c : table()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const CommandSpec& spec(Command c) {
  return table()[static_cast<size_t>(c)];
}

const OptionSpec& option(Option o) {
  return kOptions[static_cast<size_t>(o)];
}

const std::string* Args::get(Option o) const {
  auto it = options.find(o);
  return it == options.end() ? nullptr : &it->second;
}

Args& Args::set(Option o, std::string value) {
  options[o] = std::move(value);
  return *this;
}

std::optional<Refusal> refuse_role(Role caller) {
  if (role_bit(caller) != 0) return std::nullopt;
  return Refusal{Exit::denied, std::string("knockgate-policyd: role ") + role_name(caller) +
                                   " may not run control commands"};
}

std::optional<Refusal> refuse_command(const CommandSpec& command, Role caller) {
  if ((command.roles & role_bit(caller)) != 0) return std::nullopt;
  return Refusal{Exit::denied,
                 std::string(command.name) + ": not permitted for " + role_name(caller)};
}

Parsed parse(const CommandSpec& command, const std::vector<std::string>& words, Role caller) {
  Parsed p;
  Args& args = p.args;
  size_t i = 0;
  if (!words.empty() && words[0] == "--as") {
    if (caller != Role::webd)
      return refused(Exit::denied, "--as: only webd may act for another user");
    if (words.size() < 2 || words[1].empty()) return refused(Exit::usage, "--as needs a user name");
    args.as = words[1];
    i = 2;
  }
  for (; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (word == "--json") {
      args.json = true;
    } else if (word == "--as") {
      return refused(caller == Role::webd ? Exit::usage : Exit::denied,
                     "--as must be the first two arguments (webd only)");
    } else if (const OptionSpec* o = find_option(command, word)) {
      if (!o->takes_value) {
        args.set(o->id);
      } else if (i + 1 >= words.size()) {
        return refused(Exit::usage, word + " needs a value");
      } else {
        args.set(o->id, words[++i]);
      }
    } else if (word.size() > 1 && word[0] == '-') {
      return refused(Exit::usage, std::string(command.name) + ": unknown option '" + word +
                                      "'\nusage: " + command.usage());
    } else {
      args.positional.push_back(word);
    }
  }
  if (args.positional.size() < command.min_positional ||
      args.positional.size() > command.max_positional) {
    return refused(Exit::usage, "usage: " + command.usage());
  }
  if (caller == Role::webd && command.changes_state && !args.as) {
    return refused(Exit::denied,
                   std::string(command.name) + ": webd must say which web user acts (--as USER)");
  }
  return p;
}

ControlRequest make_request(uint32_t request_id, Command command, const Args& args) {
  ControlRequest r;
  r.request_id = request_id;
  r.command = std::string(spec(command).name);
  if (args.as) r.args.insert(r.args.end(), {"--as", *args.as});
  if (args.json) r.args.emplace_back("--json");
  for (const auto& [id, value] : args.options) {
    const OptionSpec& o = option(id);
    r.args.emplace_back(o.name);
    if (o.takes_value) r.args.push_back(value);
  }
  r.args.insert(r.args.end(), args.positional.begin(), args.positional.end());
  return r;
}

Result<int64_t> parse_number(std::string_view what, std::string_view text, int64_t min,
                             int64_t max) {
  const std::string quoted = std::string(what) + ": '" + std::string(text) + "'";
  int64_t n = 0;
  const char* end = text.data() + text.size();
  // A sign or space is not part of a number here: ids and counts are plain digits.
  if (text.empty() || text[0] < '0' || text[0] > '9') return Error{quoted + " is not a number"};
  const auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (ptr != end) return Error{quoted + " is not a number"};
  if (ec == std::errc::result_out_of_range || n < min || n > max) {
    return Error{quoted + " is out of range (" + std::to_string(min) + "-" + std::to_string(max) +
                 ")"};
  }
  return n;
}

}  // namespace kg::ipc::control
