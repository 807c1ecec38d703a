// quamba/core/prefetch.cuh: L2 prefetch of a byte range, shared out over a grid's CTAs.
//
// A decode step streams each weight matrix from DRAM once, in a chain of dependent kernels.
// Between the two large streams (in_proj, out_proj) the chain runs small latency-bound kernels
// (x_proj, the scan) during which DRAM idles. A kernel can hand DRAM the next stream early: it
// names the range in an L2Prefetch and every CTA requests its share (prefetch_l2_share), which
// returns at once (no registers, no completion to wait for). The later kernel then finds the
// lines in L2. A prefetch never changes a result: it is a hint, and an evicted line is read
// from DRAM again.
//   sm_90+: one cp.async.bulk.prefetch.L2 per CTA share (the copy engine walks the range);
//   sm_80..sm_89: one prefetch.global.L2::evict_last per 128-byte line, spread over the threads.
#pragma once

#include <cstdint>

#include "quamba/core/macros.hpp"

namespace quamba {

// A byte range to bring into L2; bytes == 0 (the default) means none.
struct L2Prefetch {
  const void* ptr = nullptr;
  int64_t bytes = 0;
  QUAMBA_HD bool empty() const { return ptr == nullptr || bytes <= 0; }
};

#if QUAMBA_HAS_CUDA_COMPILER

// Part `part` of `parts` equal shares of r, in whole 16-byte units: a range whose start is not
// 16-byte aligned is skipped, and a last partial unit is left out (it never reaches past the
// range). Call from every thread of the CTA (the pre-sm_90 form spreads the lines over them).
QUAMBA_DEVICE void prefetch_l2_share(const L2Prefetch& r, int64_t part, int64_t parts) {
  if (r.empty() || parts <= 0 || (reinterpret_cast<uintptr_t>(r.ptr) & 15) != 0) return;
  const int64_t units = r.bytes / 16;
  const int64_t per = (units + parts - 1) / parts;
  const int64_t u0 = part * per;
  const int64_t u1 = u0 + per < units ? u0 + per : units;
  if (u0 >= u1) return;
  const char* base = static_cast<const char*>(r.ptr) + u0 * 16;
  const int64_t n = (u1 - u0) * 16;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    // The size operand is 32-bit: shares of >= 4 GiB go in pieces.
    for (int64_t off = 0; off < n; off += int64_t(1) << 30) {
      const int64_t len = n - off < (int64_t(1) << 30) ? n - off : (int64_t(1) << 30);
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(base + off), "r"(static_cast<uint32_t>(len))
                   : "memory");
    }
  }
#elif defined(__CUDA_ARCH__)
  const int threads = static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
  const int tid = static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
  for (int64_t off = int64_t(tid) * 128; off < n; off += int64_t(threads) * 128)
    asm volatile("prefetch.global.L2::evict_last [%0];\n" ::"l"(base + off));
#endif
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba
