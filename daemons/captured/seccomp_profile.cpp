#include "captured/seccomp_profile.h"

#include <sys/socket.h>

namespace kg::captured {

seccomp::Profile seccomp_profile(bool stream_spa_doors) {
  seccomp::Profile p;
  p.daemon = "knockgate-captured";
  // The capture socket, its filter and the netlink watch are open before the filter;
  // afterwards captured reads packets, reattaches BPF filters (setsockopt), writes its
  // log and talks to policyd. AF_UNIX: the IPC client's reconnect, syslog, sd_notify.
  p.socket_domains = {AF_UNIX};
  if (stream_spa_doors) {
    p.socket_domains.push_back(AF_INET);
    p.socket_domains.push_back(AF_INET6);
    p.syscalls = {"bind", "listen"};
  }
  return p;
}

}  // namespace kg::captured
