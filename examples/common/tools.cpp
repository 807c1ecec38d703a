// examples/common/tools.cpp: see tools.hpp.
#include "tools.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "engine_factory.hpp"
#include "quamba/model/checkpoint.hpp"

namespace quamba::tools {

namespace fs = std::filesystem;

// ---- progress -------------------------------------------------------------------------------------

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), tty_(::isatty(2) == 1),
      start_(std::chrono::steady_clock::now()), last_(start_) {
  if (tty_) draw();
}

Progress::~Progress() {
  if (tty_ && !finished_) std::fputc('\n', stderr);
}

void Progress::update(int64_t done) {
  done_ = std::min(done, total_);
  if (!tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done_ < total_ && std::chrono::duration<double>(now - last_).count() < 0.1) return;
  last_ = now;
  draw();
}

void Progress::finish() {
  if (finished_) return;
  done_ = total_;
  if (tty_) {
    draw();
    std::fputc('\n', stderr);
    std::fflush(stderr);
  }
  finished_ = true;
}

void Progress::draw() {
  constexpr int kWidth = 30;
  const double f = static_cast<double>(done_) / static_cast<double>(total_);
  const int full = static_cast<int>(f * kWidth);
  std::string bar(static_cast<size_t>(full), '=');
  if (full < kWidth) bar += '>' + std::string(static_cast<size_t>(kWidth - full - 1), ' ');
  std::fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld %.1fs", label_.c_str(), bar.c_str(), static_cast<int>(f * 100.0),
               static_cast<long long>(done_), static_cast<long long>(total_), seconds_since(start_));
  std::fflush(stderr);
}

// ---- files ----------------------------------------------------------------------------------------

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string parent_dir(const std::string& path) {
  const fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

std::string join_path(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

Status check_output_path(const std::string& path, const char* what, std::string* err,
                         const std::vector<std::string>& inputs) {
  auto bad = [&](const std::string& why) {
    *err = std::string(what) + " '" + path + "': " + why;
    return Status::kErrorIo;
  };
  if (path.empty()) return bad("an empty path");
  if (is_directory(path) || path.back() == '/') return bad("is a directory, expected a file name");
  std::error_code ec;
  if (fs::exists(path, ec) && !is_file(path)) return bad("exists and is not a regular file");
  const std::string dir = parent_dir(path);
  if (!is_directory(dir)) return bad("directory '" + dir + "' does not exist");
  if (::access(dir.c_str(), W_OK) != 0) return bad("directory '" + dir + "' is not writable");
  if (is_file(path) && ::access(path.c_str(), W_OK) != 0) return bad("the file is not writable");
  if (is_file(path)) {
    for (const std::string& in : inputs) {
      if (in.empty()) continue;
      std::vector<std::string> files = {in};
      if (is_directory(in))
        files = {join_path(in, "config.json"), join_path(in, "model.safetensors"),
                 join_path(in, "model.safetensors.index.json"), join_path(in, "tokenizer.json")};
      for (const std::string& f : files)
        if (fs::equivalent(path, f, ec) && !ec) return bad("is an input of this run ('" + f + "'): writing it would destroy it");
    }
  }
  return Status::kSuccess;
}

Status read_text_file(const std::string& path, std::string* out, std::string* err) {
  if (is_directory(path)) {
    *err = "'" + path + "' is a directory, expected a text file";
    return Status::kErrorIo;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *err = "cannot open '" + path + "'";
    return Status::kErrorIo;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) {
    *err = "cannot read '" + path + "'";
    return Status::kErrorIo;
  }
  *out = ss.str();
  return Status::kSuccess;
}

// ---- models and tokenizers -------------------------------------------------------------------------

namespace {

// "tensor NAME has a non-finite value (...) at element I" for the first NaN/Inf of v, else "".
std::string non_finite(const std::vector<float>& v, const std::string& name) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      return "tensor " + name + " has a non-finite value (" + (std::isnan(v[i]) ? "NaN" : "Inf") + ") at element " +
             std::to_string(i) + "; the checkpoint is damaged";
  return "";
}

template <typename Model, typename LayerCheck>
std::string non_finite_model(const Model& m, LayerCheck&& layer) {
  std::string why = non_finite(m.embedding, "embedding");
  if (why.empty()) why = non_finite(m.norm_f, "norm_f");
  if (why.empty()) why = non_finite(m.lm_head, "lm_head");
  for (size_t i = 0; why.empty() && i < m.layers.size(); ++i) why = layer(m.layers[i], "layers." + std::to_string(i) + ".");
  return why;
}

}  // namespace

Status load_fp_model(const std::string& dir, reference::ModelWeights* out, std::string* err) {
  if (!is_directory(dir)) {
    *err = "model directory '" + dir + "' not found (expected config.json + model.safetensors)";
    return Status::kErrorIo;
  }
  std::string msg;
  const Status s = model::load_hf_model(dir, out, &msg);
  if (s != Status::kSuccess) {
    *err = "loading '" + dir + "': " + (msg.empty() ? to_string(s) : msg);
    return s;
  }
  const std::string why = non_finite_model(*out, [](const reference::LayerWeights& l, const std::string& p) {
    const std::pair<const std::vector<float>*, const char*> t[] = {
        {&l.norm_gamma, "norm"}, {&l.in_proj, "in_proj"}, {&l.conv_w, "conv1d.weight"}, {&l.conv_b, "conv1d.bias"},
        {&l.x_proj, "x_proj"},   {&l.dt_proj, "dt_proj"}, {&l.dt_bias, "dt_proj.bias"},  {&l.A_log, "A_log"},
        {&l.D, "D"},             {&l.out_proj, "out_proj"}};
    for (const auto& [v, name] : t)
      if (std::string w = non_finite(*v, p + name); !w.empty()) return w;
    return std::string();
  });
  if (!why.empty()) {
    *err = "loading '" + dir + "': " + why;
    return Status::kErrorFormat;
  }
  return Status::kSuccess;
}

Status load_quantized_model(const std::string& path, reference::QuantizedModel* out, double* percentile,
                            std::string* err) {
  if (!is_file(path)) {
    *err = "quantized checkpoint '" + path + "' not found";
    return Status::kErrorIo;
  }
  std::string msg;
  model::QuantizedCheckpointInfo info;
  const Status s = model::load_quantized(path, out, &msg, &info);
  if (s != Status::kSuccess) {
    *err = "loading '" + path + "': " + (msg.empty() ? to_string(s) : msg);
    return s;
  }
  // int8 tensors cannot be non-finite and the loader checks every scale; the fp tensors remain.
  const std::string why = non_finite_model(*out, [](const reference::LayerWeightsI8& l, const std::string& p) {
    return non_finite(l.norm_gamma, p + "norm");
  });
  if (!why.empty()) {
    *err = "loading '" + path + "': " + why;
    return Status::kErrorFormat;
  }
  if (percentile) *percentile = info.percentile;
  return Status::kSuccess;
}

Status load_tokenizer(const std::string& explicit_path, const std::string& dir, io::BpeTokenizer* out,
                      std::string* err) {
  const std::string path = explicit_path.empty() ? join_path(dir, "tokenizer.json") : explicit_path;
  if (!is_file(path)) {
    *err = "tokenizer '" + path + "' " + (is_directory(path) ? "is a directory, expected tokenizer.json" : "not found") +
           (explicit_path.empty() ? " (give one with --tokenizer)" : "");
    return Status::kErrorIo;
  }
  std::string msg;
  const Status s = out->load(path, &msg);
  if (s != Status::kSuccess) *err = "tokenizer '" + path + "': " + (msg.empty() ? to_string(s) : msg);
  return s;
}

Status tokenize(const io::BpeTokenizer& tok, const std::string& text, int64_t vocab, std::vector<int32_t>* ids,
                std::string* err, const char* what) {
  // A model pads its vocabulary by a few ids past the tokenizer's (50280 for 50277); a tokenizer
  // covering less than half of it belongs to another model, whose output would be noise.
  if (tok.vocab_size() * 2 < vocab) {
    *err = std::string(what) + ": the tokenizer has " + std::to_string(tok.vocab_size()) +
           " ids, less than half the model's vocabulary of " + std::to_string(vocab) + " (tokenizer and model do not match)";
    return Status::kErrorOutOfRange;
  }
  std::string msg;
  const Status s = tok.encode(text, ids, &msg);
  if (s != Status::kSuccess) {
    *err = std::string(what) + ": " + msg;
    return s;
  }
  for (size_t i = 0; i < ids->size(); ++i)
    if ((*ids)[i] < 0 || (*ids)[i] >= vocab) {
      *err = std::string(what) + ": token id " + std::to_string((*ids)[i]) + " (position " + std::to_string(i) +
             ") is outside the model's vocabulary of " + std::to_string(vocab) +
             " (tokenizer and model do not match)";
      return Status::kErrorOutOfRange;
    }
  return Status::kSuccess;
}

// ---- quantization ---------------------------------------------------------------------------------

bool parse_recipe(const std::string& s, reference::QuantRecipe* out) {
  using reference::UScale;
  if (s == "naive") *out = {false, UScale::kAbsmax};
  else if (s == "percentile") *out = {false, UScale::kPercentileEma};
  else if (s == "hadamard") *out = {true, UScale::kAbsmax};
  else if (s == "quamba") *out = {true, UScale::kPercentileEma};
  else return false;
  return true;
}

bool parse_u_scale(const std::string& s, reference::UScale* out) {
  if (s == "ema") *out = reference::UScale::kPercentileEma;
  else if (s == "exact") *out = reference::UScale::kPercentileExact;
  else if (s == "absmax") *out = reference::UScale::kAbsmax;
  else return false;
  return true;
}

const char* recipe_label(const reference::QuantRecipe& r) {
  const bool pct = r.u_scale != reference::UScale::kAbsmax;
  if (r.use_hadamard) return pct ? "Quamba (percentile + Hadamard)" : "+ Hadamard";
  return pct ? "+ percentile" : "naive W8A8";
}

std::vector<std::vector<int32_t>> calibration_windows(const std::vector<int32_t>& ids, int64_t samples, int64_t len) {
  std::vector<std::vector<int32_t>> out;
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n == 0 || samples <= 0 || len <= 0) return out;
  if (n <= len) {
    out.push_back(ids);
    return out;
  }
  const int64_t windows = std::min(samples, n / len);
  // Evenly spaced starts over [0, n - len].
  for (int64_t i = 0; i < windows; ++i) {
    const int64_t start = windows == 1 ? 0 : i * (n - len) / (windows - 1);
    out.emplace_back(ids.begin() + start, ids.begin() + start + len);
  }
  return out;
}

Status calibrate(const reference::ModelWeights& m, const std::vector<std::vector<int32_t>>& seqs, double percentile,
                 bool keep_u_values, reference::CalibrationStats* out, std::string* err, model::Backend backend) {
  if (seqs.empty()) {
    *err = "no calibration samples";
    return Status::kErrorInvalidArgument;
  }
  if (backend == model::Backend::kGpu && !keep_u_values) {
    Progress bar("calibrating (GPU)", 1);
    const Status s = calibrate_on_gpu(m, seqs, percentile, out, err);
    if (s == Status::kSuccess) bar.finish();
    return s;
  }
  // reference::calibrate, one sample at a time so that the progress bar moves.
  reference::CalibrationStats st;
  st.rotated_observed = reference::hadamard_size_supported(m.config.d_inner);
  st.percentile = percentile;
  st.layers.resize(static_cast<size_t>(m.config.n_layer));
  for (auto& l : st.layers) l.u_ema.alpha = percentile;
  int64_t total = 0;
  for (const auto& s : seqs) total += static_cast<int64_t>(s.size());
  // The exact quantile keeps every |u|: tokens x d_inner x layers floats.
  if (keep_u_values) {
    const double bytes = 4.0 * static_cast<double>(total) * static_cast<double>(m.config.d_inner) *
                         static_cast<double>(m.config.n_layer);
    if (const Status s = check_host_memory(bytes, "the exact u quantile of " + std::to_string(total) + " calibration tokens", err);
        s != Status::kSuccess)
      return s;
  }
  Progress bar("calibrating", total);
  int64_t done = 0;
  for (const auto& seq : seqs) {
    reference::ModelCacheF32 cache;
    Status s = reference::init_cache(m.config, 1, &cache);
    if (s == Status::kSuccess)
      s = reference::prefill(m, seq.data(), 1, static_cast<int64_t>(seq.size()), nullptr, &cache, {}, &st.layers);
    if (s != Status::kSuccess) {
      *err = std::string("calibration failed: ") + to_string(s);
      return s;
    }
    if (!keep_u_values)
      for (auto& l : st.layers) l.u_values.clear();
    ++st.samples;
    st.tokens += static_cast<int64_t>(seq.size());
    done += static_cast<int64_t>(seq.size());
    bar.update(done);
  }
  bar.finish();
  *out = std::move(st);
  return Status::kSuccess;
}

Status quantize(const reference::ModelWeights& m, const reference::CalibrationStats& st,
                const reference::QuantRecipe& recipe, reference::QuantizedModel* out, std::string* err) {
  reference::ModelScales scales;
  Status s = reference::scales_from_calibration(st, recipe, &scales);
  if (s == Status::kSuccess) s = reference::quantize_model(m, scales, recipe, out);
  if (s == Status::kErrorNotSupported && recipe.use_hadamard)
    *err = "d_inner = " + std::to_string(m.config.d_inner) +
           " has no supported Hadamard size (m*2^k, m in {1, 12, 20, 28}); use --recipe naive or percentile";
  else if (s != Status::kSuccess)
    *err = std::string("quantization failed: ") + to_string(s);
  return s;
}

// ---- perplexity -----------------------------------------------------------------------------------

double PerplexityResult::ppl() const { return tokens > 0 ? std::exp(nll / static_cast<double>(tokens)) : NAN; }

Status perplexity(model::Engine& e, const std::vector<int32_t>& ids, int64_t ctx, int64_t stride,
                  const std::string& label, PerplexityResult* out, std::string* err) {
  const int64_t n = static_cast<int64_t>(ids.size()), V = e.config().vocab;
  if (n < 2 || ctx < 2 || stride < 1 || stride > ctx) {
    *err = n < 2 ? "perplexity needs at least 2 tokens" : "perplexity: need ctx >= 2 and 1 <= stride <= ctx";
    return Status::kErrorInvalidArgument;
  }
  PerplexityResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits;
  int64_t windows = 0;
  for (int64_t b = 0;; b += stride) {
    ++windows;
    if (std::min(b + ctx, n) == n) break;
  }
  Progress bar(label, windows);
  int64_t prev_end = 0;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + ctx, n);
    const int64_t t0w = std::max(prev_end, begin + 1);  // first target of this window
    if (t0w < end) {
      Status s = e.reset_slot(0);
      // Context before the first target's predictor, without the lm_head ...
      if (s == Status::kSuccess && t0w - 1 > begin) s = e.prefill(0, ids.data() + begin, t0w - 1 - begin, nullptr, false);
      // ... then the positions that predict targets t0w..end-1, with all logits, at most
      // kScoreRows at a time (the slot's state carries over): a window of 100k tokens with a
      // 50k vocabulary would otherwise need 20 GB of logits.
      constexpr int64_t kScoreRows = 2048;
      const int64_t rows = end - t0w;
      logits.resize(static_cast<size_t>(std::min(rows, kScoreRows) * V));
      for (int64_t j0 = 0; j0 < rows && s == Status::kSuccess; j0 += kScoreRows) {
        const int64_t m = std::min(kScoreRows, rows - j0);
        s = e.prefill(0, ids.data() + t0w - 1 + j0, m, logits.data(), true);
        if (s != Status::kSuccess) break;
        for (int64_t j = 0; j < m; ++j) {
          const float* row = logits.data() + j * V;
          for (int64_t v = 0; v < V; ++v)
            if (!std::isfinite(row[v])) {
              *err = "perplexity: the model produced a non-finite logit (" + std::string(std::isnan(row[v]) ? "NaN" : "Inf") +
                     ") at token " + std::to_string(t0w - 1 + j0 + j) + " (overflow: are the weights sane?)";
              return Status::kErrorOutOfRange;
            }
          double mx = row[0];
          for (int64_t v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
          double sum = 0;
          for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
          r.nll += mx + std::log(sum) - static_cast<double>(row[ids[static_cast<size_t>(t0w + j0 + j)]]);
        }
      }
      if (s != Status::kSuccess) {
        *err = std::string("perplexity: the engine failed: ") + to_string(s);
        return s;
      }
      r.tokens += rows;
    }
    ++r.windows;
    bar.update(r.windows);
    prev_end = end;
    if (end == n) break;
  }
  bar.finish();
  r.seconds = seconds_since(t0);
  *out = r;
  return Status::kSuccess;
}

// ---- sampling -------------------------------------------------------------------------------------

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {}

int32_t Sampler::sample(const float* logits, int64_t n, const uint8_t* allowed) {
  if (n <= 0) return -1;
  for (int64_t v = 0; v < n; ++v)
    if (!std::isfinite(logits[v])) return -1;
  const auto ok = [allowed](int64_t v) { return allowed == nullptr || allowed[v] != 0; };
  if (o_.greedy || o_.temperature <= 0.0) {
    int64_t best = -1;
    for (int64_t v = 0; v < n; ++v)
      if (ok(v) && (best < 0 || logits[v] > logits[best])) best = v;
    return static_cast<int32_t>(best);
  }
  // Candidates ordered by logit (dividing by T > 0 keeps the order); each weighs
  // exp((l - l_max) / T) computed in double, which is 1 for the best and in [0, 1] for the others
  // whatever T is (dividing the float logits by a tiny T first would overflow to inf - inf = NaN).
  cand_.clear();
  for (int64_t v = 0; v < n; ++v)
    if (ok(v)) cand_.emplace_back(logits[v], static_cast<int32_t>(v));
  if (cand_.empty()) return -1;
  const auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t k = cand_.size();
  if (o_.top_k > 0 && static_cast<size_t>(o_.top_k) < k) k = static_cast<size_t>(o_.top_k);
  std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(k), cand_.end(), by_logit);
  cand_.resize(k);
  std::vector<double> p(k);
  double sum = 0;
  for (size_t i = 0; i < k; ++i)
    sum += (p[i] = std::exp((static_cast<double>(cand_[i].first) - static_cast<double>(cand_[0].first)) / o_.temperature));
  double cum = 0;
  size_t keep = 0;
  while (keep < k) {
    cum += p[keep++] / sum;
    if (cum >= o_.top_p) break;
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += p[i];
  // A uniform draw in [0, kept) from 53 random bits (the same sequence on every platform).
  const double u = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0) * kept;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (u < acc) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

Status TextStreamer::push(int32_t id, std::string* err) {
  pending_.push_back(id);
  return emit(false, err);
}

Status TextStreamer::flush(std::string* err) { return emit(true, err); }

Status TextStreamer::emit(bool final, std::string* err) {
  std::string text, msg;
  const Status s = tok_.decode(pending_, &text, &msg);
  if (s != Status::kSuccess) {
    *err = "decoding the output: " + msg;
    return s;
  }
  static const std::string kReplacement = "\xEF\xBF\xBD";
  size_t keep = text.size();
  if (!final && pending_.size() < kMaxPending)
    while (keep >= 3 && text.compare(keep - 3, 3, kReplacement) == 0) keep -= 3;
  // What is new: text[shown_.size(), keep), when the text still starts with what was shown (a
  // completed character may replace replacement characters that were never printed).
  if (keep > shown_.size() && text.compare(0, shown_.size(), shown_) == 0) {
    std::fwrite(text.data() + shown_.size(), 1, keep - shown_.size(), out_);
    std::fflush(out_);
    printed_.append(text, shown_.size(), keep - shown_.size());
    shown_.assign(text, 0, keep);
  }
  if (keep == text.size()) {  // every pending id printed in full: a clean boundary
    pending_.clear();
    shown_.clear();
  }
  return Status::kSuccess;
}

int64_t decodable_vocab(const io::BpeTokenizer& tok, int64_t model_vocab) {
  return std::min<int64_t>(model_vocab, tok.vocab_size());
}

std::vector<uint8_t> decodable_ids(const io::BpeTokenizer& tok, int64_t model_vocab) {
  std::vector<uint8_t> ok(static_cast<size_t>(std::max<int64_t>(decodable_vocab(tok, model_vocab), 0)), 0);
  std::string t;
  for (size_t v = 0; v < ok.size(); ++v) ok[v] = tok.id_to_token(static_cast<int32_t>(v), &t) == Status::kSuccess;
  return ok;
}

// ---- formatting -----------------------------------------------------------------------------------

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

bool write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  return f.good();
}

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      o += buf;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

Status check_host_memory(double bytes, const std::string& what, std::string* err) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return Status::kSuccess;
  const double total = static_cast<double>(pages) * static_cast<double>(page);
  if (!(bytes <= 0.8 * total)) {
    *err = what + " needs " + human_bytes(bytes) + " of host memory, more than this machine's " + human_bytes(total) +
           " allows";
    return Status::kErrorOutOfRange;
  }
  return Status::kSuccess;
}

int64_t peak_rss_bytes() {
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

std::string backend_note(model::Backend b) {
  if (b == model::Backend::kGpu) return "GPU engines on " + gpu_name();
  if (!built_with_gpu()) return "CPU reference path (this build has no GPU engines)";
  if (!gpu_available()) return "CPU reference path (no CUDA device found)";
  return "CPU reference path";
}

}  // namespace quamba::tools
