// verdictd's privilege drop: it needs CAP_NET_ADMIN for as long as it runs (every verdict
// is an nfnetlink message to a queue it bound), and nothing else.
#pragma once

#include "common/privdrop.h"
#include "common/result.h"

namespace kg::verdictd {

// From root: every other capability leaves the bounding set, then setgroups/setresgid/
// setresuid to `to` keeping CAP_NET_ADMIN (effective and permitted only), NO_NEW_PRIVS,
// and a check that CapEff is exactly CAP_NET_ADMIN and setuid(0) fails.
Result<Ok> drop_to_user_keeping_net_admin(const Credentials& to);

// Started unprivileged with CAP_NET_ADMIN (systemd AmbientCapabilities): clears every
// other capability, the ambient and inheritable sets, and checks the result the same way.
Result<Ok> keep_only_net_admin();

}  // namespace kg::verdictd
