// A tiny consumer of the installed headers: builds a Hadamard matrix through the reference
// and quantizes one value. Exits non-zero if anything is off.
#include <cstdio>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/reference/hadamard.hpp"

int main() {
  std::vector<float> h;
  const quamba::Status st = quamba::reference::hadamard_matrix(12, &h);
  if (st != quamba::Status::kSuccess || h.size() != 144) {
    std::printf("hadamard_matrix(12) failed: %s\n", quamba::to_string(st));
    return 1;
  }
  if (quamba::quantize_i8(2.5f, 1.0f) != 2) return 1;
  std::printf("quamba consumer ok\n");
  return 0;
}
