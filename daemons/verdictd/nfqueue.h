// One NFQUEUE queue on its own netlink socket, through libnetfilter_queue's libmnl-based
// message helpers (not the deprecated nfq_open handle API). Owns the socket (RAII: closing
// it unbinds the queue). One thread reads (read() then dispatch()); verdicts are collected
// in a VerdictBatch and written with one sendmsg, from the reading thread or another one
// (each batch belongs to one thread; the socket takes whole sendmsg calls from several).
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
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

// Written by the queue's threads, read by the status reply: relaxed atomics.
struct QueueStats {
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> enobufs{
      0};  // the socket overflowed: the kernel dropped (or passed) packets
  std::atomic<uint64_t> receive_errors{0};  // other recv errors and malformed messages
  std::atomic<uint64_t> verdicts{0};
  std::atomic<uint64_t> send_errors{0};
  std::atomic<uint64_t> kernel_errors{0};  // NLMSG_ERROR answers to verdicts (unknown id, ...)
};

// Verdict messages for one queue, sent by NfQueue::send in one sendmsg.
class VerdictBatch {
 public:
  explicit VerdictBatch(uint16_t queue_number);
  void accept(uint32_t packet_id, bool set_mark, uint32_t mark);
  void drop(uint32_t packet_id);
  bool empty() const { return used_ == 0; }
  bool full() const;

 private:
  friend class NfQueue;
  void put(uint32_t packet_id, int verdict, bool set_mark, uint32_t mark);

  uint16_t queue_number_;
  std::vector<uint8_t> buffer_;
  size_t used_ = 0;
  size_t count_ = 0;
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
  // its own acknowledged message. Needs CAP_NET_ADMIN. read() blocks at most
  // `read_timeout_ms` (so its thread can notice a stop).
  static Result<std::unique_ptr<NfQueue>> open(const QueueOptions& options,
                                               int read_timeout_ms = 200);
  ~NfQueue();
  NfQueue(const NfQueue&) = delete;
  NfQueue& operator=(const NfQueue&) = delete;

  int fd() const;
  uint16_t number() const { return options_.number; }
  // What the kernel accepted, for the start-up log ("gso, fail-open").
  const std::string& features() const { return features_; }

  // Waits (at most the read timeout) for packet messages and takes every waiting one, up
  // to kRxSlots, with one recvmmsg. Returns how many datagrams were read (0: timeout,
  // interrupted or overflow, counted).
  size_t read();
  // Parses the datagrams of the last read(), calling sink.on_packet for each packet.
  void dispatch(Sink& sink);

  // One sendmsg for every verdict in the batch, which is empty afterwards. Never blocks:
  // on a full send buffer the error is counted; the kernel keeps such packets queued
  // (fail-closed).
  void send(VerdictBatch& batch);

  const QueueStats& stats() const { return stats_; }

 private:
  explicit NfQueue(const QueueOptions& options);
  Result<Ok> configure();
  // Sends one config message with NLM_F_ACK and waits for its answer.
  Result<Ok> transact(::nlmsghdr* request, const char* what);
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
  size_t read_count_ = 0;            // datagrams of the last read()
  std::vector<uint32_t> early_ids_;  // packets queued while configuring: dropped after
  QueueStats stats_;
};

}  // namespace kg::verdictd
