// The closed request set between policyd's engine (unprivileged) and its kernel writer
// (privileged), over a SOCK_SEQPACKET socketpair the writer creates before it forks the
// engine: one datagram is one message, so a malformed one is refused on its own and the
// channel goes on. docs/protocol.md describes the bytes.
//
// Engine → writer: GrantChunk*, then AddGrants | RemoveGrants | Reconcile (a grant list
// longer than one datagram travels in chunks ahead of its request); RunCommand;
// ReadConfig; EngineReady. Writer → engine: WriterReady (first), KernelReply (one per
// request), ConfigText (before ReadConfig's reply), CommandExited and ReconcileNeeded
// (whenever they happen).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/addr.h"
#include "common/result.h"
#include "ipc/wire.h"

namespace kg::ipc {

// What the kernel needs to know of an active grant: id, source, profile, expiry. The one
// grant shape of the kernel side: the engine sends it, the ruleset generator and the
// kernel layer read it.
struct GrantInstall {
  uint64_t id = 0;
  IpAddr source;
  std::string profile;
  int64_t expires_ns = 0;  // CLOCK_REALTIME ns since epoch; element timeout = expires - now
  friend bool operator==(const GrantInstall&, const GrantInstall&) = default;
};

// A datagram never exceeds this; grant lists are cut into chunks that fit.
inline constexpr size_t kKernelDatagramBytes = size_t{64} * 1024;
// The most grants one request (chunks included) may carry.
inline constexpr size_t kKernelMaxGrants = size_t{1} << 20;

enum class KernelMessageType : uint8_t {
  writer_ready = 1,
  engine_ready = 2,
  grant_chunk = 3,
  add_grants = 4,
  remove_grants = 5,
  reconcile = 6,
  run_command = 7,
  reply = 8,
  command_exited = 9,
  reconcile_needed = 10,
  read_config = 11,
  config_text = 12,
};

struct WriterReady {
  static constexpr KernelMessageType type = KernelMessageType::writer_ready;
  std::string features;  // KernelState::features(): "mode gateway, queue native, ..."
  friend bool operator==(const WriterReady&, const WriterReady&) = default;
};

struct EngineReady {
  static constexpr KernelMessageType type = KernelMessageType::engine_ready;
  friend bool operator==(const EngineReady&, const EngineReady&) = default;
};

struct GrantChunk {
  static constexpr KernelMessageType type = KernelMessageType::grant_chunk;
  std::vector<GrantInstall> grants;
  friend bool operator==(const GrantChunk&, const GrantChunk&) = default;
};

// Adds or re-adds (new timeout) set elements.
struct AddGrants {
  static constexpr KernelMessageType type = KernelMessageType::add_grants;
  uint32_t request_id = 0;
  std::vector<GrantInstall> grants;
  friend bool operator==(const AddGrants&, const AddGrants&) = default;
};

// Removes set elements (and, for `revoke = all` profiles, the sources' conntrack entries).
struct RemoveGrants {
  static constexpr KernelMessageType type = KernelMessageType::remove_grants;
  uint32_t request_id = 0;
  std::vector<GrantInstall> grants;
  friend bool operator==(const RemoveGrants&, const RemoveGrants&) = default;
};

// Makes the kernel match the config and exactly these grants. `reload`: the writer reads
// the config file again first.
struct Reconcile {
  static constexpr KernelMessageType type = KernelMessageType::reconcile;
  uint32_t request_id = 0;
  bool reload = false;
  std::string reason;  // "start", "reload", "link up": for the log
  std::vector<GrantInstall> grants;
  friend bool operator==(const Reconcile&, const Reconcile&) = default;
};

// Runs a configured door's start or stop command for a source. The writer takes the
// command from its own config (knockd's choice of the `_6` variant, `%IP%` expanded);
// the engine names the door, never the command.
struct RunCommand {
  static constexpr KernelMessageType type = KernelMessageType::run_command;
  uint32_t request_id = 0;
  uint64_t job_id = 0;  // the engine's; CommandExited names it
  std::string door;
  bool stop = false;
  IpAddr source;
  friend bool operator==(const RunCommand&, const RunCommand&) = default;
};

// The answer to one request. ok: `count` is the request's figure (conntrack entries
// deleted, the command's pid), `text` a summary; !ok: `text` says why.
struct KernelReply {
  static constexpr KernelMessageType type = KernelMessageType::reply;
  uint32_t request_id = 0;
  bool ok = false;
  uint64_t count = 0;
  std::string text;
  friend bool operator==(const KernelReply&, const KernelReply&) = default;
};

struct CommandExited {
  static constexpr KernelMessageType type = KernelMessageType::command_exited;
  uint64_t job_id = 0;
  bool exited = false;  // false: killed by `signal`
  int32_t code = 0;
  int32_t signal = 0;
  friend bool operator==(const CommandExited&, const CommandExited&) = default;
};

// A link the profiles route through came back: the engine answers with a Reconcile.
struct ReconcileNeeded {
  static constexpr KernelMessageType type = KernelMessageType::reconcile_needed;
  std::string why;
  friend bool operator==(const ReconcileNeeded&, const ReconcileNeeded&) = default;
};

// The engine asks the writer to read the config file again (as root: SPA keys are
// readable by root alone) and to adopt it; the writer answers with the file's bytes in
// ConfigText datagrams, then the KernelReply (not ok: the diagnostics). Both processes
// then hold what the same bytes say.
struct ReadConfig {
  static constexpr KernelMessageType type = KernelMessageType::read_config;
  uint32_t request_id = 0;
  friend bool operator==(const ReadConfig&, const ReadConfig&) = default;
};

// Up to kConfigTextChunk bytes of the config file, in order.
struct ConfigText {
  static constexpr KernelMessageType type = KernelMessageType::config_text;
  std::string bytes;
  friend bool operator==(const ConfigText&, const ConfigText&) = default;
};
inline constexpr size_t kConfigTextChunk = size_t{60} * 1024;

using KernelMessage =
    std::variant<WriterReady, EngineReady, GrantChunk, AddGrants, RemoveGrants, Reconcile,
                 RunCommand, KernelReply, CommandExited, ReconcileNeeded, ReadConfig, ConfigText>;

const char* kernel_message_name(const KernelMessage& m);

// One datagram: u8 type, then the body. Fails if it would exceed kKernelDatagramBytes.
Result<std::vector<uint8_t>> encode_kernel_message(const KernelMessage& m);
// Exactly one datagram; the error names the field ("truncated: AddGrants.grants").
Result<KernelMessage> decode_kernel_message(std::span<const uint8_t> datagram);

// The datagrams of a grant-list request: GrantChunks of at most `chunk` grants, then the
// request itself carrying the remainder.
template <typename Request>
std::vector<KernelMessage> split_grants(Request request, size_t chunk);

}  // namespace kg::ipc
