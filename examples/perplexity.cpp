// quamba-perplexity: perplexity of a text under several variants of a model, side by side in one
// Markdown table (and JSON with --json). Variants: fp32 (CPU), fp16 (GPU), fp (fp32 on the CPU,
// fp16 on the GPU), the W8A8 recipes naive, percentile, hadamard, quamba (calibrated on the spot
// from --calib with the fp32 host reference), and quamba-w8a8 files given with -q (repeatable).
// This is how the README's accuracy table is produced.
//
// Windows: the text's tokens (up to --max-tokens) are cut into windows of --ctx tokens starting
// every --stride tokens (default: non-overlapping); each window runs from a fresh state and scores
// the targets no earlier window scored (examples/common/tools.hpp: perplexity()).
//
//   quamba-perplexity -m DIR -f test.txt --calib train.txt --variants fp32,naive,percentile,hadamard,quamba
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/engine_factory.hpp"
#include "common/tools.hpp"

using namespace quamba;
using namespace quamba::tools;

namespace {

struct Variant {
  std::string name;
  model::Backend backend = model::Backend::kCpu;
  model::Precision precision = model::Precision::kFp32;
  bool recipe_variant = false;
  reference::QuantRecipe recipe;
  std::string qpath;  // loaded from a file
  PerplexityResult r;
};

int run(int argc, char** argv) {
  std::string model_dir, tokenizer_path, text_path, calib_path, variants_s, backend_name = "auto", json_path, u_scale_name;
  std::vector<std::string> qpaths;
  int64_t ctx = 512, stride = 0, max_tokens = 0, samples = 32, len = 512, chunk = 2048;
  double percentile = 0.99999;
  Cli cli("quamba-perplexity", "(-m DIR | -q FILE) -f TEXT [--variants LIST] [--calib TEXT] [options]",
          "Perplexity of a text under several variants of a model, as one Markdown table.");
  cli.opt("-m,--model", &model_dir, "DIR", "fp checkpoint directory (config.json, model.safetensors, tokenizer.json)");
  cli.opt_multi("-q,--quantized", &qpaths, "FILE", "a quamba-w8a8 checkpoint to evaluate (repeatable)");
  cli.opt("--tokenizer", &tokenizer_path, "FILE", "tokenizer.json (default: in DIR, or next to the first FILE)");
  cli.opt("-f,--file", &text_path, "TEXT", "evaluation text (UTF-8)");
  cli.opt("--variants", &variants_s, "LIST",
          "comma-separated: fp32, fp16, fp, naive, percentile, hadamard, quamba (default: fp with -m)");
  cli.opt("--calib", &calib_path, "TEXT", "calibration text for the recipe variants");
  cli.opt_int("--calib-samples", &samples, 1, 1 << 20, "N", "calibration windows (default 32)");
  cli.opt_int("--calib-len", &len, 1, 1 << 20, "L", "tokens per calibration window (default 512)");
  cli.opt_real("--percentile", &percentile, 0.0, true, 1.0, false, "A", "alpha of the u quantile (default 0.99999)");
  cli.opt_choice("--u-scale", &u_scale_name, {"ema", "exact"}, "observer of s_u in percentile/quamba (default ema)");
  cli.opt_int("--ctx", &ctx, 2, 1 << 24, "N", "window length in tokens (default 512)");
  cli.opt_int("--stride", &stride, 1, 1 << 24, "S", "window start step, <= ctx (default ctx: non-overlapping)");
  cli.opt_int("--max-tokens", &max_tokens, 0, INT64_MAX, "N", "evaluate the first N tokens only (default 0 = all)");
  cli.opt_choice("--backend", &backend_name, {"auto", "cpu", "gpu"}, "backend of the w8a8 variants (default auto)");
  cli.opt_int("--prefill-chunk", &chunk, 1, 1 << 24, "N", "tokens per internal prefill chunk (default 2048)");
  cli.opt("--json", &json_path, "FILE", "also write the results as JSON");
  if (const int r = cli.parse(argc, argv); r != Cli::kContinue) return r;
  const std::string& prog = cli.prog();
  if (model_dir.empty() && qpaths.empty()) return fail_line(prog, kExitUsage, "give --model DIR and/or --quantized FILE (try --help)");
  if (text_path.empty()) return fail_line(prog, kExitUsage, "missing -f TEXT (try --help)");
  if (stride == 0) stride = ctx;
  if (stride > ctx) return fail_line(prog, kExitUsage, "--stride " + std::to_string(stride) + " exceeds --ctx " + std::to_string(ctx));
  if (std::string why; !json_path.empty()) {
    std::vector<std::string> inputs = {model_dir, tokenizer_path, text_path, calib_path};
    inputs.insert(inputs.end(), qpaths.begin(), qpaths.end());
    if (check_output_path(json_path, "--json", &why, inputs) != Status::kSuccess) return fail_line(prog, kExitError, why);
  }

  std::string err;
  BackendChoice choice;
  parse_backend(backend_name, &choice);
  model::Backend backend;
  if (resolve_backend(choice, &backend, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);

  // The variants, checked before any file is read.
  std::vector<Variant> vars;
  if (variants_s.empty() && !model_dir.empty()) variants_s = "fp";
  bool need_calib = false;
  if (!variants_s.empty()) {
    for (const auto& name : split_list(variants_s)) {
      Variant v;
      v.name = name;
      if (name == "fp32" || name == "fp16" || name == "fp") {
        v.precision = name == "fp32" ? model::Precision::kFp32
                      : name == "fp16" ? model::Precision::kFp16
                      : backend == model::Backend::kGpu ? model::Precision::kFp16 : model::Precision::kFp32;
        if (v.precision == model::Precision::kFp16) {
          if (const Status s = resolve_backend(BackendChoice::kGpu, &v.backend, &err); s != Status::kSuccess)
            return fail_line(prog, kExitError, "variant fp16: " + err);
        }
        v.name = model::to_string(v.precision);
      } else if (parse_recipe(name, &v.recipe)) {
        v.recipe_variant = true;
        v.precision = model::Precision::kW8A8;
        v.backend = backend;
        if (v.recipe.u_scale != reference::UScale::kAbsmax && u_scale_name == "exact")
          v.recipe.u_scale = reference::UScale::kPercentileExact;
        need_calib = true;
      } else {
        return fail_line(prog, kExitUsage, "--variants: unknown variant '" + name +
                                               "' (fp32, fp16, fp, naive, percentile, hadamard, quamba)");
      }
      if (model_dir.empty()) return fail_line(prog, kExitUsage, "variant '" + name + "' needs --model DIR");
      vars.push_back(v);
    }
  }
  for (const auto& p : qpaths) {
    Variant v;
    v.name = p;
    v.precision = model::Precision::kW8A8;
    v.backend = backend;
    v.qpath = p;
    vars.push_back(v);
  }
  if (need_calib && calib_path.empty())
    return fail_line(prog, kExitUsage, "the recipe variants need --calib TEXT (calibration text)");

  reference::ModelWeights fp;
  if (!model_dir.empty() && load_fp_model(model_dir, &fp, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  std::vector<reference::QuantizedModel> loaded(qpaths.size());
  for (size_t i = 0; i < qpaths.size(); ++i) {
    if (load_quantized_model(qpaths[i], &loaded[i], nullptr, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
    if (!model_dir.empty() && (loaded[i].config.vocab != fp.config.vocab || loaded[i].config.d_model != fp.config.d_model ||
                               loaded[i].config.n_layer != fp.config.n_layer))
      return fail_line(prog, kExitError, "'" + qpaths[i] + "' is not a quantization of the model in '" + model_dir + "'");
  }
  const reference::ModelConfig cfg = model_dir.empty() ? loaded[0].config : fp.config;
  io::BpeTokenizer tok;
  if (load_tokenizer(tokenizer_path, model_dir.empty() ? parent_dir(qpaths[0]) : model_dir, &tok, &err) != Status::kSuccess)
    return fail_line(prog, kExitError, err);
  std::string text;
  std::vector<int32_t> ids;
  if (read_text_file(text_path, &text, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (tokenize(tok, text, cfg.vocab, &ids, &err, text_path.c_str()) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
  if (ids.size() < 2) return fail_line(prog, kExitError, "'" + text_path + "' has fewer than 2 tokens");

  std::printf("%s: %s; model %s: %lld layers, d_model %lld, vocab %lld\n", prog.c_str(), backend_note(backend).c_str(),
              model_dir.empty() ? qpaths[0].c_str() : model_dir.c_str(), (long long)cfg.n_layer,
              (long long)cfg.d_model, (long long)cfg.vocab);
  std::printf("text: %s, %zu tokens; windows of %lld, stride %lld\n", text_path.c_str(), ids.size(), (long long)ctx,
              (long long)stride);

  reference::CalibrationStats st;
  if (need_calib) {
    std::string ctext;
    std::vector<int32_t> cids;
    if (read_text_file(calib_path, &ctext, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
    if (tokenize(tok, ctext, cfg.vocab, &cids, &err, calib_path.c_str()) != Status::kSuccess)
      return fail_line(prog, kExitError, err);
    if (cids.empty()) return fail_line(prog, kExitError, "calibration text '" + calib_path + "' is empty");
    const auto seqs = calibration_windows(cids, samples, len);
    int64_t used = 0;
    for (const auto& s : seqs) used += static_cast<int64_t>(s.size());
    const auto t0 = std::chrono::steady_clock::now();
    if (calibrate(fp, seqs, percentile, u_scale_name == "exact", &st, &err, backend) != Status::kSuccess)
      return fail_line(prog, kExitError, err);
    std::printf("calibration: %s, %zu window(s), %lld tokens, %.2f s (%s)\n", calib_path.c_str(), seqs.size(),
                (long long)used, seconds_since(t0),
                backend == model::Backend::kGpu && u_scale_name != "exact" ? "fp16 GPU forward" : "fp32 host reference");
  }
  std::fflush(stdout);

  model::EngineOptions eo;
  eo.batch = 1;
  eo.prefill_chunk = chunk;
  for (auto& v : vars) {
    std::unique_ptr<model::Engine> e;
    Status s;
    if (v.precision != model::Precision::kW8A8) {
      s = make_engine(v.backend, v.precision, &fp, nullptr, eo, &e, &err);
    } else if (v.recipe_variant) {
      reference::QuantizedModel q;
      if (quantize(fp, st, v.recipe, &q, &err) != Status::kSuccess) return fail_line(prog, kExitError, "variant " + v.name + ": " + err);
      s = make_engine(v.backend, v.precision, nullptr, &q, eo, &e, &err);
    } else {
      const size_t i = static_cast<size_t>(&v - &vars[0]) - (vars.size() - qpaths.size());
      s = make_engine(v.backend, v.precision, nullptr, &loaded[i], eo, &e, &err);
    }
    if (s != Status::kSuccess) return fail_line(prog, kExitError, "variant " + v.name + ": " + err);
    if (perplexity(*e, ids, ctx, stride, v.name, &v.r, &err) != Status::kSuccess)
      return fail_line(prog, kExitError, "variant " + v.name + ": " + err);
  }

  std::printf("\n| variant | backend | precision | perplexity | vs %s | tokens scored | time (s) |\n", vars[0].name.c_str());
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const auto& v : vars) {
    const std::string label = v.recipe_variant ? recipe_label(v.recipe) : v.name;
    const double rel = (v.r.ppl() / vars[0].r.ppl() - 1.0) * 100.0;
    std::printf("| %s | %s | %s | %.3f | %s | %lld | %.2f |\n", label.c_str(), model::to_string(v.backend),
                model::to_string(v.precision), v.r.ppl(), &v == &vars[0] ? "-" : fmt("%+.2f%%", rel).c_str(),
                (long long)v.r.tokens, v.r.seconds);
  }
  if (!json_path.empty()) {
    std::string j = "{\n  \"text\": " + json_string(text_path) + ",\n  \"tokens\": " + std::to_string(ids.size()) +
                    ",\n  \"ctx\": " + std::to_string(ctx) + ",\n  \"stride\": " + std::to_string(stride) +
                    ",\n  \"variants\": [\n";
    for (size_t i = 0; i < vars.size(); ++i) {
      const auto& v = vars[i];
      j += "    {\"name\": " + json_string(v.name) + ", \"backend\": \"" + model::to_string(v.backend) +
           "\", \"precision\": \"" + model::to_string(v.precision) + "\", \"perplexity\": " +
           (std::isfinite(v.r.ppl()) ? fmt("%.6f", v.r.ppl()) : std::string("null")) +
           ", \"tokens_scored\": " + std::to_string(v.r.tokens) + ", \"seconds\": " + fmt("%.4f", v.r.seconds) + "}" +
           (i + 1 < vars.size() ? ",\n" : "\n");
    }
    j += "  ]\n}\n";
    if (!write_text_file(json_path, j)) return fail_line(prog, kExitError, "cannot write '" + json_path + "'");
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("quamba-perplexity", argc, argv, run); }
