#include "webd/auth.h"

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kg::webd {
namespace {

bool same_stat(const struct stat& st, const struct timespec& mtime, off_t size) {
  return st.st_mtim.tv_sec == mtime.tv_sec && st.st_mtim.tv_nsec == mtime.tv_nsec &&
         st.st_size == size;
}

// Reads `NAME:VALUE` lines; '#' comments and blank lines skipped.
Result<std::vector<std::pair<std::string, std::string>>> read_colon_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error{path + ": " + std::strerror(errno)};
  std::vector<std::pair<std::string, std::string>> out;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string::npos) {
      return Error{path + ":" + std::to_string(number) + ": expected NAME:VALUE"};
    }
    out.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  return out;
}

}  // namespace

Result<Ok> PasswordStore::load() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    hashes_.clear();
    size_ = -1;
    return Error{path_ + ": " + std::strerror(errno)};
  }
  auto lines = read_colon_file(path_);
  mtime_ = st.st_mtim;
  size_ = st.st_size;
  hashes_.clear();
  if (!lines) return lines.error();
  for (auto& [user, hash] : *lines) {
    if (hash.rfind("$argon2id$", 0) != 0) {
      return Error{path_ + ": user " + user + ": not an argon2id hash"};
    }
    hashes_[user] = hash;
  }
  return Ok{};
}

void PasswordStore::reload_if_changed() {
  struct stat st {};
  const bool exists = ::stat(path_.c_str(), &st) == 0;
  if (exists && same_stat(st, mtime_, size_)) return;
  if (!exists && size_ == -1) return;
  (void)load();  // a broken file locks everyone out rather than keeping stale hashes
}

bool PasswordStore::verify(std::string_view user, std::string_view password) {
  reload_if_changed();
  // Hash of a random password with the same parameters `knockgatectl passwd` uses.
  static const std::string dummy = [] {
    char out[crypto_pwhash_STRBYTES];
    const std::string pw = random_hex(16);
    if (crypto_pwhash_str(out, pw.data(), pw.size(), 2, size_t{19} * 1024 * 1024) != 0)
      return std::string();
    return std::string(out);
  }();
  auto it = hashes_.find(user);
  const std::string& hash = it == hashes_.end() ? dummy : it->second;
  const std::string pw(password);
  const bool ok =
      !hash.empty() && crypto_pwhash_str_verify(hash.c_str(), pw.data(), pw.size()) == 0;
  return ok && it != hashes_.end();
}

Result<Ok> TokenStore::load() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    tokens_.clear();
    size_ = -1;
    return Error{path_ + ": " + std::strerror(errno)};
  }
  auto lines = read_colon_file(path_);
  mtime_ = st.st_mtim;
  size_ = st.st_size;
  tokens_.clear();
  if (!lines) return lines.error();
  for (auto& [name, hash] : *lines) {
    if (hash.size() != 64) return Error{path_ + ": token " + name + ": not a 64-digit hash"};
    tokens_.emplace_back(name, hash);
  }
  return Ok{};
}

void TokenStore::reload_if_changed() {
  struct stat st {};
  const bool exists = ::stat(path_.c_str(), &st) == 0;
  if (exists && same_stat(st, mtime_, size_)) return;
  if (!exists && size_ == -1) return;
  (void)load();
}

std::string TokenStore::hash_hex(std::string_view token) {
  unsigned char digest[32];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  char hex[65];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return hex;
}

std::optional<std::string> TokenStore::verify(std::string_view bearer) {
  reload_if_changed();
  if (bearer.size() != 68 || bearer.substr(0, 4) != "kgt_") return std::nullopt;
  const std::string hash = hash_hex(bearer);
  std::optional<std::string> found;
  for (const auto& [name, stored] : tokens_) {
    if (constant_time_equal(hash, stored) && !found) found = name;
  }
  return found;
}

const Session& SessionStore::create(std::string user, Clock::time_point now) {
  while (sessions_.size() >= limits_.max_sessions && !sessions_.empty()) {
    auto oldest = sessions_.begin();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.last_used < oldest->second.last_used) oldest = it;
    }
    sessions_.erase(oldest);
  }
  Session s;
  s.id = random_hex(32);
  s.user = std::move(user);
  s.csrf_token = random_hex(32);
  s.created = s.last_used = now;
  auto [it, inserted] = sessions_.emplace(s.id, std::move(s));
  (void)inserted;  // 256 random bits do not collide
  return it->second;
}

const Session* SessionStore::find(std::string_view id, Clock::time_point now) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  Session& s = it->second;
  if (now - s.last_used > limits_.idle || now - s.created > limits_.absolute) {
    sessions_.erase(it);
    return nullptr;
  }
  s.last_used = now;
  return &s;
}

void SessionStore::erase(std::string_view id) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) sessions_.erase(it);
}

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  randombytes_buf(buf.data(), buf.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), buf.data(), buf.size());
  hex.pop_back();
  return hex;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace kg::webd
