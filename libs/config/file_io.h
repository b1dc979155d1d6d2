// Small file helpers for the config library: an owning descriptor and whole-file reads.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <string>
#include <utility>

#include "common/result.h"

namespace kg::config {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Config files and one-time sequence files are small; anything larger is a mistake.
inline constexpr std::size_t kMaxConfigFileBytes = 16U << 20U;

// Reads the whole file behind `fd` from offset 0. Error messages read "cannot read: ...".
Result<std::string> read_whole(int fd, std::size_t limit = kMaxConfigFileBytes);

// Opens `path` read-only and reads it. Error messages read "cannot open: ..." or
// "cannot read: ...", without the path.
Result<std::string> read_file(const std::string& path, std::size_t limit = kMaxConfigFileBytes);

}  // namespace kg::config
