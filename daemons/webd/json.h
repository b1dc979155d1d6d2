// A small JSON reader: request bodies and policyd's --json replies (Boost 1.74 has no
// Boost.JSON); values are written with the one writer, common/json.h. Bounded: nesting depth and
// input size are limited by the caller's body limit and kMaxDepth, so hostile input costs at most
// linear time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/json.h"
#include "common/result.h"

namespace kg::webd::json {

struct Value;
using Array = std::vector<Value>;
using Object = std::map<std::string, Value, std::less<>>;

struct Value {
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> v = nullptr;

  bool is_null() const { return v.index() == 0; }
  const bool* as_bool() const { return std::get_if<bool>(&v); }
  const double* as_number() const { return std::get_if<double>(&v); }
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const Array* as_array() const { return std::get_if<Array>(&v); }
  const Object* as_object() const { return std::get_if<Object>(&v); }
  // Member of an object, or nullptr.
  const Value* find(std::string_view key) const;
};

inline constexpr int kMaxDepth = 32;

Result<Value> parse(std::string_view text);

using kg::json::quote;
using kg::json::Writer;
void write(Writer& w, const Value& v);
std::string serialize(const Value& v);

}  // namespace kg::webd::json
