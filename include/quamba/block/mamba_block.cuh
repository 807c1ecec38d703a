// quamba/block/mamba_block.cuh: one Mamba1 block on the GPU, fp16 and W8A8 (SPEC §1, §2),
// prefill (a chunk of L tokens for B sequences, states carried) and decode (one token for each
// of B sequences, per-sequence caches, optional state index).
//
// Shapes (M = B·L token rows, token-major, channel fastest; strides in elements):
//   residual    (M, D) fp32, in/out. The block normalizes it as it is (the previous block's
//               out_proj already added its output into it, see below) and adds its own out_proj
//               output into it: residual += y · W_outᵀ. So after layer ℓ the buffer holds
//               r_ℓ + h_ℓ, exactly the value reference::block_* forms at the start of layer ℓ+1
//               (fp32 addition commutes), and norm_f needs no separate add.
//   conv_state  (S, E, K) int8 (scale s_xz, W8A8) or fp16 (fp16 path): the last K inputs x before
//               the conv, slot 0 oldest. ssm_state (S, E, N) fp32. S = num_slots.
//   Prefill: sequence b uses slot first_slot + b (consecutive slots: the conv and scan kernels
//   take one batch stride). Decode: sequence b uses slot state_idx[b] (device int32, optional;
//   slot b without it).
//
// W8A8 (prefill_i8 / step_i8) is reference::block_prefill_i8 / block_step_i8 step by step:
//   1 norm::add_rmsnorm -> int8 h_q          5 gemm::run Requant (dt_proj, K = Rp, see weights)
//   2 gemm::run Requant (in_proj) -> xz_q     6 scan int8 -> fp16 y (gated)
//   3 conv1d int8 (+SiLU, requant) -> u_q     7 hadamard fp16 -> int8 (or plain quantize)
//   4 gemm::run Requant (x_proj, Xp rows)     8 gemm::run DequantF32 with residual (in place)
// Differences from the reference that can move an int8 value by one step: y is fp16 before the
// rotation (the reference keeps fp32), RMSNorm statistics are fp32 (reference: double), the
// conv's SiLU uses approximate exp/rcp, the Hadamard sums in a different order.
// fp16 (prefill_f16 / step_f16): fp16 RMSNorm output, cuBLAS fp16 GEMMs with fp32 accumulation
// (in_proj, x_proj, dt_proj: fp16 out; out_proj: fp32 out with beta = 1 into the residual),
// fp16 conv (fp32 weights) and scan (fp32 A, D, δ bias).
//
// Calibration (fp16 prefill with an ObserverCtx): observe() at every quant::Site with device
// views of one sequence's rows (call with B = 1). kXd: when Rp > R the x_proj output row has
// zero padding columns, so it is observed as two views (dt_low [0, R), then B|C [Rp, Xp)).
// kORotated: y is rotated fp16 -> fp16 with 1/√E into the workspace's scratch first (only when E
// is a supported Hadamard size).
//
// Workspace: block_workspace_plan(dims, max_rows, ...) sizes every activation for max_rows
// token rows (the prefill chunk, or the decode batch), never for a whole prompt.
// Nothing here allocates, synchronizes, or aborts; every call can be captured in a CUDA graph
// (cuBLAS needs a caller-set workspace for that: cublasSetWorkspace).
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "quamba/block/step_kernels.cuh"
#include "quamba/block/weights.cuh"
#include "quamba/conv1d/causal_conv1d.cuh"
#include "quamba/core/cuda_check.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/core/workspace.hpp"
#include "quamba/gemm/cublas_baseline.cuh"
#include "quamba/gemm/gemm.cuh"
#include "quamba/hadamard/hadamard.cuh"
#include "quamba/norm/add_rmsnorm.cuh"
#include "quamba/quant/observer_hook.hpp"
#include "quamba/scan/scan.cuh"

namespace quamba::block {

enum class Dtype { kF16, kI8 };

// Activation buffers of one block call, all (rows, C) row-major, rows <= max_rows.
struct BlockWorkspace {
  int64_t max_rows = 0;
  Dtype dtype = Dtype::kI8;
  void* hn = nullptr;     // (M, D)  int8 h_q / fp16 normed
  void* xz = nullptr;     // (M, 2E) int8 / fp16
  void* u = nullptr;      // (M, E)  int8 / fp16
  void* xdbl = nullptr;   // (M, Xp) int8 / fp16
  void* dt = nullptr;     // (M, E)  int8 / fp16 (raw dt_proj output)
  __half* y = nullptr;    // (M, E)  fp16 gated scan output
  void* yo = nullptr;     // (M, E)  int8 rotated+quantized y (W8A8) / fp16 rotated y (calibration)
  void* gemm = nullptr;   // W8A8: split-K partial sums of the int8 GEMMs (gemm::kSplitKWorkspaceBound bytes)
};

// rotated_scratch: fp16 path only, the kORotated scratch (calibration with a Hadamard size E).
inline WorkspacePlan block_workspace_plan(const BlockDims& d, int64_t max_rows, Dtype dt, bool rotated_scratch) {
  const size_t M = static_cast<size_t>(max_rows), es = dt == Dtype::kI8 ? 1 : 2;
  WorkspacePlan p;
  p.add<char>(M * d.D * es).add<char>(M * 2 * d.E * es).add<char>(M * d.E * es).add<char>(M * d.Xp * es);
  p.add<char>(M * d.E * es).add<__half>(M * d.E);
  if (dt == Dtype::kI8) p.add<int8_t>(M * d.E).add<char>(gemm::kSplitKWorkspaceBound);
  else if (rotated_scratch) p.add<__half>(M * d.E);
  return p;
}

inline Status carve_block_workspace(WorkspaceCarver& c, const BlockDims& d, int64_t max_rows, Dtype dt,
                                    bool rotated_scratch, BlockWorkspace* out) {
  const size_t M = static_cast<size_t>(max_rows), es = dt == Dtype::kI8 ? 1 : 2;
  BlockWorkspace w;
  w.max_rows = max_rows;
  w.dtype = dt;
  w.hn = c.take<char>(M * d.D * es);
  w.xz = c.take<char>(M * 2 * d.E * es);
  w.u = c.take<char>(M * d.E * es);
  w.xdbl = c.take<char>(M * d.Xp * es);
  w.dt = c.take<char>(M * d.E * es);
  w.y = c.take<__half>(M * d.E);
  if (dt == Dtype::kI8) {
    w.yo = c.take<int8_t>(M * d.E);
    w.gemm = c.take<char>(gemm::kSplitKWorkspaceBound);
  } else if (rotated_scratch) {
    w.yo = c.take<__half>(M * d.E);
  }
  QUAMBA_RETURN_IF_ERROR(c.status());
  *out = w;
  return Status::kSuccess;
}

struct PrefillIO {
  int64_t B = 0, L = 0;             // B sequences of L tokens; row b·L + t
  float* residual = nullptr;        // (B·L, D) fp32 in/out
  void* conv_state = nullptr;       // (S, E, K) int8 / fp16
  float* ssm_state = nullptr;       // (S, E, N) fp32
  int64_t num_slots = 0;            // S
  int64_t first_slot = 0;           // sequence b -> slot first_slot + b
  // W8A8: compute dt_proj inside the scan (scan::PrefillParamsI8::dt_weight: the same bits, one
  // GEMM launch and the (M, E) δ round trip through memory fewer) when the scan supports the
  // shape (Rp <= scan::kMaxFusedDtK). Off by default: on an H100 the fused scan takes 181 µs at
  // E = 5120, L = 2048 against 116 + 20 µs for the scan and the dt_proj GEMM (bench/RESULTS.md
  // run W).
  bool fuse_dt_proj = false;
  // W8A8: launch every kernel of the block as a programmatic dependent of the previous one
  // (core/launch.cuh), so each launch and prologue overlaps the previous kernel's tail. Only for
  // devices of compute capability 9.0 and up (device_supports_pdl).
  bool pdl = false;
};

enum class StepKernels { kAuto, kFused, kUnfused };

struct StepIO {
  int64_t B = 0;                     // sequences, one token each
  float* residual = nullptr;         // (B, D) fp32 in/out
  void* conv_state = nullptr;        // (S, E, K)
  float* ssm_state = nullptr;        // (S, E, N)
  int64_t num_slots = 0;             // S
  const int32_t* state_idx = nullptr;  // (B) device, optional (distinct entries)
  int32_t* error_flag = nullptr;     // optional device flag: set to 1 by a bad state_idx entry
  // W8A8 step kernels: kAuto = the fused four-kernel step (block/step_kernels.cuh) for B = 1
  // (measured faster there; its rotation prologue handles rows one after another, which made
  // B = 8 slower than the eight-kernel step), else the eight-kernel step; kFused = fused
  // whenever B <= kStepMaxRows and the shapes allow; kUnfused = always the eight-kernel step.
  StepKernels kernels = StepKernels::kAuto;
  // Launch the step's kernels as programmatic dependents (core/launch.cuh). Only for devices
  // of compute capability 9.0 and up (device_supports_pdl).
  bool pdl = false;
  // With pdl: no kernel of this step's chain of programmatic launches writes the layer's conv
  // and ssm states or state_idx (for example, each step's chain begins with an ordinary launch,
  // as the model's decode begins with the embedding, and a layer's states are written only by
  // that layer). The in_proj and scan kernels then read the states before their dependency waits
  // (prefetch_state). Leave false when steps are chained back to back.
  bool states_settled = false;
  // Fused step: the in_proj kernel stages each CTA's weight rows in shared memory before its
  // dependency wait (InProjStepParams::stage_weights; the same bits). Default on: TPOT batch 1
  // 1.42 ms against 1.51 with the rows held in registers (H200, bench/RESULTS.md run AD).
  bool stage_in_proj = true;
};

// Calibration context of the fp16 forward.
struct ObserverCtx {
  quant::ObserverHook* hook = nullptr;
  int64_t layer = 0;
};

namespace detail {

inline Status check_prefill_io(const BlockDims& d, const BlockWorkspace& ws, const PrefillIO& io, Dtype dt) {
  if (ws.dtype != dt || !ws.hn || !ws.xz || !ws.u || !ws.xdbl || !ws.dt || !ws.y) return Status::kErrorInvalidArgument;
  if (io.B <= 0 || io.L <= 0 || io.B * io.L > ws.max_rows) return Status::kErrorInvalidArgument;
  if (!io.residual || !io.conv_state || !io.ssm_state) return Status::kErrorInvalidArgument;
  if (io.first_slot < 0 || io.first_slot + io.B > io.num_slots) return Status::kErrorOutOfRange;
  return Status::kSuccess;
}

inline Status check_step_io(const BlockDims& d, const BlockWorkspace& ws, const StepIO& io, Dtype dt) {
  if (ws.dtype != dt || !ws.hn || !ws.xz || !ws.u || !ws.xdbl || !ws.dt || !ws.y) return Status::kErrorInvalidArgument;
  if (io.B <= 0 || io.B > ws.max_rows || !io.residual || !io.conv_state || !io.ssm_state || io.num_slots <= 0)
    return Status::kErrorInvalidArgument;
  if (!io.state_idx && io.B > io.num_slots) return Status::kErrorInvalidArgument;
  return Status::kSuccess;
}

// y (M, E) fp16 -> q8(y · inv_s): the out_proj input of a model quantized without the rotation.
// Elementwise and tiny next to the GEMMs; 8 halves per thread keep the loads 16 bytes wide.
template <int kThreads>
__global__ void __launch_bounds__(kThreads) quantize_f16_i8_kernel(const __half* x, int8_t* q, int64_t n8, float inv_s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  grid_dependency_wait();  // pdl: before the early return, so the grid never ends before its prerequisite
  if (i >= n8) return;
  const Vec<__half, 8> v = reinterpret_cast<const Vec<__half, 8>*>(x)[i];
  Vec<int8_t, 8> o;
#pragma unroll
  for (int j = 0; j < 8; ++j) o[j] = quantize_i8(__half2float(v[j]), inv_s);
  reinterpret_cast<Vec<int8_t, 8>*>(q)[i] = o;
}

// Contiguous (M, E) with E % 16 == 0 and 256-byte aligned workspace buffers: n % 8 == 0.
inline Status quantize_f16_i8(const __half* x, int8_t* q, int64_t n, float inv_s, cudaStream_t s, bool pdl = false) {
  if (!x || !q || n < 0 || n % 8 != 0 || !is_aligned(x, 16) || !is_aligned(q, 8)) return Status::kErrorInvalidArgument;
  if (n == 0) return Status::kSuccess;
  constexpr int kThreads = 256;
  const int64_t n8 = n / 8, blocks = (n8 + kThreads - 1) / kThreads;
  return launch_kernel(quantize_f16_i8_kernel<kThreads>, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0, s,
                       pdl, x, q, n8, inv_s);
}

// gemm_ws: the block's split-K workspace (BlockWorkspace::gemm), or nullptr.
inline Status requant_gemm(const int8_t* A, int64_t lda, const int8_t* W, int64_t M, int64_t N, int64_t K, int8_t* C,
                           int64_t ldc, float alpha, void* gemm_ws, cudaStream_t s, bool pdl = false) {
  gemm::GemmParams<gemm::Requant> g;
  g.pdl = pdl;
  g.M = M; g.N = N; g.K = K;
  g.A = A; g.lda = lda;
  g.W = W; g.ldw = K;
  g.C = C; g.ldc = ldc;
  g.epilogue.alpha = alpha;
  return gemm::run(g, gemm_ws, s, gemm::GemmPath::kAuto);
}

template <typename T, int R>
TensorView<const T, R> cview(const void* p, const int64_t (&shape)[R], const int64_t (&stride)[R]) {
  return make_strided_view<const T, R>(static_cast<const T*>(p), shape, stride);
}

// Steps 1, 2, 4, 5 of the W8A8 block (norm, in_proj, then after the conv x_proj and dt_proj)
// and 7, 8 (rotation, out_proj) are the same for prefill and decode; `conv` and `scan` are the
// two stateful steps.
// scan_fuses_dt: step 5 runs inside `scan` (the prefill scan's fused dt_proj), which then gets
// no δraw (dtq = nullptr). pdl: every launch made here is a programmatic dependent of the
// previous kernel (the caller's conv and scan set it themselves).
template <class Conv, class Scan>
Status block_i8(const BlockDims& d, const LayerI8& w, const BlockWorkspace& ws, int64_t M, float* residual,
                cudaStream_t s, Conv&& conv, Scan&& scan, bool scan_fuses_dt = false, bool pdl = false) {
  const int64_t D = d.D, E = d.E;
  auto* hq = static_cast<int8_t*>(ws.hn);
  auto* xz = static_cast<int8_t*>(ws.xz);
  auto* u = static_cast<int8_t*>(ws.u);
  auto* xd = static_cast<int8_t*>(ws.xdbl);
  auto* dtq = static_cast<int8_t*>(ws.dt);
  auto* yq = static_cast<int8_t*>(ws.yo);
  // 1. h_q = q(RMSNorm(r)·γ / s_h)
  norm::AddRmsNormParams<float, int8_t> np;
  np.residual = residual; np.residual_stride = D;
  np.gamma = w.norm_gamma;
  np.out = hq; np.out_stride = D;
  np.M = M; np.D = static_cast<int>(D); np.eps = d.eps; np.inv_scale = w.s.inv_s_h;
  np.pdl = pdl;
  QUAMBA_RETURN_IF_ERROR(norm::run(np, nullptr, s));
  // 2. xz_q = q(acc · s_Win·s_h/s_xz)
  QUAMBA_RETURN_IF_ERROR(requant_gemm(hq, D, w.in_proj, M, 2 * E, D, xz, 2 * E, w.s.alpha_in, ws.gemm, s, pdl));
  // 3. u_q = q(SiLU(conv(x_q)) / s_u), conv state carried
  QUAMBA_RETURN_IF_ERROR(conv(xz, u));
  // 4. xdbl_q = q(acc · s_Wx·s_u/s_xd), Xp columns (zero padding rows of W_x give exact zeros)
  QUAMBA_RETURN_IF_ERROR(requant_gemm(u, E, w.x_proj, M, d.Xp, E, xd, d.Xp, w.s.alpha_x, ws.gemm, s, pdl));
  // 5. δraw_q = q(acc · s_Wdt·s_xd/s_dt): K = Rp columns of xdbl against W_dt's zero-padded columns
  if (!scan_fuses_dt)
    QUAMBA_RETURN_IF_ERROR(requant_gemm(xd, d.Xp, w.dt_proj, M, E, d.Rp, dtq, E, w.s.alpha_dt, ws.gemm, s, pdl));
  // 6. scan (fp32 state) -> fp16 gated y
  QUAMBA_RETURN_IF_ERROR(scan(xz, u, xd, scan_fuses_dt ? nullptr : dtq, ws.y));
  // 7. yh_q = q(H·y·(1/√E)/s_o), or q(y/s_o)
  if (w.use_hadamard) {
    hadamard::HadamardParams<__half, int8_t> hp;
    hp.x = ws.y; hp.out = yq; hp.rows = M; hp.n = E;
    hp.x_row_stride = E; hp.out_row_stride = E; hp.scale = w.s.out_factor;
    hp.pdl = pdl;
    QUAMBA_RETURN_IF_ERROR(hadamard::run(hp, nullptr, s));
  } else {
    QUAMBA_RETURN_IF_ERROR(quantize_f16_i8(ws.y, yq, M * E, w.s.out_factor, s, pdl));
  }
  // 8. residual += acc · s_o·s_Wout' (fp32, in place: each element is read before it is written)
  gemm::GemmParams<gemm::DequantF32> g;
  g.M = M; g.N = D; g.K = E;
  g.A = yq; g.lda = E;
  g.W = w.out_proj; g.ldw = E;
  g.C = residual; g.ldc = D;
  g.epilogue.alpha = w.s.alpha_out;
  g.epilogue.residual = residual;
  g.epilogue.ldr = D;
  g.pdl = pdl;
  return gemm::run(g, ws.gemm, s, gemm::GemmPath::kAuto);
}

inline Status observe(const ObserverCtx* obs, quant::Site site, const void* p, int64_t rows, int64_t cols,
                      int64_t stride, cudaStream_t s) {
  if (!obs || !obs->hook) return Status::kSuccess;
  quant::DeviceMatrixView v;
  v.data = p; v.type = quant::ElemType::kF16; v.rows = rows; v.cols = cols; v.row_stride = stride;
  return obs->hook->observe(obs->layer, site, v, s);
}

}  // namespace detail

// C(M, N) fp32 = A(M, K)·W(N, K)ᵀ + beta·C with fp16 A, W and fp32 accumulation (cuBLAS).
// beta = 1 adds into C (the out_proj residual add); beta = 0 overwrites (lm_head logits).
inline Status gemm_f16_f32out(cublasHandle_t h, int64_t M, int64_t N, int64_t K, const __half* A, int64_t lda,
                              const __half* W, int64_t ldw, float* C, int64_t ldc, float beta, cudaStream_t s) {
  if (!h || !A || !W || !C || M < 0 || N <= 0 || K <= 0 || lda < K || ldw < K || ldc < N)
    return Status::kErrorInvalidArgument;
  const int64_t kMax = 0x7fffffff;
  if (M > kMax || N > kMax || K > kMax || lda > kMax || ldw > kMax || ldc > kMax) return Status::kErrorNotSupported;
  if (M == 0) return Status::kSuccess;
  QUAMBA_RETURN_IF_ERROR(gemm::bind_cublas_stream(h, s));
  const float alpha = 1.0f;
  const cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                                         static_cast<int>(K), &alpha, W, CUDA_R_16F, static_cast<int>(ldw), A,
                                         CUDA_R_16F, static_cast<int>(lda), &beta, C, CUDA_R_32F,
                                         static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return st == CUBLAS_STATUS_SUCCESS ? Status::kSuccess : Status::kErrorCuda;
}

// ---- W8A8 ---------------------------------------------------------------------------------------

inline Status prefill_i8(const BlockDims& d, const LayerI8& w, const BlockWorkspace& ws, const PrefillIO& io,
                         cudaStream_t s) {
  QUAMBA_RETURN_IF_ERROR(detail::check_prefill_io(d, ws, io, Dtype::kI8));
  if (!ws.yo) return Status::kErrorInvalidArgument;
  const int64_t B = io.B, L = io.L, E = d.E, N = d.N, K = d.K;
  int8_t* conv_state = static_cast<int8_t*>(io.conv_state) + io.first_slot * E * K;
  float* ssm_state = io.ssm_state + io.first_slot * E * N;
  auto conv = [&](const int8_t* xz, int8_t* u) {
    conv1d::Conv1dParams<int8_t> p;
    p.x = xz; p.x_batch_stride = L * 2 * E; p.x_token_stride = 2 * E;
    p.out = u; p.out_batch_stride = L * E; p.out_token_stride = E;
    p.weight = w.conv_w; p.bias = w.conv_b;
    p.state_in = conv_state; p.state_in_batch_stride = E * K;
    p.state_out = conv_state; p.state_out_batch_stride = E * K;
    p.B = B; p.L = L; p.C = static_cast<int>(E); p.K = static_cast<int>(K);
    p.scale_wx = w.s.conv_scale_wx; p.s_b = w.s.conv_s_b; p.inv_s_out = w.s.conv_inv_s_u;
    p.pdl = io.pdl;
    return conv1d::run(p, nullptr, s);
  };
  auto scan = [&](const int8_t* xz, const int8_t* u, const int8_t* xd, const int8_t* dtq, __half* y) {
    const int64_t Xp = d.Xp;
    scan::PrefillParamsI8 p;
    p.u = detail::cview<int8_t, 3>(u, {B, L, E}, {L * E, E, 1});
    if (dtq) {
      p.delta = detail::cview<int8_t, 3>(dtq, {B, L, E}, {L * E, E, 1});
    } else {  // fused dt_proj: δraw from the dt_low columns of xdbl
      p.dt_x = detail::cview<int8_t, 3>(xd, {B, L, d.Rp}, {L * Xp, Xp, 1});
      p.dt_weight = w.dt_proj;
      p.dt_alpha = w.s.alpha_dt;
    }
    p.pdl = io.pdl;
    p.z = detail::cview<int8_t, 3>(xz + E, {B, L, E}, {L * 2 * E, 2 * E, 1});
    p.Bm = detail::cview<int8_t, 3>(xd + d.Rp, {B, L, N}, {L * Xp, Xp, 1});
    p.Cm = detail::cview<int8_t, 3>(xd + d.Rp + N, {B, L, N}, {L * Xp, Xp, 1});
    p.s_u = w.s.s_u; p.s_delta = w.s.s_dt; p.s_z = w.s.s_xz; p.s_B = w.s.s_xd; p.s_C = w.s.s_xd;
    p.A_log = w.A_log; p.s_A = w.s.s_A;
    p.D = w.Dskip; p.s_D = w.s.s_D;
    p.delta_bias = w.dt_bias; p.s_delta_bias = w.s.s_bdt;
    p.initial_state = ssm_state; p.final_state = ssm_state;
    p.y = make_strided_view<__half, 3>(y, {B, L, E}, {L * E, E, 1});
    return scan::run(p, nullptr, s);
  };
  const bool fuse_dt = io.fuse_dt_proj && d.Rp <= scan::kMaxFusedDtK;
  return detail::block_i8(d, w, ws, B * L, io.residual, s, conv, scan, fuse_dt, io.pdl);
}

namespace detail {

// The scan update of a W8A8 step; δraw is left to the caller (`delta`, or the fused dt_proj).
inline scan::DecodeParamsI8 step_scan_params(const BlockDims& d, const LayerI8& w, const StepIO& io,
                                             const int8_t* xz, const int8_t* u, const int8_t* xd, __half* y) {
  const int64_t B = io.B, E = d.E, N = d.N;
  scan::DecodeParamsI8 p;
  p.u = cview<int8_t, 2>(u, {B, E}, {E, 1});
  p.z = cview<int8_t, 2>(xz + E, {B, E}, {2 * E, 1});
  p.Bm = cview<int8_t, 2>(xd + d.Rp, {B, N}, {d.Xp, 1});
  p.Cm = cview<int8_t, 2>(xd + d.Rp + N, {B, N}, {d.Xp, 1});
  p.s_u = w.s.s_u; p.s_delta = w.s.s_dt; p.s_z = w.s.s_xz; p.s_B = w.s.s_xd; p.s_C = w.s.s_xd;
  p.A_log = w.A_log; p.s_A = w.s.s_A;
  p.D = w.Dskip; p.s_D = w.s.s_D;
  p.delta_bias = w.dt_bias; p.s_delta_bias = w.s.s_bdt;
  p.states = io.ssm_state; p.num_slots = io.num_slots; p.state_idx = io.state_idx;
  p.y = make_strided_view<__half, 2>(y, {B, E}, {E, 1});
  return p;
}

// The fused step's first and last kernels (step_kernels.cuh).
struct FusedStep {
  InProjStepParams in;
  OutProjStepParams out;
};

inline FusedStep fused_step_params(const BlockDims& d, const LayerI8& w, const BlockWorkspace& ws, const StepIO& io) {
  FusedStep f;
  InProjStepParams& a = f.in;
  a.M = static_cast<int>(io.B); a.D = static_cast<int>(d.D); a.E = static_cast<int>(d.E); a.K = static_cast<int>(d.K);
  a.residual = io.residual; a.gamma = w.norm_gamma; a.eps = d.eps; a.inv_s_h = w.s.inv_s_h;
  a.w_in = w.in_proj; a.alpha_in = w.s.alpha_in;
  a.conv_state = static_cast<int8_t*>(io.conv_state); a.num_slots = io.num_slots;
  a.state_idx = io.state_idx; a.error_flag = io.error_flag;
  a.conv_w = w.conv_w; a.conv_b = w.conv_b;
  a.conv_scale_wx = w.s.conv_scale_wx; a.conv_s_b = w.s.conv_s_b; a.conv_inv_s_u = w.s.conv_inv_s_u;
  a.u = static_cast<int8_t*>(ws.u); a.xz = static_cast<int8_t*>(ws.xz); a.pdl = io.pdl;
  a.prefetch_state = io.pdl && io.states_settled;
  a.stage_weights = io.stage_in_proj;
  OutProjStepParams& o = f.out;
  o.M = a.M; o.D = a.D; o.E = a.E;
  o.y = ws.y; o.rotate = w.use_hadamard; o.factor = w.s.out_factor;
  o.w_out = w.out_proj; o.alpha_out = w.s.alpha_out; o.residual = io.residual; o.pdl = io.pdl;
  return f;
}

// The fused kernels take these shapes, and their shared memory stays within what every
// supported architecture opts in to (sm_86 / sm_89: 99 KiB), so the choice never depends on the
// device.
inline bool fused_step_fits(const FusedStep& f) {
  const size_t out_smem = size_t(f.out.M) * f.out.E + (f.out.rotate ? 4 * size_t(f.out.E) : 0);
  // can_implement(f.in) also checks the in_proj kernel's shared memory (48 KiB, static included).
  return can_implement(f.in) == Status::kSuccess && can_implement(f.out) == Status::kSuccess &&
         out_smem <= 99 * 1024;
}

// The W8A8 step as four kernels (step_kernels.cuh): norm + in_proj + conv, x_proj, dt_proj +
// scan, rotation + out_proj.
inline Status step_i8_fused(const BlockDims& d, const LayerI8& w, const BlockWorkspace& ws, const StepIO& io,
                            const FusedStep& f, cudaStream_t s) {
  const int64_t B = io.B, E = d.E;
  auto* u = static_cast<int8_t*>(ws.u);
  auto* xd = static_cast<int8_t*>(ws.xdbl);
  QUAMBA_RETURN_IF_ERROR(block::run(f.in, s));
  QUAMBA_RETURN_IF_ERROR(requant_gemm(u, E, w.x_proj, B, d.Xp, E, xd, d.Xp, w.s.alpha_x, ws.gemm, s, io.pdl));
  scan::DecodeParamsI8 p = step_scan_params(d, w, io, static_cast<int8_t*>(ws.xz), u, xd, ws.y);
  p.dt_x = xd; p.dt_x_stride = d.Xp; p.dt_weight = w.dt_proj; p.dt_k = d.Rp; p.dt_alpha = w.s.alpha_dt;
  p.pdl = io.pdl;
  p.prefetch_state = io.pdl && io.states_settled;
  QUAMBA_RETURN_IF_ERROR(scan::run(p, nullptr, s));
  return block::run(f.out, s);
}

}  // namespace detail

inline Status step_i8(const BlockDims& d, const LayerI8& w, const BlockWorkspace& ws, const StepIO& io,
                      cudaStream_t s) {
  QUAMBA_RETURN_IF_ERROR(detail::check_step_io(d, ws, io, Dtype::kI8));
  if (!ws.yo) return Status::kErrorInvalidArgument;
  if (io.kernels == StepKernels::kFused || (io.kernels == StepKernels::kAuto && io.B == 1)) {
    const detail::FusedStep f = detail::fused_step_params(d, w, ws, io);
    if (detail::fused_step_fits(f)) return detail::step_i8_fused(d, w, ws, io, f, s);
  }
  const int64_t B = io.B, E = d.E, K = d.K;
  auto conv = [&](const int8_t* xz, int8_t* u) {
    conv1d::Conv1dUpdateParams<int8_t> p;
    p.x = xz; p.x_batch_stride = 2 * E;
    p.out = u; p.out_batch_stride = E;
    p.state = static_cast<int8_t*>(io.conv_state); p.state_batch_stride = E * K; p.num_slots = io.num_slots;
    p.state_idx = io.state_idx;
    p.weight = w.conv_w; p.bias = w.conv_b;
    p.B = B; p.C = static_cast<int>(E); p.K = static_cast<int>(K);
    p.scale_wx = w.s.conv_scale_wx; p.s_b = w.s.conv_s_b; p.inv_s_out = w.s.conv_inv_s_u;
    p.error_flag = io.error_flag;
    p.pdl = io.pdl;
    return conv1d::run(p, nullptr, s);
  };
  auto scan = [&](const int8_t* xz, const int8_t* u, const int8_t* xd, const int8_t* dtq, __half* y) {
    scan::DecodeParamsI8 p = detail::step_scan_params(d, w, io, xz, u, xd, y);
    p.delta = detail::cview<int8_t, 2>(dtq, {B, E}, {E, 1});
    p.pdl = io.pdl;
    p.prefetch_state = io.pdl && io.states_settled;
    return scan::run(p, nullptr, s);
  };
  return detail::block_i8(d, w, ws, B, io.residual, s, conv, scan, /*scan_fuses_dt=*/false, io.pdl);
}

// ---- fp16 ---------------------------------------------------------------------------------------

namespace detail {

template <class Conv, class Scan>
Status block_f16(const BlockDims& d, const LayerF16& w, const BlockWorkspace& ws, int64_t M, float* residual,
                 cublasHandle_t h, cudaStream_t s, const ObserverCtx* obs, Conv&& conv, Scan&& scan) {
  using quant::Site;
  const int64_t D = d.D, E = d.E;
  auto* hn = static_cast<__half*>(ws.hn);
  auto* xz = static_cast<__half*>(ws.xz);
  auto* u = static_cast<__half*>(ws.u);
  auto* xd = static_cast<__half*>(ws.xdbl);
  auto* dt = static_cast<__half*>(ws.dt);
  norm::AddRmsNormParams<float, __half> np;
  np.residual = residual; np.residual_stride = D;
  np.gamma = w.norm_gamma;
  np.out = hn; np.out_stride = D;
  np.M = M; np.D = static_cast<int>(D); np.eps = d.eps;
  QUAMBA_RETURN_IF_ERROR(norm::run(np, nullptr, s));
  QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kH, hn, M, D, D, s));

  auto lin = [&](const __half* A, int64_t lda, const __half* W, int64_t N, int64_t K, __half* C, int64_t ldc) {
    gemm::GemmF16Params p;
    p.M = M; p.N = N; p.K = K;
    p.A = A; p.lda = lda; p.W = W; p.ldw = K; p.C = C; p.ldc = ldc;
    return gemm::gemm_f16_cublas(h, p, s);
  };
  QUAMBA_RETURN_IF_ERROR(lin(hn, D, w.in_proj, 2 * E, D, xz, 2 * E));
  QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kXz, xz, M, 2 * E, 2 * E, s));
  QUAMBA_RETURN_IF_ERROR(conv(xz, u));
  QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kU, u, M, E, E, s));
  QUAMBA_RETURN_IF_ERROR(lin(u, E, w.x_proj, d.Xp, E, xd, d.Xp));
  if (d.Rp == d.R) {
    QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kXd, xd, M, d.Xp, d.Xp, s));
  } else {
    QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kXd, xd, M, d.R, d.Xp, s));
    QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kXd, xd + d.Rp, M, 2 * d.N, d.Xp, s));
  }
  QUAMBA_RETURN_IF_ERROR(lin(xd, d.Xp, w.dt_proj, E, d.R, dt, E));
  QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kDt, dt, M, E, E, s));
  QUAMBA_RETURN_IF_ERROR(scan(xz, u, xd, dt, ws.y));
  if (obs && obs->hook) {
    QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kOPlain, ws.y, M, E, E, s));
    if (ws.yo && reference::hadamard_size_supported(E)) {
      hadamard::HadamardParams<__half, __half> hp;
      hp.x = ws.y; hp.out = static_cast<__half*>(ws.yo); hp.rows = M; hp.n = E;
      hp.x_row_stride = E; hp.out_row_stride = E; hp.scale = hadamard::orthonormal_scale(E);
      QUAMBA_RETURN_IF_ERROR(hadamard::run(hp, nullptr, s));
      QUAMBA_RETURN_IF_ERROR(observe(obs, Site::kORotated, ws.yo, M, E, E, s));
    }
  }
  // residual += y · W_outᵀ in fp32 (no fp16 rounding of the block output)
  return gemm_f16_f32out(h, M, D, E, ws.y, E, w.out_proj, E, residual, D, 1.0f, s);
}

}  // namespace detail

// fp16 prefill. obs (optional) observes every calibration site; call with io.B == 1 then.
inline Status prefill_f16(const BlockDims& d, const LayerF16& w, const BlockWorkspace& ws, const PrefillIO& io,
                          cublasHandle_t h, cudaStream_t s, const ObserverCtx* obs = nullptr) {
  QUAMBA_RETURN_IF_ERROR(detail::check_prefill_io(d, ws, io, Dtype::kF16));
  if (obs && obs->hook && io.B != 1) return Status::kErrorInvalidArgument;  // a view is one sample's rows
  const int64_t B = io.B, L = io.L, E = d.E, N = d.N, K = d.K;
  __half* conv_state = static_cast<__half*>(io.conv_state) + io.first_slot * E * K;
  float* ssm_state = io.ssm_state + io.first_slot * E * N;
  auto conv = [&](const __half* xz, __half* u) {
    conv1d::Conv1dParams<__half> p;
    p.x = xz; p.x_batch_stride = L * 2 * E; p.x_token_stride = 2 * E;
    p.out = u; p.out_batch_stride = L * E; p.out_token_stride = E;
    p.weight = w.conv_w; p.bias = w.conv_b;
    p.state_in = conv_state; p.state_in_batch_stride = E * K;
    p.state_out = conv_state; p.state_out_batch_stride = E * K;
    p.B = B; p.L = L; p.C = static_cast<int>(E); p.K = static_cast<int>(K);
    p.silu = true;
    return conv1d::run(p, nullptr, s);
  };
  auto scan = [&](const __half* xz, const __half* u, const __half* xd, const __half* dt, __half* y) {
    const int64_t Xp = d.Xp;
    scan::PrefillParamsF16 p;
    p.u = detail::cview<__half, 3>(u, {B, L, E}, {L * E, E, 1});
    p.delta = detail::cview<__half, 3>(dt, {B, L, E}, {L * E, E, 1});
    p.z = detail::cview<__half, 3>(xz + E, {B, L, E}, {L * 2 * E, 2 * E, 1});
    p.Bm = detail::cview<__half, 3>(xd + d.Rp, {B, L, N}, {L * Xp, Xp, 1});
    p.Cm = detail::cview<__half, 3>(xd + d.Rp + N, {B, L, N}, {L * Xp, Xp, 1});
    p.A = w.A; p.D = w.Dskip; p.delta_bias = w.dt_bias;
    p.initial_state = ssm_state; p.final_state = ssm_state;
    p.y = make_strided_view<__half, 3>(y, {B, L, E}, {L * E, E, 1});
    return scan::run(p, nullptr, s);
  };
  return detail::block_f16(d, w, ws, B * L, io.residual, h, s, obs, conv, scan);
}

inline Status step_f16(const BlockDims& d, const LayerF16& w, const BlockWorkspace& ws, const StepIO& io,
                       cublasHandle_t h, cudaStream_t s) {
  QUAMBA_RETURN_IF_ERROR(detail::check_step_io(d, ws, io, Dtype::kF16));
  const int64_t B = io.B, E = d.E, N = d.N, K = d.K;
  auto conv = [&](const __half* xz, __half* u) {
    conv1d::Conv1dUpdateParams<__half> p;
    p.x = xz; p.x_batch_stride = 2 * E;
    p.out = u; p.out_batch_stride = E;
    p.state = static_cast<__half*>(io.conv_state); p.state_batch_stride = E * K; p.num_slots = io.num_slots;
    p.state_idx = io.state_idx;
    p.weight = w.conv_w; p.bias = w.conv_b;
    p.B = B; p.C = static_cast<int>(E); p.K = static_cast<int>(K);
    p.silu = true;
    p.error_flag = io.error_flag;
    return conv1d::run(p, nullptr, s);
  };
  auto scan = [&](const __half* xz, const __half* u, const __half* xd, const __half* dt, __half* y) {
    scan::DecodeParamsF16 p;
    p.u = detail::cview<__half, 2>(u, {B, E}, {E, 1});
    p.delta = detail::cview<__half, 2>(dt, {B, E}, {E, 1});
    p.z = detail::cview<__half, 2>(xz + E, {B, E}, {2 * E, 1});
    p.Bm = detail::cview<__half, 2>(xd + d.Rp, {B, N}, {d.Xp, 1});
    p.Cm = detail::cview<__half, 2>(xd + d.Rp + N, {B, N}, {d.Xp, 1});
    p.A = w.A; p.D = w.Dskip; p.delta_bias = w.dt_bias;
    p.states = io.ssm_state; p.num_slots = io.num_slots; p.state_idx = io.state_idx;
    p.y = make_strided_view<__half, 2>(y, {B, E}, {E, 1});
    return scan::run(p, nullptr, s);
  };
  return detail::block_f16(d, w, ws, B, io.residual, h, s, nullptr, conv, scan);
}

}  // namespace quamba::block
