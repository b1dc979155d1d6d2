#include "verdictd/seccomp_profile.h"

#include <sys/socket.h>

namespace kg::verdictd {

seccomp::Profile seccomp_profile() {
  seccomp::Profile p;
  p.daemon = "knockgate-verdictd";
  // The NFQUEUE netlink sockets are bound before the filter and their reader threads
  // started; verdicts are sendmsg on them. AF_UNIX: the IPC client's reconnect, syslog,
  // sd_notify. No new netlink socket, no exec.
  p.socket_domains = {AF_UNIX};
  return p;
}

}  // namespace kg::verdictd
