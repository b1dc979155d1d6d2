// knockd-compatible log lines. Existing log watchers (fail2ban filters, scripts grepping
// /var/log/knockd.log or syslog ident `knockd`) keep matching because the messages, the
// file line format and the syslog ident/priority are knockd's. Under systemd each line
// also carries structured journal fields (KG_EVENT, KG_DOOR, KG_SOURCE).
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/addr.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace kg::knocklog {

// One log message plus what the journal gets as fields. `event` is a short fixed word
// (stage, open, command, ...); door and source may be empty.
struct Entry {
  std::string message;
  std::string event;
  std::string door;
  std::string source;
};

// The exact knockd messages. IP is kg::IpAddr::str() (dotted IPv4, compressed IPv6).
Entry stage(const IpAddr& source, std::string_view door, unsigned stage_number);
Entry open_sesame(const IpAddr& source, std::string_view door);
Entry running_command(std::string_view door, std::string_view expanded_command);
Entry command_status(std::string_view door, int status_code);
Entry command_timeout(const IpAddr& source, std::string_view door);
Entry sequence_timeout(const IpAddr& source, std::string_view door, unsigned stage_number);
Entry starting_up(std::string_view interfaces);
Entry shutting_down();
Entry rereading_config(std::string_view path);
Entry one_time_exhausted(std::string_view door);

// "[YYYY-MM-DD HH:MM] message\n" in local time, knockd's log file line.
std::string format_file_line(std::string_view message, std::time_t when);

// True when stderr is the journal stream systemd gave us (JOURNAL_STREAM names the
// device:inode of our stderr), i.e. we run as a systemd service logging to the journal.
bool running_under_journal();

struct Options {
  std::string log_file;                 // empty: no log file
  bool use_syslog = false;              // knockd's UseSyslog
  std::string syslog_ident = "knockd";  // keeps `knockd` filters matching
  // Structured journal records; nullopt means "detect with running_under_journal()".
  std::optional<bool> journal;
};

// Writes entries to the log file (one O_APPEND write per line, so several processes may
// share the file without interleaving), to syslog (facility daemon, priority notice) and,
// under systemd, to the journal. When the journal is used it replaces the syslog(3)
// call: journald already forwards to the syslog daemon, and sending both would show
// every line twice in the journal. Safe to call from several threads.
class Writer {
 public:
  static Result<std::unique_ptr<Writer>> open(Options options);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void write(const Entry& entry);
  void write(const Entry& entry, std::time_t when);

  // Re-opens the log file (after logrotate moved it, on SIGHUP). On failure the old
  // file stays in use and the error is returned.
  Result<Ok> reopen();

  const Options& options() const { return options_; }
  bool journal_enabled() const { return journal_; }

 private:
  explicit Writer(Options options);
  void write_file(const std::string& line);
  void write_journal(const Entry& entry);

  Options options_;
  std::mutex mutex_;  // guards file_fd_ across reopen()
  UniqueFd file_fd_;
  bool journal_ = false;
  bool syslog_open_ = false;
};

// Bounds log volume under a flood (a spoofed-source flood makes one `Stage 1` line per
// packet otherwise): at most `max_per_interval` lines of each kind per interval; the
// rest are counted and reported in one summary line per interval. Kinds are a small
// fixed set chosen by the caller (never packet data). Not thread-safe; one per thread.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimiter(uint32_t max_per_interval, Clock::duration interval);

  struct Decision {
    bool emit = false;                   // write the line
    std::optional<std::string> summary;  // write this first: the previous interval's count
  };
  Decision admit(std::string_view kind, Clock::time_point now);

  // Summary lines for kinds whose interval has ended with suppressed lines; call this
  // from a periodic timer so that a flood's last count is reported even when nothing
  // else of that kind is logged.
  std::vector<std::string> flush(Clock::time_point now);

  // "KIND: N similar messages suppressed"
  static std::string summary_line(std::string_view kind, uint64_t suppressed);

  uint64_t suppressed_total() const { return suppressed_total_; }

 private:
  struct KindState {
    Clock::time_point interval_start{};
    uint32_t emitted = 0;
    uint64_t suppressed = 0;
  };
  uint32_t max_per_interval_;
  Clock::duration interval_;
  std::unordered_map<std::string, KindState> kinds_;
  uint64_t suppressed_total_ = 0;
};

}  // namespace kg::knocklog
