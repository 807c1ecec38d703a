// quamba/reference/gemm.hpp: linear layers (host reference).
//
// All GEMMs are "activation times weight-transposed", as in a PyTorch Linear:
//   A: (M, K) activations, row-major with row stride A.stride[0]
//   W: (N, K) weight, row-major (one output channel per row)
//   C: (M, N) output
// The int8 GEMM accumulates exactly in int32 (|acc| <= K·128·128 < 2^31 for K < 131072).
// Epilogues (the kernels implement the same fp32 expressions, in the same order, so integer
// outputs are bit-exact):
//   dequant:  y = float(acc) * alpha [* col_scale[n]] [+ bias[n]] [+ residual(m, n)]
//   requant:  q = q8(float(acc) * alpha [* col_scale[n]])       (round half even, saturate)
// alpha is one fp32 number prepared once by the caller, e.g. alpha = s_a * s_w for dequant
// and alpha = (s_a * s_w) * (1 / s_out) for requant (see requant_alpha).
#pragma once

#include <cstdint>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::reference {

inline float dequant_alpha(float s_a, float s_w) { return s_a * s_w; }
inline float requant_alpha(float s_a, float s_w, float s_out) { return (s_a * s_w) * (1.0f / s_out); }

inline bool gemm_shapes_ok(int64_t M, int64_t K, int64_t N, int64_t wk, int64_t cm, int64_t cn) {
  return M >= 0 && K > 0 && N > 0 && wk == K && cm == M && cn == N;
}

// C = A · Wᵀ, fp32 in and out, accumulated in double.
inline Status gemm_f32(TensorView<const float, 2> A, TensorView<const float, 2> W, TensorView<float, 2> C) {
  const int64_t M = A.size(0), K = A.size(1), N = W.size(0);
  if (!A.data || !W.data || !C.data || !gemm_shapes_ok(M, K, N, W.size(1), C.size(0), C.size(1)))
    return Status::kErrorInvalidArgument;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(A(m, k)) * W(n, k);
      C(m, n) = static_cast<float>(acc);
    }
  return Status::kSuccess;
}

// Weight-only int8 with one scale per weight row (the int8 lm_head option):
// C(m, n) = float(scale[n] · Σ_k A(m, k)·W(n, k)), the sum and the scaling in double. The device
// kernel (gemm/w8a16.cuh) adds in fp32 in another order; tests bound the difference by the sum
// of |terms|.
inline Status gemm_f32_w8_rowscale(TensorView<const float, 2> A, TensorView<const int8_t, 2> W, const float* scale,
                                   TensorView<float, 2> C) {
  const int64_t M = A.size(0), K = A.size(1), N = W.size(0);
  if (!A.data || !W.data || !scale || !C.data || !gemm_shapes_ok(M, K, N, W.size(1), C.size(0), C.size(1)))
    return Status::kErrorInvalidArgument;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(A(m, k)) * W(n, k);
      C(m, n) = static_cast<float>(acc * scale[n]);
    }
  return Status::kSuccess;
}

// acc = A · Wᵀ in exact int32.
inline Status gemm_i8_i32(TensorView<const int8_t, 2> A, TensorView<const int8_t, 2> W, TensorView<int32_t, 2> acc) {
  const int64_t M = A.size(0), K = A.size(1), N = W.size(0);
  if (!A.data || !W.data || !acc.data || !gemm_shapes_ok(M, K, N, W.size(1), acc.size(0), acc.size(1)))
    return Status::kErrorInvalidArgument;
  if (K >= 131072) return Status::kErrorNotSupported;  // int32 accumulation could overflow
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int32_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<int32_t>(A(m, k)) * static_cast<int32_t>(W(n, k));
      acc(m, n) = s;
    }
  return Status::kSuccess;
}

// Optional parts of an epilogue; null pointers / null views mean "absent".
struct EpilogueRef {
  float alpha = 1.0f;
  const float* col_scale = nullptr;          // (N) per-output-channel weight scale
  const float* bias = nullptr;               // (N), dequant only
  TensorView<const float, 2> residual{};     // (M, N), dequant only
};

inline float epilogue_value(const EpilogueRef& e, int32_t acc, int64_t m, int64_t n) {
  float v = static_cast<float>(acc) * e.alpha;
  if (e.col_scale) v *= e.col_scale[n];
  if (e.bias) v += e.bias[n];
  if (e.residual.data) v += e.residual(m, n);
  return v;
}

// y(m, n) = dequant epilogue of acc(m, n).
inline Status epilogue_dequant(TensorView<const int32_t, 2> acc, const EpilogueRef& e, TensorView<float, 2> y) {
  if (!acc.data || !y.data || y.size(0) != acc.size(0) || y.size(1) != acc.size(1)) return Status::kErrorInvalidArgument;
  for (int64_t m = 0; m < acc.size(0); ++m)
    for (int64_t n = 0; n < acc.size(1); ++n) y(m, n) = epilogue_value(e, acc(m, n), m, n);
  return Status::kSuccess;
}

// q(m, n) = requant epilogue of acc(m, n). Bias and residual are not part of requant.
inline Status epilogue_requant(TensorView<const int32_t, 2> acc, const EpilogueRef& e, TensorView<int8_t, 2> q) {
  if (!acc.data || !q.data || q.size(0) != acc.size(0) || q.size(1) != acc.size(1)) return Status::kErrorInvalidArgument;
  if (e.bias || e.residual.data) return Status::kErrorNotSupported;
  for (int64_t m = 0; m < acc.size(0); ++m)
    for (int64_t n = 0; n < acc.size(1); ++n) q(m, n) = saturate_round_i8(epilogue_value(e, acc(m, n), m, n));
  return Status::kSuccess;
}

}  // namespace quamba::reference
