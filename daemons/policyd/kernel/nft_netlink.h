// The two things libnftables cannot do for us, through libnftnl + libmnl directly:
// insert an xt NFQUEUE target (nft_compat) where the kernel has no nft `queue`, and dump
// a set's elements in binary form (fast and exact for 100 000 elements).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/addr.h"
#include "common/result.h"

struct mnl_socket;
struct nlmsghdr;
struct nftnl_set;

namespace kg::policyd {

struct SetElement {
  IpAddr addr;
  uint64_t expires_ms = 0;  // time left; 0 when the element has no timeout
};

struct XtQueue {
  uint16_t first = 0;
  uint16_t count = 1;
  bool bypass = false;  // NFQ_FLAG_BYPASS: no listener → the next rule
};

class NftNetlink {
 public:
  static Result<std::unique_ptr<NftNetlink>> open();
  ~NftNetlink();
  NftNetlink(const NftNetlink&) = delete;
  NftNetlink& operator=(const NftNetlink&) = delete;

  // Inserts `counter` + xt NFQUEUE (revision 3) at the head of inet TABLE CHAIN in one
  // batch (one transaction).
  Result<Ok> insert_xt_queue(const std::string& table, const std::string& chain,
                             const XtQueue& queue);
  // The table's chains (type, hook, priority, policy) and rules (expressions), counters and
  // handles left out: equal fingerprints mean nobody changed our rules. Without going
  // through libnftables, whose listing of xt targets prints libxtables noise on stderr.
  Result<std::string> fingerprint(const std::string& table);
  // Every element of inet TABLE SET (ipv4_addr or ipv6_addr keys).
  Result<std::vector<SetElement>> dump_set(const std::string& table, const std::string& set,
                                           Family family);

 private:
  explicit NftNetlink(mnl_socket* s, uint32_t portid) : sock_(s), portid_(portid) {}
  mnl_socket* sock_;
  uint32_t portid_;
  // One dump request; `on_message` sees every reply message.
  // One dump request (of the inet family; of one set's elements when `elements_of` is set);
  // `on_message` sees every reply message.
  Result<Ok> dump(uint16_t type, nftnl_set* elements_of, int (*on_message)(const nlmsghdr*, void*),
                  void* data, const std::string& what);
  uint32_t seq_ = 1;
};

}  // namespace kg::policyd
