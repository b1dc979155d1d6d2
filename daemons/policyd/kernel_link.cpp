#include "policyd/kernel_link.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/log.h"

namespace kg::policyd {
namespace {

namespace asio = boost::asio;

// A reconcile of a million grants takes seconds; anything longer is a writer that hangs.
constexpr int kCallTimeoutMs = 120'000;

// Grants per GrantChunk so that a datagram stays under the limit: id, source, expiry
// and the longest profile name among them.
size_t grants_per_chunk(std::span<const GrantInstall> grants) {
  size_t longest = 0;
  for (const auto& g : grants) longest = std::max(longest, g.profile.size());
  const size_t per_grant = 8 + 17 + 4 + longest + 8;
  return std::max<size_t>(1, (ipc::kKernelDatagramBytes - 64) / per_grant);
}

}  // namespace

KernelLink::KernelLink(asio::io_context& io, int fd) : io_(io), channel_(io, fd) {
  channel_.non_blocking(true);
}

KernelLink::~KernelLink() = default;

Result<std::unique_ptr<KernelLink>> KernelLink::open(asio::io_context& io, int fd,
                                                     std::chrono::milliseconds timeout) {
  std::unique_ptr<KernelLink> link(new KernelLink(io, fd));
  auto first = link->receive(static_cast<int>(timeout.count()));
  if (!first) return first.error();
  if (!*first) return Error{"the kernel writer did not answer"};
  auto* ready = std::get_if<ipc::WriterReady>(&**first);
  if (ready == nullptr) {
    return Error{std::string("the kernel writer sent ") + ipc::kernel_message_name(**first) +
                 " before WriterReady"};
  }
  link->features_ = ready->features;
  return link;
}

Result<Ok> KernelLink::send(const ipc::KernelMessage& m) {
  if (broken_) return Error{"the kernel writer is gone"};
  auto bytes = ipc::encode_kernel_message(m);
  if (!bytes) return bytes.error();
  for (;;) {
    const ssize_t n = ::send(channel_.native_handle(), bytes->data(), bytes->size(), MSG_NOSIGNAL);
    if (n >= 0) return Ok{};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // While the writer's side is full, keep reading ours: the writer may be waiting
      // for room to send us a notice before it reads on.
      pollfd p{channel_.native_handle(), POLLOUT | POLLIN, 0};
      if (::poll(&p, 1, kCallTimeoutMs) <= 0)
        return Error{"the kernel writer does not read its requests"};
      if ((p.revents & POLLIN) != 0) {
        auto incoming = receive(-1);
        if (!incoming) return incoming.error();
        if (*incoming) defer(std::move(**incoming));
      }
      continue;
    }
    return Error{std::string("kernel writer: ") + std::strerror(errno)};
  }
}

Result<std::optional<ipc::KernelMessage>> KernelLink::receive(int timeout_ms) {
  if (broken_) return Error{"the kernel writer is gone"};
  std::vector<uint8_t>& buf = receive_buf_;
  for (;;) {
    const ssize_t n = ::recv(channel_.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      auto m = ipc::decode_kernel_message({buf.data(), static_cast<size_t>(n)});
      if (!m) return Error{"kernel writer sent a bad message: " + m.error().message};
      return std::optional<ipc::KernelMessage>(std::move(*m));
    }
    if (n == 0) return Error{"the kernel writer is gone"};
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Error{std::string("kernel writer: ") + std::strerror(errno)};
    }
    if (timeout_ms < 0) return std::optional<ipc::KernelMessage>();
    pollfd p{channel_.native_handle(), POLLIN, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::optional<ipc::KernelMessage>();
  }
}

Result<ipc::KernelReply> KernelLink::call(std::vector<ipc::KernelMessage> datagrams, uint32_t id) {
  for (const auto& d : datagrams) {
    if (auto sent = send(d); !sent) {
      lose(sent.error().message);
      return sent.error();
    }
  }
  for (;;) {
    auto m = receive(kCallTimeoutMs);
    if (!m) {
      lose(m.error().message);
      return m.error();
    }
    if (!*m) return Error{"the kernel writer did not answer within 120 s"};
    if (auto* reply = std::get_if<ipc::KernelReply>(&**m);
        reply != nullptr && reply->request_id == id) {
      return std::move(*reply);
    }
    if (auto* text = std::get_if<ipc::ConfigText>(&**m)) {
      config_text_ += text->bytes;
      continue;
    }
    defer(std::move(**m));
  }
}

void KernelLink::defer(ipc::KernelMessage m) {
  // Notices and command replies wait for the loop: the caller is in the middle of a grant
  // change and must not be re-entered.
  std::weak_ptr<int> alive = alive_;
  asio::post(io_, [this, alive, msg = std::move(m)]() mutable {
    if (!alive.expired()) dispatch(std::move(msg));
  });
}

template <typename Request>
Result<ipc::KernelReply> KernelLink::grant_call(Request request) {
  request.request_id = ++next_id_;
  const size_t chunk = grants_per_chunk(request.grants);
  const uint32_t id = request.request_id;
  auto reply = call(ipc::split_grants(std::move(request), chunk), id);
  if (!reply) return reply;
  if (!reply->ok) return Error{reply->text};
  return reply;
}

Result<Ok> KernelLink::add(std::span<const GrantInstall> grants) {
  ipc::AddGrants request;
  request.grants.assign(grants.begin(), grants.end());
  auto reply = grant_call(std::move(request));
  if (!reply) return reply.error();
  return Ok{};
}

Result<size_t> KernelLink::remove(std::span<const GrantInstall> grants) {
  ipc::RemoveGrants request;
  request.grants.assign(grants.begin(), grants.end());
  auto reply = grant_call(std::move(request));
  if (!reply) return reply.error();
  return static_cast<size_t>(reply->count);
}

Result<std::string> KernelLink::reconcile(const std::string& reason, bool reload,
                                          std::vector<GrantInstall> grants) {
  ipc::Reconcile request;
  request.reason = reason;
  request.reload = reload;
  request.grants = std::move(grants);
  auto reply = grant_call(std::move(request));
  if (!reply) return reply.error();
  return std::move(reply->text);
}

Result<std::string> KernelLink::read_config() {
  config_text_.clear();
  const uint32_t id = ++next_id_;
  auto reply = call({ipc::ReadConfig{id}}, id);
  std::string text = std::move(config_text_);
  config_text_.clear();
  if (!reply) return reply.error();
  if (!reply->ok) return Error{reply->text};
  return text;
}

CommandSubmitted KernelLink::submit(CommandJob job, bool /*limited: the writer's queue*/) {
  ipc::RunCommand request;
  request.request_id = ++next_id_;
  request.job_id = request.request_id;
  request.door = job.door;
  request.stop = job.stop;
  request.source = job.source;
  if (auto sent = send(request); !sent) {
    auto on_start = std::move(job.on_start);
    asio::post(io_, [on_start = std::move(on_start), e = sent.error()] { on_start(e); });
    return CommandSubmitted::started;
  }
  starting_.emplace(request.request_id, std::move(job));
  return CommandSubmitted::started;
}

void KernelLink::engine_ready() {
  if (auto sent = send(ipc::EngineReady{}); !sent) lose(sent.error().message);
}

void KernelLink::start(std::function<void(const std::string&)> reconcile_needed,
                       std::function<void()> lost) {
  reconcile_needed_ = std::move(reconcile_needed);
  lost_ = std::move(lost);
  read_notices();
}

void KernelLink::read_notices() {
  std::weak_ptr<int> alive = alive_;
  channel_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this, alive](const boost::system::error_code& ec) {
                        if (ec || alive.expired() || broken_) return;
                        drain();
                      });
}

void KernelLink::drain() {
  for (;;) {
    auto m = receive(-1);
    if (!m) {
      lose(m.error().message);
      return;
    }
    if (!*m) break;
    dispatch(std::move(**m));
    if (broken_) return;
  }
  read_notices();
}

void KernelLink::dispatch(ipc::KernelMessage m) {
  if (auto* reply = std::get_if<ipc::KernelReply>(&m)) {
    auto it = starting_.find(reply->request_id);
    if (it == starting_.end()) {
      if (!reply->ok) log::error("kernel writer: " + reply->text);
      return;
    }
    CommandJob job = std::move(it->second);
    starting_.erase(it);
    if (!reply->ok) {
      job.on_start(Error{reply->text});
      return;
    }
    job.on_start(static_cast<pid_t>(reply->count));
    if (auto early = early_exits_.find(reply->request_id); early != early_exits_.end()) {
      const ExitStatus status = early->second;
      early_exits_.erase(early);
      job.on_exit(status);
      return;
    }
    running_.emplace(reply->request_id, std::move(job.on_exit));
  } else if (auto* exited = std::get_if<ipc::CommandExited>(&m)) {
    ExitStatus status;
    status.exited = exited->exited;
    status.code = exited->code;
    status.signal = exited->signal;
    auto it = running_.find(exited->job_id);
    if (it == running_.end()) {
      // Its start reply may still be queued behind a grant call; a job of an engine before
      // this one is not ours at all.
      if (starting_.count(exited->job_id) != 0) early_exits_[exited->job_id] = status;
      return;
    }
    auto on_exit = std::move(it->second);
    running_.erase(it);
    on_exit(status);
  } else if (auto* needed = std::get_if<ipc::ReconcileNeeded>(&m)) {
    if (reconcile_needed_) reconcile_needed_(needed->why);
  } else {
    log::warn(std::string("kernel writer sent an unexpected ") + ipc::kernel_message_name(m));
  }
}

void KernelLink::lose(const std::string& why) {
  if (broken_) return;
  broken_ = true;
  log::error("kernel writer: " + why);
  if (lost_) asio::post(io_, lost_);
}

}  // namespace kg::policyd
