// quamba/io/tokenizer.hpp: a byte-level BPE tokenizer reading a Hugging Face tokenizer.json
// (the GPT-2 / GPT-NeoX format used by the public Mamba models).
//
// Accepted tokenizer.json (anything else returns kErrorNotSupported or kErrorFormat):
//   model:         {"type": "BPE" (or absent), "vocab": {token: id}, "merges": ["a b", ...] or
//                   [["a", "b"], ...]}; dropout null/0, no continuing_subword_prefix /
//                   end_of_word_suffix, byte_fallback false; ignore_merges honoured.
//   added_tokens:  [{"id", "content", "special", "normalized", "lstrip": false,
//                   "rstrip": false, "single_word": false}, ...] (optional).
//   pre_tokenizer: "ByteLevel" {add_prefix_space, use_regex}, alone or as the only member of a
//                   "Sequence".
//   decoder:       "ByteLevel" (or null).
//   normalizer:    null or "NFC" (alone or in a "Sequence"). NFC is NOT applied: encode()
//                   expects NFC text (what the tokenizer would produce anyway); text that is not
//                   NFC may tokenize differently from the reference implementation.
//   post_processor, truncation, padding: ignored (encode() never adds BOS/EOS; it equals the
//                   reference's encode(text, add_special_tokens=False)).
// The vocabulary must contain the 256 single-byte symbols of the byte-to-unicode map, so that
// every input byte has an id.
//
// Encoding of a UTF-8 string:
//   1. added tokens are split out of the raw text, leftmost-longest, first those that are special
//      or not "normalized", then (in the remaining pieces) the normalized ones;
//   2. each remaining piece gets a leading space when add_prefix_space is set and it does not
//      start with one, then is split by the GPT-2 regex (PCRE2, UTF + UCP)
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      where \s is Unicode White_Space (U+0009..U+000D, U+0085, Zs, Zl, Zp)
//      (the whole piece when use_regex is false);
//   3. each word's bytes map to their byte-level symbols, then BPE merges the adjacent pair of
//      lowest merge rank (leftmost among equal ranks) until none applies. Results are cached per
//      word (the cache is guarded by a mutex: one tokenizer may be shared between threads).
// Decoding maps each token's characters back to bytes (a token with a character outside the
// byte map, e.g. an added token "  ", contributes its raw UTF-8) and replaces every ill-formed
// UTF-8 subsequence (maximal subpart) by U+FFFD.
//
// Ids are int32. vocab_size() is the largest id (vocabulary or added token) + 1.
// Errors: missing/unreadable file kErrorIo; malformed JSON or inconsistent content kErrorFormat;
// unsupported model/pre-tokenizer/decoder kErrorNotSupported; id outside [0, vocab_size) or
// without a token kErrorOutOfRange; input text that is not valid UTF-8 kErrorInvalidArgument.
// With a non-null `error`, a one-line message is stored. Nothing here throws; allocation failure
// is reported as a Status.
//
// Dependency: PCRE2 (libpcre2-8) for this header only; define PCRE2_CODE_UNIT_WIDTH 8 or let this
// header do it, and link libpcre2-8.
#pragma once

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#elif PCRE2_CODE_UNIT_WIDTH != 8
#error "quamba/io/tokenizer.hpp needs PCRE2_CODE_UNIT_WIDTH 8"
#endif
#include <pcre2.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "quamba/core/status.hpp"
#include "quamba/io/json.hpp"

namespace quamba::io {

namespace tokenizer_detail {

inline Status fail(std::string* error, Status s, const std::string& msg) {
  if (error) *error = msg;
  return s;
}

// Length of the well-formed UTF-8 sequence at s[i], or the length of its maximal ill-formed
// subpart (>= 1) negated. Follows Unicode Table 3-7.
inline int utf8_sequence(std::string_view s, size_t i) {
  const unsigned char c0 = static_cast<unsigned char>(s[i]);
  if (c0 < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c0 >= 0xc2 && c0 <= 0xdf) {
    len = 2;
  } else if (c0 >= 0xe0 && c0 <= 0xef) {
    len = 3;
    if (c0 == 0xe0) lo = 0xa0;
    if (c0 == 0xed) hi = 0x9f;
  } else if (c0 >= 0xf0 && c0 <= 0xf4) {
    len = 4;
    if (c0 == 0xf0) lo = 0x90;
    if (c0 == 0xf4) hi = 0x8f;
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) return -k;
    const unsigned char ck = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
    if (ck < l || ck > h) return -k;
  }
  return len;
}

// Byte offset of the first ill-formed sequence, or npos when `s` is valid UTF-8.
inline size_t find_invalid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const int n = utf8_sequence(s, i);
    if (n < 0) return i;
    i += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

// from_utf8_lossy: each maximal ill-formed subpart becomes U+FFFD.
inline std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int n = utf8_sequence(s, i);
    if (n > 0) {
      out.append(s.data() + i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
    } else {
      out.append("\xef\xbf\xbd");
      i += static_cast<size_t>(-n);
    }
  }
  return out;
}

// GPT-2's reversible byte -> code point map: printable bytes map to themselves, the others to
// 256, 257, ... in byte order, so that no symbol is whitespace or a control character.
inline uint32_t byte_to_code_point(unsigned b) {
  auto printable = [](unsigned x) { return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174; };
  if (printable(b)) return b;
  uint32_t n = 0;
  for (unsigned x = 0; x < b; ++x)
    if (!printable(x)) ++n;
  return 256 + n;
}

struct Pcre2CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct Pcre2MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

// The GPT-2 pattern with \s spelled out as Unicode White_Space (U+0009..U+000D, U+0085 and the
// Z categories), as the reference implementation's regex engine reads it; PCRE2's own \s (even
// with UCP) depends on its version and leaves out U+0085.
#define QUAMBA_TOKENIZER_WS "\\t-\\r\\x{85}\\p{Z}"
inline constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" QUAMBA_TOKENIZER_WS "\\p{L}\\p{N}]+"
    "|[" QUAMBA_TOKENIZER_WS "]+(?![^" QUAMBA_TOKENIZER_WS "])|[" QUAMBA_TOKENIZER_WS "]+";
#undef QUAMBA_TOKENIZER_WS

}  // namespace tokenizer_detail

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = true;
};

class BpeTokenizer {
 public:
  BpeTokenizer() = default;
  BpeTokenizer(BpeTokenizer&&) = default;
  BpeTokenizer& operator=(BpeTokenizer&&) = default;
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  // Reads a tokenizer.json file (at most 512 MiB).
  Status load(const std::string& path, std::string* error = nullptr) {
    namespace d = tokenizer_detail;
    try {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path, ec))
        return d::fail(error, Status::kErrorIo,
                       "tokenizer file '" + path + "' " + (std::filesystem::exists(path, ec) ? "is not a regular file" : "does not exist"));
      std::ifstream f(path, std::ios::binary);
      if (!f.is_open()) return d::fail(error, Status::kErrorIo, "cannot open tokenizer file '" + path + "'");
      f.seekg(0, std::ios::end);
      const std::streamoff size = f.tellg();
      if (size < 0) return d::fail(error, Status::kErrorIo, "cannot read tokenizer file '" + path + "'");
      if (size > (std::streamoff{512} << 20))
        return d::fail(error, Status::kErrorFormat, "'" + path + "': larger than 512 MiB, not a tokenizer");
      f.seekg(0, std::ios::beg);
      std::string text(static_cast<size_t>(size), '\0');
      if (size > 0 && !f.read(text.data(), size))
        return d::fail(error, Status::kErrorIo, "cannot read tokenizer file '" + path + "' (a directory?)");
      std::string e;
      const Status s = load_from_string(text, &e);
      if (s != Status::kSuccess) return d::fail(error, s, "'" + path + "': " + e);
      return Status::kSuccess;
    } catch (const std::bad_alloc&) {
      return d::fail(error, Status::kErrorIo, "out of memory reading '" + path + "'");
    }
  }

  // Parses the text of a tokenizer.json. On failure the tokenizer is left empty.
  Status load_from_string(std::string_view json_text, std::string* error = nullptr) {
    try {
      BpeTokenizer t;
      const Status s = t.parse(json_text, error);
      if (s != Status::kSuccess) {
        *this = BpeTokenizer();
        return s;
      }
      *this = std::move(t);
      return Status::kSuccess;
    } catch (const std::bad_alloc&) {
      *this = BpeTokenizer();
      return tokenizer_detail::fail(error, Status::kErrorInternal, "out of memory parsing the tokenizer");
    }
  }

  bool loaded() const { return regex_ != nullptr; }

  // Largest id of the vocabulary and of the added tokens, plus one (0 when not loaded).
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }

  const std::vector<AddedToken>& added_tokens() const { return added_; }
  bool add_prefix_space() const { return add_prefix_space_; }

  Status encode(std::string_view text, std::vector<int32_t>* ids, std::string* error = nullptr) const {
    namespace d = tokenizer_detail;
    if (ids == nullptr) return d::fail(error, Status::kErrorInvalidArgument, "null ids output");
    ids->clear();
    QUAMBA_RETURN_IF_ERROR(check_input(text, error));
    try {
      std::vector<Segment> segs;
      split_added(text, &segs);
      std::vector<std::string> words;
      for (const Segment& sg : segs) {
        if (sg.added_id >= 0) {
          ids->push_back(sg.added_id);
          continue;
        }
        words.clear();
        QUAMBA_RETURN_IF_ERROR(split_words(sg.text, &words, error));
        for (const std::string& w : words) bpe_word(w, ids);
      }
      return Status::kSuccess;
    } catch (const std::bad_alloc&) {
      ids->clear();
      return d::fail(error, Status::kErrorInternal, "out of memory encoding");
    }
  }

  // Applies add_prefix_space and the GPT-2 regex to one piece of text (no added-token handling)
  // and returns the words as raw UTF-8 bytes (before the byte-level map).
  Status pre_tokenize(std::string_view text, std::vector<std::string>* words, std::string* error = nullptr) const {
    namespace d = tokenizer_detail;
    if (words == nullptr) return d::fail(error, Status::kErrorInvalidArgument, "null words output");
    words->clear();
    QUAMBA_RETURN_IF_ERROR(check_input(text, error));
    try {
      return split_words(text, words, error);
    } catch (const std::bad_alloc&) {
      words->clear();
      return d::fail(error, Status::kErrorInternal, "out of memory pre-tokenizing");
    }
  }

  // Concatenates the tokens' bytes; with skip_special, special added tokens are left out.
  Status decode(const std::vector<int32_t>& ids, std::string* text, std::string* error = nullptr,
                bool skip_special = false) const {
    namespace d = tokenizer_detail;
    if (text == nullptr) return d::fail(error, Status::kErrorInvalidArgument, "null text output");
    text->clear();
    if (!loaded()) return d::fail(error, Status::kErrorInvalidArgument, "tokenizer not loaded");
    try {
      std::string bytes;
      for (size_t i = 0; i < ids.size(); ++i) {
        const int32_t id = ids[i];
        if (!has_id(id))
          return d::fail(error, Status::kErrorOutOfRange,
                         "token id " + std::to_string(id) + " at position " + std::to_string(i) +
                             (id >= 0 && id < vocab_size() ? " has no token" : " outside [0, " + std::to_string(vocab_size()) + ")"));
        if (skip_special && is_special_[static_cast<size_t>(id)]) continue;
        bytes += token_bytes_[static_cast<size_t>(id)];
      }
      *text = d::utf8_lossy(bytes);
      return Status::kSuccess;
    } catch (const std::bad_alloc&) {
      text->clear();
      return d::fail(error, Status::kErrorInternal, "out of memory decoding");
    }
  }

  // The token string as stored in tokenizer.json (byte-level symbols, e.g. "Ġthe").
  Status id_to_token(int32_t id, std::string* token, std::string* error = nullptr) const {
    namespace d = tokenizer_detail;
    if (token == nullptr) return d::fail(error, Status::kErrorInvalidArgument, "null token output");
    if (!has_id(id))
      return d::fail(error, Status::kErrorOutOfRange, "token id " + std::to_string(id) + " has no token");
    try {
      *token = id_to_token_[static_cast<size_t>(id)];
    } catch (const std::bad_alloc&) {
      return d::fail(error, Status::kErrorInternal, "out of memory");
    }
    return Status::kSuccess;
  }

  Status token_to_id(std::string_view token, int32_t* id, std::string* error = nullptr) const {
    namespace d = tokenizer_detail;
    if (id == nullptr) return d::fail(error, Status::kErrorInvalidArgument, "null id output");
    try {
      const auto it = token_to_id_.find(std::string(token));
      if (it == token_to_id_.end())
        return d::fail(error, Status::kErrorOutOfRange, "token '" + std::string(token) + "' is not in the vocabulary");
      *id = it->second;
    } catch (const std::bad_alloc&) {
      return d::fail(error, Status::kErrorInternal, "out of memory");
    }
    return Status::kSuccess;
  }

 private:
  // What encode and pre_tokenize accept: a loaded tokenizer and valid UTF-8 below 2^31 - 1 bytes.
  Status check_input(std::string_view text, std::string* error) const {
    namespace d = tokenizer_detail;
    if (!loaded()) return d::fail(error, Status::kErrorInvalidArgument, "tokenizer not loaded");
    if (text.size() > static_cast<size_t>(INT32_MAX - 1))
      return d::fail(error, Status::kErrorInvalidArgument, "text longer than 2^31 - 2 bytes");
    const size_t bad = d::find_invalid_utf8(text);
    if (bad != std::string_view::npos)
      return d::fail(error, Status::kErrorInvalidArgument,
                     "text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    return Status::kSuccess;
  }

  struct Segment {
    std::string_view text;
    int32_t added_id = -1;
  };
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  struct Cache {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  static constexpr size_t kCacheCapacity = 1u << 16;

  std::unordered_map<std::string, int32_t> token_to_id_;  // vocabulary and added tokens
  std::vector<std::string> id_to_token_;
  std::vector<std::string> token_bytes_;  // decoded bytes of each id
  std::vector<uint8_t> present_, is_special_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, merged id
  int32_t byte_id_[256] = {};
  std::string byte_symbol_[256];  // UTF-8 of each byte's symbol
  std::vector<AddedToken> added_;
  std::vector<const AddedToken*> pass1_, pass2_;  // special or not normalized; normalized
  bool add_prefix_space_ = false, use_regex_ = true, ignore_merges_ = false;
  std::unique_ptr<pcre2_code, tokenizer_detail::Pcre2CodeDeleter> regex_;
  std::unique_ptr<Cache> cache_;

  bool has_id(int32_t id) const { return id >= 0 && id < vocab_size() && present_[static_cast<size_t>(id)]; }

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  // Splits out the added tokens of `tokens` from the non-token segments of *segs (leftmost-longest).
  static void split_on(const std::vector<const AddedToken*>& tokens, std::vector<Segment>* segs) {
    if (tokens.empty()) return;
    std::vector<Segment> out;
    for (const Segment& sg : *segs) {
      if (sg.added_id >= 0) {
        out.push_back(sg);
        continue;
      }
      const std::string_view t = sg.text;
      size_t start = 0, i = 0;
      while (i < t.size()) {
        const AddedToken* best = nullptr;
        for (const AddedToken* a : tokens) {
          const std::string& c = a->content;
          if (c.size() <= t.size() - i && t.compare(i, c.size(), c) == 0 &&
              (best == nullptr || c.size() > best->content.size()))
            best = a;
        }
        if (best == nullptr) {
          ++i;
          continue;
        }
        if (i > start) out.push_back(Segment{t.substr(start, i - start), -1});
        out.push_back(Segment{t.substr(i, best->content.size()), best->id});
        i += best->content.size();
        start = i;
      }
      if (start < t.size()) out.push_back(Segment{t.substr(start), -1});
    }
    *segs = std::move(out);
  }

  void split_added(std::string_view text, std::vector<Segment>* segs) const {
    segs->clear();
    if (!text.empty()) segs->push_back(Segment{text, -1});
    split_on(pass1_, segs);
    split_on(pass2_, segs);
  }

  Status split_words(std::string_view piece, std::vector<std::string>* words, std::string* error) const {
    if (piece.empty()) return Status::kSuccess;
    std::string buf;
    if (add_prefix_space_ && piece[0] != ' ') {
      buf.reserve(piece.size() + 1);
      buf.push_back(' ');
      buf.append(piece);
      piece = buf;
    }
    if (!use_regex_) {
      words->emplace_back(piece);
      return Status::kSuccess;
    }
    std::unique_ptr<pcre2_match_data, tokenizer_detail::Pcre2MatchDataDeleter> md(
        pcre2_match_data_create_from_pattern(regex_.get(), nullptr));
    if (!md) throw std::bad_alloc();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    size_t pos = 0;
    while (pos < piece.size()) {
      const int rc = pcre2_match(regex_.get(), subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) {
        words->emplace_back(piece.substr(pos));  // unmatched text stays a word of its own
        break;
      }
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        return tokenizer_detail::fail(error, Status::kErrorInternal,
                                      std::string("pre-tokenizer regex failed: ") + reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const size_t b = ov[0], e = ov[1];
      if (b > pos) words->emplace_back(piece.substr(pos, b - pos));
      if (e <= b) {  // the pattern cannot match empty; guard against looping anyway
        words->emplace_back(piece.substr(b));
        break;
      }
      words->emplace_back(piece.substr(b, e - b));
      pos = e;
    }
    return Status::kSuccess;
  }

  // Merges the adjacent pair of lowest rank, leftmost among equal ranks, until none applies.
  // Symbols form a linked list and candidate pairs a min-heap on (rank, position): O(n log n)
  // per word, so that a long word without spaces stays cheap. A heap entry is stale when either
  // symbol has changed since it was pushed (a symbol only grows, so its id never comes back).
  void merge_word(const std::string& word, std::vector<int32_t>* out) const {
    struct Sym {
      int32_t id, prev, next;
    };
    struct Cand {
      int32_t rank, left, right, left_id, right_id, merged;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    const int32_t n = static_cast<int32_t>(word.size());
    std::vector<Sym> sym(static_cast<size_t>(n));
    for (int32_t k = 0; k < n; ++k)
      sym[static_cast<size_t>(k)] = Sym{byte_id_[static_cast<unsigned char>(word[static_cast<size_t>(k)])], k - 1,
                                        k + 1 < n ? k + 1 : -1};
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t l) {
      if (l < 0) return;
      const int32_t r = sym[static_cast<size_t>(l)].next;
      if (r < 0) return;
      const int32_t a = sym[static_cast<size_t>(l)].id, b = sym[static_cast<size_t>(r)].id;
      const auto it = merges_.find(pair_key(a, b));
      if (it != merges_.end()) heap.push(Cand{it->second.rank, l, r, a, b, it->second.id});
    };
    for (int32_t k = 0; k + 1 < n; ++k) push(k);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      Sym& l = sym[static_cast<size_t>(c.left)];
      Sym& r = sym[static_cast<size_t>(c.right)];
      if (l.id != c.left_id || l.next != c.right || r.id != c.right_id) continue;  // stale
      l.id = c.merged;
      l.next = r.next;
      if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = c.left;
      r.id = -1;
      push(l.prev);
      push(c.left);
    }
    out->clear();
    for (int32_t k = n > 0 ? 0 : -1; k >= 0; k = sym[static_cast<size_t>(k)].next) out->push_back(sym[static_cast<size_t>(k)].id);
  }

  void bpe_word(const std::string& word, std::vector<int32_t>* ids) const {
    {
      std::lock_guard<std::mutex> lock(cache_->mu);
      const auto it = cache_->map.find(word);
      if (it != cache_->map.end()) {
        ids->insert(ids->end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> sym;
    sym.reserve(word.size());
    bool done = false;
    if (ignore_merges_) {
      std::string mapped;
      for (unsigned char c : word) mapped += byte_symbol_[c];
      const auto it = token_to_id_.find(mapped);
      if (it != token_to_id_.end() && it->second < static_cast<int32_t>(is_model_token_.size()) &&
          is_model_token_[static_cast<size_t>(it->second)]) {
        sym.push_back(it->second);
        done = true;
      }
    }
    if (!done) {
      merge_word(word, &sym);
    }
    ids->insert(ids->end(), sym.begin(), sym.end());
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->map.size() >= kCacheCapacity) cache_->map.clear();
    cache_->map.emplace(word, std::move(sym));
  }

  std::vector<uint8_t> is_model_token_;

  // ---- loading ----

  static Status expect_type(const JsonValue* v, const char* what, std::string* type, std::string* error) {
    if (v == nullptr || !v->is_object())
      return tokenizer_detail::fail(error, Status::kErrorFormat, std::string(what) + " is not an object");
    const JsonValue* t = v->find("type");
    if (t == nullptr || !t->is_string())
      return tokenizer_detail::fail(error, Status::kErrorFormat, std::string(what) + " has no string \"type\"");
    *type = t->as_string();
    return Status::kSuccess;
  }

  static Status get_bool(const JsonValue& obj, const char* key, bool def, bool* out, std::string* error) {
    const JsonValue* v = obj.find(key);
    if (v == nullptr || v->is_null()) {
      *out = def;
      return Status::kSuccess;
    }
    if (!v->is_bool())
      return tokenizer_detail::fail(error, Status::kErrorFormat, std::string("\"") + key + "\" is not a boolean");
    *out = v->as_bool();
    return Status::kSuccess;
  }

  Status set_token(const std::string& tok, int64_t id, bool model_token, std::string* error) {
    namespace d = tokenizer_detail;
    if (id < 0 || id > INT32_MAX - 1)
      return d::fail(error, Status::kErrorFormat, "token '" + tok + "' has id " + std::to_string(id) + " outside [0, 2^31-1)");
    const size_t u = static_cast<size_t>(id);
    if (u >= id_to_token_.size()) {
      id_to_token_.resize(u + 1);
      present_.resize(u + 1, 0);
      is_special_.resize(u + 1, 0);
      is_model_token_.resize(u + 1, 0);
    }
    if (present_[u] && id_to_token_[u] != tok)
      return d::fail(error, Status::kErrorFormat,
                     "id " + std::to_string(id) + " given to both '" + id_to_token_[u] + "' and '" + tok + "'");
    const auto it = token_to_id_.find(tok);
    if (it != token_to_id_.end() && it->second != id)
      return d::fail(error, Status::kErrorFormat,
                     "token '" + tok + "' has ids " + std::to_string(it->second) + " and " + std::to_string(id));
    present_[u] = 1;
    id_to_token_[u] = tok;
    if (model_token) is_model_token_[u] = 1;
    token_to_id_[tok] = static_cast<int32_t>(id);
    return Status::kSuccess;
  }

  Status parse_pre_tokenizer(const JsonValue* pt, std::string* error) {
    namespace d = tokenizer_detail;
    if (pt == nullptr || pt->is_null())
      return d::fail(error, Status::kErrorNotSupported, "pre_tokenizer is null; only ByteLevel is supported");
    std::string type;
    QUAMBA_RETURN_IF_ERROR(expect_type(pt, "pre_tokenizer", &type, error));
    if (type == "Sequence") {
      const JsonValue* items = pt->find("pretokenizers");
      if (items == nullptr || !items->is_array())
        return d::fail(error, Status::kErrorFormat, "pre_tokenizer Sequence has no \"pretokenizers\" array");
      if (items->size() != 1)
        return d::fail(error, Status::kErrorNotSupported,
                       "pre_tokenizer Sequence of " + std::to_string(items->size()) + " members; only a single ByteLevel is supported");
      pt = &items->items()[0];
      QUAMBA_RETURN_IF_ERROR(expect_type(pt, "pre_tokenizer", &type, error));
    }
    if (type != "ByteLevel")
      return d::fail(error, Status::kErrorNotSupported, "pre_tokenizer type '" + type + "'; only ByteLevel is supported");
    QUAMBA_RETURN_IF_ERROR(get_bool(*pt, "add_prefix_space", true, &add_prefix_space_, error));
    QUAMBA_RETURN_IF_ERROR(get_bool(*pt, "use_regex", true, &use_regex_, error));
    return Status::kSuccess;
  }

  static Status check_normalizer(const JsonValue* n, std::string* error) {
    namespace d = tokenizer_detail;
    if (n == nullptr || n->is_null()) return Status::kSuccess;
    std::string type;
    QUAMBA_RETURN_IF_ERROR(expect_type(n, "normalizer", &type, error));
    if (type == "NFC") return Status::kSuccess;
    if (type == "Sequence") {
      const JsonValue* items = n->find("normalizers");
      if (items == nullptr || !items->is_array())
        return d::fail(error, Status::kErrorFormat, "normalizer Sequence has no \"normalizers\" array");
      for (const JsonValue& it : items->items()) QUAMBA_RETURN_IF_ERROR(check_normalizer(&it, error));
      return Status::kSuccess;
    }
    return d::fail(error, Status::kErrorNotSupported, "normalizer type '" + type + "'; only NFC (assumed applied) is supported");
  }

  Status parse_model(const JsonValue* m, std::string* error) {
    namespace d = tokenizer_detail;
    if (m == nullptr || !m->is_object()) return d::fail(error, Status::kErrorFormat, "no \"model\" object");
    const JsonValue* t = m->find("type");
    if (t != nullptr && (!t->is_string() || t->as_string() != "BPE"))
      return d::fail(error, Status::kErrorNotSupported,
                     "model type '" + (t->is_string() ? t->as_string() : std::string("?")) + "'; only BPE is supported");
    if (const JsonValue* v = m->find("dropout"); v && !v->is_null() && !(v->is_number() && v->as_double() == 0.0))
      return d::fail(error, Status::kErrorNotSupported, "BPE dropout is not supported");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (const JsonValue* v = m->find(key); v && !v->is_null() && !(v->is_string() && v->as_string().empty()))
        return d::fail(error, Status::kErrorNotSupported, std::string("BPE ") + key + " is not supported");
    bool byte_fallback = false;
    QUAMBA_RETURN_IF_ERROR(get_bool(*m, "byte_fallback", false, &byte_fallback, error));
    if (byte_fallback) return d::fail(error, Status::kErrorNotSupported, "BPE byte_fallback is not supported");
    QUAMBA_RETURN_IF_ERROR(get_bool(*m, "ignore_merges", false, &ignore_merges_, error));

    const JsonValue* vocab = m->find("vocab");
    if (vocab == nullptr || !vocab->is_object()) return d::fail(error, Status::kErrorFormat, "model has no \"vocab\" object");
    token_to_id_.reserve(vocab->size() * 2 + 16);
    for (const JsonMember& mem : vocab->members()) {
      if (!mem.value.is_int())
        return d::fail(error, Status::kErrorFormat, "vocab entry '" + mem.key + "' has a non-integer id");
      QUAMBA_RETURN_IF_ERROR(set_token(mem.key, mem.value.as_int(), true, error));
    }
    // Every byte needs a symbol.
    for (unsigned b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(&s, d::byte_to_code_point(b));
      const auto it = token_to_id_.find(s);
      if (it == token_to_id_.end())
        return d::fail(error, Status::kErrorFormat,
                       "vocab lacks the byte-level symbol '" + s + "' of byte " + std::to_string(b));
      byte_id_[b] = it->second;
      byte_symbol_[b] = s;
    }

    const JsonValue* merges = m->find("merges");
    if (merges == nullptr || !merges->is_array()) return d::fail(error, Status::kErrorFormat, "model has no \"merges\" array");
    merges_.reserve(merges->size() * 2 + 16);
    int32_t rank = 0;
    for (const JsonValue& mv : merges->items()) {
      std::string a, b;
      if (mv.is_string()) {
        const std::string& s = mv.as_string();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
          return d::fail(error, Status::kErrorFormat, "merge " + std::to_string(rank) + " '" + s + "' is not \"a b\"");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (mv.is_array() && mv.size() == 2 && mv.items()[0].is_string() && mv.items()[1].is_string()) {
        a = mv.items()[0].as_string();
        b = mv.items()[1].as_string();
      } else {
        return d::fail(error, Status::kErrorFormat, "merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
      }
      const auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), iab = token_to_id_.find(a + b);
      if (ia == token_to_id_.end() || ib == token_to_id_.end() || iab == token_to_id_.end())
        return d::fail(error, Status::kErrorFormat,
                       "merge " + std::to_string(rank) + " '" + a + " " + b + "' uses a token missing from the vocab");
      merges_.emplace(pair_key(ia->second, ib->second), Merge{rank, iab->second});  // first (lowest) rank wins
      ++rank;
    }
    return Status::kSuccess;
  }

  Status parse(std::string_view json_text, std::string* error) {
    namespace d = tokenizer_detail;
    JsonValue root;
    std::string jerr;
    if (parse_json(json_text, &root, &jerr) != Status::kSuccess) return d::fail(error, Status::kErrorFormat, jerr);
    if (!root.is_object()) return d::fail(error, Status::kErrorFormat, "top level is not an object");
    QUAMBA_RETURN_IF_ERROR(parse_model(root.find("model"), error));
    QUAMBA_RETURN_IF_ERROR(check_normalizer(root.find("normalizer"), error));
    QUAMBA_RETURN_IF_ERROR(parse_pre_tokenizer(root.find("pre_tokenizer"), error));
    if (const JsonValue* dec = root.find("decoder"); dec != nullptr && !dec->is_null()) {
      std::string type;
      QUAMBA_RETURN_IF_ERROR(expect_type(dec, "decoder", &type, error));
      if (type != "ByteLevel")
        return d::fail(error, Status::kErrorNotSupported, "decoder type '" + type + "'; only ByteLevel is supported");
    }

    if (const JsonValue* at = root.find("added_tokens"); at != nullptr && !at->is_null()) {
      if (!at->is_array()) return d::fail(error, Status::kErrorFormat, "\"added_tokens\" is not an array");
      for (const JsonValue& a : at->items()) {
        const std::string where = "added_tokens[" + std::to_string(added_.size()) + "]";
        if (!a.is_object()) return d::fail(error, Status::kErrorFormat, where + " is not an object");
        const JsonValue* id = a.find("id");
        const JsonValue* content = a.find("content");
        if (id == nullptr || !id->is_int()) return d::fail(error, Status::kErrorFormat, where + " has no integer \"id\"");
        if (content == nullptr || !content->is_string() || content->as_string().empty())
          return d::fail(error, Status::kErrorFormat, where + " has no non-empty string \"content\"");
        AddedToken t;
        t.content = content->as_string();
        std::string e;
        Status s = get_bool(a, "special", false, &t.special, &e);
        if (s == Status::kSuccess) s = get_bool(a, "normalized", !t.special, &t.normalized, &e);
        if (s != Status::kSuccess) return d::fail(error, s, where + ": " + e);
        for (const char* key : {"lstrip", "rstrip", "single_word"}) {
          bool flag = false;
          if ((s = get_bool(a, key, false, &flag, &e)) != Status::kSuccess) return d::fail(error, s, where + ": " + e);
          if (flag) return d::fail(error, Status::kErrorNotSupported, where + ": \"" + key + "\": true is not supported");
        }
        if ((s = set_token(t.content, id->as_int(), false, &e)) != Status::kSuccess)
          return d::fail(error, s, where + ": " + e);
        t.id = static_cast<int32_t>(id->as_int());
        added_.push_back(std::move(t));
      }
    }
    for (const AddedToken& t : added_) {
      (t.special || !t.normalized ? pass1_ : pass2_).push_back(&t);
      if (t.special) is_special_[static_cast<size_t>(t.id)] = 1;
    }

    // Decoded bytes of every id: byte-level symbols back to bytes; a token with a character
    // outside the byte map keeps its raw UTF-8.
    std::unordered_map<uint32_t, unsigned char> cp_to_byte;
    for (unsigned b = 0; b < 256; ++b) cp_to_byte[d::byte_to_code_point(b)] = static_cast<unsigned char>(b);
    token_bytes_.assign(id_to_token_.size(), std::string());
    for (size_t id = 0; id < id_to_token_.size(); ++id) {
      if (!present_[id]) continue;
      const std::string& tok = id_to_token_[id];
      std::string bytes;
      bool mapped = true;
      for (size_t i = 0; i < tok.size() && mapped;) {
        const int n = d::utf8_sequence(tok, i);
        if (n < 0) return d::fail(error, Status::kErrorFormat, "token id " + std::to_string(id) + " is not valid UTF-8");
        uint32_t cp = static_cast<unsigned char>(tok[i]);
        if (n > 1) {
          cp &= (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
          for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(tok[i + k]) & 0x3f);
        }
        const auto it = cp_to_byte.find(cp);
        if (it == cp_to_byte.end()) mapped = false;
        else bytes.push_back(static_cast<char>(it->second));
        i += static_cast<size_t>(n);
      }
      token_bytes_[id] = mapped ? std::move(bytes) : tok;
    }

    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    regex_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(d::kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                               PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &errcode, &erroff, nullptr));
    if (!regex_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(errcode, msg, sizeof(msg));
      return d::fail(error, Status::kErrorInternal,
                     std::string("cannot compile the pre-tokenizer regex: ") + reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(regex_.get(), PCRE2_JIT_COMPLETE);  // the interpreter is used if JIT is unavailable
    cache_ = std::make_unique<Cache>();
    return Status::kSuccess;
  }
};

}  // namespace quamba::io
