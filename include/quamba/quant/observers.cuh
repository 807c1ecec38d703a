// quamba/quant/observers.cuh: the calibration observers of SPEC §2 on the GPU (absmax, the exact
// α-quantile of |v|, Quamba's per-sample percentile with EMA, the exact global quantile), fed by
// a GPU forward through quant::ObserverHook without copying activations to the host.
//
// Inputs are DeviceMatrixView (observer_hook.hpp): rows × cols, fp16 or fp32, row stride in
// ELEMENTS (≥ cols when rows > 1; any stride when rows ≤ 1), cols contiguous, data aligned to
// its element size. A view with rows·cols = 0 is a no-op (data may then be null).
//
// Primitives (four-layer style: Params, can_implement, workspace_size, run):
//   AbsmaxParams       *accum ← max(*accum, max |v|) over the view, NaN ignored, on the device
//                      (one atomicMax on the float bits: valid because *accum and every |v| are
//                      non-negative, so their bit patterns order like the values). *accum must
//                      hold +0 or a previous result (not −0, not NaN). workspace 0, no sync.
//   AbsQuantileParams  *out ← the α-quantile of |v| with the definition of
//                      reference::abs_quantile: NaN → 0, |v| sorted ascending a[0..n−1],
//                      p = α·(n−1), i = floor(p), a[i] + (p−i)·(a[i+1]−a[i]) in double, then
//                      float (n = 0 gives 0). fp16 |v| are widened to fp32 exactly.
//                      Method: |v| → uint32 bit patterns (sign cleared, NaN → +0: non-negative
//                      floats order as unsigned ints), CUB DeviceRadixSort on bits [0, 31),
//                      then one thread interpolates. workspace_size = 2·n·4 bytes + CUB's
//                      scratch for n keys (device dependent; 0 if the query fails). n < 2^31.
//
// GpuCalibrator (an ObserverHook): every observer of one model, per layer: absmax of the seven
// sites, the α-quantile of |u| per sample combined by m ← m + 0.01·(cur − m) (first sample sets
// m), and optionally the exact global α-quantile of |u| over every sample. It keeps only the
// largest values of u that the quantile can depend on ("top tail", observer_plan.hpp): per
// observe(kU) call, [sample tail | |u| of the call] is radix sorted and the largest
// plan.sample_tail values are kept; end_sample() interpolates the sample's quantile and updates
// the EMA on the device, and merges the sample tail into the global tail. finish() copies the
// per-layer scalars back (its single stream sync) into a reference::CalibrationStats, so the
// host code that picks scales (reference::scales_from_calibration) is reused unchanged.
// The exact global quantile is returned next to the stats (finish's `exact_u_quantile`), and
// scales_from_gpu_calibration() is scales_from_calibration with that value behind
// UScale::kPercentileExact: CalibrationStats::u_values (every |u|) would be tens of GB for
// a real calibration set, and the reference structure is not ours to extend.
//
// Streams: each call enqueues its work on the stream it is given (a forward pass calls with its
// own stream, e.g. model::calibrate_gpu's engine stream). The scratch buffers are shared by all
// layers, so every call first makes its stream wait (cudaStreamWaitEvent, no host sync) for an
// event recorded at the end of the previous call: free on the same stream, and needed on any
// other one. The wait is not skipped when the handle equals the previous call's: a destroyed
// stream's handle can be reused by a new stream that has no order with the old one's work.
// The library never allocates: the caller provides GpuCalibrator::workspace_size(config) bytes.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/core/workspace.hpp"
#include "quamba/quant/observer_hook.hpp"
#include "quamba/quant/observer_plan.hpp"
#include "quamba/reference/model.hpp"
#include "quamba/reference/quant.hpp"

namespace quamba::quant {

// ---- view validation (host only, never touches the device) ------------------------------------

inline int64_t elem_bytes(ElemType t) { return t == ElemType::kF16 ? 2 : 4; }

inline Status validate_view(const DeviceMatrixView& v) {
  if (v.type != ElemType::kF16 && v.type != ElemType::kF32) return Status::kErrorNotSupported;
  if (v.rows < 0 || v.cols < 0 || v.row_stride < 0) return Status::kErrorInvalidArgument;
  if (v.rows == 0 || v.cols == 0) return Status::kSuccess;
  if (v.data == nullptr) return Status::kErrorInvalidArgument;
  if (v.rows > 1 && v.row_stride < v.cols) return Status::kErrorInvalidArgument;
  // rows·cols and rows·row_stride stay far inside int64 (and the kernels' index math).
  constexpr int64_t kLimit = int64_t{1} << 40;
  if (v.rows >= kLimit || v.cols >= kLimit || v.row_stride >= kLimit ||
      static_cast<double>(v.rows) * static_cast<double>(std::max(v.cols, v.row_stride)) >= 0x1p60)
    return Status::kErrorNotSupported;
  if (!is_aligned(v.data, elem_bytes(v.type))) return Status::kErrorMisaligned;
  return Status::kSuccess;
}

inline uint64_t view_elems(const DeviceMatrixView& v) {
  return static_cast<uint64_t>(v.rows) * static_cast<uint64_t>(v.cols);
}

// A view whose rows are back to back is one long row: the whole grid then shares the columns,
// instead of one block per row of a (1e6, 1) view.
inline DeviceMatrixView flatten_if_contiguous(DeviceMatrixView v) {
  if (v.rows > 1 && v.row_stride == v.cols) {
    v.cols = v.rows * v.cols;
    v.rows = 1;
  }
  if (v.rows == 1) v.row_stride = v.cols;
  return v;
}

// ---- traits -----------------------------------------------------------------------------------

// A block walks `kThreads·kVec`-column tiles of rows; both grid dimensions stride so the grid is
// capped at about kMaxBlocks blocks (≈ 8 waves of 256-thread blocks on 132 SMs): the reduction
// ends in one atomic per block, so a 1e9-element view costs 2048 atomics, not 1e6.
template <int Threads, int Vec>
struct AbsmaxTraits {
  static constexpr int kThreads = Threads;
  static constexpr int kVec = Vec;  // elements per load (16 bytes for the vector variants)
  static constexpr int kTile = Threads * Vec;
  static constexpr int kWarps = Threads / 32;
  static constexpr int64_t kMaxBlocks = 2048;
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps");
  static_assert(Vec == 1 || Vec == 2 || Vec == 4 || Vec == 8, "power-of-two vector");
};
using AbsmaxTraitsF32 = AbsmaxTraits<256, 4>;     // 16-byte fp32 loads
using AbsmaxTraitsF16 = AbsmaxTraits<256, 8>;     // 16-byte fp16 loads
using AbsmaxTraitsScalar = AbsmaxTraits<256, 1>;  // any alignment / stride

// Gather of |v| bit patterns (row-major, dense) for the quantile sort; scalar loads, the sort
// after it moves ~8× more bytes.
struct GatherTraits {
  static constexpr int kThreads = 256;
  static constexpr int64_t kMaxBlocks = 2048;
};

// ---- device code ------------------------------------------------------------------------------

namespace detail {

__device__ __forceinline__ float abs_value(float x) { return fabsf(x); }
__device__ __forceinline__ float abs_value(__half x) { return fabsf(__half2float(x)); }

// |v| as a sortable key: sign cleared, NaN → +0 (reference::abs_quantile's NaN rule).
template <typename T>
__device__ __forceinline__ uint32_t abs_key(T x) {
  const float f = abs_value(x);
  return f != f ? 0u : __float_as_uint(f);
}

template <typename Traits, typename T>
__global__ void __launch_bounds__(Traits::kThreads)
    absmax_kernel(const T* __restrict__ src, int64_t rows, int64_t cols, int64_t stride,
                  unsigned int* __restrict__ accum_bits) {
  constexpr int V = Traits::kVec;
  const int64_t tiles = (cols + Traits::kTile - 1) / Traits::kTile;
  // fmaxf returns the other operand when one is NaN, so NaN never enters m.
  float m = 0.f;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* row = src + r * stride;
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
      const int64_t c0 = t * Traits::kTile + static_cast<int64_t>(threadIdx.x) * V;
      if (c0 + V <= cols) {
        if constexpr (V == 1) {
          m = fmaxf(m, abs_value(row[c0]));
        } else {
          // Row starts are 16-byte aligned (checked by the host), c0 is a multiple of V.
          const Vec<T, V> a = *reinterpret_cast<const Vec<T, V>*>(row + c0);
#pragma unroll
          for (int j = 0; j < V; ++j) m = fmaxf(m, abs_value(a[j]));
        }
      } else {
        for (int64_t c = c0; c < cols; ++c) m = fmaxf(m, abs_value(row[c]));
      }
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  __shared__ float warp_max[Traits::kWarps];
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float b = warp_max[0];
#pragma unroll
    for (int w = 1; w < Traits::kWarps; ++w) b = fmaxf(b, warp_max[w]);
    // Non-negative floats order like their unsigned bit patterns (+inf included).
    if (b > 0.f) atomicMax(accum_bits, __float_as_uint(b));
  }
}

template <typename T>
__global__ void __launch_bounds__(GatherTraits::kThreads)
    abs_keys_kernel(const T* __restrict__ src, int64_t rows, int64_t cols, int64_t stride,
                    uint32_t* __restrict__ dst) {
  constexpr int64_t kT = GatherTraits::kThreads;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* row = src + r * stride;
    uint32_t* out = dst + r * cols;
    for (int64_t c = blockIdx.x * kT + threadIdx.x; c < cols; c += static_cast<int64_t>(gridDim.x) * kT)
      out[c] = abs_key(row[c]);
  }
}

// One thread: the interpolation of reference::abs_quantile, in double with explicit _rn
// intrinsics so that nvcc cannot contract it into an FMA the host reference does not do; then
// optionally the EMA update of reference::PercentileEmaObserver in float, likewise uncontracted.
// (A template only so that the header-defined kernel may be included by several translation
// units of one program.)
template <int kUnused = 0>
__global__ void quantile_interp_kernel(const uint32_t* __restrict__ keys, int64_t lo, int64_t hi, double frac,
                                       float* out, float* ema, int first) {
  const float a = __uint_as_float(keys[lo]);
  const float b = __uint_as_float(keys[hi]);
  const double r = __dadd_rn(static_cast<double>(a), __dmul_rn(frac, __dsub_rn(static_cast<double>(b), static_cast<double>(a))));
  const float cur = __double2float_rn(r);
  if (out) *out = cur;
  if (ema) {
    const float m = *ema;
    *ema = first ? cur : __fadd_rn(m, __fmul_rn(0.01f, __fsub_rn(cur, m)));
  }
}

inline dim3 tile_grid(int64_t rows, int64_t cols, int64_t tile, int64_t max_blocks) {
  const int64_t tiles = std::max<int64_t>(1, (cols + tile - 1) / tile);
  const int64_t gx = std::min<int64_t>(tiles, 1024);
  const int64_t gy = std::min<int64_t>({std::max<int64_t>(rows, 1), std::max<int64_t>(1, max_blocks / gx), 65535});
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), 1);
}

// Writes |v| keys of a validated, non-empty view densely (row-major) to dst.
inline Status launch_abs_keys(const DeviceMatrixView& view, uint32_t* dst, cudaStream_t stream) {
  const DeviceMatrixView v = flatten_if_contiguous(view);
  const dim3 grid = tile_grid(v.rows, v.cols, GatherTraits::kThreads, GatherTraits::kMaxBlocks);
  if (v.type == ElemType::kF32)
    abs_keys_kernel<float><<<grid, GatherTraits::kThreads, 0, stream>>>(static_cast<const float*>(v.data), v.rows,
                                                                         v.cols, v.row_stride, dst);
  else
    abs_keys_kernel<__half><<<grid, GatherTraits::kThreads, 0, stream>>>(static_cast<const __half*>(v.data), v.rows,
                                                                          v.cols, v.row_stride, dst);
  return last_launch_status();
}

// CUB's scratch for an ascending sort of n keys with a DoubleBuffer (no third key buffer).
// The query asks the runtime for the device's PTX version, so it fails without a device.
inline Status sort_temp_bytes(uint64_t n, size_t* bytes) {
  *bytes = 0;
  if (n > kMaxSortItems) return Status::kErrorNotSupported;
  if (n == 0) return Status::kSuccess;
  cub::DoubleBuffer<uint32_t> keys(nullptr, nullptr);
  size_t b = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(
      cub::DeviceRadixSort::SortKeys(nullptr, b, keys, static_cast<int>(n), 0, 31, static_cast<cudaStream_t>(0)));
  *bytes = b;
  return Status::kSuccess;
}

// Sorts n keys of `a` ascending (b is the alternate buffer, both of ≥ n keys; both are
// clobbered) and returns which of the two holds the result. Only bits [0, 31) are sorted:
// bit 31 (the sign) is always clear, and CUB skips no pass for it, but it is the honest range.
inline Status sort_keys(uint32_t* a, uint32_t* b, uint64_t n, void* temp, size_t temp_bytes, cudaStream_t stream,
                        uint32_t** sorted) {
  *sorted = a;
  if (n <= 1) return Status::kSuccess;
  if (n > kMaxSortItems) return Status::kErrorNotSupported;
  cub::DoubleBuffer<uint32_t> keys(a, b);
  size_t need = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(cub::DeviceRadixSort::SortKeys(nullptr, need, keys, static_cast<int>(n), 0, 31, stream));
  if (need > temp_bytes || temp == nullptr) return Status::kErrorWorkspaceTooSmall;
  size_t have = temp_bytes;
  QUAMBA_RETURN_IF_CUDA_ERROR(cub::DeviceRadixSort::SortKeys(temp, have, keys, static_cast<int>(n), 0, 31, stream));
  QUAMBA_RETURN_IF_ERROR(last_launch_status());
  *sorted = keys.Current();  // CUB flips the selector on the host, per pass it ran
  return Status::kSuccess;
}

inline Status launch_interp(const uint32_t* keys, uint64_t lo, uint64_t hi, double frac, float* out, float* ema,
                            bool first, cudaStream_t stream) {
  quantile_interp_kernel<><<<1, 1, 0, stream>>>(keys, static_cast<int64_t>(lo), static_cast<int64_t>(hi), frac, out,
                                              ema, first ? 1 : 0);
  return last_launch_status();
}

}  // namespace detail

// ---- absmax -------------------------------------------------------------------------------------

struct AbsmaxParams {
  DeviceMatrixView src;    // rows × cols fp16/fp32
  float* accum = nullptr;  // device, in/out: max(accum, max |src|); +0 or a previous result
};

inline Status can_implement(const AbsmaxParams& p) {
  QUAMBA_RETURN_IF_ERROR(validate_view(p.src));
  if (p.accum == nullptr) return Status::kErrorInvalidArgument;
  if (!is_aligned(p.accum, sizeof(float))) return Status::kErrorMisaligned;
  return Status::kSuccess;
}

inline size_t workspace_size(const AbsmaxParams&) { return 0; }

// Launches one named variant (Traits::kVec > 1 needs 16-byte aligned row starts).
template <typename Traits>
Status run_absmax_with(const AbsmaxParams& params, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(params));
  if (view_elems(params.src) == 0) return Status::kSuccess;
  const DeviceMatrixView v = flatten_if_contiguous(params.src);
  constexpr int V = Traits::kVec;
  if (V > 1) {
    if (static_cast<int64_t>(V) * elem_bytes(v.type) != 16) return Status::kErrorNotSupported;  // dtype of another variant
    if (!is_aligned(v.data, 16) || (v.rows > 1 && v.row_stride % V != 0)) return Status::kErrorMisaligned;
  }
  const dim3 grid = detail::tile_grid(v.rows, v.cols, Traits::kTile, Traits::kMaxBlocks);
  auto* bits = reinterpret_cast<unsigned int*>(params.accum);
  // Only the dtype whose V elements make one 16-byte access (or scalar) is instantiated.
  if (v.type == ElemType::kF32) {
    if constexpr (V == 1 || V * sizeof(float) == 16)
      detail::absmax_kernel<Traits, float><<<grid, Traits::kThreads, 0, stream>>>(
          static_cast<const float*>(v.data), v.rows, v.cols, v.row_stride, bits);
  } else {
    if constexpr (V == 1 || V * sizeof(__half) == 16)
      detail::absmax_kernel<Traits, __half><<<grid, Traits::kThreads, 0, stream>>>(
          static_cast<const __half*>(v.data), v.rows, v.cols, v.row_stride, bits);
  }
  return last_launch_status();
}

// True when the 16-byte variant applies: aligned base and row starts.
inline bool absmax_vector_ok(const DeviceMatrixView& view) {
  const DeviceMatrixView v = flatten_if_contiguous(view);
  const int64_t vec = 16 / elem_bytes(v.type);
  return is_aligned(v.data, 16) && (v.rows <= 1 || v.row_stride % vec == 0);
}

inline Status run(const AbsmaxParams& params, void* /*workspace*/, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(params));
  if (view_elems(params.src) == 0) return Status::kSuccess;
  if (!absmax_vector_ok(params.src)) return run_absmax_with<AbsmaxTraitsScalar>(params, stream);
  return params.src.type == ElemType::kF32 ? run_absmax_with<AbsmaxTraitsF32>(params, stream)
                                           : run_absmax_with<AbsmaxTraitsF16>(params, stream);
}

// ---- exact α-quantile of |v| --------------------------------------------------------------------

struct AbsQuantileParams {
  DeviceMatrixView src;   // rows × cols fp16/fp32
  double alpha = 0.5;     // in [0, 1]
  float* out = nullptr;   // device, one float (written by the stream, also for an empty view: 0)
};

inline Status can_implement(const AbsQuantileParams& p) {
  QUAMBA_RETURN_IF_ERROR(validate_view(p.src));
  if (p.out == nullptr || !(p.alpha >= 0.0 && p.alpha <= 1.0)) return Status::kErrorInvalidArgument;
  if (!is_aligned(p.out, sizeof(float))) return Status::kErrorMisaligned;
  if (view_elems(p.src) > kMaxSortItems) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

namespace detail {
inline WorkspacePlan quantile_plan(uint64_t n, size_t temp_bytes) {
  WorkspacePlan plan;
  plan.add<uint32_t>(n).add<uint32_t>(n).add<char>(temp_bytes);
  return plan;
}
}  // namespace detail

// 2·n keys + CUB scratch for n keys; 0 for an empty view. Queries CUB (device dependent): 0 when
// that query fails (no device), and run() then reports the failure.
inline size_t workspace_size(const AbsQuantileParams& p) {
  if (!ok(can_implement(p))) return 0;
  const uint64_t n = view_elems(p.src);
  if (n == 0) return 0;
  size_t temp = 0;
  if (!ok(detail::sort_temp_bytes(n, &temp))) return 0;
  return detail::quantile_plan(n, temp).bytes();
}

inline Status run(const AbsQuantileParams& p, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  const uint64_t n = view_elems(p.src);
  if (n == 0) return from_cuda(cudaMemsetAsync(p.out, 0, sizeof(float), stream));  // reference: empty → 0
  size_t temp = 0;
  QUAMBA_RETURN_IF_ERROR(detail::sort_temp_bytes(n, &temp));
  // The contract is workspace_size(p), padding included, even where the pieces would fit in less.
  if (workspace == nullptr || workspace_bytes < detail::quantile_plan(n, temp).bytes())
    return Status::kErrorWorkspaceTooSmall;
  WorkspaceCarver carve(workspace, workspace_bytes);
  uint32_t* a = carve.take<uint32_t>(n);
  uint32_t* b = carve.take<uint32_t>(n);
  void* t = carve.take<char>(temp);
  QUAMBA_RETURN_IF_ERROR(carve.status());
  QUAMBA_RETURN_IF_ERROR(detail::launch_abs_keys(p.src, a, stream));
  uint32_t* sorted = nullptr;
  QUAMBA_RETURN_IF_ERROR(detail::sort_keys(a, b, n, t, temp, stream, &sorted));
  const QuantileRank r = quantile_rank(n, p.alpha);
  return detail::launch_interp(sorted, r.lo, r.hi, r.frac, p.out, nullptr, false, stream);
}

// Trusts the caller to pass at least workspace_size(p) bytes.
inline Status run(const AbsQuantileParams& p, void* workspace, cudaStream_t stream) {
  return run(p, workspace, workspace_size(p), stream);
}

// ---- GpuCalibrator ------------------------------------------------------------------------------

// Device scalars per layer: the seven Site absmax values (indexed by Site), then the u quantiles.
enum CalibratorSlot : int {
  kSlotUEma = kNumSites,  // EMA of the per-sample quantile
  kSlotUExact,            // exact global quantile (finish, keep_u_values)
  kSlotUSample,           // quantile of the last finished sample
  kNumCalibratorSlots,
};

class GpuCalibrator : public ObserverHook {
 public:
  explicit GpuCalibrator(const GpuCalibratorConfig& config) : config_(config) {
    config_status_ = make_plan(config_, &plan_);
  }
  ~GpuCalibrator() override {
    if (done_) cudaEventDestroy(done_);
  }
  GpuCalibrator(const GpuCalibrator&) = delete;
  GpuCalibrator& operator=(const GpuCalibrator&) = delete;

  // Host-only check of the configuration (never touches the device).
  static Status can_implement(const GpuCalibratorConfig& config) {
    GpuCalibratorPlan plan;
    return make_plan(config, &plan);
  }

  // Bytes of device workspace init() needs; 0 if the configuration is invalid or CUB's scratch
  // size cannot be queried (no device).
  static size_t workspace_size(const GpuCalibratorConfig& config) {
    GpuCalibratorPlan plan;
    if (!ok(make_plan(config, &plan))) return 0;
    size_t temp = 0;
    if (!ok(detail::sort_temp_bytes(plan.sort_items, &temp))) return 0;
    return layout(config, plan, temp).bytes();
  }
  size_t workspace_size() const { return workspace_size(config_); }

  const GpuCalibratorConfig& config() const { return config_; }
  const GpuCalibratorPlan& plan() const { return plan_; }

  // Binds the workspace and (re)starts calibration: every observer is zeroed (cudaMemsetAsync on
  // `stream`, no sync). Creates the calibrator's one CUDA event on first use.
  Status init(void* workspace, size_t workspace_bytes, cudaStream_t stream) {
    initialized_ = false;
    QUAMBA_RETURN_IF_ERROR(config_status_);
    if (workspace == nullptr) return Status::kErrorInvalidArgument;
    if (done_ == nullptr) QUAMBA_RETURN_IF_CUDA_ERROR(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    size_t temp = 0;
    QUAMBA_RETURN_IF_ERROR(detail::sort_temp_bytes(plan_.sort_items, &temp));
    if (workspace_bytes < layout(config_, plan_, temp).bytes()) return Status::kErrorWorkspaceTooSmall;
    const uint64_t L = static_cast<uint64_t>(config_.n_layer);
    WorkspaceCarver carve(workspace, workspace_bytes);
    stats_ = carve.take<float>(L * kNumCalibratorSlots);
    sample_tail_ = carve.take<uint32_t>(L * plan_.sample_tail);
    global_tail_ = carve.take<uint32_t>(L * plan_.global_tail);
    keys_a_ = carve.take<uint32_t>(plan_.sort_items);
    keys_b_ = carve.take<uint32_t>(plan_.sort_items);
    sort_temp_ = carve.take<char>(temp);
    sort_temp_bytes_ = temp;
    QUAMBA_RETURN_IF_ERROR(carve.status());
    QUAMBA_RETURN_IF_ERROR(enter(stream));  // a re-init waits for the work of the previous run
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemsetAsync(stats_, 0, L * kNumCalibratorSlots * sizeof(float), stream));
    QUAMBA_RETURN_IF_ERROR(leave(stream));
    const size_t n = static_cast<size_t>(L);
    sample_elems_.assign(n, 0);
    sample_tokens_.assign(n, 0);
    sample_cnt_.assign(n, 0);
    global_elems_.assign(n, 0);
    global_tokens_.assign(n, 0);
    global_cnt_.assign(n, 0);
    ema_samples_.assign(n, 0);
    rotated_seen_.assign(n, false);
    samples_ = 0;
    tokens_ = 0;
    initialized_ = true;
    return Status::kSuccess;
  }

  // Absmax of every site; for Site::kU also the top tail of |u| of the current sample. A kU view
  // must have cols == d_inner; more than max_sample_tokens rows of u for one layer and sample (or
  // more than max_total_tokens over the run, with keep_u_values) → kErrorWorkspaceTooSmall with
  // nothing recorded. Tokens (CalibrationStats::tokens) are counted from layer 0's kH views.
  Status observe(int64_t layer, Site site, const DeviceMatrixView& v, cudaStream_t stream) override {
    if (!initialized_) return Status::kErrorInvalidArgument;
    if (layer < 0 || layer >= config_.n_layer) return Status::kErrorOutOfRange;
    const int s = static_cast<int>(site);
    if (s < 0 || s >= kNumSites) return Status::kErrorInvalidArgument;
    QUAMBA_RETURN_IF_ERROR(validate_view(v));
    const size_t l = static_cast<size_t>(layer);
    if (site == Site::kU) {
      if (v.cols != config_.d_inner) return Status::kErrorInvalidArgument;
      if (v.rows > config_.max_sample_tokens - sample_tokens_[l]) return Status::kErrorWorkspaceTooSmall;
      if (config_.keep_u_values &&
          v.rows > config_.max_total_tokens - global_tokens_[l] - sample_tokens_[l])
        return Status::kErrorWorkspaceTooSmall;
    }
    if (view_elems(v) > 0) {
      QUAMBA_RETURN_IF_ERROR(enter(stream));
      AbsmaxParams ap;
      ap.src = v;
      ap.accum = stats_ + l * kNumCalibratorSlots + s;
      QUAMBA_RETURN_IF_ERROR(run(ap, nullptr, stream));
      if (site == Site::kU) QUAMBA_RETURN_IF_ERROR(observe_u(l, v, stream));
      QUAMBA_RETURN_IF_ERROR(leave(stream));
    }
    if (site == Site::kORotated) rotated_seen_[l] = true;
    if (site == Site::kH && layer == 0) tokens_ += v.rows;
    return Status::kSuccess;
  }

  // Per layer that saw u since the last end_sample: the sample's α-quantile, the EMA update and
  // (keep_u_values) the merge into the global tail, all on the device.
  Status end_sample(cudaStream_t stream) override {
    if (!initialized_) return Status::kErrorInvalidArgument;
    QUAMBA_RETURN_IF_ERROR(enter(stream));
    for (size_t l = 0; l < sample_elems_.size(); ++l) {
      const uint64_t n = sample_elems_[l];
      if (n == 0) continue;  // reference::PercentileEmaObserver ignores empty samples
      const uint32_t* tail = sample_tail_ + l * plan_.sample_tail;
      const QuantileRank r = quantile_rank(n, config_.alpha);
      const uint64_t base = n - sample_cnt_[l];  // rank of tail[0]
      if (r.lo < base) return Status::kErrorInternal;
      float* st = stats_ + l * kNumCalibratorSlots;
      QUAMBA_RETURN_IF_ERROR(detail::launch_interp(tail, r.lo - base, r.hi - base, r.frac, st + kSlotUSample,
                                                   st + kSlotUEma, ema_samples_[l] == 0, stream));
      if (config_.keep_u_values) QUAMBA_RETURN_IF_ERROR(merge_global(l, stream));
      ++ema_samples_[l];
      global_elems_[l] += n;
      global_tokens_[l] += sample_tokens_[l];
      sample_elems_[l] = 0;
      sample_tokens_[l] = 0;
      sample_cnt_[l] = 0;
    }
    ++samples_;
    return leave(stream);
  }

  // Computes the exact global quantiles (keep_u_values), copies every per-layer scalar to the
  // host (one cudaStreamSynchronize) and fills `out` like reference::calibrate does, except that
  // u_values stays empty: the exact global quantile of layer i goes to (*exact_u_quantile)[i]
  // (empty without keep_u_values; 0 for a layer that saw no u). A sample still open (u observed
  // since the last end_sample) → kErrorInvalidArgument. Observing may continue afterwards.
  Status finish(reference::CalibrationStats* out, cudaStream_t stream,
                std::vector<float>* exact_u_quantile = nullptr) {
    if (out == nullptr || !initialized_) return Status::kErrorInvalidArgument;
    for (uint64_t n : sample_elems_)
      if (n != 0) return Status::kErrorInvalidArgument;
    const size_t L = static_cast<size_t>(config_.n_layer);
    QUAMBA_RETURN_IF_ERROR(enter(stream));
    if (config_.keep_u_values) {
      for (size_t l = 0; l < L; ++l) {
        const uint64_t n = global_elems_[l];
        if (n == 0) continue;
        const QuantileRank r = quantile_rank(n, config_.alpha);
        const uint64_t base = n - global_cnt_[l];
        if (r.lo < base) return Status::kErrorInternal;
        QUAMBA_RETURN_IF_ERROR(detail::launch_interp(global_tail_ + l * plan_.global_tail, r.lo - base, r.hi - base,
                                                     r.frac, stats_ + l * kNumCalibratorSlots + kSlotUExact,
                                                     nullptr, false, stream));
      }
    }
    std::vector<float> h(L * kNumCalibratorSlots);
    QUAMBA_RETURN_IF_CUDA_ERROR(
        cudaMemcpyAsync(h.data(), stats_, h.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
    QUAMBA_RETURN_IF_ERROR(leave(stream));
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream));
    reference::CalibrationStats st;
    st.layers.resize(L);
    st.samples = samples_;
    st.tokens = tokens_;
    st.percentile = config_.alpha;
    st.rotated_observed = std::all_of(rotated_seen_.begin(), rotated_seen_.end(), [](bool b) { return b; });
    std::vector<float> exact;
    for (size_t l = 0; l < L; ++l) {
      const float* v = h.data() + l * kNumCalibratorSlots;
      reference::LayerObservers& o = st.layers[l];
      o.h.value = v[static_cast<int>(Site::kH)];
      o.xz.value = v[static_cast<int>(Site::kXz)];
      o.u.value = v[static_cast<int>(Site::kU)];
      o.xd.value = v[static_cast<int>(Site::kXd)];
      o.dt.value = v[static_cast<int>(Site::kDt)];
      o.o_plain.value = v[static_cast<int>(Site::kOPlain)];
      o.o_rotated.value = v[static_cast<int>(Site::kORotated)];
      o.u_ema.alpha = config_.alpha;
      o.u_ema.value = v[kSlotUEma];
      o.u_ema.samples = ema_samples_[l];
      if (config_.keep_u_values) exact.push_back(v[kSlotUExact]);
    }
    *out = std::move(st);
    if (exact_u_quantile) *exact_u_quantile = std::move(exact);
    return Status::kSuccess;
  }

  // Device pointer to the per-layer scalars (n_layer × kNumCalibratorSlots floats), for callers
  // that keep the scales on the device.
  const float* device_stats() const { return stats_; }

 private:
  // Orders this call's work after everything enqueued by earlier calls (see "Streams" above).
  Status enter(cudaStream_t stream) {
    if (recorded_) QUAMBA_RETURN_IF_CUDA_ERROR(cudaStreamWaitEvent(stream, done_, 0));
    return Status::kSuccess;
  }
  Status leave(cudaStream_t stream) {
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaEventRecord(done_, stream));
    recorded_ = true;
    return Status::kSuccess;
  }

  static WorkspacePlan layout(const GpuCalibratorConfig& c, const GpuCalibratorPlan& p, size_t temp) {
    const uint64_t L = static_cast<uint64_t>(c.n_layer);
    WorkspacePlan w;
    w.add<float>(L * kNumCalibratorSlots)
        .add<uint32_t>(L * p.sample_tail)
        .add<uint32_t>(L * p.global_tail)
        .add<uint32_t>(p.sort_items)
        .add<uint32_t>(p.sort_items)
        .add<char>(temp);
    return w;
  }

  // [sample tail | |u| of this call] → sort → keep the largest plan_.sample_tail.
  Status observe_u(size_t l, const DeviceMatrixView& v, cudaStream_t stream) {
    const uint64_t m = view_elems(v);
    uint32_t* tail = sample_tail_ + l * plan_.sample_tail;
    const uint64_t t = sample_cnt_[l];
    if (t > 0)
      QUAMBA_RETURN_IF_CUDA_ERROR(
          cudaMemcpyAsync(keys_a_, tail, t * sizeof(uint32_t), cudaMemcpyDeviceToDevice, stream));
    QUAMBA_RETURN_IF_ERROR(detail::launch_abs_keys(v, keys_a_ + t, stream));
    uint32_t* sorted = nullptr;
    QUAMBA_RETURN_IF_ERROR(detail::sort_keys(keys_a_, keys_b_, t + m, sort_temp_, sort_temp_bytes_, stream, &sorted));
    const uint64_t keep = std::min<uint64_t>(plan_.sample_tail, t + m);
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(tail, sorted + (t + m - keep), keep * sizeof(uint32_t),
                                                cudaMemcpyDeviceToDevice, stream));
    sample_cnt_[l] = keep;
    sample_elems_[l] += m;
    sample_tokens_[l] += v.rows;
    return Status::kSuccess;
  }

  // Global top tail ← largest plan_.global_tail of [global tail | sample tail's largest].
  Status merge_global(size_t l, cudaStream_t stream) {
    const uint32_t* tail = sample_tail_ + l * plan_.sample_tail;
    uint32_t* g = global_tail_ + l * plan_.global_tail;
    const uint64_t gc = global_cnt_[l];
    const uint64_t k = std::min<uint64_t>(plan_.global_tail, sample_cnt_[l]);
    const uint32_t* top = tail + (sample_cnt_[l] - k);  // the sample tail is sorted ascending
    if (gc == 0) {
      QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(g, top, k * sizeof(uint32_t), cudaMemcpyDeviceToDevice, stream));
      global_cnt_[l] = k;
      return Status::kSuccess;
    }
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(keys_a_, g, gc * sizeof(uint32_t), cudaMemcpyDeviceToDevice, stream));
    QUAMBA_RETURN_IF_CUDA_ERROR(
        cudaMemcpyAsync(keys_a_ + gc, top, k * sizeof(uint32_t), cudaMemcpyDeviceToDevice, stream));
    uint32_t* sorted = nullptr;
    QUAMBA_RETURN_IF_ERROR(detail::sort_keys(keys_a_, keys_b_, gc + k, sort_temp_, sort_temp_bytes_, stream, &sorted));
    const uint64_t keep = std::min<uint64_t>(plan_.global_tail, gc + k);
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(g, sorted + (gc + k - keep), keep * sizeof(uint32_t),
                                                cudaMemcpyDeviceToDevice, stream));
    global_cnt_[l] = keep;
    return Status::kSuccess;
  }

  GpuCalibratorConfig config_;
  GpuCalibratorPlan plan_;
  Status config_status_ = Status::kErrorInvalidArgument;
  bool initialized_ = false;
  cudaEvent_t done_ = nullptr;  // recorded at the end of every call's work
  bool recorded_ = false;
  float* stats_ = nullptr;
  uint32_t* sample_tail_ = nullptr;
  uint32_t* global_tail_ = nullptr;
  uint32_t* keys_a_ = nullptr;
  uint32_t* keys_b_ = nullptr;
  void* sort_temp_ = nullptr;
  size_t sort_temp_bytes_ = 0;
  // Host bookkeeping (sizes are known on the host, so no device value is ever read back
  // before finish).
  std::vector<uint64_t> sample_elems_, sample_cnt_, global_elems_, global_cnt_;
  std::vector<int64_t> sample_tokens_, global_tokens_, ema_samples_;
  std::vector<bool> rotated_seen_;
  int64_t samples_ = 0, tokens_ = 0;
};

// reference::scales_from_calibration for stats from GpuCalibrator::finish: identical for
// UScale::kAbsmax and kPercentileEma; for kPercentileExact, s_u comes from exact_u_quantile
// (finish's third output; kErrorInvalidArgument when it is empty, as the reference does without
// keep_u_values, or when a layer saw no u). Implemented by calling the reference with the exact
// quantile placed in the u absmax slot and the recipe switched to kAbsmax, so the value goes
// through the same scale_from_absmax and nothing else is duplicated.
inline Status scales_from_gpu_calibration(const reference::CalibrationStats& st,
                                          const std::vector<float>& exact_u_quantile,
                                          const reference::QuantRecipe& recipe, reference::ModelScales* out) {
  if (recipe.u_scale != reference::UScale::kPercentileExact)
    return reference::scales_from_calibration(st, recipe, out);
  if (!out || exact_u_quantile.size() != st.layers.size()) return Status::kErrorInvalidArgument;
  reference::CalibrationStats s = st;
  for (size_t i = 0; i < s.layers.size(); ++i) {
    if (s.layers[i].u_ema.samples == 0) return Status::kErrorInvalidArgument;
    s.layers[i].u.value = exact_u_quantile[i];
    s.layers[i].u_values.clear();
  }
  reference::QuantRecipe r = recipe;
  r.u_scale = reference::UScale::kAbsmax;
  return reference::scales_from_calibration(s, r, out);
}

}  // namespace quamba::quant
