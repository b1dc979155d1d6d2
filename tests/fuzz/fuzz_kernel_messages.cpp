// Arbitrary bytes into the engine ↔ kernel writer decoder (ipc/kernel_messages.h): the
// writer decodes whatever its engine sends, and the engine is the less trusted side.
// Whatever decodes must encode back to the same bytes (the encoding is canonical) and
// decode again to an equal message; whatever does not must say why.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "ipc/kernel_messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  auto decoded = kg::ipc::decode_kernel_message(in);
  if (!decoded) {
    if (decoded.error().message.empty()) __builtin_trap();
    return 0;
  }
  auto encoded = kg::ipc::encode_kernel_message(*decoded);
  if (!encoded) {
    // Only a message larger than a datagram may fail to encode.
    if (size <= kg::ipc::kKernelDatagramBytes) __builtin_trap();
    return 0;
  }
  if (encoded->size() != size || std::memcmp(encoded->data(), data, size) != 0) __builtin_trap();
  auto again = kg::ipc::decode_kernel_message(*encoded);
  if (!again || !(*again == *decoded)) __builtin_trap();
  return 0;
}
