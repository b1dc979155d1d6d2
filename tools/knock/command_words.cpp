#include "knock/command_words.h"

#include <cstring>

namespace kg::knockclient {
namespace {

std::string long_name(const char* word) {
  const std::string w(word);
  return w.substr(0, w.find('='));
}

std::string short_name() {
  return std::string("-") + static_cast<char>(optopt);
}

}  // namespace

Result<Ok> scan_options(const std::vector<std::string>& words, const char* short_options,
                        const option* long_options,
                        const std::function<Result<Ok>(int, const std::string&)>& on_option,
                        const std::function<Error(const OptionError&)>& refuse,
                        std::vector<std::string>& operands) {
  std::vector<std::string> storage;
  storage.reserve(words.size() + 1);
  storage.emplace_back("knockgate-knock");
  storage.insert(storage.end(), words.begin(), words.end());
  std::vector<char*> argv;
  for (auto& w : storage) argv.push_back(w.data());
  argv.push_back(nullptr);
  const int argc = static_cast<int>(storage.size());
  // ':' first: a missing value is reported as ':' rather than '?'; errors are ours.
  const std::string shorts = std::string(":") + short_options;
  optind = 0;  // GNU: a full reset, also of a cluster left half-read by an earlier call
  opterr = 0;
  int c = 0;
  while ((c = getopt_long(argc, argv.data(), shorts.c_str(), long_options, nullptr)) != -1) {
    const char* word = argv[static_cast<size_t>(optind - 1)];
    const bool long_form = std::strncmp(word, "--", 2) == 0;
    if (c == ':') {
      return refuse({OptionError::Kind::needs_value, long_form ? long_name(word) : short_name()});
    }
    if (c == '?') {
      // getopt's optopt: 0 for an unknown long option, the code of a known long flag that
      // was given "=value", or the unknown short option's letter.
      if (optopt == 0) return refuse({OptionError::Kind::unknown, long_name(word)});
      if (long_form && std::strchr(word, '=') != nullptr) {
        return refuse({OptionError::Kind::takes_no_value, long_name(word)});
      }
      return refuse({OptionError::Kind::unknown, short_name()});
    }
    auto r = on_option(c, optarg != nullptr ? std::string(optarg) : std::string());
    if (!r) return r.error();
  }
  for (int i = optind; i < argc; ++i) operands.emplace_back(argv[static_cast<size_t>(i)]);
  return Ok{};
}

}  // namespace kg::knockclient
