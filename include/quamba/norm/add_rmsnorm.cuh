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

// One CTA normalizes one row; the row stays in registers between the sum of squares and the
// output pass, so residual is read once and written once (the kernel is DRAM-bound: per
// element 4+4 bytes of residual, sizeof(h) and sizeof(out)).
template <int Threads, int Vec, int MaxChunks>
struct AddRmsNormTraits {
  static constexpr int kThreads = Threads;
  static constexpr int kVec = Vec;              // elements per access (4 fp32 = 16 bytes)
  static constexpr int kMaxChunks = MaxChunks;  // Vec-chunks per thread kept in registers
  static constexpr int kMaxD = Threads * Vec * MaxChunks;
  static constexpr int kWarps = Threads / 32;
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps");
  static_assert(Vec == 1 || Vec == 2 || Vec == 4, "fp32 accesses of at most 16 bytes");
  static_assert(kMaxD >= ::quamba::norm::kMaxD, "a variant must cover every supported D");
  static_assert(MaxChunks * Vec <= 64, "register budget: at most 64 fp32 row values per thread");
};

using AddRmsNormTraitsVec4 = AddRmsNormTraits<256, 4, 8>;
using AddRmsNormTraitsScalar = AddRmsNormTraits<256, 1, 32>;

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
  const int64_t row = blockIdx.x;
  const int tid = threadIdx.x;
  const int nchunks = p.D / kVec;
  float* res = p.residual + row * p.residual_stride;
  const THidden* h = p.h ? p.h + row * p.h_stride : nullptr;

  // All loads of the row are issued before any use so each thread keeps up to kMaxChunks
  // 16-byte requests in flight (memory-level parallelism is what a one-pass norm needs).
  float r[Traits::kMaxChunks][kVec];
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * Traits::kThreads;
    if (chunk < nchunks) {
      load_as_float(res + chunk * kVec, r[i]);
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

  // Block reduction: warp shuffles, then one partial per warp through shared memory.
  __shared__ float warp_ss[Traits::kWarps];
  __shared__ float s_rstd;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((tid & 31) == 0) warp_ss[tid >> 5] = ss;
  __syncthreads();
  if (tid < 32) {
    float t = tid < Traits::kWarps ? warp_ss[tid] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    if (tid == 0) s_rstd = rsqrtf(t / static_cast<float>(p.D) + p.eps);
  }
  __syncthreads();
  const float rstd = s_rstd;

  TOut* out = p.out + row * p.out_stride;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * Traits::kThreads;
    if (chunk < nchunks) {
      float g[kVec], v[kVec];
      load_as_float(p.gamma + chunk * kVec, g);
      // Same association as the reference: (r · rstd) · gamma.
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = __fmul_rn(__fmul_rn(r[i][j], rstd), g[j]);
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
  if (p.D % Traits::kVec != 0) return Status::kErrorNotSupported;
  if (p.M == 0) return Status::kSuccess;
  detail::add_rmsnorm_kernel<Traits, THidden, TOut>
      <<<static_cast<unsigned>(p.M), Traits::kThreads, 0, stream>>>(p);
  return last_launch_status();
}

template <typename THidden, typename TOut>
Status run(const AddRmsNormParams<THidden, TOut>& p, void* /*workspace*/, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_bool(detail::vec4_ok(p), [&](auto vec4) {
    using Traits = std::conditional_t<decltype(vec4)::value, AddRmsNormTraitsVec4, AddRmsNormTraitsScalar>;
    return run_with<Traits>(p, stream);
  });
}

}  // namespace quamba::norm
