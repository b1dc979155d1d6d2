#include "webd/login_throttle.h"

#include <algorithm>

namespace kg::webd {

const char* scope_name(LoginThrottle::Scope scope) {
  return scope == LoginThrottle::Scope::account ? "account" : "source";
}

std::chrono::seconds LoginThrottle::Table::delay_for(size_t failures) const {
  if (failures <= limits_.free_failures) return std::chrono::seconds(0);
  const size_t doublings = failures - limits_.free_failures - 1;
  // 2^40 s is beyond any sensible cap; stop shifting before it can overflow.
  if (doublings >= 40) return limits_.max_delay;
  const auto delay = limits_.first_delay * (int64_t{1} << doublings);
  return std::min(delay, limits_.max_delay);
}

// Keys whose last failure is older than forget_after are at the front of order_.
void LoginThrottle::Table::drop_stale(Clock::time_point now) {
  while (!order_.empty()) {
    auto it = entries_.find(order_.front());
    if (now - it->second.last_failure < limits_.forget_after) break;
    entries_.erase(it);
    order_.pop_front();
  }
}

std::optional<LoginThrottle::Clock::time_point> LoginThrottle::Table::until(const std::string& key,
                                                                            Clock::time_point now) {
  drop_stale(now);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.until <= now) return std::nullopt;
  return it->second.until;
}

std::pair<std::optional<std::chrono::seconds>, size_t> LoginThrottle::Table::failed(
    const std::string& key, Clock::time_point now) {
  drop_stale(now);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (limits_.max_keys == 0) return {std::nullopt, 0};
    while (entries_.size() >= limits_.max_keys) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(key);
    it = entries_.emplace(key, Entry{0, now, now, std::prev(order_.end())}).first;
  } else {
    order_.splice(order_.end(), order_, it->second.position);
  }
  Entry& e = it->second;
  ++e.failures;
  e.last_failure = now;
  const auto delay = delay_for(e.failures);
  if (delay.count() == 0) return {std::nullopt, e.failures};
  e.until = now + delay;
  return {delay, e.failures};
}

void LoginThrottle::Table::forget(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  order_.erase(it->second.position);
  entries_.erase(it);
}

std::optional<std::chrono::seconds> LoginThrottle::wait(const std::string& account,
                                                        const std::string& source,
                                                        Clock::time_point now) {
  const auto a = accounts_.until(account, now);
  const auto s = sources_.until(source, now);
  if (!a && !s) return std::nullopt;
  const auto until = std::max(a.value_or(now), s.value_or(now));
  return std::max(std::chrono::seconds(1), std::chrono::ceil<std::chrono::seconds>(until - now));
}

std::vector<LoginThrottle::Lockout> LoginThrottle::failed(const std::string& account,
                                                          const std::string& source,
                                                          Clock::time_point now) {
  std::vector<Lockout> started;
  if (auto [delay, count] = accounts_.failed(account, now); delay) {
    started.push_back(Lockout{Scope::account, account, count, *delay});
  }
  if (auto [delay, count] = sources_.failed(source, now); delay) {
    started.push_back(Lockout{Scope::source, source, count, *delay});
  }
  return started;
}

void LoginThrottle::succeeded(const std::string& account, const std::string& source) {
  accounts_.forget(account);
  sources_.forget(source);
}

}  // namespace kg::webd
