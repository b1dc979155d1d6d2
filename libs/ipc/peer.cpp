#include "ipc/peer.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace kg::ipc {

Result<PeerCredentials> peer_credentials(int socket_fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error{std::string("SO_PEERCRED: ") + std::strerror(errno)};
  }
  if (len != sizeof cred) return Error{"SO_PEERCRED: short answer"};
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

Result<bool> user_in_group(uid_t uid, gid_t group) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = 0;
  while ((rc = getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1U << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) return Error{"getpwuid_r(" + std::to_string(uid) + "): " + std::strerror(rc)};
  if (found == nullptr) return false;
  if (pw.pw_gid == group) return true;

  std::vector<gid_t> groups(32);
  for (;;) {
    int n = static_cast<int>(groups.size());
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) >= 0) {
      groups.resize(static_cast<size_t>(n));
      break;
    }
    // -1 with n set to the number needed; guard against a database that keeps growing.
    if (n <= static_cast<int>(groups.size()) || n > 65536) {
      return Error{std::string("getgrouplist(") + pw.pw_name + ") failed"};
    }
    groups.resize(static_cast<size_t>(n));
  }
  for (const gid_t g : groups) {
    if (g == group) return true;
  }
  return false;
}

PeerPolicy standard_peer_policy(StandardPeerRules rules) {
  return [rules](const Hello& hello, const PeerCredentials& peer) -> PeerDecision {
    const bool root = peer.uid == 0;
    const std::string who = "uid " + std::to_string(peer.uid);
    switch (hello.role) {
      case Role::captured:
        if (root || (rules.capture_uid && peer.uid == *rules.capture_uid)) {
          return PeerDecision::accept();
        }
        return PeerDecision::refuse("role captured is not allowed for " + who);
      case Role::verdictd:
        if (root || (rules.verdict_uid && peer.uid == *rules.verdict_uid)) {
          return PeerDecision::accept();
        }
        return PeerDecision::refuse("role verdictd is not allowed for " + who);
      case Role::webd:
        if (rules.web_uid && peer.uid == *rules.web_uid) return PeerDecision::accept();
        return PeerDecision::refuse("role webd is not allowed for " + who);
      case Role::ctl: {
        if (root) return PeerDecision::accept();
        if (!rules.admin_gid) return PeerDecision::refuse("role ctl is only allowed for root");
        if (peer.gid == *rules.admin_gid) return PeerDecision::accept();
        auto member = user_in_group(peer.uid, *rules.admin_gid);
        if (!member) return PeerDecision::refuse("cannot check groups: " + member.error().message);
        if (*member) return PeerDecision::accept();
        return PeerDecision::refuse("role ctl needs root or the admin group, " + who +
                                    " is not a member");
      }
    }
    return PeerDecision::refuse("unknown role");
  };
}

std::vector<uid_t> daemon_uids(const StandardPeerRules& rules) {
  std::vector<uid_t> out;
  for (const auto& uid : {rules.capture_uid, rules.verdict_uid, rules.web_uid}) {
    if (uid && std::find(out.begin(), out.end(), *uid) == out.end()) out.push_back(*uid);
  }
  return out;
}

}  // namespace kg::ipc
