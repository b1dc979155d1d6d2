// A daemon's system-call allow-list, applied in-process with libseccomp once start-up is
// over (privileges dropped, sockets and handles open), so it holds with or without
// systemd. Every daemon keeps its own list next to its main.cpp; docs/security.md says
// what each one permits.
#pragma once

#include <string_view>
#include <vector>

#include "common/result.h"

namespace kg::seccomp {

struct Profile {
  std::string_view daemon;  // for messages
  // Allowed as they are, on top of base_syscalls(). Names the running kernel's headers
  // do not know are skipped.
  std::vector<std::string_view> syscalls;
  // socket(2) and socketpair(2) succeed only for these domains (AF_UNIX, ...); any
  // other domain fails with EPERM, so a daemon that tries reports an error instead of
  // dying. Empty: no new socket at all.
  std::vector<int> socket_domains;
  // fork-like clone, clone3, execve and execveat (policyd's commands). Without it clone
  // may only make threads (CLONE_THREAD), and clone3 fails with ENOSYS so that glibc
  // falls back to clone, whose flags the filter can see.
  bool may_spawn = false;
};

// What every daemon needs: glibc, the allocator, Boost.Asio's reactor (epoll, eventfd,
// timerfd), threads, logging, and the runtime of a sanitizer build (ASan/LSan).
const std::vector<std::string_view>& base_syscalls();

// How a violation ends. kill: the whole process dies with SIGSYS (the default, so the
// crash is visible); log: the kernel logs it (audit) and lets it pass, for finding what a
// new code path needs. KG_SECCOMP=log in the environment selects log.
enum class Mode { kill, log };
Mode mode_from_environment();

// Installs the filter on every thread of the process (TSYNC) and sets no_new_privs.
// Irreversible; children inherit it.
Result<Ok> apply(const Profile& profile, Mode mode = mode_from_environment());

}  // namespace kg::seccomp
