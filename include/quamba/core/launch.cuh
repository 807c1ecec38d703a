// quamba/core/launch.cuh: kernel launch with programmatic dependent launch (PDL).
//
// A decode step is a chain of small dependent kernels. Launched normally, each one starts only
// when the previous one has finished and drained, so every hop costs a launch ramp plus a
// DRAM round trip. With PDL (sm_90+), a kernel launched with `pdl = true` may start while the
// previous kernel in the stream is still running: its CTAs become resident, load what does not
// depend on earlier kernels (weights), then block in grid_dependency_wait() until the previous
// grid has completed and its writes are visible. Rules for a kernel launched with pdl:
//   - call grid_dependency_wait() before reading anything an earlier kernel writes and before
//     writing anything (an earlier kernel may still read it); every thread calls it, also one
//     that has nothing to do, so the grid never completes before its prerequisite (which keeps
//     the chain transitive). After the wait the previous grids' writes are visible to every
//     load of this grid (PTX griddepcontrol), the read-only path included;
//   - call grid_dependents_launch() early: it lets the NEXT kernel's launch begin.
// Both are no-ops on architectures below sm_90 and for kernels launched without the attribute.
// On devices below compute capability 9.0 callers pass pdl = false (device_supports_pdl).
// Stream capture records the programmatic edges, so a captured decode graph keeps the overlap.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/macros.hpp"
#include "quamba/core/status.hpp"

namespace quamba {

#if QUAMBA_HAS_CUDA_COMPILER
QUAMBA_DEVICE void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

QUAMBA_DEVICE void grid_dependents_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent of the
// stream's previous kernel when pdl is true. Returns the launch's Status.
template <typename... KArgs, typename... Args>
Status launch_kernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                     Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = pdl ? attr : nullptr;
  cfg.numAttrs = pdl ? 1u : 0u;
  return from_cuda(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// True when `device` (compute capability 9.0 and up) honours programmatic dependent launch.
inline bool device_supports_pdl(int device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
  return major >= 9;
}
#endif

}  // namespace quamba
