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

// The sm_90 instructions below compile for every target, so that a kernel with an sm_90 path
// builds everywhere; below sm_90 they trap (hosts never launch such a path there).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define QUAMBA_SM90_ASM(...) __trap()
#else
#define QUAMBA_SM90_ASM(...) asm volatile(__VA_ARGS__)
#endif

QUAMBA_DEVICE void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
QUAMBA_DEVICE void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  QUAMBA_SM90_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
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
    QUAMBA_SM90_ASM(
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
  uint32_t done = 0;
  QUAMBA_SM90_ASM(
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
QUAMBA_DEVICE void fence_mbarrier_init() { QUAMBA_SM90_ASM("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// `bytes` (a multiple of 16; src and dst 16-byte aligned) from global to shared memory; the
// transfer counts down the transaction count of the barrier at `bar`.
QUAMBA_DEVICE void bulk_copy_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  QUAMBA_SM90_ASM("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// Bulk tensor copies (TMA) through a tensor map (core/tensor_map.hpp) whose generic address is
// `map` (a __grid_constant__ kernel parameter or global memory).
// The box at coordinates (c0, c1, c2) (innermost first) into shared memory at `dst`, counted
// down on the barrier at `bar`; elements outside the tensor arrive as zeros.
QUAMBA_DEVICE void tma_load_3d(uint32_t dst, const void* map, int c0, int c1, int c2, uint32_t bar) {
  QUAMBA_SM90_ASM(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}
// Shared memory at `src` into the box at (c0, c1, c2); elements outside the tensor are dropped.
// Completes as part of the thread's current bulk group (bulk_commit / bulk_wait*).
QUAMBA_DEVICE void tma_store_3d(const void* map, uint32_t src, int c0, int c1, int c2) {
  QUAMBA_SM90_ASM("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(
                      reinterpret_cast<uint64_t>(map)),
                  "r"(src), "r"(c0), "r"(c1), "r"(c2)
                  : "memory");
}
QUAMBA_DEVICE void bulk_commit() { QUAMBA_SM90_ASM("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Until at most kPending of this thread's bulk groups are still reading their shared memory.
template <int kPending>
QUAMBA_DEVICE void bulk_wait_read() {
  QUAMBA_SM90_ASM("cp.async.bulk.wait_group.read %0;\n" ::"n"(kPending) : "memory");
}
// Until at most kPending of this thread's bulk groups are incomplete (writes performed).
template <int kPending>
QUAMBA_DEVICE void bulk_wait() {
  QUAMBA_SM90_ASM("cp.async.bulk.wait_group %0;\n" ::"n"(kPending) : "memory");
}
// Generic-proxy shared-memory writes made visible to the async proxy (a bulk store's reads).
QUAMBA_DEVICE void fence_proxy_async_smem() { QUAMBA_SM90_ASM("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#undef QUAMBA_SM90_ASM

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::detail
