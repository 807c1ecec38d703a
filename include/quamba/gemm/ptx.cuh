// quamba/gemm/ptx.cuh: thin wrappers over the PTX instructions of the int8 GEMM kernels
// (cp.async, ldmatrix, int8 mma.sync, streaming loads, packed epilogue stores). sm_80+.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "quamba/core/macros.hpp"

namespace quamba::gemm::ptx {

#if QUAMBA_HAS_CUDA_COMPILER

QUAMBA_DEVICE uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// 16-byte global->shared copy that bypasses L1 (.cg): operands are staged in shared memory,
// so caching them in L1 as well would only evict useful lines. src_bytes = 0 zero-fills the
// destination without reading global memory (M/N/K tails).
QUAMBA_DEVICE void cp_async_16(uint32_t smem_addr, const void* gmem, bool pred) {
  const int src_bytes = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(src_bytes));
}
QUAMBA_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
QUAMBA_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 b16 matrices (= four 8-row x 16-byte int8 blocks); lanes 8i..8i+7 give the row
// addresses of matrix i; thread t receives bytes 4(t%4)..4(t%4)+3 of row t/4 of each matrix.
QUAMBA_DEVICE void ldmatrix_x4(uint32_t (&r)[4], uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}

// D = A·B + D, A 16x32 s8 (row), B 32x8 s8 (col), D 16x8 s32. Fragments (g = lane/4, t = lane%4):
//   a0: A[g][4t..4t+3]  a1: A[g+8][4t..]  a2: A[g][16+4t..]  a3: A[g+8][16+4t..]
//   b0: B[4t..4t+3][g]  b1: B[16+4t..][g]
//   d0,d1: D[g][2t, 2t+1]   d2,d3: D[g+8][2t, 2t+1]
// Without .satfinite the s32 sum wraps; K < 131072 keeps it exact.
QUAMBA_DEVICE void mma_s8_16832(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// d += a·b, m16n8k16, fp16 inputs, fp32 accumulators. Fragments (g = lane/4, t = lane%4):
//   a0: A[g][2t..2t+1]  a1: A[g+8][2t..]  a2: A[g][2t+8..2t+9]  a3: A[g+8][2t+8..]
//   b0: B[2t..2t+1][g]  b1: B[2t+8..2t+9][g]
//   d0,d1: D[g][2t, 2t+1]  d2,d3: D[g+8][2t, 2t+1]
QUAMBA_DEVICE void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Weight stream of the GEMV: read once per call, so keep it out of L1 (no_allocate) and let the
// activations, which every block re-reads, own L1.
QUAMBA_DEVICE int4 ld_stream_16(const void* p) {
  int4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Two adjacent outputs in one store (caller guarantees 2-element alignment).
QUAMBA_DEVICE void store2(int8_t* p, int8_t a, int8_t b) {
  *reinterpret_cast<char2*>(p) = make_char2(static_cast<char>(a), static_cast<char>(b));
}
QUAMBA_DEVICE void store2(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }
QUAMBA_DEVICE void store2(__half* p, __half a, __half b) { *reinterpret_cast<__half2*>(p) = __halves2half2(a, b); }
QUAMBA_DEVICE void store2(int32_t* p, int32_t a, int32_t b) { *reinterpret_cast<int2*>(p) = make_int2(a, b); }

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::gemm::ptx
