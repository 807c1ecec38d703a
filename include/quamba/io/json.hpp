// quamba/io/json.hpp: a small strict JSON reader (RFC 8259) for checkpoint headers and configs.
//
// Input: a byte buffer (pointer + size, need not be NUL-terminated; embedded NULs are data).
// The parser never reads outside [data, data + size). It accepts exactly one JSON value with
// optional surrounding whitespace (space, tab, CR, LF) and rejects anything else:
//   - trailing characters, trailing commas, comments, single quotes, NaN/Infinity literals;
//   - numbers with leading zeros, a bare '-', '1.', '.5', an exponent without digits;
//   - strings with raw control characters (< 0x20), invalid escapes, unpaired surrogates in
//     \uXXXX escapes, or invalid UTF-8 (overlong forms, encoded surrogates, > U+10FFFF);
//   - duplicate keys within one object;
//   - arrays/objects nested deeper than max_depth (the top-level container is depth 1).
// Numbers: an integer literal (no fraction, no exponent) that fits int64 is stored as kInt;
// every other number is stored as kDouble (parsed with std::from_chars: locale-independent,
// correctly rounded). A number whose magnitude overflows double is rejected.
// Strings are stored as UTF-8 (\uXXXX escapes and surrogate pairs are decoded).
// Objects keep their members in document order.
//
// Errors return Status::kErrorFormat and, when `error` is non-null, a message of the form
// "JSON: <what> at byte <offset> (line <l>, column <c>)". No function here throws, except
// std::bad_alloc from the standard containers, which parse_json converts to kErrorFormat.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "quamba/core/status.hpp"

namespace quamba::io {

struct JsonMember;

class JsonValue {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_double() const { return type_ == Type::kDouble; }
  bool is_number() const { return type_ == Type::kInt || type_ == Type::kDouble; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Accessors return a neutral value when the type does not match; check the type first.
  bool as_bool() const { return type_ == Type::kBool && bool_; }
  int64_t as_int() const { return type_ == Type::kInt ? int_ : 0; }
  double as_double() const {
    return type_ == Type::kDouble ? double_ : (type_ == Type::kInt ? static_cast<double>(int_) : 0.0);
  }
  const std::string& as_string() const { return string_; }
  const std::vector<JsonValue>& items() const { return items_; }
  const std::vector<JsonMember>& members() const { return members_; }
  size_t size() const { return type_ == Type::kArray ? items_.size() : members_.size(); }

  // Member lookup in an object (linear; nullptr when absent or when this is not an object).
  inline const JsonValue* find(std::string_view key) const;

  // Byte offset of the first character of this value in the parsed buffer.
  size_t offset() const { return offset_; }

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0.0;
  size_t offset_ = 0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<JsonMember> members_;
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

inline const JsonValue* JsonValue::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const JsonMember& m : members_)
    if (m.key == key) return &m.value;
  return nullptr;
}

inline constexpr int kJsonDefaultMaxDepth = 64;

// Returns "line L, column C" (1-based, columns in bytes) of byte `offset` in the buffer.
inline std::string json_line_column(const char* data, size_t size, size_t offset) {
  size_t line = 1, col = 1;
  const size_t end = offset < size ? offset : size;
  for (size_t i = 0; i < end; ++i) {
    if (data[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

// Appends code point `cp` (at most 0x10FFFF, not a surrogate) to `s` as UTF-8.
inline void append_utf8(std::string* s, uint32_t cp) {
  if (cp < 0x80) {
    s->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    s->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    s->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    s->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    s->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    s->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    s->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

class JsonParser {
 public:
  JsonParser(const char* data, size_t size, int max_depth) : p_(data), n_(size), max_depth_(max_depth) {}

  Status parse(JsonValue* out, std::string* error) {
    bool good = false;
    try {
      good = parse_value(out, 0);
      if (good) {
        skip_ws();
        if (i_ != n_) good = fail("trailing characters after the JSON value");
      }
    } catch (const std::bad_alloc&) {
      good = fail("out of memory");
    }
    if (good) return Status::kSuccess;
    if (error)
      *error = "JSON: " + msg_ + " at byte " + std::to_string(err_pos_) + " (" +
               json_line_column(p_, n_, err_pos_) + ")";
    return Status::kErrorFormat;
  }

 private:
  const char* p_;
  size_t n_;
  size_t i_ = 0;
  int max_depth_;
  std::string msg_;
  size_t err_pos_ = 0;

  bool fail(const std::string& msg) { return fail_at(msg, i_); }
  bool fail_at(const std::string& msg, size_t pos) {
    if (msg_.empty()) {
      msg_ = msg;
      err_pos_ = pos;
    }
    return false;
  }
  bool at_end() const { return i_ >= n_; }
  unsigned char peek() const { return static_cast<unsigned char>(p_[i_]); }  // only when !at_end()
  static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

  void skip_ws() {
    while (i_ < n_) {
      const char c = p_[i_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++i_;
    }
  }

  bool parse_value(JsonValue* v, int depth) {
    skip_ws();
    if (at_end()) return fail("unexpected end of input, expected a value");
    v->offset_ = i_;
    const unsigned char c = peek();
    switch (c) {
      case '{': return parse_object(v, depth + 1);
      case '[': return parse_array(v, depth + 1);
      case '"':
        v->type_ = JsonValue::Type::kString;
        return parse_string(&v->string_);
      case 't':
        v->type_ = JsonValue::Type::kBool;
        v->bool_ = true;
        return parse_literal("true");
      case 'f':
        v->type_ = JsonValue::Type::kBool;
        v->bool_ = false;
        return parse_literal("false");
      case 'n':
        v->type_ = JsonValue::Type::kNull;
        return parse_literal("null");
      default:
        if (c == '-' || is_digit(c)) return parse_number(v);
        return fail("unexpected character, expected a value");
    }
  }

  bool parse_literal(const char* lit) {
    const size_t len = std::strlen(lit);
    if (n_ - i_ < len || std::memcmp(p_ + i_, lit, len) != 0) return fail("invalid literal");
    i_ += len;
    return true;
  }

  bool parse_object(JsonValue* v, int depth) {
    if (depth > max_depth_) return fail("nesting deeper than " + std::to_string(max_depth_) + " levels");
    v->type_ = JsonValue::Type::kObject;
    ++i_;  // '{'
    skip_ws();
    if (!at_end() && peek() == '}') {
      ++i_;
      return true;
    }
    std::unordered_set<std::string> seen;
    for (;;) {
      skip_ws();
      if (at_end()) return fail("unexpected end of input in object");
      if (peek() != '"') return fail("expected a string key");
      const size_t key_pos = i_;
      std::string key;
      if (!parse_string(&key)) return false;
      if (!seen.insert(key).second) return fail_at("duplicate key \"" + key + "\"", key_pos);
      skip_ws();
      if (at_end() || peek() != ':') return fail("expected ':' after object key");
      ++i_;
      v->members_.push_back(JsonMember{std::move(key), JsonValue()});
      if (!parse_value(&v->members_.back().value, depth)) return false;
      skip_ws();
      if (at_end()) return fail("unexpected end of input in object");
      const unsigned char c = peek();
      ++i_;
      if (c == '}') return true;
      if (c != ',') {
        --i_;
        return fail("expected ',' or '}' in object");
      }
    }
  }

  bool parse_array(JsonValue* v, int depth) {
    if (depth > max_depth_) return fail("nesting deeper than " + std::to_string(max_depth_) + " levels");
    v->type_ = JsonValue::Type::kArray;
    ++i_;  // '['
    skip_ws();
    if (!at_end() && peek() == ']') {
      ++i_;
      return true;
    }
    for (;;) {
      v->items_.emplace_back();
      if (!parse_value(&v->items_.back(), depth)) return false;
      skip_ws();
      if (at_end()) return fail("unexpected end of input in array");
      const unsigned char c = peek();
      ++i_;
      if (c == ']') return true;
      if (c != ',') {
        --i_;
        return fail("expected ',' or ']' in array");
      }
    }
  }

  bool parse_hex4(uint32_t* out) {
    if (n_ - i_ < 4) return fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const unsigned char c = static_cast<unsigned char>(p_[i_]);
      uint32_t d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return fail("invalid hex digit in \\u escape");
      v = (v << 4) | d;
      ++i_;
    }
    *out = v;
    return true;
  }

  // Validates one raw UTF-8 sequence starting at i_ (lead byte >= 0x80) and appends it.
  bool copy_utf8_sequence(std::string* s) {
    const unsigned char c0 = peek();
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c0 >= 0xc2 && c0 <= 0xdf) {
      len = 2;
    } else if (c0 >= 0xe0 && c0 <= 0xef) {
      len = 3;
      if (c0 == 0xe0) lo = 0xa0;       // overlong
      if (c0 == 0xed) hi = 0x9f;       // UTF-16 surrogates
    } else if (c0 >= 0xf0 && c0 <= 0xf4) {
      len = 4;
      if (c0 == 0xf0) lo = 0x90;       // overlong
      if (c0 == 0xf4) hi = 0x8f;       // > U+10FFFF
    } else {
      return fail("invalid UTF-8 lead byte in string");
    }
    if (n_ - i_ < len) return fail("truncated UTF-8 sequence in string");
    for (size_t k = 1; k < len; ++k) {
      const unsigned char ck = static_cast<unsigned char>(p_[i_ + k]);
      const unsigned char l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xbf;
      if (ck < l || ck > h) return fail_at("invalid UTF-8 continuation byte in string", i_ + k);
    }
    s->append(p_ + i_, len);
    i_ += len;
    return true;
  }

  bool parse_string(std::string* s) {
    ++i_;  // opening quote
    for (;;) {
      if (at_end()) return fail("unterminated string");
      const unsigned char c = peek();
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return fail("unescaped control character in string");
      if (c >= 0x80) {
        if (!copy_utf8_sequence(s)) return false;
        continue;
      }
      if (c != '\\') {
        s->push_back(static_cast<char>(c));
        ++i_;
        continue;
      }
      const size_t esc_pos = i_;
      ++i_;
      if (at_end()) return fail("unterminated escape in string");
      const unsigned char e = peek();
      ++i_;
      switch (e) {
        case '"': s->push_back('"'); break;
        case '\\': s->push_back('\\'); break;
        case '/': s->push_back('/'); break;
        case 'b': s->push_back('\b'); break;
        case 'f': s->push_back('\f'); break;
        case 'n': s->push_back('\n'); break;
        case 'r': s->push_back('\r'); break;
        case 't': s->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!parse_hex4(&cp)) return false;
          if (cp >= 0xdc00 && cp <= 0xdfff) return fail_at("unpaired low surrogate in \\u escape", esc_pos);
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (n_ - i_ < 2 || p_[i_] != '\\' || p_[i_ + 1] != 'u')
              return fail_at("high surrogate not followed by a low surrogate escape", esc_pos);
            i_ += 2;
            uint32_t lo;
            if (!parse_hex4(&lo)) return false;
            if (lo < 0xdc00 || lo > 0xdfff)
              return fail_at("high surrogate not followed by a low surrogate escape", esc_pos);
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          append_utf8(s, cp);
          break;
        }
        default: return fail_at("invalid escape sequence in string", esc_pos);
      }
    }
  }

  // For a syntactically valid number token: floor(log10(|value|)) of its first nonzero digit,
  // saturated to +-2^40 (only its sign matters to the caller).
  static int64_t decimal_magnitude(const char* first, const char* last) {
    const char* q = first;
    if (*q == '-') ++q;
    int64_t int_digits = 0, lead = -1;  // lead: index of the first nonzero digit
    bool in_frac = false;
    int64_t frac_index = 0;
    for (; q < last && *q != 'e' && *q != 'E'; ++q) {
      if (*q == '.') {
        in_frac = true;
        continue;
      }
      if (!in_frac) {
        if (lead < 0 && *q != '0') lead = int_digits;
        ++int_digits;
      } else {
        ++frac_index;
        if (lead < 0 && *q != '0') lead = int_digits + frac_index - 1;
      }
    }
    if (lead < 0) return -(int64_t{1} << 40);  // the value is zero
    int64_t exp = 0;
    if (q < last) {
      ++q;
      bool neg = false;
      if (*q == '+' || *q == '-') neg = (*q++ == '-');
      for (; q < last; ++q) {
        if (exp < (int64_t{1} << 40)) exp = exp * 10 + (*q - '0');
      }
      if (neg) exp = -exp;
    }
    return (int_digits - 1 - lead) + exp;
  }

  bool parse_number(JsonValue* v) {
    const size_t start = i_;
    if (peek() == '-') ++i_;
    if (at_end() || !is_digit(peek())) return fail("expected a digit in number");
    if (peek() == '0') {
      ++i_;
      if (!at_end() && is_digit(peek())) return fail_at("leading zero in number", start);
    } else {
      while (!at_end() && is_digit(peek())) ++i_;
    }
    bool integral = true;
    if (!at_end() && peek() == '.') {
      integral = false;
      ++i_;
      if (at_end() || !is_digit(peek())) return fail("expected a digit after the decimal point");
      while (!at_end() && is_digit(peek())) ++i_;
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      integral = false;
      ++i_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++i_;
      if (at_end() || !is_digit(peek())) return fail("expected a digit in the exponent");
      while (!at_end() && is_digit(peek())) ++i_;
    }
    const char* first = p_ + start;
    const char* last = p_ + i_;
    if (integral) {
      int64_t iv = 0;
      const auto r = std::from_chars(first, last, iv);
      if (r.ec == std::errc() && r.ptr == last) {
        v->type_ = JsonValue::Type::kInt;
        v->int_ = iv;
        return true;
      }
      // Out of int64 range: fall through and keep it as a double.
    }
    double dv = 0.0;
    const auto r = std::from_chars(first, last, dv);
    if (r.ec == std::errc::result_out_of_range) {
      // Overflow is an error; underflow (a magnitude below the smallest subnormal) reads as a
      // signed zero. Tell them apart by the decimal exponent of the first nonzero digit.
      if (decimal_magnitude(first, last) > 0) return fail_at("number out of range for double", start);
      v->type_ = JsonValue::Type::kDouble;
      v->double_ = (*first == '-') ? -0.0 : 0.0;
      return true;
    }
    if (r.ec != std::errc() || r.ptr != last) return fail_at("invalid number", start);
    v->type_ = JsonValue::Type::kDouble;
    v->double_ = dv;
    return true;
  }
};

// Parses `size` bytes at `data` as one JSON value. Returns kSuccess or kErrorFormat (message in
// *error when non-null); *out is unspecified on error.
inline Status parse_json(const char* data, size_t size, JsonValue* out, std::string* error = nullptr,
                         int max_depth = kJsonDefaultMaxDepth) {
  if (out == nullptr || (data == nullptr && size != 0)) {
    if (error) *error = "JSON: null argument";
    return Status::kErrorInvalidArgument;
  }
  *out = JsonValue();
  JsonParser parser(data == nullptr ? "" : data, size, max_depth);
  return parser.parse(out, error);
}

inline Status parse_json(std::string_view text, JsonValue* out, std::string* error = nullptr,
                         int max_depth = kJsonDefaultMaxDepth) {
  return parse_json(text.data(), text.size(), out, error, max_depth);
}

// Writes `s` as a JSON string literal (with quotes): escapes '"', '\\' and control characters;
// other bytes (UTF-8) pass through unchanged.
inline void json_append_quoted(std::string* dst, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  dst->push_back('"');
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': dst->append("\\\""); break;
      case '\\': dst->append("\\\\"); break;
      case '\n': dst->append("\\n"); break;
      case '\r': dst->append("\\r"); break;
      case '\t': dst->append("\\t"); break;
      default:
        if (c < 0x20) {
          dst->append("\\u00");
          dst->push_back(kHex[c >> 4]);
          dst->push_back(kHex[c & 15]);
        } else {
          dst->push_back(ch);
        }
    }
  }
  dst->push_back('"');
}

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
inline bool is_valid_utf8(std::string_view s) {
  std::string quoted;
  json_append_quoted(&quoted, s);
  JsonValue v;
  return parse_json(quoted, &v) == Status::kSuccess;
}

}  // namespace quamba::io
