// SPA in captured: the [spa NAME] doors of the config, each verified with libs/spa.
// Every rejection is counted by reason and logged at most once per source, reason and
// interval, with the source address and, for age failures, the client's clock skew.
// A valid packet becomes a KnockEvent (method spa) with the replay key; policyd refuses
// replays.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "ipc/messages.h"
#include "spa/verify.h"

namespace kg::captured {

struct SpaDoorRuntime {
  std::string name;
  uint16_t port = 0;
  spa::Transport transport = spa::Transport::udp;
  spa::VerifyOptions options;
  std::vector<spa::Stanza> stanzas;            // unexpired, in config order
  std::vector<std::optional<int64_t>> expire;  // ACCESS_EXPIRE_EPOCH, parallel to all stanzas
  std::vector<spa::Stanza> all_stanzas;
  int64_t stanzas_built_for = -1;  // wall second the expiry filter was last applied
};

class SpaGate {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kLogInterval{60};
  static constexpr size_t kMaxLogKeys = 16384;
  // Whatever the sources, at most this many rejection lines per second; the rest are
  // summed up by flush_log_summary() (a spoofed-source flood must not flood the log).
  static constexpr uint32_t kMaxLinesPerSecond = 20;

  explicit SpaGate(const config::Config& cfg);

  const std::vector<SpaDoorRuntime>& doors() const { return doors_; }
  // The UDP door on this port (pcap path), or nullptr.
  const SpaDoorRuntime* udp_door(uint16_t port) const;

  // Verifies one payload (already unwrapped from HTTP when the door is http). Returns the
  // event for policyd when it is valid; otherwise counts and maybe logs the rejection.
  std::optional<ipc::KnockEvent> handle(size_t door, std::string_view payload, bool truncated,
                                        const IpAddr& src, const IpAddr& dst, int64_t realtime_ns,
                                        uint32_t config_generation);
  // A rejection found before verification (e.g. a bad HTTP request on a TCP door).
  void reject(size_t door, spa::Reject reason, const IpAddr& src, const std::string& detail = "");

  uint64_t accepted() const { return accepted_; }
  const std::array<uint64_t, spa::kRejectCount>& rejected() const { return rejected_; }
  uint64_t log_lines_suppressed() const { return suppressed_; }
  // Called every second: one line with the rejections not logged since the last one.
  void flush_log_summary();

 private:
  void refresh_expiry(SpaDoorRuntime& d, int64_t now_s);
  bool should_log(const IpAddr& src, spa::Reject reason);

  std::vector<SpaDoorRuntime> doors_;
  std::array<uint64_t, spa::kRejectCount> rejected_{};
  uint64_t accepted_ = 0;
  uint64_t suppressed_ = 0;
  std::map<std::pair<IpAddr, spa::Reject>, Clock::time_point> last_logged_;
  Clock::time_point last_prune_{};
  Clock::time_point second_start_{};
  uint32_t lines_this_second_ = 0;
  std::array<uint64_t, spa::kRejectCount> unlogged_{};  // since the last summary
};

// "<reason> (<text>)" plus the clock-skew hint for stale/future packets.
std::string describe_rejection(const spa::Rejected& r);

}  // namespace kg::captured
