// The knockgate.conf reader's inner parts, shared by its files: parser.cpp reads lines and
// sections, keys.cpp holds the one key table and the handlers of [options], door and
// profile keys, spa_keys.cpp the handlers of [spa NAME] and access stanza keys, checks.cpp
// the whole-section and whole-file checks. Not a public header.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace kg::config::detail {

// `stanza` keys belong to an access stanza of an [spa NAME] section or an AccessFile.
enum class Section : uint8_t { none, options, door, profile, spa, stanza, broken };

const char* section_kind_name(Section s);

struct Directive {
  int line = 0;
  std::string key;  // canonical name; SPA keys as written (lower case): fwknopd's aliases stay
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

// The SPA door being read and its open access stanza.
struct SpaState {
  SpaDoor* door = nullptr;
  std::vector<SpaAccess>* stanzas = nullptr;  // where the open stanza is; null before SOURCE
  bool access_conf_only = false;              // an AccessFile: stanza keys only
  bool have_key = false;
  int key_line = 0;
  bool have_hmac_key = false;
  int hmac_key_line = 0;
};

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) { config_.file = file_; }

  ParseResult run(std::string_view text);
  // A fwknopd access.conf: `KEY VALUE`, `KEY: VALUE` or `KEY = VALUE` lines; errors in line
  // order are appended to `errors`.
  std::vector<SpaAccess> run_access_conf(std::string_view text, std::vector<Diagnostic>& errors);

  using Handler = void (Parser::*)(const Directive&);
  struct KeyInfo {
    std::string_view name;
    std::string_view alias;
    Section section;
    Handler handler;
  };
  // The one key table. `spa`: look among [spa NAME] and stanza keys, else among the others.
  static const KeyInfo* find_key(std::string_view lowered, bool spa);

 private:
  void handle_line(int line, std::string_view raw);
  void handle_bare_line(int line, std::string_view text, const std::string& key);
  void start_section(int line, std::string_view name);
  bool start_spa_section(int line, std::string_view name);
  void finish_section();
  void finish_profile(const Profile& p, const SectionState& st);
  void finish_file();
  void check_mode();
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
  // User and group options: a valid account name, stored as given.
  void set_account(const Directive& d, std::string& field, const char* kind);
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
  // [spa NAME] (spa_keys.cpp)
  void spa_directive(const Directive& d);
  void on_spa_port(const Directive& d);
  void on_spa_proto(const Directive& d);
  void on_spa_grant(const Directive& d);
  void on_spa_max_age(const Directive& d);
  void on_spa_access_file(const Directive& d);
  // access stanzas (spa_keys.cpp)
  void on_source(const Directive& d);
  void on_key(const Directive& d);
  void on_hmac_key(const Directive& d);
  void on_hmac_digest_type(const Directive& d);
  void on_encryption_mode(const Directive& d);
  void on_require_username(const Directive& d);
  void on_port_list(const Directive& d);
  void on_fw_timeout(const Directive& d);
  void on_source_address(const Directive& d);
  void on_access_expire_epoch(const Directive& d);
  void finish_stanza();
  void finish_spa_door();
  SpaAccess& stanza() { return spa_.stanzas->back(); }

  std::string file_;
  Config config_;
  std::vector<Diagnostic> errors_;
  Section kind_ = Section::none;
  std::vector<SectionState> door_state_;     // parallel to config_.doors
  std::vector<SectionState> profile_state_;  // parallel to config_.profiles
  std::map<std::string, int, std::less<>> option_lines_;
  bool management_set_ = false;
  SpaState spa_;
  SpaDoor access_conf_door_;  // where run_access_conf() collects its stanzas
};

}  // namespace kg::config::detail
