// quamba/reference/model.hpp: the whole Mamba1 model on the host, fp32 (SPEC §1) and W8A8 with
// the Quamba recipe (SPEC §2): weights, a seeded random initializer, per-sequence caches,
// prefill / decode, calibration and quantization. This is the oracle the GPU model is held to.
//
// Shapes:
//   ids        (B, L) int32 row-major, each in [0, V) (else kErrorOutOfRange, nothing changed)
//   lengths    (B) optional: sequence b uses ids[b, 0:lengths[b]]; the rest is padding
//   logits     (B, L, V) for every position, or (B, 1, V) for the last valid position of each
//              sequence (a sequence with lengths[b] == 0 gets a zero row); a null view skips
//              the lm_head (e.g. for the first chunks of a chunked prefill)
//   caches     per layer: conv_state (B, E, K) (float / int8 at scale s_xz), ssm_state (B, E, N)
//              fp32, zero for a fresh sequence; every call continues from them
// The residual stream is fp32 (ours). Embedding, norm_f and lm_head stay fp32 here (SPEC allows
// fp16 for them on the device). lm_head is the embedding when config.tie_embeddings.
//
// Recipe switches (QuantRecipe): use_hadamard (rotate y and fold Hᵀ/√E into W_out), the
// observer that gives s_u (absmax, Quamba's per-sample quantile with EMA, or the exact global
// quantile), and int8_head (an option, off in every named recipe): the embedding (and the untied
// lm_head) become weight-only per-row int8 (RowQuantI8, reference/quant.hpp); the W8A8 model then
// keeps both the int8 rows with their scales and, in its fp32 embedding / lm_head vectors, their
// dequantized values, which is what the forward reads. Naive W8A8 = {absmax, no Hadamard};
// Quamba = {percentile EMA, Hadamard}.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/reference/block.hpp"
#include "quamba/reference/embedding.hpp"
#include "quamba/reference/gemm.hpp"
#include "quamba/reference/hadamard.hpp"
#include "quamba/reference/norm.hpp"
#include "quamba/reference/quant.hpp"

namespace quamba::reference {

// ---- weights ----------------------------------------------------------------------------------

struct ModelWeights {
  ModelConfig config;
  std::vector<LayerWeights> layers;  // n_layer
  std::vector<float> embedding;      // (V, D)
  std::vector<float> norm_f;         // (D)
  std::vector<float> lm_head;        // (V, D); empty when tied to the embedding
  const float* head() const { return config.tie_embeddings ? embedding.data() : lm_head.data(); }
};

namespace detail {
// What every model form shares: the config, one valid layer per n_layer, the embedding, norm_f and
// (untied) lm_head sizes. Model: ModelWeights or QuantizedModel.
template <typename Model>
Status validate_model_common(const Model& m) {
  const ModelConfig& c = m.config;
  QUAMBA_RETURN_IF_ERROR(validate_config(c));
  if (static_cast<int64_t>(m.layers.size()) != c.n_layer) return Status::kErrorInvalidArgument;
  for (const auto& l : m.layers) QUAMBA_RETURN_IF_ERROR(validate_layer(c, l));
  const size_t VD = static_cast<size_t>(c.vocab * c.d_model);
  if (m.embedding.size() != VD || m.norm_f.size() != static_cast<size_t>(c.d_model) ||
      (!c.tie_embeddings && m.lm_head.size() != VD))
    return Status::kErrorInvalidArgument;
  return Status::kSuccess;
}
}  // namespace detail

inline Status validate_model(const ModelWeights& m) { return detail::validate_model_common(m); }

namespace detail {

// A small portable generator (splitmix64) so the initializer gives the same model everywhere.
struct InitRng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  float uniform(float lo, float hi) { return static_cast<float>(lo + (hi - lo) * uniform()); }
  float normal(float stddev) {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return static_cast<float>(stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  std::vector<float> uniform_vec(size_t n, float bound) {
    std::vector<float> v(n);
    for (auto& x : v) x = uniform(-bound, bound);
    return v;
  }
};

}  // namespace detail

// A random model with Mamba's initialization, so activations stay finite and O(1) over long
// sequences: linear layers U(±1/√fan_in) (PyTorch Linear), conv U(±1/√K), dt_proj U(±R^-1/2),
// b_dt = softplus⁻¹(dt) with dt log-uniform in [1e-3, 1e-1], A_log[e, n] = log(n + 1),
// D = 1, norms γ = 1, embedding N(0, 0.02²) (tied lm_head; a separate one gets the same law).
inline Status init_random_model(const ModelConfig& c, uint64_t seed, ModelWeights* out) {
  if (!out) return Status::kErrorInvalidArgument;
  QUAMBA_RETURN_IF_ERROR(validate_config(c));
  detail::InitRng rng{seed};
  const size_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank, V = c.vocab;
  ModelWeights m;
  m.config = c;
  m.embedding.resize(V * D);
  for (auto& v : m.embedding) v = rng.normal(0.02f);
  m.layers.resize(c.n_layer);
  for (auto& l : m.layers) {
    l.norm_gamma.assign(D, 1.0f);
    l.in_proj = rng.uniform_vec(2 * E * D, 1.0f / std::sqrt(static_cast<float>(D)));
    l.conv_w = rng.uniform_vec(E * K, 1.0f / std::sqrt(static_cast<float>(K)));
    l.conv_b = rng.uniform_vec(E, 1.0f / std::sqrt(static_cast<float>(K)));
    l.x_proj = rng.uniform_vec((R + 2 * N) * E, 1.0f / std::sqrt(static_cast<float>(E)));
    l.dt_proj = rng.uniform_vec(E * R, 1.0f / std::sqrt(static_cast<float>(R)));
    l.dt_bias.resize(E);
    for (auto& b : l.dt_bias) {
      const double dt = std::exp(std::log(1e-3) + rng.uniform() * (std::log(1e-1) - std::log(1e-3)));
      b = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // softplus(b) = dt
    }
    l.A_log.resize(E * N);
    for (size_t e = 0; e < E; ++e)
      for (size_t n = 0; n < N; ++n) l.A_log[e * N + n] = std::log(static_cast<float>(n + 1));
    l.D.assign(E, 1.0f);
    l.out_proj = rng.uniform_vec(D * E, 1.0f / std::sqrt(static_cast<float>(E)));
  }
  m.norm_f.assign(D, 1.0f);
  if (!c.tie_embeddings) {
    m.lm_head.resize(V * D);
    for (auto& v : m.lm_head) v = rng.normal(0.02f);
  }
  *out = std::move(m);
  return Status::kSuccess;
}

// ---- caches -----------------------------------------------------------------------------------

// Per-sequence decode state of every layer for a batch of `batch` sequences.
template <typename ConvT>
struct ModelCache {
  int64_t batch = 0;
  std::vector<std::vector<ConvT>> conv_state;  // per layer (B, E, K), slot 0 oldest
  std::vector<std::vector<float>> ssm_state;   // per layer (B, E, N)
};
using ModelCacheF32 = ModelCache<float>;
using ModelCacheI8 = ModelCache<int8_t>;

// Allocates zeroed caches (a fresh sequence has zero state: x[t < 0] = 0, s₀ = 0).
template <typename ConvT>
Status init_cache(const ModelConfig& c, int64_t batch, ModelCache<ConvT>* cache) {
  if (!cache || batch <= 0) return Status::kErrorInvalidArgument;
  QUAMBA_RETURN_IF_ERROR(validate_config(c));
  cache->batch = batch;
  cache->conv_state.assign(c.n_layer, std::vector<ConvT>(static_cast<size_t>(batch * c.d_inner * c.d_conv), ConvT(0)));
  cache->ssm_state.assign(c.n_layer, std::vector<float>(static_cast<size_t>(batch * c.d_inner * c.d_state), 0.0f));
  return Status::kSuccess;
}

// ---- quantized model --------------------------------------------------------------------------

// How s_u is chosen from the calibration observers.
enum class UScale { kAbsmax, kPercentileEma, kPercentileExact };

struct QuantRecipe {
  bool use_hadamard = true;                 // rotate y, fold Hᵀ/√E into W_out
  UScale u_scale = UScale::kPercentileEma;  // observer behind s_u
  bool int8_head = false;                   // weight-only per-row int8 embedding / lm_head (option)
};

inline QuantRecipe recipe_naive() { return {false, UScale::kAbsmax}; }
inline QuantRecipe recipe_quamba() { return {true, UScale::kPercentileEma}; }

// Static activation scales of every layer.
struct ModelScales {
  std::vector<LayerActScales> layers;
};

struct QuantizedModel {
  ModelConfig config;
  QuantRecipe recipe;                  // use_hadamard matters when running; int8_head says which
                                       // of embedding_q / lm_head_q are filled
  std::vector<LayerWeightsI8> layers;  // n_layer
  std::vector<float> embedding, norm_f, lm_head;  // fp32, as in ModelWeights; with
                                                  // recipe.int8_head, embedding (and lm_head when
                                                  // untied) = dequantize_rows of the int8 rows below
  RowQuantI8 embedding_q;  // (V, D) + (V) iff recipe.int8_head
  RowQuantI8 lm_head_q;    // (V, D) + (V) iff recipe.int8_head and !config.tie_embeddings
  const float* head() const { return config.tie_embeddings ? embedding.data() : lm_head.data(); }
};

namespace detail {

// A per-row int8 (rows, cols) table: sizes match and every scale is finite and > 0 (what
// scale_from_absmax gives, 1 for a zero row included).
inline bool valid_row_quant(const RowQuantI8& t, int64_t rows, int64_t cols) {
  if (t.q.size() != static_cast<size_t>(rows * cols) || t.scale.size() != static_cast<size_t>(rows)) return false;
  for (const float s : t.scale)
    if (!(s > 0.0f) || !std::isfinite(s)) return false;
  return true;
}

}  // namespace detail

// Checks shapes and scales, O(V) for the int8 head (it does not recompute the dequantized
// vectors: quantize_model and the checkpoint loader produce them, save_quantized checks them).
inline Status validate_model(const QuantizedModel& m) {
  QUAMBA_RETURN_IF_ERROR(detail::validate_model_common(m));
  const ModelConfig& c = m.config;
  if (m.recipe.int8_head) {
    if (!detail::valid_row_quant(m.embedding_q, c.vocab, c.d_model)) return Status::kErrorInvalidArgument;
    if (c.tie_embeddings ? !(m.lm_head_q.q.empty() && m.lm_head_q.scale.empty())
                         : !detail::valid_row_quant(m.lm_head_q, c.vocab, c.d_model))
      return Status::kErrorInvalidArgument;
  } else if (!m.embedding_q.q.empty() || !m.embedding_q.scale.empty() || !m.lm_head_q.q.empty() ||
             !m.lm_head_q.scale.empty()) {
    return Status::kErrorInvalidArgument;
  }
  if (m.recipe.use_hadamard && !hadamard_size_supported(c.d_inner)) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

// W_out' = W_out·Hᵀ/√E: each row r of W_out (D, E) becomes H·W_out[r]/√E, so that
// W_out'·(H·y/√E) = W_out·y. Unsupported E gives kErrorNotSupported.
inline Status rotate_out_proj(const std::vector<float>& w_out, int64_t D, int64_t E, std::vector<float>* out) {
  if (!out || D <= 0 || E <= 0 || w_out.size() != static_cast<size_t>(D * E)) return Status::kErrorInvalidArgument;
  std::vector<float> r(static_cast<size_t>(D * E));
  QUAMBA_RETURN_IF_ERROR(hadamard_transform(make_view(w_out.data(), D, E),
                                            static_cast<float>(1.0 / std::sqrt(static_cast<double>(E))),
                                            make_view(r.data(), D, E)));
  *out = std::move(r);
  return Status::kSuccess;
}

// fp32 weights + static scales + recipe -> W8A8 model. Every weight is quantized absmax per
// tensor; out_proj is rotated first when recipe.use_hadamard (then scales.s_o must have been
// observed after the rotation, as scales_from_calibration does). With recipe.int8_head the
// embedding (and the untied lm_head) is quantized per row (quantize_rows_absmax) and the fp32
// vectors are replaced by their dequantized values; otherwise they are copied.
inline Status quantize_model(const ModelWeights& w, const ModelScales& scales, const QuantRecipe& recipe,
                             QuantizedModel* out) {
  if (!out) return Status::kErrorInvalidArgument;
  QUAMBA_RETURN_IF_ERROR(validate_model(w));
  const ModelConfig& c = w.config;
  if (static_cast<int64_t>(scales.layers.size()) != c.n_layer) return Status::kErrorInvalidArgument;
  if (recipe.use_hadamard && !hadamard_size_supported(c.d_inner)) return Status::kErrorNotSupported;
  QuantizedModel q;
  q.config = c;
  q.recipe = recipe;
  q.layers.resize(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const LayerWeights& l = w.layers[i];
    LayerWeightsI8& o = q.layers[i];
    o.norm_gamma = l.norm_gamma;
    o.in_proj = quantize_absmax(l.in_proj);
    o.conv_w = quantize_absmax(l.conv_w);
    o.conv_b = quantize_absmax(l.conv_b);
    o.x_proj = quantize_absmax(l.x_proj);
    o.dt_proj = quantize_absmax(l.dt_proj);
    o.dt_bias = quantize_absmax(l.dt_bias);
    o.A_log = quantize_absmax(l.A_log);
    o.D = quantize_absmax(l.D);
    if (recipe.use_hadamard) {
      std::vector<float> rot;
      QUAMBA_RETURN_IF_ERROR(rotate_out_proj(l.out_proj, c.d_model, c.d_inner, &rot));
      o.out_proj = quantize_absmax(rot);
    } else {
      o.out_proj = quantize_absmax(l.out_proj);
    }
    o.act = scales.layers[i];
    QUAMBA_RETURN_IF_ERROR(validate_layer(c, o));
  }
  q.norm_f = w.norm_f;
  if (recipe.int8_head) {
    q.embedding_q = quantize_rows_absmax(w.embedding.data(), c.vocab, c.d_model);
    q.embedding = dequantize_rows(q.embedding_q, c.d_model);
    if (!c.tie_embeddings) {
      q.lm_head_q = quantize_rows_absmax(w.lm_head.data(), c.vocab, c.d_model);
      q.lm_head = dequantize_rows(q.lm_head_q, c.d_model);
    }
  } else {
    q.embedding = w.embedding;
    q.lm_head = w.lm_head;
  }
  *out = std::move(q);
  return Status::kSuccess;
}

// ---- forward ----------------------------------------------------------------------------------

namespace detail {

template <typename Model, typename ConvT>
Status check_forward(const Model& m, const int32_t* ids, int64_t B, int64_t L, const int32_t* lengths,
                     const ModelCache<ConvT>* cache, TensorView<float, 3> logits) {
  QUAMBA_RETURN_IF_ERROR(validate_model(m));
  const ModelConfig& c = m.config;
  if (B <= 0 || L <= 0 || !ids || !cache || cache->batch != B) return Status::kErrorInvalidArgument;
  if (static_cast<int64_t>(cache->conv_state.size()) != c.n_layer ||
      static_cast<int64_t>(cache->ssm_state.size()) != c.n_layer)
    return Status::kErrorInvalidArgument;
  for (int64_t i = 0; i < c.n_layer; ++i)
    if (cache->conv_state[i].size() != static_cast<size_t>(B * c.d_inner * c.d_conv) ||
        cache->ssm_state[i].size() != static_cast<size_t>(B * c.d_inner * c.d_state))
      return Status::kErrorInvalidArgument;
  if (logits.data && (logits.size(0) != B || (logits.size(1) != L && logits.size(1) != 1) || logits.size(2) != c.vocab))
    return Status::kErrorInvalidArgument;
  if (lengths)
    for (int64_t b = 0; b < B; ++b)
      if (lengths[b] < 0 || lengths[b] > L) return Status::kErrorInvalidArgument;
  // Ids are checked before any state changes, so a bad id leaves the caches untouched.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < valid_len(lengths, b, L); ++t)
      if (ids[b * L + t] < 0 || ids[b * L + t] >= c.vocab) return Status::kErrorOutOfRange;
  return Status::kSuccess;
}

// Embedding -> blocks -> residual + h -> RMSNorm_f -> lm_head. `run_block(layer, io)` runs one
// block with the model's own precision.
template <typename Model, typename ConvT, typename RunBlock>
Status forward(const Model& m, const int32_t* ids, int64_t B, int64_t L, const int32_t* lengths,
               ModelCache<ConvT>* cache, TensorView<float, 3> logits, RunBlock&& run_block) {
  QUAMBA_RETURN_IF_ERROR(check_forward(m, ids, B, L, lengths, cache, logits));
  const ModelConfig& c = m.config;
  const int64_t M = B * L, D = c.d_model, V = c.vocab;
  // Padding positions embed token 0; they never reach the state or the returned logits.
  std::vector<int32_t> tok(ids, ids + M);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = valid_len(lengths, b, L); t < L; ++t) tok[b * L + t] = 0;
  std::vector<float> residual(M * D), h(M * D), h_next(M * D);
  QUAMBA_RETURN_IF_ERROR(embedding(make_view(m.embedding.data(), V, D), tok.data(), M, make_view(residual.data(), M, D)));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    BlockIO<ConvT> io;
    io.B = B;
    io.L = L;
    io.lengths = lengths;
    if (i > 0) io.h_in = make_view(static_cast<const float*>(h.data()), M, D);
    io.residual = make_view(residual.data(), M, D);
    io.h_out = make_view(h_next.data(), M, D);
    io.conv_state = cache->conv_state[i].data();
    io.ssm_state = cache->ssm_state[i].data();
    QUAMBA_RETURN_IF_ERROR(run_block(i, io));
    h.swap(h_next);
  }
  if (!logits.data) return Status::kSuccess;
  std::vector<float> normed(M * D);
  QUAMBA_RETURN_IF_ERROR(add_rmsnorm(make_view(static_cast<const float*>(h.data()), M, D),
                                     make_view(residual.data(), M, D), m.norm_f.data(), c.eps,
                                     make_view(normed.data(), M, D)));
  const auto head = make_view(m.head(), V, D);
  const bool last_only = logits.size(1) == 1 && L > 1;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t lb = valid_len(lengths, b, L);
    for (int64_t t = 0; t < logits.size(1); ++t) {
      const int64_t pos = last_only ? lb - 1 : t;
      auto row = logits.slice(0, b, 1).slice(1, t, 1);
      auto out2 = make_strided_view<float, 2>(row.data, {1, V}, {V * logits.stride[2], logits.stride[2]});
      if (pos < 0 || pos >= lb) {
        for (int64_t v = 0; v < V; ++v) out2(0, v) = 0.0f;
        continue;
      }
      QUAMBA_RETURN_IF_ERROR(gemm_f32(make_view(static_cast<const float*>(normed.data()) + (b * L + pos) * D, 1, D),
                                      head, out2));
    }
  }
  return Status::kSuccess;
}

inline TensorView<float, 3> as_logits3(TensorView<float, 2> logits) {
  if (!logits.data) return {};
  return make_strided_view<float, 3>(logits.data, {logits.size(0), 1, logits.size(1)},
                                     {logits.stride[0], logits.size(1) * logits.stride[1], logits.stride[1]});
}

}  // namespace detail

// fp32 prefill of L tokens for B sequences, continuing from `cache`. obs (optional, n_layer
// entries) records the calibration observers.
inline Status prefill(const ModelWeights& m, const int32_t* ids, int64_t B, int64_t L, const int32_t* lengths,
                      ModelCacheF32* cache, TensorView<float, 3> logits, std::vector<LayerObservers>* obs = nullptr) {
  if (obs && static_cast<int64_t>(obs->size()) != m.config.n_layer) return Status::kErrorInvalidArgument;
  return detail::forward(m, ids, B, L, lengths, cache, logits, [&](int64_t i, const BlockIO<float>& io) {
    return block_prefill_f32(m.config, m.layers[i], io, obs ? &(*obs)[i] : nullptr);
  });
}

// fp32 decode: one token per sequence (ids: B), logits (B, V) or a null view.
inline Status decode_step(const ModelWeights& m, const int32_t* ids, int64_t B, ModelCacheF32* cache,
                          TensorView<float, 2> logits) {
  return detail::forward(m, ids, B, 1, nullptr, cache, detail::as_logits3(logits),
                         [&](int64_t i, const BlockIO<float>& io) { return block_step_f32(m.config, m.layers[i], io); });
}

// W8A8 prefill (SPEC §2 dataflow), continuing from `cache` (conv_state int8 at scale s_xz).
inline Status prefill(const QuantizedModel& m, const int32_t* ids, int64_t B, int64_t L, const int32_t* lengths,
                      ModelCacheI8* cache, TensorView<float, 3> logits) {
  return detail::forward(m, ids, B, L, lengths, cache, logits, [&](int64_t i, const BlockIO<int8_t>& io) {
    return block_prefill_i8(m.config, m.layers[i], m.recipe.use_hadamard, io);
  });
}

// W8A8 decode: one token per sequence.
inline Status decode_step(const QuantizedModel& m, const int32_t* ids, int64_t B, ModelCacheI8* cache,
                          TensorView<float, 2> logits) {
  return detail::forward(m, ids, B, 1, nullptr, cache, detail::as_logits3(logits),
                         [&](int64_t i, const BlockIO<int8_t>& io) {
                           return block_step_i8(m.config, m.layers[i], m.recipe.use_hadamard, io);
                         });
}

// ---- calibration ------------------------------------------------------------------------------

struct CalibrationOptions {
  double percentile = 0.99999;  // α for the quantile observers of u
  bool keep_u_values = true;    // keep every |u| for the exact global quantile (memory: tokens·E·layers)
};

struct CalibrationStats {
  std::vector<LayerObservers> layers;
  int64_t samples = 0, tokens = 0;
  double percentile = 0.99999;    // α of the EMA observer, reused for the exact quantile
  bool rotated_observed = false;  // false when E has no supported Hadamard size
};

// Runs the fp32 model over each sequence (one sample = one sequence, prefilled from a fresh
// state) and records every observer of SPEC §2's table; out_proj inputs are observed after
// the Hadamard rotation (o_rotated, only when E is a supported Hadamard size) and before it
// (o_plain).
inline Status calibrate(const ModelWeights& m, const std::vector<std::vector<int32_t>>& sequences,
                        const CalibrationOptions& opt, CalibrationStats* out) {
  if (!out || sequences.empty() || !(opt.percentile >= 0.0 && opt.percentile <= 1.0))
    return Status::kErrorInvalidArgument;
  QUAMBA_RETURN_IF_ERROR(validate_model(m));
  CalibrationStats st;
  st.rotated_observed = hadamard_size_supported(m.config.d_inner);
  st.percentile = opt.percentile;
  st.layers.resize(m.config.n_layer);
  for (auto& l : st.layers) l.u_ema.alpha = opt.percentile;
  for (const auto& seq : sequences) {
    if (seq.empty()) return Status::kErrorInvalidArgument;
    ModelCacheF32 cache;
    QUAMBA_RETURN_IF_ERROR(init_cache(m.config, 1, &cache));
    QUAMBA_RETURN_IF_ERROR(prefill(m, seq.data(), 1, static_cast<int64_t>(seq.size()), nullptr, &cache, {}, &st.layers));
    if (!opt.keep_u_values)
      for (auto& l : st.layers) l.u_values.clear();
    ++st.samples;
    st.tokens += static_cast<int64_t>(seq.size());
  }
  *out = std::move(st);
  return Status::kSuccess;
}

// Picks the scales of each layer from the observers according to the recipe: s = max/127 for
// every tensor; s_u from the chosen observer of u (the quantiles at st.percentile); s_o from the
// rotated y (use_hadamard; kErrorNotSupported if it was not observed) or the plain y.
inline Status scales_from_calibration(const CalibrationStats& st, const QuantRecipe& recipe, ModelScales* out) {
  if (!out || st.layers.empty()) return Status::kErrorInvalidArgument;
  if (recipe.use_hadamard && !st.rotated_observed) return Status::kErrorNotSupported;
  ModelScales s;
  for (const auto& l : st.layers) {
    LayerActScales a;
    a.s_h = scale_from_absmax(l.h.value);
    a.s_xz = scale_from_absmax(l.xz.value);
    float u = l.u.value;
    if (recipe.u_scale == UScale::kPercentileEma) {
      if (l.u_ema.samples == 0) return Status::kErrorInvalidArgument;
      u = l.u_ema.value;
    } else if (recipe.u_scale == UScale::kPercentileExact) {
      if (l.u_values.empty()) return Status::kErrorInvalidArgument;  // calibrated without keep_u_values
      QUAMBA_RETURN_IF_ERROR(abs_quantile(l.u_values, st.percentile, &u));
    }
    a.s_u = scale_from_absmax(u);
    a.s_xd = scale_from_absmax(l.xd.value);
    a.s_dt = scale_from_absmax(l.dt.value);
    a.s_o = scale_from_absmax(recipe.use_hadamard ? l.o_rotated.value : l.o_plain.value);
    s.layers.push_back(a);
  }
  *out = std::move(s);
  return Status::kSuccess;
}

}  // namespace quamba::reference
