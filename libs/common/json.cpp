#include "common/json.h"

#include <cmath>
#include <cstdio>

namespace kg::json {

std::string quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20 || u == 0x7f || c == '<' || c == '>' || c == '&') {
          char buf[8];
          (void)std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

void Writer::separate() {
  if (need_comma_) out_.push_back(',');
  need_comma_ = true;
}

Writer& Writer::begin_object() {
  separate();
  out_.push_back('{');
  need_comma_ = false;
  return *this;
}

Writer& Writer::end_object() {
  out_.push_back('}');
  need_comma_ = true;
  return *this;
}

Writer& Writer::begin_array() {
  separate();
  out_.push_back('[');
  need_comma_ = false;
  return *this;
}

Writer& Writer::end_array() {
  out_.push_back(']');
  need_comma_ = true;
  return *this;
}

Writer& Writer::key(std::string_view name) {
  separate();
  out_ += quote(name);
  out_.push_back(':');
  need_comma_ = false;  // the value follows without a comma
  return *this;
}

Writer& Writer::value(std::string_view text) {
  separate();
  out_ += quote(text);
  return *this;
}

Writer& Writer::value(int64_t number) {
  separate();
  out_ += std::to_string(number);
  return *this;
}

Writer& Writer::value(uint64_t number) {
  separate();
  out_ += std::to_string(number);
  return *this;
}

Writer& Writer::value(bool flag) {
  separate();
  out_ += flag ? "true" : "false";
  return *this;
}

Writer& Writer::number(double n) {
  separate();
  char buf[32];
  if (n == std::floor(n) && std::fabs(n) < 9.0e15) {
    (void)std::snprintf(buf, sizeof buf, "%.0f", n);
  } else {
    (void)std::snprintf(buf, sizeof buf, "%.17g", n);
  }
  out_ += buf;
  return *this;
}

Writer& Writer::null() {
  separate();
  out_ += "null";
  return *this;
}

Writer& Writer::raw(std::string_view json) {
  separate();
  out_.append(json);
  return *this;
}

}  // namespace kg::json
