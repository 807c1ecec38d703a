// quamba/gemm/gemv.cuh: int8 GEMV / small-M GEMM (M = 1..16) for decode.
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ ),  same Params, alignment rules and epilogues as the
//   tensor-core GEMM (gemm/params.cuh), M <= kGemvMaxM.
// At decode time the GEMM is a stream over the weight: every byte of W is read exactly once, with
// 16-byte non-L1-allocating loads, and multiplied with the M activation rows (re-read by every
// block, so they live in L1/L2) using dp4a. Threads are organised in groups; a group owns
// kRowsPerGroup output channels and splits their K among its threads (split-K inside the block,
// no workspace); the partial sums are reduced with shuffles (and shared memory when a group spans
// several warps). int32 sums are exact, so the result is bit-identical to the GEMM's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/params.cuh"
#include "quamba/gemm/ptx.cuh"

namespace quamba::gemm {

inline constexpr int kGemvMaxM = 16;

// kMaxM: activation rows handled (runtime M <= kMaxM). kGroupThreads threads share the K of
// kRowsPerGroup weight rows; kGroups groups per block; kUnroll 16-byte chunks per thread and row
// are loaded before any is consumed (bytes in flight per thread = 16·kUnroll·kRowsPerGroup).
template <int kMaxM_, int kGroupThreads_, int kGroups_, int kRowsPerGroup_, int kUnroll_>
struct GemvTraits {
  static constexpr int kMaxM = kMaxM_;
  static constexpr int kGroupThreads = kGroupThreads_;
  static constexpr int kGroups = kGroups_;
  static constexpr int kRowsPerGroup = kRowsPerGroup_;
  static constexpr int kUnroll = kUnroll_;
  static constexpr int kThreads = kGroupThreads * kGroups;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kRowsPerBlock = kGroups * kRowsPerGroup;
  static constexpr bool kGroupInWarp = kGroupThreads <= 32;
  static constexpr int kOutputs = kMaxM * kRowsPerGroup;  // sums per group
  static_assert(kMaxM >= 1 && kMaxM <= kGemvMaxM, "GEMV handles at most 16 rows of A");
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");
  static_assert(kGroupInWarp ? (32 % kGroupThreads == 0) : (kGroupThreads % 32 == 0 && kGroups == 1),
                "a group is a power-of-two slice of a warp, or the whole block");
};

// The three shapes of decode. Evidence for the choices: bench_gemm GemvM1/* rows.
// Wide: many long rows (in_proj, out_proj, lm_head): 4 rows per 128-thread block, 2 chunks per
// thread and row in flight: 128 B per thread keeps enough bytes in flight to cover DRAM latency.
template <int kMaxM> using GemvWide = GemvTraits<kMaxM, 128, 1, 4, 2>;
// WideDeep: the wide shape with 3 chunks per thread and row, for rows of 257..384 chunks
// (4096 < K <= 6144: out_proj at d_inner 5120): the whole row is requested in one round, where
// the 2-chunk form needs a second round (a second DRAM round trip) for the last 64 chunks.
template <int kMaxM> using GemvWideDeep = GemvTraits<kMaxM, 128, 1, 4, 3>;
// SplitK: few long rows (x_proj: N = R + 32 <= 192, K = E up to 5120): one row per 256-thread
// block so that N blocks still cover the machine and all of a row is requested in one round.
template <int kMaxM> using GemvSplitK = GemvTraits<kMaxM, 256, 1, 1, 2>;
// Narrow: many short rows (dt_proj: K = R = 48..160, i.e. <= 10 chunks): 8 threads per row pair.
template <int kMaxM> using GemvNarrow = GemvTraits<kMaxM, 8, 16, 2, 2>;

enum class GemvKind { kWide, kWideDeep, kSplitK, kNarrow };

inline const char* to_string(GemvKind k) {
  switch (k) {
    case GemvKind::kWide: return "gemv_wide_g128x1_r4_u2";
    case GemvKind::kWideDeep: return "gemv_wide_g128x1_r4_u3";
    case GemvKind::kSplitK: return "gemv_splitk_g256x1_r1_u2";
    case GemvKind::kNarrow: return "gemv_narrow_g8x16_r2_u2";
  }
  return "gemv_unknown";
}

// Shape heuristic (host, no device query).
inline GemvKind select_gemv(int64_t N, int64_t K) {
  if (K / 16 <= 16) return GemvKind::kNarrow;
  if (N <= 1024) return GemvKind::kSplitK;
  if (K / 16 > 256 && K / 16 <= 384) return GemvKind::kWideDeep;
  return GemvKind::kWide;
}

namespace detail {

#if QUAMBA_HAS_CUDA_COMPILER

QUAMBA_DEVICE int dot16(const int4& a, const int4& w, int acc) {
  acc = __dp4a(a.x, w.x, acc);
  acc = __dp4a(a.y, w.y, acc);
  acc = __dp4a(a.z, w.z, acc);
  return __dp4a(a.w, w.w, acc);
}

// Where gemv_block reads the weight rows. GlobalRows: W itself, row stride ldw, 16-byte streaming
// loads. SharedRows: a copy of the block's kRowsPerBlock rows in shared memory, row stride K,
// where local row j holds W row min(row_begin + j, N - 1) (stage_rows below writes it so).
struct GlobalRows {
  const int8_t* W;
  int64_t ldw;
  QUAMBA_DEVICE const int4* row(int64_t n, int64_t /*row_begin*/) const {
    return reinterpret_cast<const int4*>(W + n * ldw);
  }
  QUAMBA_DEVICE static int4 load(const int4* p) { return ptx::ld_stream_16(p); }
};
struct SharedRows {
  const int8_t* rows;
  int64_t K;
  QUAMBA_DEVICE const int4* row(int64_t n, int64_t row_begin) const {
    return reinterpret_cast<const int4*>(rows + (n - row_begin) * K);
  }
  QUAMBA_DEVICE static int4 load(const int4* p) { return *p; }
};

// Issues (cp.async, one commit group) the copy of W rows [row_begin, row_begin + kRows) into
// `rows` (row stride K, 16-byte aligned; K % 16 == 0), rows past N as copies of row N - 1: the
// layout SharedRows reads. The caller waits (cp_async_wait<0> + a block barrier) before reading.
template <int kRows, int kThreads>
QUAMBA_DEVICE void stage_rows(int8_t* rows, const int8_t* W, int64_t ldw, int64_t N, int64_t K, int64_t row_begin) {
  const int chunks = static_cast<int>(K / 16);
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const int64_t n = row_begin + j < N ? row_begin + j : N - 1;
    const int8_t* src = W + n * ldw;
    int8_t* dst = rows + j * K;
    for (int c = threadIdx.x; c < chunks; c += kThreads) ptx::cp_async_16(ptx::smem_u32(dst + 16 * c), src + 16 * c, true);
  }
  ptx::cp_async_commit();
}

// One block's share of a GEMV: output rows [row_begin, row_begin + kRowsPerBlock) of N, the
// weight rows read through `w` (GlobalRows or SharedRows).
// The block's first weight loads are issued before `pre()` runs: weights never depend on earlier
// kernels, so under programmatic dependent launch they are in flight while `pre` waits for the
// previous kernel (and computes whatever the A rows need, e.g. a normalization into shared
// memory; `pre` is called by every thread and may synchronize the block).
// load_a(m, c) returns the 16 bytes of A row m at chunk c; store(m, n, acc) receives the exact
// int32 sum of output (m, n) (one thread per output).
template <typename Traits, typename WRows, typename Pre, typename LoadA, typename Store>
QUAMBA_DEVICE void gemv_block_rows(const WRows& w_rows, int64_t N, int64_t K, int M, int64_t row_begin, Pre&& pre,
                                   LoadA&& load_a, Store&& store) {
  constexpr int kG = Traits::kGroupThreads, kR = Traits::kRowsPerGroup, kU = Traits::kUnroll;
  constexpr int kMaxM = Traits::kMaxM;
  const int tid = threadIdx.x;
  const int group = tid / kG, gl = tid % kG;
  const int chunks = static_cast<int>(K / 16);
  const int64_t n_first = row_begin + group * kR;

  // Rows past N read row N-1 (valid memory) and are never stored: keeps the loads unpredicated.
  const int4* wrow[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const int64_t n = n_first + r < N ? n_first + r : N - 1;
    wrow[r] = w_rows.row(n, row_begin);
  }

  int acc[kMaxM][kR];
#pragma unroll
  for (int m = 0; m < kMaxM; ++m)
#pragma unroll
    for (int r = 0; r < kR; ++r) acc[m][r] = 0;

  int4 w[kU][kR];
  auto load_w = [&](int c0) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int c = c0 + u * kG;
#pragma unroll
      for (int r = 0; r < kR; ++r) w[u][r] = c < chunks ? WRows::load(wrow[r] + c) : make_int4(0, 0, 0, 0);
    }
  };
  if (gl < chunks) load_w(gl);
  pre();
  for (int c0 = gl; c0 < chunks; c0 += kG * kU) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int c = c0 + u * kG;
      if (c < chunks) {
#pragma unroll
        for (int m = 0; m < kMaxM; ++m) {
          if (m < M) {
            const int4 a = load_a(m, c);
#pragma unroll
            for (int r = 0; r < kR; ++r) acc[m][r] = dot16(a, w[u][r], acc[m][r]);
          }
        }
      }
    }
    if (c0 + kG * kU < chunks) load_w(c0 + kG * kU);
  }

  // Butterfly within the group (or the whole warp): every lane ends with the warp's sums.
  constexpr int kWidth = Traits::kGroupInWarp ? kG : 32;
#pragma unroll
  for (int off = kWidth / 2; off >= 1; off /= 2)
#pragma unroll
    for (int m = 0; m < kMaxM; ++m)
#pragma unroll
      for (int r = 0; r < kR; ++r) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], off);

  if constexpr (Traits::kGroupInWarp) {
    // Spread the stores over the group's lanes (static register indices: no local memory).
#pragma unroll
    for (int idx = 0; idx < Traits::kOutputs; ++idx) {
      const int m = idx / kR, r = idx % kR;
      const int64_t n = n_first + r;
      if (idx % kG == gl && m < M && n < N) store(m, n, acc[m][r]);
    }
  } else {
    __shared__ int partial[Traits::kWarps][Traits::kOutputs];
    const int warp = tid >> 5, lane = tid & 31;
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < kMaxM; ++m)
#pragma unroll
        for (int r = 0; r < kR; ++r) partial[warp][m * kR + r] = acc[m][r];
    }
    __syncthreads();
    for (int idx = tid; idx < Traits::kOutputs; idx += Traits::kThreads) {
      const int m = idx / kR, r = idx % kR;
      const int64_t n = n_first + r;
      if (m < M && n < N) {
        int s = 0;
#pragma unroll
        for (int w = 0; w < Traits::kWarps; ++w) s += partial[w][idx];
        store(m, n, s);
      }
    }
    __syncthreads();  // `partial` is reused when the caller loops over row blocks
  }
}

// gemv_block_rows over W in global memory (row stride ldw).
template <typename Traits, typename Pre, typename LoadA, typename Store>
QUAMBA_DEVICE void gemv_block(const int8_t* W, int64_t ldw, int64_t N, int64_t K, int M, int64_t row_begin, Pre&& pre,
                              LoadA&& load_a, Store&& store) {
  gemv_block_rows<Traits>(GlobalRows{W, ldw}, N, K, M, row_begin, static_cast<Pre&&>(pre), static_cast<LoadA&&>(load_a),
                          static_cast<Store&&>(store));
}

template <typename Traits, typename Epilogue>
__global__ void __launch_bounds__(Traits::kThreads) gemv_kernel(GemmParams<Epilogue> p) {
  grid_dependents_launch();
  const int4* arow = reinterpret_cast<const int4*>(p.A);
  const int64_t lda16 = p.lda / 16;
  gemv_block<Traits>(
      p.W, p.ldw, p.N, p.K, static_cast<int>(p.M), static_cast<int64_t>(blockIdx.x) * Traits::kRowsPerBlock,
      [] { grid_dependency_wait(); }, [&](int m, int c) { return load_chained(arow + m * lda16 + c); },
      [&](int m, int64_t n, int acc) { p.C[m * p.ldc + n] = p.epilogue.apply(acc, m, n); });
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace detail

template <typename Epilogue>
Status can_implement_gemv(const GemmParams<Epilogue>& p) {
  QUAMBA_RETURN_IF_ERROR(check_params(p));
  if (p.M > kGemvMaxM) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

#if QUAMBA_HAS_CUDA_COMPILER
// Launches a weight-stream kernel (this GEMV, gemv_mma.cuh's) over its row blocks: one block of
// Traits::kThreads threads per Traits::kRowsPerBlock output rows, no dynamic shared memory.
template <typename Traits, typename Epilogue>
Status launch_row_blocks(void (*kernel)(GemmParams<Epilogue>), const GemmParams<Epilogue>& p, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((p.N + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock);
  return launch_kernel(kernel, dim3(blocks), dim3(Traits::kThreads), 0, stream, p.pdl, p);
}

// Launches one GEMV variant (kMaxM rounded up from M to a power of two).
template <template <int> class Variant, typename Epilogue>
Status run_gemv_variant(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement_gemv(p));
  if (p.M == 0) return Status::kSuccess;
  const int max_m = p.M <= 1 ? 1 : p.M <= 2 ? 2 : p.M <= 4 ? 4 : p.M <= 8 ? 8 : 16;
  return dispatch_int<1, 2, 4, 8, 16>(max_m, [&](auto kMaxM) {
    using Traits = Variant<decltype(kMaxM)::value>;
    return launch_row_blocks<Traits>(detail::gemv_kernel<Traits, Epilogue>, p, stream);
  });
}

template <typename Epilogue>
Status run_gemv(const GemmParams<Epilogue>& p, cudaStream_t stream, GemvKind kind) {
  switch (kind) {
    case GemvKind::kWide: return run_gemv_variant<GemvWide>(p, stream);
    case GemvKind::kWideDeep: return run_gemv_variant<GemvWideDeep>(p, stream);
    case GemvKind::kSplitK: return run_gemv_variant<GemvSplitK>(p, stream);
    case GemvKind::kNarrow: return run_gemv_variant<GemvNarrow>(p, stream);
  }
  return Status::kErrorNotSupported;
}

template <typename Epilogue>
Status run_gemv(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  return run_gemv(p, stream, select_gemv(p.N, p.K));
}
#endif

}  // namespace quamba::gemm
