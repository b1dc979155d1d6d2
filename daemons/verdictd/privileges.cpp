#include "verdictd/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kg::verdictd {

namespace {

constexpr unsigned long long kNetAdmin = 1ULL << CAP_NET_ADMIN;

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// capset(2) without libcap: effective = permitted = CAP_NET_ADMIN, inheritable empty.
Result<Ok> set_only_net_admin() {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = static_cast<uint32_t>(kNetAdmin);
  if (syscall(SYS_capset, &header, data) != 0) return Error{errno_text("capset")};
  return Ok{};
}

Result<Ok> drop_bounding_set_except_net_admin() {
  for (int cap = 0; cap <= 63; ++cap) {
    if (cap == CAP_NET_ADMIN) continue;
    const int in_set = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (in_set < 0) break;  // past the kernel's last capability
    if (in_set == 0) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return Error{errno_text("PR_CAPBSET_DROP")};
  }
  return Ok{};
}

Result<Ok> verify() {
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return Error{errno_text("PR_CAP_AMBIENT_CLEAR_ALL")};
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Error{errno_text("PR_SET_NO_NEW_PRIVS")};
  if (getuid() != 0 && setuid(0) == 0) return Error{"setuid(0) succeeded after the drop"};
  auto caps = read_capabilities();
  if (!caps) return caps.error();
  if (caps->effective != kNetAdmin || caps->permitted != kNetAdmin || caps->inheritable != 0 ||
      caps->ambient != 0) {
    return Error{"capabilities other than CAP_NET_ADMIN left after the drop"};
  }
  return Ok{};
}

}  // namespace

Result<Ok> drop_to_user_keeping_net_admin(const Credentials& to) {
  if (to.uid == 0) return Error{"refusing to 'drop' to uid 0"};
  if (auto r = drop_bounding_set_except_net_admin(); !r) return r;
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return Error{errno_text("PR_SET_KEEPCAPS")};
  if (setgroups(0, nullptr) != 0) return Error{errno_text("setgroups")};
  if (setresgid(to.gid, to.gid, to.gid) != 0) return Error{errno_text("setresgid")};
  if (setresuid(to.uid, to.uid, to.uid) != 0) return Error{errno_text("setresuid")};
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return Error{errno_text("PR_SET_KEEPCAPS")};
  if (auto r = set_only_net_admin(); !r) return r;
  return verify();
}

Result<Ok> keep_only_net_admin() {
  auto caps = read_capabilities();
  if (!caps) return caps.error();
  if ((caps->effective & kNetAdmin) == 0) {
    return Error{
        "CAP_NET_ADMIN is needed (start as root, or with AmbientCapabilities=CAP_NET_ADMIN)"};
  }
  (void)drop_bounding_set_except_net_admin();  // needs CAP_SETPCAP; systemd already did it
  if (auto r = set_only_net_admin(); !r) return r;
  return verify();
}

}  // namespace kg::verdictd
