// quamba/core/arch.hpp: architecture queries for dispatch.
//
// Kernels are compiled for the architectures in CMAKE_CUDA_ARCHITECTURES; a dispatcher asks
// current_arch() for the device's compute capability (e.g. 80, 87, 90) and picks a code path or
// returns kErrorArchNotSupported. Device code that needs sm_90a features guards its body with
// QUAMBA_SM90A_ENABLED and traps otherwise, so a wrong-architecture launch can never produce
// silent garbage.
#pragma once

#include <cuda_runtime_api.h>

#include "quamba/core/status.hpp"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define QUAMBA_SM90A_ENABLED 1
#else
#define QUAMBA_SM90A_ENABLED 0
#endif

namespace quamba {

inline constexpr int kMinSupportedArch = 80;

struct DeviceInfo {
  int device = 0;
  int arch = 0;  // major * 10 + minor
  int sm_count = 0;
  int max_smem_per_block_optin = 0;
  int l2_bytes = 0;
};

inline Status query_device(DeviceInfo* info) {
  if (info == nullptr) return Status::kErrorInvalidArgument;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return Status::kErrorCuda;
  int major = 0, minor = 0, sms = 0, smem = 0, l2 = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess)
    return Status::kErrorCuda;
  info->device = dev;
  info->arch = major * 10 + minor;
  info->sm_count = sms;
  info->max_smem_per_block_optin = smem;
  info->l2_bytes = l2;
  return Status::kSuccess;
}

// Compute capability of the current device as major*10+minor; 0 on failure.
inline int current_arch() {
  DeviceInfo info;
  return query_device(&info) == Status::kSuccess ? info.arch : 0;
}

// Every kernel in quamba needs at least sm_80 (cp.async, int8 mma.sync, bf16).
inline Status check_min_arch() {
  const int a = current_arch();
  if (a == 0) return Status::kErrorCuda;
  return a >= kMinSupportedArch ? Status::kSuccess : Status::kErrorArchNotSupported;
}

}  // namespace quamba
