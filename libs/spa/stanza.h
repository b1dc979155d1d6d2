// One access stanza as the config library reads it and the verifier uses it. No crypto:
// readers of stanzas (the config library) do not link OpenSSL.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/addr.h"
#include "spa/access.h"
#include "spa/algorithms.h"
#include "spa/base64.h"

namespace kg::spa {

// One access stanza (fwknopd access.conf semantics, docs/spa.md).
struct Stanza {
  std::string label;              // for logs: "FILE:LINE"; never key material
  std::vector<IpPrefix> sources;  // SOURCE; empty = ANY
  Bytes key;                      // KEY / KEY_BASE64 (1-32 bytes)
  EncryptionMode mode = EncryptionMode::cbc;
  std::optional<Bytes> hmac_key;  // HMAC_KEY / HMAC_KEY_BASE64; absent = no HMAC
  DigestType hmac_type = DigestType::sha256;
  std::vector<std::string> usernames;     // REQUIRE_USERNAME; empty = any
  std::vector<ProtoPort> open_ports;      // OPEN_PORTS; empty = any within the profile
  std::vector<ProtoPort> restrict_ports;  // RESTRICT_PORTS
  // The granted profile's ports (captured fills it in): every request must be in it.
  std::optional<std::vector<ProtoPort>> profile_ports;
  bool require_source_address = false;  // REQUIRE_SOURCE_ADDRESS: refuse 0.0.0.0
  bool match_source_address = true;     // MATCH_SOURCE_ADDRESS: allow IP must be the source
  uint32_t fw_access_timeout = 0;       // FW_ACCESS_TIMEOUT; 0 = the profile's lifetime
  uint32_t max_fw_timeout = 300;        // MAX_FW_TIMEOUT caps a client timeout
  friend bool operator==(const Stanza&, const Stanza&) = default;
};

// fwknop's username rule: printable, none of  " / \ [ ] : ; | = , + * ? < >
bool valid_username(std::string_view user);

}  // namespace kg::spa
