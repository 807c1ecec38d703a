// quamba/scan/state_update.cuh: decode step of the selective scan (one token per sequence).
//
// Shapes (strides in ELEMENTS; channel stride must be 1):
//   u, delta, z   (B, E)     int8 (DecodeParamsI8) or fp16 (DecodeParamsF16); z optional.
//                            Typically the L = 1 rows of the block's activations (any batch stride).
//   Bm, Cm        (B, N)     slices of x_proj's output row (any batch stride).
//   A_log / A     (E, N)     int8 with s_A (A = -exp(s_A·A_log_q)) or fp32 A.
//   D, delta_bias (E)        optional.
//   states        (S, E, N)  fp32, contiguous, 16-byte aligned, updated in place.
//   state_idx     (B)        int32 optional: slot of each sequence (default: slot b). A slot
//                            outside [0, S) cannot be reported from the device: that sequence's
//                            state is left untouched and its y row is written as NaN.
//   y             (B, E)     fp16 out: (s·C + D·u)·silu(z).
// Fused dt_proj (DecodeParamsI8, optional): with dt_weight set, δraw is not read from `delta` but
// computed here as q(Σ_k dt_x(b, k)·dt_weight(e, k) · dt_alpha) with dt_x (B, dt_k) the dt_low
// part of x_proj's output row and dt_weight (E, dt_k), dt_k % 16 == 0, rows 16-byte aligned: the
// exact int32 sum and gemm::Requant's rounding, so δraw_q is bit-identical to the dt_proj GEMV.
// pdl: launch as a programmatic dependent of the previous kernel (core/launch.cuh; sm_90+). The
// weights (A_log/A, D, δ bias, dt_proj) are read before the dependency wait, everything else
// after it, unless prefetch_state is set: then `state_idx` and `states` are read before the wait
// too, which takes the state's DRAM round trip off the chain's critical path. Set it only when
// no kernel of the same chain of programmatic launches writes them (a kernel launched with pdl
// may start while earlier kernels of its chain still run): the model's decode step qualifies,
// because each step's chain begins with an ordinary launch (the embedding) and a layer's states
// are written only by that layer's scan.
// Numerics exactly as the prefill (selective_scan.cuh): softplus threshold 20, the same ex2 of
// δ·A·log2e, so a prefill followed by decode steps matches a longer prefill to fp32 rounding.
// Design: memory bound on the state (E·N·4 bytes read + written per sequence; 655 KB at
// E = 5120, N = 16). One thread owns 4 consecutive states of one channel (a float4), N/4
// threads a channel, so a warp streams contiguous 512-byte runs of the state; the N/4 partial
// dot products meet in a shuffle reduction. Inputs are tiny and L1/L2-cached.
// N ∈ {16, 32, 64}; else kErrorNotSupported. No workspace.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/gemv.cuh"
#include "quamba/scan/scan_common.cuh"

namespace quamba::scan {

struct DecodeParamsI8 {
  TensorView<const int8_t, 2> u, delta, z, Bm, Cm;  // z.data may be null
  float s_u = 1, s_delta = 1, s_z = 1, s_B = 1, s_C = 1;
  const int8_t* A_log = nullptr;
  float s_A = 1;
  const int8_t* D = nullptr;
  float s_D = 1;
  const int8_t* delta_bias = nullptr;
  float s_delta_bias = 1;
  float* states = nullptr;             // (num_slots, E, N)
  int64_t num_slots = 0;
  const int32_t* state_idx = nullptr;  // (B) optional
  TensorView<__half, 2> y;             // (B, E)
  const int8_t* dt_x = nullptr;        // (B, dt_k), row stride dt_x_stride: fused dt_proj input
  int64_t dt_x_stride = 0;
  const int8_t* dt_weight = nullptr;   // (E, dt_k) int8; set -> fused dt_proj, `delta` unused
  int64_t dt_k = 0;
  float dt_alpha = 1;
  bool pdl = false;
  bool prefetch_state = false;         // with pdl: read state_idx and states before the wait
};

struct DecodeParamsF16 {
  TensorView<const __half, 2> u, delta, z, Bm, Cm;
  const float* A = nullptr;
  const float* D = nullptr;
  const float* delta_bias = nullptr;
  float* states = nullptr;
  int64_t num_slots = 0;
  const int32_t* state_idx = nullptr;
  TensorView<__half, 2> y;
  bool pdl = false;
  bool prefetch_state = false;  // as DecodeParamsI8
};

template <int kDState_>
struct DecodeTraits {
  static constexpr int kDState = kDState_;
  static constexpr int kStatesPerThread = 4;  // one float4 of state
  static constexpr int kThreadsPerChannel = kDState / kStatesPerThread;
  static constexpr int kThreads = 256;
  static constexpr int kChannelsPerBlock = kThreads / kThreadsPerChannel;
  static_assert(kDState % 4 == 0 && 32 % kThreadsPerChannel == 0, "a channel's threads sit in one warp");
};

namespace detail {

template <class P>
struct DecodeIo;

template <>
struct DecodeIo<DecodeParamsI8> : QuantIo<DecodeParamsI8> {};
template <>
struct DecodeIo<DecodeParamsF16> : HalfIo<DecodeParamsF16> {};

// A thread's four states of (sequence b, channel ch): sp = nullptr for an invalid slot.
template <int N>
struct StateSlot {
  float4* sp = nullptr;
  float4 s4 = make_float4(0.f, 0.f, 0.f, 0.f);
};

template <int N, class Params>
QUAMBA_DEVICE StateSlot<N> load_state(const Params& p, int64_t b, int64_t ch, int q, int64_t E) {
  StateSlot<N> r;
  const int64_t slot = p.state_idx ? static_cast<int64_t>(p.state_idx[b]) : b;
  if (slot >= 0 && slot < p.num_slots) {
    r.sp = reinterpret_cast<float4*>(p.states + (slot * E + ch) * N + 4 * q);
    r.s4 = *r.sp;
  }
  return r;
}

// kFusedDt: the fused dt_proj form (DecodeParamsI8 with dt_weight set). It is its own
// instantiation because its dot product holds 32 more registers per thread (80 against 40 on
// sm_90a): compiled into every launch, those halve the resident threads and with them the state
// loads in flight (H200, run AF: the W8A8 update at batch 32 took 14.0 us against the fp16 one's
// 9.2 in the same decode step).
template <class Traits, class Params, bool kFusedDt>
__global__ void __launch_bounds__(Traits::kThreads) decode_kernel(const Params p) {
  using Io = DecodeIo<Params>;
  constexpr int N = Traits::kDState, G = Traits::kThreadsPerChannel;
  const int64_t E = p.u.shape[1];
  const int64_t b = blockIdx.y;
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * Traits::kChannelsPerBlock + threadIdx.x / G;
  const int q = threadIdx.x % G;
  grid_dependents_launch();
  // A channel's G threads are G aligned lanes of one warp; E is whole channels, so a group is
  // either entirely in range or entirely out, and the shuffles below only name live lanes.
  // Threads past E still take part in the dependency wait (every thread of a programmatic
  // dependent executes it, see core/launch.cuh).
  if (ch >= E) {
    grid_dependency_wait();
    return;
  }
  const int lane = threadIdx.x & 31;
  const unsigned group_mask = G == 32 ? 0xffffffffu : (((1u << G) - 1u) << (lane & ~(G - 1)));

  // The weights never change during a chain: fetched before the wait. The slot and the state
  // only with prefetch_state (see `pdl` above), else right after the wait.
  float a2[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) a2[j] = Io::a_log2(p, ch * N + 4 * q + j);
  const float d_skip = Io::d(p, ch), dt_bias = Io::bias(p, ch);
  StateSlot<N> st;
  if (p.prefetch_state) st = load_state<N>(p, b, ch, q, E);

  // Inputs written by earlier kernels of the chain (u, z, B, C; dt_x or delta below) are all
  // requested right after the dependency wait, before any of them is used, so that the critical
  // path pays one L2 round trip for them instead of one per use (written in use order, the
  // compiler kept the u, B / C and z loads behind the dt_proj reduction and the state store).
  using In = typename Io::In;
  struct Inputs {
    In u{}, z{};
    In Bv[4] = {}, Cv[4] = {};
  } in;
  auto load_inputs = [&] {
    in.u = p.u.data[b * p.u.stride[0] + ch];
    if (p.z.data) in.z = p.z.data[b * p.z.stride[0] + ch];
    const int64_t bn = b * p.Bm.stride[0] + 4 * q, cn = b * p.Cm.stride[0] + 4 * q;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      in.Bv[j] = p.Bm.data[bn + j];
      in.Cv[j] = p.Cm.data[cn + j];
    }
  };

  float dr = 0.f;
  if constexpr (kFusedDt) {
    static_assert(std::is_same_v<Params, DecodeParamsI8>, "fused dt_proj: W8A8 only");
    // Fused dt_proj: the channel's G threads split dt_k; the first chunks of the (constant)
    // weight row are loaded before the wait. dt_x comes from the previous kernel: ordinary
    // loads (load_chained, core/launch.cuh), never __ldg.
    constexpr int kPre = 4;
    const int chunks = static_cast<int>(p.dt_k / 16);
    const int4* wr = reinterpret_cast<const int4*>(p.dt_weight + ch * p.dt_k);
    int4 wpre[kPre];
#pragma unroll
    for (int i = 0; i < kPre; ++i) wpre[i] = q + i * G < chunks ? __ldg(wr + q + i * G) : make_int4(0, 0, 0, 0);
    grid_dependency_wait();
    const int4* xr = reinterpret_cast<const int4*>(p.dt_x + b * p.dt_x_stride);
    int4 xpre[kPre];
#pragma unroll
    for (int i = 0; i < kPre; ++i) xpre[i] = q + i * G < chunks ? load_chained(xr + q + i * G) : make_int4(0, 0, 0, 0);
    load_inputs();
    if (!p.prefetch_state) st = load_state<N>(p, b, ch, q, E);  // in flight during the dt_proj dot product
    int acc = 0;
#pragma unroll
    for (int i = 0; i < kPre; ++i) acc = gemm::detail::dot16(xpre[i], wpre[i], acc);
    for (int c = q + kPre * G; c < chunks; c += G) acc = gemm::detail::dot16(load_chained(xr + c), __ldg(wr + c), acc);
#pragma unroll
    for (int off = G / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(group_mask, acc, off, G);
    const gemm::Requant rq{p.dt_alpha};
    dr = to_float(rq.apply(acc, b, ch)) * Io::s_delta(p) + dt_bias;
  } else {
    grid_dependency_wait();
    const auto draw = p.delta.data[b * p.delta.stride[0] + ch];
    load_inputs();
    if (!p.prefetch_state) st = load_state<N>(p, b, ch, q, E);
    dr = to_float(draw) * Io::s_delta(p) + dt_bias;
  }

  const float uf = to_float(in.u) * Io::s_u(p);
  const float dl = softplus(dr);
  const float du = dl * uf;

  float acc = 0.f;
  const bool valid = st.sp != nullptr;
  if (valid) {
    float4 s4 = st.s4;
    float* s = reinterpret_cast<float*>(&s4);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float a = ex2(dl * a2[j]);
      const float Bv = to_float(in.Bv[j]) * Io::s_B(p);
      const float Cv = to_float(in.Cv[j]) * Io::s_C(p);
      s[j] = fmaf(a, s[j], du * Bv);
      acc = fmaf(s[j], Cv, acc);
    }
    *st.sp = s4;
  }
#pragma unroll
  for (int off = G / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(group_mask, acc, off, G);
  if (q == 0) {
    float out = acc + d_skip * uf;
    if (p.z.data) out *= silu(to_float(in.z) * Io::s_z(p));
    p.y.data[b * p.y.stride[0] + ch] = valid ? __float2half_rn(out) : __float2half_rn(__int_as_float(0x7fc00000));
  }
}

template <class V>
bool view2(const V& v, int64_t B, int64_t C) {
  return v.data != nullptr && v.shape[0] == B && v.shape[1] == C && v.stride[1] == 1 && v.stride[0] >= 0;
}

inline bool fused_dt_proj(const DecodeParamsI8& p) { return p.dt_weight != nullptr; }
inline bool fused_dt_proj(const DecodeParamsF16&) { return false; }

inline Status check_fused_dt(const DecodeParamsI8& p, int64_t B) {
  if (!p.dt_x || p.dt_k <= 0 || (B > 1 && p.dt_x_stride < p.dt_k) || !std::isfinite(p.dt_alpha))
    return Status::kErrorInvalidArgument;
  if (p.dt_k % 16 != 0 || p.dt_x_stride % 16 != 0 || !is_aligned(p.dt_x, 16) || !is_aligned(p.dt_weight, 16))
    return Status::kErrorMisaligned;
  return Status::kSuccess;
}
inline Status check_fused_dt(const DecodeParamsF16&, int64_t) { return Status::kSuccess; }

template <class Params>
Status check_decode(const Params& p) {
  const bool fused_dt = fused_dt_proj(p);
  if (!p.u.data || (!fused_dt && !p.delta.data) || !p.Bm.data || !p.Cm.data || !p.y.data || !p.states ||
      !DecodeIo<Params>::weights(p))
    return Status::kErrorInvalidArgument;
  const int64_t B = p.u.shape[0], E = p.u.shape[1], N = p.Bm.shape[1];
  if (B <= 0 || E <= 0 || N <= 0 || p.num_slots <= 0) return Status::kErrorInvalidArgument;
  if (fused_dt) QUAMBA_RETURN_IF_ERROR(check_fused_dt(p, B));
  if (!view2(p.u, B, E) || (!fused_dt && !view2(p.delta, B, E)) || !view2(p.Bm, B, N) || !view2(p.Cm, B, N) ||
      !view2(p.y, B, E) || (p.z.data && !view2(p.z, B, E)))
    return Status::kErrorInvalidArgument;
  if (!p.state_idx && p.num_slots < B) return Status::kErrorInvalidArgument;
  if (N != 16 && N != 32 && N != 64) return Status::kErrorNotSupported;
  if (B > 65535) return Status::kErrorNotSupported;
  if (!is_aligned(p.states, 16)) return Status::kErrorMisaligned;
  return Status::kSuccess;
}

}  // namespace detail

template <class Traits, class Params>
Status launch_decode(const Params& p, cudaStream_t stream) {
  if (p.Bm.shape[1] != Traits::kDState) return Status::kErrorNotSupported;
  const int64_t E = p.u.shape[1];
  const dim3 grid(static_cast<unsigned>((E + Traits::kChannelsPerBlock - 1) / Traits::kChannelsPerBlock),
                  static_cast<unsigned>(p.u.shape[0]));
  if constexpr (std::is_same_v<Params, DecodeParamsI8>) {
    if (detail::fused_dt_proj(p))
      return launch_kernel(detail::decode_kernel<Traits, Params, true>, grid, dim3(Traits::kThreads), 0, stream, p.pdl, p);
  }
  return launch_kernel(detail::decode_kernel<Traits, Params, false>, grid, dim3(Traits::kThreads), 0, stream, p.pdl, p);
}

inline Status can_implement(const DecodeParamsI8& p) { return detail::check_decode(p); }
inline Status can_implement(const DecodeParamsF16& p) { return detail::check_decode(p); }
inline size_t workspace_size(const DecodeParamsI8&) { return 0; }
inline size_t workspace_size(const DecodeParamsF16&) { return 0; }

template <class Params>
Status run_decode(const Params& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(detail::check_decode(p));
  return dispatch_int<16, 32, 64>(static_cast<int>(p.Bm.shape[1]),
                                  [&](auto n) { return launch_decode<DecodeTraits<decltype(n)::value>>(p, stream); });
}

inline Status run(const DecodeParamsI8& p, void* /*workspace*/, cudaStream_t stream) { return run_decode(p, stream); }
inline Status run(const DecodeParamsF16& p, void* /*workspace*/, cudaStream_t stream) { return run_decode(p, stream); }

}  // namespace quamba::scan
