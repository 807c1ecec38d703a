// quamba/core/cuda_check.hpp: CUDA runtime errors as Status.
//
// Library code maps every CUDA error to Status::kErrorCuda (after a launch, via
// cudaGetLastError) and never aborts. The aborting QUAMBA_CUDA_CHECK macro for tests and
// examples lives in tests/common and examples/common, not here.
#pragma once

#include <cuda_runtime_api.h>

#include "quamba/core/status.hpp"

namespace quamba {

inline Status from_cuda(cudaError_t e) { return e == cudaSuccess ? Status::kSuccess : Status::kErrorCuda; }

// Call right after a <<<>>> launch: picks up configuration errors (too much shared memory,
// bad grid) without synchronizing the stream.
inline Status last_launch_status() { return from_cuda(cudaGetLastError()); }

}  // namespace quamba

#define QUAMBA_RETURN_IF_CUDA_ERROR(expr)                                      \
  do {                                                                         \
    const cudaError_t quamba_cuda_err_ = (expr);                               \
    if (quamba_cuda_err_ != cudaSuccess) return ::quamba::Status::kErrorCuda;  \
  } while (0)
