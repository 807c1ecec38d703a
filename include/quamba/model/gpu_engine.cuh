// quamba/model/gpu_engine.cuh: the Mamba model on the GPU behind the Engine interface
// (model/engine.hpp), fp16 baseline and W8A8 (Quamba recipe), plus the GPU calibration pass.
//
//   make_gpu_engine_fp16(ModelWeights)     fp16 weights (embedding/lm_head fp16, norms fp32)
//   make_gpu_engine_w8a8(QuantizedModel)   int8 weights + fp32 scales, Hadamard-folded out_proj;
//                                          with recipe.int8_head the int8 embedding / lm_head
//                                          rows (per-row scales), else fp16 ones
//   make_gpu_engine_random(config, ...)    weights generated on the device (benchmarks: a
//                                          2.8B-shaped model would take minutes on the host);
//                                          same layouts, random values of Mamba-like ranges
//   calibrate_gpu(ModelWeights, seqs, hook) fp16 forward over each sequence (fresh state, in
//                                          chunks) calling hook->observe at every site and
//                                          hook->end_sample after each sequence
//
// What a GpuEngine owns (all allocated once at creation or reset(batch), never per call):
// a stream, a cuBLAS handle with its own workspace (so calls can be graph-captured), the
// device weights (one blob), caches for `batch` slots (conv (n_layer, batch, E, K) int8/fp16,
// ssm (n_layer, batch, E, N) fp32), and one workspace planned for max(prefill_chunk, batch)
// token rows and max(batch, min(prefill_chunk, 64)) logits rows. So device memory does not
// depend on the prompt length: prefill splits n tokens into chunks of opts.prefill_chunk with
// the conv and ssm states carried (the result equals one prefill of n tokens).
// Host-side ids are checked before anything runs: a bad id returns kErrorOutOfRange with every
// state unchanged. decode() runs the first step after creation/reset eagerly, then captures the
// step once into a CUDA graph and replays it (set_use_graph(false) keeps it eager).
// prefill()/decode() synchronize the engine's stream before returning (their outputs are host
// arrays); decode_device() is the asynchronous form used by benchmarks.
// Errors are Status values (with a one-line message where a factory takes `err`); nothing aborts.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "quamba/block/model.cuh"
#include "quamba/block/weights.cuh"
#include "quamba/core/arch.hpp"
#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/status.hpp"
#include "quamba/model/engine.hpp"
#include "quamba/norm/embedding.cuh"
#include "quamba/quant/observer_hook.hpp"
#include "quamba/reference/model.hpp"

namespace quamba::model {

inline bool gpu_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
    cudaGetLastError();
    return false;
  }
  return check_min_arch() == Status::kSuccess;
}

// Device bytes held by an engine (cudaMalloc'd by it; cuBLAS's own handle state excluded).
struct GpuMemoryReport {
  int64_t weights = 0;    // weight blob
  int64_t caches = 0;     // conv + ssm states of every slot
  int64_t workspace = 0;  // activations for one chunk, logits rows, cuBLAS workspace
  int64_t total() const { return weights + caches + workspace; }
};

namespace detail {

// Owning cudaMalloc'd bytes.
class DeviceBytes {
 public:
  DeviceBytes() = default;
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes() { release(); }
  Status allocate(size_t bytes) {
    release();
    if (bytes == 0) return Status::kSuccess;
    if (cudaMalloc(&p_, bytes) != cudaSuccess) {
      cudaGetLastError();
      p_ = nullptr;
      return Status::kErrorCuda;
    }
    n_ = bytes;
    return Status::kSuccess;
  }
  void release() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  void* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// ---- device-side random weights (benchmarks) ---------------------------------------------------

QUAMBA_DEVICE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
QUAMBA_DEVICE float unit_uniform(uint64_t seed, uint64_t i) {  // [0, 1)
  return static_cast<float>(mix64(seed + (i + 1) * 0x9e3779b97f4a7c15ull) >> 40) * (1.0f / 16777216.0f);
}

template <typename T>
__global__ void fill_uniform_kernel(T* p, uint64_t n, float lo, float hi, uint64_t seed) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
    const float v = lo + (hi - lo) * unit_uniform(seed, i);
    if constexpr (std::is_same_v<T, int8_t>) p[i] = static_cast<int8_t>(__float2int_rn(v));
    else if constexpr (std::is_same_v<T, __half>) p[i] = __float2half_rn(v);
    else p[i] = v;
  }
}

// A = -(n + 1) (fp16 path) or A_log_q = q(log(n + 1) / s_A) (W8A8), n = i % N: Mamba's S4D-real init.
template <typename T>
__global__ void fill_a_kernel(T* p, uint64_t n, int N, float inv_s_A) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
    const float k = static_cast<float>(i % uint64_t(N)) + 1.0f;
    if constexpr (std::is_same_v<T, int8_t>) p[i] = quantize_i8(logf(k), inv_s_A);
    else p[i] = -k;
  }
}

template <typename T>
Status fill_uniform(const T* p, size_t n, float lo, float hi, uint64_t seed, cudaStream_t s) {
  if (n == 0) return Status::kSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 4096));
  fill_uniform_kernel<T><<<blocks, 256, 0, s>>>(const_cast<T*>(p), n, lo, hi, seed);
  return last_launch_status();
}

template <typename T>
Status fill_a(const T* p, size_t n, int N, float inv_s_A, cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 4096));
  fill_a_kernel<T><<<blocks, 256, 0, s>>>(const_cast<T*>(p), n, N, inv_s_A);
  return last_launch_status();
}

}  // namespace detail

class GpuEngine final : public Engine {
 public:
  GpuEngine() = default;
  GpuEngine(const GpuEngine&) = delete;
  GpuEngine& operator=(const GpuEngine&) = delete;
  ~GpuEngine() override {
    drop_graph();
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const reference::ModelConfig& config() const override { return config_; }
  Backend backend() const override { return Backend::kGpu; }
  Precision precision() const override { return precision_; }
  int64_t batch() const override { return batch_; }
  int64_t weight_bytes() const override { return weight_read_bytes_; }

  GpuMemoryReport memory() const {
    GpuMemoryReport r;
    r.weights = static_cast<int64_t>(weights_.size());
    r.caches = static_cast<int64_t>(conv_.size() + ssm_.size());
    r.workspace = static_cast<int64_t>(workspace_.size() + cublas_ws_.size());
    return r;
  }
  cudaStream_t stream() const { return stream_; }
  int64_t prefill_chunk() const { return chunk_; }
  void set_use_graph(bool on) {
    use_graph_ = on;
    if (!on) drop_graph();
  }
  // W8A8 decode step kernels (block::StepKernels; default kAuto) with or without programmatic
  // dependent launch (default: where the device supports it), and with the fused step's in_proj
  // weights staged in shared memory (block::StepIO::stage_in_proj; default on). For comparisons: every
  // choice computes the same step.
  void set_step_kernels(block::StepKernels kernels, bool pdl, bool stage_in_proj = true) {
    drop_graph();
    step_kernels_ = kernels;
    pdl_ = pdl && pdl_supported_;
    stage_in_proj_ = stage_in_proj;
  }
  // W8A8 prefill: dt_proj inside the scan (default off, slower on an H100: block::PrefillIO) and
  // programmatic dependent launch of the block's kernels (default: where the device supports
  // it). For comparisons: every choice computes the same bits.
  void set_prefill_options(bool fuse_dt_proj, bool pdl) {
    prefill_fuse_dt_ = fuse_dt_proj;
    prefill_pdl_ = pdl && pdl_supported_;
  }

  Status reset(int64_t batch) override {
    if (batch <= 0 || batch > conv1d::kMaxBatch) return Status::kErrorInvalidArgument;
    QUAMBA_RETURN_IF_ERROR(sync());
    drop_graph();
    batch_ = batch;
    const Status st = allocate_state();
    if (st != Status::kSuccess) drop_state();  // no slots (every call refused) until a reset succeeds
    return st;
  }

  Status reset_slot(int64_t slot) override {
    if (slot < 0 || slot >= batch_) return Status::kErrorInvalidArgument;
    const size_t ce = caches_.conv_elem_bytes;
    const size_t conv_row = size_t(dims_.E * dims_.K) * ce, ssm_row = size_t(dims_.E * dims_.N) * sizeof(float);
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemset2DAsync(static_cast<char*>(caches_.conv) + size_t(slot) * conv_row,
                                                  size_t(batch_) * conv_row, 0, conv_row, size_t(dims_.n_layer),
                                                  stream_));
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemset2DAsync(reinterpret_cast<char*>(caches_.ssm) + size_t(slot) * ssm_row,
                                                  size_t(batch_) * ssm_row, 0, ssm_row, size_t(dims_.n_layer),
                                                  stream_));
    return sync();
  }

  Status prefill(int64_t slot, const int32_t* ids, int64_t n, float* logits, bool all_logits) override {
    if (!ids || n <= 0 || slot < 0 || slot >= batch_) return Status::kErrorInvalidArgument;
    QUAMBA_RETURN_IF_ERROR(norm::validate_ids(ids, n, dims_.V));  // before any state changes
    return run_prefill(slot, ids, n, logits, all_logits, nullptr);
  }

  Status decode(const int32_t* ids, float* logits) override {
    QUAMBA_RETURN_IF_ERROR(set_decode_ids(ids));
    QUAMBA_RETURN_IF_ERROR(decode_device());
    if (logits)
      QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(logits, ws_.logits, size_t(batch_ * dims_.V) * sizeof(float),
                                                  cudaMemcpyDeviceToHost, stream_));
    return sync();
  }

  // Checks `batch` host ids and copies them to the device (stream-ordered).
  Status set_decode_ids(const int32_t* ids) {
    if (!ids || batch_ <= 0) return Status::kErrorInvalidArgument;
    QUAMBA_RETURN_IF_ERROR(norm::validate_ids(ids, batch_, dims_.V));
    QUAMBA_RETURN_IF_CUDA_ERROR(
        cudaMemcpyAsync(ws_.ids, ids, size_t(batch_) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
    return Status::kSuccess;
  }

  // One decode step for every slot from the ids last set, logits (batch, V) left in
  // device_logits(); enqueued on stream(), not synchronized.
  Status decode_device() {
    if (!use_graph_ || eager_steps_ == 0) {
      ++eager_steps_;
      return decode_forward();
    }
    if (!graph_exec_ && capture_decode() != Status::kSuccess) {
      // Capture or instantiation failed (nothing captured has run, so the state is as before):
      // this engine decodes eagerly from now on instead of retrying the capture every step.
      use_graph_ = false;
      return decode_forward();
    }
    return from_cuda(cudaGraphLaunch(graph_exec_, stream_));
  }
  const float* device_logits() const { return ws_.logits; }

  // fp16 engines: the calibration pass of calibrate_gpu (slot 0, each sequence from zero state).
  Status calibrate(const std::vector<std::vector<int32_t>>& seqs, quant::ObserverHook* hook) {
    if (!hook || precision_ != Precision::kFp16 || seqs.empty()) return Status::kErrorInvalidArgument;
    for (const auto& s : seqs) {
      if (s.empty()) return Status::kErrorInvalidArgument;
      QUAMBA_RETURN_IF_ERROR(norm::validate_ids(s.data(), int64_t(s.size()), dims_.V));
    }
    for (const auto& s : seqs) {
      QUAMBA_RETURN_IF_ERROR(reset_slot(0));
      QUAMBA_RETURN_IF_ERROR(run_prefill(0, s.data(), int64_t(s.size()), nullptr, false, hook));
      QUAMBA_RETURN_IF_ERROR(hook->end_sample(stream_));
    }
    QUAMBA_RETURN_IF_ERROR(sync());
    return reset_slot(0);
  }

  // ---- construction (used by the factories) ----

  Status init_common(const reference::ModelConfig& c, Precision p, const EngineOptions& opts, bool rotated_scratch,
                     std::string* err) {
    auto fail = [&](Status s, const std::string& m) {
      if (err) *err = m;
      return s;
    };
    if (!gpu_available()) return fail(Status::kErrorArchNotSupported, "no CUDA device of sm_80 or newer");
    if (opts.batch <= 0 || opts.batch > conv1d::kMaxBatch)
      return fail(Status::kErrorInvalidArgument, "batch must be in [1, 65535]");
    if (opts.prefill_chunk <= 0 || opts.prefill_chunk > (int64_t(1) << 20))
      return fail(Status::kErrorInvalidArgument, "prefill_chunk must be in [1, 2^20]");
    const Status ds = block::make_dims(c, &dims_);
    if (ds != Status::kSuccess)
      return fail(ds, "model size not supported on the GPU (needs d_model, d_inner % 16 == 0, d_state in "
                      "{16, 32, 64}, d_conv in [2, 4], d_model <= 8192)");
    config_ = c;
    precision_ = p;
    batch_ = opts.batch;
    chunk_ = opts.prefill_chunk;
    rotated_scratch_ = rotated_scratch;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return fail(Status::kErrorCuda, "cudaGetDevice failed");
    // The dependency waits exist only in sm_90+ code (core/launch.cuh): a build whose image for
    // this device comes from older code (compute_80 PTX, JIT-compiled) would launch with the
    // attribute and no waits, so pdl also needs the loaded image to be sm_90 code.
    cudaFuncAttributes fa{};
    const bool sm90_image = cudaFuncGetAttributes(&fa, block::detail::quantize_f16_i8_kernel<256>) == cudaSuccess &&
                            fa.ptxVersion >= 90 && fa.binaryVersion >= 90;
    if (!sm90_image) cudaGetLastError();
    pdl_supported_ = pdl_ = prefill_pdl_ = device_supports_pdl(dev) && sm90_image;
    if (cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) != cudaSuccess)
      return fail(Status::kErrorCuda, "cudaStreamCreate failed");
    if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) return fail(Status::kErrorCuda, "cublasCreate failed");
    // A workspace of our own: cuBLAS then allocates nothing at call time, which graph capture needs
    // (32 MiB: what cuBLAS uses by default on Hopper). The stream is set first: cublasSetStream
    // resets the workspace, and the GEMM calls (gemm::bind_cublas_stream) never set it again.
    if (cublasSetStream(cublas_, stream_) != CUBLAS_STATUS_SUCCESS) return fail(Status::kErrorCuda, "cublasSetStream failed");
    if (cublas_ws_.allocate(size_t(32) << 20) != Status::kSuccess ||
        cublasSetWorkspace(cublas_, cublas_ws_.get(), cublas_ws_.size()) != CUBLAS_STATUS_SUCCESS)
      return fail(Status::kErrorCuda, "cuBLAS workspace allocation failed");
    const Status st = allocate_state();
    if (st != Status::kSuccess) return fail(st, "device allocation of caches/workspace failed");
    return Status::kSuccess;
  }

  // Uploads a packed host blob (or only allocates when the packer planned the layout).
  Status upload_weights(const block::WeightPacker& pk, std::string* err) {
    if (weights_.allocate(pk.bytes()) != Status::kSuccess) {
      if (err) *err = "device allocation of " + std::to_string(pk.bytes()) + " weight bytes failed";
      return Status::kErrorCuda;
    }
    if (pk.keeps_data()) {
      // Pageable source: the copy may still be in flight when cudaMemcpy returns, and the engine's
      // non-blocking stream would not wait for it; ordering it on that stream and waiting is exact.
      QUAMBA_RETURN_IF_CUDA_ERROR(
          cudaMemcpyAsync(weights_.get(), pk.blob().data(), pk.bytes(), cudaMemcpyHostToDevice, stream_));
      return sync();
    }
    return Status::kSuccess;
  }

  block::DeviceModelF16 f16_;
  block::DeviceModelI8 i8_;

  void bind_weights(bool untied) {
    const void* base = weights_.get();
    if (precision_ == Precision::kFp16) {
      for (auto& l : f16_.layers) block::rebase(l, base);
      block::rebase(f16_.head, base);
      f16_.dims = dims_;
    } else {
      for (auto& l : i8_.layers) block::rebase(l, base);
      block::rebase(i8_.head, base);
      i8_.dims = dims_;
    }
    // An untied model reads one embedding row per token, not the table.
    const block::HeadWeights& h = head_weights();
    const int64_t table = h.int8 ? dims_.V * dims_.D + dims_.V * int64_t(sizeof(float)) : dims_.V * dims_.D * 2;
    weight_read_bytes_ = int64_t(weights_.size()) - (untied ? table : 0);
  }

  const block::HeadWeights& head_weights() const { return precision_ == Precision::kFp16 ? f16_.head : i8_.head; }

 private:
  Status sync() { return from_cuda(cudaStreamSynchronize(stream_)); }

  void drop_graph() {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    graph_exec_ = nullptr;
    eager_steps_ = 0;
  }

  Status allocate_state() {
    const block::Dtype dt = precision_ == Precision::kW8A8 ? block::Dtype::kI8 : block::Dtype::kF16;
    caches_.num_slots = batch_;
    caches_.conv_elem_bytes = dt == block::Dtype::kI8 ? 1 : 2;
    QUAMBA_RETURN_IF_ERROR(conv_.allocate(caches_.conv_bytes(dims_)));
    QUAMBA_RETURN_IF_ERROR(ssm_.allocate(caches_.ssm_bytes(dims_)));
    caches_.conv = conv_.get();
    caches_.ssm = static_cast<float*>(ssm_.get());
    // On the engine's stream (non-blocking: it does not wait for the legacy default stream), so
    // the zeroing is ordered before the next prefill or decode.
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemsetAsync(conv_.get(), 0, conv_.size(), stream_));
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemsetAsync(ssm_.get(), 0, ssm_.size(), stream_));
    const int64_t rows = std::max(chunk_, batch_);
    const int64_t lrows = std::max(batch_, std::min<int64_t>(chunk_, 64));
    const bool rot = rotated_scratch_ && dt == block::Dtype::kF16;
    const size_t bytes = block::model_workspace_plan(dims_, rows, lrows, dt, rot).bytes();
    QUAMBA_RETURN_IF_ERROR(workspace_.allocate(bytes));
    QUAMBA_RETURN_IF_ERROR(
        block::carve_model_workspace(workspace_.get(), workspace_.size(), dims_, rows, lrows, dt, rot, &ws_));
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemsetAsync(ws_.error_flag, 0, sizeof(int32_t), stream_));
    return sync();
  }

  // After a failed allocation: no slots and no dangling pointers into released buffers.
  void drop_state() {
    batch_ = 0;
    caches_.conv = nullptr;
    caches_.ssm = nullptr;
    conv_.release();
    ssm_.release();
    workspace_.release();
  }

  Status prefill_layers(int64_t L, int64_t slot, quant::ObserverHook* hook) {
    if (precision_ == Precision::kFp16)
      return block::prefill_layers(f16_, ws_, caches_, 1, L, slot, cublas_, stream_, hook);
    return block::prefill_layers(i8_, ws_, caches_, 1, L, slot, cublas_, stream_, hook, prefill_fuse_dt_, prefill_pdl_);
  }

  Status run_prefill(int64_t slot, const int32_t* ids, int64_t n, float* logits, bool all_logits,
                     quant::ObserverHook* hook) {
    const int64_t V = dims_.V, D = dims_.D;
    int64_t last_len = 0;
    for (int64_t off = 0; off < n; off += chunk_) {
      const int64_t len = std::min(chunk_, n - off);
      last_len = len;
      QUAMBA_RETURN_IF_CUDA_ERROR(
          cudaMemcpyAsync(ws_.ids, ids + off, size_t(len) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
      QUAMBA_RETURN_IF_ERROR(block::embed(dims_, head_weights(), ws_, len, stream_));
      QUAMBA_RETURN_IF_ERROR(prefill_layers(len, slot, hook));
      if (logits && all_logits) {
        for (int64_t r = 0; r < len; r += ws_.logit_rows) {
          const int64_t rows = std::min(ws_.logit_rows, len - r);
          QUAMBA_RETURN_IF_ERROR(
              block::head(dims_, head_weights(), ws_, ws_.residual + r * D, D, rows, ws_.logits, cublas_, stream_));
          QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(logits + (off + r) * V, ws_.logits, size_t(rows * V) * sizeof(float),
                                                      cudaMemcpyDeviceToHost, stream_));
        }
      }
    }
    if (logits && !all_logits) {
      QUAMBA_RETURN_IF_ERROR(block::head(dims_, head_weights(), ws_, ws_.residual + (last_len - 1) * D, D, 1,
                                         ws_.logits, cublas_, stream_));
      QUAMBA_RETURN_IF_CUDA_ERROR(
          cudaMemcpyAsync(logits, ws_.logits, size_t(V) * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    }
    return sync();
  }

  Status decode_forward() {
    QUAMBA_RETURN_IF_ERROR(block::embed(dims_, head_weights(), ws_, batch_, stream_));
    if (precision_ == Precision::kFp16)
      QUAMBA_RETURN_IF_ERROR(block::step_layers(f16_, ws_, caches_, batch_, nullptr, cublas_, stream_));
    else
      QUAMBA_RETURN_IF_ERROR(
          block::step_layers(i8_, ws_, caches_, batch_, nullptr, cublas_, stream_, step_kernels_, pdl_,
                             /*states_settled=*/true, stage_in_proj_));  // the chain starts with embed, an ordinary launch
    return block::head(dims_, head_weights(), ws_, ws_.residual, dims_.D, batch_, ws_.logits, cublas_, stream_);
  }

  Status capture_decode() {
    drop_graph();
    eager_steps_ = 1;
    cudaGraph_t graph = nullptr;
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    const Status st = decode_forward();
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (st != Status::kSuccess || end != cudaSuccess) {
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      return st != Status::kSuccess ? st : Status::kErrorCuda;
    }
    const cudaError_t inst = cudaGraphInstantiate(&graph_exec_, graph, 0);
    cudaGraphDestroy(graph);
    if (inst != cudaSuccess) {
      graph_exec_ = nullptr;
      cudaGetLastError();
      return Status::kErrorCuda;
    }
    return Status::kSuccess;
  }

  reference::ModelConfig config_{};
  block::BlockDims dims_{};
  Precision precision_ = Precision::kFp16;
  int64_t batch_ = 0, chunk_ = 0;
  bool rotated_scratch_ = false;
  bool use_graph_ = true;
  int64_t eager_steps_ = 0;
  int64_t weight_read_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  block::StepKernels step_kernels_ = block::StepKernels::kAuto;
  bool pdl_supported_ = false;
  bool pdl_ = false;
  bool stage_in_proj_ = true;
  bool prefill_fuse_dt_ = false;
  bool prefill_pdl_ = false;
  cublasHandle_t cublas_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
  detail::DeviceBytes weights_, conv_, ssm_, workspace_, cublas_ws_;
  block::ModelCaches caches_;
  block::ModelWorkspace ws_;
};

namespace detail {

inline Status build_fp16(const reference::ModelWeights& w, const EngineOptions& opts, bool rotated,
                         std::unique_ptr<GpuEngine>* out, std::string* err) {
  const Status v = reference::validate_model(w);
  if (v != Status::kSuccess) {
    if (err) *err = "model weights are inconsistent with their config";
    return v;
  }
  auto e = std::make_unique<GpuEngine>();
  QUAMBA_RETURN_IF_ERROR(e->init_common(w.config, Precision::kFp16, opts, rotated, err));
  block::BlockDims d;
  QUAMBA_RETURN_IF_ERROR(block::make_dims(w.config, &d));
  block::WeightPacker pk(true);
  for (const auto& l : w.layers) e->f16_.layers.push_back(block::pack_layer_f16(pk, d, &l));
  e->f16_.head = block::pack_head(pk, d, w.embedding.data(), w.norm_f.data(), w.lm_head.data(), w.config.tie_embeddings);
  QUAMBA_RETURN_IF_ERROR(e->upload_weights(pk, err));
  e->bind_weights(!w.config.tie_embeddings);
  *out = std::move(e);
  return Status::kSuccess;
}

// The factories pack multi-GB host blobs: a host allocation failure (or any other exception)
// becomes a Status here, as engine.hpp promises, instead of escaping.
template <typename F>
Status no_throw(std::string* err, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    if (err) *err = "out of host memory while preparing the engine";
    return Status::kErrorInternal;
  } catch (const std::exception& e) {
    if (err) *err = std::string("unexpected failure while preparing the engine: ") + e.what();
    return Status::kErrorInternal;
  }
}

}  // namespace detail

inline Status make_gpu_engine_fp16(const reference::ModelWeights& w, const EngineOptions& opts,
                                   std::unique_ptr<Engine>* out, std::string* err) {
  return detail::no_throw(err, [&]() -> Status {
    if (!out) return Status::kErrorInvalidArgument;
    std::unique_ptr<GpuEngine> e;
    QUAMBA_RETURN_IF_ERROR(detail::build_fp16(w, opts, false, &e, err));
    *out = std::move(e);
    return Status::kSuccess;
  });
}

inline Status make_gpu_engine_w8a8(const reference::QuantizedModel& q, const EngineOptions& opts,
                                   std::unique_ptr<Engine>* out, std::string* err) {
  return detail::no_throw(err, [&]() -> Status {
    if (!out) return Status::kErrorInvalidArgument;
    const Status v = reference::validate_model(q);
    if (v != Status::kSuccess) {
      if (err)
        *err = v == Status::kErrorNotSupported ? "the Hadamard rotation has no supported size for d_inner"
                                               : "quantized model is inconsistent with its config";
      return v;
    }
    auto e = std::make_unique<GpuEngine>();
    QUAMBA_RETURN_IF_ERROR(e->init_common(q.config, Precision::kW8A8, opts, false, err));
    block::BlockDims d;
    QUAMBA_RETURN_IF_ERROR(block::make_dims(q.config, &d));
    block::WeightPacker pk(true);
    for (const auto& l : q.layers) e->i8_.layers.push_back(block::pack_layer_i8(pk, d, &l, q.recipe.use_hadamard));
    if (q.recipe.int8_head)
      e->i8_.head = block::pack_head_i8(pk, d, q.embedding_q.q.data(), q.embedding_q.scale.data(), q.norm_f.data(),
                                        q.lm_head_q.q.data(), q.lm_head_q.scale.data(), q.config.tie_embeddings);
    else
      e->i8_.head =
          block::pack_head(pk, d, q.embedding.data(), q.norm_f.data(), q.lm_head.data(), q.config.tie_embeddings);
    QUAMBA_RETURN_IF_ERROR(e->upload_weights(pk, err));
    e->bind_weights(!q.config.tie_embeddings);
    *out = std::move(e);
    return Status::kSuccess;
  });
}

// Weights generated on the device with Mamba-like ranges (linear U(±1/√fan_in), conv U(±1/2),
// δ bias U(-6.9, -2.3), A = -(n+1), D = 1 (W8A8: U(±1)), γ = 1, embedding U(±0.035)); W8A8 weights are uniform
// int8 with scales of those ranges and activation scales of plausible magnitudes. For speed and
// memory measurements only: the numbers mean nothing (and for dt_rank % 16 != 0 the padding of
// x_proj / dt_proj is random too). Precision kFp32 is not a GPU precision (kErrorNotSupported).
// int8_head: the W8A8 model's embedding / lm_head in the int8 head option's layout (uniform int8
// rows, scale 0.035/127); with kFp16, kErrorNotSupported.
inline Status make_gpu_engine_random(const reference::ModelConfig& c, Precision p, uint64_t seed,
                                     const EngineOptions& opts, std::unique_ptr<Engine>* out, std::string* err,
                                     bool int8_head = false) {
  return detail::no_throw(err, [&]() -> Status {
    if (!out) return Status::kErrorInvalidArgument;
    if (p == Precision::kFp32 || (int8_head && p != Precision::kW8A8)) return Status::kErrorNotSupported;
    auto e = std::make_unique<GpuEngine>();
    QUAMBA_RETURN_IF_ERROR(e->init_common(c, p, opts, false, err));
    block::BlockDims d;
    QUAMBA_RETURN_IF_ERROR(block::make_dims(c, &d));
    block::WeightPacker pk(false);
    const bool fp16 = p == Precision::kFp16;
    for (int64_t l = 0; l < c.n_layer; ++l) {
      if (fp16) e->f16_.layers.push_back(block::pack_layer_f16(pk, d, nullptr));
      else e->i8_.layers.push_back(block::pack_layer_i8(pk, d, nullptr, reference::hadamard_size_supported(d.E)));
    }
    if (int8_head)
      e->i8_.head = block::pack_head_i8(pk, d, nullptr, nullptr, nullptr, nullptr, nullptr, c.tie_embeddings);
    else
      (fp16 ? e->f16_.head : e->i8_.head) = block::pack_head(pk, d, nullptr, nullptr, nullptr, c.tie_embeddings);
    QUAMBA_RETURN_IF_ERROR(e->upload_weights(pk, err));
    e->bind_weights(!c.tie_embeddings);
    const cudaStream_t s = e->stream();
    const size_t D = d.D, E = d.E, N = d.N, K = d.K, R = d.R, Xp = d.Xp, Rp = d.Rp;
    const float bD = 1.0f / std::sqrt(float(D)), bE = 1.0f / std::sqrt(float(E)), bR = 1.0f / std::sqrt(float(R));
    uint64_t sd = seed;
    auto next = [&] { return sd += 0x632be59bd9b4e019ull; };
    if (fp16) {
      for (auto& l : e->f16_.layers) {
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.norm_gamma, D, 1.f, 1.f, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.in_proj, 2 * E * D, -bD, bD, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.conv_w, E * K, -.5f, .5f, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.conv_b, E, -.5f, .5f, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.x_proj, Xp * E, -bE, bE, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.dt_proj, E * R, -bR, bR, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.dt_bias, E, -6.9f, -2.3f, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_a(l.A, E * N, int(N), 1.f, s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.Dskip, E, 1.f, 1.f, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.out_proj, D * E, -bE, bE, next(), s));
      }
    } else {
      const float q = 127.f;
      const float s_A = std::log(float(N)) / q;
      for (auto& l : e->i8_.layers) {
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.norm_gamma, D, 1.f, 1.f, next(), s));
        for (const int8_t* t : {l.in_proj, l.conv_w, l.conv_b, l.x_proj, l.Dskip, l.out_proj}) {
          const size_t n = t == l.in_proj ? 2 * E * D : t == l.conv_w ? E * K : t == l.x_proj ? Xp * E
                           : t == l.out_proj ? D * E : E;
          QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(t, n, -q, q, next(), s));
        }
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.dt_proj, E * Rp, -q, q, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(l.dt_bias, E, -q, -q / 3, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_a(l.A_log, E * N, int(N), 1.f / s_A, s));
        // Scales: weights of the ranges above over 127; activations h 4, xz 3, u 2, xdbl 2, δraw 2, o 2.
        const float s_h = 4 / q, s_xz = 3 / q, s_u = 2 / q, s_xd = 2 / q, s_dt = 2 / q, s_o = 2 / q;
        block::LayerScalesI8& sc = l.s;
        sc.inv_s_h = 1 / s_h;
        sc.alpha_in = reference::requant_alpha(s_h, bD / q, s_xz);
        sc.conv_scale_wx = s_xz * (.5f / q);
        sc.conv_s_b = .5f / q;
        sc.conv_inv_s_u = 1 / s_u;
        sc.alpha_x = reference::requant_alpha(s_u, bE / q, s_xd);
        sc.alpha_dt = reference::requant_alpha(s_xd, bR / q, s_dt);
        sc.s_u = s_u; sc.s_dt = s_dt; sc.s_xd = s_xd; sc.s_xz = s_xz;
        sc.s_A = s_A; sc.s_D = 1 / q; sc.s_bdt = 6.9f / q;
        sc.out_factor = l.use_hadamard ? reference::hadamard_quant_factor(int64_t(E), 1 / s_o) : 1 / s_o;
        sc.alpha_out = reference::dequant_alpha(s_o, bE / q);
      }
    }
    block::HeadWeights& h = fp16 ? e->f16_.head : e->i8_.head;
    QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(h.norm_f, D, 1.f, 1.f, next(), s));
    if (h.int8) {
      const float sv = .035f / 127.f;
      QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(h.embedding_q, size_t(d.V) * D, -127.f, 127.f, next(), s));
      QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(h.embedding_scale, size_t(d.V), sv, sv, next(), s));
      if (!c.tie_embeddings) {
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(h.lm_head_q, size_t(d.V) * D, -127.f, 127.f, next(), s));
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(h.lm_head_scale, size_t(d.V), sv, sv, next(), s));
      }
    } else {
      QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(h.embedding, size_t(d.V) * D, -.035f, .035f, next(), s));
      if (!c.tie_embeddings)
        QUAMBA_RETURN_IF_ERROR(detail::fill_uniform(h.lm_head, size_t(d.V) * D, -.035f, .035f, next(), s));
    }
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(s));
    *out = std::move(e);
    return Status::kSuccess;
  });
}

// The fp16 forward over each sequence (batch 1, fresh zero state per sequence, chunks of
// opts.prefill_chunk) with hook->observe at every quant::Site of every layer and
// hook->end_sample after each sequence. Sequences must be non-empty with ids in [0, V).
inline Status calibrate_gpu(const reference::ModelWeights& w, const std::vector<std::vector<int32_t>>& sequences,
                            quant::ObserverHook* hook, const EngineOptions& opts = {}, std::string* err = nullptr) {
  if (!hook || sequences.empty()) {
    if (err) *err = "calibration needs a hook and at least one sequence";
    return Status::kErrorInvalidArgument;
  }
  EngineOptions o = opts;
  o.batch = 1;
  std::unique_ptr<GpuEngine> e;
  QUAMBA_RETURN_IF_ERROR(detail::build_fp16(w, o, true, &e, err));
  const Status s = e->calibrate(sequences, hook);
  if (s != Status::kSuccess && err) *err = std::string("calibration failed: ") + to_string(s);
  return s;
}

}  // namespace quamba::model
