// knockgatectl passwd: sets a console password (argon2id, libsodium) or creates an API
// token, in the files knockgate-webd reads. Each file is rewritten atomically (temporary
// file, fsync, rename), mode 0640, owner root, group WebUser's group.
#include <fcntl.h>
#include <pwd.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/values.h"
#include "ctl/commands.h"

namespace kg::ctl {
namespace {

// OWASP's argon2id minimum (m = 19 MiB, t = 2): about 50 ms here, and it keeps webd's
// memory small while it verifies.
constexpr unsigned long long kOpsLimit = 2;
constexpr size_t kMemLimit = size_t{19} * 1024 * 1024;

void usage(std::FILE* to) {
  (void)std::fputs(
      "usage: knockgatectl passwd [-c CONFIG] [--file FILE] [--stdin] [USER]\n"
      "       knockgatectl passwd [-c CONFIG] [--file FILE] --token NAME\n"
      "       knockgatectl passwd [-c CONFIG] [--file FILE] --delete USER|--delete-token NAME\n"
      "Sets USER's (default admin) knockgate-webd password, read from the terminal twice\n"
      "or, with --stdin, as one line from standard input. --token creates an API token for\n"
      "scripts (Authorization: Bearer TOKEN), prints it once and stores only its hash.\n"
      "Files default to the config's WebPasswordFile / WebTokenFile.\n",
      to);
}

std::optional<std::string> read_password(bool from_stdin) {
  std::string line;
  if (from_stdin || ::isatty(STDIN_FILENO) == 0) {
    if (!std::getline(std::cin, line)) return std::nullopt;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }
  termios old{};
  ::tcgetattr(STDIN_FILENO, &old);
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  std::string again;
  std::fputs("New password: ", stderr);
  const bool ok1 = static_cast<bool>(std::getline(std::cin, line));
  std::fputs("\nAgain: ", stderr);
  const bool ok2 = static_cast<bool>(std::getline(std::cin, again));
  std::fputs("\n", stderr);
  ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
  if (!ok1 || !ok2) return std::nullopt;
  if (line != again) {
    std::fputs("knockgatectl passwd: the passwords differ\n", stderr);
    return std::nullopt;
  }
  return line;
}

// Replaces (or with an empty value removes) NAME's line and writes the file atomically.
bool update_file(const std::string& path, const std::string& name, const std::string& value,
                 const std::string& web_user) {
  std::vector<std::string> lines;
  bool found = false;
  {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name + ":", 0) == 0) {
        found = true;
        if (!value.empty()) lines.push_back(name + ":" + value);
      } else {
        lines.push_back(line);
      }
    }
  }
  if (!found && value.empty()) {
    std::fprintf(stderr, "knockgatectl passwd: %s: no entry \"%s\"\n", path.c_str(), name.c_str());
    return false;
  }
  if (!found) lines.push_back(name + ":" + value);

  std::string tmp = path + ".XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    std::fprintf(stderr, "knockgatectl passwd: %s: %s\n", tmp.c_str(), std::strerror(errno));
    return false;
  }
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  gid_t group = 0;
  if (const passwd* pw = ::getpwnam(web_user.c_str()); pw != nullptr) {
    group = pw->pw_gid;
  } else {
    std::fprintf(stderr, "knockgatectl passwd: warning: WebUser %s does not exist; group root\n",
                 web_user.c_str());
  }
  bool ok = ::fchmod(fd, 0640) == 0;
  if (ok && ::geteuid() == 0) ok = ::fchown(fd, 0, group) == 0;
  size_t written = 0;
  while (ok && written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) written += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = ok ? errno : saved;
    ::unlink(tmp.c_str());
    std::fprintf(stderr, "knockgatectl passwd: %s: %s\n", path.c_str(), std::strerror(e));
    return false;
  }
  return true;
}

}  // namespace

int run_passwd(const Args& args) {
  std::string config_path = config::kDefaultPath;
  std::optional<std::string> file;
  std::optional<std::string> token;
  std::optional<std::string> remove_user;
  std::optional<std::string> remove_token;
  bool from_stdin = false;
  std::string user = "admin";
  bool user_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    auto next = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return std::string(args[++i]);
    };
    std::optional<std::string>* target = nullptr;
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return kExitOk;
    } else if (a == "--stdin") {
      from_stdin = true;
      continue;
    } else if (a == "-c" || a == "--config") {
      auto v = next();
      if (!v) return usage(stderr), kExitUsage;
      config_path = *v;
      continue;
    } else if (a == "--file") {
      target = &file;
    } else if (a == "--token") {
      target = &token;
    } else if (a == "--delete") {
      target = &remove_user;
    } else if (a == "--delete-token") {
      target = &remove_token;
    } else if (!a.empty() && a[0] != '-' && !user_given) {
      user = std::string(a);
      user_given = true;
      continue;
    } else {
      usage(stderr);
      return kExitUsage;
    }
    *target = next();
    if (!*target) return usage(stderr), kExitUsage;
  }
  for (const auto* name : {&token, &remove_user, &remove_token}) {
    if (*name && !config::valid_account_name(**name)) {
      std::fprintf(stderr, "knockgatectl passwd: \"%s\" is not a valid name\n", (*name)->c_str());
      return kExitUsage;
    }
  }
  if (!config::valid_account_name(user)) {
    std::fprintf(stderr, "knockgatectl passwd: \"%s\" is not a valid user name\n", user.c_str());
    return kExitUsage;
  }
  // The config names the files and WebUser; a missing config means defaults.
  config::Options options;
  if (::access(config_path.c_str(), F_OK) == 0) {
    auto parsed = config::parse_file(config_path);
    if (!parsed.config) {
      for (const auto& d : parsed.errors) std::fprintf(stderr, "%s\n", d.str().c_str());
      return kExitFailed;
    }
    options = parsed.config->options;
  }
  if (sodium_init() < 0) {
    std::fputs("knockgatectl passwd: libsodium cannot initialise\n", stderr);
    return kExitFailed;
  }
  const bool tokens = token || remove_token;
  const std::string path = file     ? *file
                           : tokens ? options.web_token_file
                                    : options.web_password_file;

  if (remove_user || remove_token) {
    return update_file(path, remove_user ? *remove_user : *remove_token, "", options.web_user)
               ? kExitOk
               : kExitFailed;
  }
  if (token) {
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
    const std::string secret = std::string("kgt_") + hex;
    unsigned char digest[32];
    crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(secret.data()),
                       secret.size(), nullptr, 0);
    char digest_hex[65];
    sodium_bin2hex(digest_hex, sizeof digest_hex, digest, sizeof digest);
    if (!update_file(path, *token, digest_hex, options.web_user)) return kExitFailed;
    std::printf("%s\n", secret.c_str());
    return kExitOk;
  }
  auto password = read_password(from_stdin);
  if (!password) return kExitFailed;
  if (password->size() < 8) {
    std::fputs("knockgatectl passwd: use at least 8 characters\n", stderr);
    return kExitFailed;
  }
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, password->data(), password->size(), kOpsLimit, kMemLimit) != 0) {
    std::fputs("knockgatectl passwd: out of memory while hashing\n", stderr);
    return kExitFailed;
  }
  sodium_memzero(password->data(), password->size());
  return update_file(path, user, hash, options.web_user) ? kExitOk : kExitFailed;
}

}  // namespace kg::ctl
