#include "policyd/kernel/nft_netlink.h"

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/xt_NFQUEUE.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <regex>
#include <vector>

namespace kg::policyd {
namespace {

struct RuleFree {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
struct ChainFree {
  void operator()(nftnl_chain* c) const { nftnl_chain_free(c); }
};
struct SetFree {
  void operator()(nftnl_set* s) const { nftnl_set_free(s); }
};
using RulePtr = std::unique_ptr<nftnl_rule, RuleFree>;
using SetPtr = std::unique_ptr<nftnl_set, SetFree>;
constexpr size_t kBufSize = 8192;  // MNL_SOCKET_BUFFER_SIZE, without its sign

std::string errno_text(int e) {
  return std::strerror(e);
}

}  // namespace

Result<std::unique_ptr<NftNetlink>> NftNetlink::open() {
  mnl_socket* s = mnl_socket_open(NETLINK_NETFILTER);
  if (!s) return Error{"nfnetlink: socket: " + errno_text(errno)};
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(s);
    return Error{"nfnetlink: bind: " + errno_text(e)};
  }
  return std::unique_ptr<NftNetlink>(new NftNetlink(s, mnl_socket_get_portid(s)));
}

NftNetlink::~NftNetlink() {
  mnl_socket_close(sock_);
}

Result<Ok> NftNetlink::insert_xt_queue(const std::string& table, const std::string& chain,
                                       const XtQueue& queue) {
  RulePtr rule(nftnl_rule_alloc());
  if (!rule) return Error{"nftnl: out of memory"};
  nftnl_rule_set_u32(rule.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, chain.c_str());

  nftnl_expr* counter = nftnl_expr_alloc("counter");
  if (!counter) return Error{"nftnl: out of memory"};
  nftnl_rule_add_expr(rule.get(), counter);  // the rule owns it from here

  nftnl_expr* target = nftnl_expr_alloc("target");
  if (!target) return Error{"nftnl: out of memory"};
  // libnftnl takes ownership of the info blob and free()s it with the expression.
  auto* info = static_cast<xt_NFQ_info_v3*>(std::calloc(1, sizeof(xt_NFQ_info_v3)));
  if (!info) {
    nftnl_expr_free(target);
    return Error{"nftnl: out of memory"};
  }
  info->queuenum = queue.first;
  info->queues_total = queue.count;
  info->flags = static_cast<__u16>((queue.bypass ? NFQ_FLAG_BYPASS : 0) |
                                   (queue.count > 1 ? NFQ_FLAG_CPU_FANOUT : 0));
  nftnl_expr_set_str(target, NFTNL_EXPR_TG_NAME, "NFQUEUE");
  nftnl_expr_set_u32(target, NFTNL_EXPR_TG_REV, 3);
  nftnl_expr_set(target, NFTNL_EXPR_TG_INFO, info, sizeof *info);
  nftnl_rule_add_expr(rule.get(), target);

  std::vector<char> buf(kBufSize * 2);
  mnl_nlmsg_batch* batch = mnl_nlmsg_batch_start(buf.data(), buf.size());
  uint32_t first_seq = seq_;
  nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(batch)), seq_++);
  mnl_nlmsg_batch_next(batch);
  // No NLM_F_APPEND: the rule goes to the head of the chain, before the default drop.
  nlmsghdr* nlh =
      nftnl_rule_nlmsg_build_hdr(static_cast<char*>(mnl_nlmsg_batch_current(batch)),
                                 NFT_MSG_NEWRULE, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_rule_nlmsg_build_payload(nlh, rule.get());
  mnl_nlmsg_batch_next(batch);
  nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(batch)), seq_++);
  mnl_nlmsg_batch_next(batch);
  size_t len = mnl_nlmsg_batch_size(batch);
  std::vector<char> msg(static_cast<char*>(mnl_nlmsg_batch_head(batch)),
                        static_cast<char*>(mnl_nlmsg_batch_head(batch)) + len);
  mnl_nlmsg_batch_stop(batch);

  if (mnl_socket_sendto(sock_, msg.data(), msg.size()) < 0) {
    return Error{"nfnetlink: send: " + errno_text(errno)};
  }
  // One ack for the rule (batch begin/end are not acked).
  std::vector<char> rbuf(kBufSize);
  ssize_t n = mnl_socket_recvfrom(sock_, rbuf.data(), rbuf.size());
  if (n < 0) return Error{"nfnetlink: receive: " + errno_text(errno)};
  int rc = mnl_cb_run(rbuf.data(), static_cast<size_t>(n), 0, portid_, nullptr, nullptr);
  (void)first_seq;
  if (rc < 0) return Error{"nft: xt NFQUEUE rule: " + errno_text(errno)};
  return Ok{};
}

namespace {

struct Fingerprint {
  std::string table;
  std::vector<std::string> chains, rules;
};

// libnftnl's own text of an object, without what changes by itself: counters, handles,
// reference counts.
std::string stable_text(std::string text) {
  static const std::regex volatile_parts(
      R"((pkts|packets) \d+ bytes \d+|handle \d+|use \d+|position \d+)");
  return std::regex_replace(text, volatile_parts, "");
}

int on_chain(const nlmsghdr* nlh, void* data) {
  auto* fp = static_cast<Fingerprint*>(data);
  std::unique_ptr<nftnl_chain, ChainFree> c(nftnl_chain_alloc());
  if (!c || nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return MNL_CB_ERROR;
  const char* t = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE);
  if (!t || fp->table != t) return MNL_CB_OK;
  char buf[1024];
  nftnl_chain_snprintf(buf, sizeof buf, c.get(), NFTNL_OUTPUT_DEFAULT, 0);
  fp->chains.push_back(stable_text(buf));
  return MNL_CB_OK;
}

int on_rule(const nlmsghdr* nlh, void* data) {
  auto* fp = static_cast<Fingerprint*>(data);
  RulePtr r(nftnl_rule_alloc());
  if (!r || nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return MNL_CB_ERROR;
  const char* t = nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE);
  if (!t || fp->table != t) return MNL_CB_OK;
  std::vector<char> buf(16384);
  nftnl_rule_snprintf(buf.data(), buf.size(), r.get(), NFTNL_OUTPUT_DEFAULT, 0);
  fp->rules.push_back(stable_text(buf.data()));
  return MNL_CB_OK;
}

}  // namespace

Result<Ok> NftNetlink::dump(uint16_t type, nftnl_set* elements_of,
                            int (*on_message)(const nlmsghdr*, void*), void* data,
                            const std::string& what) {
  std::vector<char> buf(kBufSize);
  uint32_t seq = seq_++;
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf.data(), type, NFPROTO_INET, NLM_F_DUMP | NLM_F_ACK, seq);
  // Chains and rules: the whole family, our table is picked out in the callbacks.
  if (elements_of) nftnl_set_elems_nlmsg_build_payload(nlh, elements_of);
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0) {
    return Error{"nfnetlink: send: " + errno_text(errno)};
  }
  std::vector<char> rbuf(1 << 16);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_, rbuf.data(), rbuf.size());
    if (n < 0) return Error{"nfnetlink: receive: " + errno_text(errno)};
    int rc = mnl_cb_run(rbuf.data(), static_cast<size_t>(n), seq, portid_, on_message, data);
    if (rc < 0) return Error{"nft: " + what + ": " + errno_text(errno)};
    if (rc == MNL_CB_STOP) break;
  }
  return Ok{};
}

Result<std::string> NftNetlink::fingerprint(const std::string& table) {
  Fingerprint fp{table, {}, {}};
  auto chains = dump(NFT_MSG_GETCHAIN, nullptr, on_chain, &fp, "dump chains");
  if (!chains) return chains.error();
  auto rules = dump(NFT_MSG_GETRULE, nullptr, on_rule, &fp, "dump rules");
  if (!rules) return rules.error();
  std::string out;
  for (const auto& c : fp.chains) out += c + "\n";
  for (const auto& r : fp.rules) out += r + "\n";
  return out;
}

namespace {

struct DumpState {
  nftnl_set* set;
};

int on_elements(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<DumpState*>(data);
  // Each message's elements are appended to the same set object.
  if (nftnl_set_elems_nlmsg_parse(nlh, st->set) < 0) return MNL_CB_ERROR;
  return MNL_CB_OK;
}

}  // namespace

Result<std::vector<SetElement>> NftNetlink::dump_set(const std::string& table,
                                                     const std::string& set_name, Family family) {
  SetPtr set(nftnl_set_alloc());
  if (!set) return Error{"nftnl: out of memory"};
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, set_name.c_str());
  nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_INET);

  DumpState st{set.get()};
  auto dumped = dump(NFT_MSG_GETSETELEM, set.get(), on_elements, &st, "dump set " + set_name);
  if (!dumped) return dumped.error();

  std::vector<SetElement> out;
  nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(set.get());
  if (!it) return Error{"nftnl: out of memory"};
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) {
    uint32_t len = 0;
    const void* key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
    if (!key) continue;
    SetElement el;
    if (family == Family::v4 && len == 4) {
      el.addr = IpAddr::v4(static_cast<const uint8_t*>(key));
    } else if (family == Family::v6 && len == 16) {
      el.addr = IpAddr::v6(static_cast<const uint8_t*>(key));
    } else {
      continue;
    }
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION)) {
      el.expires_ms = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION);
    }
    out.push_back(el);
  }
  nftnl_set_elems_iter_destroy(it);
  return out;
}

}  // namespace kg::policyd
