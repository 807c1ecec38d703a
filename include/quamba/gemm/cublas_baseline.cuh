// quamba/gemm/cublas_baseline.cuh: vendor baselines behind the family's conventions.
//
// Same layouts as the int8 kernels (C(M, N) = A(M, K) · W(N, K)ᵀ, row-major, strides in
// elements), computed by cuBLAS / cuBLASLt with a caller-provided handle:
//   gemm_f16_cublas:   A, W, C __half; fp32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F),
//                      C = alpha·A·Wᵀ + beta·C. Also the fp16 model path's linear layer.
//   CublasLtI8Gemm:    A, W int8, C int32 = A·Wᵀ exactly (cuBLASLt IMMA, CUBLAS_COMPUTE_32I).
//                      A plan built once per shape (descriptors + heuristic algorithm), run
//                      many times; caller-provided workspace (workspace_bytes()).
// Row-major C(M, N) is column-major Cᵀ(N, M), so both calls compute Cᵀ = W·Aᵀ with W as the
// transposed ("T") operand and A as the plain ("N") operand: the TN layout that int8 needs.
// Users link CUDA::cublas and CUDA::cublasLt. Nothing here allocates device memory or syncs.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::gemm {

struct GemmF16Params {
  int64_t M = 0, N = 0, K = 0;
  const __half* A = nullptr;
  int64_t lda = 0;
  const __half* W = nullptr;
  int64_t ldw = 0;
  __half* C = nullptr;
  int64_t ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
};

inline Status can_implement_f16_cublas(const GemmF16Params& p) {
  if (p.M < 0 || p.N <= 0 || p.K <= 0 || !p.A || !p.W || !p.C) return Status::kErrorInvalidArgument;
  if (p.lda < p.K || p.ldw < p.K || p.ldc < p.N) return Status::kErrorInvalidArgument;
  const int64_t kMax = 0x7fffffff;
  if (p.M > kMax || p.N > kMax || p.K > kMax || p.lda > kMax || p.ldw > kMax || p.ldc > kMax)
    return Status::kErrorNotSupported;
  return Status::kSuccess;
}

// Makes `stream` the handle's stream, calling cublasSetStream only when it differs: that call
// also resets the handle's workspace to cuBLAS's default pool, which would drop a caller's
// cublasSetWorkspace (needed for graph capture, where cuBLAS must not allocate). So a caller
// that owns a workspace sets the stream first, then the workspace, and every later call on the
// same stream keeps it.
inline Status bind_cublas_stream(cublasHandle_t handle, cudaStream_t stream) {
  cudaStream_t current = nullptr;
  if (cublasGetStream(handle, &current) != CUBLAS_STATUS_SUCCESS) return Status::kErrorCuda;
  if (current != stream && cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS) return Status::kErrorCuda;
  return Status::kSuccess;
}

// Runs on `stream` (bind_cublas_stream).
inline Status gemm_f16_cublas(cublasHandle_t handle, const GemmF16Params& p, cudaStream_t stream) {
  if (handle == nullptr) return Status::kErrorInvalidArgument;
  QUAMBA_RETURN_IF_ERROR(can_implement_f16_cublas(p));
  if (p.M == 0) return Status::kSuccess;
  QUAMBA_RETURN_IF_ERROR(bind_cublas_stream(handle, stream));
  const cublasStatus_t s =
      cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(p.N), static_cast<int>(p.M),
                   static_cast<int>(p.K), &p.alpha, p.W, CUDA_R_16F, static_cast<int>(p.ldw), p.A, CUDA_R_16F,
                   static_cast<int>(p.lda), &p.beta, p.C, CUDA_R_16F, static_cast<int>(p.ldc), CUBLAS_COMPUTE_32F,
                   CUBLAS_GEMM_DEFAULT);
  return s == CUBLAS_STATUS_SUCCESS ? Status::kSuccess : Status::kErrorCuda;
}

// int8 x int8 -> int32 through cuBLASLt. Usage:
//   CublasLtI8Gemm g; g.init(lt, M, N, K, lda, ldw, ldc, workspace_limit);   // host only
//   g.run(lt, A, W, C, workspace, stream);  ...  g.destroy();
class CublasLtI8Gemm {
 public:
  CublasLtI8Gemm() = default;
  CublasLtI8Gemm(const CublasLtI8Gemm&) = delete;
  CublasLtI8Gemm& operator=(const CublasLtI8Gemm&) = delete;
  ~CublasLtI8Gemm() { destroy(); }

  // Builds the descriptors and picks the heuristic's first algorithm that needs at most
  // workspace_limit bytes. kErrorNotSupported when cuBLASLt offers none for this shape.
  Status init(cublasLtHandle_t lt, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldw, int64_t ldc,
              size_t workspace_limit) {
    destroy();
    if (lt == nullptr || M <= 0 || N <= 0 || K <= 0 || lda < K || ldw < K || ldc < N)
      return Status::kErrorInvalidArgument;
    const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    bool good = cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32I, CUDA_R_32I) == CUBLAS_STATUS_SUCCESS;
    good = good && cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)) ==
                       CUBLAS_STATUS_SUCCESS;
    good = good && cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)) ==
                       CUBLAS_STATUS_SUCCESS;
    // Column-major views: W as (K, N) ld ldw (transposed by op), A as (K, M) ld lda, C as (N, M).
    good = good && cublasLtMatrixLayoutCreate(&w_, CUDA_R_8I, K, N, ldw) == CUBLAS_STATUS_SUCCESS;
    good = good && cublasLtMatrixLayoutCreate(&a_, CUDA_R_8I, K, M, lda) == CUBLAS_STATUS_SUCCESS;
    good = good && cublasLtMatrixLayoutCreate(&c_, CUDA_R_32I, N, M, ldc) == CUBLAS_STATUS_SUCCESS;
    good = good && cublasLtMatmulPreferenceCreate(&pref_) == CUBLAS_STATUS_SUCCESS;
    good = good && cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                        &workspace_limit, sizeof(workspace_limit)) ==
                       CUBLAS_STATUS_SUCCESS;
    if (!good) {
      destroy();
      return Status::kErrorCuda;
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(lt, op_, w_, a_, c_, c_, pref_, 1, &result, &found) !=
            CUBLAS_STATUS_SUCCESS ||
        found == 0) {
      destroy();
      return Status::kErrorNotSupported;
    }
    algo_ = result.algo;
    workspace_bytes_ = result.workspaceSize;
    ready_ = true;
    return Status::kSuccess;
  }

  size_t workspace_bytes() const { return workspace_bytes_; }

  Status run(cublasLtHandle_t lt, const int8_t* A, const int8_t* W, int32_t* C, void* workspace,
             size_t workspace_size, cudaStream_t stream) const {
    if (!ready_) return Status::kErrorInvalidArgument;
    if (lt == nullptr || A == nullptr || W == nullptr || C == nullptr) return Status::kErrorInvalidArgument;
    if (workspace_size < workspace_bytes_ || (workspace_bytes_ > 0 && workspace == nullptr))
      return Status::kErrorWorkspaceTooSmall;
    const int32_t alpha = 1, beta = 0;
    const cublasStatus_t s = cublasLtMatmul(lt, op_, &alpha, W, w_, A, a_, &beta, C, c_, C, c_, &algo_, workspace,
                                            workspace_size, stream);
    return s == CUBLAS_STATUS_SUCCESS ? Status::kSuccess : Status::kErrorCuda;
  }

  void destroy() {
    if (pref_) cublasLtMatmulPreferenceDestroy(pref_);
    if (c_) cublasLtMatrixLayoutDestroy(c_);
    if (a_) cublasLtMatrixLayoutDestroy(a_);
    if (w_) cublasLtMatrixLayoutDestroy(w_);
    if (op_) cublasLtMatmulDescDestroy(op_);
    pref_ = nullptr;
    c_ = a_ = w_ = nullptr;
    op_ = nullptr;
    ready_ = false;
    workspace_bytes_ = 0;
  }

 private:
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t w_ = nullptr, a_ = nullptr, c_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  size_t workspace_bytes_ = 0;
  bool ready_ = false;
};

}  // namespace quamba::gemm
