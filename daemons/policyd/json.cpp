#include "policyd/json.h"

#include <cstdio>

#include "common/json_quote.h"

namespace kg::policyd::json {

std::string quote(std::string_view text) {
  return kg::json_quote(text);
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

}  // namespace kg::policyd::json
