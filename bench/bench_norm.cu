// Benchmarks of quamba/norm: fused residual-add + RMSNorm (int8 and fp16 outputs) and the
// embedding gather, at Mamba-130m (D = 768) and Mamba-2.8B (D = 2560) shapes, M = B·L tokens.
//
// Byte model (fewest bytes, each input read once, each output written once):
//   add_rmsnorm: M·D·(4 + 4 [fp32 residual read + write] + sizeof(h) + sizeof(out)) + 4·D gamma
//   embedding:   M·D·(2 [fp16 row] + sizeof(out)) + 4·M ids
// Inputs rotate over enough buffer sets (one arena) to exceed 2× L2, so every launch reads DRAM.
// M = 1 launches are timed as one CUDA graph of a launch per set, without the L2 flush (the
// flush's dirty lines would be written back during a µs-long launch, inflating it; see
// time_graph), which is also what a decode step sees; gamma rotates with the sets.
// Row names: "default" is quamba::norm::run's own choice; "baseline-" the previous one-CTA-per-row
// kernel; "T..." the variants of add_rmsnorm_kernel; "hoist-T..." those of the hoisted-load
// kernel (xP persistent with the next row prefetched, xCS streaming stores); "+pdl" launched as
// programmatic dependents of the previous launch.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
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

using quamba::test::from_half;
using quamba::test::to_half;

using quamba::bench::Arena;
using quamba::bench::rotation_sets;
using quamba::bench::time_graph;

// ---- Baseline: the previous add+RMSNorm kernel (one 256-thread CTA per row, gamma loaded after
// the reduction), kept verbatim so one run compares it with the variants.
namespace legacy {
using quamba::Vec;
using quamba::norm::AddRmsNormParams;
using namespace quamba::norm::detail;
template <int Threads, int VecN, int MaxChunks>
struct Traits {
  static constexpr int kThreads = Threads, kVec = VecN, kMaxChunks = MaxChunks, kWarps = Threads / 32;
};
template <typename Traits, typename THidden, typename TOut>
__global__ void __launch_bounds__(Traits::kThreads)
    add_rmsnorm_kernel(AddRmsNormParams<THidden, TOut> p) {
  constexpr int kVec = Traits::kVec;
  const int64_t row = blockIdx.x;
  const int tid = threadIdx.x;
  const int nchunks = p.D / kVec;
  float* res = p.residual + row * p.residual_stride;
  const THidden* h = p.h ? p.h + row * p.h_stride : nullptr;

  // All loads of the row are issued before any use so each thread keeps up to kMaxChunks
  // 16-byte requests in flight (memory-level parallelism is what a one-pass norm needs).
  float r[Traits::kMaxChunks][kVec];
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * Traits::kThreads;
    if (chunk < nchunks) {
      load_as_float(res + chunk * kVec, r[i]);
      if (h) {
        float hv[kVec];
        load_as_float(h + chunk * kVec, hv);
#pragma unroll
        for (int j = 0; j < kVec; ++j) r[i][j] += hv[j];
        Vec<float, kVec> a;
#pragma unroll
        for (int j = 0; j < kVec; ++j) a[j] = r[i][j];
        *reinterpret_cast<Vec<float, kVec>*>(res + chunk * kVec) = a;
      }
#pragma unroll
      for (int j = 0; j < kVec; ++j) ss = fmaf(r[i][j], r[i][j], ss);
    }
  }

  // Block reduction: warp shuffles, then one partial per warp through shared memory.
  __shared__ float warp_ss[Traits::kWarps];
  __shared__ float s_rstd;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((tid & 31) == 0) warp_ss[tid >> 5] = ss;
  __syncthreads();
  if (tid < 32) {
    float t = tid < Traits::kWarps ? warp_ss[tid] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    if (tid == 0) s_rstd = rsqrtf(t / static_cast<float>(p.D) + p.eps);
  }
  __syncthreads();
  const float rstd = s_rstd;

  TOut* out = p.out + row * p.out_stride;
#pragma unroll
  for (int i = 0; i < Traits::kMaxChunks; ++i) {
    const int chunk = tid + i * Traits::kThreads;
    if (chunk < nchunks) {
      float g[kVec], v[kVec];
      load_as_float(p.gamma + chunk * kVec, g);
      // Same association as the reference: (r · rstd) · gamma.
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = __fmul_rn(__fmul_rn(r[i][j], rstd), g[j]);
      store_out(out + chunk * kVec, v, p.inv_scale);
    }
  }
}

template <typename Tr, typename TOut>
Status run_with(const AddRmsNormParams<__half, TOut>& p, cudaStream_t stream) {
  add_rmsnorm_kernel<Tr, __half, TOut><<<static_cast<unsigned>(p.M), Tr::kThreads, 0, stream>>>(p);
  return quamba::last_launch_status();
}
}  // namespace legacy

template <typename Traits>
struct IsLegacy : std::false_type {};
template <int A, int B, int C>
struct IsLegacy<legacy::Traits<A, B, C>> : std::true_type {};

// The library's own dispatch (quamba::norm::run): the row named "default" times what callers get.
struct DefaultRun {};

template <typename Traits, typename TOut>
Status launch_norm(const quamba::norm::AddRmsNormParams<__half, TOut>& p, cudaStream_t s = 0) {
  if constexpr (std::is_same_v<Traits, DefaultRun>) return quamba::norm::run(p, nullptr, s);
  else if constexpr (IsLegacy<Traits>::value) return legacy::run_with<Traits>(p, s);
  else return quamba::norm::run_with<Traits>(p, s);
}

template <typename Traits, typename TOut>
void bm_add_rmsnorm(benchmark::State& state, int64_t M, int D, bool pdl = false) {
  if (pdl) {
    int dev = 0;
    QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
    if (!quamba::device_supports_pdl(dev)) {
      state.SkipWithError("programmatic dependent launch needs compute capability 9.0");
      return;
    }
  }
  auto rng = quamba::test::make_rng(uint64_t(M) * 131 + D);
  const size_t n = size_t(M) * D;
  std::vector<float> hf = quamba::test::random_normal(n, rng), res = quamba::test::random_normal(n, rng, 0.f, 2.f);
  std::vector<__half> h(n);
  for (size_t i = 0; i < n; ++i) { h[i] = to_half(hf[i]); hf[i] = from_half(h[i]); }
  const std::vector<float> gamma = quamba::test::random_floats(size_t(D), rng, 0.25f, 1.75f);
  const float inv_scale = 127.0f / 4.0f;
  const double bytes = double(n) * (4 + 4 + sizeof(__half) + sizeof(TOut)) + 4.0 * D;
  enum { kH, kRes, kOut, kGamma };
  Arena arena({n * sizeof(__half), n * sizeof(float), n * sizeof(TOut), size_t(D) * sizeof(float)});
  const int sets = arena.sets();
  arena.fill(kH, h);
  arena.fill(kRes, res);
  arena.fill(kGamma, gamma);
  auto params = [&](int s) {
    quamba::norm::AddRmsNormParams<__half, TOut> p;
    p.h = arena.at<__half>(s, kH);
    p.h_stride = D;
    p.residual = arena.at<float>(s, kRes);
    p.residual_stride = D;
    p.gamma = arena.at<float>(s, kGamma);
    p.out = arena.at<TOut>(s, kOut);
    p.out_stride = D;
    p.M = M;
    p.D = D;
    p.eps = 1e-5f;
    p.inv_scale = inv_scale;
    p.pdl = pdl;
    return p;
  };
  // Verify once (set 0) against the reference before timing.
  // pdl rows run on a stream of their own (programmatic serialization between the launches).
  cudaStream_t stream = 0;
  if (pdl) QUAMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());  // the fills above ran on the legacy stream
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() {
      if (s) cudaStreamDestroy(s);
    }
  } guard{stream};
  if (launch_norm<Traits>(params(0), stream) != Status::kSuccess) {
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
    std::vector<TOut> got(n);
    QUAMBA_CUDA_CHECK(cudaMemcpy(got.data(), arena.at<TOut>(0, kOut), n * sizeof(TOut), cudaMemcpyDeviceToHost));
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
  if (M == 1)
    time_graph(state, [&](int i, cudaStream_t s) { return launch_norm<Traits>(params(i), s); }, sets);
  else
    quamba::bench::time_gpu(state, [&](int i) { return launch_norm<Traits>(params(i % sets), stream); }, sets, true, stream);
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
  DeviceBuffer<__half> dt(table);
  // The table (258 MB at D = 2560) is read at random rows; the outputs and ids rotate.
  enum { kOut, kIds };
  Arena arena({size_t(M) * D * sizeof(TOut), ids.size() * sizeof(int32_t)});
  const int sets = arena.sets();
  arena.fill(kIds, ids);
  auto params = [&](int s) {
    quamba::norm::EmbeddingParams<TOut> p;
    p.table = dt.get();
    p.table_stride = D;
    p.ids = arena.at<int32_t>(s, kIds);
    p.out = arena.at<TOut>(s, kOut);
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
  std::vector<TOut> got(size_t(M) * D);
  QUAMBA_CUDA_CHECK(cudaMemcpy(got.data(), arena.at<TOut>(0, kOut), got.size() * sizeof(TOut), cudaMemcpyDeviceToHost));
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
  if (M == 1)
    time_graph(state, [&](int i, cudaStream_t s) { return quamba::norm::run_with<Traits>(params(i), s); }, sets);
  else
    quamba::bench::time_gpu(state, [&](int i) { return quamba::norm::run_with<Traits>(params(i % sets), 0); }, sets);
  quamba::bench::report_bytes(state, bytes);
}

template <typename Traits>
std::string traits_name() {
  return "T" + std::to_string(Traits::kThreads) + "xV" + std::to_string(Traits::kVec);
}
template <typename Traits>
std::string norm_traits_name() {
  if constexpr (std::is_same_v<Traits, DefaultRun>)
    return "default";
  else if constexpr (IsLegacy<Traits>::value)
    return "baseline-T" + std::to_string(Traits::kThreads) + "xV" + std::to_string(Traits::kVec);
  else if constexpr (Traits::kHoisted)
    return "hoist-T" + std::to_string(Traits::kThreads) + "xV" + std::to_string(Traits::kVec) + "xC" +
           std::to_string(Traits::kMaxChunks) + "xR" + std::to_string(Traits::kRowThreads) +
           (Traits::kPersistent ? "xP" : "") + (Traits::kStreamStores ? "xCS" : "");
  else
    return "T" + std::to_string(Traits::kThreads) + "xV" + std::to_string(Traits::kVec) + "xC" +
           std::to_string(Traits::kMaxChunks) + "xR" + std::to_string(Traits::kRowThreads) +
           (Traits::kPrefetchGamma ? "xG" : "");
}

template <typename Traits, typename TOut>
void add_norm(const char* out_name, const std::string& sfx, int64_t M, int D, bool pdl = false) {
  if constexpr (!IsLegacy<Traits>::value && !std::is_same_v<Traits, DefaultRun>)
    if (D > Traits::kMaxD) return;
  const std::string name = norm_traits_name<Traits>() + (pdl ? "+pdl" : "");
  benchmark::RegisterBenchmark(("AddRmsNorm/h=f16/out=" + std::string(out_name) + "/" + name + sfx).c_str(),
                               [=](benchmark::State& s) { bm_add_rmsnorm<Traits, TOut>(s, M, D, pdl); })
      ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
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
      add_norm<DefaultRun, int8_t>("i8", sfx, M, D);
      // Each launch a programmatic dependent of the previous one (AddRmsNormParams::pdl): the
      // next grid's CTAs become resident and load gamma while this one drains. Only meaningful
      // where the kernel before the norm allows it; a separate row, not the default's number.
      add_norm<DefaultRun, int8_t>("i8", sfx, M, D, /*pdl=*/true);
      add_norm<legacy::Traits<256, 4, 8>, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormTraitsVec4, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormTraitsWarpRow768, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormTraitsRow768, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormTraitsRow1024, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormTraitsRow2560, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormTraitsRow2560x2, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormTraitsRow4096, int8_t>("i8", sfx, M, D);
      // Hoisted-load kernel (every load of a row before its first store).
      add_norm<AddRmsNormRowTraitsWarp768, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsWarp768P, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsWarp768S, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsWarp768x16, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsRow768H, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsRow1024H, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsRow2560H, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsRow2560HP, int8_t>("i8", sfx, M, D);
      add_norm<AddRmsNormRowTraitsRow4096H, int8_t>("i8", sfx, M, D);
      add_norm<DefaultRun, __half>("f16", sfx, M, D);
      add_norm<legacy::Traits<256, 4, 8>, __half>("f16", sfx, M, D);
      add_norm<AddRmsNormTraitsRow768, __half>("f16", sfx, M, D);
      add_norm<AddRmsNormTraitsRow2560, __half>("f16", sfx, M, D);
      add_norm<AddRmsNormTraitsScalar, int8_t>("i8", sfx, M, D);
      benchmark::RegisterBenchmark(("Embedding/out=f32/" + traits_name<EmbeddingTraitsVec8>() + sfx).c_str(),
                                   [=](benchmark::State& s) { bm_embedding<EmbeddingTraitsVec8, float>(s, M, D); })
          ->UseManualTime()->Iterations(20)->Unit(benchmark::kMicrosecond);
    }
  return 0;
}
const int kRegistered = register_all();

}  // namespace

QUAMBA_BENCH_MAIN()
