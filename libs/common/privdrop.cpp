#include "common/privdrop.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

namespace kg {

namespace {
std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}
}  // namespace

Result<Credentials> lookup_user(const std::string& name) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  const int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0) return Error{"user " + name + ": " + std::strerror(rc)};
  if (found == nullptr) return Error{"user " + name + ": no such user"};
  return Credentials{found->pw_uid, found->pw_gid};
}

Result<CapabilitySets> read_capabilities() {
  std::ifstream status("/proc/self/status");
  if (!status) return Error{"cannot read /proc/self/status"};
  CapabilitySets caps;
  std::string line;
  while (std::getline(status, line)) {
    auto field = [&](const char* prefix, unsigned long long& out) {
      const size_t n = std::strlen(prefix);
      if (line.compare(0, n, prefix) == 0) out = std::stoull(line.substr(n), nullptr, 16);
    };
    field("CapEff:", caps.effective);
    field("CapPrm:", caps.permitted);
    field("CapInh:", caps.inheritable);
    field("CapAmb:", caps.ambient);
  }
  return caps;
}

Result<Ok> drop_privileges(const Credentials& to) {
  if (to.uid == 0) return Error{"refusing to 'drop' to uid 0"};
  if (setgroups(0, nullptr) != 0) return Error{errno_text("setgroups")};
  if (setresgid(to.gid, to.gid, to.gid) != 0) return Error{errno_text("setresgid")};
  if (setresuid(to.uid, to.uid, to.uid) != 0) return Error{errno_text("setresuid")};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Error{errno_text("PR_SET_NO_NEW_PRIVS")};
  // Going from uid 0 to non-zero clears the capability sets (no SECBIT_KEEP_CAPS); check it.
  if (setuid(0) == 0) return Error{"setuid(0) succeeded after the drop"};
  auto caps = read_capabilities();
  if (!caps) return caps.error();
  if (caps->effective != 0 || caps->permitted != 0 || caps->inheritable != 0 ||
      caps->ambient != 0) {
    return Error{"capabilities left after the drop"};
  }
  return Ok{};
}

Result<Ok> keep_only_capabilities(std::initializer_list<int> keep) {
  uint64_t mask = 0;
  for (int cap : keep) mask |= uint64_t{1} << cap;
  // The bounding set first (dropping from it needs CAP_SETPCAP, which goes last): what a
  // child executes can then never hold more than `keep`, not even as root.
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if ((mask & (uint64_t{1} << cap)) != 0) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return Error{errno_text("PR_CAPBSET_DROP")};
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return Error{errno_text("PR_CAP_AMBIENT_CLEAR_ALL")};
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  for (int i = 0; i < 2; ++i) {
    const auto word = static_cast<uint32_t>(mask >> (32 * i));
    data[i].effective = word;
    data[i].permitted = word;
    data[i].inheritable = 0;
  }
  if (::syscall(SYS_capset, &header, data) != 0) return Error{errno_text("capset")};
  auto caps = read_capabilities();
  if (!caps) return caps.error();
  if ((caps->permitted & ~mask) != 0 || (caps->effective & ~mask) != 0) {
    return Error{"capabilities beyond the kept ones remain"};
  }
  return Ok{};
}

}  // namespace kg
