// The console's files (web/), read once at start into memory: requests can only ever get
// one of these, so no path from a client reaches the file system.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/result.h"

namespace kg::webd {

struct StaticFile {
  std::string content_type;
  std::string body;
  std::string etag;
};

class StaticFiles {
 public:
  // Regular files under `root` (no symlinks followed out of it, no dot files), at most
  // 16 MiB in total. Only known extensions are served.
  Result<Ok> load(const std::string& root);
  // `/` is /index.html.
  const StaticFile* find(std::string_view path) const;
  size_t size() const { return files_.size(); }

 private:
  std::map<std::string, StaticFile, std::less<>> files_;
};

}  // namespace kg::webd
