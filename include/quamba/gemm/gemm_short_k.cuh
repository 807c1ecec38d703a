// quamba/gemm/gemm_short_k.cuh: int8 tensor-core GEMM for a short K (K <= kShortKMaxK = 256),
// mma.sync (sm_80 and newer).
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ ),  shapes, strides and alignment as gemm/params.cuh.
//
// The Mamba dt_proj (K = dt_rank, 48..160) is such a GEMM: a 128 x 128 output tile is five
// m16n8k32 steps per warp, so per output there is little arithmetic and the epilogue and the
// tile bookkeeping are most of the instructions. The K-pipelined kernels (gemm_sm80.cuh,
// gemm_sm90.cuh) pay a whole load -> mma -> epilogue round trip per tile, and the mma.sync one
// writes C from the accumulator fragments (a warp store covers eight rows with 8 bytes each).
// Here:
//   - a CTA takes a contiguous range of the column-block-major tile list and keeps the next tile's
//     A and W (all of K, one cp.async group) in flight while it computes and stores this one
//     (two stages; a stage reloads W only when its column block changes, so a tile mostly copies
//     its kBM A rows alone);
//   - the epilogue goes through shared memory and leaves as whole 16-byte row pieces, each thread
//     storing the same chunks of every tile (offsets computed once);
//   - the Requant epilogue converts int32 -> fp32 by the exact magic-number form (|acc| <=
//     K·2^14 <= 2^22) instead of I2F, which runs on the quarter-rate conversion pipe, and on
//     whole tiles with a finite alpha and no column scale rounds and saturates in one
//     cvt.rni.sat.s8 (no NaN can occur there); the results are bit-identical to Requant::apply.
// Operand copies: thread t copies the 16-byte chunk t % 16 of every (kThreads / 16)-th row, so a
// chunk's address advances by a constant per row pass (K <= 256: at most 16 chunks per row).
// Measured on an H100 (bench/RESULTS.md run M): d_model 2560, M = 2048 in 20 us, 1.2x faster
// than the pipelined kernels; the output stream alone would take 3.5 us, and ncu showed an
// issue-bound kernel (DRAM ~1% busy) before the epilogue was trimmed.
// The default is now the column-resident form (ShortKColTraits, below; gemm::run's kShortK path):
// 44% fewer issued instructions than the tile-list kernel, 15.5 against 16.1 us kernel time at
// d_model 2560, M = 2048 on an H200 (run Z). Both stay far from the output stream's and the
// tensor pipe's few microseconds: ncu shows ~25% issue activity with 2.4 resident warps per
// scheduler, i.e. per-warp latency (the barrier per tile, the epilogue's dependent chains), and
// cuBLAS fp16 takes 13.3 us on the same shape. On sm_90a, gemm::run sends dt_proj at d_model 2560
// (K > 128, at least four 64 x 128 tiles per SM) to the wgmma short-K kernel instead
// (gemm_sm90_short_k.cuh: 13.0 us there, bench/RESULTS.md run AH).
// Shared memory: rows of round_up(K, 32) + 16 bytes (an odd number of 16-byte chunks, so the eight
// rows one ldmatrix phase reads fall on distinct bank groups), two stages of (kBM + kBN) rows,
// and a kBM x (kBN·sizeof(C) + 16)-byte output tile. run_short_k returns kErrorNotSupported where
// that exceeds the device's per-block limit; with an int8 C on sm_86/89 (99 KiB) that is K > 224
// for the 64x128 tile and K > 128 for the 128x128 tile (gemm::run then takes the kSm80 path).
// Programmatic dependent launch (GemmParams::pdl, core/launch.cuh): the kernel leaves the next
// launch's trigger implicit (at exit) and requests its first tile's W rows before the dependency
// wait, A (and everything else) after it.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "quamba/core/arch.hpp"
#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/status.hpp"
#include "quamba/core/thread_share.cuh"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/gemm_sm80.cuh"
#include "quamba/gemm/params.cuh"
#include "quamba/gemm/ptx.cuh"

namespace quamba::gemm {

inline constexpr int64_t kShortKMaxK = 256;
// Fewest rows the auto path sends here (bench/RESULTS.md run M measured M >= 128).
inline constexpr int64_t kShortKMinM = 128;

template <int kBM_, int kBN_, int kWarpsM_, int kWarpsN_, int kMinBlocks_>
struct ShortKTraits : MmaWarpGrid<kBM_, kBN_, kWarpsM_, kWarpsN_> {
  static constexpr bool kColumnResident = false;  // the tile-list kernel
  static constexpr int kMinBlocks = kMinBlocks_;
};

// 64 x 128 output tiles, 8 warps of 32 x 32: twice the tiles of 128 x 128, so the tile ranges of
// the CTAs even out better; 75 KiB of shared memory at K = 160 (int8 C).
using ShortKTile64x128 = ShortKTraits<64, 128, 2, 4, 2>;
// 64 x 64 output tiles, 4 warps of 32 x 32: 49 KiB at K = 160, up to four CTAs per SM.
using ShortKTile64x64 = ShortKTraits<64, 64, 2, 2, 3>;
// 128 x 128 output tiles, 8 warps of 64 x 32 (more than 128 registers: one CTA per SM unless
// the registers allow two); 106 KiB at K = 160.
using ShortKTile128x128 = ShortKTraits<128, 128, 2, 4, 1>;

// Column-resident form (gemm_short_k_col_kernel): a CTA owns one block of kBN = 32·kWarps output
// columns for its whole life, so its W rows (all of K) are copied into shared memory once, and it
// walks a contiguous range of kTileM-row tiles, streaming only their A rows through a kStages ring
// (one barrier per tile). Each warp computes a kTileM x 32 block (B fragments of its 32 columns,
// A fragments of the whole tile), runs the epilogue into a shared-memory block of its own and
// stores it as 16-byte row pieces, so the output needs no block-wide barrier. K is a template
// parameter of the kernel (k32 steps 2, 3, 4, 5 or 8), so the K loop is unrolled with every
// address a constant offset. (The tile-list kernel spent ~650 issued instructions per 32 x 32 warp
// tile, ~40 of them mma, mostly in 64-bit index arithmetic, per-tile divisions and address
// recomputation; bench/RESULTS.md run Z.)
template <int kWarps_, int kTileM_, int kStages_, int kMinBlocks_>
struct ShortKColTraits {
  static constexpr bool kColumnResident = true;
  static constexpr int kWarps = kWarps_;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kTileM = kTileM_;
  static constexpr int kBN = 32 * kWarps;  // 32 output columns per warp
  static constexpr int kMmaM = kTileM / 16;  // m16 fragments per warp (mma_k32_step's grid)
  static constexpr int kMmaN = 4;            // n8 fragments per warp
  static constexpr int kStages = kStages_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static_assert(kTileM % 16 == 0 && kTileM >= 16 && kTileM <= 64, "m16 fragments, at most four per warp");
  static_assert(kStages >= 2, "a ring of at least two A tiles");
};
// 4 warps, 128 columns, 64-row tiles, 3 A stages: 69 KiB of shared memory at K = 160 with an int8
// C (3 CTAs per SM).
using ShortKCol128x64 = ShortKColTraits<4, 64, 3, 3>;
// 32-row tiles: half the accumulators, 46 KiB at K = 160 (int8 C), four CTAs per SM and twice the
// row granularity.
using ShortKCol128x32 = ShortKColTraits<4, 32, 3, 4>;

template <typename Traits>
constexpr const char* short_k_name() {
  if constexpr (std::is_same_v<Traits, ShortKTile64x128>) return "short_k_64x128";
  else if constexpr (std::is_same_v<Traits, ShortKTile128x128>) return "short_k_128x128";
  else if constexpr (std::is_same_v<Traits, ShortKTile64x64>) return "short_k_64x64";
  else if constexpr (std::is_same_v<Traits, ShortKCol128x64>) return "short_k_col_128x64";
  else if constexpr (std::is_same_v<Traits, ShortKCol128x32>) return "short_k_col_128x32";
  else return "short_k_custom";
}

// Shared-memory carve-up for one K (host and device agree on it through this function).
struct ShortKLayout {
  int pitch = 0;        // bytes per A / W row: round_up(K, 32) + 16
  int k_chunks = 0;     // 16-byte chunks per row that are copied (zero-filled past K)
  int stage_bytes = 0;  // (kBM + kBN) rows
  int out_pitch = 0;    // bytes per output-tile row: kBN·sizeof(Output) + 16
  int smem_bytes = 0;
};

template <typename Traits, typename Output>
QUAMBA_HD ShortKLayout short_k_layout(int64_t K) {
  ShortKLayout l;
  const int kp = static_cast<int>((K + 31) / 32 * 32);
  l.k_chunks = kp / 16;
  l.pitch = kp + 16;
  l.stage_bytes = (Traits::kBM + Traits::kBN) * l.pitch;
  l.out_pitch = Traits::kBN * static_cast<int>(sizeof(Output)) + 16;
  l.smem_bytes = 2 * l.stage_bytes + Traits::kBM * l.out_pitch;
  return l;
}

// Column-resident form: k32 steps the kernel is instantiated for (K rounded up to 2, 3, 4, 5 or 8
// steps; chunks past K are zero-filled), and its shared memory: the W block, kStages A tiles (rows
// of 32·steps + 16 bytes, an odd number of 16-byte chunks, so ldmatrix's eight rows fall on
// distinct bank groups) and one output block per warp (rows of 32·sizeof(C) + 16 bytes).
QUAMBA_HD int short_k_col_steps(int64_t K) {
  const int s = static_cast<int>((K + 31) / 32);
  return s <= 2 ? 2 : s <= 5 ? s : 8;
}
template <typename Traits, typename Output>
QUAMBA_HD int short_k_col_smem(int64_t K) {
  const int pitch = 32 * short_k_col_steps(K) + 16;
  const int out_pitch = 32 * static_cast<int>(sizeof(Output)) + 16;
  return (Traits::kBN + Traits::kStages * Traits::kTileM) * pitch + Traits::kWarps * Traits::kTileM * out_pitch;
}

// Checks of the short-K kernel (host only, no device state): the family's rules and K's bound.
template <typename Epilogue>
Status can_implement_short_k(const GemmParams<Epilogue>& p) {
  QUAMBA_RETURN_IF_ERROR(check_params(p));
  if (p.K > kShortKMaxK) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

namespace detail {

#if QUAMBA_HAS_CUDA_COMPILER

// Exact int32 -> fp32 for |v| <= 2^22 without the conversion pipe: v + 0x4B400000 as bits is the
// float 1.5·2^23 + v (mantissa 2^22 + v in [0, 2^23); v = 2^22 carries into the exponent and
// gives 2^24, still exact), minus 1.5·2^23 exactly. K <= 256 keeps |acc| <= 256·128·128 = 2^22.
QUAMBA_DEVICE float small_i32_to_f32(int32_t v) { return __int_as_float(v + kRoundMagicBits) - kRoundMagic; }

template <bool kExactSmall, typename Epilogue>
QUAMBA_DEVICE typename Epilogue::Output short_k_apply(const Epilogue& e, int32_t acc, int64_t m, int64_t n) {
  if constexpr (kExactSmall) return e.apply_f(small_i32_to_f32(acc), n);
  else return e.apply(acc, m, n);
}

// The int8 of round-half-even(v), saturated to [-128, 127], in the low byte (one conversion
// instruction; v finite). Bit-identical to round_i8_bits (clamp, then round: the same on finite v).
QUAMBA_DEVICE uint32_t cvt_rni_sat_i8(float v) {
  uint32_t r;
  asm("cvt.rni.sat.s8.f32 %0, %1;" : "=r"(r) : "f"(v));
  return r;
}

// Tiles [t_begin, t_end) of the column-block-major list (tile t: columns (t / m_tiles)·kBN, rows
// (t % m_tiles)·kBM), this CTA's share of `tiles` in total. A CTA's tiles mostly share one column
// block, so a stage reloads its W rows (kBN of them) only when the block changes and otherwise
// copies only the kBM A rows.
template <typename Traits, typename Epilogue, bool kExactSmall>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    gemm_short_k_kernel(GemmParams<Epilogue> p, ShortKLayout lay, int64_t m_tiles, int64_t tiles, bool vec_ok,
                        bool plain_requant) {
  using Output = typename Epilogue::Output;
  constexpr int kBM = Traits::kBM, kBN = Traits::kBN, kThreads = Traits::kThreads;
  constexpr int kOutBytes = static_cast<int>(sizeof(Output));
  constexpr int kPerChunk = 16 / kOutBytes;  // outputs per 16-byte store
  constexpr int kRowChunks = kBN * kOutBytes / 16;
  constexpr int kOutIters = (kBM * kRowChunks + kThreads - 1) / kThreads;
  constexpr int kCopyRows = kThreads / 16;  // rows per pass of the operand copies
  static_assert(kThreads % 16 == 0 && kBM % kCopyRows == 0 && kBN % kCopyRows == 0, "whole copy passes");
  extern __shared__ __align__(128) uint8_t smem[];
  const int64_t t_begin = static_cast<int64_t>(blockIdx.x) * tiles / gridDim.x;
  const int64_t t_end = static_cast<int64_t>(blockIdx.x + 1) * tiles / gridDim.x;
  if (t_begin >= t_end) {  // not with grid <= tiles (launch_short_k); still never before the wait
    grid_dependency_wait();
    return;
  }

  const uint32_t smem_base = ptx::smem_u32(smem);
  uint8_t* out_tile = smem + 2 * lay.stage_bytes;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m0 = (warp % Traits::kWarpsM) * Traits::kWarpM;
  const int warp_n0 = (warp / Traits::kWarpsM) * Traits::kWarpN;
  const int k_valid = static_cast<int>(p.K / 16);  // K % 16 == 0 (check_params)
  const int kc = lay.k_chunks;                     // <= 16 (K <= kShortKMaxK)

  // Operand copies: thread tid copies 16-byte chunk cq = tid % 16 of rows rq, rq + kCopyRows, ...
  // (chunks cq >= kc are not part of the row; chunks past K are zero-filled).
  const int cq = tid & 15, rq = tid >> 4;
  const bool c_copy = cq < kc, c_valid = cq < k_valid;
  auto copy_rows = [&](auto rows_c, uint32_t dst, const int8_t* src, int64_t ld, int64_t row0, int64_t rows_valid) {
    constexpr int kRows = decltype(rows_c)::value;
    if (!c_copy) return;
    const int64_t valid = rows_valid - row0;
    const int8_t* s = src + (row0 + rq) * ld + cq * 16;
    const uint32_t d = dst + rq * lay.pitch + cq * 16;
#pragma unroll
    for (int i = 0; i < kRows / kCopyRows; ++i) {
      const bool ok = c_valid && rq + i * kCopyRows < valid;
      ptx::cp_async_16(d + i * kCopyRows * lay.pitch, ok ? s + i * kCopyRows * ld : src, ok);
    }
  };
  // Column block whose W each stage holds (-1: none); the same in every thread.
  int64_t nb_held0 = -1, nb_held1 = -1;
  auto load_w = [&](int stage, int64_t nb) {
    copy_rows(std::integral_constant<int, kBN>{}, smem_base + stage * lay.stage_bytes + kBM * lay.pitch, p.W, p.ldw,
              nb * kBN, p.N);
  };
  auto load_tile = [&](int stage, int64_t t, bool with_w) {
    const int64_t nb = t / m_tiles, rb = t - nb * m_tiles;
    copy_rows(std::integral_constant<int, kBM>{}, smem_base + stage * lay.stage_bytes, p.A, p.lda, rb * kBM, p.M);
    if (with_w && (stage ? nb_held1 : nb_held0) != nb) load_w(stage, nb);
    if (stage) nb_held1 = nb;
    else nb_held0 = nb;
  };

  // As a programmatic dependent: the first tile's W rows (no kernel of the chain writes weights)
  // go out before the dependency wait, into the same cp.async group as its A rows.
  if (p.pdl) load_w(0, t_begin / m_tiles);
  grid_dependency_wait();
  load_tile(0, t_begin, !p.pdl);
  ptx::cp_async_commit();
  if (t_begin + 1 < t_end) load_tile(1, t_begin + 1, true);
  ptx::cp_async_commit();

  const MmaLaneRows lr = mma_lane_rows(lane);
  const int g = lane >> 2, tq = lane & 3;
  // This thread's 16-byte output chunks of a tile: smem offsets and C offsets (from the tile's
  // first element), fixed for every tile.
  uint32_t out_src[kOutIters];
  int64_t out_dst[kOutIters];
#pragma unroll
  for (int i = 0; i < kOutIters; ++i) {
    const int q = tid + i * kThreads;
    const int r = q / kRowChunks, c = q % kRowChunks;
    out_src[i] = static_cast<uint32_t>(r * lay.out_pitch + c * 16);
    out_dst[i] = r * p.ldc + c * kPerChunk;
  }
  int64_t nb = t_begin / m_tiles, rb = t_begin - nb * m_tiles;  // tile t's column and row block

  for (int64_t t = t_begin; t < t_end; ++t) {
    const int stage = static_cast<int>((t - t_begin) & 1);
    ptx::cp_async_wait<1>();  // tile t's group has landed (t + 1's may still be in flight)
    __syncthreads();          // ...for every thread; the previous tile's output rows are stored

    int32_t acc[Traits::kMmaM][Traits::kMmaN][4];
#pragma unroll
    for (int i = 0; i < Traits::kMmaM; ++i)
#pragma unroll
      for (int j = 0; j < Traits::kMmaN; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;
    const uint32_t sA = smem_base + stage * lay.stage_bytes;
    const uint32_t sB = sA + kBM * lay.pitch;
    for (int kk = 0; kk < kc / 2; ++kk)
      mma_k32_step<Traits>(
          acc, [&](int i) { return sA + (warp_m0 + i * 16 + lr.a_row) * lay.pitch + (kk * 2 + lr.a_chunk) * 16; },
          [&](int j) { return sB + (warp_n0 + j * 16 + lr.b_row) * lay.pitch + (kk * 2 + lr.b_chunk) * 16; });

    // Epilogue into the output tile: each thread owns column pairs (2tq, 2tq+1) of rows g and g+8
    // of every m16n8 fragment. Outputs past M or N are not evaluated (their residual / column
    // scale is not there) and never stored.
    const int64_t m0 = rb * kBM, n0 = nb * kBN;
    const int rows_in = static_cast<int>(p.M - m0 < kBM ? p.M - m0 : kBM);
    const int cols_in = static_cast<int>(p.N - n0 < kBN ? p.N - n0 : kBN);
    const bool whole = rows_in == kBM && cols_in == kBN;
    // f(lo, hi, mr, nc): the accumulators of outputs (mr, nc) and (mr, nc + 1) of this thread.
    auto each_pair = [&](auto&& f) {
#pragma unroll
      for (int i = 0; i < Traits::kMmaM; ++i)
#pragma unroll
        for (int j = 0; j < Traits::kMmaN; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            f(acc[i][j][2 * h], acc[i][j][2 * h + 1], warp_m0 + i * 16 + g + 8 * h, warp_n0 + j * 8 + 2 * tq);
    };
    bool done = false;
    if constexpr (kExactSmall) {
      // Requant with a finite alpha and no column scale on a whole tile: the formula of
      // Requant::apply_f with the rounding and saturation in one conversion (no NaN can occur),
      // two outputs packed per shared store.
      if (plain_requant && whole) {
        const float alpha = p.epilogue.alpha;
        auto bits = [&](int32_t a) { return cvt_rni_sat_i8(__fmul_rn(small_i32_to_f32(a), alpha)); };
        each_pair([&](int32_t lo, int32_t hi, int mr, int nc) {
          const uint32_t pair = __byte_perm(bits(lo), bits(hi), 0x0040);
          *reinterpret_cast<uint16_t*>(out_tile + mr * lay.out_pitch + nc) = static_cast<uint16_t>(pair);
        });
        done = true;
      }
    }
    if (!done) {
      each_pair([&](int32_t lo, int32_t hi, int mr, int nc) {
        Output o[2] = {Output{}, Output{}};
        if (mr < rows_in) {
          if (nc < cols_in) o[0] = short_k_apply<kExactSmall>(p.epilogue, lo, m0 + mr, n0 + nc);
          if (nc + 1 < cols_in) o[1] = short_k_apply<kExactSmall>(p.epilogue, hi, m0 + mr, n0 + nc + 1);
        }
        ptx::store2(reinterpret_cast<Output*>(out_tile + mr * lay.out_pitch + nc * kOutBytes), o[0], o[1]);
      });
    }
    __syncthreads();  // output tile complete; every warp is done with this stage's A and W

    if (t + 2 < t_end) load_tile(stage, t + 2, true);
    ptx::cp_async_commit();  // possibly empty: keeps "wait_group 1" meaning tile t + 1

    Output* c_tile = p.C + m0 * p.ldc + n0;
    if (whole && vec_ok) {
#pragma unroll
      for (int i = 0; i < kOutIters; ++i)
        if ((kBM * kRowChunks) % kThreads == 0 || tid + i * kThreads < kBM * kRowChunks)
          *reinterpret_cast<int4*>(c_tile + out_dst[i]) = *reinterpret_cast<const int4*>(out_tile + out_src[i]);
    } else {
      for (int q = tid; q < kBM * kRowChunks; q += kThreads) {
        const int r = q / kRowChunks, c = q % kRowChunks;
        if (r >= rows_in || c * kPerChunk >= cols_in) continue;
        const uint8_t* src = out_tile + r * lay.out_pitch + c * 16;
        Output* dst = c_tile + r * p.ldc + c * kPerChunk;
        if (vec_ok && (c + 1) * kPerChunk <= cols_in) {
          *reinterpret_cast<int4*>(dst) = *reinterpret_cast<const int4*>(src);
        } else {
          const Output* s = reinterpret_cast<const Output*>(src);
          for (int e = 0; e < kPerChunk && c * kPerChunk + e < cols_in; ++e) dst[e] = s[e];
        }
      }
    }
    if (++rb == m_tiles) {
      rb = 0;
      ++nb;
    }
  }
  ptx::cp_async_wait<0>();
}

// Column-resident kernel (ShortKColTraits): CTA (blockIdx.x, blockIdx.y) computes columns
// [blockIdx.x·kBN, +kBN) of row tiles [blockIdx.y·tiles_per_cta, +tiles_per_cta) ∩ [0, m_tiles).
template <typename Traits, typename Epilogue, int kSteps, bool kExactSmall>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    gemm_short_k_col_kernel(GemmParams<Epilogue> p, int64_t tiles_per_cta, bool vec_ok, bool plain_requant) {
  using Output = typename Epilogue::Output;
  constexpr int kThreads = Traits::kThreads, kTM = Traits::kTileM, kBN = Traits::kBN, kS = Traits::kStages;
  constexpr int kChunks = 2 * kSteps;      // 16-byte chunks per operand row
  constexpr int kPitch = 32 * kSteps + 16;  // bytes per operand row in shared memory
  constexpr int kOutBytes = static_cast<int>(sizeof(Output));
  constexpr int kOutPitch = 32 * kOutBytes + 16;   // bytes per row of a warp's output block
  constexpr int kRowChunks = 32 * kOutBytes / 16;  // 16-byte chunks per row of a warp's block
  constexpr int kPerChunk = 16 / kOutBytes;
  constexpr int kStageBytes = kTM * kPitch;
  constexpr int kWBytes = kBN * kPitch;
  constexpr int kACopies = (kTM * kChunks + kThreads - 1) / kThreads;
  constexpr int kOutIters = kTM * kRowChunks / 32;
  static_assert(kBN * kChunks % kThreads == 0 && kTM * kRowChunks % 32 == 0, "whole copy passes");
  extern __shared__ __align__(128) uint8_t smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t m_tiles = (p.M + kTM - 1) / kTM;
  const int64_t t_begin = static_cast<int64_t>(blockIdx.y) * tiles_per_cta;
  const int64_t t_end = t_begin + tiles_per_cta < m_tiles ? t_begin + tiles_per_cta : m_tiles;
  const uint32_t sW = ptx::smem_u32(smem);
  const uint32_t sA0 = sW + kWBytes;
  uint8_t* out_block = smem + kWBytes + kS * kStageBytes + warp * kTM * kOutPitch;

  if (t_begin >= t_end) {  // not with the launch's grid; still never before the wait
    grid_dependency_wait();
    return;
  }
  // W rows n0 .. n0 + kBN (zeros past N and past K), copy c: row c / kChunks.
  for_thread_share<kBN * kChunks, kThreads>(tid, [&](int c) {
    const int r = c / kChunks, ch = c % kChunks;
    const bool ok = n0 + r < p.N && ch * 16 < p.K;
    ptx::cp_async_16(sW + r * kPitch + ch * 16, ok ? p.W + (n0 + r) * p.ldw + ch * 16 : p.W, ok);
  });
  // This thread's A copies: shared offsets and row / chunk of each (the same for every tile).
  int a_row[kACopies];
  uint32_t a_soff[kACopies];
  bool a_ok[kACopies];
#pragma unroll
  for (int i = 0; i < kACopies; ++i) {
    const int c = tid + i * kThreads;
    a_row[i] = c / kChunks;
    a_soff[i] = static_cast<uint32_t>(a_row[i] * kPitch + (c % kChunks) * 16);
    a_ok[i] = c < kTM * kChunks && (c % kChunks) * 16 < p.K;
  }
  auto load_a = [&](int stage, int64_t tile) {
    const int64_t m0 = tile * kTM;
    const int8_t* src = p.A + m0 * p.lda;
#pragma unroll
    for (int i = 0; i < kACopies; ++i) {
      if ((kTM * kChunks) % kThreads != 0 && tid + i * kThreads >= kTM * kChunks) continue;
      const bool ok = a_ok[i] && m0 + a_row[i] < p.M;
      const int c = tid + i * kThreads;
      ptx::cp_async_16(sA0 + stage * kStageBytes + a_soff[i], ok ? src + a_row[i] * p.lda + (c % kChunks) * 16 : p.A,
                       ok);
    }
  };

  // As a programmatic dependent, the W rows (no kernel of the chain writes weights) are requested
  // before the dependency wait, A after it; both land in the first cp.async group.
  grid_dependency_wait();
#pragma unroll
  for (int s = 0; s < kS - 1; ++s) {
    if (t_begin + s < t_end) load_a(s, t_begin + s);
    ptx::cp_async_commit();
  }

  const MmaLaneRows lr = mma_lane_rows(lane);
  const int g = lane >> 2, tq = lane & 3;
  const int64_t nw = n0 + warp * 32;  // this warp's first column
  const int cols_in = static_cast<int>(p.N - nw < 32 ? (p.N - nw > 0 ? p.N - nw : 0) : 32);
  int stage = 0;
  for (int64_t t = t_begin; t < t_end; ++t) {
    ptx::cp_async_wait<kS - 2>();  // tile t's group has landed for this thread
    __syncthreads();               // ...for every thread; every warp is done with tile t - 1's stage
    {
      const int pf = stage == 0 ? kS - 1 : stage - 1;  // the stage tile t - 1 used
      if (t + kS - 1 < t_end) load_a(pf, t + kS - 1);
      ptx::cp_async_commit();
    }
    int32_t acc[Traits::kMmaM][4][4];
#pragma unroll
    for (int i = 0; i < Traits::kMmaM; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;
    const uint32_t sA = sA0 + stage * kStageBytes;
#pragma unroll
    for (int s = 0; s < kSteps; ++s)
      mma_k32_step<Traits>(
          acc, [&](int i) { return sA + (i * 16 + lr.a_row) * kPitch + (2 * s + lr.a_chunk) * 16; },
          [&](int j) { return sW + (warp * 32 + j * 16 + lr.b_row) * kPitch + (2 * s + lr.b_chunk) * 16; });
    stage = stage + 1 == kS ? 0 : stage + 1;

    // Epilogue into this warp's block: thread (g, tq) owns columns 8j + 2tq, +1 of rows g, g + 8
    // of every m16 fragment. Outputs past M or N are neither evaluated nor stored.
    const int64_t m0 = t * kTM;
    const int rows_in = static_cast<int>(p.M - m0 < kTM ? p.M - m0 : kTM);
    const bool whole = rows_in == kTM && cols_in == 32;
    bool done = false;
    if constexpr (kExactSmall) {
      if (plain_requant && whole) {
        const float alpha = p.epilogue.alpha;
        auto bits = [&](int32_t a) { return cvt_rni_sat_i8(__fmul_rn(small_i32_to_f32(a), alpha)); };
#pragma unroll
        for (int i = 0; i < Traits::kMmaM; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              *reinterpret_cast<uint16_t*>(out_block + (i * 16 + g + 8 * h) * kOutPitch + 8 * j + 2 * tq) =
                  static_cast<uint16_t>(__byte_perm(bits(acc[i][j][2 * h]), bits(acc[i][j][2 * h + 1]), 0x0040));
        done = true;
      }
    }
    if (!done) {
#pragma unroll
      for (int i = 0; i < Traits::kMmaM; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int mr = i * 16 + g + 8 * h, nc = 8 * j + 2 * tq;
            Output o[2] = {Output{}, Output{}};
            if (mr < rows_in) {
              if (nc < cols_in) o[0] = short_k_apply<kExactSmall>(p.epilogue, acc[i][j][2 * h], m0 + mr, nw + nc);
              if (nc + 1 < cols_in)
                o[1] = short_k_apply<kExactSmall>(p.epilogue, acc[i][j][2 * h + 1], m0 + mr, nw + nc + 1);
            }
            ptx::store2(reinterpret_cast<Output*>(out_block + mr * kOutPitch + nc * kOutBytes), o[0], o[1]);
          }
    }
    __syncwarp();
    // The warp's block leaves as 16-byte row pieces: lane l stores chunks l, l + 32, ...
    Output* c_block = p.C + m0 * p.ldc + nw;
    if (whole && vec_ok) {
#pragma unroll
      for (int i = 0; i < kOutIters; ++i) {
        const int q = lane + 32 * i;
        const int r = q / kRowChunks, c = q % kRowChunks;
        *reinterpret_cast<int4*>(c_block + r * p.ldc + c * kPerChunk) =
            *reinterpret_cast<const int4*>(out_block + r * kOutPitch + c * 16);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kOutIters; ++i) {
        const int q = lane + 32 * i;
        const int r = q / kRowChunks, c = q % kRowChunks;
        if (r >= rows_in || c * kPerChunk >= cols_in) continue;
        const uint8_t* src = out_block + r * kOutPitch + c * 16;
        Output* dst = c_block + r * p.ldc + c * kPerChunk;
        if (vec_ok && (c + 1) * kPerChunk <= cols_in) {
          *reinterpret_cast<int4*>(dst) = *reinterpret_cast<const int4*>(src);
        } else {
          const Output* sv = reinterpret_cast<const Output*>(src);
          for (int e = 0; e < kPerChunk && c * kPerChunk + e < cols_in; ++e) dst[e] = sv[e];
        }
      }
    }
    __syncwarp();  // the block is rewritten by the next tile's epilogue
  }
  ptx::cp_async_wait<0>();
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace detail

#if QUAMBA_HAS_CUDA_COMPILER

namespace detail {

// The tile-list kernel for a device already described by `info`.
template <typename Traits, typename Epilogue>
Status launch_short_k_tiles(const GemmParams<Epilogue>& p, const DeviceInfo& info, cudaStream_t stream) {
  using Output = typename Epilogue::Output;
  const ShortKLayout lay = short_k_layout<Traits, Output>(p.K);
  if (lay.smem_bytes > info.max_smem_per_block_optin) return Status::kErrorNotSupported;
  // Requant converts its accumulators exactly (K <= kShortKMaxK keeps them within 2^22).
  constexpr bool kExact = std::is_same_v<Epilogue, Requant>;
  auto kernel = gemm_short_k_kernel<Traits, Epilogue, kExact>;
  // One attribute value per tile, output type and device (the largest K's need, capped by the
  // device), so concurrent calls with different K never race on it.
  const int smem_cap = short_k_layout<Traits, Output>(kShortKMaxK).smem_bytes;
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   smem_cap < info.max_smem_per_block_optin
                                                       ? smem_cap
                                                       : info.max_smem_per_block_optin));
  int per_sm = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Traits::kThreads, lay.smem_bytes));
  const int64_t m_tiles = (p.M + Traits::kBM - 1) / Traits::kBM;
  const int64_t tiles = (p.N + Traits::kBN - 1) / Traits::kBN * m_tiles;
  const int64_t slots = static_cast<int64_t>(per_sm > 0 ? per_sm : 1) * info.sm_count;
  const int64_t grid = tiles < slots ? tiles : slots;
  const bool vec_ok = is_aligned(p.C, 16) && (p.ldc * static_cast<int64_t>(sizeof(Output))) % 16 == 0;
  bool plain_requant = false;
  if constexpr (kExact) plain_requant = !p.epilogue.col_scale && std::isfinite(p.epilogue.alpha);
  return launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(Traits::kThreads),
                       static_cast<size_t>(lay.smem_bytes), stream, p.pdl, p, lay, m_tiles, tiles, vec_ok,
                       plain_requant);
}

// run_short_k for the column-resident form: grid (column blocks, row splits), the row splits
// chosen so that the grid is one wave of resident CTAs and every CTA has the same number of row
// tiles (the last one possibly fewer).
template <typename Traits, typename Epilogue, int kSteps>
Status launch_short_k_col_steps(const GemmParams<Epilogue>& p, const DeviceInfo& info, cudaStream_t stream) {
  using Output = typename Epilogue::Output;
  constexpr bool kExact = std::is_same_v<Epilogue, Requant>;
  auto kernel = gemm_short_k_col_kernel<Traits, Epilogue, kSteps, kExact>;
  const int smem = short_k_col_smem<Traits, Output>(32 * kSteps);
  if (smem > info.max_smem_per_block_optin) return Status::kErrorNotSupported;
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int per_sm = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Traits::kThreads, smem));
  const int64_t col_blocks = (p.N + Traits::kBN - 1) / Traits::kBN;
  const int64_t m_tiles = (p.M + Traits::kTileM - 1) / Traits::kTileM;
  const int64_t slots = static_cast<int64_t>(per_sm > 0 ? per_sm : 1) * info.sm_count;
  int64_t splits = slots / col_blocks;
  splits = splits < 1 ? 1 : splits > m_tiles ? m_tiles : splits;
  const int64_t per_cta = (m_tiles + splits - 1) / splits;
  splits = (m_tiles + per_cta - 1) / per_cta;  // no CTA without a tile
  if (col_blocks > 0x7fffffff || splits > 65535) return Status::kErrorNotSupported;
  const bool vec_ok = is_aligned(p.C, 16) && (p.ldc * static_cast<int64_t>(sizeof(Output))) % 16 == 0;
  bool plain_requant = false;
  if constexpr (kExact) plain_requant = !p.epilogue.col_scale && std::isfinite(p.epilogue.alpha);
  return launch_kernel(kernel, dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(splits)),
                       dim3(Traits::kThreads), static_cast<size_t>(smem), stream, p.pdl, p, per_cta, vec_ok,
                       plain_requant);
}

template <typename Traits, typename Epilogue>
Status launch_short_k_col(const GemmParams<Epilogue>& p, const DeviceInfo& info, cudaStream_t stream) {
  switch (short_k_col_steps(p.K)) {
    case 2: return launch_short_k_col_steps<Traits, Epilogue, 2>(p, info, stream);
    case 3: return launch_short_k_col_steps<Traits, Epilogue, 3>(p, info, stream);
    case 4: return launch_short_k_col_steps<Traits, Epilogue, 4>(p, info, stream);
    case 5: return launch_short_k_col_steps<Traits, Epilogue, 5>(p, info, stream);
    default: return launch_short_k_col_steps<Traits, Epilogue, 8>(p, info, stream);
  }
}

// run_short_k for a device already described by `info` (gemm::run has queried it).
template <typename Traits, typename Epilogue>
Status launch_short_k(const GemmParams<Epilogue>& p, const DeviceInfo& info, cudaStream_t stream) {
  if constexpr (Traits::kColumnResident) return launch_short_k_col<Traits>(p, info, stream);
  else return launch_short_k_tiles<Traits>(p, info, stream);
}

}  // namespace detail

// Launches the short-K kernel with tile Traits: the tile-list kernel (ShortKTraits) with one CTA per
// resident slot (occupancy x SMs, at most one per tile), each a contiguous share of the tiles; the
// column-resident one (ShortKColTraits) with a CTA per column block and share of the row tiles. Needs sm_80 or newer (the caller
// checks) and the layout's shared memory within the device's per-block limit.
template <typename Traits, typename Epilogue>
Status run_short_k(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement_short_k(p));
  if (p.M == 0) return Status::kSuccess;
  DeviceInfo info;
  QUAMBA_RETURN_IF_ERROR(query_device(&info));
  return detail::launch_short_k<Traits>(p, info, stream);
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::gemm
