// quamba/reference/hadamard.hpp: Hadamard matrices and the rotation of SPEC §2 (host).
//
// Supported sizes: n = m·2^k with m ∈ {1, 12, 20, 28}, k >= 0 (so 40·2^k = 20·2^(k+1) too);
// anything else is kErrorNotSupported (never zero-padded).
//   H_n = H_m ⊗ H_{2^k}:  H[i][j] = H_m[i / 2^k][j / 2^k] · (-1)^popcount((i % 2^k) & (j % 2^k))
// H_{2^k} is Sylvester's; H_12 and H_20 are Paley I (q = 11, 19), H_28 is Paley II (q = 13).
// Every H satisfies H·Hᵀ = n·I (tested for every size up to 16384).
// The rotation applied to a vector v of length n is v ↦ H·v / √n, the same map on the
// activations online and on the rows of W_out offline. Here it is a dense matrix-vector product
// (the oracle); the kernels use the fast butterfly.
//   quantized:  q = q8((H·v)_i * factor),  factor = (1/√n) * inv_s   (one fp32 number)
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::reference {

// Splits n = m · 2^k with m ∈ {1, 12, 20, 28}. Returns kErrorNotSupported for other n.
inline Status hadamard_factor(int64_t n, int* m, int* log2_pow) {
  if (n <= 0) return Status::kErrorNotSupported;
  int k = 0;
  int64_t r = n;
  while ((r & 1) == 0) { r >>= 1; ++k; }
  // r is the odd part; m ∈ {12, 20, 28} contributes 3, 5, 7 and two factors of two.
  int base = 1;
  if (r == 1) base = 1;
  else if (r == 3 || r == 5 || r == 7) {
    if (k < 2) return Status::kErrorNotSupported;
    base = static_cast<int>(r) * 4;
    k -= 2;
  } else {
    return Status::kErrorNotSupported;
  }
  if (m) *m = base;
  if (log2_pow) *log2_pow = k;
  return Status::kSuccess;
}

inline bool hadamard_size_supported(int64_t n) { return hadamard_factor(n, nullptr, nullptr) == Status::kSuccess; }

namespace detail {

// Quadratic character modulo a prime q: 0, +1 (residue) or -1.
inline int legendre(int a, int q) {
  a %= q;
  if (a < 0) a += q;
  if (a == 0) return 0;
  for (int x = 1; x < q; ++x)
    if ((x * x) % q == a) return 1;
  return -1;
}

// The small factor H_m as ±1 entries, m ∈ {1, 12, 20, 28}.
inline std::vector<int8_t> small_hadamard(int m) {
  std::vector<int8_t> h(static_cast<size_t>(m) * m, 0);
  if (m == 1) {
    h[0] = 1;
  } else if (m == 12 || m == 20) {
    // Paley I, q ≡ 3 (mod 4): S = [[0, 1ᵀ], [-1, Q]], Q[i][j] = χ(j - i), H = I + S.
    const int q = m - 1;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        int s;
        if (i == 0 && j == 0) s = 0;
        else if (i == 0) s = 1;
        else if (j == 0) s = -1;
        else s = legendre(j - i, q);
        h[i * m + j] = static_cast<int8_t>(s + (i == j ? 1 : 0));
      }
  } else if (m == 28) {
    // Paley II, q = 13 ≡ 1 (mod 4): symmetric conference matrix C = [[0, 1ᵀ], [1, Q]] of order
    // 14, then H = C ⊗ [[1, 1], [1, -1]] + I ⊗ [[1, -1], [-1, -1]].
    const int q = 13, c = q + 1;
    std::vector<int> C(static_cast<size_t>(c) * c);
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j) {
        if (i == 0 && j == 0) C[i * c + j] = 0;
        else if (i == 0 || j == 0) C[i * c + j] = 1;
        else C[i * c + j] = legendre(j - i, q);
      }
    const int P[2][2] = {{1, 1}, {1, -1}};
    const int Z[2][2] = {{1, -1}, {-1, -1}};
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j)
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b)
            h[(2 * i + a) * m + (2 * j + b)] =
                static_cast<int8_t>(C[i * c + j] * P[a][b] + (i == j ? Z[a][b] : 0));
  }
  return h;
}

inline int popcount64(uint64_t v) {
  int c = 0;
  while (v) { v &= v - 1; ++c; }
  return c;
}

}  // namespace detail

// Generates entries of H_n on the fly without storing the n×n matrix.
class HadamardEntries {
 public:
  Status init(int64_t n) {
    int m = 0, k = 0;
    QUAMBA_RETURN_IF_ERROR(hadamard_factor(n, &m, &k));
    n_ = n;
    m_ = m;
    k_ = k;
    small_ = detail::small_hadamard(m);
    return Status::kSuccess;
  }
  int64_t n() const { return n_; }
  int m() const { return m_; }
  int log2_pow() const { return k_; }
  const std::vector<int8_t>& small() const { return small_; }
  int operator()(int64_t i, int64_t j) const {
    const int64_t p = int64_t(1) << k_;
    const int s = small_[static_cast<size_t>((i / p) * m_ + (j / p))];
    return (detail::popcount64(static_cast<uint64_t>((i % p) & (j % p))) & 1) ? -s : s;
  }

 private:
  int64_t n_ = 0;
  int m_ = 1, k_ = 0;
  std::vector<int8_t> small_;
};

// Dense H_n (row-major n×n, entries ±1) as float.
inline Status hadamard_matrix(int64_t n, std::vector<float>* out) {
  if (!out) return Status::kErrorInvalidArgument;
  HadamardEntries h;
  QUAMBA_RETURN_IF_ERROR(h.init(n));
  out->assign(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) (*out)[static_cast<size_t>(i * n + j)] = static_cast<float>(h(i, j));
  return Status::kSuccess;
}

// out(r, :) = scale · H · x(r, :) for each row r. x, out: (M, n); out may not alias x.
// scale = 1/√n gives the orthonormal rotation. Sums in double.
inline Status hadamard_transform(TensorView<const float, 2> x, float scale, TensorView<float, 2> out) {
  const int64_t M = x.size(0), n = x.size(1);
  if (!x.data || !out.data || out.size(0) != M || out.size(1) != n) return Status::kErrorInvalidArgument;
  HadamardEntries h;
  QUAMBA_RETURN_IF_ERROR(h.init(n));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t i = 0; i < n; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < n; ++j) acc += h(i, j) * static_cast<double>(x(r, j));
      out(r, i) = static_cast<float>(acc) * scale;
    }
  return Status::kSuccess;
}

// The factor the quantized rotation multiplies by: (1/√n) · inv_s, rounded once to fp32.
inline float hadamard_quant_factor(int64_t n, float inv_s) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n))) * inv_s;
}

// q(r, i) = q8((H · x(r, :))_i · factor), factor = hadamard_quant_factor(n, inv_s).
inline Status hadamard_quantize(TensorView<const float, 2> x, float inv_s, TensorView<int8_t, 2> q) {
  const int64_t M = x.size(0), n = x.size(1);
  if (!x.data || !q.data || q.size(0) != M || q.size(1) != n) return Status::kErrorInvalidArgument;
  HadamardEntries h;
  QUAMBA_RETURN_IF_ERROR(h.init(n));
  const float factor = hadamard_quant_factor(n, inv_s);
  for (int64_t r = 0; r < M; ++r)
    for (int64_t i = 0; i < n; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < n; ++j) acc += h(i, j) * static_cast<double>(x(r, j));
      q(r, i) = quantize_i8(static_cast<float>(acc), factor);
    }
  return Status::kSuccess;
}

}  // namespace quamba::reference
