// The floor of any NFQUEUE verdict daemon, for bench/verdictd_bench.py (runs only inside the
// namespace lab): binds one queue, then in a loop takes every waiting packet message with
// one blocking recvmmsg and answers each with ACCEPT + MARK in one sendmsg. No decoding, no
// grant lookup, no event loop: what is left is the kernel's cost of queueing (enqueue,
// netlink copy, two wake-ups, re-injection). knockgate-verdictd measured against it shows
// how much of the gap to a static accept is verdictd's own.
//   nfq_floor FIRST COUNT MARK   queues FIRST..FIRST+COUNT-1, one thread each, pinned like
//                                verdictd's readers (CPU fanout: cpu % COUNT == k);
//                                prints "serving queue" once bound; runs until killed
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

namespace {

bool transact(mnl_socket* s, nlmsghdr* request) {
  request->nlmsg_flags |= NLM_F_ACK;
  if (mnl_socket_sendto(s, request, request->nlmsg_len) < 0) return false;
  std::array<char, 8192> buf{};
  const ssize_t n = mnl_socket_recvfrom(s, buf.data(), buf.size());
  if (n < 0) return false;
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data());
  if (nlh->nlmsg_type != NLMSG_ERROR) return true;
  return static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh))->error == 0;
}

void serve(mnl_socket* s, uint16_t queue, uint32_t mark) {
  const int fd = mnl_socket_get_fd(s);
  constexpr size_t kBatch = 64;
  std::vector<std::array<char, 1024>> rx(kBatch);
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  for (size_t i = 0; i < kBatch; ++i) {
    iov[i] = {rx[i].data(), rx[i].size()};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  std::vector<char> tx(kBatch * 64);
  for (;;) {
    const int got = recvmmsg(fd, msgs.data(), kBatch, MSG_WAITFORONE, nullptr);
    if (got <= 0) continue;  // ENOBUFS and EINTR: go on
    size_t used = 0;
    for (size_t i = 0; i < static_cast<size_t>(got); ++i) {
      auto* msg = reinterpret_cast<const nlmsghdr*>(rx[i].data());
      int left = static_cast<int>(msgs[i].msg_len);
      for (; mnl_nlmsg_ok(msg, left); msg = mnl_nlmsg_next(msg, &left)) {
        nlattr* attr[NFQA_MAX + 1] = {};
        if (nfq_nlmsg_parse(msg, attr) < 0 || attr[NFQA_PACKET_HDR] == nullptr) continue;
        const auto* ph =
            static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
        nlmsghdr* v = nfq_nlmsg_put(tx.data() + used, NFQNL_MSG_VERDICT, queue);
        nfq_nlmsg_verdict_put(v, static_cast<int>(ntohl(ph->packet_id)), NF_ACCEPT);
        nfq_nlmsg_verdict_put_mark(v, mark);
        used += NLMSG_ALIGN(v->nlmsg_len);
      }
    }
    if (used > 0) send(fd, tx.data(), used, 0);
  }
}

mnl_socket* bind_queue(uint16_t queue) {
  mnl_socket* s = mnl_socket_open(NETLINK_NETFILTER);
  if (s == nullptr || mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) return nullptr;
  const int rcvbuf = 8 * 1024 * 1024;
  setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  alignas(nlmsghdr) char cfg[512];
  nlmsghdr* nlh = nfq_nlmsg_put(cfg, NFQNL_MSG_CONFIG, queue);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  const bool bound = transact(s, nlh);
  nlh = nfq_nlmsg_put(cfg, NFQNL_MSG_CONFIG, queue);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 128);
  if (!bound || !transact(s, nlh)) return nullptr;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: nfq_floor FIRST COUNT MARK\n");
    return 2;
  }
  const auto first = static_cast<uint16_t>(std::strtoul(argv[1], nullptr, 0));
  const auto count = static_cast<uint16_t>(std::strtoul(argv[2], nullptr, 0));
  const auto mark = static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 0));
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  sched_getaffinity(0, sizeof allowed, &allowed);
  std::vector<std::thread> threads;
  for (uint16_t k = 0; k < count; ++k) {
    mnl_socket* s = bind_queue(static_cast<uint16_t>(first + k));
    if (s == nullptr) {
      std::fprintf(stderr, "nfq_floor: cannot bind queue %u\n", first + k);
      return 1;
    }
    threads.emplace_back([s, q = static_cast<uint16_t>(first + k), k, count, allowed, mark] {
      cpu_set_t mine;
      CPU_ZERO(&mine);
      for (size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (count > 1 && CPU_ISSET(cpu, &allowed) && cpu % count == k) CPU_SET(cpu, &mine);
      }
      if (CPU_COUNT(&mine) > 0) pthread_setaffinity_np(pthread_self(), sizeof mine, &mine);
      serve(s, q, mark);
    });
  }
  std::printf("serving queue %u-%u\n", first, first + count - 1);
  std::fflush(stdout);
  for (auto& t : threads) t.join();
}
