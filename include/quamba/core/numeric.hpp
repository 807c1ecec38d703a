// quamba/core/numeric.hpp: the numeric core shared by kernels and the host reference.
//
// Quantizer (SPEC §2): symmetric, per-tensor, static. q(v) = saturate(round_half_even(v)) to
// [-128, 127]. Every quantizing site in the library multiplies by a precomputed fp32 inverse
// scale (`v * inv_scale`, never `v / scale`) so that kernels and the reference evaluate the
// same fp32 expression and integer outputs can be compared bit for bit.
//
// Non-finite policy (written once, tested in tests/cpu/test_numeric.cpp):
//   NaN -> 0, +Inf -> 127, -Inf -> -128; |v| beyond the range saturates.
//
// fp16/bf16 conversions here are bit-level and host+device so the reference, the file loaders
// and the kernels agree: float -> half/bf16 rounds to nearest even, keeps Inf, keeps NaN quiet.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "quamba/core/macros.hpp"

namespace quamba {

inline constexpr int kInt8Min = -128;
inline constexpr int kInt8Max = 127;

// Round half to even in the default rounding mode (rintf on host and device).
QUAMBA_HD float round_half_even(float v) { return rintf(v); }

// Saturating float -> int8 after rounding; NaN maps to 0.
QUAMBA_HD int8_t saturate_round_i8(float v) {
  if (v != v) return 0;
  v = v < -128.0f ? -128.0f : v;
  v = v > 127.0f ? 127.0f : v;
  return static_cast<int8_t>(static_cast<int>(rintf(v)));
}

// Saturating int32 -> int8.
QUAMBA_HD int8_t saturate_i8(int32_t v) {
  return static_cast<int8_t>(v < kInt8Min ? kInt8Min : (v > kInt8Max ? kInt8Max : v));
}

// q(v / s) computed as q(v * inv_scale).
QUAMBA_HD int8_t quantize_i8(float v, float inv_scale) { return saturate_round_i8(v * inv_scale); }

QUAMBA_HD float dequantize_i8(int8_t q, float scale) { return static_cast<float>(q) * scale; }

// Scale of a symmetric int8 quantizer for a tensor whose |max| is `absmax` (scale = max/127).
// A zero or non-finite range gets scale 1 so that the inverse stays finite (all values quantize
// to 0 in the zero case, which is exact).
inline float scale_from_absmax(float absmax) {
  if (!(absmax > 0.0f) || !std::isfinite(absmax)) return 1.0f;
  return absmax / 127.0f;
}

inline float inverse_scale(float scale) { return 1.0f / scale; }

// ---- fp16 / bf16 bit conversions ----------------------------------------------------------

QUAMBA_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}
QUAMBA_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

QUAMBA_HD float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // Subnormal half: value = mant * 2^-24, exact in fp32.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u));
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

QUAMBA_HD uint16_t float_to_half_bits(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // quiet NaN
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (absx < 0x38800000u) {
    // Result is subnormal (or zero) in half: quantum 2^-24. Round half to even on the value.
    const float a = bits_float(absx);
    const float scaled = a * 16777216.0f;  // exact: power-of-two scaling of a float < 2^-14
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(rintf(scaled)));
  }
  // Normal: rebias exponent and round the 13 dropped mantissa bits half to even.
  const uint32_t rebiased = absx - 0x38000000u;  // exponent 127 -> 15
  const uint32_t lsb = (rebiased >> 13) & 1u;
  const uint32_t rounded = rebiased + 0xfffu + lsb;
  return static_cast<uint16_t>(sign | (rounded >> 13));
}

QUAMBA_HD float bf16_bits_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

QUAMBA_HD uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  const uint32_t lsb = (x >> 16) & 1u;
  return static_cast<uint16_t>((x + 0x7fffu + lsb) >> 16);
}

// Rounds a float through fp16 and back: the value an fp16 tensor would store.
QUAMBA_HD float round_to_half(float f) { return half_bits_to_float(float_to_half_bits(f)); }

// ---- math shared by both sides ---------------------------------------------------------------

// Softplus with the Mamba threshold: v for v > 20, else log1p(exp(v)).
inline constexpr float kSoftplusThreshold = 20.0f;

// ---- 16-byte packed vectors --------------------------------------------------------------------

// A packed vector of N elements of T with natural alignment of its whole size, so that a
// Vec<int8_t,16>, Vec<half,8> or Vec<float,4> load or store is one 16-byte memory instruction.
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  static_assert(N > 0 && (N & (N - 1)) == 0, "vector length must be a power of two");
  static_assert(sizeof(T) * N <= 16, "a packed vector is at most 16 bytes");
  T v[N];
  QUAMBA_HD T& operator[](int i) { return v[i]; }
  QUAMBA_HD const T& operator[](int i) const { return v[i]; }
};

// Elements of T in one 16-byte access.
template <typename T>
inline constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

}  // namespace quamba
