// examples/common/engine_factory.hpp: one place where the tools turn (backend, precision, model)
// into a quamba::model::Engine.
//
// Backends: cpu (CpuEngine over the host reference: fp32 and w8a8), gpu (the GPU engines of
// quamba/model/gpu_engine.cuh: fp16 and w8a8), auto (gpu when this build has the GPU engines
// and a device is visible, else cpu). engine_factory.cpp is compiled as CUDA in builds with a
// CUDA compiler and includes gpu_engine.cuh when it exists (QUAMBA_TOOLS_WITH_GPU); otherwise
// only the CPU engines exist and asking for the GPU gives a one-line reason.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quamba/core/status.hpp"
#include "quamba/model/engine.hpp"
#include "quamba/reference/model.hpp"

namespace quamba::tools {

enum class BackendChoice { kAuto, kCpu, kGpu };

// Whether this build compiled the GPU engines in.
bool built_with_gpu();
// built_with_gpu() and a usable CUDA device.
bool gpu_available();
// "NVIDIA H100 80GB HBM3 (sm_90)" or "" without a device.
std::string gpu_name();
// Device memory in use (total - free) in bytes, or -1 without a device.
int64_t gpu_memory_in_use();
// Device bytes a GPU engine holds (weights + caches + workspace), or -1 for other engines.
int64_t engine_device_bytes(const model::Engine& e);

bool parse_backend(const std::string& s, BackendChoice* out);
bool parse_precision(const std::string& s, model::Precision* out);

// auto -> gpu or cpu; an explicit gpu without GPU support gives kErrorNotSupported + message.
Status resolve_backend(BackendChoice choice, model::Backend* out, std::string* err);

// A one-line reason when (backend, precision) does not exist, else "".
std::string unsupported_combination(model::Backend b, model::Precision p);

// Calibration with the fp16 GPU forward and the GPU observers (quant::GpuCalibrator), all
// sequences in one pass; fills the same CalibrationStats as reference::calibrate (without
// u_values: the exact global quantile is not offered here). kErrorNotSupported without GPU
// engines or a device.
Status calibrate_on_gpu(const reference::ModelWeights& m, const std::vector<std::vector<int32_t>>& seqs,
                        double percentile, reference::CalibrationStats* out, std::string* err);

// Builds an engine. fp32/fp16 need `fp`, w8a8 needs `q` (the other may be null).
Status make_engine(model::Backend backend, model::Precision precision, const reference::ModelWeights* fp,
                   const reference::QuantizedModel* q, const model::EngineOptions& opt,
                   std::unique_ptr<model::Engine>* out, std::string* err);

}  // namespace quamba::tools
