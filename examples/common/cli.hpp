// examples/common/cli.hpp: the command line of the quamba tools (llama.cpp style).
//
// Every tool declares its flags on a Cli; values come as `--flag VALUE` or `--flag=VALUE`
// (short names too: `-n 32`), booleans as bare `--flag`. Numbers are checked for syntax and
// range, enumerations for membership. Any problem is ONE line on stderr,
//   <program>: error: <what> (try --help)
// and parse() returns kExitUsage (2); --help / -h prints the usage and returns kExitHelp.
// Tools exit with 1 for errors after the command line (missing files, bad data).
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <string>
#include <vector>

namespace quamba::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// The one-line error of every tool; returns `code` so that `return fail(...)` ends main.
inline int fail_line(const std::string& prog, int code, const std::string& msg) {
  std::string line = msg;
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), line.c_str());
  std::fflush(stderr);
  return code;
}

// Runs a tool's body; an exception that escapes it (out of memory for absurd sizes, ...) becomes
// the one-line error too, never an abort.
// A tool that succeeded but whose stdout could not be written (a full disk, a closed pipe or
// descriptor) fails with the one-line error too, so that lost output is never silent.
template <typename F>
int guarded_main(const char* prog, int argc, char** argv, F&& body) {
  try {
    const int code = body(argc, argv);
    if (code == kExitOk) {
      errno = 0;
      if (std::fflush(stdout) != 0 || std::ferror(stdout))
        return fail_line(prog, kExitError,
                         std::string("cannot write the output to stdout") + (errno ? std::string(": ") + std::strerror(errno) : ""));
    }
    return code;
  } catch (const std::bad_alloc&) {
    return fail_line(prog, kExitError, "out of memory (are the sizes on the command line sensible?)");
  } catch (const std::exception& e) {
    return fail_line(prog, kExitError, std::string("unexpected failure: ") + e.what());
  }
}

inline bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0') return false;
  *out = v;
  return true;
}

inline bool parse_real(const std::string& s, double* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end == s.c_str() || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// Splits "a,b,c" (empty items are an error for the caller to report).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

class Cli {
 public:
  enum Result { kContinue = -1 };

  Cli(std::string prog, std::string synopsis, std::string description)
      : prog_(std::move(prog)), synopsis_(std::move(synopsis)), description_(std::move(description)) {}

  const std::string& prog() const { return prog_; }

  // A boolean switch.
  void flag(const std::string& names, bool* v, const std::string& help) {
    add(names, "", help, [v](const std::string&, std::string*) {
      *v = true;
      return true;
    }, false);
  }
  // A string value (non-empty unless allow_empty).
  void opt(const std::string& names, std::string* v, const std::string& meta, const std::string& help,
           bool allow_empty = false) {
    add(names, meta, help, [v, allow_empty](const std::string& s, std::string* why) {
      if (s.empty() && !allow_empty) {
        *why = "an empty value";
        return false;
      }
      *v = s;
      return true;
    });
  }
  // A repeatable string value (each occurrence appends).
  void opt_multi(const std::string& names, std::vector<std::string>* v, const std::string& meta, const std::string& help) {
    add(names, meta, help, [v](const std::string& s, std::string* why) {
      if (s.empty()) {
        *why = "an empty value";
        return false;
      }
      v->push_back(s);
      return true;
    });
  }
  // An integer in [lo, hi].
  void opt_int(const std::string& names, int64_t* v, int64_t lo, int64_t hi, const std::string& meta,
               const std::string& help) {
    add(names, meta, help, [v, lo, hi](const std::string& s, std::string* why) {
      int64_t x = 0;
      if (!parse_int(s, &x)) {
        *why = "'" + s + "', expected an integer";
        return false;
      }
      if (x < lo || x > hi) {
        *why = std::to_string(x) + ", expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        return false;
      }
      *v = x;
      return true;
    });
  }
  // A real number; lo/hi bounds, each open or closed ("(0, 1]" = lo_open, !hi_open).
  void opt_real(const std::string& names, double* v, double lo, bool lo_open, double hi, bool hi_open,
                const std::string& meta, const std::string& help) {
    add(names, meta, help, [=](const std::string& s, std::string* why) {
      double x = 0;
      if (!parse_real(s, &x)) {
        *why = "'" + s + "', expected a number";
        return false;
      }
      const bool ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
      if (!ok) {
        *why = s + ", expected a number in " + std::string(lo_open ? "(" : "[") + num(lo) + ", " + num(hi) +
               (hi_open ? ")" : "]");
        return false;
      }
      *v = x;
      return true;
    });
  }
  // One of `choices`.
  void opt_choice(const std::string& names, std::string* v, const std::vector<std::string>& choices,
                  const std::string& help) {
    std::string meta;
    for (const auto& c : choices) meta += (meta.empty() ? "" : "|") + c;
    add(names, meta, help, [v, choices, meta](const std::string& s, std::string* why) {
      for (const auto& c : choices)
        if (s == c) {
          *v = s;
          return true;
        }
      *why = "'" + s + "', expected one of " + meta;
      return false;
    });
  }
  // A comma-separated list of integers, each in [lo, hi].
  void opt_int_list(const std::string& names, std::vector<int64_t>* v, int64_t lo, int64_t hi, const std::string& meta,
                    const std::string& help) {
    add(names, meta, help, [v, lo, hi](const std::string& s, std::string* why) {
      std::vector<int64_t> out;
      for (const auto& item : split_list(s)) {
        int64_t x = 0;
        if (!parse_int(item, &x) || x < lo || x > hi) {
          *why = "'" + s + "', expected a comma-separated list of integers in [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + "]";
          return false;
        }
        out.push_back(x);
      }
      *v = out;
      return true;
    });
  }

  // Whether the flag (any of its names) was given on the command line.
  bool given(const std::string& name) const {
    for (const auto& f : flags_)
      if (f.seen)
        for (const auto& n : f.names)
          if (n == name) return true;
    return false;
  }

  void print_help() const {
    std::printf("usage: %s %s\n%s\n\noptions:\n", prog_.c_str(), synopsis_.c_str(), description_.c_str());
    for (const auto& f : flags_) {
      std::string left;
      for (const auto& n : f.names) left += (left.empty() ? "" : ", ") + n;
      if (!f.meta.empty()) left += " " + f.meta;
      if (left.size() < 28) left.resize(28, ' ');
      else left += "\n" + std::string(30, ' ');
      std::printf("  %s%s\n", left.c_str(), f.help.c_str());
    }
    std::printf("  %-28s%s\n", "-h, --help", "print this help and exit");
  }

  // kContinue to go on, else the exit code (kExitOk after --help, kExitUsage after an error).
  int parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        print_help();
        return kExitOk;
      }
      std::string value;
      bool has_value = false;
      if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
        const size_t eq = a.find('=');
        if (eq != std::string::npos) {
          value = a.substr(eq + 1);
          a = a.substr(0, eq);
          has_value = true;
        }
      }
      if (a.empty() || a[0] != '-' || a == "-")
        return fail_line(prog_, kExitUsage, "unexpected argument '" + a + "' (try --help)");
      Flag* f = find(a);
      if (!f) return fail_line(prog_, kExitUsage, "unknown flag '" + a + "' (try --help)");
      if (f->takes_value && !has_value) {
        if (i + 1 >= argc) return fail_line(prog_, kExitUsage, a + " needs a value (try --help)");
        value = argv[++i];
      } else if (!f->takes_value && has_value) {
        return fail_line(prog_, kExitUsage, a + " takes no value (try --help)");
      }
      std::string why;
      if (!f->set(value, &why)) return fail_line(prog_, kExitUsage, a + ": " + why + " (try --help)");
      f->seen = true;
    }
    return kContinue;
  }

 private:
  struct Flag {
    std::vector<std::string> names;
    std::string meta, help;
    std::function<bool(const std::string&, std::string*)> set;
    bool takes_value = true, seen = false;
  };

  static std::string num(double x) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", x);
    return buf;
  }

  void add(const std::string& names, const std::string& meta, const std::string& help,
           std::function<bool(const std::string&, std::string*)> set, bool takes_value = true) {
    Flag f;
    f.names = split_list(names);
    f.meta = meta;
    f.help = help;
    f.set = std::move(set);
    f.takes_value = takes_value;
    flags_.push_back(std::move(f));
  }

  Flag* find(const std::string& name) {
    for (auto& f : flags_)
      for (const auto& n : f.names)
        if (n == name) return &f;
    return nullptr;
  }

  std::string prog_, synopsis_, description_;
  std::vector<Flag> flags_;
};

}  // namespace quamba::tools
