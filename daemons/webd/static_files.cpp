#include "webd/static_files.h"

#include <sodium.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace kg::webd {
namespace {

const char* content_type_for(const std::string& ext) {
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".json" || ext == ".webmanifest") return "application/json";
  if (ext == ".txt") return "text/plain; charset=utf-8";
  return nullptr;
}

}  // namespace

Result<Ok> StaticFiles::load(const std::string& root) {
  namespace fs = std::filesystem;
  constexpr size_t kMaxTotal = size_t{16} * 1024 * 1024;
  std::error_code ec;
  const fs::path base = fs::canonical(root, ec);
  if (ec) return Error{"WebRoot " + root + ": " + ec.message()};
  std::map<std::string, StaticFile, std::less<>> files;
  size_t total = 0;
  for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_symlink() || !it->is_regular_file()) continue;
    const char* type = content_type_for(p.extension().string());
    if (type == nullptr) continue;
    std::ifstream in(p, std::ios::binary);
    std::ostringstream body;
    body << in.rdbuf();
    StaticFile f;
    f.content_type = type;
    f.body = body.str();
    total += f.body.size();
    if (total > kMaxTotal) return Error{"WebRoot " + root + ": more than 16 MiB of files"};
    unsigned char digest[16];
    crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(f.body.data()),
                       f.body.size(), nullptr, 0);
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    f.etag = std::string("\"") + hex + "\"";
    files["/" + fs::relative(p, base).generic_string()] = std::move(f);
  }
  if (ec) return Error{"WebRoot " + root + ": " + ec.message()};
  if (files.find("/index.html") == files.end()) {
    return Error{"WebRoot " + root + ": no index.html"};
  }
  files_ = std::move(files);
  return Ok{};
}

const StaticFile* StaticFiles::find(std::string_view path) const {
  if (path == "/") path = "/index.html";
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : &it->second;
}

}  // namespace kg::webd
