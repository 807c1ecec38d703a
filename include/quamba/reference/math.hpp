// quamba/reference/math.hpp: scalar functions of the reference, written for clarity.
#pragma once

#include <cmath>

#include "quamba/core/numeric.hpp"

namespace quamba::reference {

template <typename T>
inline T silu(T v) { return v / (T(1) + std::exp(-v)); }

// Mamba's softplus: identity above the threshold 20 (SPEC §1 step 5).
template <typename T>
inline T softplus(T v) { return v > T(kSoftplusThreshold) ? v : std::log1p(std::exp(v)); }

}  // namespace quamba::reference
