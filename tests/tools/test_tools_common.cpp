// Host tests of what the tools share (examples/common/tools.hpp) that the tool runs cannot pin
// down: the sampler at extreme temperatures, with non-finite logits and with ids the tokenizer
// cannot decode; perplexity() on an engine that produces non-finite logits; output path checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/tools.hpp"

namespace {

using namespace quamba;
using quamba::tools::Sampler;
using quamba::tools::SamplerOptions;

// Logits with a unique maximum at `best`, spread over a few units as a real model's are.
std::vector<float> make_logits(int64_t n, int64_t best) {
  std::vector<float> l(static_cast<size_t>(n));
  for (int64_t v = 0; v < n; ++v) l[static_cast<size_t>(v)] = static_cast<float>(std::sin(0.7 * static_cast<double>(v)) * 3.0);
  l[static_cast<size_t>(best)] = 10.0f;
  return l;
}

TEST(Sampler, TinyTemperatureIsGreedy) {
  // logit / T overflowed to inf for T ~ 1e-40 and inf - inf made every weight NaN: the sampler
  // then returned the LEAST likely of the candidates.
  const auto logits = make_logits(272, 123);
  for (const double t : {1e-40, 1e-300, 1e-6}) {
    for (const int64_t top_k : {int64_t{0}, int64_t{40}}) {
      for (uint64_t seed = 0; seed < 8; ++seed) {
        SamplerOptions o;
        o.temperature = t;
        o.top_k = top_k;
        o.top_p = 0.95;
        o.seed = seed;
        Sampler s(o);
        EXPECT_EQ(s.sample(logits.data(), 272), 123) << "T " << t << " top-k " << top_k << " seed " << seed;
      }
    }
  }
}

TEST(Sampler, HighTemperatureStaysInRange) {
  const auto logits = make_logits(300, 7);
  SamplerOptions o;
  o.temperature = 100.0;
  o.top_k = 0;
  o.top_p = 1.0;
  Sampler s(o);
  for (int i = 0; i < 2000; ++i) {
    const int32_t id = s.sample(logits.data(), 300);
    ASSERT_GE(id, 0);
    ASSERT_LT(id, 300);
  }
}

TEST(Sampler, NonFiniteLogitsAreReported) {
  for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    auto logits = make_logits(64, 3);
    logits[17] = bad;
    for (const bool greedy : {true, false}) {
      SamplerOptions o;
      o.greedy = greedy;
      Sampler s(o);
      EXPECT_EQ(s.sample(logits.data(), 64), -1) << "logit " << bad << (greedy ? " greedy" : " sampled");
    }
  }
}

TEST(Sampler, SkipsIdsTheTokenizerCannotDecode) {
  const int64_t n = 50;
  const auto logits = make_logits(n, 20);
  std::vector<uint8_t> allowed(static_cast<size_t>(n), 1);
  for (int64_t v = 15; v < 30; ++v) allowed[static_cast<size_t>(v)] = 0;  // the best id is a hole
  SamplerOptions g;
  g.greedy = true;
  Sampler greedy(g);
  const int32_t id = greedy.sample(logits.data(), n, allowed.data());
  ASSERT_GE(id, 0);
  EXPECT_TRUE(allowed[static_cast<size_t>(id)]) << id;
  SamplerOptions o;
  o.temperature = 50.0;
  o.top_k = 0;
  o.top_p = 1.0;
  Sampler hot(o);
  for (int i = 0; i < 2000; ++i) {
    const int32_t v = hot.sample(logits.data(), n, allowed.data());
    ASSERT_GE(v, 0);
    ASSERT_LT(v, n);
    ASSERT_TRUE(allowed[static_cast<size_t>(v)]) << "sampled the hole " << v;
  }
  std::vector<uint8_t> none(static_cast<size_t>(n), 0);
  EXPECT_EQ(hot.sample(logits.data(), n, none.data()), -1);
  EXPECT_EQ(greedy.sample(logits.data(), n, none.data()), -1);
}

// A byte-level tokenizer.json without merges: id b is byte b (GPT-2's byte -> code point map).
std::string bytes_tokenizer_json() {
  std::string vocab;
  unsigned extra = 0;
  for (unsigned b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const unsigned cp = printable ? b : 256 + extra++;
    char buf[16];
    std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
    vocab += std::string(b ? "," : "") + "\"" + buf + "\":" + std::to_string(b);
  }
  return "{\"model\":{\"type\":\"BPE\",\"vocab\":{" + vocab +
         "},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
         "\"decoder\":{\"type\":\"ByteLevel\"}}";
}

std::string stream(const io::BpeTokenizer& tok, const std::vector<int32_t>& ids, std::vector<std::string>* steps) {
  std::FILE* f = std::tmpfile();
  EXPECT_NE(f, nullptr);
  tools::TextStreamer out(tok, f);
  std::string err;
  for (const int32_t id : ids) {
    EXPECT_EQ(out.push(id, &err), Status::kSuccess) << err;
    if (steps) steps->push_back(out.text());
  }
  EXPECT_EQ(out.flush(&err), Status::kSuccess) << err;
  std::string written(static_cast<size_t>(std::ftell(f)), '\0');
  std::rewind(f);
  EXPECT_EQ(std::fread(written.data(), 1, written.size(), f), written.size());
  std::fclose(f);
  EXPECT_EQ(written, out.text());
  return written;
}

TEST(TextStreamer, StreamsWhatTheWholeDecodeGives) {
  io::BpeTokenizer tok;
  std::string err;
  ASSERT_EQ(tok.load_from_string(bytes_tokenizer_json(), &err), Status::kSuccess) << err;
  // Multi-byte characters arrive one byte (token) at a time and are held back until complete.
  const std::string text = "The jury \xC3\xA9t\xC3\xA9 \xE2\x82\xAC 5 \xF0\x9F\x98\x80!\n";
  std::vector<int32_t> ids;
  for (const unsigned char c : text) ids.push_back(c);
  std::vector<std::string> steps;
  EXPECT_EQ(stream(tok, ids, &steps), text);
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(text.compare(0, steps[i].size(), steps[i]), 0) << "step " << i << " printed something else";
    EXPECT_EQ(steps[i].find("\xEF\xBF\xBD"), std::string::npos) << "step " << i << " printed a replacement character";
  }
  // Ill-formed bytes in the stream: the same U+FFFDs as decoding the whole list at once.
  std::vector<int32_t> bad = {'a', 0xE2, 0x82, 'b', 0xFF, 'c', 0xF0, 0x9F, 0x98, 0x80, 0xC3};
  std::string whole;
  ASSERT_EQ(tok.decode(bad, &whole, &err), Status::kSuccess) << err;
  EXPECT_EQ(stream(tok, bad, nullptr), whole);
}

TEST(TextStreamer, LongStreamsStayLinear) {
  // Each push used to decode every id so far: 200k tokens took minutes.
  io::BpeTokenizer tok;
  std::string err;
  ASSERT_EQ(tok.load_from_string(bytes_tokenizer_json(), &err), Status::kSuccess) << err;
  std::vector<int32_t> ids;
  const std::string word = "jury \xC3\xA9 ";
  while (ids.size() < 200000)
    for (const unsigned char c : word) ids.push_back(c);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out = stream(tok, ids, nullptr);
  EXPECT_EQ(out.size(), ids.size());
  EXPECT_LT(tools::seconds_since(t0), 10.0);
}

// An engine whose logits are all `value` (NaN or Inf: an overflowing model).
class ConstantEngine final : public model::Engine {
 public:
  explicit ConstantEngine(float value) : value_(value) {
    cfg_.vocab = 16;
    cfg_.d_model = 4;
  }
  const reference::ModelConfig& config() const override { return cfg_; }
  model::Backend backend() const override { return model::Backend::kCpu; }
  model::Precision precision() const override { return model::Precision::kFp32; }
  int64_t batch() const override { return 1; }
  Status reset(int64_t) override { return Status::kSuccess; }
  Status reset_slot(int64_t) override { return Status::kSuccess; }
  Status prefill(int64_t, const int32_t*, int64_t n, float* logits, bool all_logits) override {
    if (logits)
      for (int64_t i = 0; i < (all_logits ? n : 1) * cfg_.vocab; ++i) logits[i] = value_;
    return Status::kSuccess;
  }
  Status decode(const int32_t*, float* logits) override {
    if (logits)
      for (int64_t i = 0; i < cfg_.vocab; ++i) logits[i] = value_;
    return Status::kSuccess;
  }

 private:
  reference::ModelConfig cfg_;
  float value_;
};

TEST(Perplexity, NonFiniteLogitsAreAnErrorNotANanPerplexity) {
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8};
  for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    ConstantEngine e(bad);
    tools::PerplexityResult r;
    std::string err;
    EXPECT_NE(tools::perplexity(e, ids, 4, 4, "test", &r, &err), Status::kSuccess);
    EXPECT_NE(err.find("non-finite"), std::string::npos) << err;
  }
  ConstantEngine ok(0.5f);  // uniform: perplexity = vocab
  tools::PerplexityResult r;
  std::string err;
  ASSERT_EQ(tools::perplexity(ok, ids, 4, 4, "test", &r, &err), Status::kSuccess) << err;
  EXPECT_NEAR(r.ppl(), 16.0, 1e-9);
}

// An engine whose logits depend on the position in the slot and the input token, so that a
// perplexity computed from chunked calls can be checked against a direct computation; records
// the largest all-logits call.
class PositionEngine final : public model::Engine {
 public:
  PositionEngine() {
    cfg_.vocab = 37;
    cfg_.d_model = 4;
  }
  static float logit(int64_t pos, int32_t id, int64_t v) { return static_cast<float>((pos * 31 + v * 7 + id) % 13) * 0.25f; }
  const reference::ModelConfig& config() const override { return cfg_; }
  model::Backend backend() const override { return model::Backend::kCpu; }
  model::Precision precision() const override { return model::Precision::kFp32; }
  int64_t batch() const override { return 1; }
  Status reset(int64_t) override { return Status::kSuccess; }
  Status reset_slot(int64_t) override {
    pos_ = 0;
    return Status::kSuccess;
  }
  Status prefill(int64_t, const int32_t* ids, int64_t n, float* logits, bool all_logits) override {
    if (logits && all_logits) max_rows_ = std::max(max_rows_, n);
    for (int64_t t = 0; t < n; ++t, ++pos_)
      if (logits && (all_logits || t + 1 == n))
        for (int64_t v = 0; v < cfg_.vocab; ++v) logits[(all_logits ? t : 0) * cfg_.vocab + v] = logit(pos_, ids[t], v);
    return Status::kSuccess;
  }
  Status decode(const int32_t*, float*) override { return Status::kErrorNotSupported; }
  int64_t max_rows() const { return max_rows_; }

 private:
  reference::ModelConfig cfg_;
  int64_t pos_ = 0, max_rows_ = 0;
};

TEST(Perplexity, LongWindowsAreScoredInBoundedPieces) {
  // One window of 5000 tokens: the logits of every position at once would be 5000 x V floats
  // (20 GB for a 100k window and a 50k vocabulary); they are scored 2048 rows at a time.
  const int64_t n = 5000, V = 37;
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 17 + 3) % V);
  PositionEngine e;
  tools::PerplexityResult r;
  std::string err;
  ASSERT_EQ(tools::perplexity(e, ids, n, n, "test", &r, &err), Status::kSuccess) << err;
  EXPECT_LE(e.max_rows(), 2048);
  double nll = 0;
  for (int64_t p = 0; p + 1 < n; ++p) {
    double mx = -1e30, sum = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(PositionEngine::logit(p, ids[static_cast<size_t>(p)], v)));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(PositionEngine::logit(p, ids[static_cast<size_t>(p)], v)) - mx);
    nll += mx + std::log(sum) - PositionEngine::logit(p, ids[static_cast<size_t>(p)], ids[static_cast<size_t>(p + 1)]);
  }
  EXPECT_EQ(r.tokens, n - 1);
  EXPECT_NEAR(r.nll, nll, 1e-9 * std::fabs(nll));
}

TEST(HostMemory, AbsurdSizesAreRefusedWithAMessage) {
  std::string err;
  EXPECT_EQ(tools::check_host_memory(1e6, "a small run", &err), Status::kSuccess) << err;
  EXPECT_EQ(tools::check_host_memory(1e21, "-b 4096 -p 16777216", &err), Status::kErrorOutOfRange);
  EXPECT_NE(err.find("-b 4096 -p 16777216 needs"), std::string::npos) << err;
}

TEST(OutputPath, CheckedBeforeAnyWork) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("quamba_tools_out_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  fs::remove_all(dir);
  fs::create_directories(dir / "sub");
  std::string err;
  EXPECT_EQ(tools::check_output_path((dir / "new.json").string(), "--json", &err), Status::kSuccess) << err;
  EXPECT_FALSE(fs::exists(dir / "new.json"));  // the check creates nothing
  EXPECT_NE(tools::check_output_path((dir / "sub").string(), "--json", &err), Status::kSuccess);
  EXPECT_NE(err.find("is a directory"), std::string::npos) << err;
  EXPECT_NE(tools::check_output_path((dir / "x").string() + "/", "--json", &err), Status::kSuccess);
  EXPECT_NE(tools::check_output_path((dir / "missing" / "x.json").string(), "writing", &err), Status::kSuccess);
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(err.rfind("writing '", 0), 0u) << err;
  EXPECT_NE(tools::check_output_path("", "--json", &err), Status::kSuccess);
  EXPECT_EQ(tools::check_output_path("relative-name.json", "--json", &err), Status::kSuccess) << err;
  // An existing output that is one of the inputs (directly, or inside an input model directory).
  { std::ofstream(dir / "text.txt") << "x"; }
  { std::ofstream(dir / "sub" / "config.json") << "{}"; }
  EXPECT_EQ(tools::check_output_path((dir / "text.txt").string(), "--json", &err, {(dir / "other.txt").string()}),
            Status::kSuccess) << err;
  EXPECT_NE(tools::check_output_path((dir / "text.txt").string(), "--json", &err, {"", (dir / "text.txt").string()}),
            Status::kSuccess);
  EXPECT_NE(err.find("input of this run"), std::string::npos) << err;
  EXPECT_NE(tools::check_output_path((dir / "sub" / ".." / "sub" / "config.json").string(), "writing", &err,
                                     {(dir / "sub").string()}),
            Status::kSuccess);
  EXPECT_NE(err.find("input of this run"), std::string::npos) << err;
  fs::remove_all(dir);
}

}  // namespace
