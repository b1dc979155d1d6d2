#include "common/knock.h"

namespace kg {

std::string tcpflags_str(const TcpFlagsTest& t) {
  struct Named {
    uint8_t bit;
    const char* name;
  };
  // knockd's order, which is also the bit order.
  static constexpr Named kOrder[] = {{tcpflag::fin, "fin"}, {tcpflag::syn, "syn"},
                                     {tcpflag::rst, "rst"}, {tcpflag::psh, "psh"},
                                     {tcpflag::ack, "ack"}, {tcpflag::urg, "urg"}};
  std::string out;
  for (const auto& f : kOrder) {
    const bool set = (t.must_set & f.bit) != 0;
    const bool clear = (t.must_clear & f.bit) != 0;
    if (!set && !clear) continue;
    if (!out.empty()) out += ',';
    if (clear) out += '!';
    out += f.name;
  }
  return out;
}

}  // namespace kg
