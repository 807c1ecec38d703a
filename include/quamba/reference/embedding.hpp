// quamba/reference/embedding.hpp: token embedding gather (host reference).
//
// table: (V, D) row-major; ids: M token ids; out: (M, D). An id outside [0, V) returns
// kErrorOutOfRange and leaves `out` partially written only up to the first bad row.
// embedding_i8: an int8 table with one fp32 scale per row (the int8 head option, SPEC §2);
// out(m, d) = float(q[id, d]) · scale[id], one fp32 multiply (what the device gather computes).
#pragma once

#include <cstdint>
#include <type_traits>

#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::reference {

// convert(value) or convert(value, id) gives the output element of table element `value` in row
// `id` (the second form for per-row scales).
template <typename TIn, typename TOut, typename Convert>
Status embedding(TensorView<const TIn, 2> table, const int32_t* ids, int64_t M, TensorView<TOut, 2> out,
                 Convert&& convert) {
  const int64_t V = table.size(0), D = table.size(1);
  if (table.data == nullptr || (M > 0 && ids == nullptr) || out.data == nullptr || out.size(0) != M ||
      out.size(1) != D)
    return Status::kErrorInvalidArgument;
  for (int64_t m = 0; m < M; ++m) {
    if (ids[m] < 0 || ids[m] >= V) return Status::kErrorOutOfRange;
    for (int64_t d = 0; d < D; ++d) {
      if constexpr (std::is_invocable_v<Convert&, const TIn&, int32_t>) out(m, d) = convert(table(ids[m], d), ids[m]);
      else out(m, d) = convert(table(ids[m], d));
    }
  }
  return Status::kSuccess;
}

inline Status embedding(TensorView<const float, 2> table, const int32_t* ids, int64_t M, TensorView<float, 2> out) {
  return embedding(table, ids, M, out, [](float v) { return v; });
}

inline Status embedding_i8(TensorView<const int8_t, 2> table, const float* row_scale, const int32_t* ids, int64_t M,
                           TensorView<float, 2> out) {
  if (row_scale == nullptr) return Status::kErrorInvalidArgument;
  return embedding(table, ids, M, out,
                   [row_scale](int8_t q, int32_t id) { return static_cast<float>(q) * row_scale[id]; });
}

}  // namespace quamba::reference
