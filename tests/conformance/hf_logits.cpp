// quamba_hf_logits: fp32 logits of a Hugging Face Mamba checkpoint on the host reference, for the
// conformance test against transformers (tests/conformance/hf_conformance.py).
//
//   quamba_hf_logits MODEL_DIR IDS_FILE OUT_FILE
// IDS_FILE holds one sequence of token ids as whitespace-separated integers; OUT_FILE receives
// the logits of every position, (L, V) float32 row-major, little-endian (the host's order).
// Any failure prints one line on stderr and exits with status 1 (2 for a usage error).
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "quamba/model/hf_model.hpp"
#include "quamba/reference/model.hpp"

namespace ref = quamba::reference;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: quamba_hf_logits MODEL_DIR IDS_FILE OUT_FILE\n");
    return 2;
  }
  ref::ModelWeights w;
  std::string err;
  if (quamba::model::load_hf_model(argv[1], &w, &err) != quamba::Status::kSuccess) {
    std::fprintf(stderr, "quamba_hf_logits: %s\n", err.c_str());
    return 1;
  }
  std::vector<int32_t> ids;
  {
    std::ifstream in(argv[2]);
    if (!in) {
      std::fprintf(stderr, "quamba_hf_logits: cannot open %s\n", argv[2]);
      return 1;
    }
    long long v = 0;
    while (in >> v) ids.push_back(static_cast<int32_t>(v));
    if (!in.eof() || ids.empty()) {
      std::fprintf(stderr, "quamba_hf_logits: %s: expected whitespace-separated integers\n", argv[2]);
      return 1;
    }
  }
  const int64_t L = static_cast<int64_t>(ids.size()), V = w.config.vocab;
  ref::ModelCacheF32 cache;
  std::vector<float> logits(static_cast<size_t>(L * V));
  quamba::Status s = ref::init_cache(w.config, 1, &cache);
  if (s == quamba::Status::kSuccess)
    s = ref::prefill(w, ids.data(), 1, L, nullptr, &cache, quamba::make_view(logits.data(), int64_t{1}, L, V));
  if (s != quamba::Status::kSuccess) {
    std::fprintf(stderr, "quamba_hf_logits: prefill failed: %s\n", quamba::to_string(s));
    return 1;
  }
  std::ofstream out(argv[3], std::ios::binary);
  out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
  if (!out) {
    std::fprintf(stderr, "quamba_hf_logits: cannot write %s\n", argv[3]);
    return 1;
  }
  return 0;
}
