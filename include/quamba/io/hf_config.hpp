// quamba/io/hf_config.hpp: the model hyper-parameters of a Mamba (v1) checkpoint's
// config.json, as a plain struct (host only).
//
// Hugging Face layout (MambaConfig): hidden_size D, num_hidden_layers, vocab_size V are
// required (a silently defaulted model size would only fail later, at the weight shapes).
// Absent keys take MambaConfig's defaults: state_size N = 16, conv_kernel K = 4, expand = 2,
// intermediate_size E = int(expand * D), time_step_rank R = "auto" = ceil(D / 16),
// layer_norm_epsilon = 1e-5, use_conv_bias = true, use_bias = false, tie_word_embeddings = true.
// A present intermediate_size wins over expand (as in transformers, where the stored key
// overrides the computed attribute).
// The original (state-spaces, non-HF) layout is accepted too: d_model, n_layer, vocab_size
// rounded up to pad_vocab_size_multiple, ssm_cfg {d_state, d_conv, expand, dt_rank, conv_bias,
// bias}, tie_embeddings; HF keys take precedence when both are present.
// Type rules are strict: integers must be JSON integers, flags JSON booleans, the epsilon a
// finite number in (0, 1). Ranges: every size >= 1 and <= 2^31 - 1, E even, K <= 64,
// N <= 1024. model_type, when present, must be "mamba"; hidden_act, when present, "silu"
// (kErrorNotSupported otherwise). Other keys are ignored.
// Errors: kErrorIo (file missing/unreadable), kErrorFormat (bad JSON, missing key, wrong
// type, out-of-range value), kErrorNotSupported (another architecture); message in *error.
#pragma once

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>

#include "quamba/core/status.hpp"
#include "quamba/io/json.hpp"
#include "quamba/io/safetensors.hpp"

namespace quamba::io {

struct HfMambaConfig {
  int64_t hidden_size = 0;        // D
  int64_t num_hidden_layers = 0;
  int64_t intermediate_size = 0;  // E
  int64_t state_size = 16;        // N
  int64_t conv_kernel = 4;        // K
  int64_t time_step_rank = 0;     // R
  int64_t vocab_size = 0;         // V
  double layer_norm_epsilon = 1e-5;
  bool use_conv_bias = true;
  bool use_bias = false;
  bool tie_word_embeddings = true;
};

namespace detail {

inline constexpr int64_t kConfigMaxDim = 2147483647;

class ConfigReader {
 public:
  ConfigReader(const JsonValue& root, std::string* error) : root_(root), error_(error) {}

  // Looks for the first present key among (primary, alias) in (root, alias_object).
  const JsonValue* lookup(const char* key, const char* alias = nullptr, const JsonValue* alias_obj = nullptr) const {
    if (const JsonValue* v = root_.find(key)) return v;
    if (alias != nullptr) {
      const JsonValue& obj = alias_obj ? *alias_obj : root_;
      if (const JsonValue* v = obj.find(alias)) return v;
    }
    return nullptr;
  }

  Status get_int(const char* key, const JsonValue* v, int64_t lo, int64_t hi, int64_t* out) const {
    if (!v->is_int())
      return fail("config.json: \"" + std::string(key) + "\" must be an integer");
    if (v->as_int() < lo || v->as_int() > hi)
      return fail("config.json: \"" + std::string(key) + "\" = " + std::to_string(v->as_int()) + " is outside [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]");
    *out = v->as_int();
    return Status::kSuccess;
  }

  Status get_bool(const char* key, const JsonValue* v, bool* out) const {
    if (!v->is_bool()) return fail("config.json: \"" + std::string(key) + "\" must be true or false");
    *out = v->as_bool();
    return Status::kSuccess;
  }

  Status fail(const std::string& msg, Status s = Status::kErrorFormat) const { return set_error(error_, s, msg); }

 private:
  const JsonValue& root_;
  std::string* error_;
};

}  // namespace detail

// Parses config.json text into *out.
inline Status parse_hf_mamba_config(std::string_view json_text, HfMambaConfig* out, std::string* error = nullptr) {
  if (out == nullptr) return detail::set_error(error, Status::kErrorInvalidArgument, "null config output");
  JsonValue root;
  std::string jerr;
  if (parse_json(json_text, &root, &jerr) != Status::kSuccess)
    return detail::set_error(error, Status::kErrorFormat, "config.json: " + jerr);
  if (!root.is_object()) return detail::set_error(error, Status::kErrorFormat, "config.json: not a JSON object");
  detail::ConfigReader r(root, error);
  constexpr int64_t kMax = detail::kConfigMaxDim;

  if (const JsonValue* mt = root.find("model_type")) {
    if (!mt->is_string() || mt->as_string() != "mamba")
      return r.fail("config.json: model_type " + (mt->is_string() ? "\"" + mt->as_string() + "\"" : std::string("(not a string)")) +
                        " is not supported (expected \"mamba\")",
                    Status::kErrorNotSupported);
  }
  if (const JsonValue* act = root.find("hidden_act")) {
    if (!act->is_string() || act->as_string() != "silu")
      return r.fail("config.json: hidden_act must be \"silu\"", Status::kErrorNotSupported);
  }
  const JsonValue* ssm = root.find("ssm_cfg");
  if (ssm != nullptr && !ssm->is_object()) return r.fail("config.json: \"ssm_cfg\" must be an object");
  if (ssm != nullptr) {
    if (const JsonValue* layer = ssm->find("layer")) {
      if (!layer->is_string() || layer->as_string() != "Mamba1")
        return r.fail("config.json: ssm_cfg.layer must be \"Mamba1\"", Status::kErrorNotSupported);
    }
  }

  HfMambaConfig c;
  const JsonValue* v = r.lookup("hidden_size", "d_model");
  if (v == nullptr) return r.fail("config.json: missing required key \"hidden_size\"");
  QUAMBA_RETURN_IF_ERROR(r.get_int("hidden_size", v, 1, kMax, &c.hidden_size));

  v = r.lookup("num_hidden_layers", "n_layer");
  if (v == nullptr) return r.fail("config.json: missing required key \"num_hidden_layers\"");
  QUAMBA_RETURN_IF_ERROR(r.get_int("num_hidden_layers", v, 1, 1 << 20, &c.num_hidden_layers));

  v = root.find("vocab_size");
  if (v == nullptr) return r.fail("config.json: missing required key \"vocab_size\"");
  QUAMBA_RETURN_IF_ERROR(r.get_int("vocab_size", v, 1, kMax, &c.vocab_size));
  if (root.find("hidden_size") == nullptr) {
    // Original layout: the embedding is padded to a multiple of pad_vocab_size_multiple.
    if (const JsonValue* pad = root.find("pad_vocab_size_multiple")) {
      int64_t m = 1;
      QUAMBA_RETURN_IF_ERROR(r.get_int("pad_vocab_size_multiple", pad, 1, 1 << 20, &m));
      const int64_t rem = c.vocab_size % m;
      if (rem != 0) c.vocab_size += m - rem;
      if (c.vocab_size > kMax) return r.fail("config.json: padded vocab_size out of range");
    }
  }

  if ((v = r.lookup("state_size", "d_state", ssm)))
    QUAMBA_RETURN_IF_ERROR(r.get_int("state_size", v, 1, 1024, &c.state_size));
  if ((v = r.lookup("conv_kernel", "d_conv", ssm)))
    QUAMBA_RETURN_IF_ERROR(r.get_int("conv_kernel", v, 1, 64, &c.conv_kernel));

  if ((v = root.find("intermediate_size"))) {
    QUAMBA_RETURN_IF_ERROR(r.get_int("intermediate_size", v, 1, kMax, &c.intermediate_size));
  } else {
    double expand = 2.0;
    if ((v = r.lookup("expand", "expand", ssm))) {
      if (!v->is_number() || !(v->as_double() > 0.0) || !std::isfinite(v->as_double()))
        return r.fail("config.json: \"expand\" must be a positive number");
      expand = v->as_double();
    }
    const double e = std::floor(expand * static_cast<double>(c.hidden_size));
    if (!(e >= 1.0) || e > static_cast<double>(kMax))
      return r.fail("config.json: intermediate size expand * hidden_size out of range");
    c.intermediate_size = static_cast<int64_t>(e);
  }
  if (c.intermediate_size % 2 != 0)
    return r.fail("config.json: intermediate_size " + std::to_string(c.intermediate_size) + " must be even");

  c.time_step_rank = (c.hidden_size + 15) / 16;
  if ((v = r.lookup("time_step_rank", "dt_rank", ssm))) {
    if (v->is_string()) {
      if (v->as_string() != "auto")
        return r.fail("config.json: \"time_step_rank\" must be an integer or \"auto\", got \"" + v->as_string() + "\"");
    } else {
      QUAMBA_RETURN_IF_ERROR(r.get_int("time_step_rank", v, 1, kMax, &c.time_step_rank));
    }
  }

  if ((v = root.find("layer_norm_epsilon"))) {
    if (!v->is_number() || !std::isfinite(v->as_double()) || !(v->as_double() > 0.0) || !(v->as_double() < 1.0))
      return r.fail("config.json: \"layer_norm_epsilon\" must be a number in (0, 1)");
    c.layer_norm_epsilon = v->as_double();
  }
  if ((v = r.lookup("use_conv_bias", "conv_bias", ssm))) QUAMBA_RETURN_IF_ERROR(r.get_bool("use_conv_bias", v, &c.use_conv_bias));
  if ((v = r.lookup("use_bias", "bias", ssm))) QUAMBA_RETURN_IF_ERROR(r.get_bool("use_bias", v, &c.use_bias));
  if ((v = r.lookup("tie_word_embeddings", "tie_embeddings")))
    QUAMBA_RETURN_IF_ERROR(r.get_bool("tie_word_embeddings", v, &c.tie_word_embeddings));

  // Products the loaders form must stay well inside int64 (x_proj rows, in_proj elements).
  if (c.time_step_rank + 2 * c.state_size > kMax) return r.fail("config.json: time_step_rank + 2*state_size out of range");
  *out = c;
  return Status::kSuccess;
}

// Reads and parses a config.json file.
inline Status load_hf_mamba_config(const std::string& path, HfMambaConfig* out, std::string* error = nullptr) {
  if (out == nullptr) return detail::set_error(error, Status::kErrorInvalidArgument, "null config output");
  try {
    uint64_t size = 0;
    QUAMBA_RETURN_IF_ERROR(detail::regular_file_size(path, &size, error));
    if (size > (uint64_t{16} << 20))
      return detail::set_error(error, Status::kErrorFormat, detail::quote(path) + ": larger than 16 MiB, not a config");
    std::string text(static_cast<size_t>(size), '\0');
    std::ifstream f(path, std::ios::binary);
    if (!f.is_open())
      return detail::set_error(error, Status::kErrorIo, "cannot open " + detail::quote(path) + ": " + detail::errno_text());
    QUAMBA_RETURN_IF_ERROR(detail::read_exact(f, path, 0, text.data(), text.size(), error));
    std::string perr;
    const Status s = parse_hf_mamba_config(text, out, &perr);
    if (s != Status::kSuccess) return detail::set_error(error, s, detail::quote(path) + ": " + perr);
  } catch (const std::bad_alloc&) {
    return detail::set_error(error, Status::kErrorIo, "out of memory reading " + detail::quote(path));
  }
  return Status::kSuccess;
}

}  // namespace quamba::io
