// quamba/scan/segmented_scan.cuh: the prefill selective scan split along the sequence (two passes).
//
// Same problem, params, shapes, dtypes and outputs as selective_scan.cuh (PrefillParamsI8 /
// PrefillParamsF16: u, δ, z (B, L, E), Bm, Cm (B, L, N), y (B, L, E) fp16, optional
// initial_state / final_state (B, E, N) fp32, final_state may alias initial_state), same
// requirements (N ∈ {16, 32, 64}, E a multiple of 16 and of the variant's channels per block,
// 16-byte alignment), plus a workspace of fp32 floats:
//   workspace (2, B, S-1, E, N) fp32: per segment but the last, its end state and the log2 of
//   its total decay (A·log2(e)·Σδ over the segment); 0 bytes when S = 1. 16-byte aligned.
// S (segments) and the segment length (a multiple of the chunk) follow from B, L and E only
// (segment_plan), so workspace_size is a pure host function.
//
// Why: the one-pass kernel (prefill_lanes_kernel) has only E·N/(32·kStatesPerLane) warps, about 3
// per scheduler at E = 5120, N = 16, and each warp's own per-token chain sets the time: MUFU at
// ~30% of its limit, issue ~50% (bench/RESULTS.md). Splitting L into S segments gives S times the
// warps at the price of a second walk over the tokens of the middle segments:
//   pass 1 (grid z = S-1): segment 0 runs the full scan from initial_state (y and its end state);
//     segments 1..S-2 run only the state recurrence from h = 0 (per (token, state): FMUL δ·A,
//     ex2, FMUL δu·B, FFMA; no C, no reduce, no output) and record the end state and log2 of
//     the segment's decay, A·log2e·Σδ (one FADD per token instead of one FMUL per item).
//   pass 2 (grid z = S-1): segment s ≥ 1 combines its true entry state sequentially over the
//     s-1 recorded segments (h = 2^ld_k·h + h_k) and runs the full scan from it; the last
//     segment writes final_state.
// Segment 0's full scan in pass 1 saves its rerun, and segment 0 is about half as long as the
// others (kShortFirst: its full scan then ends with the state-only walks beside it): decay exps
// are (2S-2.5)/(S-0.5)·L·E·N in all, 1.4x at S = 3, and the state-only walk costs ~5 issue
// slots per item against ~11 for the full one. initial_state is read only in pass 1 and
// final_state written only in pass 2 (stream order), so they may alias.
// Numerics: a segment's entry state is P·h + h_local instead of the sequential recurrence, where
// P = 2^(A·log2e·Σδ) stands for the product of the segment's per-token decays. Both are fp32
// approximations of exp(A·Σδ): P's exponent carries the rounding of Σδ (≤ Ls·2^-24 relative,
// ~sqrt(Ls)·2^-24 typical; it matters only while |A·Σδ| is small, i.e. P is not negligible) plus
// one ex2.approx (2^-22), the product ~Ls·2^-22; h_local sums the same terms in another order.
// Both stay orders of magnitude inside kTolScan (rtol 2e-3), the sequential kernel's tolerance.
// A decay that flushes to 0 per token (ftz) makes A·Σδ < -126 as well, so P is 0 there too.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/scan/scan_common.cuh"
#include "quamba/scan/selective_scan.cuh"

namespace quamba::scan {

// Segmented variant on top of a state-lane tiling (LanePrefillTraits, shuffle reduce). The plan
// aims at kTargetBlocks blocks per pass (B·E/kChannels per segment), with segments of at least
// kMinSegmentChunks chunks and at most kMaxSegments segments. kShortFirst: segment 0 gets about
// half the tokens of the others. Its full scan runs in pass 1 beside the state-only walks of
// segments 1..S-2, which cost about half as much per token, so both end together and pass 1's
// critical path is ~L/(2S-1) full-scan tokens instead of L/S.
template <class Lane, int kTargetBlocks_, int kMinSegmentChunks_ = 2, int kMaxSegments_ = 64, bool kShortFirst_ = true>
struct SegmentedPrefillTraits : Lane {
  using LaneTraits = Lane;
  static constexpr int kKernel = 3;  // prefill_segmented_kernel (launch_prefill does not take it)
  static constexpr bool kSegmented = true;
  static constexpr int kTargetBlocks = kTargetBlocks_;
  static constexpr int kMinSegmentChunks = kMinSegmentChunks_;
  static constexpr int kMaxSegments = kMaxSegments_;
  static constexpr bool kShortFirst = kShortFirst_;
  static_assert(Lane::kKernel == 1 && Lane::kStateLanes, "built on the state-lane kernel's traits");
  static_assert(!Lane::kSmemReduce, "the segmented kernel reduces by shuffles only");
  static_assert(!Lane::kOverlap, "the segmented kernel walks groups in the plain loop");
  static_assert(!Lane::kTma && Lane::kYCopy == 16, "the segmented kernel copies 16-byte u/δ/z and y rows");
  static_assert(kTargetBlocks >= 1 && kMinSegmentChunks >= 1 && kMaxSegments >= 1 && kMaxSegments <= 65535,
                "plan bounds (grid z ≤ 65535)");
};

// Default segmented variants per state size. More warps per SM is the point, so the tilings are
// the small-footprint ones. N = 16: 64-token chunks (29 KB smem) and ≤ 96 registers (no spill;
// 80 for 6 blocks spills), so 5 blocks (20 warps) per SM against 3 of the 128-token one-pass
// default, and kTargetBlocks = 132·5: at B·E = 5120 (320 blocks per segment) S = 3 and each pass
// is 640 resident blocks, one wave. N = 32 / 64 (256 threads): tilings without spills, planned
// for 2 and 1 blocks per SM; fp16 inputs with N = 16 at 4 blocks per SM (at 5 the fp16
// conversion spills). Measured (H100, int8, E = 5120, L = 2048 / 8192, bench/RESULTS.md runs H
// and K): 140 / 527–530 µs, against the one-pass default's 134 / 513 then and 117 / 448 now;
// at E = 1536, L = 2048 it is the faster one (62.6 against 68.2 µs).
template <int N, typename In>
struct DefaultSegmentedTraits;
template <typename In>
struct DefaultSegmentedTraits<16, In> {
  using type = SegmentedPrefillTraits<LanePrefillTraits<16, 2, 64, 16, 4, In, 2, false, true>, 528>;
};
template <>
struct DefaultSegmentedTraits<16, int8_t> {
  using type = SegmentedPrefillTraits<LanePrefillTraits<16, 2, 64, 16, 5, int8_t, 2, false, true>, 660>;
};
template <typename In>
struct DefaultSegmentedTraits<32, In> {
  using type = SegmentedPrefillTraits<LanePrefillTraits<32, 2, 64, 16, 2, In>, 264>;
};
template <typename In>
struct DefaultSegmentedTraits<64, In> {
  using type = SegmentedPrefillTraits<LanePrefillTraits<64, 4, 64, 16, 1, In>, 132>;
};

struct SegmentPlan {
  int segments = 1;   // S
  int first_len = 0;  // tokens of segment 0, a multiple of the chunk (≥ L when S = 1)
  int seg_len = 0;    // tokens of segments 1..S-1 (the last may be shorter), a multiple of the chunk
};

// Host only (no device query): the plan depends on B, L, E and the traits.
template <class Traits, class Params>
SegmentPlan segment_plan(const Params& p) {
  const int64_t B = p.u.shape[0], L = p.u.shape[1], E = p.u.shape[2];
  const int64_t chunks = (L + Traits::kChunk - 1) / Traits::kChunk;
  const int64_t per_seg = std::max<int64_t>(1, B * (E / Traits::kChannels));
  // Each pass launches S-1 segments: as many as fit in kTargetBlocks (one wave when that is the
  // device's resident-block count). S = 2 would run two full scans of L/2 one after the other
  // at the one-pass concurrency, so the choice is S = 1 or S ≥ 3.
  int64_t s = Traits::kTargetBlocks / per_seg + 1;
  s = std::min<int64_t>(s, std::max<int64_t>(1, chunks / Traits::kMinSegmentChunks));
  s = std::max<int64_t>(1, std::min<int64_t>(s, Traits::kMaxSegments));
  // Chunks per segment: equal, or segment 0 with ~half (c0 + (s-1)·cps ≈ (s-1/2)·cps = chunks).
  const int64_t cps = Traits::kShortFirst ? (2 * chunks + 2 * s - 2) / (2 * s - 1) : (chunks + s - 1) / s;
  const int64_t c0 = Traits::kShortFirst ? std::max<int64_t>(1, chunks - (s - 1) * cps) : cps;
  SegmentPlan plan;
  const int64_t segments = c0 >= chunks ? 1 : 1 + (chunks - c0 + cps - 1) / cps;  // no empty segment
  if (segments < 3) {
    plan.segments = 1;
    plan.first_len = plan.seg_len = static_cast<int>(chunks * Traits::kChunk);
  } else {
    plan.segments = static_cast<int>(segments);
    plan.first_len = static_cast<int>(c0 * Traits::kChunk);
    plan.seg_len = static_cast<int>(cps * Traits::kChunk);
  }
  return plan;
}

template <class Traits, class Params>
size_t segmented_workspace_bytes(const Params& p) {
  if (p.u.shape[0] <= 0 || p.u.shape[1] <= 0 || p.u.shape[2] <= 0 || p.Bm.shape[2] <= 0) return 0;
  const SegmentPlan plan = segment_plan<Traits>(p);
  return size_t(2) * size_t(p.u.shape[0]) * size_t(plan.segments - 1) * size_t(p.u.shape[2]) *
         size_t(p.Bm.shape[2]) * sizeof(float);
}

namespace detail {

struct SegmentArgs {
  float* ws_state = nullptr;  // (B, S-1, E, N) end state of segments 0..S-2
  float* ws_decay = nullptr;  // (B, S-1, E, N) log2 of the total decay of segments 1..S-2
  int first_len = 0;          // tokens of segment 0
  int seg_len = 0;            // tokens of the other segments
  int segments = 1;           // S
  int seg_base = 0;           // segment of blockIdx.z = 0
  int pass = 0;               // 0: the only segment; 1: segment 0 full + 1..S-2 state only; 2: 1..S-1
};

// One block: kChannels channels × one segment. kFull: the full scan (y, and the state carried
// out); else the state recurrence only. The chunk pipeline is that of prefill_lanes_kernel (two
// barriers per chunk, raw tiles double buffered, one block-wide fp32 conversion per chunk);
// token positions are absolute, and positions at or past the segment's end load as zeros and
// get δ = 0 (decay 1, input 0), so only the last segment has a tail.
template <class Traits, class Params, bool kHasZ, bool kFull>
QUAMBA_DEVICE void segmented_body(const Params& p, const SegmentArgs& sa, int seg) {
  using Io = PrefillIo<Params>;
  using In = typename Io::In;
  constexpr int G = Traits::kLanes, Q = Traits::kStatesPerLane, CH = Traits::kChannels, T = Traits::kChunk;
  constexpr int N = Traits::kDState, PT = Traits::kPitch, kThreads = Traits::kThreads;
  constexpr int kRowSlots = Traits::kRowSlots, kBCSlots = Traits::kBCSlots, kYSlots = Traits::kYSlots;
  constexpr int kRowCopy = Traits::kRowCopy;

  extern __shared__ __align__(128) unsigned char smem[];
  float* sD = reinterpret_cast<float*>(smem + Traits::kOffDelta);
  float* sDU = reinterpret_cast<float*>(smem + Traits::kOffDU);
  float* sBf = reinterpret_cast<float*>(smem + Traits::kOffBf);
  float* sCf = reinterpret_cast<float*>(smem + Traits::kOffCf);
  __half* sY = reinterpret_cast<__half*>(smem + Traits::kOffY);

  const int tid = threadIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t E = p.u.shape[2];
  const int L = static_cast<int>(p.u.shape[1]);
  const int64_t e0 = static_cast<int64_t>(blockIdx.x) * CH;
  // seg_begin < L: the plan has no empty segment.
  const int seg_begin = seg == 0 ? 0 : sa.first_len + (seg - 1) * sa.seg_len;
  const int seg_end = seg_begin + min(seg == 0 ? sa.first_len : sa.seg_len, L - seg_begin);

  auto load_rows = [&](auto copy, const TensorView<const In, 3>& v, unsigned char* dst, int chunk0, int slots,
                       int64_t c0) {
    constexpr int kCopy = decltype(copy)::value;
    for (int s = tid; s < T * slots; s += kThreads) {
      const int t = s / slots, r = s % slots;
      const int tok = chunk0 + t;
      const bool live = tok < seg_end;
      const In* src =
          live ? v.data + b * v.stride[0] + int64_t(tok) * v.stride[1] + c0 + r * (kCopy / Traits::kInBytes) : v.data;
      if constexpr (kCopy == 16) cp_async_16(dst + s * 16, src, live);
      else cp_async_8(dst + s * 8, src, live);
    }
  };
  // The state-only walk reads neither z nor C: their copies are skipped.
  auto load_chunk = [&](int stage, int chunk0) {
    unsigned char* base = smem + stage * Traits::kStageBytes;
    const std::integral_constant<int, kRowCopy> row_copy;
    const std::integral_constant<int, 16> bc_copy;
    load_rows(row_copy, p.u, base + Traits::kRawU, chunk0, kRowSlots, e0);
    load_rows(row_copy, p.delta, base + Traits::kRawD, chunk0, kRowSlots, e0);
    if constexpr (kHasZ && kFull) load_rows(row_copy, p.z, base + Traits::kRawZ, chunk0, kRowSlots, e0);
    load_rows(bc_copy, p.Bm, base + Traits::kRawB, chunk0, kBCSlots, 0);
    if constexpr (kFull) load_rows(bc_copy, p.Cm, base + Traits::kRawC, chunk0, kBCSlots, 0);
  };

  const int lane = tid & 31, warp = tid >> 5;
  constexpr int kShift = Traits::kPairLanes ? 1 : 0;
  const int q = Traits::kPairLanes ? (lane >> 1) & (G - 1) : lane % G;
  const int cw = Traits::kPairLanes ? (lane & 1) | ((lane >> (log2_int(G) + 1)) << 1) : lane / G;
  const int chl = warp * Traits::kChannelsPerWarp + cw;
  const int64_t e = e0 + chl;
  const float Dv = Io::d(p, e);
  const float su = Io::s_u(p), sdt = Io::s_delta(p), sz = Io::s_z(p), sB = Io::s_B(p), sC = Io::s_C(p);
  // Workspace row of (segment k, this lane's channel, state n): ((b·(S-1) + k)·E + e)·N + n.
  auto ws_row = [&](int k, int n) { return ((b * (sa.segments - 1) + k) * E + e) * N + n; };

  float a2[Q], st[Q];
#pragma unroll
  for (int j = 0; j < Q; ++j) {
    const int n = q + j * G;
    // Finite clamp: tail tokens use δ = 0, and 0·(-inf) would be NaN instead of decay 1.
    a2[j] = fmaxf(Io::a_log2(p, e * N + n), -3.402823466e38f);
    if (sa.pass == 2) {
      // Entry state: segment 0's end state carried through segments 1..seg-1 (their decay and
      // end state from h = 0). Sequential over at most kMaxSegments-2 pairs; the loads do not
      // depend on the chain, so they are in flight together.
      float h = sa.ws_state[ws_row(0, n)];
#pragma unroll 4
      for (int k = 1; k < seg; ++k) h = fmaf(ex2(sa.ws_decay[ws_row(k, n)]), h, sa.ws_state[ws_row(k, n)]);
      st[j] = h;
    } else {
      st[j] = seg == 0 && p.initial_state ? p.initial_state[(b * E + e) * N + n] : 0.f;
    }
  }

  static_assert(kThreads % (CH / 4) == 0 && kThreads % (N / 4) == 0, "prep groups are thread-invariant");
  const int prep_c4 = tid % (CH / 4), prep_n4 = tid % (N / 4);
  float prep_bias[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) prep_bias[j] = Io::bias(p, e0 + 4 * prep_c4 + j);

  auto flush_y = [&](int chunk0) {
    for (int s = tid; s < T * kYSlots; s += kThreads) {
      const int t = s / kYSlots, r = s % kYSlots;
      const int tok = chunk0 + t;
      if (tok < seg_end) {
        __half* dst = p.y.data + b * p.y.stride[0] + int64_t(tok) * p.y.stride[1] + e0 + r * 8;
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(sY + s * 8);
      }
    }
  };

  [[maybe_unused]] float dsum = 0.f;  // Σδ over the segment (state-only walk); every lane of a channel sums alike
  const int nchunks = (seg_end - seg_begin + T - 1) / T;
  load_chunk(0, seg_begin);
  cp_async_commit();
  for (int c = 0; c < nchunks; ++c) {
    const int chunk0 = seg_begin + c * T;
    cp_async_wait<0>();  // this thread's copies of chunk c (the only group in flight)
    __syncthreads();     // everyone's copies of chunk c visible; chunk c-1 fully consumed
    if (c + 1 < nchunks) {
      load_chunk((c + 1) & 1, chunk0 + T);  // lands during chunk c's compute
      cp_async_commit();
    }
    if constexpr (kFull) {
      if (c > 0) flush_y(chunk0 - T);
    }

    const unsigned char* stg = smem + (c & 1) * Traits::kStageBytes;
    {
      const In* rawU = reinterpret_cast<const In*>(stg + Traits::kRawU);
      const In* rawD = reinterpret_cast<const In*>(stg + Traits::kRawD);
      for (int idx = tid; idx < T * (CH / 4); idx += kThreads) {
        const int t = idx / (CH / 4);
        const Vec<In, 4> uq = *reinterpret_cast<const Vec<In, 4>*>(rawU + t * CH + 4 * prep_c4);
        const Vec<In, 4> dq = *reinterpret_cast<const Vec<In, 4>*>(rawD + t * CH + 4 * prep_c4);
        const bool live = chunk0 + t < seg_end;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float d = live ? softplus(to_float(dq[j]) * sdt + prep_bias[j]) : 0.f;  // δ = 0: identity
          sD[(4 * prep_c4 + j) * PT + t] = d;
          sDU[(4 * prep_c4 + j) * PT + t] = d * (to_float(uq[j]) * su);
        }
      }
      const In* rawB = reinterpret_cast<const In*>(stg + Traits::kRawB);
      const In* rawC = reinterpret_cast<const In*>(stg + Traits::kRawC);
      for (int idx = tid; idx < T * (N / 4); idx += kThreads) {
        const int t = idx / (N / 4);
        const Vec<In, 4> bq = *reinterpret_cast<const Vec<In, 4>*>(rawB + t * N + 4 * prep_n4);
#pragma unroll
        for (int j = 0; j < 4; ++j) sBf[(4 * prep_n4 + j) * PT + t] = to_float(bq[j]) * sB;
        if constexpr (kFull) {
          const Vec<In, 4> cq = *reinterpret_cast<const Vec<In, 4>*>(rawC + t * N + 4 * prep_n4);
#pragma unroll
          for (int j = 0; j < 4; ++j) sCf[(4 * prep_n4 + j) * PT + t] = to_float(cq[j]) * sC;
        }
      }
    }
    __syncthreads();  // fp32 tiles ready

    const float* dRow = sD + chl * PT;
    const float* wRow = sDU + chl * PT;
    if constexpr (kFull) {
      const In* rawU = reinterpret_cast<const In*>(stg + Traits::kRawU);
      const In* rawZ = reinterpret_cast<const In*>(stg + Traits::kRawZ);
#pragma unroll Traits::kGroups
      for (int g0 = 0; g0 < T; g0 += G) {
        float v[G];
        walk_group<G, Q, PT>(dRow, wRow, sBf, sCf, q, a2, st, g0, v);
        reduce_scatter<G / 2, G, kShift>(v, q);  // lane q now holds token g0 + q
        const int t = g0 + q;
        sY[t * CH + chl] = __float2half_rn(
            gate_output<kHasZ, false>(v[0], rawU[t * CH + chl], kHasZ ? rawZ[t * CH + chl] : In{}, Dv, su, sz));
      }
    } else {
      // State recurrence only: 4 issue slots per (token, state) plus the shared float4 reads;
      // Σδ costs 4 FADDs per 4 tokens for the lane's Q states.
#pragma unroll 4
      for (int t0 = 0; t0 < T; t0 += 4) {
        const float4 d4 = *reinterpret_cast<const float4*>(dRow + t0);
        const float4 w4 = *reinterpret_cast<const float4*>(wRow + t0);
        const float dd[4] = {d4.x, d4.y, d4.z, d4.w}, ww[4] = {w4.x, w4.y, w4.z, w4.w};
        dsum += (d4.x + d4.y) + (d4.z + d4.w);
#pragma unroll
        for (int j = 0; j < Q; ++j) {
          const int n = q + j * G;
          const float4 b4 = *reinterpret_cast<const float4*>(sBf + n * PT + t0);
          const float bb[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
          for (int i = 0; i < 4; ++i) st[j] = fmaf(ex2(dd[i] * a2[j]), st[j], ww[i] * bb[i]);
        }
      }
    }
  }
  if constexpr (kFull) {
    __syncthreads();  // last y tile complete
    flush_y(seg_begin + (nchunks - 1) * T);
  }
  // Each lane writes only its own states' rows; initial_state (pass 1, possibly aliased by
  // final_state) is never written in the same pass.
  if (sa.pass == 0 || (sa.pass == 2 && seg == sa.segments - 1)) {
    if (p.final_state) {
#pragma unroll
      for (int j = 0; j < Q; ++j) p.final_state[(b * E + e) * N + q + j * G] = st[j];
    }
  } else if (sa.pass == 1) {
#pragma unroll
    for (int j = 0; j < Q; ++j) {
      const int n = q + j * G;
      sa.ws_state[ws_row(seg, n)] = st[j];
      if constexpr (!kFull) sa.ws_decay[ws_row(seg, n)] = a2[j] * dsum;
    }
  }
}

template <class Traits, class Params, bool kHasZ>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    prefill_segmented_kernel(const Params p, const SegmentArgs sa) {
  static_assert(std::is_same<typename PrefillIo<Params>::In, typename Traits::In>::value,
                "traits built for another input type");
  const int seg = sa.seg_base + static_cast<int>(blockIdx.z);
  // Uniform per block: segment 0 of pass 1 and every block of passes 0 and 2 run the full scan.
  if (sa.pass == 1 && seg > 0) segmented_body<Traits, Params, kHasZ, false>(p, sa, seg);
  else segmented_body<Traits, Params, kHasZ, true>(p, sa, seg);
}

template <class Traits, class Params>
Status check_segmented(const Params& p) {
  QUAMBA_RETURN_IF_ERROR(check_prefill(p));
  if (fused_dt(p)) return Status::kErrorNotSupported;  // reads δ from `delta` only
  if (p.Bm.shape[2] != Traits::kDState || p.u.shape[2] % Traits::kChannels != 0) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

}  // namespace detail

template <class Traits, class Params>
Status can_implement_segmented(const Params& p) {
  return detail::check_segmented<Traits>(p);
}

// Launches the segmented variant Traits (one or two kernels on `stream`). workspace: at least
// segmented_workspace_bytes<Traits>(p) bytes, 16-byte aligned (may be null when that size is 0);
// its contents on entry do not matter.
template <class Traits, class Params>
Status run_prefill_segmented(const Params& p, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(detail::check_segmented<Traits>(p));
  const SegmentPlan plan = segment_plan<Traits>(p);
  const size_t need = segmented_workspace_bytes<Traits>(p);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need)) return Status::kErrorWorkspaceTooSmall;
  if (need > 0 && !is_aligned(workspace, 16)) return Status::kErrorMisaligned;
  const int64_t B = p.u.shape[0], E = p.u.shape[2], N = p.Bm.shape[2];
  detail::SegmentArgs sa;
  sa.first_len = plan.first_len;
  sa.seg_len = plan.seg_len;
  sa.segments = plan.segments;
  if (need > 0) {
    sa.ws_state = static_cast<float*>(workspace);
    sa.ws_decay = sa.ws_state + B * (plan.segments - 1) * E * N;
  }
  return dispatch_bool(p.z.data != nullptr, [&](auto has_z) {
    auto kernel = detail::prefill_segmented_kernel<Traits, Params, decltype(has_z)::value>;
    static std::atomic<unsigned long long> opted_in{0};
    int dev = 0;
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaGetDevice(&dev));
    const unsigned long long bit = dev < 64 ? (1ull << dev) : 0ull;
    if (Traits::kSmemBytes > 48 * 1024 && (bit == 0 || !(opted_in.load(std::memory_order_relaxed) & bit))) {
      QUAMBA_RETURN_IF_CUDA_ERROR(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes));
      opted_in.fetch_or(bit, std::memory_order_relaxed);
    }
    const unsigned gx = static_cast<unsigned>(E / Traits::kChannels), gy = static_cast<unsigned>(B);
    if (plan.segments == 1) {
      sa.pass = 0;
      kernel<<<dim3(gx, gy, 1), Traits::kThreads, Traits::kSmemBytes, stream>>>(p, sa);
      return last_launch_status();
    }
    const unsigned gz = static_cast<unsigned>(plan.segments - 1);
    sa.pass = 1;
    sa.seg_base = 0;
    kernel<<<dim3(gx, gy, gz), Traits::kThreads, Traits::kSmemBytes, stream>>>(p, sa);
    QUAMBA_RETURN_IF_ERROR(last_launch_status());
    sa.pass = 2;
    sa.seg_base = 1;
    kernel<<<dim3(gx, gy, gz), Traits::kThreads, Traits::kSmemBytes, stream>>>(p, sa);
    return last_launch_status();
  });
}

// The default segmented variant for the params' N (DefaultSegmentedTraits); N outside {16, 32,
// 64} -> kErrorNotSupported (as every prefill entry point).
template <class Params>
size_t segmented_workspace_size(const Params& p) {
  using In = typename detail::PrefillIo<Params>::In;
  switch (p.Bm.shape[2]) {
    case 16: return segmented_workspace_bytes<typename DefaultSegmentedTraits<16, In>::type>(p);
    case 32: return segmented_workspace_bytes<typename DefaultSegmentedTraits<32, In>::type>(p);
    case 64: return segmented_workspace_bytes<typename DefaultSegmentedTraits<64, In>::type>(p);
    default: return 0;
  }
}

template <class Params>
Status run_segmented(const Params& p, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(detail::check_prefill(p));
  using In = typename detail::PrefillIo<Params>::In;
  return dispatch_int<16, 32, 64>(static_cast<int>(p.Bm.shape[2]), [&](auto n) {
    return run_prefill_segmented<typename DefaultSegmentedTraits<decltype(n)::value, In>::type>(
        p, workspace, workspace_bytes, stream);
  });
}

}  // namespace quamba::scan
