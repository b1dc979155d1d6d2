// knockd's one_time_sequences file: one knock sequence per line; the first line that is
// not blank, not a '#' comment and parses is the active one. Using it overwrites the first
// byte of its line with '#' in place, so the next usable line becomes active.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/knock.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "config/config.h"

namespace kg::config {

class OneTimeSequences {
 public:
  // Opens the file read-write (read-only when `writable` is false: consume() then fails),
  // and finds the active sequence. An exhausted file is not an error here; callers decide.
  static Result<OneTimeSequences> open(const std::string& path, bool writable = true);

  const std::string& path() const { return path_; }
  bool exhausted() const { return active_.empty(); }
  const std::vector<Knock>& active() const { return active_; }
  int active_line() const { return active_line_; }  // 1-based; 0 when exhausted

  // Lines that were neither blank, comments nor sequences, as seen by the last scan; they
  // are skipped (never marked) so that the active sequence is really the one used.
  const std::vector<Diagnostic>& skipped() const { return skipped_; }

  // Marks the active line used ('#' over its first byte, then fsync) and moves on. Returns
  // the new active sequence, or nullopt when the file has none left. Fails when nothing is
  // active, when the file can't be written, or when the active line has changed on disk
  // since it was read and the used sequence can no longer be found.
  Result<std::optional<std::vector<Knock>>> consume();

 private:
  struct Found {
    std::vector<Knock> sequence;
    long offset = -1;  // of the line's first byte
    int line = 0;
  };
  // Scans `text` for usable sequences in file order, filling skipped_.
  std::vector<Found> scan(const std::string& text);

  std::string path_;
  UniqueFd fd_;
  std::vector<Knock> active_;
  long active_offset_ = -1;
  int active_line_ = 0;
  std::vector<Diagnostic> skipped_;
};

}  // namespace kg::config
