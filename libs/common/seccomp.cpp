#include "common/seccomp.h"

#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace kg::seccomp {

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitizerBuild = true;
#else
constexpr bool kSanitizerBuild = false;
#endif
#else
constexpr bool kSanitizerBuild = false;
#endif

// Socket domains are small numbers (AF_MAX is 46 today); everything from here up is
// refused by one comparison.
constexpr int kDomainLimit = 64;

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Filter = std::unique_ptr<void, FilterDeleter>;

Error failure(std::string_view daemon, const std::string& what, int rc) {
  return Error{"seccomp (" + std::string(daemon) + "): " + what + ": " + std::strerror(-rc)};
}

// LeakSanitizer stops the world at exit with a clone()d tracer that ptraces the threads.
const std::vector<std::string_view>& sanitizer_syscalls() {
  static const std::vector<std::string_view> list = {"ptrace",      "wait4",   "waitid",  "prctl",
                                                     "personality", "getppid", "getdents"};
  return list;
}

Result<Ok> allow_names(scmp_filter_ctx ctx, std::string_view daemon,
                       const std::vector<std::string_view>& names) {
  for (std::string_view name : names) {
    const std::string n(name);
    const int nr = seccomp_syscall_resolve_name(n.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture or kernel
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0); rc != 0) {
      return failure(daemon, "allowing " + n, rc);
    }
  }
  return Ok{};
}

// A comparison of the first argument: what libseccomp's SCMP_A0_* macros expand to, without
// their C compound literal (C++ compilers reject it under -Werror).
scmp_arg_cmp arg0(scmp_compare op, uint64_t a, uint64_t b = 0) {
  scmp_arg_cmp c{};
  c.arg = 0;
  c.op = op;
  c.datum_a = a;
  c.datum_b = b;
  return c;
}

// socket() and socketpair(): the profile's domains pass, every other one gets EPERM.
Result<Ok> restrict_domains(scmp_filter_ctx ctx, const Profile& p) {
  for (int call : {SCMP_SYS(socket), SCMP_SYS(socketpair)}) {
    for (int domain = 0; domain < kDomainLimit; ++domain) {
      const bool allowed = std::find(p.socket_domains.begin(), p.socket_domains.end(), domain) !=
                           p.socket_domains.end();
      const uint32_t action = allowed ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(EPERM);
      if (int rc = seccomp_rule_add(ctx, action, call, 1,
                                    arg0(SCMP_CMP_EQ, static_cast<uint32_t>(domain)));
          rc != 0) {
        return failure(p.daemon, "socket domain rule", rc);
      }
    }
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), call, 1,
                                  arg0(SCMP_CMP_GE, static_cast<uint32_t>(kDomainLimit)));
        rc != 0) {
      return failure(p.daemon, "socket domain rule", rc);
    }
  }
  return Ok{};
}

Result<Ok> process_rules(scmp_filter_ctx ctx, const Profile& p) {
  if (p.may_spawn) {
    return allow_names(
        ctx, p.daemon,
        {"clone", "clone3", "vfork", "fork", "execve", "execveat", "wait4", "waitid"});
  }
  // clone3 hides its flags in memory the filter cannot read: refuse it so that glibc
  // falls back to clone, whose flags it can.
  if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0); rc != 0) {
    return failure(p.daemon, "clone3 rule", rc);
  }
  if (kSanitizerBuild) return allow_names(ctx, p.daemon, {"clone"});
  const int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                  arg0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
  if (rc != 0) return failure(p.daemon, "clone rule", rc);
  return Ok{};
}

// Threads name themselves (pthread_setname_np is prctl(PR_SET_NAME) for the calling
// thread); nothing else of prctl is needed once running.
Result<Ok> thread_names(scmp_filter_ctx ctx, const Profile& p) {
  const auto& s = sanitizer_syscalls();
  const bool listed = std::find(p.syscalls.begin(), p.syscalls.end(), "prctl") != p.syscalls.end();
  if (listed || (kSanitizerBuild && std::find(s.begin(), s.end(), "prctl") != s.end())) {
    return Ok{};
  }
  for (int option : {PR_SET_NAME, PR_GET_NAME}) {
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                                  arg0(SCMP_CMP_EQ, static_cast<uint32_t>(option)));
        rc != 0) {
      return failure(p.daemon, "prctl rule", rc);
    }
  }
  return Ok{};
}

}  // namespace

const std::vector<std::string_view>& base_syscalls() {
  static const std::vector<std::string_view> list = {
      // memory
      "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "mlock", "munlock",
      // files already open, and files by name (logs, config on reload, /proc, NSS)
      "read", "readv", "pread64", "preadv", "write", "writev", "pwrite64", "pwritev", "close",
      "lseek", "fstat", "newfstatat", "statx", "stat", "lstat", "openat", "open", "access",
      "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "fcntl", "ioctl", "dup",
      "dup2", "dup3", "pipe2", "fsync", "fdatasync", "ftruncate", "getcwd", "statfs", "fstatfs",
      "umask",
      // the reactor and its timers
      "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2",
      "timerfd_create", "timerfd_settime", "timerfd_gettime", "poll", "ppoll", "select", "pselect6",
      // sockets already open; connect for the IPC client's reconnect
      "accept4", "accept", "connect", "shutdown", "recvfrom", "recvmsg", "recvmmsg", "sendto",
      "sendmsg", "sendmmsg", "getsockopt", "setsockopt", "getsockname", "getpeername",
      // threads, signals, time
      "futex", "set_robust_list", "get_robust_list", "rseq", "set_tid_address", "sched_yield",
      "sched_getaffinity", "sched_setaffinity", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
      "rt_sigtimedwait", "sigaltstack", "tgkill", "tkill", "restart_syscall", "clock_gettime",
      "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
      // identity and limits
      "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
      "getgroups", "capget", "prlimit64", "getrlimit", "getrusage", "uname", "sysinfo", "getrandom",
      "membarrier", "arch_prctl",
      // leaving
      "exit", "exit_group"};
  return list;
}

Mode mode_from_environment() {
  const char* v = std::getenv("KG_SECCOMP");
  return v != nullptr && std::string_view(v) == "log" ? Mode::log : Mode::kill;
}

Result<Ok> apply(const Profile& profile, Mode mode) {
  const uint32_t violation = mode == Mode::log ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
  Filter filter(seccomp_init(violation));
  if (!filter) return Error{"seccomp (" + std::string(profile.daemon) + "): seccomp_init failed"};
  scmp_filter_ctx ctx = filter.get();
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); rc != 0) {
    return failure(profile.daemon, "thread sync", rc);
  }
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1); rc != 0) {
    return failure(profile.daemon, "no_new_privs", rc);
  }
  if (auto r = allow_names(ctx, profile.daemon, base_syscalls()); !r) return r;
  if (kSanitizerBuild) {
    if (auto r = allow_names(ctx, profile.daemon, sanitizer_syscalls()); !r) return r;
  }
  if (auto r = allow_names(ctx, profile.daemon, profile.syscalls); !r) return r;
  if (auto r = restrict_domains(ctx, profile); !r) return r;
  if (auto r = process_rules(ctx, profile); !r) return r;
  if (auto r = thread_names(ctx, profile); !r) return r;
  if (int rc = seccomp_load(ctx); rc != 0) return failure(profile.daemon, "loading", rc);
  return Ok{};
}

}  // namespace kg::seccomp
