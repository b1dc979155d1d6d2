// getopt_long over a word list (the arguments after the program name), as the daemons
// parse theirs (common/daemon_options.cpp): permuted operands, clustered short options,
// --name=value, "--" ends the options. Errors come back as the offending word so each
// parser words its own message.
#pragma once

#include <getopt.h>

#include <functional>
#include <string>
#include <vector>

#include "common/result.h"

namespace kg::knockclient {

struct OptionError {
  enum class Kind { unknown, needs_value, takes_no_value } kind = Kind::unknown;
  std::string word;  // "-x", "--bogus", "--delay" (without any =value)
};

// Runs getopt_long over `words`. `on_option(code, value)` sees each option (value is
// empty for flags) and may refuse it with an Error; `operands` gets what is left, in order.
// `refuse` turns a getopt error into the parser's message.
Result<Ok> scan_options(
    const std::vector<std::string>& words, const char* short_options, const option* long_options,
    const std::function<Result<Ok>(int code, const std::string& value)>& on_option,
    const std::function<Error(const OptionError&)>& refuse, std::vector<std::string>& operands);

}  // namespace kg::knockclient
