#include "config/one_time.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config/file_io.h"
#include "config/values.h"

namespace kg::config {

Result<OneTimeSequences> OneTimeSequences::open(const std::string& path, bool writable) {
  OneTimeSequences ots;
  ots.path_ = path;
  ots.fd_ = UniqueFd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!ots.fd_.valid()) return Error{path + ": cannot open: " + std::strerror(errno)};
  auto text = read_whole(ots.fd_.get());
  if (!text) return Error{path + ": " + text.error().message};
  auto found = ots.scan(*text);
  if (!found.empty()) {
    ots.active_ = std::move(found.front().sequence);
    ots.active_offset_ = found.front().offset;
    ots.active_line_ = found.front().line;
  }
  return ots;
}

std::vector<OneTimeSequences::Found> OneTimeSequences::scan(const std::string& text) {
  std::vector<Found> found;
  skipped_.clear();
  int line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line;
    const auto content = trim(std::string_view(text).substr(start, end - start));
    if (!content.empty() && content[0] != '#') {
      auto seq = parse_knock_sequence(content);
      if (seq) {
        found.push_back(Found{std::move(*seq), static_cast<long>(start), line});
      } else {
        skipped_.push_back(Diagnostic{path_, line, "one_time_sequences", seq.error().message});
      }
    }
    start = end + 1;
  }
  return found;
}

Result<std::optional<std::vector<Knock>>> OneTimeSequences::consume() {
  if (active_.empty()) return Error{path_ + ": no sequence left to use"};
  auto text = read_whole(fd_.get());
  if (!text) return Error{path_ + ": " + text.error().message};

  // The line read at open (or at the last consume) is normally still where it was; if the
  // file was edited since, use the first line that still carries the used sequence.
  long offset = -1;
  for (const auto& f : scan(*text)) {
    if (f.sequence == active_ && (offset < 0 || f.offset == active_offset_)) {
      offset = f.offset;
      if (f.offset == active_offset_) break;
    }
  }
  if (offset < 0) {
    return Error{path_ + ": the used sequence (line " + std::to_string(active_line_) +
                 ") is no longer in the file"};
  }
  const char mark = '#';
  ssize_t n = 0;
  do {
    n = ::pwrite(fd_.get(), &mark, 1, offset);
  } while (n < 0 && errno == EINTR);
  if (n != 1) return Error{path_ + ": cannot mark sequence used: " + std::strerror(errno)};
  if (::fsync(fd_.get()) != 0) {
    return Error{path_ + ": cannot sync after marking: " + std::strerror(errno)};
  }

  (*text)[static_cast<size_t>(offset)] = mark;
  auto found = scan(*text);
  if (found.empty()) {
    active_.clear();
    active_offset_ = -1;
    active_line_ = 0;
    return std::optional<std::vector<Knock>>{};
  }
  active_ = std::move(found.front().sequence);
  active_offset_ = found.front().offset;
  active_line_ = found.front().line;
  return std::optional<std::vector<Knock>>{active_};
}

}  // namespace kg::config

namespace kg::config {

std::vector<Diagnostic> check_external_files(const Config& config) {
  std::vector<Diagnostic> out;
  for (const Door& d : config.doors) {
    if (d.one_time_sequences.empty()) continue;
    auto ots = OneTimeSequences::open(d.one_time_sequences, /*writable=*/false);
    if (!ots) {
      out.push_back(Diagnostic{config.file, d.line, "one_time_sequences", ots.error().message});
    } else if (ots->exhausted()) {
      out.push_back(Diagnostic{config.file, d.line, "one_time_sequences",
                               d.one_time_sequences + ": no usable sequence left"});
    }
  }
  return out;
}

}  // namespace kg::config
