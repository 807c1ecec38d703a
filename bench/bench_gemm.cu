// bench_gemm: the int8 GEMM family on the Mamba layer shapes, against cuBLAS fp16 and cuBLASLt
// int8 in the same binary.
//
// Names: Gemm/<variant>/D<d_model>/<layer>/M<rows>. Variants: auto (the dispatcher), each
// mma.sync tile (sm80_*), each GEMV (gemv_*, M <= 16), sm90a (its tile heuristic) and each wgmma
// tile (sm90a_*; M >= 128, when built with 90a and run on sm_90),
// cublas_f16 (cublasGemmEx, fp16 in/out, fp32 accumulate), cublaslt_i8 (int8 in, int32 out).
// Layers (D = d_model, E = 2D, R = ceil(D/16)): in_proj K=D N=2E (requant), x_proj K=E N=R+32
// (requant), dt_proj K=R N=E (requant), out_proj K=E N=D (dequant fp32 + fp32 residual),
// lm_head K=D N=50280 (dequant fp16). Counters: TOPS (2MNK), GB/s and copy_frac on the minimum
// bytes (A + W + C (+ residual) once each; the fp16 baseline counts 2-byte operands).
// L2 is flushed before every timed launch. Example filter: --benchmark_filter='D2560/.*/M1$'.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/bench_utils.cuh"
#include "quamba/gemm/cublas_baseline.cuh"
#include "quamba/gemm/gemm.cuh"
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

enum class Variant { kAuto, kSm80Tile128, kSm80Tile64, kGemvWide, kGemvSplitK, kGemvNarrow, kSm90a, kSm90aTile128, kSm90aTile256, kCublasF16, kCublasLtI8 };

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::kAuto: return "auto";
    case Variant::kSm80Tile128: return gemm::sm80_name<gemm::Sm80Tile128x128>();
    case Variant::kSm80Tile64: return gemm::sm80_name<gemm::Sm80Tile64x64>();
    case Variant::kGemvWide: return gemm::to_string(gemm::GemvKind::kWide);
    case Variant::kGemvSplitK: return gemm::to_string(gemm::GemvKind::kSplitK);
    case Variant::kGemvNarrow: return gemm::to_string(gemm::GemvKind::kNarrow);
    case Variant::kSm90a: return "sm90a";
    case Variant::kSm90aTile128: return gemm::sm90a_name<gemm::Sm90aTile128x128>();
    case Variant::kSm90aTile256: return gemm::sm90a_name<gemm::Sm90aTile128x256>();
    case Variant::kCublasF16: return "cublas_f16";
    case Variant::kCublasLtI8: return "cublaslt_i8";
  }
  return "?";
}

template <typename Epi>
Status run_variant(Variant v, const gemm::GemmParams<Epi>& p) {
  switch (v) {
    case Variant::kAuto: return gemm::run(p, nullptr, 0);
    case Variant::kSm80Tile128: return gemm::run_sm80<gemm::Sm80Tile128x128>(p, 0);
    case Variant::kSm80Tile64: return gemm::run_sm80<gemm::Sm80Tile64x64>(p, 0);
    case Variant::kGemvWide: return gemm::run_gemv(p, 0, gemm::GemvKind::kWide);
    case Variant::kGemvSplitK: return gemm::run_gemv(p, 0, gemm::GemvKind::kSplitK);
    case Variant::kGemvNarrow: return gemm::run_gemv(p, 0, gemm::GemvKind::kNarrow);
    case Variant::kSm90a: return gemm::run(p, nullptr, 0, gemm::GemmPath::kSm90a);
    case Variant::kSm90aTile128: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x128>(p, 0);
    case Variant::kSm90aTile256: return gemm::run_sm90a<Epi, gemm::Sm90aTile128x256>(p, 0);
    default: return Status::kErrorNotSupported;
  }
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
  DeviceBuffer<int8_t> A(s.M * s.K), W(s.N * s.K);
  DeviceBuffer<Out> C(s.M * s.N);
  DeviceBuffer<float> residual;
  fill_i8<<<1024, 256>>>(A.get(), A.size(), 1);
  fill_i8<<<1024, 256>>>(W.get(), W.size(), 2);
  gemm::GemmParams<Epi> p;
  p.M = s.M; p.N = s.N; p.K = s.K; p.A = A.get(); p.lda = s.K; p.W = W.get(); p.ldw = s.K; p.C = C.get(); p.ldc = s.N;
  // Uniform int8 products: |acc| ~ 5.5e3·sqrt(K); alpha spreads the outputs over int8.
  p.epilogue.alpha = 40.f / (5.5e3f * std::sqrt(float(s.K)));
  double bytes = double(s.M) * s.K + double(s.N) * s.K + double(s.M) * s.N * sizeof(Out);
  if constexpr (std::is_same_v<Epi, gemm::DequantF32>) {
    residual.resize(s.M * s.N);
    fill_f32<<<1024, 256>>>(residual.get(), residual.size(), 3);
    p.epilogue.residual = residual.get();
    p.epilogue.ldr = s.N;
    bytes += double(s.M) * s.N * 4;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  const Status st = run_variant(v, p);
  if (st != Status::kSuccess) {
    state.SkipWithError((std::string("not runnable: ") + to_string(st)).c_str());
    return;
  }
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  if (!verify(state, p, nullptr, residual.get())) return;
  bench::time_gpu(state, [&](int) { run_variant(v, p); });
  bench::report_bytes(state, bytes);
  bench::report_ops(state, 2.0 * s.M * s.N * s.K);
}

void bench_cublas_f16(benchmark::State& state, const Shape& s) {
  static cublasHandle_t h = [] { cublasHandle_t x; cublasCreate(&x); return x; }();
  DeviceBuffer<__half> A(s.M * s.K), W(s.N * s.K), C(s.M * s.N);
  fill_f16<<<1024, 256>>>(A.get(), A.size(), 1);
  fill_f16<<<1024, 256>>>(W.get(), W.size(), 2);
  gemm::GemmF16Params p;
  p.M = s.M; p.N = s.N; p.K = s.K; p.A = A.get(); p.lda = s.K; p.W = W.get(); p.ldw = s.K; p.C = C.get(); p.ldc = s.N;
  if (gemm::gemm_f16_cublas(h, p, 0) != Status::kSuccess) { state.SkipWithError("cublasGemmEx failed"); return; }
  bench::time_gpu(state, [&](int) { gemm::gemm_f16_cublas(h, p, 0); });
  bench::report_bytes(state, 2.0 * (double(s.M) * s.K + double(s.N) * s.K + double(s.M) * s.N));
  bench::report_ops(state, 2.0 * s.M * s.N * s.K);
}

void bench_cublaslt_i8(benchmark::State& state, const Shape& s) {
  static cublasLtHandle_t lt = [] { cublasLtHandle_t x; cublasLtCreate(&x); return x; }();
  DeviceBuffer<int8_t> A(s.M * s.K), W(s.N * s.K);
  DeviceBuffer<int32_t> C(s.M * s.N);
  fill_i8<<<1024, 256>>>(A.get(), A.size(), 1);
  fill_i8<<<1024, 256>>>(W.get(), W.size(), 2);
  gemm::CublasLtI8Gemm g;
  if (g.init(lt, s.M, s.N, s.K, s.K, s.K, s.N, size_t(32) << 20) != Status::kSuccess) {
    state.SkipWithError("cuBLASLt has no int8 algorithm for this shape");
    return;
  }
  DeviceBuffer<char> ws(std::max<size_t>(g.workspace_bytes(), 1));
  if (g.run(lt, A.get(), W.get(), C.get(), ws.get(), ws.size(), 0) != Status::kSuccess) {
    state.SkipWithError("cublasLtMatmul failed");
    return;
  }
  bench::time_gpu(state, [&](int) { g.run(lt, A.get(), W.get(), C.get(), ws.get(), ws.size(), 0); });
  bench::report_bytes(state, double(s.M) * s.K + double(s.N) * s.K + 4.0 * s.M * s.N);
  bench::report_ops(state, 2.0 * s.M * s.N * s.K);
}

void bench_shape(benchmark::State& state, Shape s, Variant v) {
  if (v == Variant::kCublasF16) return bench_cublas_f16(state, s);
  if (v == Variant::kCublasLtI8) return bench_cublaslt_i8(state, s);
  if (s.layer == "out_proj") return bench_ours<gemm::DequantF32>(state, s, v);
  if (s.layer == "lm_head") return bench_ours<gemm::DequantF16>(state, s, v);
  return bench_ours<gemm::Requant>(state, s, v);
}

const bool registered = [] {
  for (int D : {768, 1024, 1536, 2048, 2560}) {
    const int64_t E = 2 * D, R = (D + 15) / 16;
    const Shape layers[] = {{D, "in_proj", 0, 2 * E, D}, {D, "x_proj", 0, R + 32, E}, {D, "dt_proj", 0, E, R},
                            {D, "out_proj", 0, D, E}, {D, "lm_head", 0, 50280, D}};
    for (const Shape& base : layers)
      for (int64_t M : {1, 16, 128, 2048, 8192}) {
        Shape s = base;
        s.M = M;
        std::vector<Variant> vs = {Variant::kAuto, Variant::kSm80Tile128, Variant::kSm80Tile64};
        if (M <= gemm::kGemvMaxM) vs.insert(vs.end(), {Variant::kGemvWide, Variant::kGemvSplitK, Variant::kGemvNarrow});
        if (M >= 128) vs.insert(vs.end(), {Variant::kSm90a, Variant::kSm90aTile128, Variant::kSm90aTile256});
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
  return true;
}();

}  // namespace

QUAMBA_BENCH_MAIN()
