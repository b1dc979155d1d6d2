// Dropping root for good: after open-as-root, a daemon becomes an unprivileged user with
// no capabilities (effective, permitted, inheritable, ambient) and no way back.
#pragma once

#include <initializer_list>
#include <string>

#include "common/result.h"

namespace kg {

struct Credentials {
  unsigned uid = 0;
  unsigned gid = 0;
};

// Looks a user up in the passwd database.
Result<Credentials> lookup_user(const std::string& name);

// setgroups(0), setresgid, setresuid, PR_SET_NO_NEW_PRIVS, then verifies with capget that
// every capability set is empty and that setuid(0) fails. Any failure is an error: a
// daemon that cannot drop must not go on.
Result<Ok> drop_privileges(const Credentials& to);

// For a process that stays uid 0 with a few capabilities (policyd's kernel writer): the
// bounding set, permitted and effective become exactly `keep` (CAP_* numbers), the
// inheritable and ambient sets empty. Verified with /proc/self/status.
Result<Ok> keep_only_capabilities(std::initializer_list<int> keep);

// The capability sets of this process as /proc/self/status reports them (CapEff etc.).
struct CapabilitySets {
  unsigned long long effective = 0, permitted = 0, inheritable = 0, ambient = 0;
};
Result<CapabilitySets> read_capabilities();

}  // namespace kg
