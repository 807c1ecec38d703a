// quamba/gemm/gemm_sm90.cuh: int8 GEMM for sm_90a (wgmma + TMA). Placeholder: not implemented yet.
#pragma once

#include <cuda_runtime.h>

#include "quamba/core/arch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/gemm/params.cuh"

namespace quamba::gemm {

inline constexpr bool sm90a_dispatch_enabled() { return false; }

template <typename Epilogue>
Status can_implement_sm90a(const GemmParams<Epilogue>& p) {
  QUAMBA_RETURN_IF_ERROR(check_params(p));
  return Status::kErrorNotSupported;
}

template <typename Epilogue>
Status run_sm90a(const GemmParams<Epilogue>& p, cudaStream_t) {
  return can_implement_sm90a(p);
}

}  // namespace quamba::gemm
