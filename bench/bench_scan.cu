// Selective scan benchmarks: W8A8 and fp16 prefill (B = 1, Mamba-2.8b E = 5120 and Mamba-130m
// E = 1536, N = 16) and the decode state update (E = 5120, batch 1..64, int8 and fp16 inputs).
//
// Model (prefill): bytes = u, δ, z read once (1 B each int8, 2 B fp16) + B, C rows + y written
// (fp16), per token; exponentials = B·L·E·N decay exps (the bound: MUFU ex2 at 16/clk/SM).
// Counters: GB/s and copy_frac (vs the same-run device copy), Gexp/s and exp_frac (vs
// SMs·16·clock, the special-function ceiling).
// Decode: bytes = state read + written (E·N·4·2 per sequence) + inputs + y; memory bound.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/bench_utils.cuh"
#include "common/cuda_utils.cuh"
#include "common/random.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/reference/gemm.hpp"
#include "quamba/reference/scan.hpp"
#include "quamba/scan/scan.cuh"

namespace {

using quamba::Status;
namespace qs = quamba::scan;
using quamba::test::DeviceBuffer;

double exp_ceiling_per_s() {
  int dev = 0, sms = 0, khz = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev));
  return double(sms) * 16.0 * double(khz) * 1e3;
}

void report_exps(benchmark::State& state, double exps) {
  state.counters["Gexp/s"] = benchmark::Counter(exps * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["exp_frac"] =
      benchmark::Counter(exps / exp_ceiling_per_s(), benchmark::Counter::kIsIterationInvariantRate);
}

// Segment-scan traits: SxKxWxM (segments, items, warps, min blocks); state-lane traits:
// QxTxCxMxG[xRs][xP][xO][xU] (states per lane, chunk tokens, channels per block, min blocks, token
// groups unrolled (group pairs with xO), reduce through smem, pair lanes, overlapped walk, unrolled prep); pipelined-kernel traits: PQxTxCxMxU[xPipe] (...,
// groups unrolled, software-pipelined walk).
template <class Traits>
std::string traits_name() {
  if constexpr (Traits::kKernel == 3)
    return "Seg" + traits_name<typename Traits::LaneTraits>() + "xB" + std::to_string(Traits::kTargetBlocks) + "xK" +
           std::to_string(Traits::kMinSegmentChunks) + (Traits::kShortFirst ? "" : "xEq");
  else if constexpr (Traits::kKernel == 2)
    return "PQ" + std::to_string(Traits::kStatesPerLane) + "xT" + std::to_string(Traits::kChunk) + "xC" +
           std::to_string(Traits::kChannels) + "xM" + std::to_string(Traits::kMinBlocks) + "xU" +
           std::to_string(Traits::kUnroll) + (Traits::kPipe ? "xPipe" : "");
  else if constexpr (Traits::kStateLanes)
    return "Q" + std::to_string(Traits::kStatesPerLane) + "xT" + std::to_string(Traits::kChunk) + "xC" +
           std::to_string(Traits::kChannels) + "xM" + std::to_string(Traits::kMinBlocks) + "xG" +
           std::to_string(Traits::kGroups) + (Traits::kSmemReduce ? "xRs" : "") + (Traits::kPairLanes ? "xP" : "") +
           (Traits::kOverlap ? "xO" : "") + (Traits::kUnrolledPrep ? "xU" : "") + (Traits::kTma ? "xTma" : "");
  else
    return "S" + std::to_string(Traits::kSegments) + "xK" + std::to_string(Traits::kItems) + "xW" +
           std::to_string(Traits::kWarps) + "xM" + std::to_string(Traits::kMinBlocks);
}

constexpr int64_t kR = 160;  // dt_rank of Mamba-2.8b: x_proj output row is (R | B | C)

// Layout as the block has it: u contiguous, δ contiguous, z = xz[..., E:], B/C = xdbl[..., R:].
struct I8Data {
  int64_t L, E, N;
  std::vector<int8_t> u, dt, xz, xdbl, A, D, bias;
  DeviceBuffer<int8_t> du, ddt, dxz, dxdbl, dA, dD, dbias;
  DeviceBuffer<__half> dy;
  I8Data(int64_t l, int64_t e, int64_t n) : L(l), E(e), N(n) {
    auto rng = quamba::test::make_rng(static_cast<uint64_t>(l * 131 + e));
    u = quamba::test::random_int8(L * E, rng);
    dt = quamba::test::random_int8(L * E, rng);
    xz = quamba::test::random_int8(L * 2 * E, rng);
    xdbl = quamba::test::random_int8(L * (kR + 2 * N), rng);
    A = quamba::test::random_int8(E * N, rng, 0, 127);
    D = quamba::test::random_int8(E, rng);
    bias = quamba::test::random_int8(E, rng);
    du.upload(u); ddt.upload(dt); dxz.upload(xz); dxdbl.upload(xdbl); dA.upload(A); dD.upload(D); dbias.upload(bias);
    dy.resize(static_cast<size_t>(L * E));
  }
  template <class T>
  static quamba::TensorView<const T, 3> v3(const T* p, int64_t L, int64_t C, int64_t pitch) {
    return quamba::make_strided_view<const T, 3>(p, {1, L, C}, {L * pitch, pitch, 1});
  }
  qs::PrefillParamsI8 params() {
    qs::PrefillParamsI8 p;
    p.u = v3(du.get(), L, E, E);
    p.delta = v3(ddt.get(), L, E, E);
    p.z = v3(dxz.get() + E, L, E, 2 * E);
    p.Bm = v3(dxdbl.get() + kR, L, N, kR + 2 * N);
    p.Cm = v3(dxdbl.get() + kR + N, L, N, kR + 2 * N);
    p.s_u = 1.f / 64; p.s_delta = 1.f / 32; p.s_z = 1.f / 32; p.s_B = 1.f / 64; p.s_C = 1.f / 64;
    p.A_log = dA.get(); p.s_A = 0.0218f;
    p.D = dD.get(); p.s_D = 1.f / 64;
    p.delta_bias = dbias.get(); p.s_delta_bias = 1.f / 40;
    p.y = quamba::make_view(dy.get(), 1, L, E);
    return p;
  }
  // Verifies channels [e0, e0 + 64) against the reference (the host scan is O(L·E·N)).
  bool verify(const qs::PrefillParamsI8& p, int64_t e0) {
    const int64_t C = 64;
    quamba::reference::ScanArgsI8 a;
    a.u = v3(u.data() + e0, L, C, E);
    a.delta = v3(dt.data() + e0, L, C, E);
    a.z = v3(xz.data() + E + e0, L, C, 2 * E);
    a.Bm = v3(xdbl.data() + kR, L, N, kR + 2 * N);
    a.Cm = v3(xdbl.data() + kR + N, L, N, kR + 2 * N);
    a.s_u = p.s_u; a.s_delta = p.s_delta; a.s_z = p.s_z; a.s_B = p.s_B; a.s_C = p.s_C;
    a.A_log = A.data() + e0 * N; a.s_A = p.s_A;
    a.D = D.data() + e0; a.s_D = p.s_D;
    a.delta_bias = bias.data() + e0; a.s_delta_bias = p.s_delta_bias;
    std::vector<float> yref(static_cast<size_t>(L * C));
    a.y = quamba::make_view(yref.data(), 1, L, C);
    if (quamba::reference::selective_scan_i8(a) != Status::kSuccess) return false;
    std::vector<uint16_t> y(static_cast<size_t>(L * E));
    QUAMBA_CUDA_CHECK(cudaMemcpy(y.data(), dy.get(), y.size() * 2, cudaMemcpyDeviceToHost));
    std::vector<float> g(yref.size());
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c) g[t * C + c] = quamba::half_bits_to_float(y[t * E + e0 + c]);
    // Same policy as tests/common/compare.hpp kTolScan (atol 1e-3, rtol 2e-3); the bench does not
    // link GoogleTest.
    size_t bad = 0;
    for (size_t i = 0; i < g.size(); ++i)
      if (!(std::fabs(g[i] - yref[i]) <= 1e-3 + 2e-3 * std::fabs(yref[i]))) {
        if (bad++ < 3) std::fprintf(stderr, "verify: y[t=%zu, e=%lld] got %g ref %g\n", i / C, (long long)(e0 + i % C), g[i], yref[i]);
      }
    return bad == 0;
  }
};

// kRun: time qs::run (the library's choice of variant for this shape and device) instead of
// launching Traits.
template <class Traits, bool kRun = false>
void BM_PrefillI8(benchmark::State& state) {
  const int64_t E = state.range(0), L = state.range(1), N = Traits::kDState;
  I8Data d(L, E, N);
  auto p = d.params();
  // Segmented variants (kKernel 3) take a workspace; it stays allocated outside the timing.
  size_t ws_bytes = 0;
  if constexpr (Traits::kKernel == 3) ws_bytes = qs::segmented_workspace_bytes<Traits>(p);
  DeviceBuffer<float> ws((ws_bytes + 3) / 4);
  auto launch = [&] {
    if constexpr (Traits::kKernel == 3) return qs::run_prefill_segmented<Traits>(p, ws.get(), ws_bytes, 0);
    else return kRun ? qs::run(p, nullptr, 0) : qs::launch_prefill<Traits>(p, 0);
  };
  if (qs::can_implement(p) != Status::kSuccess) { state.SkipWithError("can_implement failed"); return; }
  if (launch() != Status::kSuccess) { state.SkipWithError("launch failed"); return; }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  // Channels [0, 64) and [E-64, E), every token: every segment of a segmented variant.
  if (!d.verify(p, 0) || !d.verify(p, E - 64)) { state.SkipWithError("verification against the reference failed"); return; }
  if constexpr (Traits::kKernel == 3) state.counters["segments"] = qs::segment_plan<Traits>(p).segments;
  quamba::bench::time_gpu(state, [&](int) { return launch(); });
  const double bytes = double(L) * (3.0 * E + 2.0 * N + 2.0 * E);
  quamba::bench::report_bytes(state, bytes);
  report_exps(state, double(L) * E * N);
}

// The default variant with the fused dt_proj (PrefillParamsI8::dt_weight): δraw computed in the
// scan from x_proj's dt_low columns (dt_k = kR) and a (E, kR) weight. The block runs this
// instead of the dt_proj GEMM + the default scan; bytes as the default row (δ is not read, the
// dt_x rows come from L2).
void BM_PrefillI8FusedDt(benchmark::State& state) {
  const int64_t E = state.range(0), L = state.range(1), N = 16;
  I8Data d(L, E, N);
  auto rng = quamba::test::make_rng(static_cast<uint64_t>(E + 7));
  const std::vector<int8_t> w = quamba::test::random_int8(E * kR, rng);
  DeviceBuffer<int8_t> dw;
  dw.upload(w);
  const float alpha = 40.0f / (std::sqrt(float(kR)) * 5476.0f);
  auto p = d.params();
  p.delta = {};
  p.dt_x = I8Data::v3(d.dxdbl.get(), L, kR, kR + 2 * N);
  p.dt_weight = dw.get();
  p.dt_alpha = alpha;
  if (qs::can_implement(p) != Status::kSuccess) { state.SkipWithError("can_implement failed"); return; }
  if (qs::run(p, nullptr, 0) != Status::kSuccess) { state.SkipWithError("launch failed"); return; }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  // The verified channels' δraw on the host: the reference GEMM and requant epilogue on their
  // 64 weight rows, written into d.dt where verify() reads δ.
  namespace ref = quamba::reference;
  ref::EpilogueRef ep;
  ep.alpha = alpha;
  std::vector<int32_t> acc(static_cast<size_t>(L * 64));
  std::vector<int8_t> q(acc.size());
  for (int64_t e0 : {int64_t(0), E - 64}) {
    const auto A = quamba::make_strided_view<const int8_t, 2>(d.xdbl.data(), {L, kR}, {kR + 2 * N, 1});
    const auto W = quamba::make_strided_view<const int8_t, 2>(w.data() + e0 * kR, {64, kR}, {kR, 1});
    if (ref::gemm_i8_i32(A, W, quamba::make_strided_view<int32_t, 2>(acc.data(), {L, 64}, {64, 1})) != Status::kSuccess ||
        ref::epilogue_requant(quamba::make_strided_view<const int32_t, 2>(acc.data(), {L, 64}, {64, 1}), ep,
                              quamba::make_strided_view<int8_t, 2>(q.data(), {L, 64}, {64, 1})) != Status::kSuccess) {
      state.SkipWithError("reference dt_proj failed");
      return;
    }
    for (int64_t t = 0; t < L; ++t)
      for (int64_t e = 0; e < 64; ++e) d.dt[t * E + e0 + e] = q[static_cast<size_t>(t * 64 + e)];
  }
  if (!d.verify(p, 0) || !d.verify(p, E - 64)) { state.SkipWithError("verification against the reference failed"); return; }
  quamba::bench::time_gpu(state, [&](int) { return qs::run(p, nullptr, 0); });
  quamba::bench::report_bytes(state, double(L) * (3.0 * E + 2.0 * N + 2.0 * E));
  report_exps(state, double(L) * E * N);
  using Def = qs::DefaultPrefillTraits<16, int8_t>::type;
  int per_sm = 0;
  QUAMBA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, qs::detail::prefill_lanes_kernel<Def, qs::PrefillParamsI8, true, true>, Def::kThreads,
      Def::smem_bytes(kR)));
  state.counters["blocks_per_sm"] = per_sm;
}

// kRun: time qs::run (its choice of variant) instead of launching Traits.
template <class Traits, bool kRun = false>
void BM_PrefillF16(benchmark::State& state) {
  const int64_t E = state.range(0), L = state.range(1), N = Traits::kDState;
  auto rng = quamba::test::make_rng(7);
  auto halves = [&](size_t n, float lo, float hi) {
    auto f = quamba::test::random_floats(n, rng, lo, hi);
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = quamba::float_to_half_bits(f[i]);
    return h;
  };
  DeviceBuffer<uint16_t> du(halves(L * E, -2, 2)), ddt(halves(L * E, -4, 3)), dxz(halves(L * 2 * E, -4, 4)),
      dxdbl(halves(L * (kR + 2 * N), -2, 2));
  DeviceBuffer<float> dA(quamba::test::random_floats(E * N, rng, -16.f, -1.f));
  DeviceBuffer<float> dD(quamba::test::random_floats(E, rng)), dbias(quamba::test::random_floats(E, rng));
  DeviceBuffer<__half> dy(static_cast<size_t>(L * E));
  auto h = [](uint16_t* q) { return reinterpret_cast<const __half*>(q); };
  qs::PrefillParamsF16 p;
  p.u = I8Data::v3(h(du.get()), L, E, E);
  p.delta = I8Data::v3(h(ddt.get()), L, E, E);
  p.z = I8Data::v3(h(dxz.get()) + E, L, E, 2 * E);
  p.Bm = I8Data::v3(h(dxdbl.get()) + kR, L, N, kR + 2 * N);
  p.Cm = I8Data::v3(h(dxdbl.get()) + kR + N, L, N, kR + 2 * N);
  p.A = dA.get(); p.D = dD.get(); p.delta_bias = dbias.get();
  p.y = quamba::make_view(dy.get(), 1, L, E);
  if (qs::can_implement(p) != Status::kSuccess) { state.SkipWithError("can_implement failed"); return; }
  quamba::bench::time_gpu(state, [&](int) { return kRun ? qs::run(p, nullptr, 0) : qs::launch_prefill<Traits>(p, 0); });
  const double bytes = double(L) * (2.0 * 3 * E + 4.0 * N + 2.0 * E);
  quamba::bench::report_bytes(state, bytes);
  report_exps(state, double(L) * E * N);
}

// Decode, W8A8 (DecodeParamsI8) or fp16 (DecodeParamsF16) inputs; the same fp32 state traffic.
template <class Params>
void BM_Decode(benchmark::State& state) {
  constexpr bool kI8 = std::is_same_v<Params, qs::DecodeParamsI8>;
  const int64_t E = state.range(0), B = state.range(1), N = 16;
  auto rng = quamba::test::make_rng(11);
  // Rotate over enough state pools (> 2x L2 in all) that every launch reads its state from DRAM,
  // without an L2 flush between launches (its dirty lines would be written back during the
  // few-µs launches and inflate them); this is what consecutive decode steps see.
  int dev = 0, l2 = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  const double pool_bytes = double(B) * E * N * 4;
  const int kPools = std::max(4, static_cast<int>(std::ceil(2.0 * l2 / pool_bytes)) + 1);
  DeviceBuffer<float> states(size_t(kPools) * B * E * N);
  {
    const auto one = quamba::test::random_floats(size_t(B) * E * N, rng, -1.f, 1.f);
    for (int i = 0; i < kPools; ++i)
      QUAMBA_CUDA_CHECK(cudaMemcpy(states.get() + size_t(i) * one.size(), one.data(), one.size() * 4,
                                   cudaMemcpyHostToDevice));
  }
  DeviceBuffer<__half> dy(static_cast<size_t>(B * E));
  using In = std::conditional_t<kI8, int8_t, uint16_t>;
  auto inputs = [&](size_t n, float lo, float hi) {
    if constexpr (kI8) {
      return quamba::test::random_int8(n, rng);
    } else {
      auto f = quamba::test::random_floats(n, rng, lo, hi);
      std::vector<uint16_t> h(n);
      for (size_t i = 0; i < n; ++i) h[i] = quamba::float_to_half_bits(f[i]);
      return h;
    }
  };
  DeviceBuffer<In> du(inputs(B * E, -2, 2)), ddt(inputs(B * E, -4, 3)), dz(inputs(B * E, -4, 4)),
      dBC(inputs(B * 2 * N, -2, 2));
  Params p;
  using T = std::conditional_t<kI8, int8_t, __half>;
  auto in = [](In* q) { return reinterpret_cast<const T*>(q); };
  p.u = quamba::make_view<const T>(in(du.get()), B, E);
  p.delta = quamba::make_view<const T>(in(ddt.get()), B, E);
  p.z = quamba::make_view<const T>(in(dz.get()), B, E);
  p.Bm = quamba::make_strided_view<const T, 2>(in(dBC.get()), {B, N}, {2 * N, 1});
  p.Cm = quamba::make_strided_view<const T, 2>(in(dBC.get()) + N, {B, N}, {2 * N, 1});
  DeviceBuffer<int8_t> dA, dD, dbias;
  DeviceBuffer<float> fA, fD, fbias;
  if constexpr (kI8) {
    dA.upload(quamba::test::random_int8(E * N, rng, 0, 127));
    dD.upload(quamba::test::random_int8(E, rng));
    dbias.upload(quamba::test::random_int8(E, rng));
    p.s_u = 1.f / 64; p.s_delta = 1.f / 32; p.s_z = 1.f / 32; p.s_B = 1.f / 64; p.s_C = 1.f / 64;
    p.A_log = dA.get(); p.s_A = 0.0218f;
    p.D = dD.get(); p.s_D = 1.f / 64;
    p.delta_bias = dbias.get(); p.s_delta_bias = 1.f / 40;
  } else {
    fA.upload(quamba::test::random_floats(E * N, rng, -16.f, -1.f));
    fD.upload(quamba::test::random_floats(E, rng));
    fbias.upload(quamba::test::random_floats(E, rng));
    p.A = fA.get(); p.D = fD.get(); p.delta_bias = fbias.get();
  }
  p.num_slots = B;
  p.y = quamba::make_view(dy.get(), B, E);
  p.states = states.get();
  if (qs::can_implement(p) != Status::kSuccess) { state.SkipWithError("can_implement failed"); return; }
  // Each timed iteration runs kPerIteration launches and the rotation carries on across
  // iterations: the manual time is per launch, so a whole rotation per iteration (~385 pools at
  // B = 1 on an H200) would stretch a row's wall time by that factor.
  const int kPerIteration = std::min(kPools, 16);
  int64_t next = 0;
  quamba::bench::time_gpu(state, [&](int) {
    auto q = p;
    q.states = states.get() + size_t(next++ % kPools) * B * E * N;
    return qs::run(q, nullptr, 0);
  }, kPerIteration, /*flush=*/false);
  const double in_bytes = kI8 ? 1.0 : 2.0;
  const double bytes = double(B) * (E * N * 4.0 * 2 + in_bytes * (3.0 * E + 2.0 * N) + 2.0 * E);
  quamba::bench::report_bytes(state, bytes);
  state.counters["state_GB/s"] = benchmark::Counter(double(B) * E * N * 8.0 * 1e-9,
                                                    benchmark::Counter::kIsIterationInvariantRate);
  report_exps(state, double(B) * E * N);
}

// Prefill shapes (E, L): QUAMBA_BENCH_SCAN_SHAPES="E:L,E:L,..." replaces the default list (for
// example E = 2112 / 4224 / 6336, one / two / three 16-channel blocks on every SM of a 132-SM
// card); an entry that does not parse stops the program with a one-line message.
std::vector<std::pair<int64_t, int64_t>> prefill_shapes() {
  const char* env = std::getenv("QUAMBA_BENCH_SCAN_SHAPES");
  if (env == nullptr || *env == '\0') return {{5120, 512}, {5120, 2048}, {5120, 8192}, {1536, 2048}};
  std::vector<std::pair<int64_t, int64_t>> out;
  const std::string spec(env);
  size_t pos = 0;
  while (pos <= spec.size()) {
    const size_t end = std::min(spec.find(',', pos), spec.size());
    const std::string item = spec.substr(pos, end - pos);
    long long e = 0, l = 0;
    char tail = 0;
    if (std::sscanf(item.c_str(), "%lld:%lld%c", &e, &l, &tail) != 2 || e <= 0 || l <= 0) {
      std::fprintf(stderr, "QUAMBA_BENCH_SCAN_SHAPES: '%s' is not E:L with positive integers\n", item.c_str());
      std::exit(2);
    }
    out.emplace_back(e, l);
    pos = end + 1;
  }
  return out;
}

void add_prefill_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"E", "L"});
  for (auto [e, l] : prefill_shapes()) b->Args({e, l});
}

template <class Traits, bool kRun = false>
void register_prefill_i8(const char* tag) {
  const std::string name = std::string("ScanPrefillI8/") + tag + "/" + (kRun ? "run" : traits_name<Traits>());
  auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_PrefillI8<Traits, kRun>);
  add_prefill_shapes(b);
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

template <class Traits, bool kRun = false>
void register_prefill_f16(const char* tag) {
  const std::string name = std::string("ScanPrefillF16/") + tag + "/" + (kRun ? "run" : traits_name<Traits>());
  auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_PrefillF16<Traits, kRun>);
  add_prefill_shapes(b);
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

const bool kRegistered = [] {
  using DefI8 = qs::DefaultPrefillTraits<16, int8_t>::type;
  using DefF16 = qs::DefaultPrefillTraits<16, __half>::type;
  // "default": what run() launches; "baseline": the previous default (pair lanes, plain loop);
  // "new": the default launched explicitly and the candidates.
  register_prefill_i8<DefI8, true>("default");
  benchmark::RegisterBenchmark("ScanPrefillI8/default_fused_dt/run", BM_PrefillI8FusedDt)
      ->ArgNames({"E", "L"})->Args({5120, 2048})->Args({5120, 8192})->UseManualTime()->Unit(benchmark::kMicrosecond);
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, false, true>>("baseline");
  register_prefill_i8<DefI8>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, false, true, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 1, false, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 40, 1, int8_t, 1, false, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 4, false, true, true>>("new");
  // Tensor copies (kTma, sm_90; bench/RESULTS.md run AJ): the copy-loop default's traits with
  // them, then with the unrolled prep and one, two, four (run()'s on sm_90) or eight group pairs
  // per iteration, four pairs with 2 blocks per SM in the launch bounds, 32-channel blocks and
  // 64-token chunks.
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, false, true, true, false, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, false, true, true, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 1, false, true, true, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 4, false, true, true, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 8, false, true, true, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 2, int8_t, 4, false, true, true, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 32, 2, int8_t, 2, false, true, true, true, true>>("new");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 64, 16, 4, int8_t, 2, false, true, true, true, true>>("new");
  // 20-channel blocks (E = 5120: 256 blocks, two per SM; rows loaded from 16-byte boundaries),
  // four and two group pairs; 24-channel blocks (E = 1536 / 3072: 64 / 128 blocks). Measured
  // slower than 16 channels for int8 (bench/RESULTS.md run AK): "alt".
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 20, 2, int8_t, 4, false, true, true, true, true>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 20, 2, int8_t, 2, false, true, true, true, true>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 24, 2, int8_t, 4, false, true, true, true, true>>("alt");
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 64, 40, 1, int8_t, 1, true>>("new");
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 64, 16, 3, int8_t, 1, true>>("new");
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 64, 40, 1, int8_t, 8>>("new");
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 64, 40, 1, int8_t, 2>>("new");
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 64, 40, 1, int8_t>>("new");
  // Split along the sequence (segmented_scan.cuh): two passes over S segments, 64-token chunks
  // for more resident warps. Name: Seg<lane traits>xB<target blocks per pass>xK<min chunks per
  // segment>[xEq: equal segments, else segment 0 half as long]. The default segmented N = 16
  // variant (5 blocks/SM, S = 3 at E = 5120), its 6-blocks/SM sibling (80 registers), a two-wave
  // plan (S = 5 at E = 5120), the default with equal segments, and the 128-token tiling
  // (3 blocks/SM) split the same way.
  register_prefill_i8<qs::DefaultSegmentedTraits<16, int8_t>::type>("new");
  register_prefill_i8<qs::SegmentedPrefillTraits<qs::LanePrefillTraits<16, 2, 64, 16, 6, int8_t, 1, false, true>, 792>>("new");
  register_prefill_i8<qs::SegmentedPrefillTraits<qs::LanePrefillTraits<16, 2, 64, 16, 5, int8_t, 2, false, true>, 1320>>("new");
  register_prefill_i8<qs::SegmentedPrefillTraits<qs::LanePrefillTraits<16, 2, 64, 16, 5, int8_t, 2, false, true>, 660, 2, 64, false>>("new");
  register_prefill_i8<qs::SegmentedPrefillTraits<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, false, true>, 792>>("new");
  // Measured slower (2026-11-27, see bench/RESULTS.md): kept for the record, not in the default filter.
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 128, 40, 1, int8_t>>("alt");
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 64, 16, 3, int8_t>>("alt");
  register_prefill_i8<qs::PipedPrefillTraits<16, 2, 128, 16, 3, int8_t>>("alt");
  register_prefill_i8<qs::PipedPrefillTraits<16, 4, 64, 16, 3, int8_t>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 40, 1, int8_t, 2, false, true>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, true, true, true, true, true>>("alt");
  // Alternatives kept for the choice of default: the segment-scan kernel (default before the
  // state-lane one) and state-lane kernels with 1, 2 or 4 states per lane and 64- or 128-token
  // chunks.
  register_prefill_i8<qs::PrefillTraits<16, 16, 8, 8, 3, int8_t>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 1>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 64, 16, 4, int8_t, 2>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 8, 5, int8_t, 2>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 1, 128, 16, 3, int8_t, 1>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 1, 128, 16, 3, int8_t, 2>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 4, 128, 16, 3, int8_t, 2>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, true>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 1, 128, 16, 3, int8_t, 2, true>>("alt");
  register_prefill_i8<qs::LanePrefillTraits<16, 1, 128, 16, 3, int8_t, 1, true>>("alt");
  // "default": DefaultPrefillTraits (the copy-loop kernel, run()'s choice below sm_90) and
  // "default/run", run() itself: on sm_90 DefaultPrefillTmaTraits (the 16-channel "new" entry
  // with two pairs) or, where it takes fewer waves, WidePrefillTmaTraits (the 20-channel one).
  register_prefill_f16<DefF16>("default");
  register_prefill_f16<DefF16, true>("default");
  // run()'s 20-channel fp16 variant at E = 5120 (WidePrefillTmaTraits) and 24-channel blocks
  // (no gain at E = 1536 / 3072, run AK: "alt").
  register_prefill_f16<qs::LanePrefillTraits<16, 2, 128, 20, 2, __half, 2, false, true, true, true, true>>("new");
  register_prefill_f16<qs::LanePrefillTraits<16, 2, 128, 24, 2, __half, 2, false, true, true, true, true>>("alt");
  register_prefill_f16<qs::LanePrefillTraits<16, 2, 128, 16, 3, __half, 2, false, true, true, true, true>>("new");
  register_prefill_f16<qs::LanePrefillTraits<16, 2, 128, 16, 3, __half, 4, false, true, true, true, true>>("new");
  register_prefill_f16<qs::LanePrefillTraits<16, 2, 128, 16, 3, __half, 2, false, true, true, false, true>>("new");
  // the previous fp16 default (plain loop, no pair lanes)
  register_prefill_f16<qs::LanePrefillTraits<16, 2, 128, 16, 3, __half, 2>>("baseline");
  register_prefill_f16<qs::PrefillTraits<16, 16, 8, 8, 3, __half>>("alt");
  register_prefill_f16<qs::LanePrefillTraits<16, 2, 64, 16, 4, __half, 2>>("alt");
  for (auto [name, fn] : {std::pair{"ScanDecodeI8/N16", &BM_Decode<qs::DecodeParamsI8>},
                          std::pair{"ScanDecodeF16/N16", &BM_Decode<qs::DecodeParamsF16>}})
    benchmark::RegisterBenchmark(name, fn)
        ->ArgNames({"E", "B"})
        ->Args({5120, 1})
        ->Args({5120, 8})
        ->Args({5120, 16})
        ->Args({5120, 32})
        ->Args({5120, 64})
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  return true;
}();

}  // namespace

QUAMBA_BENCH_MAIN()
