// quamba/io/safetensors.hpp: reading and writing .safetensors files (host only).
//
// File layout: an 8-byte little-endian unsigned header length N, then N bytes of UTF-8 JSON,
// then the data section. The header is an object mapping tensor name -> {"dtype": "F32",
// "shape": [d0, d1, ...], "data_offsets": [begin, end]}, where [begin, end) are byte offsets
// relative to the start of the data section, plus an optional "__metadata__" object of
// string -> string. Tensor bytes are row-major and little-endian.
//
// SafetensorsFile::open reads only the 8-byte length and the header, and validates:
//   - N > 0, N <= kSafetensorsMaxHeaderBytes (100 MB), N <= file size - 8;
//   - the header is strict JSON (quamba/io/json.hpp), an object, names unique;
//   - each entry has exactly the keys dtype, shape, data_offsets; dtype is a known name;
//     shape entries are integers >= 0 and numel does not overflow int64; data_offsets are two
//     integers with begin <= end; end - begin == numel * sizeof(dtype);
//   - every range lies inside the data section and no two non-empty ranges overlap (gaps and
//     trailing bytes after the last tensor are accepted).
// Tensor data are read on demand, one byte range per tensor (the file is never read whole).
//
// Status codes: kErrorIo when a file is missing, unreadable, or shorter than its header says
// (header length beyond the file, a tensor ending beyond the file: a truncated file);
// kErrorFormat when the file is readable but its content is malformed or does not match what
// the caller asked for (unknown tensor, wrong dtype, wrong shape); kErrorInvalidArgument for
// null output pointers. Every failing call writes a message to *error when error is non-null.
// Nothing here throws: allocation failure is reported as kErrorIo ("out of memory").
//
// SafetensorsWriter collects tensors in memory and writes them in insertion order, contiguous,
// with the header padded by spaces so the data section starts 8-byte aligned (as the reference
// implementation does), to a temporary file next to the target, then renames it over the
// target (atomic on POSIX file systems).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define QUAMBA_IO_HAS_POSIX 1
#else
#define QUAMBA_IO_HAS_POSIX 0
#endif

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/io/json.hpp"

namespace quamba::io {

inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100000000ull;

enum class Dtype : int {
  kBool,
  kU8,
  kI8,
  kF8E4M3,
  kF8E5M2,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64,
};

inline constexpr Dtype kAllDtypes[] = {Dtype::kBool, Dtype::kU8,  Dtype::kI8,   Dtype::kF8E4M3, Dtype::kF8E5M2,
                                       Dtype::kI16,  Dtype::kU16, Dtype::kF16,  Dtype::kBF16,   Dtype::kI32,
                                       Dtype::kU32,  Dtype::kF32, Dtype::kI64,  Dtype::kU64,    Dtype::kF64};

// The dtype string used in safetensors headers.
inline const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::kBool: return "BOOL";
    case Dtype::kU8: return "U8";
    case Dtype::kI8: return "I8";
    case Dtype::kF8E4M3: return "F8_E4M3";
    case Dtype::kF8E5M2: return "F8_E5M2";
    case Dtype::kI16: return "I16";
    case Dtype::kU16: return "U16";
    case Dtype::kF16: return "F16";
    case Dtype::kBF16: return "BF16";
    case Dtype::kI32: return "I32";
    case Dtype::kU32: return "U32";
    case Dtype::kF32: return "F32";
    case Dtype::kI64: return "I64";
    case Dtype::kU64: return "U64";
    case Dtype::kF64: return "F64";
  }
  return "?";
}

// Bytes per element.
inline size_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::kBool:
    case Dtype::kU8:
    case Dtype::kI8:
    case Dtype::kF8E4M3:
    case Dtype::kF8E5M2: return 1;
    case Dtype::kI16:
    case Dtype::kU16:
    case Dtype::kF16:
    case Dtype::kBF16: return 2;
    case Dtype::kI32:
    case Dtype::kU32:
    case Dtype::kF32: return 4;
    case Dtype::kI64:
    case Dtype::kU64:
    case Dtype::kF64: return 8;
  }
  return 0;
}

inline bool parse_dtype(std::string_view s, Dtype* out) {
  for (const Dtype d : kAllDtypes) {
    if (s == dtype_name(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

// F32, F16 or BF16: the dtypes read_tensor_f32 converts.
inline bool is_float_dtype(Dtype d) { return d == Dtype::kF32 || d == Dtype::kF16 || d == Dtype::kBF16; }

inline std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// numel of a shape; false when a dimension is negative or the product overflows int64.
inline bool shape_numel(const std::vector<int64_t>& shape, int64_t* numel) {
  int64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && n > INT64_MAX / d) return false;
    n *= d;
  }
  *numel = n;
  return true;
}

namespace detail {

inline Status set_error(std::string* error, Status s, const std::string& msg) {
  if (error) *error = msg;
  return s;
}

inline std::string quote(const std::string& s) { return "'" + s + "'"; }

inline std::string errno_text() { return std::strerror(errno); }

// Little-endian decoders: independent of the host byte order.
inline uint16_t load_le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t load_le64(const unsigned char* p) {
  return static_cast<uint64_t>(load_le32(p)) | (static_cast<uint64_t>(load_le32(p + 4)) << 32);
}
inline void store_le16(unsigned char* p, uint16_t v) {
  p[0] = static_cast<unsigned char>(v);
  p[1] = static_cast<unsigned char>(v >> 8);
}
inline void store_le32(unsigned char* p, uint32_t v) {
  for (int k = 0; k < 4; ++k) p[k] = static_cast<unsigned char>(v >> (8 * k));
}
inline void store_le64(unsigned char* p, uint64_t v) {
  for (int k = 0; k < 8; ++k) p[k] = static_cast<unsigned char>(v >> (8 * k));
}

// Size of a regular file; kErrorIo when missing, not a regular file, or unreadable.
inline Status regular_file_size(const std::string& path, uint64_t* size, std::string* error) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st))
    return set_error(error, Status::kErrorIo, "cannot open " + quote(path) + ": no such file");
  if (!std::filesystem::is_regular_file(st))
    return set_error(error, Status::kErrorIo, "cannot open " + quote(path) + ": not a regular file");
  const uintmax_t n = std::filesystem::file_size(path, ec);
  if (ec) return set_error(error, Status::kErrorIo, "cannot stat " + quote(path) + ": " + ec.message());
  *size = static_cast<uint64_t>(n);
  return Status::kSuccess;
}

// Reads exactly n bytes at absolute offset `pos` of an open stream.
inline Status read_exact(std::ifstream& f, const std::string& path, uint64_t pos, void* dst, size_t n,
                         std::string* error) {
  f.clear();
  f.seekg(static_cast<std::streamoff>(pos), std::ios::beg);
  if (!f) return set_error(error, Status::kErrorIo, "cannot seek in " + quote(path) + " to byte " + std::to_string(pos));
  f.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  if (static_cast<size_t>(f.gcount()) != n)
    return set_error(error, Status::kErrorIo,
                     "short read in " + quote(path) + ": wanted " + std::to_string(n) + " bytes at byte " +
                         std::to_string(pos) + ", got " + std::to_string(f.gcount()) + " (file truncated?)");
  return Status::kSuccess;
}

}  // namespace detail

// One tensor of a safetensors header. begin/end are relative to the data section.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

class SafetensorsFile {
 public:
  // Opens and validates `path` (reads the length and the header only). On failure the object
  // is left empty (is_open() false).
  Status open(const std::string& path, std::string* error = nullptr) {
    close();
    Status s;
    try {
      s = open_impl(path, error);
    } catch (const std::bad_alloc&) {
      s = detail::set_error(error, Status::kErrorIo, "out of memory while reading " + detail::quote(path));
    }
    if (s != Status::kSuccess) close();
    return s;
  }

  void close() {
    path_.clear();
    file_size_ = 0;
    data_start_ = 0;
    tensors_.clear();
    index_.clear();
    metadata_.clear();
    open_ = false;
  }

  bool is_open() const { return open_; }
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t data_start() const { return data_start_; }  // 8 + header length
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // header order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const TensorInfo* find(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  // Looks up `name` and checks it has one of `dtypes` (empty: any) and `expected_shape`
  // (nullptr: any). kErrorFormat with a message naming the tensor otherwise.
  Status check_tensor(const std::string& name, const std::vector<Dtype>& dtypes,
                      const std::vector<int64_t>* expected_shape, const TensorInfo** info,
                      std::string* error = nullptr) const {
    if (!open_) return detail::set_error(error, Status::kErrorInvalidArgument, "safetensors file is not open");
    const TensorInfo* t = find(name);
    if (t == nullptr)
      return detail::set_error(error, Status::kErrorFormat,
                               "tensor " + detail::quote(name) + " not found in " + detail::quote(path_));
    if (!dtypes.empty() && std::find(dtypes.begin(), dtypes.end(), t->dtype) == dtypes.end()) {
      std::string want;
      for (size_t i = 0; i < dtypes.size(); ++i) want += (i ? (i + 1 == dtypes.size() ? " or " : ", ") : "") + std::string(dtype_name(dtypes[i]));
      return detail::set_error(error, Status::kErrorFormat,
                               "tensor " + detail::quote(name) + " in " + detail::quote(path_) + " has dtype " +
                                   dtype_name(t->dtype) + ", expected " + want);
    }
    if (expected_shape != nullptr && t->shape != *expected_shape)
      return detail::set_error(error, Status::kErrorFormat,
                               "tensor " + detail::quote(name) + " in " + detail::quote(path_) + " has shape " +
                                   shape_to_string(t->shape) + ", expected " + shape_to_string(*expected_shape));
    if (info) *info = t;
    return Status::kSuccess;
  }

  // Reads an F32, F16 or BF16 tensor converted to float (exact: every F16/BF16 value is an
  // F32 value). With expected_shape non-null the stored shape must equal it.
  Status read_tensor_f32(const std::string& name, std::vector<float>* out,
                         const std::vector<int64_t>* expected_shape, std::string* error = nullptr) const {
    if (out == nullptr) return detail::set_error(error, Status::kErrorInvalidArgument, "null output vector");
    const TensorInfo* t = nullptr;
    QUAMBA_RETURN_IF_ERROR(check_tensor(name, {Dtype::kF32, Dtype::kF16, Dtype::kBF16}, expected_shape, &t, error));
    try {
      out->assign(static_cast<size_t>(t->numel), 0.0f);
      std::ifstream f;
      QUAMBA_RETURN_IF_ERROR(open_stream(&f, error));
      // Chunks bound the staging buffer to 1 MiB whatever the tensor size.
      constexpr size_t kChunkElems = size_t{1} << 18;
      const size_t esize = dtype_size(t->dtype);
      std::vector<unsigned char> buf(std::min<size_t>(static_cast<size_t>(t->numel), kChunkElems) * esize);
      for (size_t e0 = 0; e0 < static_cast<size_t>(t->numel); e0 += kChunkElems) {
        const size_t ne = std::min<size_t>(kChunkElems, static_cast<size_t>(t->numel) - e0);
        QUAMBA_RETURN_IF_ERROR(detail::read_exact(f, path_, data_start_ + t->begin + e0 * esize, buf.data(), ne * esize, error));
        float* dst = out->data() + e0;
        const unsigned char* src = buf.data();
        if (t->dtype == Dtype::kF32) {
          for (size_t k = 0; k < ne; ++k) dst[k] = bits_float(detail::load_le32(src + 4 * k));
        } else if (t->dtype == Dtype::kF16) {
          for (size_t k = 0; k < ne; ++k) dst[k] = half_bits_to_float(detail::load_le16(src + 2 * k));
        } else {
          for (size_t k = 0; k < ne; ++k) dst[k] = bf16_bits_to_float(detail::load_le16(src + 2 * k));
        }
      }
    } catch (const std::bad_alloc&) {
      return detail::set_error(error, Status::kErrorIo, "out of memory reading tensor " + detail::quote(name));
    }
    return Status::kSuccess;
  }
  Status read_tensor_f32(const std::string& name, std::vector<float>* out, const std::vector<int64_t>& expected_shape,
                         std::string* error = nullptr) const {
    return read_tensor_f32(name, out, &expected_shape, error);
  }

  // Copies a tensor's bytes as stored (little-endian) into dst, which must hold exactly
  // nbytes() bytes. Any dtype.
  Status read_tensor_bytes(const std::string& name, void* dst, size_t dst_bytes, std::string* error = nullptr) const {
    if (dst == nullptr && dst_bytes != 0)
      return detail::set_error(error, Status::kErrorInvalidArgument, "null destination");
    const TensorInfo* t = nullptr;
    QUAMBA_RETURN_IF_ERROR(check_tensor(name, {}, nullptr, &t, error));
    if (dst_bytes != t->nbytes())
      return detail::set_error(error, Status::kErrorInvalidArgument,
                               "tensor " + detail::quote(name) + " has " + std::to_string(t->nbytes()) +
                                   " bytes, destination holds " + std::to_string(dst_bytes));
    if (dst_bytes == 0) return Status::kSuccess;
    std::ifstream f;
    QUAMBA_RETURN_IF_ERROR(open_stream(&f, error));
    return detail::read_exact(f, path_, data_start_ + t->begin, dst, dst_bytes, error);
  }

  // Reads the raw bytes of a tensor that must have dtype `dtype` and shape `expected_shape`
  // (nullptr: any shape).
  Status read_tensor_raw(const std::string& name, Dtype dtype, const std::vector<int64_t>* expected_shape,
                         std::vector<uint8_t>* out, std::string* error = nullptr) const {
    if (out == nullptr) return detail::set_error(error, Status::kErrorInvalidArgument, "null output vector");
    const TensorInfo* t = nullptr;
    QUAMBA_RETURN_IF_ERROR(check_tensor(name, {dtype}, expected_shape, &t, error));
    try {
      out->assign(static_cast<size_t>(t->nbytes()), 0);
    } catch (const std::bad_alloc&) {
      return detail::set_error(error, Status::kErrorIo, "out of memory reading tensor " + detail::quote(name));
    }
    return read_tensor_bytes(name, out->data(), out->size(), error);
  }

  // An I8 tensor as int8 values.
  Status read_tensor_i8(const std::string& name, std::vector<int8_t>* out, const std::vector<int64_t>* expected_shape,
                        std::string* error = nullptr) const {
    if (out == nullptr) return detail::set_error(error, Status::kErrorInvalidArgument, "null output vector");
    const TensorInfo* t = nullptr;
    QUAMBA_RETURN_IF_ERROR(check_tensor(name, {Dtype::kI8}, expected_shape, &t, error));
    try {
      out->assign(static_cast<size_t>(t->numel), 0);
    } catch (const std::bad_alloc&) {
      return detail::set_error(error, Status::kErrorIo, "out of memory reading tensor " + detail::quote(name));
    }
    return read_tensor_bytes(name, out->data(), out->size(), error);
  }

 private:
  std::string path_;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  bool open_ = false;

  Status open_stream(std::ifstream* f, std::string* error) const {
    f->open(path_, std::ios::binary);
    if (!f->is_open())
      return detail::set_error(error, Status::kErrorIo, "cannot open " + detail::quote(path_) + ": " + detail::errno_text());
    return Status::kSuccess;
  }

  Status fail(std::string* error, Status s, const std::string& msg) const {
    return detail::set_error(error, s, detail::quote(path_) + ": " + msg);
  }

  Status open_impl(const std::string& path, std::string* error) {
    path_ = path;
    QUAMBA_RETURN_IF_ERROR(detail::regular_file_size(path, &file_size_, error));
    if (file_size_ < 8)
      return fail(error, Status::kErrorIo,
                  "file is " + std::to_string(file_size_) + " bytes, too short for the 8-byte header length (truncated?)");
    std::ifstream f;
    QUAMBA_RETURN_IF_ERROR(open_stream(&f, error));
    unsigned char len_bytes[8];
    QUAMBA_RETURN_IF_ERROR(detail::read_exact(f, path_, 0, len_bytes, 8, error));
    const uint64_t n = detail::load_le64(len_bytes);
    if (n == 0) return fail(error, Status::kErrorFormat, "header length is 0");
    if (n > kSafetensorsMaxHeaderBytes)
      return fail(error, Status::kErrorFormat,
                  "header length " + std::to_string(n) + " exceeds the limit of " +
                      std::to_string(kSafetensorsMaxHeaderBytes) + " bytes (not a safetensors file?)");
    if (n > file_size_ - 8)
      return fail(error, Status::kErrorIo,
                  "header length " + std::to_string(n) + " exceeds the " + std::to_string(file_size_ - 8) +
                      " bytes after the length field (file truncated?)");
    std::string header(static_cast<size_t>(n), '\0');
    QUAMBA_RETURN_IF_ERROR(detail::read_exact(f, path_, 8, header.data(), header.size(), error));
    data_start_ = 8 + n;
    const uint64_t data_size = file_size_ - data_start_;

    JsonValue root;
    std::string jerr;
    if (parse_json(header, &root, &jerr) != Status::kSuccess)
      return fail(error, Status::kErrorFormat, "header is not valid JSON: " + jerr);
    if (!root.is_object()) return fail(error, Status::kErrorFormat, "header is not a JSON object");

    for (const JsonMember& m : root.members()) {
      if (m.key == "__metadata__") {
        if (!m.value.is_object()) return fail(error, Status::kErrorFormat, "__metadata__ is not an object");
        for (const JsonMember& kv : m.value.members()) {
          if (!kv.value.is_string())
            return fail(error, Status::kErrorFormat, "__metadata__ value of " + detail::quote(kv.key) + " is not a string");
          metadata_[kv.key] = kv.value.as_string();
        }
        continue;
      }
      TensorInfo t;
      QUAMBA_RETURN_IF_ERROR(parse_entry(m, data_size, &t, error));
      index_[t.name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }

    // Overlap: sort the non-empty ranges by start; each must start at or after the previous end.
    std::vector<size_t> order;
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (tensors_[i].nbytes() > 0) order.push_back(i);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].begin < tensors_[b].begin; });
    for (size_t k = 1; k < order.size(); ++k) {
      const TensorInfo& a = tensors_[order[k - 1]];
      const TensorInfo& b = tensors_[order[k]];
      if (b.begin < a.end)
        return fail(error, Status::kErrorFormat,
                    "data ranges of tensors " + detail::quote(a.name) + " [" + std::to_string(a.begin) + ", " +
                        std::to_string(a.end) + ") and " + detail::quote(b.name) + " [" + std::to_string(b.begin) +
                        ", " + std::to_string(b.end) + ") overlap");
    }
    open_ = true;
    return Status::kSuccess;
  }

  Status parse_entry(const JsonMember& m, uint64_t data_size, TensorInfo* t, std::string* error) const {
    const std::string where = "tensor " + detail::quote(m.key) + ": ";
    t->name = m.key;
    if (!m.value.is_object()) return fail(error, Status::kErrorFormat, where + "entry is not an object");
    const JsonValue* dtype = nullptr;
    const JsonValue* shape = nullptr;
    const JsonValue* offsets = nullptr;
    for (const JsonMember& f : m.value.members()) {
      if (f.key == "dtype") dtype = &f.value;
      else if (f.key == "shape") shape = &f.value;
      else if (f.key == "data_offsets") offsets = &f.value;
      else return fail(error, Status::kErrorFormat, where + "unknown key " + detail::quote(f.key));
    }
    if (!dtype || !shape || !offsets)
      return fail(error, Status::kErrorFormat,
                  where + "missing key " + detail::quote(!dtype ? "dtype" : (!shape ? "shape" : "data_offsets")));
    if (!dtype->is_string()) return fail(error, Status::kErrorFormat, where + "dtype is not a string");
    if (!parse_dtype(dtype->as_string(), &t->dtype))
      return fail(error, Status::kErrorFormat, where + "unknown dtype " + detail::quote(dtype->as_string()));
    if (!shape->is_array()) return fail(error, Status::kErrorFormat, where + "shape is not an array");
    for (const JsonValue& d : shape->items()) {
      if (!d.is_int()) return fail(error, Status::kErrorFormat, where + "shape entries must be integers");
      if (d.as_int() < 0)
        return fail(error, Status::kErrorFormat, where + "negative dimension " + std::to_string(d.as_int()) + " in shape");
      t->shape.push_back(d.as_int());
    }
    if (!shape_numel(t->shape, &t->numel))
      return fail(error, Status::kErrorFormat, where + "element count of shape " + shape_to_string(t->shape) + " overflows");
    if (!offsets->is_array() || offsets->size() != 2 || !offsets->items()[0].is_int() || !offsets->items()[1].is_int())
      return fail(error, Status::kErrorFormat, where + "data_offsets must be an array of two integers");
    const int64_t b = offsets->items()[0].as_int(), e = offsets->items()[1].as_int();
    if (b < 0 || e < b)
      return fail(error, Status::kErrorFormat,
                  where + "invalid data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "]");
    t->begin = static_cast<uint64_t>(b);
    t->end = static_cast<uint64_t>(e);
    const uint64_t esize = dtype_size(t->dtype);
    const uint64_t numel = static_cast<uint64_t>(t->numel);
    if (numel > UINT64_MAX / esize || numel * esize != t->nbytes())
      return fail(error, Status::kErrorFormat,
                  where + "data_offsets span " + std::to_string(t->nbytes()) + " bytes but shape " +
                      shape_to_string(t->shape) + " of " + dtype_name(t->dtype) + " needs " +
                      (numel > UINT64_MAX / esize ? std::string("more than 2^64") : std::to_string(numel * esize)));
    if (t->end > data_size)
      return fail(error, Status::kErrorIo,
                  where + "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                      ") reach beyond the data section of " + std::to_string(data_size) + " bytes (file truncated?)");
    return Status::kSuccess;
  }
};

class SafetensorsWriter {
 public:
  // Adds a tensor from little-endian bytes; nbytes must equal numel(shape) * dtype_size(dtype).
  Status add_tensor(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, const void* data,
                    size_t nbytes, std::string* error = nullptr) {
    try {
      QUAMBA_RETURN_IF_ERROR(check_new(name, dtype, shape, nbytes, error));
      if (data == nullptr && nbytes != 0)
        return detail::set_error(error, Status::kErrorInvalidArgument, "tensor " + detail::quote(name) + ": null data");
      Entry e{name, dtype, shape, {}};
      if (nbytes) e.bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
      names_.insert(name);
      entries_.push_back(std::move(e));
    } catch (const std::bad_alloc&) {
      return detail::set_error(error, Status::kErrorIo, "out of memory adding tensor " + detail::quote(name));
    }
    return Status::kSuccess;
  }

  // Adds float values stored as F32, F16 or BF16 (round to nearest even for the 16-bit types).
  Status add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape, const float* values, size_t count,
                        Dtype stored = Dtype::kF32, std::string* error = nullptr) {
    if (!is_float_dtype(stored))
      return detail::set_error(error, Status::kErrorInvalidArgument,
                               "tensor " + detail::quote(name) + ": float values cannot be stored as " + dtype_name(stored));
    if (values == nullptr && count != 0)
      return detail::set_error(error, Status::kErrorInvalidArgument, "tensor " + detail::quote(name) + ": null data");
    std::vector<uint8_t> bytes;
    try {
      bytes.resize(count * dtype_size(stored));
    } catch (const std::bad_alloc&) {
      return detail::set_error(error, Status::kErrorIo, "out of memory adding tensor " + detail::quote(name));
    }
    for (size_t i = 0; i < count; ++i) {
      if (stored == Dtype::kF32) detail::store_le32(bytes.data() + 4 * i, float_bits(values[i]));
      else if (stored == Dtype::kF16) detail::store_le16(bytes.data() + 2 * i, float_to_half_bits(values[i]));
      else detail::store_le16(bytes.data() + 2 * i, float_to_bf16_bits(values[i]));
    }
    return add_tensor(name, stored, shape, bytes.data(), bytes.size(), error);
  }
  Status add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values,
                        Dtype stored = Dtype::kF32, std::string* error = nullptr) {
    return add_tensor_f32(name, shape, values.data(), values.size(), stored, error);
  }

  Status add_tensor_i8(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int8_t>& values,
                       std::string* error = nullptr) {
    return add_tensor(name, Dtype::kI8, shape, values.data(), values.size(), error);
  }

  // Sets a "__metadata__" entry (string -> string; both must be valid UTF-8).
  Status set_metadata(const std::string& key, const std::string& value, std::string* error = nullptr) {
    if (!is_valid_utf8(key) || !is_valid_utf8(value))
      return detail::set_error(error, Status::kErrorInvalidArgument, "metadata key/value is not valid UTF-8");
    try {
      metadata_[key] = value;
    } catch (const std::bad_alloc&) {
      return detail::set_error(error, Status::kErrorIo, "out of memory");
    }
    return Status::kSuccess;
  }

  size_t num_tensors() const { return entries_.size(); }
  void clear() {
    entries_.clear();
    names_.clear();
    metadata_.clear();
  }

  // The header JSON this writer produces (without the 8-byte length), padded with spaces so
  // that 8 + size is a multiple of 8.
  std::string header_json() const {
    std::string h = "{";
    bool first = true;
    if (!metadata_.empty()) {
      h += "\"__metadata__\":{";
      bool f2 = true;
      for (const auto& kv : metadata_) {
        if (!f2) h += ",";
        f2 = false;
        json_append_quoted(&h, kv.first);
        h += ":";
        json_append_quoted(&h, kv.second);
      }
      h += "}";
      first = false;
    }
    uint64_t offset = 0;
    for (const Entry& e : entries_) {
      if (!first) h += ",";
      first = false;
      json_append_quoted(&h, e.name);
      h += ":{\"dtype\":\"";
      h += dtype_name(e.dtype);
      h += "\",\"shape\":[";
      for (size_t i = 0; i < e.shape.size(); ++i) {
        if (i) h += ",";
        h += std::to_string(e.shape[i]);
      }
      h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.bytes.size()) + "]}";
      offset += e.bytes.size();
    }
    h += "}";
    while ((8 + h.size()) % 8 != 0) h += ' ';
    return h;
  }

  // Writes the file: temporary file in the same directory, flushed (and fsync'ed on POSIX),
  // then renamed over `path`. On failure the temporary file is removed and `path` untouched.
  Status write(const std::string& path, std::string* error = nullptr) const {
    std::string tmp;
    try {
      const std::string header = header_json();
      if (header.size() > kSafetensorsMaxHeaderBytes)
        return detail::set_error(error, Status::kErrorInvalidArgument, "header exceeds the 100 MB limit");
#if QUAMBA_IO_HAS_POSIX
      tmp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
#else
      tmp = path + ".tmp";
#endif
      std::FILE* f = std::fopen(tmp.c_str(), "wb");
      if (f == nullptr)
        return detail::set_error(error, Status::kErrorIo, "cannot create " + detail::quote(tmp) + ": " + detail::errno_text());
      unsigned char len[8];
      detail::store_le64(len, header.size());
      bool good = std::fwrite(len, 1, 8, f) == 8;
      good = good && std::fwrite(header.data(), 1, header.size(), f) == header.size();
      for (const Entry& e : entries_) {
        if (!good) break;
        if (!e.bytes.empty()) good = std::fwrite(e.bytes.data(), 1, e.bytes.size(), f) == e.bytes.size();
      }
      good = good && std::fflush(f) == 0;
#if QUAMBA_IO_HAS_POSIX
      good = good && ::fsync(::fileno(f)) == 0;
#endif
      const std::string werr = good ? std::string() : detail::errno_text();
      if (std::fclose(f) != 0) good = false;
      if (!good) {
        std::remove(tmp.c_str());
        return detail::set_error(error, Status::kErrorIo, "cannot write " + detail::quote(tmp) + ": " + werr);
      }
      if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string rerr = detail::errno_text();
        std::remove(tmp.c_str());
        return detail::set_error(error, Status::kErrorIo,
                                 "cannot rename " + detail::quote(tmp) + " to " + detail::quote(path) + ": " + rerr);
      }
    } catch (const std::bad_alloc&) {
      if (!tmp.empty()) std::remove(tmp.c_str());
      return detail::set_error(error, Status::kErrorIo, "out of memory writing " + detail::quote(path));
    }
    return Status::kSuccess;
  }

 private:
  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_;

  Status check_new(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, size_t nbytes,
                   std::string* error) const {
    const std::string where = "tensor " + detail::quote(name) + ": ";
    if (name.empty()) return detail::set_error(error, Status::kErrorInvalidArgument, "empty tensor name");
    if (name == "__metadata__")
      return detail::set_error(error, Status::kErrorInvalidArgument, "tensor name '__metadata__' is reserved");
    if (!is_valid_utf8(name)) return detail::set_error(error, Status::kErrorInvalidArgument, where + "name is not valid UTF-8");
    if (names_.count(name)) return detail::set_error(error, Status::kErrorInvalidArgument, where + "duplicate name");
    if (dtype_size(dtype) == 0) return detail::set_error(error, Status::kErrorInvalidArgument, where + "invalid dtype");
    int64_t numel = 0;
    if (!shape_numel(shape, &numel))
      return detail::set_error(error, Status::kErrorInvalidArgument,
                               where + "invalid shape " + shape_to_string(shape) + " (negative or overflowing)");
    if (static_cast<uint64_t>(numel) > UINT64_MAX / dtype_size(dtype) ||
        static_cast<uint64_t>(numel) * dtype_size(dtype) != nbytes)
      return detail::set_error(error, Status::kErrorInvalidArgument,
                               where + std::to_string(nbytes) + " bytes given for shape " + shape_to_string(shape) +
                                   " of " + dtype_name(dtype));
    return Status::kSuccess;
  }
};

}  // namespace quamba::io
