// The one place that says what an element of a tensor is (DESIGN §11):
// element types, their sizes, and the float <-> bf16 conversions that every
// backend and the host share. bf16 is float's upper 16 bits (8-bit exponent,
// 7-bit mantissa); a float becomes bf16 by rounding to nearest, ties to even.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/hd.h"

namespace attnres::kernels {

struct bf16 {
  uint16_t bits;
};
// F64: the loss and squared-norm sums, kept on the device until a step's end.
enum class DType { F32, I32, BF16, F64 };
constexpr size_t dtype_size(DType t) { return t == DType::BF16 ? 2 : t == DType::F64 ? 8 : 4; }
inline const char* dtype_name(DType t) {
  return t == DType::F32 ? "fp32" : t == DType::BF16 ? "bf16" : t == DType::F64 ? "fp64" : "int32";
}
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }

// Round to nearest even; NaN stays a (quiet) NaN, infinities stay infinite.
ATTNRES_HD inline bf16 to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}
ATTNRES_HD inline float to_float(bf16 h) {
  const uint32_t u = uint32_t(h.bits) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
ATTNRES_HD inline float to_float(float f) { return f; }  // for code templated on the element type
// f rounded to the nearest bf16, as a float.
ATTNRES_HD inline float round_bf16(float f) { return to_float(to_bf16(f)); }

}  // namespace attnres::kernels
