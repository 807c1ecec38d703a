// quamba/gemm/gemv_mma.cuh: small-M GEMM on tensor cores (decode batches, M = 1..32).
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ ),  same Params, alignment rules and epilogues as the
//   other paths (gemm/params.cuh), M <= kGemvMmaMaxM.
// Like the dp4a GEMV (gemm/gemv.cuh) it is a stream over the weight: every byte of W is read once,
// with 16-byte non-L1-allocating loads straight into registers, no shared-memory staging. Unlike
// it, the products run on mma.sync.m16n8k32 with the weight as the 16-row operand and the batch as
// the 8-column one, so a 16-byte weight piece costs two mma per 8 batch rows instead of 4·M dp4a
// and M activation loads: the cost per weight byte hardly grows with M.
//
// Fragment trick: the K order inside a 32-wide mma step is free as long as both operands use the
// same one. Thread (g = lane/4, t = lane%4) loads bytes [16t, 16t + 16) of a 64-byte K chunk of
// weight rows g and g + 8 and of activation row g, and feeds bytes 0..7 to one m16n8k32 and bytes
// 8..15 to the next (ptx.cuh lists the fragment layout): the four threads of a group cover the 64
// bytes, so one 16-byte load per row and thread is a whole fragment for two mma steps.
//
// A block's warps split K (kKWarps) and rows (kRowWarps); a warp owns kRowGroups groups of 16 rows
// and walks its K chunks with kUnroll chunks in flight per thread (a register ring: a chunk's slot
// is refilled right after it is consumed). Partial sums of the K-split warps are added in shared
// memory; int32 sums are exact, so results are bit-identical to the other paths.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "quamba/core/launch.cuh"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/gemv.cuh"
#include "quamba/gemm/params.cuh"
#include "quamba/gemm/ptx.cuh"

namespace quamba::gemm {

inline constexpr int kGemvMmaMaxM = 32;

// kMaxM: batch rows handled (runtime M <= kMaxM; 8-row mma columns, so 8, 16 or 32).
template <int kMaxM_, int kKWarps_, int kRowWarps_, int kRowGroups_, int kUnroll_>
struct GemvMmaTraits {
  static constexpr int kMaxM = kMaxM_;
  static constexpr int kNTiles = kMaxM / 8;
  static constexpr int kKWarps = kKWarps_;
  static constexpr int kRowWarps = kRowWarps_;
  static constexpr int kRowGroups = kRowGroups_;
  static constexpr int kUnroll = kUnroll_;
  static constexpr int kThreads = 32 * kKWarps * kRowWarps;
  static constexpr int kRowsPerWarp = 16 * kRowGroups;
  static constexpr int kRowsPerBlock = kRowsPerWarp * kRowWarps;
  static constexpr int kSums = kRowGroups * kNTiles * 4;  // accumulator registers per thread
  static_assert(kMaxM == 8 || kMaxM == 16 || kMaxM == 32, "8, 16 or 32 batch rows");
  static_assert(kThreads <= 1024 && kUnroll >= 1 && kRowGroups >= 1, "block shape");
};

// Shapes (evidence: bench_gemm Gemm/gemv_mma_* rows, bench/RESULTS.md run AE).
// Wide: long rows in few row groups (out_proj): 8 warps split one 16-row group's K.
template <int kMaxM> using GemvMmaWide = GemvMmaTraits<kMaxM, 8, 1, 1, (kMaxM <= 8 ? 4 : 2)>;
// Wide4 (long rows in many row groups: in_proj, lm_head): 4 warps per 16-row group, more chunks each. H200, in_proj at
// d_model 2560: 10.0 / 10.1 / 11.8 us at M = 4 / 8 / 32 against Wide's 10.6 / 10.8 / 16.7.
template <int kMaxM> using GemvMmaWide4 = GemvMmaTraits<kMaxM, 4, 1, 1, (kMaxM <= 8 ? 4 : 2)>;
// Deep: few long rows (x_proj: N <= 192, K up to 5120): 16 warps per 16-row group.
template <int kMaxM> using GemvMmaDeep = GemvMmaTraits<kMaxM, 16, 1, 1, (kMaxM <= 8 ? 4 : 2)>;
// Short: many short rows (dt_proj: K = dt_rank <= 256, at most 4 chunks): a warp per row group
// walks the whole K; 4 row groups per block.
template <int kMaxM> using GemvMmaShort = GemvMmaTraits<kMaxM, 1, 4, 1, 4>;

enum class GemvMmaKind { kWide, kWide4, kDeep, kShort };

inline const char* to_string(GemvMmaKind k) {
  switch (k) {
    case GemvMmaKind::kWide: return "gemv_mma_k8";
    case GemvMmaKind::kWide4: return "gemv_mma_k4";
    case GemvMmaKind::kDeep: return "gemv_mma_k16";
    case GemvMmaKind::kShort: return "gemv_mma_r4";
  }
  return "gemv_mma_unknown";
}

// Shape heuristic (host, no device query). A block streams 16 weight rows, so N / 16 blocks of
// kKWarps warps share the weight: a layer with few row groups needs more warps per group to keep
// enough loads in flight, as long as each warp still gets several 64-byte K chunks. H200,
// bench_gemm D2560, same run (bench/RESULTS.md run AF): out_proj (N 2560, K 5120; 160 blocks)
// k8 8.45 / 10.9 us at M = 8 / 32 against k4 13.2 / 16.1 and k16 9.29 / 13.2; in_proj (N 10240,
// K 2560; 640 blocks) k4 10.2 / 12.1 against k8 11.0 / 16.8; x_proj (N 192) k16 4.02 / 5.85
// against k8 6.25 / 8.15; dt_proj (K 160) r4 2.20 / 2.92 against k4 2.26 / 2.94.
inline constexpr int64_t kGemvMmaK8MaxN = 4096;   // below: fewer than 256 row groups
inline constexpr int64_t kGemvMmaK8MinK = 2048;   // at least 4 chunks per warp of 8
inline GemvMmaKind select_gemv_mma(int64_t N, int64_t K) {
  if (K <= 256) return GemvMmaKind::kShort;
  if (N <= 1024) return GemvMmaKind::kDeep;
  if (N < kGemvMmaK8MaxN && K >= kGemvMmaK8MinK) return GemvMmaKind::kWide;
  return GemvMmaKind::kWide4;
}

namespace detail {

#if QUAMBA_HAS_CUDA_COMPILER

template <typename Traits, typename Epilogue>
__global__ void __launch_bounds__(Traits::kThreads) gemv_mma_kernel(GemmParams<Epilogue> p) {
  constexpr int kNT = Traits::kNTiles, kRG = Traits::kRowGroups, kU = Traits::kUnroll;
  constexpr int kKW = Traits::kKWarps;
  grid_dependents_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kw = warp % kKW, rw = warp / kKW;
  const int g = lane >> 2, t = lane & 3;
  const int64_t row0 = int64_t(blockIdx.x) * Traits::kRowsPerBlock + int64_t(rw) * Traits::kRowsPerWarp;
  const int M = static_cast<int>(p.M);
  const int chunks = static_cast<int>((p.K + 63) / 64);
  const int pieces = static_cast<int>(p.K / 16);  // 16-byte pieces of a row

  // This thread's rows: weight rows row0 + 16 rg + g (+ 8), activation rows 8 j + g. Rows past N
  // or M read the last valid row (valid memory, unpredicated loads) and are never stored.
  const int8_t* wp[kRG][2];
#pragma unroll
  for (int rg = 0; rg < kRG; ++rg)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t n = row0 + 16 * rg + g + 8 * h;
      wp[rg][h] = p.W + (n < p.N ? n : p.N - 1) * p.ldw + 16 * t;
    }
  const int8_t* ap[kNT];
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
    const int m = 8 * j + g;
    ap[j] = p.A + int64_t(m < M ? m : M - 1) * p.lda + 16 * t;
  }

  int32_t acc[kRG][kNT][4];
#pragma unroll
  for (int rg = 0; rg < kRG; ++rg)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[rg][j][i] = 0;

  int4 w[kU][kRG][2], a[kU][kNT];
  const int4 zero = make_int4(0, 0, 0, 0);
  // Chunk c holds pieces 4c..4c+3; thread t's piece is 4c + t (past K in a tail chunk: zeros).
  auto load_w = [&](int u, int c) {
    const bool ok = c < chunks && 4 * c + t < pieces;
#pragma unroll
    for (int rg = 0; rg < kRG; ++rg)
#pragma unroll
      for (int h = 0; h < 2; ++h) w[u][rg][h] = ok ? ptx::ld_stream_16(wp[rg][h] + 64 * int64_t(c)) : zero;
  };
  auto load_a = [&](int u, int c) {
    const bool ok = c < chunks && 4 * c + t < pieces;
#pragma unroll
    for (int j = 0; j < kNT; ++j) a[u][j] = ok ? load_chained(reinterpret_cast<const int4*>(ap[j] + 64 * int64_t(c))) : zero;
  };
  auto consume = [&](int u) {
#pragma unroll
    for (int rg = 0; rg < kRG; ++rg) {
      const uint32_t lo[4] = {uint32_t(w[u][rg][0].x), uint32_t(w[u][rg][1].x), uint32_t(w[u][rg][0].y),
                              uint32_t(w[u][rg][1].y)};
      const uint32_t hi[4] = {uint32_t(w[u][rg][0].z), uint32_t(w[u][rg][1].z), uint32_t(w[u][rg][0].w),
                              uint32_t(w[u][rg][1].w)};
#pragma unroll
      for (int j = 0; j < kNT; ++j) {
        ptx::mma_s8_16832(acc[rg][j], lo, uint32_t(a[u][j].x), uint32_t(a[u][j].y));
        ptx::mma_s8_16832(acc[rg][j], hi, uint32_t(a[u][j].z), uint32_t(a[u][j].w));
      }
    }
  };

  // Weights never depend on earlier kernels: the first round is requested before the wait.
#pragma unroll
  for (int u = 0; u < kU; ++u) load_w(u, kw + u * kKW);
  grid_dependency_wait();
#pragma unroll
  for (int u = 0; u < kU; ++u) load_a(u, kw + u * kKW);
  for (int c0 = kw; c0 < chunks; c0 += kU * kKW) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int c = c0 + u * kKW;
      if (c < chunks) {
        consume(u);
        load_w(u, c + kU * kKW);
        load_a(u, c + kU * kKW);
      }
    }
  }

  // Accumulator i of tile (rg, j) in lane (g, t): row 16 rg + g + 8 (i / 2), batch 8 j + 2 t + i % 2.
  auto store = [&](int e, int ln, int32_t s) {
    const int i = e % 4, j = (e / 4) % kNT, rg = e / (4 * kNT);
    const int64_t n = row0 + 16 * rg + (ln >> 2) + 8 * (i >> 1);
    const int m = 8 * j + 2 * (ln & 3) + (i & 1);
    if (m < M && n < p.N) p.C[int64_t(m) * p.ldc + n] = p.epilogue.apply(s, m, n);
  };
  if constexpr (kKW == 1) {
#pragma unroll
    for (int e = 0; e < Traits::kSums; ++e) store(e, lane, (&acc[0][0][0])[e]);
  } else {
    __shared__ int32_t red[Traits::kRowWarps][kKW][Traits::kSums][32];
#pragma unroll
    for (int e = 0; e < Traits::kSums; ++e) red[rw][kw][e][lane] = (&acc[0][0][0])[e];
    __syncthreads();
    // Each K-split warp set's sums, 32 lanes of one accumulator per step; the lanes are visited
    // row-fastest (g, then t) so that 8 neighbouring threads store 8 neighbouring outputs.
    for (int idx = kw * 32 + lane; idx < Traits::kSums * 32; idx += kKW * 32) {
      const int e = idx >> 5, ln = ((idx & 7) << 2) | ((idx >> 3) & 3);
      int32_t s = 0;
#pragma unroll
      for (int k = 0; k < kKW; ++k) s += red[rw][k][e][ln];
      store(e, ln, s);
    }
  }
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace detail

template <typename Epilogue>
Status can_implement_gemv_mma(const GemmParams<Epilogue>& p) {
  QUAMBA_RETURN_IF_ERROR(check_params(p));
  if (p.M > kGemvMmaMaxM) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

#if QUAMBA_HAS_CUDA_COMPILER
// Launches one variant (kMaxM = M rounded up to 8, 16 or 32).
template <template <int> class Variant, typename Epilogue>
Status run_gemv_mma_variant(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement_gemv_mma(p));
  if (p.M == 0) return Status::kSuccess;
  const int max_m = p.M <= 8 ? 8 : p.M <= 16 ? 16 : 32;
  return dispatch_int<8, 16, 32>(max_m, [&](auto kMaxM) {
    using Traits = Variant<decltype(kMaxM)::value>;
    return launch_row_blocks<Traits>(detail::gemv_mma_kernel<Traits, Epilogue>, p, stream);
  });
}

template <typename Epilogue>
Status run_gemv_mma(const GemmParams<Epilogue>& p, cudaStream_t stream, GemvMmaKind kind) {
  switch (kind) {
    case GemvMmaKind::kWide: return run_gemv_mma_variant<GemvMmaWide>(p, stream);
    case GemvMmaKind::kWide4: return run_gemv_mma_variant<GemvMmaWide4>(p, stream);
    case GemvMmaKind::kDeep: return run_gemv_mma_variant<GemvMmaDeep>(p, stream);
    case GemvMmaKind::kShort: return run_gemv_mma_variant<GemvMmaShort>(p, stream);
  }
  return Status::kErrorNotSupported;
}

template <typename Epilogue>
Status run_gemv_mma(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  return run_gemv_mma(p, stream, select_gemv_mma(p.N, p.K));
}
#endif

}  // namespace quamba::gemm
