// A libnftables context (RAII) with buffered output and error, so a failure carries nft's
// own message ("nft: Error: Could not process rule: No such file or directory").
#pragma once

#include <memory>
#include <string>

#include "common/result.h"

struct nft_ctx;

namespace kg::policyd {

class Nft {
 public:
  static Result<std::unique_ptr<Nft>> open();
  ~Nft();
  Nft(const Nft&) = delete;
  Nft& operator=(const Nft&) = delete;

  // Runs the commands as one transaction; returns nft's output.
  Result<std::string> run(const std::string& commands);
  // Sends the commands to the kernel but does not commit them (nft --check): a probe that
  // changes nothing.
  Result<Ok> check(const std::string& commands);

 private:
  explicit Nft(nft_ctx* ctx) : ctx_(ctx) {}
  Result<std::string> run_with_flags(const std::string& commands, unsigned output_flags,
                                     bool dry_run);
  nft_ctx* ctx_;
};

}  // namespace kg::policyd
