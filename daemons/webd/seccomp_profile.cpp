#include "webd/seccomp_profile.h"

#include <sys/socket.h>

namespace kg::webd {

seccomp::Profile seccomp_profile() {
  seccomp::Profile p;
  p.daemon = "knockgate-webd";
  // The listening sockets are bound and the TLS key read before the filter; afterwards
  // webd accepts connections, reads the password and token files and talks to policyd.
  // AF_UNIX: the policyd link's reconnect, syslog, sd_notify. No exec.
  p.socket_domains = {AF_UNIX};
  return p;
}

}  // namespace kg::webd
