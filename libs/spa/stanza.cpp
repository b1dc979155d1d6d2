#include "spa/stanza.h"

namespace kg::spa {

bool valid_username(std::string_view user) {
  if (user.empty()) return false;
  for (char c : user) {
    if (c < 0x21 || c > 0x7e) return false;
    for (char bad : std::string_view("\"/\\[]:;|=,+*?<>")) {
      if (c == bad) return false;
    }
  }
  return true;
}

}  // namespace kg::spa
