// tests/common/compare.hpp: the tolerance policy, written once.
//
// Float outputs pass when |x - ref| <= atol + rtol·|ref| with the per-dtype constants below.
// Integer outputs of integer-exact paths (GEMM + requant epilogue) must be bit-exact.
// Integer outputs that follow fp32 arithmetic done in a different order or with a different
// exp (RMSNorm statistics, SiLU, Hadamard sums) may differ by one quantization step where the
// fp32 value lands within rounding of a .5 boundary: |q - ref| <= 1 everywhere, and at most
// kInt8OffByOneFraction·n + 1 elements off by one (the +1 lets a small output have one).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace quamba::test {

struct Tolerance {
  double atol, rtol;
};
inline constexpr Tolerance kTolF32{1e-5, 1e-5};        // same-algorithm fp32 results
inline constexpr Tolerance kTolF32Reorder{1e-4, 1e-4}; // fp32 with different summation order / exp
inline constexpr Tolerance kTolF16{2e-3, 2e-3};        // fp16 outputs (11-bit mantissa ≈ 4.9e-4 ulp)
inline constexpr Tolerance kTolScan{1e-3, 2e-3};       // long fp32 recurrences vs the reference
inline constexpr double kInt8OffByOneFraction = 1e-3;

// Compares n floats; reports the first few failures and the worst one. NaN never passes.
inline ::testing::AssertionResult all_close(const float* got, const float* ref, size_t n, Tolerance tol,
                                            const std::string& what = "") {
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  std::string first;
  for (size_t i = 0; i < n; ++i) {
    const double g = got[i], r = ref[i];
    const double lim = tol.atol + tol.rtol * std::fabs(r);
    const double err = std::fabs(g - r);
    if (!(err <= lim)) {
      if (bad < 5) first += "\n  [" + std::to_string(i) + "] got " + std::to_string(g) + " ref " + std::to_string(r);
      ++bad;
      const double excess = std::isnan(err) ? 1e300 : err - lim;
      if (excess > worst_excess) { worst_excess = excess; worst = i; }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << n << " elements outside atol="
                                       << tol.atol << " rtol=" << tol.rtol << "; worst at [" << worst
                                       << "] got " << got[worst] << " ref " << ref[worst] << first;
}

inline ::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& ref,
                                            Tolerance tol, const std::string& what = "") {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << what << ": size mismatch";
  return all_close(got.data(), ref.data(), got.size(), tol, what);
}

// Bit-exact integer comparison.
template <typename T>
::testing::AssertionResult all_equal(const T* got, const T* ref, size_t n, const std::string& what = "") {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i)
    if (got[i] != ref[i]) { if (bad++ == 0) first = i; }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << n << " differ; first at [" << first
                                       << "] got " << +got[first] << " ref " << +ref[first];
}

// int8 outputs after reordered fp32 math: within one step, and rarely off by one.
inline ::testing::AssertionResult int8_close(const int8_t* got, const int8_t* ref, size_t n,
                                             const std::string& what = "",
                                             double max_fraction = kInt8OffByOneFraction) {
  size_t off1 = 0;
  for (size_t i = 0; i < n; ++i) {
    const int d = std::abs(int(got[i]) - int(ref[i]));
    if (d > 1)
      return ::testing::AssertionFailure() << what << ": element " << i << " got " << int(got[i]) << " ref "
                                           << int(ref[i]) << " (more than one step)";
    off1 += d;
  }
  if (n == 0 || double(off1) <= max_fraction * double(n) + 1) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << off1 << " of " << n << " elements off by one (limit "
                                       << max_fraction << ")";
}

}  // namespace quamba::test
