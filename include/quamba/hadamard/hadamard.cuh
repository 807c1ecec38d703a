// quamba/hadamard/hadamard.cuh: the Walsh–Hadamard rotation of rows (SPEC §2, "Hadamard on the
// SSM output"), with an optional fused int8 quantization.
//
// For each of `rows` rows r:    v = x[r, 0:n]  (row r starts at x + r·x_row_stride, elements)
//   float outputs:  out[r, i] = scale · (H_n · v)_i              (scale = 1/√n: orthonormal map)
//   int8 outputs:   out[r, i] = q8((H_n · v)_i · scale)          (scale = quant_factor(n, inv_s))
// q8 = quantize_i8 (round half to even, saturate to [-128, 127], NaN → 0). Sums are fp32.
// H_n is exactly reference::HadamardEntries: n = m·2^k, m ∈ {1, 12, 20, 28},
//   H_n = H_m ⊗ H_{2^k},  element index i = i_m·2^k + i_p.
// Supported n: every such n with 1 ≤ n ≤ 32768 (1536 = 12·128, 2048, 3072 = 12·256, 4096,
// 5120 = 20·256 natively; never zero-padded). Anything else → kErrorNotSupported.
// Variants (dtype in → dtype out): fp16 → int8, fp32 → int8 (the online rotation of y before
// out_proj), fp16 → fp16 (fp16 model path), fp32 → fp32 (offline fold of W_out rows).
//
// Rules checked by can_implement (which never touches the device):
//   x, out non-null (kErrorInvalidArgument); rows ≥ 0 (rows = 0 is a no-op);
//   x_row_stride ≥ n and out_row_stride ≥ n when rows > 1 (kErrorInvalidArgument);
//   x and x_row_stride aligned to the input access width in_align_bytes<In>(n) =
//   min(16, min(8, 2^k)·sizeof(in)) bytes, out aligned to sizeof(out) (kErrorMisaligned).
//   out may equal x for an in-place fp16→fp16 / fp32→fp32 call with equal strides (every block
//   reads all its rows before it writes any; for n ≤ 32 each thread writes only what it read);
//   partial overlap is not allowed.
// Device limit checked by run: the row is staged in shared memory as fp32 (4·n bytes per
// block); above 48 KiB the kernel opts in, and where the device's opt-in limit is smaller (sm_86
// and sm_89: 99 KiB, so n ≥ 28672) run returns kErrorNotSupported.
// workspace_size is 0. run never allocates and never synchronizes.
// run(p) takes, for fp16 inputs at n = 3072 and 5120 (int8 or fp16 outputs), the streamed variant
// up to 256 rows; above that the bulk-copy variant for int8 outputs (the streamed one before
// sm_90) and the generic kernel for fp16 outputs; and the generic kernel for everything else;
// run_generic(p) is the generic kernel for every n.
// run_streamed(p, ws, stream, split): the streamed variant itself (fp16 in, int8 / fp16 out,
// n ∈ {3072, 5120}, sm_80+; split 1 or 2 warp pairs per row; kErrorNotSupported otherwise).
// run_bulk(p): the bulk-copy variant (fp16 in, int8 / fp16 out, n ∈ {3072, 5120}, sm_90+: rows
// fetched in order by cp.async.bulk into a shared-memory ring; kErrorNotSupported for other n,
// kErrorArchNotSupported without sm_90 code); run() takes it above 256 rows where it runs.
// run_staged(p): the same contract through the staged variant (2^k ∈ {128, 256, 512}, rows of
// at most 48 KiB as fp32; kErrorNotSupported otherwise); slower than the generic kernel on H100
// (numbers at run()).
// run_pipelined(p): the same contract through the pipelined variant (persistent blocks, cp.async
// ring of raw rows; 2^k ∈ [32, 1024] and ring + work row ≤ 96 KiB of smem, so fp16 in up to
// n = 12288 and fp32 in up to 8192: 1536, 3072, 5120, 768, ...; m = 1 only up to 1024;
// kErrorNotSupported otherwise). Not picked by run() until measured.
// run_pipelined_mma(p): the pipelined variant with the 256-point part on tensor cores (mma.sync,
// sm_80+), fp16 inputs, n ∈ {3072, 5120, 7168}; kErrorNotSupported otherwise.
// pdl: every kernel above launches as a programmatic dependent of the stream's previous kernel
// (core/launch.cuh; sm_90+, pass false elsewhere). Each waits for the previous one before anything
// else (a rotation has no weights, its first loads are the input rows) and leaves the trigger of
// the next launch implicit, at exit (why: core/launch.cuh).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/macros.hpp"
#include "quamba/core/mbarrier.cuh"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/hadamard/hadamard_table.cuh"
#include "quamba/reference/hadamard.hpp"

// #pragma unroll in host-callable code: device passes only (the host compiler would warn).
#if defined(__CUDA_ARCH__)
#define QUAMBA_HADAMARD_UNROLL _Pragma("unroll")
#else
#define QUAMBA_HADAMARD_UNROLL
#endif

namespace quamba::hadamard {

inline constexpr int64_t kMaxN = 32768;

// ---- layer 1: Params ---------------------------------------------------------------------------

// InT ∈ {__half, float}; OutT ∈ {int8_t, __half, float}; fp16 → fp32 and fp32 → fp16 are not
// offered. Strides in elements.
template <typename InT, typename OutT>
struct HadamardParams {
  const InT* x = nullptr;
  OutT* out = nullptr;
  int64_t rows = 0;            // M
  int64_t n = 0;               // row length (Hadamard size)
  int64_t x_row_stride = 0;    // elements between consecutive input rows (≥ n)
  int64_t out_row_stride = 0;  // elements between consecutive output rows (≥ n)
  float scale = 0.0f;          // float out: multiplier; int8 out: quantization factor
  bool pdl = false;            // programmatic dependent launch (see the header brief)
};

// Float-output scale of the orthonormal rotation, 1/√n rounded once to fp32 (as the reference).
inline float orthonormal_scale(int64_t n) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n))); }

// int8-output factor (1/√n)·inv_s, the single fp32 number the reference multiplies by.
inline float quant_factor(int64_t n, float inv_s) { return reference::hadamard_quant_factor(n, inv_s); }

// ---- layer 2: Traits ---------------------------------------------------------------------------
//
// One thread block owns kRows whole rows (kRows·n ≈ 2048 elements for small n, one row from
// n = 2048 up) and stages them in shared memory as fp32. Steps (bits of i_p = index within a
// 2^k block, butterflies on different bits commute so any order gives H_{2^k}):
//   load   each thread reads a run of kVec = min(8, 2^k) contiguous elements (one 16-byte load for
//          fp16, two for fp32: coalesced, the row is read exactly once), does bits [0, log kVec)
//          in registers and bits [log kVec, 5) with warp shuffles (xor of lane bits 0..1: a lane's
//          run index IS the next bits of i_p), then writes its run to smem.
//   pow2   bits [5, k) in phases of ≤ 5 bits: a thread takes 2^b elements at stride 2^lo and
//          butterflies them in registers. Consecutive lanes take consecutive low indices
//          (lo ≥ 5), so each scalar smem access of a warp hits 32 distinct banks: no conflicts.
//   mix    (m > 1) a thread takes the m elements i_m·2^k + p, i_m < m, of one position p and
//          applies H_m in registers: y_i = 2·Σ_{H[i][j]=+1} x_j − Σ x (or the − set, whichever is
//          smaller), about m/2 adds per output instead of m − 1: this product, not memory, is
//          what bounds the instruction issue at m = 20, 28.
//   store  the last phase (mix, or the last pow2 phase when m = 1) scales/quantizes straight to
//          global: lanes write consecutive p, so every warp store covers whole 32-byte sectors
//          (int8: 32 B, fp16: 64 B, fp32: 128 B) and no extra smem round trip is needed.
// For m = 1 and k ≤ 5 everything fits in registers + shuffles and no smem is used.
//
// Resources: registers hold at most max(kVec, 32, 2m) floats per thread (pow2 phase 32 floats,
// mix phase m inputs + m outputs = 56 at m = 28), so every config stays far below the
// __launch_bounds__ ceiling (64 regs at 1024 threads) without spills; smem = 4·kRows·n bytes
// (n = 5120: 20 KiB, 320 threads → 6 blocks = 1920 threads per SM on sm_90, thread-bound).
// ptxas, sm_90a, fp16→int8, no spills anywhere: n = 5120 (m 20, 2^8) 48 regs; 1536/3072
// (m 12) 32 regs; 2048 / 4096 (m 1) 48 regs; m = 28 56–68 regs (the 28+28 mix registers);
// 1024-thread configs (n ≥ 16384, tiny n with many rows) are capped at 64 by the bounds.
template <typename InT, typename OutT, int kM_, int kLogP_, int kRunsPerThread_ = 2>
struct HadamardTraits {
  static constexpr int kM = kM_;
  static constexpr int kLogP = kLogP_;
  static constexpr int kP = 1 << kLogP;
  static constexpr int kN = kM * kP;
  static_assert(kM == 1 || kM == 12 || kM == 20 || kM == 28, "m must be 1, 12, 20 or 28");
  static_assert(kLogP >= 0 && kN <= kMaxN, "n must be at most kMaxN");

  static constexpr int kLogVec = kLogP < 3 ? kLogP : 3;
  static constexpr int kVec = 1 << kLogVec;            // elements per thread run in the load step
  static constexpr int kRegBits = kLogP < 5 ? kLogP : 5;  // i_p bits finished in the load step
  static constexpr int kShflBits = kRegBits - kLogVec;    // of which by warp shuffle
  static constexpr bool kUseSmem = !(kM == 1 && kLogP <= 5);

  // ~2048 elements per block so tiny n still gives blocks of useful size.
  static constexpr int kRows = kN >= 2048 ? 1 : 2048 / kN;
  static constexpr int kBlockElems = kRows * kN;
  static constexpr int kVecsPerRow = kN / kVec;
  static constexpr int kVecs = kRows * kVecsPerRow;
  // Runs per thread in the load step (default 2; n = 5120: 320 threads): enough loads in flight
  // per thread, enough threads per block for the phases; at most 1024 threads. The benchmark
  // times 1, 2 and 4 at n = 5120.
  static constexpr int kRunsPerThread = kRunsPerThread_;
  static_assert(kRunsPerThread >= 1, "at least one run per thread");
  static constexpr int kThreadsRaw = ((kVecs / kRunsPerThread + 31) / 32) * 32;
  static constexpr int kThreads = kThreadsRaw < 32 ? 32 : (kThreadsRaw > 1024 ? 1024 : kThreadsRaw);
  static constexpr int kLoadIters = (kVecs + kThreads - 1) / kThreads;
  static constexpr size_t kSmemBytes = kUseSmem ? sizeof(float) * static_cast<size_t>(kBlockElems) : 0;

  static_assert(kThreads % 32 == 0, "shuffles need whole warps");
  static_assert(kVecsPerRow % (1 << kShflBits) == 0, "a shuffle partner must lie in the same row");

  static std::string name() {
    const char* in = std::is_same_v<InT, float> ? "f32" : "f16";
    const char* out = std::is_same_v<OutT, int8_t> ? "i8" : (std::is_same_v<OutT, float> ? "f32" : "f16");
    return std::string(in) + "to" + out + "_m" + std::to_string(kM) + "_p" + std::to_string(kP) + "_runs" +
           std::to_string(kRunsPerThread) + "_t" +
           std::to_string(kThreads) + "_r" + std::to_string(kRows);
  }
};


// Staged variant (run_staged(); run() does not pick it: slower on H100, numbers at run()) for
// 2^k ∈ {128, 256, 512} when the rows fit 48 KiB of smem: 1536, 3072, 5120, 2560, 6144, 10240,
// 3584, 7168, 128, 256, 512. Element index inside a 2^k
// block: p = bits b0..b(k-1); the k bits split as low = b0..b2 (one 16-byte fp16 run),
// mid = b3..b(k-3) (kMidBits = k - 5 ∈ {2, 3, 4}), top = b(k-2), b(k-1). Three steps per row,
// two smem passes, every smem access 8 or 16 bytes:
//   load   a thread loads 4 runs of 8 (the 4 values of the top bits; 4 16-byte loads issued
//          before any use) and does the 5 low+top bits in registers (32 values), then stores
//          float4s. The loads of the block's NEXT rows are issued right after the barrier, so
//          they are in flight during the mid and mix steps (persistent grid, one row group per
//          iteration).
//   mid    a thread takes one float4 (b0, b1) at fixed b2/top/i_m for all 2^kMidBits mid values
//          and does the mid bits in registers; for m = 1 it scales/quantizes and stores 4
//          consecutive outputs (one 4-byte int8 store), else writes back.
//   mix    (m > 1) a thread takes positions p, p+1 of all m sub-blocks (float2 loads) and
//          applies H_m: for Paley I (m = 12, 20) as 2·(x_i + Σ_{d∈QR} x_{i+d}) − y_0 with the
//          cyclic sums built from shared pair/quad sums (≈ 7 adds per output at m = 20 instead
//          of ≈ 10), the scale folded into the final FFMA; stores 2 adjacent outputs at once.
// smem is swizzled per float4 (XOR of its index bits b2..b4 with one mid/row bit and the two
// top bits) so every step's quarter-warp (16-byte) / half-warp (8-byte) accesses hit 32
// distinct banks.
QUAMBA_HD constexpr bool staged_supported(int m, int log_p) {
  return log_p >= 7 && log_p <= 9 && (m == 1 || m == 12 || m == 20 || m == 28) &&
         static_cast<int64_t>(m) * (int64_t(1) << log_p) * 4 <= 48 * 1024;
}

template <typename InT, typename OutT, int kM_, int kLogP_, int kMinBlocks_ = 1>
struct HadamardStagedTraits {
  static constexpr int kM = kM_;
  static constexpr int kLogP = kLogP_;
  static constexpr int kP = 1 << kLogP;
  static constexpr int kN = kM * kP;
  static_assert(staged_supported(kM, kLogP), "staged variant: 2^k in {128, 256, 512}, rows ≤ 48 KiB");
  static constexpr int kMidBits = kLogP - 5;
  static constexpr int kMid = 1 << kMidBits;
  static constexpr int kLoadItems = kM * kMid;         // per row; 32 elements each
  static constexpr int kMidItems = kM * 8;             // per row; 4·kMid elements each
  static constexpr int kMixItems = kM > 1 ? kP / 2 : 0;  // per row; 2·m elements each
  static constexpr int kItemsMax = kLoadItems > kMidItems ? (kLoadItems > kMixItems ? kLoadItems : kMixItems)
                                                          : (kMidItems > kMixItems ? kMidItems : kMixItems);
  // ≥ ~128 threads per block for small rows (n = 1536: 2 rows, 192 threads; n = 5120: 1 row, 160).
  static constexpr int kRows = kItemsMax >= 128 ? 1 : 256 / kItemsMax;
  static constexpr int kThreads = ((kRows * kItemsMax + 31) / 32) * 32;
  static constexpr int kStoreVec = kM > 1 ? 2 : 4;  // outputs per vector store
  // Resident blocks per SM asked of ptxas (__launch_bounds__ second argument): 1 leaves the
  // register count free (n = 5120: 126 registers, 3 blocks of 160 threads per SM).
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr size_t kSmemBytes = sizeof(float) * static_cast<size_t>(kRows) * kN;
  static_assert(kThreads <= 1024, "block too large");

  static std::string name() {
    const char* in = std::is_same_v<InT, float> ? "f32" : "f16";
    const char* out = std::is_same_v<OutT, int8_t> ? "i8" : (std::is_same_v<OutT, float> ? "f32" : "f16");
    return std::string("staged_") + in + "to" + out + "_m" + std::to_string(kM) + "_p" + std::to_string(kP) + "_t" +
           std::to_string(kThreads) + "_r" + std::to_string(kRows) + "_b" + std::to_string(kMinBlocks);
  }
};


// Pipelined variant (run_pipelined(); run() does not pick it) for 2^k ∈ [32, 1024] (any m) while
// kRows·n·(4·[m > 1] + kStages·sizeof(in)) ≤ 96 KiB: fp16 in up to n = 12288 (5120 = 20·256:
// 40 KiB), fp32 in up to 8192. Why another kernel: the generic one spends ~30 instructions per
// element (scalar smem phases, the non-Paley mix, byte stores) and its one-row blocks go
// load → compute → store with nothing in flight during the compute (6 rows per SM, 2.6 waves at
// M = 2048). Here a persistent grid streams rows through a kStages-deep cp.async ring of raw
// input rows in smem (no registers held for the prefetch: 4 to 5 blocks per SM, 8 to 10 rows
// in flight per SM), and a row costs ~20 instructions per element in two steps, one barrier:
//   A  a thread takes the same 32-element item as the staged variant (4 runs of 8 contiguous,
//      the runs at stride 2^k/4: bits 0..2 and the two top bits of i_p) from the raw ring slot,
//      butterflies those 5 bits in registers and the k − 5 middle bits by warp shuffles
//      (consecutive lanes = consecutive middle indices, ≤ 5 bits). The 2^k part is then done:
//      m = 1 scales/quantizes straight to global (8 outputs per run: vector stores); m > 1
//      writes fp32 float4s to a work row.
//   B  (m > 1) a thread takes columns p, p+1 of all m sub-blocks (float2 reads) and applies
//      H_m as the staged variant does (Paley I for 12 and 20: ~7 adds per output), scale folded
//      in, 2 outputs per store.
// The work row is swizzled (float index bit 2 ^= bit 5) so that step A's float4 stores (8
// lanes = 8 runs of 32 bytes) and step B's float2 reads (16 lanes = 128 contiguous bytes) hit
// 32 distinct banks when 2^k ≥ 256 (smaller 2^k: still correct, some 2-way conflicts).
// Barriers per row group: one before step A (ring slot landed, work row free), one after it
// (work row written, ring slot free for the next cp.async).
QUAMBA_HD constexpr int pipelined_items_per_row(int m, int log_p) { return log_p >= 5 ? (m << (log_p - 5)) : 0; }
QUAMBA_HD constexpr int pipelined_rows(int m, int log_p) {
  return pipelined_items_per_row(m, log_p) >= 128 ? 1 : 128 / pipelined_items_per_row(m, log_p);
}
QUAMBA_HD constexpr int64_t pipelined_smem_bytes(int m, int log_p, int in_bytes, int stages) {
  return static_cast<int64_t>(pipelined_rows(m, log_p)) * m * (int64_t(1) << log_p) *
         ((m > 1 ? 4 : 0) + static_cast<int64_t>(stages) * in_bytes);
}
inline constexpr int kPipelinedDefaultStages = 2;
inline constexpr int64_t kPipelinedMaxSmem = 96 * 1024;
QUAMBA_HD constexpr bool pipelined_supported(int m, int log_p, int in_bytes, int stages = kPipelinedDefaultStages) {
  return (m == 1 || m == 12 || m == 20 || m == 28) && log_p >= 5 && log_p <= 10 && stages >= 1 &&
         pipelined_smem_bytes(m, log_p, in_bytes, stages) <= kPipelinedMaxSmem;
}

template <typename InT, typename OutT, int kM_, int kLogP_, int kStages_ = kPipelinedDefaultStages,
          int kMinBlocks_ = 0>
struct HadamardPipelinedTraits {
  static constexpr int kM = kM_;
  static constexpr int kLogP = kLogP_;
  static constexpr int kP = 1 << kLogP;
  static constexpr int kN = kM * kP;
  static constexpr int kStages = kStages_;
  static_assert(pipelined_supported(kM, kLogP, sizeof(InT), kStages),
                "pipelined variant: 2^k in [32, 1024], smem within 96 KiB");
  static constexpr int kMidBits = kLogP - 5;         // i_p bits 3 .. k-3, done by warp shuffles
  static constexpr int kMid = 1 << kMidBits;
  static constexpr int kItemsPerRow = pipelined_items_per_row(kM, kLogP);  // 32 elements each
  static constexpr int kRows = pipelined_rows(kM, kLogP);                  // rows per group
  static constexpr int kItems = kRows * kItemsPerRow;
  static constexpr int kThreads = ((kItems + 31) / 32) * 32;
  static constexpr int kMixItems = kM > 1 ? kRows * (kP / 2) : 0;  // step B: 2 columns each
  static constexpr int kStoreVec = kM > 1 ? 2 : 4;                 // outputs per vector store
  static constexpr int kRawElems = kRows * kN;                     // one ring slot
  static constexpr size_t kRawBytes = sizeof(InT) * static_cast<size_t>(kRawElems) * kStages;
  static constexpr size_t kWorkBytes = kM > 1 ? sizeof(float) * static_cast<size_t>(kRawElems) : 0;
  static constexpr size_t kSmemBytes = kRawBytes + kWorkBytes;
  static constexpr int kChunksPerRow = static_cast<int>(kN * sizeof(InT) / 16);  // 16-byte cp.async
  // Resident blocks asked of ptxas: as many as smem allows (227 KiB per SM, 1 KiB reserved per
  // block) but never a register cap below what step B's mix needs without spilling (2m inputs
  // and m outputs live: 72 registers up to m = 12, 80 at m = 20, 96 at m = 28, where ptxas
  // budgets the 224-thread block as 256 threads); kMinBlocks_ > 0 overrides (benchmark).
  // ptxas -v (CUDA 13): n = 5120 72 registers, no spills on sm_90a (24–36 bytes spilled on
  // sm_80, which sizes the same cap differently); m = 28 no spills on sm_90a.
  static constexpr int kRegFloor = kM <= 12 ? 72 : (kM == 20 ? 80 : 96);
  static constexpr int kRegThreads = kM == 28 ? ((kThreads + 127) / 128) * 128 : kThreads;
  static constexpr int kBySmem = static_cast<int>((227 * 1024) / (kSmemBytes + 1024));
  static constexpr int kByRegs = 65536 / (kRegThreads * kRegFloor);
  static constexpr int kByThreads = 2048 / kThreads;
  static constexpr int kAutoMin0 = kBySmem < kByRegs ? kBySmem : kByRegs;
  static constexpr int kAutoMin = kAutoMin0 < kByThreads ? kAutoMin0 : kByThreads;
  static constexpr int kMinBlocks = kMinBlocks_ > 0 ? kMinBlocks_ : (kAutoMin > 0 ? kAutoMin : 1);
  static_assert(kThreads <= 1024, "block too large");
  static_assert(32 % kMid == 0 && kItemsPerRow % kMid == 0, "a shuffle partner must lie in the same sub-block");
  static_assert((kN * sizeof(InT)) % 16 == 0, "rows are copied in 16-byte chunks");

  static std::string name() {
    const char* in = std::is_same_v<InT, float> ? "f32" : "f16";
    const char* out = std::is_same_v<OutT, int8_t> ? "i8" : (std::is_same_v<OutT, float> ? "f32" : "f16");
    return std::string("pipelined_") + in + "to" + out + "_m" + std::to_string(kM) + "_p" + std::to_string(kP) +
           "_t" + std::to_string(kThreads) + "_r" + std::to_string(kRows) + "_s" + std::to_string(kStages) + "_b" +
           std::to_string(kMinBlocks);
  }
};


// Tensor-core pipelined variant (run_pipelined_mma(); run() does not pick it): the pipelined
// variant's ring and step B, with step A's 2^k = 256 part on the tensor cores, fp16 inputs only,
// m ∈ {12, 20, 28} (n = 3072, 5120, 7168). Each 256-element sub-block is a 16×16 fp16 matrix
// X[a][b] (i_p = 16a + b); a warp takes one sub-block at a time:
//   T = X · (H_16/16)   one ldmatrix.x4 (A fragment) and 2 mma.m16n8k16 (fp32 accumulate); X
//                       is exact in fp16 and ±1/16 is exact, so T is the fp32 sum of exact
//                       products, and |T| ≤ max|x| keeps T within fp16 range below.
//   Z = H_16 · T        T as the B operand: each 8×8 block split T = hi + lo (fp16 each, ~22
//                       significant bits together), transposed into B fragments by
//                       movmatrix.trans, 4 mma accumulating H·hi + H·lo in fp32.
//   Z = (H_256 x)/16 goes to the work row (fp32, float2 stores), and step B mixes it with the
//   factor 16·scale (a power of two: the same rounding as scaling Z·16).
// Per element that is ~5 instructions for the 256 part instead of ~12 (32 butterfly adds per 32
// elements plus 3 shuffle stages), so a row costs ~15 instead of ~22. The raw ring is swizzled
// per 16-byte chunk (chunk index bit 0 ^= bit 3) so the ldmatrix rows (32 bytes apart) hit 32
// distinct banks; the work row per float (bit 3 ^= bit 5) so the accumulator-layout float2
// stores (16 lanes: 4 rows of 8 floats, 64 bytes apart) do too, and step B's reads stay
// conflict-free.
QUAMBA_HD constexpr bool pipelined_mma_supported(int m, int log_p, int in_bytes) {
  return in_bytes == 2 && log_p == 8 && (m == 12 || m == 20 || m == 28) &&
         pipelined_smem_bytes(m, log_p, in_bytes, kPipelinedDefaultStages) <= kPipelinedMaxSmem;
}

template <typename InT, typename OutT, int kM_, int kStages_ = kPipelinedDefaultStages, int kMinBlocks_ = 0>
struct HadamardPipelinedMmaTraits {
  static_assert(std::is_same_v<InT, __half>, "the tensor-core variant reads fp16 inputs");
  static constexpr int kM = kM_;
  static constexpr int kLogP = 8;
  static constexpr int kP = 256;
  static constexpr int kN = kM * kP;
  static constexpr int kStages = kStages_;
  static_assert(kM == 12 || kM == 20 || kM == 28, "m must be 12, 20 or 28");
  static_assert(kStages >= 1 && pipelined_smem_bytes(kM, kLogP, 2, kStages) <= kPipelinedMaxSmem,
                "ring + work row within 96 KiB");
  static constexpr int kRows = 1;
  static constexpr int kThreads = 128;  // 4 warps: kM/4 sub-blocks each in step A, 128 column pairs in step B
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kMixItems = kP / 2;
  static constexpr int kStoreVec = 2;
  static constexpr int kRawElems = kN;
  static constexpr size_t kRawBytes = sizeof(__half) * static_cast<size_t>(kN) * kStages;
  static constexpr size_t kWorkBytes = sizeof(float) * static_cast<size_t>(kN);
  static constexpr size_t kSmemBytes = kRawBytes + kWorkBytes;
  static constexpr int kChunksPerRow = kN * 2 / 16;
  static constexpr int kBySmem = static_cast<int>((227 * 1024) / (kSmemBytes + 1024));
  static constexpr int kByRegs = 65536 / (kThreads * 72);
  static constexpr int kAutoMin = kBySmem < kByRegs ? kBySmem : kByRegs;
  static constexpr int kMinBlocks = kMinBlocks_ > 0 ? kMinBlocks_ : (kAutoMin > 0 ? kAutoMin : 1);
  static_assert(kMixItems == kThreads, "step B: one column pair per thread");

  static std::string name() {
    const char* out = std::is_same_v<OutT, int8_t> ? "i8" : (std::is_same_v<OutT, float> ? "f32" : "f16");
    return std::string("pipelined_mma_f16to") + out + "_m" + std::to_string(kM) + "_p256_t" +
           std::to_string(kThreads) + "_s" + std::to_string(kStages) + "_b" + std::to_string(kMinBlocks);
  }
};


// Streamed variant (run_streamed(); run() picks it for fp16 inputs at n = 3072 and 5120, numbers
// at run()): fp16 inputs, n = m·256 with m ∈ {12, 20}. Why another kernel: the tensor-core
// variant still spends a third of its instructions moving the 256-point result through an fp32
// work row (20 KiB written and read back per row, a second barrier) and keeps its ring two rows
// deep with 4 warps per row. Here a WARP PAIR owns a row and nothing but the raw input touches
// shared memory:
//   index map  element i_p of a 256-element sub-block is X[a][b] (a, b ∈ [0, 16)) with
//              i_p = 128·b3 + 4·(4·(a & 7) + ((b >> 1) & 3)) + 2·a3 + b0. Sylvester's H_256 is
//              invariant under a common permutation of index bits, so H_256 = H_16(a) ⊗ H_16(b)
//              under this map too. It is chosen so that the mma.m16n8k16 A fragment of lane
//              (g, q) = lane is two 8-byte runs (i_p = 4·lane + 0..3 and 128 + 4·lane + 0..3):
//              plain ld.shared.v2 (a warp reads 256 contiguous bytes: no conflicts, no swizzle,
//              no ldmatrix), and the stage-2 accumulator of n-tile j holds the outputs
//              i_p = 128·j + 4·lane + 0..3: 4 contiguous outputs per lane per sub-block.
//   step A     warp j (n-tile j) of the pair runs, for every sub-block, T = X·(H_16/16) (one mma)
//              and Z = H_16·T (T split into fp16 hi + lo, movmatrix.trans, two mmas), the same
//              arithmetic as the tensor-core pipelined variant, and keeps Z in registers: m·4
//              floats per lane, the SAME 4 positions in every sub-block.
//   mix        so H_m mixes registers: per position the lane holds all m values; mix_scaled
//              (Paley I) applies H_m and the scale, and a lane stores 4 contiguous outputs per
//              sub-block (int8: one 4-byte store; a warp store covers 128 contiguous bytes).
// kSplit = 2 (4 warps per row: for small row counts, where a row's latency is the time): warp
// (j, h) does sub-blocks [h·m/2, (h+1)·m/2), swaps the other half of its positions with warp
// (j, 1 − h) through shared memory (m/2 KiB: a float2 per lane per sub-block, no conflicts) and
// mixes 2 positions.
// Rows stream through a kStages-slot cp.async ring per block (persistent grid; one barrier per
// row with kSplit = 1: it both publishes the arrived row and frees the slot read one row earlier,
// which is refilled at once, kStages − 1 rows ahead).
QUAMBA_HD constexpr bool streamed_supported(int m, int log_p, int in_bytes) {
  return in_bytes == 2 && log_p == 8 && (m == 12 || m == 20);
}
inline constexpr int kStreamedDefaultStages = 3;

// The row shape of the tensor-core row kernels (streamed, bulk-copy): fp16 rows of n = m·256,
// m ∈ {12, 20}, int8 or fp16 outputs.
template <typename OutT, int kM_>
struct TensorCoreRowShape {
  static_assert(std::is_same_v<OutT, int8_t> || std::is_same_v<OutT, __half>, "outputs: int8 or fp16");
  static constexpr int kM = kM_;
  static constexpr int kLogP = 8;
  static constexpr int kP = 256;
  static constexpr int kN = kM * kP;
  static constexpr int kRowBytes = kN * 2;
  static_assert(streamed_supported(kM, kLogP, 2), "tensor-core row kernels: m in {12, 20}, 2^k = 256");
};

template <typename OutT, int kM_, int kStages_ = kStreamedDefaultStages, int kSplit_ = 1, int kMinBlocks_ = 0>
struct HadamardStreamedTraits : TensorCoreRowShape<OutT, kM_> {
  using Shape = TensorCoreRowShape<OutT, kM_>;
  using Shape::kM;
  using Shape::kN;
  using Shape::kRowBytes;
  static constexpr int kStages = kStages_;
  static constexpr int kSplit = kSplit_;
  static_assert(kStages >= 2, "the ring refills the slot read one row earlier: at least 2 slots");
  static_assert(kSplit == 1 || kSplit == 2, "1 or 2 warps per n-tile");
  static_assert(kM % kSplit == 0, "sub-blocks split evenly");
  static constexpr int kWarps = 2 * kSplit;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kTiles = kM / kSplit;    // sub-blocks per warp in step A
  static constexpr int kPos = 4 / kSplit;       // positions per lane and sub-block in the mix
  // Outputs per vector store: int8 all kPos (4 or 2 bytes), fp16 2 (4 bytes, stored as soon as
  // a pair is mixed so fewer packed registers stay live).
  static constexpr int kStoreVec = std::is_same_v<OutT, int8_t> ? kPos : 2;
  static constexpr int kStoreBytes = kStoreVec * static_cast<int>(sizeof(OutT));
  static constexpr int kChunksPerRow = kRowBytes / 16;
  static constexpr size_t kRingBytes = static_cast<size_t>(kStages) * kRowBytes;
  static constexpr size_t kXchBytes = kSplit == 2 ? static_cast<size_t>(kWarps) * kTiles * 32 * 8 : 0;
  static constexpr size_t kSmemBytes = kRingBytes + kXchBytes;
  // Registers per thread under which ptxas (CUDA 13, sm_90a and sm_80) starts to spill: the
  // m·4 / kSplit Z values plus the mix's temporaries. m = 20: 128 with kSplit = 1 (8 blocks of
  // 64 threads fill the register file; a 112 cap spills 192 bytes), 92 with kSplit = 2; m = 12:
  // 92 / 80. The resident block count asked of ptxas is the smaller of this and the smem bound.
  static constexpr int kRegEstimate = kSplit == 1 ? (kM == 20 ? 128 : 96) : (kM == 20 ? 96 : 80);
  static constexpr int kBySmem = static_cast<int>((227 * 1024) / (kSmemBytes + 1024));
  static constexpr int kByRegs = 65536 / (kThreads * kRegEstimate);
  static constexpr int kAutoMin = kBySmem < kByRegs ? kBySmem : kByRegs;
  static constexpr int kMinBlocks = kMinBlocks_ > 0 ? kMinBlocks_ : (kAutoMin > 0 ? kAutoMin : 1);
  static_assert(kSmemBytes <= 227 * 1024, "ring within the opt-in smem");

  static std::string name() {
    const char* out = std::is_same_v<OutT, int8_t> ? "i8" : "f16";
    return std::string("streamed_f16to") + out + "_m" + std::to_string(kM) + "_p256_t" + std::to_string(kThreads) +
           "_s" + std::to_string(kStages) + "_b" + std::to_string(kMinBlocks);
  }
};

// Bulk-copy variant (sm_90+; run() takes it for fp16 inputs and int8 outputs at n = 3072 / 5120
// above kStreamedSplitMaxRows rows where the device and the loaded image allow, numbers at run()):
// the streamed variant's per-row arithmetic (a warp pair per row, tensor-core 256-point part,
// m-point mix in registers) with a different way of feeding rows. One CTA per SM holds kPairs
// warp pairs and a ring of kSlots = kWindow + kPairs raw rows; the CTA's rows (blockIdx.x,
// + gridDim.x, ...) are REQUESTED IN ORDER by single-instruction bulk copies (cp.async.bulk, one
// mbarrier per slot): rows 0..kWindow-1 at the start, then local row i + kWindow as soon as a
// warp pair has seen row i land. Warp pair k transforms local rows k, k + kPairs, ... So each SM
// keeps about kWindow rows requested (~40 KB: enough for the DRAM; more while pairs lag behind
// the arrivals, never more than kSlots), and rows land roughly one after another while earlier
// ones are transformed, instead of every row of the launch landing near the end of the read as
// when every block asks for its rows at once. Measured at 2048-8192 rows only: between 257 rows
// (where run() switches from the streamed split-2 form) and ~1000, most pairs have one row or
// none, and which form is faster there is not known. The m = 20 kernel sits at 128 registers,
// the __launch_bounds__(512, 1) cap, without spills: growth of the row code would spill.
// Slot reuse needs no second barrier: row i + kWindow goes into the slot of row i − kPairs,
// which the same warp pair finished before it waited for row i (its two warps meet at a named
// barrier first).
// Rows requested ahead per SM by run(): ~40-48 KB (n = 5120: 4 rows; n = 3072: 8), the best of
// the windows measured (numbers at run()).
QUAMBA_HD constexpr int bulk_default_window(int m) { return m == 20 ? 4 : 8; }

template <typename OutT, int kM_, int kPairs_ = 8, int kWindow_ = bulk_default_window(kM_)>
struct HadamardBulkTraits : TensorCoreRowShape<OutT, kM_> {
  using Shape = TensorCoreRowShape<OutT, kM_>;
  using Shape::kM;
  using Shape::kRowBytes;
  static constexpr int kPairs = kPairs_;
  static constexpr int kWindow = kWindow_;
  static constexpr int kSlots = kWindow + kPairs;
  static constexpr int kThreads = 64 * kPairs;
  static constexpr int kStoreVec = std::is_same_v<OutT, int8_t> ? 4 : 2;
  static constexpr int kStoreBytes = kStoreVec * static_cast<int>(sizeof(OutT));
  static constexpr size_t kBarOffset = static_cast<size_t>(kSlots) * kRowBytes;
  static constexpr size_t kSmemBytes = kBarOffset + static_cast<size_t>(kSlots) * 8;
  static_assert(kPairs >= 1 && kPairs <= 15, "named barriers 1..15, one per warp pair");
  static_assert(kWindow >= 1, "at least one row requested ahead");
  static_assert(kSmemBytes <= 227 * 1024, "ring within the opt-in smem");

  static std::string name() {
    const char* out = std::is_same_v<OutT, int8_t> ? "i8" : "f16";
    return std::string("bulk_f16to") + out + "_m" + std::to_string(kM) + "_p256_t" + std::to_string(kThreads) + "_w" +
           std::to_string(kWindow);
  }
};

namespace detail {

template <typename T> struct Raw;
template <> struct Raw<__half> { using type = uint16_t; };
template <> struct Raw<float> { using type = float; };

QUAMBA_DEVICE float to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
QUAMBA_DEVICE float to_float(float f) { return f; }

// quantize_i8 in one conversion: cvt.rni.sat.s8.f32 rounds half to even, saturates to
// [-128, 127] and maps NaN to 0, exactly the core quantizer's contract (rintf + clamp + F2I
// would cost three ops on the quarter-rate conversion pipe per element).
QUAMBA_DEVICE int8_t quantize_i8_cvt(float v, float scale) {
  unsigned short r;
  asm("cvt.rni.sat.s8.f32 %0, %1;" : "=h"(r) : "f"(v * scale));
  return static_cast<int8_t>(r & 0xff);
}
QUAMBA_DEVICE void store_one(int8_t* p, float v, float scale) { *p = quantize_i8_cvt(v, scale); }
QUAMBA_DEVICE void store_one(__half* p, float v, float scale) { *p = __float2half_rn(v * scale); }
QUAMBA_DEVICE void store_one(float* p, float v, float scale) { *p = v * scale; }

// kVec contiguous elements as fp32, in accesses of up to 16 bytes.
template <typename InT, int kVec>
QUAMBA_DEVICE void load_run(const InT* src, float (&a)[kVec]) {
  using R = typename Raw<InT>::type;
  constexpr int kAcc = kVec < kVec16<R> ? kVec : kVec16<R>;
  using V = Vec<R, kAcc>;
  const V* p = reinterpret_cast<const V*>(src);
#pragma unroll
  for (int c = 0; c < kVec / kAcc; ++c) {
    const V v = p[c];
#pragma unroll
    for (int e = 0; e < kAcc; ++e) a[c * kAcc + e] = to_float(v[e]);
  }
}

// In-register Sylvester butterflies over all log2(kR) index bits: (u, w) → (u + w, u − w).
template <int kR>
QUAMBA_DEVICE void butterfly(float (&a)[kR]) {
#pragma unroll
  for (int h = 1; h < kR; h <<= 1)
#pragma unroll
    for (int i = 0; i < kR; ++i)
      if ((i & h) == 0) {
        const float u = a[i], w = a[i + h];
        a[i] = u + w;
        a[i + h] = u - w;
      }
}

// First column j of row kI with H_m[kI][j] = kSign (-1 when none).
template <int kM>
constexpr int first_with_sign(int i, int sign) {
  for (int j = 0; j < kM; ++j)
    if (SmallHadamard<kM>::kTable.h[i][j] == sign) return j;
  return -1;
}
template <int kM, int kI, int kSign>
inline constexpr int kFirstWithSign = first_with_sign<kM>(kI, kSign);

template <int kM, int kI, int kSign, int kFirst, int kJ>
QUAMBA_DEVICE void add_if_sign(float& s, const float (&x)[kM]) {
  if constexpr (kJ != kFirst && kSmallHadamardEntry<kM, kI, kJ> == kSign) s += x[kJ];
}

// Σ_{j: H_m[kI][j] = kSign} x_j, with every index and sign a template constant (at least one
// such j exists: the caller never asks for an empty set).
template <int kM, int kI, int kSign, int... kJ>
QUAMBA_DEVICE float signed_set_sum(const float (&x)[kM], std::integer_sequence<int, kJ...>) {
  constexpr int kFirst = kFirstWithSign<kM, kI, kSign>;
  static_assert(kFirst >= 0, "empty sign set");
  float s = x[kFirst];
  (add_if_sign<kM, kI, kSign, kFirst, kJ>(s, x), ...);
  return s;
}

// y_kI = (H_m x)_kI = 2·Σ_{+} x − total  or  total − 2·Σ_{−} x, using the smaller set.
template <int kM, int kI>
QUAMBA_DEVICE float small_row(const float (&x)[kM], float total) {
  constexpr int kPos = kSmallHadamardRowPositives<kM, kI>;
  if constexpr (2 * kPos <= kM) {
    if constexpr (kPos == 0) return -total;
    else return fmaf(2.0f, signed_set_sum<kM, kI, 1>(x, std::make_integer_sequence<int, kM>{}), -total);
  } else {
    if constexpr (kPos == kM) return total;
    else return fmaf(-2.0f, signed_set_sum<kM, kI, -1>(x, std::make_integer_sequence<int, kM>{}), total);
  }
}

template <int kM, int... kI>
QUAMBA_DEVICE void small_product(const float (&x)[kM], float (&y)[kM], std::integer_sequence<int, kI...>) {
  float total = x[0];
#pragma unroll
  for (int j = 1; j < kM; ++j) total += x[j];
  ((y[kI] = small_row<kM, kI>(x, total)), ...);
}

// Power-of-two phases over i_p bits [kLo, kLogP), ≤ 5 bits each, on the smem-resident rows.
// The last one writes global memory when there is no m-part.
template <typename Tr, int kLo, typename InT, typename OutT>
QUAMBA_DEVICE void pow2_phases(float* s, const HadamardParams<InT, OutT>& p, int64_t row0) {
  if constexpr (kLo < Tr::kLogP) {
    constexpr int kB = (Tr::kLogP - kLo) < 5 ? (Tr::kLogP - kLo) : 5;
    constexpr int kR = 1 << kB;
    constexpr bool kLast = (kLo + kB == Tr::kLogP) && Tr::kM == 1;
    constexpr int kItemsPerRow = Tr::kN >> kB;
    constexpr int kItems = Tr::kRows * kItemsPerRow;
    for (int g = threadIdx.x; g < kItems; g += Tr::kThreads) {
      const int rl = g / kItemsPerRow;
      const int r = g - rl * kItemsPerRow;
      const int low = r & ((1 << kLo) - 1);
      const int high = r >> kLo;
      const int e0 = (high << (kLo + kB)) + low;  // stays inside one 2^k block: 2^(kLo+kB) | 2^k
      float* base = s + rl * Tr::kN + e0;
      float a[kR];
#pragma unroll
      for (int j = 0; j < kR; ++j) a[j] = base[j << kLo];
      butterfly(a);
      if constexpr (kLast) {
        const int64_t row = row0 + rl;
        if (row < p.rows) {
          OutT* o = p.out + row * p.out_row_stride + e0;
#pragma unroll
          for (int j = 0; j < kR; ++j) store_one(o + (j << kLo), a[j], p.scale);
        }
      } else {
#pragma unroll
        for (int j = 0; j < kR; ++j) base[j << kLo] = a[j];
      }
    }
    if constexpr (!kLast) {
      __syncthreads();  // the next phase reads elements other threads wrote
      pow2_phases<Tr, kLo + kB>(s, p, row0);
    }
  }
}

template <typename Tr, typename InT, typename OutT>
__global__ void __launch_bounds__(Tr::kThreads) hadamard_kernel(HadamardParams<InT, OutT> p) {
  grid_dependency_wait();
  extern __shared__ float4 smem_f4[];  // float4: 16-byte alignment for the vector stores
  float* s = reinterpret_cast<float*>(smem_f4);
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * Tr::kRows;

  // Load step. The trip count is uniform across the block so all 32 lanes reach every shuffle.
#pragma unroll
  for (int it = 0; it < Tr::kLoadIters; ++it) {
    const int g = it * Tr::kThreads + t;
    const int rl = g / Tr::kVecsPerRow;
    const int e = (g - rl * Tr::kVecsPerRow) * Tr::kVec;
    const int64_t row = row0 + rl;
    const bool in_block = g < Tr::kVecs;
    const bool valid = in_block && row < p.rows;
    float a[Tr::kVec];
    if (valid) {
      load_run<InT, Tr::kVec>(p.x + row * p.x_row_stride + e, a);
    } else {
#pragma unroll
      for (int v = 0; v < Tr::kVec; ++v) a[v] = 0.0f;  // rows past M: defined values, never stored
    }
    butterfly(a);
    // Run g's index bits [0, kShflBits) are i_p bits [kLogVec, kRegBits); kVecsPerRow is a
    // multiple of 2^kShflBits so the partner lane holds the same row and the same 2^k block.
#pragma unroll
    for (int sb = 0; sb < Tr::kShflBits; ++sb) {
      const int mask = 1 << sb;
      // Lower lane: a + other; upper lane: other − a. One FFMA with a ±1 factor, no select.
      const float sign = (lane & mask) ? -1.0f : 1.0f;
#pragma unroll
      for (int v = 0; v < Tr::kVec; ++v) {
        const float other = __shfl_xor_sync(0xffffffffu, a[v], mask);
        a[v] = fmaf(sign, a[v], other);
      }
    }
    if constexpr (Tr::kUseSmem) {
      if (in_block) {
        float* d = s + g * Tr::kVec;
        if constexpr (Tr::kVec >= 4) {
#pragma unroll
          for (int v = 0; v < Tr::kVec; v += 4)
            *reinterpret_cast<float4*>(d + v) = make_float4(a[v], a[v + 1], a[v + 2], a[v + 3]);
        } else {
#pragma unroll
          for (int v = 0; v < Tr::kVec; ++v) d[v] = a[v];
        }
      }
    } else {
      if (valid) {
        OutT* o = p.out + row * p.out_row_stride + e;
#pragma unroll
        for (int v = 0; v < Tr::kVec; ++v) store_one(o + v, a[v], p.scale);
      }
    }
  }
  if constexpr (Tr::kUseSmem) {
    __syncthreads();
    pow2_phases<Tr, Tr::kRegBits>(s, p, row0);
    if constexpr (Tr::kM > 1) {
      // pow2_phases ended with a barrier after its last smem writes (or did nothing).
      constexpr int kItems = Tr::kRows * Tr::kP;
      for (int g = t; g < kItems; g += Tr::kThreads) {
        const int rl = g / Tr::kP;
        const int pp = g - rl * Tr::kP;
        const int64_t row = row0 + rl;
        if (row >= p.rows) continue;
        const float* base = s + rl * Tr::kN + pp;
        float x[Tr::kM], y[Tr::kM];
#pragma unroll
        for (int j = 0; j < Tr::kM; ++j) x[j] = base[j * Tr::kP];
        small_product<Tr::kM>(x, y, std::make_integer_sequence<int, Tr::kM>{});
        OutT* o = p.out + row * p.out_row_stride + pp;
#pragma unroll
        for (int i = 0; i < Tr::kM; ++i) store_one(o + i * Tr::kP, y[i], p.scale);
      }
    }
  }
}


// ---- staged kernel -----------------------------------------------------------------------------

// q8 of an already scaled value (cvt.rni.sat.s8.f32: ties to even, saturate, NaN → 0).
QUAMBA_DEVICE uint32_t cvt_s8(float v) {
  unsigned short r;
  asm("cvt.rni.sat.s8.f32 %0, %1;" : "=h"(r) : "f"(v));
  return static_cast<uint32_t>(r) & 0xffu;
}

// Two adjacent outputs (already scaled); vec: the pair is aligned for one access.
QUAMBA_DEVICE void store2(int8_t* o, float a, float b, bool vec) {
  const uint32_t qa = cvt_s8(a), qb = cvt_s8(b);
  if (vec) {
    *reinterpret_cast<uint16_t*>(o) = static_cast<uint16_t>(qa | (qb << 8));
  } else {
    o[0] = static_cast<int8_t>(qa);
    o[1] = static_cast<int8_t>(qb);
  }
}
QUAMBA_DEVICE void store2(__half* o, float a, float b, bool vec) {
  const __half2 h = __floats2half2_rn(a, b);
  if (vec) {
    *reinterpret_cast<__half2*>(o) = h;
  } else {
    o[0] = __low2half(h);
    o[1] = __high2half(h);
  }
}
QUAMBA_DEVICE void store2(float* o, float a, float b, bool vec) {
  if (vec) {
    *reinterpret_cast<float2*>(o) = make_float2(a, b);
  } else {
    o[0] = a;
    o[1] = b;
  }
}
// Four consecutive outputs (m = 1 path), each value times scale.
QUAMBA_DEVICE void store4(int8_t* o, const float* a, float scale, bool vec) {
  const uint32_t q0 = cvt_s8(a[0] * scale), q1 = cvt_s8(a[1] * scale), q2 = cvt_s8(a[2] * scale),
                 q3 = cvt_s8(a[3] * scale);
  if (vec) {
    *reinterpret_cast<uint32_t*>(o) = q0 | (q1 << 8) | (q2 << 16) | (q3 << 24);
  } else {
    o[0] = static_cast<int8_t>(q0);
    o[1] = static_cast<int8_t>(q1);
    o[2] = static_cast<int8_t>(q2);
    o[3] = static_cast<int8_t>(q3);
  }
}
QUAMBA_DEVICE void store4(__half* o, const float* a, float scale, bool vec) {
  const __half2 h0 = __floats2half2_rn(a[0] * scale, a[1] * scale);
  const __half2 h1 = __floats2half2_rn(a[2] * scale, a[3] * scale);
  if (vec) {
    uint2 w;
    w.x = *reinterpret_cast<const uint32_t*>(&h0);
    w.y = *reinterpret_cast<const uint32_t*>(&h1);
    *reinterpret_cast<uint2*>(o) = w;
  } else {
    o[0] = __low2half(h0);
    o[1] = __high2half(h0);
    o[2] = __low2half(h1);
    o[3] = __high2half(h1);
  }
}
QUAMBA_DEVICE void store4(float* o, const float* a, float scale, bool vec) {
  if (vec) {
    *reinterpret_cast<float4*>(o) = make_float4(a[0] * scale, a[1] * scale, a[2] * scale, a[3] * scale);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = a[i] * scale;
  }
}

// Butterflies over the index bits of a[] from bit kFirstBit up.
template <int kR, int kFirst>
QUAMBA_DEVICE void butterfly_from(float (&a)[kR]) {
#pragma unroll
  for (int h = kFirst; h < kR; h <<= 1)
#pragma unroll
    for (int i = 0; i < kR; ++i)
      if ((i & h) == 0) {
        const float u = a[i], w = a[i + h];
        a[i] = u + w;
        a[i + h] = u - w;
      }
}

// o = scale · H_m x. Paley I (m = q + 1, q = 11, 19): H = I + S, S = [[0, 1ᵀ], [−1, Q]],
// Q[i][j] = χ(j − i). With x'_a = x_{1+a} (a ∈ Z_q), T = Σ x', QR the quadratic residues:
//   y_0 = x_0 + T,   y_{1+i} = 2·(x'_i + Σ_{d∈QR} x'_{i+d}) − y_0
// (the non-residue sum is T − x'_i − Σ_QR). The 10-term (q = 19) / 6-term (q = 11) cyclic
// window sums share pair and quad sums, so an output costs 2 (q = 19) or 1 (q = 11) adds plus
// one FFMA that also applies the scale. Host-callable so the identity is testable on the CPU.
template <int kM>
QUAMBA_HD void mix_scaled_paley(const float (&x)[kM], float (&o)[kM], float scale) {
  constexpr int q = kM - 1;
  static_assert(q == 11 || q == 19, "Paley I orders here: 12, 20");
  float a[q];
QUAMBA_HADAMARD_UNROLL
  for (int i = 0; i < q; ++i) a[i] = x[1 + i] + x[1 + (i + 1) % q];
  float total;
  if constexpr (q == 19) {
    // 1 + QR(19) = {0, 1, 4, 5, 6, 7, 9, 11, 16, 17} = {0,1,16,17} ∪ {4..7} ∪ {9, 11}.
    float b[q], c[q], d[q];
QUAMBA_HADAMARD_UNROLL
    for (int i = 0; i < q; ++i) {
      b[i] = a[i] + a[(i + 2) % q];       // x'_i..x'_{i+3}
      c[i] = a[i] + a[(i + 16) % q];      // x'_i, x'_{i+1}, x'_{i+16}, x'_{i+17}
      d[i] = x[1 + i] + x[1 + (i + 2) % q];  // x'_i, x'_{i+2}
    }
    total = ((b[0] + b[4]) + (b[8] + b[12])) + (a[16] + x[1 + 18]);
    const float w = (x[0] + total) * scale;
    const float s2 = 2.0f * scale;
    o[0] = w;
QUAMBA_HADAMARD_UNROLL
    for (int i = 0; i < q; ++i) o[1 + i] = fmaf(s2, (c[i] + b[(i + 4) % q]) + d[(i + 9) % q], -w);
  } else {
    // 1 + QR(11) = {0, 1, 3, 4, 5, 9} = {0, 1, 3, 4} ∪ {5, 9}.
    float b[q], e[q];
QUAMBA_HADAMARD_UNROLL
    for (int i = 0; i < q; ++i) {
      b[i] = a[i] + a[(i + 3) % q];          // x'_i, x'_{i+1}, x'_{i+3}, x'_{i+4}
      e[i] = x[1 + i] + x[1 + (i + 4) % q];  // x'_i, x'_{i+4}
    }
    total = ((a[0] + a[2]) + (a[4] + a[6])) + (a[8] + x[1 + 10]);
    const float w = (x[0] + total) * scale;
    const float s2 = 2.0f * scale;
    o[0] = w;
QUAMBA_HADAMARD_UNROLL
    for (int i = 0; i < q; ++i) o[1 + i] = fmaf(s2, b[i] + e[(i + 5) % q], -w);
  }
}

template <int kM>
QUAMBA_DEVICE void mix_scaled(const float (&x)[kM], float (&o)[kM], float scale) {
  if constexpr (kM == 12 || kM == 20) {
    mix_scaled_paley<kM>(x, o, scale);
  } else {
    float y[kM];
    small_product<kM>(x, y, std::make_integer_sequence<int, kM>{});
#pragma unroll
    for (int i = 0; i < kM; ++i) o[i] = y[i] * scale;
  }
}

// The m-point mix of one column pair: v[im] holds columns (2u, 2u + 1) of sub-block im (stride
// kP); the scaled outputs of both columns go to o[im·kP], o[im·kP + 1].
template <int kM, int kP, typename OutT>
QUAMBA_DEVICE void mix_store_pair(const float2 (&v)[kM], OutT* o, float scale, bool vec_out) {
  float x[kM], y0[kM], y1[kM];
#pragma unroll
  for (int im = 0; im < kM; ++im) x[im] = v[im].x;
  mix_scaled<kM>(x, y0, scale);
#pragma unroll
  for (int im = 0; im < kM; ++im) x[im] = v[im].y;
  mix_scaled<kM>(x, y1, scale);
#pragma unroll
  for (int im = 0; im < kM; ++im) store2(o + im * kP, y0[im], y1[im], vec_out);
}

// Float index in the block's smem of element e (a multiple of 2 at least) of local row rl.
template <typename Tr>
QUAMBA_DEVICE int staged_smem_index(int rl, int e) {
  const int pp = e & (Tr::kP - 1);
  int sw0;
  if constexpr (Tr::kMidBits >= 3) sw0 = (pp >> 5) & 1;  // b5: the third lane bit of the load step
  else sw0 = (rl * Tr::kM + (e >> Tr::kLogP)) & 1;        // there the sub-block / row parity
  const int sw = sw0 | (((pp >> (Tr::kLogP - 2)) & 3) << 1);
  return rl * Tr::kN + (e ^ (sw << 2));
}

template <typename Tr, typename InT, typename OutT>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks)
    hadamard_staged_kernel(HadamardParams<InT, OutT> p, int64_t groups, bool vec_out) {
  grid_dependency_wait();
  extern __shared__ float4 smem_f4[];
  float* s = reinterpret_cast<float*>(smem_f4);
  using R = typename Raw<InT>::type;
  constexpr int kAcc = kVec16<R>;           // elements per 16-byte access (8 fp16, 4 fp32)
  constexpr int kAccPerRun = 8 / kAcc;      // 1 (fp16) or 2 (fp32)
  constexpr int kTopStride = Tr::kP / 4;    // elements between the 4 runs of a load item
  using V = Vec<R, kAcc>;
  const int t = threadIdx.x;

  // Load role (the same for every row group): run at element l_e + j·kTopStride, j < 4.
  const bool load_role = t < Tr::kRows * Tr::kLoadItems;
  const int l_rl = t / Tr::kLoadItems;
  const int l_g = t - l_rl * Tr::kLoadItems;
  const int l_e = (l_g >> Tr::kMidBits) * Tr::kP + (l_g & (Tr::kMid - 1)) * 8;
  V raw[4][kAccPerRun];

  int64_t grp = blockIdx.x;
  bool have = false;
  if (grp < groups && load_role) {
    const int64_t row = grp * Tr::kRows + l_rl;
    have = row < p.rows;
    if (have) {
      const V* src = reinterpret_cast<const V*>(p.x + row * p.x_row_stride + l_e);
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int c = 0; c < kAccPerRun; ++c) raw[j][c] = src[j * (kTopStride / kAcc) + c];
    }
  }

  for (; grp < groups; grp += gridDim.x) {
    const int64_t row_base = grp * Tr::kRows;
    if (have) {
      float a[32];  // index bits 0..2 = b0..b2, bits 3..4 = top bits
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int c = 0; c < kAccPerRun; ++c)
#pragma unroll
          for (int v = 0; v < kAcc; ++v) a[j * 8 + c * kAcc + v] = to_float(raw[j][c][v]);
      butterfly(a);
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int e = l_e + j * kTopStride + h * 4;
          const int i = j * 8 + h * 4;
          *reinterpret_cast<float4*>(s + staged_smem_index<Tr>(l_rl, e)) =
              make_float4(a[i], a[i + 1], a[i + 2], a[i + 3]);
        }
    }
    __syncthreads();  // the mid step reads what other threads stored

    // Next group's loads: in flight during the mid and mix steps (raw[] is free again).
    const int64_t next = grp + gridDim.x;
    have = false;
    if (next < groups && load_role) {
      const int64_t row = next * Tr::kRows + l_rl;
      have = row < p.rows;
      if (have) {
        const V* src = reinterpret_cast<const V*>(p.x + row * p.x_row_stride + l_e);
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int c = 0; c < kAccPerRun; ++c) raw[j][c] = src[j * (kTopStride / kAcc) + c];
      }
    }

    // Mid step: item h = (i_m, top, b2) from high to low bits.
    if (t < Tr::kRows * Tr::kMidItems) {
      const int rl = t / Tr::kMidItems;
      const int h = t - rl * Tr::kMidItems;
      const int64_t row = row_base + rl;
      if (row < p.rows) {
        const int e0 = (h >> 3) * Tr::kP + ((h >> 1) & 3) * kTopStride + (h & 1) * 4;
        float a[4 * Tr::kMid];  // index bits 0..1 = b0..b1, bits 2.. = mid bits
#pragma unroll
        for (int c = 0; c < Tr::kMid; ++c) {
          const float4 v = *reinterpret_cast<const float4*>(s + staged_smem_index<Tr>(rl, e0 + c * 8));
          a[4 * c] = v.x;
          a[4 * c + 1] = v.y;
          a[4 * c + 2] = v.z;
          a[4 * c + 3] = v.w;
        }
        butterfly_from<4 * Tr::kMid, 4>(a);
        if constexpr (Tr::kM > 1) {
#pragma unroll
          for (int c = 0; c < Tr::kMid; ++c)
            *reinterpret_cast<float4*>(s + staged_smem_index<Tr>(rl, e0 + c * 8)) =
                make_float4(a[4 * c], a[4 * c + 1], a[4 * c + 2], a[4 * c + 3]);
        } else {
          OutT* o = p.out + row * p.out_row_stride + e0;
#pragma unroll
          for (int c = 0; c < Tr::kMid; ++c) store4(o + c * 8, a + 4 * c, p.scale, vec_out);
        }
      }
    }

    if constexpr (Tr::kM > 1) {
      __syncthreads();  // the mix step reads what other threads wrote back
      if (t < Tr::kRows * Tr::kMixItems) {
        const int rl = t / Tr::kMixItems;
        const int u = t - rl * Tr::kMixItems;
        const int64_t row = row_base + rl;
        if (row < p.rows) {
          float2 v[Tr::kM];
#pragma unroll
          for (int im = 0; im < Tr::kM; ++im)
            v[im] = *reinterpret_cast<const float2*>(s + staged_smem_index<Tr>(rl, im * Tr::kP + 2 * u));
          mix_store_pair<Tr::kM, Tr::kP>(v, p.out + row * p.out_row_stride + 2 * u, p.scale, vec_out);
        }
      }
    }
    __syncthreads();  // the next group's load step overwrites smem
  }
}


// ---- pipelined kernel --------------------------------------------------------------------------

QUAMBA_DEVICE void cp_async_16(void* smem, const void* gmem) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(gmem) : "memory");
}
QUAMBA_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
QUAMBA_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Work-row float index of element e: bit 2 ^= bit 5 (see HadamardPipelinedTraits). A bijection
// inside every aligned 32-float block that keeps float4 (e % 4 = 0) and float2 (e even) groups
// contiguous.
QUAMBA_DEVICE int pipelined_swizzle(int e) { return e ^ (((e >> 5) & 1) << 2); }

// Issues the 16-byte copies of row group grp into ring slot `slot` (rows past M are skipped:
// their slot contents are never stored) and commits one group, empty or not, so the wait count
// stays uniform.
template <typename Tr, typename InT, typename OutT>
QUAMBA_DEVICE void pipelined_issue(const HadamardParams<InT, OutT>& p, InT* raw, int64_t grp, int64_t groups,
                                   int slot) {
  if (grp < groups) {
    char* dst = reinterpret_cast<char*>(raw + static_cast<size_t>(slot) * Tr::kRawElems);
    for (int c = threadIdx.x; c < Tr::kRows * Tr::kChunksPerRow; c += Tr::kThreads) {
      const int rl = c / Tr::kChunksPerRow;
      const int cc = c - rl * Tr::kChunksPerRow;
      const int64_t row = grp * Tr::kRows + rl;
      if (row < p.rows)
        cp_async_16(dst + (static_cast<size_t>(rl) * Tr::kN * sizeof(InT) + static_cast<size_t>(cc) * 16),
                    reinterpret_cast<const char*>(p.x + row * p.x_row_stride) + static_cast<size_t>(cc) * 16);
    }
  }
  cp_async_commit();
}

template <typename Tr, typename InT, typename OutT>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks)
    hadamard_pipelined_kernel(HadamardParams<InT, OutT> p, int64_t groups, bool vec_out) {
  grid_dependency_wait();
  extern __shared__ float4 smem_f4[];
  InT* raw = reinterpret_cast<InT*>(smem_f4);  // kStages slots of kRows·n inputs
  float* work = reinterpret_cast<float*>(reinterpret_cast<char*>(smem_f4) + Tr::kRawBytes);
  using R = typename Raw<InT>::type;
  constexpr int kAcc = kVec16<R>;       // elements per 16-byte smem read (8 fp16, 4 fp32)
  constexpr int kAccPerRun = 8 / kAcc;  // 1 (fp16) or 2 (fp32)
  constexpr int kTopStride = Tr::kP / 4;
  using V = Vec<R, kAcc>;
  const int t = threadIdx.x;
  const int lane = t & 31;

  // Step-A role (the same for every row group): item t = (row rl, sub-block im, middle index).
  const bool a_role = t < Tr::kItems;
  const int a_rl = t / Tr::kItemsPerRow;
  const int a_g = t - a_rl * Tr::kItemsPerRow;
  const int a_e = (a_g >> Tr::kMidBits) * Tr::kP + (a_g & (Tr::kMid - 1)) * 8;  // run j at a_e + j·kTopStride

  const int64_t stride = gridDim.x;
#pragma unroll
  for (int s = 0; s < Tr::kStages; ++s)
    pipelined_issue<Tr>(p, raw, blockIdx.x + s * stride, groups, s);

  int slot = 0;
  for (int64_t grp = blockIdx.x; grp < groups; grp += stride) {
    // This group's copies are the oldest pending of this thread's kStages groups; the barrier
    // publishes every thread's copies and ends the previous group's step B (work row reads).
    cp_async_wait<Tr::kStages - 1>();
    __syncthreads();

    const int64_t row_base = grp * Tr::kRows;
    {
      float a[32];  // index bits 0..2 = i_p bits 0..2, bits 3..4 = the two top bits of i_p
      const int64_t row = row_base + a_rl;
      const bool valid = a_role && row < p.rows;
      if (a_role) {
        const R* src = reinterpret_cast<const R*>(raw) + static_cast<size_t>(slot) * Tr::kRawElems +
                       a_rl * Tr::kN + a_e;
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int c = 0; c < kAccPerRun; ++c) {
            const V v = *reinterpret_cast<const V*>(src + j * kTopStride + c * kAcc);
#pragma unroll
            for (int e = 0; e < kAcc; ++e) a[j * 8 + c * kAcc + e] = to_float(v[e]);
          }
      } else {
#pragma unroll
        for (int i = 0; i < 32; ++i) a[i] = 0.0f;  // padding lanes: defined values, never stored
      }
      butterfly(a);
      // Middle bits by shuffles; every lane of the warp takes part (padding lanes included).
#pragma unroll
      for (int sb = 0; sb < Tr::kMidBits; ++sb) {
        const int mask = 1 << sb;
        const float sign = (lane & mask) ? -1.0f : 1.0f;
#pragma unroll
        for (int i = 0; i < 32; ++i) {
          const float other = __shfl_xor_sync(0xffffffffu, a[i], mask);
          a[i] = fmaf(sign, a[i], other);
        }
      }
      if constexpr (Tr::kM == 1) {
        if (valid) {
          OutT* o = p.out + row * p.out_row_stride + a_e;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            store4(o + j * kTopStride, a + j * 8, p.scale, vec_out);
            store4(o + j * kTopStride + 4, a + j * 8 + 4, p.scale, vec_out);
          }
        }
      } else {
        if (a_role) {
          float* w = work + a_rl * Tr::kN;
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int e = a_e + j * kTopStride + h * 4;
              const int i = j * 8 + h * 4;
              *reinterpret_cast<float4*>(w + pipelined_swizzle(e)) = make_float4(a[i], a[i + 1], a[i + 2], a[i + 3]);
            }
        }
      }
    }
    __syncthreads();  // the work row is complete; every thread is done with this ring slot

    pipelined_issue<Tr>(p, raw, grp + Tr::kStages * stride, groups, slot);
    slot = slot + 1 == Tr::kStages ? 0 : slot + 1;

    if constexpr (Tr::kM > 1) {
      for (int g = t; g < Tr::kMixItems; g += Tr::kThreads) {
        const int rl = g / (Tr::kP / 2);
        const int u = g - rl * (Tr::kP / 2);
        const int64_t row = row_base + rl;
        if (row >= p.rows) continue;
        const float* w = work + rl * Tr::kN;
        float2 v[Tr::kM];
#pragma unroll
        for (int im = 0; im < Tr::kM; ++im)
          v[im] = *reinterpret_cast<const float2*>(w + pipelined_swizzle(im * Tr::kP + 2 * u));
        mix_store_pair<Tr::kM, Tr::kP>(v, p.out + row * p.out_row_stride + 2 * u, p.scale, vec_out);
      }
    }
  }
  cp_async_wait<0>();  // no copy may be left in flight when the block exits
}


// ---- tensor-core pipelined kernel --------------------------------------------------------------

QUAMBA_DEVICE uint32_t half_pair_bits(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);  // lo in the low 16 bits: the smaller index
  return *reinterpret_cast<const uint32_t*>(&h);
}
QUAMBA_DEVICE uint32_t movmatrix_trans(uint32_t a) {
  uint32_t d;
  asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(d) : "r"(a));
  return d;
}
// d += A·B, m16n8k16, fp16 inputs, fp32 accumulators.
QUAMBA_DEVICE void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
QUAMBA_DEVICE void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}
// fp16 bits of ±base (base = 0x3C00: 1, 0x2C00: 1/16) at Sylvester entry (r, c) of H_16.
QUAMBA_DEVICE uint32_t h16_bits(int r, int c, uint32_t base) { return base | ((__popc(r & c) & 1u) << 15); }
QUAMBA_DEVICE uint32_t h16_pair(int r0, int c0, int r1, int c1, uint32_t base) {
  return h16_bits(r0, c0, base) | (h16_bits(r1, c1, base) << 16);
}
// Ring chunk swizzle (16-byte chunk index within a row: bit 0 ^= bit 3) and work-row float
// swizzle (bit 3 ^= bit 5) of the tensor-core variant.
QUAMBA_DEVICE int mma_chunk_swizzle(int c) { return c ^ ((c >> 3) & 1); }
QUAMBA_DEVICE int mma_work_swizzle(int e) { return e ^ (((e >> 5) & 1) << 3); }

template <typename Tr, typename OutT>
QUAMBA_DEVICE void pipelined_mma_issue(const HadamardParams<__half, OutT>& p, __half* raw, int64_t row, int slot) {
  if (row < p.rows) {
    char* dst = reinterpret_cast<char*>(raw + static_cast<size_t>(slot) * Tr::kRawElems);
    const char* src = reinterpret_cast<const char*>(p.x + row * p.x_row_stride);
    for (int c = threadIdx.x; c < Tr::kChunksPerRow; c += Tr::kThreads)
      cp_async_16(dst + static_cast<size_t>(mma_chunk_swizzle(c)) * 16, src + static_cast<size_t>(c) * 16);
  }
  cp_async_commit();
}

template <typename Tr, typename OutT>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks)
    hadamard_pipelined_mma_kernel(HadamardParams<__half, OutT> p, bool vec_out) {
  grid_dependency_wait();
  extern __shared__ float4 smem_f4[];
  __half* raw = reinterpret_cast<__half*>(smem_f4);
  float* work = reinterpret_cast<float*>(reinterpret_cast<char*>(smem_f4) + Tr::kRawBytes);
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;
  const int g = lane >> 2, q = lane & 3;  // accumulator row group / pair index

  // Constant fragments. Stage 1 B = H_16/16 (k = b', n = b): n-tile j holds columns 8j..8j+7.
  uint32_t hb[2][2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    hb[j][0] = h16_pair(2 * q, 8 * j + g, 2 * q + 1, 8 * j + g, 0x2C00u);
    hb[j][1] = h16_pair(2 * q + 8, 8 * j + g, 2 * q + 9, 8 * j + g, 0x2C00u);
  }
  // Stage 2 A = H_16 (m = a, k = a').
  uint32_t ha[4];
  ha[0] = h16_pair(g, 2 * q, g, 2 * q + 1, 0x3C00u);
  ha[1] = h16_pair(g + 8, 2 * q, g + 8, 2 * q + 1, 0x3C00u);
  ha[2] = h16_pair(g, 2 * q + 8, g, 2 * q + 9, 0x3C00u);
  ha[3] = h16_pair(g + 8, 2 * q + 8, g + 8, 2 * q + 9, 0x3C00u);
  // ldmatrix.x4 row addresses: lanes 0-7 / 8-15 rows 0-7 / 8-15 of columns 0-7, lanes 16-31
  // the same rows of columns 8-15 (fragment registers a0a1, a2a3, a4a5, a6a7).
  const int ld_chunk = 2 * (lane & 15) + (lane >> 4);
  const float mix_scale = p.scale * 16.0f;

  const int64_t stride = gridDim.x;
#pragma unroll
  for (int s = 0; s < Tr::kStages; ++s) pipelined_mma_issue<Tr>(p, raw, blockIdx.x + s * stride, s);

  int slot = 0;
  for (int64_t row = blockIdx.x; row < p.rows; row += stride) {
    cp_async_wait<Tr::kStages - 1>();
    __syncthreads();  // this row's chunks from every thread; the previous row's step B is done

    const char* slot_base = reinterpret_cast<const char*>(raw + static_cast<size_t>(slot) * Tr::kRawElems);
    for (int tile = warp; tile < Tr::kM; tile += Tr::kWarps) {  // warp-uniform: whole warps in the mma
      uint32_t xa[4];
      ldmatrix_x4(xa, slot_base + static_cast<size_t>(mma_chunk_swizzle(tile * 32 + ld_chunk)) * 16);
      float tacc[2][4];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) tacc[j][i] = 0.0f;
        mma_f16_16816(tacc[j], xa, hb[j][0], hb[j][1]);
      }
      float* w = work + tile * Tr::kP;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        // Accumulator (rows g, g+8; columns 8j+2q, +1) = the 8×8 blocks' ldmatrix layout.
        const uint32_t hi0 = half_pair_bits(tacc[j][0], tacc[j][1]);
        const uint32_t hi1 = half_pair_bits(tacc[j][2], tacc[j][3]);
        const float2 f0 = __half22float2(*reinterpret_cast<const __half2*>(&hi0));
        const float2 f1 = __half22float2(*reinterpret_cast<const __half2*>(&hi1));
        const uint32_t lo0 = half_pair_bits(tacc[j][0] - f0.x, tacc[j][1] - f0.y);
        const uint32_t lo1 = half_pair_bits(tacc[j][2] - f1.x, tacc[j][3] - f1.y);
        float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        mma_f16_16816(z, ha, movmatrix_trans(hi0), movmatrix_trans(hi1));
        mma_f16_16816(z, ha, movmatrix_trans(lo0), movmatrix_trans(lo1));
        const int e = 16 * g + 8 * j + 2 * q;
        *reinterpret_cast<float2*>(w + mma_work_swizzle(e)) = make_float2(z[0], z[1]);
        *reinterpret_cast<float2*>(w + mma_work_swizzle(e + 128)) = make_float2(z[2], z[3]);
      }
    }
    __syncthreads();  // the work row is complete; every warp is done with this ring slot

    pipelined_mma_issue<Tr>(p, raw, row + Tr::kStages * stride, slot);
    slot = slot + 1 == Tr::kStages ? 0 : slot + 1;

    {
      const int u = t;  // column pair 2u, 2u+1 (kMixItems == kThreads)
      float2 v[Tr::kM];
#pragma unroll
      for (int im = 0; im < Tr::kM; ++im)
        v[im] = *reinterpret_cast<const float2*>(work + mma_work_swizzle(im * Tr::kP + 2 * u));
      mix_store_pair<Tr::kM, Tr::kP>(v, p.out + row * p.out_row_stride + 2 * u, mix_scale, vec_out);
    }
  }
  cp_async_wait<0>();
}


// ---- streamed kernel ---------------------------------------------------------------------------

// Issues the 16-byte copies of `row` into ring slot `slot` (nothing past M) and commits one group,
// empty or not, so every thread's wait count stays uniform.
template <typename Tr, typename OutT>
QUAMBA_DEVICE void streamed_issue(const HadamardParams<__half, OutT>& p, char* ring, int64_t row, int slot) {
  if (row < p.rows) {
    char* dst = ring + static_cast<size_t>(slot) * Tr::kRowBytes;
    const char* src = reinterpret_cast<const char*>(p.x + row * p.x_row_stride);
    for (int c = threadIdx.x; c < Tr::kChunksPerRow; c += Tr::kThreads)
      cp_async_16(dst + static_cast<size_t>(c) * 16, src + static_cast<size_t>(c) * 16);
  }
  cp_async_commit();
}

// Z = (H_256 · x)/16 of one 256-element sub-block (512 bytes of the raw row at `tile`) for the
// n-tile whose stage-1 fragment is (hb0, hb1): z[e] is output i_p = 128·j + 4·lane + e.
QUAMBA_DEVICE void streamed_tile(const char* tile, int lane, uint32_t hb0, uint32_t hb1, const uint32_t (&ha)[4],
                                 float (&z)[4]) {
  const uint2 r01 = *reinterpret_cast<const uint2*>(tile + 8 * lane);        // a0..a3: i_p 4·lane + 0..3
  const uint2 r23 = *reinterpret_cast<const uint2*>(tile + 256 + 8 * lane);  // a4..a7: b3 = 1
  const uint32_t xa[4] = {r01.x, r01.y, r23.x, r23.y};
  float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  mma_f16_16816(t, xa, hb0, hb1);
  // T (rows a = g, g + 8; columns b' = 8j + 2q, +1) as fp16 hi + lo: |T| ≤ max|x| fits fp16.
  const uint32_t hi0 = half_pair_bits(t[0], t[1]);
  const uint32_t hi1 = half_pair_bits(t[2], t[3]);
  const float2 f0 = __half22float2(*reinterpret_cast<const __half2*>(&hi0));
  const float2 f1 = __half22float2(*reinterpret_cast<const __half2*>(&hi1));
  const uint32_t lo0 = half_pair_bits(t[0] - f0.x, t[1] - f0.y);
  const uint32_t lo1 = half_pair_bits(t[2] - f1.x, t[3] - f1.y);
#pragma unroll
  for (int e = 0; e < 4; ++e) z[e] = 0.0f;
  mma_f16_16816(z, ha, movmatrix_trans(hi0), movmatrix_trans(hi1));
  mma_f16_16816(z, ha, movmatrix_trans(lo0), movmatrix_trans(lo1));
}

// Output bits of one scaled value: int8 (q8: ties to even, saturate, NaN → 0) or fp16.
QUAMBA_DEVICE uint32_t out_bits(float v, int8_t*) { return cvt_s8(v); }
QUAMBA_DEVICE uint32_t out_bits(float v, __half*) {
  return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(v)));
}
QUAMBA_DEVICE void store_bits(int8_t* o, uint32_t v, std::integral_constant<int, 1>) {
  *reinterpret_cast<uint8_t*>(o) = static_cast<uint8_t>(v);
}
QUAMBA_DEVICE void store_bits(__half* o, uint32_t v, std::integral_constant<int, 1>) {
  *reinterpret_cast<uint16_t*>(o) = static_cast<uint16_t>(v);
}
template <typename OutT>
QUAMBA_DEVICE void store_bits(OutT* o, uint32_t v, std::integral_constant<int, 2>) {
  if constexpr (sizeof(OutT) == 1) *reinterpret_cast<uint16_t*>(o) = static_cast<uint16_t>(v);
  else *reinterpret_cast<uint32_t*>(o) = v;
}
template <typename OutT>
QUAMBA_DEVICE void store_bits(OutT* o, uint32_t v, std::integral_constant<int, 4>) {
  static_assert(sizeof(OutT) == 1, "4 packed outputs: int8 only");
  *reinterpret_cast<uint32_t*>(o) = v;
}

// Mixes position e (0 ≤ e < kPos) of all m sub-blocks and stores it; pk packs kStoreVec
// consecutive positions per sub-block until a vector store is due. o points at position 0 of
// sub-block 0 of this lane.
template <typename Tr, int kE, typename OutT>
QUAMBA_DEVICE void streamed_mix_store(const float (&x)[Tr::kM], float mix_scale, OutT* o, bool vec_out,
                                      uint32_t (&pk)[Tr::kM]) {
  float y[Tr::kM];
  mix_scaled<Tr::kM>(x, y, mix_scale);
  constexpr int kS = kE % Tr::kStoreVec;
  constexpr int kBits = 8 * static_cast<int>(sizeof(OutT));
#pragma unroll
  for (int im = 0; im < Tr::kM; ++im) {
    const uint32_t b = out_bits(y[im], static_cast<OutT*>(nullptr));
    pk[im] = kS == 0 ? b : (pk[im] | (b << (kBits * kS)));
  }
  if (vec_out) {
    if constexpr (kS == Tr::kStoreVec - 1) {
#pragma unroll
      for (int im = 0; im < Tr::kM; ++im)
        store_bits(o + im * Tr::kP + (kE - kS), pk[im], std::integral_constant<int, Tr::kStoreVec>{});
    }
  } else {
#pragma unroll
    for (int im = 0; im < Tr::kM; ++im)
      store_bits(o + im * Tr::kP + kE, pk[im] >> (kBits * kS), std::integral_constant<int, 1>{});
  }
}

// The constant mma fragments of a lane of n-tile j: stage 1 B = H_16/16 (k = b, n = b', columns
// b' = 8j + g) and stage 2 A = H_16 (m = a', k = a).
struct StreamedFrags {
  uint32_t hb0, hb1;
  uint32_t ha[4];
};
QUAMBA_DEVICE StreamedFrags streamed_frags(int lane, int j) {
  const int g = lane >> 2, q = lane & 3;
  StreamedFrags f;
  f.hb0 = h16_pair(2 * q, 8 * j + g, 2 * q + 1, 8 * j + g, 0x2C00u);
  f.hb1 = h16_pair(2 * q + 8, 8 * j + g, 2 * q + 9, 8 * j + g, 0x2C00u);
  f.ha[0] = h16_pair(g, 2 * q, g, 2 * q + 1, 0x3C00u);
  f.ha[1] = h16_pair(g + 8, 2 * q, g + 8, 2 * q + 1, 0x3C00u);
  f.ha[2] = h16_pair(g, 2 * q + 8, g, 2 * q + 9, 0x3C00u);
  f.ha[3] = h16_pair(g + 8, 2 * q + 8, g + 8, 2 * q + 9, 0x3C00u);
  return f;
}

// One warp's half of a row (n-tile j, whose fragments are fr) from the raw fp16 row at src: the
// 256-point parts of all m sub-blocks on the tensor cores, then the m-point mix of each of the
// lane's 4 positions, scaled and stored at o (position 0 of sub-block 0 of this lane).
template <typename Tr, typename OutT>
QUAMBA_DEVICE void streamed_row(const char* src, OutT* o, int lane, const StreamedFrags& fr, float mix_scale,
                                bool vec_out) {
  float z[Tr::kM][4];
  uint32_t pk[Tr::kM];
#pragma unroll
  for (int im = 0; im < Tr::kM; ++im) streamed_tile(src + im * 512, lane, fr.hb0, fr.hb1, fr.ha, z[im]);
  float x[Tr::kM];
#pragma unroll
  for (int im = 0; im < Tr::kM; ++im) x[im] = z[im][0];
  streamed_mix_store<Tr, 0>(x, mix_scale, o, vec_out, pk);
#pragma unroll
  for (int im = 0; im < Tr::kM; ++im) x[im] = z[im][1];
  streamed_mix_store<Tr, 1>(x, mix_scale, o, vec_out, pk);
#pragma unroll
  for (int im = 0; im < Tr::kM; ++im) x[im] = z[im][2];
  streamed_mix_store<Tr, 2>(x, mix_scale, o, vec_out, pk);
#pragma unroll
  for (int im = 0; im < Tr::kM; ++im) x[im] = z[im][3];
  streamed_mix_store<Tr, 3>(x, mix_scale, o, vec_out, pk);
}

template <typename Tr, typename OutT>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks)
    hadamard_streamed_kernel(HadamardParams<__half, OutT> p, bool vec_out) {
  grid_dependency_wait();
  extern __shared__ float4 smem_f4[];
  char* ring = reinterpret_cast<char*>(smem_f4);
  float2* xch = reinterpret_cast<float2*>(ring + Tr::kRingBytes);  // kSplit = 2 only
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;
  const int j = warp & 1;   // n-tile: outputs i_p = 128·j + 4·lane + 0..3 of each sub-block
  const int h = warp >> 1;  // kSplit = 2: sub-block half in step A, position half in the mix

  const int64_t stride = gridDim.x;
  // The first rows' copies go out before anything else: at M = 1 the load latency is the time.
#pragma unroll
  for (int s = 0; s < Tr::kStages - 1; ++s) streamed_issue<Tr>(p, ring, blockIdx.x + s * stride, s);

  const StreamedFrags fr = streamed_frags(lane, j);
  const float mix_scale = p.scale * 16.0f;  // Z carries 1/16: a power of two, same rounding

  int slot = 0;
  for (int64_t row = blockIdx.x; row < p.rows; row += stride) {
    // This row's group is complete once at most kStages − 2 newer ones are pending; the barrier
    // publishes every thread's copies and ends every warp's reads of the slot used one row ago
    // (and, kSplit = 2, its reads of the exchange area).
    cp_async_wait<Tr::kStages - 2>();
    __syncthreads();
    streamed_issue<Tr>(p, ring, row + (Tr::kStages - 1) * stride, slot == 0 ? Tr::kStages - 1 : slot - 1);

    const char* src = ring + static_cast<size_t>(slot) * Tr::kRowBytes;
    OutT* o = p.out + row * p.out_row_stride + 128 * j + 4 * lane;
    if constexpr (Tr::kSplit == 1) {
      streamed_row<Tr>(src, o, lane, fr, mix_scale, vec_out);
    } else {
      // Warp (j, h): sub-blocks [h·kTiles, (h+1)·kTiles); keeps positions 2h, 2h + 1 and hands
      // the other two to warp (j, 1 − h) = warp ^ 2.
      float z[Tr::kTiles][4];
      uint32_t pk[Tr::kM];
#pragma unroll
      for (int i = 0; i < Tr::kTiles; ++i)
        streamed_tile(src + (h * Tr::kTiles + i) * 512, lane, fr.hb0, fr.hb1, fr.ha, z[i]);
      float2* mine = xch + warp * Tr::kTiles * 32 + lane;
#pragma unroll
      for (int i = 0; i < Tr::kTiles; ++i)
        mine[i * 32] = h ? make_float2(z[i][0], z[i][1]) : make_float2(z[i][2], z[i][3]);
      __syncthreads();  // both halves of every position are in the exchange area
      const float2* theirs = xch + (warp ^ 2) * Tr::kTiles * 32 + lane;
      float2 pz[Tr::kTiles];
#pragma unroll
      for (int i = 0; i < Tr::kTiles; ++i) pz[i] = theirs[i * 32];
      o += 2 * h;
      float x[Tr::kM];
      // Sub-blocks in order: h = 0 owns the first half. Selects keep every index a constant.
#pragma unroll
      for (int i = 0; i < Tr::kTiles; ++i) {
        const float own = h ? z[i][2] : z[i][0];
        x[i] = h ? pz[i].x : own;
        x[Tr::kTiles + i] = h ? own : pz[i].x;
      }
      streamed_mix_store<Tr, 0>(x, mix_scale, o, vec_out, pk);
#pragma unroll
      for (int i = 0; i < Tr::kTiles; ++i) {
        const float own = h ? z[i][3] : z[i][1];
        x[i] = h ? pz[i].y : own;
        x[Tr::kTiles + i] = h ? own : pz[i].y;
      }
      streamed_mix_store<Tr, 1>(x, mix_scale, o, vec_out, pk);
    }
    slot = slot + 1 == Tr::kStages ? 0 : slot + 1;
  }
  cp_async_wait<0>();  // no copy may be left in flight when the block exits
}

#if QUAMBA_HAS_CUDA_COMPILER
// Local row i of this CTA (global row blockIdx.x + i·gridDim.x) into its ring slot, completing on
// the slot's barrier.
template <typename Tr, typename OutT>
QUAMBA_DEVICE void bulk_issue(const HadamardParams<__half, OutT>& p, uint32_t ring, uint32_t bars, int64_t i) {
  const int slot = static_cast<int>(i % Tr::kSlots);
  const int64_t row = blockIdx.x + i * gridDim.x;
  const uint32_t bar = bars + 8u * static_cast<uint32_t>(slot);
  quamba::detail::mbar_arrive_expect_tx(bar, Tr::kRowBytes);
  quamba::detail::bulk_copy_g2s(ring + static_cast<uint32_t>(slot) * Tr::kRowBytes, p.x + row * p.x_row_stride,
                                Tr::kRowBytes, bar);
}
#endif

template <typename Tr, typename OutT>
__global__ void __launch_bounds__(Tr::kThreads, 1)
    hadamard_bulk_kernel(HadamardParams<__half, OutT> p, bool vec_out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  grid_dependency_wait();
  extern __shared__ float4 smem_f4[];
  char* ring_p = reinterpret_cast<char*>(smem_f4);
  const uint32_t ring = static_cast<uint32_t>(__cvta_generic_to_shared(ring_p));
  const uint32_t bars = ring + static_cast<uint32_t>(Tr::kBarOffset);
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;
  const int j = warp & 1;     // n-tile of the row's outputs
  const int pair = warp >> 1;
  const int64_t stride = gridDim.x;
  const int64_t local_rows = p.rows > blockIdx.x ? (p.rows - blockIdx.x + stride - 1) / stride : 0;
  if (t == 0) {
    for (int s = 0; s < Tr::kSlots; ++s) quamba::detail::mbar_init(bars + 8u * s, 1);
    quamba::detail::fence_mbarrier_init();
    for (int64_t i = 0; i < Tr::kWindow && i < local_rows; ++i) bulk_issue<Tr>(p, ring, bars, i);
  }
  __syncthreads();
  const StreamedFrags fr = streamed_frags(lane, j);
  const float mix_scale = p.scale * 16.0f;  // Z carries 1/16: a power of two, same rounding
  for (int64_t i = pair; i < local_rows; i += Tr::kPairs) {
    const int slot = static_cast<int>(i % Tr::kSlots);
    quamba::detail::mbar_wait(bars + 8u * static_cast<uint32_t>(slot), static_cast<uint32_t>((i / Tr::kSlots) & 1));
    // Both warps of the pair are past row i − kPairs (whose slot row i + kWindow reuses).
    asm volatile("bar.sync %0, 64;\n" ::"r"(pair + 1) : "memory");
    if (j == 0 && lane == 0 && i + Tr::kWindow < local_rows) bulk_issue<Tr>(p, ring, bars, i + Tr::kWindow);
    const int64_t row = blockIdx.x + i * stride;
    streamed_row<Tr>(ring_p + static_cast<size_t>(slot) * Tr::kRowBytes,
                     p.out + row * p.out_row_stride + 128 * j + 4 * lane, lane, fr, mix_scale, vec_out);
  }
#else
  __trap();  // host code launches it only where the loaded image is sm_90+ code
#endif
}

}  // namespace detail

// ---- layer 3: launch ---------------------------------------------------------------------------

namespace detail {

// Whether every row of the output takes stores of vec_bytes (base and row pitch aligned).
template <typename InT, typename OutT>
bool vector_rows(const HadamardParams<InT, OutT>& p, int64_t vec_bytes) {
  return is_aligned(p.out, vec_bytes) &&
         (p.rows <= 1 || (p.out_row_stride * static_cast<int64_t>(sizeof(OutT))) % vec_bytes == 0);
}

// Grid of a persistent kernel over `items` work items: at most its resident blocks (SMs × blocks
// per SM, cached per launch site; at most max_per_sm blocks per SM when max_per_sm > 0), fewer
// when there are fewer items.
template <typename Kernel>
Status persistent_grid(ResidentCache& cache, Kernel kernel, int threads, size_t smem, int64_t items,
                       int64_t* grid, int max_per_sm = 0) {
  Residency res;
  QUAMBA_RETURN_IF_ERROR(cache.get(kernel, threads, smem, &res));
  if (max_per_sm > 0 && max_per_sm < res.per_sm) res.per_sm = max_per_sm;
  *grid = items < res.total() ? items : res.total();
  return Status::kSuccess;
}

// The tensor-core variants use mma.m16n8k16, movmatrix and cp.async: sm_80 and up.
inline Status require_sm80() {
  int dev = 0, major = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaGetDevice(&dev));
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major < 8 ? Status::kErrorNotSupported : Status::kSuccess;
}

}  // namespace detail

// Launches the variant for one (m, k); p must have passed can_implement with n = m·2^k.
template <typename InT, typename OutT, int kM, int kLogP, int kRunsPerThread = 2>
Status launch(const HadamardParams<InT, OutT>& p, cudaStream_t stream) {
  using Tr = HadamardTraits<InT, OutT, kM, kLogP, kRunsPerThread>;
  if (p.n != Tr::kN) return Status::kErrorInvalidArgument;
  if (p.rows == 0) return Status::kSuccess;
  const int64_t blocks = (p.rows + Tr::kRows - 1) / Tr::kRows;
  if (blocks > 0x7fffffff) return Status::kErrorNotSupported;
  auto kernel = detail::hadamard_kernel<Tr, InT, OutT>;
  QUAMBA_RETURN_IF_ERROR(opt_in_smem(kernel, Tr::kSmemBytes));
  return launch_kernel(kernel, dim3(static_cast<unsigned>(blocks)), dim3(Tr::kThreads),
                       Tr::kSmemBytes, stream, p.pdl, p);
}


// Launches the staged variant for one (m, k): a persistent grid of at most (resident blocks per
// SM × SMs) blocks, each looping over row groups so the next group's loads overlap this group's
// arithmetic. kMinBlocks / kPersistent = false (one row group per block) exist for the benchmark's
// comparison.
template <typename InT, typename OutT, int kM, int kLogP, int kMinBlocks = 1, bool kPersistent = true>
Status launch_staged(const HadamardParams<InT, OutT>& p, cudaStream_t stream) {
  using Tr = HadamardStagedTraits<InT, OutT, kM, kLogP, kMinBlocks>;
  if (p.n != Tr::kN) return Status::kErrorInvalidArgument;
  if (p.rows == 0) return Status::kSuccess;
  const int64_t groups = (p.rows + Tr::kRows - 1) / Tr::kRows;
  auto kernel = detail::hadamard_staged_kernel<Tr, InT, OutT>;
  static ResidentCache cache;
  int64_t grid = groups;
  if (kPersistent) QUAMBA_RETURN_IF_ERROR(detail::persistent_grid(cache, kernel, Tr::kThreads, Tr::kSmemBytes, groups, &grid));
  if (grid > 0x7fffffff) return Status::kErrorNotSupported;
  const bool vec_out = detail::vector_rows(p, Tr::kStoreVec * static_cast<int64_t>(sizeof(OutT)));
  return launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(Tr::kThreads),
                       Tr::kSmemBytes, stream, p.pdl, p, groups, vec_out);
}


// Launches the pipelined variant for one (m, k): a persistent grid of at most (resident blocks
// per SM × SMs) blocks, each walking row groups blockIdx.x, +gridDim.x, ... through its ring.
template <typename InT, typename OutT, int kM, int kLogP, int kStages = kPipelinedDefaultStages, int kMinBlocks = 0>
Status launch_pipelined(const HadamardParams<InT, OutT>& p, cudaStream_t stream) {
  using Tr = HadamardPipelinedTraits<InT, OutT, kM, kLogP, kStages, kMinBlocks>;
  if (p.n != Tr::kN) return Status::kErrorInvalidArgument;
  if (p.rows == 0) return Status::kSuccess;
  const int64_t groups = (p.rows + Tr::kRows - 1) / Tr::kRows;
  auto kernel = detail::hadamard_pipelined_kernel<Tr, InT, OutT>;
  static ResidentCache cache;
  int64_t grid = 0;
  QUAMBA_RETURN_IF_ERROR(detail::persistent_grid(cache, kernel, Tr::kThreads, Tr::kSmemBytes, groups, &grid));
  const bool vec_out = detail::vector_rows(p, Tr::kStoreVec * static_cast<int64_t>(sizeof(OutT)));
  return launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(Tr::kThreads),
                       Tr::kSmemBytes, stream, p.pdl, p, groups, vec_out);
}


// Launches the tensor-core pipelined variant for H_m ⊗ H_256 (persistent grid as
// launch_pipelined; one row per ring slot).
template <typename OutT, int kM, int kStages = kPipelinedDefaultStages, int kMinBlocks = 0>
Status launch_pipelined_mma(const HadamardParams<__half, OutT>& p, cudaStream_t stream) {
  using Tr = HadamardPipelinedMmaTraits<__half, OutT, kM, kStages, kMinBlocks>;
  if (p.n != Tr::kN) return Status::kErrorInvalidArgument;
  if (p.rows == 0) return Status::kSuccess;
  auto kernel = detail::hadamard_pipelined_mma_kernel<Tr, OutT>;
  QUAMBA_RETURN_IF_ERROR(detail::require_sm80());
  static ResidentCache cache;
  int64_t grid = 0;
  QUAMBA_RETURN_IF_ERROR(detail::persistent_grid(cache, kernel, Tr::kThreads, Tr::kSmemBytes, p.rows, &grid));
  const bool vec_out = detail::vector_rows(p, Tr::kStoreVec * static_cast<int64_t>(sizeof(OutT)));
  return launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(Tr::kThreads),
                       Tr::kSmemBytes, stream, p.pdl, p, vec_out);
}

// Launches the streamed variant for H_m ⊗ H_256: a persistent grid of at most (resident blocks
// per SM × SMs) blocks walking rows blockIdx.x, +gridDim.x, ...; kPersistent = false (one row
// per block, the hardware's block scheduler balancing the tail) exists for the benchmark.
template <typename OutT, int kM, int kStages = kStreamedDefaultStages, int kSplit = 1, int kMinBlocks = 0,
          bool kPersistent = true>
Status launch_streamed(const HadamardParams<__half, OutT>& p, cudaStream_t stream, int max_per_sm = 0) {
  using Tr = HadamardStreamedTraits<OutT, kM, kStages, kSplit, kMinBlocks>;
  if (p.n != Tr::kN) return Status::kErrorInvalidArgument;
  if (p.rows == 0) return Status::kSuccess;
  auto kernel = detail::hadamard_streamed_kernel<Tr, OutT>;
  QUAMBA_RETURN_IF_ERROR(detail::require_sm80());
  static ResidentCache cache;
  int64_t grid = p.rows < 0x7fffffff ? p.rows : int64_t(0x7fffffff);
  if (kPersistent)
    QUAMBA_RETURN_IF_ERROR(
        detail::persistent_grid(cache, kernel, Tr::kThreads, Tr::kSmemBytes, p.rows, &grid, max_per_sm));
  const bool vec_out = detail::vector_rows(p, Tr::kStoreBytes);
  return launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(Tr::kThreads),
                       Tr::kSmemBytes, stream, p.pdl, p, vec_out);
}

// Whether the bulk-copy variant can run here (an sm_90+ device and sm_90+ code in the build).
template <typename Tr, typename OutT>
bool bulk_available() {
  static quamba::detail::Sm90ImageCache cache;
  return cache.get(detail::hadamard_bulk_kernel<Tr, OutT>);
}

// Launches the bulk-copy variant (one CTA per SM, each walking rows blockIdx.x + i·gridDim.x);
// kErrorArchNotSupported where bulk_available() is false.
template <typename OutT, int kM, int kPairs = 8, int kWindow = bulk_default_window(kM)>
Status launch_bulk(const HadamardParams<__half, OutT>& p, cudaStream_t stream) {
  using Tr = HadamardBulkTraits<OutT, kM, kPairs, kWindow>;
  if (p.n != Tr::kN) return Status::kErrorInvalidArgument;
  if (p.rows == 0) return Status::kSuccess;
  if (!bulk_available<Tr, OutT>()) return Status::kErrorArchNotSupported;
  auto kernel = detail::hadamard_bulk_kernel<Tr, OutT>;
  static ResidentCache cache;
  int64_t grid = 0;
  QUAMBA_RETURN_IF_ERROR(detail::persistent_grid(cache, kernel, Tr::kThreads, Tr::kSmemBytes, p.rows, &grid, 1));
  const bool vec_out = detail::vector_rows(p, Tr::kStoreBytes);
  return launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(Tr::kThreads),
                       Tr::kSmemBytes, stream, p.pdl, p, vec_out);
}

// Runtime n → (m, k) template values. Ranges end at kMaxN: 2^15, 12·2^11, 20·2^10, 28·2^10.
template <typename Body>
Status dispatch_size(int64_t n, Body&& body) {
  if (n <= 0 || n > kMaxN) return Status::kErrorNotSupported;
  int m = 0, k = 0;
  QUAMBA_RETURN_IF_ERROR(reference::hadamard_factor(n, &m, &k));
  switch (m) {
    case 1:
      return dispatch_int<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>(
          k, [&](auto K) { return body(std::integral_constant<int, 1>{}, K); });
    case 12:
      return dispatch_int<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11>(
          k, [&](auto K) { return body(std::integral_constant<int, 12>{}, K); });
    case 20:
      return dispatch_int<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10>(
          k, [&](auto K) { return body(std::integral_constant<int, 20>{}, K); });
    case 28:
      return dispatch_int<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10>(
          k, [&](auto K) { return body(std::integral_constant<int, 28>{}, K); });
    default:
      return Status::kErrorNotSupported;
  }
}

// ---- layer 4: API ------------------------------------------------------------------------------

// Input access width in bytes for size n (the alignment rule for x and x_row_stride).
template <typename InT>
inline int64_t in_align_bytes(int64_t n) {
  int m = 0, k = 0;
  if (reference::hadamard_factor(n, &m, &k) != Status::kSuccess) return static_cast<int64_t>(sizeof(InT));
  const int64_t vec = k >= 3 ? 8 : (int64_t(1) << k);
  const int64_t bytes = vec * static_cast<int64_t>(sizeof(InT));
  return bytes < 16 ? bytes : 16;
}

template <typename InT, typename OutT>
Status can_implement(const HadamardParams<InT, OutT>& p) {
  static_assert((std::is_same_v<InT, __half> && (std::is_same_v<OutT, int8_t> || std::is_same_v<OutT, __half>)) ||
                    (std::is_same_v<InT, float> && (std::is_same_v<OutT, int8_t> || std::is_same_v<OutT, float>)),
                "variants: f16→i8, f32→i8, f16→f16, f32→f32");
  if (p.x == nullptr || p.out == nullptr) return Status::kErrorInvalidArgument;
  if (p.rows < 0) return Status::kErrorInvalidArgument;
  if (p.n <= 0 || p.n > kMaxN || !reference::hadamard_size_supported(p.n)) return Status::kErrorNotSupported;
  if (p.rows > 1 && (p.x_row_stride < p.n || p.out_row_stride < p.n)) return Status::kErrorInvalidArgument;
  const int64_t a = in_align_bytes<InT>(p.n);
  if (!is_aligned(p.x, a) || (p.rows > 1 && (p.x_row_stride * static_cast<int64_t>(sizeof(InT))) % a != 0))
    return Status::kErrorMisaligned;
  if (!is_aligned(p.out, sizeof(OutT))) return Status::kErrorMisaligned;
  return Status::kSuccess;
}

template <typename InT, typename OutT>
size_t workspace_size(const HadamardParams<InT, OutT>&) {
  return 0;
}

// Whether run() takes the streamed variant for (InT, OutT, m, k): fp16 inputs, int8 or fp16
// outputs, n = 3072 or 5120.
template <typename InT, typename OutT>
QUAMBA_HD constexpr bool streamed_default(int m, int log_p) {
  return std::is_same_v<InT, __half> && (std::is_same_v<OutT, int8_t> || std::is_same_v<OutT, __half>) &&
         streamed_supported(m, log_p, 2);
}

// Row count up to which run() splits each row over 4 warps (kSplit = 2) instead of 2: with fewer
// rows than about two per SM a row's latency, not the SM's throughput, is the time.
inline constexpr int64_t kStreamedSplitMaxRows = 256;

// Above that, run() takes one warp pair per row with a 2-slot ring (each block loads one row
// ahead) and at most kStreamedMaxBlocksPerSm blocks per SM (n = 5120: 10 KB per row, so ~80 KB
// requested per SM at a time). Why not the 3-slot ring that holds two rows in flight per block:
// with 7 blocks per SM it requests 14 rows per SM (~18 MB of the 21 MB input at M = 2048) at once;
// DRAM then serves all of them interleaved, so every row lands near the end of the read and the
// math of the whole launch runs after it instead of under it. One row ahead per block lets rows
// land in order while earlier ones are transformed. H100, fp16 -> int8, bench_hadamard same run
// (copy 2.99 TB/s), M = 2048 / 4096 / 8192: n = 5120 3-slot (previous run() choice) 18.5 / – /
// 54.1 µs, 2-slot with 8 blocks per SM 16.7 / 28.2 / 47.6, 4 per SM 16.3 / 28.2 / 50.7, 6 per SM
// 17.3 / 27.4 / 47.4, 3 or 5 per SM 18.4–19.5 / 31–34 / 55–64 (fewer rows in flight than the
// DRAM needs, or a last round of rows on a tenth of the blocks); n = 3072 (M = 2048 / 8192):
// 3-slot 10.9 / 31.2, 2-slot with 8 per SM 10.6 / 28.5.
inline constexpr int kStreamedRowStages = 2;
inline constexpr int kStreamedMaxBlocksPerSm = 8;
template <typename OutT, int kM>
using HadamardStreamedRowTraits = HadamardStreamedTraits<OutT, kM, kStreamedRowStages, 1>;

// run() launches, for fp16 inputs at n = 3072 / 5120 (int8 or fp16 outputs), the streamed variant
// with kSplit = 2 up to kStreamedSplitMaxRows rows; above that, for int8 outputs, the bulk-copy
// variant on sm_90+ (launch_bulk<>) or else the streamed variant with kSplit = 1
// (kStreamedRowStages, kStreamedMaxBlocksPerSm), and for fp16 outputs the generic kernel (H100,
// n = 5120, M = 2048 / 8192, same run: generic 22.1 / 72.3 µs, bulk-copy 22.3 / 80.8, streamed
// 23.3 / 81.2: twice the output bytes of int8, so the row feed matters less than the generic
// kernel's occupancy); and the generic kernel (launch<>) for everything else. run_generic()
// keeps the generic kernel for every n.
// H100, fp16 -> int8, bench_hadamard same run (copy 2.99 TB/s), M = 2048 / 4096 / 8192:
// n = 5120 bulk-copy (8 warp pairs, 4 rows ahead) 15.1 / 25.3 / 43.8 µs (96% of copy at 8192),
// 6 ahead 15.4 / 26.2 / 44.2, 8 ahead 15.8 / 26.9 / 43.8, 6 pairs 15.7 / 26.5 / 45.2, 4 pairs
// 16.4 / 28.0 / 50.8; streamed kSplit = 1 with the 2-slot ring 16.9 / – / 47.7; n = 3072 (M = 2048
// / 8192) bulk-copy 8 ahead 10.1 / 27.7, 6 ahead 10.2 / 28.5, 4 ahead 10.5 / 30.5; streamed 10.7 /
// 28.6. Earlier runs:
// H100, fp16→int8, n = 5120 (bench_hadamard, same run, copy 2.96 TB/s): generic 20.7 / 67.3 µs
// at M = 2048 / 8192; staged 24.8 / 83.6 µs (126 registers: 3 blocks = 15 warps per SM),
// staged with __launch_bounds__ min 4 blocks 21.6 / 69.6 µs (64 B spilled), min 5 blocks
// 27.5 / 84.1 µs (200 B spilled), staged with one row group per block 26.1 / 87.9 µs; n = 1536:
// generic 8.4 / 22.6 µs, staged 9.9 / 25.8 µs; M = 1: 4.3–4.9 µs for every variant (launch
// bound). So the staged variant stays reachable through run_staged() only. Later run (H100):
// generic 19.7 / 63.6 µs, tensor-core pipelined 18.1 / 57.2 µs, M = 1 4.5 µs both.
// The streamed variant first became the default by its design: ~2300 warp instructions per
// 5120-row (the pipelined tensor-core kernel ~2500, generic ~4800) and no fp32 round trip through
// shared memory. Its first form (3-slot ring, 7 blocks per SM) requested 1848 of 2048 rows in
// the first microsecond on the reasoning that more bytes in flight could only help; it measured
// 18.1 µs at M = 2048, no better than kernels with twice its instructions, because those rows
// then land together at the end of the read (see kStreamedRowStages and the bulk-copy variant).
template <typename InT, typename OutT>
Status run(const HadamardParams<InT, OutT>& p, void* /*workspace*/ = nullptr, cudaStream_t stream = nullptr) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_size(p.n, [&](auto M, auto K) {
    if constexpr (streamed_default<InT, OutT>(M.value, K.value)) {
      if (p.rows <= kStreamedSplitMaxRows)
        return launch_streamed<OutT, M.value, kStreamedDefaultStages, /*kSplit=*/2>(p, stream);
      if constexpr (std::is_same_v<OutT, __half>) return launch<InT, OutT, M.value, K.value>(p, stream);
      const Status bulk = launch_bulk<OutT, M.value>(p, stream);
      if (bulk != Status::kErrorArchNotSupported) return bulk;
      return launch_streamed<OutT, M.value, kStreamedRowStages, 1>(p, stream, kStreamedMaxBlocksPerSm);
    } else {
      return launch<InT, OutT, M.value, K.value>(p, stream);
    }
  });
}

// The generic kernel (HadamardTraits) for every supported n: run() before the streamed variant.
template <typename InT, typename OutT>
Status run_generic(const HadamardParams<InT, OutT>& p, void* /*workspace*/ = nullptr, cudaStream_t stream = nullptr) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_size(p.n, [&](auto M, auto K) { return launch<InT, OutT, M.value, K.value>(p, stream); });
}

// The streamed variant (HadamardStreamedTraits): fp16 inputs, int8 or fp16 outputs, n ∈ {3072,
// 5120}; kErrorNotSupported for any other n or dtype pair, or a device below sm_80. split = 1:
// 2 warps per row (run()'s choice above kStreamedSplitMaxRows rows), 2: 4 warps per row. Same
// contract as run(), in place included (a row is in shared memory before any of it is written).
template <typename InT, typename OutT>
Status run_streamed(const HadamardParams<InT, OutT>& p, void* /*workspace*/ = nullptr, cudaStream_t stream = nullptr,
                    int split = 1) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if (split != 1 && split != 2) return Status::kErrorInvalidArgument;
  return dispatch_size(p.n, [&](auto M, auto K) {
    if constexpr (streamed_default<InT, OutT>(M.value, K.value)) {
      if (split == 2) return launch_streamed<OutT, M.value, kStreamedDefaultStages, 2>(p, stream);
      return launch_streamed<OutT, M.value, kStreamedRowStages, 1>(p, stream, kStreamedMaxBlocksPerSm);
    } else {
      return Status::kErrorNotSupported;
    }
  });
}

// The bulk-copy variant (HadamardBulkTraits): fp16 inputs, int8 or fp16 outputs, n ∈ {3072, 5120};
// kErrorNotSupported for any other n or input type, kErrorArchNotSupported where the device or
// the build has no sm_90 code. Same contract as run(), in place included (a row is whole in
// shared memory before any of it is written, and rows are read only by the CTA that writes them).
template <typename InT, typename OutT>
Status run_bulk(const HadamardParams<InT, OutT>& p, void* /*workspace*/ = nullptr, cudaStream_t stream = nullptr) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_size(p.n, [&](auto M, auto K) {
    if constexpr (streamed_default<InT, OutT>(M.value, K.value)) return launch_bulk<OutT, M.value>(p, stream);
    else return Status::kErrorNotSupported;
  });
}

// The Traits name of the variant run_streamed() picks for n and split ("" when unsupported).
template <typename InT, typename OutT>
std::string streamed_variant_name(int64_t n, int split = 1) {
  std::string s;
  dispatch_size(n, [&](auto M, auto K) {
    if constexpr (streamed_default<InT, OutT>(M.value, K.value)) {
      s = split == 2 ? HadamardStreamedTraits<OutT, M.value, kStreamedDefaultStages, 2>::name()
                     : HadamardStreamedRowTraits<OutT, M.value>::name();
    }
    return Status::kSuccess;
  });
  return s;
}

// The staged variant (HadamardStagedTraits) for the sizes it covers (staged_supported);
// kErrorNotSupported for any other n. Same contract as run().
template <typename InT, typename OutT>
Status run_staged(const HadamardParams<InT, OutT>& p, void* /*workspace*/ = nullptr, cudaStream_t stream = nullptr) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_size(p.n, [&](auto M, auto K) {
    if constexpr (staged_supported(M.value, K.value)) return launch_staged<InT, OutT, M.value, K.value>(p, stream);
    else return Status::kErrorNotSupported;
  });
}

// The pipelined variant (HadamardPipelinedTraits) for the sizes it covers
// (pipelined_supported: 2^k ∈ [32, 1024], smem ≤ 96 KiB); kErrorNotSupported for any other n.
// Same contract as run(), in place included (a block reads a whole row group into smem before
// it writes any of it).
template <typename InT, typename OutT>
Status run_pipelined(const HadamardParams<InT, OutT>& p, void* /*workspace*/ = nullptr, cudaStream_t stream = nullptr) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  return dispatch_size(p.n, [&](auto M, auto K) {
    if constexpr (pipelined_supported(M.value, K.value, sizeof(InT)))
      return launch_pipelined<InT, OutT, M.value, K.value>(p, stream);
    else return Status::kErrorNotSupported;
  });
}

// The Traits name of the variant run_pipelined() picks for n ("" when unsupported).
template <typename InT, typename OutT>
std::string pipelined_variant_name(int64_t n) {
  std::string s;
  dispatch_size(n, [&](auto M, auto K) {
    if constexpr (pipelined_supported(M.value, K.value, sizeof(InT)))
      s = HadamardPipelinedTraits<InT, OutT, M.value, K.value>::name();
    return Status::kSuccess;
  });
  return s;
}

// The tensor-core pipelined variant (HadamardPipelinedMmaTraits): fp16 inputs, n ∈ {3072, 5120,
// 7168} (H_m ⊗ H_256, m ∈ {12, 20, 28}); kErrorNotSupported for fp32 inputs, any other n, or a
// device below sm_80. Same contract as run(), in place included.
template <typename InT, typename OutT>
Status run_pipelined_mma(const HadamardParams<InT, OutT>& p, void* /*workspace*/ = nullptr,
                         cudaStream_t stream = nullptr) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if constexpr (!std::is_same_v<InT, __half>) {
    return Status::kErrorNotSupported;
  } else {
    return dispatch_size(p.n, [&](auto M, auto K) {
      if constexpr (pipelined_mma_supported(M.value, K.value, 2)) return launch_pipelined_mma<OutT, M.value>(p, stream);
      else return Status::kErrorNotSupported;
    });
  }
}

// The Traits name of the variant run_pipelined_mma() picks for n ("" when unsupported).
template <typename InT, typename OutT>
std::string pipelined_mma_variant_name(int64_t n) {
  std::string s;
  if constexpr (std::is_same_v<InT, __half>) {
    dispatch_size(n, [&](auto M, auto K) {
      if constexpr (pipelined_mma_supported(M.value, K.value, 2))
        s = HadamardPipelinedMmaTraits<__half, OutT, M.value>::name();
      return Status::kSuccess;
    });
  }
  return s;
}

// The Traits name of the variant run() (staged = false; `rows` picks the streamed split, the
// current device the bulk-copy variant) or run_staged() picks for n ("" when unsupported); for
// benchmarks. generic_name(n) names the
// generic kernel (run_generic()).
template <typename InT, typename OutT>
std::string variant_name(int64_t n, bool staged = false, int64_t rows = kStreamedSplitMaxRows + 1) {
  std::string s;
  dispatch_size(n, [&](auto M, auto K) {
    if constexpr (staged_supported(M.value, K.value)) {
      if (staged) s = HadamardStagedTraits<InT, OutT, M.value, K.value>::name();
    }
    if (!staged) {
      if constexpr (streamed_default<InT, OutT>(M.value, K.value)) {
        using Bulk = HadamardBulkTraits<OutT, M.value>;
        s = rows <= kStreamedSplitMaxRows   ? HadamardStreamedTraits<OutT, M.value, kStreamedDefaultStages, 2>::name()
            : std::is_same_v<OutT, __half> ? HadamardTraits<InT, OutT, M.value, K.value>::name()
            : bulk_available<Bulk, OutT>() ? Bulk::name()
                                           : HadamardStreamedRowTraits<OutT, M.value>::name();
      } else {
        s = HadamardTraits<InT, OutT, M.value, K.value>::name();
      }
    }
    return Status::kSuccess;
  });
  return s;
}

template <typename InT, typename OutT>
std::string generic_name(int64_t n) {
  std::string s;
  dispatch_size(n, [&](auto M, auto K) {
    s = HadamardTraits<InT, OutT, M.value, K.value>::name();
    return Status::kSuccess;
  });
  return s;
}

}  // namespace quamba::hadamard
