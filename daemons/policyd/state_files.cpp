#include "policyd/state_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/log.h"
#include "common/unique_fd.h"

namespace kg::policyd {
namespace {

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Gives an existing regular file to the user; a missing one is fine (created later). The
// file is opened without following a link and must have one name only: the directory may
// already be the user's, and a link planted there must not hand over another file.
Result<Ok> give_file(const std::string& path, const Credentials& to) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Ok{};
    return Error{path + ": " + std::strerror(errno)};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error{path + ": " + std::strerror(errno)};
  if (!S_ISREG(st.st_mode)) return Error{path + ": not a regular file"};
  if (st.st_uid == to.uid) return Ok{};
  if (st.st_nlink != 1) return Error{path + ": has other names (hard links); not handed over"};
  if (::fchown(fd.get(), to.uid, static_cast<gid_t>(-1)) != 0) {
    return Error{"cannot give " + path + " to the engine's user: " + std::strerror(errno)};
  }
  return Ok{};
}

bool writable_by(const struct stat& st, const Credentials& who) {
  if (st.st_uid == who.uid) return (st.st_mode & S_IWUSR) != 0 && (st.st_mode & S_IXUSR) != 0;
  if (st.st_gid == who.gid) return (st.st_mode & S_IWGRP) != 0 && (st.st_mode & S_IXGRP) != 0;
  return (st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_IXOTH) != 0;
}

Result<Ok> prepare_database_dir(const std::string& dir, const Credentials& to) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return Error{"Database directory " + dir + ": " + std::strerror(errno)};
    if (::mkdir(dir.c_str(), 0750) != 0) {
      return Error{"cannot create the Database directory " + dir + ": " + std::strerror(errno)};
    }
    const UniqueFd made(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!made.valid() || ::fchown(made.get(), to.uid, to.gid) != 0) {
      return Error{"cannot give " + dir + " to the engine's user: " + std::strerror(errno)};
    }
    return Ok{};
  }
  if (writable_by(st, to)) return Ok{};
  if (dir == kPackageStateDir && st.st_uid == 0) {
    if (::chown(dir.c_str(), to.uid, to.gid) != 0) {
      return Error{"cannot give " + dir + " to the engine's user: " + std::strerror(errno)};
    }
    log::info(dir + " now belongs to the engine's user (uid " + std::to_string(to.uid) + ")");
    return Ok{};
  }
  return Error{"the Database directory " + dir + " is not writable by PolicyUser (uid " +
               std::to_string(to.uid) + "): give it to that user (chown) or choose another"};
}

}  // namespace

Result<Credentials> engine_credentials(const config::Config& config) {
  const std::string& name = config.options.policy_user;
  auto creds = lookup_user(name);
  if (!creds) {
    return Error{"PolicyUser " + name + ": " + creds.error().message +
                 " (create it: adduser --system --group " + name + ")"};
  }
  if (creds->uid == 0) return Error{"PolicyUser " + name + " is root; the engine must not be"};
  const config::Options& o = config.options;
  for (const std::string* other : {&o.capture_user, &o.verdict_user, &o.web_user}) {
    if (auto them = lookup_user(*other); them && them->uid == creds->uid) {
      return Error{"PolicyUser " + name + " is also the user of another daemon (" + *other +
                   "); the engine's database must be its own"};
    }
  }
  return creds;
}

Result<Ok> hand_state_to_engine(const config::Config& config) {
  auto to = engine_credentials(config);
  if (!to) return to.error();
  const std::string& db = config.options.database;
  if (auto dir = prepare_database_dir(directory_of(db), *to); !dir) return dir;
  for (const char* suffix : {"", "-wal", "-shm", "-journal", "-revocations"}) {
    if (auto given = give_file(db + suffix, *to); !given) return given;
  }
  for (const auto& door : config.doors) {
    if (door.one_time_sequences.empty()) continue;
    if (auto given = give_file(door.one_time_sequences, *to); !given) return given;
  }
  return Ok{};
}

}  // namespace kg::policyd
