// quamba-bench: time to first token (TTFT), time per output token (TPOT) and memory of whole-
// model engines, for a list of prompt lengths and batch sizes, as a Markdown table and JSON.
//
// For each engine, batch B and prompt length P: reset(B); prefill a random prompt of P tokens into
// every slot (TTFT = the first slot's prefill, last-token logits included; prefill tokens/s over
// all slots); then N decode steps for the whole batch with logits (TPOT = mean step time; decode
// tokens/s = B / TPOT). The median over --reps repetitions is reported. Memory: the engine's
// weight bytes read per token, the state (conv + ssm caches) of B slots, and the process's peak
// RSS (CPU) or the device bytes the engine holds: weights + caches + workspace (GPU).
// Engines: cpu-fp32, cpu-w8a8, gpu-fp16, gpu-w8a8. A w8a8 engine needs -q FILE or is quantized
// from -m DIR with the Quamba recipe, calibrated on --calib TEXT or on random tokens (timings do
// not depend on the values of the scales).
//
//   quamba-bench -m DIR [--engines cpu-fp32,cpu-w8a8] [-p 32,128] [-b 1,4] [-n 16] [--json out.json]
#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/engine_factory.hpp"
#include "common/tools.hpp"

using namespace quamba;
using namespace quamba::tools;

namespace {

struct Row {
  std::string engine;
  int64_t batch = 0, prompt = 0, steps = 0;
  double ttft_ms = 0, prefill_tps = 0, tpot_ms = 0, decode_tps = 0;
  int64_t weight_bytes = 0, state_bytes = 0, mem_bytes = -1;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int64_t state_bytes(const reference::ModelConfig& c, int64_t B, model::Precision p) {
  const int64_t conv_elt = p == model::Precision::kW8A8 ? 1 : p == model::Precision::kFp16 ? 2 : 4;
  return B * c.n_layer * c.d_inner * (c.d_conv * conv_elt + c.d_state * 4);
}

int run(int argc, char** argv) {
  std::string model_dir, qpath, engines_s, json_path, calib_path, tokenizer_path;
  std::vector<int64_t> prompts, batches;
  int64_t steps = 0, reps = 0, chunk = 2048, seed = 0;
  Cli cli("quamba-bench", "(-m DIR | -q FILE) [--engines LIST] [-p LIST] [-b LIST] [-n N] [--json FILE]",
          "TTFT / TPOT / memory of whole-model engines, as a Markdown table (and JSON).");
  cli.opt("-m,--model", &model_dir, "DIR", "fp checkpoint directory");
  cli.opt("-q,--quantized", &qpath, "FILE", "quamba-w8a8 checkpoint (for the w8a8 engines)");
  cli.opt("--engines", &engines_s, "LIST",
          "comma-separated: cpu-fp32, cpu-w8a8, gpu-fp16, gpu-w8a8 (default: the GPU ones with a GPU, else the CPU ones)");
  cli.opt_int_list("-p,--prompt", &prompts, 1, 1 << 24, "LIST", "prompt lengths (default 32,128 on CPU; 128,512,2048 on GPU)");
  cli.opt_int_list("-b,--batch", &batches, 1, 4096, "LIST", "batch sizes (default 1,4 on CPU; 1,8,32 on GPU)");
  cli.opt_int("-n,--n-decode", &steps, 1, 1 << 20, "N", "decode steps per run (default 8 on CPU, 64 on GPU)");
  cli.opt_int("--reps", &reps, 1, 1000, "R", "repetitions, median reported (default 1 on CPU, 5 on GPU)");
  cli.opt_int("--prefill-chunk", &chunk, 1, 1 << 24, "N", "tokens per internal prefill chunk (default 2048)");
  cli.opt("--calib", &calib_path, "TEXT", "calibration text when quantizing from -m (default: random tokens)");
  cli.opt("--tokenizer", &tokenizer_path, "FILE", "tokenizer.json for --calib (default: DIR/tokenizer.json)");
  cli.opt_int("--seed", &seed, 0, INT64_MAX, "S", "seed of the random prompts (default 0)");
  cli.opt("--json", &json_path, "FILE", "also write the rows as JSON");
  if (const int r = cli.parse(argc, argv); r != Cli::kContinue) return r;
  const std::string& prog = cli.prog();
  if (model_dir.empty() && qpath.empty()) return fail_line(prog, kExitUsage, "give --model DIR and/or --quantized FILE (try --help)");
  if (std::string why; !json_path.empty() &&
                       check_output_path(json_path, "--json", &why, {model_dir, qpath, calib_path, tokenizer_path}) !=
                           Status::kSuccess)
    return fail_line(prog, kExitError, why);

  const bool gpu = gpu_available();
  if (engines_s.empty()) engines_s = gpu ? "gpu-fp16,gpu-w8a8" : "cpu-fp32,cpu-w8a8";
  struct EngineSpec {
    std::string name;
    model::Backend backend;
    model::Precision precision;
  };
  std::vector<EngineSpec> specs;
  bool any_gpu = false, any_w8a8 = false;
  std::string err;
  for (const auto& name : split_list(engines_s)) {
    const size_t dash = name.find('-');
    BackendChoice bc;
    model::Precision p;
    if (dash == std::string::npos || !parse_backend(name.substr(0, dash), &bc) || bc == BackendChoice::kAuto ||
        !parse_precision(name.substr(dash + 1), &p))
      return fail_line(prog, kExitUsage, "--engines: unknown engine '" + name + "' (cpu-fp32, cpu-w8a8, gpu-fp16, gpu-w8a8)");
    model::Backend b;
    if (resolve_backend(bc, &b, &err) != Status::kSuccess) return fail_line(prog, kExitError, "engine " + name + ": " + err);
    if (const std::string why = unsupported_combination(b, p); !why.empty())
      return fail_line(prog, kExitUsage, "engine " + name + ": " + why);
    if (p != model::Precision::kW8A8 && model_dir.empty())
      return fail_line(prog, kExitUsage, "engine " + name + " needs --model DIR");
    any_gpu |= b == model::Backend::kGpu;
    any_w8a8 |= p == model::Precision::kW8A8;
    specs.push_back({name, b, p});
  }
  if (prompts.empty()) prompts = any_gpu ? std::vector<int64_t>{128, 512, 2048} : std::vector<int64_t>{32, 128};
  if (batches.empty()) batches = any_gpu ? std::vector<int64_t>{1, 8, 32} : std::vector<int64_t>{1, 4};
  if (steps == 0) steps = any_gpu ? 64 : 8;
  if (reps == 0) reps = any_gpu ? 5 : 1;

  reference::ModelWeights fp;
  reference::QuantizedModel q;
  if (!model_dir.empty() && load_fp_model(model_dir, &fp, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  if (!qpath.empty() && load_quantized_model(qpath, &q, nullptr, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
  const reference::ModelConfig cfg = model_dir.empty() ? q.config : fp.config;
  // The random prompts of a run (B x P ids) and its logits are held at once, next to the CPU
  // engines' caches: refuse sizes that cannot fit before allocating them.
  for (int64_t B : batches)
    for (int64_t P : prompts) {
      const double bytes = 4.0 * static_cast<double>(B) * static_cast<double>(P) +
                           4.0 * static_cast<double>(B) * static_cast<double>(cfg.vocab) +
                           static_cast<double>(state_bytes(cfg, B, model::Precision::kFp32));
      if (check_host_memory(bytes, "-b " + std::to_string(B) + " -p " + std::to_string(P), &err) != Status::kSuccess)
        return fail_line(prog, kExitError, err);
    }
  std::printf("%s: %s; model %s: %lld layers, d_model %lld, d_inner %lld, vocab %lld\n", prog.c_str(),
              any_gpu ? backend_note(model::Backend::kGpu).c_str() : backend_note(model::Backend::kCpu).c_str(),
              model_dir.empty() ? qpath.c_str() : model_dir.c_str(), (long long)cfg.n_layer, (long long)cfg.d_model,
              (long long)cfg.d_inner, (long long)cfg.vocab);
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  auto random_ids = [&](int64_t n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(cfg.vocab));
    return v;
  };
  if (any_w8a8 && qpath.empty()) {
    std::vector<std::vector<int32_t>> seqs;
    if (!calib_path.empty()) {
      io::BpeTokenizer tok;
      std::string text;
      std::vector<int32_t> ids;
      if (load_tokenizer(tokenizer_path, model_dir, &tok, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
      if (read_text_file(calib_path, &text, &err) != Status::kSuccess) return fail_line(prog, kExitError, err);
      if (tokenize(tok, text, cfg.vocab, &ids, &err, calib_path.c_str()) != Status::kSuccess) return fail_line(prog, kExitError, err);
      if (ids.empty()) return fail_line(prog, kExitError, "calibration text '" + calib_path + "' is empty");
      seqs = calibration_windows(ids, 4, 128);
    } else {
      for (int i = 0; i < 2; ++i) seqs.push_back(random_ids(64));
    }
    reference::CalibrationStats st;
    reference::QuantRecipe recipe = reference::recipe_quamba();
    if (!reference::hadamard_size_supported(cfg.d_inner)) recipe.use_hadamard = false;
    if (calibrate(fp, seqs, 0.99999, false, &st, &err, any_gpu ? model::Backend::kGpu : model::Backend::kCpu) != Status::kSuccess || quantize(fp, st, recipe, &q, &err) != Status::kSuccess)
      return fail_line(prog, kExitError, err);
    std::printf("w8a8: quantized on the spot (%s recipe, calibrated on %s)\n", recipe.use_hadamard ? "Quamba" : "percentile",
                calib_path.empty() ? "random tokens" : calib_path.c_str());
  }
  std::printf("decode steps %lld, repetitions %lld (median)\n", (long long)steps, (long long)reps);
  std::fflush(stdout);

  std::vector<Row> rows;
  int64_t total_runs = static_cast<int64_t>(specs.size() * batches.size() * prompts.size()) * reps, runs = 0;
  Progress bar("benchmarking", total_runs);
  for (const auto& sp : specs) {
    model::EngineOptions eo;
    eo.batch = batches[0];
    eo.prefill_chunk = chunk;
    std::unique_ptr<model::Engine> e;
    const bool w8a8 = sp.precision == model::Precision::kW8A8;
    if (make_engine(sp.backend, sp.precision, w8a8 ? nullptr : &fp, w8a8 ? &q : nullptr, eo, &e, &err) != Status::kSuccess)
      return fail_line(prog, kExitError, "engine " + sp.name + ": " + err);
    std::vector<float> logits;
    for (int64_t B : batches) {
      for (int64_t P : prompts) {
        std::vector<double> ttft, prefill_all, tpot;
        for (int64_t r = 0; r < reps; ++r) {
          Status s = e->reset(B);
          if (s != Status::kSuccess) return fail_line(prog, kExitError, "engine " + sp.name + ": reset failed: " + to_string(s));
          logits.assign(static_cast<size_t>(B * cfg.vocab), 0.0f);
          std::vector<std::vector<int32_t>> prompt_ids;
          for (int64_t b = 0; b < B; ++b) prompt_ids.push_back(random_ids(P));
          const auto t0 = std::chrono::steady_clock::now();
          for (int64_t b = 0; b < B && s == Status::kSuccess; ++b) {
            s = e->prefill(b, prompt_ids[static_cast<size_t>(b)].data(), P, logits.data(), false);
            if (b == 0) ttft.push_back(seconds_since(t0));
          }
          prefill_all.push_back(seconds_since(t0));
          if (s != Status::kSuccess) return fail_line(prog, kExitError, "engine " + sp.name + ": prefill failed: " + to_string(s));
          auto ids = random_ids(B);
          s = e->decode(ids.data(), logits.data());  // warm-up step
          const auto t1 = std::chrono::steady_clock::now();
          for (int64_t i = 0; i < steps && s == Status::kSuccess; ++i) {
            ids = random_ids(B);
            s = e->decode(ids.data(), logits.data());
          }
          tpot.push_back(seconds_since(t1) / static_cast<double>(steps));
          if (s != Status::kSuccess) return fail_line(prog, kExitError, "engine " + sp.name + ": decode failed: " + to_string(s));
          bar.update(++runs);
        }
        Row row;
        row.engine = sp.name;
        row.batch = B;
        row.prompt = P;
        row.steps = steps;
        row.ttft_ms = median(ttft) * 1e3;
        row.prefill_tps = static_cast<double>(B * P) / median(prefill_all);
        row.tpot_ms = median(tpot) * 1e3;
        row.decode_tps = static_cast<double>(B) / median(tpot);
        row.weight_bytes = e->weight_bytes();
        row.state_bytes = state_bytes(cfg, B, sp.precision);
        row.mem_bytes = peak_rss_bytes();
        if (sp.backend == model::Backend::kGpu) {
          row.mem_bytes = engine_device_bytes(*e);
          if (row.mem_bytes < 0) row.mem_bytes = gpu_memory_in_use();
        }
        rows.push_back(row);
      }
    }
  }
  bar.finish();

  std::printf("\n| engine | batch | prompt | TTFT (ms) | prefill tok/s | TPOT (ms) | decode tok/s | weights | state | memory |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows)
    std::printf("| %s | %lld | %lld | %.2f | %.1f | %.3f | %.1f | %s | %s | %s |\n", r.engine.c_str(), (long long)r.batch,
                (long long)r.prompt, r.ttft_ms, r.prefill_tps, r.tpot_ms, r.decode_tps,
                human_bytes(static_cast<double>(r.weight_bytes)).c_str(),
                human_bytes(static_cast<double>(r.state_bytes)).c_str(),
                r.mem_bytes < 0 ? "n/a" : (human_bytes(static_cast<double>(r.mem_bytes)) +
                                           (r.engine.compare(0, 3, "gpu") == 0 ? " (engine, device)" : " (peak RSS)")).c_str());
  if (!any_gpu) std::printf("\nCPU engines run the scalar fp32/int32 host reference (one thread): a correctness path, not a fast one.\n");
  if (!json_path.empty()) {
    std::string j = "{\n  \"device\": " + json_string(any_gpu ? gpu_name() : "cpu") + ",\n  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      j += "    {\"engine\": " + json_string(r.engine) + ", \"batch\": " + std::to_string(r.batch) +
           ", \"prompt\": " + std::to_string(r.prompt) + ", \"decode_steps\": " + std::to_string(r.steps) +
           ", \"ttft_ms\": " + fmt("%.4f", r.ttft_ms) + ", \"prefill_tokens_per_s\": " + fmt("%.2f", r.prefill_tps) +
           ", \"tpot_ms\": " + fmt("%.4f", r.tpot_ms) + ", \"decode_tokens_per_s\": " + fmt("%.2f", r.decode_tps) +
           ", \"weight_bytes\": " + std::to_string(r.weight_bytes) + ", \"state_bytes\": " + std::to_string(r.state_bytes) +
           ", \"memory_bytes\": " + std::to_string(r.mem_bytes) + "}" + (i + 1 < rows.size() ? ",\n" : "\n");
    }
    j += "  ]\n}\n";
    if (!write_text_file(json_path, j)) return fail_line(prog, kExitError, "cannot write '" + json_path + "'");
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("quamba-bench", argc, argv, run); }
