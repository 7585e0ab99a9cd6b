// Integers from JSON, checked. nlohmann's get<int>() turns a float, or a
// number beyond the type's range, into an integer with a plain cast:
// undefined behaviour that a hostile or corrupt file (manifest.json, a
// safetensors header, config.json) would reach. Throws std::runtime_error.
#pragma once
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <type_traits>

namespace attnres {

template <class T>
T json_integer(const nlohmann::json& v) {
  static_assert(std::is_integral_v<T>);
  using L = std::numeric_limits<T>;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= uint64_t(L::max())) return T(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0 ? uint64_t(i) <= uint64_t(L::max()) : L::is_signed && i >= int64_t(L::min())) return T(i);
  } else {
    throw std::runtime_error("expected an integer, got " + v.dump());
  }
  throw std::runtime_error(v.dump() + " is out of range");
}

}  // namespace attnres
