// check-config: the one implementation behind `knockgatectl check-config` and every
// daemon's -n.
#include <cstdio>

#include "config/config.h"

namespace kg::config {

CheckResult check(const std::string& path, ExternalFiles external) {
  CheckResult result;
  ParseResult parsed = parse_file(path);
  std::vector<Diagnostic> errors = std::move(parsed.errors);
  // Doors' one-time sequence files must exist too, or the daemons would refuse to start.
  if (errors.empty() && parsed.config && external == ExternalFiles::checked) {
    errors = check_external_files(*parsed.config);
  }
  if (!errors.empty() || !parsed.config) {
    for (const Diagnostic& d : errors) result.err += d.str() + "\n";
    return result;
  }
  result.out = dump(*parsed.config, Secrets::hidden);
  result.config = std::move(parsed.config);
  result.exit_code = 0;
  return result;
}

int print_check_result(const CheckResult& result) {
  const bool out_written =
      std::fwrite(result.out.data(), 1, result.out.size(), stdout) == result.out.size() &&
      std::fflush(stdout) == 0;
  const bool err_written =
      std::fwrite(result.err.data(), 1, result.err.size(), stderr) == result.err.size();
  if (result.exit_code != 0) return result.exit_code;
  return out_written && err_written ? 0 : 1;
}

}  // namespace kg::config
