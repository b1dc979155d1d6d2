// The daemons' real seccomp allow-lists (daemons/*/seccomp_profile.cpp), each applied in
// a forked child that then tries what the list must refuse (a TCP or packet socket,
// exec, a kernel-changing call) and what it must allow (a Unix socket, a thread).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "captured/seccomp_profile.h"
#include "policyd/seccomp_profile.h"
#include "verdictd/seccomp_profile.h"
#include "webd/seccomp_profile.h"

namespace {

using kg::seccomp::Profile;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizerBuild = true;  // LeakSanitizer needs fork-like clone
#else
constexpr bool kSanitizerBuild = false;
#endif

// How the child ended: its exit code, or 128 + the signal that killed it.
int in_child(const Profile& profile, const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (auto r = kg::seccomp::apply(profile, kg::seccomp::Mode::kill); !r) _exit(100);
    _exit(body());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

constexpr int kKilled = 128 + SIGSYS;

// 0: the socket was made; the errno otherwise.
int try_socket(int domain, int type = SOCK_STREAM) {
  const int fd = ::socket(domain, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

int try_exec() {
  char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
  char* const envp[] = {nullptr};
  ::execve("/bin/true", argv, envp);
  return 90;
}

int try_thread() {
  int value = 0;
  std::thread t([&] { value = 7; });
  t.join();
  return value == 7 ? 0 : 1;
}

int try_fork() {
  // The raw call: glibc's fork() would run atfork handlers of the sanitizer runtime.
  const long pid = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid < 0) return 2;
  int status = 0;
  ::waitpid(static_cast<pid_t>(pid), &status, 0);
  return 0;
}

// A listening Unix socket in the abstract namespace: 0 when it listens.
int try_listen() {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string name = "kg-seccomp-test-" + std::to_string(::getpid());
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return errno;
  return ::listen(fd, 1) == 0 ? 0 : errno;
}

void expect_no_exec_and_unix_only(const Profile& p) {
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_UNIX); }), 0) << p.daemon;
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_UNIX, SOCK_DGRAM); }), 0) << p.daemon;
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_INET); }), EPERM) << p.daemon;
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_INET6, SOCK_DGRAM); }), EPERM) << p.daemon;
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_NETLINK, SOCK_RAW); }), EPERM) << p.daemon;
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_PACKET, SOCK_RAW); }), EPERM) << p.daemon;
  EXPECT_EQ(in_child(p, [] { return try_socket(4242); }), EPERM) << p.daemon;
  EXPECT_EQ(in_child(p, try_exec), kKilled) << p.daemon;
  EXPECT_EQ(in_child(p,
                     [] {
                       return static_cast<int>(
                           ::syscall(SYS_execveat, AT_FDCWD, "/bin/true", nullptr, nullptr, 0));
                     }),
            kKilled)
      << p.daemon;
  EXPECT_EQ(in_child(p, try_thread), 0) << p.daemon;
  EXPECT_EQ(in_child(p, try_listen), kKilled) << p.daemon;  // no new server socket
  if (!kSanitizerBuild) {
    EXPECT_EQ(in_child(p, try_fork), kKilled) << p.daemon;
  }
  EXPECT_EQ(in_child(p, [] { return ::unshare(CLONE_NEWNET) == 0 ? 0 : errno; }), kKilled)
      << p.daemon;
}

TEST(SeccompProfiles, CapturedMakesOnlyUnixSocketsAndNeverExecs) {
  expect_no_exec_and_unix_only(kg::captured::seccomp_profile(false));
}

TEST(SeccompProfiles, CapturedWithStreamSpaDoorsMayMakeTcpSocketsButStillNeverExecs) {
  const Profile p = kg::captured::seccomp_profile(true);
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_INET); }), 0);
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_INET6); }), 0);
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_PACKET, SOCK_RAW); }), EPERM);
  EXPECT_EQ(in_child(p, try_listen), 0);  // the SPA listeners are reopened on reload
  EXPECT_EQ(in_child(p, try_exec), kKilled);
}

TEST(SeccompProfiles, VerdictdMakesOnlyUnixSocketsAndNeverExecs) {
  expect_no_exec_and_unix_only(kg::verdictd::seccomp_profile());
}

TEST(SeccompProfiles, WebdMakesOnlyUnixSocketsAndNeverExecs) {
  expect_no_exec_and_unix_only(kg::webd::seccomp_profile());
}

TEST(SeccompProfiles, PolicydEngineMakesOnlyUnixSocketsAndNeverExecs) {
  expect_no_exec_and_unix_only(kg::policyd::engine_seccomp_profile());
}

TEST(SeccompProfiles, PolicydWriterRunsCommandsButCannotChangeTheKernelItself) {
  const Profile p = kg::policyd::writer_seccomp_profile();
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_NETLINK, SOCK_RAW); }), 0);
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_INET6, SOCK_DGRAM); }), 0);
  EXPECT_EQ(in_child(p, [] { return try_socket(AF_PACKET, SOCK_RAW); }), EPERM);
  // A knockd-style command: /bin/sh runs a pipeline under the inherited filter.
  EXPECT_EQ(in_child(p,
                     [] {
                       char* const argv[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"),
                                             const_cast<char*>("echo 192.0.2.1 | grep -q 192"),
                                             nullptr};
                       char* const envp[] = {const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
                       ::execve("/bin/sh", argv, envp);
                       return 90;
                     }),
            0);
  EXPECT_EQ(in_child(p, try_fork), 0);
  EXPECT_EQ(in_child(p, [] { return ::mount("none", "/mnt", "tmpfs", 0, nullptr); }), kKilled);
  EXPECT_EQ(in_child(p, [] { return ::unshare(CLONE_NEWNET) == 0 ? 0 : errno; }), kKilled);
  EXPECT_EQ(
      in_child(p, [] { return static_cast<int>(::syscall(SYS_init_module, nullptr, 0, "")); }),
      kKilled);
}

TEST(SeccompProfiles, LogModeLetsAViolationPass) {
  const Profile p = kg::webd::seccomp_profile();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (auto r = kg::seccomp::apply(p, kg::seccomp::Mode::log); !r) _exit(100);
    _exit(::unshare(0) == 0 ? 0 : 1);  // not on the list: logged, then run
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
