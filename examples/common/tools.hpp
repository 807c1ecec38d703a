// examples/common/tools.hpp: what the quamba tools share besides the command line and the engine
// factory: loading models, tokenizers and text; calibration and quantization with a progress bar;
// perplexity over windows; sampling; Markdown/JSON helpers. Every fallible function returns a
// Status and, on failure, a one-line message in *err (the tools print it and exit 1).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "quamba/core/status.hpp"
#include "quamba/io/tokenizer.hpp"
#include "quamba/model/engine.hpp"
#include "quamba/reference/model.hpp"

namespace quamba::tools {

// ---- progress bar (stderr, only when stderr is a terminal) ------------------------------------

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();
  void update(int64_t done);  // redraws at most ~10 times a second
  void finish();              // draws 100% and ends the line
 private:
  std::string label_;
  int64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
  void draw();
};

// ---- files --------------------------------------------------------------------------------------

// Whole file as bytes; a missing file, a directory or a read error gives kErrorIo.
Status read_text_file(const std::string& path, std::string* out, std::string* err);
bool is_directory(const std::string& path);
// Whether `path` can be written as an output file, checked before any long work: not a
// directory, its directory exists and is writable, and it is none of the `inputs` (files, or
// model directories whose config.json / model.safetensors / index / tokenizer.json count), which
// writing it would destroy. kErrorIo with "<what> '<path>': why" in *err.
Status check_output_path(const std::string& path, const char* what, std::string* err,
                         const std::vector<std::string>& inputs = {});
bool is_file(const std::string& path);
std::string parent_dir(const std::string& path);
std::string join_path(const std::string& dir, const std::string& name);

// ---- models and tokenizers ---------------------------------------------------------------------

// Both loaders also refuse a model with a NaN or infinite fp weight (kErrorFormat): nothing it
// computes would mean anything.
Status load_fp_model(const std::string& dir, reference::ModelWeights* out, std::string* err);
Status load_quantized_model(const std::string& path, reference::QuantizedModel* out, double* percentile,
                            std::string* err);
// explicit_path if given, else <dir>/tokenizer.json.
Status load_tokenizer(const std::string& explicit_path, const std::string& dir, io::BpeTokenizer* out,
                      std::string* err);
// Encodes `text` and checks every id against the model's vocabulary (kErrorOutOfRange), and that
// the tokenizer covers at least half of that vocabulary (else it is another model's).
Status tokenize(const io::BpeTokenizer& tok, const std::string& text, int64_t vocab, std::vector<int32_t>* ids,
                std::string* err, const char* what);

// ---- quantization -------------------------------------------------------------------------------

// naive | percentile | hadamard | quamba
bool parse_recipe(const std::string& s, reference::QuantRecipe* out);
// ema | exact | absmax
bool parse_u_scale(const std::string& s, reference::UScale* out);
const char* recipe_label(const reference::QuantRecipe& r);  // "naive W8A8", "+ percentile", ...

// `samples` windows of `len` tokens spread evenly over `ids` (fewer if the text is short; the
// whole text as one sample when it is shorter than `len`).
std::vector<std::vector<int32_t>> calibration_windows(const std::vector<int32_t>& ids, int64_t samples, int64_t len);

// reference::calibrate, one sample at a time with a progress bar; with backend == kGpu (and
// !keep_u_values) the fp16 GPU forward with the GPU observers instead (calibrate_on_gpu).
Status calibrate(const reference::ModelWeights& m, const std::vector<std::vector<int32_t>>& seqs, double percentile,
                 bool keep_u_values, reference::CalibrationStats* out, std::string* err,
                 model::Backend backend = model::Backend::kCpu);
// scales_from_calibration + quantize_model with messages.
Status quantize(const reference::ModelWeights& m, const reference::CalibrationStats& st,
                const reference::QuantRecipe& recipe, reference::QuantizedModel* out, std::string* err);

// ---- perplexity -----------------------------------------------------------------------------------

struct PerplexityResult {
  double nll = 0;       // sum of -log p(target)
  int64_t tokens = 0;   // targets scored
  int64_t windows = 0;
  double seconds = 0;
  double ppl() const;
};

// Windows ids[begin, begin + ctx) with begin = 0, stride, 2·stride, ...; each window is prefilled
// from a fresh slot 0 and scores the targets not scored by an earlier window (stride == ctx:
// non-overlapping windows, every target but the first token of each window). stride <= ctx.
// A NaN or infinite logit (an overflow in the model) is kErrorOutOfRange with a message, never a
// NaN perplexity.
Status perplexity(model::Engine& e, const std::vector<int32_t>& ids, int64_t ctx, int64_t stride,
                  const std::string& label, PerplexityResult* out, std::string* err);

// ---- sampling -------------------------------------------------------------------------------------

struct SamplerOptions {
  bool greedy = false;
  double temperature = 0.8;
  int64_t top_k = 40;  // 0: all
  double top_p = 0.95;  // (0, 1]
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  // A token id in [0, n) from logits[0:n] (n = the ids the tokenizer can decode), skipping the
  // ids v with allowed[v] == 0 when `allowed` (n entries) is given. -1 when a logit in [0, n) is
  // NaN or infinite (a broken model: the caller reports it) or no id is allowed.
  // Probabilities are exp((l - l_max) / T) in double, so any T > 0 works (a tiny T is greedy).
  int32_t sample(const float* logits, int64_t n, const uint8_t* allowed = nullptr);

 private:
  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

// Streams the text of a growing list of ids: each call prints what is new since the last, holding
// back a trailing incomplete UTF-8 character (decoded as U+FFFD) until the next token completes it.
// Only the ids since the last complete character are decoded again (at most kMaxPending of them:
// past that the replacement characters are printed), so a long generation stays linear.
class TextStreamer {
 public:
  explicit TextStreamer(const io::BpeTokenizer& tok, std::FILE* out) : tok_(tok), out_(out) {}
  Status push(int32_t id, std::string* err);
  Status flush(std::string* err);
  const std::string& text() const { return printed_; }

 private:
  static constexpr size_t kMaxPending = 16;
  Status emit(bool final, std::string* err);
  const io::BpeTokenizer& tok_;
  std::FILE* out_;
  std::vector<int32_t> pending_;  // ids not yet printed in full
  std::string shown_;             // the part of pending_'s text already printed
  std::string printed_;
};

// Number of leading ids the tokenizer can decode (ids past it are masked when sampling).
int64_t decodable_vocab(const io::BpeTokenizer& tok, int64_t model_vocab);
// One entry per id in [0, decodable_vocab): 1 when the tokenizer has a token for it (a
// tokenizer.json may leave holes in its ids; sampling skips them).
std::vector<uint8_t> decodable_ids(const io::BpeTokenizer& tok, int64_t model_vocab);

// ---- formatting -----------------------------------------------------------------------------------

double seconds_since(std::chrono::steady_clock::time_point t0);
std::string human_bytes(double bytes);
std::string fmt(const char* f, double v);  // snprintf of one number
std::string json_string(const std::string& s);
// Writes `text` to `path` (replacing it); false when the file cannot be written.
bool write_text_file(const std::string& path, const std::string& text);
// kErrorOutOfRange with "<what> needs X of host memory, more than this machine's Y" when `bytes`
// exceed 80% of the physical memory (sysconf), so that absurd sizes fail with a message instead
// of the OOM killer; success when the physical memory is unknown.
Status check_host_memory(double bytes, const std::string& what, std::string* err);
// Peak resident set size of this process in bytes (Linux getrusage), or -1.
int64_t peak_rss_bytes();
// "CPU reference path (no GPU in this build)" and similar, for the header line of each tool.
std::string backend_note(model::Backend b);

}  // namespace quamba::tools
