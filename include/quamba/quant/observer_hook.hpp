// quamba/quant/observer_hook.hpp: how a model forward on the GPU hands activations to the
// calibration observers without copying them to the host.
//
// A forward pass that supports calibration takes an optional ObserverHook*. At each site of
// SPEC §2's observer table it calls observe(layer, site, view, stream) with a DEVICE view of the
// activation it just produced, before any later kernel overwrites it. The view is a 2-D
// (rows = tokens of one sequence, cols = channels) fp16 or fp32 tensor with a row stride in
// elements (cols contiguous), so slices such as xz[..., :E] need no copy. One call covers the
// tokens of ONE calibration sample (sequence) or a chunk of it; end_sample() marks the end of a
// sample (Quamba's per-sample percentile of u is taken over everything observed for the sample).
// The hook enqueues work on `stream` and must not synchronize the caller's stream.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "quamba/core/status.hpp"

namespace quamba::quant {

enum class Site {
  kH,         // RMSNorm output (in_proj input)            -> s_h
  kXz,        // in_proj output, x and z together          -> s_xz
  kU,         // SiLU(conv) output                         -> s_u (absmax / percentile)
  kXd,        // x_proj output (dt_low, B, C together)     -> s_xd
  kDt,        // dt_proj output (before bias and softplus) -> s_dt
  kOPlain,    // gated scan output y (out_proj input)      -> s_o without rotation
  kORotated,  // H·y/√E (out_proj input with the rotation) -> s_o with rotation
};
constexpr int kNumSites = 7;

enum class ElemType { kF16, kF32 };

struct DeviceMatrixView {
  const void* data = nullptr;
  ElemType type = ElemType::kF16;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0;  // elements
};

class ObserverHook {
 public:
  virtual ~ObserverHook() = default;
  virtual Status observe(int64_t layer, Site site, const DeviceMatrixView& v, cudaStream_t stream) = 0;
  virtual Status end_sample(cudaStream_t stream) = 0;
};

}  // namespace quamba::quant
