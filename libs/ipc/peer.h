// Who is on the other end of a Unix socket, as the kernel says (SO_PEERCRED), and the
// policy that decides which uids may claim which role.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "ipc/messages.h"

namespace kg::ipc {

// The peer's credentials at connect() time.
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

Result<PeerCredentials> peer_credentials(int socket_fd);

// Whether the user `uid` belongs to `group`, as primary group (passwd) or supplementary
// group (getgrouplist). A uid without a passwd entry belongs to no group.
Result<bool> user_in_group(uid_t uid, gid_t group);

struct PeerDecision {
  bool accepted = false;
  std::string reason;  // why not; sent to the peer in Refused and logged

  static PeerDecision accept() { return {true, {}}; }
  static PeerDecision refuse(std::string why) { return {false, std::move(why)}; }
};

// Called by the server once per connection after a well-formed Hello whose pid matched
// SO_PEERCRED. The daemon decides; the library enforces.
using PeerPolicy = std::function<PeerDecision(const Hello&, const PeerCredentials&)>;

// knockgate's rules for policyd's socket. Root may be any role except webd, which runs
// only as its own user; an unset uid/group admits nobody but root (webd: nobody).
struct StandardPeerRules {
  std::optional<uid_t> capture_uid;  // CaptureUser: may be captured
  std::optional<gid_t> admin_gid;    // AdminGroup: members may be ctl
  std::optional<uid_t> web_uid;      // webd's user: may be webd
  std::optional<uid_t> verdict_uid;  // VerdictUser: may be verdictd
};

// captured: capture_uid or root. verdictd: verdict_uid or root. webd: web_uid. ctl: root,
// a peer whose gid is admin_gid, or a user with admin_gid among its groups.
PeerPolicy standard_peer_policy(StandardPeerRules rules);

// The daemons' own users among the rules (capture, verdict and web uid, each once), for
// ServerOptions::reserved_uids: they keep their connection slots in a flood from others.
std::vector<uid_t> daemon_uids(const StandardPeerRules& rules);

}  // namespace kg::ipc
