#include "policyd/pid_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <utility>

namespace kg::policyd {

namespace {

Error errno_error(const std::string& what, int err) {
  return Error{what + ": " + std::strerror(err)};
}

std::optional<pid_t> read_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(buf, &end, 10);
  if (errno != 0 || end == buf || v <= 0 || v > 0x3fffffff) return std::nullopt;
  while (*end == '\n' || *end == ' ') ++end;
  if (*end != '\0') return std::nullopt;
  return static_cast<pid_t>(v);
}

bool process_alive(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  // A zombie has exited already; only its parent has not collected it yet.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const size_t paren = text.rfind(')');
  if (paren != std::string::npos && paren + 2 < text.size()) {
    const char state = text[paren + 2];
    if (state == 'Z' || state == 'X') return false;
  }
  return true;
}

std::string process_name(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name.empty() ? "?" : name;
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

enum class Existing { gone, removed };

// PATH exists: refuses when its owner lives; removes it when it is stale.
Result<Existing> judge_existing(const std::string& path) {
  const UniqueFd owned(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!owned.valid()) {
    if (errno == ENOENT) return Existing::gone;
    return errno_error("PidFile " + path + ": cannot read the existing file", errno);
  }
  const int fd = owned.get();
  const std::optional<pid_t> pid = read_pid(fd);
  const std::string who =
      pid ? "process " + std::to_string(*pid) + " (" + process_name(*pid) + ")" : "another process";
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return errno_error("PidFile " + path + ": flock", errno);
    return Error{"PidFile " + path + " belongs to " + who +
                 ", a knockgate-policyd that is running; stop it first, or give this one "
                 "another PidFile"};
  }
  if (pid && *pid != ::getpid() && process_alive(*pid)) {
    return Error{"PidFile " + path + " names " + who +
                 ", which is running (knockd uses the same default PidFile); stop it, or "
                 "set another PidFile"};
  }
  // Stale. Remove it only if PATH still names the file we hold locked.
  struct stat ours {};
  struct stat by_path {};
  if (::fstat(fd, &ours) != 0) return errno_error("PidFile " + path + ": fstat", errno);
  if (::lstat(path.c_str(), &by_path) != 0 || !same_file(ours, by_path)) return Existing::gone;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return errno_error("PidFile " + path + ": cannot remove the stale file", errno);
  }
  return Existing::removed;
}

}  // namespace

Result<PidFile> PidFile::create(const std::string& path) {
  PidFile file;
  if (path.empty()) return file;
  std::string tmp = path + ".XXXXXX";
  file.fd_ = UniqueFd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!file.fd_.valid()) {
    return errno_error("PidFile " + path + ": cannot create a file next to it", errno);
  }
  const int fd = file.fd_.get();
  auto fail = [&](const std::string& what, int err) {
    ::unlink(tmp.c_str());
    return errno_error(what, err);
  };
  const std::string text = std::to_string(::getpid()) + "\n";
  if (::fchmod(fd, 0644) != 0) return fail("PidFile " + tmp + ": fchmod", errno);
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return fail("PidFile " + tmp + ": write", errno);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) return fail("PidFile " + tmp + ": flock", errno);
  // A stale file is replaced at most a few times over; more means a race we keep losing.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (::link(tmp.c_str(), path.c_str()) == 0) {
      ::unlink(tmp.c_str());
      file.path_ = path;
      return file;
    }
    if (errno != EEXIST) return fail("PidFile " + path + ": cannot create it", errno);
    auto existing = judge_existing(path);
    if (!existing) {
      ::unlink(tmp.c_str());
      return existing.error();
    }
  }
  ::unlink(tmp.c_str());
  return Error{"PidFile " + path + ": it keeps being re-created by another process"};
}

PidFile::~PidFile() {
  release();
}

PidFile::PidFile(PidFile&& other) noexcept
    : path_(std::exchange(other.path_, {})), fd_(std::move(other.fd_)) {}

PidFile& PidFile::operator=(PidFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::exchange(other.path_, {});
    fd_ = std::move(other.fd_);
  }
  return *this;
}

void PidFile::release() {
  if (!fd_.valid()) return;
  struct stat ours {};
  struct stat by_path {};
  if (!path_.empty() && ::fstat(fd_.get(), &ours) == 0 && ::lstat(path_.c_str(), &by_path) == 0 &&
      same_file(ours, by_path)) {
    ::unlink(path_.c_str());
  }
  fd_.reset();
  path_.clear();
}

}  // namespace kg::policyd
