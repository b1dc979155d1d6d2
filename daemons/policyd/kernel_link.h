// The engine's end of the channel to the kernel writer: grant installs and removals and
// reconciles as synchronous requests (the engine's single thread waits for the answer,
// as it waited for the kernel before), the doors' commands as asynchronous ones, and the
// writer's notices (a command exited, a link came back).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "ipc/kernel_messages.h"
#include "policyd/command_executor.h"
#include "policyd/policy.h"

namespace kg::policyd {

class KernelLink final : public GrantInstaller, public CommandExecutor {
 public:
  // Takes the descriptor; waits (up to `timeout`) for the writer's WriterReady.
  static Result<std::unique_ptr<KernelLink>> open(boost::asio::io_context& io, int fd,
                                                  std::chrono::milliseconds timeout);
  ~KernelLink() override;
  KernelLink(const KernelLink&) = delete;
  KernelLink& operator=(const KernelLink&) = delete;

  const std::string& features() const { return features_; }

  Result<Ok> add(std::span<const GrantInstall> grants) override;
  Result<size_t> remove(std::span<const GrantInstall> grants) override;
  // The writer's summary line.
  Result<std::string> reconcile(const std::string& reason, bool reload,
                                std::vector<GrantInstall> grants);

  // Has the writer read the config file again (as root) and adopt it; its bytes.
  Result<std::string> read_config();

  CommandSubmitted submit(CommandJob job, bool limited) override;
  size_t running() const override { return running_.size(); }

  void engine_ready();
  // Starts reading the writer's notices; `lost` runs once when the writer is gone.
  void start(std::function<void(const std::string& why)> reconcile_needed,
             std::function<void()> lost);

 private:
  KernelLink(boost::asio::io_context& io, int fd);
  Result<ipc::KernelReply> call(std::vector<ipc::KernelMessage> datagrams, uint32_t id);
  Result<Ok> send(const ipc::KernelMessage& m);
  // One datagram; nullopt when none within `timeout_ms` (-1: none waiting now).
  Result<std::optional<ipc::KernelMessage>> receive(int timeout_ms);
  void dispatch(ipc::KernelMessage m);
  void defer(ipc::KernelMessage m);
  void read_notices();
  void drain();
  void lose(const std::string& why);
  template <typename Request>
  Result<ipc::KernelReply> grant_call(Request request);

  boost::asio::io_context& io_;
  boost::asio::posix::stream_descriptor channel_;
  std::string features_;
  uint32_t next_id_ = 0;
  std::map<uint64_t, CommandJob> starting_;  // RunCommand sent, no reply yet
  std::map<uint64_t, std::function<void(const ExitStatus&)>> running_;
  std::map<uint64_t, ExitStatus> early_exits_;
  std::function<void(const std::string&)> reconcile_needed_;
  std::function<void()> lost_;
  bool broken_ = false;
  std::string config_text_;
  std::vector<uint8_t> receive_buf_ = std::vector<uint8_t>(
      ipc::kKernelDatagramBytes + 1);  // ConfigText received for the ReadConfig in progress
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace kg::policyd
