// Who may hold how many of a server's connections, and how much a peer that never
// authenticates may make the server log. policyd's socket is open to every local user;
// before Hello the kernel's SO_PEERCRED (read at accept) is all the server knows, so the
// limits go by uid, with the last slots kept for root and the daemons' own users.
// Pure bookkeeping, no I/O: the server asks and logs, tests drive it with their own clock.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace kg::ipc {

struct ConnectionLimits {
  // Every connection, handshaking or open.
  size_t max_connections = 128;
  // The last this-many of max_connections only go to reserved uids (root and the ones in
  // ServerOptions::reserved_uids), so a flood from other users never takes them.
  size_t reserved_connections = 32;
  // Per uid other than root: all its connections, and those still before Hello (or
  // being refused). Root is limited by max_connections only.
  size_t max_connections_per_uid = 8;
  size_t max_handshaking_per_uid = 4;
};

enum class Admission : uint8_t {
  admitted,
  full,                  // max_connections reached
  unreserved_full,       // only reserved slots left and the uid is not reserved
  uid_limit,             // the uid holds max_connections_per_uid
  uid_handshaking_limit  // the uid holds max_handshaking_per_uid before Hello
};

// Connection counts per uid against ConnectionLimits. A connection is counted from
// admit() until release(); it is "handshaking" until authenticated().
class AdmissionControl {
 public:
  AdmissionControl(ConnectionLimits limits, std::vector<uid_t> reserved_uids);

  // Why the limits are unusable (nullopt: fine).
  static std::optional<std::string> invalid(const ConnectionLimits& limits);

  // Counts the connection if the answer is `admitted`.
  Admission admit(uid_t uid);
  void authenticated(uid_t uid);
  void release(uid_t uid, bool was_authenticated);

  bool reserved(uid_t uid) const;
  size_t connections() const { return total_; }
  size_t connections_of(uid_t uid) const;
  size_t handshaking_of(uid_t uid) const;
  const ConnectionLimits& limits() const { return limits_; }

  // "uid 65534 already has 4 connections before Hello", for the peer and the log.
  std::string describe(Admission a, uid_t uid) const;

 private:
  struct Counts {
    size_t all = 0;
    size_t handshaking = 0;
  };
  ConnectionLimits limits_;
  std::vector<uid_t> reserved_uids_;
  std::unordered_map<uid_t, Counts> per_uid_;
  size_t total_ = 0;
};

// What an unauthenticated peer made the server do, for the rate-limited log.
enum class Rejection : uint8_t {
  over_limit,      // closed at accept by AdmissionControl
  no_credentials,  // SO_PEERCRED failed
  no_hello,        // no Hello before the deadline
  refused,         // Hello refused (version, pid, peer policy)
  protocol_error,  // a malformed frame or another message instead of Hello
  closed_early,    // the peer hung up before Hello
};
constexpr size_t kRejectionKinds = 6;

// Log lines that peers can cause before they authenticate: the first `burst` in each
// interval are written one by one, the others only counted, and when the interval ends
// one summary line gives the counts. An interval starts with the first rejection after
// the previous one ended, so a quiet server has no timer running.
class RejectionLog {
 public:
  using Clock = std::chrono::steady_clock;

  RejectionLog(size_t burst, std::chrono::milliseconds interval);

  // Counts the rejection; true if it gets a line of its own.
  bool note(Rejection kind, uid_t uid, Clock::time_point now);
  // When the current interval ends, if lines were held back in it (the caller then
  // calls summary()); nullopt if there is nothing to sum up.
  std::optional<Clock::time_point> summary_due() const;
  // At or after the interval's end: the summary line if lines were held back (nullopt
  // otherwise), and the next rejection starts a new interval. Before the end: nullopt.
  std::optional<std::string> summary(Clock::time_point now);
  // The summary of the interval so far, whatever the time (for a server that stops).
  std::optional<std::string> flush(Clock::time_point now);

  std::chrono::milliseconds interval() const { return interval_; }

 private:
  std::string text(std::chrono::milliseconds span) const;
  void reset();

  size_t burst_;
  std::chrono::milliseconds interval_;
  std::optional<Clock::time_point> started_;
  size_t logged_ = 0;
  size_t held_back_ = 0;
  uint64_t counts_[kRejectionKinds] = {};
  std::map<uid_t, uint64_t> by_uid_;  // at most 256 uids
};

}  // namespace kg::ipc
