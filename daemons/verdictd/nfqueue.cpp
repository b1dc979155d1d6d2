#include "verdictd/nfqueue.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

namespace kg::verdictd {

namespace {

constexpr size_t kTxBuffer = 64 * 1024;   // ~1300 verdicts per sendmsg
constexpr size_t kMaxVerdictBytes = 128;  // header + verdict + mark, aligned, with room
constexpr uint16_t kPacketType = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

}  // namespace

VerdictBatch::VerdictBatch(uint16_t queue_number)
    : queue_number_(queue_number), buffer_(kTxBuffer) {}

bool VerdictBatch::full() const {
  return buffer_.size() - used_ < kMaxVerdictBytes;
}

void VerdictBatch::put(uint32_t packet_id, int verdict, bool set_mark, uint32_t mark) {
  nlmsghdr* nlh = nfq_nlmsg_put(reinterpret_cast<char*>(buffer_.data() + used_), NFQNL_MSG_VERDICT,
                                queue_number_);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(packet_id), verdict);
  if (set_mark) nfq_nlmsg_verdict_put_mark(nlh, mark);
  used_ += NLMSG_ALIGN(nlh->nlmsg_len);
  ++count_;
}

void VerdictBatch::accept(uint32_t packet_id, bool set_mark, uint32_t mark) {
  put(packet_id, NF_ACCEPT, set_mark, mark);
}

void VerdictBatch::drop(uint32_t packet_id) {
  put(packet_id, NF_DROP, false, 0);
}

NfQueue::NfQueue(const QueueOptions& options) : options_(options), rx_(kRxSlots * kRxSlotBytes) {
  for (size_t i = 0; i < kRxSlots; ++i) {
    rx_iov_[i] = {rx_.data() + i * kRxSlotBytes, kRxSlotBytes};
    rx_msgs_[i] = {};
    rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_msgs_[i].msg_hdr.msg_iovlen = 1;
  }
}

NfQueue::~NfQueue() {
  if (socket_ != nullptr) mnl_socket_close(socket_);  // the kernel unbinds the queue
}

int NfQueue::fd() const {
  return mnl_socket_get_fd(socket_);
}

Result<std::unique_ptr<NfQueue>> NfQueue::open(const QueueOptions& options, int read_timeout_ms) {
  if (options.copy_range + 512 > kRxSlotBytes) {
    return Error{"queue " + std::to_string(options.number) + ": copy range " +
                 std::to_string(options.copy_range) + " does not fit a receive slot"};
  }
  std::unique_ptr<NfQueue> q(new NfQueue(options));
  q->socket_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (q->socket_ == nullptr) return Error{errno_text("netlink socket")};
  if (mnl_socket_bind(q->socket_, 0, MNL_SOCKET_AUTOPID) < 0) {
    return Error{errno_text("netlink bind")};
  }
  q->port_id_ = mnl_socket_get_portid(q->socket_);
  const int size = options.receive_buffer;
  if (setsockopt(q->fd(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    return Error{errno_text("SO_RCVBUFFORCE")};
  }
  if (auto r = q->configure(); !r) {
    return Error{"queue " + std::to_string(options.number) + ": " + r.error().message};
  }
  const timeval timeout{read_timeout_ms / 1000, (read_timeout_ms % 1000) * 1000};
  if (setsockopt(q->fd(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0) {
    return Error{errno_text("SO_RCVTIMEO")};
  }
  // Packets that arrived while we configured cannot be judged yet: drop (the client's
  // retransmit comes back to a ready daemon).
  VerdictBatch early(options.number);
  for (const uint32_t id : q->early_ids_) {
    if (early.full()) q->send(early);
    early.drop(id);
  }
  q->early_ids_.clear();
  q->send(early);
  return q;
}

Result<Ok> NfQueue::transact(nlmsghdr* request, const char* what) {
  request->nlmsg_flags |= NLM_F_ACK;
  request->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(socket_, request, request->nlmsg_len) < 0) {
    return Error{errno_text(std::string(what) + ": send")};
  }
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(socket_, rx_.data(), rx_.size());
    if (n < 0) {
      if (errno == ENOBUFS) {
        stats_.enobufs.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      return Error{errno_text(std::string(what) + ": receive")};
    }
    // Packet messages (seq 0) can come first once the queue is bound; remember their ids.
    auto* nlh = reinterpret_cast<const nlmsghdr*>(rx_.data());
    int len = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type == kPacketType) {
        nlattr* attr[NFQA_MAX + 1] = {};
        if (nfq_nlmsg_parse(nlh, attr) >= 0 && attr[NFQA_PACKET_HDR] != nullptr) {
          const auto* ph =
              static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
          early_ids_.push_back(ntohl(ph->packet_id));
        }
        continue;
      }
      if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_seq != seq_) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (err->error == 0) return Ok{};
      errno = -err->error;
      return Error{errno_text(what)};
    }
  }
}

Result<Ok> NfQueue::configure() {
  alignas(nlmsghdr) char buf[512];
  nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, options_.number);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  if (auto r = transact(nlh, "bind"); !r) return r;

  nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, options_.number);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, static_cast<int>(options_.copy_range));
  if (auto r = transact(nlh, "copy mode"); !r) return r;

  nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, options_.number);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, options_.max_len);
  if (auto r = transact(nlh, "queue length"); !r) return r;

  // One flag per message: a kernel that rejects one flag rejects the whole message.
  auto set_flag = [&](uint32_t flag, const char* what) {
    nlmsghdr* m = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, options_.number);
    mnl_attr_put_u32(m, NFQA_CFG_FLAGS, htonl(flag));
    mnl_attr_put_u32(m, NFQA_CFG_MASK, htonl(flag));
    return transact(m, what);
  };
  // GSO: the kernel need not segment large packets for us (we only read headers).
  if (auto r = set_flag(NFQA_CFG_F_GSO, "gso flag"); r) {
    features_ = "gso";
  } else {
    features_ = "no gso (" + r.error().message + ")";
  }
  if (options_.fail_open) {
    if (auto r = set_flag(NFQA_CFG_F_FAIL_OPEN, "fail-open flag"); !r) return r;
    features_ += ", fail-open";
  }
  return Ok{};
}

size_t NfQueue::read() {
  // One recvmmsg takes every waiting datagram (up to kRxSlots): one system call per
  // wake-up instead of one per packet. MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the
  // first, then take only what is already there.
  read_count_ = 0;
  for (auto& m : rx_msgs_) m.msg_hdr.msg_flags = 0;
  const int n = recvmmsg(fd(), rx_msgs_.data(), kRxSlots, MSG_WAITFORONE, nullptr);
  if (n < 0) {
    if (errno == ENOBUFS) {
      // overflow: counted, the socket goes on working
      stats_.enobufs.fetch_add(1, std::memory_order_relaxed);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      stats_.receive_errors.fetch_add(1, std::memory_order_relaxed);
    }
    return 0;
  }
  read_count_ = static_cast<size_t>(n);
  return read_count_;
}

void NfQueue::dispatch(Sink& sink) {
  for (size_t i = 0; i < read_count_; ++i) {
    if ((rx_msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
      // cannot happen with our copy range; a cut message is never parsed
      stats_.receive_errors.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    handle_datagram(sink, rx_.data() + i * kRxSlotBytes, rx_msgs_[i].msg_len);
  }
  read_count_ = 0;
}

void NfQueue::handle_datagram(Sink& sink, const uint8_t* data, size_t len) {
  auto* nlh = reinterpret_cast<const nlmsghdr*>(data);
  int left = static_cast<int>(len);
  for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
    if (nlh->nlmsg_type == NLMSG_ERROR) {
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr)) && err->error != 0) {
        stats_.kernel_errors.fetch_add(1, std::memory_order_relaxed);
      }
      continue;
    }
    if (nlh->nlmsg_type != kPacketType) continue;
    nlattr* attr[NFQA_MAX + 1] = {};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == nullptr ||
        mnl_attr_get_payload_len(attr[NFQA_PACKET_HDR]) < sizeof(nfqnl_msg_packet_hdr)) {
      stats_.receive_errors.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    QueuedPacket p;
    const auto* ph =
        static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
    p.id = ntohl(ph->packet_id);
    if (attr[NFQA_MARK] != nullptr && mnl_attr_get_payload_len(attr[NFQA_MARK]) >= 4) {
      p.mark = ntohl(mnl_attr_get_u32(attr[NFQA_MARK]));
    }
    if (attr[NFQA_PAYLOAD] != nullptr) {
      p.payload = {static_cast<const uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD])),
                   mnl_attr_get_payload_len(attr[NFQA_PAYLOAD])};
    }
    p.original_length = static_cast<uint32_t>(p.payload.size());
    if (attr[NFQA_CAP_LEN] != nullptr && mnl_attr_get_payload_len(attr[NFQA_CAP_LEN]) >= 4) {
      p.original_length = ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN]));
    }
    stats_.packets.fetch_add(1, std::memory_order_relaxed);
    sink.on_packet(*this, p);
  }
}

void NfQueue::send(VerdictBatch& batch) {
  if (batch.used_ == 0) return;
  for (;;) {
    const ssize_t n = ::send(fd(), batch.buffer_.data(), batch.used_, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
    } else {
      stats_.verdicts.fetch_add(batch.count_, std::memory_order_relaxed);
    }
    break;
  }
  batch.used_ = 0;
  batch.count_ = 0;
}

}  // namespace kg::verdictd
