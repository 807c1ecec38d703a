// Benchmarks of quamba/quant/observers.cuh at Mamba-2.8B calibration shapes (E = 5120, samples of
// 512 tokens, fp16 activations).
//
// Byte model (fewest bytes):
//   absmax:          rows·cols·sizeof(T) read (the result is one float).
//   quantile:        reported as time per call; its floor is the gather (n·(2 + 4) bytes) plus
//                    CUB's radix sort of n uint32 keys over bits [0, 31): 4 onesweep passes of
//                    8 bits, each reading and writing n·4 bytes (+ one histogram pass), ≈ 40·n
//                    bytes, i.e. ~35 µs for n = 2.6M at 3 TB/s; "bytes" counts that model.
//   calibrator u:    observe(kU) (absmax + gather + sort of [tail | chunk]) + end_sample per
//                    layer and sample: the quantile's cost plus the absmax read and small launches.
// Each variant is verified once against the host reference before timing.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/bench_utils.cuh"
#include "common/random.hpp"
#include "quamba/quant/observers.cuh"
#include "quamba/reference/quant.hpp"

namespace {

using quamba::Status;
using quamba::test::DeviceBuffer;
namespace q = quamba::quant;

struct Data {
  DeviceBuffer<__half> buf;
  std::vector<float> dense;  // the viewed values as floats
  q::DeviceMatrixView view;
};

Data make_data(int64_t rows, int64_t cols, int64_t stride) {
  Data d;
  auto rng = quamba::test::make_rng(static_cast<uint64_t>(rows * 131 + cols * 7 + stride));
  std::vector<float> v = quamba::test::random_normal(static_cast<size_t>(rows * stride), rng);
  for (size_t i = 0; i < v.size(); i += 9973) v[i] *= 50.f;  // outliers
  std::vector<__half> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    h[i] = quamba::test::to_half(v[i]);
    v[i] = quamba::test::from_half(h[i]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) d.dense.push_back(v[static_cast<size_t>(r * stride + c)]);
  d.buf.upload(h);
  d.view.data = d.buf.get();
  d.view.type = q::ElemType::kF16;
  d.view.rows = rows;
  d.view.cols = cols;
  d.view.row_stride = stride;
  return d;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

template <typename Traits>
void BM_Absmax(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), stride = state.range(2);
  Data d = make_data(rows, cols, stride);
  DeviceBuffer<float> acc(1);
  acc.upload({0.f});
  q::AbsmaxParams p;
  p.src = d.view;
  p.accum = acc.get();
  if (q::run_absmax_with<Traits>(p, nullptr) != Status::kSuccess) {
    state.SkipWithError("variant not applicable");
    return;
  }
  quamba::reference::AbsmaxObserver o;
  o.observe(d.dense.data(), d.dense.size());
  if (bits(acc.download()[0]) != bits(o.value)) {
    state.SkipWithError("absmax differs from the reference");
    return;
  }
  quamba::bench::time_gpu(state, [&](int) { return q::run_absmax_with<Traits>(p, nullptr); });
  quamba::bench::report_bytes(state, 2.0 * rows * cols);
}

void BM_AbsQuantile(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Data d = make_data(rows, cols, cols);
  DeviceBuffer<float> out(1);
  q::AbsQuantileParams p;
  p.src = d.view;
  p.alpha = 0.99999;
  p.out = out.get();
  const size_t bytes = q::workspace_size(p);
  DeviceBuffer<char> ws(bytes);
  if (q::run(p, ws.get(), bytes, nullptr) != Status::kSuccess) {
    state.SkipWithError("run failed");
    return;
  }
  float want = 0.f;
  quamba::reference::abs_quantile(d.dense, p.alpha, &want);
  if (bits(out.download()[0]) != bits(want)) {
    state.SkipWithError("quantile differs from the reference");
    return;
  }
  quamba::bench::time_gpu(state, [&](int) { return q::run(p, ws.get(), bytes, nullptr); });
  quamba::bench::report_bytes(state, 40.0 * rows * cols);
  state.counters["workspace_MB"] = static_cast<double>(bytes) / 1e6;
}

// One layer's u of one sample: observe(kU) in `chunks` calls, then end_sample.
void BM_CalibratorU(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), chunks = state.range(2);
  const bool keep = state.range(3) != 0;
  Data d = make_data(rows, cols, cols);
  q::GpuCalibratorConfig cfg;
  cfg.n_layer = 1;
  cfg.d_inner = cols;
  cfg.max_sample_tokens = rows;
  cfg.keep_u_values = keep;
  cfg.max_total_tokens = keep ? rows * 512 : 0;
  q::GpuCalibrator cal(cfg);
  const size_t bytes = q::GpuCalibrator::workspace_size(cfg);
  DeviceBuffer<char> ws(bytes);
  if (cal.init(ws.get(), bytes, nullptr) != Status::kSuccess) {
    state.SkipWithError("init failed");
    return;
  }
  const int64_t step = (rows + chunks - 1) / chunks;
  auto sample = [&]() {
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      q::DeviceMatrixView v = d.view;
      v.rows = std::min(step, rows - r0);
      v.data = d.buf.get() + r0 * cols;
      if (cal.observe(0, q::Site::kU, v, nullptr) != Status::kSuccess) return Status::kErrorInternal;
    }
    return cal.end_sample(nullptr);
  };
  int64_t samples = 0;
  quamba::bench::time_gpu(state, [&](int) {
    // Stay inside max_total_tokens: restart the run before the budget is spent.
    if (keep && ++samples >= 500) {
      samples = 0;
      if (cal.init(ws.get(), bytes, nullptr) != Status::kSuccess) return Status::kErrorInternal;
    }
    return sample();
  });
  quamba::bench::report_bytes(state, 40.0 * rows * cols);
  state.counters["workspace_MB"] = static_cast<double>(bytes) / 1e6;
}

void register_all() {
  // u (512, 5120) contiguous; x = xz[..., :E] (stride 2E); a 16k-token prefill slab.
  const std::vector<std::vector<int64_t>> shapes = {{512, 5120, 5120}, {512, 5120, 10240}, {16384, 5120, 5120}};
  for (const auto& s : shapes) {
    benchmark::RegisterBenchmark("Absmax/f16_vec8", BM_Absmax<q::AbsmaxTraitsF16>)
        ->Args(s)->UseManualTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("Absmax/scalar", BM_Absmax<q::AbsmaxTraitsScalar>)
        ->Args(s)->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("AbsQuantile/f16", BM_AbsQuantile)
      ->Args({512, 5120})->Args({512, 1536})->Args({2048, 5120})->UseManualTime()->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("CalibratorU/f16", BM_CalibratorU)
      ->Args({512, 5120, 1, 0})->Args({512, 5120, 4, 0})->Args({512, 5120, 1, 1})->Args({512, 1536, 1, 1})
      ->UseManualTime()->Unit(benchmark::kMicrosecond);
}

const bool registered = (register_all(), true);

}  // namespace

QUAMBA_BENCH_MAIN()
