// tests/common/cuda_utils.cuh: helpers for GPU tests and benchmarks (abort on CUDA errors
// here, never in the library).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "quamba/core/numeric.hpp"

#define QUAMBA_CUDA_CHECK(expr)                                                                  \
  do {                                                                                           \
    const cudaError_t e_ = (expr);                                                               \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)

namespace quamba::test {

inline bool has_cuda_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Compute capability of device 0 as major*10+minor (0 without a device).
inline int device_arch() {
  if (!has_cuda_device()) return 0;
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return 0;
  return p.major * 10 + p.minor;
}

// fp16 through the library's bit-exact conversions (round half to even), host side.
inline __half to_half(float f) {
  __half_raw r;
  r.x = quamba::float_to_half_bits(f);
  return __half(r);
}
inline float from_half(__half h) { return quamba::half_bits_to_float(static_cast<__half_raw>(h).x); }

// RAII device buffer of T. poison() fills every byte with `byte` (0xFF: NaN for fp16/fp32, -1
// for int8) so a test can tell unwritten elements apart; for int8 outputs, whose every byte is a
// legal value, run twice with two poison bytes (e.g. 0x5A and 0xA5) and compare both runs.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  explicit DeviceBuffer(const std::vector<T>& host) { upload(host); }
  ~DeviceBuffer() { if (ptr_) cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_) { o.ptr_ = nullptr; o.n_ = 0; }

  void resize(size_t n) {
    if (ptr_) QUAMBA_CUDA_CHECK(cudaFree(ptr_));
    ptr_ = nullptr;
    n_ = n;
    if (n) QUAMBA_CUDA_CHECK(cudaMalloc(&ptr_, n * sizeof(T)));
  }
  void upload(const std::vector<T>& host) {
    if (host.size() != n_) resize(host.size());
    if (n_) QUAMBA_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) QUAMBA_CUDA_CHECK(cudaMemcpy(h.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void poison(int byte = 0xFF) { if (n_) QUAMBA_CUDA_CHECK(cudaMemset(ptr_, byte, n_ * sizeof(T))); }
  T* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace quamba::test

#define QUAMBA_REQUIRE_GPU()                                                  \
  do {                                                                        \
    if (!::quamba::test::has_cuda_device()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)
