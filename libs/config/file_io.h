// Whole-file reads for the config library.
#pragma once

#include <cstddef>
#include <string>

#include "common/result.h"

namespace kg::config {

// Config files and one-time sequence files are small; anything larger is a mistake.
inline constexpr std::size_t kMaxConfigFileBytes = 16U << 20U;

// Reads the whole file behind `fd` from offset 0. Error messages read "cannot read: ...".
Result<std::string> read_whole(int fd, std::size_t limit = kMaxConfigFileBytes);

// Opens `path` read-only and reads it. Error messages read "cannot open: ..." or
// "cannot read: ...", without the path.
Result<std::string> read_file(const std::string& path, std::size_t limit = kMaxConfigFileBytes);

}  // namespace kg::config
