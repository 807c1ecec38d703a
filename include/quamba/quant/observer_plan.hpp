// quamba/quant/observer_plan.hpp: the host-side arithmetic of the GPU calibration observers
// (quant/observers.cuh), kept free of CUDA so it compiles with a plain C++ compiler and is
// tested on machines without a GPU.
//
//   quantile_rank(n, α)        the two order statistics and the interpolation weight of the
//                              α-quantile of n values, computed with exactly the expressions of
//                              reference::abs_quantile (p = α·(n−1) in double, i = floor(p))
//   top_tail_capacity(n, α)    how many of the LARGEST values a buffer must keep so that the
//                              α-quantile of any multiset of at most n values is exact
//   GpuCalibratorConfig        sizes a GpuCalibrator is planned for; validate_config checks it
//   GpuCalibratorPlan          element counts of every device buffer of a GpuCalibrator (the
//                              CUB sort scratch, which depends on the device, is added by
//                              GpuCalibrator::workspace_size)
//
// Why a "top tail": the α-quantile only needs the order statistics at ranks i and i+1
// (ascending, 0-based). Keeping the n − i largest values of a stream therefore suffices, and for
// Quamba's α = 0.99999 that is about 1e-5·n + 2 values: the per-sample quantile of a 512-token
// sample with E = 5120 needs 28 values per layer, the exact global quantile over 512 such
// samples ~13.4k values per layer, instead of the 1.34e9 values per layer a full copy needs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "quamba/core/status.hpp"

namespace quamba::quant {

// Order statistics behind the α-quantile of n ≥ 1 values sorted ascending a[0..n−1]:
// result = float(double(a[lo]) + frac·(double(a[hi]) − double(a[lo]))), hi = min(lo + 1, n − 1).
struct QuantileRank {
  uint64_t lo = 0, hi = 0;
  double frac = 0.0;
};

// Same expressions, same evaluation order as reference::abs_quantile. alpha in [0, 1], n ≥ 1.
inline QuantileRank quantile_rank(uint64_t n, double alpha) {
  QuantileRank r;
  const double p = alpha * static_cast<double>(n - 1);
  r.lo = std::min(static_cast<uint64_t>(std::floor(p)), n - 1);
  r.hi = r.lo + 1 < n ? r.lo + 1 : r.lo;
  r.frac = p - static_cast<double>(r.lo);
  return r;
}

// Number of largest values that must be kept so that ranks lo and hi of every multiset of
// m ≤ n values are inside the kept tail: m − lo(m) is non-decreasing in m (lo grows by at most
// one per extra value in exact arithmetic), and one value of slack covers the rounding of
// α·(m−1) in double; the observers still check the invariant for every actual m and report
// kErrorInternal if it ever failed. Never more than n.
inline uint64_t top_tail_capacity(uint64_t n, double alpha) {
  if (n == 0) return 0;
  return std::min<uint64_t>(n, n - quantile_rank(n, alpha).lo + 1);
}

struct GpuCalibratorConfig {
  int64_t n_layer = 0;            // number of blocks (observe's `layer` is in [0, n_layer))
  int64_t d_inner = 0;            // E: columns of every Site::kU view
  int64_t max_sample_tokens = 0;  // most tokens of u observed per layer between two end_sample()
  double alpha = 0.99999;         // quantile of |u| (per sample for the EMA, and the exact global one)
  bool keep_u_values = false;     // also compute the exact global α-quantile of |u| per layer
  int64_t max_total_tokens = 0;   // keep_u_values only: most tokens of u per layer over the whole run
};

// Largest element count of one sort (CUB is called with 32-bit item counts).
inline constexpr uint64_t kMaxSortItems = static_cast<uint64_t>(std::numeric_limits<int32_t>::max());

struct GpuCalibratorPlan {
  uint64_t sample_capacity = 0;   // max_sample_tokens·E: |u| values of one sample and layer
  uint64_t total_capacity = 0;    // max_total_tokens·E (keep_u_values), else 0
  uint64_t sample_tail = 0;       // largest values of the current sample kept per layer
  uint64_t global_tail = 0;       // largest values of the whole run kept per layer (keep_u_values)
  uint64_t sort_items = 0;        // capacity of each of the two sort key buffers
};

// Validates the sizes; kErrorNotSupported when a sort would exceed kMaxSortItems.
inline Status validate_config(const GpuCalibratorConfig& c) {
  if (c.n_layer <= 0 || c.d_inner <= 0 || c.max_sample_tokens <= 0) return Status::kErrorInvalidArgument;
  if (!(c.alpha >= 0.0 && c.alpha <= 1.0)) return Status::kErrorInvalidArgument;
  if (c.keep_u_values && c.max_total_tokens < c.max_sample_tokens) return Status::kErrorInvalidArgument;
  if (!c.keep_u_values && c.max_total_tokens < 0) return Status::kErrorInvalidArgument;
  // Products below must not overflow: bound each factor well inside 2^63.
  constexpr int64_t kBig = int64_t{1} << 31;
  if (c.d_inner >= kBig || c.max_sample_tokens >= kBig || c.max_total_tokens >= kBig || c.n_layer >= kBig)
    return Status::kErrorNotSupported;
  return Status::kSuccess;
}

inline Status make_plan(const GpuCalibratorConfig& c, GpuCalibratorPlan* out) {
  if (!out) return Status::kErrorInvalidArgument;
  QUAMBA_RETURN_IF_ERROR(validate_config(c));
  GpuCalibratorPlan p;
  p.sample_capacity = static_cast<uint64_t>(c.max_sample_tokens) * static_cast<uint64_t>(c.d_inner);
  const uint64_t ts = top_tail_capacity(p.sample_capacity, c.alpha);
  if (c.keep_u_values) {
    p.total_capacity = static_cast<uint64_t>(c.max_total_tokens) * static_cast<uint64_t>(c.d_inner);
    p.global_tail = top_tail_capacity(p.total_capacity, c.alpha);
  }
  // The sample tail also feeds the global tail at end_sample(): the global top-T of the union of
  // samples is the top-T of the union of each sample's top-T, so it keeps max(ts, global_tail)
  // values (never more than a whole sample).
  p.sample_tail = std::min(p.sample_capacity, std::max(ts, p.global_tail));
  // One sort orders [sample tail | new chunk] (observe) or [global tail | sample tail]
  // (end_sample); both key buffers hold the larger of the two.
  p.sort_items = p.sample_tail + p.sample_capacity;
  if (c.keep_u_values) p.sort_items = std::max(p.sort_items, p.global_tail + p.sample_tail);
  if (p.sort_items > kMaxSortItems) return Status::kErrorNotSupported;
  *out = p;
  return Status::kSuccess;
}

}  // namespace quamba::quant
