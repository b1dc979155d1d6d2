#include "policyd/kernel/conntrack.h"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kg::policyd {
namespace {

struct CtFree {
  void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
using CtPtr = std::unique_ptr<nf_conntrack, CtFree>;

struct Collect {
  IpAddr source;
  uint32_t value = 0, mask = 0;
  std::vector<CtPtr> found;
};

bool same_source(const nf_conntrack* ct, const IpAddr& source) {
  if (source.is_v4()) {
    if (nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO) != AF_INET) return false;
    return std::memcmp(nfct_get_attr(ct, ATTR_ORIG_IPV4_SRC), source.data(), 4) == 0;
  }
  if (nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO) != AF_INET6) return false;
  return std::memcmp(nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC), source.data(), 16) == 0;
}

int on_entry(enum nf_conntrack_msg_type, nf_conntrack* ct, void* data) {
  auto* c = static_cast<Collect*>(data);
  // The kernel filtered by mark already; checked again because older kernels ignore the
  // filter and dump everything.
  if ((nfct_get_attr_u32(ct, ATTR_MARK) & c->mask) != c->value) return NFCT_CB_CONTINUE;
  if (!same_source(ct, c->source)) return NFCT_CB_CONTINUE;
  CtPtr copy(nfct_clone(ct));
  if (copy) c->found.push_back(std::move(copy));
  return NFCT_CB_CONTINUE;
}

}  // namespace

Result<std::unique_ptr<Conntrack>> Conntrack::open() {
  nfct_handle* h = nfct_open(CONNTRACK, 0);
  if (!h) return Error{std::string("conntrack: open: ") + std::strerror(errno)};
  return std::unique_ptr<Conntrack>(new Conntrack(h));
}

Conntrack::~Conntrack() {
  nfct_close(h_);
}

Result<size_t> Conntrack::delete_flows(const IpAddr& source, uint32_t value, uint32_t mask) {
  Collect c{source, value & mask, mask, {}};
  nfct_filter_dump* filter = nfct_filter_dump_create();
  if (!filter) return Error{"conntrack: out of memory"};
  nfct_filter_dump_mark m{value & mask, mask};
  nfct_filter_dump_set_attr(filter, NFCT_FILTER_DUMP_MARK, &m);
  nfct_filter_dump_set_attr_u8(filter, NFCT_FILTER_DUMP_L3NUM,
                               static_cast<uint8_t>(source.is_v6() ? AF_INET6 : AF_INET));
  nfct_callback_register(h_, NFCT_T_ALL, on_entry, &c);
  int rc = nfct_query(h_, NFCT_Q_DUMP_FILTER, filter);
  int dump_errno = errno;
  nfct_callback_unregister(h_);
  nfct_filter_dump_destroy(filter);
  if (rc < 0) return Error{std::string("conntrack: dump: ") + std::strerror(dump_errno)};

  size_t deleted = 0;
  for (const auto& ct : c.found) {
    if (nfct_query(h_, NFCT_Q_DESTROY, ct.get()) == 0) {
      ++deleted;
    } else if (errno != ENOENT) {  // ENOENT: the flow ended on its own meanwhile
      return Error{std::string("conntrack: delete: ") + std::strerror(errno)};
    }
  }
  return deleted;
}

}  // namespace kg::policyd
