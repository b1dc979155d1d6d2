#include "policyd/seccomp_profile.h"

#include <sys/socket.h>

namespace kg::policyd {

seccomp::Profile writer_seccomp_profile() {
  seccomp::Profile p;
  p.daemon = "knockgate-policyd (kernel writer)";
  // The coarsest list: the writer opens netlink sockets per kernel change (nftables,
  // routes, conntrack), starts the engine and runs the admin's knockd-style commands
  // through /bin/sh, which inherit this filter. So it allows fork and exec and what
  // ordinary command-line tools (sh, ip, nft, iptables, logger) use on files and
  // processes; it still refuses what changes the kernel itself (modules, mounts, kexec,
  // reboot, bpf, ptrace of others, namespaces, clock, swap, keyrings, perf). The engine
  // starts under it too, so it also covers SQLite and the socket server.
  p.socket_domains = {AF_UNIX, AF_NETLINK, AF_INET, AF_INET6};
  p.may_spawn = true;
  p.syscalls = {
      // SQLite, the one-time sequence files, the runtime directory, the control socket
      "bind", "listen", "rename", "renameat", "renameat2", "unlink", "unlinkat", "fchmod",
      "fchmodat", "chmod", "fchown", "fchownat", "chown", "lchown", "mkdir", "mkdirat", "rmdir",
      "link", "linkat", "symlink", "symlinkat", "utimensat", "utimes", "truncate", "flock",
      "fallocate", "fadvise64", "sendfile", "copy_file_range", "splice", "close_range",
      // processes: posix_spawn, waiting, signalling its commands, what sh and tools do
      "chdir", "fchdir", "setsid", "setpgid", "getpgid", "getpgrp", "getsid", "getppid", "kill",
      "pipe", "setuid", "setgid", "setgroups", "setresuid", "setresgid", "setreuid", "setregid",
      "setfsuid", "setfsgid", "capset", "prctl", "times", "alarm", "setitimer", "getitimer",
      "pause", "rt_sigsuspend", "rt_sigqueueinfo", "getpriority", "setpriority", "sched_getparam",
      "sched_getscheduler", "personality", "memfd_create", "ioprio_get",
      // the engine stacks its own, narrower filter on this one
      "seccomp"};
  return p;
}

seccomp::Profile engine_seccomp_profile() {
  seccomp::Profile p;
  p.daemon = "knockgate-policyd (engine)";
  // SQLite and its WAL, the revocation journal, the one-time sequence files, the Unix
  // socket server and the channel to the writer. No new sockets but Unix ones (user
  // lookups through NSS), no fork, no exec, no privilege changes.
  p.socket_domains = {AF_UNIX};
  p.may_spawn = false;
  p.syscalls = {"unlink",   "unlinkat", "rename",    "renameat",  "renameat2", "fchmod",  "chmod",
                "truncate", "flock",    "fallocate", "fadvise64", "getppid",   "sendmmsg"};
  return p;
}

}  // namespace kg::policyd
