// The kernel-side filter: only packets that could be a knock reach user space. Built from
// the doors and from what netlink tells us about the capture interfaces, recompiled when
// either changes (setting a filter needs no privilege, so this works after the drop).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/addr.h"
#include "common/knock.h"

namespace kg::captured {

struct FilterDoor {
  std::vector<Knock> knocks;
  TcpFlagsTest tcpflags;
  std::optional<IpAddr> target;
};

struct FilterInputs {
  std::vector<int> ifindexes;       // the capture interfaces that exist now
  std::vector<IpAddr> local_addrs;  // their addresses now
  std::vector<FilterDoor> doors;
  std::vector<Knock> extra_ports;  // ports taken whatever the flags (SPA, later)
};

// pcap filter language for a DLT_LINUX_SLL2 handle on the "any" device. A filter that
// matches nothing is returned when there is no interface or no address to listen on.
std::string build_filter(const FilterInputs& in);

// The expression used when nothing can match.
// (libpcap refuses to compile a filter it can prove rejects everything, so "ip and not ip"
// will not do; no frame is ever a single byte long.)
inline constexpr const char* kMatchNothing = "less 1";

}  // namespace kg::captured
