// Walsh–Hadamard rotation kernels (quamba/hadamard/hadamard.cuh) against the dense host
// reference (quamba/reference/hadamard.hpp).
//
// Every size class 2^k (k = 0..15), 12·2^k, 20·2^k, 28·2^k up to 32768; M ∈ {1, 3, 17, 64};
// compact and strided rows; every variant; poisoned outputs (every in-row element written,
// every padding element untouched). The reference is O(n²) per row, so big shapes are checked on
// a sample of rows and output columns (the sample always includes the first and last row and
// the first and last columns of each 2^k block boundary region).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/compare.hpp"
#include "common/cuda_utils.cuh"
#include "common/pdl_chain.cuh"
#include "common/random.hpp"
#include "quamba/hadamard/hadamard.cuh"
#include "quamba/reference/hadamard.hpp"

namespace {

using quamba::Status;
using quamba::hadamard::HadamardParams;
namespace qh = quamba::hadamard;
namespace ref = quamba::reference;

std::vector<int64_t> all_sizes() {
  std::vector<int64_t> s;
  for (int k = 0; k <= 15; ++k) s.push_back(int64_t(1) << k);
  for (int m : {12, 20, 28})
    for (int64_t n = m; n <= qh::kMaxN; n *= 2) s.push_back(n);
  return s;
}

// ---- the small factors ---------------------------------------------------------------------

TEST(HadamardTable, MatchesReferenceOnHost) {
  for (int m : {1, 12, 20, 28}) {
    const auto want = ref::detail::small_hadamard(m);
    const qh::SmallHadamardTable got = qh::make_small_hadamard(m);
    ASSERT_EQ(got.m, m);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j)
        ASSERT_EQ(int(got.h[i][j]), int(want[size_t(i * m + j)])) << "H_" << m << " at (" << i << ", " << j << ")";
    // And the compile-time instances are the same tables.
    const qh::SmallHadamardTable* inst = m == 1    ? &qh::SmallHadamard<1>::kTable
                                         : m == 12 ? &qh::SmallHadamard<12>::kTable
                                         : m == 20 ? &qh::SmallHadamard<20>::kTable
                                                   : &qh::SmallHadamard<28>::kTable;
    EXPECT_EQ(std::memcmp(inst, &got, sizeof(got)), 0) << "H_" << m;
    // H·Hᵀ = m·I.
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        int dot = 0;
        for (int c = 0; c < m; ++c) dot += got.h[i][c] * got.h[j][c];
        ASSERT_EQ(dot, i == j ? m : 0) << "H_" << m << " rows " << i << ", " << j;
      }
  }
  EXPECT_EQ(qh::make_small_hadamard(7).m, 0);
}

// Writes H_m as device code sees it (through the same template constants the kernels use).
template <int kM, int... kIJ>
__device__ void write_table(int8_t* out, std::integer_sequence<int, kIJ...>) {
  ((out[kIJ] = static_cast<int8_t>(qh::kSmallHadamardEntry<kM, kIJ / kM, kIJ % kM>)), ...);
}
template <int kM>
__global__ void table_kernel(int8_t* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) write_table<kM>(out, std::make_integer_sequence<int, kM * kM>{});
}

template <int kM>
void check_device_table() {
  quamba::test::DeviceBuffer<int8_t> d(kM * kM);
  d.poison(0x5A);
  table_kernel<kM><<<1, 32>>>(d.get());
  QUAMBA_CUDA_CHECK(cudaGetLastError());
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = d.download();
  const auto want = ref::detail::small_hadamard(kM);
  EXPECT_TRUE(quamba::test::all_equal(got.data(), want.data(), want.size(), "device H_" + std::to_string(kM)));
}

TEST(HadamardTable, DeviceViewMatchesReference) {
  QUAMBA_REQUIRE_GPU();
  check_device_table<1>();
  check_device_table<12>();
  check_device_table<20>();
  check_device_table<28>();
}

// The kernels' one-instruction quantizer equals the core quantize_i8 bit for bit (ties to even,
// saturation, NaN → 0, ±Inf).
__global__ void quantize_kernel(const float* v, float scale, int n, int8_t* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = qh::detail::quantize_i8_cvt(v[i], scale);
}

TEST(HadamardQuantizer, MatchesCoreQuantizer) {
  QUAMBA_REQUIRE_GPU();
  std::vector<float> v = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, 127.5f, -127.5f, -128.5f, 1e30f, -1e30f,
                          INFINITY, -INFINITY, NAN, -0.0f, 0.49999997f, 3.5f, -3.5f, 200.f, -200.f};
  auto rng = quamba::test::make_rng(11);
  auto r = quamba::test::random_floats(4000, rng, -300.f, 300.f);
  v.insert(v.end(), r.begin(), r.end());
  for (int i = -300; i <= 300; ++i) v.push_back(float(i) + 0.5f);  // every tie in range and beyond
  for (float scale : {1.0f, 0.37f, 42.3f}) {
    quamba::test::DeviceBuffer<float> dv(v);
    quamba::test::DeviceBuffer<int8_t> dq(v.size());
    dq.poison(0x5A);
    quantize_kernel<<<int((v.size() + 127) / 128), 128>>>(dv.get(), scale, int(v.size()), dq.get());
    QUAMBA_CUDA_CHECK(cudaGetLastError());
    const auto got = dq.download();
    std::vector<int8_t> want(v.size());
    for (size_t i = 0; i < v.size(); ++i) want[i] = quamba::quantize_i8(v[i], scale);
    EXPECT_TRUE(quamba::test::all_equal(got.data(), want.data(), v.size(), "scale " + std::to_string(scale)));
  }
}

// ---- validation (host only: can_implement and run's early returns never touch the device) --

// One int8-output row for a validation call (the row stride leaves room for every n tested).
template <typename In>
HadamardParams<In, int8_t> one_row_params(const In* x, int8_t* out) {
  HadamardParams<In, int8_t> p;
  p.x = x;
  p.out = out;
  p.rows = 1;
  p.x_row_stride = p.out_row_stride = 1 << 20;
  p.scale = 1.0f;
  return p;
}

TEST(HadamardValidate, SupportedAndUnsupportedSizes) {
  alignas(16) static float xin[64];
  alignas(16) static int8_t qout[64];
  HadamardParams<float, int8_t> p = one_row_params(xin, qout);
  for (int64_t n : all_sizes()) {
    p.n = n;
    EXPECT_EQ(qh::can_implement(p), Status::kSuccess) << "n=" << n;
  }
  for (int64_t n : {24, 40, 48, 56, 1536, 5120, 3072})  {
    p.n = n;
    EXPECT_EQ(qh::can_implement(p), Status::kSuccess) << "n=" << n;
  }
  for (int64_t n : {0, -4, 3, 5, 6, 7, 9, 36, 44, 60, 5000, 65536, 49152, 40960, 57344, 100000}) {
    p.n = n;
    EXPECT_EQ(qh::can_implement(p), Status::kErrorNotSupported) << "n=" << n;
    EXPECT_EQ(qh::run(p), Status::kErrorNotSupported) << "n=" << n;
    EXPECT_EQ(qh::run_staged(p), Status::kErrorNotSupported) << "n=" << n;
  }
  // The staged variant covers 2^k ∈ {128, 256, 512} with m·2^k·4 ≤ 48 KiB only (returns before
  // any launch otherwise).
  for (int64_t n : {1, 64, 1024, 2048, 4096, 12, 768, 20480, 14336, 32768}) {
    p.n = n;
    EXPECT_EQ(qh::run_staged(p), Status::kErrorNotSupported) << "n=" << n;
  }
  EXPECT_TRUE(qh::staged_supported(20, 8));
  EXPECT_TRUE(qh::staged_supported(12, 7));
  EXPECT_FALSE(qh::staged_supported(28, 9));
  EXPECT_FALSE(qh::staged_supported(1, 11));
}

// The pipelined variant: 2^k ∈ [32, 1024] and kRows·n·(4·[m > 1] + 2·sizeof(in)) ≤ 96 KiB;
// everything else returns kErrorNotSupported before any launch (no device needed).
TEST(HadamardValidate, PipelinedSizes) {
  EXPECT_TRUE(qh::pipelined_supported(20, 8, 2));   // 5120, fp16 in: 40 KiB
  EXPECT_TRUE(qh::pipelined_supported(12, 10, 2));  // 12288, fp16 in: exactly 96 KiB
  EXPECT_FALSE(qh::pipelined_supported(12, 10, 4)); // 12288, fp32 in: 144 KiB
  EXPECT_TRUE(qh::pipelined_supported(1, 10, 4));   // 1024, fp32 in, no work row
  EXPECT_FALSE(qh::pipelined_supported(1, 11, 2));  // 2048: 2^k above 1024
  EXPECT_FALSE(qh::pipelined_supported(20, 4, 2));  // 320: 2^k below 32
  EXPECT_FALSE(qh::pipelined_supported(20, 10, 2)); // 20480: 160 KiB
  EXPECT_FALSE(qh::pipelined_supported(28, 9, 2));  // 14336: 112 KiB
  using Tr5120 = qh::HadamardPipelinedTraits<__half, int8_t, 20, 8>;
  using Tr32 = qh::HadamardPipelinedTraits<__half, int8_t, 1, 5>;
  using Tr384 = qh::HadamardPipelinedTraits<__half, int8_t, 12, 5>;
  EXPECT_EQ(Tr5120::kThreads, 160);
  EXPECT_EQ(Tr5120::kRows, 1);
  EXPECT_EQ(Tr32::kRows, 128);
  EXPECT_EQ(Tr384::kThreads, 128);  // 10 rows of 12 items, 8 padding lanes
  EXPECT_FALSE((qh::pipelined_variant_name<__half, int8_t>(5120).empty()));
  EXPECT_TRUE((qh::pipelined_variant_name<__half, int8_t>(2048).empty()));

  alignas(16) static __half hin[64];
  alignas(16) static float fin[64];
  alignas(16) static int8_t qout[64];
  HadamardParams<__half, int8_t> p = one_row_params(hin, qout);
  HadamardParams<float, int8_t> f = one_row_params(fin, qout);
  // Supported by run() but not by this variant.
  for (int64_t n : {1, 2, 4, 8, 16, 2048, 4096, 32768, 12, 24, 48, 96, 192, 20, 320, 28, 448, 20480, 24576, 14336,
                    28672}) {
    p.n = n;
    ASSERT_EQ(qh::can_implement(p), Status::kSuccess) << "n=" << n;
    EXPECT_EQ(qh::run_pipelined(p), Status::kErrorNotSupported) << "fp16 n=" << n;
  }
  for (int64_t n : {12288, 10240, 2048, 20480}) {  // fp32 rows above 8192 do not fit the ring
    f.n = n;
    ASSERT_EQ(qh::can_implement(f), Status::kSuccess) << "n=" << n;
    EXPECT_EQ(qh::run_pipelined(f), Status::kErrorNotSupported) << "fp32 n=" << n;
  }
  // Sizes no variant supports, and bad arguments, as run().
  for (int64_t n : {0, 3, 36, 5000, 65536}) {
    p.n = n;
    EXPECT_EQ(qh::run_pipelined(p), Status::kErrorNotSupported) << "n=" << n;
  }
  p.n = 5120;
  auto q = p;
  q.x = nullptr;
  EXPECT_EQ(qh::run_pipelined(q), Status::kErrorInvalidArgument);
  q = p;
  q.rows = -1;
  EXPECT_EQ(qh::run_pipelined(q), Status::kErrorInvalidArgument);
  q = p;
  q.rows = 2;
  q.x_row_stride = 5124;  // 10248 bytes: not a multiple of 16
  q.out_row_stride = 5120;
  EXPECT_EQ(qh::run_pipelined(q), Status::kErrorMisaligned);
  q = p;
  q.x = hin + 4;
  EXPECT_EQ(qh::run_pipelined(q), Status::kErrorMisaligned);
  q = p;
  q.rows = 0;
  EXPECT_EQ(qh::run_pipelined(q), Status::kSuccess);
}

// The tensor-core pipelined variant: fp16 inputs, n ∈ {3072, 5120, 7168} only; everything else
// returns kErrorNotSupported before any launch (no device needed).
TEST(HadamardValidate, PipelinedMmaSizes) {
  EXPECT_TRUE(qh::pipelined_mma_supported(12, 8, 2));
  EXPECT_TRUE(qh::pipelined_mma_supported(20, 8, 2));
  EXPECT_TRUE(qh::pipelined_mma_supported(28, 8, 2));
  EXPECT_FALSE(qh::pipelined_mma_supported(1, 8, 2));
  EXPECT_FALSE(qh::pipelined_mma_supported(20, 7, 2));
  EXPECT_FALSE(qh::pipelined_mma_supported(20, 9, 2));
  EXPECT_FALSE(qh::pipelined_mma_supported(20, 8, 4));
  EXPECT_FALSE((qh::pipelined_mma_variant_name<__half, int8_t>(5120).empty()));
  EXPECT_TRUE((qh::pipelined_mma_variant_name<__half, int8_t>(1536).empty()));
  EXPECT_TRUE((qh::pipelined_mma_variant_name<float, int8_t>(5120).empty()));

  alignas(16) static __half hin[64];
  alignas(16) static float fin[64];
  alignas(16) static int8_t qout[64];
  HadamardParams<__half, int8_t> p = one_row_params(hin, qout);
  for (int64_t n : {1, 16, 256, 512, 1024, 2048, 4096, 32768, 12, 768, 1536, 6144, 20, 2560, 10240, 28, 3584,
                    14336}) {
    p.n = n;
    ASSERT_EQ(qh::can_implement(p), Status::kSuccess) << "n=" << n;
    EXPECT_EQ(qh::run_pipelined_mma(p), Status::kErrorNotSupported) << "n=" << n;
  }
  for (int64_t n : {0, 3, 36, 5000, 65536}) {
    p.n = n;
    EXPECT_EQ(qh::run_pipelined_mma(p), Status::kErrorNotSupported) << "n=" << n;
  }
  HadamardParams<float, int8_t> f;  // fp32 inputs are not exact in fp16: not offered
  f.x = fin;
  f.out = qout;
  f.rows = 1;
  f.n = 5120;
  f.scale = 1.0f;
  ASSERT_EQ(qh::can_implement(f), Status::kSuccess);
  EXPECT_EQ(qh::run_pipelined_mma(f), Status::kErrorNotSupported);
  p.n = 5120;
  auto q = p;
  q.out = nullptr;
  EXPECT_EQ(qh::run_pipelined_mma(q), Status::kErrorInvalidArgument);
  q = p;
  q.rows = 2;
  q.x_row_stride = 5124;  // not a multiple of 16 bytes
  q.out_row_stride = 5120;
  EXPECT_EQ(qh::run_pipelined_mma(q), Status::kErrorMisaligned);
  q = p;
  q.x = hin + 2;
  EXPECT_EQ(qh::run_pipelined_mma(q), Status::kErrorMisaligned);
  q = p;
  q.rows = 0;
  EXPECT_EQ(qh::run_pipelined_mma(q), Status::kSuccess);
}

// The streamed variant: fp16 inputs, int8 / fp16 outputs, n ∈ {3072, 5120}; everything else
// returns kErrorNotSupported (or kErrorInvalidArgument for a bad split) before any launch.
TEST(HadamardValidate, StreamedSizes) {
  EXPECT_TRUE(qh::streamed_supported(20, 8, 2));
  EXPECT_TRUE(qh::streamed_supported(12, 8, 2));
  EXPECT_FALSE(qh::streamed_supported(28, 8, 2));
  EXPECT_FALSE(qh::streamed_supported(12, 7, 2));  // 1536
  EXPECT_FALSE(qh::streamed_supported(1, 8, 2));
  EXPECT_FALSE(qh::streamed_supported(20, 8, 4));
  EXPECT_TRUE((qh::streamed_default<__half, int8_t>(20, 8)));
  EXPECT_TRUE((qh::streamed_default<__half, __half>(12, 8)));
  EXPECT_FALSE((qh::streamed_default<float, int8_t>(20, 8)));
  EXPECT_FALSE((qh::streamed_default<float, float>(20, 8)));
  using Tr = qh::HadamardStreamedTraits<int8_t, 20>;
  using Tr2 = qh::HadamardStreamedTraits<int8_t, 20, 3, 2>;
  using TrH = qh::HadamardStreamedTraits<__half, 20>;
  EXPECT_EQ(Tr::kThreads, 64);
  EXPECT_EQ(Tr::kSmemBytes, 3u * 10240u);
  EXPECT_EQ(Tr::kMinBlocks, 7);  // smem-bound: 7 × (30 + 1) KiB ≤ 227 KiB
  EXPECT_EQ(Tr::kStoreBytes, 4);
  EXPECT_EQ(Tr2::kThreads, 128);
  EXPECT_EQ(Tr2::kSmemBytes, 3u * 10240u + 10240u);
  EXPECT_EQ(Tr2::kStoreBytes, 2);
  EXPECT_EQ(TrH::kStoreBytes, 4);
  EXPECT_FALSE((qh::streamed_variant_name<__half, int8_t>(5120).empty()));
  EXPECT_FALSE((qh::streamed_variant_name<__half, __half>(3072, 2).empty()));
  EXPECT_TRUE((qh::streamed_variant_name<__half, int8_t>(1536).empty()));
  EXPECT_TRUE((qh::streamed_variant_name<float, int8_t>(5120).empty()));
  using TrRow = qh::HadamardStreamedRowTraits<int8_t, 20>;
  EXPECT_EQ(TrRow::kStages, 2);
  EXPECT_EQ(TrRow::kSmemBytes, 2u * 10240u);
  EXPECT_EQ(TrRow::kMinBlocks, 8);  // register-bound: 8 × 64 threads × 128 registers
  using TrBulk = qh::HadamardBulkTraits<int8_t, 20>;
  EXPECT_EQ(TrBulk::kWindow, 4);
  EXPECT_EQ(TrBulk::kSlots, 12);
  EXPECT_EQ(TrBulk::kThreads, 512);
  EXPECT_EQ(TrBulk::kSmemBytes, 12u * 10240u + 12u * 8u);
  EXPECT_EQ((qh::HadamardBulkTraits<int8_t, 12>::kWindow), 8);
  // run()'s choice for many rows: the bulk-copy variant where the device runs it, else the
  // streamed one (no device: this test also runs on machines without a GPU).
  const std::string many = qh::variant_name<__half, int8_t>(5120, false, 2048);
  EXPECT_TRUE(many == TrBulk::name() || many == TrRow::name()) << many;
  EXPECT_EQ((qh::streamed_variant_name<__half, int8_t>(5120)), TrRow::name());
  EXPECT_EQ((qh::variant_name<__half, int8_t>(5120, false, 1)), Tr2::name());
  EXPECT_EQ((qh::variant_name<__half, int8_t>(1536)), (qh::generic_name<__half, int8_t>(1536)));
  EXPECT_EQ((qh::variant_name<float, int8_t>(5120)), (qh::generic_name<float, int8_t>(5120)));

  alignas(16) static __half hin[64];
  alignas(16) static float fin[64];
  alignas(16) static int8_t qout[64];
  HadamardParams<__half, int8_t> p = one_row_params(hin, qout);
  for (int64_t n : {1, 16, 256, 512, 1024, 2048, 4096, 32768, 12, 768, 1536, 6144, 20, 2560, 10240, 28, 3584, 7168,
                    14336}) {
    p.n = n;
    ASSERT_EQ(qh::can_implement(p), Status::kSuccess) << "n=" << n;
    EXPECT_EQ(qh::run_streamed(p), Status::kErrorNotSupported) << "n=" << n;
    EXPECT_EQ(qh::run_streamed(p, nullptr, nullptr, 2), Status::kErrorNotSupported) << "n=" << n;
  }
  for (int64_t n : {0, 3, 36, 5000, 65536}) {
    p.n = n;
    EXPECT_EQ(qh::run_streamed(p), Status::kErrorNotSupported) << "n=" << n;
    EXPECT_EQ(qh::run_bulk(p), Status::kErrorNotSupported) << "n=" << n;
  }
  HadamardParams<float, int8_t> f = one_row_params(fin, qout);
  f.n = 5120;
  ASSERT_EQ(qh::can_implement(f), Status::kSuccess);
  EXPECT_EQ(qh::run_streamed(f), Status::kErrorNotSupported);
  EXPECT_EQ(qh::run_bulk(f), Status::kErrorNotSupported);
  p.n = 5120;
  EXPECT_EQ(qh::run_streamed(p, nullptr, nullptr, 3), Status::kErrorInvalidArgument);
  EXPECT_EQ(qh::run_streamed(p, nullptr, nullptr, 0), Status::kErrorInvalidArgument);
  auto q = p;
  q.out = nullptr;
  EXPECT_EQ(qh::run_streamed(q), Status::kErrorInvalidArgument);
  EXPECT_EQ(qh::run(q), Status::kErrorInvalidArgument);
  q = p;
  q.rows = 2;
  q.x_row_stride = 5124;  // not a multiple of 16 bytes
  q.out_row_stride = 5120;
  EXPECT_EQ(qh::run_streamed(q), Status::kErrorMisaligned);
  EXPECT_EQ(qh::run_bulk(q), Status::kErrorMisaligned);
  EXPECT_EQ(qh::run(q), Status::kErrorMisaligned);
  q = p;
  q.x = hin + 4;  // 8-byte aligned only
  EXPECT_EQ(qh::run_streamed(q, nullptr, nullptr, 2), Status::kErrorMisaligned);
  q = p;
  q.rows = 0;
  EXPECT_EQ(qh::run_streamed(q), Status::kSuccess);
  EXPECT_EQ(qh::run_streamed(q, nullptr, nullptr, 2), Status::kSuccess);
  EXPECT_EQ(qh::run_bulk(q), Status::kSuccess);
  EXPECT_EQ(qh::run(q), Status::kSuccess);
}

TEST(HadamardValidate, BadArguments) {
  alignas(16) static __half hin[256];
  alignas(16) static int8_t qout[256];
  HadamardParams<__half, int8_t> p;
  p.x = hin;
  p.out = qout;
  p.rows = 2;
  p.n = 64;
  p.x_row_stride = 64;
  p.out_row_stride = 64;
  p.scale = 1.0f;
  ASSERT_EQ(qh::can_implement(p), Status::kSuccess);
  EXPECT_EQ(qh::workspace_size(p), 0u);

  auto q = p;
  q.x = nullptr;
  EXPECT_EQ(qh::can_implement(q), Status::kErrorInvalidArgument);
  EXPECT_EQ(qh::run(q), Status::kErrorInvalidArgument);
  q = p;
  q.out = nullptr;
  EXPECT_EQ(qh::run(q), Status::kErrorInvalidArgument);
  q = p;
  q.rows = -1;
  EXPECT_EQ(qh::run(q), Status::kErrorInvalidArgument);
  q = p;
  q.x_row_stride = 63;
  EXPECT_EQ(qh::run(q), Status::kErrorInvalidArgument);
  q = p;
  q.out_row_stride = 32;
  EXPECT_EQ(qh::run(q), Status::kErrorInvalidArgument);
  // One row: strides are never used.
  q = p;
  q.rows = 1;
  q.x_row_stride = 0;
  q.out_row_stride = 0;
  EXPECT_EQ(qh::can_implement(q), Status::kSuccess);

  // Input access width: 16 bytes for fp16 once 2^k ≥ 8.
  EXPECT_EQ(qh::in_align_bytes<__half>(64), 16);
  EXPECT_EQ(qh::in_align_bytes<float>(64), 16);
  EXPECT_EQ(qh::in_align_bytes<__half>(12), 2);
  EXPECT_EQ(qh::in_align_bytes<__half>(48), 8);
  EXPECT_EQ(qh::in_align_bytes<float>(40), 8);   // 40 = 20·2: runs of 2
  EXPECT_EQ(qh::in_align_bytes<float>(80), 16);
  q = p;
  q.x = hin + 4;  // 8-byte aligned only
  EXPECT_EQ(qh::run(q), Status::kErrorMisaligned);
  q = p;
  q.x_row_stride = 68;  // 136 bytes: not a multiple of 16
  EXPECT_EQ(qh::run(q), Status::kErrorMisaligned);
  q = p;
  q.x_row_stride = 72;  // 144 bytes: fine
  EXPECT_EQ(qh::can_implement(q), Status::kSuccess);
  // n = 12 (2^k = 1): element accesses, any alignment of a __half works.
  q = p;
  q.n = 12;
  q.x = hin + 1;
  q.x_row_stride = 13;
  q.out_row_stride = 12;
  EXPECT_EQ(qh::can_implement(q), Status::kSuccess);

  HadamardParams<float, float> f;
  alignas(16) static float fin[256], fout[256];
  f.x = fin;
  f.out = fout;
  f.rows = 1;
  f.n = 32;
  f.scale = 1.0f;
  EXPECT_EQ(qh::can_implement(f), Status::kSuccess);
  f.out = reinterpret_cast<float*>(reinterpret_cast<char*>(fout) + 2);
  EXPECT_EQ(qh::can_implement(f), Status::kErrorMisaligned);

  // rows = 0 is a no-op that never launches.
  q = p;
  q.rows = 0;
  EXPECT_EQ(qh::run(q), Status::kSuccess);
}

// ---- numerical sweep ---------------------------------------------------------------------------

template <typename T> struct DevOf { using type = T; };
template <> struct DevOf<__half> { using type = uint16_t; };

template <typename T> float to_f(T v) { return static_cast<float>(v); }
template <> float to_f<uint16_t>(uint16_t v) { return quamba::half_bits_to_float(v); }

// Sampled reference: out(r, i) for the rows in `rows` and columns in `cols`, double sums over the
// reference's own entries H(i, j), then exactly the reference's final fp32 expression.
struct Sample {
  std::vector<int64_t> rows, cols;
};

Sample make_sample(int64_t M, int64_t n, uint64_t salt) {
  Sample s;
  // Full reference cost M·n² entry evaluations; above ~1M switch to a sample.
  const bool full = M * n * n <= (int64_t(1) << 20);
  if (full) {
    for (int64_t r = 0; r < M; ++r) s.rows.push_back(r);
    for (int64_t i = 0; i < n; ++i) s.cols.push_back(i);
    return s;
  }
  s.rows = {0, M - 1};
  if (M > 2) s.rows.push_back(M / 2);
  std::sort(s.rows.begin(), s.rows.end());
  s.rows.erase(std::unique(s.rows.begin(), s.rows.end()), s.rows.end());
  const int64_t want_cols = std::max<int64_t>(32, (int64_t(1) << 20) / (n * int64_t(s.rows.size())));
  if (n <= want_cols) {
    for (int64_t i = 0; i < n; ++i) s.cols.push_back(i);
    return s;
  }
  auto rng = quamba::test::make_rng(salt);
  std::uniform_int_distribution<int64_t> d(0, n - 1);
  for (int64_t i = 0; i < 8 && i < n; ++i) { s.cols.push_back(i); s.cols.push_back(n - 1 - i); }
  while (int64_t(s.cols.size()) < want_cols) s.cols.push_back(d(rng));
  std::sort(s.cols.begin(), s.cols.end());
  s.cols.erase(std::unique(s.cols.begin(), s.cols.end()), s.cols.end());
  return s;
}

// Dense reference values at the sample: acc(r, i) = Σ_j H(i, j) x(r, j) in double.
std::vector<double> sampled_sums(const std::vector<float>& x, int64_t n, const Sample& s) {
  ref::HadamardEntries h;
  EXPECT_EQ(h.init(n), Status::kSuccess);
  std::vector<double> acc;
  acc.reserve(s.rows.size() * s.cols.size());
  for (int64_t r : s.rows)
    for (int64_t i : s.cols) {
      double a = 0;
      const float* xr = x.data() + r * n;
      for (int64_t j = 0; j < n; ++j) a += h(i, j) * static_cast<double>(xr[j]);
      acc.push_back(a);
    }
  return acc;
}

// One output row of two kernels: int8 within one step (at most 2e-3 of the row off by one:
// each kernel is within 1e-3 of the reference), fp16 within kTolF16.
::testing::AssertionResult rows_agree(const int8_t* a, const int8_t* b, int64_t n, const std::string& what) {
  return quamba::test::int8_close(a, b, size_t(n), what, 2e-3);
}
::testing::AssertionResult rows_agree(const uint16_t* a, const uint16_t* b, int64_t n, const std::string& what) {
  std::vector<float> fa(static_cast<size_t>(n)), fb(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    fa[size_t(i)] = quamba::half_bits_to_float(a[i]);
    fb[size_t(i)] = quamba::half_bits_to_float(b[i]);
  }
  return quamba::test::all_close(fa, fb, quamba::test::kTolF16, what);
}
::testing::AssertionResult rows_agree(const float* a, const float* b, int64_t n, const std::string& what) {
  return quamba::test::all_close(a, b, size_t(n), quamba::test::kTolF32Reorder, what);
}

// Whether the bulk-copy variant runs here: an sm_90+ device and sm_90 code in this build (the
// image check is the same for every instantiation of one build).
bool bulk_expected() { return qh::bulk_available<qh::HadamardBulkTraits<int8_t, 20>, int8_t>(); }

// Launches one variant: 0 = run(), 1 = run_staged(), 2 = run_pipelined(), 3 = run_pipelined_mma(),
// 4 / 5 = run_streamed() with split 1 / 2, 6 = run_generic(), 7 = run_bulk().
template <typename InT, typename OutT>
Status run_variant(const HadamardParams<InT, OutT>& p, int variant, cudaStream_t stream = nullptr) {
  switch (variant) {
    case 1: return qh::run_staged(p, nullptr, stream);
    case 2: return qh::run_pipelined(p, nullptr, stream);
    case 3: return qh::run_pipelined_mma(p, nullptr, stream);
    case 4: return qh::run_streamed(p, nullptr, stream, 1);
    case 5: return qh::run_streamed(p, nullptr, stream, 2);
    case 6: return qh::run_generic(p, nullptr, stream);
    case 7: return qh::run_bulk(p, nullptr, stream);
    default: return qh::run(p, nullptr, stream);
  }
}

const char* variant_tag(int variant) {
  switch (variant) {
    case 1: return " run_staged";
    case 2: return " run_pipelined";
    case 3: return " run_pipelined_mma";
    case 4: return " run_streamed(split 1)";
    case 5: return " run_streamed(split 2)";
    case 6: return " run_generic";
    case 7: return " run_bulk";
    default: return "";
  }
}

// got (M rows of pitch os) against the reference for inputs xf (M x n, as the kernel read them):
// the reference functions themselves where M·n² is small, else a sample of rows and columns.
template <typename InT, typename OutT>
void expect_matches_reference(const std::vector<float>& xf, const std::vector<typename DevOf<OutT>::type>& got,
                              int64_t M, int64_t n, int64_t os, float scale, float inv_s, uint64_t salt,
                              const std::string& what) {
  using DOut = typename DevOf<OutT>::type;
  constexpr bool kInt8 = std::is_same_v<OutT, int8_t>;
  const Sample s = make_sample(M, n, salt ^ 0x5151);
  const bool full = int64_t(s.rows.size()) == M && int64_t(s.cols.size()) == n;
  std::vector<double> acc;
  if (full) {
    // The reference functions themselves.
    std::vector<float> xc = xf;
    auto xv = quamba::make_view(static_cast<const float*>(xc.data()), M, n);
    if constexpr (kInt8) {
      std::vector<int8_t> q(size_t(M * n));
      ASSERT_EQ(ref::hadamard_quantize(xv, inv_s, quamba::make_view(q.data(), M, n)), Status::kSuccess);
      std::vector<int8_t> g(size_t(M * n));
      for (int64_t r = 0; r < M; ++r)
        for (int64_t i = 0; i < n; ++i) g[size_t(r * n + i)] = got[size_t(r * os + i)];
      EXPECT_TRUE(quamba::test::int8_close(g.data(), q.data(), g.size(), what));
    } else {
      std::vector<float> y(size_t(M * n));
      ASSERT_EQ(ref::hadamard_transform(xv, scale, quamba::make_view(y.data(), M, n)), Status::kSuccess);
      std::vector<float> g(size_t(M * n));
      for (int64_t r = 0; r < M; ++r)
        for (int64_t i = 0; i < n; ++i) g[size_t(r * n + i)] = to_f(got[size_t(r * os + i)]);
      if constexpr (std::is_same_v<OutT, float>) {
        EXPECT_TRUE(quamba::test::all_close(g, y, quamba::test::kTolF32Reorder, what));
      } else {
        for (auto& v : y) v = quamba::round_to_half(v);
        EXPECT_TRUE(quamba::test::all_close(g, y, quamba::test::kTolF16, what));
      }
    }
    return;
  }
  acc = sampled_sums(xf, n, s);
  std::vector<int8_t> gq, rq;
  std::vector<float> gf, rf;
  size_t k = 0;
  for (int64_t r : s.rows)
    for (int64_t i : s.cols) {
      const double a = acc[k++];
      const DOut v = got[size_t(r * os + i)];
      if constexpr (kInt8) {
        gq.push_back(v);
        rq.push_back(quamba::quantize_i8(static_cast<float>(a), scale));
      } else {
        gf.push_back(to_f(v));
        float yr = static_cast<float>(a) * scale;
        if constexpr (std::is_same_v<OutT, __half>) yr = quamba::round_to_half(yr);
        rf.push_back(yr);
      }
    }
  if constexpr (kInt8) {
    EXPECT_TRUE(quamba::test::int8_close(gq.data(), rq.data(), gq.size(), what + " (sampled)"));
  } else if constexpr (std::is_same_v<OutT, float>) {
    EXPECT_TRUE(quamba::test::all_close(gf, rf, quamba::test::kTolF32Reorder, what + " (sampled)"));
  } else {
    EXPECT_TRUE(quamba::test::all_close(gf, rf, quamba::test::kTolF16, what + " (sampled)"));
  }
}

template <typename InT, typename OutT>
// variant: see run_variant(). Variants 4, 5 and 7 are also compared on EVERY element of every row
// with run_generic() (the reference itself is sampled for big shapes, and a ring-slot mix-up of
// a persistent kernel would show only in unsampled rows).
void sweep_one(int64_t n, int64_t M, bool strided, uint64_t salt, int64_t out_pad = 3, int variant = 0) {
  using DIn = typename DevOf<InT>::type;
  using DOut = typename DevOf<OutT>::type;
  constexpr bool kInt8 = std::is_same_v<OutT, int8_t>;
  const std::string what = std::string("n=") + std::to_string(n) + " M=" + std::to_string(M) +
                           (strided ? " strided+" + std::to_string(out_pad) : std::string(" compact")) +
                           variant_tag(variant);
  SCOPED_TRACE(what);
  auto rng = quamba::test::make_rng(salt);
  const int64_t xs = strided ? n + 8 : n;   // keeps the 16-byte input rule
  const int64_t os = strided ? n + out_pad : n;  // outputs only need natural alignment
  // Inputs: normal(0, 1); fp16 inputs are rounded first and the reference sees the rounded values.
  std::vector<float> xf = quamba::test::random_normal(size_t(M * n), rng);
  if ((variant == 3 || variant == 4 || variant == 5 || variant == 7) && M >= 2) {
    // One 16-element run of ±30000 (exact in fp16) in row 1 and the last row: the first-stage
    // sums of the tensor-core variant reach 16·30000 unless the 1/16 keeps them in fp16 range.
    for (int64_t j = 0; j < 16; ++j) {
      xf[size_t(1 * n + j)] = 30000.0f;
      xf[size_t((M - 1) * n + n - 16 + j)] = -30000.0f;
    }
  }
  std::vector<DIn> xdev(size_t(M * xs));
  {
    std::vector<float> junk = quamba::test::random_floats(xdev.size(), rng, -50.f, 50.f);  // padding
    for (size_t i = 0; i < xdev.size(); ++i) {
      if constexpr (std::is_same_v<DIn, uint16_t>) xdev[i] = quamba::float_to_half_bits(junk[i]);
      else xdev[i] = junk[i];
    }
  }
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float& v = xf[size_t(r * n + j)];
      if constexpr (std::is_same_v<DIn, uint16_t>) {
        xdev[size_t(r * xs + j)] = quamba::float_to_half_bits(v);
        v = quamba::round_to_half(v);
      } else {
        xdev[size_t(r * xs + j)] = v;
      }
    }
  quamba::test::DeviceBuffer<DIn> dx(xdev);
  quamba::test::DeviceBuffer<DOut> dout(size_t(M * os));

  const float inv_s = 127.0f / 3.0f;  // ~0.3% of outputs saturate
  HadamardParams<InT, OutT> p;
  p.x = reinterpret_cast<const InT*>(dx.get());
  p.out = reinterpret_cast<OutT*>(dout.get());
  p.rows = M;
  p.n = n;
  p.x_row_stride = xs;
  p.out_row_stride = os;
  p.scale = kInt8 ? qh::quant_factor(n, inv_s) : qh::orthonormal_scale(n);
  ASSERT_EQ(qh::can_implement(p), Status::kSuccess);

  // Two runs with two poison bytes: every in-row element is written (identical results), every
  // padding element keeps its poison.
  std::vector<DOut> got[2];
  const int poison[2] = {0x5A, 0xA5};
  for (int rep = 0; rep < 2; ++rep) {
    dout.poison(poison[rep]);
    const Status st = run_variant(p, variant);
    if (variant == 7 && !bulk_expected()) {  // pre-sm_90 devices refuse the bulk-copy variant
      ASSERT_EQ(st, Status::kErrorArchNotSupported);
      return;
    }
    ASSERT_EQ(st, Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    got[rep] = dout.download();
    uint8_t pb[sizeof(DOut)];
    std::memset(pb, poison[rep], sizeof(pb));
    for (int64_t r = 0; r < M; ++r)
      for (int64_t j = n; j < os; ++j)
        ASSERT_EQ(std::memcmp(&got[rep][size_t(r * os + j)], pb, sizeof(DOut)), 0)
            << "padding overwritten at row " << r << " col " << j;
  }
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const size_t o = size_t(r * os + j);
      ASSERT_EQ(std::memcmp(&got[0][o], &got[1][o], sizeof(DOut)), 0)
          << "element not written (or nondeterministic) at row " << r << " col " << j;
      if constexpr (!kInt8) ASSERT_TRUE(std::isfinite(to_f(got[0][o]))) << "row " << r << " col " << j;
    }

  if (variant == 4 || variant == 5 || variant == 7) {
    // Every element against the generic kernel (itself checked against the reference).
    quamba::test::DeviceBuffer<DOut> dgen(size_t(M * os));
    dgen.poison(0x33);
    auto pg = p;
    pg.out = reinterpret_cast<OutT*>(dgen.get());
    ASSERT_EQ(qh::run_generic(pg), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const auto gen = dgen.download();
    for (int64_t r = 0; r < M; ++r) {
      ASSERT_TRUE(rows_agree(got[0].data() + r * os, gen.data() + r * os, n,
                             what + " vs run_generic, row " + std::to_string(r)));
    }
  }

  expect_matches_reference<InT, OutT>(xf, got[0], M, n, os, p.scale, inv_s, salt, what);
}

template <typename InT, typename OutT>
void sweep_all(uint64_t salt) {
  uint64_t s = salt;
  for (int64_t n : all_sizes())
    for (int64_t M : {1, 3, 17, 64}) {
      sweep_one<InT, OutT>(n, M, /*strided=*/M == 3 || M == 64, ++s);
      if (::testing::Test::HasFatalFailure()) return;
    }
}

TEST(HadamardSweep, F16ToI8) { QUAMBA_REQUIRE_GPU(); sweep_all<__half, int8_t>(100); }
TEST(HadamardSweep, F32ToI8) { QUAMBA_REQUIRE_GPU(); sweep_all<float, int8_t>(200); }
TEST(HadamardSweep, F16ToF16) { QUAMBA_REQUIRE_GPU(); sweep_all<__half, __half>(300); }
TEST(HadamardSweep, F32ToF32) { QUAMBA_REQUIRE_GPU(); sweep_all<float, float>(400); }

// The model's sizes with many rows (several blocks per SM, the last block partial for kRows > 1).
TEST(HadamardSweep, ModelSizesManyRows) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 500;
  for (int64_t n : {1536, 2048, 3072, 4096, 5120, 768, 320, 96})
    for (int64_t M : {129, 151, 1134}) {
      sweep_one<__half, int8_t>(n, M, M != 151, ++s);
      sweep_one<__half, __half>(n, M, M == 151, ++s);
      if (HasFatalFailure()) return;
    }
}

// The staged variant (run_staged(): 2^k ∈ {128, 256, 512}) on every size it covers: output
// strides that keep its paired / 4-wide stores aligned and n + 3 (the element-store fallback),
// compact rows, and enough rows that every block of its persistent grid loops over several row
// groups (an odd M leaves the last group of a 2-row block half empty).
TEST(HadamardSweep, StagedVariant) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 800;
  for (int64_t n : {5120, 1536, 3072, 2560, 10240, 6144, 3584, 7168, 128, 256, 512}) {
    sweep_one<__half, int8_t>(n, 4099, /*strided=*/true, ++s, /*out_pad=*/16, /*staged=*/true);
    sweep_one<__half, int8_t>(n, 2, /*strided=*/true, ++s, /*out_pad=*/4, true);
    sweep_one<__half, int8_t>(n, 17, /*strided=*/true, ++s, /*out_pad=*/3, true);
    sweep_one<__half, int8_t>(n, 1, /*strided=*/false, ++s, 3, true);
    sweep_one<float, int8_t>(n, 301, /*strided=*/true, ++s, /*out_pad=*/8, true);
    sweep_one<__half, __half>(n, 301, /*strided=*/true, ++s, /*out_pad=*/8, true);
    sweep_one<__half, __half>(n, 64, /*strided=*/true, ++s, /*out_pad=*/3, true);
    sweep_one<float, float>(n, 33, /*strided=*/true, ++s, /*out_pad=*/4, true);
    sweep_one<float, float>(n, 3, /*strided=*/false, ++s, 3, true);
    if (HasFatalFailure()) return;
  }
}

// The pipelined variant (run_pipelined()) on every size it covers (m ∈ {1, 12, 20, 28}, 2^k ∈
// [32, 1024], within its smem budget): one row, an odd row count (the last row group of a
// multi-row block partial), unaligned outputs (n + 3: element stores), aligned strided outputs
// (vector stores), compact rows, every dtype pair, and enough rows that every block of the
// persistent grid walks several row groups through its ring (M·n ≈ 2M elements, ≥ 4099 rows).
TEST(HadamardSweep, PipelinedVariant) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 1000;
  std::vector<int64_t> sizes;
  for (int m : {1, 12, 20, 28})
    for (int k = 5; k <= 10; ++k)
      if (qh::pipelined_supported(m, k, 2)) sizes.push_back(int64_t(m) << k);
  ASSERT_EQ(sizes.size(), 21u);  // 6 + 6 + 5 + 4
  for (int64_t n : sizes) {
    const int64_t big = std::max<int64_t>(4099, (int64_t(1) << 21) / n + 3);
    sweep_one<__half, int8_t>(n, big, /*strided=*/true, ++s, /*out_pad=*/16, /*variant=*/2);
    sweep_one<__half, int8_t>(n, 1, /*strided=*/false, ++s, 3, 2);
    sweep_one<__half, int8_t>(n, 2, /*strided=*/true, ++s, /*out_pad=*/4, 2);
    sweep_one<__half, int8_t>(n, 17, /*strided=*/true, ++s, /*out_pad=*/3, 2);
    sweep_one<__half, int8_t>(n, 129, /*strided=*/false, ++s, 3, 2);
    sweep_one<__half, __half>(n, 301, /*strided=*/true, ++s, /*out_pad=*/8, 2);
    sweep_one<__half, __half>(n, 3, /*strided=*/true, ++s, /*out_pad=*/3, 2);
    int m = 0, k = 0;
    ASSERT_EQ(ref::hadamard_factor(n, &m, &k), Status::kSuccess);
    if (qh::pipelined_supported(m, k, 4)) {
      // fp32 inputs: the ring holds 4 bytes per element (n ≤ 8192 with a work row).
      sweep_one<float, int8_t>(n, 151, /*strided=*/true, ++s, /*out_pad=*/8, 2);
      sweep_one<float, float>(n, 33, /*strided=*/true, ++s, /*out_pad=*/4, 2);
      sweep_one<float, float>(n, 3, /*strided=*/false, ++s, 3, 2);
    }
    if (HasFatalFailure()) return;
  }
}

// The pipelined variants in place (fp32 → fp32, fp16 → fp16, equal strides): the same bytes as
// out of place, with enough rows that blocks loop over their ring.
template <typename T>
void in_place_one(int64_t n, bool mma) {
  using D = typename DevOf<T>::type;
  SCOPED_TRACE(std::string(mma ? "run_pipelined_mma" : "run_pipelined") + " in place n=" + std::to_string(n));
  auto rng = quamba::test::make_rng(1100 + uint64_t(n) + (mma ? 7 : 0));
  const int64_t M = 3001;
  auto xf = quamba::test::random_normal(size_t(M * n), rng);
  std::vector<D> x(xf.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if constexpr (std::is_same_v<D, uint16_t>) x[i] = quamba::float_to_half_bits(xf[i]);
    else x[i] = xf[i];
  }
  quamba::test::DeviceBuffer<D> a(x), b(x), c(x.size());
  HadamardParams<T, T> p;
  p.n = n; p.rows = M; p.x_row_stride = p.out_row_stride = n; p.scale = qh::orthonormal_scale(n);
  auto go = [&]() {
    if constexpr (std::is_same_v<T, __half>) {
      if (mma) return qh::run_pipelined_mma(p);
    }
    return qh::run_pipelined(p);
  };
  p.x = reinterpret_cast<const T*>(a.get()); p.out = reinterpret_cast<T*>(c.get());
  ASSERT_EQ(go(), Status::kSuccess);
  p.x = reinterpret_cast<const T*>(b.get()); p.out = reinterpret_cast<T*>(b.get());
  ASSERT_EQ(go(), Status::kSuccess);
  QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto oc = c.download(), ob = b.download();
  EXPECT_TRUE(quamba::test::all_equal(ob.data(), oc.data(), ob.size(), "in place"));
}

TEST(HadamardSweep, PipelinedInPlace) {
  QUAMBA_REQUIRE_GPU();
  for (int64_t n : {5120, 1536, 512}) in_place_one<float>(n, false);
  for (int64_t n : {5120, 1536}) in_place_one<__half>(n, false);
  for (int64_t n : {5120, 3072, 7168}) in_place_one<__half>(n, true);
}

// The tensor-core pipelined variant (run_pipelined_mma(): fp16 inputs, n = 3072, 5120, 7168): one
// row, odd row counts, unaligned outputs (n + 3: element stores), aligned strided outputs,
// compact rows, fp16 and int8 outputs, and 4099 rows (every block of the persistent grid walks
// several rows through its ring). Row 1 and the last row carry a run of ±30000 (see sweep_one):
// the first-stage sums stay in fp16 range only thanks to the 1/16 folded into H_16.
TEST(HadamardSweep, PipelinedMmaVariant) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 1200;
  for (int64_t n : {5120, 3072, 7168}) {
    sweep_one<__half, int8_t>(n, 4099, /*strided=*/true, ++s, /*out_pad=*/16, /*variant=*/3);
    sweep_one<__half, int8_t>(n, 1, /*strided=*/false, ++s, 3, 3);
    sweep_one<__half, int8_t>(n, 2, /*strided=*/true, ++s, /*out_pad=*/4, 3);
    sweep_one<__half, int8_t>(n, 17, /*strided=*/true, ++s, /*out_pad=*/3, 3);
    sweep_one<__half, int8_t>(n, 1134, /*strided=*/false, ++s, 3, 3);
    sweep_one<__half, __half>(n, 301, /*strided=*/true, ++s, /*out_pad=*/8, 3);
    sweep_one<__half, __half>(n, 3, /*strided=*/true, ++s, /*out_pad=*/3, 3);
    sweep_one<__half, __half>(n, 151, /*strided=*/false, ++s, 3, 3);
    if (HasFatalFailure()) return;
  }
}

// The streamed variant (run_streamed(), both splits) and the bulk-copy variant (run_bulk(),
// variant 7): one row, two rows, odd row counts, tails of the persistent grid (rows not a
// multiple of the resident block count; 4099 rows make every streamed block walk 3 or more rows
// through its ring and every bulk CTA 31 rows through its 12 slots, reusing each slot at both
// barrier parities), unaligned outputs (n + 3: element stores),
// aligned strided outputs (vector stores), strided inputs, compact rows, int8 and fp16 outputs.
// Every element of every row is also compared with run_generic(); rows 1 and M − 1 carry the
// ±30000 runs of sweep_one.
TEST(HadamardSweep, StreamedVariant) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 1300;
  for (int64_t n : {5120, 3072})
    for (int variant : {4, 5, 7}) {
      sweep_one<__half, int8_t>(n, 1, /*strided=*/false, ++s, 3, variant);
      sweep_one<__half, int8_t>(n, 2, /*strided=*/true, ++s, /*out_pad=*/4, variant);
      sweep_one<__half, int8_t>(n, 3, /*strided=*/true, ++s, /*out_pad=*/3, variant);
      sweep_one<__half, int8_t>(n, 17, /*strided=*/true, ++s, /*out_pad=*/3, variant);
      sweep_one<__half, int8_t>(n, 129, /*strided=*/false, ++s, 3, variant);
      sweep_one<__half, int8_t>(n, 1134, /*strided=*/true, ++s, /*out_pad=*/16, variant);
      sweep_one<__half, int8_t>(n, 4099, /*strided=*/true, ++s, /*out_pad=*/16, variant);
      sweep_one<__half, int8_t>(n, 2049, /*strided=*/true, ++s, /*out_pad=*/3, variant);
      sweep_one<__half, __half>(n, 1, /*strided=*/false, ++s, 3, variant);
      sweep_one<__half, __half>(n, 3, /*strided=*/true, ++s, /*out_pad=*/3, variant);
      sweep_one<__half, __half>(n, 151, /*strided=*/false, ++s, 3, variant);
      sweep_one<__half, __half>(n, 301, /*strided=*/true, ++s, /*out_pad=*/8, variant);
      if (HasFatalFailure()) return;
    }
  // ~18M elements: n = 3072 runs 10 streamed blocks of two warps per SM; the bulk CTAs walk 45
  // or 46 rows through 16 slots (each slot used three times: parity 0, 1, 0 again).
  {
    const int64_t n = 3072, M = 6007;
    sweep_one<__half, int8_t>(n, M, /*strided=*/true, ++s, /*out_pad=*/16, 4);
    sweep_one<__half, __half>(n, M, /*strided=*/false, ++s, 3, 4);
    sweep_one<__half, int8_t>(n, M, /*strided=*/true, ++s, /*out_pad=*/16, 7);
    if (HasFatalFailure()) return;
  }
}

// The generic kernel at the sizes where run() now takes the streamed variant (run_generic()).
TEST(HadamardSweep, GenericAtStreamedSizes) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 1400;
  for (int64_t n : {5120, 3072}) {
    sweep_one<__half, int8_t>(n, 1, /*strided=*/false, ++s, 3, 6);
    sweep_one<__half, int8_t>(n, 17, /*strided=*/true, ++s, 3, 6);
    sweep_one<__half, int8_t>(n, 1134, /*strided=*/true, ++s, /*out_pad=*/16, 6);
    sweep_one<__half, __half>(n, 64, /*strided=*/true, ++s, /*out_pad=*/8, 6);
    if (HasFatalFailure()) return;
  }
}

// The streamed variant in place (fp16 → fp16, equal strides, both splits, strided rows): the
// same bytes as out of place.
TEST(HadamardSweep, StreamedInPlace) {
  QUAMBA_REQUIRE_GPU();
  for (int64_t n : {5120, 3072})
    for (int split : {1, 2, 0}) {  // 0: run_bulk
      if (split == 0 && !bulk_expected()) continue;
      SCOPED_TRACE("run_streamed in place n=" + std::to_string(n) + " split=" + std::to_string(split));
      auto rng = quamba::test::make_rng(1500 + uint64_t(n) + uint64_t(split));
      const int64_t M = 3001, ld = n + 8;
      auto xf = quamba::test::random_normal(size_t(M * ld), rng);
      std::vector<uint16_t> x(xf.size());
      for (size_t i = 0; i < x.size(); ++i) x[i] = quamba::float_to_half_bits(xf[i]);
      quamba::test::DeviceBuffer<uint16_t> a(x), b(x), c(x);
      HadamardParams<__half, __half> p;
      p.n = n; p.rows = M; p.x_row_stride = p.out_row_stride = ld; p.scale = qh::orthonormal_scale(n);
      p.x = reinterpret_cast<const __half*>(a.get()); p.out = reinterpret_cast<__half*>(c.get());
      auto go = [&] { return split == 0 ? qh::run_bulk(p) : qh::run_streamed(p, nullptr, nullptr, split); };
      ASSERT_EQ(go(), Status::kSuccess);
      p.x = reinterpret_cast<const __half*>(b.get()); p.out = reinterpret_cast<__half*>(b.get());
      ASSERT_EQ(go(), Status::kSuccess);
      QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
      const auto oc = c.download(), ob = b.download();
      EXPECT_TRUE(quamba::test::all_equal(ob.data(), oc.data(), ob.size(), "in place"));
    }
}

// ---- programmatic dependent launch ---------------------------------------------------------

// One variant (run_variant) with pdl = true as a dependent of a feeder kernel that writes the input
// rows late and snapshots out (common/pdl_chain.cuh), then once more back to back: out
// bit-identical to the same sequence with pdl = false, the snapshot still out's poison, the
// padding untouched, and out against the reference. Below sm_90 pdl stays false (as the engine
// decides); the bulk-copy variant, which needs sm_90, is then left to StreamedVariant.
template <typename InT, typename OutT>
void check_pdl_variant(int64_t n, int64_t M, int variant, uint64_t salt) {
  using DIn = typename DevOf<InT>::type;
  using DOut = typename DevOf<OutT>::type;
  constexpr bool kInt8 = std::is_same_v<OutT, int8_t>;
  const bool pdl = quamba::test::pdl_supported();
  const std::string what = "pdl n=" + std::to_string(n) + " M=" + std::to_string(M) + variant_tag(variant) +
                           (pdl ? "" : " (pdl off: below sm_90)");
  SCOPED_TRACE(what);
  if (variant == 7 && !bulk_expected()) return;
  auto rng = quamba::test::make_rng(salt);
  const int64_t xs = n + 8, os = n + 16;
  std::vector<float> xf = quamba::test::random_normal(size_t(M * n), rng);
  std::vector<DIn> xdev(size_t(M * xs));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float& v = xf[size_t(r * n + j)];
      if constexpr (std::is_same_v<DIn, uint16_t>) {
        xdev[size_t(r * xs + j)] = quamba::float_to_half_bits(v);
        v = quamba::round_to_half(v);
      } else {
        xdev[size_t(r * xs + j)] = v;
      }
    }
  quamba::test::DeviceBuffer<DIn> x_src(xdev), x(xdev.size());
  quamba::test::DeviceBuffer<DOut> out(size_t(M * os));
  const float inv_s = 127.0f / 3.0f;
  HadamardParams<InT, OutT> p;
  p.x = reinterpret_cast<const InT*>(x.get());
  p.out = reinterpret_cast<OutT*>(out.get());
  p.rows = M;
  p.n = n;
  p.x_row_stride = xs;
  p.out_row_stride = os;
  p.scale = kInt8 ? qh::quant_factor(n, inv_s) : qh::orthonormal_scale(n);
  constexpr uint8_t kPoison = 0xA5;
  quamba::test::Stream stream;
  std::vector<DOut> got[2];
  for (int mode = 0; mode < 2; ++mode) {
    p.pdl = mode == 1 && pdl;
    const char* mode_name = mode == 0 ? "pdl=false" : "pdl=true";
    x.poison(0x5A);
    out.poison(kPoison);
    quamba::test::PdlFeed feed;
    feed.copy(x_src.get(), x.get(), xdev.size() * sizeof(DIn));
    const size_t out_bytes = size_t(M * os) * sizeof(DOut);
    const auto run = quamba::test::run_fed_twice(feed, out.get(), out_bytes, kPoison, stream.get(),
                                                 [&] { return run_variant(p, variant, stream.get()); });
    ASSERT_EQ(run.first, Status::kSuccess) << mode_name;
    ASSERT_EQ(run.second, Status::kSuccess) << mode_name << ", again";
    got[mode] = out.download();
    const size_t early = run.early;
    EXPECT_EQ(early, out_bytes) << mode_name << ": out written before the feeder finished, first at row "
                                << early / sizeof(DOut) / os << " col " << early / sizeof(DOut) % os;
  }
  size_t diff = 0, first_diff = 0;
  for (size_t i = 0; i < got[0].size(); ++i)
    if (std::memcmp(&got[0][i], &got[1][i], sizeof(DOut)) != 0 && diff++ == 0) first_diff = i;
  EXPECT_EQ(diff, 0u) << diff << " outputs of the pdl=true sequence differ from pdl=false, first at row "
                      << first_diff / os << " col " << first_diff % os;
  uint8_t pb[sizeof(DOut)];
  std::memset(pb, kPoison, sizeof(pb));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t j = n; j < os; ++j)
      ASSERT_EQ(std::memcmp(&got[1][size_t(r * os + j)], pb, sizeof(DOut)), 0)
          << "padding overwritten at row " << r << " col " << j;
  expect_matches_reference<InT, OutT>(xf, got[1], M, n, os, p.scale, inv_s, salt, what);
}

// Every kernel of the family with pdl = true: run()'s picks (streamed with split 2 up to 256
// rows; above, the bulk-copy variant on sm_90 for int8 outputs, the generic kernel for fp16
// outputs; the generic kernel at other sizes, with and without shared memory, fp32 inputs), and
// each named variant (staged, pipelined, tensor-core pipelined, streamed split 1 / 2, generic,
// bulk-copy) at the d_model 2560 size.
TEST(HadamardPdl, EveryKernel) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 1600;
  check_pdl_variant<__half, int8_t>(5120, 17, 0, ++s);
  check_pdl_variant<__half, int8_t>(5120, 301, 0, ++s);
  check_pdl_variant<__half, int8_t>(3072, 1134, 0, ++s);
  check_pdl_variant<__half, __half>(5120, 301, 0, ++s);
  check_pdl_variant<__half, int8_t>(1536, 129, 0, ++s);
  check_pdl_variant<float, int8_t>(5120, 64, 0, ++s);
  check_pdl_variant<float, float>(32, 1000, 0, ++s);  // registers and shuffles only
  for (int variant : {1, 2, 3, 4, 5, 6, 7}) {
    check_pdl_variant<__half, int8_t>(5120, 301, variant, ++s);
    if (HasFatalFailure()) return;
  }
  check_pdl_variant<__half, __half>(3072, 129, 4, ++s);
}

// The same rows through run() (generic kernel), for the aligned strided outputs and many rows.
TEST(HadamardSweep, AlignedStridesManyRows) {
  QUAMBA_REQUIRE_GPU();
  uint64_t s = 900;
  for (int64_t n : {5120, 1536, 2048, 4096}) {
    sweep_one<__half, int8_t>(n, 4099, /*strided=*/true, ++s, /*out_pad=*/16);
    sweep_one<__half, __half>(n, 301, /*strided=*/true, ++s, /*out_pad=*/8);
    if (HasFatalFailure()) return;
  }
}

// ---- orthogonality and the out_proj fold ---------------------------------------------------------

// Rotating the rows of W (out_dim × E) and the activations y (L × E) with the same fp32 map
// v ↦ H·v/√E preserves every product: W'·y' = W·Hᵀ·H·y/E = W·y. Also ‖H·v/√E‖ = ‖v‖.
TEST(HadamardFold, WeightsAndActivations) {
  QUAMBA_REQUIRE_GPU();
  for (int64_t E : {12, 40, 1536, 2048, 3072, 5120, 7168}) {
    SCOPED_TRACE("E=" + std::to_string(E));
    auto rng = quamba::test::make_rng(700 + uint64_t(E));
    const int64_t out_dim = 24, L = 5;
    auto W = quamba::test::random_normal(size_t(out_dim * E), rng);
    auto y = quamba::test::random_normal(size_t(L * E), rng);
    quamba::test::DeviceBuffer<float> dW(W), dy(y), dW2(W.size()), dy2(y.size());
    dW2.poison();
    dy2.poison();
    HadamardParams<float, float> p;
    p.n = E;
    p.scale = qh::orthonormal_scale(E);
    p.x = dW.get(); p.out = dW2.get(); p.rows = out_dim; p.x_row_stride = p.out_row_stride = E;
    ASSERT_EQ(qh::run(p), Status::kSuccess);
    p.x = dy.get(); p.out = dy2.get(); p.rows = L;
    ASSERT_EQ(qh::run(p), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const auto W2 = dW2.download();
    const auto y2 = dy2.download();
    for (int64_t o = 0; o < out_dim; ++o) {
      double n0 = 0, n1 = 0;
      for (int64_t e = 0; e < E; ++e) { n0 += double(W[o * E + e]) * W[o * E + e]; n1 += double(W2[o * E + e]) * W2[o * E + e]; }
      ASSERT_NEAR(std::sqrt(n1), std::sqrt(n0), 1e-4 * std::sqrt(n0)) << "norm of W row " << o;
      for (int64_t l = 0; l < L; ++l) {
        double a = 0, b = 0, scale = 0;
        for (int64_t e = 0; e < E; ++e) {
          a += double(W[o * E + e]) * y[l * E + e];
          b += double(W2[o * E + e]) * y2[l * E + e];
          scale += std::fabs(double(W[o * E + e]) * y[l * E + e]);
        }
        ASSERT_NEAR(b, a, 1e-5 * scale + 1e-5) << "W'·y' vs W·y at (" << o << ", " << l << ")";
      }
    }
  }
}

// In place (documented for equal types and strides): same result as out-of-place.
TEST(HadamardFold, InPlace) {
  QUAMBA_REQUIRE_GPU();
  for (int64_t n : {16, 2048, 5120}) {
    auto rng = quamba::test::make_rng(900 + uint64_t(n));
    const int64_t M = 7;
    auto x = quamba::test::random_normal(size_t(M * n), rng);
    quamba::test::DeviceBuffer<float> a(x), b(x), c(x.size());
    HadamardParams<float, float> p;
    p.n = n; p.rows = M; p.x_row_stride = p.out_row_stride = n; p.scale = qh::orthonormal_scale(n);
    p.x = a.get(); p.out = c.get();
    ASSERT_EQ(qh::run(p), Status::kSuccess);
    p.x = b.get(); p.out = b.get();
    ASSERT_EQ(qh::run(p), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const auto oc = c.download(), ob = b.download();
    EXPECT_TRUE(quamba::test::all_equal(ob.data(), oc.data(), ob.size(), "in place n=" + std::to_string(n)));
  }
}

}  // namespace
