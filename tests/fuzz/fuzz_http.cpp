// Arbitrary bytes through knockgate-webd's request path: Beast's parser with webd's limits,
// the request checks, then routing, authentication (session cookie, bearer token, CSRF
// and Origin checks), argument validation and JSON parsing in App::handle. policyd is not
// connected (the API answers 503 through the same code as in production). Every request
// must get exactly one response carrying the security headers; nothing may crash.
#include <sodium.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/log.h"
#include "webd/app.h"
#include "webd/http.h"
#include "webd/json.h"
#include "webd/policy_link.h"
#include "webd/static_files.h"
#include "webd/stream_hub.h"

namespace {

namespace http = boost::beast::http;

// The token the seed corpus uses: Authorization: Bearer kgt_000...0001
constexpr const char* kToken =
    "kgt_0000000000000000000000000000000000000000000000000000000000000001";

struct Fixture {
  boost::asio::io_context io;
  kg::webd::StaticFiles files;
  kg::webd::StreamHub hub;
  std::unique_ptr<kg::webd::PolicyLink> link;
  std::unique_ptr<kg::webd::App> app;
  kg::webd::HttpLimits limits;

  Fixture() {
    if (sodium_init() < 0) std::abort();
    kg::log::set_level(kg::log::Level::error);
    char dir[] = "/tmp/fuzz_http.XXXXXX";
    if (::mkdtemp(dir) == nullptr) std::abort();
    const std::string root = std::string(dir) + "/web";
    ::mkdir(root.c_str(), 0755);
    write(root + "/index.html", "<!doctype html><title>x</title>");
    write(root + "/app.js", "export {};");
    write(std::string(dir) + "/tokens", "fuzz:" + kg::webd::TokenStore::hash_hex(kToken) + "\n");
    if (!files.load(root)) std::abort();
    link = std::make_unique<kg::webd::PolicyLink>(io, std::string(dir) + "/none.sock");
    kg::webd::App::Options o;
    o.password_file = std::string(dir) + "/passwd";  // absent: every login fails
    o.token_file = std::string(dir) + "/tokens";
    app = std::make_unique<kg::webd::App>(o, files, *link, hub);
  }

  static void write(const std::string& path, const std::string& text) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) std::abort();
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }
};

void check_response(const kg::webd::Response& res) {
  if (res.result_int() < 200 || res.result_int() > 599) __builtin_trap();
  if (res.find("Content-Security-Policy") == res.end()) __builtin_trap();
  if (res.find("X-Content-Type-Options") == res.end()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* f = new Fixture();
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<uint32_t>(f->limits.header_bytes));
  parser.body_limit(f->limits.body_bytes);
  boost::beast::error_code ec;
  const char* p = reinterpret_cast<const char*>(data);
  size_t left = size;
  // As the connection does: the head (async_read_header), check_request on it, then the
  // body (async_read). All input is here at once: when the parser wants more than there
  // is, the client has closed (async_read's eof), which put_eof() turns into the parser's
  // verdict.
  auto read_until = [&](auto done) {
    while (!ec && !done()) {
      size_t used = 0;
      if (left > 0) {
        used = parser.put(boost::asio::const_buffer(p, left), ec);
        p += used;
        left -= used;
        if (ec == http::error::need_more) ec = {};
      }
      if (!ec && used == 0 && !done()) {
        if (!parser.got_some()) return false;  // nothing at all: no request
        parser.put_eof(ec);
        if (!ec && !done()) ec = http::error::partial_message;
      }
    }
    return true;
  };
  auto fail = [&] {
    // What the connection sends for it: a 400/413/431 built by the app.
    const auto status = ec == http::error::header_limit
                            ? http::status::request_header_fields_too_large
                        : ec == http::error::body_limit ? http::status::payload_too_large
                                                        : http::status::bad_request;
    check_response(f->app->error_response(status, 11, "x", false));
    return 0;
  };
  if (!read_until([&] { return parser.is_header_done(); })) return 0;
  if (ec) return fail();
  if (auto problem = kg::webd::check_request(parser.get(), parser.chunked(), f->limits)) {
    check_response(f->app->error_response(problem->status, 11, problem->why, false));
    return 0;
  }
  parser.eager(true);
  if (!read_until([&] { return parser.is_done(); })) return 0;
  if (ec) return fail();
  kg::webd::Request req = parser.release();
  int replies = 0;
  f->app->handle(req, kg::webd::ClientInfo{"192.0.2.1", false}, [&replies](kg::webd::Reply r) {
    ++replies;
    check_response(r.response);
  });
  f->io.restart();
  f->io.poll();  // policyd-unavailable answers are posted
  if (replies != 1) __builtin_trap();
  // Bodies that reach the JSON reader are also fed to it directly: it must not crash
  // and what it accepts must serialise and parse back to the same value.
  if (auto v = kg::webd::json::parse(req.body())) {
    auto again = kg::webd::json::parse(kg::webd::json::serialize(*v));
    if (!again || kg::webd::json::serialize(*again) != kg::webd::json::serialize(*v))
      __builtin_trap();
  }
  return 0;
}
