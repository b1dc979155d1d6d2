#include "ipc/messages.h"

#include <cstring>
#include <type_traits>

namespace kg::ipc {

namespace {

constexpr uint8_t kStatusKindCounter = 1;
constexpr uint8_t kStatusKindText = 2;

// Smallest encodings of list elements, for Reader::count.
constexpr size_t kMinStringBytes = 4;  // u32 length, no bytes
constexpr size_t kMinStatusEntryBytes = kMinStringBytes + 1 + kMinStringBytes;  // key, kind, text
constexpr size_t kMinKnockBytes = 2 + 1;  // u16 port, u8 proto
// id, source (family + 4), profile, method, origin, created, expires, mark, mask
constexpr size_t kMinGrantBytes = 8 + 5 + kMinStringBytes + 1 + kMinStringBytes + 8 + 8 + 4 + 4;

bool valid_role(uint8_t v) {
  return v >= 1 && v <= 4;
}
bool valid_method(uint8_t v) {
  return v == 1 || v == 2;
}
bool valid_grant_method(uint8_t v) {
  return v >= 1 && v <= 4;
}
bool valid_grant_op(uint8_t v) {
  return v >= 1 && v <= 4;
}

void encode_grant(Writer& w, const GrantRecord& g) {
  w.u64(g.id);
  w.ip_addr(g.source);
  w.string(g.profile);
  w.u8(static_cast<uint8_t>(g.method));
  w.string(g.origin);
  w.i64(g.created_ns);
  w.i64(g.expires_ns);
  w.u32(g.fwmark);
  w.u32(g.fwmark_mask);
}

// `pending` grants (GrantOp::pending) have no id yet.
GrantRecord decode_grant(Reader& r, bool id_may_be_zero) {
  GrantRecord g;
  g.id = r.u64("grant.id");
  if (r.ok() && g.id == 0 && !id_may_be_zero) (void)r.fail(WireError::bad_value, "grant.id");
  g.source = r.ip_addr("grant.source");
  g.profile = r.string("grant.profile");
  if (r.ok() && g.profile.empty()) (void)r.fail(WireError::bad_value, "grant.profile");
  const uint8_t method = r.u8("grant.method");
  if (r.ok() && !valid_grant_method(method)) (void)r.fail(WireError::bad_enum, "grant.method");
  g.method = static_cast<GrantMethod>(method);
  g.origin = r.string("grant.origin");
  g.created_ns = r.i64("grant.created_ns");
  g.expires_ns = r.i64("grant.expires_ns");
  g.fwmark = r.u32("grant.fwmark");
  g.fwmark_mask = r.u32("grant.fwmark_mask");
  if (r.ok() && (g.fwmark & ~g.fwmark_mask) != 0)
    (void)r.fail(WireError::bad_value, "grant.fwmark");
  return g;
}

// Every alternative must have its own type byte, or decoding would be ambiguous.
template <size_t I, size_t J>
constexpr bool types_distinct() {
  if constexpr (I >= std::variant_size_v<Message>) {
    return true;
  } else if constexpr (J >= std::variant_size_v<Message>) {
    return types_distinct<I + 1, I + 2>();
  } else {
    return std::variant_alternative_t<I, Message>::type !=
               std::variant_alternative_t<J, Message>::type &&
           types_distinct<I, J + 1>();
  }
}
static_assert(types_distinct<0, 1>(), "two messages share a MessageType");

template <size_t I = 0>
DecodeResult decode_body(uint8_t type, Reader& r) {
  if constexpr (I == std::variant_size_v<Message>) {
    return DecodeResult{std::nullopt, WireError::bad_type, "type " + std::to_string(type)};
  } else {
    using T = std::variant_alternative_t<I, Message>;
    if (static_cast<uint8_t>(T::type) != type) return decode_body<I + 1>(type, r);
    auto decoded = T::decode(r);
    r.expect_end();
    if (!decoded.ok() || !r.ok()) {
      // The Reader holds the first failure, whether a field read or a decoder's check.
      const WireError why = r.ok() ? WireError::bad_value : r.error();
      const char* separator = why == WireError::trailing_bytes ? ": " : ".";
      std::string where = T::name;
      if (!r.error_detail().empty()) where += separator + r.error_detail();
      return DecodeResult{std::nullopt, why, std::move(where)};
    }
    return DecodeResult{Message{std::move(decoded.value())}, WireError::none, {}};
  }
}

}  // namespace

const char* role_name(Role r) {
  switch (r) {
    case Role::captured:
      return "captured";
    case Role::verdictd:
      return "verdictd";
    case Role::webd:
      return "webd";
    case Role::ctl:
      return "ctl";
  }
  return "unknown";
}

std::optional<Role> parse_role(std::string_view text) {
  for (const Role r : {Role::captured, Role::verdictd, Role::webd, Role::ctl}) {
    if (text == role_name(r)) return r;
  }
  return std::nullopt;
}

const char* knock_method_name(KnockMethod m) {
  return m == KnockMethod::spa ? "spa" : "knock";
}

const char* grant_method_name(GrantMethod m) {
  switch (m) {
    case GrantMethod::knock:
      return "knock";
    case GrantMethod::spa:
      return "spa";
    case GrantMethod::ctl:
      return "ctl";
    case GrantMethod::api:
      return "api";
  }
  return "unknown";
}

std::optional<GrantMethod> parse_grant_method(std::string_view text) {
  for (const GrantMethod m :
       {GrantMethod::knock, GrantMethod::spa, GrantMethod::ctl, GrantMethod::api}) {
    if (text == grant_method_name(m)) return m;
  }
  return std::nullopt;
}

const char* grant_op_name(GrantOp op) {
  switch (op) {
    case GrantOp::add:
      return "add";
    case GrantOp::extend:
      return "extend";
    case GrantOp::remove:
      return "remove";
    case GrantOp::pending:
      return "pending";
  }
  return "unknown";
}

// ---- Hello
void Hello::encode(Writer& w) const {
  w.u8(static_cast<uint8_t>(role));
  w.u8(protocol_version);
  w.u32(pid);
  w.u64(boot_id);
  w.u32(max_frame_bytes);
  w.string(program);
}

Result<Hello> Hello::decode(Reader& r) {
  Hello h;
  const uint8_t role = r.u8("role");
  if (r.ok() && !valid_role(role)) return r.fail(WireError::bad_enum, "role");
  h.role = static_cast<Role>(role);
  h.protocol_version = r.u8("protocol_version");
  h.pid = r.u32("pid");
  h.boot_id = r.u64("boot_id");
  h.max_frame_bytes = r.u32("max_frame_bytes");
  if (r.ok() && h.max_frame_bytes < kMinMaxFrameBytes) {
    return r.fail(WireError::bad_value, "max_frame_bytes");
  }
  h.program = r.string("program");
  if (!r.ok()) return r.as_error();
  return h;
}

// ---- Welcome
void Welcome::encode(Writer& w) const {
  w.u8(protocol_version);
  w.u32(server_pid);
  w.u64(server_boot_id);
  w.u64(session_id);
  w.u32(max_frame_bytes);
  w.string(server_program);
  w.string(software_version);
}

Result<Welcome> Welcome::decode(Reader& r) {
  Welcome m;
  m.protocol_version = r.u8("protocol_version");
  m.server_pid = r.u32("server_pid");
  m.server_boot_id = r.u64("server_boot_id");
  m.session_id = r.u64("session_id");
  m.max_frame_bytes = r.u32("max_frame_bytes");
  m.server_program = r.string("server_program");
  m.software_version = r.string("software_version");
  if (!r.ok()) return r.as_error();
  if (m.max_frame_bytes < kMinMaxFrameBytes) {
    return r.fail(WireError::bad_value, "max_frame_bytes");
  }
  return m;
}

// ---- Refused
void Refused::encode(Writer& w) const {
  w.string(reason);
}

Result<Refused> Refused::decode(Reader& r) {
  Refused m;
  m.reason = r.string("reason");
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- Ping / Pong
void Ping::encode(Writer& w) const {
  w.u64(nonce);
}

Result<Ping> Ping::decode(Reader& r) {
  Ping m;
  m.nonce = r.u64("nonce");
  if (!r.ok()) return r.as_error();
  return m;
}

void Pong::encode(Writer& w) const {
  w.u64(nonce);
}

Result<Pong> Pong::decode(Reader& r) {
  Pong m;
  m.nonce = r.u64("nonce");
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- KnockEvent
void KnockEvent::encode(Writer& w) const {
  w.u64(event_id);
  w.string(door);
  w.ip_addr(source);
  w.ip_addr(destination);
  w.i64(time_ns);
  w.u8(static_cast<uint8_t>(method));
  w.u32(config_generation);
  if (spa) {
    w.bytes(spa->replay_key);
    w.string(spa->user);
    w.count(spa->access.size());
    for (const auto& a : spa->access) {
      w.u8(a.proto);
      w.u16(a.port);
    }
    w.u32(spa->timeout_s);
  }
}

Result<KnockEvent> KnockEvent::decode(Reader& r) {
  KnockEvent e;
  e.event_id = r.u64("event_id");
  if (r.ok() && e.event_id == 0) return r.fail(WireError::bad_value, "event_id");
  e.door = r.string("door");
  if (r.ok() && e.door.empty()) return r.fail(WireError::bad_value, "door");
  e.source = r.ip_addr("source");
  e.destination = r.ip_addr("destination");
  if (r.ok() && e.source.family() != e.destination.family()) {
    return r.fail(WireError::bad_address, "destination");
  }
  e.time_ns = r.i64("time_ns");
  const uint8_t method = r.u8("method");
  if (r.ok() && !valid_method(method)) return r.fail(WireError::bad_enum, "method");
  e.method = static_cast<KnockMethod>(method);
  e.config_generation = r.u32("config_generation");
  if (r.ok() && r.remaining() != 0) {
    if (e.method != KnockMethod::spa) return r.fail(WireError::bad_value, "spa");
    SpaRequest s;
    const auto key = r.bytes("spa.replay_key");
    if (r.ok() && key.size() != s.replay_key.size()) {
      return r.fail(WireError::bad_value, "spa.replay_key");
    }
    if (r.ok()) std::copy(key.begin(), key.end(), s.replay_key.begin());
    s.user = r.string("spa.user");
    const size_t n = r.count(3, "spa.access");
    for (size_t i = 0; r.ok() && i < n; ++i) {
      SpaAccessItem a;
      a.proto = r.u8("spa.access.proto");
      a.port = r.u16("spa.access.port");
      s.access.push_back(a);
    }
    s.timeout_s = r.u32("spa.timeout_s");
    e.spa = std::move(s);
  }
  if (!r.ok()) return r.as_error();
  return e;
}

// ---- EventAck
void EventAck::encode(Writer& w) const {
  w.u64(event_id);
}

Result<EventAck> EventAck::decode(Reader& r) {
  EventAck m;
  m.event_id = r.u64("event_id");
  if (r.ok() && m.event_id == 0) return r.fail(WireError::bad_value, "event_id");
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- Status
void StatusRequest::encode(Writer& w) const {
  w.u32(request_id);
}

Result<StatusRequest> StatusRequest::decode(Reader& r) {
  StatusRequest m;
  m.request_id = r.u32("request_id");
  if (!r.ok()) return r.as_error();
  return m;
}

void StatusReply::encode(Writer& w) const {
  w.u32(request_id);
  w.count(entries.size());
  for (const auto& e : entries) {
    w.string(e.key);
    if (const auto* counter = std::get_if<uint64_t>(&e.value)) {
      w.u8(kStatusKindCounter);
      w.u64(*counter);
    } else {
      w.u8(kStatusKindText);
      w.string(std::get<std::string>(e.value));
    }
  }
}

Result<StatusReply> StatusReply::decode(Reader& r) {
  StatusReply m;
  m.request_id = r.u32("request_id");
  const size_t n = r.count(kMinStatusEntryBytes, "entries");
  m.entries.reserve(n);
  for (size_t i = 0; i < n && r.ok(); ++i) {
    StatusEntry e;
    e.key = r.string("key");
    const uint8_t kind = r.u8("kind");
    if (!r.ok()) break;
    if (kind == kStatusKindCounter) {
      e.value = r.u64("value");
    } else if (kind == kStatusKindText) {
      e.value = r.string("value");
    } else {
      return r.fail(WireError::bad_enum, "kind");
    }
    m.entries.push_back(std::move(e));
  }
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- Control
void ControlRequest::encode(Writer& w) const {
  w.u32(request_id);
  w.string(command);
  w.count(args.size());
  for (const auto& a : args) w.string(a);
}

Result<ControlRequest> ControlRequest::decode(Reader& r) {
  ControlRequest m;
  m.request_id = r.u32("request_id");
  m.command = r.string("command");
  const size_t n = r.count(kMinStringBytes, "args");
  m.args.reserve(n);
  for (size_t i = 0; i < n && r.ok(); ++i) m.args.push_back(r.string("arg"));
  if (!r.ok()) return r.as_error();
  return m;
}

void ControlReply::encode(Writer& w) const {
  w.u32(request_id);
  w.u8(exit_code);
  w.string(out);
  w.string(err);
}

Result<ControlReply> ControlReply::decode(Reader& r) {
  ControlReply m;
  m.request_id = r.u32("request_id");
  m.exit_code = r.u8("exit_code");
  m.out = r.string("out");
  m.err = r.string("err");
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- DoorSequence
void DoorSequence::encode(Writer& w) const {
  w.string(door);
  w.u8(disabled ? 1 : 0);
  w.count(sequence.size());
  for (const Knock& k : sequence) {
    w.u16(k.port);
    w.u8(static_cast<uint8_t>(k.proto));
  }
}

Result<DoorSequence> DoorSequence::decode(Reader& r) {
  DoorSequence m;
  m.door = r.string("door");
  if (r.ok() && m.door.empty()) return r.fail(WireError::bad_value, "door");
  const uint8_t disabled = r.u8("disabled");
  if (r.ok() && disabled > 1) return r.fail(WireError::bad_enum, "disabled");
  m.disabled = disabled == 1;
  const size_t n = r.count(kMinKnockBytes, "sequence");
  // A disabled door has no sequence; an active one has 1..kMaxKnocks knocks.
  if (r.ok() && (m.disabled ? n != 0 : (n == 0 || n > kMaxKnocks))) {
    return r.fail(WireError::bad_value, "sequence");
  }
  m.sequence.reserve(n);
  for (size_t i = 0; i < n && r.ok(); ++i) {
    Knock k;
    k.port = r.u16("port");
    const uint8_t proto = r.u8("proto");
    if (r.ok() && proto != static_cast<uint8_t>(Proto::tcp) &&
        proto != static_cast<uint8_t>(Proto::udp)) {
      return r.fail(WireError::bad_enum, "proto");
    }
    k.proto = static_cast<Proto>(proto);
    m.sequence.push_back(k);
  }
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- Subscribe
void Subscribe::encode(Writer& w) const {
  w.u32(request_id);
  w.u32(topics);
}

Result<Subscribe> Subscribe::decode(Reader& r) {
  Subscribe m;
  m.request_id = r.u32("request_id");
  m.topics = r.u32("topics");
  if (r.ok() && (m.topics == 0 || (m.topics & ~kKnownTopics) != 0)) {
    return r.fail(WireError::bad_value, "topics");
  }
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- GrantSnapshot
void GrantSnapshot::encode(Writer& w) const {
  w.u32(request_id);
  w.u64(seq);
  w.u8(static_cast<uint8_t>((first ? 1 : 0) | (last ? 2 : 0)));
  w.count(grants.size());
  for (const auto& g : grants) encode_grant(w, g);
}

Result<GrantSnapshot> GrantSnapshot::decode(Reader& r) {
  GrantSnapshot m;
  m.request_id = r.u32("request_id");
  m.seq = r.u64("seq");
  const uint8_t bits = r.u8("chunk");
  if (r.ok() && bits > 3) return r.fail(WireError::bad_value, "chunk");
  m.first = (bits & 1) != 0;
  m.last = (bits & 2) != 0;
  const size_t n = r.count(kMinGrantBytes, "grants");
  m.grants.reserve(n);
  for (size_t i = 0; i < n && r.ok(); ++i) m.grants.push_back(decode_grant(r, false));
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- GrantDelta
void GrantDelta::encode(Writer& w) const {
  w.u64(seq);
  w.u8(static_cast<uint8_t>(op));
  encode_grant(w, grant);
  w.string(reason);
}

Result<GrantDelta> GrantDelta::decode(Reader& r) {
  GrantDelta m;
  m.seq = r.u64("seq");
  const uint8_t op = r.u8("op");
  if (r.ok() && !valid_grant_op(op)) return r.fail(WireError::bad_enum, "op");
  m.op = static_cast<GrantOp>(op);
  m.grant = decode_grant(r, m.op == GrantOp::pending);
  m.reason = r.string("reason");
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- FeedEvent
void FeedEvent::encode(Writer& w) const {
  w.u64(audit_id);
  w.i64(time_ns);
  w.string(kind);
  w.u8(source ? 1 : 0);
  if (source) w.ip_addr(*source);
  w.string(detail_json);
}

Result<FeedEvent> FeedEvent::decode(Reader& r) {
  FeedEvent m;
  m.audit_id = r.u64("audit_id");
  m.time_ns = r.i64("time_ns");
  m.kind = r.string("kind");
  if (r.ok() && m.kind.empty()) return r.fail(WireError::bad_value, "kind");
  const uint8_t has_source = r.u8("has_source");
  if (r.ok() && has_source > 1) return r.fail(WireError::bad_value, "has_source");
  if (has_source == 1) m.source = r.ip_addr("source");
  m.detail_json = r.string("detail_json");
  if (!r.ok()) return r.as_error();
  return m;
}

// ---- Frames
MessageType message_type(const Message& m) {
  return std::visit([](const auto& x) { return std::decay_t<decltype(x)>::type; }, m);
}

const char* message_name(const Message& m) {
  return std::visit([](const auto& x) { return std::decay_t<decltype(x)>::name; }, m);
}

Sender message_sender(const Message& m) {
  return std::visit([](const auto& x) { return std::decay_t<decltype(x)>::sender; }, m);
}

Result<Ok> append_frame(std::vector<uint8_t>& out, const Message& m, size_t max_frame_bytes) {
  const size_t start = out.size();
  out.resize(start + kLengthPrefixBytes);
  Writer w(out);
  w.u8(kProtocolVersion);
  w.u8(static_cast<uint8_t>(message_type(m)));
  w.u16(0);
  std::visit([&w](const auto& x) { x.encode(w); }, m);
  const size_t length = out.size() - start - kLengthPrefixBytes;
  if (length > max_frame_bytes || length > UINT32_MAX) {
    out.resize(start);
    return Error{std::string(message_name(m)) + ": frame of " + std::to_string(length) +
                 " bytes is over the limit of " + std::to_string(max_frame_bytes)};
  }
  for (size_t i = 0; i < kLengthPrefixBytes; ++i) {
    out[start + i] = static_cast<uint8_t>(length >> (8 * (kLengthPrefixBytes - 1 - i)));
  }
  return Ok{};
}

Result<std::vector<uint8_t>> encode_frame(const Message& m, size_t max_frame_bytes) {
  std::vector<uint8_t> out;
  auto appended = append_frame(out, m, max_frame_bytes);
  if (!appended) return appended.error();
  return out;
}

std::string DecodeResult::reason() const {
  std::string s = wire_error_name(error);
  if (!detail.empty()) s += " (" + detail + ")";
  return s;
}

WireError check_frame_length(uint32_t length, size_t max_frame_bytes) {
  if (length < kMinFrameLength) return WireError::undersized;
  if (length > max_frame_bytes) return WireError::oversized;
  return WireError::none;
}

DecodeResult decode_payload(std::span<const uint8_t> payload) {
  Reader r(payload);
  const uint8_t version = r.u8("version");
  const uint8_t type = r.u8("type");
  const uint16_t flags = r.u16("flags");
  if (!r.ok()) return DecodeResult{std::nullopt, r.error(), "frame header"};
  if (version != kProtocolVersion) {
    return DecodeResult{std::nullopt, WireError::bad_version, "version " + std::to_string(version)};
  }
  if (flags != 0) {
    return DecodeResult{std::nullopt, WireError::bad_flags, "flags " + std::to_string(flags)};
  }
  return decode_body(type, r);
}

namespace {
uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

DecodeResult length_error(WireError why, uint32_t length, size_t max_frame_bytes) {
  const std::string bound = why == WireError::oversized ? " > " + std::to_string(max_frame_bytes)
                                                        : " < " + std::to_string(kMinFrameLength);
  return DecodeResult{std::nullopt, why, "length " + std::to_string(length) + bound};
}
}  // namespace

DecodeResult decode_frame(std::span<const uint8_t> frame, size_t max_frame_bytes) {
  if (frame.size() < kLengthPrefixBytes) {
    return DecodeResult{std::nullopt, WireError::truncated, "length prefix"};
  }
  const uint32_t length = read_be32(frame.data());
  if (const WireError bad = check_frame_length(length, max_frame_bytes); bad != WireError::none) {
    return length_error(bad, length, max_frame_bytes);
  }
  const auto payload = frame.subspan(kLengthPrefixBytes);
  if (payload.size() < length) {
    return DecodeResult{std::nullopt, WireError::truncated,
                        "frame of " + std::to_string(length) + " bytes, " +
                            std::to_string(payload.size()) + " present"};
  }
  if (payload.size() > length) {
    return DecodeResult{std::nullopt, WireError::trailing_bytes,
                        std::to_string(payload.size() - length) + " bytes after the frame"};
  }
  return decode_payload(payload);
}

FrameReader::FrameReader(size_t max_frame_bytes) : max_frame_(max_frame_bytes) {}

std::span<uint8_t> FrameReader::prepare() {
  if (begin_ > 0) {
    // Whole frames have been consumed; what is left is at most one partial frame.
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  const size_t limit = max_frame_ + kLengthPrefixBytes + kReadChunk;
  if (buf_.size() - end_ < kReadChunk / 4) buf_.resize(std::min(limit, end_ + kReadChunk));
  return {buf_.data() + end_, buf_.size() - end_};
}

void FrameReader::commit(size_t n) {
  end_ += std::min(n, buf_.size() - end_);
}

DecodeResult FrameReader::next() {
  const size_t avail = end_ - begin_;
  if (avail < kLengthPrefixBytes) return {};
  const uint32_t length = read_be32(buf_.data() + begin_);
  if (const WireError bad = check_frame_length(length, max_frame_); bad != WireError::none) {
    return length_error(bad, length, max_frame_);
  }
  if (avail - kLengthPrefixBytes < length) return {};
  const std::span<const uint8_t> payload(buf_.data() + begin_ + kLengthPrefixBytes, length);
  begin_ += kLengthPrefixBytes + length;
  auto result = decode_payload(payload);
  if (begin_ == end_) begin_ = end_ = 0;
  return result;
}

}  // namespace kg::ipc
