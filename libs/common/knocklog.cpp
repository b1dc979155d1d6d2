#include "common/knocklog.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace kg::knocklog {

namespace {

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  size_t total = 0;
  for (auto p : parts) total += p.size();
  out.reserve(total);
  for (auto p : parts) out.append(p);
  return out;
}

Entry make(std::string message, std::string_view event, std::string_view door, std::string source) {
  return Entry{std::move(message), std::string(event), std::string(door), std::move(source)};
}

}  // namespace

Entry stage(const IpAddr& source, std::string_view door, unsigned stage_number) {
  std::string ip = source.str();
  return make(cat({ip, ": ", door, ": Stage ", std::to_string(stage_number)}), "stage", door, ip);
}

Entry open_sesame(const IpAddr& source, std::string_view door) {
  std::string ip = source.str();
  return make(cat({ip, ": ", door, ": OPEN SESAME"}), "open", door, ip);
}

Entry running_command(std::string_view door, std::string_view expanded_command) {
  return make(cat({door, ": running command: ", expanded_command}), "command", door, {});
}

Entry command_status(std::string_view door, int status_code) {
  return make(
      cat({door, ": command returned non-zero status code (", std::to_string(status_code), ")"}),
      "command_status", door, {});
}

Entry command_timeout(const IpAddr& source, std::string_view door) {
  std::string ip = source.str();
  return make(cat({ip, ": ", door, ": command timeout"}), "command_timeout", door, ip);
}

Entry sequence_timeout(const IpAddr& source, std::string_view door, unsigned stage_number) {
  std::string ip = source.str();
  return make(
      cat({ip, ": ", door, ": sequence timeout (stage ", std::to_string(stage_number), ")"}),
      "sequence_timeout", door, ip);
}

Entry starting_up(std::string_view interfaces) {
  return make(cat({"starting up, listening on ", interfaces}), "start", {}, {});
}

Entry shutting_down() {
  return make("shutting down", "stop", {}, {});
}

Entry rereading_config(std::string_view path) {
  return make(cat({"re-reading config file: ", path}), "reload", {}, {});
}

Entry one_time_exhausted(std::string_view door) {
  return make(cat({"no more sequences left in the one time sequences file for door ", door,
                   " --> disabling the door"}),
              "one_time_exhausted", door, {});
}

std::string format_file_line(std::string_view message, std::time_t when) {
  struct tm local {};
  localtime_r(&when, &local);
  char stamp[32];
  // tm fields are bounded, so this always fits; knockd prints the same five fields.
  const int n =
      std::snprintf(stamp, sizeof stamp, "[%04d-%02d-%02d %02d:%02d] ", local.tm_year + 1900,
                    local.tm_mon + 1, local.tm_mday, local.tm_hour, local.tm_min);
  std::string line;
  line.reserve(static_cast<size_t>(n) + message.size() + 1);
  line.append(stamp, static_cast<size_t>(n));
  line.append(message);
  line.push_back('\n');
  return line;
}

bool running_under_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  // The variable is inherited by children whose stderr was redirected elsewhere; only
  // trust it when it still describes our own stderr.
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

namespace {

// sd_journal_sendv from libsystemd, loaded at run time: journal records are only sent
// when we run under systemd, where libsystemd0 is always present, and kg_common (linked
// into every program and fuzz target) keeps no link-time dependency on it.
using JournalSendv = int (*)(const struct iovec*, int);

JournalSendv journal_sendv() {
  static const JournalSendv fn = []() -> JournalSendv {
    void* lib = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return nullptr;
    void* sym = dlsym(lib, "sd_journal_sendv");
    if (sym == nullptr) return nullptr;
    JournalSendv f = nullptr;
    static_assert(sizeof f == sizeof sym);
    std::memcpy(&f, &sym, sizeof f);  // object → function pointer without a cast warning
    return f;
  }();
  return fn;
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;  // asio's signal handlers are installed without SA_RESTART
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

int open_log_file(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

}  // namespace

Writer::Writer(Options options) : options_(std::move(options)) {}

Result<std::unique_ptr<Writer>> Writer::open(Options options) {
  std::unique_ptr<Writer> w(new Writer(std::move(options)));
  if (!w->options_.log_file.empty()) {
    w->file_fd_ = UniqueFd(open_log_file(w->options_.log_file));
    if (!w->file_fd_.valid()) {
      return Error{"cannot open log file " + w->options_.log_file + ": " + std::strerror(errno)};
    }
  }
  w->journal_ = w->options_.journal.value_or(running_under_journal()) && journal_sendv() != nullptr;
  if (w->options_.use_syslog && !w->journal_) {
    // openlog keeps the pointer: options_ lives as long as the writer.
    openlog(w->options_.syslog_ident.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
    w->syslog_open_ = true;
  }
  return w;
}

Writer::~Writer() {
  if (syslog_open_) closelog();
}

Result<Ok> Writer::reopen() {
  if (options_.log_file.empty()) return Ok{};
  const int fd = open_log_file(options_.log_file);
  if (fd < 0) {
    return Error{"cannot open log file " + options_.log_file + ": " + std::strerror(errno)};
  }
  std::lock_guard lock(mutex_);
  file_fd_ = UniqueFd(fd);  // closes the old descriptor
  return Ok{};
}

void Writer::write(const Entry& entry) {
  write(entry, std::time(nullptr));
}

void Writer::write(const Entry& entry, std::time_t when) {
  if (!options_.log_file.empty()) write_file(format_file_line(entry.message, when));
  if (journal_) {
    write_journal(entry);
  } else if (syslog_open_) {
    syslog(LOG_NOTICE, "%s", entry.message.c_str());
  }
}

void Writer::write_file(const std::string& line) {
  std::lock_guard lock(mutex_);
  if (!file_fd_.valid()) return;
  // One write(2) per line: with O_APPEND the kernel places each whole line atomically
  // at the end, so captured and policyd can share knockd's single log file.
  (void)write_all(file_fd_.get(), line.data(), line.size());
}

void Writer::write_journal(const Entry& entry) {
  const JournalSendv send = journal_sendv();
  if (send == nullptr) return;
  std::vector<std::string> fields;
  fields.reserve(8);
  fields.push_back("MESSAGE=" + entry.message);
  fields.push_back("PRIORITY=" + std::to_string(LOG_NOTICE));
  fields.push_back("SYSLOG_FACILITY=" + std::to_string(LOG_DAEMON >> 3));
  fields.push_back("SYSLOG_IDENTIFIER=" + options_.syslog_ident);
  if (!entry.event.empty()) fields.push_back("KG_EVENT=" + entry.event);
  if (!entry.door.empty()) fields.push_back("KG_DOOR=" + entry.door);
  if (!entry.source.empty()) fields.push_back("KG_SOURCE=" + entry.source);
  std::vector<struct iovec> iov(fields.size());
  for (size_t i = 0; i < fields.size(); ++i) {
    iov[i].iov_base = fields[i].data();
    iov[i].iov_len = fields[i].size();
  }
  (void)send(iov.data(), static_cast<int>(iov.size()));
}

RateLimiter::RateLimiter(uint32_t max_per_interval, Clock::duration interval)
    : max_per_interval_(max_per_interval), interval_(interval) {}

std::string RateLimiter::summary_line(std::string_view kind, uint64_t suppressed) {
  return cat({kind, ": ", std::to_string(suppressed), " similar messages suppressed"});
}

RateLimiter::Decision RateLimiter::admit(std::string_view kind, Clock::time_point now) {
  Decision d;
  auto it = kinds_.find(std::string(kind));
  if (it == kinds_.end()) {
    it = kinds_.emplace(std::string(kind), KindState{now, 0, 0}).first;
  } else if (now - it->second.interval_start >= interval_) {
    if (it->second.suppressed > 0) d.summary = summary_line(kind, it->second.suppressed);
    it->second = KindState{now, 0, 0};
  }
  KindState& s = it->second;
  if (s.emitted < max_per_interval_) {
    ++s.emitted;
    d.emit = true;
  } else {
    ++s.suppressed;
    ++suppressed_total_;
  }
  return d;
}

std::vector<std::string> RateLimiter::flush(Clock::time_point now) {
  std::vector<std::string> out;
  for (auto it = kinds_.begin(); it != kinds_.end();) {
    KindState& s = it->second;
    if (now - s.interval_start < interval_) {
      ++it;
      continue;
    }
    if (s.suppressed > 0) {
      out.push_back(summary_line(it->first, s.suppressed));
      s = KindState{now, 0, 0};
      ++it;
    } else {
      it = kinds_.erase(it);  // idle kind: forget it, the next line starts a fresh interval
    }
  }
  return out;
}

}  // namespace kg::knocklog
