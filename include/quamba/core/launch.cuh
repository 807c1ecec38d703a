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
//     the chain transitive). After the wait the previous grids' writes are visible to this
//     grid's loads (PTX griddepcontrol);
//   - read what an earlier kernel of the chain writes with ordinary loads (load_chained()),
//     never through the non-coherent read-only path (__ldg, ld.global.nc, or a const
//     __restrict__ pointer the compiler turns into one). That path promises the data does not
//     change during the kernel's lifetime, and a programmatic dependent's lifetime begins before
//     its predecessor ends: ptxas may then schedule such a load above the wait. Seen on sm_90a
//     with CUDA 13.0: the fused dt_proj decode kernel (scan/state_update.cuh) read x_proj's
//     output from the previous step. Weights and other constants may use it;
//   - grid_dependents_launch() lets the NEXT kernel's launch begin before this grid ends (else
//     that happens as this grid's CTAs exit). Early is right for the decode step's small,
//     latency-bound kernels (their successors load weights before waiting). It is wrong for the
//     prefill's long kernels: the successor's CTAs then become resident beside this grid's and wait
//     there, and a persistent or single-wave grid triggers at once. Measured on an H100 (W8A8,
//     Mamba-2.8B shape, TTFT at 2048 tokens, bench/RESULTS.md run W): pdl with every prefill
//     kernel triggering at its start 24.6 ms, with the trigger left implicit 22.8, without pdl
//     23.7. So the prefill kernels (GEMM tiles, conv, scan, Hadamard) leave it implicit.
// Both are no-ops on architectures below sm_90 and for kernels launched without the attribute.
// On devices below compute capability 9.0 callers pass pdl = false (device_supports_pdl).
// Stream capture records the programmatic edges, so a captured decode graph keeps the overlap.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
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

// A load of data written by an earlier kernel of the chain: ordinary and coherent, ordered after
// grid_dependency_wait() (see the rules above). Cached in L1 like the read-only path on sm_70+.
template <typename T>
QUAMBA_DEVICE T load_chained(const T* p) {
  return *p;
}

QUAMBA_DEVICE void grid_dependents_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent of the
// stream's previous kernel when pdl is true. Returns the launch's Status and clears the runtime's
// last-error state, as a <<<>>> launch followed by last_launch_status() does.
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
  const cudaError_t launched = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  const cudaError_t last = cudaGetLastError();
  return from_cuda(launched != cudaSuccess ? launched : last);
}

// Lets `kernel` use `smem` bytes of dynamic shared memory: nothing to do up to the 48 KiB every
// device grants; above, the current device's opt-in limit must allow it (else
// kErrorNotSupported) and the kernel is opted in.
template <typename Kernel>
Status opt_in_smem(Kernel kernel, size_t smem) {
  if (smem <= 48 * 1024) return Status::kSuccess;
  int dev = 0, limit = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaGetDevice(&dev));
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (smem > static_cast<size_t>(limit)) return Status::kErrorNotSupported;
  return from_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
}

// How many CTAs of one kernel the current device holds at once, for persistent grids.
struct Residency {
  int sms = 0;     // multiprocessors
  int per_sm = 0;  // CTAs of the kernel per multiprocessor
  int64_t total() const { return static_cast<int64_t>(sms) * per_sm; }
};

// The occupancy query costs host time on every decode-size launch, so each launch site keeps one
// ResidentCache (a static) that remembers the Residency for the last (device, dynamic smem) it
// was asked about; get() also opts the kernel in to `smem` (opt_in_smem). A kernel that cannot
// be resident at all gives kErrorNotSupported.
class ResidentCache {
 public:
  template <typename Kernel>
  Status get(Kernel kernel, int threads, size_t smem, Residency* out) {
    int dev = 0;
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaGetDevice(&dev));
    // One atomic word, so a reader never pairs one query's key with another's answer:
    // (device + 1) in bits 52..63, smem bytes in 32..51, SMs in 16..31, CTAs per SM in 0..15.
    const bool cacheable = dev + 1 < (1 << 12) && smem < (size_t(1) << 20);
    const uint64_t key = (static_cast<uint64_t>(dev + 1) << 52) | (static_cast<uint64_t>(smem) << 32);
    const uint64_t packed = packed_.load(std::memory_order_relaxed);
    if (cacheable && (packed >> 32) == (key >> 32)) {
      out->sms = static_cast<int>((packed >> 16) & 0xffff);
      out->per_sm = static_cast<int>(packed & 0xffff);
      return Status::kSuccess;
    }
    QUAMBA_RETURN_IF_ERROR(opt_in_smem(kernel, smem));
    Residency r;
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaDeviceGetAttribute(&r.sms, cudaDevAttrMultiProcessorCount, dev));
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&r.per_sm, kernel, threads, smem));
    if (r.per_sm <= 0 || r.sms <= 0) return Status::kErrorNotSupported;
    if (cacheable && r.sms < (1 << 16) && r.per_sm < (1 << 16))
      packed_.store(key | (static_cast<uint64_t>(r.sms) << 16) | static_cast<uint64_t>(r.per_sm),
                    std::memory_order_relaxed);
    *out = r;
    return Status::kSuccess;
  }

 private:
  std::atomic<uint64_t> packed_{0};
};

// True when `device` (compute capability 9.0 and up) honours programmatic dependent launch.
inline bool device_supports_pdl(int device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
  return major >= 9;
}
#endif

}  // namespace quamba
