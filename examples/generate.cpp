// quamba-generate: a prompt -> text streamed to stdout, from an fp checkpoint (fp32 on the CPU,
// fp16 on the GPU) or a quamba-w8a8 checkpoint (w8a8 on either), with greedy or temperature /
// top-k / top-p sampling. Long prompts go through the engine's chunked prefill
// (--prefill-chunk). Timings (prefill and generation tokens/s) go to stderr.
//
//   quamba-generate -m DIR -p "The jury said" -n 64 [--greedy | --temp T --top-k K --top-p P --seed S]
//   quamba-generate -q model-w8a8.safetensors --tokenizer DIR/tokenizer.json -p "..." --backend gpu
#include <chrono>
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

int run(int argc, char** argv) {
  std::string model_dir, qpath, tokenizer_path, prompt, prompt_file, precision_name, backend_name = "auto";
  int64_t n_predict = 64, seed = 0, chunk = 2048, top_k = 40;
  double temp = 0.8, top_p = 0.95;
  bool greedy = false, ignore_eos = false;
  Cli cli("quamba-generate", "(-m DIR | -q FILE) (-p PROMPT | -f FILE) [options]",
          "Generates text from a prompt with a Mamba model and streams it to stdout; timings go to stderr.");
  cli.opt("-m,--model", &model_dir, "DIR", "fp checkpoint directory (config.json, model.safetensors, tokenizer.json)");
  cli.opt("-q,--quantized", &qpath, "FILE", "quamba-w8a8 checkpoint (from quamba-quantize)");
  cli.opt("--tokenizer", &tokenizer_path, "FILE", "tokenizer.json (default: in DIR, or next to FILE)");
  cli.opt("-p,--prompt", &prompt, "TEXT", "the prompt", true);
  cli.opt("-f,--file", &prompt_file, "FILE", "read the prompt from a file");
  cli.opt_int("-n,--n-predict", &n_predict, 0, 1 << 20, "N", "tokens to generate (default 64)");
  cli.flag("--greedy", &greedy, "always take the most likely token (same as --temp 0)");
  cli.opt_real("--temp", &temp, 0.0, false, 100.0, false, "T", "sampling temperature (default 0.8; 0 = greedy)");
  cli.opt_int("--top-k", &top_k, 0, 1 << 30, "K", "keep the K most likely tokens (default 40; 0 = all)");
  cli.opt_real("--top-p", &top_p, 0.0, true, 1.0, false, "P", "nucleus: smallest set with mass >= P, in (0, 1] (default 0.95)");
  cli.opt_int("--seed", &seed, 0, INT64_MAX, "S", "sampling seed (default 0)");
  cli.opt_choice("--precision", &precision_name, {"fp32", "fp16", "w8a8"},
                 "default: w8a8 with -q only, else fp32 on the CPU and fp16 on the GPU");
  cli.opt_choice("--backend", &backend_name, {"auto", "cpu", "gpu"}, "default auto: the GPU when there is one");
  cli.opt_int("--prefill-chunk", &chunk, 1, 1 << 24, "N", "tokens per internal prefill chunk (default 2048)");
  cli.flag("--ignore-eos", &ignore_eos, "do not stop at <|endoftext|>");
  if (const int r = cli.parse(argc, argv); r != Cli::kContinue) return r;
  const std::string& prog = cli.prog();
  if (model_dir.empty() && qpath.empty()) return fail_line(prog, kExitUsage, "give --model DIR or --quantized FILE (try --help)");
  if (cli.given("-p") || cli.given("--prompt")) {
    if (!prompt_file.empty()) return fail_line(prog, kExitUsage, "give either --prompt or --file, not both");
  } else if (prompt_file.empty()) {
    return fail_line(prog, kExitUsage, "missing --prompt TEXT or --file FILE (try --help)");
  }

  std::string err;
  BackendChoice choice;
  parse_backend(backend_name, &choice);
  model::Backend backend;
  if (resolve_backend(choice, &backend, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  model::Precision precision;
  if (!precision_name.empty()) parse_precision(precision_name, &precision);
  else if (model_dir.empty()) precision = model::Precision::kW8A8;
  else precision = backend == model::Backend::kGpu ? model::Precision::kFp16 : model::Precision::kFp32;
  if (const std::string why = unsupported_combination(backend, precision); !why.empty())
    return fail_line(prog, kExitUsage, "--precision " + std::string(model::to_string(precision)) + ": " + why);
  const bool w8a8 = precision == model::Precision::kW8A8;
  if (w8a8 && qpath.empty())
    return fail_line(prog, kExitUsage, "--precision w8a8 needs --quantized FILE (make one with quamba-quantize)");
  if (!w8a8 && model_dir.empty())
    return fail_line(prog, kExitUsage, std::string("--precision ") + model::to_string(precision) + " needs --model DIR");

  if (!prompt_file.empty() && read_text_file(prompt_file, &prompt, &err) != Status::kSuccess)
    return fail_line(prog, kExitError, err);
  if (prompt.empty()) return fail_line(prog, kExitError, "empty prompt");

  reference::ModelWeights fp;
  reference::QuantizedModel q;
  if (w8a8) {
    if (load_quantized_model(qpath, &q, nullptr, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  } else if (load_fp_model(model_dir, &fp, &err) != Status::kSuccess) {
    return fail_line(prog, kExitError, err);
  }
  const reference::ModelConfig cfg = w8a8 ? q.config : fp.config;
  io::BpeTokenizer tok;
  if (load_tokenizer(tokenizer_path, w8a8 && model_dir.empty() ? parent_dir(qpath) : model_dir, &tok, &err) !=
      Status::kSuccess)
    return fail_line(prog, kExitError, err);
  std::vector<int32_t> ids;
  if (tokenize(tok, prompt, cfg.vocab, &ids, &err, "prompt") != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (ids.empty()) return fail_line(prog, kExitError, "the prompt has no tokens");

  model::EngineOptions eo;
  eo.batch = 1;
  eo.prefill_chunk = chunk;
  std::unique_ptr<model::Engine> engine;
  if (make_engine(backend, precision, w8a8 ? nullptr : &fp, w8a8 ? &q : nullptr, eo, &engine, &err) != Status::kSuccess)
    return fail_line(prog, kExitError, "creating the engine: " + err);
  int32_t eos = -1;
  if (!ignore_eos && tok.token_to_id("<|endoftext|>", &eos) != Status::kSuccess) eos = -1;
  SamplerOptions so;
  so.greedy = greedy;
  so.temperature = temp;
  so.top_k = top_k;
  so.top_p = top_p;
  so.seed = static_cast<uint64_t>(seed);
  Sampler sampler(so);
  const std::vector<uint8_t> allowed = decodable_ids(tok, cfg.vocab);
  const int64_t n_vocab = static_cast<int64_t>(allowed.size());
  std::vector<float> logits(static_cast<size_t>(cfg.vocab));
  // Sampling fails on a NaN/Inf logit (an overflow: the weights are not sane) or when the
  // tokenizer has a token for none of the model's ids.
  auto broken = [&]() {
    for (int64_t v = 0; v < n_vocab; ++v)
      if (!std::isfinite(logits[static_cast<size_t>(v)]))
        return fail_line(prog, kExitError,
                         std::string("the model produced a non-finite logit (") +
                             (std::isnan(logits[static_cast<size_t>(v)]) ? "NaN" : "Inf") + ") for token id " +
                             std::to_string(v) + ": an overflow, are the weights sane?");
    return fail_line(prog, kExitError, "the tokenizer has a token for none of the model's ids (tokenizer and model do not match)");
  };

  // The prompt first, so that a model that cannot run fails before anything is printed.
  const auto t0 = std::chrono::steady_clock::now();
  Status s = engine->prefill(0, ids.data(), static_cast<int64_t>(ids.size()), logits.data(), false);
  if (s != Status::kSuccess) return fail_line(prog, kExitError, std::string("prefill failed: ") + to_string(s));
  const double t_prefill = seconds_since(t0);
  int32_t id = n_predict > 0 ? sampler.sample(logits.data(), n_vocab, allowed.data()) : 0;
  if (id < 0) return broken();
  std::fprintf(stderr, "%s: %s, %s, %lld layers, d_model %lld, vocab %lld; prompt %zu tokens\n", prog.c_str(),
               backend_note(backend).c_str(), model::to_string(precision), (long long)cfg.n_layer,
               (long long)cfg.d_model, (long long)cfg.vocab, ids.size());
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
  TextStreamer out(tok, stdout);
  const auto t1 = std::chrono::steady_clock::now();
  int64_t generated = 0;
  for (int64_t i = 0; i < n_predict; ++i) {
    if (i > 0 && (id = sampler.sample(logits.data(), n_vocab, allowed.data())) < 0) return broken();
    if (id == eos) break;
    ++generated;
    if (out.push(id, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
    if (i + 1 == n_predict) break;
    s = engine->decode(&id, logits.data());
    if (s != Status::kSuccess) return fail_line(prog, kExitError, std::string("decode failed: ") + to_string(s));
  }
  const double t_gen = seconds_since(t1);
  if (out.flush(&err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "prefill: %zu tokens in %.3f s (%.1f tokens/s)\n", ids.size(), t_prefill,
               static_cast<double>(ids.size()) / t_prefill);
  std::fprintf(stderr, "generate: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)generated, t_gen,
               generated > 0 ? static_cast<double>(generated) / t_gen : 0.0);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("quamba-generate", argc, argv, run); }
