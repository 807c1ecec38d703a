// bench_gemm: the int8 GEMM family on the Mamba layer shapes, against cuBLAS fp16 and cuBLASLt
// int8 in the same binary.
//
// Names: Gemm/<variant>/D<d_model>/<layer>/M<rows>. Variants: auto (the dispatcher), each
// mma.sync tile (sm80_*), each GEMV (gemv_*, M <= 16), sm90a (its tile heuristic) and each wgmma
// tile (sm90a_*; M >= 128, when built with 90a and run on sm_90), the wgmma split-K through the
// workspace (sm90a_split_k) and inside clusters (sm90a_split_k_cluster: the plan capped at 8
// splits; _fit: lowered until every cluster is resident at once, what run() takes; _s4.._s7: capped
// at that many splits) where the plan splits,
// cublas_f16 (cublasGemmEx, fp16 in/out, fp32 accumulate), cublaslt_i8 (int8 in, int32 out).
// Layers (D = d_model, E = 2D, R = ceil(D/16)): in_proj K=D N=2E (requant), x_proj K=E N=R+32
// (requant), dt_proj K=R N=E (requant), out_proj K=E N=D (dequant fp32 + fp32 residual),
// lm_head K=D N=50280 (dequant fp16). Counters: TOPS (2MNK), GB/s and copy_frac on the minimum
// bytes (A + W + C (+ residual) once each; the fp16 baseline counts 2-byte operands); wcopy_frac:
// the weight bytes alone against the same-run copy ceiling (the decode roofline).
// auto+pdl (M = 1): auto with the launches chained by programmatic dependent launch, as the W8A8
// decode step launches them. auto+ws: auto with a split-K workspace (shapes whose plan splits;
// the model passes one). out_proj_f16: out_proj's shape with an fp16 output and no residual
// (the output bytes of the cuBLAS fp16 baseline).
// Timing: M >= 128: one launch per timed batch after an L2 flush. M <= 32 (decode batches): `sets` copies
// of every operand (A, W, C, residual; together more than 2x L2) are launched back to back, set i
// then set i+1, without a flush, and the batch time is divided by the number of sets: every
// launch streams its weights from DRAM as in a decode step, and no dirty lines of a flush memset
// are written back during the timed launches. The batch is captured once into a CUDA graph when
// capture works (counter graph = 1), so the number is device time, not host launch rate.
// Example filters: --benchmark_filter='D2560/.*/M1/', --benchmark_filter='sm90a.*/D2560/(in|out)_proj/M2048'.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "common/bench_utils.cuh"
#include "quamba/gemm/cublas_baseline.cuh"
#include "quamba/gemm/gemm.cuh"
#include "quamba/gemm/w8a16.cuh"
#include "quamba/reference/gemm.hpp"

namespace {

using namespace quamba;
using quamba::test::DeviceBuffer;

__device__ uint32_t hash32(uint64_t i, uint32_t seed) {
  uint64_t x = i * 0x9e3779b97f4a7c15ull + seed;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  return static_cast<uint32_t>(x);
}
__global__ void fill_i8(int8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = static_cast<int8_t>(hash32(i, seed) & 0xff);
}
__global__ void fill_f16(__half* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = __float2half((static_cast<int>(hash32(i, seed) & 0xffff) - 32768) / 32768.f);
}
__global__ void fill_f32(float* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = (static_cast<int>(hash32(i, seed) & 0xffff) - 32768) / 4096.f;
}

struct Shape {
  int D;
  std::string layer;
  int64_t M, N, K;
};

enum class Variant {
  kAuto, kAutoWorkspace, kSm80SplitK, kSm80Tile128, kSm80Tile64, kGemvWide, kGemvWideDeep, kGemvSplitK, kGemvNarrow,
  kSm90a, kSm90aTile128, kSm90aTile256, kSm90aTile128S7, kSm90aP256, kSm90aP256St, kSm90aP128St,
  kSm90aP160, kSm90aC256St, kSm90aC160, kSm90aP256x160, kSm90aC2A256x160, kSm90aPP160, kSm90aPP128, kCublasF16, kCublasLtI8, kAutoPdl, kW8A16,
  kShortK64, kShortK128, kShortK64x64, kShortKCol, kShortKCol32, kSm90aShortK, kSm90aSplitK, kSm90aSplitKCluster,
  kSm90aSplitKClusterFit, kSm90aSplitKClusterS4, kSm90aSplitKClusterS5, kSm90aSplitKClusterS6, kSm90aSplitKClusterS7,
  kGemvMmaWide, kGemvMmaWide4, kGemvMmaDeep, kGemvMmaShort
};

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::kAuto: return "auto";
    case Variant::kAutoWorkspace: return "auto+ws";
    case Variant::kSm80SplitK: return "sm80_64x64_split_k";
    case Variant::kSm80Tile128: return gemm::sm80_name<gemm::Sm80Tile128x128>();
    case Variant::kSm80Tile64: return gemm::sm80_name<gemm::Sm80Tile64x64>();
    case Variant::kGemvWide: return gemm::to_string(gemm::GemvKind::kWide);
    case Variant::kGemvWideDeep: return gemm::to_string(gemm::GemvKind::kWideDeep);
    case Variant::kGemvSplitK: return gemm::to_string(gemm::GemvKind::kSplitK);
    case Variant::kGemvNarrow: return gemm::to_string(gemm::GemvKind::kNarrow);
    case Variant::kSm90a: return "sm90a";
    case Variant::kSm90aTile128: return gemm::sm90a_name<gemm::Sm90aTile128x128>();
    case Variant::kSm90aTile256: return gemm::sm90a_name<gemm::Sm90aTile128x256>();
    case Variant::kSm90aTile128S7: return gemm::sm90a_name<gemm::Sm90aTile128x128S7>();
    case Variant::kSm90aP256: return gemm::sm90a_name<gemm::Sm90aPersistent128x256>();
    case Variant::kSm90aP256St: return gemm::sm90a_name<gemm::Sm90aPersistent128x256St>();
    case Variant::kSm90aP128St: return gemm::sm90a_name<gemm::Sm90aPersistent128x128St>();
    case Variant::kSm90aP160: return gemm::sm90a_name<gemm::Sm90aPersistent128x160>();
    case Variant::kSm90aC256St: return gemm::sm90a_name<gemm::Sm90aCluster128x256St>();
    case Variant::kSm90aC160: return gemm::sm90a_name<gemm::Sm90aCluster128x160>();
    case Variant::kSm90aP256x160: return gemm::sm90a_name<gemm::Sm90aPersistent256x160>();
    case Variant::kSm90aC2A256x160: return gemm::sm90a_name<gemm::Sm90aClusterA256x160>();
    case Variant::kSm90aPP160: return gemm::sm90a_name<gemm::Sm90aPingPong128x160>();
    case Variant::kSm90aPP128: return gemm::sm90a_name<gemm::Sm90aPingPong128x128>();
    case Variant::kCublasF16: return "cublas_f16";
    case Variant::kCublasLtI8: return "cublaslt_i8";
    case Variant::kAutoPdl: return "auto+pdl";
    case Variant::kW8A16: return "w8a16";
    case Variant::kShortK64: return gemm::short_k_name<gemm::ShortKTile64x128>();
    case Variant::kShortK128: return gemm::short_k_name<gemm::ShortKTile128x128>();
    case Variant::kShortK64x64: return gemm::short_k_name<gemm::ShortKTile64x64>();
    case Variant::kShortKCol: return gemm::short_k_name<gemm::ShortKCol128x64>();
    case Variant::kShortKCol32: return gemm::short_k_name<gemm::ShortKCol128x32>();
    case Variant::kSm90aShortK: return gemm::sm90a_short_k_name<gemm::Sm90aShortK128>();
    case Variant::kSm90aSplitK: return "sm90a_split_k";
    case Variant::kSm90aSplitKCluster: return "sm90a_split_k_cluster";
    case Variant::kSm90aSplitKClusterFit: return "sm90a_split_k_cluster_fit";
    case Variant::kSm90aSplitKClusterS4: return "sm90a_split_k_cluster_s4";
    case Variant::kSm90aSplitKClusterS5: return "sm90a_split_k_cluster_s5";
    case Variant::kSm90aSplitKClusterS6: return "sm90a_split_k_cluster_s6";
    case Variant::kSm90aSplitKClusterS7: return "sm90a_split_k_cluster_s7";
    case Variant::kGemvMmaWide: return gemm::to_string(gemm::GemvMmaKind::kWide);
    case Variant::kGemvMmaWide4: return gemm::to_string(gemm::GemvMmaKind::kWide4);
    case Variant::kGemvMmaDeep: return gemm::to_string(gemm::GemvMmaKind::kDeep);
    case Variant::kGemvMmaShort: return gemm::to_string(gemm::GemvMmaKind::kShort);
  }
  return "?";
}

// ws: the split-K workspace of auto+ws (gemm::workspace_size bytes).
template <typename Epi>
Status run_variant(Variant v, const gemm::GemmParams<Epi>& p, cudaStream_t st, void* ws = nullptr) {
  switch (v) {
    case Variant::kAuto:
    case Variant::kAutoPdl: return gemm::run(p, nullptr, st);
    case Variant::kAutoWorkspace: return gemm::run(p, ws, st);
    case Variant::kSm80SplitK: return gemm::run_sm80_split_k(p, ws, st);
    case Variant::kSm90aSplitK: return gemm::run_sm90a_split_k(p, ws, st);
    case Variant::kSm90aSplitKCluster: return gemm::run_sm90a_split_k_cluster(p, st);
    case Variant::kSm90aSplitKClusterFit: return gemm::run_sm90a_split_k_cluster(p, st, /*one_wave=*/true);
    case Variant::kSm90aSplitKClusterS4: return gemm::run_sm90a_split_k_cluster(p, st, false, 4);
    case Variant::kSm90aSplitKClusterS5: return gemm::run_sm90a_split_k_cluster(p, st, false, 5);
    case Variant::kSm90aSplitKClusterS6: return gemm::run_sm90a_split_k_cluster(p, st, false, 6);
    case Variant::kSm90aSplitKClusterS7: return gemm::run_sm90a_split_k_cluster(p, st, false, 7);
    case Variant::kSm80Tile128: return gemm::run_sm80<gemm::Sm80Tile128x128>(p, st);
    case Variant::kSm80Tile64: return gemm::run_sm80<gemm::Sm80Tile64x64>(p, st);
    case Variant::kShortK64: return gemm::run_short_k<gemm::ShortKTile64x128>(p, st);
    case Variant::kShortK128: return gemm::run_short_k<gemm::ShortKTile128x128>(p, st);
    case Variant::kShortK64x64: return gemm::run_short_k<gemm::ShortKTile64x64>(p, st);
    case Variant::kShortKCol: return gemm::run_short_k<gemm::ShortKCol128x64>(p, st);
    case Variant::kShortKCol32: return gemm::run_short_k<gemm::ShortKCol128x32>(p, st);
    case Variant::kSm90aShortK: return gemm::run_sm90a_short_k<Epi>(p, st);
    case Variant::kGemvWide: return gemm::run_gemv(p, st, gemm::GemvKind::kWide);
    case Variant::kGemvWideDeep: return gemm::run_gemv(p, st, gemm::GemvKind::kWideDeep);
    case Variant::kGemvSplitK: return gemm::run_gemv(p, st, gemm::GemvKind::kSplitK);
    case Variant::kGemvNarrow: return gemm::run_gemv(p, st, gemm::GemvKind::kNarrow);
    case Variant::kGemvMmaWide: return gemm::run_gemv_mma(p, st, gemm::GemvMmaKind::kWide);
    case Variant::kGemvMmaWide4: return gemm::run_gemv_mma(p, st, gemm::GemvMmaKind::kWide4);
    case Variant::kGemvMmaDeep: return gemm::run_gemv_mma(p, st, gemm::GemvMmaKind::kDeep);
    case Variant::kGemvMmaShort: return gemm::run_gemv_mma(p, st, gemm::GemvMmaKind::kShort);
    case Variant::kSm90a: return gemm::run(p, nullptr, st, gemm::GemmPath::kSm90a);
    case Variant::kSm90aTile128: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x128>(p, st);
    case Variant::kSm90aTile256: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x256>(p, st);
    case Variant::kSm90aTile128S7: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x128S7>(p, st);
    case Variant::kSm90aP256: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x256>(p, st);
    case Variant::kSm90aP256St: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x256St>(p, st);
    case Variant::kSm90aP128St: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x128St>(p, st);
    case Variant::kSm90aP160: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent128x160>(p, st);
    case Variant::kSm90aC256St: return gemm::run_sm90a<Epi, gemm::Sm90aCluster128x256St>(p, st);
    case Variant::kSm90aC160: return gemm::run_sm90a<Epi, gemm::Sm90aCluster128x160>(p, st);
    case Variant::kSm90aP256x160: return gemm::run_sm90a<Epi, gemm::Sm90aPersistent256x160>(p, st);
    case Variant::kSm90aC2A256x160: return gemm::run_sm90a<Epi, gemm::Sm90aClusterA256x160>(p, st);
    case Variant::kSm90aPP160: return gemm::run_sm90a<Epi, gemm::Sm90aPingPong128x160>(p, st);
    case Variant::kSm90aPP128: return gemm::run_sm90a<Epi, gemm::Sm90aPingPong128x128>(p, st);
    default: return Status::kErrorNotSupported;
  }
}

template <typename Traits, typename Epi>
int cluster_count() {
  int n = 0;
  const auto kernel = gemm::detail::sm90a_kernel_of<Traits, Epi>();
  return gemm::detail::max_active_clusters<Traits>(kernel, dim3(Traits::kCluster), &n) == Status::kSuccess ? n : -1;
}

// ---- timing ------------------------------------------------------------------------------------

bool is_decode(int64_t M) { return M <= 32; }

// Operand sets for one benchmark: 1 for M >= 128 (flushed L2), else enough copies that together
// they exceed 2x L2 (see the header).
int operand_sets(int64_t M, double set_bytes) {
  if (!is_decode(M)) return 1;
  int dev = 0, l2 = 0;
  QUAMBA_CUDA_CHECK(cudaGetDevice(&dev));
  QUAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  const double n = std::floor(2.0 * l2 / set_bytes) + 1.0;
  return static_cast<int>(std::min(n, 4096.0));
}

// Byte offset between consecutive sets of one operand (256-byte aligned, like cudaMalloc).
int64_t set_pitch(int64_t bytes) { return (bytes + 255) / 256 * 256; }

cudaStream_t bench_stream() {
  static cudaStream_t s = [] {
    cudaStream_t x;
    QUAMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&x, cudaStreamNonBlocking));
    return x;
  }();
  return s;
}

// Times launch(set, stream) for every set. M >= 128: time_gpu with its L2 flush. Decode: all sets
// back to back without a flush (inner = sets), captured into one CUDA graph when possible.
template <typename Launch>
void time_sets(benchmark::State& state, int64_t M, int sets, Launch&& launch) {
  cudaStream_t st = bench_stream();
  if (!is_decode(M)) {
    bench::time_gpu(state, [&](int) { launch(0, st); }, 1, true, st);
    return;
  }
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool graph_ok = cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed) == cudaSuccess;
  if (graph_ok) {
    for (int i = 0; i < sets; ++i) graph_ok = (launch(i, st) == Status::kSuccess) && graph_ok;
    graph_ok = (cudaStreamEndCapture(st, &graph) == cudaSuccess) && graph_ok && graph != nullptr;
    graph_ok = graph_ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  }
  if (!graph_ok) {
    (void)cudaGetLastError();  // clears the (non-sticky) error of a refused capture
    if (exec) cudaGraphExecDestroy(exec);
    exec = nullptr;
  }
  const bool used_graph = exec != nullptr;
  if (used_graph) {
    bench::time_gpu(state, [&](int i) { if (i == 0) QUAMBA_CUDA_CHECK(cudaGraphLaunch(exec, st)); }, sets, false, st);
    cudaGraphExecDestroy(exec);
  } else {
    bench::time_gpu(state, [&](int i) { launch(i, st); }, sets, false, st);
  }
  if (graph) cudaGraphDestroy(graph);
  state.counters["sets"] = sets;
  state.counters["graph"] = used_graph ? 1 : 0;
}

// Weight bytes per launch against the same-run copy ceiling (decode's roofline: W dominates).
void report_weight_frac(benchmark::State& state, double w_bytes) {
  if (bench::copy_gbps() > 0)
    state.counters["wcopy_frac"] =
        benchmark::Counter(w_bytes / (bench::copy_gbps() * 1e9), benchmark::Counter::kIsIterationInvariantRate);
}

// Checks a few rows x columns of C against the reference before timing; aborts the benchmark
// with an error on mismatch.
template <typename Epi>
bool verify(benchmark::State& state, const gemm::GemmParams<Epi>& p, const float* col_scale_host,
            const float* residual_dev) {
  using Out = typename Epi::Output;
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t rows[] = {0, M / 2, M - 1};
  std::vector<int64_t> cols = {0, 1, N / 3, N / 2 + 1, N - 2, N - 1};
  std::vector<int8_t> a(K), w(K);
  for (int64_t m : rows) {
    QUAMBA_CUDA_CHECK(cudaMemcpy(a.data(), p.A + m * p.lda, K, cudaMemcpyDeviceToHost));
    for (int64_t n : cols) {
      QUAMBA_CUDA_CHECK(cudaMemcpy(w.data(), p.W + n * p.ldw, K, cudaMemcpyDeviceToHost));
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int32_t(a[k]) * int32_t(w[k]);
      Out got;
      QUAMBA_CUDA_CHECK(cudaMemcpy(&got, p.C + m * p.ldc + n, sizeof(Out), cudaMemcpyDeviceToHost));
      reference::EpilogueRef e;
      bool same = true;
      if constexpr (std::is_same_v<Epi, gemm::Requant>) {
        e.alpha = p.epilogue.alpha;
        same = got == saturate_round_i8(reference::epilogue_value(e, acc, m, n));
      } else {
        e.alpha = p.epilogue.alpha;
        float res = 0.f;
        if (residual_dev) QUAMBA_CUDA_CHECK(cudaMemcpy(&res, residual_dev + m * p.epilogue.ldr + n, 4, cudaMemcpyDeviceToHost));
        float v = reference::epilogue_value(e, acc, m, n);
        if (residual_dev) v += res;
        if constexpr (std::is_same_v<Out, float>) same = float_bits(got) == float_bits(v);
        else same = __half_as_ushort(got) == float_to_half_bits(v);
      }
      (void)col_scale_host;
      if (!same) {
        state.SkipWithError(("mismatch vs reference at m=" + std::to_string(m) + " n=" + std::to_string(n)).c_str());
        return false;
      }
    }
  }
  return true;
}

template <typename Epi>
void bench_ours(benchmark::State& state, const Shape& s, Variant v) {
  using Out = typename Epi::Output;
  const bool has_residual = std::is_same_v<Epi, gemm::DequantF32>;
  const int64_t a_pitch = set_pitch(s.M * s.K), w_pitch = set_pitch(s.N * s.K);
  const int64_t c_pitch = set_pitch(s.M * s.N * int64_t(sizeof(Out))) / int64_t(sizeof(Out));
  const int64_t r_pitch = has_residual ? set_pitch(s.M * s.N * 4) / 4 : 0;
  const int sets = operand_sets(s.M, double(a_pitch + w_pitch) + double(c_pitch) * sizeof(Out) + 4.0 * r_pitch);
  DeviceBuffer<int8_t> A(sets * a_pitch), W(sets * w_pitch);
  DeviceBuffer<Out> C(sets * c_pitch);
  DeviceBuffer<float> residual;
  fill_i8<<<1024, 256>>>(A.get(), A.size(), 1);
  fill_i8<<<1024, 256>>>(W.get(), W.size(), 2);
  std::vector<gemm::GemmParams<Epi>> ps(sets);
  double bytes = double(s.M) * s.K + double(s.N) * s.K + double(s.M) * s.N * sizeof(Out);
  if constexpr (std::is_same_v<Epi, gemm::DequantF32>) {
    residual.resize(sets * r_pitch);
    fill_f32<<<1024, 256>>>(residual.get(), residual.size(), 3);
    bytes += double(s.M) * s.N * 4;
  }
  for (int i = 0; i < sets; ++i) {
    gemm::GemmParams<Epi>& p = ps[i];
    p.M = s.M; p.N = s.N; p.K = s.K;
    p.A = A.get() + i * a_pitch; p.lda = s.K;
    p.W = W.get() + i * w_pitch; p.ldw = s.K;
    p.C = C.get() + i * c_pitch; p.ldc = s.N;
    // auto+pdl: decode launches chained as the W8A8 decode step chains them (core/launch.cuh):
    // each GEMV's first weight loads overlap the previous launch's tail.
    p.pdl = v == Variant::kAutoPdl && quamba::device_supports_pdl(0);
    // Uniform int8 products: |acc| ~ 5.5e3·sqrt(K); alpha spreads the outputs over int8.
    p.epilogue.alpha = 40.f / (5.5e3f * std::sqrt(float(s.K)));
    if constexpr (std::is_same_v<Epi, gemm::DequantF32>) {
      p.epilogue.residual = residual.get() + i * r_pitch;
      p.epilogue.ldr = s.N;
    }
  }
  DeviceBuffer<char> ws(std::max<size_t>(gemm::workspace_size(ps[0]), 16));
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  for (int i : {0, sets - 1}) {
    const Status st = run_variant(v, ps[i], 0, ws.get());
    if (st != Status::kSuccess) {
      state.SkipWithError((std::string("not runnable: ") + to_string(st)).c_str());
      return;
    }
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const float* res = nullptr;
    if constexpr (std::is_same_v<Epi, gemm::DequantF32>) res = ps[i].epilogue.residual;
    if (!verify(state, ps[i], nullptr, res)) return;
  }
  time_sets(state, s.M, sets, [&](int i, cudaStream_t st) { return run_variant(v, ps[i], st, ws.get()); });
  // Resident two-CTA clusters of the multicast kernels (the persistent grid is twice this).
  if (v == Variant::kSm90aC256St) state.counters["clusters"] = cluster_count<gemm::Sm90aCluster128x256St, Epi>();
  if (v == Variant::kSm90aC160) state.counters["clusters"] = cluster_count<gemm::Sm90aCluster128x160, Epi>();
  if (v == Variant::kSm90aC2A256x160) state.counters["clusters"] = cluster_count<gemm::Sm90aClusterA256x160, Epi>();
  bench::report_bytes(state, bytes);
  bench::report_ops(state, 2.0 * s.M * s.N * s.K);
  report_weight_frac(state, double(s.N) * s.K);
}

void bench_cublas_f16(benchmark::State& state, const Shape& s) {
  static cublasHandle_t h = [] { cublasHandle_t x; cublasCreate(&x); return x; }();
  const int64_t a_pitch = set_pitch(2 * s.M * s.K) / 2, w_pitch = set_pitch(2 * s.N * s.K) / 2;
  const int64_t c_pitch = set_pitch(2 * s.M * s.N) / 2;
  const int sets = operand_sets(s.M, 2.0 * (a_pitch + w_pitch + c_pitch));
  DeviceBuffer<__half> A(sets * a_pitch), W(sets * w_pitch), C(sets * c_pitch);
  fill_f16<<<1024, 256>>>(A.get(), A.size(), 1);
  fill_f16<<<1024, 256>>>(W.get(), W.size(), 2);
  auto params = [&](int i) {
    gemm::GemmF16Params p;
    p.M = s.M; p.N = s.N; p.K = s.K;
    p.A = A.get() + i * a_pitch; p.lda = s.K;
    p.W = W.get() + i * w_pitch; p.ldw = s.K;
    p.C = C.get() + i * c_pitch; p.ldc = s.N;
    return p;
  };
  if (gemm::gemm_f16_cublas(h, params(0), 0) != Status::kSuccess) { state.SkipWithError("cublasGemmEx failed"); return; }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  time_sets(state, s.M, sets, [&](int i, cudaStream_t st) { return gemm::gemm_f16_cublas(h, params(i), st); });
  bench::report_bytes(state, 2.0 * (double(s.M) * s.K + double(s.N) * s.K + double(s.M) * s.N));
  bench::report_ops(state, 2.0 * s.M * s.N * s.K);
  report_weight_frac(state, 2.0 * s.N * s.K);
}

void bench_cublaslt_i8(benchmark::State& state, const Shape& s) {
  static cublasLtHandle_t lt = [] { cublasLtHandle_t x; cublasLtCreate(&x); return x; }();
  const int64_t a_pitch = set_pitch(s.M * s.K), w_pitch = set_pitch(s.N * s.K), c_pitch = set_pitch(4 * s.M * s.N) / 4;
  const int sets = operand_sets(s.M, double(a_pitch + w_pitch) + 4.0 * c_pitch);
  DeviceBuffer<int8_t> A(sets * a_pitch), W(sets * w_pitch);
  DeviceBuffer<int32_t> C(sets * c_pitch);
  fill_i8<<<1024, 256>>>(A.get(), A.size(), 1);
  fill_i8<<<1024, 256>>>(W.get(), W.size(), 2);
  gemm::CublasLtI8Gemm g;
  if (g.init(lt, s.M, s.N, s.K, s.K, s.K, s.N, size_t(32) << 20) != Status::kSuccess) {
    state.SkipWithError("cuBLASLt has no int8 algorithm for this shape");
    return;
  }
  DeviceBuffer<char> ws(std::max<size_t>(g.workspace_bytes(), 1));
  auto launch = [&](int i, cudaStream_t st) {
    return g.run(lt, A.get() + i * a_pitch, W.get() + i * w_pitch, C.get() + i * c_pitch, ws.get(), ws.size(), st);
  };
  if (launch(0, 0) != Status::kSuccess) {
    state.SkipWithError("cublasLtMatmul failed");
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  time_sets(state, s.M, sets, launch);
  bench::report_bytes(state, double(s.M) * s.K + double(s.N) * s.K + 4.0 * s.M * s.N);
  bench::report_ops(state, 2.0 * s.M * s.N * s.K);
  report_weight_frac(state, double(s.N) * s.K);
}

// The int8 head option's lm_head (gemm/w8a16.cuh): fp16 activation rows, int8 weight rows with
// per-row fp32 scales, fp32 logits. Weight fraction: int8 rows + scales against the copy rate.
template <typename Traits = void>
void bench_w8a16(benchmark::State& state, const Shape& s) {
  const int64_t a_pitch = set_pitch(2 * s.M * s.K) / 2, w_pitch = set_pitch(s.N * s.K);
  const int64_t c_pitch = set_pitch(4 * s.M * s.N) / 4, sc_pitch = set_pitch(4 * s.N) / 4;
  const int sets = operand_sets(s.M, 2.0 * a_pitch + double(w_pitch) + 4.0 * (c_pitch + sc_pitch));
  DeviceBuffer<__half> A(sets * a_pitch);
  DeviceBuffer<int8_t> W(sets * w_pitch);
  DeviceBuffer<float> C(sets * c_pitch), S(sets * sc_pitch);
  fill_f16<<<1024, 256>>>(A.get(), A.size(), 1);
  fill_i8<<<1024, 256>>>(W.get(), W.size(), 2);
  fill_f32<<<1024, 256>>>(S.get(), S.size(), 3);
  auto params = [&](int i) {
    gemm::W8A16Params p;
    p.M = s.M; p.N = s.N; p.K = s.K;
    p.A = A.get() + i * a_pitch; p.lda = s.K;
    p.W = W.get() + i * w_pitch; p.ldw = s.K; p.scale = S.get() + i * sc_pitch;
    p.C = C.get() + i * c_pitch; p.ldc = s.N;
    return p;
  };
  auto launch = [&](int i, cudaStream_t st) {
    if constexpr (std::is_void_v<Traits>) return gemm::run(params(i), nullptr, st);
    else return gemm::run_with<Traits>(params(i), st);
  };
  if (launch(0, 0) != Status::kSuccess) { state.SkipWithError("w8a16 launch failed"); return; }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  {  // spot check of set 0 against the double-precision sum (fp32 accumulation bound, loosely)
    const gemm::W8A16Params p = params(0);
    std::vector<__half> a(size_t(s.K));
    std::vector<int8_t> w(size_t(s.K));
    for (int64_t m : {int64_t(0), s.M / 2, s.M - 1})
      for (int64_t n : {int64_t(0), int64_t(1), s.N / 3, s.N / 2 + 1, s.N - 2, s.N - 1}) {
        QUAMBA_CUDA_CHECK(cudaMemcpy(a.data(), p.A + m * p.lda, 2 * size_t(s.K), cudaMemcpyDeviceToHost));
        QUAMBA_CUDA_CHECK(cudaMemcpy(w.data(), p.W + n * p.ldw, size_t(s.K), cudaMemcpyDeviceToHost));
        float sc = 0.f, got = 0.f;
        QUAMBA_CUDA_CHECK(cudaMemcpy(&sc, p.scale + n, 4, cudaMemcpyDeviceToHost));
        QUAMBA_CUDA_CHECK(cudaMemcpy(&got, p.C + m * p.ldc + n, 4, cudaMemcpyDeviceToHost));
        double sum = 0, mag = 0;
        for (int64_t k = 0; k < s.K; ++k) {
          const double t = double(__half2float(a[size_t(k)])) * w[size_t(k)];
          sum += t;
          mag += std::fabs(t);
        }
        if (!(std::fabs(double(got) - sum * sc) <= 1e-4 * mag * std::fabs(sc) + 1e-30)) {
          state.SkipWithError(("mismatch vs reference at m=" + std::to_string(m) + " n=" + std::to_string(n)).c_str());
          return;
        }
      }
  }
  time_sets(state, s.M, sets, launch);
  bench::report_bytes(state, 2.0 * s.M * s.K + double(s.N) * s.K + 4.0 * s.N + 4.0 * s.M * s.N);
  bench::report_ops(state, 2.0 * s.M * s.N * s.K);
  report_weight_frac(state, double(s.N) * s.K + 4.0 * s.N);
}

void bench_shape(benchmark::State& state, Shape s, Variant v) {
  if (v == Variant::kCublasF16) return bench_cublas_f16(state, s);
  if (v == Variant::kCublasLtI8) return bench_cublaslt_i8(state, s);
  if (v == Variant::kW8A16) return bench_w8a16<>(state, s);
  if (s.layer == "out_proj") return bench_ours<gemm::DequantF32>(state, s, v);
  if (s.layer == "out_proj_f16") return bench_ours<gemm::DequantF16>(state, s, v);
  if (s.layer == "lm_head") return bench_ours<gemm::DequantF16>(state, s, v);
  return bench_ours<gemm::Requant>(state, s, v);
}

const bool registered = [] {
  for (int D : {768, 1024, 1536, 2048, 2560}) {
    const int64_t E = 2 * D, R = (D + 15) / 16;
    const Shape layers[] = {{D, "in_proj", 0, 2 * E, D}, {D, "x_proj", 0, R + 32, E}, {D, "dt_proj", 0, E, R},
                            {D, "out_proj", 0, D, E}, {D, "lm_head", 0, 50280, D}};
    // out_proj's GEMM with the fp16 output of the cuBLAS fp16 baseline (no residual): the same
    // output bytes as the baseline, to separate the GEMM from the model's fp32 residual epilogue.
    for (int64_t M : {2048, 8192})
      for (Variant v : {Variant::kAuto, Variant::kSm90aP160, Variant::kSm90aP256, Variant::kSm90aP256x160, Variant::kSm90aPP160, Variant::kSm90aPP128,
                        Variant::kCublasF16}) {
        const Shape s{D, "out_proj_f16", M, D, E};
        const std::string name = std::string("Gemm/") + variant_name(v) + "/D" + std::to_string(D) + "/out_proj_f16/M" +
                                 std::to_string(M);
        benchmark::RegisterBenchmark(name.c_str(), [s, v](benchmark::State& st) { bench_shape(st, s, v); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    for (const Shape& base : layers)
      for (int64_t M : {1, 4, 8, 16, 32, 128, 2048, 8192}) {
        Shape s = base;
        s.M = M;
        std::vector<Variant> vs = {Variant::kAuto, Variant::kSm80Tile128, Variant::kSm80Tile64};
        if (gemm::split_k_workspace_size(M, s.N, s.K) > 0) vs.insert(vs.end(), {Variant::kAutoWorkspace, Variant::kSm80SplitK});
        if (M >= gemm::kSm90aMinM && gemm::sm90a_split_k_workspace_size(M, s.N, s.K) > 0) {
          if (gemm::split_k_workspace_size(M, s.N, s.K) == 0) vs.push_back(Variant::kAutoWorkspace);
          vs.push_back(Variant::kSm90aSplitK);
          vs.insert(vs.end(), {Variant::kSm90aSplitKCluster, Variant::kSm90aSplitKClusterFit,
                               Variant::kSm90aSplitKClusterS4, Variant::kSm90aSplitKClusterS5,
                               Variant::kSm90aSplitKClusterS6, Variant::kSm90aSplitKClusterS7});
        }
        if (M <= gemm::kGemvMaxM)
          vs.insert(vs.end(), {Variant::kGemvWide, Variant::kGemvWideDeep, Variant::kGemvSplitK, Variant::kGemvNarrow});
        if (M <= gemm::kGemvMmaMaxM)
          vs.insert(vs.end(), {Variant::kGemvMmaWide, Variant::kGemvMmaWide4, Variant::kGemvMmaDeep, Variant::kGemvMmaShort});
        if (M >= 128)
          vs.insert(vs.end(), {Variant::kSm90a, Variant::kSm90aTile128, Variant::kSm90aTile256, Variant::kSm90aTile128S7,
                               Variant::kSm90aP256, Variant::kSm90aP256St, Variant::kSm90aP128St, Variant::kSm90aP160,
                               Variant::kSm90aC256St, Variant::kSm90aC160, Variant::kSm90aP256x160,
                               Variant::kSm90aC2A256x160, Variant::kSm90aPP160, Variant::kSm90aPP128});
        if (M == 1) vs.push_back(Variant::kAutoPdl);
        if (s.K <= gemm::kShortKMaxK && M > gemm::kGemvMaxM) vs.insert(vs.end(), {Variant::kShortK64, Variant::kShortK128, Variant::kShortK64x64, Variant::kShortKCol, Variant::kShortKCol32, Variant::kSm90aShortK});
        if (s.layer == "lm_head" && M <= 32) vs.push_back(Variant::kW8A16);
        vs.insert(vs.end(), {Variant::kCublasF16, Variant::kCublasLtI8});
        for (Variant v : vs) {
          const std::string name = std::string("Gemm/") + variant_name(v) + "/D" + std::to_string(D) + "/" + s.layer +
                                   "/M" + std::to_string(M);
          benchmark::RegisterBenchmark(name.c_str(), [s, v](benchmark::State& st) { bench_shape(st, s, v); })
              ->UseManualTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
  }
  // Launch shapes of the w8a16 kernel at the lm_head of d_model 2560 (tiles x warps x unroll x
  // accumulator sets).
  const auto w8a16_shape = [](auto traits, const char* tag) {
    using T = decltype(traits);
    for (int64_t M : {1, 8}) {
      const Shape s{2560, "lm_head", M, 50280, 2560};
      const std::string name = std::string("W8A16/") + tag + "/D2560/lm_head/M" + std::to_string(M);
      benchmark::RegisterBenchmark(name.c_str(), [s](benchmark::State& st) { bench_w8a16<T>(st, s); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  };
  // (8 warps of 4 rounds, 2 warps of 16 rounds, 8 rounds with two sets and the staged form with
  // one set measured no better: bench/RESULTS.md, run L.)
  w8a16_shape(gemm::W8A16Traits<1, 4, 4, 2>{}, "t1_w4_u4_a2");
  w8a16_shape(gemm::W8A16Traits<1, 4, 8, 1>{}, "t1_w4_u8_a1");
  w8a16_shape(gemm::W8A16Traits<1, 4, 8, 2, true>{}, "t1_w4_u8_a2_staged");
  return true;
}();

}  // namespace

QUAMBA_BENCH_MAIN()
