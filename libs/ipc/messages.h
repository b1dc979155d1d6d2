// The messages daemons exchange over their Unix sockets, and the frame around them.
// docs/protocol.md is the byte-level description; keep the two in step.
//
// Adding a message: a struct like the ones below (type, sender, name, fields, encode,
// decode, ==), a MessageType value, and an entry in the Message variant. Decoding,
// direction checks and the fuzz target pick it up from the variant.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/addr.h"
#include "common/knock.h"
#include "common/result.h"
#include "ipc/wire.h"

namespace kg::ipc {

inline constexpr uint8_t kProtocolVersion = 1;
// u32 length, then u8 version, u8 type, u16 flags; the length counts everything after
// itself, so the smallest legal length is 4.
inline constexpr size_t kLengthPrefixBytes = 4;
inline constexpr size_t kFrameHeaderBytes = 8;
inline constexpr size_t kMinFrameLength = kFrameHeaderBytes - kLengthPrefixBytes;
inline constexpr size_t kDefaultMaxFrameBytes = size_t{64} * 1024;
// Every endpoint accepts frames of at least this size, so handshake messages always fit.
inline constexpr size_t kMinMaxFrameBytes = 1024;

enum class MessageType : uint8_t {
  hello = 1,
  welcome = 2,
  refused = 3,
  ping = 4,
  pong = 5,
  knock_event = 6,
  event_ack = 7,
  status_request = 8,
  status_reply = 9,
  control_request = 10,
  control_reply = 11,
  door_sequence = 12,
  subscribe = 13,
  grant_snapshot = 14,
  grant_delta = 15,
  feed_event = 16,
};

// Which end of a connection may send a message. A message arriving the wrong way is a
// protocol error and closes the connection.
enum class Sender : uint8_t { client, server, either };

// What a connecting program is. policyd's peer policy decides which uids may claim which.
enum class Role : uint8_t { captured = 1, verdictd = 2, webd = 3, ctl = 4 };
const char* role_name(Role r);
std::optional<Role> parse_role(std::string_view text);

enum class KnockMethod : uint8_t { knock = 1, spa = 2 };
const char* knock_method_name(KnockMethod m);

// How a grant came to be.
enum class GrantMethod : uint8_t { knock = 1, spa = 2, ctl = 3, api = 4 };
const char* grant_method_name(GrantMethod m);
std::optional<GrantMethod> parse_grant_method(std::string_view text);

// First message on every connection, client to server.
struct Hello {
  static constexpr MessageType type = MessageType::hello;
  static constexpr Sender sender = Sender::client;
  static constexpr const char* name = "Hello";

  Role role = Role::ctl;
  uint8_t protocol_version = kProtocolVersion;  // highest version the client speaks
  uint32_t pid = 0;                             // must equal the kernel's SO_PEERCRED pid
  uint64_t boot_id = 0;  // random per client process: (boot_id, event_id) is unique
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;  // largest frame the client accepts
  std::string program;

  void encode(Writer& w) const;
  static Result<Hello> decode(Reader& r);
  friend bool operator==(const Hello&, const Hello&) = default;
};

struct Welcome {
  static constexpr MessageType type = MessageType::welcome;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "Welcome";

  uint8_t protocol_version = kProtocolVersion;
  uint32_t server_pid = 0;
  uint64_t server_boot_id = 0;
  uint64_t session_id = 0;  // the server's number for this connection, for logs
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;  // largest frame the server accepts
  std::string server_program;
  std::string software_version;

  void encode(Writer& w) const;
  static Result<Welcome> decode(Reader& r);
  friend bool operator==(const Welcome&, const Welcome&) = default;
};

// The server's answer to a Hello it does not accept; it closes the connection after it.
struct Refused {
  static constexpr MessageType type = MessageType::refused;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "Refused";

  std::string reason;

  void encode(Writer& w) const;
  static Result<Refused> decode(Reader& r);
  friend bool operator==(const Refused&, const Refused&) = default;
};

struct Ping {
  static constexpr MessageType type = MessageType::ping;
  static constexpr Sender sender = Sender::either;
  static constexpr const char* name = "Ping";

  uint64_t nonce = 0;

  void encode(Writer& w) const;
  static Result<Ping> decode(Reader& r);
  friend bool operator==(const Ping&, const Ping&) = default;
};

struct Pong {
  static constexpr MessageType type = MessageType::pong;
  static constexpr Sender sender = Sender::either;
  static constexpr const char* name = "Pong";

  uint64_t nonce = 0;  // the Ping's

  void encode(Writer& w) const;
  static Result<Pong> decode(Reader& r);
  friend bool operator==(const Pong&, const Pong&) = default;
};

// What a verified SPA packet asked for (KnockEvent.spa, method spa only).
struct SpaAccessItem {
  uint8_t proto = 6;  // IANA number: 6 tcp, 17 udp, 1 icmp, 0 none
  uint16_t port = 0;
  friend bool operator==(const SpaAccessItem&, const SpaAccessItem&) = default;
};
struct SpaRequest {
  // SHA-256 of the decoded ciphertext bytes: policyd's replay cache key. Re-encodings of
  // one packet ('=' appended, unused base64 bits changed) have the same key.
  std::array<uint8_t, 32> replay_key{};
  std::string user;  // fwknop username from the packet (may be empty)
  std::vector<SpaAccessItem> access;
  uint32_t timeout_s = 0;  // requested/configured access time; 0 = the profile's lifetime
  friend bool operator==(const SpaRequest&, const SpaRequest&) = default;
};

// A completed knock sequence or verified SPA packet, captured → policyd. Stays queued in
// the sender until an EventAck with the same id arrives.
struct KnockEvent {
  static constexpr MessageType type = MessageType::knock_event;
  static constexpr Sender sender = Sender::client;
  static constexpr const char* name = "KnockEvent";

  uint64_t event_id = 0;  // per sender process, from 1, increasing; 0 is not valid
  std::string door;       // never empty
  IpAddr source;          // source and destination have the same family
  IpAddr destination;
  int64_t time_ns = 0;  // CLOCK_REALTIME of the last knock, ns since the Unix epoch
  KnockMethod method = KnockMethod::knock;
  uint32_t config_generation = 0;  // which loaded config the door came from
  // Appended after config_generation when present (method spa only); frames without it
  // decode as before.
  std::optional<SpaRequest> spa{};

  void encode(Writer& w) const;
  static Result<KnockEvent> decode(Reader& r);
  friend bool operator==(const KnockEvent&, const KnockEvent&) = default;
};

// policyd → captured once the event is committed to SQLite.
struct EventAck {
  static constexpr MessageType type = MessageType::event_ack;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "EventAck";

  uint64_t event_id = 0;

  void encode(Writer& w) const;
  static Result<EventAck> decode(Reader& r);
  friend bool operator==(const EventAck&, const EventAck&) = default;
};

struct StatusRequest {
  static constexpr MessageType type = MessageType::status_request;
  static constexpr Sender sender = Sender::either;
  static constexpr const char* name = "StatusRequest";

  uint32_t request_id = 0;

  void encode(Writer& w) const;
  static Result<StatusRequest> decode(Reader& r);
  friend bool operator==(const StatusRequest&, const StatusRequest&) = default;
};

struct StatusEntry {
  std::string key;
  std::variant<uint64_t, std::string> value;  // a counter or a text value
  friend bool operator==(const StatusEntry&, const StatusEntry&) = default;
};

struct StatusReply {
  static constexpr MessageType type = MessageType::status_reply;
  static constexpr Sender sender = Sender::either;
  static constexpr const char* name = "StatusReply";

  uint32_t request_id = 0;
  std::vector<StatusEntry> entries;

  void encode(Writer& w) const;
  static Result<StatusReply> decode(Reader& r);
  friend bool operator==(const StatusReply&, const StatusReply&) = default;
};

// knockgatectl's generic command: `knockgatectl COMMAND ARGS...` travels as is.
struct ControlRequest {
  static constexpr MessageType type = MessageType::control_request;
  static constexpr Sender sender = Sender::client;
  static constexpr const char* name = "ControlRequest";

  uint32_t request_id = 0;
  std::string command;
  std::vector<std::string> args;

  void encode(Writer& w) const;
  static Result<ControlRequest> decode(Reader& r);
  friend bool operator==(const ControlRequest&, const ControlRequest&) = default;
};

struct ControlReply {
  static constexpr MessageType type = MessageType::control_reply;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "ControlReply";

  uint32_t request_id = 0;
  uint8_t exit_code = 0;  // what knockgatectl exits with
  std::string out;        // for its stdout
  std::string err;        // for its stderr

  void encode(Writer& w) const;
  static Result<ControlReply> decode(Reader& r);
  friend bool operator==(const ControlReply&, const ControlReply&) = default;
};

// policyd → captured: a one-time-sequence door moved on to its next sequence, or ran out
// and is disabled. policyd (root) consumes the one-time file; captured (unprivileged)
// matches with what this says. Sent after every use and, as a snapshot, for each one-time
// door when captured connects.
struct DoorSequence {
  static constexpr MessageType type = MessageType::door_sequence;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "DoorSequence";
  static constexpr size_t kMaxKnocks = 32;  // knockd's SEQ_MAX, config::kMaxSequenceLength

  std::string door;             // never empty
  bool disabled = false;        // true: no sequence left; `sequence` is then empty
  std::vector<Knock> sequence;  // the door's active sequence, 1..kMaxKnocks knocks

  void encode(Writer& w) const;
  static Result<DoorSequence> decode(Reader& r);
  friend bool operator==(const DoorSequence&, const DoorSequence&) = default;
};

// ---- Grant broadcast (policyd → subscribers: verdictd, webd). docs/protocol.md.
//
// A subscriber sends Subscribe; policyd answers with a snapshot of every active grant,
// cut into as many GrantSnapshot frames as the peer's frame limit needs (first..last,
// nothing else interleaved), then GrantDelta frames as grants change. Every snapshot
// chunk and delta carries `seq`, policyd's change counter: a snapshot is as of its seq,
// and each delta has seq = previous seq + 1. A subscriber that sees a gap sends
// Subscribe again and replaces its state with the new snapshot.

// Bits of Subscribe::topics.
inline constexpr uint32_t kTopicGrants = 1;  // GrantSnapshot + GrantDelta
inline constexpr uint32_t kTopicFeed = 2;    // FeedEvent (knocks, rejections, changes)
inline constexpr uint32_t kKnownTopics = kTopicGrants | kTopicFeed;

struct Subscribe {
  static constexpr MessageType type = MessageType::subscribe;
  static constexpr Sender sender = Sender::client;
  static constexpr const char* name = "Subscribe";

  uint32_t request_id = 0;
  uint32_t topics = kTopicGrants;  // non-zero, only known bits

  void encode(Writer& w) const;
  static Result<Subscribe> decode(Reader& r);
  friend bool operator==(const Subscribe&, const Subscribe&) = default;
};

// One active grant as subscribers see it. The profile's match (addresses, ports) comes
// from the config by name; the mark travels along so a subscriber never marks with a
// stale value after a reload that changed it.
struct GrantRecord {
  uint64_t id = 0;  // the grants table's primary key, never 0
  IpAddr source;
  std::string profile;  // never empty
  GrantMethod method = GrantMethod::knock;
  std::string origin;      // door name, SPA stanza, admin user: for display
  int64_t created_ns = 0;  // CLOCK_REALTIME ns since the Unix epoch
  int64_t expires_ns = 0;
  uint32_t fwmark = 0;
  uint32_t fwmark_mask = 0;
  friend bool operator==(const GrantRecord&, const GrantRecord&) = default;
};

struct GrantSnapshot {
  static constexpr MessageType type = MessageType::grant_snapshot;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "GrantSnapshot";

  uint32_t request_id = 0;  // the Subscribe's
  uint64_t seq = 0;
  bool first = true;
  bool last = true;
  std::vector<GrantRecord> grants;

  void encode(Writer& w) const;
  static Result<GrantSnapshot> decode(Reader& r);
  friend bool operator==(const GrantSnapshot&, const GrantSnapshot&) = default;
};

enum class GrantOp : uint8_t {
  add = 1,      // a new grant is active (its kernel state installed)
  extend = 2,   // same id, later expires_ns
  remove = 3,   // expired, revoked or failed: `reason` says which
  pending = 4,  // a knock/SPA from `source` for `profile` is being committed: hold its
                // NEW flows until add, remove or expires_ns (a short deadline), then drop
};
const char* grant_op_name(GrantOp op);

struct GrantDelta {
  static constexpr MessageType type = MessageType::grant_delta;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "GrantDelta";

  uint64_t seq = 0;
  GrantOp op = GrantOp::add;
  GrantRecord grant;   // for pending: id 0, source, profile, expires_ns = hold deadline
  std::string reason;  // remove: "expired", "revoked by NAME", "failed: WHY"

  void encode(Writer& w) const;
  static Result<GrantDelta> decode(Reader& r);
  friend bool operator==(const GrantDelta&, const GrantDelta&) = default;
};

// A line of the live feed (webd's console): knocks, SPA results, rejections, grant
// changes. `detail_json` is one JSON object, as the audit log stores it.
struct FeedEvent {
  static constexpr MessageType type = MessageType::feed_event;
  static constexpr Sender sender = Sender::server;
  static constexpr const char* name = "FeedEvent";

  uint64_t audit_id = 0;  // the audit row, 0 if the event is not audited (rate-limited)
  int64_t time_ns = 0;
  std::string kind;  // "knock", "spa", "reject", "grant", "extend", "revoke", "expire", ...
  std::optional<IpAddr> source;
  std::string detail_json;

  void encode(Writer& w) const;
  static Result<FeedEvent> decode(Reader& r);
  friend bool operator==(const FeedEvent&, const FeedEvent&) = default;
};

using Message = std::variant<Hello, Welcome, Refused, Ping, Pong, KnockEvent, EventAck,
                             StatusRequest, StatusReply, ControlRequest, ControlReply, DoorSequence,
                             Subscribe, GrantSnapshot, GrantDelta, FeedEvent>;

MessageType message_type(const Message& m);
const char* message_name(const Message& m);
Sender message_sender(const Message& m);

// Appends one frame for `m` to `out`. Fails (and leaves `out` as it was) if the frame's
// length field would exceed `max_frame_bytes`.
Result<Ok> append_frame(std::vector<uint8_t>& out, const Message& m,
                        size_t max_frame_bytes = kDefaultMaxFrameBytes);
Result<std::vector<uint8_t>> encode_frame(const Message& m,
                                          size_t max_frame_bytes = kDefaultMaxFrameBytes);

// What decoding produced: a message, or why not. `error == none && !message` only comes
// from FrameReader::next and means "need more bytes".
struct DecodeResult {
  std::optional<Message> message;
  WireError error = WireError::none;
  std::string detail;  // where: "KnockEvent.door", "length 70000 > 65536"

  bool ok() const { return message.has_value(); }
  bool failed() const { return error != WireError::none; }
  // "truncated (KnockEvent.door)": what log lines say.
  std::string reason() const;
};

// Validates a frame's length field against the channel's maximum.
WireError check_frame_length(uint32_t length, size_t max_frame_bytes);

// Decodes what follows the length prefix (version, type, flags, body), exactly.
DecodeResult decode_payload(std::span<const uint8_t> payload);

// Decodes a buffer holding exactly one whole frame, length prefix included.
DecodeResult decode_frame(std::span<const uint8_t> frame,
                          size_t max_frame_bytes = kDefaultMaxFrameBytes);

// Cuts a byte stream into frames. Memory stays below one maximal frame plus a read
// chunk: an oversized length fails as soon as the prefix is in, before the body is read.
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame_bytes);

  // Free space to receive into; call next() until it needs more before the next prepare().
  std::span<uint8_t> prepare();
  void commit(size_t n);

  // The next complete frame, or need-more (no message, no error), or an error after
  // which the stream cannot be resynchronised.
  DecodeResult next();
  size_t buffered() const { return end_ - begin_; }
  size_t max_frame_bytes() const { return max_frame_; }

 private:
  static constexpr size_t kReadChunk = size_t{16} * 1024;
  std::vector<uint8_t> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t max_frame_;
};

}  // namespace kg::ipc
