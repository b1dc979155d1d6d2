#include "ipc/kernel_messages.h"

#include <type_traits>
#include <utility>

namespace kg::ipc {
namespace {

// id u64, source, profile string, expires i64: at least 8 + 5 + 4 + 8 bytes.
constexpr size_t kMinGrantBytes = 25;

void encode_grants(Writer& w, const std::vector<GrantInstall>& grants) {
  w.count(grants.size());
  for (const GrantInstall& g : grants) {
    w.u64(g.id);
    w.ip_addr(g.source);
    w.string(g.profile);
    w.i64(g.expires_ns);
  }
}

std::vector<GrantInstall> decode_grants(Reader& r) {
  const size_t n = r.count(kMinGrantBytes, "grants");
  std::vector<GrantInstall> out;
  if (!r.ok()) return out;
  out.reserve(n);
  for (size_t i = 0; i < n && r.ok(); ++i) {
    GrantInstall g;
    g.id = r.u64("grants.id");
    g.source = r.ip_addr("grants.source");
    g.profile = r.string("grants.profile");
    g.expires_ns = r.i64("grants.expires_ns");
    if (r.ok() && g.id == 0) r.fail(WireError::bad_value, "grants.id");
    if (r.ok() && g.profile.empty()) r.fail(WireError::bad_value, "grants.profile");
    out.push_back(std::move(g));
  }
  return out;
}

bool decode_bool(Reader& r, const char* field) {
  const uint8_t v = r.u8(field);
  if (r.ok() && v > 1) r.fail(WireError::bad_value, field);
  return v == 1;
}

void encode_body(Writer&, const EngineReady&) {}
void encode_body(Writer& w, const WriterReady& m) {
  w.string(m.features);
}
void encode_body(Writer& w, const GrantChunk& m) {
  encode_grants(w, m.grants);
}
// AddGrants and RemoveGrants: the request id, then the grants.
template <typename Request>
requires std::is_same_v<Request, AddGrants> || std::is_same_v<Request, RemoveGrants>
void encode_body(Writer& w, const Request& m) {
  w.u32(m.request_id);
  encode_grants(w, m.grants);
}
template <typename Request>
Request decode_grant_request(Reader& r) {
  Request m;
  m.request_id = r.u32("request_id");
  m.grants = decode_grants(r);
  return m;
}
void encode_body(Writer& w, const Reconcile& m) {
  w.u32(m.request_id);
  w.u8(m.reload ? 1 : 0);
  w.string(m.reason);
  encode_grants(w, m.grants);
}
void encode_body(Writer& w, const RunCommand& m) {
  w.u32(m.request_id);
  w.u64(m.job_id);
  w.string(m.door);
  w.u8(m.stop ? 1 : 0);
  w.ip_addr(m.source);
}
void encode_body(Writer& w, const KernelReply& m) {
  w.u32(m.request_id);
  w.u8(m.ok ? 1 : 0);
  w.u64(m.count);
  w.string(m.text);
}
void encode_body(Writer& w, const CommandExited& m) {
  w.u64(m.job_id);
  w.u8(m.exited ? 1 : 0);
  w.u32(static_cast<uint32_t>(m.code));
  w.u32(static_cast<uint32_t>(m.signal));
}
void encode_body(Writer& w, const ReconcileNeeded& m) {
  w.string(m.why);
}
void encode_body(Writer& w, const ReadConfig& m) {
  w.u32(m.request_id);
}
// The file's bytes as they are (bytes, not string: a config need not be UTF-8).
void encode_body(Writer& w, const ConfigText& m) {
  w.bytes({reinterpret_cast<const uint8_t*>(m.bytes.data()), m.bytes.size()});
}

KernelMessage decode_body(KernelMessageType type, Reader& r) {
  switch (type) {
    case KernelMessageType::writer_ready:
      return WriterReady{r.string("features")};
    case KernelMessageType::engine_ready:
      return EngineReady{};
    case KernelMessageType::grant_chunk:
      return GrantChunk{decode_grants(r)};
    case KernelMessageType::add_grants:
      return decode_grant_request<AddGrants>(r);
    case KernelMessageType::remove_grants:
      return decode_grant_request<RemoveGrants>(r);
    case KernelMessageType::reconcile: {
      Reconcile m;
      m.request_id = r.u32("request_id");
      m.reload = decode_bool(r, "reload");
      m.reason = r.string("reason");
      m.grants = decode_grants(r);
      return m;
    }
    case KernelMessageType::run_command: {
      RunCommand m;
      m.request_id = r.u32("request_id");
      m.job_id = r.u64("job_id");
      m.door = r.string("door");
      m.stop = decode_bool(r, "stop");
      m.source = r.ip_addr("source");
      if (r.ok() && m.door.empty()) r.fail(WireError::bad_value, "door");
      return m;
    }
    case KernelMessageType::reply: {
      KernelReply m;
      m.request_id = r.u32("request_id");
      m.ok = decode_bool(r, "ok");
      m.count = r.u64("count");
      m.text = r.string("text");
      return m;
    }
    case KernelMessageType::command_exited: {
      CommandExited m;
      m.job_id = r.u64("job_id");
      m.exited = decode_bool(r, "exited");
      m.code = static_cast<int32_t>(r.u32("code"));
      m.signal = static_cast<int32_t>(r.u32("signal"));
      return m;
    }
    case KernelMessageType::reconcile_needed:
      return ReconcileNeeded{r.string("why")};
    case KernelMessageType::read_config:
      return ReadConfig{r.u32("request_id")};
    case KernelMessageType::config_text: {
      const std::vector<uint8_t> bytes = r.bytes("bytes");
      return ConfigText{std::string(bytes.begin(), bytes.end())};
    }
  }
  r.fail(WireError::bad_type, "type");
  return EngineReady{};
}

bool known_type(uint8_t t) {
  return t >= static_cast<uint8_t>(KernelMessageType::writer_ready) &&
         t <= static_cast<uint8_t>(KernelMessageType::config_text);
}

}  // namespace

const char* kernel_message_name(const KernelMessage& m) {
  static constexpr const char* kNames[] = {"WriterReady",     "EngineReady",  "GrantChunk",
                                           "AddGrants",       "RemoveGrants", "Reconcile",
                                           "RunCommand",      "KernelReply",  "CommandExited",
                                           "ReconcileNeeded", "ReadConfig",   "ConfigText"};
  return kNames[m.index()];
}

Result<std::vector<uint8_t>> encode_kernel_message(const KernelMessage& m) {
  std::vector<uint8_t> out;
  Writer w(out);
  std::visit(
      [&w](const auto& msg) {
        w.u8(static_cast<uint8_t>(std::decay_t<decltype(msg)>::type));
        encode_body(w, msg);
      },
      m);
  if (out.size() > kKernelDatagramBytes) {
    return Error{std::string(kernel_message_name(m)) + " of " + std::to_string(out.size()) +
                 " bytes exceeds the " + std::to_string(kKernelDatagramBytes) +
                 "-byte datagram limit"};
  }
  return out;
}

Result<KernelMessage> decode_kernel_message(std::span<const uint8_t> datagram) {
  Reader r(datagram);
  const uint8_t type = r.u8("type");
  if (!r.ok()) return r.as_error();
  if (!known_type(type)) return Error{"unknown kernel request type " + std::to_string(type)};
  KernelMessage m = decode_body(static_cast<KernelMessageType>(type), r);
  r.expect_end();
  if (!r.ok()) {
    return Error{std::string(kernel_message_name(m)) + ": " + r.as_error().message};
  }
  return m;
}

template <typename Request>
std::vector<KernelMessage> split_grants(Request request, size_t chunk) {
  std::vector<KernelMessage> out;
  if (chunk == 0) chunk = 1;
  std::vector<GrantInstall> all = std::move(request.grants);
  size_t begin = 0;
  while (all.size() - begin > chunk) {
    GrantChunk c;
    c.grants.assign(
        std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(begin)),
        std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(begin + chunk)));
    out.emplace_back(std::move(c));
    begin += chunk;
  }
  request.grants.assign(std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(begin)),
                        std::make_move_iterator(all.end()));
  out.emplace_back(std::move(request));
  return out;
}

template std::vector<KernelMessage> split_grants(AddGrants, size_t);
template std::vector<KernelMessage> split_grants(RemoveGrants, size_t);
template std::vector<KernelMessage> split_grants(Reconcile, size_t);

}  // namespace kg::ipc
