// quamba/io/safetensors_index.hpp: one logical checkpoint over a single .safetensors file or
// a sharded set described by an index json (host only).
//
// Sharded layout (Hugging Face): `model.safetensors.index.json` =
//   {"metadata": {...}, "weight_map": {"<tensor name>": "<shard file name>", ...}}
// Shard names are resolved relative to the index's directory and must be plain file names
// (no '/', '\\', no "." or ".."), so an index can never point outside its directory.
// open_index opens and validates every shard named in weight_map (each once) and checks that
// each tensor is present in the shard the map names. "metadata" is optional and free-form
// (its string values are kept, others ignored).
//
// Status: kErrorIo when the index or a shard is missing/unreadable/truncated (the message
// names the shard and one tensor mapped to it); kErrorFormat for a malformed index, a tensor
// absent from its shard, or a tensor stored in several files of a plain (unindexed) set.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quamba/io/json.hpp"
#include "quamba/io/safetensors.hpp"

namespace quamba::io {

class SafetensorsCheckpoint {
 public:
  // A single file: every tensor of it.
  Status open_file(const std::string& path, std::string* error = nullptr) {
    clear();
    try {
      auto f = std::make_unique<SafetensorsFile>();
      QUAMBA_RETURN_IF_ERROR(f->open(path, error));
      for (const TensorInfo& t : f->tensors()) tensor_file_[t.name] = 0;
      metadata_ = f->metadata();
      files_.push_back(std::move(f));
    } catch (const std::bad_alloc&) {
      clear();
      return detail::set_error(error, Status::kErrorIo, "out of memory opening " + detail::quote(path));
    }
    return Status::kSuccess;
  }

  // A sharded checkpoint from its index json.
  Status open_index(const std::string& index_path, std::string* error = nullptr) {
    clear();
    Status s;
    try {
      s = open_index_impl(index_path, error);
    } catch (const std::bad_alloc&) {
      s = detail::set_error(error, Status::kErrorIo, "out of memory opening " + detail::quote(index_path));
    }
    if (s != Status::kSuccess) clear();
    return s;
  }

  void clear() {
    files_.clear();
    tensor_file_.clear();
    metadata_.clear();
  }

  size_t num_files() const { return files_.size(); }
  size_t num_tensors() const { return tensor_file_.size(); }
  // Index metadata (sharded) or the file's __metadata__ (single file).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // All tensor names, sorted.
  std::vector<std::string> tensor_names() const {
    std::vector<std::string> names;
    names.reserve(tensor_file_.size());
    for (const auto& kv : tensor_file_) names.push_back(kv.first);
    return names;
  }

  // The file holding `name`, or nullptr.
  const SafetensorsFile* file_of(const std::string& name) const {
    const auto it = tensor_file_.find(name);
    return it == tensor_file_.end() ? nullptr : files_[it->second].get();
  }
  const TensorInfo* find(const std::string& name) const {
    const SafetensorsFile* f = file_of(name);
    return f ? f->find(name) : nullptr;
  }

  Status read_tensor_f32(const std::string& name, std::vector<float>* out, const std::vector<int64_t>* expected_shape,
                         std::string* error = nullptr) const {
    const SafetensorsFile* f = file_of(name);
    if (f == nullptr) return missing(name, error);
    return f->read_tensor_f32(name, out, expected_shape, error);
  }
  Status read_tensor_raw(const std::string& name, Dtype dtype, const std::vector<int64_t>* expected_shape,
                         std::vector<uint8_t>* out, std::string* error = nullptr) const {
    const SafetensorsFile* f = file_of(name);
    if (f == nullptr) return missing(name, error);
    return f->read_tensor_raw(name, dtype, expected_shape, out, error);
  }
  Status check_tensor(const std::string& name, const std::vector<Dtype>& dtypes,
                      const std::vector<int64_t>* expected_shape, const TensorInfo** info,
                      std::string* error = nullptr) const {
    const SafetensorsFile* f = file_of(name);
    if (f == nullptr) return missing(name, error);
    return f->check_tensor(name, dtypes, expected_shape, info, error);
  }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> tensor_file_;
  std::map<std::string, std::string> metadata_;

  static Status missing(const std::string& name, std::string* error) {
    return detail::set_error(error, Status::kErrorFormat, "tensor " + detail::quote(name) + " not found in the checkpoint");
  }

  static bool plain_file_name(const std::string& s) {
    if (s.empty() || s == "." || s == "..") return false;
    for (const char c : s)
      if (c == '/' || c == '\\' || c == '\0') return false;
    return true;
  }

  Status open_index_impl(const std::string& index_path, std::string* error) {
    uint64_t size = 0;
    QUAMBA_RETURN_IF_ERROR(detail::regular_file_size(index_path, &size, error));
    if (size > kSafetensorsMaxHeaderBytes)
      return detail::set_error(error, Status::kErrorFormat,
                               detail::quote(index_path) + ": index larger than " +
                                   std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
    std::string text(static_cast<size_t>(size), '\0');
    {
      std::ifstream f(index_path, std::ios::binary);
      if (!f.is_open())
        return detail::set_error(error, Status::kErrorIo, "cannot open " + detail::quote(index_path) + ": " + detail::errno_text());
      QUAMBA_RETURN_IF_ERROR(detail::read_exact(f, index_path, 0, text.data(), text.size(), error));
    }
    JsonValue root;
    std::string jerr;
    if (parse_json(text, &root, &jerr) != Status::kSuccess)
      return detail::set_error(error, Status::kErrorFormat, detail::quote(index_path) + ": " + jerr);
    if (!root.is_object())
      return detail::set_error(error, Status::kErrorFormat, detail::quote(index_path) + ": not a JSON object");
    if (const JsonValue* meta = root.find("metadata")) {
      if (!meta->is_object())
        return detail::set_error(error, Status::kErrorFormat, detail::quote(index_path) + ": \"metadata\" is not an object");
      for (const JsonMember& kv : meta->members())
        if (kv.value.is_string()) metadata_[kv.key] = kv.value.as_string();
    }
    const JsonValue* wm = root.find("weight_map");
    if (wm == nullptr || !wm->is_object())
      return detail::set_error(error, Status::kErrorFormat,
                               detail::quote(index_path) + ": missing \"weight_map\" object");

    const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
    std::map<std::string, size_t> shard_index;  // shard file name -> files_ slot
    for (const JsonMember& kv : wm->members()) {
      if (!kv.value.is_string())
        return detail::set_error(error, Status::kErrorFormat,
                                 detail::quote(index_path) + ": weight_map entry " + detail::quote(kv.key) +
                                     " is not a string");
      const std::string& shard = kv.value.as_string();
      if (!plain_file_name(shard))
        return detail::set_error(error, Status::kErrorFormat,
                                 detail::quote(index_path) + ": shard name " + detail::quote(shard) + " of tensor " +
                                     detail::quote(kv.key) + " is not a plain file name");
      auto it = shard_index.find(shard);
      if (it == shard_index.end()) {
        auto f = std::make_unique<SafetensorsFile>();
        const std::string shard_path = (dir / shard).string();
        std::string serr;
        const Status s = f->open(shard_path, &serr);
        if (s != Status::kSuccess)
          return detail::set_error(error, s,
                                   "shard " + detail::quote(shard) + " (holding tensor " + detail::quote(kv.key) +
                                       ") of " + detail::quote(index_path) + ": " + serr);
        it = shard_index.emplace(shard, files_.size()).first;
        files_.push_back(std::move(f));
      }
      if (files_[it->second]->find(kv.key) == nullptr)
        return detail::set_error(error, Status::kErrorFormat,
                                 "tensor " + detail::quote(kv.key) + " is mapped to shard " + detail::quote(shard) +
                                     " but that shard does not contain it");
      tensor_file_[kv.key] = it->second;
    }
    return Status::kSuccess;
  }
};

}  // namespace quamba::io
