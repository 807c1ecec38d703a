// quamba/hadamard/hadamard_table.cuh: the small Hadamard factors H_12, H_20, H_28 as
// compile-time tables visible to host and device code.
//
// Entries are ±1 (int8), row-major m×m, built by the same construction as
// reference::detail::small_hadamard (Paley I for q = 11, 19; Paley II for q = 13) but evaluated
// by the compiler (constexpr), so the kernels' unrolled m-point products fold every sign into
// the add/sub instruction itself: no table is read at run time. tests/gpu/test_hadamard.cu
// checks these tables entry by entry against the reference, on the host and as seen by device
// code.
#pragma once

#include <cstdint>
#include <utility>

#include "quamba/core/macros.hpp"

namespace quamba::hadamard {

inline constexpr int kMaxSmallOrder = 28;

struct SmallHadamardTable {
  int m = 0;
  int8_t h[kMaxSmallOrder][kMaxSmallOrder] = {};
};

// Quadratic character modulo the prime q: 0, +1 (residue) or -1.
QUAMBA_HD constexpr int legendre_symbol(int a, int q) {
  a %= q;
  if (a < 0) a += q;
  if (a == 0) return 0;
  for (int x = 1; x < q; ++x)
    if ((x * x) % q == a) return 1;
  return -1;
}

// H_m for m ∈ {1, 12, 20, 28}; any other m yields m = 0 and an all-zero table.
QUAMBA_HD constexpr SmallHadamardTable make_small_hadamard(int m) {
  SmallHadamardTable t{};
  if (m == 1) {
    t.m = 1;
    t.h[0][0] = 1;
  } else if (m == 12 || m == 20) {
    // Paley I, q ≡ 3 (mod 4): H = I + S, S = [[0, 1ᵀ], [-1, Q]], Q[i][j] = χ(j - i).
    const int q = m - 1;
    t.m = m;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j) {
        int s = 0;
        if (i == 0 && j == 0) s = 0;
        else if (i == 0) s = 1;
        else if (j == 0) s = -1;
        else s = legendre_symbol(j - i, q);
        t.h[i][j] = static_cast<int8_t>(s + (i == j ? 1 : 0));
      }
  } else if (m == 28) {
    // Paley II, q = 13: conference matrix C (order 14), H = C ⊗ [[1,1],[1,-1]] + I ⊗ [[1,-1],[-1,-1]].
    constexpr int q = 13, c = q + 1;
    int C[c][c] = {};
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j) {
        if (i == 0 && j == 0) C[i][j] = 0;
        else if (i == 0 || j == 0) C[i][j] = 1;
        else C[i][j] = legendre_symbol(j - i, q);
      }
    const int P[2][2] = {{1, 1}, {1, -1}};
    const int Z[2][2] = {{1, -1}, {-1, -1}};
    t.m = 28;
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j)
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b)
            t.h[2 * i + a][2 * j + b] = static_cast<int8_t>(C[i][j] * P[a][b] + (i == j ? Z[a][b] : 0));
  }
  return t;
}

// The tables as compile-time constants, one per order.
template <int kM>
struct SmallHadamard {
  static_assert(kM == 1 || kM == 12 || kM == 20 || kM == 28, "H_m exists here for m in {1, 12, 20, 28}");
  static constexpr SmallHadamardTable kTable = make_small_hadamard(kM);
  // Number of +1 entries in row i (the m-point product sums the smaller of the ± sets).
  static constexpr int positives(int i) {
    int c = 0;
    for (int j = 0; j < kM; ++j) c += kTable.h[i][j] > 0 ? 1 : 0;
    return c;
  }
};

// Entry (kI, kJ) as a constant expression: device code reads the table only through template
// arguments, so nothing is odr-used and every sign folds at compile time (no constant-memory
// or local-memory table exists at run time).
template <int kM, int kI, int kJ>
inline constexpr int kSmallHadamardEntry = SmallHadamard<kM>::kTable.h[kI][kJ];

template <int kM, int kI>
inline constexpr int kSmallHadamardRowPositives = SmallHadamard<kM>::positives(kI);

}  // namespace quamba::hadamard
