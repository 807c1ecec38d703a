// tests/common/random.hpp: seeded random inputs (never zeros) for tests and benchmarks.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace quamba::test {

// Seed per test: a fixed base mixed with the test's own salt, printed by failing asserts
// through the values themselves. Fresh inputs per shape, reproducible per run.
inline std::mt19937_64 make_rng(uint64_t salt) { return std::mt19937_64(0x9e3779b97f4a7c15ull ^ (salt * 0x100000001b3ull)); }

inline std::vector<float> random_floats(size_t n, std::mt19937_64& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<float> random_normal(size_t n, std::mt19937_64& rng, float mean = 0.f, float stddev = 1.f) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Uniform int8 in [lo, hi], with both ends reachable.
inline std::vector<int8_t> random_int8(size_t n, std::mt19937_64& rng, int lo = -128, int hi = 127) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}

// n token ids uniform in [0, vocab), from make_rng(salt).
inline std::vector<int32_t> random_token_ids(size_t n, int64_t vocab, uint64_t salt) {
  auto rng = make_rng(salt);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace quamba::test
