// Benchmarks of quamba/norm: fused residual-add + RMSNorm (int8 and fp16 outputs) and the
// embedding gather, at Mamba-130m (D = 768) and Mamba-2.8B (D = 2560) shapes, M = B·L tokens.
//
// Byte model (fewest bytes, each input read once, each output written once):
//   add_rmsnorm: M·D·(4 + 4 [fp32 residual read + write] + sizeof(h) + sizeof(out)) + 4·D gamma
//   embedding:   M·D·(2 [fp16 row] + sizeof(out)) + 4·M ids
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
#include "quamba/norm/add_rmsnorm.cuh"
#include "quamba/norm/embedding.cuh"
#include "quamba/reference/embedding.hpp"
#include "quamba/reference/norm.hpp"

namespace {

using quamba::Status;
using quamba::test::DeviceBuffer;

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

template <typename TOut>
struct NormSet {
  DeviceBuffer<__half> h;
  DeviceBuffer<float> res;
  DeviceBuffer<TOut> out;
};

template <typename Traits, typename TOut>
void bm_add_rmsnorm(benchmark::State& state, int64_t M, int D) {
  auto rng = quamba::test::make_rng(uint64_t(M) * 131 + D);
  const size_t n = size_t(M) * D;
  std::vector<float> hf = quamba::test::random_normal(n, rng), res = quamba::test::random_normal(n, rng, 0.f, 2.f);
  std::vector<__half> h(n);
  for (size_t i = 0; i < n; ++i) { h[i] = to_half(hf[i]); hf[i] = from_half(h[i]); }
  const std::vector<float> gamma = quamba::test::random_floats(size_t(D), rng, 0.25f, 1.75f);
  const float inv_scale = 127.0f / 4.0f;
  const double bytes = double(n) * (4 + 4 + sizeof(__half) + sizeof(TOut)) + 4.0 * D;
  const int sets = rotation_sets(bytes);
  std::vector<std::unique_ptr<NormSet<TOut>>> bufs;
  for (int s = 0; s < sets; ++s) {
    auto b = std::make_unique<NormSet<TOut>>();
    b->h.upload(h);
    b->res.upload(res);
    b->out.resize(n);
    bufs.push_back(std::move(b));
  }
  DeviceBuffer<float> g(gamma);
  auto params = [&](int s) {
    quamba::norm::AddRmsNormParams<__half, TOut> p;
    p.h = bufs[size_t(s)]->h.get();
    p.h_stride = D;
    p.residual = bufs[size_t(s)]->res.get();
    p.residual_stride = D;
    p.gamma = g.get();
    p.out = bufs[size_t(s)]->out.get();
    p.out_stride = D;
    p.M = M;
    p.D = D;
    p.eps = 1e-5f;
    p.inv_scale = inv_scale;
    return p;
  };
  // Verify once (set 0) against the reference before timing.
  if (quamba::norm::run_with<Traits>(params(0), 0) != Status::kSuccess) {
    state.SkipWithError("run failed");
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  {
    std::vector<float> ref_res = res, ref_out(n);
    const int64_t shp[2] = {M, D}, st[2] = {D, 1};
    quamba::reference::add_rmsnorm(quamba::make_strided_view<const float, 2>(hf.data(), shp, st),
                                   quamba::make_strided_view<float, 2>(ref_res.data(), shp, st), gamma.data(), 1e-5f,
                                   quamba::make_strided_view<float, 2>(ref_out.data(), shp, st));
    const auto got = bufs[0]->out.download();
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const float g8 = std::is_same_v<TOut, int8_t> ? float(quamba::quantize_i8(ref_out[i], inv_scale)) : ref_out[i];
      float v;
      if constexpr (std::is_same_v<TOut, int8_t>) v = float(got[i]);
      else v = from_half(got[i]);
      const float tol = std::is_same_v<TOut, int8_t> ? 1.0f : 2e-3f + 2e-3f * std::fabs(g8);
      if (!(std::fabs(v - g8) <= tol)) ++bad;
    }
    if (bad) {
      state.SkipWithError(("verification failed: " + std::to_string(bad) + " elements").c_str());
      return;
    }
  }
  quamba::bench::time_gpu(state, [&](int i) { return quamba::norm::run_with<Traits>(params(i % sets), 0); }, sets);
  quamba::bench::report_bytes(state, bytes);
}

template <typename Traits, typename TOut>
void bm_embedding(benchmark::State& state, int64_t M, int D) {
  const int64_t V = 50280;
  auto rng = quamba::test::make_rng(uint64_t(M) * 7 + D);
  const std::vector<float> tf = quamba::test::random_normal(size_t(V) * D, rng);
  std::vector<__half> table(tf.size());
  for (size_t i = 0; i < tf.size(); ++i) table[i] = to_half(tf[i]);
  std::vector<int32_t> ids(static_cast<size_t>(M));
  std::uniform_int_distribution<int32_t> pick(0, int32_t(V - 1));
  for (auto& id : ids) id = pick(rng);
  const double bytes = double(M) * D * (2 + sizeof(TOut)) + 4.0 * M;
  const int sets = rotation_sets(double(M) * D * sizeof(TOut));  // the table (258 MB at D=2560) is read at random rows
  DeviceBuffer<__half> dt(table);
  DeviceBuffer<int32_t> did(ids);
  std::vector<std::unique_ptr<DeviceBuffer<TOut>>> outs;
  for (int s = 0; s < sets; ++s) outs.push_back(std::make_unique<DeviceBuffer<TOut>>(size_t(M) * D));
  auto params = [&](int s) {
    quamba::norm::EmbeddingParams<TOut> p;
    p.table = dt.get();
    p.table_stride = D;
    p.ids = did.get();
    p.out = outs[size_t(s)]->get();
    p.out_stride = D;
    p.M = M;
    p.V = V;
    p.D = D;
    return p;
  };
  if (quamba::norm::run_with<Traits>(params(0), 0) != Status::kSuccess) {
    state.SkipWithError("run failed");
    return;
  }
  const auto got = outs[0]->download();
  for (int64_t m = 0; m < M; ++m)
    for (int d = 0; d < D; ++d) {
      float v;
      if constexpr (std::is_same_v<TOut, float>) v = got[size_t(m * D + d)];
      else v = from_half(got[size_t(m * D + d)]);
      if (v != from_half(table[size_t(ids[size_t(m)]) * D + d])) {
        state.SkipWithError("verification failed");
        return;
      }
    }
  quamba::bench::time_gpu(state, [&](int i) { return quamba::norm::run_with<Traits>(params(i % sets), 0); }, sets);
  quamba::bench::report_bytes(state, bytes);
}

template <typename Traits>
std::string traits_name() {
  return "T" + std::to_string(Traits::kThreads) + "xV" + std::to_string(Traits::kVec);
}

struct Model {
  const char* name;
  int D;
};
const Model kModels[] = {{"mamba130m", 768}, {"mamba2.8b", 2560}};
const int64_t kMs[] = {1, 2048, 8192};

int register_all() {
  using namespace quamba::norm;
  for (const Model& mdl : kModels)
    for (int64_t M : kMs) {
      const std::string sfx = std::string("/") + mdl.name + "/D=" + std::to_string(mdl.D) + "/M=" + std::to_string(M);
      const int D = mdl.D;
      benchmark::RegisterBenchmark(("AddRmsNorm/h=f16/out=i8/" + traits_name<AddRmsNormTraitsVec4>() + sfx).c_str(),
                                   [=](benchmark::State& s) { bm_add_rmsnorm<AddRmsNormTraitsVec4, int8_t>(s, M, D); })
          ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("AddRmsNorm/h=f16/out=f16/" + traits_name<AddRmsNormTraitsVec4>() + sfx).c_str(),
                                   [=](benchmark::State& s) { bm_add_rmsnorm<AddRmsNormTraitsVec4, __half>(s, M, D); })
          ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("AddRmsNorm/h=f16/out=i8/" + traits_name<AddRmsNormTraitsScalar>() + sfx).c_str(),
                                   [=](benchmark::State& s) { bm_add_rmsnorm<AddRmsNormTraitsScalar, int8_t>(s, M, D); })
          ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("Embedding/out=f32/" + traits_name<EmbeddingTraitsVec8>() + sfx).c_str(),
                                   [=](benchmark::State& s) { bm_embedding<EmbeddingTraitsVec8, float>(s, M, D); })
          ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
    }
  return 0;
}
const int kRegistered = register_all();

}  // namespace

QUAMBA_BENCH_MAIN()
