// Weight-only int8 linear layer with per-row scales (gemm/w8a16.cuh), the int8 head option's
// lm_head, against reference::gemm_f32_w8_rowscale.
#include <gtest/gtest.h>

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/cuda_utils.cuh"
#include "common/random.hpp"
#include "quamba/gemm/w8a16.cuh"
#include "quamba/reference/gemm.hpp"

namespace {

using quamba::Status;
using quamba::test::DeviceBuffer;
using quamba::test::from_half;
using quamba::test::to_half;
namespace qg = quamba::gemm;

struct Case {
  int64_t M, N, K;
  int64_t lda_pad = 0, ldw_pad = 0, ldc_pad = 0;
};

std::string name(const Case& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " pads=" + std::to_string(c.lda_pad) + "/" + std::to_string(c.ldw_pad) + "/" + std::to_string(c.ldc_pad);
}

// Bound: the kernel adds the K exact products in fp32 (tensor-core steps of 16, then the
// accumulator), the reference in double; each fp32 addition errs by at most 2^-24 of the running
// magnitude, which never exceeds Σ|a·w|, and there are about K/16 + 16 of them per output, so
// |err| <= (K/16 + 16)·2^-24·Σ|a·w|·scale. The test allows 4x that (an error in the kernel's
// indexing or K permutation is of the order of the terms themselves, far above it).
template <typename Launch>
void check_with(const Case& c, uint64_t salt, Launch&& launch) {
  SCOPED_TRACE(name(c));
  auto rng = quamba::test::make_rng(salt);
  const int64_t lda = c.K + c.lda_pad, ldw = c.K + c.ldw_pad, ldc = c.N + c.ldc_pad;
  const std::vector<float> af = quamba::test::random_normal(size_t(std::max<int64_t>(c.M, 1) * lda), rng);
  std::vector<__half> a(af.size());
  std::vector<float> a_r(af.size());
  for (size_t i = 0; i < af.size(); ++i) {
    a[i] = to_half(af[i]);
    a_r[i] = from_half(a[i]);
  }
  const std::vector<int8_t> w = quamba::test::random_int8(size_t(c.N * ldw), rng);
  std::vector<float> scale = quamba::test::random_floats(size_t(c.N), rng, 1e-4f, 3e-2f);

  std::vector<float> want(size_t(c.M * c.N)), bound(size_t(c.M * c.N));
  {
    const int64_t ash[2] = {c.M, c.K}, ast[2] = {lda, 1}, wsh[2] = {c.N, c.K}, wst[2] = {ldw, 1};
    const int64_t csh[2] = {c.M, c.N}, cst[2] = {c.N, 1};
    ASSERT_EQ(quamba::reference::gemm_f32_w8_rowscale(quamba::make_strided_view<const float, 2>(a_r.data(), ash, ast),
                                                      quamba::make_strided_view<const int8_t, 2>(w.data(), wsh, wst),
                                                      scale.data(),
                                                      quamba::make_strided_view<float, 2>(want.data(), csh, cst)),
              Status::kSuccess);
    const double per_add = (double(c.K) / 16 + 16) * std::ldexp(1.0, -24) * 4;
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < c.K; ++k) s += std::fabs(double(a_r[size_t(m * lda + k)]) * w[size_t(n * ldw + k)]);
        bound[size_t(m * c.N + n)] = float(per_add * s * scale[size_t(n)] + 1e-30);
      }
  }

  DeviceBuffer<__half> da(a);
  DeviceBuffer<int8_t> dw(w);
  DeviceBuffer<float> ds(scale), dc(size_t(std::max<int64_t>(c.M, 1) * ldc));
  for (int poison : {0x5A, 0xA5}) {
    dc.poison(poison);
    qg::W8A16Params p;
    p.A = da.get(); p.lda = lda;
    p.W = dw.get(); p.ldw = ldw; p.scale = ds.get();
    p.C = dc.get(); p.ldc = ldc;
    p.M = c.M; p.N = c.N; p.K = c.K;
    ASSERT_EQ(launch(p), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = dc.download();
    int64_t bad = 0;
    for (int64_t m = 0; m < c.M; ++m) {
      for (int64_t n = 0; n < c.N; ++n) {
        const float g = got[size_t(m * ldc + n)], r = want[size_t(m * c.N + n)];
        if (!(std::fabs(double(g) - r) <= bound[size_t(m * c.N + n)]) && bad++ < 5)
          ADD_FAILURE() << "(" << m << ", " << n << "): got " << g << " want " << r << " bound "
                        << bound[size_t(m * c.N + n)];
      }
      for (int64_t n = c.N; n < ldc; ++n) {
        uint8_t byte;
        std::memcpy(&byte, &got[size_t(m * ldc + n)], 1);
        ASSERT_EQ(byte, uint8_t(poison)) << "padding written at row " << m;
      }
    }
    EXPECT_EQ(bad, 0) << "outputs outside the bound";
  }
}

void check(const Case& c, uint64_t salt) {
  check_with(c, salt, [](const qg::W8A16Params& p) { return qg::run(p, nullptr, 0); });
}

// The default launch shapes and the ones the benchmark measures, on shapes with K, N and M tails.
template <typename Traits>
void check_traits(uint64_t salt) {
  for (const Case& c : {Case{1, 300, 208}, Case{Traits::kMaxM, 37, 80}, Case{5, 1000, 2560, 8, 16, 1}})
    check_with(c, ++salt, [](const qg::W8A16Params& p) { return qg::run_with<Traits>(p, 0); });
}

TEST(W8A16, LaunchShapes) {
  QUAMBA_REQUIRE_GPU();
  check_traits<qg::W8A16Traits<1, 4, 8, 1>>(400);
  check_traits<qg::W8A16Traits<1, 4, 4, 2>>(420);
  check_traits<qg::W8A16Traits<1, 4, 8, 2, true>>(450);
  check_traits<qg::W8A16Traits<2, 4, 4, 2>>(480);
}

TEST(W8A16, ShapeSweep) {
  QUAMBA_REQUIRE_GPU();
  uint64_t salt = 100;
  // M across the tile counts (1..16, 17..32) and past one launch (33, 64, 65, 130); N with
  // partial 8-row warps and partial CTAs; K with partial 64-wide rounds (16, 48, 80, 208).
  for (int64_t M : {1, 2, 15, 16, 17, 33, 64, 65, 130})
    for (int64_t N : {1, 9, 300})
      for (int64_t K : {16, 80, 208}) check({M, N, K}, ++salt);
  for (int64_t N : {5, 8, 63, 1000}) check({3, N, 48}, ++salt);
}

TEST(W8A16, StridedViews) {
  QUAMBA_REQUIRE_GPU();
  check({7, 100, 64, 8, 16, 3}, 201);    // odd ldc: scalar stores
  check({20, 257, 128, 24, 32, 1}, 202);
  check({40, 64, 2560, 8, 0, 0}, 203);
}

TEST(W8A16, LmHeadShapes) {
  QUAMBA_REQUIRE_GPU();
  check({1, 50280, 2560}, 301);  // Mamba-2.8B decode, batch 1
  check({8, 50280, 768}, 302);   // Mamba-130m, batch 8
}

TEST(W8A16BadInput, Status) {
  alignas(16) static __half a[4 * 64];
  alignas(16) static int8_t w[16 * 64];
  alignas(16) static float s[16], c[4 * 16];
  qg::W8A16Params p;
  p.A = a; p.lda = 64;
  p.W = w; p.ldw = 64; p.scale = s;
  p.C = c; p.ldc = 16;
  p.M = 4; p.N = 16; p.K = 64;
  EXPECT_EQ(qg::can_implement(p), Status::kSuccess);
  auto q = p;
  q.W = nullptr;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "null W";
  q = p;
  q.scale = nullptr;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "null scale";
  q = p;
  q.A = nullptr;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "null A with M > 0";
  q = p;
  q.K = 40;
  q.lda = q.ldw = 48;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "K % 16 != 0";
  q = p;
  q.lda = 32;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "lda < K";
  q = p;
  q.ldc = 8;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "ldc < N";
  q = p;
  q.N = 0;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "N = 0";
  q = p;
  q.M = -1;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "M < 0";
  q = p;
  q.lda = 68;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorMisaligned) << "lda % 8 != 0";
  q = p;
  q.ldw = 72;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorMisaligned) << "ldw % 16 != 0";
  q = p;
  q.A = a + 4;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorMisaligned) << "A not 16-byte aligned";
  q = p;
  q.W = w + 8;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorMisaligned) << "W not 16-byte aligned";
  q = p;
  q.C = nullptr;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorInvalidArgument) << "null C with M > 0";
  q = p;
  q.C = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + 2);
  EXPECT_EQ(qg::can_implement(q), Status::kErrorMisaligned) << "C not float-aligned";
  q = p;
  q.scale = reinterpret_cast<const float*>(reinterpret_cast<const char*>(s) + 1);
  EXPECT_EQ(qg::can_implement(q), Status::kErrorMisaligned) << "scale not float-aligned";
  q = p;
  q.K = q.lda = q.ldw = (int64_t(1) << 30) + 16;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorNotSupported) << "K beyond the kernel's int indexing";
  q = p;
  q.N = q.ldc = (int64_t(1) << 31) + 8;
  EXPECT_EQ(qg::can_implement(q), Status::kErrorNotSupported) << "N beyond the grid";
  q = p;
  q.M = 17;
  EXPECT_EQ(qg::run_with<qg::W8A16Default<1>>(q, 0), Status::kErrorNotSupported) << "M above one tile";
  q = p;
  q.M = 0;
  q.A = nullptr;
  q.C = nullptr;
  EXPECT_EQ(qg::run(q, nullptr, 0), Status::kSuccess) << "M = 0 is a no-op";
}

}  // namespace
