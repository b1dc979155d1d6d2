// From the parsed config to what policyd acts on. Kept apart from the core so the core
// (and its tests) does not depend on the config language.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "policyd/policy.h"

namespace kg::policyd {

// One DoorActions per config door, in file order.
std::vector<DoorActions> door_actions(const config::Config& config);

// One GrantProfile per config profile.
std::vector<GrantProfile> grant_profiles(const config::Config& config);

// Door names that appear more than once. knockd allows it; events name the door, so
// policyd acts with the first door of that name and warns about the others.
std::vector<std::string> duplicate_door_names(const config::Config& config);

}  // namespace kg::policyd
