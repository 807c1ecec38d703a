// quamba/gemm/w8a16.cuh: weight-only int8 linear layer with one scale per weight row, for a
// few activation rows: the lm_head of the int8 head option (SPEC §2, "int8 lm_head is an
// option"), which keeps the activations in fp16.
//
//   C(M, N) = A(M, K) · (diag(scale) · W(N, K))ᵀ,  C[m][n] = scale[n] · Σ_k A[m][k] · W[n][k]
//   A      fp16 (M, K), row stride lda (elements)
//   W      int8 (N, K) row-major, row stride ldw (elements)
//   scale  fp32 (N), one per weight row
//   C      fp32 (M, N), row stride ldc
// Rules: M >= 0, N >= 1, K >= 16 with K % 16 == 0; lda >= K, lda % 8 == 0 and A 16-byte aligned;
// ldw >= K, ldw % 16 == 0 and W 16-byte aligned; scale 4-byte aligned; ldc >= N, C 4-byte
// aligned. Violations give kErrorInvalidArgument / kErrorMisaligned.
//
// Numerics: int8 values are exact in fp16 and every int8 x fp16 product is exact in fp32; the
// tensor-core mma accumulates in fp32 (its own order), then the sum is multiplied by scale[n].
// reference::gemm_f32_w8_rowscale sums in double; the two differ by fp32 accumulation error
// (tests bound it by the sum of |terms|).
//
// Kernel. Like the int8 GEMV (gemm/gemv.cuh) this is a stream over W: every weight byte is read
// once per launch with 16-byte loads that bypass L1, while the activation rows, re-read by every
// warp, stay in L1/L2. A warp owns 8 rows of W and walks K in rounds of 64: lane (g, t)
// (g = lane / 4, t = lane % 4) loads 16 bytes of row g at k = 64·r + 16·t. Those 16 int8 become
// 8 fp16 pairs in registers (byte permute into 1024 + (q + 128), then one subtraction per pair:
// no int-to-float conversions, which run at a quarter of the FMA rate) and feed four
// mma.m16n8k16 steps as the B operand. The K order inside a round is permuted the same way on
// both operands (step s, fragment slots {2t, 2t+1, 2t+8, 2t+9} hold k = 64r + 16t + 4s + 0..3),
// so each lane's own 16 bytes are exactly its B fragments and its A fragments are 32 contiguous
// bytes of an activation row: no shuffles. kMTiles tiles of 16 activation rows share each weight
// chunk; run() covers larger M with launches of kW8A16MaxRowsPerLaunch rows, each streaming W
// again (the decode and last-token heads have M <= 32 up to batch 32; scoring every position of
// a long prompt pays one weight stream per 32 rows).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/macros.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/gemm/ptx.cuh"

namespace quamba::gemm {

struct W8A16Params {
  const __half* A = nullptr;  // (M, K)
  int64_t lda = 0;
  const int8_t* W = nullptr;  // (N, K)
  int64_t ldw = 0;
  const float* scale = nullptr;  // (N)
  float* C = nullptr;            // (M, N)
  int64_t ldc = 0;
  int64_t M = 0, N = 0, K = 0;
};

// kMTiles: 16-row activation tiles per launch; kWarps: warps per CTA (8 weight rows each);
// kUnroll: 64-wide K rounds whose weight loads are issued together (16 bytes per lane each, so
// 32·16·kUnroll bytes per warp in flight); kAccSets: accumulator sets that alternate between
// rounds (2 halves the chain of dependent mma per accumulator).
// kCoalesced: weights staged through a warp-private shared tile so that each load instruction
// reads one row's 512 contiguous bytes (needs kUnroll = 8).
template <int kMTiles_, int kWarps_, int kUnroll_, int kAccSets_ = 1, bool kCoalesced_ = false>
struct W8A16Traits {
  static constexpr int kMTiles = kMTiles_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kUnroll = kUnroll_;
  static constexpr int kAccSets = kAccSets_;
  static constexpr bool kCoalesced = kCoalesced_;
  static constexpr int kStagePitch = 576;
  // The staged form holds the batch in flight and the batch being consumed (64 registers of
  // weights): capped at 128 registers so that 4 CTAs share an SM (sm_90a: no spills; sm_80
  // spills 28 bytes). A measured variant, not a default.
  static constexpr int kMinBlocks = kCoalesced ? 4 : 1;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRowsPerBlock = 8 * kWarps;
  static constexpr int kMaxM = 16 * kMTiles;
  static_assert(kMTiles >= 1 && kMTiles <= 4, "1..4 tiles of 16 activation rows");
  static_assert(kWarps >= 1 && kWarps <= 16, "1..16 warps");
  static_assert(kUnroll >= 1 && kUnroll <= 16, "1..16 rounds in flight");
  static_assert(kAccSets == 1 || (kAccSets == 2 && kUnroll % 2 == 0), "one set, or two over an even unroll");
  static_assert(!kCoalesced || kUnroll == 8, "the staged form moves 8 rounds (512 bytes per row) per batch");
};

inline constexpr int64_t kW8A16MaxRowsPerLaunch = 32;

namespace detail {

#if QUAMBA_HAS_CUDA_COMPILER

// 16 int8 -> 8 fp16 pairs in order (h[i] = (w[2i], w[2i+1])), exactly: q + 128 is placed in the
// low mantissa byte of 1024.0 (fp16 0x64xx), and 1152 = 1024 + 128 is subtracted.
QUAMBA_DEVICE void i8x16_to_h2x8(const int4& w, uint32_t (&h)[8]) {
  const uint32_t words[4] = {static_cast<uint32_t>(w.x), static_cast<uint32_t>(w.y), static_cast<uint32_t>(w.z),
                             static_cast<uint32_t>(w.w)};
  const __half2 bias = __halves2half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480));
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t biased = words[i] ^ 0x80808080u;
    uint32_t lo, hi;
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(lo) : "r"(biased), "r"(0x64646464u), "r"(0x5140u));
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(hi) : "r"(biased), "r"(0x64646464u), "r"(0x7362u));
    const __half2 l = __hsub2(*reinterpret_cast<const __half2*>(&lo), bias);
    const __half2 u = __hsub2(*reinterpret_cast<const __half2*>(&hi), bias);
    h[2 * i] = *reinterpret_cast<const uint32_t*>(&l);
    h[2 * i + 1] = *reinterpret_cast<const uint32_t*>(&u);
  }
}

template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks) w8a16_kernel(const W8A16Params p) {
  constexpr int kT = Traits::kMTiles, kU = Traits::kUnroll, kS = Traits::kAccSets;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int64_t n_base = (static_cast<int64_t>(blockIdx.x) * Traits::kWarps + warp) * 8;
  // A warp past N has nothing to do; no barrier follows, so it may leave.
  if (n_base >= p.N) return;
  const int64_t n_row = n_base + g < p.N ? n_base + g : p.N - 1;  // rows past N re-read row N-1, never stored
  const int8_t* wrow = p.W + n_row * p.ldw;
  const int chunks = static_cast<int>(p.K / 16);
  const int rounds = (chunks + 3) / 4;

  const __half* arow[kT][2];
  bool a_live[kT][2];
#pragma unroll
  for (int tt = 0; tt < kT; ++tt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = 16 * tt + 8 * h + g;
      a_live[tt][h] = m < p.M;
      arow[tt][h] = p.A + (a_live[tt][h] ? m : 0) * p.lda;
    }

  float acc[kS][kT][4];
#pragma unroll
  for (int a = 0; a < kS; ++a)
#pragma unroll
    for (int tt = 0; tt < kT; ++tt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[a][tt][i] = 0.f;

  // Conversion and mma of kU rounds starting at round r0; wv[u] is lane (g, t)'s 16 bytes of row g
  // at chunk 4·(r0 + u) + t (zeros past K).
  auto consume = [&](const int4 (&wv)[kU], int r0) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int c = 4 * (r0 + u) + t;
      uint32_t b[8];
      i8x16_to_h2x8(wv[u], b);
#pragma unroll
      for (int tt = 0; tt < kT; ++tt) {
        uint32_t av[2][8];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          int4 lo = make_int4(0, 0, 0, 0), hi = make_int4(0, 0, 0, 0);
          if (a_live[tt][h] && c < chunks) {
            const int4* src = reinterpret_cast<const int4*>(arow[tt][h] + 16 * static_cast<int64_t>(c));
            lo = load_chained(src);
            hi = load_chained(src + 1);
          }
          av[h][0] = lo.x; av[h][1] = lo.y; av[h][2] = lo.z; av[h][3] = lo.w;
          av[h][4] = hi.x; av[h][5] = hi.y; av[h][6] = hi.z; av[h][7] = hi.w;
        }
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const uint32_t a[4] = {av[0][2 * s], av[1][2 * s], av[0][2 * s + 1], av[1][2 * s + 1]};
          ptx::mma_f16_16816(acc[u % kS][tt], a, b[2 * s], b[2 * s + 1]);
        }
      }
    }
  };

  // Round loops have the same trip count in every lane (mma.sync needs the whole warp).
  if constexpr (!Traits::kCoalesced) {
    for (int r0 = 0; r0 < rounds; r0 += kU) {
      int4 w[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int c = 4 * (r0 + u) + t;
        w[u] = c < chunks ? ptx::ld_stream_16(wrow + 16 * static_cast<int64_t>(c)) : make_int4(0, 0, 0, 0);
      }
      consume(w, r0);
    }
  } else {
    // Batches of 8 rounds: load j of a batch reads 512 contiguous bytes of row j (lane L: chunk
    // 4·r0 + L), so every warp load is one run of DRAM instead of 8 rows x 64 bytes; the warp's
    // own shared tile then hands lane (g, t) row g's chunks 4u + t. Row pitch 576 bytes (= 64 mod
    // 128): the two rows a quarter-warp reads sit on different banks. The next batch is requested
    // before the current one is consumed.
    __shared__ __align__(16) int8_t stage[Traits::kWarps][8][Traits::kStagePitch];
    int8_t* tile = &stage[warp][0][0];
    const int8_t* wbase = p.W + n_base * p.ldw;
    auto load_batch = [&](int r0, int4 (&v)[8]) {
      const int c = 4 * r0 + lane;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int64_t row = n_base + j < p.N ? j : p.N - 1 - n_base;
        v[j] = c < chunks ? ptx::ld_stream_16(wbase + row * p.ldw + 16 * static_cast<int64_t>(c)) : make_int4(0, 0, 0, 0);
      }
    };
    int4 v[8];
    load_batch(0, v);
    for (int r0 = 0; r0 < rounds; r0 += 8) {
      __syncwarp();  // the previous batch's tile reads are done
#pragma unroll
      for (int j = 0; j < 8; ++j) *reinterpret_cast<int4*>(tile + j * Traits::kStagePitch + 16 * lane) = v[j];
      __syncwarp();
      int4 w[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) w[u] = *reinterpret_cast<const int4*>(tile + g * Traits::kStagePitch + 64 * u + 16 * t);
      if (r0 + 8 < rounds) load_batch(r0 + 8, v);
      consume(w, r0);
    }
  }

  if constexpr (kS == 2)
#pragma unroll
    for (int tt = 0; tt < kT; ++tt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[0][tt][i] += acc[1][tt][i];
  // Lane (g, t) holds outputs (16·tt + g [+8], n_base + 2t [+1]).
  const int64_t n0 = n_base + 2 * t;
  const float s0 = n0 < p.N ? __ldg(p.scale + n0) : 0.f;
  const float s1 = n0 + 1 < p.N ? __ldg(p.scale + n0 + 1) : 0.f;
#pragma unroll
  for (int tt = 0; tt < kT; ++tt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (!a_live[tt][h]) continue;
      float* out = p.C + (16 * tt + 8 * h + g) * p.ldc + n0;
      const float v0 = acc[0][tt][2 * h] * s0, v1 = acc[0][tt][2 * h + 1] * s1;
      if (n0 + 1 < p.N && is_aligned(out, 8)) {
        ptx::store2(out, v0, v1);
      } else {
        if (n0 < p.N) out[0] = v0;
        if (n0 + 1 < p.N) out[1] = v1;
      }
    }
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace detail

inline Status can_implement(const W8A16Params& p) {
  if (!p.W || !p.scale || (p.M > 0 && (!p.A || !p.C))) return Status::kErrorInvalidArgument;
  if (p.M < 0 || p.N < 1 || p.K < 16 || p.K % 16 != 0 || p.lda < p.K || p.ldw < p.K || p.ldc < p.N)
    return Status::kErrorInvalidArgument;
  if (p.N > (int64_t(1) << 31) || p.K > (int64_t(1) << 30)) return Status::kErrorNotSupported;
  if (p.lda % 8 != 0 || p.ldw % 16 != 0 || !is_aligned(p.A, 16) || !is_aligned(p.W, 16) || !is_aligned(p.scale, 4) ||
      !is_aligned(p.C, 4))
    return Status::kErrorMisaligned;
  return Status::kSuccess;
}

inline size_t workspace_size(const W8A16Params&) { return 0; }

#if QUAMBA_HAS_CUDA_COMPILER

// One launch with a fixed kernel shape (p.M <= Traits::kMaxM, else kErrorNotSupported).
template <typename Traits>
Status run_with(const W8A16Params& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if (p.M > Traits::kMaxM) return Status::kErrorNotSupported;
  if (p.M == 0) return Status::kSuccess;
  const int64_t blocks = (p.N + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock;
  detail::w8a16_kernel<Traits><<<static_cast<unsigned>(blocks), Traits::kThreads, 0, stream>>>(p);
  return last_launch_status();
}

// 4 warps of 8 weight rows, 4 rounds (2 KiB per warp) of weights in flight, two accumulator
// sets; the tile count follows M (up to 32 rows: four tiles need more than 255 registers).
// H100, d_model 2560 lm_head (N = 50280), same run (bench_gemm W8A16/* rows): M = 1 / 8:
// 50.5 / 52.1 us, against 55.3 / 56.8 for 8 rounds and one set, 53.6 / 58.1 for 8 rounds staged
// through shared memory (coalesced 512-byte row loads), 61.8 / 64.4 for 8 rounds and two sets,
// 62.5 / 65.7 for 2 warps of 16 rounds; the int8 x int8 GEMV moves the same weight bytes in 45.1.
template <int kMTiles>
using W8A16Default = W8A16Traits<kMTiles, 4, 4, 2>;

inline Status run(const W8A16Params& p, void* /*workspace*/, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  for (int64_t m0 = 0; m0 < p.M; m0 += kW8A16MaxRowsPerLaunch) {
    W8A16Params q = p;
    q.M = p.M - m0 < kW8A16MaxRowsPerLaunch ? p.M - m0 : kW8A16MaxRowsPerLaunch;
    q.A = p.A + m0 * p.lda;
    q.C = p.C + m0 * p.ldc;
    const int tiles = q.M <= 16 ? 1 : 2;
    const Status st =
        dispatch_int<1, 2>(tiles, [&](auto kT) { return run_with<W8A16Default<decltype(kT)::value>>(q, stream); });
    if (st != Status::kSuccess) return st;
  }
  return Status::kSuccess;
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::gemm
