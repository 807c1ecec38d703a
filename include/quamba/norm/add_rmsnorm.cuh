// quamba/norm/add_rmsnorm.cuh: fused residual-add + RMSNorm (GPU), SPEC §1 step 1 / §2 step 1.
//
// Shapes and layouts (strides in ELEMENTS, rows of D contiguous elements):
//   h         (M, D)  THidden = __half or float, optional (nullptr: layer 0, residual = embedding)
//   residual  (M, D)  float, read and written in place: residual <- residual + h
//   gamma     (D)     float
//   out       (M, D)  TOut = int8_t (W8A8 path: q(norm * inv_scale)) or __half (fp16 path)
// M = B·L tokens, D = d_model. out[m, d] = residual[m, d] · rsqrt(mean_d(residual²) + eps) · gamma[d];
// the statistics are accumulated in fp32 (the host reference uses double; int8 outputs may
// differ from it by one step near a rounding boundary, float outputs by fp32 reordering).
//
// Supported: 1 <= D <= kMaxD (8192), M >= 0 (M == 0 is a no-op). When D, every row stride and
// every pointer allow 16-byte fp32 accesses (D % 4 == 0, strides % 4 == 0, pointers aligned to
// 4 elements) the vectorized variants run; otherwise a scalar variant runs (any D, any
// alignment). residual is the only buffer written in place: out must not overlap residual, h or
// gamma, and h and gamma must not overlap residual (gamma is read through the read-only cache,
// and the persistent variants read row n + 1 of h before they write row n of residual).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::norm {

inline constexpr int kMaxD = 8192;

template <typename THidden, typename TOut>
struct AddRmsNormParams {
  static_assert(std::is_same_v<THidden, float> || std::is_same_v<THidden, __half>, "h is float or __half");
  static_assert(std::is_same_v<TOut, int8_t> || std::is_same_v<TOut, __half>, "out is int8_t or __half");
  const THidden* h = nullptr;  // (M, D), nullable
  int64_t h_stride = 0;        // row stride of h (elements)
  float* residual = nullptr;   // (M, D) in/out
  int64_t residual_stride = 0;
  const float* gamma = nullptr;  // (D)
  TOut* out = nullptr;           // (M, D)
  int64_t out_stride = 0;
  int64_t M = 0;
  int D = 0;
  float eps = 1e-5f;
  float inv_scale = 1.0f;  // int8 output only: 1 / s_h
  // Launch as a programmatic dependent of the stream's previous kernel (core/launch.cuh; sm_90+,
  // pass false elsewhere). Only the 16-byte path honours it (the scalar fall-back launches
  // normally). gamma is read BEFORE the dependency wait, so the kernels this launch may overlap
  // must not write gamma (it is a weight); residual and h are read after it.
  bool pdl = false;
};

// With pdl, grids of at most this many rows (decode batches) let the next kernel launch as soon
// as all their CTAs run; larger ones leave it to their exit (see the kernel).
inline constexpr int64_t kEarlyTriggerRows = 256;

// A group of kRowThreads threads (one warp up to the whole CTA) normalizes one row; a CTA holds
// kThreads / kRowThreads rows. The row stays in registers between the sum of squares and the
// output pass, so residual is read once and written once (the kernel is DRAM-bound: per element
// 4+4 bytes of residual, sizeof(h) and sizeof(out)). Small rows (D = 768: 6 chunks per lane of
// a warp) use a warp per row: no CTA barrier, and 8 rows per CTA instead of 1, so a short CTA's
// launch and drain cost is amortized over 8× the bytes. kMaxChunks sized to the row (5 chunks of
// 128 threads for D = 2560) keeps every thread busy and the register budget small.
template <int Threads, int Vec, int MaxChunks, int RowThreads = Threads, bool PrefetchGamma = false>
struct AddRmsNormTraits {
  static constexpr int kThreads = Threads;
  static constexpr int kVec = Vec;                // elements per access (4 fp32 = 16 bytes)
  static constexpr int kMaxChunks = MaxChunks;    // Vec-chunks per thread kept in registers
  static constexpr int kRowThreads = RowThreads;  // threads that share one row
  // Load gamma with the row (no second dependent round trip after the reduction) at the cost
  // of kMaxChunks·kVec more registers: right for row-sized variants, not for the kMaxD = 8192
  // fall-back whose mostly idle chunk slots would cut occupancy.
  static constexpr bool kPrefetchGamma = PrefetchGamma;
  static constexpr bool kHoisted = false;  // add_rmsnorm_kernel (run_with picks the kernel)
  static constexpr int kRowsPerBlock = Threads / RowThreads;
  static constexpr int kRowWarps = RowThreads / 32;
  static constexpr int kMaxD = RowThreads * Vec * MaxChunks;  // widest row this variant takes
  static constexpr int kWarps = Threads / 32;
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps");
  static_assert(RowThreads % 32 == 0 && Threads % RowThreads == 0, "a row is whole warps of one CTA");
  static_assert(Vec == 1 || Vec == 2 || Vec == 4, "fp32 accesses of at most 16 bytes");
  static_assert(MaxChunks * Vec <= 64, "register budget: at most 64 fp32 row values per thread");
};

// Any D up to kMaxD (the fall-backs of run()).
using AddRmsNormTraitsVec4 = AddRmsNormTraits<256, 4, 8>;
using AddRmsNormTraitsScalar = AddRmsNormTraits<256, 1, 32>;
// Row-sized variants of add_rmsnorm_kernel (the defaults before the hoisted-load variants below;
// kept for comparison in bench_norm and for the fall-backs above).
using AddRmsNormTraitsWarpRow768 = AddRmsNormTraits<256, 4, 6, 32, true>;  // D <= 768, 8 rows per CTA
using AddRmsNormTraitsRow768 = AddRmsNormTraits<256, 4, 3, 64, true>;      // D <= 768, 4 rows per CTA
using AddRmsNormTraitsRow1024 = AddRmsNormTraits<256, 4, 4, 64, true>;     // D <= 1024, 4 rows per CTA
using AddRmsNormTraitsRow2048 = AddRmsNormTraits<128, 4, 4, 128, true>;    // D <= 2048
using AddRmsNormTraitsRow2560 = AddRmsNormTraits<128, 4, 5, 128, true>;    // D <= 2560
using AddRmsNormTraitsRow2560x2 = AddRmsNormTraits<256, 4, 5, 128, true>;  // D <= 2560, 2 rows per CTA
using AddRmsNormTraitsRow4096 = AddRmsNormTraits<256, 4, 4, 256, true>;    // D <= 4096
static_assert(AddRmsNormTraitsVec4::kMaxD >= kMaxD && AddRmsNormTraitsScalar::kMaxD >= kMaxD,
              "the fall-back variants cover every supported D");

// Hoisted-load variants (add_rmsnorm_rows_kernel). Same row groups as above, but every load of a
// row (residual, h, gamma) is issued before the first store. In the kernel above the residual
// store of chunk i precedes the loads of chunk i + 1 in program order and may alias them, so
// neither the compiler nor ptxas can hoist those loads: a thread with C chunks waits C DRAM round
// trips in a row. Here a row costs one round trip. Options:
//   Persistent: the grid holds at most one wave of resident CTAs and each row group walks rows
//     with a grid stride, issuing the loads of its next row before it reduces and stores the
//     current one (two rows in registers), and gamma is loaded once per thread, not per row;
//   StreamStores: residual and out are stored with .cs (evict first: written once, not re-read
//     by this kernel).
// Only 16-byte fp32 chunks (kVec = 4): the scalar path stays with the kernel above.
template <int Threads, int Chunks, int RowThreads, bool Persistent = false, bool StreamStores = false>
struct AddRmsNormRowTraits {
  static constexpr int kThreads = Threads;
  static constexpr int kVec = 4;
  static constexpr int kMaxChunks = Chunks;  // Vec-chunks of a row per thread
  static constexpr int kRowThreads = RowThreads;
  static constexpr bool kPersistent = Persistent;
  static constexpr bool kStreamStores = StreamStores;
  static constexpr bool kHoisted = true;  // tells run_with which kernel to launch
  static constexpr int kRowsPerBlock = Threads / RowThreads;
  static constexpr int kRowWarps = RowThreads / 32;
  static constexpr int kWarps = Threads / 32;
  static constexpr int kMaxD = RowThreads * kVec * Chunks;
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps");
  static_assert(RowThreads % 32 == 0 && Threads % RowThreads == 0, "a row is whole warps of one CTA");
  // Registers per thread: Chunks·4 gamma + Chunks·(4 + 2..4) per row in flight (two rows when
  // persistent); past these bounds the kernel spills.
  static_assert(Chunks >= 1 && Chunks <= (Persistent ? 6 : 8), "register budget");
};

// D = 768 (Mamba-130m) at M = 2048: a warp per row, 8 rows per CTA, 256 CTAs, one wave (at most
// 16 rows = 74 KB of loads per SM, all issued at the kernel's start: ~3x the ~25 KB that
// 3 TB/s x ~1 us of loaded latency needs per SM).
using AddRmsNormRowTraitsWarp768 = AddRmsNormRowTraits<256, 6, 32>;
using AddRmsNormRowTraitsWarp768P = AddRmsNormRowTraits<256, 6, 32, true>;
using AddRmsNormRowTraitsWarp768S = AddRmsNormRowTraits<256, 6, 32, false, true>;
// 16 rows per CTA: at ~77 registers one 512-thread CTA fits an SM, so M = 2048 is exactly one CTA
// on each of 128 SMs (no SM gets a third 8-row CTA however the CTAs are placed); no good for
// several waves (an SM idles between its CTAs).
using AddRmsNormRowTraitsWarp768x16 = AddRmsNormRowTraits<512, 6, 32>;
using AddRmsNormRowTraitsRow768H = AddRmsNormRowTraits<256, 3, 64>;     // old Row768, hoisted
using AddRmsNormRowTraitsRow1024H = AddRmsNormRowTraits<256, 4, 64>;    // D <= 1024
using AddRmsNormRowTraitsRow2048H = AddRmsNormRowTraits<128, 4, 128>;   // D <= 2048
using AddRmsNormRowTraitsRow2560H = AddRmsNormRowTraits<128, 5, 128>;   // D <= 2560 (Mamba-2.8B)
using AddRmsNormRowTraitsRow2560HP = AddRmsNormRowTraits<128, 5, 128, true>;
using AddRmsNormRowTraitsRow4096H = AddRmsNormRowTraits<256, 4, 256>;   // D <= 4096; few rows

namespace detail {

template <typename Traits>
constexpr bool is_hoisted() { return Traits::kHoisted; }

template <typename T, int N>
__device__ __forceinline__ void load_as_float(const T* p, float (&v)[N]) {
  if constexpr (std::is_same_v<T, float>) {
    const Vec<float, N> a = *reinterpret_cast<const Vec<float, N>*>(p);
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = a[i];
  } else {
    const Vec<__half, N> a = *reinterpret_cast<const Vec<__half, N>*>(p);
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = __half2float(a[i]);
  }
}

template <int N>
__device__ __forceinline__ void store_out(int8_t* p, const float (&v)[N], float inv_scale) {
  Vec<int8_t, N> a;
#pragma unroll
  for (int i = 0; i < N; ++i) a[i] = quantize_i8(v[i], inv_scale);
  *reinterpret_cast<Vec<int8_t, N>*>(p) = a;
}

template <int N>
__device__ __forceinline__ void store_out(__half* p, const float (&v)[N], float) {
  Vec<__half, N> a;
#pragma unroll
  for (int i = 0; i < N; ++i) a[i] = __float2half_rn(v[i]);
  *reinterpret_cast<Vec<__half, N>*>(p) = a;
}

template <typename Traits, typename THidden, typename TOut>
__global__ void __launch_bounds__(Traits::kThreads)
    add_rmsnorm_kernel(AddRmsNormParams<THidden, TOut> p) {
  constexpr int kVec = Traits::kVec;
  constexpr int kRT = Traits::kRowThreads;
  const int sub = static_cast<int>(threadIdx.x) / kRT;  // row within the CTA
  const int tid = static_cast<int>(threadIdx.x) % kRT;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * Traits::kRowsPerBlock + sub;
  // Threads of a row past M take no chunks but still reach the CTA barrier below.
  const int nchunks = row < p.M ? p.D / kVec : 0;
  float* res = p.residual + row * p.residual_stride;
  const THidden* h = p.h ? p.h + row * p.h_stride : nullptr;

  // All loads of the row, gamma included, are issued before any use so each thread keeps up to
  // 3·kMaxChunks requests in flight, and the output pass waits on no second DRAM round trip
  // (gamma comes from L2 at large M; at M = 1 its latency would add to the launch's).
  float r[Traits::kMaxChunks][kVec], g[Traits::kPrefetchGamma ? Traits::kMaxChunks : 1][kVec];
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * kRT;
    if (chunk < nchunks) {
      load_as_float(res + chunk * kVec, r[i]);
      if constexpr (Traits::kPrefetchGamma) load_as_float(p.gamma + chunk * kVec, g[i]);
      if (h) {
        float hv[kVec];
        load_as_float(h + chunk * kVec, hv);
#pragma unroll
        for (int j = 0; j < kVec; ++j) r[i][j] += hv[j];
        Vec<float, kVec> a;
#pragma unroll
        for (int j = 0; j < kVec; ++j) a[j] = r[i][j];
        *reinterpret_cast<Vec<float, kVec>*>(res + chunk * kVec) = a;
      }
#pragma unroll
      for (int j = 0; j < kVec; ++j) ss = fmaf(r[i][j], r[i][j], ss);
    }
  }

  // Row reduction: warp shuffles; rows of several warps add their warps' partials through
  // shared memory (one barrier; every thread then sums its row's partials itself, so no second
  // barrier or broadcast is needed).
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if constexpr (Traits::kRowWarps > 1) {
    __shared__ float warp_ss[Traits::kWarps];
    if ((threadIdx.x & 31) == 0) warp_ss[threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = 0.f;
#pragma unroll
    for (int w = 0; w < Traits::kRowWarps; ++w) ss += warp_ss[sub * Traits::kRowWarps + w];
  }
  const float rstd = rsqrtf(ss / static_cast<float>(p.D) + p.eps);

  TOut* out = p.out + row * p.out_stride;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * kRT;
    if (chunk < nchunks) {
      float v[kVec], gv[kVec];
      if constexpr (Traits::kPrefetchGamma) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) gv[j] = g[i][j];
      } else {
        load_as_float(p.gamma + chunk * kVec, gv);
      }
      // Same association as the reference: (r · rstd) · gamma.
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = __fmul_rn(__fmul_rn(r[i][j], rstd), gv[j]);
      store_out(out + chunk * kVec, v, p.inv_scale);
    }
  }
}

template <typename THidden, typename TOut>
bool vec4_ok(const AddRmsNormParams<THidden, TOut>& p) {
  constexpr int64_t kV = 4;
  if (p.D % kV != 0 || p.residual_stride % kV != 0 || p.out_stride % kV != 0) return false;
  if (!is_aligned(p.residual, kV * sizeof(float)) || !is_aligned(p.gamma, kV * sizeof(float)) ||
      !is_aligned(p.out, kV * sizeof(TOut)))
    return false;
  if (p.h && (p.h_stride % kV != 0 || !is_aligned(p.h, kV * sizeof(THidden)))) return false;
  return true;
}

// ---- hoisted-load kernel ----------------------------------------------------------------------
// Loads and stores are inline PTX marked volatile so that their program order, all loads of a
// row first, reaches ptxas unchanged (ptxas keeps a load behind a store it cannot disambiguate).
// Residual and h bypass L1 (.L1::no_allocate: each byte is read once); gamma takes the
// read-only path and stays in L1, shared by every row of the SM.

QUAMBA_DEVICE void ld_chunk(const float* p, float (&v)[4]) {
  asm volatile("ld.global.L1::no_allocate.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3])
               : "l"(p));
}

// h chunks stay packed until used (4 halves in two registers).
template <typename T>
struct RawChunk;
template <>
struct RawChunk<float> {
  float w[4];
};
template <>
struct RawChunk<__half> {
  uint32_t w[2];
};

QUAMBA_DEVICE void ld_chunk(const float* p, RawChunk<float>& c) { ld_chunk(p, c.w); }
QUAMBA_DEVICE void ld_chunk(const __half* p, RawChunk<__half>& c) {
  asm volatile("ld.global.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(c.w[0]), "=r"(c.w[1]) : "l"(p));
}

QUAMBA_DEVICE void unpack(const RawChunk<float>& c, float (&v)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = c.w[j];
}
QUAMBA_DEVICE void unpack(const RawChunk<__half>& c, float (&v)[4]) {
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    __half2 h2;
    memcpy(&h2, &c.w[k], sizeof(h2));
    const float2 f = __half22float2(h2);
    v[2 * k] = f.x;
    v[2 * k + 1] = f.y;
  }
}

template <bool Stream>
QUAMBA_DEVICE void st_chunk(float* p, const float (&v)[4]) {
  if constexpr (Stream)
    asm volatile("st.global.cs.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3]));
  else
    asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3]));
}

template <bool Stream>
QUAMBA_DEVICE void st_out(int8_t* p, const float (&v)[4], float inv_scale) {
  uint32_t w = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) w |= static_cast<uint32_t>(static_cast<uint8_t>(quantize_i8(v[j], inv_scale))) << (8 * j);
  if constexpr (Stream) asm volatile("st.global.cs.b32 [%0], %1;" ::"l"(p), "r"(w));
  else asm volatile("st.global.b32 [%0], %1;" ::"l"(p), "r"(w));
}

template <bool Stream>
QUAMBA_DEVICE void st_out(__half* p, const float (&v)[4], float) {
  uint32_t w[2];
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const __half2 h2 = __floats2half2_rn(v[2 * k], v[2 * k + 1]);
    memcpy(&w[k], &h2, sizeof(h2));
  }
  if constexpr (Stream) asm volatile("st.global.cs.v2.b32 [%0], {%1, %2};" ::"l"(p), "r"(w[0]), "r"(w[1]));
  else asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(p), "r"(w[0]), "r"(w[1]));
}

// One row's share of one thread: kMaxChunks residual chunks (fp32) and h chunks (packed).
template <typename Traits, typename THidden>
struct RowChunks {
  float r[Traits::kMaxChunks][4];
  RawChunk<THidden> h[Traits::kMaxChunks];
};

template <typename Traits, typename THidden, typename TOut>
QUAMBA_DEVICE void load_row(const AddRmsNormParams<THidden, TOut>& p, int64_t row, int tid, int nchunks,
                            RowChunks<Traits, THidden>& x) {
  if (row >= p.M) return;
  const float* res = p.residual + row * p.residual_stride;
  const THidden* h = p.h ? p.h + row * p.h_stride : nullptr;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * Traits::kRowThreads;
    if (chunk < nchunks) {
      ld_chunk(res + chunk * 4, x.r[i]);
      if (h) ld_chunk(h + chunk * 4, x.h[i]);
    }
  }
}

template <typename Traits>
QUAMBA_DEVICE void load_gamma(const float* gamma, int tid, int nchunks, float (&g)[Traits::kMaxChunks][4]) {
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * Traits::kRowThreads;
    if (chunk < nchunks) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(gamma + chunk * 4));
      g[i][0] = v.x;
      g[i][1] = v.y;
      g[i][2] = v.z;
      g[i][3] = v.w;
    }
  }
}

// residual += h (stored), sum of squares, row reduction, out = q((r · rstd) · gamma). Every
// thread of the CTA calls it (rows past M included) because of the barrier of multi-warp rows;
// warp_ss is double-buffered by `parity` so that one barrier per row suffices in a row loop
// (a warp writing slot parity of row k has passed the barrier of row k - 1, which every reader
// of row k - 2's slot reached after reading it).
template <typename Traits, typename THidden, typename TOut>
QUAMBA_DEVICE void finish_row(const AddRmsNormParams<THidden, TOut>& p, int64_t row, int sub, int tid, int nchunks,
                              RowChunks<Traits, THidden>& x, const float (&g)[Traits::kMaxChunks][4],
                              float (*warp_ss)[Traits::kWarps], int parity) {
  constexpr int kRT = Traits::kRowThreads;
  const bool valid = row < p.M;
  float ss = 0.f;
  if (valid) {
    float* res = p.residual + row * p.residual_stride;
#pragma unroll
    for (int i = 0; i < Traits::kMaxChunks; ++i) {
      const int chunk = tid + i * kRT;
      if (chunk < nchunks) {
        if (p.h) {
          float hv[4];
          unpack(x.h[i], hv);
#pragma unroll
          for (int j = 0; j < 4; ++j) x.r[i][j] = __fadd_rn(x.r[i][j], hv[j]);
          st_chunk<Traits::kStreamStores>(res + chunk * 4, x.r[i]);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) ss = fmaf(x.r[i][j], x.r[i][j], ss);
      }
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if constexpr (Traits::kRowWarps > 1) {
    if ((threadIdx.x & 31) == 0) warp_ss[parity][threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = 0.f;
#pragma unroll
    for (int w = 0; w < Traits::kRowWarps; ++w) ss += warp_ss[parity][sub * Traits::kRowWarps + w];
  }
  if (!valid) return;
  const float rstd = rsqrtf(ss / static_cast<float>(p.D) + p.eps);
  TOut* out = p.out + row * p.out_stride;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * kRT;
    if (chunk < nchunks) {
      float v[4];
      // Same association as the reference: (r · rstd) · gamma.
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = __fmul_rn(__fmul_rn(x.r[i][j], rstd), g[i][j]);
      st_out<Traits::kStreamStores>(out + chunk * 4, v, p.inv_scale);
    }
  }
}

template <typename Traits, typename THidden, typename TOut>
__global__ void __launch_bounds__(Traits::kThreads)
    add_rmsnorm_rows_kernel(AddRmsNormParams<THidden, TOut> p) {
  constexpr int kRT = Traits::kRowThreads;
  constexpr int kRPB = Traits::kRowsPerBlock;
  __shared__ float warp_ss[Traits::kRowWarps > 1 ? 2 : 1][Traits::kWarps];
  const int sub = static_cast<int>(threadIdx.x) / kRT;
  const int tid = static_cast<int>(threadIdx.x) % kRT;
  const int nchunks = p.D / 4;
  const int64_t block_row = static_cast<int64_t>(blockIdx.x) * kRPB;
  int64_t row = block_row + sub;

  // gamma is a weight: its loads go out before the dependency wait (launched with p.pdl, this
  // CTA may be resident while the previous kernel drains; without it the wait is a no-op). At
  // decode sizes the next kernel may launch as soon as every CTA of this one runs (its own wait
  // keeps it behind this grid's completion); for prefill-size grids the trigger stays implicit,
  // at exit (core/launch.cuh: early, the next GEMM's CTAs sit beside this grid's).
  float g[Traits::kMaxChunks][4];
  load_gamma<Traits>(p.gamma, tid, nchunks, g);
  grid_dependency_wait();
  if (p.M <= kEarlyTriggerRows) grid_dependents_launch();
  // All of the row's loads before its first store.
  RowChunks<Traits, THidden> cur;
  load_row<Traits>(p, row, tid, nchunks, cur);
  if constexpr (!Traits::kPersistent) {
    finish_row<Traits>(p, row, sub, tid, nchunks, cur, g, warp_ss, 0);
  } else {
    // The loop bound depends only on the CTA, so every thread runs the same number of rows and
    // meets every barrier of finish_row.
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kRPB;
    int parity = 0;
    for (int64_t base = block_row; base < p.M; base += stride) {
      RowChunks<Traits, THidden> nxt;
      // Next row's loads go out before this row's first store (see ld_chunk), so a row group
      // always has a row in flight while it reduces and writes the previous one.
      load_row<Traits>(p, row + stride, tid, nchunks, nxt);
      finish_row<Traits>(p, row, sub, tid, nchunks, cur, g, warp_ss, parity);
      cur = nxt;
      row += stride;
      parity ^= 1;
    }
  }
}

}  // namespace detail

template <typename THidden, typename TOut>
Status can_implement(const AddRmsNormParams<THidden, TOut>& p) {
  if (p.residual == nullptr || p.gamma == nullptr || p.out == nullptr) return Status::kErrorInvalidArgument;
  if (p.M < 0 || p.D <= 0) return Status::kErrorInvalidArgument;
  if (p.D > kMaxD) return Status::kErrorNotSupported;
  if (p.M > 0x7fffffff) return Status::kErrorNotSupported;  // one CTA per row, grid.x limit
  // Row strides matter only with more than one row.
  if (p.M > 1 && (p.residual_stride < p.D || p.out_stride < p.D || (p.h && p.h_stride < p.D)))
    return Status::kErrorInvalidArgument;
  if (!(p.eps >= 0.f)) return Status::kErrorInvalidArgument;
  // Element alignment (a float or half pointer that is not even element-aligned is unusable).
  if (!is_aligned(p.residual, sizeof(float)) || !is_aligned(p.gamma, sizeof(float)) ||
      !is_aligned(p.out, sizeof(TOut)) || (p.h && !is_aligned(p.h, sizeof(THidden))))
    return Status::kErrorMisaligned;
  return Status::kSuccess;
}

template <typename THidden, typename TOut>
size_t workspace_size(const AddRmsNormParams<THidden, TOut>&) { return 0; }

// Launches one named variant (benchmarks use this to time a Traits by name).
template <typename Traits, typename THidden, typename TOut>
Status run_with(const AddRmsNormParams<THidden, TOut>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if (Traits::kVec > 1 && !detail::vec4_ok(p)) return Status::kErrorMisaligned;
  if (p.D % Traits::kVec != 0 || p.D > Traits::kMaxD) return Status::kErrorNotSupported;
  if (p.M == 0) return Status::kSuccess;
  int64_t blocks = (p.M + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock;
  if constexpr (detail::is_hoisted<Traits>()) {
    auto kernel = detail::add_rmsnorm_rows_kernel<Traits, THidden, TOut>;
    if constexpr (Traits::kPersistent) {
      static ResidentCache residency_cache;
      Residency r;
      QUAMBA_RETURN_IF_ERROR(residency_cache.get(kernel, Traits::kThreads, 0, &r));
      blocks = blocks < r.total() ? blocks : r.total();
    }
    return launch_kernel(kernel, dim3(static_cast<unsigned>(blocks)), dim3(Traits::kThreads), 0, stream, p.pdl, p);
  } else {
    detail::add_rmsnorm_kernel<Traits, THidden, TOut>
        <<<static_cast<unsigned>(blocks), Traits::kThreads, 0, stream>>>(p);
  }
  return last_launch_status();
}

template <typename THidden, typename TOut>
Status run(const AddRmsNormParams<THidden, TOut>& p, void* /*workspace*/, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if (!detail::vec4_ok(p)) return run_with<AddRmsNormTraitsScalar>(p, stream);
  // H100, add_rmsnorm_kernel (chunk loads serialized behind the residual stores; bench_norm,
  // copy 3.00 TB/s; h fp16, int8 out):
  //   D=768  M=2048: Row768 8.9-9.3 µs (62-65% of copy), WarpRow768 10.4
  //   D=768  M=8192: Row768 25.9-27.8 (83-89%), WarpRow768 27.9
  //   D=2560 M=2048: Row2560 23.8-24.0 (80%); D=2560 M=8192: Row2560 82.9 (93%)
  //   M=1 (CUDA graph): Row4096 1.68 / 2.74 µs (D=768 / 2560)
  // The hoisted-load kernel issues a row's loads at once (one DRAM round trip per row instead
  // of one per chunk), so its row groups are chosen for rows per CTA, not for latency per
  // chunk: a warp per row up to D = 768 (no barrier, 8 rows per CTA, M = 2048 fits one wave),
  // whole-row CTAs of 3..5 chunks per thread above. A few rows are latency-bound: the widest row
  // group (fewest chunks per thread) finishes first.
  // Expected, not yet measured: D=768 M=2048 ~6.5-7.2 µs (one wave of 256 CTAs, ~74 KB of loads
  // per SM issued at launch; what remains is the launch, one loaded DRAM latency and 17.3 MB at
  // ~3 TB/s); D=768 M=8192 and D=2560 M=2048 / 8192 no slower than above (same row groups, more
  // bytes in flight); M=1 D=2560 ~2 µs (one round trip instead of three).
  if (p.M <= 64 && p.D <= AddRmsNormRowTraitsRow4096H::kMaxD) return run_with<AddRmsNormRowTraitsRow4096H>(p, stream);
  if (p.D <= AddRmsNormRowTraitsWarp768::kMaxD) return run_with<AddRmsNormRowTraitsWarp768>(p, stream);
  if (p.D <= AddRmsNormRowTraitsRow1024H::kMaxD) return run_with<AddRmsNormRowTraitsRow1024H>(p, stream);
  if (p.D <= AddRmsNormRowTraitsRow2048H::kMaxD) return run_with<AddRmsNormRowTraitsRow2048H>(p, stream);
  if (p.D <= AddRmsNormRowTraitsRow2560H::kMaxD) return run_with<AddRmsNormRowTraitsRow2560H>(p, stream);
  if (p.D <= AddRmsNormRowTraitsRow4096H::kMaxD) return run_with<AddRmsNormRowTraitsRow4096H>(p, stream);
  return run_with<AddRmsNormTraitsVec4>(p, stream);
}

}  // namespace quamba::norm
