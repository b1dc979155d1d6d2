// The files policyd's engine writes — the database with its WAL, shared-memory and
// revocation-journal files, and the doors' one-time sequence files — belong to the
// engine's user (PolicyUser). The kernel writer, still root, hands them over before it
// starts the engine: existing files become the user's; the database directory does when
// it is the package's /var/lib/knockgate (any other directory must already be writable by
// the user; the error says so).
#pragma once

#include "common/privdrop.h"
#include "common/result.h"
#include "config/config.h"

namespace kg::policyd {

inline constexpr const char* kPackageStateDir = "/var/lib/knockgate";

// PolicyUser's uid and gid; an error names the option and how to create the user.
Result<Credentials> engine_credentials(const config::Config& config);

Result<Ok> hand_state_to_engine(const config::Config& config);

}  // namespace kg::policyd
