// quamba/gemm/gemm.cuh: the int8 GEMM family's entry point (W8A8 linear layers).
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ )
//   A int8 (M, K) row stride lda; W int8 (N, K) row-major, row stride ldw; C (M, N) row stride
//   ldc, dtype of the epilogue (Requant: int8, DequantF32: fp32, DequantF16: __half,
//   Identity: int32). All strides in elements. Rules: gemm/params.cuh; epilogues:
//   gemm/epilogue.cuh. Results are bit-exact against reference/gemm.hpp on every path.
//
// Paths (GemmPath):
//   kGemv   M <= 16: weight-streaming dp4a kernel (gemm/gemv.cuh), any sm >= 80.
//   kGemvMma M <= 32: weight-streaming kernel on mma.sync tensor cores (gemm/gemv_mma.cuh), any
//           sm >= 80.
//   kSm80   mma.sync.m16n8k32 tensor-core kernel (gemm/gemm_sm80.cuh), any sm >= 80.
//   kSm90a  wgmma + TMA kernel (gemm/gemm_sm90.cuh), sm_90 built as 90a only.
//   kShortK K <= 256: whole-K operand rows, the column-resident kernel (a CTA per column block
//           and share of the row tiles, W in shared memory once; gemm/gemm_short_k.cuh), any sm >= 80; falls back to kSm80 where its shared memory
//           does not fit the device. On sm_90 with a 90a build, where sm90a_short_k_worthwhile
//           (K >= 96, at least four 64 x 128 tiles per SM: dt_proj of d_model >= 1536 at prefill), the
//           wgmma short-K kernel instead (gemm/gemm_sm90_short_k.cuh).
//   kAuto   kGemvMma for 3 <= M <= 32 on wide layers (N > 1024) and for 6 <= M <= 32 on narrow
//           ones with a long K (N <= 256, K > 256: x_proj; gemv_mma_worthwhile);
//           kShortK for M >= 128 and K <= 256 (dt_proj prefill); kGemv for M <= 16 (except 4 < M with at least one 64-column tile per SM, or half
//           of that with K <= 256: kSm80,
//           see small_m_mma_worthwhile; and, given a workspace, 8 <= M with M·N·K >= 2^23 where
//           the split-K plan splits: kSm80); else kSm90a on sm_90 with a 90a build when M >= kSm90aMinM and
//           the problem has at least half as many 128 x 128 tiles as there are SMs (see
//           sm90a_worthwhile; within kSm90a, run_sm90a_auto picks the tile); else kSm90a split
//           over K where plan_sm90a_split_k splits (M >= kSm90aSplitMinM, few tiles, a long K:
//           x_proj prefill): reduced inside clusters (at most kSm90aMaxClusterSplits splits, all
//           clusters resident at once, no workspace), or through a given workspace, or unsplit;
//           else kSm80 with a tile chosen by shape.
// Workspace: the kSm80 and kSm90a paths (also when kAuto chooses them) split K over several CTAs
// per tile for problems with few tiles and a long K (gemm_sm80.cuh plan_split_k, gemm_sm90.cuh
// plan_sm90a_split_k) when run() is given a workspace of workspace_size(p, path) bytes for the path
// it is called with (16-byte aligned, no initial contents; at most kSplitKWorkspaceBound for any
// shape; kAuto's covers both plans, so a kSm80-sized workspace is too small for kAuto); with
// workspace == nullptr they run unsplit, except kSm90a's cluster form, which needs none. Every
// other path needs none. run() never allocates or synchronizes.
// PDL: with GemmParams::pdl every kernel of every path launches as a programmatic dependent of the
// stream's previous kernel (the split-K reduce as a dependent of its tile kernel); see params.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "quamba/core/arch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/gemm_short_k.cuh"
#include "quamba/gemm/gemm_sm90_short_k.cuh"
#include "quamba/gemm/gemm_sm80.cuh"
#include "quamba/gemm/gemm_sm90.cuh"
#include "quamba/gemm/gemv.cuh"
#include "quamba/gemm/gemv_mma.cuh"
#include "quamba/gemm/params.cuh"

namespace quamba::gemm {

enum class GemmPath { kAuto, kGemv, kSm80, kSm90a, kShortK, kGemvMma };

// Below this M the 128-row wgmma tile is mostly padding; the mma.sync 64x64 tile is used instead.
inline constexpr int64_t kSm90aMinM = 128;

// The wgmma kernel runs one 128-row tile per SM; with fewer 128 x 128 tiles than half the SMs
// (M = 128 in_proj at d_model 768: 24 tiles on 132 SMs) the 64x64 mma.sync tile's 4x more CTAs
// finish first (bench_gemm M128 rows).
// Small batches (4 < M <= 16) of a wide layer: the GEMV re-reads the M activation rows from L1
// for every 16-byte weight chunk, so its cost grows with M, while the 64x64 mma.sync tile reads
// them once per CTA. H100, bench_gemm D2560 in_proj (N = 10240, 160 tiles of 64 columns): GEMV
// 15.0 / 23.0 / 33.6 us at M = 4 / 8 / 16, mma.sync 64x64 17.7 / 18.1 / 18.2 us. With fewer
// 64-column tiles than SMs the tile grid leaves SMs idle (x_proj, N = 192: GEMV 5.3 us, tile 20.9
// us at M = 8), so those shapes keep the GEMV. Short K (dt_proj, K = dt_rank <= 256): a tile's
// whole K is a few steps, so half a wave of tiles already beats the GEMV's per-row cost (d_model
// 2560 dt_proj, N = 5120 = 80 tiles, M = 8: tile 3.01 us against GEMV 5.18, bench/RESULTS.md run
// L8; at M = 4, 3.04 against 3.31 in run J6, but 4 rows keep the GEMV like every other layer).
inline bool small_m_mma_worthwhile(int64_t M, int64_t N, int64_t K, int sm_count) {
  const int64_t tiles = (N + 63) / 64;
  return M > 4 && (tiles >= sm_count || (K <= 256 && 2 * tiles >= sm_count));
}

// Batches of 8..16 rows with a workspace: the GEMV's cost grows with M·N·K (every weight chunk
// meets M activation rows), the split-K tile's hardly with M, so where the plan splits (few
// tiles, long K) and M·N·K >= kSplitKOverGemvMinMacs the tile runs instead. H100, d_model 2560,
// same run (bench/RESULTS.md run L6), GEMV against split-K: out_proj (N 2560, K 5120) M = 8
// 14.8 / 10.8 us, M = 16 21.6 / 11.0; x_proj (N 192, K 5120) M = 8 (7.9 M MACs) 5.14 / 5.48,
// M = 16 8.32 / 5.62.
inline constexpr int64_t kSplitKOverGemvMinM = 8;
inline constexpr int64_t kSplitKOverGemvMinMacs = int64_t(1) << 23;

inline bool sm90a_worthwhile(int64_t M, int64_t N, int sm_count) {
  if (M < kSm90aMinM) return false;
  const int64_t tiles = ((M + 127) / 128) * ((N + 127) / 128);
  return 2 * tiles >= sm_count;
}

// Few wgmma tiles and a long K, from kSm90aSplitMinM rows (prefill): the wgmma split-K
// (plan_sm90a_split_k; inside clusters or through a workspace, see run()) instead of the mma.sync
// one. H200, same run (bench/RESULTS.md run X): x_proj at d_model 2560 (N = 192, K = 5120),
// M = 2048: 18.5 us (workspace form) against 20.0; at M = 128 the
// mma.sync split-K's smaller tiles win on every layer (x_proj 10.5 against 13.0 us, out_proj 19.0
// against 20.3, in_proj at d_model 768 9.0 against 14.1).
inline constexpr int64_t kSm90aSplitMinM = 1024;
inline bool sm90a_split_worthwhile(int64_t M, int64_t N, int64_t K) {
  return M >= kSm90aSplitMinM && plan_sm90a_split_k(M, N, K).splits > 1;
}

// Decode batches of a wide layer (in_proj, out_proj, an int8 lm_head): the tensor-core weight
// stream (gemm/gemv_mma.cuh), whose cost hardly grows with M. H200, bench_gemm D2560 in_proj
// (N 10240, K 2560), same run (bench/RESULTS.md run AE): gemv_mma_k4 10.0 / 10.0 / 10.1 / 10.8 /
// 11.8 us at M = 1 / 4 / 8 / 16 / 32, against the dp4a GEMV 8.71 / 14.0 / 22.7 / 32.9 and the
// 64x64 mma.sync tile (kAuto's previous choice from M = 5) 16.2 / 16.7 / 17.4 at M = 8 / 16 / 32.
// One row keeps the dp4a GEMV; two are a tie by interpolation, so the kernel starts at three.
// The same holds for a short K over many rows (dt_proj, K = dt_rank <= 256): H200, D2560
// (N 5120, K 160), same run (run AF): gemv_mma_r4 2.20 / 2.92 us at M = 8 / 32 against kAuto's
// previous choice, the 64x64 mma.sync tile, 3.11 / 4.01 (cuBLAS fp16 3.04 / 3.25).
// A narrow layer with a long K (x_proj, N = dt_rank + 2·d_state <= 256) takes it from six rows:
// D2560 (N 192, K 5120), run AF: gemv_mma_k16 4.02 / 4.87 / 5.85 us at M = 8 / 16 / 32 against
// the dp4a split-K GEMV 5.13 / 8.29 / – and the mma.sync split-K tile (with a workspace) 5.64 /
// 5.74 / 6.02; at M = 4 the GEMV's 3.42 beats its 3.99 (five rows: a tie by interpolation).
// Rows of 257..1024 outputs keep their paths (not measured).
inline constexpr int64_t kGemvMmaMinM = 3;
inline constexpr int64_t kGemvMmaNarrowMaxN = 256;
inline constexpr int64_t kGemvMmaNarrowMinM = 6;
inline bool gemv_mma_worthwhile(int64_t M, int64_t N, int64_t K) {
  if (M < kGemvMmaMinM || M > kGemvMmaMaxM) return false;
  if (N > 1024) return true;  // wide layers, long or short K
  return N <= kGemvMmaNarrowMaxN && K > 256 && M >= kGemvMmaNarrowMinM;
}

// Within kShortK on sm_90 (host only): the wgmma short-K kernel (gemm_sm90_short_k.cuh) for K >= 96
// with at least four of its 64 x 128 tiles per SM, else the column-resident mma.sync kernel. H200,
// same run (bench/RESULTS.md run AH), µs, wgmma against mma.sync: d_model 2560 (K = 160, N = 5120)
// M = 2048 13.0 / 16.7, M = 8192 31.9 / 44.2, M = 128 (80 tiles) 7.09 / 6.58; d_model 768
// (K = 48, N = 1536) M = 2048 8.59 / 7.52, M = 8192 13.9 / 13.2: with a short K the mma.sync
// kernel's per-output work is small and the wgmma kernel's epilogue and start dominate. Run AI, M =
// 2048 / 8192: d_model 2048 (K = 128) 11.4 / 26.5 against 12.8 / 31.0; d_model 1536 (K = 96) 9.92 /
// 21.6 against 10.2 / 22.9; d_model 1024 (K = 64) 8.54 / 16.1 against 8.11 / 16.3.
inline constexpr int64_t kSm90aShortKMinK = 96;
inline bool sm90a_short_k_worthwhile(int64_t M, int64_t N, int64_t K, int sm_count) {
  const int64_t tiles = ((M + 63) / 64) * ((N + 127) / 128);
  return K >= kSm90aShortKMinK && K <= kSm90aShortKMaxK && sm_count > 0 && tiles >= 4 * int64_t(sm_count);
}

// The path GemmPath::kAuto takes on a device of compute capability `arch` with `sm_count` SMs,
// given a workspace or not (host only, no device query; run() applies it, and falls back to
// kSm80 where kSm90a is chosen but the build has no sm_90a image).
inline GemmPath auto_path(int64_t M, int64_t N, int64_t K, bool has_workspace, int arch, int sm_count) {
  if (gemv_mma_worthwhile(M, N, K)) return GemmPath::kGemvMma;
  if (M <= kGemvMaxM && !small_m_mma_worthwhile(M, N, K, sm_count))
    return has_workspace && M >= kSplitKOverGemvMinM && M * N * K >= kSplitKOverGemvMinMacs &&
                   plan_split_k(M, N, K).splits > 1
               ? GemmPath::kSm80
               : GemmPath::kGemv;
  if (M >= kShortKMinM && K <= kShortKMaxK) return GemmPath::kShortK;
  if (arch == 90 && sm90a_dispatch_enabled() && sm90a_worthwhile(M, N, sm_count)) return GemmPath::kSm90a;
  if (arch == 90 && sm90a_dispatch_enabled() && sm90a_split_worthwhile(M, N, K) &&
      (has_workspace || plan_sm90a_split_k(M, N, K).splits <= kSm90aMaxClusterSplits))
    return GemmPath::kSm90a;
  return GemmPath::kSm80;
}

inline const char* to_string(GemmPath p) {
  switch (p) {
    case GemmPath::kAuto: return "auto";
    case GemmPath::kGemv: return "gemv";
    case GemmPath::kSm80: return "sm80";
    case GemmPath::kSm90a: return "sm90a";
    case GemmPath::kShortK: return "short_k";
    case GemmPath::kGemvMma: return "gemv_mma";
  }
  return "unknown";
}

// Host-only validation for a path (kAuto: the rules every path shares). Touches no device state:
// the architecture is checked by run().
template <typename Epilogue>
Status can_implement(const GemmParams<Epilogue>& p, GemmPath path = GemmPath::kAuto) {
  switch (path) {
    case GemmPath::kAuto: return can_implement_sm80<Sm80Tile64x64>(p);
    case GemmPath::kGemv: return can_implement_gemv(p);
    case GemmPath::kSm80: return can_implement_sm80<Sm80Tile64x64>(p);
    case GemmPath::kSm90a: return can_implement_sm90a(p);
    case GemmPath::kShortK: return can_implement_short_k(p);
    case GemmPath::kGemvMma: return can_implement_gemv_mma(p);
  }
  return Status::kErrorNotSupported;
}

template <typename Epilogue>
size_t workspace_size(const GemmParams<Epilogue>& p, GemmPath path = GemmPath::kAuto) {
  const size_t sm80 = split_k_workspace_size(p.M, p.N, p.K);
  // The wgmma plan's workspace where run() may split that way (sm90a_split_worthwhile).
  const size_t sm90a = p.M >= kSm90aSplitMinM ? sm90a_split_k_workspace_size(p.M, p.N, p.K) : 0;
  switch (path) {
    case GemmPath::kAuto: return sm80 > sm90a ? sm80 : sm90a;
    case GemmPath::kSm80: return sm80;
    case GemmPath::kSm90a: return sm90a;
    default: return 0;
  }
}

#if QUAMBA_HAS_CUDA_COMPILER

// The 128x128 tile when it still gives at least one wave of CTAs, else the 64x64 tile, split
// over K when the plan says so and a workspace is given. H100, bench_gemm D2560 (same run): x_proj
// M = 32 21.6 us unsplit on 3 CTAs, M = 2048 25.8 us on 96; out_proj M = 32 29.7 us on 40.
template <typename Epilogue>
Status run_sm80_auto(const GemmParams<Epilogue>& p, int sm_count, void* workspace, cudaStream_t stream) {
  const int64_t big_tiles = ((p.M + 127) / 128) * ((p.N + 127) / 128);
  if (big_tiles >= sm_count) return run_sm80<Sm80Tile128x128>(p, stream);
  if (workspace && plan_split_k(p.M, p.N, p.K).splits > 1) return run_sm80_split_k(p, workspace, stream);
  return run_sm80<Sm80Tile64x64>(p, stream);
}

template <typename Epilogue>
Status run(const GemmParams<Epilogue>& p, void* workspace, cudaStream_t stream, GemmPath path = GemmPath::kAuto) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p, path));
  if (p.M == 0) return Status::kSuccess;
  DeviceInfo info;
  QUAMBA_RETURN_IF_ERROR(query_device(&info));
  if (info.arch < kMinSupportedArch) return Status::kErrorArchNotSupported;
  const bool automatic = path == GemmPath::kAuto;
  if (automatic) {
    path = auto_path(p.M, p.N, p.K, workspace != nullptr, info.arch, info.sm_count);
    if (path == GemmPath::kSm90a && !sm90a_available<Epilogue>()) path = GemmPath::kSm80;
  }
  switch (path) {
    case GemmPath::kGemv: return run_gemv(p, stream);
    case GemmPath::kGemvMma: return run_gemv_mma(p, stream);
    case GemmPath::kSm80: return run_sm80_auto(p, info.sm_count, workspace, stream);
    case GemmPath::kSm90a:
      if (info.arch != 90) return Status::kErrorArchNotSupported;
      if (sm90a_split_worthwhile(p.M, p.N, p.K)) {
        // Split first, also where the unsplit wgmma tiles would fill the SMs (their 128-wide tile
        // count, not the plan's): the cluster form where every tile's cluster fits at once (at
        // the plan's splits or fewer), else the workspace form; else the unsplit wgmma tiles
        // where they fill the SMs, else, chosen by kAuto, the mma.sync tiles (H200, x_proj at
        // d_model 2560, M = 2048, no workspace: 25.0 us against 26.6 for the unsplit wgmma
        // tiles), forced, the unsplit wgmma tiles. H200 (bench/RESULTS.md run AI), x_proj at
        // d_model 2560, M = 8192: cluster form 22.2 us, workspace form 26.6, unsplit 30.3.
        const Status c = run_sm90a_split_k_cluster(p, stream, /*one_wave=*/true);
        if (c != Status::kErrorNotSupported) return c;
        if (workspace) return run_sm90a_split_k(p, workspace, stream);
        if (automatic && !sm90a_worthwhile(p.M, p.N, info.sm_count))
          return run_sm80_auto(p, info.sm_count, nullptr, stream);
      }
      return run_sm90a_auto(p, info.sm_count, stream);
    case GemmPath::kShortK: {
      // sm_90 with the sm_90a image, where sm90a_short_k_worthwhile: W resident, wgmma, consumer
      // warpgroups overlapping their epilogues (gemm_sm90_short_k.cuh).
      if (info.arch == 90 && sm90a_short_k_worthwhile(p.M, p.N, p.K, info.sm_count) &&
          sm90a_short_k_available<Epilogue>())
        return run_sm90a_short_k(p, stream);
      const Status st = detail::launch_short_k<ShortKCol128x64>(p, info, stream);
      // The tile's shared memory above this device's per-block limit: the pipelined kernel.
      return st == Status::kErrorNotSupported ? run_sm80_auto(p, info.sm_count, workspace, stream) : st;
    }
    case GemmPath::kAuto: break;
  }
  return Status::kErrorNotSupported;
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::gemm
