// One NFQUEUE queue on its own netlink socket, through libnetfilter_queue's libmnl-based
// message helpers (not the deprecated nfq_open handle API). Owns the socket (RAII: closing
// it unbinds the queue). Verdicts are collected and written with one sendmsg per batch.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

struct mnl_socket;
struct nlmsghdr;

namespace kg::verdictd {

struct QueueOptions {
  uint16_t number = 0;
  // Bytes of each packet copied to us: IPv6 + a few extension headers + the L4 ports.
  // Anything longer is cut; the decoder works on the cut copy.
  uint32_t copy_range = 192;
  uint32_t max_len = 8192;               // kernel queue length (default 1024)
  int receive_buffer = 8 * 1024 * 1024;  // SO_RCVBUFFORCE
  bool fail_open = false;                // NFQA_CFG_F_FAIL_OPEN: full queue passes packets
};

struct QueuedPacket {
  uint32_t id = 0;
  uint32_t mark = 0;
  uint32_t original_length = 0;      // NFQA_CAP_LEN, or the payload's length when not cut
  std::span<const uint8_t> payload;  // the IP packet, at most copy_range bytes
};

struct QueueStats {
  uint64_t packets = 0;
  uint64_t enobufs = 0;         // the socket overflowed: the kernel dropped (or passed) packets
  uint64_t receive_errors = 0;  // other recv errors and malformed messages
  uint64_t verdicts = 0;
  uint64_t send_errors = 0;
  uint64_t kernel_errors = 0;  // NLMSG_ERROR answers to verdicts (unknown packet id, ...)
};

class NfQueue {
 public:
  class Sink {
   public:
    virtual void on_packet(NfQueue& queue, const QueuedPacket& p) = 0;

   protected:
    ~Sink() = default;
  };

  // Opens a socket, binds the queue, sets copy mode, queue length and the flags, each in
  // its own acknowledged message. Needs CAP_NET_ADMIN.
  static Result<std::unique_ptr<NfQueue>> open(const QueueOptions& options);
  ~NfQueue();
  NfQueue(const NfQueue&) = delete;
  NfQueue& operator=(const NfQueue&) = delete;

  int fd() const;
  uint16_t number() const { return options_.number; }
  // What the kernel accepted, for the start-up log ("gso, fail-open").
  const std::string& features() const { return features_; }

  // Reads up to `max_reads` datagrams without blocking (recvmmsg, kRxSlots at a time),
  // calling sink.on_packet for each packet. Returns how many datagrams were read (0:
  // nothing waiting). Stops once the socket is empty.
  size_t receive(Sink& sink, size_t max_reads);

  // Queues a verdict; written by flush() (or when the batch buffer fills).
  void accept(uint32_t packet_id, bool set_mark, uint32_t mark);
  void drop(uint32_t packet_id);
  // One sendmsg for every queued verdict. Verdicts never block: on a full send buffer the
  // error is counted; the kernel keeps such packets queued (fail-closed).
  void flush();

  const QueueStats& stats() const { return stats_; }

 private:
  explicit NfQueue(const QueueOptions& options);
  Result<Ok> configure();
  // Sends one config message with NLM_F_ACK and waits for its answer.
  Result<Ok> transact(::nlmsghdr* request, const char* what);
  void put_verdict(uint32_t packet_id, int verdict, bool set_mark, uint32_t mark);
  void handle_datagram(Sink& sink, const uint8_t* data, size_t len);

  // A packet message is header + attributes + at most copy_range bytes of packet (~300
  // bytes at the default): 4 KiB slots leave room for copy_range up to ~3.5 KiB.
  static constexpr size_t kRxSlots = 32;
  static constexpr size_t kRxSlotBytes = 4096;

  QueueOptions options_;
  mnl_socket* socket_ = nullptr;
  uint32_t port_id_ = 0;
  uint32_t seq_ = 0;
  std::string features_;
  std::vector<uint8_t> rx_;  // kRxSlots slots of kRxSlotBytes; rx_.data() also serves configure()
  std::array<iovec, kRxSlots> rx_iov_{};
  std::array<mmsghdr, kRxSlots> rx_msgs_{};
  std::vector<uint8_t> tx_;
  size_t tx_used_ = 0;
  std::vector<uint32_t> early_ids_;  // packets queued while configuring: dropped after
  QueueStats stats_;
};

}  // namespace kg::verdictd
