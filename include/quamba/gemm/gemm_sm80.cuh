// quamba/gemm/gemm_sm80.cuh: int8 tensor-core GEMM with mma.sync (sm_80, 86, 87, 89, and the
// fallback on sm_90 and later).
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ ),  A, W int8 K-major, exact int32 accumulation.
// Shapes, strides and alignment: see gemm/params.cuh (K % 16 == 0, lda/ldw % 16 == 0, 16-byte
// aligned A and W; any M, N). One CTA computes a kBM x kBN tile of C; kStages K-tiles of 64 bytes
// of A and W are kept in flight in shared memory with cp.async; warps read their fragments with
// ldmatrix and issue mma.sync.m16n8k32.s8 into int32 registers; the epilogue evaluates the
// descriptor per element and writes C directly from registers.
// Split-K (run_sm80_auto with a workspace, plan_split_k): a problem with fewer 64 x 64 tiles than
// half of kSplitKTargetCtas and a long K (x_proj: N = 192, K = 5120; out_proj at batch 32: 40
// tiles of K = 5120) leaves most SMs idle while each CTA walks K alone. It then runs as `splits`
// CTAs per tile, each over one K-slice, writing exact int32 partial sums to the workspace, and a
// second kernel adds the slices and applies the epilogue: bit-identical to the unsplit kernel.
// Programmatic dependent launch (GemmParams::pdl, core/launch.cuh): both kernels leave the next
// launch's trigger implicit (at exit); the tile kernel requests the W tiles of its pipeline
// prologue before its dependency wait, A only after it; the reduce kernel waits at its start.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/status.hpp"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/params.cuh"
#include "quamba/gemm/ptx.cuh"

namespace quamba::gemm {

// Warp grid of an mma.sync m16n8k32 output tile (shared by the pipelined kernel here and the
// short-K kernel, gemm_short_k.cuh): kWarpsM x kWarpsN warps over kBM x kBN outputs.
template <int kBM_, int kBN_, int kWarpsM_, int kWarpsN_>
struct MmaWarpGrid {
  static constexpr int kBM = kBM_;
  static constexpr int kBN = kBN_;
  static constexpr int kWarpsM = kWarpsM_;
  static constexpr int kWarpsN = kWarpsN_;
  static constexpr int kWarps = kWarpsM * kWarpsN;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kWarpM = kBM / kWarpsM;  // rows of C per warp
  static constexpr int kWarpN = kBN / kWarpsN;  // columns of C per warp
  static constexpr int kMmaM = kWarpM / 16;     // m16 fragments per warp
  static constexpr int kMmaN = kWarpN / 8;      // n8 fragments per warp
  static_assert(kBM % (16 * kWarpsM) == 0, "warp tile M must be a multiple of 16");
  static_assert(kBN % (16 * kWarpsN) == 0, "warp tile N must be a multiple of 16 (B is read in n16 pairs)");
};

// Tile shape of one CTA (kBM x kBN, K-tile fixed at 64 bytes), its warp grid and pipeline depth.
template <int kBM_, int kBN_, int kWarpsM_, int kWarpsN_, int kStages_>
struct Sm80Traits : MmaWarpGrid<kBM_, kBN_, kWarpsM_, kWarpsN_> {
  // 64-byte K-tile: four 16-byte chunks per row, which the XOR swizzle below makes
  // bank-conflict-free for both the cp.async writes and the ldmatrix reads.
  static constexpr int kBK = 64;
  static constexpr int kStages = kStages_;
  static constexpr int kThreads = MmaWarpGrid<kBM_, kBN_, kWarpsM_, kWarpsN_>::kThreads;
  static constexpr int kChunksPerRow = kBK / 16;
  static constexpr int kAChunks = kBM_ * kChunksPerRow;  // 16-byte cp.async per stage for A
  static constexpr int kBChunks = kBN_ * kChunksPerRow;
  static constexpr int kStageBytes = (kBM_ + kBN_) * kBK;
  static constexpr int kSmemBytes = kStages * kStageBytes;

  static_assert(kAChunks % kThreads == 0 && kBChunks % kThreads == 0, "every thread copies whole chunks");
  static_assert(kStages >= 2, "a pipeline needs at least two stages");
  static_assert(kSmemBytes <= 99 * 1024, "must fit sm_86/89 (99 KiB of shared memory per block)");
};

// 128x128 tile, 8 warps of 64x32, 4 stages (64 KiB): enough reuse per smem byte for the large
// Mamba GEMMs (M >= 512) on every sm_8x part.
using Sm80Tile128x128 = Sm80Traits<128, 128, 2, 4, 4>;
// 64x64 tile, 4 warps of 32x32, 4 stages (32 KiB): more CTAs for narrow N (x_proj) or small M.
using Sm80Tile64x64 = Sm80Traits<64, 64, 2, 2, 4>;

template <typename Traits>
constexpr const char* sm80_name() {
  if constexpr (std::is_same_v<Traits, Sm80Tile128x128>) return "sm80_128x128x64_w2x4_s4";
  else if constexpr (std::is_same_v<Traits, Sm80Tile64x64>) return "sm80_64x64x64_w2x2_s4";
  else return "sm80_custom";
}

namespace detail {

#if QUAMBA_HAS_CUDA_COMPILER

// Byte offset of 16-byte chunk c (0..3) of row r in a [rows][64 B] tile. Rows r and r+1 share a
// 128-byte line (all 32 banks); XOR-ing the chunk with (r/2)%4 places the 8 rows that one
// ldmatrix phase reads (same logical chunk, rows r0..r0+7) in 8 distinct 16-byte bank groups.
QUAMBA_DEVICE uint32_t swizzle64(int r, int c) {
  return static_cast<uint32_t>(r * 64 + ((c ^ ((r >> 1) & 3)) << 4));
}

// One k32 step of a warp's kMmaM x kMmaN m16n8 fragments: ldmatrix of A (a_addr(i): this
// lane's row address of fragment i) and of W in n16 pairs (b_addr(j): of pair j), then the mmas.
// The ldmatrix lane roles: A matrices (rows 0-7,k0-15) (rows 8-15,k0-15) (rows 0-7,k16-31)
// (rows 8-15,k16-31) -> a0..a3; W (n0-7,k0-15) (n0-7,k16-31) (n8-15,k0-15) (n8-15,k16-31) -> b0,b1
// of the first n8 fragment, b0,b1 of the second (see mma_lane_rows).
template <class Grid, class AAddr, class BAddr>
QUAMBA_DEVICE void mma_k32_step(int32_t (&acc)[Grid::kMmaM][Grid::kMmaN][4], AAddr a_addr, BAddr b_addr) {
  uint32_t af[Grid::kMmaM][4];
  uint32_t bf[Grid::kMmaN][2];
#pragma unroll
  for (int i = 0; i < Grid::kMmaM; ++i) ptx::ldmatrix_x4(af[i], a_addr(i));
#pragma unroll
  for (int j = 0; j < Grid::kMmaN / 2; ++j) {
    uint32_t t[4];
    ptx::ldmatrix_x4(t, b_addr(j));
    bf[2 * j][0] = t[0];
    bf[2 * j][1] = t[1];
    bf[2 * j + 1][0] = t[2];
    bf[2 * j + 1][1] = t[3];
  }
#pragma unroll
  for (int i = 0; i < Grid::kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < Grid::kMmaN; ++j) ptx::mma_s8_16832(acc[i][j], af[i], bf[j][0], bf[j][1]);
}

// This lane's ldmatrix source row (within a 16-row fragment) and 16-byte chunk (0/1 within a
// k32 step) for A and for W, in the roles mma_k32_step expects.
struct MmaLaneRows {
  int a_row, a_chunk, b_row, b_chunk;
};
QUAMBA_DEVICE MmaLaneRows mma_lane_rows(int lane) {
  return {(lane & 7) + ((lane >> 3) & 1) * 8, lane >> 4, (lane & 7) + (lane >> 4) * 8, (lane >> 3) & 1};
}

template <typename Output, typename Epilogue>
QUAMBA_DEVICE void store_pair(const GemmParams<Epilogue>& p, bool pair_ok, int64_t m, int64_t n, int32_t a0,
                              int32_t a1) {
  if (m >= p.M || n >= p.N) return;
  Output* dst = p.C + m * p.ldc + n;
  if (pair_ok && n + 1 < p.N) {
    ptx::store2(dst, p.epilogue.apply(a0, m, n), p.epilogue.apply(a1, m, n + 1));
  } else {
    dst[0] = p.epilogue.apply(a0, m, n);
    if (n + 1 < p.N) dst[1] = p.epilogue.apply(a1, m, n + 1);
  }
}

// k_split > 0: this CTA covers K-slice blockIdx.z ([z·k_split, (z+1)·k_split) ∩ [0, K)) and
// writes to C + z·c_split_stride (split-K partial sums, Identity epilogue).
template <typename Traits, typename Epilogue>
__global__ void __launch_bounds__(Traits::kThreads)
    gemm_sm80_kernel(GemmParams<Epilogue> p, bool pair_ok, int64_t k_split, int64_t c_split_stride) {
  using Output = typename Epilogue::Output;
  constexpr int kBM = Traits::kBM, kBN = Traits::kBN, kBK = Traits::kBK, kStages = Traits::kStages;
  extern __shared__ __align__(128) uint8_t smem[];
  if (k_split > 0) {
    const int64_t k0 = static_cast<int64_t>(blockIdx.z) * k_split;
    p.A += k0;
    p.W += k0;
    p.K = p.K - k0 < k_split ? p.K - k0 : k_split;
    p.C += static_cast<int64_t>(blockIdx.z) * c_split_stride;
  }
  const uint32_t smem_base = ptx::smem_u32(smem);

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int warp_m0 = (warp % Traits::kWarpsM) * Traits::kWarpM;
  const int warp_n0 = (warp / Traits::kWarpsM) * Traits::kWarpN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int K = static_cast<int>(p.K);
  const int k_tiles = (K + kBK - 1) / kBK;

  // Rows past M or N and chunks past K are zero-filled, so they contribute 0 to the sums;
  // their (unread) source address is clamped to the matrix base.
  auto load_a = [&](int stage, int k_tile) {
    const uint32_t sA = smem_base + stage * Traits::kStageBytes;
    const int k0 = k_tile * kBK;
#pragma unroll
    for (int i = 0; i < Traits::kAChunks / Traits::kThreads; ++i) {
      const int q = tid + i * Traits::kThreads;
      const int r = q / Traits::kChunksPerRow, c = q % Traits::kChunksPerRow;
      const int64_t gm = m0 + r;
      const int gk = k0 + c * 16;
      const bool ok = gm < p.M && gk < K;
      ptx::cp_async_16(sA + swizzle64(r, c), ok ? p.A + gm * p.lda + gk : p.A, ok);
    }
  };
  auto load_w = [&](int stage, int k_tile) {
    const uint32_t sB = smem_base + stage * Traits::kStageBytes + kBM * kBK;
    const int k0 = k_tile * kBK;
#pragma unroll
    for (int i = 0; i < Traits::kBChunks / Traits::kThreads; ++i) {
      const int q = tid + i * Traits::kThreads;
      const int r = q / Traits::kChunksPerRow, c = q % Traits::kChunksPerRow;
      const int64_t gn = n0 + r;
      const int gk = k0 + c * 16;
      const bool ok = gn < p.N && gk < K;
      ptx::cp_async_16(sB + swizzle64(r, c), ok ? p.W + gn * p.ldw + gk : p.W, ok);
    }
  };
  auto load_stage = [&](int stage, int k_tile) {
    load_a(stage, k_tile);
    load_w(stage, k_tile);
  };

  int32_t acc[Traits::kMmaM][Traits::kMmaN][4];
#pragma unroll
  for (int i = 0; i < Traits::kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < Traits::kMmaN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

  // Prologue: kStages-1 tiles in flight. A group is committed even when empty so that the
  // wait_group count below always refers to the same tile. Launched as a programmatic dependent,
  // the prologue's W tiles go out before the dependency wait (no kernel of the chain writes
  // weights) and land in the first group with A tile 0; A, which the previous kernel may still be
  // writing, and every global write come after it.
  const int w_early = p.pdl ? (kStages - 1 < k_tiles ? kStages - 1 : k_tiles) : 0;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s)
    if (s < w_early) load_w(s, s);
  grid_dependency_wait();
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) {
      load_a(s, s);
      if (s >= w_early) load_w(s, s);
    }
    ptx::cp_async_commit();
  }

  const MmaLaneRows lr = mma_lane_rows(lane);

  for (int kt = 0; kt < k_tiles; ++kt) {
    // Tile kt has landed for this thread; the barrier makes every thread's copies visible and
    // guarantees that all warps are done with the stage the next load overwrites (kt-1's).
    ptx::cp_async_wait<kStages - 2>();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < k_tiles) load_stage(next % kStages, next);
    ptx::cp_async_commit();

    const uint32_t sA = smem_base + (kt % kStages) * Traits::kStageBytes;
    const uint32_t sB = sA + kBM * kBK;
#pragma unroll
    for (int kk = 0; kk < kBK / 32; ++kk)
      mma_k32_step<Traits>(
          acc, [&](int i) { return sA + swizzle64(warp_m0 + i * 16 + lr.a_row, kk * 2 + lr.a_chunk); },
          [&](int j) { return sB + swizzle64(warp_n0 + j * 16 + lr.b_row, kk * 2 + lr.b_chunk); });
  }
  ptx::cp_async_wait<0>();

  // Epilogue straight from the accumulator fragments: each thread owns column pairs (2t, 2t+1)
  // of rows g and g+8 of every m16n8 fragment.
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < Traits::kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < Traits::kMmaN; ++j) {
      const int64_t m = m0 + warp_m0 + i * 16 + g;
      const int64_t n = n0 + warp_n0 + j * 8 + 2 * t;
      store_pair<Output>(p, pair_ok, m, n, acc[i][j][0], acc[i][j][1]);
      store_pair<Output>(p, pair_ok, m + 8, n, acc[i][j][2], acc[i][j][3]);
    }
}

// Sums the split-K partials (splits, M, n4) int32 of every output and applies the epilogue;
// one thread per 4 consecutive columns (n4 = N rounded up to 4: 16-byte loads of whole quads).
template <typename Epilogue>
__global__ void __launch_bounds__(256) split_k_reduce_kernel(GemmParams<Epilogue> p, const int32_t* partial,
                                                             int splits, int64_t n4) {
  // Every input is the tile kernel's output: nothing to do before the dependency wait.
  grid_dependency_wait();
  const int64_t quads = n4 / 4;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.M * quads) return;
  const int64_t m = i / quads, n = (i % quads) * 4;
  int acc[4] = {0, 0, 0, 0};
  if (n + 4 <= p.N) {
    // Four splits' loads in flight at once (one L2 round trip per four splits instead of per
    // split); int32 sums are exact in any order.
    const int32_t* src = partial + m * n4 + n;
    const int64_t split_stride = p.M * n4;
    const auto load = [&](int s) { return __ldcg(reinterpret_cast<const int4*>(src + s * split_stride)); };
    const auto add = [&](const int4& v) {
      acc[0] += v.x;
      acc[1] += v.y;
      acc[2] += v.z;
      acc[3] += v.w;
    };
    int s = 0;
    for (; s + 4 <= splits; s += 4) {
      int4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = load(s + u);
#pragma unroll
      for (int u = 0; u < 4; ++u) add(v[u]);
    }
    for (; s < splits; ++s) add(load(s));
    // An int8 quad leaves as one 4-byte store where C allows it (instead of four byte stores).
    using Output = typename Epilogue::Output;
    if constexpr (sizeof(Output) == 1) {
      if (p.ldc % 4 == 0 && (reinterpret_cast<uintptr_t>(p.C) & 3u) == 0) {
        uint32_t packed = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j)
          packed |= static_cast<uint32_t>(static_cast<uint8_t>(p.epilogue.apply(acc[j], m, n + j))) << (8 * j);
        *reinterpret_cast<uint32_t*>(p.C + m * p.ldc + n) = packed;
        return;
      }
    }
  } else {
    // The last quad of a row whose N is not a multiple of 4: the partial kernel never writes
    // columns [N, n4), so they are not read.
    for (int s = 0; s < splits; ++s)
      for (int j = 0; j < 4; ++j)
        if (n + j < p.N) acc[j] += __ldcg(partial + (s * p.M + m) * n4 + n + j);
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (n + j < p.N) p.C[m * p.ldc + n + j] = p.epilogue.apply(acc[j], m, n + j);
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace detail

// Split-K plan of the 64 x 64 tile (host only, device independent, so that workspace_size needs
// no device): split when the tile grid is below half of kSplitKTargetCtas and K holds at least two
// slices of kSplitKMinSlice; slices are whole 64-byte K-tiles, as many as bring the grid to about
// kSplitKTargetCtas CTAs (two waves on a 132-SM H100).
inline constexpr int64_t kSplitKTargetCtas = 264;
inline constexpr int64_t kSplitKMinSlice = 256;

struct SplitKPlan {
  int splits = 1;      // 1: no split
  int64_t slice = 0;   // K per split (multiple of 64)
  int64_t n4 = 0;      // partial row pitch (N rounded up to 4)
};

inline SplitKPlan plan_split_k(int64_t M, int64_t N, int64_t K) {
  SplitKPlan s;
  if (M <= 0 || N <= 0 || K <= 0) return s;
  const int64_t tiles = ((M + 63) / 64) * ((N + 63) / 64);
  if (2 * tiles >= kSplitKTargetCtas || K < 2 * kSplitKMinSlice) return s;
  const int64_t by_k = K / kSplitKMinSlice, by_grid = (kSplitKTargetCtas + tiles - 1) / tiles;
  const int64_t want = by_k < by_grid ? by_k : by_grid;
  const int64_t slice = ((K + want - 1) / want + 63) / 64 * 64;
  const int64_t splits = (K + slice - 1) / slice;
  if (splits < 2) return s;
  s.splits = static_cast<int>(splits);
  s.slice = slice;
  s.n4 = (N + 3) / 4 * 4;
  return s;
}

// Workspace bytes of the split-K path for this problem (0: it does not split).
inline size_t split_k_workspace_size(int64_t M, int64_t N, int64_t K) {
  const SplitKPlan s = plan_split_k(M, N, K);
  return s.splits > 1 ? static_cast<size_t>(s.splits) * static_cast<size_t>(M) * static_cast<size_t>(s.n4) * 4 : 0;
}

// Bound of split_k_workspace_size over every shape: splits·tiles < kSplitKTargetCtas + tiles
// < 1.5·kSplitKTargetCtas, and M·n4 <= tiles·64·64.
inline constexpr size_t kSm80SplitKWorkspaceBound = static_cast<size_t>(kSplitKTargetCtas * 3 / 2) * 64 * 64 * 4;
// Workspace that covers every split-K plan of the family: the mma.sync plan above (6.5 MB) and the
// wgmma plan (gemm_sm90.cuh, plan_sm90a_split_k), which caps its splits to fit this bound (x_proj at
// d_model 2560, M = 2048: 8 splits of (2048, 192) int32 = 12.6 MB).
inline constexpr size_t kSplitKWorkspaceBound = size_t(16) << 20;
static_assert(kSm80SplitKWorkspaceBound <= kSplitKWorkspaceBound, "one workspace bound for every split-K plan");

template <typename Traits, typename Epilogue>
Status can_implement_sm80(const GemmParams<Epilogue>& p) {
  QUAMBA_RETURN_IF_ERROR(check_params(p));
  if ((p.N + Traits::kBN - 1) / Traits::kBN > 65535) return Status::kErrorNotSupported;  // grid.y
  return Status::kSuccess;
}

#if QUAMBA_HAS_CUDA_COMPILER
// Launches the mma.sync kernel with tile Traits; needs sm_80 or newer (the caller checks).
template <typename Traits, typename Epilogue>
Status run_sm80(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement_sm80<Traits>(p));
  if (p.M == 0) return Status::kSuccess;
  auto kernel = detail::gemm_sm80_kernel<Traits, Epilogue>;
  QUAMBA_RETURN_IF_CUDA_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes));
  const bool pair_ok = c_pairs_aligned(p);
  const dim3 grid(static_cast<unsigned>((p.M + Traits::kBM - 1) / Traits::kBM),
                  static_cast<unsigned>((p.N + Traits::kBN - 1) / Traits::kBN));
  return launch_kernel(kernel, grid, dim3(Traits::kThreads), Traits::kSmemBytes, stream, p.pdl, p,
                       pair_ok, int64_t(0), int64_t(0));
}

// The split-K form of the 64 x 64 tile (plan_split_k(M, N, K) must split). `workspace`: at least
// split_k_workspace_size(M, N, K) bytes, 16-byte aligned; overwritten, no initial contents needed.
namespace detail {
// The partial-sum problem of a split-K plan: p's operands, int32 outputs into the workspace with
// row pitch n4 (the tile kernel adds z·M·n4 for split z).
template <typename Epilogue>
GemmParams<Identity> split_k_partials(const GemmParams<Epilogue>& p, void* workspace, int64_t n4) {
  GemmParams<Identity> q;
  q.M = p.M; q.N = p.N; q.K = p.K;
  q.A = p.A; q.lda = p.lda;
  q.W = p.W; q.ldw = p.ldw;
  q.C = static_cast<int32_t*>(workspace); q.ldc = n4;
  q.pdl = p.pdl;
  return q;
}

// The second launch of every split-K path: sums the `splits` partials and applies p's epilogue.
// With pdl it is a programmatic dependent of the tile kernel: its CTAs start while the last
// partial sums are computed and wait for all of them.
template <typename Epilogue>
Status launch_split_k_reduce(const GemmParams<Epilogue>& p, const void* workspace, int splits, int64_t n4,
                             cudaStream_t stream) {
  const int64_t threads = p.M * (n4 / 4);
  return launch_kernel(split_k_reduce_kernel<Epilogue>, dim3(static_cast<unsigned>((threads + 255) / 256)), dim3(256),
                       0, stream, p.pdl, p, static_cast<const int32_t*>(workspace), splits, n4);
}
}  // namespace detail

template <typename Epilogue>
Status run_sm80_split_k(const GemmParams<Epilogue>& p, void* workspace, cudaStream_t stream) {
  using Traits = Sm80Tile64x64;
  QUAMBA_RETURN_IF_ERROR(can_implement_sm80<Traits>(p));
  const SplitKPlan s = plan_split_k(p.M, p.N, p.K);
  if (s.splits < 2) return Status::kErrorInvalidArgument;
  if (!workspace) return Status::kErrorInvalidArgument;
  if (!is_aligned(workspace, 16)) return Status::kErrorMisaligned;
  const GemmParams<Identity> q = detail::split_k_partials(p, workspace, s.n4);
  auto kernel = detail::gemm_sm80_kernel<Traits, Identity>;
  QUAMBA_RETURN_IF_CUDA_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes));
  const dim3 grid(static_cast<unsigned>((p.M + Traits::kBM - 1) / Traits::kBM),
                  static_cast<unsigned>((p.N + Traits::kBN - 1) / Traits::kBN), static_cast<unsigned>(s.splits));
  QUAMBA_RETURN_IF_ERROR(launch_kernel(kernel, grid, dim3(Traits::kThreads), Traits::kSmemBytes,
                                       stream, q.pdl, q, true, s.slice, p.M * s.n4));
  return detail::launch_split_k_reduce(p, workspace, s.splits, s.n4, stream);
}
#endif

}  // namespace quamba::gemm
