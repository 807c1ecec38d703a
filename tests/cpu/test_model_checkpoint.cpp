// Model files (quamba/model/checkpoint.hpp): Hugging Face checkpoint directories <-> the fp32
// reference model, and the "quamba-w8a8" quantized checkpoint <-> reference::QuantizedModel.
//
// Round trips are checked value by value (bit-exact for F32, int8 and scales; exactly the
// rounded value for F16/BF16) and end to end (prefill logits of the loaded model equal those of
// the original, bit for bit). Every documented error returns its Status and a message naming
// what is wrong.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#if defined(__unix__)
#include <unistd.h>
#endif

#include "common/random.hpp"
#include "common/temp_dir.hpp"
#include "quamba/model/checkpoint.hpp"

using namespace quamba;
using namespace quamba::reference;
using quamba::io::Dtype;
namespace fs = std::filesystem;

namespace {

// ---- helpers ---------------------------------------------------------------------------------

using TempDir = quamba::test::TempDir;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  ASSERT_TRUE(f.good()) << path;
}

// Replaces the first occurrence of `from` in the file (which must contain it).
void edit_file(const std::string& path, const std::string& from, const std::string& to) {
  std::string t = read_text(path);
  const size_t at = t.find(from);
  ASSERT_NE(at, std::string::npos) << "'" << from << "' not in " << path;
  t.replace(at, from.size(), to);
  write_text(path, t);
}

constexpr int64_t kVocab = 61;

ModelConfig config_tied() { return make_config(32, 2, kVocab); }  // E = 64 (Sylvester Hadamard)
ModelConfig config_untied() {                                     // E = 96 = 12·8 (Paley I)
  ModelConfig c = make_config(48, 3, kVocab);
  c.tie_embeddings = false;
  c.eps = 1e-6f;
  return c;
}

ModelWeights make_model(const ModelConfig& c, uint64_t seed) {
  ModelWeights m;
  EXPECT_EQ(init_random_model(c, seed, &m), Status::kSuccess);
  // Non-trivial norms, D and A_log so a swapped or dropped tensor shows in the logits.
  auto rng = test::make_rng(seed ^ 0x5eedull);
  std::uniform_real_distribution<float> d(0.5f, 1.5f);
  for (auto& l : m.layers) {
    for (auto& v : l.norm_gamma) v = d(rng);
    for (auto& v : l.D) v = d(rng);
    for (auto& v : l.A_log) v *= d(rng);
  }
  for (auto& v : m.norm_f) v = d(rng);
  return m;
}

std::vector<int32_t> random_ids(size_t n, uint64_t salt) {
  return test::random_token_ids(static_cast<size_t>(n), kVocab, salt);
}

// Prefill logits of B = 2 sequences of L = 5 tokens from a fresh cache.
template <typename Model, typename ConvT>
std::vector<float> logits_of(const Model& m) {
  constexpr int64_t B = 2, L = 5;
  const int64_t V = m.config.vocab;
  const std::vector<int32_t> ids = random_ids(B * L, 77);
  ModelCache<ConvT> cache;
  EXPECT_EQ(init_cache(m.config, B, &cache), Status::kSuccess);
  std::vector<float> logits(B * L * V, std::nanf(""));
  EXPECT_EQ(prefill(m, ids.data(), B, L, nullptr, &cache, make_view(logits.data(), B, L, V)), Status::kSuccess);
  return logits;
}
std::vector<float> logits_f32(const ModelWeights& m) { return logits_of<ModelWeights, float>(m); }
std::vector<float> logits_w8a8(const QuantizedModel& m) { return logits_of<QuantizedModel, int8_t>(m); }

// Bitwise equality of float vectors, reporting the first difference.
::testing::AssertionResult same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (float_bits(a[i]) != float_bits(b[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

float round_to(float v, Dtype d) {
  if (d == Dtype::kF16) return half_bits_to_float(float_to_half_bits(v));
  if (d == Dtype::kBF16) return bf16_bits_to_float(float_to_bf16_bits(v));
  return v;
}

std::vector<float> rounded(const std::vector<float>& v, Dtype d) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = round_to(v[i], d);
  return r;
}

// Every weight of `m` rounded through dtype `d`, as save_hf_model(d) + load_hf_model gives it.
ModelWeights rounded_model(const ModelWeights& m, Dtype d) {
  ModelWeights r = m;
  for (auto& l : r.layers)
    for (std::vector<float>* v : {&l.norm_gamma, &l.in_proj, &l.conv_w, &l.conv_b, &l.x_proj, &l.dt_proj, &l.dt_bias,
                                  &l.A_log, &l.D, &l.out_proj})
      *v = rounded(*v, d);
  r.embedding = rounded(r.embedding, d);
  r.norm_f = rounded(r.norm_f, d);
  r.lm_head = rounded(r.lm_head, d);
  return r;
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.d_inner, b.d_inner);
  EXPECT_EQ(a.d_state, b.d_state);
  EXPECT_EQ(a.d_conv, b.d_conv);
  EXPECT_EQ(a.dt_rank, b.dt_rank);
  EXPECT_EQ(a.vocab, b.vocab);
  EXPECT_EQ(float_bits(a.eps), float_bits(b.eps)) << a.eps << " vs " << b.eps;
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
}

void expect_same_weights(const ModelWeights& a, const ModelWeights& b) {
  expect_same_config(a.config, b.config);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerWeights &x = a.layers[i], &y = b.layers[i];
    SCOPED_TRACE("layer " + std::to_string(i));
    EXPECT_TRUE(same_bits(x.norm_gamma, y.norm_gamma)) << "norm_gamma";
    EXPECT_TRUE(same_bits(x.in_proj, y.in_proj)) << "in_proj";
    EXPECT_TRUE(same_bits(x.conv_w, y.conv_w)) << "conv_w";
    EXPECT_TRUE(same_bits(x.conv_b, y.conv_b)) << "conv_b";
    EXPECT_TRUE(same_bits(x.x_proj, y.x_proj)) << "x_proj";
    EXPECT_TRUE(same_bits(x.dt_proj, y.dt_proj)) << "dt_proj";
    EXPECT_TRUE(same_bits(x.dt_bias, y.dt_bias)) << "dt_bias";
    EXPECT_TRUE(same_bits(x.A_log, y.A_log)) << "A_log";
    EXPECT_TRUE(same_bits(x.D, y.D)) << "D";
    EXPECT_TRUE(same_bits(x.out_proj, y.out_proj)) << "out_proj";
  }
  EXPECT_TRUE(same_bits(a.embedding, b.embedding)) << "embedding";
  EXPECT_TRUE(same_bits(a.norm_f, b.norm_f)) << "norm_f";
  EXPECT_TRUE(same_bits(a.lm_head, b.lm_head)) << "lm_head";
}

void expect_same_quant(const QuantTensor& a, const QuantTensor& b, const char* what) {
  EXPECT_EQ(float_bits(a.scale), float_bits(b.scale)) << what << " scale " << a.scale << " vs " << b.scale;
  ASSERT_EQ(a.q.size(), b.q.size()) << what;
  EXPECT_EQ(std::memcmp(a.q.data(), b.q.data(), a.q.size()), 0) << what << " int8 values differ";
}

void expect_same_rows(const RowQuantI8& a, const RowQuantI8& b, const char* what) {
  EXPECT_TRUE(same_bits(a.scale, b.scale)) << what << " row scales";
  ASSERT_EQ(a.q.size(), b.q.size()) << what;
  EXPECT_TRUE(a.q.empty() || std::memcmp(a.q.data(), b.q.data(), a.q.size()) == 0) << what << " int8 rows differ";
}

void expect_same_quantized(const QuantizedModel& a, const QuantizedModel& b) {
  expect_same_config(a.config, b.config);
  EXPECT_EQ(a.recipe.use_hadamard, b.recipe.use_hadamard);
  EXPECT_EQ(a.recipe.u_scale, b.recipe.u_scale);
  EXPECT_EQ(a.recipe.int8_head, b.recipe.int8_head);
  expect_same_rows(a.embedding_q, b.embedding_q, "embedding_q");
  expect_same_rows(a.lm_head_q, b.lm_head_q, "lm_head_q");
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerWeightsI8 &x = a.layers[i], &y = b.layers[i];
    SCOPED_TRACE("layer " + std::to_string(i));
    EXPECT_TRUE(same_bits(x.norm_gamma, y.norm_gamma)) << "norm_gamma";
    expect_same_quant(x.in_proj, y.in_proj, "in_proj");
    expect_same_quant(x.conv_w, y.conv_w, "conv_w");
    expect_same_quant(x.conv_b, y.conv_b, "conv_b");
    expect_same_quant(x.x_proj, y.x_proj, "x_proj");
    expect_same_quant(x.dt_proj, y.dt_proj, "dt_proj");
    expect_same_quant(x.dt_bias, y.dt_bias, "dt_bias");
    expect_same_quant(x.A_log, y.A_log, "A_log");
    expect_same_quant(x.D, y.D, "D");
    expect_same_quant(x.out_proj, y.out_proj, "out_proj");
    const float sa[] = {x.act.s_h, x.act.s_xz, x.act.s_u, x.act.s_xd, x.act.s_dt, x.act.s_o};
    const float sb[] = {y.act.s_h, y.act.s_xz, y.act.s_u, y.act.s_xd, y.act.s_dt, y.act.s_o};
    for (int k = 0; k < 6; ++k) EXPECT_EQ(float_bits(sa[k]), float_bits(sb[k])) << "activation scale " << k;
  }
  EXPECT_TRUE(same_bits(a.embedding, b.embedding)) << "embedding";
  EXPECT_TRUE(same_bits(a.norm_f, b.norm_f)) << "norm_f";
  EXPECT_TRUE(same_bits(a.lm_head, b.lm_head)) << "lm_head";
}

QuantizedModel make_quantized(const ModelWeights& m, const QuantRecipe& r, double percentile = 0.99999) {
  std::vector<std::vector<int32_t>> seqs = {random_ids(24, 1), random_ids(17, 2)};
  CalibrationOptions opt;
  opt.percentile = percentile;
  CalibrationStats st;
  EXPECT_EQ(calibrate(m, seqs, opt, &st), Status::kSuccess);
  ModelScales s;
  EXPECT_EQ(scales_from_calibration(st, r, &s), Status::kSuccess);
  QuantizedModel q;
  EXPECT_EQ(quantize_model(m, s, r, &q), Status::kSuccess);
  return q;
}

// Copies safetensors file `src` to `dst` through a writer, letting the caller edit the metadata
// and each tensor (return false from `tensor` to drop it; it may change dtype, shape, bytes).
struct RawTensor {
  std::string name;
  Dtype dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void rewrite(const std::string& src, const std::string& dst,
             const std::function<void(std::map<std::string, std::string>&)>& meta,
             const std::function<bool(RawTensor&)>& tensor = nullptr,
             const std::vector<RawTensor>& extra = {}) {
  io::SafetensorsFile f;
  std::string err;
  ASSERT_EQ(f.open(src, &err), Status::kSuccess) << err;
  io::SafetensorsWriter w;
  std::map<std::string, std::string> md = f.metadata();
  if (meta) meta(md);
  for (const auto& kv : md) ASSERT_EQ(w.set_metadata(kv.first, kv.second), Status::kSuccess);
  for (const io::TensorInfo& t : f.tensors()) {
    RawTensor r{t.name, t.dtype, t.shape, std::vector<uint8_t>(t.nbytes())};
    ASSERT_EQ(f.read_tensor_bytes(t.name, r.bytes.data(), r.bytes.size(), &err), Status::kSuccess) << err;
    if (tensor && !tensor(r)) continue;
    ASSERT_EQ(w.add_tensor(r.name, r.dtype, r.shape, r.bytes.data(), r.bytes.size(), &err), Status::kSuccess) << err;
  }
  for (const RawTensor& r : extra)
    ASSERT_EQ(w.add_tensor(r.name, r.dtype, r.shape, r.bytes.data(), r.bytes.size(), &err), Status::kSuccess) << err;
  ASSERT_EQ(w.write(dst, &err), Status::kSuccess) << err;
}

// load_quantized on `path`; returns the status and fills *msg.
Status try_load_quantized(const std::string& path, std::string* msg) {
  QuantizedModel q;
  msg->clear();
  const Status s = model::load_quantized(path, &q, msg);
  if (s != Status::kSuccess) {
    EXPECT_FALSE(msg->empty()) << "no message for " << to_string(s);
  }
  return s;
}

Status try_load_hf(const std::string& dir, std::string* msg, ModelWeights* out = nullptr) {
  ModelWeights m;
  msg->clear();
  const Status s = model::load_hf_model(dir, out ? out : &m, msg);
  if (s != Status::kSuccess) {
    EXPECT_FALSE(msg->empty()) << "no message for " << to_string(s);
  }
  return s;
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// ---- Hugging Face checkpoints ------------------------------------------------------------------

TEST(HfModel, RoundTripF32IsExactTied) {
  TempDir dir;
  const ModelWeights m = make_model(config_tied(), 1);
  std::string err;
  ASSERT_EQ(model::save_hf_model(dir.str(), m, Dtype::kF32, &err), Status::kSuccess) << err;
  ModelWeights back;
  ASSERT_EQ(model::load_hf_model(dir.str(), &back, &err), Status::kSuccess) << err;
  expect_same_weights(m, back);
  EXPECT_TRUE(back.lm_head.empty());
  EXPECT_TRUE(same_bits(logits_f32(m), logits_f32(back)));
}

TEST(HfModel, RoundTripF32IsExactUntied) {
  TempDir dir;
  const ModelWeights m = make_model(config_untied(), 2);
  std::string err;
  ASSERT_EQ(model::save_hf_model(dir.str(), m, Dtype::kF32, &err), Status::kSuccess) << err;
  EXPECT_TRUE(contains(read_text(dir.file("config.json")), "\"tie_word_embeddings\": false"));
  ModelWeights back;
  ASSERT_EQ(model::load_hf_model(dir.str(), &back, &err), Status::kSuccess) << err;
  expect_same_weights(m, back);
  EXPECT_FALSE(back.config.tie_embeddings);
  EXPECT_TRUE(same_bits(logits_f32(m), logits_f32(back)));
}

TEST(HfModel, RoundTrip16BitRoundsEachValueOnce) {
  for (const Dtype d : {Dtype::kF16, Dtype::kBF16}) {
    for (const bool tied : {true, false}) {
      SCOPED_TRACE(std::string(io::dtype_name(d)) + (tied ? " tied" : " untied"));
      TempDir dir;
      const ModelWeights m = make_model(tied ? config_tied() : config_untied(), 3);
      std::string err;
      ASSERT_EQ(model::save_hf_model(dir.str(), m, d, &err), Status::kSuccess) << err;
      io::SafetensorsFile f;
      ASSERT_EQ(f.open(dir.file("model.safetensors"), &err), Status::kSuccess) << err;
      for (const auto& t : f.tensors()) EXPECT_EQ(t.dtype, d) << t.name;
      ModelWeights back;
      ASSERT_EQ(model::load_hf_model(dir.str(), &back, &err), Status::kSuccess) << err;
      const ModelWeights want = rounded_model(m, d);
      expect_same_weights(want, back);
      EXPECT_TRUE(same_bits(logits_f32(want), logits_f32(back)));
      // And within the dtype's rounding of the original.
      const double rel = d == Dtype::kF16 ? 0x1p-11 : 0x1p-8;
      for (size_t i = 0; i < m.embedding.size(); ++i)
        ASSERT_LE(std::fabs(back.embedding[i] - m.embedding[i]), rel * std::fabs(m.embedding[i]) + 1e-7) << i;
    }
  }
}

TEST(HfModel, ConfigJsonHasEveryKey) {
  TempDir dir;
  const ModelWeights m = make_model(config_untied(), 4);
  ASSERT_EQ(model::save_hf_model(dir.str(), m, Dtype::kBF16), Status::kSuccess);
  io::HfMambaConfig h;
  std::string err;
  ASSERT_EQ(io::load_hf_mamba_config(dir.file("config.json"), &h, &err), Status::kSuccess) << err;
  EXPECT_EQ(h.hidden_size, 48);
  EXPECT_EQ(h.num_hidden_layers, 3);
  EXPECT_EQ(h.intermediate_size, 96);
  EXPECT_EQ(h.state_size, 16);
  EXPECT_EQ(h.conv_kernel, 4);
  EXPECT_EQ(h.time_step_rank, 3);
  EXPECT_EQ(h.vocab_size, kVocab);
  EXPECT_EQ(static_cast<float>(h.layer_norm_epsilon), 1e-6f);
  EXPECT_FALSE(h.use_bias);
  EXPECT_TRUE(h.use_conv_bias);
  EXPECT_FALSE(h.tie_word_embeddings);
  const std::string text = read_text(dir.file("config.json"));
  EXPECT_TRUE(contains(text, "\"model_type\": \"mamba\""));
  EXPECT_TRUE(contains(text, "\"torch_dtype\": \"bfloat16\""));
}

TEST(HfModel, ShardedCheckpointLoads) {
  TempDir dir;
  const ModelWeights m = make_model(config_tied(), 5);
  ASSERT_EQ(model::save_hf_model(dir.str(), m, Dtype::kF32), Status::kSuccess);
  // Split model.safetensors into two shards (layer 1 in the second) plus an index.
  io::SafetensorsFile f;
  ASSERT_EQ(f.open(dir.file("model.safetensors")), Status::kSuccess);
  io::SafetensorsWriter w[2];
  std::string index = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  bool first = true;
  for (const auto& t : f.tensors()) {
    const int s = contains(t.name, "layers.1.") ? 1 : 0;
    std::vector<uint8_t> b(t.nbytes());
    ASSERT_EQ(f.read_tensor_bytes(t.name, b.data(), b.size()), Status::kSuccess);
    ASSERT_EQ(w[s].add_tensor(t.name, t.dtype, t.shape, b.data(), b.size()), Status::kSuccess);
    index += std::string(first ? "" : ", ") + "\"" + t.name + "\": \"model-0000" + std::to_string(s + 1) + "-of-00002.safetensors\"";
    first = false;
  }
  index += "}}";
  f.close();
  ASSERT_EQ(w[0].write(dir.file("model-00001-of-00002.safetensors")), Status::kSuccess);
  ASSERT_EQ(w[1].write(dir.file("model-00002-of-00002.safetensors")), Status::kSuccess);
  write_text(dir.file("model.safetensors.index.json"), index);
  fs::remove(dir.file("model.safetensors"));
  ModelWeights back;
  std::string err;
  ASSERT_EQ(model::load_hf_model(dir.str(), &back, &err), Status::kSuccess) << err;
  expect_same_weights(m, back);
  // A missing shard is an I/O error naming it.
  fs::remove(dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(try_load_hf(dir.str(), &err), Status::kErrorIo);
  EXPECT_TRUE(contains(err, "model-00002-of-00002.safetensors")) << err;
}

TEST(HfModel, StoredLmHeadDecidesTying) {
  const ModelWeights untied = make_model(config_untied(), 6);
  std::string err;
  {  // config says tied but the file has its own, different lm_head: it wins (SPEC §1)
    TempDir dir;
    ASSERT_EQ(model::save_hf_model(dir.str(), untied, Dtype::kF32), Status::kSuccess);
    edit_file(dir.file("config.json"), "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
    ModelWeights back;
    ASSERT_EQ(model::load_hf_model(dir.str(), &back, &err), Status::kSuccess) << err;
    EXPECT_FALSE(back.config.tie_embeddings);
    expect_same_weights(untied, back);
  }
  {  // an lm_head identical to the embedding loads as tied
    TempDir dir;
    ModelWeights same = untied;
    same.lm_head = same.embedding;
    ASSERT_EQ(model::save_hf_model(dir.str(), same, Dtype::kF32), Status::kSuccess);
    ModelWeights back;
    ASSERT_EQ(model::load_hf_model(dir.str(), &back, &err), Status::kSuccess) << err;
    EXPECT_TRUE(back.config.tie_embeddings);
    EXPECT_TRUE(back.lm_head.empty());
    EXPECT_TRUE(same_bits(logits_f32(same), logits_f32(back)));
  }
  {  // untied config without lm_head.weight: malformed
    TempDir dir;
    ASSERT_EQ(model::save_hf_model(dir.str(), make_model(config_tied(), 6), Dtype::kF32), Status::kSuccess);
    edit_file(dir.file("config.json"), "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    EXPECT_EQ(try_load_hf(dir.str(), &err), Status::kErrorFormat);
    EXPECT_TRUE(contains(err, "lm_head.weight")) << err;
  }
}

TEST(HfModel, NoConvBiasRunsWithZeroBias) {
  TempDir dir;
  ModelWeights m = make_model(config_tied(), 7);
  ASSERT_EQ(model::save_hf_model(dir.str(), m, Dtype::kF32), Status::kSuccess);
  rewrite(dir.file("model.safetensors"), dir.file("model.safetensors"), nullptr,
          [](RawTensor& t) { return !contains(t.name, "conv1d.bias"); });
  edit_file(dir.file("config.json"), "\"use_conv_bias\": true", "\"use_conv_bias\": false");
  ModelWeights back;
  std::string err;
  ASSERT_EQ(model::load_hf_model(dir.str(), &back, &err), Status::kSuccess) << err;
  for (auto& l : m.layers) l.conv_b.assign(l.conv_b.size(), 0.0f);
  expect_same_weights(m, back);
  EXPECT_TRUE(same_bits(logits_f32(m), logits_f32(back)));
}

TEST(HfModel, UnsupportedConfigsSayWhy) {
  std::string err;
  {
    TempDir dir;
    ASSERT_EQ(model::save_hf_model(dir.str(), make_model(config_tied(), 8), Dtype::kF32), Status::kSuccess);
    edit_file(dir.file("config.json"), "\"use_bias\": false", "\"use_bias\": true");
    EXPECT_EQ(try_load_hf(dir.str(), &err), Status::kErrorNotSupported);
    EXPECT_TRUE(contains(err, "use_bias")) << err;
  }
  for (const int k : {1, kMaxConvWidth + 1}) {
    TempDir dir;
    ASSERT_EQ(model::save_hf_model(dir.str(), make_model(config_tied(), 8), Dtype::kF32), Status::kSuccess);
    edit_file(dir.file("config.json"), "\"conv_kernel\": 4", "\"conv_kernel\": " + std::to_string(k));
    EXPECT_EQ(try_load_hf(dir.str(), &err), Status::kErrorNotSupported) << k;
    EXPECT_TRUE(contains(err, "conv_kernel")) << err;
  }
  {  // another architecture (from the io layer)
    TempDir dir;
    ASSERT_EQ(model::save_hf_model(dir.str(), make_model(config_tied(), 8), Dtype::kF32), Status::kSuccess);
    edit_file(dir.file("config.json"), "\"model_type\": \"mamba\"", "\"model_type\": \"mamba2\"");
    EXPECT_EQ(try_load_hf(dir.str(), &err), Status::kErrorNotSupported);
    EXPECT_TRUE(contains(err, "mamba2")) << err;
  }
  {  // config and weights disagree: malformed, named
    TempDir dir;
    ASSERT_EQ(model::save_hf_model(dir.str(), make_model(config_tied(), 8), Dtype::kF32), Status::kSuccess);
    edit_file(dir.file("config.json"), "\"state_size\": 16", "\"state_size\": 8");
    EXPECT_EQ(try_load_hf(dir.str(), &err), Status::kErrorFormat);
    EXPECT_TRUE(contains(err, "shape")) << err;
  }
  {  // nothing there
    TempDir dir;
    EXPECT_EQ(try_load_hf(dir.file("absent"), &err), Status::kErrorIo);
  }
}

TEST(HfModel, SaveRejectsBadInput) {
  TempDir dir;
  const ModelWeights m = make_model(config_tied(), 9);
  std::string err;
  EXPECT_EQ(model::save_hf_model(dir.str(), m, Dtype::kI8, &err), Status::kErrorInvalidArgument);
  EXPECT_TRUE(contains(err, "I8")) << err;
  ModelWeights broken = m;
  broken.layers[1].x_proj.pop_back();
  EXPECT_EQ(model::save_hf_model(dir.str(), broken, Dtype::kF32, &err), Status::kErrorInvalidArgument);
  ModelWeights bad_eps = m;
  bad_eps.config.eps = 2.0f;
  EXPECT_EQ(model::save_hf_model(dir.str(), bad_eps, Dtype::kF32, &err), Status::kErrorNotSupported);
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors")));
  EXPECT_EQ(model::load_hf_model(dir.str(), nullptr, &err), Status::kErrorInvalidArgument);
}

// ---- quantized checkpoints ---------------------------------------------------------------------

TEST(QuantizedCheckpoint, RoundTripIsBitExact) {
  struct Case {
    ModelConfig c;
    QuantRecipe r;
    const char* name;
  };
  const Case cases[] = {{config_tied(), recipe_quamba(), "tied quamba"},
                        {config_tied(), recipe_naive(), "tied naive"},
                        {config_untied(), recipe_quamba(), "untied quamba (Paley E)"},
                        {config_untied(), {true, UScale::kPercentileExact}, "untied exact percentile"}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TempDir dir;
    const ModelWeights m = make_model(k.c, 10);
    const QuantizedModel q = make_quantized(m, k.r, 0.999);
    std::string err;
    model::SaveQuantizedOptions opt;
    opt.percentile = 0.999;
    ASSERT_EQ(model::save_quantized(dir.file("q.safetensors"), q, &err, opt), Status::kSuccess) << err;
    QuantizedModel back;
    model::QuantizedCheckpointInfo info;
    ASSERT_EQ(model::load_quantized(dir.file("q.safetensors"), &back, &err, &info), Status::kSuccess) << err;
    expect_same_quantized(q, back);
    EXPECT_EQ(info.percentile, 0.999);
    EXPECT_EQ(info.fp_dtype, Dtype::kF32);
    EXPECT_EQ(info.metadata.at("format"), "quamba-w8a8");
    EXPECT_TRUE(same_bits(logits_w8a8(q), logits_w8a8(back)));
    // Decode continues identically too.
    ModelCacheI8 c1, c2;
    ASSERT_EQ(init_cache(q.config, 1, &c1), Status::kSuccess);
    ASSERT_EQ(init_cache(q.config, 1, &c2), Status::kSuccess);
    std::vector<float> l1(kVocab), l2(kVocab);
    for (int32_t tok : {3, 14, 15, 9}) {
      ASSERT_EQ(decode_step(q, &tok, 1, &c1, make_view(l1.data(), 1, kVocab)), Status::kSuccess);
      ASSERT_EQ(decode_step(back, &tok, 1, &c2, make_view(l2.data(), 1, kVocab)), Status::kSuccess);
      EXPECT_TRUE(same_bits(l1, l2));
    }
  }
}

TEST(QuantizedCheckpoint, LayoutFollowsTheNamingScheme) {
  TempDir dir;
  const QuantizedModel q = make_quantized(make_model(config_tied(), 11), recipe_quamba());
  ASSERT_EQ(model::save_quantized(dir.file("q.safetensors"), q), Status::kSuccess);
  io::SafetensorsFile f;
  ASSERT_EQ(f.open(dir.file("q.safetensors")), Status::kSuccess);
  const auto* t = f.find("layers.1.in_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, Dtype::kI8);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{128, 32}));
  t = f.find("layers.1.conv1d.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{64, 4}));
  for (const char* s : {"layers.0.in_proj.weight_scale", "layers.0.A_log_scale", "layers.0.conv1d.bias_scale",
                        "layers.1.act.s_u", "layers.1.act.s_o"}) {
    t = f.find(s);
    ASSERT_NE(t, nullptr) << s;
    EXPECT_EQ(t->dtype, Dtype::kF32) << s;
    EXPECT_TRUE(t->shape.empty()) << s;
  }
  float s_u = 0.0f;
  ASSERT_EQ(f.read_tensor_bytes("layers.1.act.s_u", &s_u, 4), Status::kSuccess);
  EXPECT_EQ(float_bits(s_u), float_bits(q.layers[1].act.s_u));
  EXPECT_EQ(f.find("lm_head.weight"), nullptr);
  EXPECT_EQ(f.tensors().size(), 2u + 2u * (1 + 9 * 2 + 6));
  const auto& md = f.metadata();
  EXPECT_EQ(md.at("format_version"), "1");
  EXPECT_EQ(md.at("recipe.use_hadamard"), "true");
  EXPECT_EQ(md.at("recipe.u_scale"), "percentile_ema");
  EXPECT_EQ(md.at("recipe.percentile"), "0.99999");
  EXPECT_EQ(md.at("config.d_model"), "32");
  EXPECT_EQ(md.at("config.d_inner"), "64");
  EXPECT_EQ(md.at("config.eps"), "1e-05");
  EXPECT_EQ(md.at("config.tie_embeddings"), "true");
}

TEST(QuantizedCheckpoint, HalfPrecisionFpTensors) {
  for (const Dtype d : {Dtype::kF16, Dtype::kBF16}) {
    SCOPED_TRACE(io::dtype_name(d));
    TempDir dir;
    const QuantizedModel q = make_quantized(make_model(config_untied(), 12), recipe_quamba());
    model::SaveQuantizedOptions opt;
    opt.fp_dtype = d;
    std::string err;
    ASSERT_EQ(model::save_quantized(dir.file("q.safetensors"), q, &err, opt), Status::kSuccess) << err;
    QuantizedModel back;
    model::QuantizedCheckpointInfo info;
    ASSERT_EQ(model::load_quantized(dir.file("q.safetensors"), &back, &err, &info), Status::kSuccess) << err;
    EXPECT_EQ(info.fp_dtype, d);
    QuantizedModel want = q;
    want.embedding = rounded(q.embedding, d);
    want.norm_f = rounded(q.norm_f, d);
    want.lm_head = rounded(q.lm_head, d);
    for (auto& l : want.layers) l.norm_gamma = rounded(l.norm_gamma, d);
    expect_same_quantized(want, back);  // int8 values and scales bit-exact
    EXPECT_TRUE(same_bits(logits_w8a8(want), logits_w8a8(back)));
  }
}

class QuantizedCheckpointErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    q_ = make_quantized(make_model(config_tied(), 13), recipe_quamba());
    ASSERT_EQ(model::save_quantized(good(), q_), Status::kSuccess);
  }
  std::string good() const { return dir_.file("good.safetensors"); }
  std::string bad() const { return dir_.file("bad.safetensors"); }

  // Loads `good` rewritten with edits; checks the Status and that the message names `needle`.
  void expect_meta(const std::function<void(std::map<std::string, std::string>&)>& edit, Status want,
                   const std::string& needle, const std::string& what) {
    SCOPED_TRACE(what);
    rewrite(good(), bad(), edit);
    std::string err;
    EXPECT_EQ(try_load_quantized(bad(), &err), want) << err;
    EXPECT_TRUE(contains(err, needle)) << "message '" << err << "' should name '" << needle << "'";
  }
  void expect_tensors(const std::function<bool(RawTensor&)>& edit, Status want, const std::string& needle,
                      const std::string& what, const std::vector<RawTensor>& extra = {}) {
    SCOPED_TRACE(what);
    rewrite(good(), bad(), nullptr, edit, extra);
    std::string err;
    EXPECT_EQ(try_load_quantized(bad(), &err), want) << err;
    EXPECT_TRUE(contains(err, needle)) << "message '" << err << "' should name '" << needle << "'";
  }

  TempDir dir_;
  QuantizedModel q_;
};

TEST_F(QuantizedCheckpointErrors, FormatAndVersion) {
  using M = std::map<std::string, std::string>;
  expect_meta([](M& m) { m["format"] = "quamba-w4a16"; }, Status::kErrorFormat, "quamba-w4a16", "other format");
  expect_meta([](M& m) { m.erase("format"); }, Status::kErrorFormat, "'format'", "no format");
  expect_meta([](M& m) { m.clear(); }, Status::kErrorFormat, "'format'", "no metadata at all");
  expect_meta([](M& m) { m["format_version"] = "3"; }, Status::kErrorNotSupported, "format_version 3", "version 3");
  // Version 2 is read, and requires recipe.int8_head, which a version 1 file does not have.
  expect_meta([](M& m) { m["format_version"] = "2"; }, Status::kErrorFormat, "'recipe.int8_head'",
              "version 2 without recipe.int8_head");
  expect_meta([](M& m) { m["format_version"] = "10"; }, Status::kErrorNotSupported, "format_version 10", "version 10");
  expect_meta([](M& m) { m["format_version"] = "1.0"; }, Status::kErrorFormat, "format_version", "version 1.0");
  expect_meta([](M& m) { m.erase("format_version"); }, Status::kErrorFormat, "format_version", "no version");
  // An HF checkpoint is not a quantized one.
  TempDir hf;
  ASSERT_EQ(model::save_hf_model(hf.str(), make_model(config_tied(), 1), Dtype::kF32), Status::kSuccess);
  std::string err;
  EXPECT_EQ(try_load_quantized(hf.file("model.safetensors"), &err), Status::kErrorFormat);
  EXPECT_TRUE(contains(err, "format")) << err;
}

TEST_F(QuantizedCheckpointErrors, EveryMetadataKeyIsRequired) {
  const std::map<std::string, std::string> md = [&] {
    io::SafetensorsFile f;
    EXPECT_EQ(f.open(good()), Status::kSuccess);
    return f.metadata();
  }();
  EXPECT_EQ(md.size(), 14u);
  for (const auto& kv : md) {
    if (kv.first == "format") continue;  // its own message, tested above
    const std::string key = kv.first;
    expect_meta([&](std::map<std::string, std::string>& m) { m.erase(key); }, Status::kErrorFormat, "'" + key + "'",
                "missing " + key);
  }
}

TEST_F(QuantizedCheckpointErrors, MetadataValuesAreChecked) {
  const std::vector<std::pair<std::string, std::string>> bad_values = {
      {"recipe.use_hadamard", "yes"},   {"recipe.use_hadamard", "True"}, {"recipe.u_scale", "max"},
      {"recipe.percentile", "1.5"},     {"recipe.percentile", "-0.1"},   {"recipe.percentile", "nan"},
      {"recipe.percentile", ""},        {"config.d_model", "0"},         {"config.d_model", "-32"},
      {"config.d_model", "032"},        {"config.d_model", "32.0"},      {"config.d_model", "3e1"},
      {"config.n_layer", "two"},        {"config.vocab", "99999999999"}, {"config.d_state", " 16"},
      {"config.eps", "0"},              {"config.eps", "-1e-5"},         {"config.eps", "inf"},
      {"config.eps", "1e-5x"},          {"config.tie_embeddings", "1"},
  };
  for (const auto& kv : bad_values)
    expect_meta([&](std::map<std::string, std::string>& m) { m[kv.first] = kv.second; }, Status::kErrorFormat,
                kv.first, kv.first + " = '" + kv.second + "'");
  expect_meta([](std::map<std::string, std::string>& m) { m["config.d_conv"] = std::to_string(kMaxConvWidth + 1); },
              Status::kErrorNotSupported, "d_conv", "d_conv beyond kMaxConvWidth");
  expect_meta([](std::map<std::string, std::string>& m) { m["config.d_ssm"] = "1"; }, Status::kErrorFormat,
              "config.d_ssm", "unknown config key");
  // Sizes that disagree with the tensors.
  expect_meta([](std::map<std::string, std::string>& m) { m["config.d_model"] = "16"; }, Status::kErrorFormat,
              "shape", "d_model 16");
  expect_meta([](std::map<std::string, std::string>& m) { m["config.n_layer"] = "1"; }, Status::kErrorFormat,
              "layers.1.", "n_layer 1");
  expect_meta([](std::map<std::string, std::string>& m) { m["config.n_layer"] = "3"; }, Status::kErrorFormat,
              "layers.2.", "n_layer 3");
  expect_meta([](std::map<std::string, std::string>& m) { m["config.tie_embeddings"] = "false"; },
              Status::kErrorFormat, "lm_head.weight", "untied without lm_head");
  // Keys outside config./recipe. are kept and ignored.
  rewrite(good(), bad(), [](std::map<std::string, std::string>& m) { m["producer"] = "test"; });
  QuantizedModel back;
  model::QuantizedCheckpointInfo info;
  std::string err;
  ASSERT_EQ(model::load_quantized(bad(), &back, &err, &info), Status::kSuccess) << err;
  EXPECT_EQ(info.metadata.at("producer"), "test");
  expect_same_quantized(q_, back);
}

TEST_F(QuantizedCheckpointErrors, TensorsAreChecked) {
  const std::string w = "layers.1.in_proj.weight";
  expect_tensors([&](RawTensor& t) { return t.name != "layers.1.act.s_u"; }, Status::kErrorFormat, "layers.1.act.s_u",
                 "missing activation scale");
  expect_tensors([&](RawTensor& t) { return t.name != w; }, Status::kErrorFormat, w, "missing int8 weight");
  expect_tensors([&](RawTensor& t) { return t.name != "embedding.weight"; }, Status::kErrorFormat, "embedding.weight",
                 "missing embedding");
  expect_tensors([&](RawTensor& t) {
        if (t.name == w) t.dtype = Dtype::kU8;
        return true;
      }, Status::kErrorFormat, "dtype", "int8 weight stored as U8");
  expect_tensors([&](RawTensor& t) {
        if (t.name == "layers.0.D_scale") {  // same value as F16 + padding bytes: wrong dtype
          t.dtype = Dtype::kF16;
          t.shape = {2};
        }
        return true;
      }, Status::kErrorFormat, "layers.0.D_scale", "scale stored as F16");
  expect_tensors([&](RawTensor& t) {
        if (t.name == "layers.0.act.s_h") t.shape = {1};
        return true;
      }, Status::kErrorFormat, "layers.0.act.s_h", "scale of shape [1]");
  expect_tensors([&](RawTensor& t) {
        if (t.name == "layers.0.conv1d.weight") t.shape = {64, 1, 4};
        return true;
      }, Status::kErrorFormat, "shape", "conv weight in the HF shape");
  expect_tensors([&](RawTensor& t) {
        if (t.name == "norm_f.weight") t.dtype = Dtype::kI32;
        return true;
      }, Status::kErrorFormat, "norm_f.weight", "fp tensor as I32");
  expect_tensors(nullptr, Status::kErrorFormat, "extra.tensor", "unexpected tensor",
                 {RawTensor{"extra.tensor", Dtype::kF32, {1}, std::vector<uint8_t>(4, 0)}});
  for (const float v : {0.0f, -1.0f, std::nanf(""), INFINITY}) {
    expect_tensors([&](RawTensor& t) {
          if (t.name == "layers.0.x_proj.weight_scale") std::memcpy(t.bytes.data(), &v, 4);
          if (t.name == "layers.1.act.s_dt") std::memcpy(t.bytes.data(), &v, 4);
          return true;
        }, Status::kErrorFormat, "scale", "bad scale value " + std::to_string(v));
  }
}

TEST(QuantizedCheckpoint, HadamardClaimOnUnsupportedSizeIsNotSupported) {
  TempDir dir;
  ModelConfig c = make_config(36, 1, kVocab);  // E = 72 = 9·8: no Hadamard size
  const QuantizedModel q = make_quantized(make_model(c, 14), recipe_naive());
  std::string err;
  ASSERT_EQ(model::save_quantized(dir.file("q.safetensors"), q, &err), Status::kSuccess) << err;
  QuantizedModel back;
  ASSERT_EQ(model::load_quantized(dir.file("q.safetensors"), &back, &err), Status::kSuccess) << err;
  expect_same_quantized(q, back);
  rewrite(dir.file("q.safetensors"), dir.file("bad.safetensors"),
          [](std::map<std::string, std::string>& m) { m["recipe.use_hadamard"] = "true"; });
  EXPECT_EQ(try_load_quantized(dir.file("bad.safetensors"), &err), Status::kErrorNotSupported);
  EXPECT_TRUE(contains(err, "d_inner = 72")) << err;
}

TEST_F(QuantizedCheckpointErrors, RandomByteCorruptionNeverCrashes) {
  // Flips bytes in the length field and header (and a few in the data); every load must return
  // a Status (success only when the damage left a valid file, e.g. inside JSON whitespace or
  // tensor data).
  const std::string bytes = read_text(good());
  uint64_t header_len = 0;
  for (int k = 0; k < 8; ++k) header_len |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[k])) << (8 * k);
  auto rng = test::make_rng(15);
  std::uniform_int_distribution<size_t> pos_header(0, static_cast<size_t>(8 + header_len - 1));
  std::uniform_int_distribution<size_t> pos_any(0, bytes.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int failures = 0;
  for (int it = 0; it < 150; ++it) {
    std::string b = bytes;
    const int flips = 1 + it % 3;
    for (int k = 0; k < flips; ++k) b[it % 10 == 9 ? pos_any(rng) : pos_header(rng)] = static_cast<char>(byte(rng));
    write_text(bad(), b);
    QuantizedModel q;
    std::string err;
    const Status s = model::load_quantized(bad(), &q, &err);
    if (s != Status::kSuccess) {
      ++failures;
      EXPECT_FALSE(err.empty()) << "iteration " << it << ": " << to_string(s) << " without a message";
      EXPECT_TRUE(s == Status::kErrorFormat || s == Status::kErrorIo || s == Status::kErrorNotSupported)
          << "iteration " << it << ": " << to_string(s) << ": " << err;
    }
  }
  EXPECT_GT(failures, 50);
}

TEST_F(QuantizedCheckpointErrors, TruncatedFilesAreIoErrors) {
  const std::string bytes = read_text(good());
  ASSERT_GT(bytes.size(), 1000u);
  uint64_t header_len = 0;
  for (int k = 0; k < 8; ++k) header_len |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[k])) << (8 * k);
  const size_t cuts[] = {0, 4, 8, 9, static_cast<size_t>(8 + header_len / 2), static_cast<size_t>(8 + header_len),
                         static_cast<size_t>(8 + header_len + 7), bytes.size() / 2, bytes.size() - 4, bytes.size() - 1};
  for (const size_t n : cuts) {
    SCOPED_TRACE("first " + std::to_string(n) + " of " + std::to_string(bytes.size()) + " bytes");
    write_text(bad(), bytes.substr(0, n));
    std::string err;
    EXPECT_EQ(try_load_quantized(bad(), &err), Status::kErrorIo) << err;
    EXPECT_TRUE(contains(err, "truncated")) << err;
  }
  std::string err;
  EXPECT_EQ(try_load_quantized(dir_.file("absent.safetensors"), &err), Status::kErrorIo);
  write_text(bad(), std::string("\x10\0\0\0\0\0\0\0{not json at all}", 24));
  EXPECT_EQ(try_load_quantized(bad(), &err), Status::kErrorFormat) << err;
}

TEST_F(QuantizedCheckpointErrors, SaveRejectsBadInput) {
  std::string err;
  QuantizedModel m = q_;
  m.layers[0].in_proj.scale = 0.0f;
  EXPECT_EQ(model::save_quantized(bad(), m, &err), Status::kErrorInvalidArgument);
  EXPECT_TRUE(contains(err, "layers.0.in_proj.weight_scale")) << err;
  m = q_;
  m.layers.pop_back();
  EXPECT_EQ(model::save_quantized(bad(), m, &err), Status::kErrorInvalidArgument);
  model::SaveQuantizedOptions opt;
  opt.fp_dtype = Dtype::kI8;
  EXPECT_EQ(model::save_quantized(bad(), q_, &err, opt), Status::kErrorInvalidArgument);
  opt = {};
  opt.percentile = 2.0;
  EXPECT_EQ(model::save_quantized(bad(), q_, &err, opt), Status::kErrorInvalidArgument);
  EXPECT_FALSE(fs::exists(bad()));
  EXPECT_EQ(model::load_quantized(good(), nullptr, &err), Status::kErrorInvalidArgument);
  EXPECT_EQ(model::save_quantized(dir_.file("no/such/dir/q.safetensors"), q_, &err), Status::kErrorIo);
}

// ---- the int8 embedding / lm_head option (format_version 2) -------------------------------------

QuantRecipe int8_head(QuantRecipe r) {
  r.int8_head = true;
  return r;
}

TEST(QuantizedCheckpoint, Int8HeadRoundTripIsBitExact) {
  struct Case {
    ModelConfig c;
    QuantRecipe r;
    Dtype fp;
    const char* name;
  };
  const Case cases[] = {{config_tied(), int8_head(recipe_quamba()), Dtype::kF32, "tied quamba"},
                        {config_untied(), int8_head(recipe_quamba()), Dtype::kF32, "untied quamba"},
                        {config_untied(), int8_head(recipe_naive()), Dtype::kBF16, "untied naive, bf16 norms"},
                        {config_tied(), int8_head(recipe_naive()), Dtype::kF16, "tied naive, f16 norms"}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TempDir dir;
    const QuantizedModel q = make_quantized(make_model(k.c, 20), k.r);
    ASSERT_TRUE(q.recipe.int8_head);
    ASSERT_FALSE(q.embedding_q.empty());
    ASSERT_EQ(q.lm_head_q.empty(), k.c.tie_embeddings);
    std::string err;
    model::SaveQuantizedOptions opt;
    opt.fp_dtype = k.fp;
    ASSERT_EQ(model::save_quantized(dir.file("q.safetensors"), q, &err, opt), Status::kSuccess) << err;
    // The file: version 2, the key, I8 rows with F32 per-row scales, no fp head.
    {
      io::SafetensorsFile f;
      ASSERT_EQ(f.open(dir.file("q.safetensors")), Status::kSuccess);
      EXPECT_EQ(f.metadata().at("format_version"), "2");
      EXPECT_EQ(f.metadata().at("recipe.int8_head"), "true");
      EXPECT_EQ(f.metadata().size(), 15u);
      const int64_t V = k.c.vocab, D = k.c.d_model;
      for (const char* name : {"embedding", "lm_head"}) {
        const bool present = std::string(name) == "embedding" || !k.c.tie_embeddings;
        const auto* w = f.find(std::string(name) + ".weight");
        const auto* sc = f.find(std::string(name) + ".scale");
        ASSERT_EQ(w != nullptr, present) << name;
        ASSERT_EQ(sc != nullptr, present) << name;
        if (!present) continue;
        EXPECT_EQ(w->dtype, Dtype::kI8) << name;
        EXPECT_EQ(w->shape, (std::vector<int64_t>{V, D})) << name;
        EXPECT_EQ(sc->dtype, Dtype::kF32) << name;
        EXPECT_EQ(sc->shape, (std::vector<int64_t>{V})) << name;
      }
      EXPECT_EQ(f.find("norm_f.weight")->dtype, k.fp);
      EXPECT_EQ(f.tensors().size(), (k.c.tie_embeddings ? 3u : 5u) + static_cast<size_t>(k.c.n_layer) * (1 + 9 * 2 + 6));
    }
    QuantizedModel back;
    model::QuantizedCheckpointInfo info;
    ASSERT_EQ(model::load_quantized(dir.file("q.safetensors"), &back, &err, &info), Status::kSuccess) << err;
    EXPECT_EQ(info.fp_dtype, k.fp) << "from norm_f.weight when the embedding is int8";
    QuantizedModel want = q;  // int8 rows, scales and dequantized head exact; fp norms rounded once
    want.norm_f = rounded(q.norm_f, k.fp);
    for (auto& l : want.layers) l.norm_gamma = rounded(l.norm_gamma, k.fp);
    expect_same_quantized(want, back);
    EXPECT_TRUE(same_bits(back.embedding, dequantize_rows(back.embedding_q, k.c.d_model)));
    EXPECT_TRUE(same_bits(logits_w8a8(want), logits_w8a8(back)));
    if (k.fp == Dtype::kF32) {
      // Saved again, the loaded model gives the same file, byte for byte.
      ASSERT_EQ(model::save_quantized(dir.file("again.safetensors"), back, &err, opt), Status::kSuccess) << err;
      EXPECT_EQ(read_text(dir.file("q.safetensors")), read_text(dir.file("again.safetensors")));
    }
  }
}

TEST(QuantizedCheckpoint, WithoutInt8HeadFilesStayVersion1) {
  TempDir dir;
  const QuantizedModel q = make_quantized(make_model(config_untied(), 21), recipe_quamba());
  ASSERT_FALSE(q.recipe.int8_head);
  std::string err;
  ASSERT_EQ(model::save_quantized(dir.file("q.safetensors"), q, &err), Status::kSuccess) << err;
  io::SafetensorsFile f;
  ASSERT_EQ(f.open(dir.file("q.safetensors")), Status::kSuccess);
  // No new key: a build that only reads version 1 (it rejects unknown "recipe." keys) reads it.
  EXPECT_EQ(f.metadata().at("format_version"), "1");
  EXPECT_EQ(f.metadata().count("recipe.int8_head"), 0u);
  EXPECT_EQ(f.find("embedding.scale"), nullptr);
  EXPECT_EQ(f.find("embedding.weight")->dtype, Dtype::kF32);
  f.close();
  QuantizedModel back;
  ASSERT_EQ(model::load_quantized(dir.file("q.safetensors"), &back, &err), Status::kSuccess) << err;
  expect_same_quantized(q, back);
  // Version 1 with the key set to "false" (a file written by hand or another tool) loads too.
  rewrite(dir.file("q.safetensors"), dir.file("v1false.safetensors"),
          [](std::map<std::string, std::string>& m) { m["recipe.int8_head"] = "false"; });
  ASSERT_EQ(model::load_quantized(dir.file("v1false.safetensors"), &back, &err), Status::kSuccess) << err;
  expect_same_quantized(q, back);
  // Version 2 with recipe.int8_head = "false" is an fp head, as version 1.
  rewrite(dir.file("q.safetensors"), dir.file("v2false.safetensors"), [](std::map<std::string, std::string>& m) {
    m["format_version"] = "2";
    m["recipe.int8_head"] = "false";
  });
  ASSERT_EQ(model::load_quantized(dir.file("v2false.safetensors"), &back, &err), Status::kSuccess) << err;
  expect_same_quantized(q, back);
}

class QuantizedCheckpointInt8HeadErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    q_ = make_quantized(make_model(config_untied(), 22), int8_head(recipe_quamba()));
    std::string err;
    ASSERT_EQ(model::save_quantized(good(), q_, &err), Status::kSuccess) << err;
  }
  std::string good() const { return dir_.file("good.safetensors"); }
  std::string bad() const { return dir_.file("bad.safetensors"); }

  void expect_load(Status want, const std::string& needle, const std::string& what) {
    SCOPED_TRACE(what);
    std::string err;
    EXPECT_EQ(try_load_quantized(bad(), &err), want) << err;
    EXPECT_TRUE(contains(err, needle)) << "message '" << err << "' should name '" << needle << "'";
  }
  void expect_meta(const std::function<void(std::map<std::string, std::string>&)>& edit, Status want,
                   const std::string& needle, const std::string& what) {
    rewrite(good(), bad(), edit);
    expect_load(want, needle, what);
  }
  void expect_tensors(const std::function<bool(RawTensor&)>& edit, Status want, const std::string& needle,
                      const std::string& what, const std::vector<RawTensor>& extra = {}) {
    rewrite(good(), bad(), nullptr, edit, extra);
    expect_load(want, needle, what);
  }

  TempDir dir_;
  QuantizedModel q_;
};

TEST_F(QuantizedCheckpointInt8HeadErrors, GoodFileLoads) {
  QuantizedModel back;
  std::string err;
  ASSERT_EQ(model::load_quantized(good(), &back, &err), Status::kSuccess) << err;
  expect_same_quantized(q_, back);
}

TEST_F(QuantizedCheckpointInt8HeadErrors, Metadata) {
  using M = std::map<std::string, std::string>;
  expect_meta([](M& m) { m["format_version"] = "1"; }, Status::kErrorFormat, "needs format_version 2",
              "recipe.int8_head true in a version 1 file");
  expect_meta([](M& m) { m["recipe.int8_head"] = "maybe"; }, Status::kErrorFormat, "recipe.int8_head", "maybe");
  expect_meta([](M& m) { m["recipe.int8_head"] = "True"; }, Status::kErrorFormat, "recipe.int8_head", "True");
  expect_meta([](M& m) { m["recipe.int8_head"] = ""; }, Status::kErrorFormat, "recipe.int8_head", "empty value");
  expect_meta([](M& m) { m.erase("recipe.int8_head"); }, Status::kErrorFormat, "'recipe.int8_head'",
              "version 2 without the key");
  expect_meta([](M& m) {
        m["format_version"] = "1";
        m["recipe.int8_head"] = "maybe";
      }, Status::kErrorFormat, "recipe.int8_head", "maybe in version 1");
  // The key says fp head but the tensors are int8 rows.
  expect_meta([](M& m) { m["recipe.int8_head"] = "false"; }, Status::kErrorFormat, "embedding.weight",
              "int8 rows with recipe.int8_head false");
  expect_meta([](M& m) { m["format_version"] = "3"; }, Status::kErrorNotSupported, "format_version 3", "version 3");
  // Every key of a version 2 file is required.
  const M md = [&] {
    io::SafetensorsFile f;
    EXPECT_EQ(f.open(good()), Status::kSuccess);
    return f.metadata();
  }();
  EXPECT_EQ(md.size(), 15u);
  for (const auto& kv : md) {
    if (kv.first == "format") continue;
    const std::string key = kv.first;
    expect_meta([&](M& m) { m.erase(key); }, Status::kErrorFormat, "'" + key + "'", "missing " + key);
  }
}

TEST_F(QuantizedCheckpointInt8HeadErrors, Tensors) {
  const int64_t V = q_.config.vocab, D = q_.config.d_model;
  for (const std::string name : {"embedding.scale", "lm_head.scale", "embedding.weight", "lm_head.weight"})
    expect_tensors([&](RawTensor& t) { return t.name != name; }, Status::kErrorFormat, name, "missing " + name);
  // A scale vector stored as F16 (the right shape and values, the wrong dtype).
  for (const std::string name : {"embedding.scale", "lm_head.scale"}) {
    expect_tensors([&](RawTensor& t) {
          if (t.name != name) return true;
          std::vector<uint8_t> h(static_cast<size_t>(V) * 2);
          for (int64_t r = 0; r < V; ++r) {
            float v;
            std::memcpy(&v, t.bytes.data() + 4 * r, 4);
            const uint16_t b = float_to_half_bits(v);
            std::memcpy(h.data() + 2 * r, &b, 2);
          }
          t.dtype = Dtype::kF16;
          t.bytes = h;
          return true;
        }, Status::kErrorFormat, "F16", name + " as F16");
  }
  expect_tensors([&](RawTensor& t) {
        if (t.name == "embedding.scale") t.shape = {1, V};
        return true;
      }, Status::kErrorFormat, "embedding.scale", "scale of shape [1, V]");
  expect_tensors([&](RawTensor& t) {
        if (t.name == "lm_head.scale") t.shape = {V, 1};
        return true;
      }, Status::kErrorFormat, "lm_head.scale", "scale of shape [V, 1]");
  expect_tensors([&](RawTensor& t) {
        if (t.name == "embedding.weight") t.shape = {D, V};
        return true;
      }, Status::kErrorFormat, "shape", "int8 rows transposed");
  expect_tensors([&](RawTensor& t) {
        if (t.name == "embedding.weight") t.dtype = Dtype::kU8;
        return true;
      }, Status::kErrorFormat, "dtype", "int8 rows as U8");
  // An fp embedding where recipe.int8_head = "true" wants int8 rows.
  expect_tensors([&](RawTensor& t) {
        if (t.name != "embedding.weight") return true;
        std::vector<uint8_t> f(static_cast<size_t>(V * D) * 4);
        std::memcpy(f.data(), q_.embedding.data(), f.size());
        t.dtype = Dtype::kF32;
        t.bytes = f;
        return true;
      }, Status::kErrorFormat, "embedding.weight", "F32 embedding with recipe.int8_head true");
  // Bad per-row scale values, named with their row.
  for (const float v : {std::nanf(""), 0.0f, -0.5f, INFINITY, -INFINITY}) {
    for (const std::string name : {"embedding.scale", "lm_head.scale"}) {
      expect_tensors([&](RawTensor& t) {
            if (t.name == name) std::memcpy(t.bytes.data() + 4 * 5, &v, 4);
            return true;
          }, Status::kErrorFormat, name + "'[5]", name + " row 5 = " + std::to_string(v));
    }
  }
  // Tensors of the other head layout are unexpected.
  expect_tensors(nullptr, Status::kErrorFormat, "unexpected tensor 'embedding.weight_scale'", "per-tensor scale too",
                 {RawTensor{"embedding.weight_scale", Dtype::kF32, {}, std::vector<uint8_t>(4, 0)}});
  rewrite(good(), bad(), [](std::map<std::string, std::string>& m) { m["config.tie_embeddings"] = "true"; });
  expect_load(Status::kErrorFormat, "unexpected tensor 'lm_head", "tied config with an int8 lm_head");
}

TEST_F(QuantizedCheckpointInt8HeadErrors, ScaleTensorsInAVersion1FileAreUnexpected) {
  // A version 1 (fp head) file carrying an embedding.scale is malformed.
  const QuantizedModel fp_head = make_quantized(make_model(config_tied(), 23), recipe_quamba());
  ASSERT_EQ(model::save_quantized(dir_.file("v1.safetensors"), fp_head), Status::kSuccess);
  rewrite(dir_.file("v1.safetensors"), bad(), nullptr, nullptr,
          {RawTensor{"embedding.scale", Dtype::kF32, {kVocab}, std::vector<uint8_t>(4 * kVocab, 0)}});
  expect_load(Status::kErrorFormat, "unexpected tensor 'embedding.scale'", "v1 with embedding.scale");
}

TEST_F(QuantizedCheckpointInt8HeadErrors, SaveRejectsInconsistentHeads) {
  std::string err;
  QuantizedModel m = q_;
  m.embedding[3] += 1e-3f;  // no longer the dequantized rows: the file could not give it back
  EXPECT_EQ(model::save_quantized(bad(), m, &err), Status::kErrorInvalidArgument);
  EXPECT_TRUE(contains(err, "embedding")) << err;
  m = q_;
  m.lm_head = m.embedding;
  EXPECT_EQ(model::save_quantized(bad(), m, &err), Status::kErrorInvalidArgument);
  EXPECT_TRUE(contains(err, "lm_head")) << err;
  m = q_;
  m.embedding_q.scale[2] = std::nanf("");
  EXPECT_EQ(model::save_quantized(bad(), m, &err), Status::kErrorInvalidArgument);
  m = q_;
  m.lm_head_q = RowQuantI8{};
  EXPECT_EQ(model::save_quantized(bad(), m, &err), Status::kErrorInvalidArgument);
  m = q_;
  m.recipe.int8_head = false;  // rows left without the option
  EXPECT_EQ(model::save_quantized(bad(), m, &err), Status::kErrorInvalidArgument);
  EXPECT_FALSE(fs::exists(bad()));
}

}  // namespace
