// The GPU Mamba block and model (quamba/block/*.cuh, quamba/model/gpu_engine.cuh) against the
// host reference model (quamba/reference/model.hpp), on small random models.
//
// Bounds, and why they are what they are:
// - W8A8 GPU vs reference W8A8: the integer dataflow is the reference's, but an int8 value can
//   move by one step where (a) y is rounded to fp16 before the rotation (the reference keeps
//   fp32: the dominant source, ~1% of the out_proj inputs), (b) RMSNorm statistics are fp32
//   (reference: double), (c) the conv's SiLU uses approximate exp/rcp, (d) the Hadamard sums in
//   another order. One step is the size of the quantization noise W8A8 already has against
//   fp32, on a small fraction of elements, so the GPU-vs-reference error must be well below the
//   reference's own W8A8-vs-fp32 error: rel-L2 <= 0.5 x that and <= kW8A8RelL2, top-1 >= 0.9.
// - fp16 GPU vs fp32 reference (weights rounded to fp16 first, so only activations differ):
//   every activation is rounded to fp16 (rel. 2^-11) and two blocks compound it; elementwise
//   |x - ref| <= 1e-2·max|ref| + 1e-2·|ref| (kTolF16 scaled by 5 for the chain) and rel-L2 <= 1e-2.
// - Same engine, different schedule (chunked prefill, prefill + decode, batch, graph): the same
//   kernels on the same values except for fp32 summation order (cuBLAS and GEMV vs GEMM tiles,
//   the scan's per-token reduction), which moves an fp16 value or int8 step only rarely:
//   rel-L2 <= 2e-3; graph vs eager replays identical launches: exact; batch W8A8 logits within
//   kTolF32Reorder (only the fp16 lm_head's accumulation order may differ with M).
#include <gtest/gtest.h>

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/compare.hpp"
#include "common/cuda_utils.cuh"
#include "common/random.hpp"
#include "quamba/block/mamba_block.cuh"
#include "quamba/block/model.cuh"
#include "quamba/block/weights.cuh"
#include "quamba/model/gpu_engine.cuh"
#include "quamba/quant/observer_hook.hpp"
#include "quamba/reference/model.hpp"

namespace {

using quamba::Status;
using quamba::WorkspaceCarver;
using quamba::test::DeviceBuffer;
namespace ref = quamba::reference;
namespace qm = quamba::model;

constexpr double kW8A8RelL2 = 3e-2;
constexpr double kScheduleRelL2 = 2e-3;
constexpr int64_t kVocab = 300;

// ---- helpers ----------------------------------------------------------------------------------

struct Diff {
  double rel_l2 = 0, max_abs = 0, ref_max = 0, top1 = 1;
};

Diff diff(const std::vector<float>& got, const std::vector<float>& want, int64_t V) {
  Diff d;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = double(got[i]) - want[i];
    num += e * e;
    den += double(want[i]) * want[i];
    d.max_abs = std::max(d.max_abs, std::isnan(e) ? 1e30 : std::fabs(e));
    d.ref_max = std::max(d.ref_max, double(std::fabs(want[i])));
  }
  d.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const size_t rows = got.size() / size_t(V);
  size_t agree = 0;
  for (size_t r = 0; r < rows; ++r) {
    auto g = got.begin() + r * V, w = want.begin() + r * V;
    agree += (std::max_element(g, g + V) - g) == (std::max_element(w, w + V) - w);
  }
  d.top1 = rows ? double(agree) / rows : 1.0;
  return d;
}

std::string str(const Diff& d) {
  char b[160];
  std::snprintf(b, sizeof b, "rel-L2 %.3e, max|err| %.3e (max|ref| %.3e), top-1 %.3f", d.rel_l2, d.max_abs, d.ref_max,
                d.top1);
  return b;
}

float round_half(float v) { return quamba::round_to_half(v); }
void round_vec(std::vector<float>& v) {
  for (auto& x : v) x = round_half(x);
}

// A random model whose fp16-stored tensors are exactly representable in fp16, so the GPU's fp16
// copies of them are exact and only activation rounding differs from the reference.
ref::ModelWeights make_model(int64_t D, int64_t layers, uint64_t seed, bool tied = true) {
  ref::ModelConfig c = ref::make_config(D, layers, kVocab);
  c.tie_embeddings = tied;
  ref::ModelWeights w;
  EXPECT_EQ(ref::init_random_model(c, seed, &w), Status::kSuccess);
  round_vec(w.embedding);
  round_vec(w.lm_head);
  for (auto& l : w.layers) {
    round_vec(l.in_proj);
    round_vec(l.x_proj);
    round_vec(l.dt_proj);
    round_vec(l.out_proj);
  }
  return w;
}

std::vector<int32_t> random_ids(int64_t n, uint64_t salt) {
  return quamba::test::random_token_ids(static_cast<size_t>(n), kVocab, salt);
}

ref::QuantizedModel quantize(const ref::ModelWeights& w, const ref::QuantRecipe& recipe, uint64_t salt) {
  std::vector<std::vector<int32_t>> calib;
  for (int i = 0; i < 4; ++i) calib.push_back(random_ids(24, salt * 10 + i));
  ref::CalibrationStats st;
  ref::CalibrationOptions opt;
  EXPECT_EQ(ref::calibrate(w, calib, opt, &st), Status::kSuccess);
  ref::ModelScales scales;
  EXPECT_EQ(ref::scales_from_calibration(st, recipe, &scales), Status::kSuccess);
  ref::QuantizedModel q;
  EXPECT_EQ(ref::quantize_model(w, scales, recipe, &q), Status::kSuccess);
  return q;
}

// Reference: prefill of `ids` (all logits) then one decode step per entry of `steps`.
template <typename Model, typename Cache>
std::vector<float> ref_run(const Model& m, const std::vector<int32_t>& ids, const std::vector<int32_t>& steps) {
  const int64_t V = m.config.vocab, L = int64_t(ids.size());
  Cache cache;
  EXPECT_EQ(ref::init_cache(m.config, 1, &cache), Status::kSuccess);
  std::vector<float> out(size_t((L + int64_t(steps.size())) * V));
  EXPECT_EQ(ref::prefill(m, ids.data(), 1, L, nullptr, &cache, quamba::make_view(out.data(), int64_t(1), L, V)),
            Status::kSuccess);
  for (size_t s = 0; s < steps.size(); ++s)
    EXPECT_EQ(ref::decode_step(m, &steps[s], 1, &cache, quamba::make_view(out.data() + (L + int64_t(s)) * V, int64_t(1), V)),
              Status::kSuccess);
  return out;
}

// Engine: prefill (all logits) then decode steps (batch 1).
std::vector<float> gpu_run(qm::Engine& e, const std::vector<int32_t>& ids, const std::vector<int32_t>& steps) {
  const int64_t V = e.config().vocab, L = int64_t(ids.size());
  std::vector<float> out(size_t((L + int64_t(steps.size())) * V), std::nanf(""));
  EXPECT_EQ(e.prefill(0, ids.data(), L, out.data(), true), Status::kSuccess);
  for (size_t s = 0; s < steps.size(); ++s)
    EXPECT_EQ(e.decode(&steps[s], out.data() + (L + int64_t(s)) * V), Status::kSuccess);
  return out;
}

std::unique_ptr<qm::Engine> engine_f16(const ref::ModelWeights& w, int64_t batch = 1, int64_t chunk = 64) {
  std::unique_ptr<qm::Engine> e;
  std::string err;
  qm::EngineOptions o;
  o.batch = batch;
  o.prefill_chunk = chunk;
  EXPECT_EQ(qm::make_gpu_engine_fp16(w, o, &e, &err), Status::kSuccess) << err;
  return e;
}

std::unique_ptr<qm::Engine> engine_i8(const ref::QuantizedModel& q, int64_t batch = 1, int64_t chunk = 64) {
  std::unique_ptr<qm::Engine> e;
  std::string err;
  qm::EngineOptions o;
  o.batch = batch;
  o.prefill_chunk = chunk;
  EXPECT_EQ(qm::make_gpu_engine_w8a8(q, o, &e, &err), Status::kSuccess) << err;
  return e;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// ---- host-only validation ---------------------------------------------------------------------

TEST(GpuBlockDims, SupportedAndRejectedSizes) {
  quamba::block::BlockDims d;
  EXPECT_EQ(quamba::block::make_dims(ref::make_config(64, 2, kVocab), &d), Status::kSuccess);
  EXPECT_EQ(d.R, 4);
  EXPECT_EQ(d.Rp, 16);
  EXPECT_EQ(d.Xp, 48);
  EXPECT_EQ(quamba::block::make_dims(ref::make_config(2560, 64, 50280), &d), Status::kSuccess);
  EXPECT_EQ(d.Rp, 160);
  EXPECT_EQ(d.Xp, 192);
  EXPECT_EQ(quamba::block::make_dims(ref::make_config(72, 2, kVocab), &d), Status::kErrorNotSupported);  // D % 16
  ref::ModelConfig c = ref::make_config(64, 2, kVocab);
  c.d_state = 8;
  EXPECT_EQ(quamba::block::make_dims(c, &d), Status::kErrorNotSupported);
  EXPECT_EQ(quamba::block::make_dims(c, nullptr), Status::kErrorInvalidArgument);
  c = ref::make_config(0, 2, kVocab);
  EXPECT_EQ(quamba::block::make_dims(c, &d), Status::kErrorInvalidArgument);
}

TEST(GpuBlockWeights, PaddedXProjAndDtProjLayout) {
  const ref::ModelWeights w = make_model(64, 1, 5);
  const ref::QuantizedModel q = quantize(w, ref::recipe_naive(), 5);
  quamba::block::BlockDims d;
  ASSERT_EQ(quamba::block::make_dims(w.config, &d), Status::kSuccess);
  quamba::block::WeightPacker pk(true);
  const quamba::block::LayerI8 l = quamba::block::pack_layer_i8(pk, d, &q.layers[0], false);
  const auto* base = pk.blob().data();
  const auto* xp = reinterpret_cast<const int8_t*>(base + reinterpret_cast<uintptr_t>(l.x_proj));
  const auto* dp = reinterpret_cast<const int8_t*>(base + reinterpret_cast<uintptr_t>(l.dt_proj));
  const auto& wx = q.layers[0].x_proj.q;
  const auto& wd = q.layers[0].dt_proj.q;
  for (int64_t r = 0; r < d.Xp; ++r)
    for (int64_t e = 0; e < d.E; ++e) {
      const int8_t want = r < d.R ? wx[size_t(r * d.E + e)] : r < d.Rp ? int8_t(0) : wx[size_t((r - d.Rp + d.R) * d.E + e)];
      ASSERT_EQ(xp[r * d.E + e], want) << "x_proj row " << r << " col " << e;
    }
  for (int64_t e = 0; e < d.E; ++e)
    for (int64_t k = 0; k < d.Rp; ++k)
      ASSERT_EQ(dp[e * d.Rp + k], k < d.R ? wd[size_t(e * d.R + k)] : int8_t(0)) << "dt_proj " << e << "," << k;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(l.x_proj) % 256, 0u);
}

// ---- fidelity -----------------------------------------------------------------------------------

struct W8A8Case {
  int64_t D;
  bool quamba;  // percentile + Hadamard, else naive (absmax, no rotation)
};

class GpuModelW8A8 : public ::testing::TestWithParam<W8A8Case> {};

TEST_P(GpuModelW8A8, MatchesReferenceW8A8) {
  QUAMBA_REQUIRE_GPU();
  const W8A8Case c = GetParam();
  SCOPED_TRACE("D=" + std::to_string(c.D) + (c.quamba ? " quamba" : " naive"));
  const ref::ModelWeights w = make_model(c.D, 2, 100 + c.D);
  const ref::QuantizedModel q = quantize(w, c.quamba ? ref::recipe_quamba() : ref::recipe_naive(), uint64_t(c.D));
  const auto ids = random_ids(45, 7 + c.D);
  const auto steps = random_ids(4, 8 + c.D);
  const auto want = ref_run<ref::QuantizedModel, ref::ModelCacheI8>(q, ids, steps);
  const auto fp32 = ref_run<ref::ModelWeights, ref::ModelCacheF32>(w, ids, steps);
  auto e = engine_i8(q, 1, 16);  // chunks of 16: chunked prefill on the way
  ASSERT_TRUE(e);
  const auto got = gpu_run(*e, ids, steps);
  ASSERT_TRUE(all_finite(got));
  const Diff dg = diff(got, want, kVocab), dq = diff(want, fp32, kVocab);
  std::printf("[ W8A8 D=%lld %s ] GPU vs ref W8A8: %s | ref W8A8 vs fp32: %s\n", (long long)c.D,
              c.quamba ? "quamba" : "naive", str(dg).c_str(), str(dq).c_str());
  EXPECT_LE(dg.rel_l2, kW8A8RelL2) << str(dg);
  EXPECT_LE(dg.rel_l2, 0.5 * dq.rel_l2) << "GPU-vs-reference error should be well below the W8A8 error itself";
  EXPECT_GE(dg.top1, 0.9) << str(dg);
}

INSTANTIATE_TEST_SUITE_P(Sizes, GpuModelW8A8,
                         ::testing::Values(W8A8Case{64, true}, W8A8Case{64, false}, W8A8Case{96, true},
                                           W8A8Case{96, false}, W8A8Case{128, true}),
                         [](const auto& i) {
                           return "D" + std::to_string(i.param.D) + (i.param.quamba ? "_quamba" : "_naive");
                         });

TEST(GpuModelFp16, MatchesReferenceFp32) {
  QUAMBA_REQUIRE_GPU();
  for (int64_t D : {64, 96}) {
    for (bool tied : {true, false}) {
      SCOPED_TRACE("D=" + std::to_string(D) + " tied=" + std::to_string(tied));
      const ref::ModelWeights w = make_model(D, 2, 200 + D, tied);
      const auto ids = random_ids(40, 9 + D);
      const auto steps = random_ids(3, 10 + D);
      const auto want = ref_run<ref::ModelWeights, ref::ModelCacheF32>(w, ids, steps);
      auto e = engine_f16(w, 1, 16);
      ASSERT_TRUE(e);
      const auto got = gpu_run(*e, ids, steps);
      const Diff d = diff(got, want, kVocab);
      std::printf("[ fp16 D=%lld tied=%d ] GPU vs ref fp32: %s\n", (long long)D, int(tied), str(d).c_str());
      EXPECT_LE(d.rel_l2, 1e-2) << str(d);
      EXPECT_TRUE(quamba::test::all_close(got, want, {1e-2 * d.ref_max, 1e-2}, "fp16 logits"));
    }
  }
}

// The int8 head option (weight-only per-row int8 embedding / lm_head): the GPU model against the
// reference model with the same option (whose fp32 tables hold the dequantized rows), tied and
// untied, with chunked prefill, decode steps (eager and from the CUDA graph) and batch 3; same
// bounds as the plain W8A8 model. The weights shrink by the fp16 table's half.
TEST(GpuModelW8A8, Int8HeadMatchesReference) {
  QUAMBA_REQUIRE_GPU();
  for (bool tied : {true, false}) {
    SCOPED_TRACE(std::string("tied=") + (tied ? "1" : "0"));
    const int64_t D = 96;
    const ref::ModelWeights w = make_model(D, 2, 400 + tied, tied);
    ref::QuantRecipe recipe = ref::recipe_quamba();
    recipe.int8_head = true;
    const ref::QuantizedModel q = quantize(w, recipe, 41 + tied);
    const ref::QuantizedModel q16 = quantize(w, ref::recipe_quamba(), 41 + tied);
    ASSERT_FALSE(q.embedding_q.empty());
    const auto ids = random_ids(45, 50 + tied);
    const auto steps = random_ids(6, 60 + tied);
    const auto want = ref_run<ref::QuantizedModel, ref::ModelCacheI8>(q, ids, steps);
    const auto fp32 = ref_run<ref::ModelWeights, ref::ModelCacheF32>(w, ids, steps);
    auto e = engine_i8(q, 1, 16);
    ASSERT_TRUE(e);
    const auto got = gpu_run(*e, ids, steps);
    ASSERT_TRUE(all_finite(got));
    const Diff dg = diff(got, want, kVocab), dq = diff(want, fp32, kVocab);
    std::printf("[ W8A8 int8 head tied=%d ] GPU vs ref: %s | ref vs fp32: %s\n", int(tied), str(dg).c_str(),
                str(dq).c_str());
    EXPECT_LE(dg.rel_l2, kW8A8RelL2) << str(dg);
    EXPECT_LE(dg.rel_l2, 0.5 * dq.rel_l2) << "GPU-vs-reference error should be well below the W8A8 error itself";
    EXPECT_GE(dg.top1, 0.9) << str(dg);

    // Batch of 3 through the decode path: each slot's logits equal its own single-slot run.
    auto eb = engine_i8(q, 3, 16);
    ASSERT_TRUE(eb);
    const int64_t V = kVocab;
    for (int64_t sl = 0; sl < 3; ++sl)
      ASSERT_EQ(eb->prefill(sl, ids.data(), int64_t(ids.size()) - sl, nullptr, false), Status::kSuccess);
    std::vector<float> batched(size_t(3 * V));
    const int32_t tok[3] = {steps[0], steps[1], steps[2]};
    ASSERT_EQ(eb->decode(tok, batched.data()), Status::kSuccess);
    for (int64_t sl = 0; sl < 3; ++sl) {
      auto e1 = engine_i8(q, 1, 16);
      ASSERT_EQ(e1->prefill(0, ids.data(), int64_t(ids.size()) - sl, nullptr, false), Status::kSuccess);
      std::vector<float> one(static_cast<size_t>(V));
      ASSERT_EQ(e1->decode(&tok[sl], one.data()), Status::kSuccess);
      const std::vector<float> row(batched.begin() + sl * V, batched.begin() + (sl + 1) * V);
      const Diff db = diff(row, one, V);
      EXPECT_LE(db.rel_l2, kScheduleRelL2) << "slot " << sl << ": " << str(db);
    }

    auto e16 = engine_i8(q16, 1, 16);
    ASSERT_TRUE(e16);
    const int64_t table16 = int64_t(kVocab) * D * 2, table8 = int64_t(kVocab) * (D + 4);
    EXPECT_LT(e->weight_bytes(), e16->weight_bytes());
    // Per-token bytes: the lm_head rows (the untied model's embedding table is not read per token).
    EXPECT_NEAR(double(e16->weight_bytes() - e->weight_bytes()), double(table16 - table8), 1024.0)
        << "the int8 rows + scales replace the fp16 rows (up to alignment)";
  }
}

// ---- schedules ----------------------------------------------------------------------------------

struct Models {
  ref::ModelWeights w = make_model(96, 2, 31);
  ref::QuantizedModel q = quantize(w, ref::recipe_quamba(), 31);
};
const Models& models() {
  static Models m;
  return m;
}

std::unique_ptr<qm::Engine> make(bool i8, int64_t batch = 1, int64_t chunk = 64) {
  return i8 ? engine_i8(models().q, batch, chunk) : engine_f16(models().w, batch, chunk);
}

TEST(GpuModelSchedule, ChunkedPrefillEqualsOnePrefill) {
  QUAMBA_REQUIRE_GPU();
  const auto ids = random_ids(75, 41);
  for (bool i8 : {true, false}) {
    for (int64_t chunk : {1, 7, 32}) {
      SCOPED_TRACE(std::string(i8 ? "w8a8" : "fp16") + " chunk=" + std::to_string(chunk));
      auto one = make(i8, 1, 128), chunked = make(i8, 1, chunk);
      const auto a = gpu_run(*one, ids, {}), b = gpu_run(*chunked, ids, {});
      const Diff d = diff(b, a, kVocab);
      EXPECT_LE(d.rel_l2, kScheduleRelL2) << str(d);
      EXPECT_GE(d.top1, 0.97) << str(d);
      // last-token logits only
      std::vector<float> last(kVocab);
      chunked->reset_slot(0);
      ASSERT_EQ(chunked->prefill(0, ids.data(), int64_t(ids.size()), last.data(), false), Status::kSuccess);
      EXPECT_TRUE(quamba::test::all_close(last.data(), b.data() + (ids.size() - 1) * kVocab, size_t(kVocab),
                                          quamba::test::kTolF32, "last-token logits vs all-logits row"));
    }
  }
}

TEST(GpuModelSchedule, PrefillThenDecodeEqualsLongerPrefill) {
  QUAMBA_REQUIRE_GPU();
  const auto ids = random_ids(30, 42);
  for (bool i8 : {true, false}) {
    SCOPED_TRACE(i8 ? "w8a8" : "fp16");
    const std::vector<int32_t> head(ids.begin(), ids.begin() + 24), tail(ids.begin() + 24, ids.end());
    auto a = make(i8), b = make(i8);
    const auto stepped = gpu_run(*a, head, tail);
    const auto full = gpu_run(*b, ids, {});
    const Diff d = diff(stepped, full, kVocab);
    EXPECT_LE(d.rel_l2, kScheduleRelL2) << str(d);
    EXPECT_GE(d.top1, 0.9) << str(d);
  }
}

TEST(GpuModelSchedule, BatchedDecodeEqualsSeparateDecodes) {
  QUAMBA_REQUIRE_GPU();
  const int64_t B = 3;
  for (bool i8 : {true, false}) {
    SCOPED_TRACE(i8 ? "w8a8" : "fp16");
    auto batched = make(i8, B);
    std::vector<std::vector<int32_t>> prompts, steps;
    for (int64_t b = 0; b < B; ++b) {
      prompts.push_back(random_ids(5 + 4 * b, 50 + b));
      steps.push_back(random_ids(3, 60 + b));
    }
    for (int64_t b = 0; b < B; ++b)
      ASSERT_EQ(batched->prefill(b, prompts[b].data(), int64_t(prompts[b].size()), nullptr, false), Status::kSuccess);
    std::vector<float> got(size_t(3 * B * kVocab));
    for (int s = 0; s < 3; ++s) {
      std::vector<int32_t> tok(B);
      for (int64_t b = 0; b < B; ++b) tok[b] = steps[b][s];
      ASSERT_EQ(batched->decode(tok.data(), got.data() + s * B * kVocab), Status::kSuccess);
    }
    for (int64_t b = 0; b < B; ++b) {
      auto one = make(i8, 1);
      const auto sep = gpu_run(*one, prompts[b], steps[b]);
      std::vector<float> g, w;
      for (int s = 0; s < 3; ++s) {
        g.insert(g.end(), got.begin() + (s * B + b) * kVocab, got.begin() + (s * B + b + 1) * kVocab);
        const size_t row = prompts[b].size() + size_t(s);
        w.insert(w.end(), sep.begin() + row * kVocab, sep.begin() + (row + 1) * kVocab);
      }
      if (i8) {
        EXPECT_TRUE(quamba::test::all_close(g, w, quamba::test::kTolF32Reorder, "sequence " + std::to_string(b)));
      } else {
        const Diff d = diff(g, w, kVocab);
        EXPECT_LE(d.rel_l2, kScheduleRelL2) << "sequence " << b << ": " << str(d);
      }
    }
  }
}

TEST(GpuModelSchedule, GraphDecodeEqualsEagerDecode) {
  QUAMBA_REQUIRE_GPU();
  const auto ids = random_ids(20, 70);
  const auto steps = random_ids(5, 71);
  for (bool i8 : {true, false}) {
    SCOPED_TRACE(i8 ? "w8a8" : "fp16");
    auto g = make(i8, 1), eager = make(i8, 1);
    auto* ge = dynamic_cast<qm::GpuEngine*>(eager.get());
    ASSERT_NE(ge, nullptr);
    ge->set_use_graph(false);
    const auto a = gpu_run(*g, ids, steps), b = gpu_run(*eager, ids, steps);
    EXPECT_TRUE(quamba::test::all_close(a, b, {0.0, 0.0}, "graph vs eager logits"));
  }
}

// The W8A8 prefill's switches (dt_proj inside the scan, programmatic dependent launch) compute
// the same bits: the fused dt_proj's int32 sums and requant are the GEMM's, and pdl only moves
// launches. Chunks of 7 carry the conv and scan states between chunks on the way; a decode step
// after the prefill reads the states the prefill left. D = 160 gives Rp = 16 (one 16-column
// k-step with a zero half), D = 512 gives Rp = 32.
TEST(GpuModelSchedule, PrefillSwitchesGiveIdenticalLogits) {
  QUAMBA_REQUIRE_GPU();
  const auto ids = random_ids(61, 90);
  const auto steps = random_ids(3, 91);
  for (int64_t D : {64, 160, 512}) {
    SCOPED_TRACE("D=" + std::to_string(D));
    const ref::QuantizedModel q = quantize(make_model(D, 2, 300 + D), ref::recipe_quamba(), uint64_t(D));
    std::vector<float> base;
    for (int v = 0; v < 4; ++v) {
      const bool fuse = (v & 1) != 0, pdl = (v & 2) != 0;
      SCOPED_TRACE(std::string(fuse ? "fused dt_proj" : "dt_proj GEMM") + (pdl ? " + pdl" : ""));
      auto e = engine_i8(q, 1, 7);
      ASSERT_TRUE(e);
      auto* ge = dynamic_cast<qm::GpuEngine*>(e.get());
      ASSERT_NE(ge, nullptr);
      ge->set_prefill_options(fuse, pdl);
      const auto got = gpu_run(*e, ids, steps);
      ASSERT_TRUE(all_finite(got));
      if (v == 0) base = got;
      else EXPECT_TRUE(quamba::test::all_close(got, base, {0.0, 0.0}, "logits vs dt_proj GEMM without pdl"));
    }
  }
}

// One W8A8 layer of a quantized model on the device.
struct DeviceLayer {
  quamba::block::BlockDims d;
  DeviceBuffer<uint8_t> blob;
  quamba::block::LayerI8 layer;
  explicit DeviceLayer(const ref::QuantizedModel& q) {
    EXPECT_EQ(quamba::block::make_dims(q.config, &d), Status::kSuccess);
    quamba::block::WeightPacker pk(true);
    layer = quamba::block::pack_layer_i8(pk, d, &q.layers[0], q.recipe.use_hadamard);
    blob.upload(pk.blob());
    quamba::block::rebase(layer, blob.get());
  }
};

// The device side of one decode step of B sequences over S slots: states, residual rows, slot
// indices, error flag and the block workspace, from host values; `io` is ready for step_i8.
struct StepRig {
  DeviceBuffer<int8_t> conv;
  DeviceBuffer<float> ssm, res;
  DeviceBuffer<int32_t> idx, flag;
  DeviceBuffer<uint8_t> wsb;
  quamba::block::BlockWorkspace ws;
  quamba::block::StepIO io;
  StepRig(const quamba::block::BlockDims& d, int64_t B, int64_t S, const std::vector<int8_t>& conv0,
          const std::vector<float>& ssm0, const std::vector<float>& res0, const std::vector<int32_t>& slots)
      : conv(conv0), ssm(ssm0), res(res0), idx(slots), flag(std::vector<int32_t>{0}) {
    namespace qb = quamba::block;
    wsb.resize(qb::block_workspace_plan(d, B, qb::Dtype::kI8, false).bytes());
    WorkspaceCarver c(wsb.get(), wsb.size());
    EXPECT_EQ(qb::carve_block_workspace(c, d, B, qb::Dtype::kI8, false, &ws), Status::kSuccess);
    io.B = B; io.residual = res.get(); io.conv_state = conv.get(); io.ssm_state = ssm.get();
    io.num_slots = S; io.state_idx = idx.get(); io.error_flag = flag.get();
  }
};

// The fused W8A8 decode step (block/step_kernels.cuh: four kernels, optional programmatic
// dependent launch) against the eight-kernel step on the same layer, weights and states: batch
// 1 / 3 / 8 (the kernels' two row counts), sequences scattered over slots by state_idx, rotated
// (Quamba) and unrotated (naive) layers, E = 128 (H_{2^7}) and 320 (H_20 ⊗ H_16 is not fused:
// 2^k < 32, so that case checks the fallback) and 384 (H_12 ⊗ H_32). Both steps use the same integer
// and fp32 operations except the RMSNorm and Hadamard summation orders, so an int8 activation can
// move by one step where its fp32 value sits on a rounding boundary: the bounds allow rare
// one-step differences in the conv states and nothing more.
TEST(GpuBlockStep, FusedStepMatchesEightKernelStep) {
  QUAMBA_REQUIRE_GPU();
  namespace qb = quamba::block;
  for (int64_t D : {64, 160, 192}) {
    for (bool quamba : {true, false}) {
      const ref::ModelWeights w = make_model(D, 1, 500 + D);
      const ref::QuantizedModel q = quantize(w, quamba ? ref::recipe_quamba() : ref::recipe_naive(), 77 + D);
      const DeviceLayer dl(q);
      const qb::BlockDims& d = dl.d;
      const int64_t S = 11;
      const int64_t E = d.E, K = d.K, N = d.N;
      for (int64_t B : {1, 3, 8}) {
        // 0: ordinary launches; 1: pdl, steps chained back to back; 2: pdl with settled states
        // (the scan reads its state before the wait), the steps separated by a synchronization.
        for (int mode : {0, 1, 2}) {
          const bool pdl = mode > 0, settled = mode == 2;
          SCOPED_TRACE("D=" + std::to_string(D) + (quamba ? " quamba" : " naive") + " B=" + std::to_string(B) +
                       (pdl ? " pdl" : "") + (settled ? " settled" : ""));
          std::mt19937_64 rng(uint64_t(D * 100 + B));
          // Distinct slots in reverse order with gaps; states and residual rows of plausible size.
          const int32_t kSlots[8] = {9, 2, 5, 0, 7, 10, 3, 6};
          const std::vector<int32_t> idx(kSlots, kSlots + B);
          std::vector<int8_t> conv0(size_t(S * E * K));
          for (auto& v : conv0) v = int8_t(int(rng() % 255) - 127);
          const std::vector<float> ssm0 = quamba::test::random_floats(size_t(S * E * N), rng, -2.f, 2.f);
          const std::vector<float> res0 = quamba::test::random_floats(size_t(B * D), rng, -3.f, 3.f);
          std::vector<float> res_out[2], ssm_out[2];
          std::vector<int8_t> conv_out[2];
          for (int fused = 0; fused < 2; ++fused) {
            StepRig r(d, B, S, conv0, ssm0, res0, idx);
            r.io.kernels = fused == 1 ? qb::StepKernels::kFused : qb::StepKernels::kUnfused;
            r.io.pdl = pdl;
            r.io.states_settled = settled;
            for (int step = 0; step < 3; ++step) {
              ASSERT_EQ(qb::step_i8(d, dl.layer, r.ws, r.io, nullptr), Status::kSuccess);
              if (settled) ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            }
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            EXPECT_EQ(r.flag.download()[0], 0);
            res_out[fused] = r.res.download();
            ssm_out[fused] = r.ssm.download();
            conv_out[fused] = r.conv.download();
          }
          size_t off_by_one = 0;
          for (size_t i = 0; i < conv0.size(); ++i) {
            const int diff = std::abs(int(conv_out[1][i]) - int(conv_out[0][i]));
            ASSERT_LE(diff, 1) << "conv state element " << i;
            off_by_one += diff;
          }
          EXPECT_LE(off_by_one, conv0.size() / 200 + 2) << "one-step conv state differences";
          // Slots no sequence uses are untouched by both steps.
          for (int64_t sl = 0; sl < S; ++sl) {
            if (std::find(idx.begin(), idx.end(), int32_t(sl)) != idx.end()) continue;
            for (int64_t i = sl * E * N; i < (sl + 1) * E * N; ++i) ASSERT_EQ(ssm_out[1][size_t(i)], ssm0[size_t(i)]);
          }
          const Diff dr = diff(res_out[1], res_out[0], int(D)), ds = diff(ssm_out[1], ssm_out[0], int(E * N));
          EXPECT_LE(dr.rel_l2, 2e-3) << "residual: " << str(dr);
          EXPECT_LE(ds.rel_l2, 2e-3) << "ssm state: " << str(ds);
        }
      }
    }
  }
}

// The in_proj step kernel's weights and conv inputs at d_model D (E = 2·D, K = 4), drawn from
// `rng` in one fixed order, on the device; params() points an InProjStepParams at them and at the
// caller's residual rows, conv states and outputs, with scales that spread xz over many int8
// values (xz ~ N(0, 20)).
struct InProjStepWeights {
  static constexpr int K = 4;
  int D, E;
  DeviceBuffer<float> gamma;
  DeviceBuffer<int8_t> w_in, conv_w, conv_b;
  InProjStepWeights(int d, std::mt19937_64& rng)
      : D(d), E(2 * d),
        gamma(quamba::test::random_floats(size_t(D), rng, 0.5f, 1.5f)),
        w_in(quamba::test::random_int8(size_t(2 * E) * D, rng, -20, 20)),
        conv_w(quamba::test::random_int8(size_t(E) * K, rng)),
        conv_b(quamba::test::random_int8(size_t(E), rng)) {}
  quamba::block::InProjStepParams params(int M, const float* residual, int8_t* state, int8_t* u, int8_t* xz) const {
    quamba::block::InProjStepParams p;
    p.M = M; p.D = D; p.E = E; p.K = K;
    p.residual = residual; p.gamma = gamma.get(); p.inv_s_h = 9.f;
    p.w_in = w_in.get(); p.alpha_in = 0.32f / std::sqrt(float(D));
    p.conv_state = state; p.num_slots = M;
    p.conv_w = conv_w.get(); p.conv_b = conv_b.get();
    p.conv_scale_wx = 1.f / 256; p.conv_s_b = 0.05f; p.conv_inv_s_u = 4.f;
    p.u = u; p.xz = xz;
    return p;
  }
};

// How many of the 256 int8 values occur in v (a comparison of outputs is not vacuous when many do).
inline int distinct_int8_values(const std::vector<int8_t>& v) {
  std::vector<bool> seen(256, false);
  int distinct = 0;
  for (int8_t x : v)
    if (!seen[size_t(x + 128)]) {
      seen[size_t(x + 128)] = true;
      ++distinct;
    }
  return distinct;
}

// The fused in_proj step kernel's two compiled row counts against each other: one sequence
// (M = 1: its residual row kept in registers between the RMSNorm passes for D <= 3072, read
// again from L2 above) and the same sequence twice (M = 2, the up-to-8-rows form, which always
// reads again). Both add the squares in the same order, so u, xz and the conv states are
// bit-identical, at d_model sizes on both sides of the register bound.
TEST(GpuBlockStep, InProjStepRowCountsAgree) {
  QUAMBA_REQUIRE_GPU();
  namespace qb = quamba::block;
  for (int D : {64, 2560, 3072, 3088, 4096}) {
    SCOPED_TRACE("D=" + std::to_string(D));
    std::mt19937_64 rng(uint64_t(D) * 13 + 5);
    const auto res1 = quamba::test::random_floats(size_t(D), rng, -3.f, 3.f);
    const InProjStepWeights w(D, rng);
    const int E = w.E, K = w.K;
    const auto state1 = quamba::test::random_int8(size_t(E) * K, rng);
    std::vector<float> res2(res1);
    res2.insert(res2.end(), res1.begin(), res1.end());
    std::vector<int8_t> state2(state1);
    state2.insert(state2.end(), state1.begin(), state1.end());
    std::vector<int8_t> u[3], xz[3], st[3];
    for (int M : {1, 2}) {
      DeviceBuffer<float> d_res(M == 1 ? res1 : res2);
      DeviceBuffer<int8_t> state(M == 1 ? state1 : state2), du(size_t(M) * E), dxz(size_t(M) * 2 * E);
      const qb::InProjStepParams p = w.params(M, d_res.get(), state.get(), du.get(), dxz.get());
      ASSERT_EQ(qb::run(p, nullptr), Status::kSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto hu = du.download(), hxz = dxz.download(), hst = state.download();
      for (int m = 0; m < M; ++m) {
        const int k = M == 1 ? 0 : 1 + m;
        u[k].assign(hu.begin() + size_t(m) * E, hu.begin() + size_t(m + 1) * E);
        xz[k].assign(hxz.begin() + size_t(m) * 2 * E, hxz.begin() + size_t(m + 1) * 2 * E);
        st[k].assign(hst.begin() + size_t(m) * E * K, hst.begin() + size_t(m + 1) * E * K);
      }
    }
    for (int k : {1, 2}) {
      EXPECT_EQ(u[k], u[0]) << "row " << k - 1;
      EXPECT_EQ(xz[k], xz[0]) << "row " << k - 1;
      EXPECT_EQ(st[k], st[0]) << "row " << k - 1;
    }
    // Not vacuous: the activations span many int8 values.
    EXPECT_GT(distinct_int8_values(xz[0]), 40);
  }
}

// The in_proj step kernel with its weight rows staged in shared memory (cp.async before the
// dependency wait) against the register form: the same sums, conv updates and outputs, bit for
// bit, at one and several sequences (M = 8 at D = 2560 and M = 1 at D = 3088 do not fit the staged form's 48 KiB:
// run() takes the register form there, which the comparison then checks trivially).
TEST(GpuBlockStep, InProjStagedWeightsBitIdentical) {
  QUAMBA_REQUIRE_GPU();
  namespace qb = quamba::block;
  struct Case { int M, D; };
  for (const Case c : {Case{1, 2560}, Case{2, 768}, Case{8, 64}, Case{1, 3088}, Case{8, 2560}}) {
    const int D = c.D, M = c.M;
    SCOPED_TRACE("M=" + std::to_string(M) + " D=" + std::to_string(D));
    std::mt19937_64 rng(uint64_t(D) * 29 + uint64_t(M));
    const auto res = quamba::test::random_floats(size_t(M) * D, rng, -3.f, 3.f);
    const InProjStepWeights w(D, rng);
    const int E = w.E, K = w.K;
    const auto state0 = quamba::test::random_int8(size_t(M) * E * K, rng);
    DeviceBuffer<float> d_res(res);
    std::vector<int8_t> u[2], xz[2], st[2];
    for (int staged = 0; staged < 2; ++staged) {
      DeviceBuffer<int8_t> state(state0), du(size_t(M) * E), dxz(size_t(M) * 2 * E);
      qb::InProjStepParams p = w.params(M, d_res.get(), state.get(), du.get(), dxz.get());
      p.stage_weights = staged == 1;
      ASSERT_EQ(qb::run(p, nullptr), Status::kSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      u[staged] = du.download(); xz[staged] = dxz.download(); st[staged] = state.download();
    }
    EXPECT_EQ(u[1], u[0]);
    EXPECT_EQ(xz[1], xz[0]);
    EXPECT_EQ(st[1], st[0]);
    EXPECT_GT(distinct_int8_values(xz[0]), 40);
  }
}

// The out_proj step kernel without the rotation (aq = q8(y·factor), here y small integers and
// factor 1, so aq = y) against the exact host sum: r(m, n) += fp32(acc·alpha) with alpha a power
// of two, so every fp32 operation is exact but the final add, which host and device both round
// to nearest. d_model is chosen past what the persistent grid holds at once (16-row blocks, at
// most 4 CTAs per SM), so CTAs loop over several row blocks and the last block is partial:
// the residual value each thread requests right after the dependency wait belongs to its first
// row block only, and later blocks must read their own.
TEST(GpuBlockStep, OutProjStepExactOverManyRowBlocks) {
  QUAMBA_REQUIRE_GPU();
  namespace qb = quamba::block;
  int dev = 0, sms = 0;
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), cudaSuccess);
  const int E = 256;
  for (const int D : {40, 16 * (4 * sms) * 2 + 8}) {
    for (const int M : {1, 3}) {
      SCOPED_TRACE("M=" + std::to_string(M) + " D=" + std::to_string(D));
      std::mt19937_64 rng(uint64_t(D) * 7 + uint64_t(M));
      const auto w = quamba::test::random_int8(size_t(D) * E, rng);
      const auto yq = quamba::test::random_int8(size_t(M) * E, rng, -60, 60);
      std::vector<__half> y(yq.size());
      for (size_t i = 0; i < y.size(); ++i) y[i] = __float2half(float(yq[i]));
      const auto res0 = quamba::test::random_floats(size_t(M) * D, rng, -3.f, 3.f);
      DeviceBuffer<int8_t> d_w(w);
      DeviceBuffer<__half> d_y(y);
      DeviceBuffer<float> d_res(res0);
      qb::OutProjStepParams p;
      p.M = M; p.D = D; p.E = E;
      p.y = d_y.get(); p.rotate = false; p.factor = 1.f;
      p.w_out = d_w.get(); p.alpha_out = 0.25f; p.residual = d_res.get();
      ASSERT_EQ(qb::run(p, nullptr), Status::kSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto got = d_res.download();
      size_t bad = 0;
      for (int m = 0; m < M; ++m)
        for (int n = 0; n < D; ++n) {
          int32_t acc = 0;
          for (int k = 0; k < E; ++k) acc += int32_t(yq[size_t(m) * E + k]) * int32_t(w[size_t(n) * E + k]);
          const float want = float(acc) * 0.25f + res0[size_t(m) * D + n];
          if (got[size_t(m) * D + n] != want && bad++ < 5)
            ADD_FAILURE() << "m=" << m << " n=" << n << ": " << got[size_t(m) * D + n] << " want " << want;
        }
      EXPECT_EQ(bad, 0u);
    }
  }
}

// Validation of the fused step's kernels (host only: runs without a device).
TEST(GpuBlockStep, CanImplementRules) {
  namespace qb = quamba::block;
  alignas(16) static int8_t i8[64];
  alignas(16) static float f32[64];
  alignas(16) static uint16_t f16[64];
  auto in = [&] {
    qb::InProjStepParams p;
    p.M = 1; p.D = 64; p.E = 128; p.K = 4;
    p.residual = f32; p.gamma = f32; p.w_in = i8; p.conv_state = i8; p.num_slots = 1; p.conv_w = i8;
    p.u = i8; p.xz = i8;
    return p;
  };
  EXPECT_EQ(qb::can_implement(in()), Status::kSuccess);
  { auto p = in(); p.M = qb::kStepMaxRows + 1; p.num_slots = 16; EXPECT_EQ(qb::can_implement(p), Status::kErrorNotSupported); }
  { auto p = in(); p.K = 5; EXPECT_EQ(qb::can_implement(p), Status::kErrorNotSupported); }
  { auto p = in(); p.D = 72; EXPECT_EQ(qb::can_implement(p), Status::kErrorMisaligned); }
  { auto p = in(); p.residual = f32 + 1; EXPECT_EQ(qb::can_implement(p), Status::kErrorMisaligned); }
  { auto p = in(); p.u = nullptr; EXPECT_EQ(qb::can_implement(p), Status::kErrorInvalidArgument); }
  { auto p = in(); p.M = 2; EXPECT_EQ(qb::can_implement(p), Status::kErrorInvalidArgument) << "2 sequences, 1 slot"; }
  { auto p = in(); p.M = 2; p.state_idx = reinterpret_cast<const int32_t*>(f32); EXPECT_EQ(qb::can_implement(p), Status::kSuccess); }
  { auto p = in(); p.M = 0; EXPECT_EQ(qb::can_implement(p), Status::kErrorInvalidArgument); }
  // Shared memory: 8 normalized rows of D bytes plus the kernel's static ~1 KB within 48 KiB.
  { auto p = in(); p.M = 8; p.num_slots = 8; p.D = 6000; EXPECT_EQ(qb::can_implement(p), Status::kSuccess); }
  { auto p = in(); p.M = 8; p.num_slots = 8; p.D = 6016; EXPECT_EQ(qb::can_implement(p), Status::kErrorNotSupported); }
  auto out = [&] {
    qb::OutProjStepParams p;
    p.M = 1; p.D = 64; p.E = 128;
    p.y = reinterpret_cast<const __half*>(f16); p.w_out = i8; p.residual = f32;
    return p;
  };
  EXPECT_EQ(qb::can_implement(out()), Status::kSuccess);
  { auto p = out(); p.E = 192; EXPECT_EQ(qb::can_implement(p), Status::kErrorNotSupported) << "12 x 16: 2^k < 32"; }
  { auto p = out(); p.E = 192; p.rotate = false; EXPECT_EQ(qb::can_implement(p), Status::kSuccess); }
  { auto p = out(); p.E = 384; EXPECT_EQ(qb::can_implement(p), Status::kSuccess) << "12 x 32"; }
  { auto p = out(); p.E = 200; p.rotate = false; EXPECT_EQ(qb::can_implement(p), Status::kErrorMisaligned); }
  { auto p = out(); p.M = qb::kStepMaxRows + 1; EXPECT_EQ(qb::can_implement(p), Status::kErrorNotSupported); }
  { auto p = out(); p.residual = nullptr; EXPECT_EQ(qb::can_implement(p), Status::kErrorInvalidArgument); }
}

// A bad state_idx entry: the fused step sets the error flag and leaves that sequence's slot
// alone, like the eight-kernel step.
TEST(GpuBlockStep, FusedStepBadSlotSetsFlag) {
  QUAMBA_REQUIRE_GPU();
  namespace qb = quamba::block;
  const ref::ModelWeights w = make_model(64, 1, 600);
  const ref::QuantizedModel q = quantize(w, ref::recipe_quamba(), 601);
  const DeviceLayer dl(q);
  const qb::BlockDims& d = dl.d;
  const int64_t S = 2, B = 2;
  const std::vector<int8_t> conv0(size_t(S * d.E * d.K), 3);
  const std::vector<float> ssm0(size_t(S * d.E * d.N), 0.25f), res0(size_t(B * d.D), 1.0f);
  // Plain launches, and programmatic dependent launches with the states read before the waits.
  for (bool pdl_settled : {false, true}) {
    SCOPED_TRACE(pdl_settled ? "pdl + states_settled" : "plain");
    StepRig r(d, B, S, conv0, ssm0, res0, {1, 7});
    r.io.kernels = qb::StepKernels::kFused;
    r.io.pdl = pdl_settled && quamba::device_supports_pdl(0);
    r.io.states_settled = pdl_settled;
    ASSERT_EQ(qb::step_i8(d, dl.layer, r.ws, r.io, nullptr), Status::kSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(r.flag.download()[0], 1);
    const auto conv1 = r.conv.download();
    const auto ssm1 = r.ssm.download();
    for (int64_t i = 0; i < d.E * d.K; ++i) ASSERT_EQ(conv1[size_t(i)], 3) << "slot 0 conv state changed";
    for (int64_t i = 0; i < d.E * d.N; ++i) ASSERT_EQ(ssm1[size_t(i)], 0.25f) << "slot 0 ssm state changed";
    bool slot1_changed = false;
    for (int64_t i = d.E * d.N; i < 2 * d.E * d.N; ++i) slot1_changed |= ssm1[size_t(i)] != 0.25f;
    EXPECT_TRUE(slot1_changed) << "the valid sequence's state was not updated";
  }
}

TEST(GpuModelErrors, BadIdsLeaveStatesUnchanged) {
  QUAMBA_REQUIRE_GPU();
  const auto ids = random_ids(12, 80);
  for (bool i8 : {true, false}) {
    SCOPED_TRACE(i8 ? "w8a8" : "fp16");
    auto a = make(i8, 2), b = make(i8, 2);
    for (int64_t s = 0; s < 2; ++s) {
      ASSERT_EQ(a->prefill(s, ids.data(), 12, nullptr, false), Status::kSuccess);
      ASSERT_EQ(b->prefill(s, ids.data(), 12, nullptr, false), Status::kSuccess);
    }
    std::vector<int32_t> bad = ids;
    bad[7] = int32_t(kVocab);
    EXPECT_EQ(a->prefill(0, bad.data(), 12, nullptr, false), Status::kErrorOutOfRange);
    bad[7] = -1;
    EXPECT_EQ(a->prefill(1, bad.data(), 12, nullptr, true), Status::kErrorOutOfRange);
    const int32_t bad_step[2] = {3, int32_t(kVocab) + 5};
    EXPECT_EQ(a->decode(bad_step, nullptr), Status::kErrorOutOfRange);
    const int32_t step[2] = {3, 4};
    std::vector<float> la(2 * kVocab), lb(2 * kVocab);
    ASSERT_EQ(a->decode(step, la.data()), Status::kSuccess);
    ASSERT_EQ(b->decode(step, lb.data()), Status::kSuccess);
    EXPECT_TRUE(quamba::test::all_close(la, lb, {0.0, 0.0}, "after rejected calls"));
  }
}

TEST(GpuModelErrors, BadOptionsAndArguments) {
  QUAMBA_REQUIRE_GPU();
  const Models& m = models();
  std::unique_ptr<qm::Engine> e;
  std::string err;
  qm::EngineOptions o;
  o.batch = 0;
  EXPECT_EQ(qm::make_gpu_engine_fp16(m.w, o, &e, &err), Status::kErrorInvalidArgument);
  EXPECT_FALSE(err.empty());
  o = {};
  o.prefill_chunk = 0;
  EXPECT_EQ(qm::make_gpu_engine_w8a8(m.q, o, &e, &err), Status::kErrorInvalidArgument);
  EXPECT_EQ(qm::make_gpu_engine_fp16(m.w, {}, nullptr, &err), Status::kErrorInvalidArgument);
  // d_model not a multiple of 16
  ref::ModelWeights w72;
  ASSERT_EQ(ref::init_random_model(ref::make_config(72, 1, kVocab), 1, &w72), Status::kSuccess);
  EXPECT_EQ(qm::make_gpu_engine_fp16(w72, {}, &e, &err), Status::kErrorNotSupported);
  // inconsistent weights
  ref::ModelWeights broken = m.w;
  broken.layers[1].in_proj.pop_back();
  EXPECT_EQ(qm::make_gpu_engine_fp16(broken, {}, &e, &err), Status::kErrorInvalidArgument);
  // Hadamard requested for E = 288 (= 9·32: no supported Hadamard size)
  const ref::ModelWeights w144 = make_model(144, 1, 3);
  ref::QuantizedModel q144 = quantize(w144, ref::recipe_naive(), 3);
  q144.recipe.use_hadamard = true;
  EXPECT_EQ(qm::make_gpu_engine_w8a8(q144, {}, &e, &err), Status::kErrorNotSupported);
  // arguments of a working engine
  auto g = make(true, 2);
  const int32_t ids[3] = {1, 2, 3};
  EXPECT_EQ(g->prefill(2, ids, 3, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(g->prefill(-1, ids, 3, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(g->prefill(0, ids, 0, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(g->prefill(0, nullptr, 3, nullptr, false), Status::kErrorInvalidArgument);
  EXPECT_EQ(g->decode(nullptr, nullptr), Status::kErrorInvalidArgument);
  EXPECT_EQ(g->reset_slot(2), Status::kErrorInvalidArgument);
  EXPECT_EQ(g->reset(0), Status::kErrorInvalidArgument);
  // reset(batch) gives fresh slots and a working (re-captured) decode
  ASSERT_EQ(g->reset(3), Status::kSuccess);
  EXPECT_EQ(g->batch(), 3);
  const int32_t step[3] = {4, 5, 6};
  std::vector<float> l(3 * kVocab);
  for (int s = 0; s < 3; ++s) ASSERT_EQ(g->decode(step, l.data()), Status::kSuccess);
  EXPECT_TRUE(all_finite(l));
}

TEST(GpuModelMemory, IndependentOfPromptLength) {
  QUAMBA_REQUIRE_GPU();
  auto e = make(true, 1, 64);
  auto* g = dynamic_cast<qm::GpuEngine*>(e.get());
  ASSERT_NE(g, nullptr);
  const auto before = g->memory();
  EXPECT_GT(before.weights, 0);
  EXPECT_GT(before.caches, 0);
  size_t free0 = 0, free1 = 0, total = 0;
  const auto shortp = random_ids(16, 90), longp = random_ids(1500, 91);
  std::vector<float> last(kVocab);
  // One pass over the long prompt first (the short prompt's kernels load before free0 is read):
  // the first launch of each kernel loads its module (CUDA lazy loading), which takes device
  // memory once and is not a per-prompt cost.
  ASSERT_EQ(e->prefill(0, longp.data(), int64_t(longp.size()), last.data(), false), Status::kSuccess);
  // Free memory is device-wide: other processes (ctest -j) move it too. A leak or a buffer that
  // grows with the prompt shows in every attempt, another process's allocation rarely in three in
  // a row, so the smallest growth of three short-then-long pairs is compared with the bound. The
  // engine's own accounting is the exact check.
  size_t growth = ~size_t(0);
  for (int attempt = 0; attempt < 3 && growth > (size_t(4) << 20); ++attempt) {
    ASSERT_EQ(e->reset_slot(0), Status::kSuccess);
    ASSERT_EQ(e->prefill(0, shortp.data(), int64_t(shortp.size()), last.data(), false), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    ASSERT_EQ(e->reset_slot(0), Status::kSuccess);
    ASSERT_EQ(e->prefill(0, longp.data(), int64_t(longp.size()), last.data(), false), Status::kSuccess);
    QUAMBA_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
    growth = std::min(growth, free0 - std::min(free0, free1));
    EXPECT_TRUE(all_finite(last));
  }
  EXPECT_EQ(g->memory().total(), before.total());
  EXPECT_LE(growth, size_t(4) << 20) << "device memory grew with the prompt";
}

// ---- calibration ----------------------------------------------------------------------------------

// Test hook: copies each view to the host (synchronizing, which a production hook must not do)
// and keeps the absmax per (layer, site), the rows seen per site and the samples.
class RecordingHook : public quamba::quant::ObserverHook {
 public:
  explicit RecordingHook(int64_t layers) : absmax(size_t(layers), std::vector<float>(quamba::quant::kNumSites, 0.f)),
                                           rows(size_t(layers), std::vector<int64_t>(quamba::quant::kNumSites, 0)) {}
  Status observe(int64_t layer, quamba::quant::Site site, const quamba::quant::DeviceMatrixView& v,
                 cudaStream_t s) override {
    if (layer < 0 || layer >= int64_t(absmax.size()) || v.type != quamba::quant::ElemType::kF16 || v.row_stride < v.cols)
      return Status::kErrorInvalidArgument;
    std::vector<__half> h(size_t(v.rows * v.cols));
    if (cudaMemcpy2DAsync(h.data(), size_t(v.cols) * 2, v.data, size_t(v.row_stride) * 2, size_t(v.cols) * 2,
                          size_t(v.rows), cudaMemcpyDeviceToHost, s) != cudaSuccess ||
        cudaStreamSynchronize(s) != cudaSuccess)
      return Status::kErrorCuda;
    float& m = absmax[size_t(layer)][int(site)];
    for (const __half x : h) m = std::max(m, std::fabs(quamba::test::from_half(x)));
    if (site != quamba::quant::Site::kXd || v.cols != 32) rows[size_t(layer)][int(site)] += v.rows;
    return Status::kSuccess;
  }
  Status end_sample(cudaStream_t) override {
    ++samples;
    return Status::kSuccess;
  }
  std::vector<std::vector<float>> absmax;
  std::vector<std::vector<int64_t>> rows;
  int64_t samples = 0;
};

TEST(GpuCalibration, ObservesEverySiteLikeTheReference) {
  QUAMBA_REQUIRE_GPU();
  for (int64_t D : {64, 96}) {
    SCOPED_TRACE("D=" + std::to_string(D));
    const ref::ModelWeights w = make_model(D, 2, 300 + D);
    std::vector<std::vector<int32_t>> seqs;
    int64_t tokens = 0;
    for (int i = 0; i < 3; ++i) {
      seqs.push_back(random_ids(20 + 7 * i, 400 + i));
      tokens += int64_t(seqs.back().size());
    }
    ref::CalibrationStats st;
    ASSERT_EQ(ref::calibrate(w, seqs, {}, &st), Status::kSuccess);
    RecordingHook hook(2);
    qm::EngineOptions o;
    o.prefill_chunk = 16;  // sequences span several chunks
    std::string err;
    ASSERT_EQ(qm::calibrate_gpu(w, seqs, &hook, o, &err), Status::kSuccess) << err;
    EXPECT_EQ(hook.samples, 3);
    using quamba::quant::Site;
    for (int64_t l = 0; l < 2; ++l) {
      const ref::LayerObservers& r = st.layers[size_t(l)];
      const std::pair<Site, float> sites[] = {{Site::kH, r.h.value},   {Site::kXz, r.xz.value},
                                              {Site::kU, r.u.value},   {Site::kXd, r.xd.value},
                                              {Site::kDt, r.dt.value}, {Site::kOPlain, r.o_plain.value},
                                              {Site::kORotated, r.o_rotated.value}};
      for (const auto& [site, want] : sites) {
        const float got = hook.absmax[size_t(l)][int(site)];
        EXPECT_NEAR(got, want, 2e-2 * want) << "layer " << l << " site " << int(site);
        EXPECT_EQ(hook.rows[size_t(l)][int(site)], tokens) << "layer " << l << " site " << int(site);
      }
    }
  }
}

}  // namespace
