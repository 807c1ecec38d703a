// quamba/gemm/epilogue.cuh: epilogue descriptors of the int8 GEMM family.
//
// Every int8 GEMM / GEMV in quamba::gemm produces an exact int32 accumulator acc(m, n) =
// Σ_k A(m, k)·W(n, k) and hands it, with its coordinates, to one of the descriptors below.
// A descriptor is a small by-value struct (fp32 scalars and nullable device pointers) that
// states its formula and evaluates it in exactly the fp32 order of the host reference
// (reference/gemm.hpp epilogue_value), so integer outputs are bit-exact and fp32 outputs equal:
//   v = float(acc) * alpha [* col_scale[n]] [+ bias[n]] [+ residual(m, n)]
// Units: alpha is a product of scales prepared once on the host (reference::dequant_alpha /
// requant_alpha); col_scale and bias are (N) fp32; residual is an (M, N) fp32 matrix with row
// stride ldr in elements.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "quamba/core/macros.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::gemm {

// fp32 multiply and add that the device compiler may not contract into an FMA (nvcc fuses a*b+c
// by default, which rounds once instead of twice and would break bit-exactness with the host
// reference, which rounds after every operation).
QUAMBA_HD float mul_rn(float a, float b) {
#if QUAMBA_DEVICE_PASS
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
QUAMBA_HD float add_rn(float a, float b) {
#if QUAMBA_DEVICE_PASS
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// saturate_round_i8 without the float->int conversion instruction: on the device F2I runs on the
// quarter-rate conversion pipe and, next to the I2F of every accumulator, made the int8 epilogue
// of the wgmma kernels cost ~2 us per 128 x 256 tile. The clamped value plus 1.5 * 2^23 lies in
// [2^23, 2^24), where the fp32 spacing is 1, so the round-to-nearest-even add performs rintf and
// leaves the integer in the low mantissa bits (0x4B400000 + q: the low byte is q mod 256).
// fmaxf/fminf return the non-NaN operand, hence the explicit NaN -> 0. Bit-identical to
// saturate_round_i8 for every input (host passes use that function directly).
inline constexpr float kRoundMagic = 12582912.0f;      // 1.5·2^23
inline constexpr int32_t kRoundMagicBits = 0x4B400000;  // its bit pattern

#if QUAMBA_HAS_CUDA_COMPILER
// The rounding of saturate_round_i8_device for a non-NaN v: bits whose low byte is the int8
// value (kernels that know v is not NaN pack these bytes directly).
QUAMBA_DEVICE uint32_t round_i8_bits(float v) {
  return __float_as_uint(__fadd_rn(fminf(fmaxf(v, -128.0f), 127.0f), kRoundMagic));
}
#endif

QUAMBA_HD int8_t saturate_round_i8_device(float v) {
#if QUAMBA_DEVICE_PASS
  const uint32_t b = round_i8_bits(v);
  return v == v ? static_cast<int8_t>(static_cast<uint8_t>(b & 0xFFu)) : int8_t(0);
#else
  return saturate_round_i8(v);
#endif
}

// q(m, n) = saturate_round_i8(float(acc) * alpha [* col_scale[n]])   (int8 out)
struct Requant {
  using Output = int8_t;
  float alpha = 1.0f;
  const float* col_scale = nullptr;  // (N), optional

  QUAMBA_HD int8_t apply(int32_t acc, int64_t /*m*/, int64_t n) const { return apply_f(static_cast<float>(acc), n); }
  // The same from the accumulator already converted to fp32 (rounded to nearest, as the cast in
  // apply does; exact below 2^24), for kernels that convert it without the I2F instruction.
  QUAMBA_HD int8_t apply_f(float acc, int64_t n) const {
    float v = mul_rn(acc, alpha);
    if (col_scale) v = mul_rn(v, col_scale[n]);
    return saturate_round_i8_device(v);
  }
  // Requant has no per-(m, n) input, hence nothing to validate for it but col_scale's presence.
  Status validate(int64_t /*M*/, int64_t /*N*/) const { return Status::kSuccess; }
};

// y(m, n) = float(acc) * alpha [* col_scale[n]] [+ bias[n]] [+ residual(m, n)]   (OutT = float
// or __half; the __half value is the fp32 value rounded to nearest even)
template <typename OutT>
struct Dequant {
  static_assert(std::is_same_v<OutT, float> || std::is_same_v<OutT, __half>, "Dequant outputs float or __half");
  using Output = OutT;
  float alpha = 1.0f;
  const float* col_scale = nullptr;  // (N), optional
  const float* bias = nullptr;       // (N), optional
  // (M, N) row stride ldr, optional. May be the fp32 output itself (in-place r += h, ldr == ldc):
  // every kernel reads residual(m, n) in the same thread, before it writes C(m, n).
  const float* residual = nullptr;
  int64_t ldr = 0;                   // residual row stride in elements

  // The formula on inputs the caller has already loaded (cs = col_scale[n], b = bias[n],
  // r = residual(m, n); ignored where the pointer is null), so that a kernel can issue the loads of
  // many outputs before its first store (with residual possibly aliasing C, the compiler may not
  // move a load above an earlier store by itself).
  QUAMBA_HD float value_of(int32_t acc, float cs, float b, float r) const {
    float v = mul_rn(static_cast<float>(acc), alpha);
    if (col_scale) v = mul_rn(v, cs);
    if (bias) v = add_rn(v, b);
    if (residual) v = add_rn(v, r);
    return v;
  }
  QUAMBA_HD OutT apply_of(int32_t acc, float cs, float b, float r) const {
    if constexpr (std::is_same_v<OutT, float>) {
      return value_of(acc, cs, b, r);
    } else {
      // Bit-level rounding shared with the reference (float_to_half_bits), so half outputs are
      // exactly the reference's fp32 value rounded, on host and device alike.
      return __ushort_as_half(float_to_half_bits(value_of(acc, cs, b, r)));
    }
  }
  QUAMBA_HD float value(int32_t acc, int64_t m, int64_t n) const {
    return value_of(acc, col_scale ? col_scale[n] : 1.0f, bias ? bias[n] : 0.0f,
                    residual ? residual[m * ldr + n] : 0.0f);
  }
  QUAMBA_HD OutT apply(int32_t acc, int64_t m, int64_t n) const {
    return apply_of(acc, col_scale ? col_scale[n] : 1.0f, bias ? bias[n] : 0.0f,
                    residual ? residual[m * ldr + n] : 0.0f);
  }
  Status validate(int64_t /*M*/, int64_t N) const {
    if (residual && ldr < N) return Status::kErrorInvalidArgument;
    return Status::kSuccess;
  }
};

using DequantF32 = Dequant<float>;
using DequantF16 = Dequant<__half>;

// Raw int32 accumulator out (no epilogue): acc(m, n). Used by tests and the cuBLASLt baseline.
struct Identity {
  using Output = int32_t;
  QUAMBA_HD int32_t apply(int32_t acc, int64_t, int64_t) const { return acc; }
  Status validate(int64_t, int64_t) const { return Status::kSuccess; }
};

}  // namespace quamba::gemm
