// The knockgate.conf reader. Line handling follows knockd 0.8: a line is trimmed, `#` starts
// a comment only at the start of a line, `[name]` opens a section (exact-case `[options]`,
// anything else a door), keys are case-insensitive and the last of a repeated key wins;
// values knockd would silently misread are rejected instead, and every problem of the file
// is collected (docs/knockd-compatibility.md lists each rule). Every key, an [spa NAME]
// section's included, goes through the one key table (keys.cpp).
#include "config/parser.h"

#include <algorithm>

#include "config/file_io.h"
#include "config/values.h"

namespace kg::config {
namespace detail {

namespace {

constexpr std::string_view kProfilePrefix = "profile ";
constexpr std::string_view kSpaPrefix = "spa ";

bool by_line(const Diagnostic& a, const Diagnostic& b) {
  return a.line < b.line;
}

}  // namespace

const char* section_kind_name(Section s) {
  switch (s) {
    case Section::options:
      return "[options]";
    case Section::profile:
      return "a profile section";
    case Section::door:
      return "a door section";
    case Section::spa:
    case Section::stanza:
      return "an SPA door section";
    case Section::none:
    case Section::broken:
      break;
  }
  return "this section";
}

ParseResult Parser::run(std::string_view text) {
  int line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    handle_line(++line, text.substr(start, end - start));
    start = end + 1;
  }
  finish_section();
  finish_file();
  std::stable_sort(errors_.begin(), errors_.end(), by_line);
  ParseResult result;
  result.errors = std::move(errors_);
  if (result.errors.empty()) result.config = std::move(config_);
  return result;
}

void Parser::handle_line(int line, std::string_view raw) {
  if (raw.find('\0') != std::string_view::npos) {
    error(line, "", "line contains a NUL byte");
    return;
  }
  const auto text = trim(raw);
  if (text.empty() || text[0] == '#') return;

  if (text[0] == '[') {
    if (text.size() < 2 || text.back() != ']') {
      error(line, "section", "section header does not end with ']'");
      finish_section();
      kind_ = Section::broken;
      return;
    }
    start_section(line, text.substr(1, text.size() - 2));
    return;
  }

  const size_t eq = text.find('=');
  const std::string key = to_lower(trim(text.substr(0, eq)));
  if (kind_ == Section::none) {
    error(line, key, "all directives must belong to a section");
    return;
  }
  if (kind_ == Section::broken) return;  // its header was already reported
  if (kind_ == Section::spa) {
    // SPA keys come from fwknopd's access.conf, where UseSyslog means nothing.
    if (eq == std::string_view::npos) return error(line, key, "missing '= VALUE'");
    if (key.empty()) return error(line, "", "missing key before '='");
    return spa_directive(Directive{line, key, trim(text.substr(eq + 1))});
  }
  if (eq == std::string_view::npos) return handle_bare_line(line, text, key);
  if (key.empty()) {
    error(line, "", "missing key before '='");
    return;
  }
  const KeyInfo* info = find_key(key, false);
  if (info == nullptr) {
    error(line, key, std::string("unknown key in ") + section_kind_name(kind_));
    return;
  }
  const std::string canonical(info->name);
  if (info->section != kind_ && canonical != "usesyslog") {
    std::string owner = info->section == Section::options ? "an [options] key"
                        : info->section == Section::door  ? "a door key"
                                                          : "a profile key";
    error(line, canonical,
          std::string("not allowed in ") + section_kind_name(kind_) + " (it is " + owner + ")");
    return;
  }
  Directive d{line, canonical, trim(text.substr(eq + 1))};
  if (kind_ == Section::options) {
    option_lines_[canonical] = line;
  } else {
    state().key_lines[canonical] = line;
  }
  (this->*(info->handler))(d);
}

void Parser::start_section(int line, std::string_view name) {
  finish_section();
  if (name.empty()) {
    error(line, "section", "empty section name");
    kind_ = Section::broken;
    return;
  }
  if (name == "options") {  // exact case, as knockd: [Options] is a door
    kind_ = Section::options;
    return;
  }
  if (name.substr(0, kProfilePrefix.size()) == kProfilePrefix) {
    const auto profile_name = name.substr(kProfilePrefix.size());
    if (!valid_profile_name(profile_name)) {
      error(line, "section",
            "profile name \"" + std::string(profile_name) +
                "\" is invalid (a letter or digit, then letters, digits, '.', '_', '-'; "
                "at most 64)");
      kind_ = Section::broken;
      return;
    }
    Profile p;
    p.name = std::string(profile_name);
    p.line = line;
    config_.profiles.push_back(std::move(p));
    profile_state_.emplace_back();
    kind_ = Section::profile;
    return;
  }
  if (start_spa_section(line, name)) return;
  Door d;
  d.name = std::string(name);
  d.line = line;
  config_.doors.push_back(std::move(d));
  door_state_.emplace_back();
  kind_ = Section::door;
}

void Parser::finish_section() {
  if (kind_ == Section::profile) finish_profile(profile(), profile_state_.back());
  if (kind_ == Section::spa) finish_spa_door();
  spa_ = SpaState{};
  kind_ = Section::none;
}

void Parser::value_error(const Directive& d, const Error& e) {
  if (kind_ == Section::door || kind_ == Section::profile) state().failed_keys.insert(d.key);
  if (has_inline_comment(d.value)) {
    error(d.line, d.key, "inline comments are not allowed (a comment is a line starting with '#')");
  } else {
    error(d.line, d.key, e.message);
  }
}

// A line without '=': knockd's bare UseSyslog flag, or a mistake.
void Parser::handle_bare_line(int line, std::string_view text, const std::string& key) {
  if (key == "usesyslog") {
    config_.options.use_syslog = true;  // knockd takes the bare flag in any section
  } else if (text[0] == ';') {
    error(line, "", "';' comments are not supported: a comment is a line starting with '#'");
  } else if (const KeyInfo* info = find_key(key, false)) {
    if (kind_ == Section::door || kind_ == Section::profile) {
      state().failed_keys.insert(std::string(info->name));
    }
    error(line, std::string(info->name), "missing '= VALUE'");
  } else {
    error(line, "", "syntax error: expected \"KEY = VALUE\"");
  }
}

bool Parser::start_spa_section(int line, std::string_view name) {
  if (name.substr(0, kSpaPrefix.size()) != kSpaPrefix) return false;
  const auto spa_name = name.substr(kSpaPrefix.size());
  if (!valid_profile_name(spa_name)) {
    error(line, "section",
          "SPA door name \"" + std::string(spa_name) +
              "\" is invalid (a letter or digit, then letters, digits, '.', '_', '-'; at most 64)");
    kind_ = Section::broken;
    return true;
  }
  SpaDoor d;
  d.name = std::string(spa_name);
  d.line = line;
  config_.spa_doors.push_back(std::move(d));
  spa_.door = &config_.spa_doors.back();
  kind_ = Section::spa;
  return true;
}

std::vector<SpaAccess> Parser::run_access_conf(std::string_view text,
                                               std::vector<Diagnostic>& errors) {
  kind_ = Section::spa;
  spa_.door = &access_conf_door_;
  spa_.access_conf_only = true;
  int line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const auto raw = trim(text.substr(start, end - start));
    start = end + 1;
    ++line;
    if (raw.empty() || raw[0] == '#') continue;
    if (raw.substr(0, 8) == "%include") {
      error(line, "%include", "not supported: list stanzas inline");
      continue;
    }
    // fwknopd: "KEY   value" (whitespace) or "KEY: value"; knockgate also takes "KEY = value".
    const size_t sep = raw.find_first_of(" \t:=");
    if (sep == std::string_view::npos) {
      error(line, to_lower(raw), "missing value");
      continue;
    }
    auto rest = raw.substr(sep);
    while (!rest.empty() &&
           (rest[0] == ' ' || rest[0] == '\t' || rest[0] == ':' || rest[0] == '=')) {
      rest.remove_prefix(1);
    }
    // As fwknopd reads it: the value stops at the first ';' (`KEY: value;`).
    rest = rest.substr(0, rest.find(';'));
    spa_directive(Directive{line, to_lower(raw.substr(0, sep)), trim(rest)});
  }
  finish_stanza();
  // This file's errors in line order (stanza checks at the end come last otherwise).
  std::stable_sort(errors_.begin(), errors_.end(), by_line);
  errors.insert(errors.end(), errors_.begin(), errors_.end());
  return std::move(access_conf_door_.file_access);
}

}  // namespace detail

std::vector<SpaAccess> parse_access_conf(std::string_view text, const std::string& file,
                                         std::vector<Diagnostic>& errors) {
  return detail::Parser(file).run_access_conf(text, errors);
}

ParseResult parse_text(std::string_view text, const std::string& file_name) {
  return detail::Parser(file_name).run(text);
}

ParseResult parse_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) {
    ParseResult r;
    r.errors.push_back(Diagnostic{path, 0, "", text.error().message});
    return r;
  }
  auto result = parse_text(*text, path);
  if (result.config && !result.config->spa_doors.empty()) {
    load_spa_access_files(*result.config, path, result.errors);
    if (!result.errors.empty()) result.config.reset();
  }
  return result;
}

}  // namespace kg::config
