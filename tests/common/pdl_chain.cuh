// Programmatic dependent launch (PDL) tests: a feeder kernel that a launch under test follows in
// the same stream.
//
// The feeder lets its dependents launch at once (griddepcontrol.launch_dependents), spins for a
// while, then writes the inputs of the launch under test (byte copies from staging buffers) and
// snapshots that launch's output buffer. A dependent launched with pdl = true is resident and
// running during the spin, so:
//   - one that reads an input before grid_dependency_wait() reads the poison the input buffer
//     held before the feeder's copy (its output then differs from the pdl = false run);
//   - one that writes its output before the wait shows those bytes in the snapshot, which must
//     still be the output's poison.
// On devices below sm_90 callers pass pdl = false (pdl_supported(), as the engine does); the
// feeder's launch_dependents is then a no-op and the sequence is plain stream order.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/cuda_utils.cuh"
#include "quamba/core/launch.cuh"
#include "quamba/core/status.hpp"

namespace quamba::test {

struct PdlFeed {
  static constexpr int kMaxCopies = 3;
  const uint8_t* src[kMaxCopies] = {};
  uint8_t* dst[kMaxCopies] = {};
  size_t bytes[kMaxCopies] = {};
  const uint8_t* watch = nullptr;  // the output of the launch under test, poisoned
  uint8_t* seen = nullptr;         // watch's bytes as the feeder finds them after its spin
  size_t watch_bytes = 0;
  // ~0.5 ms at 2 GHz: longer than the host time between the feeder's launch and the launch under
  // test (tensor maps, attribute and occupancy queries), so the dependent is resident in time.
  long long spin_cycles = 1ll << 20;
  int copies = 0;

  void copy(const void* from, void* to, size_t n) {
    src[copies] = static_cast<const uint8_t*>(from);
    dst[copies] = static_cast<uint8_t*>(to);
    bytes[copies] = n;
    ++copies;
  }
};

__global__ void pdl_feed_kernel(PdlFeed f) {
  grid_dependents_launch();
  const long long t0 = clock64();
  while (clock64() - t0 < f.spin_cycles) {
  }
  const size_t tid = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = tid; i < f.watch_bytes; i += stride) f.seen[i] = f.watch[i];
  for (int j = 0; j < PdlFeed::kMaxCopies; ++j)
    for (size_t i = tid; i < f.bytes[j]; i += stride) f.dst[j][i] = f.src[j][i];
}

// 64 blocks of 256 threads: resident at once on any device the tests run on, and leaving room for
// the dependent's CTAs next to them.
inline void launch_pdl_feed(const PdlFeed& f, cudaStream_t stream) {
  pdl_feed_kernel<<<64, 256, 0, stream>>>(f);
  QUAMBA_CUDA_CHECK(cudaGetLastError());
}

// Whether tests pass pdl = true here (compute capability 9.0 and up, as the engine decides).
inline bool pdl_supported() {
  int dev = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  return device_supports_pdl(dev);
}

// Index of the first byte of `got` (n bytes) that is not `poison`, or n when all are.
inline size_t first_not_poison(const uint8_t* got, size_t n, uint8_t poison) {
  for (size_t i = 0; i < n; ++i)
    if (got[i] != poison) return i;
  return n;
}

// One fed run: the feeder `f` watching `out` (out_bytes, poisoned by the caller with `poison`),
// then `launch()` (the op under test, returning its Status) twice back to back on `stream`.
// Waits for the stream. early: index of the first byte of `out` the feeder found already written
// (out_bytes: none).
struct FedRun {
  Status first = Status::kSuccess, second = Status::kSuccess;
  size_t early = 0;
};
template <class Launch>
FedRun run_fed_twice(PdlFeed f, const void* out, size_t out_bytes, uint8_t poison, cudaStream_t stream,
                     Launch&& launch) {
  DeviceBuffer<uint8_t> seen(out_bytes);
  seen.poison(0);
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());  // the poisons ran on the legacy stream
  f.watch = static_cast<const uint8_t*>(out);
  f.seen = seen.get();
  f.watch_bytes = out_bytes;
  launch_pdl_feed(f, stream);
  FedRun r;
  r.first = launch();
  r.second = r.first == Status::kSuccess ? launch() : r.first;
  QUAMBA_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<uint8_t> sn = seen.download();
  r.early = first_not_poison(sn.data(), sn.size(), poison);
  return r;
}

// RAII non-blocking stream (it does not wait for the legacy stream: synchronize the device after
// uploads and poisons on the legacy stream before launching on it).
class Stream {
 public:
  Stream() { QUAMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

}  // namespace quamba::test
