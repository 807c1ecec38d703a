// quamba/reference/conv1d.hpp: causal depthwise conv1d + SiLU, prefill and decode (host).
//
// Layouts (strides in elements, token-major activations):
//   x, out        (B, L, C)  channel fastest; x may be a strided slice of xz (token stride 2E)
//   weight        (C, K)     K = width in {2, 3, 4}
//   bias          (C)        optional
//   conv state    (S, C, K)  the last K inputs x before the conv, slot 0 oldest; S >= B slots
// Prefill: out[b,t,c] = act(bias[c] + Σ_k w[c,k] · x[b, t-(K-1)+k, c]) where positions t' < 0
// read the initial state (its slots 1..K-1, i.e. the K-1 most recent inputs) or zero without one.
// The final state holds the last K inputs of [initial state, x], so prefill-then-update equals
// one longer prefill, and two chunked prefills equal one.
//
// int8 (SPEC §2 step 3): v = float(Σ w_q·x_q) * scale_wx + float(b_q) * s_b, with
// scale_wx = s_xz * s_w prepared once by the caller; out = q8(silu(v) * inv_s_out).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/reference/math.hpp"

namespace quamba::reference {

inline constexpr int kMaxConvWidth = 4;

struct Conv1dScalesI8 {
  float scale_wx = 1.0f;   // s_xz * s_w
  float s_b = 1.0f;        // bias scale
  float inv_s_out = 1.0f;  // 1 / s_u
};

namespace detail {

// Shared driver: for each (b, c) walks the sequence with a window of the last K inputs.
// `value(c, window)` computes one output from the K window entries (oldest first).
template <typename T, typename Value>
Status conv1d_prefill_impl(TensorView<const T, 3> x, int K, TensorView<const T, 3> state_in,
                           TensorView<T, 3> state_out, TensorView<T, 3> out, Value&& value) {
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2);
  if (!x.data || !out.data || K < 2 || K > kMaxConvWidth) return K < 2 || K > kMaxConvWidth ? Status::kErrorNotSupported : Status::kErrorInvalidArgument;
  if (out.size(0) != B || out.size(1) != L || out.size(2) != C) return Status::kErrorInvalidArgument;
  if (state_in.data && (state_in.size(0) < B || state_in.size(1) != C || state_in.size(2) != K)) return Status::kErrorInvalidArgument;
  if (state_out.data && (state_out.size(0) < B || state_out.size(1) != C || state_out.size(2) != K)) return Status::kErrorInvalidArgument;
  std::vector<T> outbuf(static_cast<size_t>(L));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      T win[kMaxConvWidth] = {};
      for (int k = 0; k < K; ++k) win[k] = state_in.data ? state_in(b, c, k) : T(0);
      for (int64_t t = 0; t < L; ++t) {
        for (int k = 0; k + 1 < K; ++k) win[k] = win[k + 1];
        win[K - 1] = x(b, t, c);
        outbuf[t] = value(c, win);
      }
      // Written after the whole row is read so that out may alias x.
      for (int64_t t = 0; t < L; ++t) out(b, t, c) = outbuf[t];
      if (state_out.data)
        for (int k = 0; k < K; ++k) state_out(b, c, k) = win[k];
    }
  return Status::kSuccess;
}

inline float conv_i8_value(const int8_t* w, int K, int8_t bias_q, bool has_bias, const Conv1dScalesI8& s,
                           const int8_t* win) {
  int32_t acc = 0;
  for (int k = 0; k < K; ++k) acc += static_cast<int32_t>(w[k]) * static_cast<int32_t>(win[k]);
  float v = static_cast<float>(acc) * s.scale_wx;
  if (has_bias) v += static_cast<float>(bias_q) * s.s_b;
  return v / (1.0f + std::exp(-v));
}

}  // namespace detail

// fp32 prefill. weight (C, K) contiguous rows; silu=false gives the plain convolution.
inline Status conv1d_prefill(TensorView<const float, 3> x, const float* weight, int K, const float* bias, bool silu,
                             TensorView<const float, 3> state_in, TensorView<float, 3> state_out,
                             TensorView<float, 3> out) {
  if (!weight) return Status::kErrorInvalidArgument;
  return detail::conv1d_prefill_impl<float>(x, K, state_in, state_out, out, [&](int64_t c, const float* win) {
    double acc = bias ? bias[c] : 0.0;
    for (int k = 0; k < K; ++k) acc += static_cast<double>(weight[c * K + k]) * win[k];
    const float v = static_cast<float>(acc);
    return silu ? reference::silu(v) : v;
  });
}

// int8 prefill with SiLU and every scale fused (SPEC §2 step 3).
inline Status conv1d_prefill_i8(TensorView<const int8_t, 3> x, const int8_t* weight, int K, const int8_t* bias,
                                const Conv1dScalesI8& scales, TensorView<const int8_t, 3> state_in,
                                TensorView<int8_t, 3> state_out, TensorView<int8_t, 3> out) {
  if (!weight) return Status::kErrorInvalidArgument;
  return detail::conv1d_prefill_impl<int8_t>(x, K, state_in, state_out, out, [&](int64_t c, const int8_t* win) {
    const float u = detail::conv_i8_value(weight + c * K, K, bias ? bias[c] : 0, bias != nullptr, scales, win);
    return quantize_i8(u, scales.inv_s_out);
  });
}

// Decode update, one token per sequence. x: (B, C); state: (S, C, K) updated in place;
// state_idx (B, optional) picks the state slot of each sequence (default slot b).
template <typename T, typename Value>
Status conv1d_update_impl(TensorView<const T, 2> x, TensorView<T, 3> state, const int32_t* state_idx, int K,
                          TensorView<T, 2> out, Value&& value) {
  const int64_t B = x.size(0), C = x.size(1);
  if (!x.data || !state.data || !out.data || out.size(0) != B || out.size(1) != C || state.size(1) != C)
    return Status::kErrorInvalidArgument;
  if (K < 2 || K > kMaxConvWidth || state.size(2) != K) return Status::kErrorNotSupported;
  // Every slot is validated before any state is touched.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t slot = state_idx ? state_idx[b] : b;
    if (slot < 0 || slot >= state.size(0)) return Status::kErrorOutOfRange;
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t slot = state_idx ? state_idx[b] : b;
    for (int64_t c = 0; c < C; ++c) {
      T win[kMaxConvWidth] = {};
      for (int k = 0; k + 1 < K; ++k) win[k] = state(slot, c, k + 1);
      win[K - 1] = x(b, c);
      for (int k = 0; k < K; ++k) state(slot, c, k) = win[k];
      out(b, c) = value(c, win);
    }
  }
  return Status::kSuccess;
}

inline Status conv1d_update(TensorView<const float, 2> x, TensorView<float, 3> state, const int32_t* state_idx,
                            const float* weight, int K, const float* bias, bool silu, TensorView<float, 2> out) {
  if (!weight) return Status::kErrorInvalidArgument;
  return conv1d_update_impl<float>(x, state, state_idx, K, out, [&](int64_t c, const float* win) {
    double acc = bias ? bias[c] : 0.0;
    for (int k = 0; k < K; ++k) acc += static_cast<double>(weight[c * K + k]) * win[k];
    const float v = static_cast<float>(acc);
    return silu ? reference::silu(v) : v;
  });
}

inline Status conv1d_update_i8(TensorView<const int8_t, 2> x, TensorView<int8_t, 3> state, const int32_t* state_idx,
                               const int8_t* weight, int K, const int8_t* bias, const Conv1dScalesI8& scales,
                               TensorView<int8_t, 2> out) {
  if (!weight) return Status::kErrorInvalidArgument;
  return conv1d_update_impl<int8_t>(x, state, state_idx, K, out, [&](int64_t c, const int8_t* win) {
    const float u = detail::conv_i8_value(weight + c * K, K, bias ? bias[c] : 0, bias != nullptr, scales, win);
    return quantize_i8(u, scales.inv_s_out);
  });
}

}  // namespace quamba::reference
