// The text of knockgate's own nftables table (`table inet knockgate`) and of the set element
// commands, generated from the config alone: pure functions, no kernel access.
// docs/datapath.md explains every chain and rule printed here.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"
#include "config/config.h"
#include "policyd/grant_install.h"

namespace kg::policyd {

inline constexpr std::string_view kTableName = "knockgate";
inline constexpr std::string_view kVerdictChain = "verdict_queue";  // the queue rule only

// ssh-only → ssh_only: profile names may hold '-' and '.', nft identifiers may not.
std::string nft_identifier(std::string_view profile_name);
// grant4_ssh_only / grant6_ssh_only.
std::string grant_set_name(std::string_view profile_name, Family family);

// An error naming both profiles when two profile names map to the same nft identifier.
Result<Ok> check_identifiers(const config::Config& config);

// The union of every profile's fwmark mask: the mark bits that are ours.
uint32_t mark_union(const config::Config& config);

enum class QueueMode : uint8_t {
  native,       // nft `queue` statement in the text
  xt_fallback,  // no queue rule in the text: the caller inserts an xt NFQUEUE target at
                // chain `verdict_queue` right after loading it
};

// One nft buffer that atomically replaces the whole table: `add table; delete table;
// table inet knockgate { ... }`. Set elements are not part of it. What the table holds
// follows the config's mode (config::Mode): empty text in host mode (no table at all), the
// grant sets and an input chain in self mode, everything in gateway mode.
std::string ruleset_text(const config::Config& config, QueueMode mode);

// The native queue statement for the options, e.g. `queue num 0-3 bypass,fanout`.
std::string queue_statement(const config::Options& options);

// Commands that (re-)add grants as set elements with timeout = expires - now (at least
// 1 ms). With `refresh`, an element that may already exist is re-added with its new
// timeout (add; delete; add in the same transaction: works on kernels that do not update
// the timeout of an existing element). Grants already expired are left out; a grant for a
// profile the config does not have is an error. Several grants for one source and profile:
// the latest expiry wins. Empty text when there is nothing to do.
Result<std::string> element_add_text(const config::Config& config,
                                     std::span<const GrantInstall> grants, int64_t now_ns,
                                     bool refresh);
// Commands that leave the grants' elements absent, whether they exist or already timed out.
Result<std::string> element_delete_text(const config::Config& config,
                                        std::span<const GrantInstall> grants);

}  // namespace kg::policyd
