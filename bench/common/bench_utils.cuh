// bench/common/bench_utils.cuh: GPU timing and roofline counters for the Google Benchmark
// programs under bench/.
//
// - GPU time comes from a cudaEvent pair around the launches (UseManualTime), never from the
//   host clock. Before each timed batch, L2 is flushed by reading a buffer of 2× the L2 size
//   (L2Flusher: clean lines only, so no write-back lands in the timed kernel), so memory-bound
//   numbers are DRAM numbers.
// - Every program measures a device-to-device copy (bytes read + written, 1 GiB) once at start;
//   report_bytes() reports GB/s and the fraction of that same-run copy ceiling ("copy_frac").
//   It also times a device-to-device copy of the SAME byte count (bytes/2 read + bytes/2
//   written, L2 flushed first, median of 15) and reports "copy_same_frac" = copy time / kernel
//   time: at a few MB a copy pays the same launch and ramp-up costs as the kernel, which the
//   1 GiB ceiling does not.
// - Use QUAMBA_BENCH_MAIN() instead of BENCHMARK_MAIN().
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "common/cuda_utils.cuh"
#include "quamba/core/status.hpp"

namespace quamba::bench {

inline double& copy_gbps() {
  static double v = 0.0;
  return v;
}

// Reads every 16-byte word of the eviction buffer once. The sink store is never taken (the
// buffer holds 0x11 bytes, whose XOR over any 4 words is 0) but keeps the loads alive.
template <int = 0>
__global__ void l2_evict_read_kernel(const int4* __restrict__ p, size_t n, int* sink) {
  int acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const int4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x7eadbeef) *sink = acc;
}

// Empties L2 of the data a benchmark touches, so memory-bound numbers are DRAM numbers.
// Default: READ a buffer of 2x the L2 size. The lines this leaves in L2 are clean, so the
// timed kernel evicts them for free. The older mode (QUAMBA_BENCH_FLUSH=memset) WRITES the
// buffer instead; that leaves up to a full L2 of dirty lines (50 MB on an H100), whose
// write-back then lands inside the timed kernel and adds up to ~17 us to every flushed row,
// the same-size copy baseline included. Dirty lines left by the previous timed batch are
// written back during the read pass, before the clock starts.
class L2Flusher {
 public:
  L2Flusher() {
    int dev = 0, l2 = 0;
    QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
    QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, dev));
    bytes_ = static_cast<size_t>(l2) * 2;
    QUAMBA_CUDA_CHECK(cudaMalloc(&buf_, bytes_ + 256));
    QUAMBA_CUDA_CHECK(cudaMemset(buf_, 0x11, bytes_ + 256));
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const char* mode = std::getenv("QUAMBA_BENCH_FLUSH");
    memset_ = mode != nullptr && std::string(mode) == "memset";
  }
  ~L2Flusher() { cudaFree(buf_); }
  void flush(cudaStream_t s = 0) {
    if (memset_) {
      QUAMBA_CUDA_CHECK(cudaMemsetAsync(buf_, 0x11, bytes_, s));
    } else {
      l2_evict_read_kernel<><<<sms_ * 4, 512, 0, s>>>(static_cast<const int4*>(buf_), bytes_ / 16,
                                                      reinterpret_cast<int*>(static_cast<char*>(buf_) + bytes_));
      QUAMBA_CUDA_CHECK(cudaGetLastError());
    }
  }
  const char* mode() const { return memset_ ? "memset" : "read"; }
  static L2Flusher& get() {
    static L2Flusher f;
    return f;
  }

 private:
  void* buf_ = nullptr;
  size_t bytes_ = 0;
  int sms_ = 1;
  bool memset_ = false;
};

// Times `launch(i)` for i in [0, inner) per benchmark iteration with one event pair, after an
// L2 flush, and reports the per-launch time. `launch` returns the library's Status (or void).
// A warm-up batch runs first (module load, first-touch); a Status other than success there skips
// the row with an error instead of timing launches that did nothing.
template <typename Launch>
void time_gpu(benchmark::State& state, Launch&& launch, int inner = 1, bool flush = true, cudaStream_t s = 0) {
  for (int i = 0; i < inner; ++i) {
    if constexpr (std::is_same_v<decltype(launch(i)), quamba::Status>) {
      if (launch(i) != quamba::Status::kSuccess) {
        state.SkipWithError("launch failed");
        return;
      }
    } else {
      launch(i);
    }
  }
  cudaEvent_t a, b;
  QUAMBA_CUDA_CHECK(cudaEventCreate(&a));
  QUAMBA_CUDA_CHECK(cudaEventCreate(&b));
  QUAMBA_CUDA_CHECK(cudaStreamSynchronize(s));
  QUAMBA_CUDA_CHECK(cudaGetLastError());
  for (auto _ : state) {
    if (flush) L2Flusher::get().flush(s);
    QUAMBA_CUDA_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < inner; ++i) launch(i);
    QUAMBA_CUDA_CHECK(cudaEventRecord(b, s));
    QUAMBA_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    QUAMBA_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    state.SetIterationTime(ms * 1e-3 / inner);
  }
  QUAMBA_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

// ---- Rotating buffer sets and graph-replayed decode-size launches --------------------------

inline int rotation_sets(double bytes_per_set) {
  int dev = 0, l2 = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return std::max(1, std::min(16384, static_cast<int>(std::ceil(2.0 * l2 / std::max(bytes_per_set, 1.0)))));
}

// Rotating buffer sets in one allocation: set s, field f at base + s·stride + offset[f].
class Arena {
 public:
  explicit Arena(const std::vector<size_t>& field_bytes) {
    size_t off = 0;
    for (size_t b : field_bytes) {
      offsets_.push_back(off);
      off += (b + 255) / 256 * 256;
    }
    stride_ = std::max<size_t>(off, 256);
    sets_ = rotation_sets(double(stride_));
    buf_.resize(stride_ * size_t(sets_));
  }
  int sets() const { return sets_; }
  template <typename T>
  T* at(int s, int field) const { return reinterpret_cast<T*>(buf_.get() + size_t(s) * stride_ + offsets_[size_t(field)]); }
  // Uploads `host` into field f of set 0 and copies it to every other set.
  template <typename T>
  void fill(int field, const std::vector<T>& host) {
    const size_t bytes = host.size() * sizeof(T);
    QUAMBA_CUDA_CHECK(cudaMemcpy(at<char>(0, field), host.data(), bytes, cudaMemcpyHostToDevice));
    for (int s = 1; s < sets_; ++s)
      QUAMBA_CUDA_CHECK(cudaMemcpy(at<char>(s, field), at<char>(0, field), bytes, cudaMemcpyDeviceToDevice));
  }

 private:
  test::DeviceBuffer<char> buf_;
  std::vector<size_t> offsets_;
  size_t stride_ = 0;
  int sets_ = 1;
};

// Decode-size launches: `count` launches (one per rotating set) captured once into a CUDA graph
// and replayed back to back, without the flush. The graph removes the host's per-launch cost
// (several µs, more than these kernels take), as a decode loop run through graphs does; the
// reported time is the GPU time per launch, gaps between launches included.
template <typename Launch>
void time_graph(benchmark::State& state, Launch&& launch, int count) {
  cudaStream_t s;
  QUAMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  QUAMBA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  bool ok = true;
  for (int i = 0; i < count; ++i) ok = ok && launch(i, s) == ::quamba::Status::kSuccess;
  QUAMBA_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  QUAMBA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t a, b;
  QUAMBA_CUDA_CHECK(cudaEventCreate(&a));
  QUAMBA_CUDA_CHECK(cudaEventCreate(&b));
  QUAMBA_CUDA_CHECK(cudaGraphLaunch(exec, s));  // warm-up
  QUAMBA_CUDA_CHECK(cudaStreamSynchronize(s));
  if (!ok) state.SkipWithError("launch failed during capture");
  for (auto _ : state) {
    QUAMBA_CUDA_CHECK(cudaEventRecord(a, s));
    QUAMBA_CUDA_CHECK(cudaGraphLaunch(exec, s));
    QUAMBA_CUDA_CHECK(cudaEventRecord(b, s));
    QUAMBA_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    QUAMBA_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    state.SetIterationTime(ms * 1e-3 / count);
  }
  QUAMBA_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

// Times `reps` device-to-device copies of `bytes` (read) + `bytes` (written), one event pair
// each, L2 flushed before each when `flush`; returns the times in ms, the first two (warm-up)
// dropped.
inline std::vector<float> time_copies_ms(size_t bytes, int reps, bool flush) {
  void *src = nullptr, *dst = nullptr;
  QUAMBA_CUDA_CHECK(cudaMalloc(&src, bytes));
  QUAMBA_CUDA_CHECK(cudaMalloc(&dst, bytes));
  QUAMBA_CUDA_CHECK(cudaMemset(src, 1, bytes));
  cudaEvent_t a, b;
  QUAMBA_CUDA_CHECK(cudaEventCreate(&a));
  QUAMBA_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    if (flush) L2Flusher::get().flush();
    QUAMBA_CUDA_CHECK(cudaEventRecord(a));
    QUAMBA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice));
    QUAMBA_CUDA_CHECK(cudaEventRecord(b));
    QUAMBA_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    QUAMBA_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    if (r >= 2) ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaFree(src);
  cudaFree(dst);
  return ms;
}

// Median time in seconds of a device-to-device copy moving `bytes` in total (half read, half
// written), each rep after an L2 flush; cached per byte count.
inline double same_size_copy_seconds(double bytes) {
  static std::map<size_t, double> cache;
  const size_t half = static_cast<size_t>(bytes / 2.0);
  if (half == 0) return 0.0;
  auto it = cache.find(half);
  if (it != cache.end()) return it->second;
  std::vector<float> ms = time_copies_ms(half, 17, /*flush=*/true);
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  const double sec = ms[ms.size() / 2] * 1e-3;
  cache[half] = sec;
  return sec;
}

// Bytes moved per launch (fewest: each input read once, each output written once).
inline void report_bytes(benchmark::State& state, double bytes) {
  state.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  state.counters["bytes"] = bytes;
  if (copy_gbps() > 0) {
    // copy_frac is computed from the per-iteration time by the reporter: GB/s / copy GB/s.
    state.counters["copy_frac"] = benchmark::Counter(bytes / (copy_gbps() * 1e9),
                                                     benchmark::Counter::kIsIterationInvariantRate);
  }
  // Same-size copy time over this launch's time (the reporter divides by the per-iteration time).
  state.counters["copy_same_frac"] =
      benchmark::Counter(same_size_copy_seconds(bytes), benchmark::Counter::kIsIterationInvariantRate);
}

// Integer or floating-point operations per launch.
inline void report_ops(benchmark::State& state, double ops) {
  state.counters["TOPS"] = benchmark::Counter(ops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

// Measures a 1 GiB device-to-device copy (read + write bytes) and stores it in copy_gbps().
inline double measure_copy_gbps() {
  const size_t bytes = size_t(1) << 30;
  const std::vector<float> ms = time_copies_ms(bytes, 12, /*flush=*/false);
  const float best = *std::min_element(ms.begin(), ms.end());
  copy_gbps() = 2.0 * bytes / (best * 1e-3) / 1e9;
  return copy_gbps();
}

// Registered in every program so the copy ceiling appears in each table.
inline void BM_DeviceCopy(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  test::DeviceBuffer<char> src(bytes), dst(bytes);
  QUAMBA_CUDA_CHECK(cudaMemset(src.get(), 1, bytes));
  time_gpu(state, [&](int) { QUAMBA_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice)); });
  report_bytes(state, 2.0 * bytes);
}

inline int bench_main(int argc, char** argv) {
  if (!test::has_cuda_device()) {
    std::fprintf(stderr, "no CUDA device: benchmarks need a GPU\n");
    return 1;
  }
  cudaDeviceProp p{};
  QUAMBA_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  const double gbps = measure_copy_gbps();
  benchmark::AddCustomContext("gpu", p.name);
  benchmark::AddCustomContext("sm", std::to_string(p.major * 10 + p.minor));
  benchmark::AddCustomContext("copy_GBps", std::to_string(gbps));
  benchmark::AddCustomContext("l2_flush", L2Flusher::get().mode());
  benchmark::RegisterBenchmark("DeviceCopy", BM_DeviceCopy)->Arg(64 << 20)->Arg(256 << 20)
      ->UseManualTime()->Unit(benchmark::kMicrosecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace quamba::bench

#define QUAMBA_BENCH_MAIN() \
  int main(int argc, char** argv) { return ::quamba::bench::bench_main(argc, argv); }
