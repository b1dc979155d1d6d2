#include "webd/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kg::webd::json {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Result<Value> run() {
    auto v = value(0);
    if (!v) return v;
    skip_space();
    if (pos_ != s_.size()) return fail("trailing characters");
    return v;
  }

 private:
  Error fail(const std::string& what) const {
    return Error{"JSON: " + what + " at offset " + std::to_string(pos_)};
  }
  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Result<Value> value(int depth) {
    if (depth > kMaxDepth) return fail("nested too deeply");
    skip_space();
    if (pos_ >= s_.size()) return fail("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') {
      auto str = string();
      if (!str) return str.error();
      return Value{std::move(*str)};
    }
    if (literal("true")) return Value{true};
    if (literal("false")) return Value{false};
    if (literal("null")) return Value{nullptr};
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    return fail("unexpected character");
  }

  Result<Value> number() {
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ > from;
    };
    if (!digits()) return fail("bad number");
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digits()) return fail("bad number");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) return fail("bad number");
    }
    const std::string text(s_.substr(start, pos_ - start));
    const double d = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(d)) return fail("number out of range");
    return Value{d};
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  std::optional<uint32_t> hex4() {
    if (s_.size() - pos_ < 4) return std::nullopt;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return std::nullopt;
      }
    }
    return v;
  }

  Result<std::string> string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) return fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          auto cp = hex4();
          if (!cp) return fail("bad \\u escape");
          if (*cp >= 0xd800 && *cp < 0xdc00) {
            if (!literal("\\u")) return fail("lone surrogate");
            auto low = hex4();
            if (!low || *low < 0xdc00 || *low > 0xdfff) return fail("lone surrogate");
            *cp = 0x10000 + ((*cp - 0xd800) << 10) + (*low - 0xdc00);
          } else if (*cp >= 0xdc00 && *cp <= 0xdfff) {
            return fail("lone surrogate");
          }
          put_utf8(out, *cp);
          break;
        }
        default:
          return fail("bad escape");
      }
    }
  }

  Result<Value> array(int depth) {
    ++pos_;
    Array out;
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return Value{std::move(out)};
    }
    while (true) {
      auto v = value(depth + 1);
      if (!v) return v;
      out.push_back(std::move(*v));
      skip_space();
      if (pos_ >= s_.size()) return fail("unterminated array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return Value{std::move(out)};
      }
      return fail("expected , or ]");
    }
  }

  Result<Value> object(int depth) {
    ++pos_;
    Object out;
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return Value{std::move(out)};
    }
    while (true) {
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected a member name");
      auto key = string();
      if (!key) return key.error();
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != ':') return fail("expected :");
      ++pos_;
      auto v = value(depth + 1);
      if (!v) return v;
      out.insert_or_assign(std::move(*key), std::move(*v));
      skip_space();
      if (pos_ >= s_.size()) return fail("unterminated object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return Value{std::move(out)};
      }
      return fail("expected , or }");
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

const Value* Value::find(std::string_view key) const {
  const Object* o = as_object();
  if (o == nullptr) return nullptr;
  auto it = o->find(key);
  return it == o->end() ? nullptr : &it->second;
}

Result<Value> parse(std::string_view text) {
  return Parser(text).run();
}

void write(Writer& w, const Value& v) {
  if (v.is_null()) {
    w.null();
  } else if (const bool* b = v.as_bool()) {
    w.value(*b);
  } else if (const double* d = v.as_number()) {
    w.number(*d);
  } else if (const std::string* s = v.as_string()) {
    w.value(*s);
  } else if (const Array* a = v.as_array()) {
    w.begin_array();
    for (const Value& element : *a) write(w, element);
    w.end_array();
  } else if (const Object* o = v.as_object()) {
    w.begin_object();
    for (const auto& [k, member] : *o) {
      w.key(k);
      write(w, member);
    }
    w.end_object();
  }
}

std::string serialize(const Value& v) {
  Writer w;
  write(w, v);
  return w.take();
}

}  // namespace kg::webd::json
