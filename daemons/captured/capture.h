// One libpcap handle on the "any" device in cooked-v2 mode. Opened once, as root, before
// the privilege drop, and never reopened: interfaces that come and go are followed by
// changing the filter's ifindex list, which needs no privilege.
#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/result.h"

namespace kg::captured {

struct CaptureStats {
  uint64_t received = 0;    // pcap_stats ps_recv
  uint64_t dropped = 0;     // ps_drop: the ring buffer was full
  uint64_t if_dropped = 0;  // ps_ifdrop
};

struct CaptureOptions {
  int snaplen = 256;                   // headers plus an SPA payload's worth
  int buffer_bytes = 8 * 1024 * 1024;  // kernel ring
};

class Capture {
 public:
  using PacketFn =
      std::function<void(int64_t realtime_ns, int linktype, std::span<const uint8_t> bytes)>;

  static Result<std::unique_ptr<Capture>> open(const CaptureOptions& opts);

  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
  ~Capture();

  int fd() const;
  int linktype() const;
  // Compiles with optimisation and installs the filter; the error names the expression.
  Result<Ok> set_filter(const std::string& expression);
  // Reads what is ready now (non-blocking), at most max_packets; returns how many.
  Result<int> dispatch(int max_packets, const PacketFn& fn);
  CaptureStats stats();

 private:
  explicit Capture(pcap_t* p) : pcap_(p) {}
  pcap_t* pcap_;
  uint64_t wrap_base_recv_ = 0;
  uint64_t wrap_base_drop_ = 0;
  uint32_t last_recv_ = 0;
  uint32_t last_drop_ = 0;
};

}  // namespace kg::captured
