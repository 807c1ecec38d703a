// Shared helpers of the int8 GEMM tests (test_gemm.cu, test_gemm_sm90.cu): random problems, the
// sampled host reference, and a checker for every path and epilogue.
//
// Large shapes (lm_head: N = 50280) are checked on a sample of rows and columns that always
// includes the first/last rows and columns and every tile boundary; the whole output is still
// checked for "every element written, nothing outside written" through poisoning.
#pragma once

#include <gtest/gtest.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/compare.hpp"
#include "common/cuda_utils.cuh"
#include "common/pdl_chain.cuh"
#include "common/random.hpp"
#include "quamba/core/arch.hpp"
#include "quamba/gemm/cublas_baseline.cuh"
#include "quamba/gemm/gemm.cuh"
#include "quamba/reference/gemm.hpp"

namespace gemm_test {

using namespace quamba;
using quamba::test::DeviceBuffer;

// Full-range int8 (both -128 and 127), 8 bytes per draw: the lm_head weight has 128 M elements.
std::vector<int8_t> random_bytes(size_t n, std::mt19937_64& rng) {
  std::vector<int8_t> v(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(&v[i], &r, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<int8_t>(rng() & 0xff);
  return v;
}

// Sorted, unique sample of [0, n): everything when n <= full, else the ends, the neighbourhoods
// of every multiple of 64 up to 256 and of the last tile boundaries, and `extra` random indices.
std::vector<int64_t> sample_indices(int64_t n, int64_t full, int extra, std::mt19937_64& rng) {
  std::set<int64_t> s;
  if (n <= full) {
    for (int64_t i = 0; i < n; ++i) s.insert(i);
  } else {
    for (int64_t i = 0; i < 9; ++i) { s.insert(i); s.insert(n - 1 - i); }
    for (int64_t b : {15, 16, 17, 31, 32, 63, 64, 65, 127, 128, 129, 191, 192, 255, 256})
      if (b < n) s.insert(b);
    const int64_t last128 = (n - 1) / 128 * 128, last64 = (n - 1) / 64 * 64;
    for (int64_t b : {last128 - 1, last128, last64 - 1, last64})
      if (b >= 0 && b < n) s.insert(b);
    std::uniform_int_distribution<int64_t> d(0, n - 1);
    for (int i = 0; i < extra; ++i) s.insert(d(rng));
  }
  return {s.begin(), s.end()};
}

struct Weights {
  int64_t N = 0, K = 0, ldw = 0;
  std::vector<int8_t> host;  // N x ldw
  DeviceBuffer<int8_t> dev;
  std::vector<float> col_scale, bias;  // (N)
  DeviceBuffer<float> d_col_scale, d_bias;

  Weights(int64_t n, int64_t k, int64_t ld, uint64_t seed) : N(n), K(k), ldw(ld) {
    auto rng = test::make_rng(seed);
    host = random_bytes(static_cast<size_t>(N * ldw), rng);
    dev.upload(host);
    col_scale = test::random_floats(N, rng, 0.5f, 1.5f);
    bias = test::random_floats(N, rng, -4.f, 4.f);
    d_col_scale.upload(col_scale);
    d_bias.upload(bias);
  }
};

// One A (M x lda, possibly a strided view of a wider buffer) against one Weights, with the
// reference accumulators on the sampled rows x columns.
struct Problem {
  const Weights* w = nullptr;
  int64_t M = 0, lda = 0, ldr = 0;
  std::vector<int8_t> A;
  DeviceBuffer<int8_t> dA;
  std::vector<float> residual;  // M x ldr
  DeviceBuffer<float> d_residual;
  std::vector<int64_t> rows, cols;
  std::vector<int32_t> acc;  // rows.size() x cols.size()
  float acc_rms = 1.f;       // typical |acc|, to scale alpha so outputs spread over int8

  int64_t res_off = 0;  // floats in front of the residual in d_residual (1: not 8-byte aligned)

  // ldr = N + ldr_pad (the default odd pitch keeps the epilogues' element-wise paths; an even one
  // and res_off = 0 let whole 64-row blocks take the vectorized Dequant path).
  Problem(const Weights& weights, int64_t m, int64_t ld, uint64_t seed, int64_t ldr_pad = 3, int64_t residual_offset = 0)
      : w(&weights), M(m), lda(ld), res_off(residual_offset) {
    auto rng = test::make_rng(seed);
    A = random_bytes(static_cast<size_t>(std::max<int64_t>(M, 1) * lda), rng);
    dA.upload(A);
    ldr = w->N + ldr_pad;
    residual = test::random_floats(static_cast<size_t>(std::max<int64_t>(M, 1) * ldr), rng, -8.f, 8.f);
    std::vector<float> padded(static_cast<size_t>(res_off), 0.f);
    padded.insert(padded.end(), residual.begin(), residual.end());
    d_residual.upload(padded);
    rows = sample_indices(M, 24, 6, rng);
    cols = sample_indices(w->N, 300, 64, rng);
    // Reference on the gathered sub-problem: same A rows, same W rows, exact int32.
    const int64_t R = static_cast<int64_t>(rows.size()), C = static_cast<int64_t>(cols.size()), K = w->K;
    std::vector<int8_t> As(R * K), Ws(C * K);
    for (int64_t i = 0; i < R; ++i) std::memcpy(&As[i * K], &A[rows[i] * lda], K);
    for (int64_t j = 0; j < C; ++j) std::memcpy(&Ws[j * K], &w->host[cols[j] * w->ldw], K);
    acc.assign(R * C, 0);
    if (R > 0)
      EXPECT_EQ(reference::gemm_i8_i32(make_view<const int8_t>(As.data(), R, K), make_view<const int8_t>(Ws.data(), C, K),
                                       make_view(acc.data(), R, C)),
                Status::kSuccess);
    double ss = 0;
    for (int32_t a : acc) ss += double(a) * a;
    acc_rms = acc.empty() ? 1.f : static_cast<float>(std::sqrt(ss / acc.size()) + 1.0);
  }
  const float* residual_dev() const { return d_residual.get() + res_off; }
};

// Which optional epilogue parts are present.
struct EpiConfig {
  bool col_scale = false, bias = false, residual = false;
  std::string name() const {
    std::string s;
    if (col_scale) s += "+col_scale";
    if (bias) s += "+bias";
    if (residual) s += "+residual";
    return s.empty() ? "plain" : s;
  }
};

template <typename Epi>
Epi make_epilogue(const Problem& p, const EpiConfig& cfg, float alpha) {
  Epi e{};
  if constexpr (std::is_same_v<Epi, gemm::Requant>) {
    e.alpha = alpha;
    e.col_scale = cfg.col_scale ? p.w->d_col_scale.get() : nullptr;
  } else if constexpr (std::is_same_v<Epi, gemm::Identity>) {
  } else {
    e.alpha = alpha;
    e.col_scale = cfg.col_scale ? p.w->d_col_scale.get() : nullptr;
    e.bias = cfg.bias ? p.w->d_bias.get() : nullptr;
    e.residual = cfg.residual ? p.residual_dev() : nullptr;
    e.ldr = p.ldr;
  }
  return e;
}

enum class Runner {
  kAuto, kAutoWorkspace, kSm80SplitK, kGemv, kGemvWide, kGemvWideDeep, kGemvSplitK, kGemvNarrow, kSm80Tile128, kSm80Tile64,
  kSm90a, kSm90aTile128, kSm90aTile256, kSm90aTile128S7, kSm90aP256, kSm90aP256St, kSm90aP128St, kSm90aP160,
  kSm90aC256St, kSm90aC160, kSm90aP256x160, kSm90aC2A256x160, kSm90aPP160, kSm90aPP128, kShortK64, kShortK128, kShortK64x64, kShortKCol, kShortKCol32, kSm90aSplitK, kSm90aSplitKCluster,
  kSm90aSplitKClusterFit, kSm90aSplitKCluster3, kSm90aShortK, kGemvMma, kGemvMmaWide, kGemvMmaWide4, kGemvMmaDeep, kGemvMmaShort
};

// The tensor-core small-M path (gemm/gemv_mma.cuh): through run() and each shape by name.
inline constexpr Runner kGemvMmaRunners[] = {Runner::kGemvMma, Runner::kGemvMmaWide, Runner::kGemvMmaWide4,
                                             Runner::kGemvMmaDeep, Runner::kGemvMmaShort};

// Every sm90a kernel variant, forced by name (the dispatcher's choice is kSm90a / kAuto).
inline constexpr Runner kSm90aVariants[] = {Runner::kSm90aTile128, Runner::kSm90aTile256, Runner::kSm90aTile128S7,
                                            Runner::kSm90aP256,    Runner::kSm90aP256St,  Runner::kSm90aP128St,
                                            Runner::kSm90aP160,    Runner::kSm90aC256St,  Runner::kSm90aC160,
                                            Runner::kSm90aP256x160, Runner::kSm90aC2A256x160, Runner::kSm90aPP160,
                                            Runner::kSm90aPP128};

const char* runner_name(Runner r) {
  switch (r) {
    case Runner::kAuto: return "auto";
    case Runner::kAutoWorkspace: return "auto+workspace";
    case Runner::kSm80SplitK: return "sm80_64x64_split_k";
    case Runner::kSm90aSplitK: return "sm90a_split_k";
    case Runner::kSm90aSplitKCluster: return "sm90a_split_k_cluster";
    case Runner::kSm90aSplitKClusterFit: return "sm90a_split_k_cluster_fit";
    case Runner::kSm90aSplitKCluster3: return "sm90a_split_k_cluster_3";
    case Runner::kGemv: return "gemv";
    case Runner::kGemvWide: return gemm::to_string(gemm::GemvKind::kWide);
    case Runner::kGemvWideDeep: return gemm::to_string(gemm::GemvKind::kWideDeep);
    case Runner::kGemvSplitK: return gemm::to_string(gemm::GemvKind::kSplitK);
    case Runner::kGemvNarrow: return gemm::to_string(gemm::GemvKind::kNarrow);
    case Runner::kSm80Tile128: return gemm::sm80_name<gemm::Sm80Tile128x128>();
    case Runner::kSm80Tile64: return gemm::sm80_name<gemm::Sm80Tile64x64>();
    case Runner::kSm90a: return "sm90a";
    case Runner::kSm90aTile128: return gemm::sm90a_name<gemm::Sm90aTile128x128>();
    case Runner::kSm90aTile256: return gemm::sm90a_name<gemm::Sm90aTile128x256>();
    case Runner::kSm90aTile128S7: return gemm::sm90a_name<gemm::Sm90aTile128x128S7>();
    case Runner::kSm90aP256: return gemm::sm90a_name<gemm::Sm90aPersistent128x256>();
    case Runner::kSm90aP256St: return gemm::sm90a_name<gemm::Sm90aPersistent128x256St>();
    case Runner::kSm90aP128St: return gemm::sm90a_name<gemm::Sm90aPersistent128x128St>();
    case Runner::kSm90aP160: return gemm::sm90a_name<gemm::Sm90aPersistent128x160>();
    case Runner::kSm90aC256St: return gemm::sm90a_name<gemm::Sm90aCluster128x256St>();
    case Runner::kSm90aC160: return gemm::sm90a_name<gemm::Sm90aCluster128x160>();
    case Runner::kSm90aP256x160: return gemm::sm90a_name<gemm::Sm90aPersistent256x160>();
    case Runner::kSm90aC2A256x160: return gemm::sm90a_name<gemm::Sm90aClusterA256x160>();
    case Runner::kSm90aPP160: return gemm::sm90a_name<gemm::Sm90aPingPong128x160>();
    case Runner::kSm90aPP128: return gemm::sm90a_name<gemm::Sm90aPingPong128x128>();
    case Runner::kShortK64: return gemm::short_k_name<gemm::ShortKTile64x128>();
    case Runner::kShortK128: return gemm::short_k_name<gemm::ShortKTile128x128>();
    case Runner::kShortK64x64: return gemm::short_k_name<gemm::ShortKTile64x64>();
    case Runner::kShortKCol: return gemm::short_k_name<gemm::ShortKCol128x64>();
    case Runner::kShortKCol32: return gemm::short_k_name<gemm::ShortKCol128x32>();
    case Runner::kSm90aShortK: return gemm::sm90a_short_k_name<gemm::Sm90aShortK128>();
    case Runner::kGemvMma: return "gemv_mma";
    case Runner::kGemvMmaWide: return gemm::to_string(gemm::GemvMmaKind::kWide);
    case Runner::kGemvMmaWide4: return gemm::to_string(gemm::GemvMmaKind::kWide4);
    case Runner::kGemvMmaDeep: return gemm::to_string(gemm::GemvMmaKind::kDeep);
    case Runner::kGemvMmaShort: return gemm::to_string(gemm::GemvMmaKind::kShort);
  }
  return "?";
}

// Runs p with a workspace of `bytes` (at least 16) and waits for it, so the buffer can go.
template <typename Fn>
Status with_workspace(size_t bytes, Fn&& fn) {
  quamba::test::DeviceBuffer<char> ws(std::max<size_t>(bytes, 16));
  const Status s = fn(static_cast<void*>(ws.get()));
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  return s;
}

// Runs r on `stream`. The workspace runners allocate their workspace and synchronize unless
// `ws` (at least workspace_bytes(r, p) bytes) is given; with it nothing allocates or waits, so a
// sequence of launches on the stream stays back to back (the PDL tests).
template <typename Epi>
Status run_with(Runner r, const gemm::GemmParams<Epi>& p, cudaStream_t stream = 0, void* ws = nullptr) {
  switch (r) {
    case Runner::kAuto: return gemm::run(p, nullptr, stream);
    case Runner::kAutoWorkspace:
      if (ws) return gemm::run(p, ws, stream);
      return with_workspace(gemm::workspace_size(p), [&](void* w) { return gemm::run(p, w, stream); });
    case Runner::kSm80SplitK:
      if (ws) return gemm::run_sm80_split_k(p, ws, stream);
      return with_workspace(gemm::split_k_workspace_size(p.M, p.N, p.K),
                            [&](void* w) { return gemm::run_sm80_split_k(p, w, stream); });
    case Runner::kSm90aSplitKCluster: return gemm::run_sm90a_split_k_cluster(p, stream);
    case Runner::kSm90aSplitKClusterFit: return gemm::run_sm90a_split_k_cluster(p, stream, /*one_wave=*/true);
    case Runner::kSm90aSplitKCluster3: return gemm::run_sm90a_split_k_cluster(p, stream, false, /*max_splits=*/3);
    case Runner::kSm90aSplitK:
      if (ws) return gemm::run_sm90a_split_k(p, ws, stream);
      return with_workspace(gemm::sm90a_split_k_workspace_size(p.M, p.N, p.K),
                            [&](void* w) { return gemm::run_sm90a_split_k(p, w, stream); });
    case Runner::kGemv: return gemm::run(p, nullptr, stream, gemm::GemmPath::kGemv);
    case Runner::kGemvWide: return gemm::run_gemv(p, stream, gemm::GemvKind::kWide);
    case Runner::kGemvWideDeep: return gemm::run_gemv(p, stream, gemm::GemvKind::kWideDeep);
    case Runner::kGemvSplitK: return gemm::run_gemv(p, stream, gemm::GemvKind::kSplitK);
    case Runner::kGemvNarrow: return gemm::run_gemv(p, stream, gemm::GemvKind::kNarrow);
    case Runner::kSm80Tile128: return gemm::run_sm80<gemm::Sm80Tile128x128>(p, stream);
    case Runner::kSm80Tile64: return gemm::run_sm80<gemm::Sm80Tile64x64>(p, stream);
    case Runner::kSm90a: return gemm::run(p, nullptr, stream, gemm::GemmPath::kSm90a);
    case Runner::kSm90aTile128: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x128>(p, stream);
    case Runner::kSm90aTile256: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x256>(p, stream);
    case Runner::kSm90aTile128S7: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x128S7>(p, stream);
    case Runner::kSm90aP256: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x256>(p, stream);
    case Runner::kSm90aP256St: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x256St>(p, stream);
    case Runner::kSm90aP128St: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x128St>(p, stream);
    case Runner::kSm90aP160: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x160>(p, stream);
    case Runner::kSm90aC256St: return gemm::run_sm90a<Epi, gemm::Sm90aCluster128x256St>(p, stream);
    case Runner::kSm90aC160: return gemm::run_sm90a<Epi, gemm::Sm90aCluster128x160>(p, stream);
    case Runner::kSm90aP256x160: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent256x160>(p, stream);
    case Runner::kSm90aC2A256x160: return gemm::run_sm90a<Epi, gemm::Sm90aClusterA256x160>(p, stream);
    case Runner::kSm90aPP160: return gemm::run_sm90a<Epi, gemm::Sm90aPingPong128x160>(p, stream);
    case Runner::kSm90aPP128: return gemm::run_sm90a<Epi, gemm::Sm90aPingPong128x128>(p, stream);
    case Runner::kShortK64: return gemm::run_short_k<gemm::ShortKTile64x128>(p, stream);
    case Runner::kShortK128: return gemm::run_short_k<gemm::ShortKTile128x128>(p, stream);
    case Runner::kShortK64x64: return gemm::run_short_k<gemm::ShortKTile64x64>(p, stream);
    case Runner::kShortKCol: return gemm::run_short_k<gemm::ShortKCol128x64>(p, stream);
    case Runner::kShortKCol32: return gemm::run_short_k<gemm::ShortKCol128x32>(p, stream);
    case Runner::kSm90aShortK: return gemm::run_sm90a_short_k<Epi>(p, stream);
    case Runner::kGemvMma: return gemm::run(p, nullptr, stream, gemm::GemmPath::kGemvMma);
    case Runner::kGemvMmaWide: return gemm::run_gemv_mma(p, stream, gemm::GemvMmaKind::kWide);
    case Runner::kGemvMmaWide4: return gemm::run_gemv_mma(p, stream, gemm::GemvMmaKind::kWide4);
    case Runner::kGemvMmaDeep: return gemm::run_gemv_mma(p, stream, gemm::GemvMmaKind::kDeep);
    case Runner::kGemvMmaShort: return gemm::run_gemv_mma(p, stream, gemm::GemvMmaKind::kShort);
  }
  return Status::kErrorInternal;
}

// Workspace bytes runner r needs for p (0 for the runners without one).
template <typename Epi>
size_t workspace_bytes(Runner r, const gemm::GemmParams<Epi>& p) {
  if (r == Runner::kAutoWorkspace) return gemm::workspace_size(p);
  if (r == Runner::kSm80SplitK) return gemm::split_k_workspace_size(p.M, p.N, p.K);
  if (r == Runner::kSm90aSplitK) return gemm::sm90a_split_k_workspace_size(p.M, p.N, p.K);
  return 0;
}

// Whether a short-K runner's shared memory fits this device for K and output type Out; where it
// does not (e.g. the 128x128 tile at K > 128 with an int8 output on sm_86/89), run_short_k must
// return kErrorNotSupported. Every other runner: true.
template <typename Out>
bool short_k_fits(Runner r, int64_t K) {
  int dev = 0, limit = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  switch (r) {
    case Runner::kShortK64: return gemm::short_k_layout<gemm::ShortKTile64x128, Out>(K).smem_bytes <= limit;
    case Runner::kShortK128: return gemm::short_k_layout<gemm::ShortKTile128x128, Out>(K).smem_bytes <= limit;
    case Runner::kShortK64x64: return gemm::short_k_layout<gemm::ShortKTile64x64, Out>(K).smem_bytes <= limit;
    case Runner::kShortKCol: return gemm::short_k_col_smem<gemm::ShortKCol128x64, Out>(K) <= limit;
    case Runner::kShortKCol32: return gemm::short_k_col_smem<gemm::ShortKCol128x32, Out>(K) <= limit;
    default: return true;
  }
}

// The sm90a kernel exists only on sm_90 devices with a 90a build; it is exercised wherever it can run.
bool sm90a_runnable() {
  static const bool v = gemm::sm90a_available<gemm::Identity>();
  return v;
}

// The sm90a runner lives in its own binary (test_gemm_sm90.cu): a pipeline fault there must not
// take the other paths' tests down with it.
std::vector<Runner> runners_for(int64_t M, int64_t K = 0) {
  std::vector<Runner> v{Runner::kAuto, Runner::kAutoWorkspace, Runner::kSm80Tile128, Runner::kSm80Tile64};
  if (M <= gemm::kGemvMaxM)
    v.insert(v.end(), {Runner::kGemv, Runner::kGemvWide, Runner::kGemvWideDeep, Runner::kGemvSplitK, Runner::kGemvNarrow});
  if (M <= gemm::kGemvMmaMaxM) v.insert(v.end(), std::begin(kGemvMmaRunners), std::end(kGemvMmaRunners));
  if (K > 0 && K <= gemm::kShortKMaxK) v.insert(v.end(), {Runner::kShortK64, Runner::kShortK128, Runner::kShortK64x64});
  return v;
}

template <typename T>
std::string bits_str(T v) {
  if constexpr (std::is_same_v<T, __half>) return std::to_string(half_bits_to_float(__half_as_ushort(v)));
  else return std::to_string(+v);
}

// The sampled outputs of `got` (pitch ldc) against the reference, bit-exact.
template <typename Epi>
void expect_sample_matches(const Problem& p, const EpiConfig& cfg, float alpha,
                           const std::vector<typename Epi::Output>& got, int64_t ldc, const std::string& what) {
  using Out = typename Epi::Output;
  const int64_t M = p.M, N = p.w->N;
  reference::EpilogueRef ref;
  ref.alpha = alpha;
  ref.col_scale = cfg.col_scale ? p.w->col_scale.data() : nullptr;
  ref.bias = cfg.bias ? p.w->bias.data() : nullptr;
  if (cfg.residual) {
    const int64_t shape[2] = {std::max<int64_t>(M, 1), N}, stride[2] = {p.ldr, 1};
    ref.residual = make_strided_view<const float, 2>(p.residual.data(), shape, stride);
  }
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < p.rows.size(); ++i)
    for (size_t j = 0; j < p.cols.size(); ++j) {
      const int64_t m = p.rows[i], n = p.cols[j];
      const int32_t a = p.acc[i * p.cols.size() + j];
      const Out g = got[static_cast<size_t>(m * ldc + n)];
      bool same;
      std::string want;
      if constexpr (std::is_same_v<Epi, gemm::Identity>) {
        same = g == a; want = std::to_string(a);
      } else if constexpr (std::is_same_v<Epi, gemm::Requant>) {
        const int8_t q = saturate_round_i8(reference::epilogue_value(ref, a, m, n));
        same = g == q; want = std::to_string(+q);
      } else if constexpr (std::is_same_v<Out, float>) {
        const float v = reference::epilogue_value(ref, a, m, n);
        same = float_bits(g) == float_bits(v); want = std::to_string(v);
      } else {
        const uint16_t h = float_to_half_bits(reference::epilogue_value(ref, a, m, n));
        same = __half_as_ushort(g) == h; want = std::to_string(half_bits_to_float(h));
      }
      if (!same) {
        if (bad < 5)
          first += "\n  (m=" + std::to_string(m) + ", n=" + std::to_string(n) + ") got " + bits_str(g) + " want " +
                   want + " acc " + std::to_string(a);
        ++bad;
      }
    }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << p.rows.size() * p.cols.size() << " sampled outputs differ"
                     << first;
}

// Runs `r` with epilogue Epi on p, checks sampled values bit-exactly against the reference, every
// in-range element written, and the padding columns [N, ldc) untouched. ldc_multiple > 0: the
// output pitch is the smallest multiple of it above N (16: the 16-byte store path of the staged
// sm90a epilogue), with at least one padding column.
template <typename Epi>
void check(const Problem& p, Runner r, const EpiConfig& cfg, const std::string& label, int64_t ldc_multiple = 0) {
  using Out = typename Epi::Output;
  const int64_t M = p.M, N = p.w->N, K = p.w->K;
  // An odd pitch forces the one-element store path, an even one the paired stores.
  const int64_t ldc = ldc_multiple > 0 ? (N / ldc_multiple + 1) * ldc_multiple : N + (cfg.col_scale ? 5 : 8);
  const float alpha = std::is_same_v<Epi, gemm::Requant> ? 90.f / p.acc_rms : 3.f / p.acc_rms;
  const std::string what = label + " " + runner_name(r) + " " + cfg.name() + " M=" + std::to_string(M) +
                           " N=" + std::to_string(N) + " K=" + std::to_string(K) + " ldc=" + std::to_string(ldc);
  SCOPED_TRACE(what);

  gemm::GemmParams<Epi> prm;
  prm.M = M; prm.N = N; prm.K = K;
  prm.A = p.dA.get(); prm.lda = p.lda;
  prm.W = p.w->dev.get(); prm.ldw = p.w->ldw;
  prm.ldc = ldc;
  prm.epilogue = make_epilogue<Epi>(p, cfg, alpha);

  const size_t c_elems = static_cast<size_t>(std::max<int64_t>(M, 1) * ldc);
  DeviceBuffer<Out> dC(c_elems);
  prm.C = dC.get();
  if (!short_k_fits<Out>(r, K)) {
    EXPECT_EQ(run_with(r, prm), Status::kErrorNotSupported) << what << ": shared memory above the device limit";
    return;
  }
  const int poisons[2] = {0x5A, 0xA5};
  std::vector<Out> out[2];
  const int runs = (std::is_same_v<Out, float> || std::is_same_v<Out, __half>) ? 1 : 2;
  for (int run = 0; run < runs; ++run) {
    dC.poison(runs == 1 ? 0xFF : poisons[run]);
    ASSERT_EQ(run_with(r, prm), Status::kSuccess) << what;
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    out[run] = dC.download();
  }
  const std::vector<Out>& got = out[0];

  // Coverage: every (m, n < N) written; (m, n >= N) untouched.
  size_t unwritten = 0, overrun = 0;
  int64_t first_unwritten = -1;
  std::vector<Out> poison_val(1);
  {
    std::vector<uint8_t> pb(sizeof(Out), static_cast<uint8_t>(runs == 1 ? 0xFF : poisons[0]));
    std::memcpy(&poison_val[0], pb.data(), sizeof(Out));
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < ldc; ++n) {
      const size_t i = static_cast<size_t>(m * ldc + n);
      bool written;
      if (runs == 2) written = std::memcmp(&out[0][i], &out[1][i], sizeof(Out)) == 0;
      else written = std::memcmp(&got[i], &poison_val[0], sizeof(Out)) != 0;
      if (n < N && !written) { if (unwritten++ == 0) first_unwritten = i; }
      if (n >= N && written) ++overrun;
    }
  EXPECT_EQ(unwritten, 0u) << what << ": first unwritten at m=" << (first_unwritten / ldc)
                           << " n=" << (first_unwritten % ldc);
  EXPECT_EQ(overrun, 0u) << what << ": elements written in the padding columns [N, ldc)";

  expect_sample_matches<Epi>(p, cfg, alpha, got, ldc, what);
}

// PDL: runner r launched as a programmatic dependent (GemmParams::pdl) of a feeder kernel that
// writes A (and the residual) only after a spin, having let its dependents launch at once
// (common/pdl_chain.cuh), then once more back to back as a dependent of itself (the split-K
// runners: two kernels each, the second launch's partial sums overwrite the workspace the first
// launch's reduce reads). The output must be bit-identical to the same sequence with pdl = false
// and match the reference on the sample, the padding columns stay untouched, and the feeder's
// snapshot of C, taken after its spin, must still be C's poison (no C write before the
// dependency wait). Below sm_90 pdl stays false, as the engine decides (device_supports_pdl).
template <typename Epi>
void check_pdl(const Problem& p, Runner r, const EpiConfig& cfg, const std::string& label, int64_t ldc_multiple = 0) {
  using Out = typename Epi::Output;
  constexpr bool kHasResidual = std::is_same_v<Epi, gemm::DequantF32> || std::is_same_v<Epi, gemm::DequantF16>;
  const int64_t M = p.M, N = p.w->N, K = p.w->K;
  const int64_t ldc = ldc_multiple > 0 ? (N / ldc_multiple + 1) * ldc_multiple : N + (cfg.col_scale ? 5 : 8);
  const float alpha = std::is_same_v<Epi, gemm::Requant> ? 90.f / p.acc_rms : 3.f / p.acc_rms;
  const bool pdl = test::pdl_supported();
  const std::string what = label + " " + runner_name(r) + " " + cfg.name() + " M=" + std::to_string(M) +
                           " N=" + std::to_string(N) + " K=" + std::to_string(K) + " ldc=" + std::to_string(ldc) +
                           (pdl ? " (pdl)" : " (pdl off: device below sm_90)");
  SCOPED_TRACE(what);
  if (!short_k_fits<Out>(r, K)) return;  // check() covers the kErrorNotSupported answer
  ASSERT_EQ(p.res_off, 0) << "check_pdl copies d_residual whole";

  // The buffers the feeder fills: poisoned before every sequence.
  DeviceBuffer<int8_t> A(p.dA.size());
  DeviceBuffer<float> R(p.d_residual.size());
  const size_t c_elems = static_cast<size_t>(std::max<int64_t>(M, 1) * ldc);
  DeviceBuffer<Out> C(c_elems);
  gemm::GemmParams<Epi> prm;
  prm.M = M; prm.N = N; prm.K = K;
  prm.A = A.get(); prm.lda = p.lda;
  prm.W = p.w->dev.get(); prm.ldw = p.w->ldw;
  prm.C = C.get(); prm.ldc = ldc;
  prm.epilogue = make_epilogue<Epi>(p, cfg, alpha);
  if constexpr (kHasResidual)
    if (cfg.residual) prm.epilogue.residual = R.get();
  DeviceBuffer<char> ws(std::max<size_t>(workspace_bytes(r, prm), 16));
  test::Stream stream;
  constexpr uint8_t kPoisonC = 0xA5;
  std::vector<Out> out[2];
  for (int mode = 0; mode < 2; ++mode) {
    prm.pdl = mode == 1 && pdl;
    const char* mode_name = mode == 0 ? "pdl=false" : "pdl=true";
    A.poison(0x5A);
    R.poison(0xFF);  // NaN: a residual read before the wait shows in every fp output
    C.poison(kPoisonC);
    test::PdlFeed feed;
    feed.copy(p.dA.get(), A.get(), p.dA.size());
    if (kHasResidual && cfg.residual) feed.copy(p.d_residual.get(), R.get(), p.d_residual.size() * sizeof(float));
    const size_t c_bytes = c_elems * sizeof(Out);
    const auto run = test::run_fed_twice(feed, C.get(), c_bytes, kPoisonC, stream.get(), [&] {
      return run_with(r, prm, stream.get(), static_cast<void*>(ws.get()));
    });
    ASSERT_EQ(run.first, Status::kSuccess) << mode_name;
    ASSERT_EQ(run.second, Status::kSuccess) << mode_name << ", again";
    out[mode] = C.download();
    const size_t early = run.early;
    EXPECT_EQ(early, c_bytes) << mode_name << ": C written before the feeder finished, first at byte " << early
                                << " (m=" << early / sizeof(Out) / ldc << ", n=" << early / sizeof(Out) % ldc << ")";
  }
  size_t diff = 0, first_diff = 0;
  for (size_t i = 0; i < c_elems; ++i)
    if (std::memcmp(&out[0][i], &out[1][i], sizeof(Out)) != 0 && diff++ == 0) first_diff = i;
  EXPECT_EQ(diff, 0u) << diff << " outputs of the pdl=true sequence differ from pdl=false, first at m="
                      << first_diff / ldc << " n=" << first_diff % ldc;
  size_t overrun = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = N; n < ldc; ++n) {
      const uint8_t* b = reinterpret_cast<const uint8_t*>(&out[1][static_cast<size_t>(m * ldc + n)]);
      for (size_t k = 0; k < sizeof(Out); ++k) overrun += b[k] != kPoisonC;
    }
  EXPECT_EQ(overrun, 0u) << "bytes written in the padding columns [N, ldc)";
  expect_sample_matches<Epi>(p, cfg, alpha, out[1], ldc, what);
}

}  // namespace gemm_test
