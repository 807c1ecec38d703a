// Host-side arithmetic of the GPU calibration observers (quant/observer_plan.hpp): the quantile
// ranks agree with reference::abs_quantile, the top-tail capacities are large enough for every
// sample size up to the planned one, and a host model of the calibrator's streaming top tails
// (chunks merged per sample, samples merged into a global tail) reproduces the reference's
// per-sample and exact global quantiles bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/random.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/quant/observer_plan.hpp"
#include "quamba/reference/quant.hpp"

namespace {

using quamba::Status;
namespace q = quamba::quant;
namespace ref = quamba::reference;

using quamba::float_bits;

// The quantile from an ascending array through quantile_rank, with the reference's expression.
float quantile_from_sorted(const std::vector<float>& a, uint64_t base, uint64_t n, double alpha) {
  const q::QuantileRank r = q::quantile_rank(n, alpha);
  EXPECT_GE(r.lo, base) << "rank below the kept tail";
  const float lo = a[r.lo - base], hi = a[r.hi - base];
  return static_cast<float>(static_cast<double>(lo) + r.frac * (static_cast<double>(hi) - lo));
}

TEST(ObserverPlan, QuantileRankMatchesReference) {
  auto rng = quamba::test::make_rng(11);
  for (size_t n : {1, 2, 3, 4, 10, 1000, 4097}) {
    for (double alpha : {0.0, 0.25, 0.5, 0.9, 0.99999, 1.0, 1.0 / 3.0}) {
      std::vector<float> v = quamba::test::random_normal(n, rng);
      float want = 0.f;
      ASSERT_EQ(ref::abs_quantile(v, alpha, &want), Status::kSuccess);
      for (auto& x : v) x = std::fabs(x);
      std::sort(v.begin(), v.end());
      const q::QuantileRank r = q::quantile_rank(n, alpha);
      EXPECT_LE(r.lo, r.hi);
      EXPECT_LT(r.hi, n);
      EXPECT_LE(r.hi, r.lo + 1);
      EXPECT_GE(r.frac, 0.0);
      EXPECT_LT(r.frac, 1.0);
      EXPECT_EQ(float_bits(quantile_from_sorted(v, 0, n, alpha)), float_bits(want)) << "n=" << n << " alpha=" << alpha;
    }
  }
}

TEST(ObserverPlan, TailCapacityCoversEverySmallerSize) {
  for (double alpha : {0.0, 0.3, 0.5, 0.9, 0.99, 0.999, 0.99999, 1.0, 0.9999999999999999}) {
    for (uint64_t nmax : std::vector<uint64_t>{1, 2, 3, 37, 1000, 4810, 65537}) {
      const uint64_t cap = q::top_tail_capacity(nmax, alpha);
      EXPECT_GE(cap, 1u);
      EXPECT_LE(cap, nmax);
      for (uint64_t m = 1; m <= nmax; ++m) {
        const q::QuantileRank r = q::quantile_rank(m, alpha);
        ASSERT_LE(m - r.lo, cap) << "alpha=" << alpha << " nmax=" << nmax << " m=" << m;
      }
    }
    // Large sizes, sampled: Quamba's 512 samples of 512 tokens with E = 5120.
    const uint64_t big = uint64_t{512} * 512 * 5120;
    const uint64_t cap = q::top_tail_capacity(big, alpha);
    for (uint64_t m : std::vector<uint64_t>{big, big - 1, big / 2 + 1, big / 3, uint64_t{5120} * 511}) {
      const q::QuantileRank r = q::quantile_rank(m, alpha);
      EXPECT_LE(m - r.lo, cap) << "alpha=" << alpha << " m=" << m;
    }
  }
  EXPECT_EQ(q::top_tail_capacity(0, 0.5), 0u);
  // Quamba's setting: a handful of values per layer, not the whole stream.
  EXPECT_LE(q::top_tail_capacity(512ull * 5120ull, 0.99999), 30u);
  EXPECT_LE(q::top_tail_capacity(512ull * 512ull * 5120ull, 0.99999), 13500u);
}

TEST(ObserverPlan, ConfigAndPlan) {
  q::GpuCalibratorConfig c;
  c.n_layer = 64;
  c.d_inner = 5120;
  c.max_sample_tokens = 512;
  c.alpha = 0.99999;
  q::GpuCalibratorPlan p;
  ASSERT_EQ(q::make_plan(c, &p), Status::kSuccess);
  EXPECT_EQ(p.sample_capacity, 512u * 5120u);
  EXPECT_EQ(p.global_tail, 0u);
  EXPECT_EQ(p.sample_tail, q::top_tail_capacity(p.sample_capacity, c.alpha));
  EXPECT_EQ(p.sort_items, p.sample_tail + p.sample_capacity);
  c.keep_u_values = true;
  c.max_total_tokens = 512 * 512;
  ASSERT_EQ(q::make_plan(c, &p), Status::kSuccess);
  EXPECT_EQ(p.global_tail, q::top_tail_capacity(uint64_t(512) * 512 * 5120, c.alpha));
  EXPECT_EQ(p.sample_tail, p.global_tail) << "the sample tail feeds the global one";
  // A small α keeps whole samples (never more than one sample in the sample tail).
  c.alpha = 0.1;
  ASSERT_EQ(q::make_plan(c, &p), Status::kSuccess);
  EXPECT_EQ(p.sample_tail, p.sample_capacity);
  EXPECT_EQ(p.sort_items, std::max(p.sample_tail + p.sample_capacity, p.global_tail + p.sample_tail));
  EXPECT_EQ(q::make_plan(c, nullptr), Status::kErrorInvalidArgument);
  // Invalid configurations.
  auto bad = c;
  bad.max_total_tokens = 511;
  EXPECT_EQ(q::validate_config(bad), Status::kErrorInvalidArgument);
  bad = c;
  bad.alpha = -0.0001;
  EXPECT_EQ(q::validate_config(bad), Status::kErrorInvalidArgument);
  bad = c;
  bad.n_layer = -1;
  EXPECT_EQ(q::validate_config(bad), Status::kErrorInvalidArgument);
  bad = c;
  bad.d_inner = int64_t{1} << 31;
  EXPECT_EQ(q::validate_config(bad), Status::kErrorNotSupported);
  bad = c;  // α = 0.1 over 2^31 values: the global tail would not fit a 32-bit sort
  bad.max_total_tokens = int64_t{1} << 20;
  EXPECT_EQ(q::make_plan(bad, &p), Status::kErrorNotSupported);
}

// Host model of GpuCalibrator's bookkeeping: per chunk, sort [sample tail | chunk] and keep the
// largest plan.sample_tail; per sample, interpolate and merge the sample tail's largest
// plan.global_tail into the global tail. Compared with the reference on every sample and at the end.
TEST(ObserverPlan, StreamingTopTailsAreExact) {
  auto rng = quamba::test::make_rng(12);
  for (double alpha : {0.0, 0.5, 0.9, 0.99999, 1.0}) {
    q::GpuCalibratorConfig c;
    c.n_layer = 1;
    c.d_inner = 13;
    c.max_sample_tokens = 50;
    c.alpha = alpha;
    c.keep_u_values = true;
    c.max_total_tokens = 400;
    q::GpuCalibratorPlan p;
    ASSERT_EQ(q::make_plan(c, &p), Status::kSuccess);
    std::vector<float> global_tail, all;
    ref::PercentileEmaObserver ema;
    ema.alpha = alpha;
    float model_ema = 0.f;
    int64_t samples = 0;
    int64_t total_tokens = 0;
    while (true) {
      const int64_t tokens = 1 + static_cast<int64_t>(rng() % 50);
      if (total_tokens + tokens > c.max_total_tokens) break;
      total_tokens += tokens;
      std::vector<float> sample_tail, sample;
      int64_t left = tokens;
      while (left > 0) {
        const int64_t rows = std::min<int64_t>(left, 1 + static_cast<int64_t>(rng() % 20));
        left -= rows;
        std::vector<float> chunk = quamba::test::random_normal(static_cast<size_t>(rows * c.d_inner), rng);
        if (rng() % 4 == 0) chunk[rng() % chunk.size()] = 1000.f + static_cast<float>(rng() % 100);
        for (auto& x : chunk) x = std::fabs(x);
        sample.insert(sample.end(), chunk.begin(), chunk.end());
        std::vector<float> merged(sample_tail);
        merged.insert(merged.end(), chunk.begin(), chunk.end());
        ASSERT_LE(merged.size(), p.sort_items);
        std::sort(merged.begin(), merged.end());
        const size_t keep = std::min<size_t>(p.sample_tail, merged.size());
        sample_tail.assign(merged.end() - static_cast<std::ptrdiff_t>(keep), merged.end());
      }
      const uint64_t n = sample.size();
      const float cur = quantile_from_sorted(sample_tail, n - sample_tail.size(), n, alpha);
      model_ema = samples == 0 ? cur : model_ema + 0.01f * (cur - model_ema);
      ++samples;
      ASSERT_EQ(ema.observe_sample(sample), Status::kSuccess);
      ASSERT_EQ(float_bits(model_ema), float_bits(ema.value)) << "alpha=" << alpha << " sample " << samples;
      all.insert(all.end(), sample.begin(), sample.end());
      const size_t k = std::min<size_t>(p.global_tail, sample_tail.size());
      std::vector<float> merged(global_tail);
      merged.insert(merged.end(), sample_tail.end() - static_cast<std::ptrdiff_t>(k), sample_tail.end());
      ASSERT_LE(merged.size(), p.sort_items);
      std::sort(merged.begin(), merged.end());
      const size_t keep = std::min<size_t>(p.global_tail, merged.size());
      global_tail.assign(merged.end() - static_cast<std::ptrdiff_t>(keep), merged.end());
    }
    float want = 0.f;
    ASSERT_EQ(ref::abs_quantile(all, alpha, &want), Status::kSuccess);
    const float got = quantile_from_sorted(global_tail, all.size() - global_tail.size(), all.size(), alpha);
    EXPECT_EQ(float_bits(got), float_bits(want)) << "alpha=" << alpha << " n=" << all.size();
  }
}

}  // namespace
