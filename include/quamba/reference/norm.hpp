// quamba/reference/norm.hpp: fused residual-add + RMSNorm (host reference).
//
// Shapes: h, residual, out are (M, D) views, M = B·L tokens, D = d_model; gamma is D floats.
//   residual <- residual + h        (h.data == nullptr: residual is left as it is; layer 0
//                                     passes residual = embedding output and h = null)
//   out      = residual * rsqrt(mean(residual^2) + eps) * gamma
// The residual stream is fp32. Statistics are accumulated in double here (the oracle); the
// kernels accumulate in fp32 and are compared with a tolerance.
// The int8 variant writes q(out * inv_scale) (SPEC §2 step 1).
#pragma once

#include <cmath>
#include <cstdint>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::reference {

namespace detail {
template <typename Store>
Status add_rmsnorm_impl(TensorView<const float, 2> h, TensorView<float, 2> residual, const float* gamma,
                        float eps, Store&& store) {
  const int64_t M = residual.size(0), D = residual.size(1);
  if (residual.data == nullptr || gamma == nullptr || D <= 0 || M < 0) return Status::kErrorInvalidArgument;
  if (h.data != nullptr && (h.size(0) != M || h.size(1) != D)) return Status::kErrorInvalidArgument;
  for (int64_t m = 0; m < M; ++m) {
    double ss = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      float r = residual(m, d);
      if (h.data != nullptr) r += h(m, d);
      residual(m, d) = r;
      ss += static_cast<double>(r) * r;
    }
    const float rstd = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
    for (int64_t d = 0; d < D; ++d) store(m, d, residual(m, d) * rstd * gamma[d]);
  }
  return Status::kSuccess;
}
}  // namespace detail

inline Status add_rmsnorm(TensorView<const float, 2> h, TensorView<float, 2> residual, const float* gamma,
                          float eps, TensorView<float, 2> out) {
  if (out.data == nullptr || out.size(0) != residual.size(0) || out.size(1) != residual.size(1))
    return Status::kErrorInvalidArgument;
  return detail::add_rmsnorm_impl(h, residual, gamma, eps, [&](int64_t m, int64_t d, float v) { out(m, d) = v; });
}

inline Status add_rmsnorm_i8(TensorView<const float, 2> h, TensorView<float, 2> residual, const float* gamma,
                             float eps, float inv_scale, TensorView<int8_t, 2> out) {
  if (out.data == nullptr || out.size(0) != residual.size(0) || out.size(1) != residual.size(1))
    return Status::kErrorInvalidArgument;
  return detail::add_rmsnorm_impl(h, residual, gamma, eps,
                                  [&](int64_t m, int64_t d, float v) { out(m, d) = quantize_i8(v, inv_scale); });
}

}  // namespace quamba::reference
