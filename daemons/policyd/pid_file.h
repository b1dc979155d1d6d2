// knockd's PidFile for policyd: the process id, written when policyd starts and removed
// when it exits cleanly.
//
// The file appears whole or not at all: the pid is written to a temporary file in the same
// directory, which is then link(2)ed to PATH (fails with EEXIST, like O_EXCL, when PATH is
// there). policyd holds an flock(2) on its file for as long as it runs. An existing file
// is judged with that lock: locked means a running policyd owns it (start refused); not
// locked, it is stale unless it names a live process (knockd does not lock its pid file;
// start refused too). A stale file is removed only while holding its lock and only if PATH
// still names it, so two policyd starting at once cannot both take over the same file.
#pragma once

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace kg::policyd {

class PidFile {
 public:
  // Writes getpid() to PATH. An empty path writes nothing.
  static Result<PidFile> create(const std::string& path);
  PidFile() = default;
  ~PidFile();  // removes the file if PATH still names ours
  PidFile(PidFile&& other) noexcept;
  PidFile& operator=(PidFile&& other) noexcept;
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  UniqueFd fd_;  // our file, flock-ed
};

}  // namespace kg::policyd
