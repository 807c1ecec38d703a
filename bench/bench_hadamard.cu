// Benchmarks of the Hadamard rotation (quamba/hadamard/hadamard.cuh).
//
// Byte model (fewest bytes, each input read once, each output written once):
//   bytes = M·n·(sizeof(in) + sizeof(out))   fp16→int8: 3 B/elem, fp16→fp16: 4 B/elem.
// n ∈ {5120 (mamba-2.8b E), 1536, 2048, 4096}, M ∈ {1, 2048, 8192}. Input/output sets rotate
// (offsets into one allocation) so the footprint of one timed batch exceeds 2× L2, so the
// numbers are DRAM numbers: M ≥ 2048 also flushes L2 before every batch; M = 1 does not (the
// flush would inflate a few-µs launch) and replays a CUDA graph of one launch per rotating set
// (> 2× L2 in all; time_graph: GPU time per launch, gaps included, no host launch cost), which
// is what a decode step run through graphs sees. The label is the Traits name of
// the variant run() picked. Each configuration is checked once against the dense reference (a
// sample of rows and columns) before it is timed. run() takes the streamed kernel at n = 1536,
// 3072, 5120 (fp16 in); *_generic: the generic kernel (run_generic(), run()'s choice before), *_streamed*:
// the streamed kernel (run_streamed()) and its ring-depth / split / grid variants. *_staged*: the
// staged kernel (run_staged())
// and its block-shape variants, *_pipelined*: the pipelined kernel (run_pipelined()) and its
// ring-depth / occupancy variants, for a same-run comparison with run()'s generic kernel.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <initializer_list>
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

// kVariant = 0: the public run() (the generic kernel); 1: run_staged() (the staged kernel for the
// same n); 4, 5: the staged n = 5120 kernel with __launch_bounds__ minimum 4 / 5 blocks per SM
// (fewer registers); 9: the staged n = 5120 kernel with one row group per block (no persistent
// loop, no prefetch); 20: run_pipelined() (the pipelined kernel, 2-slot ring); 23: the pipelined
// n = 5120 kernel with a 3-slot ring; 24: the pipelined n = 5120 kernel, 2 slots, minimum 4
// blocks per SM (more registers allowed); 30: run_pipelined_mma() (the tensor-core pipelined
// kernel, n = 3072 / 5120 / 7168); 33: the tensor-core n = 5120 kernel with a 3-slot ring.
// 40 / 41: run_streamed() split 1 / 2 (the streamed kernel, n = 3072 / 5120); 42: streamed
// n = 5120, 2-slot ring, 8 blocks per SM (register-bound); 43: streamed n = 5120, 4-slot ring
// (5 blocks per SM); 44: streamed n = 5120 with one row per block (no persistent loop: the block
// scheduler balances the tail); 45: streamed n = 5120 split 2 with a 2-slot ring (7 blocks per
// SM); 50: run_generic() (the generic kernel, run()'s choice before the streamed variant).
template <typename OutT, int kVariant>
quamba::Status launch_variant(const qh::HadamardParams<__half, OutT>& p, cudaStream_t st = nullptr) {
  if constexpr (kVariant == 0) {
    return qh::run(p, nullptr, st);
  } else if constexpr (kVariant == 40 || kVariant == 41) {
    return qh::run_streamed(p, nullptr, st, kVariant == 40 ? 1 : 2);
  } else if constexpr (kVariant == 42) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_streamed<OutT, 20, 2, 1, 8>(p, st);
  } else if constexpr (kVariant == 43) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_streamed<OutT, 20, 4, 1>(p, st);
  } else if constexpr (kVariant == 44) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_streamed<OutT, 20, qh::kStreamedDefaultStages, 1, 0, /*kPersistent=*/false>(p, st);
  } else if constexpr (kVariant == 45) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_streamed<OutT, 20, 2, 2>(p, st);
  } else if constexpr (kVariant >= 3000) {
    // 3000 (n = 5120) / 4000 (n = 3072) + 10·pairs + window: the bulk-copy kernel.
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_bulk<OutT, kVariant / 1000 == 4 ? 12 : 20, (kVariant / 10) % 10, kVariant % 10>(p, st);
  } else if constexpr (kVariant >= 1000) {
    // 1000·g + 100·split + 10·stages + cap: the streamed kernel (g = 1: n = 5120, g = 2: n = 3072)
    // with at most `cap` blocks per SM (rows in flight per SM = cap · (stages − 1)).
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_streamed<OutT, kVariant / 1000 == 2 ? 12 : 20, (kVariant / 10) % 10, (kVariant / 100) % 10>(
        p, st, kVariant % 10);
  } else if constexpr (kVariant == 50) {
    return qh::run_generic(p, nullptr, st);
  } else if constexpr (kVariant == 20) {
    return qh::run_pipelined(p, nullptr, st);
  } else if constexpr (kVariant == 30) {
    return qh::run_pipelined_mma(p, nullptr, st);
  } else if constexpr (kVariant == 33) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_pipelined_mma<OutT, 20, 3>(p, st);
  } else if constexpr (kVariant == 23) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_pipelined<__half, OutT, 20, 8, 3>(p, st);
  } else if constexpr (kVariant == 24) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_pipelined<__half, OutT, 20, 8, 2, 4>(p, st);
  } else if constexpr (kVariant == 9) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_staged<__half, OutT, 20, 8, 1, /*kPersistent=*/false>(p, st);
  } else if constexpr (kVariant > 1) {
    QUAMBA_RETURN_IF_ERROR(qh::can_implement(p));
    return qh::launch_staged<__half, OutT, 20, 8, kVariant>(p, st);
  } else {
    return qh::run_staged(p, nullptr, st);
  }
}

template <typename OutT, int kVariant>
std::string variant_label(int64_t n, int64_t M) {
  if constexpr (kVariant == 0) {
    return qh::variant_name<__half, OutT>(n, false, M);
  } else if constexpr (kVariant == 40 || kVariant == 41) {
    return qh::streamed_variant_name<__half, OutT>(n, kVariant == 40 ? 1 : 2);
  } else if constexpr (kVariant == 42) {
    return qh::HadamardStreamedTraits<OutT, 20, 2, 1, 8>::name();
  } else if constexpr (kVariant == 43) {
    return qh::HadamardStreamedTraits<OutT, 20, 4, 1>::name();
  } else if constexpr (kVariant == 44) {
    return qh::HadamardStreamedTraits<OutT, 20>::name() + "_onerow";
  } else if constexpr (kVariant == 45) {
    return qh::HadamardStreamedTraits<OutT, 20, 2, 2>::name();
  } else if constexpr (kVariant >= 3000) {
    return qh::HadamardBulkTraits<OutT, kVariant / 1000 == 4 ? 12 : 20, (kVariant / 10) % 10, kVariant % 10>::name();
  } else if constexpr (kVariant >= 1000) {
    return qh::HadamardStreamedTraits<OutT, kVariant / 1000 == 2 ? 12 : 20, (kVariant / 10) % 10,
                                      (kVariant / 100) % 10>::name() + "_cap" +
           std::to_string(kVariant % 10);
  } else if constexpr (kVariant == 50) {
    return qh::generic_name<__half, OutT>(n);
  } else if constexpr (kVariant == 20) {
    return qh::pipelined_variant_name<__half, OutT>(n);
  } else if constexpr (kVariant == 30) {
    return qh::pipelined_mma_variant_name<__half, OutT>(n);
  } else if constexpr (kVariant == 33) {
    return qh::HadamardPipelinedMmaTraits<__half, OutT, 20, 3>::name();
  } else if constexpr (kVariant == 23) {
    return qh::HadamardPipelinedTraits<__half, OutT, 20, 8, 3>::name();
  } else if constexpr (kVariant == 24) {
    return qh::HadamardPipelinedTraits<__half, OutT, 20, 8, 2, 4>::name();
  } else if constexpr (kVariant == 9) {
    return qh::HadamardStagedTraits<__half, OutT, 20, 8, 1>::name() + "_onegroup";
  } else if constexpr (kVariant > 1) {
    return qh::HadamardStagedTraits<__half, OutT, 20, 8, kVariant>::name();
  } else {
    return qh::variant_name<__half, OutT>(n, /*staged=*/true);
  }
}

template <typename OutT, int kVariant>
void BM_Hadamard(benchmark::State& state) {
  using InT = __half;
  using DOut = typename DevOf<OutT>::type;
  constexpr bool kInt8 = std::is_same_v<OutT, int8_t>;
  const int64_t n = state.range(0), M = state.range(1);
  const size_t elems = size_t(M * n);
  const size_t in_bytes = elems * sizeof(InT), out_bytes = elems * sizeof(OutT);

  int dev = 0, l2 = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  const bool flush = M > 1;
  // M = 1: enough sets that one graph replay (one launch per set) streams more than 2× L2.
  const int sets = int(std::min<size_t>(flush ? 8192 : 32768, (2 * size_t(l2)) / (in_bytes + out_bytes) + 1));

  // Two distinct random rows tiled over M rows (the generator stays cheap at M = 8192).
  auto rng = quamba::test::make_rng(uint64_t(n) * 131 + uint64_t(M));
  std::vector<float> x0 = quamba::test::random_normal(size_t(2 * n), rng);
  std::vector<uint16_t> xh(elems);
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = 0; j < n; ++j) xh[size_t(r * n + j)] = quamba::float_to_half_bits(x0[size_t((r % 2) * n + j)]);
  for (auto& v : x0) v = quamba::round_to_half(v);

  quamba::test::DeviceBuffer<uint16_t> xs(elems * size_t(sets));
  quamba::test::DeviceBuffer<DOut> os(elems * size_t(sets));
  for (int s = 0; s < sets; ++s)
    QUAMBA_CUDA_CHECK(cudaMemcpy(xs.get() + size_t(s) * elems, xh.data(), in_bytes, cudaMemcpyHostToDevice));
  const float inv_s = 127.0f / 4.0f;
  qh::HadamardParams<InT, OutT> p;
  p.rows = M;
  p.n = n;
  p.x_row_stride = p.out_row_stride = n;
  p.scale = kInt8 ? qh::quant_factor(n, inv_s) : qh::orthonormal_scale(n);
  p.x = reinterpret_cast<const InT*>(xs.get());
  p.out = reinterpret_cast<OutT*>(os.get());
  if (launch_variant<OutT, kVariant>(p) != quamba::Status::kSuccess) {
    state.SkipWithError("run() failed");
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<DOut> first(elems);
  QUAMBA_CUDA_CHECK(cudaMemcpy(first.data(), os.get(), out_bytes, cudaMemcpyDeviceToHost));
  if (!verify<OutT>(x0, first, M, n, p.scale)) {
    state.SkipWithError("result differs from the reference");
    return;
  }
  // Launches per timed batch: one pass over the sets when they are few (M ≥ 2048); for M = 1 the
  // thousands of sets are walked across batches by a running counter (time_gpu reports the
  // per-launch time, which Google Benchmark's min_time counts per iteration).
  const int inner = std::min(sets, 64);
  state.SetLabel(variant_label<OutT, kVariant>(n, M) + " sets=" + std::to_string(sets) + (flush ? "" : " graph"));
  int64_t next = 0;
  if (flush) {
    quamba::bench::time_gpu(
        state,
        [&](int) {
          const size_t k = size_t(next++ % sets);
          auto q = p;
          q.x = reinterpret_cast<const InT*>(xs.get() + k * elems);
          q.out = reinterpret_cast<OutT*>(os.get() + k * elems);
          return launch_variant<OutT, kVariant>(q);
        },
        inner, flush);
  } else {
    // Decode size: one launch per rotating set captured into a CUDA graph and replayed (the
    // host's per-launch cost, larger than the kernel, is what a decode loop run through graphs
    // does not pay); GPU time per launch, gaps included.
    quamba::bench::time_graph(
        state,
        [&](int i, cudaStream_t st) {
          const size_t k = size_t(i % sets);
          auto q = p;
          q.x = reinterpret_cast<const InT*>(xs.get() + k * elems);
          q.out = reinterpret_cast<OutT*>(os.get() + k * elems);
          return launch_variant<OutT, kVariant>(q, st);
        },
        sets);
  }
  quamba::bench::report_bytes(state, double(in_bytes + out_bytes));
  state.counters["flops"] = 0;  // add/sub only: n·(log2 2^k + ~m/3) per row, far below any ALU roof
}

// Rows n × M ∈ {1, 2048, 8192}. Fixed iteration count: an M = 1 iteration replays a graph of
// thousands of launches while it reports the per-launch time, so a min_time rule would run it
// for minutes.
void rows_for(benchmark::internal::Benchmark* b, std::initializer_list<int64_t> ns) {
  for (int64_t n : ns)
    for (int64_t M : {1, 2048, 8192}) b->Args({n, M});
  b->ArgNames({"n", "M"})->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
}
void sizes(benchmark::internal::Benchmark* b) { rows_for(b, {5120, 1536, 2048, 4096}); }
void sizes_staged(benchmark::internal::Benchmark* b) { rows_for(b, {5120, 1536}); }
void sizes_5120(benchmark::internal::Benchmark* b) { rows_for(b, {5120}); }
void sizes_5120_prefill(benchmark::internal::Benchmark* b) {
  for (int64_t M : {2048, 4096, 8192}) b->Args({5120, M});
  b->ArgNames({"n", "M"})->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
}
void sizes_3072_prefill(benchmark::internal::Benchmark* b) {
  for (int64_t M : {2048, 8192}) b->Args({3072, M});
  b->ArgNames({"n", "M"})->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
}
// The tensor-core variants (streamed, pipelined_mma): H_m ⊗ H_256 with m ∈ {12, 20}.
void sizes_mma(benchmark::internal::Benchmark* b) { rows_for(b, {5120, 3072}); }

BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 0)->Name("Hadamard_f16_to_i8")->Apply(sizes);
BENCHMARK_TEMPLATE(BM_Hadamard, __half, 0)->Name("Hadamard_f16_to_f16")->Apply(sizes);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 1)->Name("Hadamard_f16_to_i8_staged")->Apply(sizes_staged);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 4)->Name("Hadamard_f16_to_i8_staged_minblocks4")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 5)->Name("Hadamard_f16_to_i8_staged_minblocks5")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 9)->Name("Hadamard_f16_to_i8_staged_onegroup")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 20)->Name("Hadamard_f16_to_i8_pipelined")->Apply(sizes_staged);
BENCHMARK_TEMPLATE(BM_Hadamard, __half, 20)->Name("Hadamard_f16_to_f16_pipelined")->Apply(sizes_staged);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 30)->Name("Hadamard_f16_to_i8_pipelined_mma")->Apply(sizes_mma);
BENCHMARK_TEMPLATE(BM_Hadamard, __half, 30)->Name("Hadamard_f16_to_f16_pipelined_mma")->Apply(sizes_mma);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 33)->Name("Hadamard_f16_to_i8_pipelined_mma_stages3")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 50)->Name("Hadamard_f16_to_i8_generic")->Apply(sizes_mma);
BENCHMARK_TEMPLATE(BM_Hadamard, __half, 50)->Name("Hadamard_f16_to_f16_generic")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 40)->Name("Hadamard_f16_to_i8_streamed")->Apply(sizes_mma);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 41)->Name("Hadamard_f16_to_i8_streamed_split2")->Apply(sizes_mma);
BENCHMARK_TEMPLATE(BM_Hadamard, __half, 40)->Name("Hadamard_f16_to_f16_streamed")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 42)->Name("Hadamard_f16_to_i8_streamed_stages2")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 43)->Name("Hadamard_f16_to_i8_streamed_stages4")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 44)->Name("Hadamard_f16_to_i8_streamed_onerow")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 45)->Name("Hadamard_f16_to_i8_streamed_split2_stages2")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 1124)->Name("Hadamard_f16_to_i8_streamed_n5120_x1_s2_cap4")->Apply(sizes_5120_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 1126)->Name("Hadamard_f16_to_i8_streamed_n5120_x1_s2_cap6")->Apply(sizes_5120_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 2124)->Name("Hadamard_f16_to_i8_streamed_n3072_x1_s2_cap4")->Apply(sizes_3072_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 2126)->Name("Hadamard_f16_to_i8_streamed_n3072_x1_s2_cap6")->Apply(sizes_3072_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 3084)->Name("Hadamard_f16_to_i8_bulk_n5120_p8_w4")->Apply(sizes_5120_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 3086)->Name("Hadamard_f16_to_i8_bulk_n5120_p8_w6")->Apply(sizes_5120_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 3088)->Name("Hadamard_f16_to_i8_bulk_n5120_p8_w8")->Apply(sizes_5120_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 3066)->Name("Hadamard_f16_to_i8_bulk_n5120_p6_w6")->Apply(sizes_5120_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 3046)->Name("Hadamard_f16_to_i8_bulk_n5120_p4_w6")->Apply(sizes_5120_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 4084)->Name("Hadamard_f16_to_i8_bulk_n3072_p8_w4")->Apply(sizes_3072_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 4086)->Name("Hadamard_f16_to_i8_bulk_n3072_p8_w6")->Apply(sizes_3072_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 4088)->Name("Hadamard_f16_to_i8_bulk_n3072_p8_w8")->Apply(sizes_3072_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 4066)->Name("Hadamard_f16_to_i8_bulk_n3072_p6_w6")->Apply(sizes_3072_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 4046)->Name("Hadamard_f16_to_i8_bulk_n3072_p4_w6")->Apply(sizes_3072_prefill);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 23)->Name("Hadamard_f16_to_i8_pipelined_stages3")->Apply(sizes_5120);
BENCHMARK_TEMPLATE(BM_Hadamard, int8_t, 24)->Name("Hadamard_f16_to_i8_pipelined_minblocks4")->Apply(sizes_5120);

}  // namespace

QUAMBA_BENCH_MAIN()
