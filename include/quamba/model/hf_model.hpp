// quamba/model/hf_model.hpp: a Hugging Face Mamba (v1) checkpoint directory <-> the host
// reference model (quamba::reference::ModelWeights, fp32). Host only.
//
// load_hf_model(dir, &weights, &err)
//   Reads dir/config.json and the weights (dir/model.safetensors, or the shards named by
//   dir/model.safetensors.index.json) through quamba/io/hf_checkpoint.hpp, whose header lists
//   the tensor names and shapes. F32, F16 and BF16 tensors are converted exactly to fp32.
//   Mapping to ModelConfig: hidden_size -> d_model, num_hidden_layers -> n_layer,
//   intermediate_size -> d_inner, state_size -> d_state, conv_kernel -> d_conv,
//   time_step_rank -> dt_rank, vocab_size -> vocab, (float) layer_norm_epsilon -> eps.
//   Mapping to the weights: conv1d.weight (E, 1, K) -> conv_w (E, K) (the same bytes),
//   dt_proj.bias -> dt_bias, norm.weight -> norm_gamma, the others by name.
//   lm_head (SPEC §1: the checkpoint's own lm_head.weight wins): with no lm_head.weight the
//   model is tied (tie_embeddings = true; a config that says untied but stores none is
//   kErrorFormat, from the io layer); with one that is bit-identical to the embedding it is
//   tied as well; otherwise tie_embeddings = false and lm_head holds it.
//   What the reference cannot run is kErrorNotSupported, checked from config.json before any
//   weight is read: use_bias = true (in_proj / out_proj biases), conv_kernel outside
//   [2, reference::kMaxConvWidth]. use_conv_bias = false is run exactly with a zero conv bias.
//   Other errors as in quamba/io (kErrorIo missing/truncated files, kErrorFormat malformed or
//   mismatched config and tensors). *out is written only on success.
//
// save_hf_model(dir, weights, dtype, &err)
//   Writes dir/config.json (model_type "mamba", every key load_hf_model reads, use_bias false,
//   use_conv_bias true, torch_dtype) and dir/model.safetensors with every tensor stored as
//   dtype (F32, F16 or BF16; 16-bit types round to nearest even), lm_head.weight only when the
//   model is untied. Creates dir when missing; both files are written to a temporary name and
//   renamed. The weights must pass reference::validate_model (kErrorInvalidArgument otherwise);
//   an eps the HF config cannot hold (outside (0, 1)) or an odd d_inner is kErrorNotSupported.
//   A stale model.safetensors.index.json in dir would shadow the new file: remove it first.
// Every failing call writes a message to *err when err is non-null.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/io/hf_checkpoint.hpp"
#include "quamba/io/hf_config.hpp"
#include "quamba/io/json.hpp"
#include "quamba/io/safetensors.hpp"
#include "quamba/reference/model.hpp"

namespace quamba::model {

namespace detail {

inline Status fail(std::string* err, Status s, const std::string& msg) {
  if (err) *err = msg;
  return s;
}

// Shortest decimal text that reads back (strtod-style, as double, then rounded to float) as
// exactly `v`; falls back to the exact double of v when the shortest float text would not.
inline std::string float_to_text(float v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, r.ptr);
  double back = 0.0;
  const auto p = std::from_chars(s.data(), s.data() + s.size(), back);
  if (p.ec == std::errc() && static_cast<float>(back) == v) return s;
  r = std::to_chars(buf, buf + sizeof(buf), static_cast<double>(v));
  return std::string(buf, r.ptr);
}

inline std::string double_to_text(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// Writes `text` to `path` through a temporary file and a rename.
inline Status write_text_file(const std::string& path, const std::string& text, std::string* err) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return fail(err, Status::kErrorIo, "cannot create '" + tmp + "'");
  bool good = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  good = std::fflush(f) == 0 && good;
  if (std::fclose(f) != 0) good = false;
  if (!good) {
    std::remove(tmp.c_str());
    return fail(err, Status::kErrorIo, "cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return fail(err, Status::kErrorIo, "cannot rename '" + tmp + "' to '" + path + "'");
  }
  return Status::kSuccess;
}

inline const char* torch_dtype_name(io::Dtype d) {
  return d == io::Dtype::kF16 ? "float16" : (d == io::Dtype::kBF16 ? "bfloat16" : "float32");
}

// The reference's limits on an HF config (kErrorNotSupported with a message).
inline Status check_hf_config_supported(const io::HfMambaConfig& c, std::string* err) {
  if (c.use_bias)
    return fail(err, Status::kErrorNotSupported,
                "config.json: use_bias = true (in_proj/out_proj biases) is not supported by the reference model");
  if (c.conv_kernel < 2 || c.conv_kernel > reference::kMaxConvWidth)
    return fail(err, Status::kErrorNotSupported,
                "config.json: conv_kernel = " + std::to_string(c.conv_kernel) + " is not supported (the reference runs 2.." +
                    std::to_string(reference::kMaxConvWidth) + ")");
  return Status::kSuccess;
}

}  // namespace detail

// The reference ModelConfig of an HF config (no support check; see load_hf_model).
inline reference::ModelConfig config_from_hf(const io::HfMambaConfig& h) {
  reference::ModelConfig c;
  c.d_model = h.hidden_size;
  c.n_layer = h.num_hidden_layers;
  c.d_inner = h.intermediate_size;
  c.d_state = h.state_size;
  c.d_conv = h.conv_kernel;
  c.dt_rank = h.time_step_rank;
  c.vocab = h.vocab_size;
  c.eps = static_cast<float>(h.layer_norm_epsilon);
  c.tie_embeddings = h.tie_word_embeddings;
  return c;
}

inline Status load_hf_model(const std::string& dir, reference::ModelWeights* out, std::string* err = nullptr) {
  if (out == nullptr) return detail::fail(err, Status::kErrorInvalidArgument, "load_hf_model: null output");
  try {
    const std::string cfg_path = (std::filesystem::path(dir) / "config.json").string();
    io::HfMambaConfig hc;
    QUAMBA_RETURN_IF_ERROR(io::load_hf_mamba_config(cfg_path, &hc, err));
    QUAMBA_RETURN_IF_ERROR(detail::check_hf_config_supported(hc, err));

    io::HfMambaTensors t;
    QUAMBA_RETURN_IF_ERROR(io::load_hf_mamba(dir, &t, err));
    reference::ModelWeights m;
    m.config = config_from_hf(t.config);
    const int64_t E = m.config.d_inner;
    m.layers.resize(static_cast<size_t>(m.config.n_layer));
    for (size_t i = 0; i < m.layers.size(); ++i) {
      io::HfMambaLayerTensors& s = t.layers[i];
      reference::LayerWeights& l = m.layers[i];
      l.norm_gamma = std::move(s.norm_weight);
      l.in_proj = std::move(s.in_proj_weight);
      l.conv_w = std::move(s.conv1d_weight);  // (E, 1, K) and (E, K) are the same row-major bytes
      if (hc.use_conv_bias) l.conv_b = std::move(s.conv1d_bias);
      else l.conv_b.assign(static_cast<size_t>(E), 0.0f);
      l.x_proj = std::move(s.x_proj_weight);
      l.dt_proj = std::move(s.dt_proj_weight);
      l.dt_bias = std::move(s.dt_proj_bias);
      l.A_log = std::move(s.A_log);
      l.D = std::move(s.D);
      l.out_proj = std::move(s.out_proj_weight);
    }
    m.embedding = std::move(t.embedding);
    m.norm_f = std::move(t.norm_f);
    if (!t.lm_head.empty()) {
      bool same = t.lm_head.size() == m.embedding.size();
      for (size_t k = 0; same && k < m.embedding.size(); ++k) same = float_bits(t.lm_head[k]) == float_bits(m.embedding[k]);
      m.config.tie_embeddings = same;
      if (!same) m.lm_head = std::move(t.lm_head);
    } else {
      m.config.tie_embeddings = true;
    }
    const Status v = reference::validate_model(m);
    if (v != Status::kSuccess)
      return detail::fail(err, v == Status::kErrorNotSupported ? v : Status::kErrorFormat,
                          "'" + dir + "': the loaded model is not a valid reference model (" + to_string(v) + ")");
    *out = std::move(m);
  } catch (const std::bad_alloc&) {
    return detail::fail(err, Status::kErrorIo, "out of memory loading '" + dir + "'");
  }
  return Status::kSuccess;
}

// config.json text for a reference config (as save_hf_model writes it).
inline std::string hf_config_json(const reference::ModelConfig& c, io::Dtype dtype) {
  std::string j = "{\n";
  auto kv = [&j](const char* k, const std::string& v, bool last = false) {
    j += "  \"";
    j += k;
    j += "\": " + v + (last ? "\n" : ",\n");
  };
  kv("architectures", "[\"MambaForCausalLM\"]");
  kv("model_type", "\"mamba\"");
  kv("hidden_size", std::to_string(c.d_model));
  kv("num_hidden_layers", std::to_string(c.n_layer));
  kv("intermediate_size", std::to_string(c.d_inner));
  kv("state_size", std::to_string(c.d_state));
  kv("conv_kernel", std::to_string(c.d_conv));
  kv("time_step_rank", std::to_string(c.dt_rank));
  kv("vocab_size", std::to_string(c.vocab));
  kv("layer_norm_epsilon", detail::float_to_text(c.eps));
  kv("hidden_act", "\"silu\"");
  kv("use_bias", "false");
  kv("use_conv_bias", "true");
  kv("tie_word_embeddings", c.tie_embeddings ? "true" : "false");
  kv("torch_dtype", std::string("\"") + detail::torch_dtype_name(dtype) + "\"", true);
  return j + "}\n";
}

inline Status save_hf_model(const std::string& dir, const reference::ModelWeights& m, io::Dtype dtype,
                            std::string* err = nullptr) {
  if (!io::is_float_dtype(dtype))
    return detail::fail(err, Status::kErrorInvalidArgument,
                        std::string("save_hf_model: dtype ") + io::dtype_name(dtype) + " is not F32, F16 or BF16");
  const Status v = reference::validate_model(m);
  if (v != Status::kSuccess)
    return detail::fail(err, v, std::string("save_hf_model: the weights do not match their config (") + to_string(v) + ")");
  const reference::ModelConfig& c = m.config;
  if (c.d_inner % 2 != 0)
    return detail::fail(err, Status::kErrorNotSupported,
                        "save_hf_model: d_inner = " + std::to_string(c.d_inner) + " is odd (HF configs need it even)");
  if (!(c.eps > 0.0f) || !(c.eps < 1.0f))
    return detail::fail(err, Status::kErrorNotSupported,
                        "save_hf_model: eps = " + detail::float_to_text(c.eps) + " cannot be stored as layer_norm_epsilon");
  try {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return detail::fail(err, Status::kErrorIo, "cannot create directory '" + dir + "': " + ec.message());
    const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank, V = c.vocab;
    io::SafetensorsWriter w;
    auto add = [&](const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values) {
      return w.add_tensor_f32(name, shape, values, dtype, err);
    };
    QUAMBA_RETURN_IF_ERROR(add(io::kHfEmbeddingName, {V, D}, m.embedding));
    for (int64_t i = 0; i < c.n_layer; ++i) {
      const reference::LayerWeights& l = m.layers[static_cast<size_t>(i)];
      const std::string p = "backbone.layers." + std::to_string(i) + ".";
      const std::string x = p + "mixer.";
      QUAMBA_RETURN_IF_ERROR(add(p + "norm.weight", {D}, l.norm_gamma));
      QUAMBA_RETURN_IF_ERROR(add(x + "in_proj.weight", {2 * E, D}, l.in_proj));
      QUAMBA_RETURN_IF_ERROR(add(x + "conv1d.weight", {E, 1, K}, l.conv_w));
      QUAMBA_RETURN_IF_ERROR(add(x + "conv1d.bias", {E}, l.conv_b));
      QUAMBA_RETURN_IF_ERROR(add(x + "x_proj.weight", {R + 2 * N, E}, l.x_proj));
      QUAMBA_RETURN_IF_ERROR(add(x + "dt_proj.weight", {E, R}, l.dt_proj));
      QUAMBA_RETURN_IF_ERROR(add(x + "dt_proj.bias", {E}, l.dt_bias));
      QUAMBA_RETURN_IF_ERROR(add(x + "A_log", {E, N}, l.A_log));
      QUAMBA_RETURN_IF_ERROR(add(x + "D", {E}, l.D));
      QUAMBA_RETURN_IF_ERROR(add(x + "out_proj.weight", {D, E}, l.out_proj));
    }
    QUAMBA_RETURN_IF_ERROR(add(io::kHfNormFName, {D}, m.norm_f));
    if (!c.tie_embeddings) QUAMBA_RETURN_IF_ERROR(add(io::kHfLmHeadName, {V, D}, m.lm_head));
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("format", "pt", err));  // as the HF writers tag their files
    const std::filesystem::path d(dir);
    QUAMBA_RETURN_IF_ERROR(w.write((d / "model.safetensors").string(), err));
    QUAMBA_RETURN_IF_ERROR(detail::write_text_file((d / "config.json").string(), hf_config_json(c, dtype), err));
  } catch (const std::bad_alloc&) {
    return detail::fail(err, Status::kErrorIo, "out of memory saving '" + dir + "'");
  }
  return Status::kSuccess;
}

}  // namespace quamba::model
