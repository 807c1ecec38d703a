// make_tiny_model OUT_DIR: writes the files the tool tests run on (a fixture made at test time):
//   OUT_DIR/models/tiny/         random Mamba (d_model 32, 2 layers, E = 64, vocab 272) as a HF
//                                checkpoint + a byte-level BPE tokenizer.json (262 tokens incl.
//                                the added token <|endoftext|>)
//   OUT_DIR/models/data/test.txt the corpus the demo finds next to the model (../data)
//   OUT_DIR/nohad/               d_model 36 (E = 72: no Hadamard size), same tokenizer
//   OUT_DIR/smallvocab/          vocab 100 < the tokenizer's 262 (ids out of the model's range)
//   OUT_DIR/garbled/             config.json that is not JSON, same tokenizer
//   OUT_DIR/badtok/              the tiny model with a tokenizer.json that is not JSON
//   OUT_DIR/calib.txt eval.txt   English text;  empty.txt (0 bytes);  badutf8.txt (invalid UTF-8)
//   OUT_DIR/garbage.safetensors  random bytes
//   OUT_DIR/nanweight/           the tiny model with one NaN in layers.1 x_proj (a damaged file)
//   OUT_DIR/overflow/            the tiny model with every embedding value 3e38 (finite weights,
//                                infinite logits)
//   OUT_DIR/holes/               the tiny model with a tokenizer whose ids have holes: an added
//                                token <|pad|> at id 271, nothing at 263..270
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "quamba/model/hf_model.hpp"
#include "quamba/reference/model.hpp"

namespace fs = std::filesystem;
using namespace quamba;

namespace {

// GPT-2's byte -> unicode code point map (printable bytes map to themselves).
std::vector<unsigned> byte_map() {
  std::vector<unsigned> m(256);
  unsigned n = 0;
  for (unsigned b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    m[b] = printable ? b : 256 + n++;
  }
  return m;
}

std::string json_escape_cp(const std::vector<unsigned>& cps) {
  std::string s;
  char buf[8];
  for (unsigned cp : cps) {
    std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
    s += buf;
  }
  return s;
}

std::string tokenizer_json(bool with_holes = false) {
  const auto m = byte_map();
  auto sym = [&](char c) { return m[static_cast<unsigned char>(c)]; };
  const unsigned G = m[' '];  // 'Ġ'
  // Merges (rank order) and the tokens they make, ids 256...
  const std::vector<std::pair<std::vector<unsigned>, std::vector<unsigned>>> merges = {
      {{sym('t')}, {sym('h')}}, {{G}, {sym('t')}}, {{sym('e')}, {sym('r')}}, {{sym('i')}, {sym('n')}},
      {{G}, {sym('a')}},        {{sym('t'), sym('h')}, {sym('e')}}};
  std::string vocab, mer;
  for (unsigned b = 0; b < 256; ++b)
    vocab += (b ? ",\"" : "\"") + json_escape_cp({m[b]}) + "\":" + std::to_string(b);
  unsigned id = 256;
  for (const auto& mg : merges) {
    std::vector<unsigned> joined = mg.first;
    joined.insert(joined.end(), mg.second.begin(), mg.second.end());
    vocab += ",\"" + json_escape_cp(joined) + "\":" + std::to_string(id++);
    mer += std::string(mer.empty() ? "" : ",") + "\"" + json_escape_cp(mg.first) + " " + json_escape_cp(mg.second) + "\"";
  }
  return "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":" + std::to_string(id) +
         ",\"content\":\"<|endoftext|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
         "\"normalized\":false,\"special\":true}" +
         (with_holes ? std::string(",{\"id\":271,\"content\":\"<|pad|>\",\"special\":true,\"normalized\":false}") : "") +
         "],"
         "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
         "\"use_regex\":true},\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
         "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
         "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"vocab\":{" +
         vocab + "},\"merges\":[" + mer + "]}}";
}

bool write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return f.good();
}

enum class Damage { kNone, kNanWeight, kHugeEmbedding, kTokenizerHoles };

bool save_model(const fs::path& dir, int64_t d_model, int64_t vocab, uint64_t seed, std::string* err,
                Damage damage = Damage::kNone) {
  reference::ModelWeights w;
  if (reference::init_random_model(reference::make_config(d_model, 2, vocab), seed, &w) != Status::kSuccess) {
    *err = "init_random_model failed";
    return false;
  }
  if (damage == Damage::kNanWeight) w.layers[1].x_proj[5] = std::nanf("");
  if (damage == Damage::kHugeEmbedding)
    for (float& v : w.embedding) v = 3e38f;
  return model::save_hf_model(dir.string(), w, io::Dtype::kF32, err) == Status::kSuccess &&
         write(dir / "tokenizer.json", tokenizer_json(damage == Damage::kTokenizerHoles));
}

const char* kText =
    "The jury said that the city election was conducted well. In their report, the jurors thanked the\n"
    "officials for the manner in which the election was held, and they noted that there were\n"
    "only a few irregularities. The term of the jury ended in the spring, after a long inquiry\n"
    "into the affairs of the county, which began in the winter of the previous year.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_tiny_model OUT_DIR\n");
    return 2;
  }
  const fs::path out(argv[1]);
  std::error_code ec;
  fs::remove_all(out, ec);
  std::string err;
  std::string text;
  for (int i = 0; i < 6; ++i) text += kText;
  bool ok = save_model(out / "models" / "tiny", 32, 272, 7, &err) && save_model(out / "nohad", 36, 272, 8, &err) &&
            save_model(out / "smallvocab", 32, 100, 9, &err) && save_model(out / "garbled", 32, 272, 10, &err) &&
            save_model(out / "badtok", 32, 272, 11, &err) && write(out / "garbled" / "config.json", "{ this is not json") &&
            write(out / "badtok" / "tokenizer.json", "[1, 2,") && write(out / "models" / "data" / "test.txt", text) &&
            write(out / "calib.txt", text) && write(out / "eval.txt", std::string(kText) + kText) &&
            write(out / "empty.txt", "") && write(out / "badutf8.txt", "abc \xff\xfe def\n") &&
            save_model(out / "nanweight", 32, 272, 7, &err, Damage::kNanWeight) &&
            save_model(out / "overflow", 32, 272, 7, &err, Damage::kHugeEmbedding) &&
            save_model(out / "holes", 32, 272, 7, &err, Damage::kTokenizerHoles);
  std::string garbage(4096, '\0');
  uint64_t s = 12345;
  for (auto& c : garbage) c = static_cast<char>((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 56);
  ok = ok && write(out / "garbage.safetensors", garbage);
  if (!ok) {
    std::fprintf(stderr, "make_tiny_model: %s\n", err.empty() ? "cannot write the fixture" : err.c_str());
    return 1;
  }
  return 0;
}
