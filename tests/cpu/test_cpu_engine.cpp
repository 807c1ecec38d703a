// CpuEngine (quamba/model/cpu_engine.hpp) against direct calls of the host reference, fp32 and
// W8A8: chunked prefill == one reference prefill (bit for bit), decode == reference decode_step
// (bit for bit) and == a longer prefill (same-algorithm tolerance), a batched decode == each slot
// alone, reset_slot == a fresh slot; bad input gives the documented Status and changes nothing.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/compare.hpp"
#include "common/model_fixtures.hpp"
#include "common/random.hpp"
#include "quamba/model/cpu_engine.hpp"

using namespace quamba;
using namespace quamba::reference;
using model::Engine;
using model::EngineOptions;

namespace {

constexpr int64_t kVocab = 61;

ModelConfig small_config() { return make_config(32, 2, kVocab); }  // E = 64 (Sylvester Hadamard)

std::vector<int32_t> random_ids(size_t n, uint64_t salt) {
  return test::random_token_ids(static_cast<size_t>(n), kVocab, salt);
}

const ModelWeights& fp_model() {
  static const ModelWeights m = test::random_model(small_config(), 5);
  return m;
}

const QuantizedModel& q_model() {
  static const QuantizedModel q =
      test::calibrate_and_quantize(fp_model(), {random_ids(24, 1), random_ids(24, 2)}, recipe_quamba());
  return q;
}

std::unique_ptr<Engine> make_engine(bool w8a8, int64_t batch, int64_t chunk) {
  EngineOptions o;
  o.batch = batch;
  o.prefill_chunk = chunk;
  std::unique_ptr<Engine> e;
  std::string err;
  const Status s = w8a8 ? model::make_cpu_engine_w8a8(q_model(), o, &e, &err)
                        : model::make_cpu_engine_fp32(fp_model(), o, &e, &err);
  EXPECT_EQ(s, Status::kSuccess) << err;
  return e;
}

// Reference: one prefill of `ids` from a fresh state (all logits), then decode steps.
template <typename Model, typename ConvT>
std::vector<float> ref_run(const Model& m, const std::vector<int32_t>& ids, const std::vector<int32_t>& steps) {
  const int64_t L = static_cast<int64_t>(ids.size()), V = m.config.vocab;
  ModelCache<ConvT> c;
  EXPECT_EQ(init_cache(m.config, 1, &c), Status::kSuccess);
  std::vector<float> out((ids.size() + steps.size()) * V);
  EXPECT_EQ(prefill(m, ids.data(), 1, L, nullptr, &c, make_view(out.data(), int64_t{1}, L, V)), Status::kSuccess);
  for (size_t s = 0; s < steps.size(); ++s)
    EXPECT_EQ(decode_step(m, &steps[s], 1, &c, make_view(out.data() + (L + s) * V, int64_t{1}, V)), Status::kSuccess);
  return out;
}

std::vector<float> ref_run(bool w8a8, const std::vector<int32_t>& ids, const std::vector<int32_t>& steps) {
  return w8a8 ? ref_run<QuantizedModel, int8_t>(q_model(), ids, steps) : ref_run<ModelWeights, float>(fp_model(), ids, steps);
}

::testing::AssertionResult bit_equal(const float* a, const float* b, size_t n, const std::string& what) {
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, sizeof(float)) != 0)
      return ::testing::AssertionFailure() << what << ": element " << i << " differs: " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

class CpuEngineTest : public ::testing::TestWithParam<bool> {};  // param: W8A8

}  // namespace

TEST_P(CpuEngineTest, ReportsItself) {
  auto e = make_engine(GetParam(), 3, 16);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->backend(), model::Backend::kCpu);
  EXPECT_EQ(e->precision(), GetParam() ? model::Precision::kW8A8 : model::Precision::kFp32);
  EXPECT_EQ(e->batch(), 3);
  EXPECT_EQ(e->config().vocab, kVocab);
  const ModelConfig c = small_config();
  const int64_t layer_params = c.d_model + 2 * c.d_inner * c.d_model + c.d_inner * c.d_conv + c.d_inner +
                               c.xdbl_dim() * c.d_inner + c.d_inner * c.dt_rank + c.d_inner + c.d_inner * c.d_state +
                               c.d_inner + c.d_model * c.d_inner;
  const int64_t rest = (c.vocab * c.d_model + 2 * c.d_model) * 4;
  const int64_t expect = GetParam() ? c.n_layer * (layer_params + 3 * c.d_model) + rest : c.n_layer * layer_params * 4 + rest;
  EXPECT_EQ(e->weight_bytes(), expect);
}

// Chunks of 1, 5 (tail 3), 23 (one) and 100 (> n) tokens all equal one reference prefill.
TEST_P(CpuEngineTest, ChunkedPrefillEqualsOnePrefill) {
  const bool q = GetParam();
  const auto ids = random_ids(23, 31);
  const auto ref = ref_run(q, ids, {});
  const size_t V = kVocab;
  for (int64_t chunk : {1, 5, 23, 100}) {
    auto e = make_engine(q, 1, chunk);
    std::vector<float> all(ids.size() * V, -7.0f);
    ASSERT_EQ(e->prefill(0, ids.data(), 23, all.data(), true), Status::kSuccess);
    EXPECT_TRUE(bit_equal(all.data(), ref.data(), all.size(), "all logits, chunk " + std::to_string(chunk)));
    // Same again in a fresh slot with only the last row.
    ASSERT_EQ(e->reset_slot(0), Status::kSuccess);
    std::vector<float> last(V, -7.0f);
    ASSERT_EQ(e->prefill(0, ids.data(), 23, last.data(), false), Status::kSuccess);
    EXPECT_TRUE(bit_equal(last.data(), ref.data() + 22 * V, V, "last logits, chunk " + std::to_string(chunk)));
  }
}

// Prefill in two calls (the second continuing the state) == one call; decode == decode_step.
TEST_P(CpuEngineTest, ContinuationAndDecodeMatchReference) {
  const bool q = GetParam();
  const auto ids = random_ids(17, 41);
  const auto steps = random_ids(4, 42);
  const auto ref = ref_run(q, ids, steps);
  const size_t V = kVocab;
  auto e = make_engine(q, 1, 4);
  std::vector<float> a(10 * V), b(7 * V), lg(V);
  ASSERT_EQ(e->prefill(0, ids.data(), 10, a.data(), true), Status::kSuccess);
  ASSERT_EQ(e->prefill(0, ids.data() + 10, 7, b.data(), true), Status::kSuccess);
  EXPECT_TRUE(bit_equal(a.data(), ref.data(), a.size(), "first call"));
  EXPECT_TRUE(bit_equal(b.data(), ref.data() + 10 * V, b.size(), "continued call"));
  for (size_t s = 0; s < steps.size(); ++s) {
    ASSERT_EQ(e->decode(&steps[s], lg.data()), Status::kSuccess);
    EXPECT_TRUE(bit_equal(lg.data(), ref.data() + (17 + s) * V, V, "decode step " + std::to_string(s)));
  }
}

// Decode steps after a prefill == a longer prefill (decode and prefill evaluate the same
// per-token formulas; the reference suite measures them bit-identical, the tolerance is the
// same-algorithm one).
TEST_P(CpuEngineTest, DecodeEqualsLongerPrefill) {
  const bool q = GetParam();
  const auto ids = random_ids(20, 51);
  const size_t V = kVocab;
  auto longer = make_engine(q, 1, 8);
  std::vector<float> all(20 * V);
  ASSERT_EQ(longer->prefill(0, ids.data(), 20, all.data(), true), Status::kSuccess);
  auto e = make_engine(q, 1, 8);
  std::vector<float> lg(V);
  ASSERT_EQ(e->prefill(0, ids.data(), 12, nullptr, false), Status::kSuccess);
  for (size_t t = 12; t < 20; ++t) {
    ASSERT_EQ(e->decode(&ids[t], lg.data()), Status::kSuccess);
    EXPECT_TRUE(test::all_close(lg.data(), all.data() + t * V, V, test::kTolF32, "position " + std::to_string(t)));
  }
}

// Three slots with different prompts, decoded together == each alone in a batch-1 engine.
TEST_P(CpuEngineTest, BatchDecodeEqualsSeparate) {
  const bool q = GetParam();
  const size_t V = kVocab;
  const int64_t B = 3;
  auto batched = make_engine(q, B, 6);
  std::vector<std::vector<int32_t>> prompts = {random_ids(9, 61), random_ids(1, 62), random_ids(14, 63)};
  const auto steps = random_ids(3 * B, 64);
  std::vector<std::unique_ptr<Engine>> alone;
  std::vector<float> lg(V), lg_b(B * V);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    std::vector<float> x(V), y(V);
    ASSERT_EQ(batched->prefill(b, p.data(), static_cast<int64_t>(p.size()), x.data(), false), Status::kSuccess);
    alone.push_back(make_engine(q, 1, 6));
    ASSERT_EQ(alone.back()->prefill(0, p.data(), static_cast<int64_t>(p.size()), y.data(), false), Status::kSuccess);
    EXPECT_TRUE(bit_equal(x.data(), y.data(), V, "prefill slot " + std::to_string(b)));
  }
  for (int s = 0; s < 3; ++s) {
    ASSERT_EQ(batched->decode(steps.data() + s * B, lg_b.data()), Status::kSuccess);
    for (int64_t b = 0; b < B; ++b) {
      ASSERT_EQ(alone[static_cast<size_t>(b)]->decode(&steps[s * B + b], lg.data()), Status::kSuccess);
      EXPECT_TRUE(bit_equal(lg_b.data() + b * V, lg.data(), V,
                            "decode step " + std::to_string(s) + " slot " + std::to_string(b)));
    }
  }
  // Decoding without logits still advances the state.
  ASSERT_EQ(batched->decode(steps.data(), nullptr), Status::kSuccess);
  ASSERT_EQ(alone[1]->decode(&steps[1], nullptr), Status::kSuccess);
  ASSERT_EQ(batched->decode(steps.data(), lg_b.data()), Status::kSuccess);
  ASSERT_EQ(alone[1]->decode(&steps[1], lg.data()), Status::kSuccess);
  EXPECT_TRUE(bit_equal(lg_b.data() + V, lg.data(), V, "after a decode without logits"));
}

// reset_slot zeroes one slot only; reset(batch) re-creates all of them.
TEST_P(CpuEngineTest, ResetSlotAndReset) {
  const bool q = GetParam();
  const size_t V = kVocab;
  const auto p0 = random_ids(7, 71), p1 = random_ids(11, 72), p2 = random_ids(5, 73);
  const auto ref1 = ref_run(q, p1, {});
  const auto ref2 = ref_run(q, p2, {});
  auto e = make_engine(q, 2, 4);
  std::vector<float> lg(V), lg_b(2 * V);
  ASSERT_EQ(e->prefill(0, p0.data(), 7, nullptr, false), Status::kSuccess);
  ASSERT_EQ(e->prefill(1, p1.data(), 11, lg.data(), false), Status::kSuccess);
  EXPECT_TRUE(bit_equal(lg.data(), ref1.data() + 10 * V, V, "slot 1 after slot 0 was used"));
  ASSERT_EQ(e->reset_slot(0), Status::kSuccess);
  ASSERT_EQ(e->prefill(0, p2.data(), 5, lg.data(), false), Status::kSuccess);
  EXPECT_TRUE(bit_equal(lg.data(), ref2.data() + 4 * V, V, "slot 0 after reset_slot"));
  ASSERT_EQ(e->reset(1), Status::kSuccess);
  EXPECT_EQ(e->batch(), 1);
  ASSERT_EQ(e->prefill(0, p2.data(), 5, lg.data(), false), Status::kSuccess);
  EXPECT_TRUE(bit_equal(lg.data(), ref2.data() + 4 * V, V, "after reset(1)"));
  EXPECT_EQ(e->prefill(1, p2.data(), 5, lg.data(), false), Status::kErrorInvalidArgument);
}

// Bad input: the documented Status, and no state change (checked by what the next calls give).
TEST_P(CpuEngineTest, BadInputChangesNothing) {
  const bool q = GetParam();
  const size_t V = kVocab;
  const auto ids = random_ids(13, 81);
  const auto steps = random_ids(2, 82);
  const auto ref = ref_run(q, ids, steps);
  auto e = make_engine(q, 2, 4);
  std::vector<float> lg(V, 0.0f), lg_b(2 * V);
  ASSERT_EQ(e->prefill(0, ids.data(), 6, nullptr, false), Status::kSuccess);
  // A bad id in a later chunk: the earlier chunks must not have been applied.
  std::vector<int32_t> bad(ids.begin() + 6, ids.end());
  bad[5] = static_cast<int32_t>(kVocab);
  EXPECT_EQ(e->prefill(0, bad.data(), 7, lg.data(), true), Status::kErrorOutOfRange);
  bad[5] = -1;
  EXPECT_EQ(e->prefill(0, bad.data(), 7, lg.data(), false), Status::kErrorOutOfRange);
  EXPECT_EQ(e->prefill(2, ids.data(), 3, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->prefill(-1, ids.data(), 3, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->prefill(0, ids.data(), 0, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->prefill(0, ids.data(), -4, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->prefill(0, nullptr, 3, nullptr, false), Status::kErrorInvalidArgument);
  const int32_t bad_step[2] = {steps[0], static_cast<int32_t>(kVocab + 5)};
  EXPECT_EQ(e->decode(bad_step, lg_b.data()), Status::kErrorOutOfRange);
  EXPECT_EQ(e->decode(nullptr, lg_b.data()), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->reset_slot(2), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->reset_slot(-1), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->reset(0), Status::kErrorInvalidArgument);
  EXPECT_EQ(e->batch(), 2);
  // Slot 0 continues as if none of the above had happened.
  std::vector<float> rest(7 * V);
  ASSERT_EQ(e->prefill(0, ids.data() + 6, 7, rest.data(), true), Status::kSuccess);
  EXPECT_TRUE(bit_equal(rest.data(), ref.data() + 6 * V, rest.size(), "prefill after rejected calls"));
  const int32_t two[2] = {steps[0], 0};
  ASSERT_EQ(e->decode(two, lg_b.data()), Status::kSuccess);
  EXPECT_TRUE(bit_equal(lg_b.data(), ref.data() + 13 * V, V, "decode after rejected calls"));
}

INSTANTIATE_TEST_SUITE_P(Precision, CpuEngineTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "W8A8" : "Fp32"; });

TEST(CpuEngineFactory, RejectsBadOptionsAndModels) {
  std::unique_ptr<Engine> e;
  std::string err;
  EngineOptions o;
  o.batch = 0;
  EXPECT_EQ(model::make_cpu_engine_fp32(fp_model(), o, &e, &err), Status::kErrorInvalidArgument);
  EXPECT_NE(err.find("batch"), std::string::npos) << err;
  EXPECT_FALSE(e);
  o.batch = 1;
  o.prefill_chunk = 0;
  EXPECT_EQ(model::make_cpu_engine_w8a8(q_model(), o, &e, &err), Status::kErrorInvalidArgument);
  o.prefill_chunk = 8;
  EXPECT_EQ(model::make_cpu_engine_fp32(fp_model(), o, nullptr, &err), Status::kErrorInvalidArgument);
  ModelWeights broken = fp_model();
  broken.layers[1].x_proj.pop_back();
  err.clear();
  EXPECT_EQ(model::make_cpu_engine_fp32(std::move(broken), o, &e, &err), Status::kErrorInvalidArgument);
  EXPECT_FALSE(err.empty());
  QuantizedModel qb = q_model();
  qb.layers[0].act.s_u = 0.0f;
  EXPECT_EQ(model::make_cpu_engine_w8a8(qb, o, &e, &err), Status::kErrorInvalidArgument);
  EXPECT_FALSE(e);
  ModelWeights moved = fp_model();
  EXPECT_EQ(model::make_cpu_engine_fp32(std::move(moved), o, &e, &err), Status::kSuccess);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->batch(), 1);
}
