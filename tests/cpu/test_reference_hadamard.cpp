// Host reference Hadamard (quamba/reference/hadamard.hpp): the supported sizes, orthogonality of
// every supported H_n up to 16384, the orientation of the transform, and the quantized rotation.
//
// Orthogonality is checked exactly in integer arithmetic: exhaustively (the whole Gram matrix)
// for n <= 512, and for larger n by an exact randomized test (w = Hᵀv, then H·w == n·v for random
// integer vectors v; a Gram matrix G != n·I passes only if v falls in the kernel of G - n·I,
// probability <= 1/2001 per vector) plus a sample of row pairs. Every entry of every size is
// also checked to be ±1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/compare.hpp"
#include "common/random.hpp"
#include "quamba/reference/hadamard.hpp"

using namespace quamba;
using namespace quamba::reference;

namespace quamba {
// Statuses print by name in assertion messages.
inline void PrintTo(Status s, std::ostream* os) { *os << to_string(s); }
}  // namespace quamba

namespace {

constexpr int64_t kMaxSize = 16384;
constexpr int64_t kExhaustiveLimit = 512;

// Every n = m·2^k <= limit with m ∈ {1, 12, 20, 28}, ascending (the odd parts 1, 3, 5, 7 differ,
// so the list has no duplicates).
std::vector<int64_t> supported_sizes(int64_t limit) {
  std::vector<int64_t> v;
  for (int64_t m : {1, 12, 20, 28})
    for (int64_t n = m; n <= limit; n *= 2) v.push_back(n);
  std::sort(v.begin(), v.end());
  return v;
}

// Sylvester H_p built by doubling, independent of HadamardEntries' popcount formula.
std::vector<int> sylvester(int64_t p) {
  std::vector<int> h{1};
  for (int64_t s = 1; s < p; s *= 2) {
    std::vector<int> g(static_cast<size_t>(4 * s * s));
    for (int64_t i = 0; i < s; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const int e = h[i * s + j];
        g[i * 2 * s + j] = e;
        g[i * 2 * s + j + s] = e;
        g[(i + s) * 2 * s + j] = e;
        g[(i + s) * 2 * s + j + s] = -e;
      }
    h.swap(g);
  }
  return h;
}

std::vector<float> poison(size_t n) { return std::vector<float>(n, std::nanf("")); }

}  // namespace

TEST(ReferenceHadamard, SupportedSizeListMatchesSpec) {
  const auto sizes = supported_sizes(kMaxSize);
  EXPECT_EQ(sizes.size(), 46u);  // 15 powers of two + 11 of 12·2^k + 10 of 20·2^k + 10 of 28·2^k
  for (int64_t n : {1, 2, 12, 20, 24, 28, 40, 56, 1536, 2048, 3072, 4096, 5120, 16384})
    EXPECT_TRUE(std::binary_search(sizes.begin(), sizes.end(), n)) << n;
  // Exhaustive over the range: supported exactly when in the list, and the factorisation is right.
  for (int64_t n = -64; n <= kMaxSize; ++n) {
    const bool want = n > 0 && std::binary_search(sizes.begin(), sizes.end(), n);
    int m = -1, k = -1;
    const Status s = hadamard_factor(n, &m, &k);
    ASSERT_EQ(s == Status::kSuccess, want) << "n = " << n;
    ASSERT_EQ(hadamard_size_supported(n), want) << "n = " << n;
    if (!want) {
      ASSERT_EQ(s, Status::kErrorNotSupported) << "n = " << n;
      continue;
    }
    ASSERT_TRUE(m == 1 || m == 12 || m == 20 || m == 28) << "n = " << n << " m = " << m;
    ASSERT_GE(k, 0);
    ASSERT_EQ(int64_t(m) << k, n) << "n = " << n;
  }
  int m = 0, k = 0;
  ASSERT_EQ(hadamard_factor(24, &m, &k), Status::kSuccess);
  EXPECT_EQ(m, 12);
  EXPECT_EQ(k, 1);
  ASSERT_EQ(hadamard_factor(40, &m, &k), Status::kSuccess);  // 40·2^k is 20·2^(k+1)
  EXPECT_EQ(m, 20);
  EXPECT_EQ(k, 1);
  ASSERT_EQ(hadamard_factor(5120, &m, &k), Status::kSuccess);
  EXPECT_EQ(m, 20);
  EXPECT_EQ(k, 8);
  EXPECT_TRUE(hadamard_size_supported(int64_t(28) << 20));  // no upper limit in the factorisation
}

TEST(ReferenceHadamard, UnsupportedSizesAreRejectedEverywhere) {
  const int64_t bad[] = {0, 3, 5, 6, 7, 9, 10, 36, 44, 60, 144, 5000, 6000, -1, -4, -12, -1024};
  for (int64_t n : bad) {
    SCOPED_TRACE("n = " + std::to_string(n));
    EXPECT_EQ(hadamard_factor(n, nullptr, nullptr), Status::kErrorNotSupported);
    EXPECT_FALSE(hadamard_size_supported(n));
    HadamardEntries h;
    EXPECT_EQ(h.init(n), Status::kErrorNotSupported);
    std::vector<float> dense{42.0f};
    EXPECT_EQ(hadamard_matrix(n, &dense), Status::kErrorNotSupported);
    if (n > 0) {  // a view with a positive row length of the unsupported size
      std::vector<float> x(static_cast<size_t>(2 * n), 1.0f), y(x.size(), 7.0f);
      std::vector<int8_t> q(x.size(), 7);
      EXPECT_EQ(hadamard_transform(make_view(x.data(), 2, n), 1.0f, make_view(y.data(), 2, n)),
                Status::kErrorNotSupported);
      EXPECT_EQ(hadamard_quantize(make_view(x.data(), 2, n), 1.0f, make_view(q.data(), 2, n)),
                Status::kErrorNotSupported);
      // Rejected, never zero-padded: nothing written.
      EXPECT_TRUE(std::all_of(y.begin(), y.end(), [](float v) { return v == 7.0f; }));
      EXPECT_TRUE(std::all_of(q.begin(), q.end(), [](int8_t v) { return v == 7; }));
    }
  }
  EXPECT_EQ(hadamard_matrix(16, nullptr), Status::kErrorInvalidArgument);
}

TEST(ReferenceHadamard, SmallFactorsAreHadamard) {
  for (int m : {1, 12, 20, 28}) {
    const auto h = detail::small_hadamard(m);
    ASSERT_EQ(h.size(), size_t(m) * m);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        ASSERT_TRUE(h[i * m + j] == 1 || h[i * m + j] == -1) << "m=" << m << " (" << i << "," << j << ")";
        int dot = 0;
        for (int c = 0; c < m; ++c) dot += h[i * m + c] * h[j * m + c];
        ASSERT_EQ(dot, i == j ? m : 0) << "H_" << m << " rows " << i << ", " << j;
      }
  }
}

// HadamardEntries == H_m ⊗ H_{2^k} with an independently built Sylvester factor, and the dense
// matrix holds the same entries.
TEST(ReferenceHadamard, EntriesAreTheKroneckerProduct) {
  for (int64_t n : supported_sizes(kExhaustiveLimit)) {
    HadamardEntries h;
    ASSERT_EQ(h.init(n), Status::kSuccess) << n;
    const int m = h.m();
    const int64_t p = int64_t(1) << h.log2_pow();
    ASSERT_EQ(m * p, n);
    const auto small = detail::small_hadamard(m);
    const auto syl = sylvester(p);
    std::vector<float> dense;
    ASSERT_EQ(hadamard_matrix(n, &dense), Status::kSuccess);
    ASSERT_EQ(dense.size(), size_t(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const int want = small[(i / p) * m + (j / p)] * syl[(i % p) * p + (j % p)];
        ASSERT_EQ(h(i, j), want) << "n=" << n << " (" << i << "," << j << ")";
        ASSERT_EQ(dense[i * n + j], static_cast<float>(want)) << "n=" << n << " (" << i << "," << j << ")";
      }
  }
}

// n <= 512: every entry ±1 and the whole Gram matrix H·Hᵀ == n·I, in exact integers.
TEST(ReferenceHadamard, ExhaustiveGramSmallSizes) {
  for (int64_t n : supported_sizes(kExhaustiveLimit)) {
    HadamardEntries h;
    ASSERT_EQ(h.init(n), Status::kSuccess) << n;
    std::vector<int8_t> H(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const int e = h(i, j);
        ASSERT_TRUE(e == 1 || e == -1) << "n=" << n << " entry (" << i << "," << j << ") = " << e;
        H[i * n + j] = static_cast<int8_t>(e);
      }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int32_t dot = 0;
        const int8_t* a = &H[i * n];
        const int8_t* b = &H[j * n];
        for (int64_t c = 0; c < n; ++c) dot += a[c] * b[c];
        ASSERT_EQ(dot, i == j ? n : 0) << "n=" << n << " (H·Hᵀ)[" << i << "][" << j << "]";
      }
  }
}

// n > 512: every entry ±1 (checked in the first pass), exact randomized H·(Hᵀ·v) == n·v, and a
// random sample of row pairs checked exhaustively.
TEST(ReferenceHadamard, RandomizedGramLargeSizes) {
  auto rng = test::make_rng(0x4ad);
  constexpr int kVectors = 2;
  constexpr int kRowPairs = 64;
  int sizes_checked = 0;
  for (int64_t n : supported_sizes(kMaxSize)) {
    if (n <= kExhaustiveLimit) continue;
    HadamardEntries h;
    ASSERT_EQ(h.init(n), Status::kSuccess) << n;
    std::uniform_int_distribution<int> dv(-1000, 1000);
    std::vector<int64_t> v[kVectors], w[kVectors];
    for (int r = 0; r < kVectors; ++r) {
      v[r].resize(n);
      for (auto& x : v[r]) x = dv(rng);
      w[r].assign(n, 0);
    }
    // Pass 1: w = Hᵀ·v (row i of H scaled by v_i), every entry checked to be ±1.
    int64_t bad_entries = 0, first_bad_i = -1, first_bad_j = -1;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v0 = v[0][i], v1 = v[1][i];
      int64_t* w0 = w[0].data();
      int64_t* w1 = w[1].data();
      for (int64_t j = 0; j < n; ++j) {
        const int e = h(i, j);
        if (e != 1 && e != -1) {
          if (bad_entries++ == 0) { first_bad_i = i; first_bad_j = j; }
        }
        w0[j] += e * v0;
        w1[j] += e * v1;
      }
    }
    ASSERT_EQ(bad_entries, 0) << "n=" << n << ": entries not ±1, first at (" << first_bad_i << ","
                              << first_bad_j << ")";
    // Pass 2: H·w == n·v exactly.
    for (int64_t i = 0; i < n; ++i) {
      int64_t a0 = 0, a1 = 0;
      const int64_t* w0 = w[0].data();
      const int64_t* w1 = w[1].data();
      for (int64_t j = 0; j < n; ++j) {
        const int e = h(i, j);
        a0 += e * w0[j];
        a1 += e * w1[j];
      }
      ASSERT_EQ(a0, n * v[0][i]) << "n=" << n << ": (H·Hᵀ·v0)[" << i << "] != n·v0[" << i << "]";
      ASSERT_EQ(a1, n * v[1][i]) << "n=" << n << ": (H·Hᵀ·v1)[" << i << "] != n·v1[" << i << "]";
    }
    // Row pairs (including a few i == i'), exhaustive over the row length.
    std::uniform_int_distribution<int64_t> dr(0, n - 1);
    for (int p = 0; p < kRowPairs; ++p) {
      const int64_t i = dr(rng), j = p % 8 == 0 ? i : dr(rng);
      int64_t dot = 0;
      for (int64_t c = 0; c < n; ++c) dot += h(i, c) * h(j, c);
      ASSERT_EQ(dot, i == j ? n : 0) << "n=" << n << " rows " << i << ", " << j;
    }
    ++sizes_checked;
  }
  EXPECT_EQ(sizes_checked, 46 - static_cast<int>(supported_sizes(kExhaustiveLimit).size()));
}

// hadamard_transform computes H·x (not Hᵀ·x) per row: the transform of e_j is column j of H.
TEST(ReferenceHadamard, TransformOrientationIsHTimesX) {
  for (int64_t n : {12, 20, 28, 24, 40, 56}) {
    HadamardEntries h;
    ASSERT_EQ(h.init(n), Status::kSuccess);
    std::vector<float> x(static_cast<size_t>(n * n), 0.0f), y = poison(static_cast<size_t>(n * n));
    for (int64_t j = 0; j < n; ++j) x[j * n + j] = 1.0f;  // row j is e_j
    ASSERT_EQ(hadamard_transform(make_view(x.data(), n, n), 1.0f, make_view(y.data(), n, n)), Status::kSuccess);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(y[j * n + i], static_cast<float>(h(i, j))) << "n=" << n << " (H·e_" << j << ")[" << i << "]";
  }
}

// With scale 1/√n the transform is orthonormal: it preserves norms and inner products (the
// identity W_out'·yh = W_out·y of SPEC §2 rests on this). On integer vectors H·v is exact, and
// Hᵀ(H·v) == n·v exactly; for Sylvester sizes (H symmetric) applying the transform twice gives
// n·v exactly.
TEST(ReferenceHadamard, TransformIsOrthogonal) {
  auto rng = test::make_rng(0x7a3);
  double worst_norm_rel = 0;
  for (int64_t n : {1, 2, 4, 12, 20, 24, 28, 40, 56, 128, 1536, 5120}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    constexpr int64_t M = 3;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
    // Norms and inner products, real-valued rows.
    auto x = test::random_normal(static_cast<size_t>(M * n), rng);
    auto y = poison(x.size());
    ASSERT_EQ(hadamard_transform(make_view(x.data(), M, n), scale, make_view(y.data(), M, n)), Status::kSuccess);
    for (int64_t a = 0; a < M; ++a)
      for (int64_t b = a; b < M; ++b) {
        double dx = 0, dy = 0, nx = 0;
        for (int64_t i = 0; i < n; ++i) {
          dx += double(x[a * n + i]) * x[b * n + i];
          dy += double(y[a * n + i]) * y[b * n + i];
          nx += double(x[a * n + i]) * x[a * n + i];
        }
        const double err = std::fabs(dy - dx);
        if (a == b) worst_norm_rel = std::max(worst_norm_rel, err / nx);
        ASSERT_LE(err, 1e-5 * std::max(nx, 1.0)) << "rows " << a << ", " << b << ": <Hx,Hy>/n " << dy
                                                  << " vs <x,y> " << dx;
      }
    // Integer rows: everything exact.
    std::uniform_int_distribution<int> dv(-8, 8);
    std::vector<float> v(static_cast<size_t>(M * n));
    for (auto& e : v) e = static_cast<float>(dv(rng));
    auto hv = poison(v.size());
    ASSERT_EQ(hadamard_transform(make_view(v.data(), M, n), 1.0f, make_view(hv.data(), M, n)), Status::kSuccess);
    HadamardEntries h;
    ASSERT_EQ(h.init(n), Status::kSuccess);
    for (int64_t r = 0; r < M; ++r) {
      std::vector<int64_t> hvi(static_cast<size_t>(n)), back(static_cast<size_t>(n), 0);
      for (int64_t i = 0; i < n; ++i) {
        const float f = hv[r * n + i];
        ASSERT_EQ(f, std::nearbyint(f)) << "H·v not integral at row " << r << " [" << i << "]";
        hvi[i] = static_cast<int64_t>(f);
      }
      // Hᵀ(H·v): (Hᵀ)(i, j) = H(j, i).
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < n; ++i) back[i] += h(j, i) * hvi[j];
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(back[i], n * static_cast<int64_t>(v[r * n + i])) << "Hᵀ·H·v row " << r << " [" << i << "]";
    }
    if ((n & (n - 1)) == 0) {  // Sylvester: H symmetric, H·H = n·I
      auto hhv = poison(v.size());
      ASSERT_EQ(hadamard_transform(make_view(static_cast<const float*>(hv.data()), M, n), 1.0f,
                                   make_view(hhv.data(), M, n)),
                Status::kSuccess);
      for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(hhv[i], static_cast<float>(n) * v[i]) << "H·H·v [" << i << "]";
      // Twice with 1/√n: the identity up to fp32 rounding.
      auto once = poison(x.size()), twice = poison(x.size());
      ASSERT_EQ(hadamard_transform(make_view(x.data(), M, n), scale, make_view(once.data(), M, n)), Status::kSuccess);
      ASSERT_EQ(hadamard_transform(make_view(static_cast<const float*>(once.data()), M, n), scale,
                                   make_view(twice.data(), M, n)),
                Status::kSuccess);
      EXPECT_TRUE(test::all_close(twice, x, test::kTolF32, "H·H·x/n"));
    }
  }
  std::printf("[ measured ] worst | |Hx/sqrt(n)|^2 - |x|^2 | / |x|^2 = %.3g\n", worst_norm_rel);
}

TEST(ReferenceHadamard, TransformStridedInputAndBadArguments) {
  auto rng = test::make_rng(0x51d);
  const int64_t M = 5, n = 24;
  auto buf = test::random_normal(static_cast<size_t>(M * 2 * n), rng);  // x = buf[:, n:2n]
  std::vector<float> xc(static_cast<size_t>(M * n));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t i = 0; i < n; ++i) xc[r * n + i] = buf[r * 2 * n + n + i];
  auto wide = make_view(static_cast<const float*>(buf.data()), M, 2 * n);
  auto xs = wide.slice(1, n, n);
  auto y1 = poison(xc.size()), y2 = poison(xc.size());
  ASSERT_EQ(hadamard_transform(xs, 0.5f, make_view(y1.data(), M, n)), Status::kSuccess);
  ASSERT_EQ(hadamard_transform(make_view(static_cast<const float*>(xc.data()), M, n), 0.5f,
                               make_view(y2.data(), M, n)),
            Status::kSuccess);
  ASSERT_TRUE(test::all_equal(y1.data(), y2.data(), y1.size(), "strided vs contiguous"));
  std::vector<int8_t> q1(xc.size()), q2(xc.size());
  ASSERT_EQ(hadamard_quantize(xs, 10.0f, make_view(q1.data(), M, n)), Status::kSuccess);
  ASSERT_EQ(hadamard_quantize(make_view(static_cast<const float*>(xc.data()), M, n), 10.0f,
                              make_view(q2.data(), M, n)),
            Status::kSuccess);
  ASSERT_TRUE(test::all_equal(q1.data(), q2.data(), q1.size(), "strided vs contiguous (int8)"));

  auto xv = make_view(static_cast<const float*>(xc.data()), M, n);
  EXPECT_EQ(hadamard_transform(xv, 1.0f, make_view(y1.data(), M - 1, n)), Status::kErrorInvalidArgument);
  EXPECT_EQ(hadamard_transform(xv, 1.0f, make_view(y1.data(), M, n - 1)), Status::kErrorInvalidArgument);
  EXPECT_EQ(hadamard_transform(xv, 1.0f, make_view(static_cast<float*>(nullptr), M, n)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(hadamard_transform(make_view(static_cast<const float*>(nullptr), M, n), 1.0f, make_view(y1.data(), M, n)),
            Status::kErrorInvalidArgument);
  EXPECT_EQ(hadamard_quantize(xv, 1.0f, make_view(q1.data(), M + 1, n)), Status::kErrorInvalidArgument);
  EXPECT_EQ(hadamard_quantize(xv, 1.0f, make_view(static_cast<int8_t*>(nullptr), M, n)),
            Status::kErrorInvalidArgument);
}

// hadamard_quantize evaluates q8(fp32(H·x)_i · factor) with the single fp32 factor
// hadamard_quant_factor(n, inv_s) = fp32(1/√n) · inv_s: bit-exact against that expression built
// from hadamard_transform(x, 1). Quantizing the output of hadamard_transform(x, 1/√n) times inv_s
// is a different fp32 expression, (h · fp32(1/√n)) · inv_s vs h · (fp32(1/√n) · inv_s), two
// roundings against one: it can differ by one step where the product lands within an ulp of a
// .5 boundary. When 1/√n is a power of two (n = 4^j) the first product is exact and the two agree.
TEST(ReferenceHadamard, QuantizeIsTheDocumentedSingleFactorExpression) {
  auto rng = test::make_rng(0x9a7);
  size_t total = 0, total_two_step_diff = 0;
  for (int64_t n : {1, 2, 4, 12, 16, 20, 24, 28, 40, 64, 96, 160, 1536}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const int64_t M = std::max<int64_t>(4, 200000 / (n * n) + 1);
    // Rotated values ~ N(0, 3²); inv_s puts |v| = 6 at 127 so the tails saturate at both ends.
    auto x = test::random_normal(static_cast<size_t>(M * n), rng, 0.0f, 3.0f);
    const float inv_s = 127.0f / 6.0f;
    const float factor = hadamard_quant_factor(n, inv_s);
    ASSERT_EQ(factor, static_cast<float>(1.0 / std::sqrt(static_cast<double>(n))) * inv_s);
    std::vector<int8_t> q(x.size(), 77);
    ASSERT_EQ(hadamard_quantize(make_view(static_cast<const float*>(x.data()), M, n), inv_s, make_view(q.data(), M, n)),
              Status::kSuccess);
    auto h1 = poison(x.size()), hs = poison(x.size());
    ASSERT_EQ(hadamard_transform(make_view(static_cast<const float*>(x.data()), M, n), 1.0f,
                                 make_view(h1.data(), M, n)),
              Status::kSuccess);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
    ASSERT_EQ(hadamard_transform(make_view(static_cast<const float*>(x.data()), M, n), scale,
                                 make_view(hs.data(), M, n)),
              Status::kSuccess);
    std::vector<int8_t> ref1(x.size()), ref2(x.size());
    int sat_hi = 0, sat_lo = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      ref1[i] = quantize_i8(h1[i], factor);
      ref2[i] = quantize_i8(hs[i], inv_s);
      sat_hi += ref1[i] == 127;
      sat_lo += ref1[i] == -128;
    }
    ASSERT_TRUE(test::all_equal(q.data(), ref1.data(), q.size(), "q8(H·x · factor)"));
    EXPECT_GT(sat_hi, 0);
    EXPECT_GT(sat_lo, 0);
    size_t diff = 0;
    for (size_t i = 0; i < x.size(); ++i) diff += q[i] != ref2[i];
    const bool power_of_4 = (n & (n - 1)) == 0 && (__builtin_ctzll(static_cast<unsigned long long>(n)) % 2 == 0);
    if (power_of_4) {
      EXPECT_EQ(diff, 0u) << "1/√n is a power of two: both expressions are the same rounding";
    } else {
      EXPECT_TRUE(test::int8_close(q.data(), ref2.data(), q.size(), "q8((H·x/√n) · inv_s)", 1e-3));
    }
    total += x.size();
    total_two_step_diff += diff;
  }
  std::printf("[ measured ] hadamard_quantize vs q8(hadamard_transform(x, 1/sqrt(n)) * inv_s): %zu of %zu "
              "elements differ by one step\n",
              total_two_step_diff, total);
}

// The two expressions above are not the same fp32 computation: find an input where they differ
// and show it through the library calls themselves (n = 2, x = (a, 0), so H·x = (a, a) exactly).
TEST(ReferenceHadamard, TwoStepQuantizationIsNotBitExact) {
  const int64_t n = 2;
  const float inv_s = 127.0f / 6.0f;
  const float scale = static_cast<float>(1.0 / std::sqrt(2.0));
  const float factor = hadamard_quant_factor(n, inv_s);
  auto rng = test::make_rng(0x2e7);
  std::uniform_real_distribution<float> d(-8.0f, 8.0f);
  float a = 0.0f;
  bool found = false;
  for (int it = 0; it < 50000000 && !found; ++it) {
    a = d(rng);
    found = quantize_i8(a * scale, inv_s) != quantize_i8(a, factor);
  }
  ASSERT_TRUE(found) << "expected a boundary case within the search budget";
  const float x[2] = {a, 0.0f};
  int8_t q[2] = {99, 99};
  float hs[2] = {0, 0};
  ASSERT_EQ(hadamard_quantize(make_view(x, 1, n), inv_s, make_view(q, 1, n)), Status::kSuccess);
  ASSERT_EQ(hadamard_transform(make_view(x, 1, n), scale, make_view(hs, 1, n)), Status::kSuccess);
  EXPECT_EQ(q[0], quantize_i8(a, factor));
  EXPECT_NE(q[0], quantize_i8(hs[0], inv_s));
  EXPECT_EQ(std::abs(int(q[0]) - int(quantize_i8(hs[0], inv_s))), 1);
  std::printf("[ measured ] counter-example a = %.9g: (a*fp32(1/sqrt2))*inv_s = %.9g, a*factor = %.9g\n", a,
              (a * scale) * inv_s, a * factor);
}
