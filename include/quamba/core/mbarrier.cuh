// quamba/core/mbarrier.cuh: shared-memory transaction barriers (mbarrier) and the 1-D bulk copy
// that completes on them, sm_90 and up. Used by the wgmma GEMM (TMA ring) and the bulk-copy
// Hadamard kernel (rows landing in a shared-memory ring).
//
// The barrier and copy functions are device code for sm_90+: callers compile their bodies only
// for sm_90 targets and check the device and the loaded kernel image on the host before launching
// (Sm90ImageCache, host code).
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>

#include "quamba/core/macros.hpp"

namespace quamba::detail {

// Whether `kernel` can run its sm_90 body on the current device: compute capability 9.0 or
// newer and a loaded image built from sm_90+ code (a build without a 90 target would JIT its
// compute_80 PTX, whose body traps). One cache per launch site (a static), remembering the answer
// for the last device asked about.
class Sm90ImageCache {
 public:
  template <typename Kernel>
  bool get(Kernel kernel) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    const int c = cached_.load(std::memory_order_relaxed);  // (device + 1) << 1 | available
    if (c != 0 && (c >> 1) == dev + 1) return (c & 1) != 0;
    int major = 0;
    cudaFuncAttributes attr{};
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                    major >= 9 && cudaFuncGetAttributes(&attr, kernel) == cudaSuccess && attr.ptxVersion >= 90 &&
                    attr.binaryVersion >= 90;
    if (!ok) cudaGetLastError();
    cached_.store(((dev + 1) << 1) | (ok ? 1 : 0), std::memory_order_relaxed);
    return ok;
  }

 private:
  std::atomic<int> cached_{0};
};

#if QUAMBA_HAS_CUDA_COMPILER

QUAMBA_DEVICE void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
QUAMBA_DEVICE void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
QUAMBA_DEVICE void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Spins on the phase; traps after ~10 s (far beyond any legitimate wait) so that a pipeline bug
// surfaces as a launch error instead of a hung process.
QUAMBA_DEVICE void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  const long long start = clock64();
  do {
    if (clock64() - start > (20ll << 30)) __trap();
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.b32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// Non-blocking: whether the phase of `parity` of the barrier at `bar` has completed.
QUAMBA_DEVICE bool mbar_test(uint32_t bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.b32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}
// Makes barrier initialisation visible to the asynchronous (bulk copy) proxy.
QUAMBA_DEVICE void fence_mbarrier_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// `bytes` (a multiple of 16; src and dst 16-byte aligned) from global to shared memory; the
// transfer counts down the transaction count of the barrier at `bar`.
QUAMBA_DEVICE void bulk_copy_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::detail
