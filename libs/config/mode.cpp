#include <algorithm>

#include "config/config.h"

namespace kg::config {

bool Profile::forwards() const {
  if (direction == Direction::egress) return true;
  return std::any_of(exposures.begin(), exposures.end(), [](const Exposure& e) { return !e.self; });
}

bool Profile::has_self_exposure() const {
  return std::any_of(exposures.begin(), exposures.end(), [](const Exposure& e) { return e.self; });
}

Mode Config::mode() const {
  if (!options.wan_interfaces.empty() || !options.lan_interfaces.empty()) return Mode::gateway;
  return profiles.empty() ? Mode::host : Mode::self;
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::host:
      return "host";
    case Mode::self:
      return "self";
    case Mode::gateway:
      return "gateway";
  }
  return "?";
}

}  // namespace kg::config
