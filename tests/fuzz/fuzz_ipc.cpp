// Arbitrary bytes into the message decoder (no sockets). Whatever decodes must encode
// back to the same bytes (the encoding is canonical) and decode again to an equal
// message; whatever does not must say why. Three views of the input: one whole frame,
// a frame body without its length prefix (so mutations need not fix up lengths), and a
// byte stream cut into chunks as a socket would deliver it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "ipc/messages.h"

namespace {

using kg::ipc::DecodeResult;
using kg::ipc::Message;

[[noreturn]] void fail() {
  __builtin_trap();
}

void check_round_trip(const Message& m, std::span<const uint8_t> accepted_payload) {
  auto frame = kg::ipc::encode_frame(m, UINT32_MAX);
  if (!frame.ok()) fail();
  const std::vector<uint8_t>& bytes = *frame;
  if (bytes.size() < kg::ipc::kLengthPrefixBytes) fail();
  const std::span<const uint8_t> payload(bytes.data() + kg::ipc::kLengthPrefixBytes,
                                         bytes.size() - kg::ipc::kLengthPrefixBytes);
  if (payload.size() != accepted_payload.size() ||
      std::memcmp(payload.data(), accepted_payload.data(), payload.size()) != 0) {
    fail();
  }
  const DecodeResult again = kg::ipc::decode_frame(bytes, UINT32_MAX);
  if (!again.ok() || !(*again.message == m)) fail();
}

void check_result(const DecodeResult& r) {
  if (r.ok() == r.failed()) fail();  // exactly one of message or reason
  if (r.failed() && r.reason().empty()) fail();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);

  const DecodeResult whole = kg::ipc::decode_frame(input, kg::ipc::kDefaultMaxFrameBytes);
  check_result(whole);
  if (whole.ok()) check_round_trip(*whole.message, input.subspan(kg::ipc::kLengthPrefixBytes));

  if (size >= kg::ipc::kLengthPrefixBytes) {
    const auto payload = input.subspan(kg::ipc::kLengthPrefixBytes);
    const DecodeResult body = kg::ipc::decode_payload(payload);
    check_result(body);
    if (body.ok()) check_round_trip(*body.message, payload);
  }

  // The stream reader with a small frame limit, fed in chunks sized by the first byte.
  kg::ipc::FrameReader reader(kg::ipc::kMinMaxFrameBytes);
  const size_t chunk = size == 0 ? 1 : 1 + data[0] % 97;
  size_t fed = 0;
  bool broken = false;
  while (fed < size && !broken) {
    auto space = reader.prepare();
    if (space.empty()) fail();
    const size_t n = std::min({chunk, space.size(), size - fed});
    std::memcpy(space.data(), data + fed, n);
    reader.commit(n);
    fed += n;
    for (;;) {
      DecodeResult next = reader.next();
      if (next.failed()) {
        broken = true;  // a real connection is closed here
        break;
      }
      if (!next.ok()) break;
      auto frame = kg::ipc::encode_frame(*next.message, kg::ipc::kMinMaxFrameBytes);
      if (!frame.ok()) fail();  // it arrived within the limit, so it fits going back
      const DecodeResult again = kg::ipc::decode_frame(*frame, kg::ipc::kMinMaxFrameBytes);
      if (!again.ok() || !(*again.message == *next.message)) fail();
    }
    if (reader.buffered() > kg::ipc::kMinMaxFrameBytes + kg::ipc::kLengthPrefixBytes) fail();
  }
  return 0;
}
