// quamba/norm/embedding.cuh: token embedding gather (GPU), SPEC §1 (r starts as Emb[ids]).
//
// Shapes and layouts (strides in ELEMENTS):
//   table  (V, D)  TTable = __half, or int8_t with row_scale (V) fp32 (the int8 head option of
//                  SPEC §2: weight-only, one scale per row), row stride table_stride
//   ids    (M)     int32 token ids, device memory
//   out    (M, D)  TOut = float (it becomes the fp32 residual of layer 0) or __half,
//                  row stride out_stride
//   error_flag     optional device int32
// out[m, :] = table[ids[m], :], converted exactly (fp16 -> fp32 is exact); an int8 table gives
// float(q)·row_scale[id] (one fp32 multiply, as reference::embedding_i8).
//
// Bad ids. The ids live on the device, so they cannot be checked by run() without a sync.
// A row whose id is outside [0, V) is written as zeros and, when error_flag is not null,
// *error_flag is set to 1 (it is never cleared by the library: zero it before the launch and
// read it when convenient). Callers that hold the ids on the host can check them first with
// validate_ids(), which returns kErrorOutOfRange for the first bad id.
//
// Supported: M >= 0, D >= 1, V >= 1. The 16-byte variant runs when D, the strides and the
// pointers allow 16-byte table accesses (8 halves / 16 int8); otherwise a scalar variant runs.
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

template <typename TOut, typename TTable = __half>
struct EmbeddingParams {
  static_assert(std::is_same_v<TOut, float> || std::is_same_v<TOut, __half>, "out is float or __half");
  static_assert(std::is_same_v<TTable, __half> || std::is_same_v<TTable, int8_t>, "table is __half or int8_t");
  static constexpr bool kInt8 = std::is_same_v<TTable, int8_t>;
  const TTable* table = nullptr;  // (V, D)
  int64_t table_stride = 0;       // row stride (elements)
  const float* row_scale = nullptr;  // (V): required for an int8 table, ignored otherwise
  const int32_t* ids = nullptr;   // (M), device
  TOut* out = nullptr;            // (M, D)
  int64_t out_stride = 0;
  int64_t M = 0;
  int64_t V = 0;
  int D = 0;
  int32_t* error_flag = nullptr;  // optional: set to 1 when any id is out of range
};

// One CTA per token row; a row of D table elements is one contiguous read, so the gather costs
// exactly M·D·(sizeof(TTable) + sizeof(TOut)) bytes.
template <int Threads, int Vec>
struct EmbeddingTraits {
  static constexpr int kThreads = Threads;
  static constexpr int kVec = Vec;  // table elements per access (the kernel checks <= 16 bytes)
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps");
  static_assert(Vec == 1 || Vec == 2 || Vec == 4 || Vec == 8 || Vec == 16, "power-of-two accesses");
};

using EmbeddingTraitsVec8 = EmbeddingTraits<128, 8>;     // fp16 table: 16-byte accesses
using EmbeddingTraitsVec16 = EmbeddingTraits<128, 16>;   // int8 table: 16-byte accesses
using EmbeddingTraitsScalar = EmbeddingTraits<128, 1>;

// The 16-byte traits of a table type.
template <typename TTable>
using EmbeddingTraitsWide = std::conditional_t<sizeof(TTable) == 1, EmbeddingTraitsVec16, EmbeddingTraitsVec8>;

// Host-side check of host-resident ids: kErrorOutOfRange at the first id outside [0, V).
inline Status validate_ids(const int32_t* host_ids, int64_t M, int64_t V) {
  if (M < 0 || V <= 0 || (M > 0 && host_ids == nullptr)) return Status::kErrorInvalidArgument;
  for (int64_t m = 0; m < M; ++m)
    if (host_ids[m] < 0 || host_ids[m] >= V) return Status::kErrorOutOfRange;
  return Status::kSuccess;
}

namespace detail {

template <typename Traits, typename TOut, typename TTable>
__global__ void __launch_bounds__(Traits::kThreads) embedding_kernel(EmbeddingParams<TOut, TTable> p) {
  constexpr int kVec = Traits::kVec;
  static_assert(kVec * sizeof(TTable) <= 16, "at most 16-byte table accesses");
  const int64_t row = blockIdx.x;
  const int32_t id = p.ids[row];
  const bool bad = id < 0 || static_cast<int64_t>(id) >= p.V;
  if (bad && threadIdx.x == 0 && p.error_flag) *p.error_flag = 1;
  const TTable* src = p.table + (bad ? 0 : static_cast<int64_t>(id) * p.table_stride);
  float scale = 1.0f;
  if constexpr (EmbeddingParams<TOut, TTable>::kInt8) scale = bad ? 0.0f : __ldg(p.row_scale + id);
  TOut* dst = p.out + row * p.out_stride;
  const int nchunks = p.D / kVec;
  for (int c = threadIdx.x; c < nchunks; c += Traits::kThreads) {
    Vec<TTable, kVec> a;
    if (!bad) {
      a = *reinterpret_cast<const Vec<TTable, kVec>*>(src + c * kVec);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) a[j] = TTable(0);
    }
    if constexpr (std::is_same_v<TOut, __half> && std::is_same_v<TTable, __half>) {
      *reinterpret_cast<Vec<__half, kVec>*>(dst + c * kVec) = a;
    } else {
      // Up to 16 bytes of output per store.
      constexpr int kOut = kVec * sizeof(TOut) <= 16 ? kVec : 16 / static_cast<int>(sizeof(TOut));
#pragma unroll
      for (int s = 0; s < kVec / kOut; ++s) {
        Vec<TOut, kOut> o;
#pragma unroll
        for (int j = 0; j < kOut; ++j) {
          float v;
          if constexpr (std::is_same_v<TTable, __half>) v = __half2float(a[s * kOut + j]);
          else v = __fmul_rn(static_cast<float>(a[s * kOut + j]), scale);
          if constexpr (std::is_same_v<TOut, float>) o[j] = v;
          else o[j] = __float2half_rn(v);
        }
        *reinterpret_cast<Vec<TOut, kOut>*>(dst + c * kVec + s * kOut) = o;
      }
    }
  }
}

template <typename TOut, typename TTable>
bool vec_ok(const EmbeddingParams<TOut, TTable>& p) {
  constexpr int64_t kV = EmbeddingTraitsWide<TTable>::kVec;
  return p.D % kV == 0 && p.table_stride % kV == 0 && p.out_stride % kV == 0 &&
         is_aligned(p.table, kV * sizeof(TTable)) && is_aligned(p.out, 16);
}

}  // namespace detail

template <typename TOut, typename TTable>
Status can_implement(const EmbeddingParams<TOut, TTable>& p) {
  if (p.table == nullptr || p.out == nullptr || (p.M > 0 && p.ids == nullptr)) return Status::kErrorInvalidArgument;
  if (EmbeddingParams<TOut, TTable>::kInt8 && p.row_scale == nullptr) return Status::kErrorInvalidArgument;
  if (p.M < 0 || p.V <= 0 || p.D <= 0 || p.table_stride < p.D || p.out_stride < p.D)
    return Status::kErrorInvalidArgument;
  if (p.M > 0x7fffffff) return Status::kErrorNotSupported;  // one CTA per row, grid.x limit
  if (!is_aligned(p.table, sizeof(TTable)) || !is_aligned(p.out, sizeof(TOut)) || !is_aligned(p.ids, 4) ||
      !is_aligned(p.error_flag, 4) || !is_aligned(p.row_scale, 4))
    return Status::kErrorMisaligned;
  return Status::kSuccess;
}

template <typename TOut, typename TTable>
size_t workspace_size(const EmbeddingParams<TOut, TTable>&) { return 0; }

// Traits: EmbeddingTraitsScalar, or EmbeddingTraitsWide<TTable> when detail::vec_ok (else
// kErrorMisaligned).
template <typename Traits, typename TOut, typename TTable>
Status run_with(const EmbeddingParams<TOut, TTable>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  static_assert(Traits::kVec == 1 || Traits::kVec == EmbeddingTraitsWide<TTable>::kVec,
                "scalar or the table's 16-byte traits");
  if (Traits::kVec > 1 && !detail::vec_ok(p)) return Status::kErrorMisaligned;
  if (p.M == 0) return Status::kSuccess;
  detail::embedding_kernel<Traits, TOut, TTable><<<static_cast<unsigned>(p.M), Traits::kThreads, 0, stream>>>(p);
  return last_launch_status();
}

template <typename TOut, typename TTable>
Status run(const EmbeddingParams<TOut, TTable>& p, void* /*workspace*/, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_bool(detail::vec_ok(p), [&](auto wide) {
    using Traits = std::conditional_t<decltype(wide)::value, EmbeddingTraitsWide<TTable>, EmbeddingTraitsScalar>;
    return run_with<Traits>(p, stream);
  });
}

}  // namespace quamba::norm
