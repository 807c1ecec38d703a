// quamba/gemm/params.cuh: the arguments of every int8 GEMM / GEMV in quamba::gemm, and their
// validation.
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ )      (exact int32 accumulation)
//   A: int8, row-major, row stride lda (elements = bytes); may be a strided view (lda >= K)
//   W: int8, row-major (N, K): one output channel per row of K ("TN": both operands K-major)
//   C: Epilogue::Output (int8, fp32, __half or int32), row-major, row stride ldc (elements)
// Alignment rules of the int8 kernels (16-byte vector loads / cp.async / ldmatrix):
//   K % 16 == 0 (kErrorNotSupported), lda % 16 == 0, ldw % 16 == 0 and A, W 16-byte aligned
//   (kErrorMisaligned). M and N may be anything >= 1 (tails are handled); M == 0 is a no-op.
//   K < 131072 so that the int32 accumulator cannot overflow (|acc| <= K·2^14).
#pragma once

#include <cstdint>

#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/gemm/epilogue.cuh"

namespace quamba::gemm {

inline constexpr int64_t kMaxK = 131072;
inline constexpr int kKAlignment = 16;  // elements (bytes) of K, lda and ldw

template <typename Epilogue>
struct GemmParams {
  using Output = typename Epilogue::Output;
  int64_t M = 0, N = 0, K = 0;
  const int8_t* A = nullptr;
  int64_t lda = 0;  // elements
  const int8_t* W = nullptr;
  int64_t ldw = 0;  // elements
  Output* C = nullptr;
  int64_t ldc = 0;  // elements
  Epilogue epilogue{};
  // Launch as a programmatic dependent of the stream's previous kernel (core/launch.cuh; sm_90+,
  // pass false elsewhere): every path gemm::run can take honours it (GEMV, mma.sync with its
  // split-K reduce, short-K, sm90a). Each kernel may read W before its dependency wait, so W must
  // not be written by a kernel of the chain; A, C and the epilogue's inputs are touched after it.
  // The mma.sync, short-K and sm90a kernels leave the next launch's trigger implicit (at exit; see
  // core/launch.cuh), the GEMV triggers it at its start.
  bool pdl = false;
};

// Store forms C allows (host): two adjacent outputs per store (even ldc, C aligned to two
// outputs), and, for a 1-byte output, whole 16-byte row chunks (ldc % 16 == 0, C 16-byte aligned).
template <typename Epilogue>
bool c_pairs_aligned(const GemmParams<Epilogue>& p) {
  using Output = typename Epilogue::Output;
  return p.ldc % 2 == 0 && is_aligned(p.C, 2 * sizeof(Output));
}
template <typename Epilogue>
bool c_rows_16b_aligned(const GemmParams<Epilogue>& p) {
  return sizeof(typename Epilogue::Output) == 1 && p.ldc % 16 == 0 && is_aligned(p.C, 16);
}

// Checks shared by every kernel of the family; touches no device state.
template <typename Epilogue>
Status check_params(const GemmParams<Epilogue>& p) {
  if (p.M < 0 || p.N <= 0 || p.K <= 0) return Status::kErrorInvalidArgument;
  if (p.A == nullptr || p.W == nullptr || p.C == nullptr) return Status::kErrorInvalidArgument;
  if (p.lda < p.K || p.ldw < p.K || p.ldc < p.N) return Status::kErrorInvalidArgument;
  // 32-bit grid and index limits of the kernels (far above any Mamba shape).
  if (p.M > (int64_t(1) << 30) || p.N > (int64_t(1) << 22)) return Status::kErrorNotSupported;
  if (p.K % kKAlignment != 0 || p.K >= kMaxK) return Status::kErrorNotSupported;
  if (p.lda % kKAlignment != 0 || p.ldw % kKAlignment != 0 || !is_aligned(p.A, 16) || !is_aligned(p.W, 16))
    return Status::kErrorMisaligned;
  return p.epilogue.validate(p.M, p.N);
}

}  // namespace quamba::gemm
