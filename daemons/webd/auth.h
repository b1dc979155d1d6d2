// Who may use the console: password logins (argon2id hashes written by `knockgatectl
// passwd`), sessions with idle and absolute timeouts and a CSRF token each, API tokens
// for scripts (stored as hashes). Failed logins are slowed down by login_throttle.h.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace kg::webd {

using Clock = std::chrono::steady_clock;

// Password file lines: `USER:$argon2id$...`. Re-read when its mtime or size changes, so
// `knockgatectl passwd` takes effect without a restart.
class PasswordStore {
 public:
  explicit PasswordStore(std::string path) : path_(std::move(path)) {}
  // Loads now; a missing file means "nobody can log in" (logged by the caller).
  Result<Ok> load();
  // Constant work whether or not the user exists: an unknown user is checked against a
  // dummy hash so timing does not tell which names exist.
  bool verify(std::string_view user, std::string_view password);
  size_t users() const { return hashes_.size(); }
  const std::string& path() const { return path_; }

 private:
  void reload_if_changed();
  std::string path_;
  std::map<std::string, std::string, std::less<>> hashes_;
  struct timespec mtime_ {};
  off_t size_ = -1;
};

// API token file lines: `NAME:HEX` with HEX the BLAKE2b-256 of the token (tokens are 32
// random bytes, so a fast hash is enough). Bearer tokens are `kgt_` + 64 hex digits.
class TokenStore {
 public:
  explicit TokenStore(std::string path) : path_(std::move(path)) {}
  Result<Ok> load();
  // The token's name, or nullopt. Compares in constant time per stored token.
  std::optional<std::string> verify(std::string_view bearer);
  static std::string hash_hex(std::string_view token);

 private:
  void reload_if_changed();
  std::string path_;
  std::vector<std::pair<std::string, std::string>> tokens_;  // name, hash hex
  struct timespec mtime_ {};
  off_t size_ = -1;
};

struct Session {
  std::string id;  // 64 hex digits from randombytes
  std::string user;
  std::string csrf_token;
  Clock::time_point created;
  Clock::time_point last_used;
};

class SessionStore {
 public:
  struct Limits {
    std::chrono::seconds idle{30 * 60};
    std::chrono::seconds absolute{12 * 3600};
    size_t max_sessions = 1000;  // the oldest goes when a new one would exceed this
  };
  SessionStore() = default;
  explicit SessionStore(Limits limits) : limits_(limits) {}

  const Session& create(std::string user, Clock::time_point now);
  // The live session with this id (touched), or nullptr; expired ones are erased.
  const Session* find(std::string_view id, Clock::time_point now);
  void erase(std::string_view id);
  size_t size() const { return sessions_.size(); }
  const Limits& limits() const { return limits_; }

 private:
  Limits limits_;
  std::map<std::string, Session, std::less<>> sessions_;
};

// Random bytes as lower-case hex (libsodium randombytes_buf).
std::string random_hex(size_t bytes);
// Equal length and equal bytes, in time independent of where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace kg::webd
