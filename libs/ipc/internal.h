// Helpers shared by the client and server implementations; not part of the API.
#pragma once

#include <cstdint>
#include <string>

namespace kg::ipc::internal {

// A fresh random 64-bit value from the kernel (never 0: 0 means "unset" in options).
uint64_t random_u64();

// The knockgate release this library was built for, sent in Welcome.
const char* software_version();

}  // namespace kg::ipc::internal
