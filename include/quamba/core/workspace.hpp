// quamba/core/workspace.hpp: carving sub-buffers out of one caller-owned workspace.
//
// The library never allocates. An op or the block plans its scratch with a WorkspacePlan
// (sizes only, no memory), reports plan.bytes() as workspace_size(), and at run time carves
// the same sequence of buffers out of the caller's pointer with a WorkspaceCarver. Every
// sub-buffer starts on a 256-byte boundary (cudaMalloc's guarantee, enough for 16-byte vectors
// and TMA).
#pragma once

#include <cstddef>
#include <cstdint>

#include "quamba/core/status.hpp"

namespace quamba {

inline constexpr size_t kWorkspaceAlignment = 256;

constexpr size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

class WorkspacePlan {
 public:
  template <typename T>
  WorkspacePlan& add(size_t count) {
    bytes_ = align_up(bytes_, kWorkspaceAlignment) + count * sizeof(T);
    return *this;
  }
  size_t bytes() const { return align_up(bytes_, kWorkspaceAlignment); }

 private:
  size_t bytes_ = 0;
};

class WorkspaceCarver {
 public:
  WorkspaceCarver(void* base, size_t bytes) : base_(static_cast<char*>(base)), bytes_(bytes) {}

  // Returns the next sub-buffer of `count` T, or sets status() to kErrorWorkspaceTooSmall and
  // returns nullptr. A zero count yields nullptr without error.
  template <typename T>
  T* take(size_t count) {
    if (count == 0) return nullptr;
    const size_t begin = align_up(used_, kWorkspaceAlignment);
    const size_t end = begin + count * sizeof(T);
    if (base_ == nullptr || end > bytes_) {
      status_ = Status::kErrorWorkspaceTooSmall;
      return nullptr;
    }
    used_ = end;
    return reinterpret_cast<T*>(base_ + begin);
  }
  Status status() const { return status_; }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t bytes_;
  size_t used_ = 0;
  Status status_ = Status::kSuccess;
};

}  // namespace quamba
