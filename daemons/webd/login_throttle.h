// Failed console logins slow down the account and the source they come from, with delays
// that grow per failure. A delay is a wait, never a refusal of the right password: once
// it has passed, the next attempt is checked as usual.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kg::webd {

class LoginThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  // Per key: `free_failures` cost nothing; the next one starts a wait of `first_delay`,
  // each further one doubles it, up to `max_delay`. A key with no failure for
  // `forget_after` starts afresh. At most `max_keys` keys per scope are remembered: a new
  // one evicts the key whose last failure is the oldest.
  struct Limits {
    size_t free_failures = 5;
    std::chrono::seconds first_delay{1};
    std::chrono::seconds max_delay{900};
    std::chrono::seconds forget_after{3600};
    size_t max_keys = 10000;
  };
  enum class Scope { account, source };
  struct Lockout {
    Scope scope;
    std::string key;  // the user name as typed (known or not), or the source address
    size_t failures;  // consecutive failures counted for the key
    std::chrono::seconds delay;
  };

  LoginThrottle() : LoginThrottle(Limits{}, Limits{}) {}
  LoginThrottle(Limits accounts, Limits sources) : accounts_(accounts), sources_(sources) {}

  // nullopt: the attempt may be checked now; else how long (rounded up) until it may.
  std::optional<std::chrono::seconds> wait(const std::string& account, const std::string& source,
                                           Clock::time_point now);
  // Counts a wrong password; returns the waits this failure started (none, one or both).
  std::vector<Lockout> failed(const std::string& account, const std::string& source,
                              Clock::time_point now);
  // The right password: both keys start afresh.
  void succeeded(const std::string& account, const std::string& source);

  size_t tracked(Scope scope) const {
    return scope == Scope::account ? accounts_.size() : sources_.size();
  }

 private:
  // One scope's keys, least recently failed first (the eviction order).
  class Table {
   public:
    explicit Table(Limits limits) : limits_(limits) {}
    std::optional<Clock::time_point> until(const std::string& key, Clock::time_point now);
    // The delay this failure starts, if any, and the key's failure count.
    std::pair<std::optional<std::chrono::seconds>, size_t> failed(const std::string& key,
                                                                  Clock::time_point now);
    void forget(const std::string& key);
    size_t size() const { return entries_.size(); }

   private:
    struct Entry {
      size_t failures = 0;
      Clock::time_point last_failure;
      Clock::time_point until;  // attempts before this are refused unchecked
      std::list<std::string>::iterator position;
    };
    std::chrono::seconds delay_for(size_t failures) const;
    void drop_stale(Clock::time_point now);
    Limits limits_;
    std::unordered_map<std::string, Entry> entries_;
    std::list<std::string> order_;
  };

  Table accounts_;
  Table sources_;
};

const char* scope_name(LoginThrottle::Scope scope);

}  // namespace kg::webd
