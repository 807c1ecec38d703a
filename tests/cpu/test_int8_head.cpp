// The int8 embedding / lm_head option of the W8A8 recipe (QuantRecipe::int8_head): per-row
// weight-only int8 (reference/quant.hpp: RowQuantI8, quantize_rows_absmax, dequantize_rows) and
// its use in reference::quantize_model / validate_model / the forward (reference/model.hpp) and
// in the CPU engine. The checkpoint side (format_version 2) is in test_model_checkpoint.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/random.hpp"
#include "quamba/model/cpu_engine.hpp"
#include "quamba/reference/model.hpp"

using namespace quamba;
using namespace quamba::reference;

namespace {

constexpr int64_t kVocab = 83;

ModelConfig config_tied() { return make_config(64, 2, kVocab); }  // E = 128 (Sylvester Hadamard)
ModelConfig config_untied() {                                     // E = 96 = 12·8 (Paley I)
  ModelConfig c = make_config(48, 2, kVocab);
  c.tie_embeddings = false;
  return c;
}

ModelWeights make_model(const ModelConfig& c, uint64_t seed) {
  ModelWeights m;
  EXPECT_EQ(init_random_model(c, seed, &m), Status::kSuccess);
  return m;
}

CalibrationStats calibrate_on_random(const ModelWeights& m, uint64_t salt) {
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 3; ++i) seqs.push_back(test::random_token_ids(40, m.config.vocab, salt * 10 + i));
  CalibrationStats st;
  EXPECT_EQ(calibrate(m, seqs, CalibrationOptions{}, &st), Status::kSuccess);
  return st;
}

QuantizedModel quantized(const ModelWeights& m, const CalibrationStats& st, QuantRecipe r) {
  ModelScales s;
  EXPECT_EQ(scales_from_calibration(st, r, &s), Status::kSuccess);
  QuantizedModel q;
  EXPECT_EQ(quantize_model(m, s, r, &q), Status::kSuccess);
  return q;
}

QuantRecipe with_int8_head(QuantRecipe r) {
  r.int8_head = true;
  return r;
}

template <typename Model, typename ConvT>
std::vector<float> prefill_logits(const Model& m, const std::vector<int32_t>& ids, int64_t B, int64_t L) {
  const int64_t V = m.config.vocab;
  ModelCache<ConvT> cache;
  EXPECT_EQ(init_cache(m.config, B, &cache), Status::kSuccess);
  std::vector<float> logits(static_cast<size_t>(B * L * V), std::nanf(""));
  EXPECT_EQ(prefill(m, ids.data(), B, L, nullptr, &cache, make_view(logits.data(), B, L, V)), Status::kSuccess);
  return logits;
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (const float v : a) m = std::max(m, static_cast<double>(std::fabs(v)));
  return m;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}

double rms_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

::testing::AssertionResult same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (float_bits(a[i]) != float_bits(b[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// Rows of different magnitudes (10^-4 .. 10^2), so per-row scales really differ.
std::vector<float> random_rows(int64_t rows, int64_t cols, uint64_t salt) {
  auto rng = test::make_rng(salt);
  std::uniform_real_distribution<float> mag(-4.0f, 2.0f);
  std::vector<float> w = test::random_normal(static_cast<size_t>(rows * cols), rng);
  for (int64_t r = 0; r < rows; ++r) {
    const float f = std::pow(10.0f, mag(rng));
    for (int64_t k = 0; k < cols; ++k) w[r * cols + k] *= f;
  }
  return w;
}

// ---- quantize_rows_absmax / dequantize_rows -----------------------------------------------------

TEST(RowQuantI8, QuantizesEachRowWithItsOwnScale) {
  for (const auto& shape : {std::pair<int64_t, int64_t>{37, 53}, {1, 1}, {5, 1}, {1, 300}, {129, 64}}) {
    const int64_t R = shape.first, C = shape.second;
    SCOPED_TRACE("rows " + std::to_string(R) + " cols " + std::to_string(C));
    const std::vector<float> w = random_rows(R, C, static_cast<uint64_t>(R * 1000 + C));
    const RowQuantI8 t = quantize_rows_absmax(w.data(), R, C);
    ASSERT_FALSE(t.empty());
    ASSERT_EQ(t.q.size(), static_cast<size_t>(R * C));
    ASSERT_EQ(t.scale.size(), static_cast<size_t>(R));
    const std::vector<float> deq = dequantize_rows(t, C);
    ASSERT_EQ(deq.size(), w.size());
    for (int64_t r = 0; r < R; ++r) {
      const float* row = w.data() + r * C;
      float amax = 0.0f;
      int64_t arg = 0;
      for (int64_t k = 0; k < C; ++k)
        if (std::fabs(row[k]) > amax) amax = std::fabs(row[k]), arg = k;
      const float s = t.scale[static_cast<size_t>(r)];
      ASSERT_EQ(float_bits(s), float_bits(scale_from_absmax(amax))) << "row " << r;
      ASSERT_TRUE(s > 0.0f && std::isfinite(s)) << "row " << r;
      const float inv = inverse_scale(s);
      for (int64_t k = 0; k < C; ++k) {
        const size_t i = static_cast<size_t>(r * C + k);
        ASSERT_EQ(t.q[i], quantize_i8(row[k], inv)) << "(" << r << ", " << k << ")";
        // The dequantized value is exactly one fp32 multiply.
        ASSERT_EQ(float_bits(deq[i]), float_bits(static_cast<float>(t.q[i]) * s)) << "(" << r << ", " << k << ")";
        // Round to nearest on the grid of step s: |w − deq| ≤ s/2, plus the rounding of w·(1/s)
        // (relative 2^-23 of |w|/s ≤ 127 steps) and of q·s (relative 2^-24).
        const double err = std::fabs(static_cast<double>(row[k]) - deq[i]);
        ASSERT_LE(err, 0.5 * s * (1.0 + 1e-5) + 1e-6 * std::fabs(row[k])) << "(" << r << ", " << k << ") w " << row[k];
      }
      // The absmax element lands exactly on ±127 (no saturation, never −128).
      ASSERT_EQ(std::abs(static_cast<int>(t.q[static_cast<size_t>(r * C + arg)])), 127) << "row " << r;
      for (int64_t k = 0; k < C; ++k) ASSERT_NE(t.q[static_cast<size_t>(r * C + k)], -128) << "(" << r << ", " << k << ")";
    }
  }
}

TEST(RowQuantI8, AbsmaxElementNeverSaturatesPastSymmetricRange) {
  // Many rows whose absmax is negative or positive, of awkward magnitudes (subnormal-ish to big),
  // so w·(1/s) lands a few ulps above or below 127 in some of them.
  auto rng = test::make_rng(7);
  std::uniform_real_distribution<float> e(-30.0f, 30.0f);
  constexpr int64_t R = 4000, C = 3;
  std::vector<float> w = test::random_floats(static_cast<size_t>(R * C), rng);
  for (int64_t r = 0; r < R; ++r) {
    const float f = std::exp2(e(rng));
    for (int64_t k = 0; k < C; ++k) w[r * C + k] *= f;
  }
  const RowQuantI8 t = quantize_rows_absmax(w.data(), R, C);
  for (int64_t r = 0; r < R; ++r) {
    int64_t arg = 0;
    for (int64_t k = 1; k < C; ++k)
      if (std::fabs(w[r * C + k]) > std::fabs(w[r * C + arg])) arg = k;
    const int q = t.q[static_cast<size_t>(r * C + arg)];
    ASSERT_EQ(q, w[r * C + arg] < 0 ? -127 : 127) << "row " << r << " absmax " << w[r * C + arg];
  }
}

TEST(RowQuantI8, ZeroRowsAndNaN) {
  constexpr int64_t R = 4, C = 9;
  auto rng = test::make_rng(3);
  std::vector<float> w = test::random_floats(R * C, rng, -2.0f, 2.0f);
  for (int64_t k = 0; k < C; ++k) w[1 * C + k] = 0.0f;           // row 1: all zero
  w[2 * C + 4] = std::nanf("");                                  // row 2: one NaN
  for (int64_t k = 0; k < C; ++k) w[3 * C + k] = std::nanf("");  // row 3: all NaN
  const RowQuantI8 t = quantize_rows_absmax(w.data(), R, C);
  const std::vector<float> deq = dequantize_rows(t, C);
  // A zero row follows the zero-tensor convention of scale_from_absmax: scale 1, q = 0, exact.
  EXPECT_EQ(float_bits(t.scale[1]), float_bits(scale_from_absmax(0.0f)));
  EXPECT_EQ(t.scale[1], 1.0f);
  for (int64_t k = 0; k < C; ++k) {
    EXPECT_EQ(t.q[1 * C + k], 0);
    EXPECT_EQ(float_bits(deq[1 * C + k]), float_bits(0.0f));
  }
  // NaN quantizes to 0 (quantize_i8) and does not enter the row's absmax.
  float amax = 0.0f;
  for (int64_t k = 0; k < C; ++k)
    if (k != 4) amax = std::max(amax, std::fabs(w[2 * C + k]));
  EXPECT_EQ(float_bits(t.scale[2]), float_bits(scale_from_absmax(amax)));
  EXPECT_EQ(t.q[2 * C + 4], 0);
  EXPECT_EQ(deq[2 * C + 4], 0.0f);
  for (int64_t k = 0; k < C; ++k)
    if (k != 4) {
      EXPECT_EQ(t.q[2 * C + k], quantize_i8(w[2 * C + k], inverse_scale(t.scale[2]))) << k;
    }
  // A row of NaN only is a zero row.
  EXPECT_EQ(t.scale[3], 1.0f);
  for (int64_t k = 0; k < C; ++k) EXPECT_EQ(t.q[3 * C + k], 0);
  for (const float s : t.scale) EXPECT_TRUE(s > 0.0f && std::isfinite(s));
  // A row whose absmax/127 underflows to 0 (denormal absmax) is a zero row too, not a zero scale.
  const std::vector<float> tiny = {1e-44f, -2e-44f, 0.0f, 5e-45f};
  ASSERT_EQ(tiny[1] / 127.0f, 0.0f) << "the test needs an absmax whose /127 underflows";
  const RowQuantI8 u = quantize_rows_absmax(tiny.data(), 1, int64_t(tiny.size()));
  EXPECT_EQ(u.scale[0], 1.0f);
  for (int8_t q : u.q) EXPECT_EQ(q, 0);
  for (const float v : deq) EXPECT_FALSE(std::isnan(v));
}

TEST(RowQuantI8, DegenerateArguments) {
  const float w[4] = {1.0f, -2.0f, 3.0f, 0.5f};
  EXPECT_TRUE(quantize_rows_absmax(nullptr, 2, 2).empty());
  EXPECT_TRUE(quantize_rows_absmax(w, 0, 2).empty());
  EXPECT_TRUE(quantize_rows_absmax(w, 2, 0).empty());
  EXPECT_TRUE(quantize_rows_absmax(w, -1, 4).empty());
  const RowQuantI8 t = quantize_rows_absmax(w, 2, 2);
  EXPECT_EQ(dequantize_rows(t, 2).size(), 4u);
  EXPECT_TRUE(dequantize_rows(t, 3).empty());  // q.size() != rows · cols
  EXPECT_TRUE(dequantize_rows(t, 0).empty());
  EXPECT_TRUE(dequantize_rows(RowQuantI8{}, 4).empty());
}

// ---- quantize_model / validate_model ------------------------------------------------------------

TEST(Int8Head, IsAnOptionOffByDefault) {
  EXPECT_FALSE(QuantRecipe{}.int8_head);
  EXPECT_FALSE(recipe_naive().int8_head);
  EXPECT_FALSE(recipe_quamba().int8_head);
  const QuantRecipe r{false, UScale::kAbsmax};  // two-field initializers keep working
  EXPECT_FALSE(r.int8_head);
  const ModelWeights m = make_model(config_untied(), 1);
  const QuantizedModel q = quantized(m, calibrate_on_random(m, 1), recipe_quamba());
  EXPECT_TRUE(q.embedding_q.empty() && q.embedding_q.scale.empty());
  EXPECT_TRUE(q.lm_head_q.empty() && q.lm_head_q.scale.empty());
  EXPECT_TRUE(same_bits(q.embedding, m.embedding));
  EXPECT_TRUE(same_bits(q.lm_head, m.lm_head));
}

TEST(Int8Head, QuantizeModelFillsRowsAndDequantizedVectors) {
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const ModelConfig c = tied ? config_tied() : config_untied();
    const int64_t V = c.vocab, D = c.d_model;
    const ModelWeights m = make_model(c, 2);
    const CalibrationStats st = calibrate_on_random(m, 2);
    const QuantizedModel base = quantized(m, st, recipe_quamba());
    const QuantizedModel q = quantized(m, st, with_int8_head(recipe_quamba()));
    ASSERT_EQ(validate_model(q), Status::kSuccess);
    EXPECT_TRUE(q.recipe.int8_head);
    // The embedding: its per-row int8 rows, and the fp32 vector is their dequantized value.
    const RowQuantI8 want_e = quantize_rows_absmax(m.embedding.data(), V, D);
    ASSERT_EQ(q.embedding_q.q.size(), static_cast<size_t>(V * D));
    ASSERT_EQ(q.embedding_q.scale.size(), static_cast<size_t>(V));
    EXPECT_EQ(q.embedding_q.q, want_e.q);
    EXPECT_TRUE(same_bits(q.embedding_q.scale, want_e.scale));
    EXPECT_TRUE(same_bits(q.embedding, dequantize_rows(q.embedding_q, D)));
    EXPECT_GT(max_abs_diff(q.embedding, m.embedding), 0.0) << "the option must change the embedding";
    if (tied) {
      EXPECT_TRUE(q.lm_head_q.empty() && q.lm_head_q.scale.empty());
      EXPECT_TRUE(q.lm_head.empty());
    } else {
      const RowQuantI8 want_h = quantize_rows_absmax(m.lm_head.data(), V, D);
      EXPECT_EQ(q.lm_head_q.q, want_h.q);
      EXPECT_TRUE(same_bits(q.lm_head_q.scale, want_h.scale));
      EXPECT_TRUE(same_bits(q.lm_head, dequantize_rows(q.lm_head_q, D)));
      EXPECT_GT(max_abs_diff(q.lm_head, m.lm_head), 0.0);
    }
    // Everything else is the model without the option.
    EXPECT_TRUE(same_bits(q.norm_f, base.norm_f));
    ASSERT_EQ(q.layers.size(), base.layers.size());
    for (size_t i = 0; i < q.layers.size(); ++i) {
      EXPECT_EQ(q.layers[i].in_proj.q, base.layers[i].in_proj.q) << i;
      EXPECT_EQ(q.layers[i].out_proj.q, base.layers[i].out_proj.q) << i;
      EXPECT_EQ(float_bits(q.layers[i].act.s_o), float_bits(base.layers[i].act.s_o)) << i;
    }
  }
}

TEST(Int8Head, ValidateModelChecksTheRows) {
  const ModelWeights mt = make_model(config_tied(), 3), mu = make_model(config_untied(), 3);
  const QuantizedModel tied = quantized(mt, calibrate_on_random(mt, 3), with_int8_head(recipe_quamba()));
  const QuantizedModel untied = quantized(mu, calibrate_on_random(mu, 3), with_int8_head(recipe_naive()));
  ASSERT_EQ(validate_model(tied), Status::kSuccess);
  ASSERT_EQ(validate_model(untied), Status::kSuccess);
  struct Case {
    const char* what;
    bool use_untied;
    void (*edit)(QuantizedModel&);
  };
  const Case cases[] = {
      {"embedding scale too short", false, [](QuantizedModel& q) { q.embedding_q.scale.pop_back(); }},
      {"embedding scale too long", false, [](QuantizedModel& q) { q.embedding_q.scale.push_back(1.0f); }},
      {"embedding NaN scale", false, [](QuantizedModel& q) { q.embedding_q.scale[5] = std::nanf(""); }},
      {"embedding inf scale", false, [](QuantizedModel& q) { q.embedding_q.scale[0] = INFINITY; }},
      {"embedding zero scale", false, [](QuantizedModel& q) { q.embedding_q.scale[7] = 0.0f; }},
      {"embedding negative scale", false, [](QuantizedModel& q) { q.embedding_q.scale.back() = -0.01f; }},
      {"embedding q missing", false, [](QuantizedModel& q) { q.embedding_q.q.clear(); }},
      {"embedding rows missing", false, [](QuantizedModel& q) { q.embedding_q = RowQuantI8{}; }},
      {"embedding q one short", false, [](QuantizedModel& q) { q.embedding_q.q.pop_back(); }},
      {"lm_head rows on a tied model", false, [](QuantizedModel& q) { q.lm_head_q = q.embedding_q; }},
      {"lm_head scales only on a tied model", false, [](QuantizedModel& q) { q.lm_head_q.scale = {1.0f}; }},
      {"rows without the option", false, [](QuantizedModel& q) { q.recipe.int8_head = false; }},
      {"untied: lm_head rows missing", true, [](QuantizedModel& q) { q.lm_head_q = RowQuantI8{}; }},
      {"untied: lm_head NaN scale", true, [](QuantizedModel& q) { q.lm_head_q.scale[3] = std::nanf(""); }},
      {"untied: lm_head scale wrong size", true, [](QuantizedModel& q) { q.lm_head_q.scale.resize(2); }},
      {"untied: lm_head q missing", true, [](QuantizedModel& q) { q.lm_head_q.q.clear(); }},
      {"untied: option off, lm_head rows left", true,
       [](QuantizedModel& q) {
         q.recipe.int8_head = false;
         q.embedding_q = RowQuantI8{};
       }},
  };
  for (const Case& k : cases) {
    QuantizedModel q = k.use_untied ? untied : tied;
    k.edit(q);
    EXPECT_EQ(validate_model(q), Status::kErrorInvalidArgument) << k.what;
  }
  // A zero row's scale (scale_from_absmax(0) = 1) is valid.
  QuantizedModel z = tied;
  for (int64_t k = 0; k < z.config.d_model; ++k) z.embedding_q.q[static_cast<size_t>(k)] = 0;
  z.embedding_q.scale[0] = scale_from_absmax(0.0f);
  z.embedding = dequantize_rows(z.embedding_q, z.config.d_model);
  EXPECT_EQ(validate_model(z), Status::kSuccess);
  // The forward refuses an invalid model before touching anything.
  QuantizedModel bad = tied;
  bad.embedding_q.scale[1] = std::nanf("");
  ModelCacheI8 cache;
  ASSERT_EQ(init_cache(bad.config, 1, &cache), Status::kSuccess);
  const int32_t tok = 3;
  std::vector<float> logits(static_cast<size_t>(kVocab));
  EXPECT_EQ(decode_step(bad, &tok, 1, &cache, make_view(logits.data(), 1, kVocab)), Status::kErrorInvalidArgument);
}

// ---- the forward ---------------------------------------------------------------------------------

// Only the lm_head changes (untied model, embedding kept fp32): a rigorous bound. Logit v is
// <n, head[v]> with n the final RMSNorm output; each head element moves by at most s_v/2 (s_v the
// row's scale), so |Δlogit_v| ≤ ‖n‖₁·s_v/2 ≤ D·max|γ_f|·s_v/2, because ‖n‖₁ ≤ √D·‖n‖₂ and
// ‖n‖₂ ≤ √D·max|γ_f| (x/rms(x) has norm √D at most). Plus fp32 dot-product rounding (1e-5).
TEST(Int8Head, LmHeadOnlyChangeIsWithinTheRowBound) {
  const ModelConfig c = config_untied();
  const int64_t B = 2, L = 12, V = c.vocab, D = c.d_model;
  const ModelWeights m = make_model(c, 4);
  const QuantizedModel base = quantized(m, calibrate_on_random(m, 4), recipe_quamba());
  QuantizedModel head_only = base;
  const RowQuantI8 h = quantize_rows_absmax(m.lm_head.data(), V, D);
  head_only.lm_head = dequantize_rows(h, D);
  const auto ids = test::random_token_ids(static_cast<size_t>(B * L), V, 41);
  const auto a = prefill_logits<QuantizedModel, int8_t>(base, ids, B, L);
  const auto b = prefill_logits<QuantizedModel, int8_t>(head_only, ids, B, L);
  float gmax = 0.0f;
  for (const float g : m.norm_f) gmax = std::max(gmax, std::fabs(g));
  double worst_ratio = 0;
  for (int64_t t = 0; t < B * L; ++t)
    for (int64_t v = 0; v < V; ++v) {
      const size_t i = static_cast<size_t>(t * V + v);
      const double bound = static_cast<double>(D) * gmax * h.scale[static_cast<size_t>(v)] / 2 + 1e-5;
      const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
      ASSERT_LE(d, bound) << "token " << t << " vocab " << v;
      worst_ratio = std::max(worst_ratio, d / bound);
    }
  std::printf("[ lm_head only ] max |Δlogit| %.3g of max |logit| %.3g; worst use of the bound %.2f\n",
              max_abs_diff(a, b), max_abs(a), worst_ratio);
  EXPECT_GT(max_abs_diff(a, b), 0.0);
}

// The whole option (embedding and head int8). The embedding rows move by at most half a step of
// their own grid (≤ 1/254 of each row's absmax); that is not a small perturbation of the W8A8
// model: it flips the rounding of some block-input int8 values (step s_h), so the two models
// differ by about one more sample of the W8A8 rounding noise. The bounds are therefore stated
// against that noise and the logits' scale (measured on these models: printed; rms ratio
// 0.94..1.06, max |Δ| 3.7..6.3% of max |logit|):
//   rms(int8 head − fp32) ≤ 1.25 · rms(W8A8 − fp32)   (the option adds little error)
//   max |int8 head − W8A8| ≤ 0.1 · max |logit|,  rms(int8 head − W8A8) ≤ 0.1 · rms(logit)
// and Δ ≠ 0 (the option really changes the head).
TEST(Int8Head, LogitsStayCloseToTheModelWithoutTheOption) {
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const ModelConfig c = tied ? config_tied() : config_untied();
    const int64_t B = 2, L = 16;
    const ModelWeights m = make_model(c, 5);
    const CalibrationStats st = calibrate_on_random(m, 5);
    const QuantRecipe r = tied ? recipe_quamba() : recipe_naive();
    const QuantizedModel base = quantized(m, st, r);
    const QuantizedModel q = quantized(m, st, with_int8_head(r));
    const auto ids = test::random_token_ids(static_cast<size_t>(B * L), c.vocab, tied ? 51 : 52);
    const auto fp = prefill_logits<ModelWeights, float>(m, ids, B, L);
    const auto a = prefill_logits<QuantizedModel, int8_t>(base, ids, B, L);
    const auto b = prefill_logits<QuantizedModel, int8_t>(q, ids, B, L);
    const std::vector<float> zero(a.size(), 0.0f);
    const double d = max_abs_diff(a, b), d_rms = rms_diff(a, b), scale = max_abs(a), scale_rms = rms_diff(a, zero);
    const double err_base = rms_diff(a, fp), err_head = rms_diff(b, fp);
    std::printf("[ int8 head, %s ] int8 head vs W8A8: max |Δ| %.3g rms %.3g; rms error vs fp32: W8A8 %.3g, "
                "int8 head %.3g; logits max %.3g rms %.3g\n",
                tied ? "tied" : "untied", d, d_rms, err_base, err_head, scale, scale_rms);
    EXPECT_GT(d, 0.0) << "the option must change the logits";
    EXPECT_LE(err_head, 1.25 * err_base);
    EXPECT_LE(d, 0.1 * scale);
    EXPECT_LE(d_rms, 0.1 * scale_rms);
    // Decode continues from the same state: the steps after a prefill stay close too.
    ModelCacheI8 ca, cb;
    ASSERT_EQ(init_cache(c, 1, &ca), Status::kSuccess);
    ASSERT_EQ(init_cache(c, 1, &cb), Status::kSuccess);
    std::vector<float> la(static_cast<size_t>(c.vocab)), lb(static_cast<size_t>(c.vocab));
    for (const int32_t tok : {1, 7, 30, 11, 64}) {
      ASSERT_EQ(decode_step(base, &tok, 1, &ca, make_view(la.data(), 1, c.vocab)), Status::kSuccess);
      ASSERT_EQ(decode_step(q, &tok, 1, &cb, make_view(lb.data(), 1, c.vocab)), Status::kSuccess);
      EXPECT_LE(rms_diff(la, lb), 0.1 * rms_diff(la, std::vector<float>(la.size(), 0.0f))) << "token " << tok;
    }
  }
}

// The CPU engine runs the option through the same reference forward (it reads the dequantized
// fp32 vectors): its logits equal reference::prefill's bit for bit.
TEST(Int8Head, CpuEngineRunsTheInt8Head) {
  const ModelConfig c = config_untied();
  const ModelWeights m = make_model(c, 6);
  const QuantizedModel q = quantized(m, calibrate_on_random(m, 6), with_int8_head(recipe_naive()));
  model::EngineOptions opt;
  opt.batch = 1;
  std::unique_ptr<model::Engine> e;
  std::string err;
  ASSERT_EQ(model::make_cpu_engine_w8a8(q, opt, &e, &err), Status::kSuccess) << err;
  const int64_t L = 9;
  const auto ids = test::random_token_ids(static_cast<size_t>(L), c.vocab, 61);
  std::vector<float> got(static_cast<size_t>(L * c.vocab), std::nanf(""));
  ASSERT_EQ(e->prefill(0, ids.data(), L, got.data(), true), Status::kSuccess);
  EXPECT_TRUE(same_bits(got, prefill_logits<QuantizedModel, int8_t>(q, ids, 1, L)));
}

}  // namespace
