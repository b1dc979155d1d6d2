// Cutting established flows on revocation: the conntrack entries of one source that carry
// a profile's mark. Dump with a kernel-side mark filter, then delete entry by entry:
// Debian 12's libnetfilter_conntrack 1.0.9 turns a "flush with filter" into a flush of
// the whole family, so NFCT_Q_FLUSH_FILTER is never used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/addr.h"
#include "common/result.h"

struct nfct_handle;

namespace kg::policyd {

class Conntrack {
 public:
  static Result<std::unique_ptr<Conntrack>> open();
  ~Conntrack();
  Conntrack(const Conntrack&) = delete;
  Conntrack& operator=(const Conntrack&) = delete;

  // Deletes the entries whose original source is `source` and whose ct mark & mask ==
  // value. Returns how many went (entries that vanished meanwhile are not counted).
  Result<size_t> delete_flows(const IpAddr& source, uint32_t mark_value, uint32_t mark_mask);

 private:
  explicit Conntrack(nfct_handle* h) : h_(h) {}
  nfct_handle* h_;
};

}  // namespace kg::policyd
