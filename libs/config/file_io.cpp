#include "config/file_io.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace kg::config {

Result<std::string> read_whole(int fd, std::size_t limit) {
  std::string out;
  char buf[8192];
  off_t offset = 0;
  while (true) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{std::string("cannot read: ") + std::strerror(errno)};
    }
    if (n == 0) return out;
    const auto got = static_cast<std::size_t>(n);
    if (out.size() + got > limit) {
      return Error{"cannot read: larger than " + std::to_string(limit >> 20U) + " MiB"};
    }
    out.append(buf, got);
    offset += n;
  }
}

Result<std::string> read_file(const std::string& path, std::size_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error{std::string("cannot open: ") + std::strerror(errno)};
  return read_whole(fd.get(), limit);
}

}  // namespace kg::config
