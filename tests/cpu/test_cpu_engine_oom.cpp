// CpuEngine (quamba/model/cpu_engine.hpp) under host allocation failure: the Engine contract says
// "state unchanged on every error" and "engines never throw". This binary replaces the global
// operator new so that the k-th allocation after arming throws std::bad_alloc, and for every k
// until the call succeeds checks that prefill / decode return kErrorInternal (no exception) and
// that the next successful calls give the same logits, bit for bit, as an engine that never
// failed. An allocation failure in layer 1 of a decode step, after layer 0 already stepped its
// cache, would otherwise show up as different logits.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/random.hpp"
#include "quamba/model/cpu_engine.hpp"

namespace {

// Allocation countdown: < 0 disarmed; otherwise the allocation that finds it at 0 fails.
long g_fail_countdown = -1;
bool g_failed = false;

void* counted_alloc(std::size_t n) {
  if (g_fail_countdown >= 0) {
    if (g_fail_countdown == 0) {
      g_fail_countdown = -1;
      g_failed = true;
      throw std::bad_alloc();
    }
    --g_fail_countdown;
  }
  void* p = std::malloc(n == 0 ? 1 : n);
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace quamba;
using namespace quamba::reference;
using model::Engine;
using model::EngineOptions;

namespace {

constexpr int64_t kVocab = 53;
constexpr int64_t kBatch = 2;

ModelConfig small_config() { return make_config(32, 3, kVocab); }  // E = 64, three layers

std::vector<int32_t> ids_of(size_t n, uint64_t salt) { return test::random_token_ids(n, kVocab, salt); }

const ModelWeights& fp_model() {
  static const ModelWeights m = test::random_model(small_config(), 11);
  return m;
}

const QuantizedModel& q_model() {
  static const QuantizedModel q =
      test::calibrate_and_quantize(fp_model(), {ids_of(20, 1), ids_of(20, 2)}, recipe_quamba());
  return q;
}

std::unique_ptr<Engine> make_engine(bool w8a8) {
  EngineOptions o;
  o.batch = kBatch;
  o.prefill_chunk = 4;  // several chunks per prefill
  std::unique_ptr<Engine> e;
  std::string err;
  const Status s = w8a8 ? model::make_cpu_engine_w8a8(q_model(), o, &e, &err)
                        : model::make_cpu_engine_fp32(fp_model(), o, &e, &err);
  EXPECT_EQ(s, Status::kSuccess) << err;
  return e;
}

::testing::AssertionResult bit_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << what << ": sizes differ";
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure() << what << ": element " << i << " differs: " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// Calls f() with the k-th allocation failing, k = 0, 1, ... until f succeeds; every failure
// must be kErrorInternal, and f must not throw. Returns the number of failing allocations seen.
template <typename F>
int fail_each_allocation_until_success(F&& f, const std::string& what) {
  for (long k = 0; k < 100000; ++k) {
    g_failed = false;
    g_fail_countdown = k;
    Status s = Status::kErrorInternal;
    bool threw = false;
    try {
      s = f();
    } catch (...) {
      threw = true;
    }
    g_fail_countdown = -1;
    EXPECT_FALSE(threw) << what << ": an exception escaped with allocation " << k << " failing";
    if (threw) return -1;
    if (!g_failed) {
      EXPECT_EQ(s, Status::kSuccess) << what;
      return static_cast<int>(k);
    }
    EXPECT_EQ(s, Status::kErrorInternal) << what << ": allocation " << k << " failed";
  }
  ADD_FAILURE() << what << ": never succeeded";
  return -1;
}

class CpuEngineOomTest : public ::testing::TestWithParam<bool> {};  // param: W8A8

}  // namespace

// The same sequence of calls on two engines; the second one sees every allocation of every
// call fail once before the call goes through. Logits must agree bit for bit.
TEST_P(CpuEngineOomTest, FailedCallsLeaveTheStateUnchanged) {
  const bool q = GetParam();
  auto ref = make_engine(q);
  auto eng = make_engine(q);
  ASSERT_TRUE(ref && eng);
  const size_t V = kVocab;
  const auto p0 = ids_of(9, 21), p1 = ids_of(6, 22);
  const std::vector<std::vector<int32_t>> steps = {{3, 7}, {11, 0}, {52, 19}};

  std::vector<float> a(p0.size() * V), b(p0.size() * V);
  ASSERT_EQ(ref->prefill(0, p0.data(), int64_t(p0.size()), a.data(), true), Status::kSuccess);
  const int n0 = fail_each_allocation_until_success(
      [&] { return eng->prefill(0, p0.data(), int64_t(p0.size()), b.data(), true); }, "prefill slot 0");
  EXPECT_GT(n0, 0) << "the prefill allocates; the injection must have hit it";
  EXPECT_TRUE(bit_equal(a, b, "prefill slot 0 logits"));

  a.assign(V, 0.f);
  b.assign(V, 0.f);
  ASSERT_EQ(ref->prefill(1, p1.data(), int64_t(p1.size()), a.data(), false), Status::kSuccess);
  fail_each_allocation_until_success([&] { return eng->prefill(1, p1.data(), int64_t(p1.size()), b.data(), false); },
                                     "prefill slot 1");
  EXPECT_TRUE(bit_equal(a, b, "prefill slot 1 logits"));

  for (size_t s = 0; s < steps.size(); ++s) {
    a.assign(kBatch * V, 0.f);
    b.assign(kBatch * V, 0.f);
    ASSERT_EQ(ref->decode(steps[s].data(), a.data()), Status::kSuccess);
    const int n = fail_each_allocation_until_success([&] { return eng->decode(steps[s].data(), b.data()); },
                                                     "decode step " + std::to_string(s));
    EXPECT_GT(n, 2) << "a decode step of three layers allocates in every layer";
    EXPECT_TRUE(bit_equal(a, b, "decode step " + std::to_string(s) + " logits"));
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CpuEngineOomTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "W8A8" : "Fp32"; });
