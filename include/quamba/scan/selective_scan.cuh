// quamba/scan/selective_scan.cuh: the prefill selective scan, W8A8 (int8 in) and fp16 variants.
//
// Shapes (token-major; strides in ELEMENTS; channel stride must be 1):
//   u, delta, z   (B, L, E)   int8 (PrefillParamsI8) or fp16 (PrefillParamsF16). z is optional
//                             and usually the slice xz[..., E:] (token stride 2E); delta is the
//                             raw dt_proj output (before bias and softplus).
//   Bm, Cm        (B, L, N)   slices of x_proj's output (dt_low | B | C), token stride R + 2N.
//   A_log (int8) / A (fp32)   (E, N) row-major: A = -exp(s_A·A_log_q), or A given directly.
//   D, delta_bias (E)         optional; int8 with scales, or fp32.
//   initial_state (B, E, N)   fp32, optional; final_state (B, E, N) fp32, optional, may alias it.
//   y             (B, L, E)   fp16 out, the gated output (s·C + D·u)·silu(z).
// Scales (int8 variant, SPEC §2 step 6): u = s_u·u_q, δ = softplus(s_delta·δ_q + s_delta_bias·b_q)
// (threshold 20), B = s_B·B_q, C = s_C·C_q, z = s_z·z_q, D = s_D·D_q. State and arithmetic fp32.
// Requirements (checked by can_implement): N ∈ {16, 32, 64} (else kErrorNotSupported); E a
// multiple of 16; every data pointer 16-byte aligned and every batch/token stride a multiple of
// 16 bytes (kErrorMisaligned); L ≥ 1; B ≤ 65535. No workspace.
// Fused dt_proj (PrefillParamsI8::dt_weight set): δraw is computed in the kernel from x_proj's
// dt_low columns (dt_x) and the dt_proj weight on the tensor cores, bit-identical to the dt_proj
// GEMM (exact int32 sums, gemm::Requant), so the block skips that GEMM and its (B, L, E) δ round
// trip through memory. The state-lane kernels (the defaults) implement it; other variants and
// the segmented scan return kErrorNotSupported.
//
// Design (numbers for H100, B = 1, E = 5120, N = 16, L = 2048, int8):
//   exps: L·E·N = 168M decay exponentials, one MUFU ex2 each (log2 e folded into A once), plus
//   per (token, channel) two for softplus and two for the SiLU gate: ≈ 1.25 MUFU per item.
//   MUFU runs 16/clk/SM → 168M·1.25 / (132·16·1.755 GHz) ≈ 57 µs, the floor. Bytes: u, δ, z
//   int8 31 MB + fp16 y 21 MB + B, C ≈ 52 MB ≈ 17 µs at ~3 TB/s: not memory bound. int8 → fp32
//   conversions avoid I2F (same 16/clk pipe as MUFU; see scan_common.cuh). Measured 116 µs
//   (bench_scan, H100, default), about half the MUFU floor's rate on average, latency bound: only
//   E·N/(32·kStatesPerLane) warps exist (≈ 3 per scheduler), and 320 blocks give some SMs 3
//   blocks and others 2.
//   What the 2026-11-27 measurements say (bench/RESULTS.md): the time is set by each warp's own
//   dependency chain, not by a shared unit or by the SM imbalance. A warp takes the same time
//   per 8-token group whether its SM holds 10 warps (40-channel blocks, every SM equal) or 12
//   (16-channel blocks, busiest SMs), and less when alone on its scheduler (E = 1536). ncu on
//   the plain loop: issue slots 52% busy, 2.4 warps per scheduler, top stalls
//   "wait" (fixed-latency dependencies, 31%) and short scoreboard (MUFU / shared / shuffle,
//   19%); ~13.6 issued instructions per item. The SASS showed why unrolling two groups changed
//   nothing: each group ends in a shared-memory store of its output, and the compiler does not
//   move the next group's shared loads above it, so every group's reduce-scatter and gate (a
//   chain of shuffles, MUFU and conversions with little independent work) ran alone. The
//   overlapped walk (kOverlap, the default) puts the next group's walk before this group's
//   reduce and output in source order: 131 → 120 µs (116 with two pairs unrolled). Balancing
//   the SMs (40-channel blocks), moving the conversion into the walk (pipelined kernel),
//   per-block tables for the int8 functions (bank conflicts) and a producer warp for the
//   conversion did not help.
//   Default kernel (prefill_lanes_kernel, LanePrefillTraits): a block owns kChannels channels
//   and walks L in chunks of kChunk tokens. A lane owns kStatesPerLane states of one channel
//   and walks the chunk token by token: per (token, state) FMUL δ·A, ex2, FMUL δu·B, the state
//   FFMA and the C FFMA (5 issue slots + ~0.75 of LDS.128), with a dependency chain of one FFMA
//   per token, so warps issue without cross-lane waits. Every kLanes tokens the channel's lanes
//   reduce-scatter their per-token partial Σ s·C (kLanes-1 shuffles per lane, ≈ 1.75 slots per
//   item at 2 states per lane; kSmemReduce does it through shared memory instead) and lane q
//   writes token q's gated output; with kOverlap the next group's walk precedes this group's
//   reduce and output, so they overlap. Per chunk the block converts its raw tiles once: δ = softplus(..) and δ·u per (token, channel), B and C per
//   (token, state), all fp32 in smem rows of kChunk + 4 floats so the float4 reads of 8 rows
//   fall on distinct bank groups. Two barriers per chunk: the next chunk's cp.async and the
//   previous chunk's y flush run between them, during the conversion. Positions past L load
//   as zeros and get δ = 0: decay 1, input 0, so the carried and final states are exact for
//   any L.
//   On sm_90 run() takes the bulk-copy form of it (LanePrefillTraits::kTma, DefaultPrefillTmaTraits):
//   one thread requests a chunk's raw tiles as tensor copies (TMA) that complete on the stage's
//   mbarrier, and each y tile leaves as one tensor store, so the walking warps run no copy loops
//   (their loop control and instruction-cache misses were ~15% of the warps' stall samples):
//   103 µs at L = 2048 on an H200 against 117 for the copy-loop form (bench/RESULTS.md run AJ).
//   The previous segment-scan kernel (prefill_kernel, PrefillTraits) is kept as a benchmarked
//   alternative: kSegments lanes share a channel, each holding kItems consecutive tokens, and
//   combine (decay, value) aggregates with a shuffle scan per state per chunk. It costs ≈ 4
//   extra issue slots per item (the scan, the exclusive shift, the re-walk) and a 4-step
//   shuffle latency chain per state; measured 168 vs 142 µs for the then-default lanes kernel
//   (int8, L = 2048, see below).
// Why y is not Hadamard-rotated here: the rotation mixes all E channels of a token, while a
// block holds 16 channels over many tokens; fusing would need a grid-wide exchange of y per
// token. y leaves as fp16 (~40% of the bytes, but bytes are not the bound) and the Hadamard kernel reads
// it token-major.
// Known imbalance: B·E/kChannels blocks (320 for E = 5120, 16 channels) spread over 132 SMs
// unevenly (2 or 3 per SM); 8-channel blocks (8-byte rows) halve the granularity. Splitting L
// across blocks needs a cross-block carry, which costs a second walk over most tokens:
// segmented_scan.cuh does it in two passes with a workspace (~1.4x the exps at 3 segments).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <type_traits>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/mbarrier.cuh"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_map.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/core/thread_share.cuh"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/ptx.cuh"
#include "quamba/scan/scan_common.cuh"

namespace quamba::scan {

// ---- Params ----------------------------------------------------------------------------------

struct PrefillParamsI8 {
  TensorView<const int8_t, 3> u, delta, z, Bm, Cm;  // z.data may be null (no gate)
  float s_u = 1, s_delta = 1, s_z = 1, s_B = 1, s_C = 1;
  const int8_t* A_log = nullptr;  // (E, N)
  float s_A = 1;
  const int8_t* D = nullptr;  // (E) optional
  float s_D = 1;
  const int8_t* delta_bias = nullptr;  // (E) optional
  float s_delta_bias = 1;
  const float* initial_state = nullptr;  // (B, E, N) optional
  float* final_state = nullptr;          // (B, E, N) optional
  TensorView<__half, 3> y;               // (B, L, E)
  // Fused dt_proj (optional): with dt_weight set, δraw is not read from `delta` (which may then
  // be empty) but computed per chunk on the tensor cores as q(Σ_k dt_x(b, t, k)·dt_weight(e, k)
  // · dt_alpha), the exact int32 sum and gemm::Requant's rounding, so it is bit-identical to the
  // dt_proj GEMM's output. dt_x is the dt_low slice of x_proj's output (B, L, dt_k) (token stride
  // Xp), dt_k = Rp: a multiple of 16, at most kMaxFusedDtK; dt_weight (E, dt_k) row-major.
  TensorView<const int8_t, 3> dt_x;
  const int8_t* dt_weight = nullptr;
  float dt_alpha = 1;
  // Launch as a programmatic dependent of the stream's previous kernel (core/launch.cuh): the
  // weights (A_log, D, δ bias) are read before the dependency wait, everything else after it.
  bool pdl = false;
};

// Largest dt_k of the fused dt_proj: the chunk's dt_x tile (kChunk·dt_k bytes) is shared memory
// next to the block's other tiles (dt_k = 160 at d_model 2560 keeps 3 blocks per SM on sm_90).
inline constexpr int64_t kMaxFusedDtK = 256;

struct PrefillParamsF16 {
  TensorView<const __half, 3> u, delta, z, Bm, Cm;  // z.data may be null
  const float* A = nullptr;           // (E, N), A = -exp(A_log)
  const float* D = nullptr;           // (E) optional
  const float* delta_bias = nullptr;  // (E) optional
  const float* initial_state = nullptr;
  float* final_state = nullptr;
  TensorView<__half, 3> y;
  bool pdl = false;  // as PrefillParamsI8::pdl
};

// Tensor maps of the bulk-copy form (LanePrefillTraits::kTma): u, δ, z, B, C and y, each as
// (channels, tokens, batch); built by launch_prefill for every launch.
struct PrefillMaps {
  CUtensorMap u, delta, z, Bm, Cm, y;
};
struct NoPrefillMaps {};
template <bool kTma>
using PrefillMapsFor = std::conditional_t<kTma, PrefillMaps, NoPrefillMaps>;

namespace detail {

// Per-variant element access: the kernel body is shared, only dequantization differs.
template <class P>
struct PrefillIo;

template <>
struct PrefillIo<PrefillParamsI8> : QuantIo<PrefillParamsI8> {};
template <>
struct PrefillIo<PrefillParamsF16> : HalfIo<PrefillParamsF16> {};

// The fused dt_proj's input (PrefillParamsI8 only): its column count (0: not fused) and rows.
inline bool fused_dt(const PrefillParamsI8& p) { return p.dt_weight != nullptr; }
inline bool fused_dt(const PrefillParamsF16&) { return false; }
QUAMBA_HD int64_t dtx_cols(const PrefillParamsI8& p) { return p.dt_x.shape[2]; }
QUAMBA_HD int64_t dtx_cols(const PrefillParamsF16&) { return 0; }
QUAMBA_DEVICE const int8_t* dtx_row(const PrefillParamsI8& p, int64_t b, int tok) {
  return p.dt_x.data + b * p.dt_x.stride[0] + int64_t(tok) * p.dt_x.stride[1];
}
QUAMBA_DEVICE const int8_t* dtx_row(const PrefillParamsF16&, int64_t, int) { return nullptr; }

}  // namespace detail

// ---- Traits ----------------------------------------------------------------------------------

// kSegments lanes share one channel (the shuffle-scan width), each holding kItems consecutive
// tokens; a warp holds 32/kSegments channels, a block kWarps warps. In is the input element.
template <int kDState_, int kSegments_, int kItems_, int kWarps_, int kMinBlocks_, typename In_>
struct PrefillTraits {
  using In = In_;
  static constexpr int kDState = kDState_;
  static constexpr int kSegments = kSegments_;
  static constexpr int kItems = kItems_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kChannelsPerWarp = 32 / kSegments;
  static constexpr int kChannels = kChannelsPerWarp * kWarps;
  static constexpr int kKernel = 0;                  // segment-scan kernel (prefill_kernel)
  static constexpr bool kStateLanes = false;
  static constexpr int kChunk = kSegments * kItems;  // tokens per chunk
  static constexpr int kPitch = kItems + 4;          // floats per (state, segment) row of B/C tiles
  static constexpr int kInBytes = static_cast<int>(sizeof(In));
  static constexpr int kRowSlots = kChannels * kInBytes / 16;  // 16-byte slots per u/δ/z row
  static constexpr int kBCSlots = kDState * kInBytes / 16;     // 16-byte slots per B/C row
  static constexpr int kYSlots = kChannels * 2 / 16;           // 16-byte slots per y row (fp16)
  // Shared memory (bytes): two stages of raw tiles, fp32 B/C tiles, the y tile, A·log2e, carry.
  static constexpr int kTileBytes = kChunk * kChannels * kInBytes;
  static constexpr int kBCBytes = kChunk * kDState * kInBytes;
  static constexpr int kStageBytes = 3 * kTileBytes + 2 * kBCBytes;
  static constexpr int kBCFloatBytes = kDState * kSegments * kPitch * 4;
  static constexpr int kOffBf = 2 * kStageBytes;
  static constexpr int kOffCf = kOffBf + kBCFloatBytes;
  static constexpr int kOffY = kOffCf + kBCFloatBytes;
  static constexpr int kOffA2 = kOffY + kChunk * kChannels * 2;
  static constexpr int kOffCarry = kOffA2 + kChannels * kDState * 4;
  // The carry is double buffered by chunk parity: segment 0 reads chunk c's entry state while
  // segment kSegments-1 writes chunk c+1's, so no address is read and written between barriers.
  static constexpr int kSmemBytes = kOffCarry + 2 * kChannels * kDState * 4;

  static_assert(kSegments >= 2 && kSegments <= 32 && (kSegments & (kSegments - 1)) == 0,
                "segments per channel: power of two, 2..32 (shuffle width)");
  static_assert(kItems % 8 == 0, "the XOR swizzle needs a segment to span a multiple of 8 slots");
  static_assert(kChannels % 16 == 0, "a token row of int8 u/δ/z must fill whole 16-byte slots");
  static_assert(kRowSlots >= 1 && kBCSlots >= 1 && kYSlots >= 1, "rows are whole 16-byte slots");
  static_assert((kPitch * 4) % 16 == 0, "B/C tile rows must be float4 aligned");
  static_assert(kSmemBytes % 16 == 0, "smem carve-up keeps 16-byte alignment");
};

// State-lane variant (prefill_lanes_kernel): a lane owns kStatesPerLane states of one channel
// and walks the chunk's tokens sequentially, so no cross-lane scan; the per-token dot product
// over states is a reduce-scatter across the channel's kLanes = N / kStatesPerLane lanes.
// kGroups: token groups unrolled together (the compiler still runs them one after the other:
// see kOverlap, which makes the overlap explicit; with it, kGroups counts group pairs).
// kSmemReduce: the per-token partial sums meet through shared memory (each lane stores its G
// partials as float4s, then sums one token's column: G/4 STS.128 + G LDS + G-1 FADD) instead of
// the shuffle reduce-scatter (G-1 SHFL + G-1 FADD + 2(G-1) selects). With pair lanes, the
// overlapped walk and bulk copies it measured 117 µs against 105 for the shuffle form (E = 5120,
// L = 2048, H200, run AJ): fewer instructions, but its two __syncwarp per group keep the
// compiler from interleaving the next group's walk with this group's reduce.
// kPairLanes: lane bit 0 selects the channel and bits 1.. the state group, so lanes 2i and 2i+1
// read the same B/C address and lanes i and i^2 the same δ/δu address. Shared memory returns 128
// bytes (one register per lane) per cycle; an LDS.128 costs 4 cycles for a warp unless one of
// these pairings holds for all lanes, which halves it (the B/C reads are ~2 of the ~3.5 smem
// cycles per warp-item of the unpaired layout, the largest per-item cost in the model).
template <int kDState_, int kStatesPerLane_, int kChunk_, int kChannels_, int kMinBlocks_, typename In_,
          int kGroups_ = 1, bool kSmemReduce_ = false, bool kPairLanes_ = false, bool kOverlap_ = false,
          bool kUnrolledPrep_ = false, bool kTma_ = false>
struct LanePrefillTraits {
  using In = In_;
  static constexpr int kKernel = 1;  // prefill_lanes_kernel
  static constexpr bool kStateLanes = true;
  static constexpr bool kPairLanes = kPairLanes_;
  // kOverlap: token groups are walked in source order one ahead of their reduce-scatter and
  // output (walk g+1, then finish g), with branch-free softplus / SiLU. A group's output ends in
  // a shared-memory store, and the compiler does not move the next group's shared loads above a
  // store it cannot prove disjoint, so in the plain loop each group's shuffle and gate latencies
  // (~200 cycles of few instructions) run alone; here they overlap the next group's walk.
  // Measured (H100, E = 5120, L = 2048): 120 µs against 131 for the plain loop; deferring each
  // output store past the next walk (no store between a finish and the next walk) 124, storing
  // outputs straight to global memory (st.global, no y tile) 129. With kOverlap, kGroups is the
  // number of group pairs unrolled (two: 116 µs).
  static constexpr bool kOverlap = kOverlap_;
  // kUnrolledPrep: the per-chunk copies, the y flush and the conversion run as compile-time
  // unrolled sequences (each thread's share, no loop) instead of thread-strided loops, whose
  // trip count the compiler cannot bound because it does not know tid < kThreads (a single copy
  // then costs ~40 instructions of loop control). 7% fewer instructions at the int8 default.
  // Measured (H200, L = 2048, bench/RESULTS.md run AA, same run): int8 default traits with it
  // 119 / 60.3 µs at E = 5120 / 1536 against 117 / 67.9 with the loops; fp16 with pair lanes and
  // the overlapped walk 138 µs. The int8 E = 5120 case is the one where it loses (reproducibly,
  // ~2%), so the int8 default keeps the loops; the fp16 default uses it. (Routing the loops
  // through for_thread_share changed their compiled form: the int8 default measured 117 / 450 µs
  // at L = 2048 / 8192 against 116 / 446 before, same run.)
  static constexpr bool kUnrolledPrep = kUnrolledPrep_;
  // kTma (sm_90 and up, launch_prefill refuses elsewhere): one thread requests the chunk's raw
  // tiles as bulk tensor copies (TMA, one per tile, completing on the stage's mbarrier; tokens
  // past L arrive as zeros) and sends each y tile out as one bulk tensor store (tokens past L
  // dropped), instead of every thread issuing its share of 16-byte cp.async copies and y stores.
  // Those copy loops were ~8% of the default's instructions and ~15% of its warps' stall samples
  // (loop control, instruction-cache misses; bench/RESULTS.md run AJ).
  static constexpr bool kTma = kTma_;
  static constexpr int kGroups = kGroups_;
  static constexpr bool kSmemReduce = kSmemReduce_;
  static constexpr int kDState = kDState_;
  static constexpr int kStatesPerLane = kStatesPerLane_;
  static constexpr int kLanes = kDState / kStatesPerLane;  // lanes per channel = tokens per group
  static constexpr int kChunk = kChunk_;
  static constexpr int kChannels = kChannels_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int kChannelsPerWarp = 32 / kLanes;
  static constexpr int kWarps = kChannels / kChannelsPerWarp;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kPitch = kChunk + 4;  // floats per row of the fp32 [channel|state][token] tiles
  static constexpr int kInBytes = static_cast<int>(sizeof(In));
  // A u/δ/z row is kChannels·kInBytes bytes: 16-byte copies, or one 8-byte copy for 8 int8
  // channels (8-channel blocks double the block count, which evens out the SMs' load).
  static constexpr int kRowBytes = kChannels * kInBytes;
  static constexpr int kRowCopy = kRowBytes % 16 == 0 ? 16 : 8;
  static constexpr int kRowSlots = kRowBytes / kRowCopy;
  // Elements per raw u/δ/z tile row. A tensor-copy box starts and ends on 16-byte boundaries of
  // a row, so with kTma a block whose first channel e0 is not on one (20 int8 channels: e0 = 20·i)
  // loads from e0 rounded down and finds its channels e0 mod kAlignElems elements into the row (at
  // most kRowOffMax); the rest of the row is neighbours' channels, never read. The copy loops fill
  // exactly kChannels.
  static constexpr int kAlignElems = 16 / kInBytes;
  static constexpr int kRowOffMax = kTma ? kAlignElems - std::gcd(kChannels, kAlignElems) : 0;
  static constexpr int kRowPitch =
      kTma ? (kChannels + kRowOffMax + kAlignElems - 1) / kAlignElems * kAlignElems : kChannels;
  static constexpr int kBCSlots = kDState * kInBytes / 16;
  // y tile rows (kChannels fp16) leave in 16-byte pieces, or 8-byte ones when a row is not whole
  // 16-byte pieces (20 channels); the tensor store needs 16-byte rows (kTmaY), else the threads
  // copy the tile out as the copy-loop form does.
  static constexpr int kYCopy = (kChannels * 2) % 16 == 0 ? 16 : 8;
  static constexpr int kYSlots = kChannels * 2 / kYCopy;
  static constexpr bool kTmaY = kTma && kYCopy == 16;
  static constexpr int kTileBytes = kChunk * kRowPitch * kInBytes;
  static constexpr int kBCBytes = kChunk * kDState * kInBytes;
  // A raw stage holds the chunk's u | z | B | C | δ rows. δ comes last so that the fused-dt_proj
  // form (PrefillParamsI8::dt_weight), which has no δ tile, drops it from the end of each stage:
  // its stages are kTileBytes shorter, every later region moves down by kFusedShrink, and the
  // chunk's dt_x tile (kChunk rows of dt_k rounded up to 32 bytes, single buffered: it is
  // consumed by the conversion and refilled during the walk) follows at kSmemBytes - kFusedShrink.
  static constexpr int kRawU = 0;
  static constexpr int kRawZ = kTileBytes;
  static constexpr int kRawB = 2 * kTileBytes;
  static constexpr int kRawC = 2 * kTileBytes + kBCBytes;
  static constexpr int kRawD = 2 * kTileBytes + 2 * kBCBytes;
  static constexpr int kStageBytes = 3 * kTileBytes + 2 * kBCBytes;
  static constexpr int kFusedShrink = 2 * kTileBytes;
  static constexpr int kOffDelta = 2 * kStageBytes;                      // δ      [channel][token]
  static constexpr int kOffDU = kOffDelta + kChannels * kPitch * 4;      // δ·u    [channel][token]
  static constexpr int kOffBf = kOffDU + kChannels * kPitch * 4;         // B      [state][token]
  static constexpr int kOffCf = kOffBf + kDState * kPitch * 4;           // C      [state][token]
  static constexpr int kOffY = kOffCf + kDState * kPitch * 4;            // y fp16 [token][channel]
  // Reduce scratch per channel: kLanes rows of kLanes + 4 floats (float4-aligned rows on distinct
  // bank groups), channels kLanes·(kLanes + 5) floats apart so a column read by the whole warp
  // (kChannelsPerWarp channels × kLanes lanes) hits 32 distinct banks.
  static constexpr int kRedPitch = kLanes + 4;
  static constexpr int kRedChannel = kLanes * (kLanes + 5);
  static constexpr int kOffRed = kOffY + kChunk * kChannels * 2;
  // kTma: the two stages' mbarriers (8 bytes each).
  static constexpr int kOffBar = kOffRed + (kSmemReduce ? kChannels * kRedChannel * 4 : 0);
  static constexpr int kSmemBytes = kOffBar + (kTma ? 16 : 0);
  // Dynamic shared memory of a launch: with the fused dt_proj, dt_k > 0 (see the stage layout).
  static constexpr size_t smem_bytes(int64_t dt_k) {
    return dt_k > 0 ? static_cast<size_t>(kSmemBytes - kFusedShrink) + static_cast<size_t>(kChunk) * ((dt_k + 31) / 32 * 32)
                    : static_cast<size_t>(kSmemBytes);
  }
  // The fused dt_proj's mma tiles (16 tokens × 8 channels) split evenly over the warps.
  static constexpr bool kFusedDtOk = kChunk % 16 == 0 && kChannels % 8 == 0 &&
                                     ((kChunk / 16) * (kChannels / 8)) % kWarps == 0 && sizeof(In) == 1;

  static_assert(kDState % kStatesPerLane == 0 && kLanes >= 4 && kLanes <= 32 && (kLanes & (kLanes - 1)) == 0,
                "lanes per channel: power of two, 4..32 (a token group is read as float4s)");
  static_assert(kChunk % (kLanes * kGroups) == 0 && kChunk % 4 == 0, "a chunk is whole token groups");
  static_assert(kChannels % 4 == 0 && kChannels % kChannelsPerWarp == 0 && (kTma || kRowBytes % kRowCopy == 0),
                "u/δ/z rows are whole 8- or 16-byte copies (or tensor-copy rows), channels whole warps");
  static_assert(kDState % 4 == 0 && kBCSlots >= 1 && kYSlots >= 1, "B/C and y rows are whole 16-byte slots");
  static_assert(kSmemBytes % 16 == 0, "smem carve-up keeps 16-byte alignment");
  static_assert(!kPairLanes || kChannelsPerWarp >= 2, "pair lanes: two channels per warp");
  static_assert(!kOverlap || (kChunk / kLanes) % (2 * kGroups) == 0,
                "overlapped walk: groups taken in pairs (kGroups pairs unrolled)");
  // Bulk tensor copies: rows of whole 16-byte pieces, every tile at a 128-byte boundary, boxes of
  // at most 256 tokens.
  static_assert(!kTma || (kTileBytes % 128 == 0 && kBCBytes % 128 == 0 && (!kTmaY || kOffY % 128 == 0) &&
                          kChunk <= 256 && kRowPitch <= 256),
                "bulk-copy tiles: 128-byte aligned tiles, boxes of at most 256 tokens and channels");
};

// Pipelined state-lane variant (prefill_piped_kernel): the state-lane walk with pair lanes, one
// barrier per chunk, and the conversion of chunk c+1 (softplus, δ·u, B, C to fp32) spread over
// chunk c's token groups: each group a thread converts one (token, channel) of the next chunk
// (kThreads = kChannels·kLanes = the (token, channel) pairs of one group) and a share of its B/C.
// So every warp always has independent conversion work (full-rate pipes, 2 MUFU per pair) to
// issue beside the decay exponentials (MUFU), instead of a block-wide conversion phase between
// two barriers during which the special-function unit idles. Costs: fp32 tiles and the y tile
// double buffered, three raw stages (chunk c's u/z feed its outputs, chunk c+1's are being
// converted, chunk c+2's are landing). kChannels any multiple of 8: 40 gives E = 5120 exactly
// 128 blocks, one per SM of a 132-SM H100 (16-channel blocks give 320 = 3 or 2 per SM).
// kPipe: software-pipelined walk (the next token group's decays computed before this group's
// walk; see the kernel); else kUnroll token groups are unrolled together.
template <int kDState_, int kStatesPerLane_, int kChunk_, int kChannels_, int kMinBlocks_, typename In_,
          int kUnroll_ = 1, bool kPipe_ = false>
struct PipedPrefillTraits {
  using In = In_;
  static constexpr int kKernel = 2;  // prefill_piped_kernel
  static constexpr int kUnroll = kUnroll_;  // token groups unrolled together
  static constexpr bool kPipe = kPipe_;
  static constexpr bool kStateLanes = true;
  static constexpr bool kPairLanes = true;
  static constexpr int kDState = kDState_;
  static constexpr int kStatesPerLane = kStatesPerLane_;
  static constexpr int kLanes = kDState / kStatesPerLane;  // lanes per channel = tokens per group
  static constexpr int kChunk = kChunk_;
  static constexpr int kChannels = kChannels_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int kChannelsPerWarp = 32 / kLanes;
  static constexpr int kWarps = kChannels / kChannelsPerWarp;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kGroupsPerChunk = kChunk / kLanes;
  static constexpr int kStages = 3;
  // Row pitches (floats): [channel][token] rows at ≡ 8 words mod 32, so a warp's 4 channel rows
  // take distinct bank groups for float4 reads and its (token, channel) stores (8 tokens × 4
  // channels) hit 32 distinct banks; [state][token] rows at ≡ 4 mod 32, so 8 state rows take 8
  // distinct bank groups.
  static constexpr int kPitchC = kChunk + 8;
  static constexpr int kPitchN = kChunk + 4;
  static constexpr int kInBytes = static_cast<int>(sizeof(In));
  static constexpr int kRowBytes = kChannels * kInBytes;
  static constexpr int kRowCopy = kRowBytes % 16 == 0 ? 16 : 8;
  static constexpr int kRowSlots = kRowBytes / kRowCopy;
  static constexpr int kBCSlots = kDState * kInBytes / 16;
  static constexpr int kYSlots = kChannels * 2 / 16;
  static constexpr int kTileBytes = kChunk * kChannels * kInBytes;
  static constexpr int kBCBytes = kChunk * kDState * kInBytes;
  static constexpr int kStageBytes = 3 * kTileBytes + 2 * kBCBytes;
  // fp32 buffer: δ [channel][token], δ·u [channel][token], B [state][token], C [state][token].
  static constexpr int kOffDU = kChannels * kPitchC;  // floats
  static constexpr int kOffB = 2 * kChannels * kPitchC;
  static constexpr int kOffC = kOffB + kDState * kPitchN;
  static constexpr int kFloatBytes = (kOffC + kDState * kPitchN) * 4;
  static constexpr int kOffF = kStages * kStageBytes;
  static constexpr int kYBytes = kChunk * kChannels * 2;
  static constexpr int kOffY = kOffF + 2 * kFloatBytes;
  static constexpr int kSmemBytes = kOffY + 2 * kYBytes;

  static_assert(kDState % kStatesPerLane == 0 && kLanes >= 4 && kLanes <= 16 && (kLanes & (kLanes - 1)) == 0,
                "lanes per channel: power of two, 4..16 (pair lanes need two channels per warp)");
  static_assert(kChunk % kLanes == 0 && kChunk % 4 == 0 && kGroupsPerChunk % kUnroll == 0, "a chunk is whole token groups");
  static_assert(!kPipe || (kGroupsPerChunk >= 2 && kGroupsPerChunk % 2 == 0), "the pipelined walk takes groups in pairs");
  static_assert(kChannels % 8 == 0 && kChannels % kChannelsPerWarp == 0 && kRowBytes % kRowCopy == 0,
                "u/δ/z rows are whole 8- or 16-byte copies, channels whole warps");
  static_assert(kDState % 4 == 0 && kBCSlots >= 1, "B/C rows are whole 16-byte slots");
  static_assert(kStageBytes % 16 == 0 && kFloatBytes % 16 == 0 && kYBytes % 16 == 0, "16-byte aligned carve-up");
};

// Default variants: the state-lane kernel. N = 16: 2 states per lane, 8 lanes per channel,
// 16 channels per 128-thread block, 128-token chunks (57 KB smem with int8 inputs, 3 blocks/SM;
// 320 blocks at E = 5120 fill one wave).
// H100, B = 1, E = 5120, int8 (bench_scan, same run, copy 3.0 TB/s): L = 2048 / 8192:
//   Q2xT128xC16xM3 142 / 544 µs (kGroups 1 and 2 equal; smem reduce 147 / 564; 64-token chunks
//   151 / 581; 8-channel blocks 173 / 645; Q1 156 / 601; Q4 192 / 746); segment-scan kernel
//   S16xK8xW8xM3 168 / 646 µs (178 / 687 before the scan_common.cuh conversion and gate changes).
// fp16 inputs at 128-token chunks need 78 KB (2 blocks/SM, two waves at E = 5120): 232 / 904 µs
// against 169 / 652 for the segment kernel, whose fp16 path was not yet run against the
// reference on a GPU; ScanPrefillF16.ExplicitVariants covers it and the 64-token lane variant
// (both candidates for the fp16 default). N = 32 / 64: 16 lanes per channel, 256 threads;
// N = 64 uses 64-token chunks so the fp16-input variant stays at ~91 KB and fits sm_80 (not
// benchmarked; chosen by the same model, tested).
template <int N, typename In>
struct DefaultPrefillTraits;
template <typename In>
struct DefaultPrefillTraits<16, In> { using type = LanePrefillTraits<16, 2, 128, 16, 3, In, 2>; };
// fp16, N = 16: the int8 default's pair lanes and overlapped walk, with the unrolled prep
// (kUnrolledPrep): 40.7 / 138 / 533 µs at E = 5120, L = 512 / 2048 / 8192 and 59.5 at E = 1536
// against 60.9 / 226 / 886 / 95.6 for the plain configuration above (H200, bench/RESULTS.md run AA).
template <>
struct DefaultPrefillTraits<16, __half> {
  using type = LanePrefillTraits<16, 2, 128, 16, 3, __half, 2, false, true, true, true>;
};
// int8, N = 16: pair lanes and the overlapped walk (kOverlap) with two group pairs unrolled,
// 116 / 444 µs at E = 5120 (L = 2048 / 8192) and 67.7 µs at E = 1536; one pair per iteration
// 120 / 459 / 71.4; pair lanes with the plain loop (the previous default) 131 / 505 / 88.4 (H100,
// one invocation, bench/RESULTS.md run K). Before that, pair lanes measured 135 / 517 / 93 against 142 / 544 /
// 97 unpaired. Pipelined kernel: 40-channel blocks 131 at L = 2048 (its software-pipelined walk
// 136), 16-channel 143 / 548 / 106. A warp-specialized form (one producer warp converting the
// next chunk for four walking warps) measured 161 at L = 2048 and was removed.
template <>
struct DefaultPrefillTraits<16, int8_t> {
  using type = LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 2, false, true, true>;
};
template <typename In>
struct DefaultPrefillTraits<32, In> { using type = LanePrefillTraits<32, 2, 128, 16, 2, In>; };
template <typename In>
struct DefaultPrefillTraits<64, In> { using type = LanePrefillTraits<64, 4, 64, 16, 2, In>; };

// What run() launches on sm_90 and up (void: DefaultPrefillTraits everywhere). N = 16: the
// default's geometry with bulk tensor copies (kTma) and the unrolled prep. int8, four group pairs
// per loop iteration: 103 / 395 µs at E = 5120, L = 2048 / 8192 and 53.1 at E = 1536, against
// 118 / 450 / 68.3 for DefaultPrefillTraits in the same run (H200, bench/RESULTS.md run AJ). With
// the copy loops gone the unrolled prep gains for int8 too (106 against 108 without it, two
// pairs), and so do more pairs per iteration (one 105 / 400, two 105 / 401, four 103 / 394, eight
// 109 / 415). fp16, two pairs: 124 / 477 / 54.5 against 132 / 507 / 56.2 (same run).
template <int N, typename In>
struct DefaultPrefillTmaTraits {
  using type = void;
};
template <>
struct DefaultPrefillTmaTraits<16, int8_t> {
  using type = LanePrefillTraits<16, 2, 128, 16, 3, int8_t, 4, false, true, true, true, true>;
};
template <>
struct DefaultPrefillTmaTraits<16, __half> {
  using type = LanePrefillTraits<16, 2, 128, 16, 3, __half, 2, false, true, true, true, true>;
};

// A wider block run() takes on sm_90 where it needs fewer waves than DefaultPrefillTmaTraits
// (void: none). fp16, N = 16: 20 channels per block. The fp16 16-channel block's shared memory
// (77 KB) holds two blocks per SM, so E = 5120 (320 blocks) is two waves on a 132-SM card and
// 256 blocks of 20 are one: 112 / 423 µs at L = 2048 / 8192 against 124 / 476 (H200,
// bench/RESULTS.md run AK). int8 keeps 16: its 320 blocks are one wave at three per SM, and a
// warp scheduler holds three walking warps either way (20-channel blocks of five warps, two per
// SM, put three on two of the four schedulers), so 20 measured slower there (114 against 103).
template <int N, typename In>
struct WidePrefillTmaTraits {
  using type = void;
};
template <>
struct WidePrefillTmaTraits<16, __half> {
  using type = LanePrefillTraits<16, 2, 128, 20, 2, __half, 2, false, true, true, true, true>;
};

// ---- Kernel ----------------------------------------------------------------------------------

namespace detail {

// Swizzled 16-byte slot: slots of one segment are XOR-permuted by (segment & 7), which stays
// inside the segment because a segment spans a multiple of 8 slots.
QUAMBA_DEVICE int swizzle_slot(int slot, int slots_per_segment) { return slot ^ ((slot / slots_per_segment) & 7); }

// Byte offset of element `byte` of token row t in a row-per-token tile of `row_slots` slots.
template <int kRowSlots, int kItems>
QUAMBA_DEVICE int tile_offset(int t, int byte) {
  const int slot = t * kRowSlots + byte / 16;
  return swizzle_slot(slot, kItems * kRowSlots) * 16 + (byte % 16);
}

template <class Traits, class Params, bool kHasZ>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks) prefill_kernel(const Params p) {
  using Io = PrefillIo<Params>;
  using In = typename Io::In;
  static_assert(std::is_same<In, typename Traits::In>::value, "traits built for another input type");
  constexpr int S = Traits::kSegments, K = Traits::kItems, CH = Traits::kChannels, T = Traits::kChunk;
  constexpr int N = Traits::kDState, P = Traits::kPitch, kThreads = Traits::kThreads;
  constexpr int kRowSlots = Traits::kRowSlots, kBCSlots = Traits::kBCSlots, kYSlots = Traits::kYSlots;
  constexpr int kElemsPerSlot = 16 / Traits::kInBytes;

  extern __shared__ __align__(128) unsigned char smem[];
  float* sBf = reinterpret_cast<float*>(smem + Traits::kOffBf);
  float* sCf = reinterpret_cast<float*>(smem + Traits::kOffCf);
  unsigned char* sY = smem + Traits::kOffY;
  float* sA2 = reinterpret_cast<float*>(smem + Traits::kOffA2);
  float* sCarry = reinterpret_cast<float*>(smem + Traits::kOffCarry);

  const int tid = threadIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t E = p.u.shape[2];
  const int L = static_cast<int>(p.u.shape[1]);  // can_implement: L < 2^31
  const int64_t e0 = static_cast<int64_t>(blockIdx.x) * CH;

  grid_dependency_wait();  // pdl: everything below may read what earlier kernels wrote
  for (int idx = tid; idx < CH * N; idx += kThreads) {
    const int64_t e = e0 + idx / N;
    const int n = idx % N;
    // Finite clamp: tail tokens use δ = 0, and 0·(-inf) would be NaN instead of decay 1.
    sA2[idx] = fmaxf(Io::a_log2(p, e * N + n), -3.402823466e38f);
    sCarry[idx] = p.initial_state ? p.initial_state[(b * E + e) * N + n] : 0.f;
  }

  auto load_tile = [&](const TensorView<const In, 3>& v, unsigned char* dst, int chunk0) {
    for (int s = tid; s < T * kRowSlots; s += kThreads) {
      const int t = s / kRowSlots, r = s % kRowSlots;
      const int tok = chunk0 + t;
      const bool live = tok < L;
      const In* src = live ? v.data + b * v.stride[0] + int64_t(tok) * v.stride[1] + e0 + r * kElemsPerSlot : v.data;
      cp_async_16(dst + swizzle_slot(s, K * kRowSlots) * 16, src, live);
    }
  };
  auto load_bc = [&](const TensorView<const In, 3>& v, unsigned char* dst, int chunk0) {
    for (int s = tid; s < T * kBCSlots; s += kThreads) {
      const int t = s / kBCSlots, r = s % kBCSlots;
      const int tok = chunk0 + t;
      const bool live = tok < L;
      const In* src = live ? v.data + b * v.stride[0] + int64_t(tok) * v.stride[1] + r * kElemsPerSlot : v.data;
      cp_async_16(dst + s * 16, src, live);
    }
  };
  auto load_chunk = [&](int stage, int chunk0) {
    unsigned char* base = smem + stage * Traits::kStageBytes;
    load_tile(p.u, base, chunk0);
    load_tile(p.delta, base + Traits::kTileBytes, chunk0);
    if constexpr (kHasZ) load_tile(p.z, base + 2 * Traits::kTileBytes, chunk0);
    load_bc(p.Bm, base + 3 * Traits::kTileBytes, chunk0);
    load_bc(p.Cm, base + 3 * Traits::kTileBytes + Traits::kBCBytes, chunk0);
  };

  const int lane = tid & 31, warp = tid >> 5;
  const int chl = warp * Traits::kChannelsPerWarp + lane / S;  // block-local channel
  const int seg = lane % S;
  const int64_t e = e0 + chl;
  const float Dv = Io::d(p, e), bias = Io::bias(p, e);
  const float su = Io::s_u(p), sdt = Io::s_delta(p), sz = Io::s_z(p), sB = Io::s_B(p), sC = Io::s_C(p);
  const int in_byte = chl * Traits::kInBytes;

  const int nchunks = (L + T - 1) / T;
  load_chunk(0, 0);
  cp_async_commit();
  for (int c = 0; c < nchunks; ++c) {
    const int chunk0 = c * T;
    if (c + 1 < nchunks) load_chunk((c + 1) & 1, chunk0 + T);
    cp_async_commit();  // possibly empty: keeps the wait count uniform
    cp_async_wait<1>();
    __syncthreads();  // chunk c's raw tiles (and, first time, sA2/sCarry) visible to all

    const unsigned char* st = smem + (c & 1) * Traits::kStageBytes;
    const float* carry_in = sCarry + (c & 1) * CH * N;
    float* carry_out = sCarry + ((c + 1) & 1) * CH * N;
    {
      // Dequantize B and C once per chunk for all channels; t fastest so the fp32 writes are
      // consecutive within a segment row.
      const In* rawB = reinterpret_cast<const In*>(st + 3 * Traits::kTileBytes);
      const In* rawC = reinterpret_cast<const In*>(st + 3 * Traits::kTileBytes + Traits::kBCBytes);
      // Four states per thread: one 4- or 8-byte read per row instead of four byte reads.
      for (int idx = tid; idx < T * (N / 4); idx += kThreads) {
        const int t = idx % T, n4 = idx / T;
        const Vec<In, 4> bq = *reinterpret_cast<const Vec<In, 4>*>(rawB + t * N + 4 * n4);
        const Vec<In, 4> cq = *reinterpret_cast<const Vec<In, 4>*>(rawC + t * N + 4 * n4);
        const int dst = (4 * n4 * S + t / K) * P + t % K;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          sBf[dst + j * S * P] = to_float(bq[j]) * sB;
          sCf[dst + j * S * P] = to_float(cq[j]) * sC;
        }
      }
    }
    __syncthreads();

    float dl[K], du[K], acc[K];
    float dsum = 0.f;  // Σδ over this lane's items: its aggregate decay is one ex2, not K-1 FMULs
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int t = seg * K + i;
      const int off = tile_offset<kRowSlots, K>(t, in_byte);
      const bool live = chunk0 + t < L;
      const float uf = to_float(*reinterpret_cast<const In*>(st + off)) * su;
      const float dr = to_float(*reinterpret_cast<const In*>(st + Traits::kTileBytes + off)) * sdt + bias;
      const float d = live ? softplus(dr) : 0.f;  // δ = 0: decay 1, input 0 (identity past L)
      dl[i] = d;
      du[i] = d * (live ? uf : 0.f);
      acc[i] = 0.f;
      dsum += d;
    }

    const float* Bseg = sBf + seg * P;
    const float* Cseg = sCf + seg * P;
#pragma unroll 2
    for (int n = 0; n < N; ++n) {
      const float a2 = sA2[chl * N + n];
      const float* Bn = Bseg + n * S * P;
      const float* Cn = Cseg + n * S * P;
      float a[K], bb[K];
#pragma unroll
      for (int i = 0; i < K; i += 4) {
        const float4 bv = *reinterpret_cast<const float4*>(Bn + i);
        a[i + 0] = ex2(dl[i + 0] * a2);
        a[i + 1] = ex2(dl[i + 1] * a2);
        a[i + 2] = ex2(dl[i + 2] * a2);
        a[i + 3] = ex2(dl[i + 3] * a2);
        bb[i + 0] = du[i + 0] * bv.x;
        bb[i + 1] = du[i + 1] * bv.y;
        bb[i + 2] = du[i + 2] * bv.z;
        bb[i + 3] = du[i + 3] * bv.w;
      }
      // This lane's aggregate over its kItems tokens: Π exp(δ_i·A) = exp(A·Σδ) costs one more ex2
      // per kItems items but saves kItems-1 issue slots; issue, not MUFU, is the tighter limit.
      float ap = ex2(dsum * a2), bp = bb[0];
#pragma unroll
      for (int i = 1; i < K; ++i) bp = fmaf(a[i], bp, bb[i]);
      // Segment 0 absorbs the state carried into the chunk, so inclusive prefixes are states.
      const float carry = seg == 0 ? carry_in[chl * N + n] : 0.f;
      if (seg == 0) bp = fmaf(ap, carry, bp);
#pragma unroll
      for (int off = 1; off < S; off <<= 1) {
        const float au = __shfl_up_sync(0xffffffffu, ap, off, S);
        const float bu = __shfl_up_sync(0xffffffffu, bp, off, S);
        if (seg >= off) {
          bp = fmaf(ap, bu, bp);
          ap *= au;
        }
      }
      float s = __shfl_up_sync(0xffffffffu, bp, 1, S);
      if (seg == 0) s = carry;
#pragma unroll
      for (int i = 0; i < K; i += 4) {
        const float4 cv = *reinterpret_cast<const float4*>(Cn + i);
        s = fmaf(a[i + 0], s, bb[i + 0]);
        acc[i + 0] = fmaf(s, cv.x, acc[i + 0]);
        s = fmaf(a[i + 1], s, bb[i + 1]);
        acc[i + 1] = fmaf(s, cv.y, acc[i + 1]);
        s = fmaf(a[i + 2], s, bb[i + 2]);
        acc[i + 2] = fmaf(s, cv.z, acc[i + 2]);
        s = fmaf(a[i + 3], s, bb[i + 3]);
        acc[i + 3] = fmaf(s, cv.w, acc[i + 3]);
      }
      // Read by segment 0 in the next chunk, after its block barriers.
      if (seg == S - 1) carry_out[chl * N + n] = s;
    }

#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int t = seg * K + i;
      const int off = tile_offset<kRowSlots, K>(t, in_byte);
      const float uf = to_float(*reinterpret_cast<const In*>(st + off)) * su;
      float out = acc[i] + Dv * uf;
      if constexpr (kHasZ) out *= silu(to_float(*reinterpret_cast<const In*>(st + 2 * Traits::kTileBytes + off)) * sz);
      *reinterpret_cast<__half*>(sY + tile_offset<kYSlots, K>(t, chl * 2)) = __float2half_rn(out);
    }
    __syncthreads();  // y tile complete; raw stage c and B/C tiles free for reuse

    for (int s = tid; s < T * kYSlots; s += kThreads) {
      const int t = s / kYSlots, r = s % kYSlots;
      const int tok = chunk0 + t;
      if (tok < L) {
        __half* dst = p.y.data + b * p.y.stride[0] + int64_t(tok) * p.y.stride[1] + e0 + r * 8;
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(sY + swizzle_slot(s, K * kYSlots) * 16);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // carry written by the last chunk (already ordered by its barrier; cheap)
  if (p.final_state) {
    for (int idx = tid; idx < CH * N; idx += kThreads) {
      const int64_t ee = e0 + idx / N;
      p.final_state[(b * E + ee) * N + idx % N] = sCarry[(nchunks & 1) * CH * N + idx];
    }
  }
}

// Reduce-scatter of G per-token partial sums over the G lanes of a channel (aligned lane group):
// at step M a lane keeps the half of the tokens whose bit M matches its own lane bit and adds the
// partner's copy of that half; lane q ends with token q's total in v[0]. Recursion on M keeps
// every index a constant (a runtime-indexed v[] would live in local memory).
// kShift: the state-group bits start at lane bit kShift (1 with pair lanes).
template <int M, int G, int kShift = 0>
QUAMBA_DEVICE void reduce_scatter(float (&v)[G], int q) {
  const bool upper = (q & M) != 0;
#pragma unroll
  for (int i = 0; i < M; ++i) {
    const float send = upper ? v[i] : v[i + M];
    const float keep = upper ? v[i + M] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, M << kShift);
  }
  if constexpr (M > 1) reduce_scatter<M / 2, G, kShift>(v, q);
}

__host__ __device__ constexpr int log2_int(int v) { return v <= 1 ? 0 : 1 + log2_int(v / 2); }

// One token group of the state-lane walk (lanes and segmented kernels): lane q owns
// states q, q + G, ... of its channel and walks tokens g0 .. g0 + G - 1 of the fp32 tiles (rows
// of PT floats: δ, δ·u per channel, B, C per state), leaving in v[i] its partial Σ s·C of token
// g0 + i. Per (token, state): FMUL δ·A, ex2, FMUL δu·B, the state FFMA and the C FFMA.
template <int G, int Q, int PT>
QUAMBA_DEVICE void walk_group(const float* dRow, const float* wRow, const float* sBf, const float* sCf, int q,
                              const float (&a2)[Q], float (&st)[Q], int g0, float (&v)[G]) {
#pragma unroll
  for (int k = 0; k < G; k += 4) {
    const float4 d4 = *reinterpret_cast<const float4*>(dRow + g0 + k);
    const float4 w4 = *reinterpret_cast<const float4*>(wRow + g0 + k);
    const float dd[4] = {d4.x, d4.y, d4.z, d4.w}, ww[4] = {w4.x, w4.y, w4.z, w4.w};
#pragma unroll
    for (int j = 0; j < Q; ++j) {
      const int n = q + j * G;
      const float4 b4 = *reinterpret_cast<const float4*>(sBf + n * PT + g0 + k);
      const float4 c4 = *reinterpret_cast<const float4*>(sCf + n * PT + g0 + k);
      const float bb[4] = {b4.x, b4.y, b4.z, b4.w}, cc[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float a = ex2(dd[i] * a2[j]);
        st[j] = fmaf(a, st[j], ww[i] * bb[i]);
        v[k + i] = j == 0 ? st[j] * cc[i] : fmaf(st[j], cc[i], v[k + i]);
      }
    }
  }
}

// Gated output of one (token, channel) from its Σ s·C: (y + D·u)·silu(z), u and z raw inputs.
// kFtz: the branch-free flush-to-zero SiLU (scan_common.cuh).
template <bool kHasZ, bool kFtz, typename In>
QUAMBA_DEVICE float gate_output(float y, In uq, In zq, float Dv, float su, float sz) {
  float out = y + Dv * (to_float(uq) * su);
  if constexpr (kHasZ) {
    const float zf = to_float(zq) * sz;
    out *= kFtz ? silu_ftz(zf) : silu(zf);
  }
  return out;
}

// State-lane kernel. Per chunk: (1) raw u/δ/z/B/C tiles arrive by cp.async (double buffered);
// (2) the block turns them into fp32 tiles once: δ = softplus(...) and δ·u per (token, channel),
// B and C per (token, state), each transcendental computed once and shared by the lanes that
// need it; (3) each lane walks the chunk token by token for its kStatesPerLane states: per
// (token, state) one FMUL δ·A, one ex2, one FMUL δu·B, the state FFMA and the C FFMA. The state
// chain is one FFMA per token (4 cycles), the exps are off it, so a warp keeps issuing without
// any cross-lane dependency; (4) every kLanes tokens the channel's lanes reduce-scatter their
// per-token partial sums (kLanes-1 shuffles per lane), lane q ends with token q's Σ_n s·C and
// writes its gated output to the y tile; (5) the y tile leaves as 16-byte rows (kTma: the chunk's
// raw tiles arrive by tensor copies on the stage's mbarrier and the y tile leaves as one tensor
// store, see LanePrefillTraits::kTma).
template <class Traits, class Params, bool kHasZ, bool kFusedDt = false>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    prefill_lanes_kernel(const Params p, const __grid_constant__ PrefillMapsFor<Traits::kTma> maps) {
  using Io = PrefillIo<Params>;
  using In = typename Io::In;
  static_assert(std::is_same<In, typename Traits::In>::value, "traits built for another input type");
  static_assert(!kFusedDt || Traits::kFusedDtOk, "fused dt_proj: int8 inputs, mma tiles split over the warps");
  constexpr int G = Traits::kLanes, Q = Traits::kStatesPerLane, CH = Traits::kChannels, T = Traits::kChunk;
  constexpr int N = Traits::kDState, PT = Traits::kPitch, kThreads = Traits::kThreads;
  constexpr int kRowSlots = Traits::kRowSlots, kBCSlots = Traits::kBCSlots, kYSlots = Traits::kYSlots;
  constexpr int kRowCopy = Traits::kRowCopy, RP = Traits::kRowPitch;
  // The fused form has no δ tile (see the traits' stage layout).
  constexpr int kShrink = kFusedDt ? Traits::kFusedShrink : 0;
  constexpr int kStage = Traits::kStageBytes - kShrink / 2;

  extern __shared__ __align__(128) unsigned char smem[];
  float* sD = reinterpret_cast<float*>(smem + Traits::kOffDelta - kShrink);
  float* sDU = reinterpret_cast<float*>(smem + Traits::kOffDU - kShrink);
  float* sBf = reinterpret_cast<float*>(smem + Traits::kOffBf - kShrink);
  float* sCf = reinterpret_cast<float*>(smem + Traits::kOffCf - kShrink);
  __half* sY = reinterpret_cast<__half*>(smem + Traits::kOffY - kShrink);
  // kTma: the stages' mbarriers (stage s at bar0 + 8·s).
  [[maybe_unused]] const uint32_t bar0 = gemm::ptx::smem_u32(smem + Traits::kOffBar - kShrink);

  const int tid = threadIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t E = p.u.shape[2];
  const int L = static_cast<int>(p.u.shape[1]);
  const int64_t e0 = static_cast<int64_t>(blockIdx.x) * CH;
  // kTma: u/δ/z boxes start at e0 rounded down to 16 bytes; the block's channels begin roff
  // elements into each raw row (LanePrefillTraits::kRowPitch).
  const int roff = Traits::kTma ? static_cast<int>(e0 % Traits::kAlignElems) : 0;

  // Raw tiles are row-per-token without swizzle: the lanes that read them (prep and output)
  // touch consecutive bytes of one row or one byte of G different rows, both conflict-light.
  // copy: 16 or 8 bytes per cp.async, slots: copies per row (both std::integral_constant).
  auto load_rows = [&](auto copy, auto slots, const TensorView<const In, 3>& v, unsigned char* dst, int chunk0,
                       int64_t c0) {
    constexpr int kCopy = decltype(copy)::value, kSlots = decltype(slots)::value;
    for_thread_share<T * kSlots, kThreads, Traits::kUnrolledPrep>(tid, [&](int s) {
      const int t = s / kSlots, r = s % kSlots;
      const int tok = chunk0 + t;
      const bool live = tok < L;
      const In* src =
          live ? v.data + b * v.stride[0] + int64_t(tok) * v.stride[1] + c0 + r * (kCopy / Traits::kInBytes) : v.data;
      if constexpr (kCopy == 16) cp_async_16(dst + s * 16, src, live);
      else cp_async_8(dst + s * 8, src, live);
    });
  };
  auto load_chunk = [&](int stage, int chunk0) {
    unsigned char* base = smem + stage * kStage;
    if constexpr (Traits::kTma) {
      if (tid == 0) {
        constexpr uint32_t kBytes = (3 - (kFusedDt ? 1 : 0) - (kHasZ ? 0 : 1)) * Traits::kTileBytes + 2 * Traits::kBCBytes;
        const uint32_t bar = bar0 + 8u * static_cast<uint32_t>(stage);
        const uint32_t dst = gemm::ptx::smem_u32(base);
        const int ce = static_cast<int>(e0) - roff, cb = static_cast<int>(b);
        quamba::detail::mbar_arrive_expect_tx(bar, kBytes);
        quamba::detail::tma_load_3d(dst + Traits::kRawU, &maps.u, ce, chunk0, cb, bar);
        if constexpr (!kFusedDt) quamba::detail::tma_load_3d(dst + Traits::kRawD, &maps.delta, ce, chunk0, cb, bar);
        if constexpr (kHasZ) quamba::detail::tma_load_3d(dst + Traits::kRawZ, &maps.z, ce, chunk0, cb, bar);
        quamba::detail::tma_load_3d(dst + Traits::kRawB, &maps.Bm, 0, chunk0, cb, bar);
        quamba::detail::tma_load_3d(dst + Traits::kRawC, &maps.Cm, 0, chunk0, cb, bar);
      }
      return;
    }
    const std::integral_constant<int, kRowCopy> row_copy;
    const std::integral_constant<int, 16> bc_copy;
    const std::integral_constant<int, kRowSlots> row_slots;
    const std::integral_constant<int, kBCSlots> bc_slots;
    load_rows(row_copy, row_slots, p.u, base + Traits::kRawU, chunk0, e0);
    if constexpr (!kFusedDt) load_rows(row_copy, row_slots, p.delta, base + Traits::kRawD, chunk0, e0);
    if constexpr (kHasZ) load_rows(row_copy, row_slots, p.z, base + Traits::kRawZ, chunk0, e0);
    load_rows(bc_copy, bc_slots, p.Bm, base + Traits::kRawB, chunk0, 0);
    load_rows(bc_copy, bc_slots, p.Cm, base + Traits::kRawC, chunk0, 0);
  };
  // Fused dt_proj: the chunk's dt_x rows, dt_k bytes each, into the single dt_x tile whose rows
  // are dt_k rounded up to 32 bytes (one mma k-step); the pad slots are zero-filled (their
  // weights are zero too, see below, but the tile stays fully initialized).
  [[maybe_unused]] const int dt_k = kFusedDt ? static_cast<int>(dtx_cols(p)) : 0;
  [[maybe_unused]] const int dt_kp = (dt_k + 31) / 32 * 32;
  [[maybe_unused]] unsigned char* sX = smem + Traits::kSmemBytes - kShrink;
  auto load_dtx = [&](int chunk0) {
    if constexpr (kFusedDt) {
      const int slots = dt_kp / 16, live_slots = dt_k / 16;
      for (int s = tid; s < T * slots; s += kThreads) {
        const int t = s / slots, r = s % slots;
        const int tok = chunk0 + t;
        const bool live = tok < L && r < live_slots;
        const int8_t* src = live ? dtx_row(p, b, tok) + r * 16 : dtx_row(p, 0, 0);
        cp_async_16(sX + t * dt_kp + r * 16, src, live);
      }
    }
  };

  const int lane = tid & 31, warp = tid >> 5;
  constexpr int kShift = Traits::kPairLanes ? 1 : 0;
  // lane within the channel, and the channel within the warp (see kPairLanes)
  const int q = Traits::kPairLanes ? (lane >> 1) & (G - 1) : lane % G;
  const int cw = Traits::kPairLanes ? (lane & 1) | ((lane >> (log2_int(G) + 1)) << 1) : lane / G;
  const int chl = warp * Traits::kChannelsPerWarp + cw;  // block-local channel
  const int64_t e = e0 + chl;
  const float Dv = Io::d(p, e);
  const float su = Io::s_u(p), sdt = Io::s_delta(p), sz = Io::s_z(p), sB = Io::s_B(p), sC = Io::s_C(p);
  // Lane q owns states q, q + G, ...: one float4 read of B/C then covers G consecutive state rows,
  // which sit on distinct bank groups (row pitch ≡ 4 words mod 32).
  float a2[Q], st[Q];
#pragma unroll
  for (int j = 0; j < Q; ++j) {
    const int n = q + j * G;
    // Finite clamp: tail tokens use δ = 0, and 0·(-inf) would be NaN instead of decay 1.
    a2[j] = fmaxf(Io::a_log2(p, e * N + n), -3.402823466e38f);
  }

  // Prep work items keep their channel (state) group across iterations because kThreads is a
  // multiple of CH/4 (N/4), so the delta_bias loads happen once per thread, not per token.
  static_assert(kThreads % (CH / 4) == 0 && kThreads % (N / 4) == 0, "prep groups are thread-invariant");
  const int prep_c4 = tid % (CH / 4), prep_n4 = tid % (N / 4);
  // kLoadsFirst (with the unrolled prep): each thread's share of the conversion in rounds of
  // kThreads items, the last round partial where the item count is not a multiple (20 channels:
  // 160 threads, 512 B/C items); round r of a thread is live when item r·kThreads + tid exists.
  constexpr bool kLoadsFirst = Traits::kUnrolledPrep;
  constexpr int kBCItems = T * (N / 4), kDItems = T * (CH / 4);
  auto round_live = [&](int items, int r) { return (r + 1) * kThreads <= items || r * kThreads + tid < items; };
  float prep_bias[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) prep_bias[j] = Io::bias(p, e0 + 4 * prep_c4 + j);

  // pdl: the weights above are read before the wait; the states and activations after it.
  grid_dependency_wait();
#pragma unroll
  for (int j = 0; j < Q; ++j) st[j] = p.initial_state ? p.initial_state[(b * E + e) * N + q + j * G] : 0.f;

  // y tile of chunk c-1 -> global, 16-byte rows; called between barriers (see the loop). kTma:
  // thread 0 sends the tile as one bulk store (every thread fenced its y writes for the async
  // proxy before the barrier) and waits for it to have read the tile before the walk rewrites it.
  auto flush_y = [&](int chunk0) {
    if constexpr (Traits::kTmaY) {
      if (tid == 0) {
        quamba::detail::tma_store_3d(&maps.y, gemm::ptx::smem_u32(sY), static_cast<int>(e0), chunk0, static_cast<int>(b));
        quamba::detail::bulk_commit();
      }
      return;
    }
    constexpr int kYHalves = Traits::kYCopy / 2;
    for_thread_share<T * kYSlots, kThreads, Traits::kUnrolledPrep>(tid, [&](int s) {
      const int t = s / kYSlots, r = s % kYSlots;
      const int tok = chunk0 + t;
      if (tok < L) {
        __half* dst = p.y.data + b * p.y.stride[0] + int64_t(tok) * p.y.stride[1] + e0 + r * kYHalves;
        if constexpr (kYHalves == 8) *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(sY + s * 8);
        else *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(sY + s * 4);
      }
    });
  };

  // Two barriers per chunk. After the first, every thread is done with chunk c-1 (its raw stage,
  // fp32 tiles and y tile), so chunk c+1 may load into that stage and chunk c-1's y tile is
  // flushed while chunk c is converted; the second publishes the fp32 tiles. The y tile is
  // rewritten only after the second barrier, i.e. after every thread has flushed it (kTma: after
  // thread 0's bulk_wait_read before the second barrier).
  // δ and δ·u of (token t, block channel ch) from the raw δ and u values converted to float
  // (not yet scaled), the same expression for the loaded and the fused δ so both give the same bits.
  auto put_delta = [&](int t, int ch, float dq, float uq, float bias, bool live) {
    const float arg = dq * sdt + bias;
    const float sp = Traits::kOverlap ? softplus_select(arg) : softplus(arg);
    const float d = live ? sp : 0.f;  // δ = 0: identity past L
    sD[ch * PT + t] = d;
    sDU[ch * PT + t] = d * (uq * su);
  };

  const int nchunks = (L + T - 1) / T;
  if constexpr (Traits::kTma) {
    if (tid == 0) {
      quamba::detail::mbar_init(bar0, 1);
      quamba::detail::mbar_init(bar0 + 8, 1);
      quamba::detail::fence_mbarrier_init();
    }
    __syncthreads();
  }
  load_chunk(0, 0);
  load_dtx(0);
  cp_async_commit();
  for (int c = 0; c < nchunks; ++c) {
    const int chunk0 = c * T;
    cp_async_wait<0>();  // this thread's copies of chunk c (the only groups in flight)
    if constexpr (Traits::kTma) quamba::detail::mbar_wait(bar0 + 8u * static_cast<uint32_t>(c & 1), (c >> 1) & 1);
    __syncthreads();     // everyone's copies of chunk c visible; chunk c-1 fully consumed
    if (c + 1 < nchunks) {
      load_chunk((c + 1) & 1, chunk0 + T);  // lands during chunk c's compute
      cp_async_commit();
    }
    if (c > 0) flush_y(chunk0 - T);

    const unsigned char* stg = smem + (c & 1) * kStage;
    {
      const In* rawU = reinterpret_cast<const In*>(stg + Traits::kRawU) + roff;
      const In* rawB = reinterpret_cast<const In*>(stg + Traits::kRawB);
      const In* rawC = reinterpret_cast<const In*>(stg + Traits::kRawC);
      // kLoadsFirst: every raw word of this thread's share is loaded before the first fp32 tile
      // store (the compiler does not hoist a shared load above a shared store it cannot prove
      // disjoint, so the interleaved form waits out each load's latency).
      constexpr int kRB = kLoadsFirst ? (kBCItems + kThreads - 1) / kThreads : 1;
      [[maybe_unused]] Vec<In, 4> bq[kRB] = {}, cq[kRB] = {};
      if constexpr (kLoadsFirst) {
#pragma unroll
        for (int r = 0; r < kRB; ++r) {
          if (!round_live(kBCItems, r)) break;
          const int t = (r * kThreads + tid) / (N / 4);
          bq[r] = *reinterpret_cast<const Vec<In, 4>*>(rawB + t * N + 4 * prep_n4);
          cq[r] = *reinterpret_cast<const Vec<In, 4>*>(rawC + t * N + 4 * prep_n4);
        }
      }
      if constexpr (kFusedDt) {
        // δraw = q(dt_x · dt_weightᵀ · α) for the chunk's T tokens × CH channels: mma.sync
        // m16n8k32 int8 tiles (16 tokens × 8 channels) split over the warps. A fragments come from
        // the dt_x tile by ldmatrix, B fragments (4 bytes of one weight row each) from global
        // memory through L1 (the block's CH rows, dt_k bytes each, are read every chunk). Weight
        // columns past dt_k are taken as zero, so the tile's pad columns add nothing.
        constexpr int NT = CH / 8, kTiles = (T / 16) * NT;
        const int gid = lane >> 2, tig = lane & 3;
        const gemm::Requant rq{p.dt_alpha};
        for (int i = warp; i < kTiles; i += Traits::kWarps) {
          const int mt = i / NT, nt = i % NT;
          const int8_t* wrow = p.dt_weight + (e0 + nt * 8 + gid) * dt_k + 4 * tig;
          const uint32_t a_addr = gemm::ptx::smem_u32(sX + (mt * 16 + (lane & 15)) * dt_kp + (lane >> 4) * 16);
          int32_t acc[4] = {0, 0, 0, 0};
          for (int k0 = 0; k0 < dt_kp; k0 += 32) {
            uint32_t a[4];
            gemm::ptx::ldmatrix_x4(a, a_addr + k0);
            const uint32_t b0 = __ldg(reinterpret_cast<const unsigned*>(wrow + k0));
            const uint32_t b1 = k0 + 16 < dt_k ? __ldg(reinterpret_cast<const unsigned*>(wrow + k0 + 16)) : 0u;
            gemm::ptx::mma_s8_16832(acc, a, b0, b1);
          }
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int t = mt * 16 + gid + (r >> 1) * 8, ch = nt * 8 + 2 * tig + (r & 1);
            put_delta(t, ch, to_float(rq.apply(acc[r], 0, 0)), to_float(rawU[t * RP + ch]), Io::bias(p, e0 + ch),
                      chunk0 + t < L);
          }
        }
      } else {
        const In* rawD = reinterpret_cast<const In*>(stg + Traits::kRawD) + roff;
        // Four channels per thread (one 4- or 8-byte read per tile row); channel group fastest so
        // a warp reads consecutive words.
        auto convert = [&](int t, const Vec<In, 4>& uq, const Vec<In, 4>& dq) {
          float uf[4], df[4];
          to_float4(uq, uf);
          to_float4(dq, df);
          const bool live = chunk0 + t < L;
#pragma unroll
          for (int j = 0; j < 4; ++j) put_delta(t, 4 * prep_c4 + j, df[j], uf[j], prep_bias[j], live);
        };
        if constexpr (kLoadsFirst) {
          constexpr int kRD = (kDItems + kThreads - 1) / kThreads;
          Vec<In, 4> uq[kRD] = {}, dq[kRD] = {};
#pragma unroll
          for (int r = 0; r < kRD; ++r) {
            if (!round_live(kDItems, r)) break;
            const int t = (r * kThreads + tid) / (CH / 4);
            uq[r] = *reinterpret_cast<const Vec<In, 4>*>(rawU + t * RP + 4 * prep_c4);
            dq[r] = *reinterpret_cast<const Vec<In, 4>*>(rawD + t * RP + 4 * prep_c4);
          }
#pragma unroll
          for (int r = 0; r < kRD; ++r) {
            if (!round_live(kDItems, r)) break;
            convert((r * kThreads + tid) / (CH / 4), uq[r], dq[r]);
          }
        } else {
          for_thread_share<T * (CH / 4), kThreads, Traits::kUnrolledPrep>(tid, [&](int idx) {
            const int t = idx / (CH / 4);
            convert(t, *reinterpret_cast<const Vec<In, 4>*>(rawU + t * RP + 4 * prep_c4),
                    *reinterpret_cast<const Vec<In, 4>*>(rawD + t * RP + 4 * prep_c4));
          });
        }
      }
      auto put_bc = [&](int t, const Vec<In, 4>& b4, const Vec<In, 4>& c4) {
        float bf[4], cf[4];
        to_float4(b4, bf);
        to_float4(c4, cf);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          sBf[(4 * prep_n4 + j) * PT + t] = bf[j] * sB;
          sCf[(4 * prep_n4 + j) * PT + t] = cf[j] * sC;
        }
      };
      if constexpr (kLoadsFirst) {
#pragma unroll
        for (int r = 0; r < kRB; ++r) {
          if (!round_live(kBCItems, r)) break;
          put_bc((r * kThreads + tid) / (N / 4), bq[r], cq[r]);
        }
      } else {
        for_thread_share<T * (N / 4), kThreads, Traits::kUnrolledPrep>(tid, [&](int idx) {
          const int t = idx / (N / 4);
          put_bc(t, *reinterpret_cast<const Vec<In, 4>*>(rawB + t * N + 4 * prep_n4),
                 *reinterpret_cast<const Vec<In, 4>*>(rawC + t * N + 4 * prep_n4));
        });
      }
    }
    if (Traits::kTmaY && tid == 0) quamba::detail::bulk_wait_read<0>();  // y tile of chunk c-1 read
    __syncthreads();  // fp32 tiles ready; the dt_x tile is consumed
    if (kFusedDt && c + 1 < nchunks) {
      load_dtx(chunk0 + T);  // lands during chunk c's walk
      cp_async_commit();
    }

    const float* dRow = sD + chl * PT;
    const float* wRow = sDU + chl * PT;
    const In* rawU = reinterpret_cast<const In*>(stg + Traits::kRawU) + roff;
    const In* rawZ = reinterpret_cast<const In*>(stg + Traits::kRawZ) + roff;
    auto walk = [&](int g0, float (&v)[G]) { walk_group<G, Q, PT>(dRow, wRow, sBf, sCf, q, a2, st, g0, v); };
    // Reduce-scatter of a walked group and its gated output (returned).
    auto finish = [&](int g0, float (&v)[G]) {
      if constexpr (Traits::kSmemReduce) {
        float* red = reinterpret_cast<float*>(smem + Traits::kOffRed - kShrink) + chl * Traits::kRedChannel;
#pragma unroll
        for (int k = 0; k < G; k += 4)
          *reinterpret_cast<float4*>(red + q * Traits::kRedPitch + k) = make_float4(v[k], v[k + 1], v[k + 2], v[k + 3]);
        __syncwarp();  // a channel's lanes are all in this warp
        float sum = red[q];
#pragma unroll
        for (int r = 1; r < G; ++r) sum += red[r * Traits::kRedPitch + q];
        __syncwarp();  // column reads done before the next group overwrites the rows
        v[0] = sum;
      } else {
        reduce_scatter<G / 2, G, kShift>(v, q);  // lane q now holds token g0 + q
      }
      const int t = g0 + q;
      return gate_output<kHasZ, Traits::kOverlap>(v[0], rawU[t * RP + chl], kHasZ ? rawZ[t * RP + chl] : In{}, Dv,
                                                   su, sz);
    };
    auto store = [&](int g0, float out) { sY[(g0 + q) * CH + chl] = __float2half_rn(out); };
    if constexpr (Traits::kOverlap) {
      // Groups in pairs (the static_assert keeps T / G even): walk g+1 before finishing g.
      float va[G], vb[G];
      walk(0, va);
#pragma unroll Traits::kGroups
      for (int g0 = G; g0 < T; g0 += 2 * G) {
        walk(g0, vb);
        store(g0 - G, finish(g0 - G, va));
        if (g0 + G < T) walk(g0 + G, va);
        store(g0, finish(g0, vb));
      }
    } else {
#pragma unroll Traits::kGroups
      for (int g0 = 0; g0 < T; g0 += G) {
        float v[G];
        walk(g0, v);
        store(g0, finish(g0, v));
      }
    }
    if constexpr (Traits::kTmaY) quamba::detail::fence_proxy_async_smem();  // y tile -> the bulk store
  }
  __syncthreads();  // last y tile complete
  flush_y((nchunks - 1) * T);
  if (Traits::kTmaY && tid == 0) quamba::detail::bulk_wait<0>();
  if (p.final_state) {
    // Each lane wrote nothing else to final_state's rows; initial_state (possibly the same
    // buffer) was read by this same lane before the loop, so aliasing is safe.
#pragma unroll
    for (int j = 0; j < Q; ++j) p.final_state[(b * E + e) * N + q + j * G] = st[j];
  }
}

// Pipelined state-lane kernel (see PipedPrefillTraits). Per chunk c, after one barrier: issue
// chunk c+2's copies, flush chunk c-1's y tile, then per token group g: convert slice g of chunk
// c+1 (raw stage (c+1)%3 -> fp32 buffer (c+1)&1) and walk group g of chunk c (fp32 buffer c&1),
// reduce-scatter, write the outputs (raw u/z of stage c%3 -> y buffer c&1). The conversion of
// slice g and the walk of group g are independent, so the scheduler interleaves them.
template <class Traits, class Params, bool kHasZ>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks) prefill_piped_kernel(const Params p) {
  using Io = PrefillIo<Params>;
  using In = typename Io::In;
  static_assert(std::is_same<In, typename Traits::In>::value, "traits built for another input type");
  constexpr int G = Traits::kLanes, Q = Traits::kStatesPerLane, CH = Traits::kChannels, T = Traits::kChunk;
  constexpr int N = Traits::kDState, PC = Traits::kPitchC, PN = Traits::kPitchN, kThreads = Traits::kThreads;
  constexpr int kRowSlots = Traits::kRowSlots, kBCSlots = Traits::kBCSlots, kYSlots = Traits::kYSlots;
  constexpr int kRowCopy = Traits::kRowCopy, kStages = Traits::kStages;

  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t E = p.u.shape[2];
  const int L = static_cast<int>(p.u.shape[1]);
  const int64_t e0 = static_cast<int64_t>(blockIdx.x) * CH;

  auto stage = [&](int chunk) { return smem + (chunk % kStages) * Traits::kStageBytes; };
  auto fbuf = [&](int chunk) { return reinterpret_cast<float*>(smem + Traits::kOffF + (chunk & 1) * Traits::kFloatBytes); };
  auto ybuf = [&](int chunk) { return reinterpret_cast<__half*>(smem + Traits::kOffY + (chunk & 1) * Traits::kYBytes); };

  auto load_rows = [&](auto copy, const TensorView<const In, 3>& v, unsigned char* dst, int chunk0, int slots,
                       int64_t c0) {
    constexpr int kCopy = decltype(copy)::value;
    for (int s = tid; s < T * slots; s += kThreads) {
      const int t = s / slots, r = s % slots;
      const int tok = chunk0 + t;
      const bool live = tok < L;
      const In* src =
          live ? v.data + b * v.stride[0] + int64_t(tok) * v.stride[1] + c0 + r * (kCopy / Traits::kInBytes) : v.data;
      if constexpr (kCopy == 16) cp_async_16(dst + s * 16, src, live);
      else cp_async_8(dst + s * 8, src, live);
    }
  };
  auto load_chunk = [&](int chunk) {
    unsigned char* base = stage(chunk);
    const int chunk0 = chunk * T;
    const std::integral_constant<int, kRowCopy> row_copy;
    const std::integral_constant<int, 16> bc_copy;
    load_rows(row_copy, p.u, base, chunk0, kRowSlots, e0);
    load_rows(row_copy, p.delta, base + Traits::kTileBytes, chunk0, kRowSlots, e0);
    if constexpr (kHasZ) load_rows(row_copy, p.z, base + 2 * Traits::kTileBytes, chunk0, kRowSlots, e0);
    load_rows(bc_copy, p.Bm, base + 3 * Traits::kTileBytes, chunk0, kBCSlots, 0);
    load_rows(bc_copy, p.Cm, base + 3 * Traits::kTileBytes + Traits::kBCBytes, chunk0, kBCSlots, 0);
  };

  // Pair lanes: bit 0 of the lane is the low channel bit, bits 1..log2(G) the state group.
  const int lane = tid & 31, warp = tid >> 5;
  const int q = (lane >> 1) & (G - 1);
  const int cw = (lane & 1) | ((lane >> (log2_int(G) + 1)) << 1);
  const int chl = warp * Traits::kChannelsPerWarp + cw;
  const int64_t e = e0 + chl;
  const float Dv = Io::d(p, e), bias = Io::bias(p, e);
  const float su = Io::s_u(p), sdt = Io::s_delta(p), sz = Io::s_z(p), sB = Io::s_B(p), sC = Io::s_C(p);
  float a2[Q], st[Q];
  grid_dependency_wait();  // pdl: everything below may read what earlier kernels wrote
#pragma unroll
  for (int j = 0; j < Q; ++j) {
    const int n = q + j * G;
    a2[j] = fmaxf(Io::a_log2(p, e * N + n), -3.402823466e38f);  // finite: 0·(-inf) past L would be NaN
    st[j] = p.initial_state ? p.initial_state[(b * E + e) * N + n] : 0.f;
  }

  // Slice s of chunk cc: this thread's (token sG + q, channel chl), and B/C entries i = tid,
  // tid + kThreads, ... of the slice's G tokens × N states × {B, C}. Tokens past L get δ = 0
  // (decay 1, input 0), so the carried and final states are exact for any L. Offsets that do
  // not depend on the slice are formed once per chunk (ConvertBase), so a slice costs one
  // offset s·G·CH (raw) and s·G (fp32) on top of them.
  constexpr int kBCIters = (2 * G * N + kThreads - 1) / kThreads;
  struct ConvertBase {
    const In* raw;    // raw u of (token q, channel chl); δ at + kTileBytes/sizeof(In)
    float* f;         // δ of (token q, channel chl)
    const In* bc[kBCIters];
    float* fbc[kBCIters];
    int tok0;         // first token of the chunk + q
  };
  auto convert_base = [&](int cc) {
    ConvertBase cb;
    cb.raw = reinterpret_cast<const In*>(stage(cc)) + q * CH + chl;
    cb.f = fbuf(cc) + chl * PC + q;
    cb.tok0 = cc * T + q;
#pragma unroll
    for (int it = 0; it < kBCIters; ++it) {
      // Threads past the slice's 2GN entries redo entry 0 and skip the (predicated) store.
      const int i0 = it * kThreads + tid;
      const int i = i0 < 2 * G * N ? i0 : 0;
      // A warp stores 8 tokens of 4 states; states 2 apart (rows ≡ 8 words apart) fill 32 banks.
      const int j = (i / G) % N, n = 2 * (j % 4) + (j / 4) % 2 + 8 * (j / 8);
      const int tt = i % G, which = i / (G * N);
      cb.bc[it] = reinterpret_cast<const In*>(stage(cc) + 3 * Traits::kTileBytes + which * Traits::kBCBytes) + tt * N + n;
      cb.fbc[it] = fbuf(cc) + Traits::kOffB + which * N * PN + n * PN + tt;
    }
    return cb;
  };
  auto convert_slice = [&](const ConvertBase& cb, int s) {
    const float uf = to_float(cb.raw[s * G * CH]);
    const float dr = to_float(cb.raw[s * G * CH + Traits::kTileBytes / Traits::kInBytes]);
    // A multiply by 0/1 instead of a select keeps the compiler from branching around the softplus
    // (softplus_select is finite for every finite input, so past L this is exactly 0).
    const float d = __fmul_rn(softplus_select(dr * sdt + bias), cb.tok0 + s * G < L ? 1.f : 0.f);
    cb.f[s * G] = d;
    cb.f[Traits::kOffDU + s * G] = d * (uf * su);
#pragma unroll
    for (int it = 0; it < kBCIters; ++it) {
      const bool own = 2 * G * N % kThreads == 0 || it * kThreads + tid < 2 * G * N;
      const float val = to_float(cb.bc[it][s * G * N]) * (it * kThreads + tid >= G * N ? sC : sB);
      if (own) cb.fbc[it][s * G] = val;
    }
  };

  auto flush_y = [&](int chunk) {
    const __half* sY = ybuf(chunk);
    for (int s = tid; s < T * kYSlots; s += kThreads) {
      const int t = s / kYSlots, r = s % kYSlots;
      const int tok = chunk * T + t;
      if (tok < L) {
        __half* dst = p.y.data + b * p.y.stride[0] + int64_t(tok) * p.y.stride[1] + e0 + r * 8;
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(sY + s * 8);
      }
    }
  };

  const int nchunks = (L + T - 1) / T;
  load_chunk(0);
  cp_async_commit();
  if (nchunks > 1) load_chunk(1);
  cp_async_commit();
  cp_async_wait<1>();  // this thread's copies of chunk 0
  __syncthreads();
  {
    const ConvertBase cb = convert_base(0);
    for (int s = 0; s < Traits::kGroupsPerChunk; ++s) convert_slice(cb, s);
  }

  for (int c = 0; c < nchunks; ++c) {
    cp_async_wait<0>();  // this thread's copies of chunk c+1 (the only group in flight)
    // Publishes chunk c's fp32 tiles and chunk c+1's raw tiles; everyone is done with chunk c-1,
    // so its raw stage ((c+2)%3), fp32 buffer ((c+1)&1) and, after the flush, y buffer are free.
    __syncthreads();
    if (c + 2 < nchunks) load_chunk(c + 2);
    cp_async_commit();
    if (c > 0) flush_y(c - 1);

    const float* f = fbuf(c);
    const float* dRow = f + chl * PC;
    const float* wRow = f + Traits::kOffDU + chl * PC;
    const float* sBf = f + Traits::kOffB;
    const float* sCf = f + Traits::kOffC;
    // Output element of token q, channel chl; token g0 + q is + g0·CH.
    const In* rawU = reinterpret_cast<const In*>(stage(c)) + q * CH + chl;
    const In* rawZ = reinterpret_cast<const In*>(stage(c) + 2 * Traits::kTileBytes) + q * CH + chl;
    __half* sY = ybuf(c) + q * CH + chl;
    const ConvertBase cb = convert_base(c + 1);
    // Decays of group g (they do not depend on the state): a[j][t] = 2^(δ_t · A_n · log2 e).
    auto decays = [&](int g, float (&a)[Q][G]) {
#pragma unroll
      for (int k = 0; k < G; k += 4) {
        const float4 d4 = *reinterpret_cast<const float4*>(dRow + g * G + k);
        const float dd[4] = {d4.x, d4.y, d4.z, d4.w};
#pragma unroll
        for (int j = 0; j < Q; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) a[j][k + i] = ex2(dd[i] * a2[j]);
      }
    };
    // Walk group g with its decays a, reduce-scatter, write the outputs.
    auto walk = [&](int g, const float (&a)[Q][G]) {
      const int g0 = g * G;
      float v[G];
#pragma unroll
      for (int k = 0; k < G; k += 4) {
        const float4 w4 = *reinterpret_cast<const float4*>(wRow + g0 + k);
        const float ww[4] = {w4.x, w4.y, w4.z, w4.w};
#pragma unroll
        for (int j = 0; j < Q; ++j) {
          const int n = q + j * G;
          const float4 b4 = *reinterpret_cast<const float4*>(sBf + n * PN + g0 + k);
          const float4 c4 = *reinterpret_cast<const float4*>(sCf + n * PN + g0 + k);
          const float bb[4] = {b4.x, b4.y, b4.z, b4.w}, cc[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            st[j] = fmaf(a[j][k + i], st[j], ww[i] * bb[i]);
            v[k + i] = j == 0 ? st[j] * cc[i] : fmaf(st[j], cc[i], v[k + i]);
          }
        }
      }
      reduce_scatter<G / 2, G, 1>(v, q);  // lane q now holds token g0 + q
      float out = v[0] + Dv * (to_float(rawU[g0 * CH]) * su);
      if constexpr (kHasZ) out *= silu_ftz(to_float(rawZ[g0 * CH]) * sz);
      sY[g0 * CH] = __float2half_rn(out);
    };
    if constexpr (Traits::kPipe) {
      // Software pipeline: group g+1's decays are issued before group g's walk, so the walk's
      // state chain never waits on the special-function unit, and its shuffle and output
      // latencies overlap the next group's exponentials. Two register sets (ping-pong, no
      // copies); the last pair is peeled so no iteration computes decays nobody uses.
      // (Every loop body stays one basic block; convert_slice is unconditional, see below.)
      float aX[Q][G], aY[Q][G];
      decays(0, aX);
#pragma unroll 1
      for (int g = 0; g < Traits::kGroupsPerChunk - 2; g += 2) {
        convert_slice(cb, g);
        decays(g + 1, aY);
        walk(g, aX);
        convert_slice(cb, g + 1);
        decays(g + 2, aX);
        walk(g + 1, aY);
      }
      constexpr int gl = Traits::kGroupsPerChunk - 2;
      convert_slice(cb, gl);
      decays(gl + 1, aY);
      walk(gl, aX);
      convert_slice(cb, gl + 1);
      walk(gl + 1, aY);
    } else {
#pragma unroll Traits::kUnroll
      for (int g = 0; g < Traits::kGroupsPerChunk; ++g) {
        // Unconditional: after the last chunk it converts stale bytes into a buffer nobody
        // reads, which keeps the loop body one basic block for the scheduler to interleave.
        convert_slice(cb, g);
        float a[Q][G];
        decays(g, a);
        walk(g, a);
      }
    }
  }
  __syncthreads();  // last y tile complete
  flush_y(nchunks - 1);
  if (p.final_state) {
    // initial_state (possibly the same buffer) was read by this same lane before the loop.
#pragma unroll
    for (int j = 0; j < Q; ++j) p.final_state[(b * E + e) * N + q + j * G] = st[j];
  }
}

template <class T3>
bool view_aligned16(const T3& v) {
  using Elem = typename std::remove_pointer<decltype(v.data)>::type;
  constexpr int64_t kPerSlot = 16 / static_cast<int64_t>(sizeof(Elem));
  return is_aligned(v.data, 16) && v.stride[0] % kPerSlot == 0 && v.stride[1] % kPerSlot == 0;
}

template <class T3>
bool view_shape(const T3& v, int64_t B, int64_t L, int64_t C) {
  return v.data != nullptr && v.shape[0] == B && v.shape[1] == L && v.shape[2] == C && v.stride[2] == 1 &&
         v.stride[0] >= 0 && v.stride[1] >= 0;
}

// The fused dt_proj's inputs (PrefillParamsI8 with dt_weight set).
inline Status check_fused_dt(const PrefillParamsI8& p, int64_t B, int64_t L) {
  const int64_t dt_k = p.dt_x.shape[2];
  if (!p.dt_x.data || !view_shape(p.dt_x, B, L, dt_k) || dt_k <= 0 || !std::isfinite(p.dt_alpha))
    return Status::kErrorInvalidArgument;
  if (dt_k % 16 != 0 || dt_k > kMaxFusedDtK) return Status::kErrorNotSupported;
  if (!view_aligned16(p.dt_x) || !is_aligned(p.dt_weight, 16)) return Status::kErrorMisaligned;
  return Status::kSuccess;
}
inline Status check_fused_dt(const PrefillParamsF16&, int64_t, int64_t) { return Status::kSuccess; }

template <class Params>
Status check_prefill(const Params& p) {
  const bool fused = fused_dt(p);
  if (!p.u.data || (!fused && !p.delta.data) || !p.Bm.data || !p.Cm.data || !p.y.data ||
      !PrefillIo<Params>::weights(p))
    return Status::kErrorInvalidArgument;
  const int64_t B = p.u.shape[0], L = p.u.shape[1], E = p.u.shape[2], N = p.Bm.shape[2];
  if (B <= 0 || L <= 0 || E <= 0 || N <= 0) return Status::kErrorInvalidArgument;
  if (!view_shape(p.u, B, L, E) || (!fused && !view_shape(p.delta, B, L, E)) || !view_shape(p.Bm, B, L, N) ||
      !view_shape(p.Cm, B, L, N) || !view_shape(p.y, B, L, E) || (p.z.data && !view_shape(p.z, B, L, E)))
    return Status::kErrorInvalidArgument;
  if (fused) QUAMBA_RETURN_IF_ERROR(check_fused_dt(p, B, L));
  if (N != 16 && N != 32 && N != 64) return Status::kErrorNotSupported;
  if (E % 16 != 0 || B > 65535 || E / 16 > 0x7fffffff || L > 0x7fffffff - 256) return Status::kErrorNotSupported;
  if (!view_aligned16(p.u) || (!fused && !view_aligned16(p.delta)) || !view_aligned16(p.Bm) ||
      !view_aligned16(p.Cm) || !view_aligned16(p.y) || (p.z.data && !view_aligned16(p.z)))
    return Status::kErrorMisaligned;
  return Status::kSuccess;
}

// Tensor map of a (B, L, C) view for boxes of `box_c` channels x `box_t` tokens of one sequence.
template <class T3>
Status make_view_map(CUtensorMap* map, const T3& v, uint32_t box_c, uint32_t box_t) {
  using Elem = std::remove_const_t<std::remove_pointer_t<decltype(v.data)>>;
  constexpr uint64_t kEs = sizeof(Elem);
  const CUtensorMapDataType type = kEs == 1 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const uint64_t rows = static_cast<uint64_t>(v.stride[1]) * kEs;
  // A single sequence's batch stride is never used; give the map a valid one.
  const uint64_t planes = v.shape[0] > 1 ? static_cast<uint64_t>(v.stride[0]) * kEs : rows * static_cast<uint64_t>(v.shape[1]);
  const uint64_t dims[3] = {static_cast<uint64_t>(v.shape[2]), static_cast<uint64_t>(v.shape[1]),
                            static_cast<uint64_t>(v.shape[0])};
  const uint64_t strides[2] = {rows, planes};
  const uint32_t box[3] = {box_c, box_t, 1u};
  return quamba::detail::make_tensor_map_3d(map, type, v.data, dims, strides, box);
}

// The bulk-copy form's maps (LanePrefillTraits::kTma); kErrorNotSupported where the driver
// refuses one (the caller then takes the copy-loop form).
template <class Traits, class Params>
Status make_prefill_maps(const Params& p, PrefillMaps* m) {
  // u/δ/z boxes are whole raw tile rows (kRowPitch channels, past E zero-filled); the y map only
  // where the y tile leaves as a tensor store (kTmaY).
  constexpr uint32_t kC = Traits::kChannels, kRow = Traits::kRowPitch, kT = Traits::kChunk, kN = Traits::kDState;
  const bool ok = make_view_map(&m->u, p.u, kRow, kT) == Status::kSuccess &&
                  (fused_dt(p) || make_view_map(&m->delta, p.delta, kRow, kT) == Status::kSuccess) &&
                  (!p.z.data || make_view_map(&m->z, p.z, kRow, kT) == Status::kSuccess) &&
                  make_view_map(&m->Bm, p.Bm, kN, kT) == Status::kSuccess &&
                  make_view_map(&m->Cm, p.Cm, kN, kT) == Status::kSuccess &&
                  (!Traits::kTmaY || make_view_map(&m->y, p.y, kC, kT) == Status::kSuccess);
  return ok ? Status::kSuccess : Status::kErrorNotSupported;
}

// Dynamic shared memory of a launch (dt_k > 0: the fused dt_proj, state-lane kernels only).
template <class Traits>
size_t prefill_smem(int64_t dt_k) {
  if constexpr (Traits::kKernel == 1) return Traits::smem_bytes(dt_k);
  else return Traits::kSmemBytes;
}

}  // namespace detail

// ---- Launch ----------------------------------------------------------------------------------

// Launches one explicit Traits variant (benchmarks name variants this way). Assumes
// can_implement(p) succeeded and p.Bm.shape[2] == Traits::kDState. The bulk-copy form
// (LanePrefillTraits::kTma) returns kErrorArchNotSupported where the device or the loaded kernel
// image is below sm_90, kErrorNotSupported where a tensor map cannot describe a view.
// The fused dt_proj (PrefillParamsI8::dt_weight) runs only in the state-lane kernel
// (LanePrefillTraits with kFusedDtOk); other variants return kErrorNotSupported for it.
template <class Traits, class Params>
Status launch_prefill(const Params& p, cudaStream_t stream) {
  if (p.Bm.shape[2] != Traits::kDState || p.u.shape[2] % Traits::kChannels != 0) return Status::kErrorNotSupported;
  const bool fused = detail::fused_dt(p);
  if constexpr (Traits::kKernel == 1) {
    if (fused && !Traits::kFusedDtOk) return Status::kErrorNotSupported;
  } else {
    if (fused) return Status::kErrorNotSupported;
  }
  const dim3 grid(static_cast<unsigned>(p.u.shape[2] / Traits::kChannels), static_cast<unsigned>(p.u.shape[0]));
  return dispatch_bool(p.z.data != nullptr, [&](auto has_z) {
    return dispatch_bool(fused, [&](auto fused_dt) -> Status {
      constexpr bool kHasZ = decltype(has_z)::value, kFused = decltype(fused_dt)::value;
      size_t smem = Traits::kSmemBytes, smem_cap = Traits::kSmemBytes;
      auto kernel = [] {
        if constexpr (Traits::kKernel == 2) return detail::prefill_piped_kernel<Traits, Params, kHasZ>;
        else if constexpr (Traits::kKernel == 1) {
          if constexpr (kFused && Traits::kFusedDtOk) return detail::prefill_lanes_kernel<Traits, Params, kHasZ, true>;
          else return detail::prefill_lanes_kernel<Traits, Params, kHasZ, false>;
        } else return detail::prefill_kernel<Traits, Params, kHasZ>;
      }();
      if constexpr (kFused) {
        smem = detail::prefill_smem<Traits>(detail::dtx_cols(p));
        smem_cap = detail::prefill_smem<Traits>(kMaxFusedDtK);
      }
      // The opt-in above 48 KB is per device and per kernel; remembering it keeps a host call
      // off every launch (it would show up as launch overhead at small L). The fused form opts in
      // to its largest dt_k once; a device whose limit is below that is asked for `smem` itself.
      static std::atomic<unsigned long long> opted_in{0};
      int dev = 0;
      QUAMBA_RETURN_IF_CUDA_ERROR(cudaGetDevice(&dev));
      const unsigned long long bit = dev < 64 ? (1ull << dev) : 0ull;
      if (smem > 48 * 1024 && (bit == 0 || !(opted_in.load(std::memory_order_relaxed) & bit))) {
        // The blocks per SM are sized to the whole shared memory (3 × 73 KB for the fused default
        // on sm_90): ask for the largest carveout, a smaller one would hold a block fewer.
        QUAMBA_RETURN_IF_CUDA_ERROR(
            cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
        if (opt_in_smem(kernel, smem_cap) == Status::kSuccess) {
          opted_in.fetch_or(bit, std::memory_order_relaxed);
        } else {
          QUAMBA_RETURN_IF_ERROR(opt_in_smem(kernel, smem));
        }
      }
      if constexpr (Traits::kKernel == 1) {
        PrefillMapsFor<Traits::kTma> maps{};
        if constexpr (Traits::kTma) {
          static quamba::detail::Sm90ImageCache image;
          if (!image.get(kernel)) return Status::kErrorArchNotSupported;
          QUAMBA_RETURN_IF_ERROR(detail::make_prefill_maps<Traits>(p, &maps));
        }
        return launch_kernel(kernel, grid, dim3(Traits::kThreads), smem, stream, p.pdl, p, maps);
      } else {
        return launch_kernel(kernel, grid, dim3(Traits::kThreads), smem, stream, p.pdl, p);
      }
    });
  });
}

// ---- API -------------------------------------------------------------------------------------

inline Status can_implement(const PrefillParamsI8& p) { return detail::check_prefill(p); }
inline Status can_implement(const PrefillParamsF16& p) { return detail::check_prefill(p); }
inline size_t workspace_size(const PrefillParamsI8&) { return 0; }
inline size_t workspace_size(const PrefillParamsF16&) { return 0; }

namespace detail {

// Waves of a state-lane launch for p: blocks over (SMs x blocks per SM); 0 where unknown.
template <class Traits, class Params>
int64_t prefill_waves(const Params& p) {
  static ResidentCache cache;  // one per variant
  Residency r;
  if (cache.get(prefill_lanes_kernel<Traits, Params, true, false>, Traits::kThreads, Traits::kSmemBytes, &r) !=
      Status::kSuccess)
    return 0;
  const int64_t blocks = p.u.shape[2] / Traits::kChannels * p.u.shape[0];
  return (blocks + r.total() - 1) / r.total();
}

// True where the wider variant takes fewer waves than the default for p (see WidePrefillTmaTraits).
template <class Wide, class Narrow, class Params>
bool wide_block_pays(const Params& p) {
  if (fused_dt(p) || p.u.shape[2] % Wide::kChannels != 0) return false;
  const int64_t wide = prefill_waves<Wide>(p), narrow = prefill_waves<Narrow>(p);
  return wide > 0 && narrow > 0 && wide < narrow;
}

inline bool falls_back(Status s) { return s == Status::kErrorArchNotSupported || s == Status::kErrorNotSupported; }

}  // namespace detail

template <class Params>
Status run_prefill(const Params& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(detail::check_prefill(p));
  using In = typename detail::PrefillIo<Params>::In;
  return dispatch_int<16, 32, 64>(static_cast<int>(p.Bm.shape[2]), [&](auto n) {
    constexpr int kN = decltype(n)::value;
    using Tma = typename DefaultPrefillTmaTraits<kN, In>::type;
    using Wide = typename WidePrefillTmaTraits<kN, In>::type;
    if constexpr (!std::is_void_v<Tma>) {
      if constexpr (!std::is_void_v<Wide>) {
        if (detail::wide_block_pays<Wide, Tma>(p)) {
          const Status s = launch_prefill<Wide>(p, stream);
          if (!detail::falls_back(s)) return s;
        }
      }
      const Status s = launch_prefill<Tma>(p, stream);
      if (!detail::falls_back(s)) return s;
    }
    return launch_prefill<typename DefaultPrefillTraits<kN, In>::type>(p, stream);
  });
}

inline Status run(const PrefillParamsI8& p, void* /*workspace*/, cudaStream_t stream) { return run_prefill(p, stream); }
inline Status run(const PrefillParamsF16& p, void* /*workspace*/, cudaStream_t stream) { return run_prefill(p, stream); }

}  // namespace quamba::scan
