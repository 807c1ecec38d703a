// quamba/io/hf_checkpoint.hpp: loading a Mamba (v1) checkpoint directory in the Hugging Face
// layout (SPEC §1) as fp32 host tensors.
//
// Directory: config.json (quamba/io/hf_config.hpp) and either model.safetensors.index.json
// (sharded; preferred when present) or model.safetensors.
// Expected tensors, with D = hidden_size, E = intermediate_size, N = state_size,
// K = conv_kernel, R = time_step_rank, V = vocab_size, i in [0, num_hidden_layers):
//   backbone.embeddings.weight (V, D)   [or the original layout's backbone.embedding.weight]
//   backbone.layers.{i}.norm.weight (D)
//   backbone.layers.{i}.mixer.in_proj.weight (2E, D)      .in_proj.bias (2E)  iff use_bias
//   backbone.layers.{i}.mixer.conv1d.weight (E, 1, K)     .conv1d.bias (E)    iff use_conv_bias
//   backbone.layers.{i}.mixer.x_proj.weight (R + 2N, E)
//   backbone.layers.{i}.mixer.dt_proj.weight (E, R)       .dt_proj.bias (E)
//   backbone.layers.{i}.mixer.A_log (E, N)                .D (E)
//   backbone.layers.{i}.mixer.out_proj.weight (D, E)      .out_proj.bias (D)  iff use_bias
//   backbone.norm_f.weight (D)
//   lm_head.weight (V, D): required when tie_word_embeddings is false, optional otherwise.
// Every tensor must be F32, F16 or BF16 (converted exactly to float). Before any data is read
// the whole set is checked: each expected name present with its shape and a float dtype, no
// unexpected tensor (a stray name usually means config.json and weights disagree, e.g. a
// layer count mismatch), not both embedding names. Errors: kErrorIo for missing/unreadable/
// truncated files (incl. a missing shard), kErrorFormat for anything malformed or mismatched,
// kErrorNotSupported for a config of another architecture; the message (in *error) names the
// file or tensor.
//
// visit_hf_mamba calls visitor(const HfTensorSpec&, std::vector<float>& values) -> Status once
// per tensor (embedding, layers in order, norm_f, lm_head), values row-major in the spec's
// shape; the visitor may move the vector out. load_hf_mamba collects them into HfMambaTensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "quamba/core/status.hpp"
#include "quamba/io/hf_config.hpp"
#include "quamba/io/safetensors.hpp"
#include "quamba/io/safetensors_index.hpp"

namespace quamba::io {

enum class HfTensorKind {
  kEmbedding,
  kNorm,
  kInProjWeight,
  kInProjBias,
  kConv1dWeight,
  kConv1dBias,
  kXProjWeight,
  kDtProjWeight,
  kDtProjBias,
  kALog,
  kD,
  kOutProjWeight,
  kOutProjBias,
  kNormF,
  kLmHead,
};

struct HfTensorSpec {
  std::string name;
  HfTensorKind kind = HfTensorKind::kEmbedding;
  int64_t layer = -1;  // -1 for embedding, norm_f, lm_head
  std::vector<int64_t> shape;
};

inline constexpr const char* kHfEmbeddingName = "backbone.embeddings.weight";
inline constexpr const char* kOriginalEmbeddingName = "backbone.embedding.weight";
inline constexpr const char* kHfNormFName = "backbone.norm_f.weight";
inline constexpr const char* kHfLmHeadName = "lm_head.weight";

// The tensor list a config implies, in load order.
inline std::vector<HfTensorSpec> hf_mamba_expected_tensors(const HfMambaConfig& c, const std::string& embedding_name,
                                                           bool with_lm_head) {
  const int64_t D = c.hidden_size, E = c.intermediate_size, N = c.state_size, K = c.conv_kernel,
                R = c.time_step_rank, V = c.vocab_size;
  std::vector<HfTensorSpec> s;
  s.push_back({embedding_name, HfTensorKind::kEmbedding, -1, {V, D}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    const std::string m = p + "mixer.";
    s.push_back({p + "norm.weight", HfTensorKind::kNorm, i, {D}});
    s.push_back({m + "in_proj.weight", HfTensorKind::kInProjWeight, i, {2 * E, D}});
    if (c.use_bias) s.push_back({m + "in_proj.bias", HfTensorKind::kInProjBias, i, {2 * E}});
    s.push_back({m + "conv1d.weight", HfTensorKind::kConv1dWeight, i, {E, 1, K}});
    if (c.use_conv_bias) s.push_back({m + "conv1d.bias", HfTensorKind::kConv1dBias, i, {E}});
    s.push_back({m + "x_proj.weight", HfTensorKind::kXProjWeight, i, {R + 2 * N, E}});
    s.push_back({m + "dt_proj.weight", HfTensorKind::kDtProjWeight, i, {E, R}});
    s.push_back({m + "dt_proj.bias", HfTensorKind::kDtProjBias, i, {E}});
    s.push_back({m + "A_log", HfTensorKind::kALog, i, {E, N}});
    s.push_back({m + "D", HfTensorKind::kD, i, {E}});
    s.push_back({m + "out_proj.weight", HfTensorKind::kOutProjWeight, i, {D, E}});
    if (c.use_bias) s.push_back({m + "out_proj.bias", HfTensorKind::kOutProjBias, i, {D}});
  }
  s.push_back({kHfNormFName, HfTensorKind::kNormF, -1, {D}});
  if (with_lm_head) s.push_back({kHfLmHeadName, HfTensorKind::kLmHead, -1, {V, D}});
  return s;
}

// Opens the weights of a checkpoint directory (sharded index preferred, else model.safetensors).
inline Status open_hf_weights(const std::string& dir, SafetensorsCheckpoint* ckpt, std::string* error = nullptr) {
  if (ckpt == nullptr) return detail::set_error(error, Status::kErrorInvalidArgument, "null checkpoint output");
  const std::filesystem::path d(dir);
  const std::string index = (d / "model.safetensors.index.json").string();
  const std::string single = (d / "model.safetensors").string();
  std::error_code ec;
  if (std::filesystem::exists(index, ec)) return ckpt->open_index(index, error);
  if (std::filesystem::exists(single, ec)) return ckpt->open_file(single, error);
  return detail::set_error(error, Status::kErrorIo,
                           "no model.safetensors.index.json or model.safetensors in " + detail::quote(dir));
}

// Checks config and weights of `dir` and calls visitor(spec, values) for every tensor.
template <typename Visitor>
Status visit_hf_mamba(const std::string& dir, Visitor&& visitor, HfMambaConfig* config_out = nullptr,
                      std::string* error = nullptr) {
  try {
    HfMambaConfig cfg;
    QUAMBA_RETURN_IF_ERROR(load_hf_mamba_config((std::filesystem::path(dir) / "config.json").string(), &cfg, error));
    SafetensorsCheckpoint ckpt;
    QUAMBA_RETURN_IF_ERROR(open_hf_weights(dir, &ckpt, error));

    const bool has_hf_emb = ckpt.find(kHfEmbeddingName) != nullptr;
    const bool has_orig_emb = ckpt.find(kOriginalEmbeddingName) != nullptr;
    if (has_hf_emb && has_orig_emb)
      return detail::set_error(error, Status::kErrorFormat,
                               std::string("checkpoint has both ") + kHfEmbeddingName + " and " + kOriginalEmbeddingName);
    if (!has_hf_emb && !has_orig_emb)
      return detail::set_error(error, Status::kErrorFormat,
                               std::string("embedding tensor missing: neither ") + kHfEmbeddingName + " nor " +
                                   kOriginalEmbeddingName + " in the checkpoint");
    const bool has_lm_head = ckpt.find(kHfLmHeadName) != nullptr;
    if (!has_lm_head && !cfg.tie_word_embeddings)
      return detail::set_error(error, Status::kErrorFormat,
                               std::string("tensor '") + kHfLmHeadName +
                                   "' missing and config.json says tie_word_embeddings is false");

    const std::vector<HfTensorSpec> specs =
        hf_mamba_expected_tensors(cfg, has_hf_emb ? kHfEmbeddingName : kOriginalEmbeddingName, has_lm_head);
    const std::vector<Dtype> float_dtypes = {Dtype::kF32, Dtype::kF16, Dtype::kBF16};
    std::set<std::string> expected;
    for (const HfTensorSpec& s : specs) {
      QUAMBA_RETURN_IF_ERROR(ckpt.check_tensor(s.name, float_dtypes, &s.shape, nullptr, error));
      expected.insert(s.name);
    }
    for (const std::string& name : ckpt.tensor_names()) {
      if (!expected.count(name))
        return detail::set_error(error, Status::kErrorFormat,
                                 "unexpected tensor " + detail::quote(name) +
                                     " (not part of a Mamba checkpoint with this config.json: check num_hidden_layers, "
                                     "use_bias, use_conv_bias)");
    }

    std::vector<float> values;
    for (const HfTensorSpec& s : specs) {
      QUAMBA_RETURN_IF_ERROR(ckpt.read_tensor_f32(s.name, &values, &s.shape, error));
      const Status vs = visitor(static_cast<const HfTensorSpec&>(s), values);
      if (vs != Status::kSuccess)
        return detail::set_error(error, vs, "loading tensor " + detail::quote(s.name) + ": " + to_string(vs));
    }
    if (config_out) *config_out = cfg;
  } catch (const std::bad_alloc&) {
    return detail::set_error(error, Status::kErrorIo, "out of memory loading " + detail::quote(dir));
  }
  return Status::kSuccess;
}

struct HfMambaLayerTensors {
  std::vector<float> norm_weight;      // (D)
  std::vector<float> in_proj_weight;   // (2E, D)
  std::vector<float> in_proj_bias;     // (2E), empty unless use_bias
  std::vector<float> conv1d_weight;    // (E, 1, K)
  std::vector<float> conv1d_bias;      // (E), empty unless use_conv_bias
  std::vector<float> x_proj_weight;    // (R + 2N, E)
  std::vector<float> dt_proj_weight;   // (E, R)
  std::vector<float> dt_proj_bias;     // (E)
  std::vector<float> A_log;            // (E, N)
  std::vector<float> D;                // (E)
  std::vector<float> out_proj_weight;  // (D, E)
  std::vector<float> out_proj_bias;    // (D), empty unless use_bias
};

struct HfMambaTensors {
  HfMambaConfig config;
  std::vector<float> embedding;  // (V, D)
  std::vector<HfMambaLayerTensors> layers;
  std::vector<float> norm_f;     // (D)
  std::vector<float> lm_head;    // (V, D); empty when the checkpoint stores none (tied: use embedding)
  bool lm_head_tied = true;      // config.tie_word_embeddings
  bool original_layout = false;  // embedding was named backbone.embedding.weight
};

// Loads a whole checkpoint directory into *out (fp32).
inline Status load_hf_mamba(const std::string& dir, HfMambaTensors* out, std::string* error = nullptr) {
  if (out == nullptr) return detail::set_error(error, Status::kErrorInvalidArgument, "null output");
  HfMambaTensors t;
  auto visit = [&t](const HfTensorSpec& s, std::vector<float>& v) -> Status {
    if (s.layer >= 0 && static_cast<size_t>(s.layer) >= t.layers.size()) t.layers.resize(static_cast<size_t>(s.layer) + 1);
    HfMambaLayerTensors* L = s.layer >= 0 ? &t.layers[static_cast<size_t>(s.layer)] : nullptr;
    switch (s.kind) {
      case HfTensorKind::kEmbedding:
        t.embedding = std::move(v);
        t.original_layout = (s.name == kOriginalEmbeddingName);
        break;
      case HfTensorKind::kNorm: L->norm_weight = std::move(v); break;
      case HfTensorKind::kInProjWeight: L->in_proj_weight = std::move(v); break;
      case HfTensorKind::kInProjBias: L->in_proj_bias = std::move(v); break;
      case HfTensorKind::kConv1dWeight: L->conv1d_weight = std::move(v); break;
      case HfTensorKind::kConv1dBias: L->conv1d_bias = std::move(v); break;
      case HfTensorKind::kXProjWeight: L->x_proj_weight = std::move(v); break;
      case HfTensorKind::kDtProjWeight: L->dt_proj_weight = std::move(v); break;
      case HfTensorKind::kDtProjBias: L->dt_proj_bias = std::move(v); break;
      case HfTensorKind::kALog: L->A_log = std::move(v); break;
      case HfTensorKind::kD: L->D = std::move(v); break;
      case HfTensorKind::kOutProjWeight: L->out_proj_weight = std::move(v); break;
      case HfTensorKind::kOutProjBias: L->out_proj_bias = std::move(v); break;
      case HfTensorKind::kNormF: t.norm_f = std::move(v); break;
      case HfTensorKind::kLmHead: t.lm_head = std::move(v); break;
    }
    v = std::vector<float>();
    return Status::kSuccess;
  };
  HfMambaConfig cfg;
  QUAMBA_RETURN_IF_ERROR(visit_hf_mamba(dir, visit, &cfg, error));
  t.config = cfg;
  t.lm_head_tied = cfg.tie_word_embeddings;
  try {
    t.layers.resize(static_cast<size_t>(cfg.num_hidden_layers));
  } catch (const std::bad_alloc&) {
    return detail::set_error(error, Status::kErrorIo, "out of memory");
  }
  *out = std::move(t);
  return Status::kSuccess;
}

}  // namespace quamba::io
