// quamba/reference/scan.hpp: the selective scan, prefill and decode (host reference).
//
// Shapes (token-major, strides in elements):
//   u, delta, z, y   (B, L, E)    delta is the raw dt_proj output, before bias and softplus
//   Bm, Cm           (B, L, N)    may be strided slices of x_proj's output
//   A                (E, N)       A = -exp(A_log), fp32
//   D, delta_bias    (E)          optional
//   states           (S, E, N)    fp32; S >= B slots (state_idx picks the slot, decode only)
// Recurrence, sequential as written in SPEC §1 step 7 (the oracle; kernels use chunks):
//   δ = softplus(delta + bias)            (threshold 20; only when delta_softplus)
//   s_t = exp(δ_t·A) ⊙ s_{t-1} + (δ_t·u_t)·B_t
//   y_t = s_t·C_t + D·u_t ;  y_t *= silu(z_t)  (when z is given)
// `Acc` is the arithmetic type: float is the reference the kernels are held to; double is the
// naive high-precision recurrence the float reference is itself checked against.
// The W8A8 entry point dequantizes its int8 inputs exactly as SPEC §2 step 6 says and runs the
// same recurrence.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/reference/math.hpp"

namespace quamba::reference {

struct ScanArgs {
  TensorView<const float, 3> u, delta, Bm, Cm, z;  // z.data may be null (no gate)
  const float* A = nullptr;                        // (E, N)
  const float* D = nullptr;                        // (E) optional
  const float* delta_bias = nullptr;               // (E) optional
  bool delta_softplus = true;
  const float* initial_state = nullptr;            // (B, E, N) optional
  float* final_state = nullptr;                    // (B, E, N) optional; may equal initial_state
  TensorView<float, 3> y;
};

template <typename Acc = float>
Status selective_scan(const ScanArgs& a) {
  const int64_t B = a.u.size(0), L = a.u.size(1), E = a.u.size(2), N = a.Bm.size(2);
  auto same3 = [&](const auto& v, int64_t d2) {
    return v.data && v.size(0) == B && v.size(1) == L && v.size(2) == d2;
  };
  if (!a.u.data || !a.A || !a.y.data || !same3(a.delta, E) || !same3(a.Bm, N) || !same3(a.Cm, N) ||
      !same3(a.y, E) || (a.z.data && !same3(a.z, E)) || N <= 0 || E <= 0)
    return Status::kErrorInvalidArgument;
  std::vector<Acc> s(static_cast<size_t>(N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t n = 0; n < N; ++n)
        s[n] = a.initial_state ? static_cast<Acc>(a.initial_state[(b * E + e) * N + n]) : Acc(0);
      for (int64_t t = 0; t < L; ++t) {
        Acc dt = static_cast<Acc>(a.delta(b, t, e));
        if (a.delta_bias) dt += static_cast<Acc>(a.delta_bias[e]);
        if (a.delta_softplus) dt = softplus(dt);
        const Acc u = static_cast<Acc>(a.u(b, t, e));
        Acc out = 0;
        for (int64_t n = 0; n < N; ++n) {
          const Acc decay = std::exp(dt * static_cast<Acc>(a.A[e * N + n]));
          s[n] = decay * s[n] + (dt * u) * static_cast<Acc>(a.Bm(b, t, n));
          out += s[n] * static_cast<Acc>(a.Cm(b, t, n));
        }
        if (a.D) out += static_cast<Acc>(a.D[e]) * u;
        if (a.z.data) out *= silu(static_cast<Acc>(a.z(b, t, e)));
        a.y(b, t, e) = static_cast<float>(out);
      }
      if (a.final_state)
        for (int64_t n = 0; n < N; ++n) a.final_state[(b * E + e) * N + n] = static_cast<float>(s[n]);
    }
  return Status::kSuccess;
}

// int8 inputs of the W8A8 scan and their per-tensor scales (SPEC §2 step 6).
struct ScanArgsI8 {
  TensorView<const int8_t, 3> u, delta, Bm, Cm, z;  // z optional
  float s_u = 1, s_delta = 1, s_B = 1, s_C = 1, s_z = 1;  // s_B == s_C == s_xd in the recipe
  const int8_t* A_log = nullptr;   // (E, N); A = -exp(s_A · A_log_q)
  float s_A = 1;
  const int8_t* D = nullptr;       // (E) optional
  float s_D = 1;
  const int8_t* delta_bias = nullptr;  // (E) optional
  float s_delta_bias = 1;
  const float* initial_state = nullptr;
  float* final_state = nullptr;
  TensorView<float, 3> y;
};

namespace detail {
inline std::vector<float> dequant3(TensorView<const int8_t, 3> v, float s) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  size_t i = 0;
  for (int64_t a = 0; a < v.size(0); ++a)
    for (int64_t b = 0; b < v.size(1); ++b)
      for (int64_t c = 0; c < v.size(2); ++c) out[i++] = dequantize_i8(v(a, b, c), s);
  return out;
}
}  // namespace detail

inline Status selective_scan_i8(const ScanArgsI8& q) {
  const int64_t B = q.u.size(0), L = q.u.size(1), E = q.u.size(2), N = q.Bm.size(2);
  // Shapes are checked here, before the dequantized copies are re-viewed as (B, L, E|N).
  auto same3 = [&](const auto& v, int64_t d2) {
    return v.data && v.size(0) == B && v.size(1) == L && v.size(2) == d2;
  };
  if (!q.u.data || !q.A_log || !q.y.data || !same3(q.delta, E) || !same3(q.Bm, N) || !same3(q.Cm, N) ||
      !same3(q.y, E) || (q.z.data && !same3(q.z, E)) || N <= 0 || E <= 0)
    return Status::kErrorInvalidArgument;
  const auto u = detail::dequant3(q.u, q.s_u), dt = detail::dequant3(q.delta, q.s_delta);
  const auto Bm = detail::dequant3(q.Bm, q.s_B), Cm = detail::dequant3(q.Cm, q.s_C);
  std::vector<float> z = q.z.data ? detail::dequant3(q.z, q.s_z) : std::vector<float>();
  std::vector<float> A(static_cast<size_t>(E * N)), D, bias;
  for (int64_t i = 0; i < E * N; ++i) A[i] = -std::exp(dequantize_i8(q.A_log[i], q.s_A));
  if (q.D) { D.resize(E); for (int64_t e = 0; e < E; ++e) D[e] = dequantize_i8(q.D[e], q.s_D); }
  if (q.delta_bias) {
    bias.resize(E);
    for (int64_t e = 0; e < E; ++e) bias[e] = dequantize_i8(q.delta_bias[e], q.s_delta_bias);
  }
  ScanArgs a;
  a.u = make_view(u.data(), B, L, E);
  a.delta = make_view(dt.data(), B, L, E);
  a.Bm = make_view(Bm.data(), B, L, N);
  a.Cm = make_view(Cm.data(), B, L, N);
  if (q.z.data) a.z = make_view(z.data(), B, L, E);
  a.A = A.data();
  a.D = q.D ? D.data() : nullptr;
  a.delta_bias = q.delta_bias ? bias.data() : nullptr;
  a.delta_softplus = true;
  a.initial_state = q.initial_state;
  a.final_state = q.final_state;
  a.y = q.y;
  return selective_scan<float>(a);
}

// Decode: one token for each of B sequences. states (S, E, N) updated in place; state_idx (B,
// optional) selects each sequence's slot. Inputs are the L = 1 views (B, 1, ·) of ScanArgs.
inline Status selective_state_update(ScanArgs a, float* states, int64_t num_slots, const int32_t* state_idx) {
  const int64_t B = a.u.size(0), E = a.u.size(2), N = a.Bm.size(2);
  // Batch extents are checked before slicing per sequence; the rest is checked per slice.
  auto one_token = [&](const auto& v) { return v.data && v.size(0) == B && v.size(1) == 1; };
  if (!states || !one_token(a.u) || !one_token(a.delta) || !one_token(a.Bm) || !one_token(a.Cm) ||
      !one_token(a.y) || (a.z.data && !one_token(a.z)))
    return Status::kErrorInvalidArgument;
  // Every slot is validated before any state is touched.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t slot = state_idx ? state_idx[b] : b;
    if (slot < 0 || slot >= num_slots) return Status::kErrorOutOfRange;
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t slot = state_idx ? state_idx[b] : b;
    ScanArgs one = a;
    one.u = a.u.slice(0, b, 1);
    one.delta = a.delta.slice(0, b, 1);
    one.Bm = a.Bm.slice(0, b, 1);
    one.Cm = a.Cm.slice(0, b, 1);
    if (a.z.data) one.z = a.z.slice(0, b, 1);
    one.y = a.y.slice(0, b, 1);
    one.initial_state = states + slot * E * N;
    one.final_state = states + slot * E * N;
    QUAMBA_RETURN_IF_ERROR(selective_scan<float>(one));
  }
  return Status::kSuccess;
}

}  // namespace quamba::reference
