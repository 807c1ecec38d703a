// Benchmarks of the Hadamard rotation (quamba/hadamard/hadamard.cuh).
//
// Byte model (fewest bytes, each input read once, each output written once):
//   bytes = M·n·(sizeof(in) + sizeof(out))   fp16→int8: 3 B/elem, fp16→fp16: 4 B/elem.
// n ∈ {5120 (mamba-2.8b E), 1536, 2048, 4096}, M ∈ {1, 2048, 8192}. Input/output sets rotate so
// the footprint of one timed batch exceeds 2× L2 (plus the L2 flush before every batch), so the
// numbers are DRAM numbers; M = 1 times a single launch (latency). The label is the Traits name
// of the variant run() picked. Each configuration is checked once against the dense reference
// (a sample of rows and columns) before it is timed.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/bench_utils.cuh"
#include "common/cuda_utils.cuh"
#include "common/random.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/hadamard/hadamard.cuh"
#include "quamba/reference/hadamard.hpp"

namespace {

namespace qh = quamba::hadamard;

template <typename T> struct DevOf { using type = T; };
template <> struct DevOf<__half> { using type = uint16_t; };

// Checks rows {0, M-1} on 128 columns against the reference's entries (double sums).
template <typename OutT>
bool verify(const std::vector<float>& x0, const std::vector<typename DevOf<OutT>::type>& out, int64_t M, int64_t n,
            float scale) {
  quamba::reference::HadamardEntries h;
  if (h.init(n) != quamba::Status::kSuccess) return false;
  int bad = 0;
  for (int64_t r : {int64_t(0), M - 1}) {
    const int64_t r_in = r % 2;  // the host copy holds two distinct rows, tiled
    for (int64_t c = 0; c < 128; ++c) {
      const int64_t i = (c * 7919) % n;
      double a = 0;
      for (int64_t j = 0; j < n; ++j) a += h(i, j) * static_cast<double>(x0[size_t(r_in * n + j)]);
      const auto g = out[size_t(r * n + i)];
      if constexpr (std::is_same_v<OutT, int8_t>) {
        const int want = quamba::quantize_i8(static_cast<float>(a), scale);
        if (std::abs(int(g) - want) > 1) ++bad;
      } else {
        const float want = quamba::round_to_half(static_cast<float>(a) * scale);
        const float gv = quamba::half_bits_to_float(g);
        if (!(std::fabs(gv - want) <= 2e-3f + 2e-3f * std::fabs(want))) ++bad;
      }
    }
  }
  return bad == 0;
}

// kRuns = 0: the public run() (dispatch by n). kRuns > 0: the n = 5120 kernel (m = 20, 2^8)
// with kRuns load runs per thread, to compare block shapes in one run.
template <typename OutT, int kRuns>
quamba::Status launch_variant(const qh::HadamardParams<__half, OutT>& p) {
  if constexpr (kRuns == 0) {
    return qh::run(p);
  } else {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch<__half, OutT, 20, 8, kRuns>(p, nullptr);
  }
}

template <typename OutT, int kRuns>
void BM_Hadamard(benchmark::State& state) {
  using InT = __half;
  using DOut = typename DevOf<OutT>::type;
  constexpr bool kInt8 = std::is_same_v<OutT, int8_t>;
  const int64_t n = state.range(0), M = state.range(1);
  const size_t in_bytes = size_t(M * n) * sizeof(InT), out_bytes = size_t(M * n) * sizeof(OutT);

  int dev = 0, l2 = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  const int sets = M == 1 ? 1 : int(std::min<size_t>(16, std::max<size_t>(1, (2 * size_t(l2)) / (in_bytes + out_bytes) + 1)));

  // Two distinct random rows tiled over M rows (the generator stays cheap at M = 8192).
  auto rng = quamba::test::make_rng(uint64_t(n) * 131 + uint64_t(M));
  std::vector<float> x0 = quamba::test::random_normal(size_t(2 * n), rng);
  std::vector<uint16_t> xh(size_t(M * n));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float& v = x0[size_t((r % 2) * n + j)];
      xh[size_t(r * n + j)] = quamba::float_to_half_bits(v);
    }
  for (auto& v : x0) v = quamba::round_to_half(v);

  std::vector<std::unique_ptr<quamba::test::DeviceBuffer<uint16_t>>> xs;
  std::vector<std::unique_ptr<quamba::test::DeviceBuffer<DOut>>> os;
  for (int s = 0; s < sets; ++s) {
    xs.emplace_back(new quamba::test::DeviceBuffer<uint16_t>(xh));
    os.emplace_back(new quamba::test::DeviceBuffer<DOut>(size_t(M * n)));
  }
  const float inv_s = 127.0f / 4.0f;
  qh::HadamardParams<InT, OutT> p;
  p.rows = M;
  p.n = n;
  p.x_row_stride = p.out_row_stride = n;
  p.scale = kInt8 ? qh::quant_factor(n, inv_s) : qh::orthonormal_scale(n);
  p.x = reinterpret_cast<const InT*>(xs[0]->get());
  p.out = reinterpret_cast<OutT*>(os[0]->get());
  if (launch_variant<OutT, kRuns>(p) != quamba::Status::kSuccess) {
    state.SkipWithError("run() failed");
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  if (!verify<OutT>(x0, os[0]->download(), M, n, p.scale)) {
    state.SkipWithError("result differs from the reference");
    return;
  }
  const std::string name = kRuns == 0 ? qh::variant_name<InT, OutT>(n)
                                      : qh::HadamardTraits<InT, OutT, 20, 8, (kRuns > 0 ? kRuns : 1)>::name();
  state.SetLabel(name + " sets=" + std::to_string(sets));
  quamba::bench::time_gpu(
      state,
      [&](int i) {
        auto q = p;
        q.x = reinterpret_cast<const InT*>(xs[size_t(i % sets)]->get());
        q.out = reinterpret_cast<OutT*>(os[size_t(i % sets)]->get());
        return launch_variant<OutT, kRuns>(q);
      },
      /*inner=*/sets);
  quamba::bench::report_bytes(state, double(in_bytes + out_bytes));
  state.counters["flops"] = 0;  // add/sub only: n·(log2 2^k + ~m/2) per row, far below any ALU roof
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {5120, 1536, 2048, 4096})
    for (int64_t M : {1, 2048, 8192}) b->Args({n, M});
  b->ArgNames({"n", "M"})->UseManualTime()->Unit(benchmark::kMicrosecond);
}

void sizes_5120(benchmark::internal::Benchmark* b) {
  for (int64_t M : {1, 2048, 8192}) b->Args({5120, M});
  b->ArgNames({"n", "M"})->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 0)->Name("Hadamard_f16_to_i8")->Apply(sizes);
BENCHMARK_TEMPLATE(BM_Hadamard, __half, 0)->Name("Hadamard_f16_to_f16")->Apply(sizes);
// Block-shape variants of the n = 5120 kernel (the default is 2 runs per thread).
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 1)->Name("Hadamard_f16_to_i8_runs1")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 4)->Name("Hadamard_f16_to_i8_runs4")->Apply(sizes_5120);

}  // namespace

QUAMBA_BENCH_MAIN()
