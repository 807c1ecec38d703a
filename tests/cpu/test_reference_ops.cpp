// Host reference of the small ops: fused residual-add + RMSNorm (quamba/reference/norm.hpp), the
// GEMMs and their epilogues (gemm.hpp), and the embedding gather (embedding.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "common/compare.hpp"
#include "common/random.hpp"
#include "quamba/reference/embedding.hpp"
#include "quamba/reference/gemm.hpp"
#include "quamba/reference/norm.hpp"

using namespace quamba;
using namespace quamba::reference;

namespace quamba {
// Statuses print by name in assertion messages.
inline void PrintTo(Status s, std::ostream* os) { *os << to_string(s); }
}  // namespace quamba

namespace {

std::vector<float> poison(size_t n) { return std::vector<float>(n, std::nanf("")); }

template <typename T>
TensorView<const T, 2> cview(const std::vector<T>& v, int64_t rows, int64_t cols) {
  return make_view(v.data(), rows, cols);
}

}  // namespace

// ---- add + RMSNorm ------------------------------------------------------------------------------

// residual <- fp32(residual + h); out = r · rsqrt(mean(r²) + eps) · γ, checked against double.
TEST(ReferenceNorm, AddRmsNormMatchesFormula) {
  auto rng = test::make_rng(0x40a);
  double worst = 0;
  for (int64_t M : {1, 3, 17})
    for (int64_t D : {1, 7, 64, 768})
      for (bool with_h : {true, false}) {
        SCOPED_TRACE("M=" + std::to_string(M) + " D=" + std::to_string(D) + (with_h ? " h" : " no h"));
        const float eps = 1e-5f;
        // h is a strided slice (row stride 2D) of a wider buffer.
        const auto hbuf = test::random_normal(size_t(M * 2 * D), rng, 0.f, 2.f);
        const auto hv = make_view(hbuf.data(), M, 2 * D).slice(1, D, D);
        const auto res0 = test::random_normal(size_t(M * D), rng, 0.f, 3.f);
        const auto gamma = test::random_floats(size_t(D), rng, 0.5f, 1.5f);
        auto res = res0;
        auto out = poison(res.size());
        ASSERT_EQ(add_rmsnorm(with_h ? hv : TensorView<const float, 2>{}, make_view(res.data(), M, D), gamma.data(), eps,
                              make_view(out.data(), M, D)),
                  Status::kSuccess);
        std::vector<float> want(out.size());
        for (int64_t m = 0; m < M; ++m) {
          double ss = 0;
          for (int64_t d = 0; d < D; ++d) {
            const float r = with_h ? res0[m * D + d] + hv(m, d) : res0[m * D + d];  // fp32 residual stream
            ASSERT_EQ(res[m * D + d], r) << "residual (" << m << "," << d << ")";
            ss += double(r) * r;
          }
          const double rstd = 1.0 / std::sqrt(ss / double(D) + double(eps));
          for (int64_t d = 0; d < D; ++d) want[m * D + d] = float(double(res[m * D + d]) * rstd * gamma[d]);
        }
        ASSERT_TRUE(test::all_close(out, want, test::kTolF32, "out"));
        for (size_t i = 0; i < out.size(); ++i)
          worst = std::max(worst, std::fabs(double(out[i]) - want[i]) / (1e-5 + 1e-5 * std::fabs(want[i])));
        if (!with_h) {
          ASSERT_TRUE(test::all_equal(res.data(), res0.data(), res.size(), "residual with h == null"));
        }
      }
  std::printf("[ measured ] add_rmsnorm vs double formula: max err/kTolF32 = %.3g\n", worst);
}

// eps matters for small rows: a row of tiny values normalises to r / sqrt(mean + eps), not to ±γ.
TEST(ReferenceNorm, EpsIsInsideTheRoot) {
  const int64_t D = 4;
  std::vector<float> res = {1e-3f, -1e-3f, 1e-3f, -1e-3f}, gamma(D, 1.0f), out(D);
  ASSERT_EQ(add_rmsnorm({}, make_view(res.data(), 1, D), gamma.data(), 1e-5f, make_view(out.data(), 1, D)),
            Status::kSuccess);
  const double want = 1e-3 / std::sqrt(1e-6 + 1e-5);
  for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(std::fabs(out[d]), want, 1e-6) << d;
}

// The int8 variant is q8 of the fp32 output times inv_scale, bit for bit.
TEST(ReferenceNorm, Int8IsQuantizedFloatOutput) {
  auto rng = test::make_rng(0x408);
  for (int64_t D : {7, 768}) {
    const int64_t M = 9;
    const auto h = test::random_normal(size_t(M * D), rng);
    const auto res0 = test::random_normal(size_t(M * D), rng, 0.f, 3.f);
    const auto gamma = test::random_floats(size_t(D), rng, 0.5f, 1.5f);
    const float inv_scale = 127.0f / 2.5f;  // |out| > 2.5 saturates
    auto res_f = res0, res_q = res0;
    auto out = poison(res0.size());
    std::vector<int8_t> q(res0.size(), 77);
    ASSERT_EQ(add_rmsnorm(cview(h, M, D), make_view(res_f.data(), M, D), gamma.data(), 1e-5f, make_view(out.data(), M, D)),
              Status::kSuccess);
    ASSERT_EQ(add_rmsnorm_i8(cview(h, M, D), make_view(res_q.data(), M, D), gamma.data(), 1e-5f, inv_scale,
                             make_view(q.data(), M, D)),
              Status::kSuccess);
    ASSERT_TRUE(test::all_equal(res_q.data(), res_f.data(), res_f.size(), "residual"));
    std::vector<int8_t> want(q.size());
    int hi = 0, lo = 0;
    for (size_t i = 0; i < q.size(); ++i) {
      want[i] = quantize_i8(out[i], inv_scale);
      hi += want[i] == 127;
      lo += want[i] == -128;
    }
    ASSERT_TRUE(test::all_equal(q.data(), want.data(), q.size(), "q8(out · inv_scale)"));
    if (D == 768) {
      EXPECT_GT(hi, 0);
      EXPECT_GT(lo, 0);
    }
  }
}

TEST(ReferenceNorm, BadShapesAreInvalidArgument) {
  const int64_t M = 3, D = 8;
  std::vector<float> h(size_t((M + 1) * (D + 1)), 1.f), res(h.size(), 1.f), out(h.size()), gamma(D + 1, 1.f);
  std::vector<int8_t> q(h.size());
  auto rv = make_view(res.data(), M, D);
  auto hv = cview(h, M, D);
  ASSERT_EQ(add_rmsnorm(hv, rv, gamma.data(), 1e-5f, make_view(out.data(), M, D)), Status::kSuccess);
  EXPECT_EQ(add_rmsnorm(cview(h, M + 1, D), rv, gamma.data(), 1e-5f, make_view(out.data(), M, D)),
            Status::kErrorInvalidArgument) << "h rows";
  EXPECT_EQ(add_rmsnorm(cview(h, M, D + 1), rv, gamma.data(), 1e-5f, make_view(out.data(), M, D)),
            Status::kErrorInvalidArgument) << "h cols";
  EXPECT_EQ(add_rmsnorm(hv, rv, gamma.data(), 1e-5f, make_view(out.data(), M - 1, D)), Status::kErrorInvalidArgument)
      << "out rows";
  EXPECT_EQ(add_rmsnorm(hv, rv, gamma.data(), 1e-5f, make_view(out.data(), M, D + 1)), Status::kErrorInvalidArgument)
      << "out cols";
  EXPECT_EQ(add_rmsnorm(hv, rv, nullptr, 1e-5f, make_view(out.data(), M, D)), Status::kErrorInvalidArgument)
      << "gamma null";
  EXPECT_EQ(add_rmsnorm(hv, make_view(static_cast<float*>(nullptr), M, D), gamma.data(), 1e-5f,
                        make_view(out.data(), M, D)),
            Status::kErrorInvalidArgument) << "residual null";
  EXPECT_EQ(add_rmsnorm(hv, rv, gamma.data(), 1e-5f, make_view(static_cast<float*>(nullptr), M, D)),
            Status::kErrorInvalidArgument) << "out null";
  EXPECT_EQ(add_rmsnorm({}, make_view(res.data(), M, 0), gamma.data(), 1e-5f, make_view(out.data(), M, 0)),
            Status::kErrorInvalidArgument) << "D = 0";
  EXPECT_EQ(add_rmsnorm_i8(hv, rv, gamma.data(), 1e-5f, 1.f, make_view(q.data(), M, D + 1)),
            Status::kErrorInvalidArgument) << "int8 out cols";
  EXPECT_EQ(add_rmsnorm_i8(cview(h, M, D + 1), rv, gamma.data(), 1e-5f, 1.f, make_view(q.data(), M, D)),
            Status::kErrorInvalidArgument) << "int8 h cols";
}

// ---- GEMM ----------------------------------------------------------------------------------------

TEST(ReferenceGemm, Int8MatchesInt64Sum) {
  auto rng = test::make_rng(0x6e8);
  for (int64_t M : {1, 5, 33})
    for (int64_t N : {1, 7, 64})
      for (int64_t K : {1, 3, 16, 100, 1000}) {
        SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
        // A is a slice (row stride K + 5) of a wider buffer; both ends of int8 appear.
        auto abuf = test::random_int8(size_t(M * (K + 5)), rng);
        auto W = test::random_int8(size_t(N * K), rng);
        abuf[5] = -128;
        W[0] = -128;
        const auto A = make_view(static_cast<const int8_t*>(abuf.data()), M, K + 5).slice(1, 5, K);
        std::vector<int32_t> acc(size_t(M * N), 0x7eadbeef);
        ASSERT_EQ(gemm_i8_i32(A, cview(W, N, K), make_view(acc.data(), M, N)), Status::kSuccess);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; ++k) s += int64_t(A(m, k)) * int64_t(W[n * K + k]);
            ASSERT_EQ(int64_t(acc[m * N + n]), s) << "(" << m << "," << n << ")";
          }
      }
}

// The int32 accumulator bound: K = 131071 rows of -128·-128 fit; K = 131072 is refused.
TEST(ReferenceGemm, Int8AccumulatorLimit) {
  const int64_t K = 131071;
  std::vector<int8_t> a(size_t(K), -128), w(size_t(2 * K), -128);
  for (int64_t k = 0; k < K; ++k) w[K + k] = 127;
  std::vector<int32_t> acc(2, 0);
  ASSERT_EQ(gemm_i8_i32(cview(a, 1, K), cview(w, 2, K), make_view(acc.data(), 1, 2)), Status::kSuccess);
  EXPECT_EQ(int64_t(acc[0]), K * 16384);
  EXPECT_EQ(int64_t(acc[1]), K * -16256);
  std::vector<int8_t> a2(size_t(K + 1), 1), w2(size_t(K + 1), 1);
  EXPECT_EQ(gemm_i8_i32(cview(a2, 1, K + 1), cview(w2, 1, K + 1), make_view(acc.data(), 1, 1)),
            Status::kErrorNotSupported);
}

TEST(ReferenceGemm, Fp32CloseToDouble) {
  auto rng = test::make_rng(0x6f3);
  double worst = 0;
  for (int64_t K : {1, 17, 768}) {
    const int64_t M = 6, N = 11;
    const auto A = test::random_normal(size_t(M * K), rng);
    const auto W = test::random_normal(size_t(N * K), rng);
    auto C = poison(size_t(M * N));
    ASSERT_EQ(gemm_f32(cview(A, M, K), cview(W, N, K), make_view(C.data(), M, N)), Status::kSuccess);
    std::vector<float> want(C.size());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        long double s = 0;  // a different (wider) accumulation than the reference's double
        for (int64_t k = K - 1; k >= 0; --k) s += (long double)A[m * K + k] * W[n * K + k];
        want[m * N + n] = float(s);
      }
    ASSERT_TRUE(test::all_close(C, want, test::kTolF32, "gemm_f32"));
    for (size_t i = 0; i < C.size(); ++i)
      worst = std::max(worst, std::fabs(double(C[i]) - want[i]) / (1e-5 + 1e-5 * std::fabs(want[i])));
  }
  std::printf("[ measured ] gemm_f32 vs long double: max err/kTolF32 = %.3g\n", worst);
}

TEST(ReferenceGemm, AlphaHelpers) {
  const float s_a = 0.0123f, s_w = 0.00457f, s_out = 0.0871f;
  EXPECT_EQ(dequant_alpha(s_a, s_w), s_a * s_w);
  EXPECT_EQ(requant_alpha(s_a, s_w, s_out), (s_a * s_w) * (1.0f / s_out));
}

// y = float(acc)·alpha [·col_scale[n]] [+ bias[n]] [+ residual(m, n)], in that order, bit-exact;
// every combination of optional parts, and a check that the test tells the order apart.
TEST(ReferenceGemm, DequantEpilogueOrder) {
  auto rng = test::make_rng(0xe91);
  const int64_t M = 13, N = 29;
  std::vector<int32_t> acc(size_t(M * N));
  std::uniform_int_distribution<int32_t> da(-2000000, 2000000);
  for (auto& v : acc) v = da(rng);
  const float alpha = dequant_alpha(0.0123f, 0.00457f);
  const auto col = test::random_floats(size_t(N), rng, 0.5f, 2.0f);
  const auto bias = test::random_normal(size_t(N), rng);
  const auto rbuf = test::random_normal(size_t(M * (N + 3)), rng, 0.f, 10.f);
  const auto resid = make_view(rbuf.data(), M, N + 3).slice(1, 3, N);  // strided residual
  size_t reorder_differs = 0;
  for (int opt = 0; opt < 8; ++opt) {
    SCOPED_TRACE("opt=" + std::to_string(opt));
    EpilogueRef e;
    e.alpha = alpha;
    e.col_scale = opt & 1 ? col.data() : nullptr;
    e.bias = opt & 2 ? bias.data() : nullptr;
    if (opt & 4) e.residual = resid;
    auto y = poison(acc.size());
    ASSERT_EQ(epilogue_dequant(cview(acc, M, N), e, make_view(y.data(), M, N)), Status::kSuccess);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float v = float(acc[m * N + n]) * alpha;
        if (opt & 1) v = v * col[n];
        if (opt & 2) v = v + bias[n];
        if (opt & 4) v = v + resid(m, n);
        ASSERT_EQ(y[m * N + n], v) << "(" << m << "," << n << ")";
        if (opt == 1) reorder_differs += float(acc[m * N + n]) * (alpha * col[n]) != v;
      }
  }
  EXPECT_GT(reorder_differs, 0u) << "alpha·col_scale folded first must differ somewhere, or the order is untested";
}

// q = q8(float(acc)·alpha [·col_scale[n]]): bit-exact, ties to even, saturation at both ends.
TEST(ReferenceGemm, RequantEpilogue) {
  auto rng = test::make_rng(0xe98);
  const int64_t M = 17, N = 31;
  std::vector<int32_t> acc(size_t(M * N));
  std::uniform_int_distribution<int32_t> da(-400000, 400000);
  for (auto& v : acc) v = da(rng);
  const float alpha = requant_alpha(0.0123f, 0.00457f, 0.0871f / 2);  // |acc| > ~200000 saturates
  const auto col = test::random_floats(size_t(N), rng, 0.5f, 2.0f);
  for (bool with_col : {false, true}) {
    EpilogueRef e;
    e.alpha = alpha;
    e.col_scale = with_col ? col.data() : nullptr;
    std::vector<int8_t> q(acc.size(), 77);
    ASSERT_EQ(epilogue_requant(cview(acc, M, N), e, make_view(q.data(), M, N)), Status::kSuccess);
    int hi = 0, lo = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float v = float(acc[m * N + n]) * alpha;
        if (with_col) v = v * col[n];
        const float r = std::nearbyint(std::min(127.0f, std::max(-128.0f, v)));
        ASSERT_EQ(int(q[m * N + n]), int(r)) << "(" << m << "," << n << ") v=" << v;
        hi += r == 127;
        lo += r == -128;
      }
    EXPECT_GT(hi, 0);
    EXPECT_GT(lo, 0);
  }
  // Exact ties and the ends, alpha = 0.5.
  const std::vector<int32_t> a = {5, 7, -5, -7, 1, -1, 254, 255, 256, -255, -256, -257, 2147483647, -2147483647 - 1};
  const std::vector<int> want = {2, 4, -2, -4, 0, 0, 127, 127, 127, -128, -128, -128, 127, -128};
  EpilogueRef half;
  half.alpha = 0.5f;
  std::vector<int8_t> q(a.size(), 77);
  ASSERT_EQ(epilogue_requant(cview(a, 1, int64_t(a.size())), half, make_view(q.data(), 1, int64_t(a.size()))),
            Status::kSuccess);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(int(q[i]), want[i]) << "acc " << a[i];
}

TEST(ReferenceGemm, BadArguments) {
  const int64_t M = 3, N = 4, K = 5;
  std::vector<int8_t> A(size_t((M + 1) * (K + 1)), 1), W(size_t((N + 1) * (K + 1)), 1);
  std::vector<float> Af(A.size(), 1.f), Wf(W.size(), 1.f), C(size_t((M + 1) * (N + 1))), bias(N + 1, 0.f);
  std::vector<int32_t> acc(C.size());
  std::vector<int8_t> q(C.size());
  EXPECT_EQ(gemm_i8_i32(cview(A, M, K), cview(W, N, K), make_view(acc.data(), M, N)), Status::kSuccess);
  EXPECT_EQ(gemm_i8_i32(cview(A, M, K), cview(W, N, K + 1), make_view(acc.data(), M, N)), Status::kErrorInvalidArgument);
  EXPECT_EQ(gemm_i8_i32(cview(A, M, K), cview(W, N, K), make_view(acc.data(), M + 1, N)), Status::kErrorInvalidArgument);
  EXPECT_EQ(gemm_i8_i32(cview(A, M, K), cview(W, N, K), make_view(acc.data(), M, N - 1)), Status::kErrorInvalidArgument);
  EXPECT_EQ(gemm_i8_i32(cview(A, M, 0), cview(W, N, 0), make_view(acc.data(), M, N)), Status::kErrorInvalidArgument);
  EXPECT_EQ(gemm_i8_i32(make_view(static_cast<const int8_t*>(nullptr), M, K), cview(W, N, K),
                        make_view(acc.data(), M, N)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(gemm_f32(cview(Af, M, K), cview(Wf, N, K), make_view(C.data(), M, N)), Status::kSuccess);
  EXPECT_EQ(gemm_f32(cview(Af, M, K), cview(Wf, N, K - 1), make_view(C.data(), M, N)), Status::kErrorInvalidArgument);
  EXPECT_EQ(gemm_f32(cview(Af, M, K), cview(Wf, N, K), make_view(C.data(), M, N + 1)), Status::kErrorInvalidArgument);
  EXPECT_EQ(gemm_f32(cview(Af, M, K), make_view(static_cast<const float*>(nullptr), N, K), make_view(C.data(), M, N)),
            Status::kErrorInvalidArgument);

  EpilogueRef e;
  EXPECT_EQ(epilogue_dequant(cview(acc, M, N), e, make_view(C.data(), M, N + 1)), Status::kErrorInvalidArgument);
  EXPECT_EQ(epilogue_requant(cview(acc, M, N), e, make_view(q.data(), M + 1, N)), Status::kErrorInvalidArgument);
  EpilogueRef eb = e;
  eb.bias = bias.data();
  std::fill(q.begin(), q.end(), int8_t(77));
  EXPECT_EQ(epilogue_requant(cview(acc, M, N), eb, make_view(q.data(), M, N)), Status::kErrorNotSupported) << "bias";
  EpilogueRef er = e;
  er.residual = cview(Af, M, N);
  EXPECT_EQ(epilogue_requant(cview(acc, M, N), er, make_view(q.data(), M, N)), Status::kErrorNotSupported)
      << "residual";
  EXPECT_TRUE(std::all_of(q.begin(), q.end(), [](int8_t v) { return v == 77; })) << "rejected requant wrote output";
}

// ---- embedding -----------------------------------------------------------------------------------

TEST(ReferenceEmbedding, GatherIsExact) {
  auto rng = test::make_rng(0xe3b);
  const int64_t V = 50, D = 17, M = 64;
  const auto tbuf = test::random_normal(size_t(V * (D + 4)), rng);
  const auto table = make_view(tbuf.data(), V, D + 4).slice(1, 2, D);  // strided table
  std::vector<int32_t> ids(M);
  std::uniform_int_distribution<int32_t> di(0, int32_t(V - 1));
  for (auto& id : ids) id = di(rng);
  ids[0] = 0;
  ids[1] = int32_t(V - 1);
  ids[2] = ids[3];  // repeated id
  std::vector<float> obuf(size_t(M * (D + 1)), std::nanf(""));
  const auto out = make_view(obuf.data(), M, D + 1).slice(1, 0, D);  // strided output
  ASSERT_EQ(embedding(table, ids.data(), M, out), Status::kSuccess);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t d = 0; d < D; ++d) ASSERT_EQ(out(m, d), table(ids[m], d)) << "row " << m << " d=" << d;
    ASSERT_TRUE(std::isnan(obuf[size_t(m * (D + 1) + D)])) << "written outside the view at row " << m;
  }
  // The converting form: an fp16 table (bit patterns) gathered to fp32.
  std::vector<uint16_t> th(size_t(V * D));
  for (int64_t v = 0; v < V; ++v)
    for (int64_t d = 0; d < D; ++d) th[size_t(v * D + d)] = float_to_half_bits(table(v, d));
  auto o2 = poison(size_t(M * D));
  ASSERT_EQ(embedding(cview(th, V, D), ids.data(), M, make_view(o2.data(), M, D),
                      [](uint16_t h) { return half_bits_to_float(h); }),
            Status::kSuccess);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t d = 0; d < D; ++d) ASSERT_EQ(o2[size_t(m * D + d)], round_to_half(table(ids[m], d)));
}

TEST(ReferenceEmbedding, OutOfRangeIds) {
  auto rng = test::make_rng(0xe3c);
  const int64_t V = 10, D = 4, M = 5;
  const auto table = test::random_normal(size_t(V * D), rng);
  for (int32_t bad : {-1, int32_t(V), int32_t(V + 100), -2147483647 - 1}) {
    SCOPED_TRACE("bad id " + std::to_string(bad));
    std::vector<int32_t> ids = {3, 9, bad, 0, 1};
    auto out = poison(size_t(M * D));
    EXPECT_EQ(embedding(cview(table, V, D), ids.data(), M, make_view(out.data(), M, D)), Status::kErrorOutOfRange);
    // Rows before the bad one are written, the rest untouched (documented).
    for (int64_t d = 0; d < D; ++d) {
      EXPECT_EQ(out[d], table[3 * D + d]);
      EXPECT_EQ(out[D + d], table[9 * D + d]);
      for (int64_t m = 2; m < M; ++m) EXPECT_TRUE(std::isnan(out[m * D + d])) << "row " << m;
    }
  }
}

TEST(ReferenceEmbedding, BadShapes) {
  const int64_t V = 10, D = 4, M = 3;
  std::vector<float> table(size_t(V * D), 1.f), out(size_t((M + 1) * (D + 1)));
  const std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_EQ(embedding(cview(table, V, D), ids.data(), M, make_view(out.data(), M, D)), Status::kSuccess);
  EXPECT_EQ(embedding(cview(table, V, D), ids.data(), M, make_view(out.data(), M, D + 1)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(embedding(cview(table, V, D), ids.data(), M, make_view(out.data(), M + 1, D)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(embedding(cview(table, V, D), nullptr, M, make_view(out.data(), M, D)), Status::kErrorInvalidArgument);
  EXPECT_EQ(embedding(make_view(static_cast<const float*>(nullptr), V, D), ids.data(), M, make_view(out.data(), M, D)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(embedding(cview(table, V, D), nullptr, 0, make_view(out.data(), 0, D)), Status::kSuccess) << "M = 0";
}
