// quamba/block/model.cuh: the whole Mamba model on the GPU from the block functions: embedding,
// n_layer blocks over the fp32 residual stream, norm_f and the lm_head (fp16, or the int8 head
// option's int8 rows with per-row scales) with fp32 logits.
//
// Shapes (M token rows, token-major; strides in elements):
//   ids      (M) int32, device; each in [0, V) (a bad id embeds zeros and sets *ws.error_flag)
//   residual (M, D) fp32, the workspace's: embedding output, then every block adds into it
//   logits   (rows, V) fp32, row-major, rows <= ws.logit_rows per head() call
//   caches   ModelCaches: conv (n_layer, S, E, K) int8 / fp16 and ssm (n_layer, S, E, N) fp32
// Prefill (prefill_layers) runs B sequences of L tokens (rows b·L + t) from slots first_slot..;
// decode (step_layers) runs one token for each of B sequences with an optional state index.
// ModelWorkspace is planned for max_rows token rows (the prefill chunk, at least the decode
// batch) and logit_rows logits rows: memory does not depend on the prompt length.
// Nothing here allocates or synchronizes.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "quamba/block/mamba_block.cuh"
#include "quamba/block/weights.cuh"
#include "quamba/core/status.hpp"
#include "quamba/core/workspace.hpp"
#include "quamba/gemm/w8a16.cuh"
#include "quamba/norm/add_rmsnorm.cuh"
#include "quamba/norm/embedding.cuh"

namespace quamba::block {

struct DeviceModelF16 {
  BlockDims dims;
  std::vector<LayerF16> layers;
  HeadWeights head;
};

struct DeviceModelI8 {
  BlockDims dims;
  std::vector<LayerI8> layers;
  HeadWeights head;
};

struct ModelCaches {
  void* conv = nullptr;      // (n_layer, S, E, K) int8 or fp16
  float* ssm = nullptr;      // (n_layer, S, E, N) fp32
  int64_t num_slots = 0;     // S
  size_t conv_elem_bytes = 1;
  size_t conv_bytes(const BlockDims& d) const { return size_t(d.n_layer * num_slots * d.E * d.K) * conv_elem_bytes; }
  size_t ssm_bytes(const BlockDims& d) const { return size_t(d.n_layer * num_slots * d.E * d.N) * sizeof(float); }
  void* conv_layer(const BlockDims& d, int64_t l) const {
    return static_cast<char*>(conv) + size_t(l * num_slots * d.E * d.K) * conv_elem_bytes;
  }
  float* ssm_layer(const BlockDims& d, int64_t l) const { return ssm + l * num_slots * d.E * d.N; }
};

struct ModelWorkspace {
  BlockWorkspace blk;
  int64_t max_rows = 0, logit_rows = 0;
  float* residual = nullptr;  // (max_rows, D)
  int32_t* ids = nullptr;     // (max_rows)
  __half* normed = nullptr;   // (logit_rows, D)
  float* logits = nullptr;    // (logit_rows, V)
  int32_t* error_flag = nullptr;
};

inline WorkspacePlan model_workspace_plan(const BlockDims& d, int64_t max_rows, int64_t logit_rows, Dtype dt,
                                          bool rotated_scratch) {
  WorkspacePlan p = block_workspace_plan(d, max_rows, dt, rotated_scratch);
  const size_t M = size_t(max_rows), R = size_t(logit_rows);
  p.add<float>(M * d.D).add<int32_t>(M).add<__half>(R * d.D).add<float>(R * d.V).add<int32_t>(1);
  return p;
}

inline Status carve_model_workspace(void* base, size_t bytes, const BlockDims& d, int64_t max_rows,
                                    int64_t logit_rows, Dtype dt, bool rotated_scratch, ModelWorkspace* out) {
  if (!out || max_rows <= 0 || logit_rows <= 0) return Status::kErrorInvalidArgument;
  WorkspaceCarver c(base, bytes);
  ModelWorkspace w;
  QUAMBA_RETURN_IF_ERROR(carve_block_workspace(c, d, max_rows, dt, rotated_scratch, &w.blk));
  const size_t M = size_t(max_rows), R = size_t(logit_rows);
  w.max_rows = max_rows;
  w.logit_rows = logit_rows;
  w.residual = c.take<float>(M * d.D);
  w.ids = c.take<int32_t>(M);
  w.normed = c.take<__half>(R * d.D);
  w.logits = c.take<float>(R * d.V);
  w.error_flag = c.take<int32_t>(1);
  QUAMBA_RETURN_IF_ERROR(c.status());
  *out = w;
  return Status::kSuccess;
}

// residual[0:M] = Emb[ids[0:M]] (fp16 table -> fp32, exact; int8 head: float(q)·scale[id]).
inline Status embed(const BlockDims& d, const HeadWeights& hw, const ModelWorkspace& ws, int64_t M, cudaStream_t s) {
  if (M <= 0 || M > ws.max_rows) return Status::kErrorInvalidArgument;
  auto gather = [&](auto p) {  // p: the table (and its scales); the rest is the same for both
    p.table_stride = d.D;
    p.ids = ws.ids;
    p.out = ws.residual; p.out_stride = d.D;
    p.M = M; p.V = d.V; p.D = static_cast<int>(d.D);
    p.error_flag = ws.error_flag;
    return norm::run(p, nullptr, s);
  };
  if (hw.int8) {
    norm::EmbeddingParams<float, int8_t> p;
    p.table = hw.embedding_q; p.row_scale = hw.embedding_scale;
    return gather(p);
  }
  norm::EmbeddingParams<float> p;
  p.table = hw.embedding;
  return gather(p);
}

// logits (rows, V) = RMSNorm_f(residual rows) · lm_headᵀ, the rows `row_stride` apart. The
// normalized rows are fp16 in both heads; the int8 head multiplies them with its int8 rows
// (gemm/w8a16.cuh) instead of cuBLAS on fp16 rows.
inline Status head(const BlockDims& d, const HeadWeights& hw, const ModelWorkspace& ws, float* residual_rows,
                   int64_t row_stride, int64_t rows, float* logits, cublasHandle_t h, cudaStream_t s) {
  if (rows <= 0 || rows > ws.logit_rows || !logits) return Status::kErrorInvalidArgument;
  norm::AddRmsNormParams<float, __half> np;
  np.residual = residual_rows; np.residual_stride = row_stride;
  np.gamma = hw.norm_f;
  np.out = ws.normed; np.out_stride = d.D;
  np.M = rows; np.D = static_cast<int>(d.D); np.eps = d.eps;
  QUAMBA_RETURN_IF_ERROR(norm::run(np, nullptr, s));
  if (hw.int8) {
    gemm::W8A16Params g;
    g.A = ws.normed; g.lda = d.D;
    g.W = hw.lm_head_q; g.ldw = d.D; g.scale = hw.lm_head_scale;
    g.C = logits; g.ldc = d.V;
    g.M = rows; g.N = d.V; g.K = d.D;
    return gemm::run(g, nullptr, s);
  }
  return gemm_f16_f32out(h, rows, d.V, d.D, ws.normed, d.D, hw.lm_head, d.D, logits, d.V, 0.0f, s);
}

// Every block over ws.residual[0 : B·L] (already embedded). obs_hook: fp16 calibration only.
inline Status prefill_layers(const DeviceModelF16& m, const ModelWorkspace& ws, const ModelCaches& c, int64_t B,
                             int64_t L, int64_t first_slot, cublasHandle_t h, cudaStream_t s,
                             quant::ObserverHook* hook = nullptr) {
  for (int64_t l = 0; l < m.dims.n_layer; ++l) {
    PrefillIO io;
    io.B = B; io.L = L; io.residual = ws.residual;
    io.conv_state = c.conv_layer(m.dims, l); io.ssm_state = c.ssm_layer(m.dims, l);
    io.num_slots = c.num_slots; io.first_slot = first_slot;
    ObserverCtx obs{hook, l};
    QUAMBA_RETURN_IF_ERROR(prefill_f16(m.dims, m.layers[size_t(l)], ws.blk, io, h, s, hook ? &obs : nullptr));
  }
  return Status::kSuccess;
}

// fuse_dt_proj / pdl: PrefillIO's switches (dt_proj inside the scan; programmatic dependent
// launch of every kernel, for devices of compute capability 9.0 and up).
inline Status prefill_layers(const DeviceModelI8& m, const ModelWorkspace& ws, const ModelCaches& c, int64_t B,
                             int64_t L, int64_t first_slot, cublasHandle_t, cudaStream_t s,
                             quant::ObserverHook* hook = nullptr, bool fuse_dt_proj = false, bool pdl = false) {
  if (hook) return Status::kErrorNotSupported;  // calibration observes the fp16 model
  for (int64_t l = 0; l < m.dims.n_layer; ++l) {
    PrefillIO io;
    io.B = B; io.L = L; io.residual = ws.residual;
    io.conv_state = c.conv_layer(m.dims, l); io.ssm_state = c.ssm_layer(m.dims, l);
    io.num_slots = c.num_slots; io.first_slot = first_slot;
    io.fuse_dt_proj = fuse_dt_proj; io.pdl = pdl;
    QUAMBA_RETURN_IF_ERROR(prefill_i8(m.dims, m.layers[size_t(l)], ws.blk, io, s));
  }
  return Status::kSuccess;
}

inline Status step_layers(const DeviceModelF16& m, const ModelWorkspace& ws, const ModelCaches& c, int64_t B,
                          const int32_t* state_idx, cublasHandle_t h, cudaStream_t s) {
  for (int64_t l = 0; l < m.dims.n_layer; ++l) {
    StepIO io;
    io.B = B; io.residual = ws.residual;
    io.conv_state = c.conv_layer(m.dims, l); io.ssm_state = c.ssm_layer(m.dims, l);
    io.num_slots = c.num_slots; io.state_idx = state_idx; io.error_flag = ws.error_flag;
    QUAMBA_RETURN_IF_ERROR(step_f16(m.dims, m.layers[size_t(l)], ws.blk, io, h, s));
  }
  return Status::kSuccess;
}

// kernels / pdl / states_settled / stage_in_proj: StepIO's switches (which step kernels;
// programmatic dependent launch; whether the states may be read before the dependency waits;
// in_proj's weights staged in shared memory). states_settled only when
// this call's chain of programmatic launches begins with an ordinary launch, e.g. right after
// block::embed, as the engine's decode does; not when steps are chained back to back.
inline Status step_layers(const DeviceModelI8& m, const ModelWorkspace& ws, const ModelCaches& c, int64_t B,
                          const int32_t* state_idx, cublasHandle_t, cudaStream_t s,
                          StepKernels kernels = StepKernels::kAuto, bool pdl = false, bool states_settled = false,
                          bool stage_in_proj = true) {
  for (int64_t l = 0; l < m.dims.n_layer; ++l) {
    StepIO io;
    io.B = B; io.residual = ws.residual;
    io.conv_state = c.conv_layer(m.dims, l); io.ssm_state = c.ssm_layer(m.dims, l);
    io.num_slots = c.num_slots; io.state_idx = state_idx; io.error_flag = ws.error_flag;
    io.kernels = kernels; io.pdl = pdl; io.states_settled = states_settled; io.stage_in_proj = stage_in_proj;
    QUAMBA_RETURN_IF_ERROR(step_i8(m.dims, m.layers[size_t(l)], ws.blk, io, s));
  }
  return Status::kSuccess;
}

}  // namespace quamba::block
