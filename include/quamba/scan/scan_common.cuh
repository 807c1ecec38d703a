// quamba/scan/scan_common.cuh: device helpers shared by the prefill scan and the decode update.
//
// Element conversion (int8 / fp16 -> fp32), the Mamba softplus (threshold 20), SiLU, the
// decay exponential as one MUFU ex2 with log2(e) folded into A, and cp.async wrappers.
// Everything here is fp32 arithmetic; the numeric contract is SPEC §2 step 6.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "quamba/core/macros.hpp"
#include "quamba/core/numeric.hpp"

namespace quamba::scan {

inline constexpr float kLog2e = 1.4426950408889634f;

namespace detail {

// int8 -> fp32 without I2F: conversions share the 16/clk/SM pipe with the MUFU exponentials the
// scan is bound by, so the byte is placed in the mantissa of 2^23 + 128 and the bias subtracted
// (integer add + FADD on the full-rate pipes; exact for all 256 values).
QUAMBA_DEVICE float to_float(int8_t v) {
  return __int_as_float(0x4B000080 + static_cast<int>(v)) - 8388736.0f;
}
QUAMBA_DEVICE float to_float(__half v) { return __half2float(v); }
QUAMBA_DEVICE float to_float(float v) { return v; }

// Four packed values -> fp32. int8: the sign bits of all four flipped at once (offset binary,
// byte + 128), each byte permuted under the exponent of 2^23 and 2^23 + 128 subtracted: the same
// exact values as to_float(int8_t) in ~2.25 instructions each instead of 3 (no per-byte sign
// extension).
QUAMBA_DEVICE void to_float4(const Vec<int8_t, 4>& q, float (&f)[4]) {
  const unsigned w = reinterpret_cast<const unsigned&>(q) ^ 0x80808080u;
#pragma unroll
  for (int i = 0; i < 4; ++i) f[i] = __int_as_float(static_cast<int>(__byte_perm(w, 0x4B000000u, 0x7540u | i))) - 8388736.0f;
}
QUAMBA_DEVICE void to_float4(const Vec<__half, 4>& q, float (&f)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) f[i] = __half2float(q[i]);
}

// exp2 as a single ex2.approx (rel. error ~2^-22): the decay exponential is the op the prefill
// is bound by, so it must be exactly one MUFU instruction. ftz is harmless: a decay below
// 2^-126 is zero for any state magnitude we keep.
QUAMBA_DEVICE float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Mamba softplus with threshold 20. Per (token, channel), not per state, so its cost is 1/N of
// the decay work. __logf(1 + e) alone has an absolute error of ~4e-7 near 1, i.e. a percent-level
// relative error for a small δ (raw -10 → δ ≈ 5e-5), which δ·u·B and, times a large |A|, the
// decay inherit. So e = exp(v) < 1/64 takes log1p's series to e³ (relative error < 1e-6) and
// only larger e use __logf (relative error < 3e-5 there). log1pf would cost ~24 more FMA-pipe
// instructions per (token, channel), ~1.5 per item.
QUAMBA_DEVICE float softplus(float v) {
  if (v > kSoftplusThreshold) return v;
  const float e = __expf(v);
  return e < 0.015625f ? e * (1.0f - e * (0.5f - e * (1.0f / 3.0f))) : __logf(1.0f + e);
}

QUAMBA_DEVICE float lg2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// softplus() with every path computed and one selected, and flush-to-zero exponentials (the
// non-ftz __expf/__logf add a range test and two predicated multiplies each): no branches, so a
// kernel can interleave it with independent work in one basic block. Differs from softplus()
// only where exp(v) < 2^-126, i.e. δ below 1e-38 becomes 0.
QUAMBA_DEVICE float softplus_select(float v) {
  const float e = ex2(v * kLog2e);
  const float series = e * (1.0f - e * (0.5f - e * (1.0f / 3.0f)));
  const float lg = lg2(1.0f + e) * 0.6931471805599453f;
  const float r = e < 0.015625f ? series : lg;
  return v > kSoftplusThreshold ? v : r;
}

// silu() with a flush-to-zero exponential and reciprocal (same value unless exp(-v) < 2^-126,
// where silu(v) = v either way).
QUAMBA_DEVICE float silu_ftz(float v) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + ex2(-v * kLog2e)));
  return v * r;
}

QUAMBA_DEVICE float silu(float v) { return __fdividef(v, 1.0f + __expf(-v)); }

// A·log2(e) for the int8 recipe: A = -exp(s_A · A_log_q).
QUAMBA_DEVICE float a_log2_from_i8(int8_t q, float s_A) { return -expf(dequantize_i8(q, s_A)) * kLog2e; }

// 16-byte global -> shared copy that bypasses L1 (streamed once). src_bytes = 0 zero-fills the
// destination without reading global memory (tail tokens past L).
QUAMBA_DEVICE void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
// 8-byte variant (rows of 8 int8 channels); .cg is 16-byte only, so this one goes through L1.
QUAMBA_DEVICE void cp_async_8(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 8 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
QUAMBA_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
QUAMBA_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Element access shared by the prefill and decode kernels: the kernel bodies are common, only
// dequantization differs. QuantIo serves the W8A8 params structs (int8 inputs with per-tensor
// scales, int8 A_log/D/δ bias), HalfIo the fp16 ones (fp16 inputs, fp32 A/D/δ bias).
template <class P>
struct QuantIo {
  using In = int8_t;
  static QUAMBA_DEVICE float a_log2(const P& p, int64_t i) { return a_log2_from_i8(p.A_log[i], p.s_A); }
  static QUAMBA_DEVICE float d(const P& p, int64_t e) { return p.D ? dequantize_i8(p.D[e], p.s_D) : 0.f; }
  static QUAMBA_DEVICE float bias(const P& p, int64_t e) {
    return p.delta_bias ? dequantize_i8(p.delta_bias[e], p.s_delta_bias) : 0.f;
  }
  static QUAMBA_DEVICE float s_u(const P& p) { return p.s_u; }
  static QUAMBA_DEVICE float s_delta(const P& p) { return p.s_delta; }
  static QUAMBA_DEVICE float s_z(const P& p) { return p.s_z; }
  static QUAMBA_DEVICE float s_B(const P& p) { return p.s_B; }
  static QUAMBA_DEVICE float s_C(const P& p) { return p.s_C; }
  static const void* weights(const P& p) { return p.A_log; }
};

template <class P>
struct HalfIo {
  using In = __half;
  static QUAMBA_DEVICE float a_log2(const P& p, int64_t i) { return p.A[i] * kLog2e; }
  static QUAMBA_DEVICE float d(const P& p, int64_t e) { return p.D ? p.D[e] : 0.f; }
  static QUAMBA_DEVICE float bias(const P& p, int64_t e) { return p.delta_bias ? p.delta_bias[e] : 0.f; }
  static QUAMBA_DEVICE float s_u(const P&) { return 1.f; }
  static QUAMBA_DEVICE float s_delta(const P&) { return 1.f; }
  static QUAMBA_DEVICE float s_z(const P&) { return 1.f; }
  static QUAMBA_DEVICE float s_B(const P&) { return 1.f; }
  static QUAMBA_DEVICE float s_C(const P&) { return 1.f; }
  static const void* weights(const P& p) { return p.A; }
};

}  // namespace detail
}  // namespace quamba::scan
