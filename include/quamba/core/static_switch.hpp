// quamba/core/static_switch.hpp: the one place where runtime values become template values.
//
// Each switch calls `body` with a std::integral_constant for the matching case and returns its
// Status; a value with no case returns Status::kErrorNotSupported. There is no silent
// fall-through: an unsupported width, state size or flag is an error, never a no-op.
//
//   return dispatch_int<2, 3, 4>(width, [&](auto W) { return launch<W.value>(params, stream); });
#pragma once

#include <type_traits>

#include "quamba/core/status.hpp"

namespace quamba {

template <int... Cases, typename Body>
Status dispatch_int(int value, Body&& body) {
  Status result = Status::kErrorNotSupported;
  bool matched = false;
  ((!matched && value == Cases
        ? (matched = true, result = body(std::integral_constant<int, Cases>{}), 0)
        : 0),
   ...);
  return result;
}

template <typename Body>
Status dispatch_bool(bool value, Body&& body) {
  return value ? body(std::true_type{}) : body(std::false_type{});
}

}  // namespace quamba
