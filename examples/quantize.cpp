// quamba-quantize: a Hugging Face Mamba checkpoint (fp32/fp16/bf16) + a calibration text ->
// a quamba-w8a8 quantized checkpoint (include/quamba/model/quantized_checkpoint.hpp).
//
// The text is tokenized with the checkpoint's tokenizer.json, cut into --calib-samples windows of
// --calib-len tokens spread over the file, and run through the fp32 host reference with the
// calibration observers (SPEC §2); the recipe then picks the static scales and quantizes.
//
//   quamba-quantize --model DIR --calib TEXT -o OUT.safetensors [--recipe quamba] ...
#include <cstdio>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/engine_factory.hpp"
#include "common/tools.hpp"
#include "quamba/model/quantized_checkpoint.hpp"

using namespace quamba;
using namespace quamba::tools;

namespace {

int run(int argc, char** argv) {
  std::string model_dir, calib_path, out_path, tokenizer_path, recipe_name = "quamba", u_scale_name, fp_dtype = "f32",
              backend_name = "auto";
  double percentile = 0.99999;
  int64_t samples = 32, len = 512;
  bool int8_head = false;
  Cli cli("quamba-quantize", "--model DIR --calib TEXT -o OUT.safetensors [options]",
          "Quantizes a Hugging Face Mamba checkpoint to W8A8 with static scales calibrated on a text file\n"
          "(CPU reference, fp32), and writes a quamba-w8a8 checkpoint.");
  cli.opt("-m,--model", &model_dir, "DIR", "fp checkpoint directory (config.json, model.safetensors, tokenizer.json)");
  cli.opt("--calib", &calib_path, "TEXT", "calibration text file (UTF-8)");
  cli.opt("-o,--output", &out_path, "FILE", "output quantized checkpoint (.safetensors)");
  cli.opt("--tokenizer", &tokenizer_path, "FILE", "tokenizer.json (default: DIR/tokenizer.json)");
  cli.opt_choice("--recipe", &recipe_name, {"naive", "percentile", "hadamard", "quamba"},
                 "naive: absmax everywhere; percentile: + percentile s_u; hadamard: + rotated out_proj; "
                 "quamba: both (default)");
  cli.opt_real("--percentile", &percentile, 0.0, true, 1.0, false, "A", "alpha of the u quantile (default 0.99999)");
  cli.opt_choice("--u-scale", &u_scale_name, {"ema", "exact", "absmax"},
                 "observer behind s_u (default: the recipe's; exact keeps every |u|: memory tokens*E*layers*4 B)");
  cli.opt_int("--calib-samples", &samples, 1, 1 << 20, "N", "calibration windows (default 32)");
  cli.opt_int("--calib-len", &len, 1, 1 << 20, "L", "tokens per window (default 512)");
  cli.opt_choice("--fp-dtype", &fp_dtype, {"f32", "f16", "bf16"},
                 "dtype of the embedding, norms and lm_head in the output (only the norms with --int8-head; "
                 "default f32)");
  cli.flag("--int8-head", &int8_head,
           "weight-only per-row int8 embedding/lm_head; smaller weights, small logit error "
           "(writes format_version 2)");
  cli.opt_choice("--backend", &backend_name, {"auto", "cpu", "gpu"},
                 "where calibration runs: cpu = fp32 host reference, gpu = fp16 GPU forward (default auto; "
                 "--u-scale exact always runs on the CPU)");
  if (const int r = cli.parse(argc, argv); r != Cli::kContinue) return r;
  const std::string& prog = cli.prog();
  if (model_dir.empty()) return fail_line(prog, kExitUsage, "missing --model DIR (try --help)");
  if (calib_path.empty()) return fail_line(prog, kExitUsage, "missing --calib TEXT (try --help)");
  if (out_path.empty()) return fail_line(prog, kExitUsage, "missing -o OUT.safetensors (try --help)");
  std::string err;
  // Before the calibration, which takes minutes on the CPU.
  if (check_output_path(out_path, "writing", &err, {model_dir, calib_path, tokenizer_path}) != Status::kSuccess)
    return fail_line(prog, kExitError, err);

  reference::QuantRecipe recipe;
  parse_recipe(recipe_name, &recipe);
  if (!u_scale_name.empty()) parse_u_scale(u_scale_name, &recipe.u_scale);
  recipe.int8_head = int8_head;

  std::string text;
  BackendChoice choice;
  parse_backend(backend_name, &choice);
  model::Backend backend;
  if (resolve_backend(choice, &backend, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (recipe.u_scale == reference::UScale::kPercentileExact) backend = model::Backend::kCpu;
  reference::ModelWeights m;
  io::BpeTokenizer tok;
  if (load_fp_model(model_dir, &m, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (recipe.use_hadamard && !reference::hadamard_size_supported(m.config.d_inner))
    return fail_line(prog, kExitError,
                     "--recipe " + recipe_name + ": d_inner = " + std::to_string(m.config.d_inner) +
                         " has no supported Hadamard size; use --recipe naive or percentile");
  if (load_tokenizer(tokenizer_path, model_dir, &tok, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (read_text_file(calib_path, &text, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  std::vector<int32_t> ids;
  if (tokenize(tok, text, m.config.vocab, &ids, &err, calib_path.c_str()) != Status::kSuccess)
    return fail_line(prog, kExitError, err);
  if (ids.empty()) return fail_line(prog, kExitError, "calibration text '" + calib_path + "' is empty");
  const auto seqs = calibration_windows(ids, samples, len);

  const auto& c = m.config;
  std::printf("model: %s (d_model %lld, layers %lld, d_inner %lld, d_state %lld, vocab %lld)\n", model_dir.c_str(),
              (long long)c.d_model, (long long)c.n_layer, (long long)c.d_inner, (long long)c.d_state,
              (long long)c.vocab);
  int64_t used = 0;
  for (const auto& s : seqs) used += static_cast<int64_t>(s.size());
  std::printf("calibration: %s, %zu tokens; %zu window(s), %lld tokens\n", calib_path.c_str(), ids.size(), seqs.size(),
              (long long)used);
  std::printf("recipe: %s (hadamard %s, s_u %s, percentile %g%s)\n", recipe_name.c_str(),
              recipe.use_hadamard ? "on" : "off", model::detail::u_scale_name(recipe.u_scale), percentile,
              recipe.int8_head ? ", int8 embedding/lm_head" : "");
  std::fflush(stdout);

  const auto t0 = std::chrono::steady_clock::now();
  reference::CalibrationStats st;
  const bool keep_u = recipe.u_scale == reference::UScale::kPercentileExact;
  if (calibrate(m, seqs, percentile, keep_u, &st, &err, backend) != Status::kSuccess) return fail_line(prog, kExitError, err);
  const double t_cal = seconds_since(t0);
  reference::QuantizedModel q;
  if (quantize(m, st, recipe, &q, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);

  model::SaveQuantizedOptions so;
  so.percentile = percentile;
  so.fp_dtype = fp_dtype == "f16" ? io::Dtype::kF16 : fp_dtype == "bf16" ? io::Dtype::kBF16 : io::Dtype::kF32;
  std::string msg;
  if (model::save_quantized(out_path, q, &msg, so) != Status::kSuccess)
    return fail_line(prog, kExitError, "writing '" + out_path + "': " + msg);

  int64_t i8 = 0;
  for (const auto& l : q.layers)
    i8 += static_cast<int64_t>(l.in_proj.q.size() + l.conv_w.q.size() + l.conv_b.q.size() + l.x_proj.q.size() +
                               l.dt_proj.q.size() + l.dt_bias.q.size() + l.A_log.q.size() + l.D.q.size() +
                               l.out_proj.q.size());
  i8 += static_cast<int64_t>(q.embedding_q.q.size() + q.lm_head_q.q.size());
  std::printf("calibrated in %.2f s (%s); %lld int8 weights\n", t_cal,
              backend == model::Backend::kGpu ? "fp16 GPU forward" : "fp32 host reference", (long long)i8);
  std::printf("| layer | s_h | s_xz | s_u | s_xd | s_dt | s_o |\n|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < q.layers.size(); ++i) {
    const auto& a = q.layers[i].act;
    std::printf("| %zu | %.4g | %.4g | %.4g | %.4g | %.4g | %.4g |\n", i, a.s_h, a.s_xz, a.s_u, a.s_xd, a.s_dt, a.s_o);
  }
  std::printf("wrote %s\n", out_path.c_str());
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("quamba-quantize", argc, argv, run); }
