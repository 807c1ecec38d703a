// Benchmarks of quamba/conv1d: causal depthwise conv1d + SiLU, prefill (B = 1, L = M, x a
// strided slice of xz with token stride 2E) and decode update (batch 1 and 64), int8 and fp16,
// at Mamba-130m (E = 1536) and Mamba-2.8B (E = 5120) shapes, K = 4.
//
// Byte model (fewest bytes, each input read once, each output written once):
//   prefill:  M·E·(sizeof(x) + sizeof(out)) + weights E·K + bias E (int8: 1 byte, fp16 path: 4)
//             + final state E·K·sizeof(x)
//   update:   B·E·(sizeof(x) + sizeof(out)) + 2·B·E·K·sizeof(x) (state read + write) + weights
// Inputs rotate over enough buffer sets (one arena) to exceed 2× L2, so every launch reads DRAM.
// Decode-size launches (prefill M = 1, update) are timed as one CUDA graph of a launch per set,
// without the L2 flush (the flush's dirty lines would be written back during a µs-long launch,
// inflating it; see time_graph), which is also what a decode step sees; weights rotate too.
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

using quamba::test::from_half;
using quamba::test::to_half;

using quamba::bench::Arena;
using quamba::bench::rotation_sets;
using quamba::bench::time_graph;

// ---- Baseline: the previous prefill kernel (16 channels x 32/8 tokens per thread, exact-order
// SiLU chain, byte-wise tap loads), kept verbatim so one run compares it with the variants.
namespace legacy {
using quamba::Vec;
using quamba::conv1d::Conv1dParams;
using quamba::conv1d::kMaxWidth;
template <int Threads, int VecElems, int Tokens>
struct Traits {
  static constexpr int kThreads = Threads, kVec = VecElems, kTokens = Tokens, kLoadAhead = 4, kMinBlocks = 0;
};
inline constexpr int32_t kMagicI = 0x4B400000;  // bits of 1.5·2^23
inline constexpr float kMagicF = 12582912.0f;   // 1.5·2^23

// int8 output of one channel from `acc_magic` = 0x4B400000 + Σ w·x (|Σ| <= 2^16 keeps the
// exponent fixed, so the float with these bits is exactly 1.5·2^23 + Σ: an int -> float
// conversion without the quarter-rate I2F unit). Same fp32 operations, in the same order, as
// reference::detail::conv_i8_value + quantize_i8; returns float bits whose low byte is the int8.
__device__ __forceinline__ uint32_t conv_i8_out_bits(int32_t acc_magic, float scale_wx, float bias_f,
                                                     float inv_s_out) {
  const float accf = __fsub_rn(__int_as_float(acc_magic), kMagicF);
  const float v = __fadd_rn(__fmul_rn(accf, scale_wx), bias_f);
  const float u = __fdividef(v, __fadd_rn(1.f, __expf(-v)));
  // can_implement guarantees finite v, so u is never NaN and the clamp saturates exactly as
  // quantize_i8. Adding 1.5·2^23 rounds half to even to an integer (F2I is quarter rate); the
  // low byte of the sum's bits is that integer in two's complement.
  float q = __fmul_rn(u, inv_s_out);
  q = fminf(fmaxf(q, -128.f), 127.f);
  return __float_as_uint(__fadd_rn(q, kMagicF));
}

__device__ __forceinline__ uint32_t pack4_low_bytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

template <int N>
__device__ __forceinline__ Vec<uint32_t, N> load_words(const int8_t* p) {
  return *reinterpret_cast<const Vec<uint32_t, N>*>(p);
}

template <typename Traits, int K>
__global__ void __launch_bounds__(Traits::kThreads) conv1d_prefill_i8_kernel(Conv1dParams<int8_t> p) {
  constexpr int kVec = Traits::kVec;
  constexpr int kWords = kVec / 4;
  static_assert(kVec % 4 == 0 && kVec <= 16, "int8 channel vectors are 1..4 dp4a words");
  const int nvec = p.C / kVec;
  const int64_t nchunks = (p.L + Traits::kTokens - 1) / Traits::kTokens;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * Traits::kThreads + threadIdx.x;
  if (idx >= nchunks * nvec) return;
  const int cv = static_cast<int>(idx % nvec);
  const int64_t chunk = idx / nvec;
  const int64_t b = blockIdx.y;
  const int c0 = cv * kVec;
  const int64_t t0 = chunk * Traits::kTokens;
  const int64_t t1 = t0 + Traits::kTokens < p.L ? t0 + Traits::kTokens : p.L;
  const int8_t* __restrict__ xb = p.x + b * p.x_batch_stride + c0;
  int8_t* __restrict__ ob = p.out + b * p.out_batch_stride + c0;

  // Taps packed for dp4a, right-aligned in a 4-deep window: byte 4-K+k holds w[c, k], so the
  // older 4-K window slots meet zero weights and one code path serves every K.
  uint32_t wq[kVec];
  float bias_f[kVec];
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    uint32_t w = 0;
#pragma unroll
    for (int k = 0; k < K; ++k)
      w |= static_cast<uint32_t>(static_cast<uint8_t>(p.weight[(c0 + i) * K + k])) << (8 * (kMaxWidth - K + k));
    wq[i] = w;
    bias_f[i] = p.bias ? __fmul_rn(static_cast<float>(p.bias[c0 + i]), p.s_b) : 0.f;
  }

  // Window words: win[j] holds position t-3+j for j = 0..2 (each word = 4 channels).
  uint32_t win[3][kWords];
#pragma unroll
  for (int j = 0; j < 3; ++j) {
    const int64_t pos = t0 - 3 + j;
#pragma unroll
    for (int w = 0; w < kWords; ++w) win[j][w] = 0u;
    if (pos < t0 - (K - 1)) continue;  // outside the conv's reach: meets zero taps
    if (pos >= 0) {
      const Vec<uint32_t, kWords> v = load_words<kWords>(xb + pos * p.x_token_stride);
#pragma unroll
      for (int w = 0; w < kWords; ++w) win[j][w] = v[w];
    } else if (p.state_in) {
      const int8_t* s = p.state_in + b * p.state_in_batch_stride + static_cast<int64_t>(c0) * K + (K + pos);
#pragma unroll
      for (int i = 0; i < kVec; ++i)
        win[j][i / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(s[i * K])) << (8 * (i % 4));
    }
  }

  const float scale_wx = p.scale_wx, inv_s_out = p.inv_s_out;
  for (int64_t tb = t0; tb < t1; tb += Traits::kLoadAhead) {
    Vec<uint32_t, kWords> nx[Traits::kLoadAhead];
#pragma unroll
    for (int j = 0; j < Traits::kLoadAhead; ++j)
      if (tb + j < t1) nx[j] = load_words<kWords>(xb + (tb + j) * p.x_token_stride);
#pragma unroll
    for (int j = 0; j < Traits::kLoadAhead; ++j) {
      if (tb + j < t1) {
        Vec<uint32_t, kWords> o;
#pragma unroll
        for (int w = 0; w < kWords; ++w) {
          // 4x4 byte transpose: from 4 tokens x 4 channels to 4 channels x 4 taps (oldest first).
          const uint32_t lo01 = __byte_perm(win[0][w], win[1][w], 0x5140);
          const uint32_t hi01 = __byte_perm(win[0][w], win[1][w], 0x7362);
          const uint32_t lo23 = __byte_perm(win[2][w], nx[j][w], 0x5140);
          const uint32_t hi23 = __byte_perm(win[2][w], nx[j][w], 0x7362);
          const uint32_t ch[4] = {__byte_perm(lo01, lo23, 0x5410), __byte_perm(lo01, lo23, 0x7632),
                                  __byte_perm(hi01, hi23, 0x5410), __byte_perm(hi01, hi23, 0x7632)};
          uint32_t r[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int32_t acc = __dp4a(static_cast<int>(ch[i]), static_cast<int>(wq[w * 4 + i]), kMagicI);
            r[i] = conv_i8_out_bits(acc, scale_wx, bias_f[w * 4 + i], inv_s_out);
          }
          o[w] = pack4_low_bytes(r[0], r[1], r[2], r[3]);
        }
        *reinterpret_cast<Vec<uint32_t, kWords>*>(ob + (tb + j) * p.out_token_stride) = o;
#pragma unroll
        for (int w = 0; w < kWords; ++w) {
          win[0][w] = win[1][w];
          win[1][w] = win[2][w];
          win[2][w] = nx[j][w];
        }
      }
    }
  }

  // The run that owns t = 0 is the only reader of state_in for these channels, so it also
  // writes state_out (reading before writing, slot by slot upwards): state_out may alias
  // state_in without a race between CTAs.
  if (chunk == 0 && p.state_out) {
    const int8_t* sin = p.state_in ? p.state_in + b * p.state_in_batch_stride + static_cast<int64_t>(c0) * K : nullptr;
    int8_t* sout = p.state_out + b * p.state_out_batch_stride + static_cast<int64_t>(c0) * K;
    for (int k = 0; k < K; ++k) {
      const int64_t pos = p.L - K + k;
      for (int i = 0; i < kVec; ++i) {
        int8_t v = 0;
        if (pos >= 0) v = xb[pos * p.x_token_stride + i];
        else if (sin) v = sin[i * K + (K + pos)];
        sout[i * K + k] = v;
      }
    }
  }
}

template <typename Tr>
Status run_with(const Conv1dParams<int8_t>& p, cudaStream_t stream) {
  if (p.L == 0 || p.B == 0) return Status::kSuccess;
  const int64_t threads = (p.C / Tr::kVec) * ((p.L + Tr::kTokens - 1) / Tr::kTokens);
  const dim3 grid(static_cast<unsigned>((threads + Tr::kThreads - 1) / Tr::kThreads), static_cast<unsigned>(p.B));
  conv1d_prefill_i8_kernel<Tr, 4><<<grid, Tr::kThreads, 0, stream>>>(p);
  return quamba::last_launch_status();
}
}  // namespace legacy

template <typename Traits>
struct IsLegacy : std::false_type {};
template <int A, int B, int C>
struct IsLegacy<legacy::Traits<A, B, C>> : std::true_type {};

template <typename Traits, typename T>
Status launch_prefill(const quamba::conv1d::Conv1dParams<T>& p, cudaStream_t s = 0) {
  if constexpr (IsLegacy<Traits>::value) return legacy::run_with<Traits>(p, s);
  else return quamba::conv1d::run_with<Traits>(p, s);
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

template <typename Traits, typename T>
void bm_prefill(benchmark::State& state, int64_t M, int E) {
  using W = typename Inputs<T>::W;
  Inputs<T> in(M, E);
  const double bytes = double(M) * E * 2 * sizeof(T) + double(E) * (kK + 1) * sizeof(W) + double(E) * kK * sizeof(T);
  enum { kXz, kOut, kState, kW, kB };
  Arena arena({in.xz.size() * sizeof(T), size_t(M) * E * sizeof(T), size_t(E) * kK * sizeof(T), in.w.size() * sizeof(W),
               in.b.size() * sizeof(W)});
  const int sets = arena.sets();
  arena.fill(kXz, in.xz);
  arena.fill(kW, in.w);
  arena.fill(kB, in.b);
  auto params = [&](int s) {
    quamba::conv1d::Conv1dParams<T> p;
    p.x = arena.at<T>(s, kXz);
    p.x_token_stride = 2 * E;
    p.x_batch_stride = M * 2 * E;
    p.out = arena.at<T>(s, kOut);
    p.out_token_stride = E;
    p.out_batch_stride = M * E;
    p.weight = arena.at<W>(s, kW);
    p.bias = arena.at<W>(s, kB);
    p.state_out = arena.at<T>(s, kState);
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
  if (launch_prefill<Traits>(params(0)) != Status::kSuccess) {
    state.SkipWithError("run failed");
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  {  // verify against the reference once
    const int64_t shp[3] = {1, M, E}, xst[3] = {M * 2 * E, 2 * E, 1}, ost[3] = {M * E, E, 1};
    const int64_t sshp[3] = {1, E, kK}, sst[3] = {int64_t(E) * kK, kK, 1};
    std::vector<float> ref(size_t(M) * E);
    size_t bad = 0;
    std::vector<T> got(size_t(M) * E);
    QUAMBA_CUDA_CHECK(cudaMemcpy(got.data(), arena.at<T>(0, kOut), got.size() * sizeof(T), cudaMemcpyDeviceToHost));
    if constexpr (std::is_same_v<T, int8_t>) {
      std::vector<int8_t> r8(ref.size());
      quamba::reference::conv1d_prefill_i8(
          quamba::make_strided_view<const int8_t, 3>(in.xz.data(), shp, xst), in.w.data(), kK, in.b.data(), in.scales,
          quamba::make_strided_view<const int8_t, 3>(nullptr, sshp, sst), quamba::make_strided_view<int8_t, 3>(nullptr, sshp, sst),
          quamba::make_strided_view<int8_t, 3>(r8.data(), shp, ost));
      size_t off1 = 0;
      for (size_t i = 0; i < r8.size(); ++i) {
        bad += std::abs(int(r8[i]) - int(got[i])) > 1;
        off1 += r8[i] != got[i];
      }
      state.counters["off_by_1"] = double(off1) / double(r8.size());
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
  // M = 1 is a decode-size launch (see the file comment); larger M flush as usual.
  if (M == 1)
    time_graph(state, [&](int i, cudaStream_t s) { return launch_prefill<Traits>(params(i), s); }, sets);
  else
    quamba::bench::time_gpu(state, [&](int i) { return launch_prefill<Traits>(params(i % sets)); }, sets);
  quamba::bench::report_bytes(state, bytes);
}

template <typename T>
void bm_update(benchmark::State& state, int64_t B, int E) {
  using W = typename Inputs<T>::W;
  using Traits = quamba::conv1d::Conv1dUpdateTraitsDefault;
  Inputs<T> in(B, E);  // xz rows double as x (B, E) and as the state source
  std::vector<T> st0(size_t(B) * E * kK);
  for (size_t i = 0; i < st0.size(); ++i) st0[i] = in.xz[i % in.xz.size()];
  const double bytes = double(B) * E * 2 * sizeof(T) + 2.0 * B * E * kK * sizeof(T) + double(E) * (kK + 1) * sizeof(W);
  enum { kX, kOut, kState, kW, kB };
  Arena arena({in.xz.size() * sizeof(T), size_t(B) * E * sizeof(T), st0.size() * sizeof(T), in.w.size() * sizeof(W),
               in.b.size() * sizeof(W)});
  const int sets = arena.sets();
  arena.fill(kX, in.xz);
  arena.fill(kState, st0);
  arena.fill(kW, in.w);
  arena.fill(kB, in.b);
  auto params = [&](int s) {
    quamba::conv1d::Conv1dUpdateParams<T> u;
    u.x = arena.at<T>(s, kX);
    u.x_batch_stride = 2 * E;
    u.out = arena.at<T>(s, kOut);
    u.out_batch_stride = E;
    u.state = arena.at<T>(s, kState);
    u.state_batch_stride = int64_t(E) * kK;
    u.num_slots = B;
    u.weight = arena.at<W>(s, kW);
    u.bias = arena.at<W>(s, kB);
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
    std::vector<T> got(size_t(B) * E);
    QUAMBA_CUDA_CHECK(cudaMemcpy(got.data(), arena.at<T>(0, kOut), got.size() * sizeof(T), cudaMemcpyDeviceToHost));
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
  time_graph(state, [&](int i, cudaStream_t s) { return quamba::conv1d::run_with<Traits>(params(i), s); }, sets);
  quamba::bench::report_bytes(state, bytes);
}

// Names by Traits; the SiLU form is the dtype group ("i8" rcp-each, "i8-pair", "i8-pairfma",
// "i8-tanh"), so names of the older variants are unchanged.
template <typename Traits>
std::string traits_name() {
  bool spread = false;
  if constexpr (!IsLegacy<Traits>::value) spread = Traits::kSpread;
  return "T" + std::to_string(Traits::kThreads) + "xV" + std::to_string(Traits::kVec) + (spread ? "xS" : "xL") +
         std::to_string(Traits::kTokens) + "xA" + std::to_string(Traits::kLoadAhead) + "xB" +
         std::to_string(Traits::kMinBlocks);
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
      if (M > 1) add_prefill<legacy::Traits<128, 16, 32>, int8_t>("i8-baseline", mdl, M);
      if (M > 1) add_prefill<legacy::Traits<128, 16, 8>, int8_t>("i8-baseline", mdl, M);
      // Fixed-run variants that measured slower than these (16x32, 16x16, 8x32, 8x16) are
      // still tested by name but not timed here.
      add_prefill<Conv1dI8Traits16x8, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits16x4, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits8x8, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits8x8a4, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits4x8, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits8x8a4P, int8_t>("i8-pair", mdl, M);
      add_prefill<Conv1dI8Traits4x8P, int8_t>("i8-pair", mdl, M);
      // Same configs, pair-rcp SiLU in one instruction fewer per channel (run()'s defaults).
      add_prefill<Conv1dI8Traits8x8a4F, int8_t>("i8-pairfma", mdl, M);
      add_prefill<Conv1dI8Traits8x8a4F8, int8_t>("i8-pairfma", mdl, M);
      add_prefill<Conv1dI8Traits4x8F, int8_t>("i8-pairfma", mdl, M);
      add_prefill<Conv1dI8Traits8xS8a2F, int8_t>("i8-pairfma", mdl, M);
      add_prefill<Conv1dI8Traits4xS8a2F, int8_t>("i8-pairfma", mdl, M);
      // One tanh.approx per channel: outside the int8 tolerance (off_by_1 counter), measures
      // how much of the time the SiLU instructions still cost.
      add_prefill<Conv1dI8Traits8x8a4T, int8_t>("i8-tanh", mdl, M);
      add_prefill<Conv1dI8Traits4x8T, int8_t>("i8-tanh", mdl, M);
      add_prefill<Conv1dI8Traits8xS8, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits8xS16, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits4xS8, int8_t>("i8", mdl, M);
      add_prefill<Conv1dI8Traits16xS8, int8_t>("i8", mdl, M);
      add_prefill<Conv1dF16Traits8x16, __half>("f16", mdl, M);
      add_prefill<Conv1dF16Traits8x16a4, __half>("f16", mdl, M);
      add_prefill<Conv1dF16Traits8x8, __half>("f16", mdl, M);
      add_prefill<Conv1dF16Traits8x8a4, __half>("f16", mdl, M);
      add_prefill<Conv1dF16Traits4x8, __half>("f16", mdl, M);
      add_prefill<Conv1dF16Traits4x8a4, __half>("f16", mdl, M);
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
