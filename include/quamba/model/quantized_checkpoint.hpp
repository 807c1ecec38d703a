// quamba/model/quantized_checkpoint.hpp: the W8A8 model (reference::QuantizedModel) as one
// .safetensors file, format "quamba-w8a8" version 1, or version 2 when the recipe has the int8
// embedding / lm_head option (recipe.int8_head). Host only.
//
// Versions: save_quantized writes "1" for a model without int8_head (byte for byte the files
// of builds that only know version 1, which keep reading them) and "2" with int8_head (a build
// that only knows version 1 refuses it: "format_version 2 is not supported"). load_quantized
// reads both. The only difference is the head: version 2 has the metadata key recipe.int8_head
// (required, "true" or "false") and, when it is "true", int8 head tensors instead of fp ones.
// In version 1 the key is optional (version 1 files do not have it: older builds reject unknown
// "recipe." keys); when present it must be "false" (an int8 head needs version 2: kErrorFormat).
//
// Tensors (D = d_model, E = d_inner, N = d_state, K = d_conv, R = dt_rank, V = vocab,
// i in [0, n_layer); "fp" = F32, F16 or BF16, written as SaveQuantizedOptions::fp_dtype):
//   embedding.weight                (V, D)       fp   without int8_head
//   norm_f.weight                   (D)          fp
//   lm_head.weight                  (V, D)       fp   iff config.tie_embeddings is false (and no int8_head)
//   with recipe.int8_head (version 2), per-row weight-only int8 (reference::RowQuantI8,
//   row r ≈ scale[r] · q[r, :]):
//   embedding.weight                (V, D)       I8
//   embedding.scale                 (V)          F32  every value finite and > 0
//   lm_head.weight                  (V, D)       I8   iff config.tie_embeddings is false
//   lm_head.scale                   (V)          F32  iff config.tie_embeddings is false
//   layers.{i}.norm.weight          (D)          fp   (the block's RMSNorm γ)
//   int8 weights, each <name> (I8) with its per-tensor scale <name>_scale (F32, shape [],
//   value ≈ scale · q):
//   layers.{i}.in_proj.weight       (2E, D)
//   layers.{i}.conv1d.weight        (E, K)       (not HF's (E, 1, K))
//   layers.{i}.conv1d.bias          (E)
//   layers.{i}.x_proj.weight        (R + 2N, E)
//   layers.{i}.dt_proj.weight       (E, R)
//   layers.{i}.dt_proj.bias         (E)
//   layers.{i}.A_log                (E, N)       (A = −exp(scale · q))
//   layers.{i}.D                    (E)
//   layers.{i}.out_proj.weight      (D, E)       W_out·Hᵀ/√E when recipe.use_hadamard
//   static activation scales (reference::LayerActScales), F32 shape []:
//   layers.{i}.act.s_h  .act.s_xz  .act.s_u  .act.s_xd  .act.s_dt  .act.s_o
//   Every scale is finite and > 0. Scales and int8 tensors round-trip bit-exactly; fp tensors
//   exactly when stored as F32. A loaded int8 head comes with its fp32 embedding / lm_head =
//   reference::dequantize_rows of the stored rows, so the loaded model equals the saved one.
// Metadata (__metadata__, string -> string; every key required unless said otherwise):
//   format = "quamba-w8a8"             format_version = "1" | "2"
//   recipe.int8_head = "true" | "false"  (version 2; version 1: absent or "false", see above)
//   recipe.use_hadamard = "true" | "false"
//   recipe.u_scale = "absmax" | "percentile_ema" | "percentile_exact"
//   recipe.percentile = decimal in [0, 1] (the α of calibration; recorded, not used to run)
//   config.d_model, config.n_layer, config.d_inner, config.d_state, config.d_conv,
//   config.dt_rank, config.vocab = decimal integers in [1, 2^31 − 1]
//   config.eps = decimal, finite, > 0 (shortest text that reads back as the same float)
//   config.tie_embeddings = "true" | "false"
//   Other keys under "config." or "recipe." are errors; keys outside those prefixes are kept in
//   QuantizedCheckpointInfo::metadata and otherwise ignored.
//
// load_quantized needs no fp model. It checks, before reading any tensor data: format (absent
// or another value: kErrorFormat), format_version (a decimal other than "1" and "2":
// kErrorNotSupported; absent or not a decimal: kErrorFormat), every metadata field (kErrorFormat),
// the config (sizes the reference cannot run, e.g. d_conv > 4 or a Hadamard size it lacks with
// use_hadamard: kErrorNotSupported), then every tensor's presence, dtype and shape and that no
// other tensor is present (kErrorFormat: e.g. an fp embedding.weight where recipe.int8_head
// wants I8, an F16 embedding.scale); then reads the data and checks every scale, the per-row
// ones included (kErrorFormat naming the tensor and row). A file shorter than its header says is
// kErrorIo (io layer). *out is written only on success. QuantizedCheckpointInfo::fp_dtype is the
// dtype of embedding.weight, or of norm_f.weight when the embedding is int8.
// API:
//   save_quantized(path, const QuantizedModel&, std::string* err = nullptr,
//                  const SaveQuantizedOptions& = {})  -> Status
//   load_quantized(path, QuantizedModel* out, std::string* err = nullptr,
//                  QuantizedCheckpointInfo* info = nullptr)  -> Status
// save_quantized rejects a model that fails reference::validate_model (its Status), has a
// non-finite or non-positive weight scale, or (int8_head) whose fp32 embedding / lm_head is not
// bit for bit dequantize_rows of its int8 rows (kErrorInvalidArgument: the file could not give
// it back). The file is written to a temporary name and renamed. Every failing call writes a
// message to *err when err is non-null.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/io/safetensors.hpp"
#include "quamba/model/hf_model.hpp"
#include "quamba/reference/model.hpp"

namespace quamba::model {

inline constexpr const char* kQuantizedFormat = "quamba-w8a8";
inline constexpr const char* kQuantizedFormatVersion = "1";          // written without recipe.int8_head
inline constexpr const char* kQuantizedFormatVersionInt8Head = "2";  // written with recipe.int8_head

// The format_version save_quantized writes for a model with `recipe`.
inline const char* quantized_format_version(const reference::QuantRecipe& recipe) {
  return recipe.int8_head ? kQuantizedFormatVersionInt8Head : kQuantizedFormatVersion;
}

struct SaveQuantizedOptions {
  io::Dtype fp_dtype = io::Dtype::kF32;  // embedding, norms, lm_head (the fp ones): F32, F16 or BF16
  double percentile = 0.99999;           // calibration α, recorded as recipe.percentile
};

// What load_quantized reports besides the model.
struct QuantizedCheckpointInfo {
  double percentile = 0.0;                      // recipe.percentile
  io::Dtype fp_dtype = io::Dtype::kF32;         // dtype of embedding.weight; of norm_f.weight
                                                // when the embedding is int8 (recipe.int8_head)
  std::map<std::string, std::string> metadata;  // every __metadata__ entry
};

namespace detail {

inline const char* u_scale_name(reference::UScale u) {
  switch (u) {
    case reference::UScale::kAbsmax: return "absmax";
    case reference::UScale::kPercentileEma: return "percentile_ema";
    case reference::UScale::kPercentileExact: return "percentile_exact";
  }
  return nullptr;
}

// One int8 weight of a layer: name suffix, member, shape.
struct QuantTensorSlot {
  const char* suffix;
  reference::QuantTensor reference::LayerWeightsI8::*member;
  std::vector<int64_t> shape;
};

inline std::vector<QuantTensorSlot> quant_tensor_slots(const reference::ModelConfig& c) {
  using L = reference::LayerWeightsI8;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  return {{"in_proj.weight", &L::in_proj, {2 * E, D}}, {"conv1d.weight", &L::conv_w, {E, K}},
          {"conv1d.bias", &L::conv_b, {E}},            {"x_proj.weight", &L::x_proj, {R + 2 * N, E}},
          {"dt_proj.weight", &L::dt_proj, {E, R}},     {"dt_proj.bias", &L::dt_bias, {E}},
          {"A_log", &L::A_log, {E, N}},                {"D", &L::D, {E}},
          {"out_proj.weight", &L::out_proj, {D, E}}};
}

struct ActScaleSlot {
  const char* suffix;
  float reference::LayerActScales::*member;
};

inline const std::vector<ActScaleSlot>& act_scale_slots() {
  using A = reference::LayerActScales;
  static const std::vector<ActScaleSlot> s = {{"act.s_h", &A::s_h},   {"act.s_xz", &A::s_xz}, {"act.s_u", &A::s_u},
                                              {"act.s_xd", &A::s_xd}, {"act.s_dt", &A::s_dt}, {"act.s_o", &A::s_o}};
  return s;
}

inline std::string layer_prefix(int64_t i) { return "layers." + std::to_string(i) + "."; }

inline bool valid_scale(float s) { return s > 0.0f && std::isfinite(s); }

// Config fields as (metadata key, member).
struct ConfigIntField {
  const char* key;
  int64_t reference::ModelConfig::*member;
};
inline const std::vector<ConfigIntField>& config_int_fields() {
  using C = reference::ModelConfig;
  static const std::vector<ConfigIntField> f = {
      {"config.d_model", &C::d_model}, {"config.n_layer", &C::n_layer}, {"config.d_inner", &C::d_inner},
      {"config.d_state", &C::d_state}, {"config.d_conv", &C::d_conv},   {"config.dt_rank", &C::dt_rank},
      {"config.vocab", &C::vocab}};
  return f;
}

inline bool is_decimal_digits(const std::string& s) {
  if (s.empty()) return false;
  for (const char ch : s)
    if (ch < '0' || ch > '9') return false;
  return true;
}

// Strict parsers for metadata values; false when the whole string is not the value.
inline bool parse_meta_int(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
  if (!is_decimal_digits(s) || (s.size() > 1 && s[0] == '0')) return false;
  int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo || v > hi) return false;
  *out = v;
  return true;
}

template <typename T>
bool parse_meta_real(const std::string& s, T* out) {
  if (s.empty() || s[0] == '+' || s[0] == ' ') return false;
  T v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

inline bool parse_meta_bool(const std::string& s, bool* out) {
  if (s == "true") *out = true;
  else if (s == "false") *out = false;
  else return false;
  return true;
}

inline Status read_scalar_f32(const io::SafetensorsFile& f, const std::string& name, float* out, std::string* err) {
  std::vector<float> v;
  const std::vector<int64_t> scalar;
  QUAMBA_RETURN_IF_ERROR(f.read_tensor_f32(name, &v, &scalar, err));
  if (v.size() != 1) return fail(err, Status::kErrorFormat, "tensor '" + name + "' is not a scalar");
  *out = v[0];
  if (!valid_scale(*out))
    return fail(err, Status::kErrorFormat,
                "'" + f.path() + "': scale '" + name + "' = " + double_to_text(*out) + " is not finite and > 0");
  return Status::kSuccess;
}

// A per-row int8 table <name>.weight (I8) + <name>.scale (F32), shapes already checked: reads
// both, checks every row scale and fills *deq with its dequantized values.
inline Status read_row_quant(const io::SafetensorsFile& f, const std::string& name, int64_t cols,
                             reference::RowQuantI8* out, std::vector<float>* deq, std::string* err) {
  QUAMBA_RETURN_IF_ERROR(f.read_tensor_i8(name + ".weight", &out->q, nullptr, err));
  QUAMBA_RETURN_IF_ERROR(f.read_tensor_f32(name + ".scale", &out->scale, nullptr, err));
  for (size_t r = 0; r < out->scale.size(); ++r)
    if (!valid_scale(out->scale[r]))
      return fail(err, Status::kErrorFormat,
                  "'" + f.path() + "': scale '" + name + ".scale'[" + std::to_string(r) +
                      "] = " + double_to_text(out->scale[r]) + " is not finite and > 0");
  *deq = reference::dequantize_rows(*out, cols);
  if (deq->size() != out->q.size())
    return fail(err, Status::kErrorFormat, "'" + f.path() + "': '" + name + ".weight' and '" + name + ".scale' disagree in size");
  return Status::kSuccess;
}

inline Status load_quantized_impl(const std::string& path, reference::QuantizedModel* out, QuantizedCheckpointInfo* info,
                                  std::string* err) {
  io::SafetensorsFile f;
  QUAMBA_RETURN_IF_ERROR(f.open(path, err));
  const std::string where = "'" + path + "': ";
  const auto& meta = f.metadata();
  auto get = [&](const char* key, const std::string** v) -> Status {
    const auto it = meta.find(key);
    if (it == meta.end())
      return fail(err, Status::kErrorFormat, where + "missing metadata key '" + std::string(key) + "'");
    *v = &it->second;
    return Status::kSuccess;
  };
  auto bad = [&](const char* key, const std::string& v, const char* want) {
    return fail(err, Status::kErrorFormat,
                where + "metadata '" + std::string(key) + "' = '" + v + "' is invalid (expected " + want + ")");
  };

  // ---- format and version first: they decide how to read the rest.
  const std::string* v = nullptr;
  if (meta.find("format") == meta.end())
    return fail(err, Status::kErrorFormat,
                where + "missing metadata key 'format' (not a " + std::string(kQuantizedFormat) + " checkpoint)");
  v = &meta.find("format")->second;
  if (*v != kQuantizedFormat)
    return fail(err, Status::kErrorFormat,
                where + "metadata 'format' = '" + *v + "', expected '" + kQuantizedFormat + "'");
  QUAMBA_RETURN_IF_ERROR(get("format_version", &v));
  if (*v != kQuantizedFormatVersion && *v != kQuantizedFormatVersionInt8Head) {
    if (is_decimal_digits(*v))
      return fail(err, Status::kErrorNotSupported,
                  where + kQuantizedFormat + " format_version " + *v + " is not supported (this build reads versions " +
                      kQuantizedFormatVersion + " and " + kQuantizedFormatVersionInt8Head + ")");
    return bad("format_version", *v, "a decimal version number");
  }
  const bool version2 = *v == kQuantizedFormatVersionInt8Head;

  // ---- recipe and config.
  static const std::set<std::string> kKnown = {
      "recipe.use_hadamard", "recipe.u_scale",  "recipe.percentile", "config.d_model", "config.n_layer",
      "config.d_inner",      "config.d_state",  "config.d_conv",     "config.dt_rank", "config.vocab",
      "config.eps",          "config.tie_embeddings", "recipe.int8_head"};
  for (const auto& kv : meta) {
    const bool reserved = kv.first.rfind("config.", 0) == 0 || kv.first.rfind("recipe.", 0) == 0;
    if (reserved && !kKnown.count(kv.first))
      return fail(err, Status::kErrorFormat, where + "unknown metadata key '" + kv.first + "'");
  }
  reference::QuantizedModel q;
  double percentile = 0.0;
  QUAMBA_RETURN_IF_ERROR(get("recipe.use_hadamard", &v));
  if (!parse_meta_bool(*v, &q.recipe.use_hadamard)) return bad("recipe.use_hadamard", *v, "true or false");
  if (version2) {
    QUAMBA_RETURN_IF_ERROR(get("recipe.int8_head", &v));
    if (!parse_meta_bool(*v, &q.recipe.int8_head)) return bad("recipe.int8_head", *v, "true or false");
  } else if (meta.count("recipe.int8_head")) {
    v = &meta.find("recipe.int8_head")->second;
    if (!parse_meta_bool(*v, &q.recipe.int8_head)) return bad("recipe.int8_head", *v, "true or false");
    if (q.recipe.int8_head)
      return fail(err, Status::kErrorFormat,
                  where + "metadata 'recipe.int8_head' = 'true' needs format_version " + kQuantizedFormatVersionInt8Head +
                      " (the file says " + kQuantizedFormatVersion + ")");
  }
  QUAMBA_RETURN_IF_ERROR(get("recipe.u_scale", &v));
  {
    bool found = false;
    for (const auto u : {reference::UScale::kAbsmax, reference::UScale::kPercentileEma, reference::UScale::kPercentileExact})
      if (*v == u_scale_name(u)) {
        q.recipe.u_scale = u;
        found = true;
      }
    if (!found) return bad("recipe.u_scale", *v, "absmax, percentile_ema or percentile_exact");
  }
  QUAMBA_RETURN_IF_ERROR(get("recipe.percentile", &v));
  if (!parse_meta_real(*v, &percentile) || !(percentile >= 0.0 && percentile <= 1.0))
    return bad("recipe.percentile", *v, "a decimal in [0, 1]");
  reference::ModelConfig& c = q.config;
  for (const ConfigIntField& fld : config_int_fields()) {
    QUAMBA_RETURN_IF_ERROR(get(fld.key, &v));
    if (!parse_meta_int(*v, 1, io::detail::kConfigMaxDim, &(c.*fld.member)))
      return bad(fld.key, *v, "a decimal integer in [1, 2147483647]");
  }
  QUAMBA_RETURN_IF_ERROR(get("config.eps", &v));
  if (!parse_meta_real(*v, &c.eps) || !(c.eps > 0.0f)) return bad("config.eps", *v, "a finite decimal > 0");
  QUAMBA_RETURN_IF_ERROR(get("config.tie_embeddings", &v));
  if (!parse_meta_bool(*v, &c.tie_embeddings)) return bad("config.tie_embeddings", *v, "true or false");
  {
    const Status s = reference::validate_config(c);
    if (s == Status::kErrorNotSupported)
      return fail(err, s, where + "config.d_conv = " + std::to_string(c.d_conv) + " is not supported by the reference (2.." +
                              std::to_string(reference::kMaxConvWidth) + ")");
    if (s != Status::kSuccess) return fail(err, Status::kErrorFormat, where + "invalid model config in the metadata");
    if (q.recipe.use_hadamard && !reference::hadamard_size_supported(c.d_inner))
      return fail(err, Status::kErrorNotSupported,
                  where + "recipe.use_hadamard with d_inner = " + std::to_string(c.d_inner) +
                      ", which has no supported Hadamard size");
  }

  // ---- the tensor set: every expected name with its dtype and shape, nothing else.
  const int64_t D = c.d_model, V = c.vocab;
  const std::vector<io::Dtype> fp = {io::Dtype::kF32, io::Dtype::kF16, io::Dtype::kBF16};
  const std::vector<io::Dtype> i8 = {io::Dtype::kI8};
  const std::vector<io::Dtype> f32 = {io::Dtype::kF32};
  const std::vector<int64_t> scalar;
  const auto slots = quant_tensor_slots(c);
  std::set<std::string> expected;
  auto expect = [&](const std::string& name, const std::vector<io::Dtype>& dt, const std::vector<int64_t>& shape) {
    expected.insert(name);
    return f.check_tensor(name, dt, &shape, nullptr, err);
  };
  const bool int8_head = q.recipe.int8_head;
  QUAMBA_RETURN_IF_ERROR(expect("embedding.weight", int8_head ? i8 : fp, {V, D}));
  if (int8_head) QUAMBA_RETURN_IF_ERROR(expect("embedding.scale", f32, {V}));
  QUAMBA_RETURN_IF_ERROR(expect("norm_f.weight", fp, {D}));
  if (!c.tie_embeddings) {
    QUAMBA_RETURN_IF_ERROR(expect("lm_head.weight", int8_head ? i8 : fp, {V, D}));
    if (int8_head) QUAMBA_RETURN_IF_ERROR(expect("lm_head.scale", f32, {V}));
  }
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = layer_prefix(i);
    QUAMBA_RETURN_IF_ERROR(expect(p + "norm.weight", fp, {D}));
    for (const QuantTensorSlot& s : slots) {
      QUAMBA_RETURN_IF_ERROR(expect(p + s.suffix, i8, s.shape));
      QUAMBA_RETURN_IF_ERROR(expect(p + s.suffix + "_scale", f32, scalar));
    }
    for (const ActScaleSlot& s : act_scale_slots()) QUAMBA_RETURN_IF_ERROR(expect(p + s.suffix, f32, scalar));
  }
  for (const io::TensorInfo& t : f.tensors())
    if (!expected.count(t.name))
      return fail(err, Status::kErrorFormat,
                  where + "unexpected tensor '" + t.name + "' (not part of a " + kQuantizedFormat +
                      " checkpoint with this config: check config.n_layer and config.tie_embeddings)");

  // ---- data.
  if (int8_head) {
    QUAMBA_RETURN_IF_ERROR(read_row_quant(f, "embedding", D, &q.embedding_q, &q.embedding, err));
    if (!c.tie_embeddings) QUAMBA_RETURN_IF_ERROR(read_row_quant(f, "lm_head", D, &q.lm_head_q, &q.lm_head, err));
  } else {
    QUAMBA_RETURN_IF_ERROR(f.read_tensor_f32("embedding.weight", &q.embedding, nullptr, err));
    if (!c.tie_embeddings) QUAMBA_RETURN_IF_ERROR(f.read_tensor_f32("lm_head.weight", &q.lm_head, nullptr, err));
  }
  QUAMBA_RETURN_IF_ERROR(f.read_tensor_f32("norm_f.weight", &q.norm_f, nullptr, err));
  q.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = layer_prefix(i);
    reference::LayerWeightsI8& l = q.layers[static_cast<size_t>(i)];
    QUAMBA_RETURN_IF_ERROR(f.read_tensor_f32(p + "norm.weight", &l.norm_gamma, nullptr, err));
    for (const QuantTensorSlot& s : slots) {
      reference::QuantTensor& t = l.*s.member;
      QUAMBA_RETURN_IF_ERROR(f.read_tensor_i8(p + s.suffix, &t.q, nullptr, err));
      QUAMBA_RETURN_IF_ERROR(read_scalar_f32(f, p + s.suffix + "_scale", &t.scale, err));
    }
    for (const ActScaleSlot& s : act_scale_slots())
      QUAMBA_RETURN_IF_ERROR(read_scalar_f32(f, p + s.suffix, &(l.act.*s.member), err));
  }
  const Status s = reference::validate_model(q);
  if (s != Status::kSuccess)
    return fail(err, s == Status::kErrorNotSupported ? s : Status::kErrorFormat,
                where + "the loaded model does not validate (" + to_string(s) + ")");
  if (info) {
    info->percentile = percentile;
    info->fp_dtype = f.find(int8_head ? "norm_f.weight" : "embedding.weight")->dtype;
    info->metadata = meta;
  }
  *out = std::move(q);
  return Status::kSuccess;
}

}  // namespace detail

inline Status save_quantized(const std::string& path, const reference::QuantizedModel& q, std::string* err = nullptr,
                             const SaveQuantizedOptions& opt = SaveQuantizedOptions{}) {
  if (!io::is_float_dtype(opt.fp_dtype))
    return detail::fail(err, Status::kErrorInvalidArgument,
                        std::string("save_quantized: fp_dtype ") + io::dtype_name(opt.fp_dtype) + " is not F32, F16 or BF16");
  if (!(opt.percentile >= 0.0 && opt.percentile <= 1.0))
    return detail::fail(err, Status::kErrorInvalidArgument, "save_quantized: percentile outside [0, 1]");
  const char* u_name = detail::u_scale_name(q.recipe.u_scale);
  if (u_name == nullptr) return detail::fail(err, Status::kErrorInvalidArgument, "save_quantized: unknown recipe.u_scale");
  const Status vs = reference::validate_model(q);
  if (vs != Status::kSuccess)
    return detail::fail(err, vs, std::string("save_quantized: the model does not validate (") + to_string(vs) + ")");
  const reference::ModelConfig& c = q.config;
  for (const auto& fld : detail::config_int_fields())
    if (c.*fld.member > io::detail::kConfigMaxDim)
      return detail::fail(err, Status::kErrorNotSupported, std::string("save_quantized: ") + fld.key + " exceeds 2^31 - 1");
  try {
    const auto slots = detail::quant_tensor_slots(c);
    const int64_t D = c.d_model, V = c.vocab;
    const std::vector<int64_t> scalar;
    io::SafetensorsWriter w;
    auto add_fp = [&](const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& v) {
      return w.add_tensor_f32(name, shape, v, opt.fp_dtype, err);
    };
    auto add_scale = [&](const std::string& name, float s) -> Status {
      if (!detail::valid_scale(s))
        return detail::fail(err, Status::kErrorInvalidArgument,
                            "save_quantized: scale '" + name + "' = " + detail::double_to_text(s) + " is not finite and > 0");
      return w.add_tensor_f32(name, scalar, &s, 1, io::Dtype::kF32, err);
    };
    // The int8 head: rows + per-row scales; the fp32 vectors must be their dequantized values,
    // or the loaded model would differ from this one.
    auto add_rows = [&](const std::string& name, const reference::RowQuantI8& t, const std::vector<float>& deq) -> Status {
      const std::vector<float> want = reference::dequantize_rows(t, D);
      if (want.size() != deq.size() ||
          (!want.empty() && std::memcmp(want.data(), deq.data(), want.size() * sizeof(float)) != 0))
        return detail::fail(err, Status::kErrorInvalidArgument,
                            "save_quantized: recipe.int8_head but the fp32 " + name + " is not the dequantized " + name +
                                "_q (quantize_model / dequantize_rows give it)");
      QUAMBA_RETURN_IF_ERROR(w.add_tensor_i8(name + ".weight", {V, D}, t.q, err));
      return w.add_tensor_f32(name + ".scale", {V}, t.scale, io::Dtype::kF32, err);
    };
    // Same tensor order as version 1 (embedding, norm_f, lm_head, layers).
    if (q.recipe.int8_head) QUAMBA_RETURN_IF_ERROR(add_rows("embedding", q.embedding_q, q.embedding));
    else QUAMBA_RETURN_IF_ERROR(add_fp("embedding.weight", {V, D}, q.embedding));
    QUAMBA_RETURN_IF_ERROR(add_fp("norm_f.weight", {D}, q.norm_f));
    if (!c.tie_embeddings) {
      if (q.recipe.int8_head) QUAMBA_RETURN_IF_ERROR(add_rows("lm_head", q.lm_head_q, q.lm_head));
      else QUAMBA_RETURN_IF_ERROR(add_fp("lm_head.weight", {V, D}, q.lm_head));
    }
    for (int64_t i = 0; i < c.n_layer; ++i) {
      const std::string p = detail::layer_prefix(i);
      const reference::LayerWeightsI8& l = q.layers[static_cast<size_t>(i)];
      QUAMBA_RETURN_IF_ERROR(add_fp(p + "norm.weight", {D}, l.norm_gamma));
      for (const auto& s : slots) {
        const reference::QuantTensor& t = l.*s.member;
        QUAMBA_RETURN_IF_ERROR(w.add_tensor_i8(p + s.suffix, s.shape, t.q, err));
        QUAMBA_RETURN_IF_ERROR(add_scale(p + s.suffix + "_scale", t.scale));
      }
      for (const auto& s : detail::act_scale_slots()) QUAMBA_RETURN_IF_ERROR(add_scale(p + s.suffix, l.act.*s.member));
    }
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("format", kQuantizedFormat, err));
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("format_version", quantized_format_version(q.recipe), err));
    // Version 1 files do not carry the key, so builds that only read version 1 keep reading them.
    if (q.recipe.int8_head) QUAMBA_RETURN_IF_ERROR(w.set_metadata("recipe.int8_head", "true", err));
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("recipe.use_hadamard", q.recipe.use_hadamard ? "true" : "false", err));
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("recipe.u_scale", u_name, err));
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("recipe.percentile", detail::double_to_text(opt.percentile), err));
    for (const auto& fld : detail::config_int_fields())
      QUAMBA_RETURN_IF_ERROR(w.set_metadata(fld.key, std::to_string(c.*fld.member), err));
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("config.eps", detail::float_to_text(c.eps), err));
    QUAMBA_RETURN_IF_ERROR(w.set_metadata("config.tie_embeddings", c.tie_embeddings ? "true" : "false", err));
    QUAMBA_RETURN_IF_ERROR(w.write(path, err));
  } catch (const std::bad_alloc&) {
    return detail::fail(err, Status::kErrorIo, "out of memory saving '" + path + "'");
  }
  return Status::kSuccess;
}

inline Status load_quantized(const std::string& path, reference::QuantizedModel* out, std::string* err = nullptr,
                             QuantizedCheckpointInfo* info = nullptr) {
  if (out == nullptr) return detail::fail(err, Status::kErrorInvalidArgument, "load_quantized: null output");
  try {
    return detail::load_quantized_impl(path, out, info, err);
  } catch (const std::bad_alloc&) {
    return detail::fail(err, Status::kErrorIo, "out of memory loading '" + path + "'");
  }
}

}  // namespace quamba::model
