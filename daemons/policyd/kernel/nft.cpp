#include "policyd/kernel/nft.h"

#include <nftables/libnftables.h>

namespace kg::policyd {

Result<std::unique_ptr<Nft>> Nft::open() {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) return Error{"nft: cannot create a libnftables context"};
  auto nft = std::unique_ptr<Nft>(new Nft(ctx));
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    return Error{"nft: cannot buffer libnftables output"};
  }
  return nft;
}

Nft::~Nft() {
  nft_ctx_free(ctx_);
}

Result<std::string> Nft::run_with_flags(const std::string& commands, unsigned output_flags,
                                        bool dry_run) {
  nft_ctx_output_set_flags(ctx_, output_flags);
  nft_ctx_set_dry_run(ctx_, dry_run);
  int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  nft_ctx_set_dry_run(ctx_, false);
  std::string out = nft_ctx_get_output_buffer(ctx_);
  std::string err = nft_ctx_get_error_buffer(ctx_);
  if (rc != 0) {
    // nft's message is "Error: REASON\n<the command>\n<carets>": the reason, and the
    // command it concerns (shortened: it may carry 100 000 elements).
    size_t end = err.find('\n');
    std::string reason = err.substr(0, end);
    std::string command;
    if (end != std::string::npos) command = err.substr(end + 1, err.find('\n', end + 1) - end - 1);
    if (command.size() > 120) command = command.substr(0, 117) + "...";
    if (reason.empty()) reason = "command failed";
    return Error{"nft: " + reason + (command.empty() ? "" : " (in: " + command + ")")};
  }
  return out;
}

Result<std::string> Nft::run(const std::string& commands) {
  return run_with_flags(commands, 0, false);
}

Result<Ok> Nft::check(const std::string& commands) {
  auto r = run_with_flags(commands, 0, true);
  if (!r) return r.error();
  return Ok{};
}

}  // namespace kg::policyd
