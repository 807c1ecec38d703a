// quamba/reference/quant.hpp: per-tensor quantization of weights and the calibration
// observers of the Quamba recipe (SPEC §2), host only.
//
//   QuantTensor          int8 values + one fp32 scale (symmetric, per tensor, scale = absmax/127)
//   quantize_absmax      weights: q = q8(w · (1/s)), s = scale_from_absmax(max |w|)
//   RowQuantI8           int8 (rows, cols) row-major + one fp32 scale per row (weight-only
//                        per-row int8: the int8 embedding / lm_head option of the recipe)
//   quantize_rows_absmax row r: q = q8(w[r, :] · (1/s_r)), s_r = scale_from_absmax(max_k |w[r, k]|)
//   dequantize_rows      (rows, cols) fp32 with element (r, k) = float(q[r, k]) · s_r
//   AbsmaxObserver       running max of |v| over every value it sees (NaN ignored)
//   abs_quantile         exact α-quantile of |v|, linear interpolation between order statistics
//                        at position α·(n−1) (the numpy/torch default "linear" method)
//   PercentileEmaObserver  Quamba's observer for u: the α-quantile of |v| per sample, combined
//                        across samples by m ← m + 0.01·(cur − m); the first sample sets m
//   LayerObservers       every activation observer of one block (SPEC §2's table)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"

namespace quamba::reference {

// One int8 tensor with its per-tensor scale: value ≈ scale · q.
struct QuantTensor {
  std::vector<int8_t> q;
  float scale = 1.0f;
};

inline float absmax_of(const float* v, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    const float a = std::fabs(v[i]);
    if (a > m) m = a;  // NaN compares false and is skipped
  }
  return m;
}

// Symmetric absmax quantization of a whole tensor.
inline QuantTensor quantize_absmax(const std::vector<float>& w) {
  QuantTensor t;
  t.scale = scale_from_absmax(absmax_of(w.data(), w.size()));
  const float inv = inverse_scale(t.scale);
  t.q.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) t.q[i] = quantize_i8(w[i], inv);
  return t;
}

// Per-row symmetric int8 (weight-only): row r ≈ scale[r] · q[r, :], scale[r] =
// scale_from_absmax(max_k |w[r, k]|). An all-zero row (or one whose only non-zero values are
// NaN) gets scale 1 and q = 0, as a zero tensor does in quantize_absmax; NaN elements quantize to
// 0 (quantize_i8) and are skipped by the row's absmax; a row with ±Inf gets scale 1 (its finite
// values round, the infinities saturate to 127 / −128). Every scale is finite and > 0.
struct RowQuantI8 {
  std::vector<int8_t> q;     // (rows, cols) row-major
  std::vector<float> scale;  // (rows)
  bool empty() const { return q.empty(); }
};

// rows <= 0, cols <= 0 or a null w give an empty RowQuantI8.
inline RowQuantI8 quantize_rows_absmax(const float* w, int64_t rows, int64_t cols) {
  RowQuantI8 t;
  if (w == nullptr || rows <= 0 || cols <= 0) return t;
  const size_t R = static_cast<size_t>(rows), C = static_cast<size_t>(cols);
  t.q.resize(R * C);
  t.scale.resize(R);
  for (size_t r = 0; r < R; ++r) {
    const float* row = w + r * C;
    // A row whose absmax/127 underflows to 0 (absmax below ~1e-43) is treated as a zero row.
    const float s0 = scale_from_absmax(absmax_of(row, C)), s = s0 > 0.0f ? s0 : 1.0f;
    const float inv = inverse_scale(s);
    t.scale[r] = s;
    int8_t* q = t.q.data() + r * C;
    for (size_t k = 0; k < C; ++k) q[k] = quantize_i8(row[k], inv);
  }
  return t;
}

// Element (r, k) is exactly static_cast<float>(q[r·cols + k]) · scale[r] (one fp32 multiply,
// round to nearest), the value every consumer of the int8 rows (kernels included) reproduces.
// Empty when cols <= 0 or q.size() != scale.size() · cols.
inline std::vector<float> dequantize_rows(const RowQuantI8& t, int64_t cols) {
  std::vector<float> out;
  if (cols <= 0 || t.q.size() != t.scale.size() * static_cast<size_t>(cols)) return out;
  const size_t C = static_cast<size_t>(cols);
  out.resize(t.q.size());
  for (size_t r = 0; r < t.scale.size(); ++r)
    for (size_t k = 0; k < C; ++k) out[r * C + k] = dequantize_i8(t.q[r * C + k], t.scale[r]);
  return out;
}

struct AbsmaxObserver {
  float value = 0.0f;
  void observe(float v) {
    const float a = std::fabs(v);
    if (a > value) value = a;
  }
  void observe(const float* v, size_t n) { value = std::max(value, absmax_of(v, n)); }
};

// Exact α-quantile of |values|: sorted ascending a[0..n-1], p = α·(n−1), i = floor(p),
// result = a[i] + (p − i)·(a[i+1] − a[i]). n = 0 gives 0. α outside [0, 1] is invalid.
// Takes its input by value (it is partially reordered with nth_element, O(n)).
inline Status abs_quantile(std::vector<float> values, double alpha, float* out) {
  if (!out || !(alpha >= 0.0 && alpha <= 1.0)) return Status::kErrorInvalidArgument;
  if (values.empty()) { *out = 0.0f; return Status::kSuccess; }
  for (auto& v : values) v = (v != v) ? 0.0f : std::fabs(v);
  const size_t n = values.size();
  const double p = alpha * static_cast<double>(n - 1);
  const size_t i = std::min(static_cast<size_t>(std::floor(p)), n - 1);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(i), values.end());
  const float lo = values[i];
  float hi = lo;
  if (i + 1 < n) hi = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(i + 1), values.end());
  const double frac = p - static_cast<double>(i);
  *out = static_cast<float>(static_cast<double>(lo) + frac * (static_cast<double>(hi) - lo));
  return Status::kSuccess;
}

// Quamba's percentile observer: per-sample α-quantile, EMA across samples (momentum 0.01).
struct PercentileEmaObserver {
  double alpha = 0.99999;
  float value = 0.0f;
  int64_t samples = 0;
  Status observe_sample(std::vector<float> sample) {
    if (sample.empty()) return Status::kSuccess;
    float cur = 0.0f;
    QUAMBA_RETURN_IF_ERROR(abs_quantile(std::move(sample), alpha, &cur));
    value = samples == 0 ? cur : value + 0.01f * (cur - value);
    ++samples;
    return Status::kSuccess;
  }
};

// The activation observers of one block; each is the |max| (or quantile) of the named tensor
// over the calibration tokens (padding positions excluded).
struct LayerObservers {
  AbsmaxObserver h;          // RMSNorm output (in_proj input)            -> s_h
  AbsmaxObserver xz;         // in_proj output, x and z together          -> s_xz
  AbsmaxObserver u;          // SiLU(conv) output                         -> s_u (absmax)
  PercentileEmaObserver u_ema;  //                                        -> s_u (Quamba percentile)
  std::vector<float> u_values;  // every |u| when kept                   -> s_u (exact global quantile)
  AbsmaxObserver xd;         // x_proj output (dt_low, B, C together)     -> s_xd
  AbsmaxObserver dt;         // dt_proj output, without its bias          -> s_dt
  AbsmaxObserver o_rotated;  // H·y/√E, the out_proj input with Hadamard  -> s_o (use_hadamard)
  AbsmaxObserver o_plain;    // y itself                                  -> s_o (no Hadamard)
};

}  // namespace quamba::reference
