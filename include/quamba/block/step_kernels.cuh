// quamba/block/step_kernels.cuh: fused kernels of the W8A8 decode step (one token for each of
// M <= kStepMaxRows sequences).
//
// A decode step of Mamba-2.8B reads 41 MB of int8 weights per layer (in_proj 26 MB, out_proj
// 13 MB); everything else is a few KB. The unfused step is eight dependent kernels per layer,
// and at batch 1 their launch ramps and DRAM round trips cost more than the weight streams
// (bench/RESULTS.md). Here a layer is four kernels, each launched as a programmatic dependent
// of the previous one (core/launch.cuh), so its CTAs load their first weights while the previous
// kernel still runs:
//   in_proj_step   prologue: h_q = q(RMSNorm(r)·γ / s_h) of the M residual rows, into shared
//                  memory (every CTA recomputes it: 10 KB of L2 reads per row and CTA, instead
//                  of one more dependent kernel); GEMV over in_proj's 2E rows; epilogue per
//                  output (m, n): requantize; n < E: the causal-conv update of channel n of
//                  sequence m (state shift, int8 dot, SiLU, requantize) -> u_q; n >= E: z_q.
//   x_proj         gemm::run_gemv (pdl).
//   dt_proj + scan scan::run with DecodeParamsI8::dt_weight (pdl).
//   out_proj_step  prologue: y_q = q(H·y·f) (or q(y·f) without the rotation) of the M rows of
//                  the scan output, into shared memory (every CTA: 10 KB of L2 reads per row);
//                  GEMV over out_proj's D rows; epilogue r += s·acc (fp32, in place), the r
//                  values requested right after the dependency wait with y (H200, TPOT batch 1:
//                  1.37 -> 1.25 ms, bench/RESULTS.md run AD).
// Numerics: every integer and fp32 operation of the unfused kernels, except two reduction
// orders: the RMSNorm sum of squares and the Hadamard sums are added in another order, which
// can move an int8 value by one step where the fp32 result sits on a rounding boundary.
// Shapes: D, E multiples of 16; E = m·2^k with k >= 5 when rotating (every public Mamba size);
// shared memory: in_proj M·D bytes plus about 1 KB within 48 KiB (M = 8: D <= 6000), out_proj
// 4·E + M·E bytes within the device's opt-in limit.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "quamba/conv1d/causal_conv1d.cuh"
#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/gemv.cuh"
#include "quamba/hadamard/hadamard.cuh"

namespace quamba::block {

inline constexpr int kStepMaxRows = 8;

struct InProjStepParams {
  int M = 0;                           // sequences (rows), 1..kStepMaxRows
  int D = 0, E = 0, K = 4;             // d_model, d_inner, conv width
  const float* residual = nullptr;     // (M, D) fp32, row stride D
  const float* gamma = nullptr;        // (D) RMSNorm weight
  float eps = 1e-5f, inv_s_h = 1;
  const int8_t* w_in = nullptr;        // (2E, D)
  float alpha_in = 1;                  // requantization of in_proj: s_Win·s_h/s_xz
  int8_t* conv_state = nullptr;        // (S, E, K), updated in place
  int64_t num_slots = 0;
  const int32_t* state_idx = nullptr;  // (M) optional, slot of each sequence (default: slot m)
  int32_t* error_flag = nullptr;       // optional: set to 1 on a bad state_idx entry
  const int8_t* conv_w = nullptr;      // (E, K)
  const int8_t* conv_b = nullptr;      // (E) optional
  float conv_scale_wx = 1, conv_s_b = 1, conv_inv_s_u = 1;
  int8_t* u = nullptr;                 // (M, E) out
  int8_t* xz = nullptr;                // (M, 2E) out: the z half [E, 2E) is written
  bool pdl = false;
  // With pdl: read state_idx and conv_state before the dependency wait. Only when no kernel of
  // the same chain of programmatic launches writes them (scan::DecodeParamsI8::prefetch_state).
  bool prefetch_state = false;
  // Copy each CTA's 16 weight rows into shared memory (cp.async) before the dependency wait
  // instead of holding its first chunks in registers: fewer registers, more CTAs resident. Used
  // where M·D + 16·D bytes plus the static part fit in 48 KiB (else the register form); the same
  // bits either way.
  bool stage_weights = false;
};

struct OutProjStepParams {
  int M = 0;                  // rows, 1..kStepMaxRows
  int D = 0, E = 0;
  const __half* y = nullptr;  // (M, E) gated scan output
  bool rotate = true;         // y_q = q(H·y·factor) when true, q(y·factor) otherwise
  float factor = 1;           // quantization factor (with 1/√E folded in when rotating)
  const int8_t* w_out = nullptr;  // (D, E), the rotation folded in
  float alpha_out = 1;
  float* residual = nullptr;  // (M, D) fp32, r += alpha_out·acc in place
  bool pdl = false;
};

namespace detail {

// GEMV shapes of the two fused kernels. A warp owns kRowsPerGroup rows and splits K among its
// lanes (the reduction is shuffles only: no block barrier inside the row loop, so a warp in its
// epilogue never holds the others back); 5 chunks per lane and row are loaded at once: in_proj
// (K = d_model = 2560) reads a row pair in one round, out_proj (K = d_inner = 5120) in two.
// in_proj: one CTA of 8 warps per 16-row block (640 CTAs at d_inner 5120), not persistent. Every
// CTA normalizes the residual again (10 KB of L2 reads per row and CTA), but most CTAs are
// resident at once and issue their weight loads before the dependency wait, so most of the weight
// stream is requested while the previous kernel finishes, and the epilogues' conv-state round
// trips of one CTA overlap the others' streams. Two forms: the rows' first chunks held in
// registers (StepInProjGemv; three CTAs per SM at M = 1: 396 of 640 on 132 SMs) or all 16 rows
// copied into shared memory (StepInProjGemvStaged, InProjStepParams::stage_weights, the block
// layer's default: 44 registers, five CTAs per SM by shared memory, H200 TPOT batch 1 1.42 ms
// against 1.51, bench/RESULTS.md run AD). Measured for the register form (H100, TPOT batch 1, same run):
// 1.94 ms, against 2.08 for a persistent grid of 4 CTAs of 4 warps per SM (the row blocks of a
// persistent CTA run one after another, each with a full DRAM round trip), 1.98 for 8-row
// CTAs of 4 warps, 2.05 for 4-row CTAs and 2.18 for 4-row CTAs of 2 warps.
// out_proj: 16-row blocks of 8 warps, at most kStepCtasPerSm CTAs per SM looping over them (at
// d_model 2560 that is 160 CTAs of one block each, so every CTA's rotation prologue, three block
// barriers, runs once and with 256 threads). Same kind of run, TPOT batch 1 with the scan's
// state prefetch: 1.80 ms, against 1.89 for 8-row blocks of 4 warps, 1.87 and 1.81 with both
// K-rounds of a row pair in flight at once (10 chunks per lane) at 4 and 8 warps; with 8-row
// blocks of 4 warps, 4 CTAs per SM measured 1.98 ms, 2 per SM 2.07 and 1 per SM 2.18.
template <int kMaxM>
using StepInProjGemv = gemm::GemvTraits<kMaxM, 32, 8, 2, 5>;
template <int kMaxM>
using StepOutProjGemv = gemm::GemvTraits<kMaxM, 32, 8, 2, 5>;
// The staged in_proj form reads its rows from shared memory: 2 chunks per lane and row suffice.
template <int kMaxM>
using StepInProjGemvStaged = gemm::GemvTraits<kMaxM, 32, 8, 2, 2>;
inline constexpr int kStepCtasPerSm = 4;

// Static shared memory of in_proj_step_kernel (its block reduction and conv inputs, below), an
// upper bound with alignment slack. The kernel is not opted in to more than the 48 KiB every
// device grants, so M·D bytes of normalized rows plus this must fit in 48 KiB.
template <int kMaxM>
constexpr size_t in_proj_static_smem() {
  using T = StepInProjGemv<kMaxM>;
  return sizeof(float) * (T::kThreads / 32) * kMaxM + size_t(kMaxM) * T::kRowsPerBlock * 4 + T::kRowsPerBlock * 5 +
         8 * kMaxM + 128;
}
inline constexpr size_t kInProjSmemLimit = 48 * 1024;

#if QUAMBA_HAS_CUDA_COMPILER

template <int kThreads, int kMaxM>
QUAMBA_DEVICE void block_sum(float (&v)[kMaxM], float (*red)[kMaxM]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int m = 0; m < kMaxM; ++m)
#pragma unroll
    for (int off = 16; off >= 1; off >>= 1) v[m] += __shfl_xor_sync(0xffffffffu, v[m], off);
  if (lane == 0)
#pragma unroll
    for (int m = 0; m < kMaxM; ++m) red[warp][m] = v[m];
  __syncthreads();
#pragma unroll
  for (int m = 0; m < kMaxM; ++m) {
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) s += red[w][m];
    v[m] = s;
  }
}

// One CTA per block of Traits::kRowsPerBlock rows of in_proj (launched with one CTA per block).
// kStaged (InProjStepParams::stage_weights): the block's weight rows are copied into shared
// memory (behind the normalized rows) before the dependency wait and read from there, so no
// registers hold them across the prologue.
template <typename Traits, bool kStaged = false>
__global__ void __launch_bounds__(Traits::kThreads) in_proj_step_kernel(const InProjStepParams p) {
  constexpr int kMaxM = Traits::kMaxM, kThreads = Traits::kThreads, kRows = Traits::kRowsPerBlock;
  constexpr int kW = conv1d::kMaxWidth;
  static_assert(kMaxM * kRows <= kThreads, "one thread per (sequence, row) fetches the conv inputs");
  extern __shared__ int4 smem_i4[];
  int8_t* hq = reinterpret_cast<int8_t*>(smem_i4);  // (M, D)
  __shared__ float red[kThreads / 32][kMaxM];
  // The conv inputs of the block's channel rows, fetched together with the residual so that the
  // epilogue does not start a DRAM round trip of its own: the state window of each (sequence,
  // row), the row's weights and bias, and each sequence's slot (-1: invalid).
  __shared__ int8_t conv_win[kMaxM][kRows][kW];
  __shared__ int8_t conv_wt[kRows][kW];
  __shared__ int8_t conv_bias[kRows];
  __shared__ int64_t slot_of[kMaxM];
  grid_dependents_launch();
  const int M = p.M, D = p.D, E = p.E, K = p.K;
  const int64_t N = 2 * static_cast<int64_t>(E);
  const int64_t row_begin = static_cast<int64_t>(blockIdx.x) * kRows;

  // Thread t < kMaxM·kRows fetches (m, j) = (t / kRows, t % kRows) into registers; stash_conv
  // moves them to shared memory once the residual loads are in flight as well.
  const int cm = static_cast<int>(threadIdx.x) / kRows, cj = static_cast<int>(threadIdx.x) % kRows;
  const int64_t cn = row_begin + cj;
  const bool conv_thread = cm < M && cn < E;
  int8_t win[kW] = {}, wt[kW] = {}, bias = 0;
  int64_t slot = -1;
  auto fetch_conv = [&] {
    if (!conv_thread) return;
    const int64_t s = p.state_idx ? static_cast<int64_t>(p.state_idx[cm]) : cm;
    slot = s >= 0 && s < p.num_slots ? s : -1;
    if (slot >= 0) {
      const int8_t* st = p.conv_state + (slot * E + cn) * K;
#pragma unroll
      for (int k = 0; k < kW; ++k)
        if (k < K) win[k] = st[k];
    }
    if (cm == 0) {
#pragma unroll
      for (int k = 0; k < kW; ++k)
        if (k < K) wt[k] = __ldg(p.conv_w + cn * K + k);
      if (p.conv_b) bias = __ldg(p.conv_b + cn);
    }
  };
  auto stash_conv = [&] {
    if (!conv_thread) return;
#pragma unroll
    for (int k = 0; k < kW; ++k) conv_win[cm][cj][k] = win[k];
    if (cj == 0) slot_of[cm] = slot;
    if (cm == 0) {
#pragma unroll
      for (int k = 0; k < kW; ++k) conv_wt[cj][k] = wt[k];
      conv_bias[cj] = bias;
    }
  };
  int8_t* rows = hq + static_cast<int64_t>(M) * D;  // kStaged: (kRows, D), 16-byte aligned (D % 16 == 0)
  if constexpr (kStaged) gemm::detail::stage_rows<kRows, kThreads>(rows, p.w_in, D, N, D, row_begin);
  if (p.prefetch_state) fetch_conv();

  auto prologue = [&] {
    grid_dependency_wait();
    if (!p.prefetch_state) fetch_conv();
    // RMSNorm statistics in fp32 as norm::add_rmsnorm: rstd = rsqrt(Σr²/D + eps); h = (r·rstd)·γ.
    // A thread's float4s of a row stay in registers between the two passes when they fit
    // (kRegVecs per thread: D <= 3072 at 256 threads, every public Mamba size), else the row is
    // read again (L2). 3 and not more: with 8 the M = 1 kernel took 128 registers (2 CTAs of 256
    // threads per SM), with 3 it takes 80 (3 per SM, 396 of the 640 CTAs at d_inner 5120 resident
    // with their weight loads in flight; ptxas reports 8 bytes of spill stores and loads).
    // H200, TPOT batch 1: 1.61 -> 1.52 ms (run AC).
    constexpr int kRegVecs = 3;
    const int d4 = D / 4;
    const bool in_regs = d4 <= kRegVecs * kThreads;
    float4 rv[kRegVecs];
    float ss[kMaxM];
#pragma unroll
    for (int m = 0; m < kMaxM; ++m) {
      ss[m] = 0.f;
      if (m >= M) continue;
      const float4* row = reinterpret_cast<const float4*>(p.residual + static_cast<int64_t>(m) * D);
      if (kMaxM == 1 && in_regs) {
#pragma unroll
        for (int j = 0; j < kRegVecs; ++j) {
          const int i = static_cast<int>(threadIdx.x) + j * kThreads;
          rv[j] = i < d4 ? load_chained(row + i) : make_float4(0.f, 0.f, 0.f, 0.f);
          ss[m] = fmaf(rv[j].x, rv[j].x, fmaf(rv[j].y, rv[j].y, fmaf(rv[j].z, rv[j].z, fmaf(rv[j].w, rv[j].w, ss[m]))));
        }
      } else {
        for (int i = threadIdx.x; i < d4; i += kThreads) {
          const float4 r = load_chained(row + i);
          ss[m] = fmaf(r.x, r.x, fmaf(r.y, r.y, fmaf(r.z, r.z, fmaf(r.w, r.w, ss[m]))));
        }
      }
    }
    stash_conv();  // read by the epilogue, after the barriers below
    block_sum<kThreads, kMaxM>(ss, red);
    auto quantize4 = [&](const float4& r, int m, int i, float rstd) {
      const float4 g = __ldg(reinterpret_cast<const float4*>(p.gamma) + i);
      char4 q;
      q.x = quantize_i8(__fmul_rn(__fmul_rn(r.x, rstd), g.x), p.inv_s_h);
      q.y = quantize_i8(__fmul_rn(__fmul_rn(r.y, rstd), g.y), p.inv_s_h);
      q.z = quantize_i8(__fmul_rn(__fmul_rn(r.z, rstd), g.z), p.inv_s_h);
      q.w = quantize_i8(__fmul_rn(__fmul_rn(r.w, rstd), g.w), p.inv_s_h);
      reinterpret_cast<char4*>(hq + m * D)[i] = q;
    };
#pragma unroll
    for (int m = 0; m < kMaxM; ++m) {
      if (m >= M) continue;
      const float rstd = rsqrtf(ss[m] / static_cast<float>(D) + p.eps);
      const float4* row = reinterpret_cast<const float4*>(p.residual + static_cast<int64_t>(m) * D);
      if (kMaxM == 1 && in_regs) {
#pragma unroll
        for (int j = 0; j < kRegVecs; ++j) {
          const int i = static_cast<int>(threadIdx.x) + j * kThreads;
          if (i < d4) quantize4(rv[j], m, i, rstd);
        }
      } else {
        for (int i = threadIdx.x; i < d4; i += kThreads) quantize4(load_chained(row + i), m, i, rstd);
      }
    }
    __syncthreads();
  };
  const gemm::Requant rq{p.alpha_in};
  auto load_a = [&](int m, int c) { return reinterpret_cast<const int4*>(hq + m * D)[c]; };
  auto store = [&](int m, int64_t n, int acc) {
    const int8_t v = rq.apply(acc, m, n);
    if (n >= E) {
      p.xz[static_cast<int64_t>(m) * N + n] = v;
      return;
    }
    // The conv update of channel n of sequence m (conv1d_update_kernel's function).
    const int j = static_cast<int>(n - row_begin);
    const int64_t sl = slot_of[m];
    int8_t* uo = p.u + static_cast<int64_t>(m) * E + n;
    if (sl < 0) {
      *uo = 0;
      if (p.error_flag) *p.error_flag = 1;
      return;
    }
    *uo = conv1d::detail::update_channel_i8<kW>(conv_win[m][j], p.conv_state + (sl * E + n) * K, v, conv_wt[j], K,
                                                p.conv_b ? &conv_bias[j] : nullptr, p.conv_s_b, p.conv_scale_wx,
                                                p.conv_inv_s_u);
  };
  if constexpr (kStaged) {
    prologue();  // ends with a block barrier
    gemm::ptx::cp_async_wait<0>();
    __syncthreads();
    gemm::detail::gemv_block_rows<Traits>(gemm::detail::SharedRows{rows, D}, N, D, M, row_begin, [] {}, load_a, store);
  } else {
    gemm::detail::gemv_block<Traits>(p.w_in, D, N, D, M, row_begin, prologue, load_a, store);
  }
}

// One power-of-two phase of the Walsh–Hadamard on an fp32 row in shared memory: butterflies over
// the kB index bits [lo, lo + kB) of every 2^k block (consecutive lanes take consecutive low
// indices, lo >= 5: conflict-free).
template <int kB, int kThreads>
QUAMBA_DEVICE void pow2_smem_phase(float* s, int n, int lo) {
  constexpr int kR = 1 << kB;
  const int items = n >> kB;
  for (int g = threadIdx.x; g < items; g += kThreads) {
    const int low = g & ((1 << lo) - 1);
    const int e0 = ((g >> lo) << (lo + kB)) + low;
    float a[kR];
#pragma unroll
    for (int j = 0; j < kR; ++j) a[j] = s[e0 + (j << lo)];
    hadamard::detail::butterfly(a);
#pragma unroll
    for (int j = 0; j < kR; ++j) s[e0 + (j << lo)] = a[j];
  }
}

// Rows of y (fp16, global) -> int8 rows in shared memory: aq[m] = q8(H_n·y[m]·factor), n = E =
// kM·2^k (H_n = H_m ⊗ H_{2^k}, element i = i_m·2^k + i_p, as hadamard.cuh), k >= 5 at run
// time; or q8(y·factor) without the rotation. `s`: 4·n bytes. The load step does i_p bits
// [0, 3) in registers (a 16-byte run) and [3, 5) by shuffles, then phases of <= 5 bits, then the
// m-point mix, which quantizes.
template <int kM, int kThreads>
QUAMBA_DEVICE void rotate_rows_to_i8(const OutProjStepParams& p, int log_p, float* s, int8_t* aq) {
  const int n = p.E, P = 1 << log_p, runs = n / 8;
  const int lane = threadIdx.x & 31;
  for (int m = 0; m < p.M; ++m) {
    const __half* y = p.y + static_cast<int64_t>(m) * n;
    // Uniform trip count: every lane reaches every shuffle.
    for (int g0 = 0; g0 < runs; g0 += kThreads) {
      const int g = g0 + static_cast<int>(threadIdx.x);
      float a[8];
      if (g < runs) {
        const uint4 raw = load_chained(reinterpret_cast<const uint4*>(y) + g);
        const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 f = __half22float2(h2[j]);
          a[2 * j] = f.x;
          a[2 * j + 1] = f.y;
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) a[j] = 0.f;
      }
      hadamard::detail::butterfly(a);
      // i_p bits 3 and 4 are bits 0 and 1 of the run index: partner lanes xor 1, 2 (kThreads and
      // runs = n/8 are multiples of 4, so a partner is a live run of the same 2^k block).
#pragma unroll
      for (int sb = 0; sb < 2; ++sb) {
        const float sign = (lane & (1 << sb)) ? -1.0f : 1.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) a[j] = fmaf(sign, a[j], __shfl_xor_sync(0xffffffffu, a[j], 1 << sb));
      }
      if (g < runs) {
        float4* d = reinterpret_cast<float4*>(s + g * 8);
        d[0] = make_float4(a[0], a[1], a[2], a[3]);
        d[1] = make_float4(a[4], a[5], a[6], a[7]);
      }
    }
    __syncthreads();
    for (int lo = 5; lo < log_p;) {
      const int b = log_p - lo < 5 ? log_p - lo : 5;
      switch (b) {
        case 1: pow2_smem_phase<1, kThreads>(s, n, lo); break;
        case 2: pow2_smem_phase<2, kThreads>(s, n, lo); break;
        case 3: pow2_smem_phase<3, kThreads>(s, n, lo); break;
        case 4: pow2_smem_phase<4, kThreads>(s, n, lo); break;
        default: pow2_smem_phase<5, kThreads>(s, n, lo); break;
      }
      __syncthreads();
      lo += b;
    }
    int8_t* o = aq + static_cast<int64_t>(m) * n;
    if constexpr (kM == 1) {
      for (int i = threadIdx.x; i < n; i += kThreads) o[i] = hadamard::detail::quantize_i8_cvt(s[i], p.factor);
    } else {
      for (int pp = threadIdx.x; pp < P; pp += kThreads) {
        float x[kM], yv[kM];
#pragma unroll
        for (int j = 0; j < kM; ++j) x[j] = s[j * P + pp];
        hadamard::detail::small_product<kM>(x, yv, std::make_integer_sequence<int, kM>{});
#pragma unroll
        for (int i = 0; i < kM; ++i) o[i * P + pp] = hadamard::detail::quantize_i8_cvt(yv[i], p.factor);
      }
    }
    __syncthreads();  // `s` is reused by the next row; `aq` is read by the GEMV
  }
}

template <typename Traits, int kM>
__global__ void __launch_bounds__(Traits::kThreads) out_proj_step_kernel(const OutProjStepParams p, int log_p) {
  constexpr int kThreads = Traits::kThreads, kG = Traits::kGroupThreads, kR = Traits::kRowsPerGroup;
  static_assert(Traits::kGroupInWarp && Traits::kOutputs <= kG, "one output per lane of a group (gemv_block)");
  extern __shared__ int4 smem_i4[];
  grid_dependents_launch();
  const int M = p.M, D = p.D, E = p.E;
  // [aq: M·E int8, 16-byte aligned][s: E fp32 when rotating]
  int8_t* aq = reinterpret_cast<int8_t*>(smem_i4);
  float* s = reinterpret_cast<float*>(aq + static_cast<int64_t>(M) * E);
  const int row_blocks = (D + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock;
  // The output this thread stores in the CTA's first row block (gemv_block gives output idx of a
  // group to its lane idx: m = idx / kR, row n_first + idx % kR). Its residual value is requested
  // right after the dependency wait, with the scan output, instead of by the epilogue after the
  // GEMV: one L2 round trip less on the step's critical path.
  const int gl = static_cast<int>(threadIdx.x) % kG;
  const int pre_m = gl / kR;
  const int64_t pre_n = static_cast<int64_t>(blockIdx.x) * Traits::kRowsPerBlock +
                        (static_cast<int>(threadIdx.x) / kG) * kR + gl % kR;
  const bool pre_lane = gl < Traits::kOutputs && pre_m < M && pre_n < D;
  float pre_r = 0.f;
  bool first = true;
  auto prologue = [&] {
    if (!first) return;
    first = false;
    grid_dependency_wait();
    if (pre_lane) pre_r = p.residual[pre_m * static_cast<int64_t>(D) + pre_n];
    if (p.rotate) {
      rotate_rows_to_i8<kM, kThreads>(p, log_p, s, aq);
    } else {
      for (int i = threadIdx.x; i < M * E; i += kThreads)
        aq[i] = hadamard::detail::quantize_i8_cvt(__half2float(p.y[i]), p.factor);
      __syncthreads();
    }
  };
  gemm::DequantF32 ep;
  ep.alpha = p.alpha_out;
  ep.residual = p.residual;
  ep.ldr = D;
  for (int rb = blockIdx.x; rb < row_blocks; rb += gridDim.x) {
    gemm::detail::gemv_block<Traits>(
        p.w_out, E, D, E, M, static_cast<int64_t>(rb) * Traits::kRowsPerBlock, prologue,
        [&](int m, int c) { return reinterpret_cast<const int4*>(aq + static_cast<int64_t>(m) * E)[c]; },
        [&](int m, int64_t n, int acc) {
          const int64_t i = m * static_cast<int64_t>(D) + n;
          p.residual[i] = (rb == static_cast<int>(blockIdx.x) && pre_lane && m == pre_m && n == pre_n)
                              ? ep.apply_of(acc, 1.f, 0.f, pre_r)
                              : ep.apply(acc, m, n);
        });
  }
  if (first) grid_dependency_wait();
}

// Persistent grid of the out_proj step: at most kStepCtasPerSm CTAs per SM (fewer where they do
// not fit), sized so that every CTA gets the same number of row blocks (±1): the kernel ends when
// its slowest CTA does, and uneven shares left a second round of a few CTAs that cannot fill DRAM
// (ncu, H100, when the in_proj step was persistent too: 640 row blocks on 528 CTAs). Launches on
// `stream` (pdl: core/launch.cuh).
template <typename Kernel, typename... Args>
Status launch_persistent(ResidentCache& cache, Kernel kernel, int threads, size_t smem, int64_t row_blocks,
                         cudaStream_t stream, bool pdl, const Args&... args) {
  Residency r;
  QUAMBA_RETURN_IF_ERROR(cache.get(kernel, threads, smem, &r));
  const int64_t resident = static_cast<int64_t>(r.sms) * (r.per_sm < kStepCtasPerSm ? r.per_sm : kStepCtasPerSm);
  const int64_t shares = (row_blocks + resident - 1) / resident;
  const auto grid = static_cast<unsigned>((row_blocks + shares - 1) / shares);
  return launch_kernel(kernel, dim3(grid), dim3(threads), smem, stream, pdl, args...);
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

// Two row counts are compiled (M = 1, and up to 8 with the unused rows skipped at run time).
inline int step_max_m(int M) { return M <= 1 ? 1 : 8; }

// (m, k) of a rotation the fused out_proj step does: n = m·2^k with k >= 5.
inline bool step_rotation_size(int64_t n, int* m, int* k) {
  return reference::hadamard_factor(n, m, k) == Status::kSuccess && *k >= 5;
}

}  // namespace detail

inline Status can_implement(const InProjStepParams& p) {
  if (p.M <= 0 || p.D <= 0 || p.E <= 0 || !p.residual || !p.gamma || !p.w_in || !p.conv_state || !p.conv_w ||
      !p.u || !p.xz || p.num_slots <= 0 || (!p.state_idx && p.num_slots < p.M))
    return Status::kErrorInvalidArgument;
  if (p.M > kStepMaxRows || p.K < 2 || p.K > conv1d::kMaxWidth) return Status::kErrorNotSupported;
  if (p.D % 16 != 0 || !is_aligned(p.residual, 16) || !is_aligned(p.gamma, 16) || !is_aligned(p.w_in, 16))
    return Status::kErrorMisaligned;
  const size_t static_smem =
      p.M <= 1 ? detail::in_proj_static_smem<1>() : detail::in_proj_static_smem<kStepMaxRows>();
  if (static_cast<size_t>(p.M) * p.D + static_smem > detail::kInProjSmemLimit) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

inline Status can_implement(const OutProjStepParams& p) {
  if (p.M <= 0 || p.D <= 0 || p.E <= 0 || !p.y || !p.w_out || !p.residual) return Status::kErrorInvalidArgument;
  if (p.M > kStepMaxRows) return Status::kErrorNotSupported;
  if (p.E % 16 != 0 || !is_aligned(p.y, 16) || !is_aligned(p.w_out, 16)) return Status::kErrorMisaligned;
  int m = 0, k = 0;
  if (p.rotate && !detail::step_rotation_size(p.E, &m, &k)) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

#if QUAMBA_HAS_CUDA_COMPILER
inline Status run(const InProjStepParams& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_int<1, 8>(detail::step_max_m(p.M), [&](auto kMaxM) {
    using Traits = detail::StepInProjGemv<decltype(kMaxM)::value>;
    using Staged = detail::StepInProjGemvStaged<decltype(kMaxM)::value>;
    static_assert(Staged::kRowsPerBlock == Traits::kRowsPerBlock && Staged::kThreads == Traits::kThreads, "");
    const int64_t row_blocks = (2 * static_cast<int64_t>(p.E) + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock;
    if (row_blocks > std::numeric_limits<int>::max()) return Status::kErrorNotSupported;
    const size_t smem = static_cast<size_t>(p.M) * p.D;
    const size_t staged = smem + static_cast<size_t>(Traits::kRowsPerBlock) * p.D;
    if (p.stage_weights && staged + detail::in_proj_static_smem<decltype(kMaxM)::value>() <= detail::kInProjSmemLimit)
      return launch_kernel(detail::in_proj_step_kernel<Staged, true>, dim3(static_cast<unsigned>(row_blocks)),
                           dim3(Staged::kThreads), staged, stream, p.pdl, p);
    return launch_kernel(detail::in_proj_step_kernel<Traits>, dim3(static_cast<unsigned>(row_blocks)),
                         dim3(Traits::kThreads), smem, stream, p.pdl, p);
  });
}

inline Status run(const OutProjStepParams& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  int m = 1, k = 5;
  if (p.rotate) detail::step_rotation_size(p.E, &m, &k);
  return dispatch_int<1, 12, 20, 28>(m, [&](auto kM) {
    return dispatch_int<1, 8>(detail::step_max_m(p.M), [&](auto kMaxM) {
      using Traits = detail::StepOutProjGemv<decltype(kMaxM)::value>;
      static ResidentCache cache;
      const size_t smem = static_cast<size_t>(p.M) * p.E + (p.rotate ? 4 * static_cast<size_t>(p.E) : 0);
      const int64_t row_blocks = (p.D + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock;
      return detail::launch_persistent(cache, detail::out_proj_step_kernel<Traits, decltype(kM)::value>,
                                       Traits::kThreads, smem, row_blocks, stream, p.pdl, p, k);
    });
  });
}
#endif

}  // namespace quamba::block
