// examples/common/engine_factory.cpp: see engine_factory.hpp. Compiled as CUDA when the build
// has a CUDA compiler, so that it can hold the GPU engines; the tools themselves stay C++.
#include "engine_factory.hpp"

#include <algorithm>
#include <memory>
#include <utility>

#include "quamba/model/cpu_engine.hpp"

#if defined(__CUDACC__) && defined(__has_include)
#if __has_include("quamba/model/gpu_engine.cuh")
#include <cuda_runtime.h>

#include "quamba/model/gpu_engine.cuh"
#include "quamba/quant/observers.cuh"
#define QUAMBA_TOOLS_WITH_GPU 1
#endif
#endif

namespace quamba::tools {

bool built_with_gpu() {
#ifdef QUAMBA_TOOLS_WITH_GPU
  return true;
#else
  return false;
#endif
}

bool gpu_available() {
#ifdef QUAMBA_TOOLS_WITH_GPU
  return model::gpu_available();
#else
  return false;
#endif
}

std::string gpu_name() {
#ifdef QUAMBA_TOOLS_WITH_GPU
  if (!gpu_available()) return "";
  int dev = 0;
  cudaDeviceProp p{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return "";
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
#else
  return "";
#endif
}

int64_t gpu_memory_in_use() {
#ifdef QUAMBA_TOOLS_WITH_GPU
  if (!gpu_available()) return -1;
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return -1;
  return static_cast<int64_t>(total_b - free_b);
#else
  return -1;
#endif
}

int64_t engine_device_bytes(const model::Engine& e) {
#ifdef QUAMBA_TOOLS_WITH_GPU
  if (const auto* g = dynamic_cast<const model::GpuEngine*>(&e)) return g->memory().total();
#endif
  (void)e;
  return -1;
}

bool parse_backend(const std::string& s, BackendChoice* out) {
  if (s == "auto") *out = BackendChoice::kAuto;
  else if (s == "cpu") *out = BackendChoice::kCpu;
  else if (s == "gpu") *out = BackendChoice::kGpu;
  else return false;
  return true;
}

bool parse_precision(const std::string& s, model::Precision* out) {
  if (s == "fp32") *out = model::Precision::kFp32;
  else if (s == "fp16") *out = model::Precision::kFp16;
  else if (s == "w8a8") *out = model::Precision::kW8A8;
  else return false;
  return true;
}

Status resolve_backend(BackendChoice choice, model::Backend* out, std::string* err) {
  if (choice == BackendChoice::kCpu) {
    *out = model::Backend::kCpu;
    return Status::kSuccess;
  }
  if (choice == BackendChoice::kAuto) {
    *out = gpu_available() ? model::Backend::kGpu : model::Backend::kCpu;
    return Status::kSuccess;
  }
  if (!built_with_gpu()) {
    if (err)
      *err = "--backend gpu: this build has no GPU engines (configure with a CUDA compiler and QUAMBA_ENABLE_CUDA=ON)";
    return Status::kErrorNotSupported;
  }
  if (!gpu_available()) {
    if (err) *err = "--backend gpu: no usable CUDA device found";
    return Status::kErrorNotSupported;
  }
  *out = model::Backend::kGpu;
  return Status::kSuccess;
}

std::string unsupported_combination(model::Backend b, model::Precision p) {
  if (b == model::Backend::kCpu && p == model::Precision::kFp16)
    return "fp16 runs only on the GPU backend (the CPU engines are fp32 and w8a8)";
  if (b == model::Backend::kGpu && p == model::Precision::kFp32)
    return "fp32 runs only on the CPU backend (the GPU engines are fp16 and w8a8)";
  return "";
}

Status calibrate_on_gpu(const reference::ModelWeights& m, const std::vector<std::vector<int32_t>>& seqs,
                        double percentile, reference::CalibrationStats* out, std::string* err) {
#ifdef QUAMBA_TOOLS_WITH_GPU
  if (!gpu_available()) {
    if (err) *err = "no usable CUDA device found";
    return Status::kErrorNotSupported;
  }
  if (seqs.empty() || out == nullptr) {
    if (err) *err = "no calibration samples";
    return Status::kErrorInvalidArgument;
  }
  quant::GpuCalibratorConfig cc;
  cc.n_layer = m.config.n_layer;
  cc.d_inner = m.config.d_inner;
  cc.alpha = percentile;
  for (const auto& s : seqs) cc.max_sample_tokens = std::max<int64_t>(cc.max_sample_tokens, static_cast<int64_t>(s.size()));
  if (quant::GpuCalibrator::can_implement(cc) != Status::kSuccess) {
    if (err) *err = "GPU calibration: unsupported sizes";
    return Status::kErrorNotSupported;
  }
  quant::GpuCalibrator cal(cc);
  const size_t bytes = cal.workspace_size();
  void* ws = nullptr;
  if (bytes == 0 || cudaMalloc(&ws, bytes) != cudaSuccess) {
    cudaGetLastError();
    if (err) *err = "GPU calibration: cannot allocate " + std::to_string(bytes) + " bytes of workspace";
    return Status::kErrorCuda;
  }
  // Freed on every path, an escaping exception included (after the device is idle).
  struct WorkspaceFree {
    void operator()(void* p) const {
      cudaDeviceSynchronize();
      cudaFree(p);
    }
  };
  const std::unique_ptr<void, WorkspaceFree> ws_owner(ws);
  std::string msg;
  Status s = cal.init(ws, bytes, nullptr);
  if (s == Status::kSuccess) s = model::calibrate_gpu(m, seqs, &cal, model::EngineOptions{}, &msg);
  reference::CalibrationStats st;
  if (s == Status::kSuccess) s = cal.finish(&st, nullptr);
  if (s != Status::kSuccess) {
    if (err) *err = "GPU calibration failed: " + (msg.empty() ? std::string(to_string(s)) : msg);
    return s;
  }
  st.percentile = percentile;
  *out = std::move(st);
  return Status::kSuccess;
#else
  (void)m;
  (void)seqs;
  (void)percentile;
  (void)out;
  if (err) *err = "this build has no GPU engines";
  return Status::kErrorNotSupported;
#endif
}

Status make_engine(model::Backend backend, model::Precision precision, const reference::ModelWeights* fp,
                   const reference::QuantizedModel* q, const model::EngineOptions& opt,
                   std::unique_ptr<model::Engine>* out, std::string* err) {
  const std::string why = unsupported_combination(backend, precision);
  if (!why.empty()) {
    if (err) *err = why;
    return Status::kErrorNotSupported;
  }
  if (precision == model::Precision::kW8A8 ? q == nullptr : fp == nullptr) {
    if (err)
      *err = precision == model::Precision::kW8A8 ? "w8a8 needs a quantized model" : "fp32/fp16 need the fp checkpoint";
    return Status::kErrorInvalidArgument;
  }
  if (backend == model::Backend::kCpu) {
    return precision == model::Precision::kW8A8 ? model::make_cpu_engine_w8a8(*q, opt, out, err)
                                                : model::make_cpu_engine_fp32(*fp, opt, out, err);
  }
#ifdef QUAMBA_TOOLS_WITH_GPU
  return precision == model::Precision::kW8A8 ? model::make_gpu_engine_w8a8(*q, opt, out, err)
                                              : model::make_gpu_engine_fp16(*fp, opt, out, err);
#else
  if (err) *err = "this build has no GPU engines";
  return Status::kErrorNotSupported;
#endif
}

}  // namespace quamba::tools
