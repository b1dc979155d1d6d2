// The message channel: codec round trips and every rejection reason, then real Unix
// sockets in a temp dir with server and client sharing one io_context.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/log.h"
#include "ipc/admission.h"
#include "ipc/backoff.h"
#include "ipc/client.h"
#include "ipc/messages.h"
#include "ipc/peer.h"
#include "ipc/server.h"
#include "ipc/wire.h"

namespace kg::ipc {
namespace {

namespace asio = boost::asio;
using Stream = asio::local::stream_protocol;
using boost::system::error_code;
using namespace std::chrono_literals;

IpAddr ip(const char* text) {
  return *IpAddr::parse(text);
}

GrantRecord sample_grant(uint64_t id, const char* source) {
  return GrantRecord{.id = id,
                     .source = ip(source),
                     .profile = "ssh-only",
                     .method = GrantMethod::knock,
                     .origin = "openSSH",
                     .created_ns = 1700000000000000000,
                     .expires_ns = 1700000030000000000,
                     .fwmark = 0x10000000,
                     .fwmark_mask = 0xff000000};
}

// One of each message, with awkward values where a field allows them.
std::vector<Message> sample_messages() {
  return {
      Hello{.role = Role::captured,
            .protocol_version = 1,
            .pid = 4242,
            .boot_id = 0x0123456789abcdefULL,
            .max_frame_bytes = 65536,
            .program = "knockgate-captured"},
      Welcome{.protocol_version = 1,
              .server_pid = 1,
              .server_boot_id = UINT64_MAX,
              .session_id = 7,
              .max_frame_bytes = 1U << 20,
              .server_program = "knockgate-policyd",
              .software_version = "0.1.0"},
      Refused{.reason = "role webd is not allowed for uid 1000"},
      Ping{.nonce = 0},
      Pong{.nonce = UINT64_MAX},
      KnockEvent{.event_id = 1,
                 .door = "ssh",
                 .source = ip("192.0.2.7"),
                 .destination = ip("198.51.100.1"),
                 .time_ns = 1'700'000'000'123'456'789,
                 .method = KnockMethod::knock,
                 .config_generation = 3},
      KnockEvent{.event_id = UINT64_MAX,
                 .door = "tür-ü",  // UTF-8 door names pass
                 .source = ip("2001:db8::7"),
                 .destination = ip("2001:db8::1"),
                 .time_ns = -1,
                 .method = KnockMethod::spa,
                 .config_generation = UINT32_MAX},
      KnockEvent{.event_id = 2,
                 .door = "gate",
                 .source = ip("192.0.2.8"),
                 .destination = ip("198.51.100.1"),
                 .time_ns = 1'795'429'819'000'000'000,
                 .method = KnockMethod::spa,
                 .config_generation = 1,
                 .spa = SpaRequest{.replay_key = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                                  12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                  23, 24, 25, 26, 27, 28, 29, 30, 31, 32},
                                   .user = "alice",
                                   .access = {{6, 22}, {17, 53}},
                                   .timeout_s = 30}},
      EventAck{.event_id = 99},
      StatusRequest{.request_id = 5},
      StatusReply{.request_id = 5,
                  .entries = {{"events_received", uint64_t{42}},
                              {"state", std::string("ok ✓")},
                              {"", std::string()}}},
      StatusReply{.request_id = 0, .entries = {}},
      ControlRequest{.request_id = 11, .command = "grant", .args = {"list", "", "--json"}},
      ControlRequest{.request_id = 12, .command = "status", .args = {}},
      ControlReply{.request_id = 11, .exit_code = 2, .out = "line 1\nline 2\n", .err = "oops"},
      DoorSequence{.door = "otp",
                   .disabled = false,
                   .sequence = {{kg::Proto::tcp, 7000}, {kg::Proto::udp, 65535}}},
      DoorSequence{.door = "otp", .disabled = true, .sequence = {}},
      Subscribe{.request_id = 3, .topics = kg::ipc::kTopicGrants | kg::ipc::kTopicFeed},
      GrantSnapshot{.request_id = 3, .seq = 0, .first = true, .last = true, .grants = {}},
      GrantSnapshot{.request_id = 3,
                    .seq = 77,
                    .first = false,
                    .last = true,
                    .grants = {sample_grant(1, "203.0.113.10"), sample_grant(2, "2001:db8::1")}},
      GrantDelta{
          .seq = 78, .op = GrantOp::add, .grant = sample_grant(9, "198.51.100.7"), .reason = ""},
      GrantDelta{.seq = 79,
                 .op = GrantOp::remove,
                 .grant = sample_grant(9, "198.51.100.7"),
                 .reason = "revoked by root"},
      GrantDelta{.seq = 80,
                 .op = GrantOp::pending,
                 .grant = sample_grant(0, "198.51.100.8"),
                 .reason = ""},
      FeedEvent{.audit_id = 12,
                .time_ns = 1700000000000000000,
                .kind = "knock",
                .source = ip("203.0.113.10"),
                .detail_json = R"({"door":"openSSH"})"},
      FeedEvent{.audit_id = 0,
                .time_ns = 1,
                .kind = "reject",
                .source = std::nullopt,
                .detail_json = "{}"},
  };
}

std::vector<uint8_t> frame_bytes(const Message& m) {
  auto f = encode_frame(m);
  EXPECT_TRUE(f.ok());
  return f.ok() ? *f : std::vector<uint8_t>{};
}

// A frame put together by hand: length prefix computed, everything else as given.
std::vector<uint8_t> raw_frame(uint8_t version, uint8_t type, uint16_t flags,
                               const std::vector<uint8_t>& body) {
  std::vector<uint8_t> out;
  Writer w(out);
  w.u32(static_cast<uint32_t>(4 + body.size()));
  w.u8(version);
  w.u8(type);
  w.u16(flags);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<uint8_t> body_of(const std::function<void(Writer&)>& fill) {
  std::vector<uint8_t> out;
  Writer w(out);
  fill(w);
  return out;
}

uint8_t type_byte(MessageType t) {
  return static_cast<uint8_t>(t);
}

// A KnockEvent body with every field under the caller's control.
std::vector<uint8_t> knock_body(uint64_t id, const std::string& door, uint8_t src_family,
                                uint8_t dst_family, uint8_t method) {
  return body_of([&](Writer& w) {
    w.u64(id);
    w.string(door);
    w.u8(src_family);
    for (int i = 0; i < (src_family == 6 ? 16 : 4); ++i) w.u8(10);
    w.u8(dst_family);
    for (int i = 0; i < (dst_family == 6 ? 16 : 4); ++i) w.u8(20);
    w.i64(5);
    w.u8(method);
    w.u32(1);
  });
}

void expect_rejected(const std::vector<uint8_t>& frame, WireError why,
                     const std::string& detail_part = "") {
  const DecodeResult r = decode_frame(frame);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error, why) << "got " << r.reason();
  if (!detail_part.empty()) {
    EXPECT_NE(r.detail.find(detail_part), std::string::npos) << r.reason();
  }
  // The stream decoder must agree with the one-shot decoder.
  FrameReader reader(kDefaultMaxFrameBytes);
  DecodeResult s;
  size_t fed = 0;
  while (fed < frame.size() && !s.failed()) {
    auto space = reader.prepare();
    const size_t n = std::min(space.size(), frame.size() - fed);
    std::memcpy(space.data(), frame.data() + fed, n);
    reader.commit(n);
    fed += n;
    do {
      s = reader.next();
    } while (s.ok());
  }
  // A short buffer is only "need more" on a stream, and bytes after a whole frame are
  // the start of the next one.
  const bool stream_waits =
      (why == WireError::truncated && (r.detail.find("present") != std::string::npos ||
                                       r.detail.find("length prefix") != std::string::npos)) ||
      (why == WireError::trailing_bytes && r.detail.find("after the frame") != std::string::npos);
  if (stream_waits) {
    EXPECT_FALSE(s.failed()) << s.reason();
  } else {
    EXPECT_EQ(s.error, why) << s.reason();
  }
}

// ---------------------------------------------------------------- codec

TEST(IpcCodec, EveryMessageTypeHasASample) {
  std::set<size_t> covered;
  for (const auto& m : sample_messages()) covered.insert(m.index());
  EXPECT_EQ(covered.size(), std::variant_size_v<Message>);
}

TEST(IpcCodec, RoundTripsEveryMessage) {
  for (const auto& m : sample_messages()) {
    const auto bytes = frame_bytes(m);
    ASSERT_GE(bytes.size(), kFrameHeaderBytes);
    EXPECT_EQ(bytes[4], kProtocolVersion);
    EXPECT_EQ(bytes[5], static_cast<uint8_t>(message_type(m)));
    const DecodeResult r = decode_frame(bytes);
    ASSERT_TRUE(r.ok()) << message_name(m) << ": " << r.reason();
    EXPECT_TRUE(*r.message == m) << message_name(m);
    // Encoding is canonical: decode then encode gives the same bytes.
    EXPECT_EQ(frame_bytes(*r.message), bytes) << message_name(m);
  }
}

TEST(IpcCodec, KnockEventLayoutIsAsDocumented) {
  const KnockEvent e{.event_id = 0x0102030405060708ULL,
                     .door = "ab",
                     .source = ip("192.0.2.1"),
                     .destination = ip("192.0.2.2"),
                     .time_ns = 0x1122334455667788LL,
                     .method = KnockMethod::spa,
                     .config_generation = 0xA0B0C0D0};
  // clang-format off
  const std::vector<uint8_t> expected = {
      0, 0, 0, 41,                          // length of what follows
      1, 6, 0, 0,                           // version, type KnockEvent, flags
      1, 2, 3, 4, 5, 6, 7, 8,               // event id
      0, 0, 0, 2, 'a', 'b',                 // door
      4, 192, 0, 2, 1,                      // source
      4, 192, 0, 2, 2,                      // destination
      0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  // time
      2,                                    // method spa
      0xA0, 0xB0, 0xC0, 0xD0};              // config generation
  // clang-format on
  EXPECT_EQ(frame_bytes(e), expected);
}

TEST(IpcCodec, StreamReaderSplitsFramesFedOneByteAtATime) {
  std::vector<uint8_t> stream;
  const auto samples = sample_messages();
  for (const auto& m : samples) ASSERT_TRUE(append_frame(stream, m).ok());
  FrameReader reader(kDefaultMaxFrameBytes);
  std::vector<Message> got;
  for (const uint8_t byte : stream) {
    auto space = reader.prepare();
    ASSERT_FALSE(space.empty());
    space[0] = byte;
    reader.commit(1);
    for (;;) {
      DecodeResult r = reader.next();
      ASSERT_FALSE(r.failed()) << r.reason();
      if (!r.ok()) break;
      got.push_back(std::move(*r.message));
    }
  }
  ASSERT_EQ(got.size(), samples.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(got[i] == samples[i]) << i;
  EXPECT_EQ(reader.buffered(), 0U);
}

TEST(IpcCodec, StreamReaderRejectsOversizedLengthBeforeTheBody) {
  FrameReader reader(2048);
  auto space = reader.prepare();
  const uint8_t prefix[4] = {0, 0, 0x08, 0x01};  // 2049
  std::memcpy(space.data(), prefix, 4);
  reader.commit(4);
  const DecodeResult r = reader.next();
  EXPECT_EQ(r.error, WireError::oversized);
  EXPECT_EQ(r.detail, "length 2049 > 2048");
}

TEST(IpcCodec, RejectsTruncatedFrames) {
  const auto full = frame_bytes(sample_messages()[5]);
  // Fewer bytes than the length prefix announces.
  expect_rejected({full.begin(), full.end() - 1}, WireError::truncated, "present");
  expect_rejected({0, 0}, WireError::truncated, "length prefix");
  // A consistent length, but the body stops inside a field.
  const auto body = knock_body(1, "ssh", 4, 4, 1);
  for (size_t cut = 0; cut < body.size(); ++cut) {
    const std::vector<uint8_t> partial(body.begin(), body.begin() + static_cast<long>(cut));
    expect_rejected(raw_frame(1, type_byte(MessageType::knock_event), 0, partial),
                    WireError::truncated, "KnockEvent.");
  }
  // Header shorter than version/type/flags.
  expect_rejected({0, 0, 0, 2, 1, 4}, WireError::undersized, "length 2 < 4");
}

TEST(IpcCodec, RejectsOversizedFrames) {
  std::vector<uint8_t> frame =
      raw_frame(1, type_byte(MessageType::refused), 0,
                body_of([](Writer& w) { w.string(std::string(70000, 'x')); }));
  expect_rejected(frame, WireError::oversized, "> 65536");
  // The same frame is fine on a channel configured for bigger frames.
  EXPECT_TRUE(decode_frame(frame, 1 << 20).ok());
  // And the encoder refuses to produce it for the default limit, leaving output alone.
  std::vector<uint8_t> out = {9};
  auto appended = append_frame(out, Refused{std::string(70000, 'x')});
  EXPECT_FALSE(appended.ok());
  EXPECT_EQ(out, std::vector<uint8_t>{9});
}

TEST(IpcCodec, RejectsTrailingBytes) {
  auto body = body_of([](Writer& w) { w.u64(1); });
  body.push_back(0);
  expect_rejected(raw_frame(1, type_byte(MessageType::ping), 0, body), WireError::trailing_bytes,
                  "Ping: 1 bytes after the body");
  // Bytes after a complete frame in a buffer meant to hold exactly one.
  auto two = frame_bytes(Ping{1});
  two.push_back(0);
  expect_rejected(two, WireError::trailing_bytes, "after the frame");
}

TEST(IpcCodec, RejectsBadVersionTypeAndFlags) {
  const auto ping_body = body_of([](Writer& w) { w.u64(1); });
  expect_rejected(raw_frame(0, type_byte(MessageType::ping), 0, ping_body), WireError::bad_version,
                  "version 0");
  expect_rejected(raw_frame(2, type_byte(MessageType::ping), 0, ping_body), WireError::bad_version,
                  "version 2");
  expect_rejected(raw_frame(1, 0, 0, ping_body), WireError::bad_type, "type 0");
  expect_rejected(raw_frame(1, 200, 0, ping_body), WireError::bad_type, "type 200");
  expect_rejected(raw_frame(1, 255, 0, ping_body), WireError::bad_type, "type 255");
  expect_rejected(raw_frame(1, type_byte(MessageType::ping), 1, ping_body), WireError::bad_flags);
  expect_rejected(raw_frame(1, type_byte(MessageType::ping), 0x8000, ping_body),
                  WireError::bad_flags);
}

TEST(IpcCodec, RejectsBadEnumValues) {
  auto hello_body = [](uint8_t role) {
    return body_of([role](Writer& w) {
      w.u8(role);
      w.u8(1);
      w.u32(1);
      w.u64(1);
      w.u32(65536);
      w.string("x");
    });
  };
  EXPECT_TRUE(decode_frame(raw_frame(1, type_byte(MessageType::hello), 0, hello_body(4))).ok());
  for (const uint8_t role : std::vector<uint8_t>{0, 5, 255}) {
    expect_rejected(raw_frame(1, type_byte(MessageType::hello), 0, hello_body(role)),
                    WireError::bad_enum, "Hello.role");
  }
  for (const uint8_t method : std::vector<uint8_t>{0, 3}) {
    expect_rejected(
        raw_frame(1, type_byte(MessageType::knock_event), 0, knock_body(1, "ssh", 4, 4, method)),
        WireError::bad_enum, "KnockEvent.method");
  }
  const auto status = body_of([](Writer& w) {
    w.u32(1);
    w.count(1);
    w.string("k");
    w.u8(3);  // neither counter nor text
    w.u64(0);
  });
  expect_rejected(raw_frame(1, type_byte(MessageType::status_reply), 0, status),
                  WireError::bad_enum, "StatusReply.kind");
}

TEST(IpcCodec, RejectsStringsBeyondTheBodyAndBadText) {
  const auto too_long = body_of([](Writer& w) {
    w.u32(1000);  // announces 1000 bytes, 3 follow
    w.u8('a');
    w.u8('b');
    w.u8('c');
  });
  expect_rejected(raw_frame(1, type_byte(MessageType::refused), 0, too_long), WireError::truncated,
                  "Refused.reason");
  const auto huge = body_of([](Writer& w) { w.u32(UINT32_MAX); });
  expect_rejected(raw_frame(1, type_byte(MessageType::refused), 0, huge), WireError::truncated,
                  "Refused.reason");

  const auto refused_with = [](std::string_view text) {
    return raw_frame(1, type_byte(MessageType::refused), 0,
                     body_of([text](Writer& w) { w.string(text); }));
  };
  expect_rejected(refused_with(std::string_view("a\0b", 3)), WireError::string_has_nul,
                  "Refused.reason");
  expect_rejected(refused_with("\xC0\xAF"), WireError::bad_utf8);          // overlong '/'
  expect_rejected(refused_with("\xED\xA0\x80"), WireError::bad_utf8);      // surrogate
  expect_rejected(refused_with("\x80"), WireError::bad_utf8);              // lone continuation
  expect_rejected(refused_with("\xE2\x82"), WireError::bad_utf8);          // cut sequence
  expect_rejected(refused_with("\xF4\x90\x80\x80"), WireError::bad_utf8);  // above U+10FFFF
  expect_rejected(refused_with("\xFF"), WireError::bad_utf8);
  EXPECT_TRUE(decode_frame(refused_with("€ 𝄞 ok")).ok());
}

TEST(IpcCodec, RejectsCountsTheBodyCannotHold) {
  const auto args = body_of([](Writer& w) {
    w.u32(1);
    w.string("grant");
    w.u32(1'000'000'000);  // a billion args in a few bytes
    w.string("x");
  });
  expect_rejected(raw_frame(1, type_byte(MessageType::control_request), 0, args),
                  WireError::count_too_large, "ControlRequest.args");
  const auto entries = body_of([](Writer& w) {
    w.u32(1);
    w.u32(2);  // two entries announced, room for one
    w.string("k");
    w.u8(1);
    w.u64(7);
  });
  expect_rejected(raw_frame(1, type_byte(MessageType::status_reply), 0, entries),
                  WireError::count_too_large, "StatusReply.entries");
}

TEST(IpcCodec, RejectsBadAddressesAndValues) {
  const uint8_t knock = type_byte(MessageType::knock_event);
  expect_rejected(raw_frame(1, knock, 0, knock_body(1, "ssh", 5, 4, 1)), WireError::bad_address,
                  "KnockEvent.source");
  expect_rejected(raw_frame(1, knock, 0, knock_body(1, "ssh", 0, 4, 1)), WireError::bad_address);
  expect_rejected(raw_frame(1, knock, 0, knock_body(1, "ssh", 4, 6, 1)), WireError::bad_address,
                  "KnockEvent.destination");
  EXPECT_TRUE(decode_frame(raw_frame(1, knock, 0, knock_body(1, "ssh", 6, 6, 1))).ok());
  expect_rejected(raw_frame(1, knock, 0, knock_body(0, "ssh", 4, 4, 1)), WireError::bad_value,
                  "KnockEvent.event_id");
  expect_rejected(raw_frame(1, knock, 0, knock_body(1, "", 4, 4, 1)), WireError::bad_value,
                  "KnockEvent.door");
  const auto tiny_limit = body_of([](Writer& w) {
    w.u8(1);
    w.u8(1);
    w.u32(1);
    w.u64(1);
    w.u32(16);  // max_frame_bytes below the 1 KiB floor
    w.string("x");
  });
  expect_rejected(raw_frame(1, type_byte(MessageType::hello), 0, tiny_limit), WireError::bad_value,
                  "Hello.max_frame_bytes");
}

// The fuzz seeds stay valid frames as the protocol grows: each decodes and re-encodes to
// the same bytes; stream_* seeds hold several frames back to back.
TEST(IpcCodec, FuzzSeedCorpusIsValid) {
  const std::filesystem::path dir =
      std::filesystem::path(KG_SOURCE_DIR) / "tests/fuzz/corpus/fuzz_ipc";
  std::set<MessageType> types;
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    ++files;
    FrameReader reader(kDefaultMaxFrameBytes);
    auto space = reader.prepare();
    ASSERT_LE(bytes.size(), space.size()) << entry.path();
    std::memcpy(space.data(), bytes.data(), bytes.size());
    reader.commit(bytes.size());
    std::vector<uint8_t> reencoded;
    size_t frames = 0;
    for (DecodeResult r = reader.next(); r.ok(); r = reader.next(), ++frames) {
      types.insert(message_type(*r.message));
      ASSERT_TRUE(append_frame(reencoded, *r.message).ok());
    }
    EXPECT_EQ(reader.buffered(), 0U) << entry.path();
    EXPECT_EQ(reencoded, bytes) << entry.path();
    EXPECT_EQ(frames > 1, entry.path().filename().string().starts_with("stream_")) << entry.path();
  }
  EXPECT_GE(files, std::variant_size_v<Message>);
  EXPECT_EQ(types.size(), std::variant_size_v<Message>) << "a message type has no seed";
}

TEST(IpcWire, PrimitivesAreBigEndianAndFailuresStick) {
  std::vector<uint8_t> out;
  Writer w(out);
  w.u16(0x0102);
  w.u32(0x03040506);
  w.i64(-2);
  w.bytes(std::vector<uint8_t>{0, 0xFF});
  EXPECT_EQ(out, (std::vector<uint8_t>{1,    2,    3,    4,    5, 6, 0xFF, 0xFF, 0xFF, 0xFF,
                                       0xFF, 0xFF, 0xFF, 0xFE, 0, 0, 0,    2,    0,    0xFF}));
  Reader r(out);
  EXPECT_EQ(r.u16("a"), 0x0102);
  EXPECT_EQ(r.u32("b"), 0x03040506U);
  EXPECT_EQ(r.i64("c"), -2);
  EXPECT_EQ(r.bytes("d"), (std::vector<uint8_t>{0, 0xFF}));
  r.expect_end();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.u8("past the end"), 0);
  EXPECT_EQ(r.error(), WireError::truncated);
  EXPECT_EQ(r.error_detail(), "past the end");
  r.fail(WireError::bad_enum, "later");  // the first failure is the one reported
  EXPECT_EQ(r.error(), WireError::truncated);
}

TEST(IpcWire, Utf8Validation) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("\xC2\x80"));           // U+0080
  EXPECT_TRUE(valid_utf8("\xEF\xBF\xBF"));       // U+FFFF
  EXPECT_TRUE(valid_utf8("\xF4\x8F\xBF\xBF"));   // U+10FFFF
  EXPECT_FALSE(valid_utf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(valid_utf8("\xE0\x9F\xBF"));      // overlong
  EXPECT_FALSE(valid_utf8("\xF0\x8F\xBF\xBF"));  // overlong
  EXPECT_FALSE(valid_utf8("\xC2"));
  EXPECT_FALSE(valid_utf8("\xC2\x41"));
  EXPECT_FALSE(valid_utf8("\xF8\x88\x80\x80\x80"));
}

// ---------------------------------------------------------------- back-off

TEST(IpcBackoff, DoublesFromInitialToTheCeiling) {
  Backoff b(BackoffPolicy{100ms, 5000ms, 0.0}, 1);
  std::vector<long> got;
  for (int i = 0; i < 9; ++i) got.push_back(static_cast<long>(b.next().count()));
  EXPECT_EQ(got, (std::vector<long>{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000}));
  b.reset();
  EXPECT_EQ(b.next(), 100ms);
  for (int i = 0; i < 100; ++i) EXPECT_LE(b.next(), 5000ms);  // no overflow after many tries
}

TEST(IpcBackoff, JitterShavesUpToItsFractionAndVaries) {
  Backoff b(BackoffPolicy{100ms, 5000ms, 0.2}, 12345);
  std::set<long> distinct;
  long base = 100;
  for (int i = 0; i < 8; ++i) {
    const long d = static_cast<long>(b.next().count());
    EXPECT_LE(d, base) << i;
    EXPECT_GE(d, base * 8 / 10) << i;
    distinct.insert(d * 10000 / base);
    base = std::min(base * 2, 5000L);
  }
  EXPECT_GT(distinct.size(), 3U);  // not the same fraction every time
  // Same seed, same schedule: retries are reproducible in tests.
  Backoff again(BackoffPolicy{100ms, 5000ms, 0.2}, 12345);
  Backoff first(BackoffPolicy{100ms, 5000ms, 0.2}, 12345);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(again.next(), first.next());
}

// ---------------------------------------------------------------- peer policy

TEST(IpcPeerPolicy, StandardRules) {
  const auto policy = standard_peer_policy(
      {.capture_uid = 998, .admin_gid = 50, .web_uid = 997, .verdict_uid = 996});
  auto decide = [&](Role role, uid_t uid, gid_t gid) {
    Hello h;
    h.role = role;
    return policy(h, PeerCredentials{.pid = 1, .uid = uid, .gid = gid}).accepted;
  };
  EXPECT_TRUE(decide(Role::captured, 998, 998));
  EXPECT_TRUE(decide(Role::captured, 0, 0));
  EXPECT_FALSE(decide(Role::captured, 997, 997));
  EXPECT_TRUE(decide(Role::verdictd, 0, 0));
  EXPECT_FALSE(decide(Role::verdictd, 998, 998));
  EXPECT_TRUE(decide(Role::verdictd, 996, 996));  // VerdictUser
  EXPECT_FALSE(decide(Role::captured, 996, 996));
  EXPECT_TRUE(decide(Role::webd, 997, 997));
  EXPECT_FALSE(decide(Role::webd, 0, 0));
  EXPECT_FALSE(decide(Role::webd, 998, 998));
  EXPECT_TRUE(decide(Role::ctl, 0, 0));
  EXPECT_TRUE(decide(Role::ctl, 4000, 50));   // peer's gid is the admin group
  EXPECT_FALSE(decide(Role::ctl, 4000, 51));  // no passwd entry, so no other groups

  const auto none = standard_peer_policy({});
  Hello h;
  h.role = Role::captured;
  const auto d = none(h, PeerCredentials{.pid = 1, .uid = 998, .gid = 998});
  EXPECT_FALSE(d.accepted);
  EXPECT_NE(d.reason.find("uid 998"), std::string::npos) << d.reason;
}

TEST(IpcPeerPolicy, UserInGroupUsesPrimaryAndSupplementaryGroups) {
  passwd* daemon_user = getpwnam("daemon");
  if (daemon_user != nullptr) {
    auto primary = user_in_group(daemon_user->pw_uid, daemon_user->pw_gid);
    ASSERT_TRUE(primary.ok());
    EXPECT_TRUE(*primary);
  }
  auto stranger = user_in_group(0, 65500);
  ASSERT_TRUE(stranger.ok());
  EXPECT_FALSE(*stranger);
  // A supplementary membership from the group database, where the system has one.
  setgrent();
  bool checked = false;
  while (group* g = getgrent()) {
    for (char** member = g->gr_mem; member && *member && !checked; ++member) {
      passwd* pw = getpwnam(*member);
      if (pw == nullptr || pw->pw_gid == g->gr_gid) continue;
      auto in = user_in_group(pw->pw_uid, g->gr_gid);
      ASSERT_TRUE(in.ok());
      EXPECT_TRUE(*in) << *member << " in " << g->gr_name;
      checked = true;
    }
    if (checked) break;
  }
  endgrent();
  if (!checked) GTEST_SKIP() << "no user with a supplementary group on this system";
}

TEST(IpcAdmission, PerUidLimitsBeforeAndAfterHello) {
  AdmissionControl a({.max_connections = 100,
                      .reserved_connections = 10,
                      .max_connections_per_uid = 3,
                      .max_handshaking_per_uid = 2},
                     {});
  const uid_t user = 1000;
  EXPECT_EQ(a.admit(user), Admission::admitted);
  EXPECT_EQ(a.admit(user), Admission::admitted);
  EXPECT_EQ(a.admit(user), Admission::uid_handshaking_limit);
  EXPECT_EQ(a.handshaking_of(user), 2U);
  // Another uid has its own allowance.
  EXPECT_EQ(a.admit(1001), Admission::admitted);
  // A Hello frees a handshaking slot, but the connection still counts for the uid.
  a.authenticated(user);
  EXPECT_EQ(a.admit(user), Admission::admitted);
  EXPECT_EQ(a.admit(user), Admission::uid_limit);
  EXPECT_EQ(a.connections_of(user), 3U);
  EXPECT_EQ(a.handshaking_of(user), 2U);
  a.release(user, true);
  EXPECT_EQ(a.connections_of(user), 2U);
  EXPECT_EQ(a.admit(user), Admission::uid_handshaking_limit);
  a.release(user, false);
  EXPECT_EQ(a.handshaking_of(user), 1U);
  EXPECT_EQ(a.admit(user), Admission::admitted);
  EXPECT_EQ(a.connections(), 3U);
  a.release(user, false);
  a.release(user, false);
  a.release(1001, false);
  EXPECT_EQ(a.connections(), 0U);
  EXPECT_EQ(a.connections_of(user), 0U);
  EXPECT_NE(a.describe(Admission::uid_handshaking_limit, user)
                .find("uid 1000 already has 2 connections before Hello"),
            std::string::npos);
}

TEST(IpcAdmission, ReservedSlotsStayForRootAndTheDaemonUsers) {
  const uid_t capture = 998;
  AdmissionControl a({.max_connections = 10,
                      .reserved_connections = 4,
                      .max_connections_per_uid = 8,
                      .max_handshaking_per_uid = 8},
                     {capture});
  EXPECT_TRUE(a.reserved(0));
  EXPECT_TRUE(a.reserved(capture));
  EXPECT_FALSE(a.reserved(65534));
  // A flood from many uids takes the six unreserved slots and no more.
  uid_t next = 40000;
  size_t admitted = 0;
  for (int i = 0; i < 50; ++i) admitted += a.admit(next++) == Admission::admitted ? 1U : 0U;
  EXPECT_EQ(admitted, 6U);
  EXPECT_EQ(a.admit(next), Admission::unreserved_full);
  // Root and captured's user still get in, until the server is full.
  EXPECT_EQ(a.admit(capture), Admission::admitted);
  EXPECT_EQ(a.admit(0), Admission::admitted);
  EXPECT_EQ(a.admit(0), Admission::admitted);
  EXPECT_EQ(a.admit(capture), Admission::admitted);
  EXPECT_EQ(a.admit(0), Admission::full);
  EXPECT_EQ(a.admit(capture), Admission::full);
  // One flood connection gone: still only for reserved uids, as 9 of 10 are in use.
  a.release(40000, false);
  EXPECT_EQ(a.admit(next), Admission::unreserved_full);
  EXPECT_EQ(a.admit(0), Admission::admitted);
}

TEST(IpcAdmission, RootHasNoPerUidLimitButDaemonUsersDo) {
  AdmissionControl a({.max_connections = 20,
                      .reserved_connections = 5,
                      .max_connections_per_uid = 2,
                      .max_handshaking_per_uid = 1},
                     {998});
  for (int i = 0; i < 12; ++i) EXPECT_EQ(a.admit(0), Admission::admitted);
  EXPECT_EQ(a.admit(998), Admission::admitted);
  EXPECT_EQ(a.admit(998), Admission::uid_handshaking_limit);
}

TEST(IpcAdmission, InvalidLimitsAreNamed) {
  EXPECT_FALSE(AdmissionControl::invalid(ConnectionLimits{}).has_value());
  EXPECT_TRUE(AdmissionControl::invalid({.max_connections = 0}).has_value());
  EXPECT_TRUE(
      AdmissionControl::invalid({.max_connections = 8, .reserved_connections = 8}).has_value());
  EXPECT_TRUE(AdmissionControl::invalid({.max_connections_per_uid = 0}).has_value());
  EXPECT_TRUE(
      AdmissionControl::invalid({.max_connections_per_uid = 2, .max_handshaking_per_uid = 3})
          .has_value());
}

TEST(IpcRejectionLog, BurstThenOneSummaryPerInterval) {
  RejectionLog log(3, 10000ms);
  const auto t0 = RejectionLog::Clock::time_point{} + 1h;
  EXPECT_FALSE(log.summary_due().has_value());
  size_t lines = 0;
  for (int i = 0; i < 1000; ++i) {
    lines += log.note(i % 2 == 0 ? Rejection::over_limit : Rejection::no_hello, 65534,
                      t0 + std::chrono::milliseconds(i))
                 ? 1U
                 : 0U;
  }
  log.note(Rejection::refused, 1000, t0 + 5s);
  EXPECT_EQ(lines, 3U);
  ASSERT_TRUE(log.summary_due().has_value());
  EXPECT_EQ(*log.summary_due(), t0 + 10s);
  EXPECT_FALSE(log.summary(t0 + 9s).has_value());
  const auto summary = log.summary(t0 + 10s);
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(*summary,
            "1001 unauthenticated connections closed in 10000 ms (500 over connection limits, "
            "500 without Hello in time, 1 refused at Hello); 998 not logged one by one; most "
            "from uid 65534 (1000), 2 uids in all");
  EXPECT_FALSE(log.summary_due().has_value());
  // The next rejection begins a new interval with a fresh burst.
  EXPECT_TRUE(log.note(Rejection::no_hello, 1, t0 + 11s));
  EXPECT_FALSE(log.summary_due().has_value());
}

TEST(IpcRejectionLog, NoSummaryWhenEveryLineWasWritten) {
  RejectionLog log(2, 1000ms);
  const auto t0 = RejectionLog::Clock::time_point{} + 1h;
  EXPECT_TRUE(log.note(Rejection::closed_early, 5, t0));
  EXPECT_TRUE(log.note(Rejection::closed_early, 5, t0 + 100ms));
  EXPECT_FALSE(log.summary_due().has_value());
  EXPECT_FALSE(log.summary(t0 + 2s).has_value());
  // An interval that ended unasked does not hold back the next one's lines.
  EXPECT_TRUE(log.note(Rejection::closed_early, 5, t0 + 3s));
  EXPECT_TRUE(log.note(Rejection::closed_early, 5, t0 + 3s));
  EXPECT_FALSE(log.note(Rejection::closed_early, 5, t0 + 3s));
  // A stopping server sums up what it has so far.
  const auto flushed = log.flush(t0 + 3500ms);
  ASSERT_TRUE(flushed.has_value());
  EXPECT_NE(flushed->find("3 unauthenticated connections closed in 500 ms (3 closed by the peer "
                          "before Hello); 1 not logged"),
            std::string::npos)
      << *flushed;
  EXPECT_FALSE(log.flush(t0 + 4s).has_value());
}

TEST(IpcPeerPolicy, DaemonUidsAreTheServiceUsersOnce) {
  EXPECT_EQ(daemon_uids({.capture_uid = 998, .admin_gid = 50, .web_uid = 997, .verdict_uid = 998}),
            (std::vector<uid_t>{998, 997}));
  EXPECT_TRUE(daemon_uids({}).empty());
}

// ---------------------------------------------------------------- sockets

bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(2ms);
  }
  return true;
}

void run_for(asio::io_context& io, std::chrono::milliseconds d) {
  io.restart();
  io.run_for(d);
}

// A hand-driven peer: writes raw bytes, reads without blocking the shared io_context.
class RawPeer {
 public:
  explicit RawPeer(asio::io_context& io) : socket_(io), reader_(kDefaultMaxFrameBytes) {}
  explicit RawPeer(Stream::socket s) : socket_(std::move(s)), reader_(kDefaultMaxFrameBytes) {
    socket_.non_blocking(true);
  }

  bool connect(const std::string& path) {
    error_code ec;
    socket_.connect(Stream::endpoint(path), ec);
    if (ec) return false;
    socket_.non_blocking(true);
    return true;
  }
  void write(const std::vector<uint8_t>& bytes) {
    error_code ec;
    asio::write(socket_, asio::buffer(bytes), ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  void write(const Message& m) { write(frame_bytes(m)); }
  void hello(Role role, uint32_t pid) {
    write(Hello{.role = role, .pid = pid, .boot_id = 77, .program = "raw-peer"});
  }

  // Takes whatever has arrived; notes EOF and malformed input.
  void poll() {
    while (!closed_) {
      auto space = reader_.prepare();
      error_code ec;
      const size_t n = socket_.read_some(asio::buffer(space.data(), space.size()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) return;
      if (ec) {
        closed_ = true;
        return;
      }
      reader_.commit(n);
      for (;;) {
        DecodeResult r = reader_.next();
        if (r.failed()) {
          closed_ = true;
          malformed_ = true;
          return;
        }
        if (!r.ok()) break;
        messages.push_back(std::move(*r.message));
      }
    }
  }
  bool closed() {
    poll();
    return closed_;
  }
  template <typename T>
  const T* first() {
    poll();
    for (const auto& m : messages) {
      if (const auto* t = std::get_if<T>(&m)) return t;
    }
    return nullptr;
  }

  std::vector<Message> messages;

 private:
  Stream::socket socket_;
  FrameReader reader_;
  bool closed_ = false;
  bool malformed_ = false;
};

class IpcSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kg-ipc-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/policyd.sock";
    log::set_level(log::Level::debug);
    log::set_sink([this](log::Level level, const std::string& line) {
      logs_.push_back(std::string(log::level_name(level)) + ": " + line);
    });
  }
  void TearDown() override {
    log::set_sink(nullptr);
    log::set_level(log::Level::info);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  ServerOptions server_options(PeerPolicy policy = nullptr) {
    ServerOptions o;
    o.socket_path = path_;
    o.program_name = "test-policyd";
    o.socket_group = getegid();
    o.policy = policy ? std::move(policy)
                      : [](const Hello&, const PeerCredentials&) { return PeerDecision::accept(); };
    return o;
  }
  ClientOptions client_options(Role role = Role::captured) {
    ClientOptions o;
    o.socket_path = path_;
    o.role = role;
    o.program_name = "test-client";
    o.backoff = BackoffPolicy{5ms, 20ms, 0.0};
    o.handshake_timeout = 1000ms;
    return o;
  }
  // Lines logged since the test began that contain `text`.
  size_t log_count(const std::string& text) const {
    size_t n = 0;
    for (const auto& l : logs_) n += l.find(text) != std::string::npos ? 1U : 0U;
    return n;
  }
  std::string all_logs() const {
    std::string s;
    for (const auto& l : logs_) s += l + "\n";
    return s;
  }

  asio::io_context io_;
  std::string dir_;
  std::string path_;
  std::vector<std::string> logs_;
};

// A server that records what it receives and acknowledges KnockEvents unless told not to.
struct Recorder {
  explicit Recorder(Server& server, bool ack = true) {
    server.on_message([this, ack](const SessionPtr& s, const Message& m) {
      if (const auto* e = std::get_if<KnockEvent>(&m)) {
        events.push_back(*e);
        boot_ids.insert(s->hello().boot_id);
        if (ack && (!should_ack || should_ack(e->event_id))) s->send(EventAck{e->event_id});
      }
      others.push_back(m);
    });
  }
  std::vector<KnockEvent> events;
  std::vector<Message> others;
  std::set<uint64_t> boot_ids;
  std::function<bool(uint64_t)> should_ack;
};

KnockEvent event_for(const std::string& door) {
  return KnockEvent{.door = door,
                    .source = ip("203.0.113.9"),
                    .destination = ip("198.51.100.1"),
                    .time_ns = 1'700'000'000'000'000'000,
                    .method = KnockMethod::knock,
                    .config_generation = 1};
}

TEST_F(IpcSocket, HandshakeSucceedsAndSocketFileIsSetUp) {
  Server server(io_, server_options());
  std::vector<std::pair<Hello, PeerCredentials>> opened;
  server.on_open([&](const SessionPtr& s) { opened.emplace_back(s->hello(), s->peer()); });
  ASSERT_TRUE(server.start().ok());

  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660U);
  EXPECT_EQ(st.st_gid, getegid());

  Client client(io_, client_options(Role::captured));
  std::vector<ClientState> states;
  client.on_state([&](ClientState s, const std::string&) { states.push_back(s); });
  ASSERT_TRUE(client.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return client.connected() && !opened.empty(); }));

  ASSERT_TRUE(client.welcome().has_value());
  EXPECT_EQ(client.welcome()->server_pid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(client.welcome()->server_boot_id, server.boot_id());
  EXPECT_EQ(client.welcome()->server_program, "test-policyd");
  EXPECT_EQ(client.welcome()->max_frame_bytes, kDefaultMaxFrameBytes);
  EXPECT_EQ(server.session_count(), 1U);
  EXPECT_EQ(opened[0].first.role, Role::captured);
  EXPECT_EQ(opened[0].first.pid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(opened[0].first.boot_id, client.boot_id());
  EXPECT_EQ(opened[0].first.program, "test-client");
  EXPECT_EQ(opened[0].second.pid, getpid());
  EXPECT_EQ(opened[0].second.uid, getuid());
  EXPECT_EQ(states, (std::vector<ClientState>{ClientState::connecting, ClientState::handshaking,
                                              ClientState::connected}));
  EXPECT_EQ(client.stats().connects, 1U);

  server.stop();
  EXPECT_NE(lstat(path_.c_str(), &st), 0) << "socket file left behind";
  ASSERT_TRUE(run_until(io_, [&] { return !client.connected(); }));
  EXPECT_EQ(log_count("lost connection to " + path_), 1U) << all_logs();
}

TEST_F(IpcSocket, PolicyCallbackRefusesWrongRole) {
  Server server(io_, server_options([](const Hello& h, const PeerCredentials&) {
                  return h.role == Role::webd ? PeerDecision::refuse("no webd here")
                                              : PeerDecision::accept();
                }));
  ASSERT_TRUE(server.start().ok());
  Client client(io_, client_options(Role::webd));
  std::vector<std::string> failures;
  client.on_state([&](ClientState s, const std::string& why) {
    if (s == ClientState::waiting) failures.push_back(why);
  });
  ASSERT_TRUE(client.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return failures.size() >= 3; }));
  EXPECT_EQ(failures[0], "refused by the server: no webd here");
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(server.session_count(), 0U);
  // The server says why once per attempt; the client only once for the whole run.
  EXPECT_GE(log_count("refusing session"), 3U) << all_logs();
  EXPECT_EQ(log_count("cannot connect to " + path_ + ": refused by the server: no webd here"), 1U)
      << all_logs();

  // Another role on the same server is still welcome.
  Client ok(io_, client_options(Role::captured));
  ASSERT_TRUE(ok.start().ok());
  EXPECT_TRUE(run_until(io_, [&] { return ok.connected(); }));
}

TEST_F(IpcSocket, PidMismatchIsRefused) {
  bool policy_called = false;
  Server server(io_, server_options([&](const Hello&, const PeerCredentials&) {
                  policy_called = true;
                  return PeerDecision::accept();
                }));
  ASSERT_TRUE(server.start().ok());
  RawPeer raw(io_);
  ASSERT_TRUE(raw.connect(path_));
  raw.hello(Role::ctl, static_cast<uint32_t>(getpid()) + 1);
  ASSERT_TRUE(run_until(io_, [&] { return raw.closed(); }));
  const Refused* refused = raw.first<Refused>();
  ASSERT_NE(refused, nullptr);
  EXPECT_NE(refused->reason.find("claims pid"), std::string::npos) << refused->reason;
  EXPECT_FALSE(policy_called);
  EXPECT_EQ(server.session_count(), 0U);
  EXPECT_EQ(log_count("refusing session"), 1U) << all_logs();
}

TEST_F(IpcSocket, MalformedFrameClosesOnlyThatConnection) {
  Server server(io_, server_options());
  Recorder recorder(server);
  ASSERT_TRUE(server.start().ok());
  Client good(io_, client_options());
  ASSERT_TRUE(good.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return good.connected(); }));

  // A peer that completes the handshake, then sends reserved flags.
  RawPeer bad(io_);
  ASSERT_TRUE(bad.connect(path_));
  bad.hello(Role::ctl, static_cast<uint32_t>(getpid()));
  ASSERT_TRUE(run_until(io_, [&] { return bad.first<Welcome>() != nullptr; }));
  bad.write(raw_frame(1, type_byte(MessageType::ping), 1, body_of([](Writer& w) { w.u64(1); })));
  ASSERT_TRUE(run_until(io_, [&] { return bad.closed(); }));
  EXPECT_EQ(log_count("malformed frame: bad flags"), 1U) << all_logs();
  EXPECT_EQ(log_count("(ctl pid " + std::to_string(getpid()) + " uid " + std::to_string(getuid()) +
                      " raw-peer): malformed frame: bad flags"),
            1U)
      << all_logs();

  // One that sends garbage instead of a Hello, with an absurd length.
  RawPeer garbage(io_);
  ASSERT_TRUE(garbage.connect(path_));
  garbage.write(std::vector<uint8_t>{0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3});
  ASSERT_TRUE(run_until(io_, [&] { return garbage.closed(); }));
  EXPECT_EQ(log_count("malformed frame: oversized"), 1U) << all_logs();

  // One that speaks out of turn: a server-only message.
  RawPeer rude(io_);
  ASSERT_TRUE(rude.connect(path_));
  rude.hello(Role::ctl, static_cast<uint32_t>(getpid()));
  rude.write(EventAck{.event_id = 1});
  ASSERT_TRUE(run_until(io_, [&] { return rude.closed(); }));
  EXPECT_EQ(log_count("EventAck may only come from the server"), 1U) << all_logs();

  // One that sends something else first.
  RawPeer early(io_);
  ASSERT_TRUE(early.connect(path_));
  early.write(Ping{.nonce = 3});
  ASSERT_TRUE(run_until(io_, [&] { return early.closed(); }));
  EXPECT_EQ(log_count("expected Hello, got Ping"), 1U) << all_logs();

  // The well-behaved client never noticed, and new ones are still served.
  EXPECT_TRUE(good.connected());
  good.send_event(event_for("ssh"));
  ASSERT_TRUE(run_until(io_, [&] { return good.stats().events_acked == 1; }));
  Client late(io_, client_options(Role::ctl));
  ASSERT_TRUE(late.start().ok());
  EXPECT_TRUE(run_until(io_, [&] { return late.connected(); }));
  EXPECT_EQ(server.session_count(), 2U);
}

TEST_F(IpcSocket, HandshakeTimeoutClosesSilentPeers) {
  auto options = server_options();
  options.handshake_timeout = 50ms;
  Server server(io_, options);
  ASSERT_TRUE(server.start().ok());
  RawPeer silent(io_);
  ASSERT_TRUE(silent.connect(path_));
  ASSERT_TRUE(run_until(
      io_, [&] { return silent.closed(); }, 2000ms));
  EXPECT_EQ(log_count("no Hello within 50 ms"), 1U) << all_logs();
}

TEST_F(IpcSocket, ClientQueuesEventsUntilTheServerAppears) {
  Client client(io_, client_options());
  ASSERT_TRUE(client.start().ok());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 50; ++i)
    ids.push_back(client.send_event(event_for("door" + std::to_string(i))));
  EXPECT_EQ(ids.front(), 1U);
  EXPECT_EQ(ids.back(), 50U);
  run_for(io_, 60ms);  // several failed attempts
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(client.stats().events_pending, 50U);

  Server server(io_, server_options());
  Recorder recorder(server);
  ASSERT_TRUE(server.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return client.stats().events_pending == 0; }));
  ASSERT_EQ(recorder.events.size(), 50U);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_EQ(recorder.events[i].event_id, i + 1);
    EXPECT_EQ(recorder.events[i].door, "door" + std::to_string(i));
    EXPECT_EQ(recorder.events[i].source, ip("203.0.113.9"));
  }
  EXPECT_EQ(recorder.boot_ids, std::set<uint64_t>{client.boot_id()});
  EXPECT_EQ(client.stats().events_acked, 50U);
  EXPECT_EQ(client.stats().events_resent, 0U);
  // Many failed attempts, one line about them, one about the connection.
  EXPECT_EQ(log_count("cannot connect to " + path_), 1U) << all_logs();
  EXPECT_EQ(log_count("connected to test-policyd"), 1U) << all_logs();
}

TEST_F(IpcSocket, UnacknowledgedEventsAreResentAfterServerRestart) {
  Client client(io_, client_options());
  ASSERT_TRUE(client.start().ok());
  std::vector<uint64_t> first_boot_ids;
  {
    Server first(io_, server_options());
    Recorder recorder(first);
    recorder.should_ack = [](uint64_t id) { return id % 2 == 1; };  // commits only odd ones
    ASSERT_TRUE(first.start().ok());
    for (int i = 0; i < 6; ++i) client.send_event(event_for("ssh"));
    ASSERT_TRUE(run_until(
        io_, [&] { return recorder.events.size() == 6 && client.stats().events_acked == 3; }));
    EXPECT_EQ(client.pending_event_ids(), (std::vector<uint64_t>{2, 4, 6}));
  }  // policyd goes away
  ASSERT_TRUE(run_until(io_, [&] { return !client.connected(); }));
  client.send_event(event_for("smtp"));  // id 7, queued while down

  Server second(io_, server_options());
  Recorder recorder(second);
  ASSERT_TRUE(second.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return client.stats().events_pending == 0; }));
  std::vector<uint64_t> got;
  for (const auto& e : recorder.events) got.push_back(e.event_id);
  EXPECT_EQ(got, (std::vector<uint64_t>{2, 4, 6, 7}));
  EXPECT_EQ(recorder.boot_ids, std::set<uint64_t>{client.boot_id()});  // dedup key intact
  EXPECT_EQ(client.stats().events_resent, 3U);
  EXPECT_EQ(client.stats().connects, 2U);
}

TEST_F(IpcSocket, FullQueueDropsTheOldestAndCountsThem) {
  auto options = client_options();
  options.max_queued_events = 4;
  Client client(io_, options);
  ASSERT_TRUE(client.start().ok());
  for (int i = 0; i < 10; ++i) client.send_event(event_for("ssh"));
  EXPECT_EQ(client.stats().events_dropped, 6U);
  EXPECT_EQ(client.pending_event_ids(), (std::vector<uint64_t>{7, 8, 9, 10}));
  EXPECT_EQ(log_count("event queue full (4 unacknowledged)"), 1U) << all_logs();

  Server server(io_, server_options());
  Recorder recorder(server);
  ASSERT_TRUE(server.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return client.stats().events_pending == 0; }));
  std::vector<uint64_t> got;
  for (const auto& e : recorder.events) got.push_back(e.event_id);
  EXPECT_EQ(got, (std::vector<uint64_t>{7, 8, 9, 10}));
  EXPECT_EQ(log_count("6 oldest unacknowledged events were dropped"), 1U) << all_logs();
}

TEST_F(IpcSocket, BackoffSpacesOutReconnectAttempts) {
  auto options = client_options();
  options.backoff = BackoffPolicy{10ms, 40ms, 0.0};
  Client client(io_, options);
  std::vector<std::chrono::steady_clock::time_point> attempts;
  client.on_state([&](ClientState s, const std::string&) {
    if (s == ClientState::connecting) attempts.push_back(std::chrono::steady_clock::now());
  });
  ASSERT_TRUE(client.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return attempts.size() >= 6; }));
  // Gaps follow 10, 20, 40, 40, 40 ms (timers never fire early).
  const long expected[] = {10, 20, 40, 40, 40};
  for (size_t i = 1; i < 6; ++i) {
    const auto gap =
        std::chrono::duration_cast<std::chrono::milliseconds>(attempts[i] - attempts[i - 1]);
    EXPECT_GE(gap.count(), expected[i - 1]) << "attempt " << i;
    EXPECT_LT(gap.count(), expected[i - 1] + 200) << "attempt " << i;
  }
  // Connecting resets the schedule: after a drop the first retry comes quickly again.
  Server server(io_, server_options());
  ASSERT_TRUE(server.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return client.connected(); }));
  server.stop();
  attempts.clear();
  ASSERT_TRUE(run_until(io_, [&] { return attempts.size() >= 2; }));
  EXPECT_LT(attempts[1] - attempts[0], 40ms + 200ms);
}

TEST_F(IpcSocket, OneShotClientStopsAfterAFailedAttempt) {
  auto options = client_options(Role::ctl);
  options.reconnect = false;
  Client client(io_, options);
  std::string why;
  client.on_state([&](ClientState s, const std::string& detail) {
    if (s == ClientState::stopped) why = detail;
  });
  ASSERT_TRUE(client.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return client.state() == ClientState::stopped; }));
  EXPECT_NE(why.find("connect:"), std::string::npos) << why;
}

TEST_F(IpcSocket, ControlAndStatusTravelBothWays) {
  Server server(io_, server_options());
  SessionPtr captured_session;
  server.on_open([&](const SessionPtr& s) {
    if (s->role() == Role::captured) captured_session = s;
  });
  std::vector<StatusReply> status_replies;
  server.on_message([&](const SessionPtr& s, const Message& m) {
    if (const auto* req = std::get_if<ControlRequest>(&m)) {
      std::string out = req->command;
      for (const auto& a : req->args) out += " " + a;
      s->send(ControlReply{.request_id = req->request_id, .exit_code = 0, .out = out, .err = ""});
    } else if (const auto* reply = std::get_if<StatusReply>(&m)) {
      status_replies.push_back(*reply);
    }
  });
  ASSERT_TRUE(server.start().ok());

  Client ctl(io_, client_options(Role::ctl));
  std::vector<ControlReply> replies;
  ctl.on_message([&](const Message& m) {
    if (const auto* r = std::get_if<ControlReply>(&m)) replies.push_back(*r);
  });
  EXPECT_FALSE(ctl.send(ControlRequest{}));  // not connected yet
  ASSERT_TRUE(ctl.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return ctl.connected(); }));
  ASSERT_TRUE(ctl.send(ControlRequest{.request_id = 9, .command = "grant", .args = {"list"}}));
  ASSERT_TRUE(run_until(io_, [&] { return !replies.empty(); }));
  EXPECT_EQ(replies[0].request_id, 9U);
  EXPECT_EQ(replies[0].out, "grant list");
  EXPECT_FALSE(ctl.send(KnockEvent{}));  // events only through send_event
  EXPECT_FALSE(ctl.send(EventAck{1}));   // not a client message

  // policyd asks captured for its counters.
  Client captured(io_, client_options(Role::captured));
  captured.on_message([&](const Message& m) {
    if (const auto* req = std::get_if<StatusRequest>(&m)) {
      captured.send(
          StatusReply{.request_id = req->request_id,
                      .entries = {{"knocks", uint64_t{12}}, {"iface", std::string("eth0")}}});
    }
  });
  ASSERT_TRUE(captured.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return captured_session != nullptr; }));
  ASSERT_TRUE(captured_session->send(StatusRequest{.request_id = 4}));
  ASSERT_TRUE(run_until(io_, [&] { return !status_replies.empty(); }));
  EXPECT_EQ(status_replies[0].request_id, 4U);
  ASSERT_EQ(status_replies[0].entries.size(), 2U);
  EXPECT_EQ(std::get<uint64_t>(status_replies[0].entries[0].value), 12U);
  // Handshake and client-only messages cannot be pushed through a session.
  EXPECT_FALSE(captured_session->send(Welcome{}));
  EXPECT_FALSE(captured_session->send(KnockEvent{}));
  EXPECT_TRUE(captured_session->is_open());
}

TEST_F(IpcSocket, SlowReaderIsDisconnectedInsteadOfBuffering) {
  auto options = server_options();
  options.max_write_queue_bytes = 64 * 1024;
  Server server(io_, options);
  SessionPtr session;
  std::string close_reason;
  server.on_open([&](const SessionPtr& s) { session = s; });
  server.on_close([&](const SessionPtr&, const std::string& why) { close_reason = why; });
  ASSERT_TRUE(server.start().ok());
  RawPeer lazy(io_);
  ASSERT_TRUE(lazy.connect(path_));
  lazy.hello(Role::webd, static_cast<uint32_t>(getpid()));
  ASSERT_TRUE(run_until(io_, [&] { return session != nullptr; }));
  // The peer never reads: kernel buffers fill, then the bounded queue, then the cut.
  const ControlReply big{.request_id = 1, .exit_code = 0, .out = std::string(8000, 'x'), .err = ""};
  size_t sent = 0;
  ASSERT_TRUE(run_until(io_, [&] {
    if (!session->send(big)) return true;
    ++sent;
    return false;
  }));
  EXPECT_FALSE(session->is_open());
  EXPECT_NE(close_reason.find("the peer is not reading"), std::string::npos) << close_reason;
  EXPECT_EQ(server.session_count(), 0U);
  EXPECT_GT(sent, 8U);
  EXPECT_FALSE(session->send(Ping{}));  // the handle outlives the connection safely
}

TEST_F(IpcSocket, StaleSocketIsReplacedButLiveOneIsNot) {
  {
    // A socket file left by a server that died.
    Stream::acceptor dead(io_, Stream::endpoint(path_));
  }
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  Server server(io_, server_options());
  ASSERT_TRUE(server.start().ok());
  EXPECT_EQ(log_count("removed stale socket"), 1U);

  Server rival(io_, server_options());
  auto started = rival.start();
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message.find("another server is listening"), std::string::npos);
  EXPECT_EQ(lstat(path_.c_str(), &st), 0);  // the rival did not remove it

  server.stop();
  const int fd = ::open(path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  Server onto_file(io_, server_options());
  auto refused = onto_file.start();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("not a socket"), std::string::npos);
}

TEST_F(IpcSocket, ServerChecksTheKernelsCredentialsOfOtherUsers) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  const uid_t nobody = 65534;
  const gid_t nogroup = 65534;
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  auto options = server_options(standard_peer_policy({.capture_uid = 4321,
                                                      .admin_gid = nogroup,
                                                      .web_uid = std::nullopt,
                                                      .verdict_uid = std::nullopt}));
  options.socket_group = nogroup;  // mode 0660: only root and nogroup may connect
  Server server(io_, options);
  ASSERT_TRUE(server.start().ok());

  // Child: become nobody, connect, say Hello as `role`, report what came back.
  enum Outcome { welcomed = 10, refused = 11, other = 12 };
  auto spawn = [&](Role role) {
    const pid_t child = fork();
    if (child != 0) return child;
    if (setgroups(0, nullptr) != 0 || setgid(nogroup) != 0 || setuid(nobody) != 0) _exit(other);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) _exit(other);
    std::vector<uint8_t> hello;
    if (!append_frame(
             hello, Hello{.role = role, .pid = static_cast<uint32_t>(getpid()), .program = "child"})
             .ok()) {
      _exit(other);
    }
    if (::write(fd, hello.data(), hello.size()) != static_cast<ssize_t>(hello.size())) _exit(other);
    FrameReader reader(kDefaultMaxFrameBytes);
    for (;;) {
      auto space = reader.prepare();
      const ssize_t n = ::read(fd, space.data(), space.size());
      if (n <= 0) _exit(other);
      reader.commit(static_cast<size_t>(n));
      DecodeResult r = reader.next();
      if (r.failed()) _exit(other);
      if (!r.ok()) continue;
      if (std::holds_alternative<Welcome>(*r.message)) _exit(welcomed);
      if (const auto* no = std::get_if<Refused>(&*r.message)) {
        _exit(no->reason.find("uid 65534") != std::string::npos ? refused : other);
      }
      _exit(other);
    }
  };
  auto outcome = [&](pid_t child) {
    int status = 0;
    pid_t done = 0;
    EXPECT_TRUE(run_until(io_, [&] { return (done = waitpid(child, &status, WNOHANG)) == child; }));
    return done == child && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(outcome(spawn(Role::captured)), refused) << all_logs();  // not the capture user
  EXPECT_EQ(outcome(spawn(Role::verdictd)), refused) << all_logs();  // not root
  EXPECT_EQ(outcome(spawn(Role::ctl)), welcomed) << all_logs();      // gid is the admin group
  EXPECT_EQ(log_count("(captured pid"), 1U) << all_logs();
}

TEST_F(IpcSocket, UnauthenticatedFloodFromOneUserIsCutAtAccept) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  const uid_t nobody = 65534;
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  auto options = server_options();
  options.socket_mode = 0666;
  options.limits = {.max_connections = 8,
                    .reserved_connections = 3,
                    .max_connections_per_uid = 4,
                    .max_handshaking_per_uid = 2};
  options.handshake_timeout = 500ms;
  options.rejection_log_burst = 2;
  options.rejection_log_interval = 200ms;
  Server server(io_, options);
  ASSERT_TRUE(server.start().ok());

  // Child: as nobody, open 20 connections and say nothing; report how many were turned
  // away with a Refused frame at once, then hold them until the parent is done.
  constexpr int kFlood = 20;
  int report[2];
  int done[2];
  ASSERT_EQ(pipe(report), 0);
  ASSERT_EQ(pipe(done), 0);
  const pid_t child = fork();
  if (child == 0) {
    close(report[0]);
    close(done[1]);
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(nobody) != 0) _exit(1);
    std::vector<int> fds;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    for (int i = 0; i < kFlood; ++i) {
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) _exit(2);
      fds.push_back(fd);
    }
    int refused = 0;
    for (int tries = 0; tries < 200 && refused < kFlood - 2; ++tries) {
      refused = 0;
      for (const int fd : fds) {
        char byte = 0;
        refused += ::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK) == 1 ? 1 : 0;
      }
      usleep(10000);
    }
    if (::write(report[1], &refused, sizeof refused) != sizeof refused) _exit(3);
    char ignored = 0;
    [[maybe_unused]] const ssize_t n = ::read(done[0], &ignored, 1);
    _exit(0);
  }
  close(report[1]);
  close(done[0]);
  fcntl(report[0], F_SETFL, O_NONBLOCK);
  int refused = -1;
  ASSERT_TRUE(run_until(io_, [&] {
    return ::read(report[0], &refused, sizeof refused) == static_cast<ssize_t>(sizeof refused);
  }));
  EXPECT_EQ(refused, kFlood - 2);
  EXPECT_EQ(server.connection_count(), 2U);

  // Root still gets in while nobody's two wait for their deadline.
  Client root(io_, client_options(Role::ctl));
  ASSERT_TRUE(root.start().ok());
  EXPECT_TRUE(run_until(io_, [&] { return root.connected(); }));
  EXPECT_TRUE(run_until(
      io_, [&] { return server.connection_count() == 1U; }, 2000ms));
  EXPECT_TRUE(run_until(
      io_, [&] { return log_count("not logged one by one") >= 1; }, 2000ms))
      << all_logs();
  close(done[1]);
  close(report[0]);
  int status = 0;
  EXPECT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  // Two lines one by one, the rest in the summary.
  EXPECT_EQ(log_count("closing a new connection (pid " + std::to_string(child) +
                      " uid 65534): uid "
                      "65534 already has 2 connections before Hello"),
            2U)
      << all_logs();
  EXPECT_EQ(
      log_count(path_ + ": 18 unauthenticated connections closed in 200 ms (18 over "
                        "connection limits); 16 not logged one by one; most from uid 65534 (18)"),
      1U)
      << all_logs();
  // The two admitted ones reached their deadline in a new interval, with lines of their own.
  EXPECT_EQ(log_count("uid 65534, before Hello): no Hello within 500 ms"), 2U) << all_logs();
  EXPECT_TRUE(root.connected());
}

TEST_F(IpcSocket, AcceptOutOfDescriptorsBacksOffLogsOnceAndRecovers) {
  Server server(io_, server_options());
  ASSERT_TRUE(server.start().ok());
  // Three peers wait in the backlog while the process has no descriptor to spare.
  std::vector<std::unique_ptr<RawPeer>> peers;
  for (int i = 0; i < 3; ++i) {
    peers.push_back(std::make_unique<RawPeer>(io_));
    ASSERT_TRUE(peers.back()->connect(path_));
  }
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  const int lowest_free = dup(0);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  run_for(io_, 350ms);
  const size_t during = server.connection_count();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_EQ(during, 0U);
  EXPECT_EQ(log_count("accept on " + path_ + ": Too many open files; retrying every 100 ms"), 1U)
      << all_logs();
  ASSERT_TRUE(run_until(io_, [&] { return server.connection_count() == 3U; }));
  // A few attempts in 350 ms, not a spin.
  const auto line = std::find_if(logs_.begin(), logs_.end(), [&](const std::string& l) {
    return l.find("accepting on " + path_ + " again after ") != std::string::npos;
  });
  ASSERT_NE(line, logs_.end()) << all_logs();
  const size_t at = line->find("again after ") + std::strlen("again after ");
  const int attempts = std::stoi(line->substr(at));
  EXPECT_GE(attempts, 2);
  EXPECT_LE(attempts, 6);
}

// A stand-in server that answers Hello with Welcome and then misbehaves on cue.
class FakeServer {
 public:
  FakeServer(asio::io_context& io, const std::string& path)
      : acceptor_(io, Stream::endpoint(path)) {
    acceptor_.non_blocking(true);
  }
  void poll() {
    error_code ec;
    Stream::socket s = acceptor_.accept(ec);
    if (!ec) peers_.push_back(std::make_unique<RawPeer>(std::move(s)));
    for (auto& p : peers_) {
      const size_t before = p->messages.size();
      p->poll();
      for (size_t i = before; i < p->messages.size(); ++i) {
        if (std::holds_alternative<Hello>(p->messages[i])) {
          p->write(Welcome{.server_pid = 1, .server_program = "fake", .software_version = "0"});
          if (after_welcome) p->write(*after_welcome);
        }
      }
    }
  }
  size_t accepted() const { return peers_.size(); }
  std::optional<Message> after_welcome;

 private:
  Stream::acceptor acceptor_;
  std::vector<std::unique_ptr<RawPeer>> peers_;
};

TEST_F(IpcSocket, ClientDropsAServerThatStopsAnsweringPings) {
  std::optional<FakeServer> fake(std::in_place, io_, path_);
  auto options = client_options();
  options.ping_interval = 20ms;
  Client client(io_, options);
  ASSERT_TRUE(client.start().ok());
  ASSERT_TRUE(run_until(io_, [&] {
    fake->poll();
    return client.connected();
  }));
  // The fake never answers the Ping: by the next interval the link is declared dead.
  ASSERT_TRUE(run_until(io_, [&] {
    fake->poll();
    return fake->accepted() >= 2;
  }));
  EXPECT_EQ(log_count("no Pong within 20 ms"), 1U) << all_logs();

  // Against a real server pings are answered and the connection stays.
  fake.reset();  // its connections close; the socket file stays, stale
  Server server(io_, server_options());
  ASSERT_TRUE(server.start().ok());
  ASSERT_TRUE(run_until(io_, [&] { return client.connected() && server.session_count() == 1; }));
  const auto connects = client.stats().connects;
  run_for(io_, 150ms);
  EXPECT_TRUE(client.connected());
  EXPECT_EQ(client.stats().connects, connects);
}

TEST_F(IpcSocket, ClientDropsAServerThatBreaksTheProtocol) {
  FakeServer fake(io_, path_);
  fake.after_welcome = KnockEvent{
      .event_id = 1, .door = "x", .source = ip("192.0.2.1"), .destination = ip("192.0.2.2")};
  Client client(io_, client_options());
  std::vector<Message> delivered;
  client.on_message([&](const Message& m) { delivered.push_back(m); });
  ASSERT_TRUE(client.start().ok());
  ASSERT_TRUE(run_until(io_, [&] {
    fake.poll();
    return fake.accepted() >= 2;
  }));
  EXPECT_TRUE(delivered.empty());
  EXPECT_GE(log_count("protocol error: unexpected KnockEvent from the server"), 1U) << all_logs();
}

}  // namespace
}  // namespace kg::ipc

namespace kg::ipc {
namespace {

TEST(IpcCodec, SpaBlockOnlyForSpaEventsAndReplayKeyIs32Bytes) {
  KnockEvent e{.event_id = 3,
               .door = "gate",
               .source = IpAddr::v4(0xc0000201),
               .destination = IpAddr::v4(0xc6336401),
               .time_ns = 1,
               .method = KnockMethod::spa,
               .config_generation = 1,
               .spa = SpaRequest{.user = "bob", .access = {{6, 22}}, .timeout_s = 0}};
  std::vector<uint8_t> frame;
  ASSERT_TRUE(append_frame(frame, Message{e}).ok());
  {
    FrameReader reader(kDefaultMaxFrameBytes);
    auto space = reader.prepare();
    std::memcpy(space.data(), frame.data(), frame.size());
    reader.commit(frame.size());
    auto r = reader.next();
    ASSERT_TRUE(r.ok()) << r.reason();
    EXPECT_EQ(std::get<KnockEvent>(*r.message), e);
  }
  e.method = KnockMethod::knock;
  frame.clear();
  ASSERT_TRUE(append_frame(frame, Message{e}).ok());
  FrameReader reader(kDefaultMaxFrameBytes);
  auto space = reader.prepare();
  std::memcpy(space.data(), frame.data(), frame.size());
  reader.commit(frame.size());
  auto r = reader.next();
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.error, WireError::bad_value);
  EXPECT_NE(r.reason().find("KnockEvent.spa"), std::string::npos) << r.reason();
}

// The committed fuzz seed knock_event_spa_request.bin is exactly this event (rewrite it
// with KG_WRITE_SPA_SEED=1 after changing the layout on purpose).
TEST(IpcCodec, SpaSeedIsTheDocumentedEvent) {
  KnockEvent e{.event_id = 2,
               .door = "gate",
               .source = IpAddr::v4(0xc0000208),
               .destination = IpAddr::v4(0xc6336401),
               .time_ns = 1'795'429'819'000'000'000,
               .method = KnockMethod::spa,
               .config_generation = 1,
               .spa = SpaRequest{.replay_key = {9, 9, 9},
                                 .user = "alice",
                                 .access = {{6, 22}, {17, 53}},
                                 .timeout_s = 30}};
  std::vector<uint8_t> frame;
  ASSERT_TRUE(append_frame(frame, Message{e}).ok());
  const std::string path =
      std::string(KG_SOURCE_DIR) + "/tests/fuzz/corpus/fuzz_ipc/knock_event_spa_request.bin";
  if (std::getenv("KG_WRITE_SPA_SEED") != nullptr) {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(frame.data()),
               static_cast<std::streamsize>(frame.size()));
  }
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> seed((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  EXPECT_EQ(seed, frame);
}

}  // namespace
}  // namespace kg::ipc
