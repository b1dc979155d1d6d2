// Arbitrary bytes as knockgate.conf: parsing must never crash, and whatever parses must
// survive dump -> parse unchanged (and dump must be a fixed point).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "config/config.h"
#include "config/values.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto first = kg::config::parse_text(text, "fuzz.conf");
  if (first.config.has_value() != first.errors.empty()) std::abort();
  for (const auto& e : first.errors) {
    if (e.str().empty()) std::abort();
  }
  // The value parsers on their own, so that short inputs reach each of them directly.
  (void)kg::config::parse_knock_sequence(text);
  (void)kg::config::parse_tcpflags(text);
  (void)kg::config::parse_route(text);
  (void)kg::config::parse_exposure(text);
  (void)kg::config::parse_allow(text);
  (void)kg::config::parse_fwmark(text);
  (void)kg::config::parse_duration(text);
  (void)kg::config::parse_prefix_list(text);
  if (!first.config) return 0;

  const std::string dumped = kg::config::dump(*first.config, kg::config::Secrets::shown);
  auto second = kg::config::parse_text(dumped, "dumped.conf");
  if (!second.config) {
    std::fprintf(stderr, "dump does not parse back:\n%s\n", dumped.c_str());
    for (const auto& e : second.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::abort();
  }
  if (!(*second.config == *first.config)) {
    std::fprintf(stderr, "dump parses back to a different config:\n%s\n", dumped.c_str());
    std::abort();
  }
  if (kg::config::dump(*second.config, kg::config::Secrets::shown) != dumped) {
    std::fprintf(stderr, "dump is not a fixed point:\n%s\n", dumped.c_str());
    std::abort();
  }
  return 0;
}
