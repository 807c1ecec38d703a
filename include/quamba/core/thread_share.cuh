// quamba/core/thread_share.cuh: a block's threads splitting kCount work items.
#pragma once

#include "quamba/core/macros.hpp"

namespace quamba {

#if QUAMBA_HAS_CUDA_COMPILER
// f(i) for this thread's items i = tid, tid + kThreads, ... below kCount. kUnrolled: a
// compile-time unrolled sequence of ceil(kCount / kThreads) rounds (a partial last round skips
// the threads past kCount), with no loop control: a thread-strided loop costs ~40 instructions
// per item when the compiler cannot bound its trip count (it does not know tid < kThreads).
// Otherwise the plain thread-strided loop.
template <int kCount, int kThreads, bool kUnrolled = true, class F>
QUAMBA_DEVICE void for_thread_share(int tid, F&& f) {
  if constexpr (kUnrolled) {
#pragma unroll
    for (int i0 = 0; i0 < kCount; i0 += kThreads) {
      const int i = i0 + tid;
      if (kCount % kThreads != 0 && i >= kCount) break;
      f(i);
    }
  } else {
    for (int i = tid; i < kCount; i += kThreads) f(i);
  }
}
#endif

}  // namespace quamba
