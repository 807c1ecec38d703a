// quamba/core/tensor_view.hpp: non-owning strided views, host and device.
//
// A TensorView<T, Rank> is a pointer, a shape and strides, all in ELEMENTS (not bytes).
// Row-major contiguous views have stride[Rank-1] == 1. Views never own memory; they are cheap
// to pass by value into kernels. Activations in quamba are token-major: a (B, L, C) view has
// the channel as its fastest dimension, so x = xz[..., :E] is a view with token stride 2E.
#pragma once

#include <cstdint>
#include <type_traits>

#include "quamba/core/macros.hpp"

namespace quamba {

template <typename T, int Rank>
struct TensorView {
  static_assert(Rank >= 1 && Rank <= 4, "TensorView supports ranks 1..4");
  T* data = nullptr;
  int64_t shape[Rank] = {};
  int64_t stride[Rank] = {};

  QUAMBA_HD int64_t size(int d) const { return shape[d]; }
  QUAMBA_HD int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < Rank; ++d) n *= shape[d];
    return n;
  }
  QUAMBA_HD bool empty() const { return numel() == 0; }
  // Innermost dimension contiguous and outer strides at least the extent they span.
  QUAMBA_HD bool is_row_major_compatible() const {
    if (stride[Rank - 1] != 1) return false;
    int64_t span = shape[Rank - 1];
    for (int d = Rank - 2; d >= 0; --d) {
      if (shape[d] > 1 && stride[d] < span) return false;
      span = stride[d] * shape[d];
    }
    return true;
  }
  QUAMBA_HD bool is_contiguous() const {
    int64_t s = 1;
    for (int d = Rank - 1; d >= 0; --d) {
      if (shape[d] > 1 && stride[d] != s) return false;
      s *= shape[d];
    }
    return true;
  }

  template <typename... I>
  QUAMBA_HD T& operator()(I... idx) const {
    static_assert(sizeof...(I) == Rank, "index count must equal rank");
    const int64_t ii[Rank] = {static_cast<int64_t>(idx)...};
    int64_t off = 0;
    for (int d = 0; d < Rank; ++d) off += ii[d] * stride[d];
    return data[off];
  }

  // A view of the same memory with a const element type.
  QUAMBA_HD TensorView<const T, Rank> as_const() const {
    TensorView<const T, Rank> v;
    v.data = data;
    for (int d = 0; d < Rank; ++d) { v.shape[d] = shape[d]; v.stride[d] = stride[d]; }
    return v;
  }
  // Only for non-const T: a conversion to the type itself would never be used (nvcc #554).
  template <typename U = T, typename = std::enable_if_t<!std::is_const_v<U>>>
  QUAMBA_HD operator TensorView<const U, Rank>() const { return as_const(); }

  // Restricts dimension `d` to [begin, begin + count).
  QUAMBA_HD TensorView slice(int d, int64_t begin, int64_t count) const {
    TensorView v = *this;
    v.data = data + begin * stride[d];
    v.shape[d] = count;
    return v;
  }
};

// Contiguous row-major view.
template <typename T, typename... S>
QUAMBA_HD TensorView<T, static_cast<int>(sizeof...(S))> make_view(T* data, S... shape) {
  constexpr int R = static_cast<int>(sizeof...(S));
  TensorView<T, R> v;
  v.data = data;
  const int64_t sh[R] = {static_cast<int64_t>(shape)...};
  int64_t s = 1;
  for (int d = R - 1; d >= 0; --d) {
    v.shape[d] = sh[d];
    v.stride[d] = s;
    s *= sh[d];
  }
  return v;
}

// Row-major view with explicit strides (elements).
template <typename T, int R>
QUAMBA_HD TensorView<T, R> make_strided_view(T* data, const int64_t (&shape)[R], const int64_t (&stride)[R]) {
  TensorView<T, R> v;
  v.data = data;
  for (int d = 0; d < R; ++d) { v.shape[d] = shape[d]; v.stride[d] = stride[d]; }
  return v;
}

template <typename T, int R>
QUAMBA_HD bool same_shape(const TensorView<T, R>& a, const int64_t (&shape)[R]) {
  for (int d = 0; d < R; ++d) if (a.shape[d] != shape[d]) return false;
  return true;
}

// True when the address is a multiple of `bytes`.
QUAMBA_HD bool is_aligned(const void* p, int64_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

}  // namespace quamba
