// The knockgate.conf reader. Line handling follows knockd 0.8: a line is trimmed, `#` starts
// a comment only at the start of a line, `[name]` opens a section (exact-case `[options]`,
// anything else a door), keys are case-insensitive and the last of a repeated key wins;
// values knockd would silently misread are rejected instead, and every problem of the file
// is collected (docs/knockd-compatibility.md lists each rule).
#include <algorithm>
#include <map>
#include <set>

#include "config/config.h"
#include "config/file_io.h"
#include "config/values.h"

namespace kg::config {

std::string Diagnostic::str() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

bool operator==(const Door& a, const Door& b) {
  return a.name == b.name && a.sequence == b.sequence &&
         a.one_time_sequences == b.one_time_sequences && a.seq_timeout == b.seq_timeout &&
         a.tcpflags == b.tcpflags && a.start_command == b.start_command &&
         a.start_command_6 == b.start_command_6 && a.stop_command == b.stop_command &&
         a.stop_command_6 == b.stop_command_6 && a.cmd_timeout == b.cmd_timeout &&
         a.target == b.target && a.grant == b.grant &&
         a.tolerate_duplicates == b.tolerate_duplicates;
}

bool operator==(const Profile& a, const Profile& b) {
  return a.name == b.name && a.direction == b.direction && a.exposures == b.exposures &&
         a.allow == b.allow && a.destinations == b.destinations && a.sources == b.sources &&
         a.fwmark == b.fwmark && a.table == b.table && a.routes == b.routes &&
         a.lifetime == b.lifetime && a.max_lifetime == b.max_lifetime && a.revoke == b.revoke;
}

bool operator==(const Config& a, const Config& b) {
  return a.options == b.options && a.doors == b.doors && a.profiles == b.profiles &&
         a.spa_doors == b.spa_doors;
}

const Profile* Config::find_profile(std::string_view name) const {
  for (const auto& p : profiles) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const char* direction_name(Direction d) {
  return d == Direction::egress ? "egress" : "inbound";
}

const char* allow_proto_name(AllowProto p) {
  switch (p) {
    case AllowProto::icmp:
      return "icmp";
    case AllowProto::udp:
      return "udp";
    case AllowProto::tcp:
      break;
  }
  return "tcp";
}

namespace {

enum class Section : uint8_t { none, options, door, profile, spa, broken };

const char* section_kind_name(Section s) {
  switch (s) {
    case Section::options:
      return "[options]";
    case Section::profile:
      return "a profile section";
    case Section::door:
      return "a door section";
    case Section::spa:
      return "an SPA door section";
    case Section::none:
    case Section::broken:
      break;
  }
  return "this section";
}

constexpr std::string_view kProfilePrefix = "profile ";
constexpr std::string_view kSpaPrefix = "spa ";

struct Directive {
  int line = 0;
  std::string key;  // canonical name
  std::string_view value;
};

// What the parser remembers about a door or profile beyond the public struct.
struct SectionState {
  std::map<std::string, int, std::less<>> key_lines;  // last line of each key
  std::set<std::string, std::less<>> failed_keys;     // keys whose value was rejected
  std::vector<int> expose_lines;
  std::vector<int> route_lines;

  bool has(std::string_view key) const { return key_lines.count(key) != 0; }
  bool failed(std::string_view key) const { return failed_keys.count(key) != 0; }
  int line_of(std::string_view key) const {
    auto it = key_lines.find(key);
    return it == key_lines.end() ? 0 : it->second;
  }
};

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) { config_.file = file_; }

  ParseResult run(std::string_view text);

 private:
  using Handler = void (Parser::*)(const Directive&);
  struct KeyInfo {
    std::string_view name;
    std::string_view alias;
    Section section;
    Handler handler;
  };
  static const KeyInfo* find_key(std::string_view lowered);

  void handle_line(int line, std::string_view raw);
  void start_section(int line, std::string_view name);
  void finish_section();
  void finish_profile(const Profile& p, const SectionState& st);
  void finish_file();
  // [spa NAME] sections (spa_door.cpp does the keys).
  bool start_spa_section(int line, std::string_view name);
  void handle_spa_line(int line, std::string_view text, size_t eq, const std::string& key);
  void check_spa_doors();

  void error(int line, std::string_view key, std::string message) {
    errors_.push_back(Diagnostic{file_, line, std::string(key), std::move(message)});
  }
  // A rejected value: says so, blaming an inline comment when the value carries one.
  void value_error(const Directive& d, const Error& e);
  SectionState& state() {
    return kind_ == Section::profile ? profile_state_.back() : door_state_.back();
  }
  Door& door() { return config_.doors.back(); }
  Profile& profile() { return config_.profiles.back(); }

  // [options]
  void on_logfile(const Directive& d) { config_.options.log_file = std::string(d.value); }
  void on_pidfile(const Directive& d);
  void on_interface(const Directive& d);
  void on_wan_interface(const Directive& d);
  void on_management_from(const Directive& d);
  void on_management_ports(const Directive& d);
  void on_lan_interface(const Directive& d);
  void on_database(const Directive& d);
  void on_runtime_dir(const Directive& d);
  void on_max_tracked_sources(const Directive& d);
  void on_capture_user(const Directive& d);
  void on_policy_user(const Directive& d);
  void on_command_user(const Directive& d);
  void on_admin_group(const Directive& d);
  void on_verdict_queue(const Directive& d);
  void on_verdict_fail_open(const Directive& d);
  void on_verdict_hold_ms(const Directive& d);
  void on_verdict_user(const Directive& d);
  // knockgate-webd
  void on_web_listen(const Directive& d);
  void on_web_user(const Directive& d);
  void on_web_path(const Directive& d);
  void on_usesyslog_value(const Directive& d);
  // doors
  void on_sequence(const Directive& d);
  void on_one_time_sequences(const Directive& d);
  void on_seq_timeout(const Directive& d);
  void on_tcpflags(const Directive& d);
  void on_start_command(const Directive& d) { door().start_command = std::string(d.value); }
  void on_start_command_6(const Directive& d) { door().start_command_6 = std::string(d.value); }
  void on_stop_command(const Directive& d) { door().stop_command = std::string(d.value); }
  void on_stop_command_6(const Directive& d) { door().stop_command_6 = std::string(d.value); }
  void on_cmd_timeout(const Directive& d);
  void on_target(const Directive& d);
  void on_grant(const Directive& d);
  void on_tolerate_duplicates(const Directive& d);
  // profiles
  void on_direction(const Directive& d);
  void on_expose(const Directive& d);
  void on_allow(const Directive& d);
  void on_destination(const Directive& d);
  void on_sources(const Directive& d);
  void on_fwmark(const Directive& d);
  void on_table(const Directive& d);
  void on_route(const Directive& d);
  void on_lifetime(const Directive& d);
  void on_max_lifetime(const Directive& d);
  void on_revoke(const Directive& d);

  std::string file_;
  Config config_;
  std::vector<Diagnostic> errors_;
  Section kind_ = Section::none;
  std::vector<SectionState> door_state_;     // parallel to config_.doors
  std::vector<SectionState> profile_state_;  // parallel to config_.profiles
  std::map<std::string, int, std::less<>> option_lines_;
  bool management_set_ = false;
  void check_mode();
  std::optional<SpaSectionReader> spa_reader_;
};

const Parser::KeyInfo* Parser::find_key(std::string_view lowered) {
  static const KeyInfo kKeys[] = {
      {"logfile", "", Section::options, &Parser::on_logfile},
      {"pidfile", "", Section::options, &Parser::on_pidfile},
      {"interface", "", Section::options, &Parser::on_interface},
      {"waninterface", "", Section::options, &Parser::on_wan_interface},
      {"laninterface", "", Section::options, &Parser::on_lan_interface},
      {"managementfrom", "", Section::options, &Parser::on_management_from},
      {"managementports", "", Section::options, &Parser::on_management_ports},
      {"database", "", Section::options, &Parser::on_database},
      {"runtimedir", "", Section::options, &Parser::on_runtime_dir},
      {"maxtrackedsources", "", Section::options, &Parser::on_max_tracked_sources},
      {"captureuser", "", Section::options, &Parser::on_capture_user},
      {"policyuser", "", Section::options, &Parser::on_policy_user},
      {"commanduser", "", Section::options, &Parser::on_command_user},
      {"admingroup", "", Section::options, &Parser::on_admin_group},
      {"verdictqueue", "", Section::options, &Parser::on_verdict_queue},
      {"verdictfailopen", "", Section::options, &Parser::on_verdict_fail_open},
      {"verdictholdms", "", Section::options, &Parser::on_verdict_hold_ms},
      {"verdictuser", "", Section::options, &Parser::on_verdict_user},
      {"weblisten", "", Section::options, &Parser::on_web_listen},
      {"webuser", "", Section::options, &Parser::on_web_user},
      {"webtlscertificate", "", Section::options, &Parser::on_web_path},
      {"webtlskey", "", Section::options, &Parser::on_web_path},
      {"webpasswordfile", "", Section::options, &Parser::on_web_path},
      {"webtokenfile", "", Section::options, &Parser::on_web_path},
      {"webroot", "", Section::options, &Parser::on_web_path},
      {"usesyslog", "", Section::options, &Parser::on_usesyslog_value},
      {"sequence", "", Section::door, &Parser::on_sequence},
      {"one_time_sequences", "", Section::door, &Parser::on_one_time_sequences},
      {"seq_timeout", "timeout", Section::door, &Parser::on_seq_timeout},
      {"tcpflags", "", Section::door, &Parser::on_tcpflags},
      {"start_command", "command", Section::door, &Parser::on_start_command},
      {"start_command_6", "command_6", Section::door, &Parser::on_start_command_6},
      {"stop_command", "", Section::door, &Parser::on_stop_command},
      {"stop_command_6", "", Section::door, &Parser::on_stop_command_6},
      {"cmd_timeout", "", Section::door, &Parser::on_cmd_timeout},
      {"target", "", Section::door, &Parser::on_target},
      {"grant", "", Section::door, &Parser::on_grant},
      {"tolerate_duplicates", "", Section::door, &Parser::on_tolerate_duplicates},
      {"direction", "", Section::profile, &Parser::on_direction},
      {"expose", "", Section::profile, &Parser::on_expose},
      {"allow", "", Section::profile, &Parser::on_allow},
      {"destination", "", Section::profile, &Parser::on_destination},
      {"sources", "", Section::profile, &Parser::on_sources},
      {"fwmark", "", Section::profile, &Parser::on_fwmark},
      {"table", "", Section::profile, &Parser::on_table},
      {"route", "", Section::profile, &Parser::on_route},
      {"lifetime", "", Section::profile, &Parser::on_lifetime},
      {"max_lifetime", "", Section::profile, &Parser::on_max_lifetime},
      {"revoke", "", Section::profile, &Parser::on_revoke},
  };
  for (const auto& k : kKeys) {
    if (k.name == lowered || (!k.alias.empty() && k.alias == lowered)) return &k;
  }
  return nullptr;
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
  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const Diagnostic& a, const Diagnostic& b) { return a.line < b.line; });
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
  if (kind_ == Section::spa) return handle_spa_line(line, text, eq, key);

  if (eq == std::string_view::npos) {
    if (key == "usesyslog") {
      config_.options.use_syslog = true;  // knockd takes the bare flag in any section
    } else if (text[0] == ';') {
      error(line, "", "';' comments are not supported: a comment is a line starting with '#'");
    } else if (const KeyInfo* info = find_key(key)) {
      if (kind_ == Section::door || kind_ == Section::profile) {
        state().failed_keys.insert(std::string(info->name));
      }
      error(line, std::string(info->name), "missing '= VALUE'");
    } else {
      error(line, "", "syntax error: expected \"KEY = VALUE\"");
    }
    return;
  }
  if (key.empty()) {
    error(line, "", "missing key before '='");
    return;
  }
  const KeyInfo* info = find_key(key);
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
  if (kind_ == Section::spa && spa_reader_) spa_reader_->finish();
  spa_reader_.reset();
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

// ---- [options] ----

// Reached from any section: knockd accepts the bare flag anywhere.
void Parser::on_usesyslog_value(const Directive& d) {
  error(d.line, d.key, "UseSyslog is a bare flag: write \"UseSyslog\" alone, without '='");
}

void Parser::on_pidfile(const Directive& d) {
  if (d.value.empty()) return value_error(d, Error{"empty path"});
  config_.options.pid_file = std::string(d.value);
}

void Parser::on_interface(const Directive& d) {
  auto v = parse_interface_list(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.interfaces = std::move(*v);
}

void Parser::on_wan_interface(const Directive& d) {
  auto v = parse_interface_list(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.wan_interfaces = std::move(*v);
}

void Parser::on_lan_interface(const Directive& d) {
  auto v = parse_interface_list(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.lan_interfaces = std::move(*v);
}

void Parser::on_management_from(const Directive& d) {
  auto v = parse_management_from(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.management_interfaces = std::move(v->interfaces);
  config_.options.management_prefixes = std::move(v->prefixes);
  management_set_ = true;
}

void Parser::on_management_ports(const Directive& d) {
  auto v = parse_management_ports(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.management_ports = std::move(*v);
}

void Parser::on_database(const Directive& d) {
  if (d.value.empty() || d.value[0] != '/')
    return value_error(d, Error{"must be an absolute path"});
  config_.options.database = std::string(d.value);
}

void Parser::on_runtime_dir(const Directive& d) {
  if (d.value.empty() || d.value[0] != '/')
    return value_error(d, Error{"must be an absolute path"});
  config_.options.runtime_dir = std::string(d.value);
}

void Parser::on_max_tracked_sources(const Directive& d) {
  auto v = parse_decimal(d.value, 16, 16777216);
  if (!v) return value_error(d, v.error());
  config_.options.max_tracked_sources = *v;
}

void Parser::on_capture_user(const Directive& d) {
  if (!valid_account_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid user name"});
  }
  config_.options.capture_user = std::string(d.value);
}

void Parser::on_policy_user(const Directive& d) {
  if (!valid_account_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid user name"});
  }
  config_.options.policy_user = std::string(d.value);
}

void Parser::on_command_user(const Directive& d) {
  if (!valid_account_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid user name"});
  }
  config_.options.command_user = std::string(d.value);
}

void Parser::on_admin_group(const Directive& d) {
  if (!valid_account_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid group name"});
  }
  config_.options.admin_group = std::string(d.value);
}

void Parser::on_verdict_queue(const Directive& d) {
  // "N" or "FIRST-LAST", like iptables' --queue-balance.
  const size_t dash = d.value.find('-');
  auto first = parse_decimal(d.value.substr(0, dash), 0, 65535);
  if (!first) return value_error(d, first.error());
  uint32_t last = *first;
  if (dash != std::string_view::npos) {
    auto l = parse_decimal(d.value.substr(dash + 1), 0, 65535);
    if (!l) return value_error(d, l.error());
    if (*l < *first) return value_error(d, Error{"the range's end is below its start"});
    if (*l - *first >= 64) return value_error(d, Error{"at most 64 queues"});
    last = *l;
  }
  config_.options.verdict_queue_first = static_cast<uint16_t>(*first);
  config_.options.verdict_queue_count = static_cast<uint16_t>(last - *first + 1);
}

void Parser::on_verdict_fail_open(const Directive& d) {
  auto v = parse_bool(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.verdict_fail_open = *v;
}

void Parser::on_verdict_hold_ms(const Directive& d) {
  auto v = parse_decimal(d.value, 0, 1000);
  if (!v) return value_error(d, v.error());
  config_.options.verdict_hold_ms = *v;
}

void Parser::on_verdict_user(const Directive& d) {
  if (!valid_account_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid user name"});
  }
  config_.options.verdict_user = std::string(d.value);
}

// ---- knockgate-webd ----

void Parser::on_web_listen(const Directive& d) {
  auto v = parse_web_listen(d.value);
  if (!v) return value_error(d, v.error());
  config_.options.web_listen = std::move(*v);
}

void Parser::on_web_user(const Directive& d) {
  if (!valid_account_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid user name"});
  }
  config_.options.web_user = std::string(d.value);
}

// WebTlsCertificate, WebTlsKey, WebPasswordFile, WebTokenFile, WebRoot: absolute paths.
void Parser::on_web_path(const Directive& d) {
  if (d.value.empty() || d.value[0] != '/')
    return value_error(d, Error{"must be an absolute path"});
  Options& o = config_.options;
  const std::string key = to_lower(d.key);
  std::string* target = key == "webtlscertificate" ? &o.web_tls_certificate
                        : key == "webtlskey"       ? &o.web_tls_key
                        : key == "webpasswordfile" ? &o.web_password_file
                        : key == "webtokenfile"    ? &o.web_token_file
                                                   : &o.web_root;
  *target = std::string(d.value);
}

// ---- doors ----

void Parser::on_sequence(const Directive& d) {
  auto v = parse_knock_sequence(d.value);
  if (!v) return value_error(d, v.error());
  door().sequence = std::move(*v);  // the last of sequence / one_time_sequences wins
  door().one_time_sequences.clear();
}

void Parser::on_one_time_sequences(const Directive& d) {
  if (d.value.empty()) {
    state().failed_keys.insert("sequence");  // it stood for the sequence: no cascade
    return value_error(d, Error{"empty path"});
  }
  door().one_time_sequences = std::string(d.value);
  door().sequence.clear();
  state().failed_keys.erase("sequence");  // an earlier bad sequence line no longer matters
}

void Parser::on_seq_timeout(const Directive& d) {
  auto v = parse_seconds(d.value);
  if (!v) return value_error(d, v.error());
  door().seq_timeout = *v;
}

void Parser::on_tcpflags(const Directive& d) {
  auto v = parse_tcpflags(d.value, door().tcpflags);  // repeated lines add up, as in knockd
  if (!v) return value_error(d, v.error());
  door().tcpflags = *v;
}

void Parser::on_cmd_timeout(const Directive& d) {
  auto v = parse_seconds(d.value);
  if (!v) return value_error(d, v.error());
  door().cmd_timeout = *v;
}

void Parser::on_target(const Directive& d) {
  auto a = IpAddr::parse(d.value);
  if (!a) return value_error(d, Error{"\"" + std::string(d.value) + "\" is not an IP address"});
  door().target = *a;
}

void Parser::on_grant(const Directive& d) {
  if (!valid_profile_name(d.value)) {
    return value_error(d, Error{"\"" + std::string(d.value) + "\" is not a valid profile name"});
  }
  door().grant = std::string(d.value);
}

void Parser::on_tolerate_duplicates(const Directive& d) {
  auto v = parse_bool(d.value);
  if (!v) return value_error(d, v.error());
  door().tolerate_duplicates = *v;
}

// ---- profiles ----

void Parser::on_direction(const Directive& d) {
  const auto v = to_lower(d.value);
  if (v == "inbound") {
    profile().direction = Direction::inbound;
  } else if (v == "egress") {
    profile().direction = Direction::egress;
  } else {
    value_error(d, Error{"\"" + std::string(d.value) + "\" is not inbound or egress"});
  }
}

void Parser::on_expose(const Directive& d) {
  auto v = parse_exposure(d.value);
  if (!v) return value_error(d, v.error());
  profile().exposures.push_back(*v);
  state().expose_lines.push_back(d.line);
}

void Parser::on_allow(const Directive& d) {
  auto v = parse_allow(d.value);
  if (!v) return value_error(d, v.error());
  auto& allow = profile().allow;
  allow.insert(allow.end(), v->begin(), v->end());
}

void Parser::on_destination(const Directive& d) {
  auto v = parse_prefix_list(d.value);
  if (!v) return value_error(d, v.error());
  auto& dst = profile().destinations;
  dst.insert(dst.end(), v->begin(), v->end());
}

void Parser::on_sources(const Directive& d) {
  auto v = parse_prefix_list(d.value);
  if (!v) return value_error(d, v.error());
  auto& src = profile().sources;
  src.insert(src.end(), v->begin(), v->end());
}

void Parser::on_fwmark(const Directive& d) {
  auto v = parse_fwmark(d.value);
  if (!v) return value_error(d, v.error());
  profile().fwmark = *v;
}

void Parser::on_table(const Directive& d) {
  auto v = parse_table(d.value);
  if (!v) return value_error(d, v.error());
  profile().table = *v;
}

void Parser::on_route(const Directive& d) {
  auto v = parse_route(d.value);
  if (!v) return value_error(d, v.error());
  profile().routes.push_back(*v);
  state().route_lines.push_back(d.line);
}

void Parser::on_lifetime(const Directive& d) {
  auto v = parse_duration(d.value);
  if (!v) return value_error(d, v.error());
  profile().lifetime = *v;
}

void Parser::on_max_lifetime(const Directive& d) {
  auto v = parse_duration(d.value);
  if (!v) return value_error(d, v.error());
  profile().max_lifetime = *v;
}

void Parser::on_revoke(const Directive& d) {
  const auto v = to_lower(d.value);
  if (v == "new") {
    profile().revoke = Revoke::new_flows;
  } else if (v == "all") {
    profile().revoke = Revoke::all_flows;
  } else {
    value_error(d, Error{"\"" + std::string(d.value) + "\" is not new or all"});
  }
}

// ---- whole-section and whole-file checks ----

void Parser::finish_profile(const Profile& p, const SectionState& st) {
  if (!st.has("direction")) {
    error(p.line, "direction", "missing (direction = inbound or direction = egress)");
  } else if (!st.failed("direction")) {
    if (p.direction == Direction::inbound) {
      for (std::string_view key : {"allow", "destination", "sources"}) {
        if (st.has(key)) {
          error(st.line_of(key), key, "only egress profiles take this key (this one is inbound)");
        }
      }
      if (p.exposures.empty() && !st.failed("expose")) {
        error(p.line, "expose", "an inbound profile needs at least one expose line");
      }
    } else {
      if (st.has("expose")) {
        error(st.line_of("expose"), "expose",
              "only inbound profiles take this key (this one is egress)");
      }
      if (p.allow.empty() && !st.failed("allow")) {
        error(p.line, "allow", "an egress profile needs an allow line");
      }
      if (p.destinations.empty() && !st.failed("destination")) {
        error(p.line, "destination",
              "an egress profile needs a destination line (0.0.0.0/0 for anywhere)");
      }
    }
  }
  for (size_t j = 0; j < p.exposures.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      if (p.exposures[i].proto == p.exposures[j].proto &&
          p.exposures[i].public_port == p.exposures[j].public_port) {
        error(st.expose_lines[j], "expose",
              std::string(proto_name(p.exposures[j].proto)) + "/" +
                  std::to_string(p.exposures[j].public_port) + " is already exposed at line " +
                  std::to_string(st.expose_lines[i]));
        break;
      }
    }
  }
  for (size_t j = 0; j < p.routes.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      if (p.routes[i].prefix == p.routes[j].prefix) {
        error(st.route_lines[j], "route",
              "a route to " + p.routes[j].prefix.str() + " is already given at line " +
                  std::to_string(st.route_lines[i]));
        break;
      }
    }
  }
  if (!p.routes.empty() && !p.table && !st.failed("table")) {
    error(st.route_lines.front(), "route", "routes need a table (table = N)");
  }
  if (p.table && !p.fwmark && !st.failed("fwmark")) {
    error(st.line_of("table"), "table", "a route table needs a fwmark that selects it");
  }
  if (p.fwmark && !p.table && !st.failed("table")) {
    error(st.line_of("fwmark"), "fwmark", "a fwmark needs a table to route by (table = N)");
  }
  if (p.max_lifetime < p.lifetime && !st.failed("lifetime") && !st.failed("max_lifetime")) {
    const std::string msg = "lifetime " + format_duration(p.lifetime) +
                            " is longer than max_lifetime " + format_duration(p.max_lifetime);
    if (st.line_of("max_lifetime") >= st.line_of("lifetime") && st.has("max_lifetime")) {
      error(st.line_of("max_lifetime"), "max_lifetime", msg);
    } else {
      error(st.line_of("lifetime"), "lifetime", msg);
    }
  }
}

void Parser::finish_file() {
  auto& opt = config_.options;
  if (!management_set_) opt.management_interfaces = opt.lan_interfaces;
  for (const auto& lan : opt.lan_interfaces) {
    if (std::find(opt.wan_interfaces.begin(), opt.wan_interfaces.end(), lan) !=
        opt.wan_interfaces.end()) {
      const bool wan_later = option_lines_["waninterface"] > option_lines_["laninterface"];
      error(wan_later ? option_lines_["waninterface"] : option_lines_["laninterface"],
            wan_later ? "waninterface" : "laninterface",
            "interface \"" + lan + "\" cannot be both WAN and LAN");
    }
  }

  // knockgate-webd serves HTTPS only with both halves of its key pair.
  if (opt.web_tls_certificate.empty() != opt.web_tls_key.empty()) {
    const bool cert = opt.web_tls_key.empty();
    error(option_lines_[cert ? "webtlscertificate" : "webtlskey"],
          cert ? "webtlscertificate" : "webtlskey",
          cert ? "WebTlsKey must be set too" : "WebTlsCertificate must be set too");
  }

  for (size_t i = 0; i < config_.doors.size(); ++i) {
    const Door& d = config_.doors[i];
    const SectionState& st = door_state_[i];
    if (d.sequence.empty() && d.one_time_sequences.empty() && !st.failed("sequence")) {
      std::string msg = "door \"" + d.name + "\" has an empty knock sequence";
      const auto lowered = to_lower(d.name);
      if (lowered == "options") {
        msg += " (the global section is spelled [options], in lower case)";
      } else if (lowered.rfind("profile", 0) == 0) {
        msg += " (profile sections are spelled [profile NAME], \"profile\" in lower case)";
      }
      error(d.line, "sequence", msg);
    }
    if (!d.grant.empty() && config_.find_profile(d.grant) == nullptr) {
      error(st.line_of("grant"), "grant",
            "no profile named \"" + d.grant + "\" (define it with [profile " + d.grant + "])");
    }
  }

  check_spa_doors();
  check_mode();

  const auto& profiles = config_.profiles;
  for (size_t j = 0; j < profiles.size(); ++j) {
    const Profile& later = profiles[j];
    const SectionState& st = profile_state_[j];
    for (size_t i = 0; i < j; ++i) {
      const Profile& earlier = profiles[i];
      const std::string where =
          "profile \"" + earlier.name + "\" at line " + std::to_string(earlier.line);
      if (earlier.name == later.name) {
        error(later.line, "section",
              "duplicate profile \"" + later.name + "\" (first defined at line " +
                  std::to_string(earlier.line) + ")");
      } else if (nft_safe_name(earlier.name) == nft_safe_name(later.name)) {
        // The gate's nftables sets are named after the profile with '-' and '.' as '_'.
        error(later.line, "section",
              "profile \"" + later.name + "\" and " + where + " have the same nftables name \"" +
                  nft_safe_name(later.name) + "\" ('-' and '.' become '_')");
      }
      if (earlier.fwmark && later.fwmark &&
          earlier.fwmark->can_match_same_packet_as(*later.fwmark)) {
        error(st.line_of("fwmark"), "fwmark",
              "mark " + format_fwmark(*later.fwmark) + " can match the same packets as mark " +
                  format_fwmark(*earlier.fwmark) + " of " + where);
      }
      if (earlier.table && later.table && *earlier.table == *later.table) {
        error(st.line_of("table"), "table",
              "table " + std::to_string(*later.table) + " is already used by " + where);
      }
    }
  }
}

// ---- [spa NAME] sections ----

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
  spa_reader_.emplace(file_, config_.spa_doors.back(), errors_);
  kind_ = Section::spa;
  return true;
}

void Parser::handle_spa_line(int line, std::string_view text, size_t eq, const std::string& key) {
  if (eq == std::string_view::npos) {
    error(line, key, "missing '= VALUE'");
    return;
  }
  if (key.empty()) {
    error(line, "", "missing key before '='");
    return;
  }
  spa_reader_->directive(line, key, trim(text.substr(eq + 1)));
}

// Forwarding needs interface roles: without them the config is knockd's host (and `self`)
// mode, which never touches forwarding. A port of the gateway cannot be both its own
// (`self`) and forwarded to a host.
void Parser::check_mode() {
  const bool roles =
      !config_.options.wan_interfaces.empty() || !config_.options.lan_interfaces.empty();
  // One error for the file, at the first profile that needs the gateway mode.
  const Profile* first_forwarding = nullptr;
  std::string names;
  size_t count = 0;
  for (const Profile& p : config_.profiles) {
    if (roles || !p.forwards()) continue;
    if (!first_forwarding) first_forwarding = &p;
    names += (names.empty() ? "\"" : ", \"") + p.name + "\"";
    ++count;
  }
  if (first_forwarding) {
    error(first_forwarding->line, "section",
          (count == 1 ? "profile " + names + " passes" : "profiles " + names + " pass") +
              " traffic through the gateway: declare the interface roles (WanInterface, "
              "LanInterface) for gateway mode; without them only `expose = self PROTO/PORT` "
              "profiles are possible");
  }
  for (size_t j = 0; j < config_.profiles.size(); ++j) {
    const Profile& p = config_.profiles[j];
    const SectionState& st = profile_state_[j];
    for (size_t k = 0; k < p.exposures.size() && k < st.expose_lines.size(); ++k) {
      const Exposure& mine = p.exposures[k];
      if (!mine.self) continue;
      for (size_t i = 0; i < config_.profiles.size(); ++i) {
        for (const Exposure& other : config_.profiles[i].exposures) {
          if (other.self || other.proto != mine.proto || other.public_port != mine.public_port) {
            continue;
          }
          error(st.expose_lines[k], "expose",
                std::string(proto_name(mine.proto)) + "/" + std::to_string(mine.public_port) +
                    " is forwarded to " + other.host.str() + " by profile \"" +
                    config_.profiles[i].name + "\" at line " +
                    std::to_string(config_.profiles[i].line) +
                    ": a port is either the gateway's own or forwarded");
        }
      }
    }
  }
}

void Parser::check_spa_doors() {
  for (size_t j = 0; j < config_.spa_doors.size(); ++j) {
    const SpaDoor& d = config_.spa_doors[j];
    if (!d.grant.empty() && config_.find_profile(d.grant) == nullptr) {
      error(d.line, "grant",
            "no profile named \"" + d.grant + "\" (define it with [profile " + d.grant + "])");
    }
    for (size_t i = 0; i < j; ++i) {
      const SpaDoor& e = config_.spa_doors[i];
      if (e.name == d.name) {
        error(
            d.line, "section",
            "duplicate SPA door \"" + d.name + "\" (first at line " + std::to_string(e.line) + ")");
      } else if (e.port == d.port &&
                 (e.transport == spa::Transport::udp) == (d.transport == spa::Transport::udp)) {
        error(d.line, "port",
              std::string(d.transport == spa::Transport::udp ? "udp" : "tcp") + "/" +
                  std::to_string(d.port) + " is already the port of SPA door \"" + e.name + "\"");
      }
    }
  }
}

}  // namespace

std::string nft_safe_name(std::string_view profile_name) {
  std::string id(profile_name);
  for (char& c : id) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) c = '_';
  }
  return id;
}

ParseResult parse_text(std::string_view text, const std::string& file_name) {
  return Parser(file_name).run(text);
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
