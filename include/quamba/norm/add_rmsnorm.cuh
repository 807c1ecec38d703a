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
// 4 elements) the vectorized variant runs; otherwise a scalar variant runs (any D, any
// alignment). out must not overlap residual or h.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quamba/core/cuda_check.hpp"
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
};

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
// Row-sized variants: run() picks the narrowest that holds D, so each thread has 3..5 chunks.
using AddRmsNormTraitsWarpRow768 = AddRmsNormTraits<256, 4, 6, 32, true>;  // D <= 768, 8 rows per CTA
using AddRmsNormTraitsRow768 = AddRmsNormTraits<256, 4, 3, 64, true>;      // D <= 768, 4 rows per CTA
using AddRmsNormTraitsRow1024 = AddRmsNormTraits<256, 4, 4, 64, true>;     // D <= 1024, 4 rows per CTA
using AddRmsNormTraitsRow2048 = AddRmsNormTraits<128, 4, 4, 128, true>;    // D <= 2048
using AddRmsNormTraitsRow2560 = AddRmsNormTraits<128, 4, 5, 128, true>;    // D <= 2560
using AddRmsNormTraitsRow2560x2 = AddRmsNormTraits<256, 4, 5, 128, true>;  // D <= 2560, 2 rows per CTA
using AddRmsNormTraitsRow4096 = AddRmsNormTraits<256, 4, 4, 256, true>;    // D <= 4096
static_assert(AddRmsNormTraitsVec4::kMaxD >= kMaxD && AddRmsNormTraitsScalar::kMaxD >= kMaxD,
              "the fall-back variants cover every supported D");

namespace detail {

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
  const int64_t blocks = (p.M + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock;
  detail::add_rmsnorm_kernel<Traits, THidden, TOut>
      <<<static_cast<unsigned>(blocks), Traits::kThreads, 0, stream>>>(p);
  return last_launch_status();
}

template <typename THidden, typename TOut>
Status run(const AddRmsNormParams<THidden, TOut>& p, void* /*workspace*/, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if (!detail::vec4_ok(p)) return run_with<AddRmsNormTraitsScalar>(p, stream);
  // H100 (bench_norm, copy 3.00 TB/s; h fp16, int8 out; previous kernel = 256-thread CTA per row):
  //   D=768  M=2048: Row768 9.26 µs (62% of copy), WarpRow768 10.4, Row2560 9.67, previous 10.9
  //   D=768  M=8192: Row768 27.8 (83%), WarpRow768 27.9, previous 31.5 (73%)
  //   D=2560 M=2048: Row2560 24.0 (80%), Row2560x2 24.7, Row4096 25.0, previous 26.3 (73%)
  //   D=2560 M=8192: Row2560 82.9 (93%), Row2560x2 84.9, previous 85.5 (90%)
  //   M=1 (CUDA graph): Row4096 1.68 / 2.74 µs (D=768 / 2560), Row768 2.52, Row2560 3.71,
  //                     previous 2.41 / 4.16
  // A few rows are latency-bound: the widest row group (most threads per row, fewest chunks per
  // thread) finishes first. Many rows are bandwidth-bound: 3..5 chunks per thread with as few
  // threads per row as that allows (more rows, and so more requests, per CTA).
  if (p.M <= 64 && p.D <= AddRmsNormTraitsRow4096::kMaxD) return run_with<AddRmsNormTraitsRow4096>(p, stream);
  if (p.D <= AddRmsNormTraitsRow768::kMaxD) return run_with<AddRmsNormTraitsRow768>(p, stream);
  if (p.D <= AddRmsNormTraitsRow1024::kMaxD) return run_with<AddRmsNormTraitsRow1024>(p, stream);
  if (p.D <= AddRmsNormTraitsRow2048::kMaxD) return run_with<AddRmsNormTraitsRow2048>(p, stream);
  if (p.D <= AddRmsNormTraitsRow2560::kMaxD) return run_with<AddRmsNormTraitsRow2560>(p, stream);
  if (p.D <= AddRmsNormTraitsRow4096::kMaxD) return run_with<AddRmsNormTraitsRow4096>(p, stream);
  return run_with<AddRmsNormTraitsVec4>(p, stream);
}

}  // namespace quamba::norm
