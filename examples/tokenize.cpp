// quamba-tokenize: encodes lines of text with a Hugging Face tokenizer.json (byte-level BPE,
// include/quamba/io/tokenizer.hpp) and prints the token ids of each line, space-separated.
//
//   quamba-tokenize TOKENIZER_JSON [--json] [--decode] [--help]  < lines
//
// --json    each input line is a JSON string literal ("a\nb"), so that texts may hold newlines
//           or any other character; the empty line stands for no input.
// --decode  each input line is a space-separated list of ids; prints the decoded text as a JSON
//           string literal (UTF-8; quotes, backslashes and control characters escaped).
// Errors are one line on stderr ("error: ..."), exit status 1 (2 for a bad command line).
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "quamba/io/json.hpp"
#include "quamba/io/tokenizer.hpp"

namespace {

void print_help() {
  std::printf(
      "usage: quamba-tokenize TOKENIZER_JSON [--json] [--decode] [--help] < lines\n"
      "Encodes each line of standard input with the byte-level BPE tokenizer of TOKENIZER_JSON\n"
      "(a Hugging Face tokenizer.json) and prints its token ids, space-separated, one line each.\n"
      "  --json    each input line is a JSON string literal (for texts with newlines)\n"
      "  --decode  each input line is a list of ids; prints the decoded text as a JSON string\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  bool json_lines = false, decode = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      print_help();
      return 0;
    }
    if (a == "--json") {
      json_lines = true;
    } else if (a == "--decode") {
      decode = true;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "error: unknown flag '%s' (try --help)\n", argv[i]);
      return 2;
    } else if (path.empty()) {
      path = a;
    } else {
      std::fprintf(stderr, "error: more than one tokenizer path ('%s', '%s')\n", path.c_str(), argv[i]);
      return 2;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "error: missing TOKENIZER_JSON (try --help)\n");
    return 2;
  }

  quamba::io::BpeTokenizer tok;
  std::string msg;
  if (tok.load(path, &msg) != quamba::Status::kSuccess) {
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    return 1;
  }

  std::string line, out;
  std::vector<int32_t> ids;
  for (size_t lineno = 1; std::getline(std::cin, line); ++lineno) {
    out.clear();
    if (decode) {
      ids.clear();
      std::istringstream in(line);
      long long v;
      while (in >> v) {
        if (v < INT32_MIN || v > INT32_MAX) v = -1;  // decode() reports it as out of range
        ids.push_back(static_cast<int32_t>(v));
      }
      if (!in.eof()) {
        std::fprintf(stderr, "error: line %zu: not a list of integer ids\n", lineno);
        return 1;
      }
      std::string text;
      if (tok.decode(ids, &text, &msg) != quamba::Status::kSuccess) {
        std::fprintf(stderr, "error: line %zu: %s\n", lineno, msg.c_str());
        return 1;
      }
      quamba::io::json_append_quoted(&out, text);
    } else {
      std::string text = line;
      if (json_lines && !line.empty()) {
        quamba::io::JsonValue v;
        if (quamba::io::parse_json(line, &v, &msg) != quamba::Status::kSuccess || !v.is_string()) {
          std::fprintf(stderr, "error: line %zu: not a JSON string literal%s%s\n", lineno,
                       msg.empty() ? "" : ": ", msg.c_str());
          return 1;
        }
        text = v.as_string();
      }
      if (tok.encode(text, &ids, &msg) != quamba::Status::kSuccess) {
        std::fprintf(stderr, "error: line %zu: %s\n", lineno, msg.c_str());
        return 1;
      }
      for (size_t k = 0; k < ids.size(); ++k) {
        if (k) out.push_back(' ');
        out += std::to_string(ids[k]);
      }
    }
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
  return 0;
}
