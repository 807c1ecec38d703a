// Benchmarks of quamba/conv1d: causal depthwise conv1d + SiLU, prefill (B = 1, L = M, x a
// strided slice of xz with token stride 2E) and decode update (batch 1 and 64), int8 and fp16,
// at Mamba-130m (E = 1536) and Mamba-2.8B (E = 5120) shapes, K = 4.
//
// Byte model (fewest bytes, each input read once, each output written once):
//   prefill:  M·E·(sizeof(x) + sizeof(out)) + weights E·K + bias E (int8: 1 byte, fp16 path: 4)
//             + final state E·K·sizeof(x)
//   update:   B·E·(sizeof(x) + sizeof(out)) + 2·B·E·K·sizeof(x) (state read + write) + weights
// Inputs rotate over enough buffer sets to exceed 2× L2, so every launch reads DRAM.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/bench_utils.cuh"
#include "common/random.hpp"
#include "quamba/conv1d/causal_conv1d.cuh"
#include "quamba/reference/conv1d.hpp"

namespace {

using quamba::Status;
using quamba::test::DeviceBuffer;
constexpr int kK = 4;

__half to_half(float f) {
  __half_raw r;
  r.x = quamba::float_to_half_bits(f);
  return __half(r);
}
float from_half(__half h) { return quamba::half_bits_to_float(static_cast<__half_raw>(h).x); }

int rotation_sets(double bytes_per_set) {
  int dev = 0, l2 = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return std::max(1, std::min(64, static_cast<int>(std::ceil(2.0 * l2 / std::max(bytes_per_set, 1.0)))));
}

template <typename T>
struct Inputs {
  using W = typename quamba::conv1d::Conv1dTypes<T>::Weight;
  std::vector<T> xz;  // (M, 2E)
  std::vector<W> w, b;
  quamba::reference::Conv1dScalesI8 scales{0.05f * 0.012f, 0.02f, 127.0f / 5.0f};
  Inputs(int64_t M, int E) {
    auto rng = quamba::test::make_rng(uint64_t(M) * 977 + E);
    if constexpr (std::is_same_v<T, int8_t>) {
      xz = quamba::test::random_int8(size_t(M) * 2 * E, rng);
      w = quamba::test::random_int8(size_t(E) * kK, rng);
      b = quamba::test::random_int8(size_t(E), rng);
    } else {
      const auto f = quamba::test::random_floats(size_t(M) * 2 * E, rng, -2.f, 2.f);
      xz.resize(f.size());
      for (size_t i = 0; i < f.size(); ++i) xz[i] = to_half(f[i]);
      w = quamba::test::random_floats(size_t(E) * kK, rng, -0.8f, 0.8f);
      b = quamba::test::random_floats(size_t(E), rng, -0.5f, 0.5f);
    }
  }
};

template <typename T>
struct PrefillSet {
  DeviceBuffer<T> xz, out, state;
};

template <typename Traits, typename T>
void bm_prefill(benchmark::State& state, int64_t M, int E) {
  using W = typename Inputs<T>::W;
  Inputs<T> in(M, E);
  const double bytes = double(M) * E * 2 * sizeof(T) + double(E) * (kK + 1) * sizeof(W) + double(E) * kK * sizeof(T);
  const int sets = rotation_sets(bytes);
  std::vector<std::unique_ptr<PrefillSet<T>>> bufs;
  for (int s = 0; s < sets; ++s) {
    auto p = std::make_unique<PrefillSet<T>>();
    p->xz.upload(in.xz);
    p->out.resize(size_t(M) * E);
    p->state.resize(size_t(E) * kK);
    bufs.push_back(std::move(p));
  }
  DeviceBuffer<W> w(in.w), b(in.b);
  auto params = [&](int s) {
    quamba::conv1d::Conv1dParams<T> p;
    p.x = bufs[size_t(s)]->xz.get();
    p.x_token_stride = 2 * E;
    p.x_batch_stride = M * 2 * E;
    p.out = bufs[size_t(s)]->out.get();
    p.out_token_stride = E;
    p.out_batch_stride = M * E;
    p.weight = w.get();
    p.bias = b.get();
    p.state_out = bufs[size_t(s)]->state.get();
    p.state_out_batch_stride = int64_t(E) * kK;
    p.B = 1;
    p.L = M;
    p.C = E;
    p.K = kK;
    p.scale_wx = in.scales.scale_wx;
    p.s_b = in.scales.s_b;
    p.inv_s_out = in.scales.inv_s_out;
    return p;
  };
  if (quamba::conv1d::run_with<Traits>(params(0), 0) != Status::kSuccess) {
    state.SkipWithError("run failed");
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  {  // verify against the reference once
    const int64_t shp[3] = {1, M, E}, xst[3] = {M * 2 * E, 2 * E, 1}, ost[3] = {M * E, E, 1};
    const int64_t sshp[3] = {1, E, kK}, sst[3] = {int64_t(E) * kK, kK, 1};
    std::vector<float> ref(size_t(M) * E);
    size_t bad = 0;
    const auto got = bufs[0]->out.download();
    if constexpr (std::is_same_v<T, int8_t>) {
      std::vector<int8_t> r8(ref.size());
      quamba::reference::conv1d_prefill_i8(
          quamba::make_strided_view<const int8_t, 3>(in.xz.data(), shp, xst), in.w.data(), kK, in.b.data(), in.scales,
          quamba::make_strided_view<const int8_t, 3>(nullptr, sshp, sst), quamba::make_strided_view<int8_t, 3>(nullptr, sshp, sst),
          quamba::make_strided_view<int8_t, 3>(r8.data(), shp, ost));
      for (size_t i = 0; i < r8.size(); ++i) bad += std::abs(int(r8[i]) - int(got[i])) > 1;
    } else {
      std::vector<float> xf(in.xz.size());
      for (size_t i = 0; i < xf.size(); ++i) xf[i] = from_half(in.xz[i]);
      quamba::reference::conv1d_prefill(quamba::make_strided_view<const float, 3>(xf.data(), shp, xst), in.w.data(), kK,
                                        in.b.data(), true, quamba::make_strided_view<const float, 3>(nullptr, sshp, sst),
                                        quamba::make_strided_view<float, 3>(nullptr, sshp, sst),
                                        quamba::make_strided_view<float, 3>(ref.data(), shp, ost));
      for (size_t i = 0; i < ref.size(); ++i) bad += !(std::fabs(from_half(got[i]) - ref[i]) <= 2e-3f + 2e-3f * std::fabs(ref[i]));
    }
    if (bad) {
      state.SkipWithError(("verification failed: " + std::to_string(bad) + " elements").c_str());
      return;
    }
  }
  quamba::bench::time_gpu(state, [&](int i) { return quamba::conv1d::run_with<Traits>(params(i % sets), 0); }, sets);
  quamba::bench::report_bytes(state, bytes);
}

template <typename T>
struct UpdateSet {
  DeviceBuffer<T> x, out, state;
};

template <typename T>
void bm_update(benchmark::State& state, int64_t B, int E) {
  using W = typename Inputs<T>::W;
  using Traits = quamba::conv1d::Conv1dUpdateTraitsDefault;
  Inputs<T> in(B, E);  // xz rows double as x (B, E) and as the state source
  std::vector<T> st0(size_t(B) * E * kK);
  for (size_t i = 0; i < st0.size(); ++i) st0[i] = in.xz[i % in.xz.size()];
  const double bytes = double(B) * E * 2 * sizeof(T) + 2.0 * B * E * kK * sizeof(T) + double(E) * (kK + 1) * sizeof(W);
  const int sets = rotation_sets(bytes);
  std::vector<std::unique_ptr<UpdateSet<T>>> bufs;
  for (int s = 0; s < sets; ++s) {
    auto p = std::make_unique<UpdateSet<T>>();
    p->x.upload(in.xz);
    p->out.resize(size_t(B) * E);
    p->state.upload(st0);
    bufs.push_back(std::move(p));
  }
  DeviceBuffer<W> w(in.w), b(in.b);
  auto params = [&](int s) {
    quamba::conv1d::Conv1dUpdateParams<T> u;
    u.x = bufs[size_t(s)]->x.get();
    u.x_batch_stride = 2 * E;
    u.out = bufs[size_t(s)]->out.get();
    u.out_batch_stride = E;
    u.state = bufs[size_t(s)]->state.get();
    u.state_batch_stride = int64_t(E) * kK;
    u.num_slots = B;
    u.weight = w.get();
    u.bias = b.get();
    u.B = B;
    u.C = E;
    u.K = kK;
    u.scale_wx = in.scales.scale_wx;
    u.s_b = in.scales.s_b;
    u.inv_s_out = in.scales.inv_s_out;
    return u;
  };
  if (quamba::conv1d::run_with<Traits>(params(0), 0) != Status::kSuccess) {
    state.SkipWithError("run failed");
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  {  // verify the first launch against the reference
    const int64_t xs[2] = {B, E}, xst[2] = {2 * E, 1}, ost[2] = {E, 1};
    const int64_t sshp[3] = {B, E, kK}, sst[3] = {int64_t(E) * kK, kK, 1};
    const auto got = bufs[0]->out.download();
    size_t bad = 0;
    if constexpr (std::is_same_v<T, int8_t>) {
      std::vector<int8_t> st = st0, r8(size_t(B) * E);
      quamba::reference::conv1d_update_i8(quamba::make_strided_view<const int8_t, 2>(in.xz.data(), xs, xst),
                                          quamba::make_strided_view<int8_t, 3>(st.data(), sshp, sst), nullptr,
                                          in.w.data(), kK, in.b.data(), in.scales,
                                          quamba::make_strided_view<int8_t, 2>(r8.data(), xs, ost));
      for (size_t i = 0; i < r8.size(); ++i) bad += std::abs(int(r8[i]) - int(got[i])) > 1;
    } else {
      std::vector<float> xf(in.xz.size()), sf(st0.size()), ref(size_t(B) * E);
      for (size_t i = 0; i < xf.size(); ++i) xf[i] = from_half(in.xz[i]);
      for (size_t i = 0; i < sf.size(); ++i) sf[i] = from_half(st0[i]);
      quamba::reference::conv1d_update(quamba::make_strided_view<const float, 2>(xf.data(), xs, xst),
                                       quamba::make_strided_view<float, 3>(sf.data(), sshp, sst), nullptr, in.w.data(),
                                       kK, in.b.data(), true, quamba::make_strided_view<float, 2>(ref.data(), xs, ost));
      for (size_t i = 0; i < ref.size(); ++i) bad += !(std::fabs(from_half(got[i]) - ref[i]) <= 2e-3f + 2e-3f * std::fabs(ref[i]));
    }
    if (bad) {
      state.SkipWithError(("verification failed: " + std::to_string(bad) + " elements").c_str());
      return;
    }
  }
  quamba::bench::time_gpu(state, [&](int i) { return quamba::conv1d::run_with<Traits>(params(i % sets), 0); }, sets);
  quamba::bench::report_bytes(state, bytes);
}

template <typename Traits>
std::string traits_name() {
  return "T" + std::to_string(Traits::kThreads) + "xV" + std::to_string(Traits::kVec) + "xL" + std::to_string(Traits::kTokens);
}

struct Model {
  const char* name;
  int E;
};
const Model kModels[] = {{"mamba130m", 1536}, {"mamba2.8b", 5120}};

template <typename Traits, typename T>
void add_prefill(const char* dtype, const Model& mdl, int64_t M) {
  const std::string name = std::string("Conv1dPrefill/") + dtype + "/" + traits_name<Traits>() + "/" + mdl.name +
                           "/E=" + std::to_string(mdl.E) + "/M=" + std::to_string(M);
  const int E = mdl.E;
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { bm_prefill<Traits, T>(s, M, E); })
      ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
}

int register_all() {
  using namespace quamba::conv1d;
  for (const Model& mdl : kModels) {
    for (int64_t M : {1, 2048, 8192}) {
      add_prefill<Conv1dI8Traits16x32, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits16x8, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits16x4, int8_t>("i8", mdl, M);
      add_prefill<Conv1dF16Traits8x16, __half>("f16", mdl, M);
    }
    for (int64_t B : {1, 64}) {
      const std::string sfx = std::string("/") + mdl.name + "/E=" + std::to_string(mdl.E) + "/B=" + std::to_string(B);
      const int E = mdl.E;
      benchmark::RegisterBenchmark(("Conv1dUpdate/i8/T128xC4" + sfx).c_str(),
                                   [=](benchmark::State& s) { bm_update<int8_t>(s, B, E); })
          ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("Conv1dUpdate/f16/T128xC4" + sfx).c_str(),
                                   [=](benchmark::State& s) { bm_update<__half>(s, B, E); })
          ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
    }
  }
  return 0;
}
const int kRegistered = register_all();

}  // namespace

QUAMBA_BENCH_MAIN()
