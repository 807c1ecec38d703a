// quamba-demo: no arguments needed. Loads the model shipped in the repository (models/brown-mamba,
// found through the source tree's path baked in at configure time; --model overrides), quantizes
// it on the spot with the Quamba recipe (calibrated on a few short sequences of the corpus under
// models/data/), prints a short generation from the fp and the W8A8 model, and a perplexity table
// of fp vs naive W8A8 vs Quamba W8A8 on the corpus's test text.
//
// With a GPU (and a build with the GPU engines) it runs fp16 and w8a8 on the GPU; otherwise the
// CPU reference path (fp32 and w8a8, scalar host code) on few tokens, and says so.
// Exit status: 0 on success, 1 on errors, 2 for a bad command line, 77 when the shipped model is
// not there (so that a test can report "skipped").
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/engine_factory.hpp"
#include "common/tools.hpp"

#ifndef QUAMBA_MODELS_DIR
#define QUAMBA_MODELS_DIR "models"
#endif

using namespace quamba;
using namespace quamba::tools;

namespace {

constexpr int kExitNoModel = 77;

// models/data/**/*.txt: the eval text (name containing "test", else the first) and the calibration
// text (name containing "train", else "valid"/"val", else the eval text).
void find_corpus(const std::string& dir, std::string* eval, std::string* calib) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec) && it->path().extension() == ".txt") files.push_back(it->path().string());
  std::sort(files.begin(), files.end());
  auto pick = [&](const char* key) -> std::string {
    for (const auto& f : files)
      if (std::filesystem::path(f).filename().string().find(key) != std::string::npos) return f;
    return "";
  };
  *eval = pick("test");
  if (eval->empty() && !files.empty()) *eval = files[0];
  *calib = pick("train");
  if (calib->empty()) *calib = pick("val");
  if (calib->empty()) *calib = *eval;
}

// The first `max_bytes` of a text, cut after a newline (so never inside a UTF-8 character).
std::string head(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  const size_t nl = text.rfind('\n', max_bytes);
  return text.substr(0, nl == std::string::npos || nl == 0 ? max_bytes : nl + 1);
}

int run(int argc, char** argv) {
  std::string model_dir, data_path, backend_name = "auto";
  int64_t eval_tokens = 0, gen_tokens = 16;
  Cli cli("quamba-demo", "[--model DIR] [--data TEXT] [--backend auto|cpu|gpu]",
          "Runs the model shipped in the repository: quantizes it to W8A8 (Quamba recipe) on the spot,\n"
          "generates a few tokens and compares perplexities. Needs no arguments.");
  cli.opt("-m,--model", &model_dir, "DIR", "model directory (default: " QUAMBA_MODELS_DIR "/brown-mamba)");
  cli.opt("--data", &data_path, "TEXT", "evaluation text (default: the test split under models/data/)");
  cli.opt_choice("--backend", &backend_name, {"auto", "cpu", "gpu"}, "default auto: the GPU when there is one");
  cli.opt_int("--eval-tokens", &eval_tokens, 2, 1 << 24, "N", "tokens scored per variant (default 128 on CPU, 8192 on GPU)");
  cli.opt_int("-n,--n-predict", &gen_tokens, 0, 4096, "N", "tokens to generate (default 16)");
  if (const int r = cli.parse(argc, argv); r != Cli::kContinue) return r;
  const std::string& prog = cli.prog();

  if (model_dir.empty()) model_dir = std::string(QUAMBA_MODELS_DIR) + "/brown-mamba";
  if (!is_file(join_path(model_dir, "config.json")))
    return fail_line(prog, kExitNoModel, "model not found at '" + model_dir + "' (no config.json; give one with --model DIR)");
  std::string eval_path = data_path, calib_path;
  if (eval_path.empty()) {
    find_corpus(std::filesystem::path(join_path(join_path(model_dir, ".."), "data")).lexically_normal().string(), &eval_path,
                &calib_path);
    if (eval_path.empty()) return fail_line(prog, kExitNoModel, "no corpus text (*.txt) under '" + join_path(model_dir, "../data") + "' (give one with --data TEXT)");
  } else {
    calib_path = eval_path;
  }

  std::string err;
  BackendChoice choice;
  parse_backend(backend_name, &choice);
  model::Backend backend;
  if (resolve_backend(choice, &backend, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  const bool gpu = backend == model::Backend::kGpu;
  // CPU budget: the scalar reference runs ~10-20 tokens/s at d_model 384 x 8 layers (Hadamard
  // variants slower: a dense E x E rotation per token), so the CPU path stays in seconds.
  if (eval_tokens == 0) eval_tokens = gpu ? 8192 : 128;
  const int64_t ctx = gpu ? 1024 : 64, calib_samples = gpu ? 16 : 4, calib_len = gpu ? 256 : 32;

  std::printf("quamba-demo: %s\n", backend_note(backend).c_str());
  if (!gpu)
    std::printf("  (the CPU path is the scalar host reference: few tokens here; a GPU build runs fp16 and w8a8 kernels)\n");
  const auto t_start = std::chrono::steady_clock::now();
  reference::ModelWeights fp;
  io::BpeTokenizer tok;
  if (load_fp_model(model_dir, &fp, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (load_tokenizer("", model_dir, &tok, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  const auto& c = fp.config;
  std::printf("model: %s (%lld layers, d_model %lld, d_inner %lld, d_state %lld, vocab %lld)\n", model_dir.c_str(),
              (long long)c.n_layer, (long long)c.d_model, (long long)c.d_inner, (long long)c.d_state, (long long)c.vocab);

  // Texts: only their beginnings are needed (tokenizing a whole corpus takes time).
  std::string eval_text, calib_text;
  if (read_text_file(eval_path, &eval_text, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (read_text_file(calib_path, &calib_text, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  const size_t want_bytes = static_cast<size_t>(eval_tokens) * 8 + 4096;
  std::vector<int32_t> eval_ids, calib_ids;
  if (tokenize(tok, head(eval_text, want_bytes), c.vocab, &eval_ids, &err, eval_path.c_str()) != Status::kSuccess)
    return fail_line(prog, kExitError, err);
  if (static_cast<int64_t>(eval_ids.size()) > eval_tokens) eval_ids.resize(static_cast<size_t>(eval_tokens));
  if (eval_ids.size() < 2) return fail_line(prog, kExitError, "evaluation text '" + eval_path + "' has fewer than 2 tokens");
  if (calib_path == eval_path) {
    // Calibrate on text after the evaluated part.
    if (tokenize(tok, head(eval_text, want_bytes * 2 + 16384), c.vocab, &calib_ids, &err, eval_path.c_str()) != Status::kSuccess)
      return fail_line(prog, kExitError, err);
    if (calib_ids.size() > eval_ids.size() + 16) calib_ids.erase(calib_ids.begin(), calib_ids.begin() + static_cast<std::ptrdiff_t>(eval_ids.size()));
  } else if (tokenize(tok, head(calib_text, static_cast<size_t>(calib_samples * calib_len) * 16 + 4096), c.vocab, &calib_ids,
                      &err, calib_path.c_str()) != Status::kSuccess) {
    return fail_line(prog, kExitError, err);
  }
  if (calib_ids.empty()) return fail_line(prog, kExitError, "calibration text '" + calib_path + "' is empty");

  // Quantize on the spot: calibrate the fp32 host reference, then the Quamba recipe.
  const auto seqs = calibration_windows(calib_ids, calib_samples, calib_len);
  reference::CalibrationStats st;
  auto t0 = std::chrono::steady_clock::now();
  if (calibrate(fp, seqs, 0.99999, false, &st, &err, backend) != Status::kSuccess) return fail_line(prog, kExitError, err);
  reference::QuantRecipe quamba = reference::recipe_quamba();
  if (!reference::hadamard_size_supported(c.d_inner)) quamba.use_hadamard = false;
  reference::QuantizedModel q, naive;
  if (quantize(fp, st, quamba, &q, &err) != Status::kSuccess ||
      quantize(fp, st, reference::recipe_naive(), &naive, &err) != Status::kSuccess)
    return fail_line(prog, kExitError, err);
  int64_t calib_used = 0;
  for (const auto& sq : seqs) calib_used += static_cast<int64_t>(sq.size());
  std::printf("quantized: %zu calibration sequence(s), %lld tokens of %s (%s forward), %s recipe, %.1f s\n", seqs.size(),
              (long long)calib_used, calib_path.c_str(), gpu ? "fp16 GPU" : "fp32 host", quamba.use_hadamard ? "Quamba" : "percentile (no Hadamard size)",
              seconds_since(t0));

  const model::Precision fp_prec = gpu ? model::Precision::kFp16 : model::Precision::kFp32;
  model::EngineOptions eo;
  std::unique_ptr<model::Engine> e_fp, e_q, e_naive;
  if (make_engine(backend, fp_prec, &fp, nullptr, eo, &e_fp, &err) != Status::kSuccess ||
      make_engine(backend, model::Precision::kW8A8, nullptr, &q, eo, &e_q, &err) != Status::kSuccess ||
      make_engine(backend, model::Precision::kW8A8, nullptr, &naive, eo, &e_naive, &err) != Status::kSuccess)
    return fail_line(prog, kExitError, "creating the engines: " + err);

  // Generation: the same prompt and sampling seed for the fp and the W8A8 model.
  if (gen_tokens > 0) {
    const std::string prompt = "The jury said";
    std::vector<int32_t> pids;
    if (tokenize(tok, prompt, c.vocab, &pids, &err, "prompt") != Status::kSuccess) return fail_line(prog, kExitError, err);
    const std::vector<uint8_t> allowed = decodable_ids(tok, c.vocab);
    std::printf("\ngeneration (%lld tokens, temperature 0.7, top-k 40, seed 1):\n", (long long)gen_tokens);
    for (auto* e : {e_fp.get(), e_q.get()}) {
      std::printf("  %-5s| %s", model::to_string(e->precision()), prompt.c_str());
      std::fflush(stdout);
      SamplerOptions so;
      so.temperature = 0.7;
      so.seed = 1;
      Sampler sampler(so);
      std::vector<float> logits(static_cast<size_t>(c.vocab));
      t0 = std::chrono::steady_clock::now();
      Status s = e->reset_slot(0);
      if (s == Status::kSuccess) s = e->prefill(0, pids.data(), static_cast<int64_t>(pids.size()), logits.data(), false);
      TextStreamer out(tok, stdout);
      for (int64_t i = 0; i < gen_tokens && s == Status::kSuccess; ++i) {
        const int32_t id = sampler.sample(logits.data(), static_cast<int64_t>(allowed.size()), allowed.data());
        if (id < 0) return fail_line(prog, kExitError, "generation: the model produced a non-finite logit (NaN or Inf), or the tokenizer has a token for none of its ids");
        if (out.push(id, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
        if (i + 1 < gen_tokens) s = e->decode(&id, logits.data());
      }
      if (s != Status::kSuccess) return fail_line(prog, kExitError, std::string("generation failed: ") + to_string(s));
      if (out.flush(&err) != Status::kSuccess) return fail_line(prog, kExitError, err);
      std::printf("  [%.1f tokens/s]\n", static_cast<double>(gen_tokens) / seconds_since(t0));
    }
  }

  // Perplexity on the test text.
  std::printf("\nperplexity on %lld tokens of %s (windows of %lld):\n\n", (long long)eval_ids.size(), eval_path.c_str(),
              (long long)ctx);
  struct Row {
    const char* name;
    model::Engine* e;
    PerplexityResult r;
  } rows[] = {{gpu ? "fp16" : "fp32", e_fp.get(), {}},
              {"naive W8A8", e_naive.get(), {}},
              {quamba.use_hadamard ? "Quamba W8A8" : "percentile W8A8", e_q.get(), {}}};
  for (auto& r : rows)
    if (perplexity(*r.e, eval_ids, ctx, ctx, r.name, &r.r, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  std::printf("| variant | backend | perplexity | vs %s | time (s) |\n|---|---|---|---|---|\n", rows[0].name);
  for (const auto& r : rows)
    std::printf("| %s | %s | %.3f | %s | %.2f |\n", r.name, model::to_string(backend), r.r.ppl(),
                &r == &rows[0] ? "-" : fmt("%+.2f%%", (r.r.ppl() / rows[0].r.ppl() - 1.0) * 100.0).c_str(), r.r.seconds);
  std::printf("\ndone in %.1f s. Next: quamba-quantize, quamba-generate, quamba-perplexity, quamba-bench (--help).\n",
              seconds_since(t_start));
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("quamba-demo", argc, argv, run); }
