// quamba/core/tensor_map.hpp: TMA tensor maps (CUtensorMap) built on the host.
//
// cuTensorMapEncodeTiled is reached through the runtime's driver entry point, so nothing links
// against libcuda. Used by the wgmma GEMM (gemm/gemm_sm90*.cuh) and the scan's bulk-copy tiles
// (scan/selective_scan.cuh).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "quamba/core/status.hpp"

namespace quamba::detail {

// cuTensorMapEncodeTiled, or nullptr where the driver does not offer it.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
#if CUDART_VERSION >= 12050
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess)
      f = nullptr;
#else
    if (cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q) != cudaSuccess) f = nullptr;
#endif
    return q == cudaDriverEntryPointSuccess ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f) : nullptr;
  }();
  return fn;
}

// A 3-D map (innermost first: dims[0] elements contiguous, then dims[1] rows `strides[0]` bytes
// apart, then dims[2] planes `strides[1]` bytes apart), boxes of box[0] x box[1] x box[2]
// elements landing densely packed (no swizzle), zeros read outside the tensor and writes outside
// it dropped. The caller keeps the TMA rules: base 16-byte aligned, strides multiples of 16 bytes,
// box[0]·element bytes a multiple of 16, every box extent at most 256.
inline Status make_tensor_map_3d(CUtensorMap* map, CUtensorMapDataType type, const void* base, const uint64_t (&dims)[3],
                                 const uint64_t (&strides)[2], const uint32_t (&box)[3]) {
  auto encode = tensor_map_encoder();
  if (encode == nullptr) return Status::kErrorCuda;
  const cuuint64_t d[3] = {dims[0], dims[1], dims[2]};
  const cuuint64_t s[2] = {strides[0], strides[1]};
  const cuuint32_t b[3] = {box[0], box[1], box[2]};
  const cuuint32_t elem_strides[3] = {1u, 1u, 1u};
  const CUresult r = encode(map, type, 3, const_cast<void*>(base), d, s, b, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? Status::kSuccess : Status::kErrorCuda;
}

}  // namespace quamba::detail
