// quamba/conv1d/causal_conv1d.cuh: causal depthwise conv1d + SiLU, prefill and decode (GPU).
// SPEC §1 step 3, §2 step 3; the host oracle is quamba/reference/conv1d.hpp.
//
// Shapes and layouts (strides in ELEMENTS, channel stride always 1):
//   x        (B, L, C)  T; may be a strided slice (x = xz[..., :E] has token stride 2E)
//   out      (B, L, C)  T, own strides; must not overlap x
//   weight   (C, K)     contiguous, K = width in {2, 3, 4}   (int8 for T = int8_t, fp32 for __half)
//   bias     (C)        optional                              (int8 for T = int8_t, fp32 for __half)
//   state_in / state_out (B, C, K) T, optional, batch stride given, (c, k) contiguous: the last K
//            inputs x *before* the conv, slot 0 oldest, zero-padded on the old side when the
//            sequence so far is shorter than K. state_out may be the same buffer as state_in
//            (chunked prefill in place); it must not overlap x or out.
// out[b,t,c] = act(bias[c] + Σ_k w[c,k]·x[b, t-(K-1)+k, c]), positions before 0 read state_in
// slots 1..K-1 (zeros without it). So prefill(x0) then prefill(x1) with the state carried
// equals prefill(x0 ++ x1), and prefill then decode steps equals a longer prefill.
//
// T = int8_t (W8A8):  v = float(Σ w_q·x_q)·scale_wx + float(b_q)·s_b   (integer sum exact)
//                     out = q8(silu(v) · inv_s_out), scale_wx = s_xz·s_w computed by the caller.
//   SiLU uses ex2.approx and rcp.approx (the reference uses std::exp), and prefill folds the
//   clamp and rounding into saturating FMAs (see conv_i8_out_bits_sat), so an int8 output may
//   differ by one step where silu(v)·inv_s_out lies within ~2e-5 of a .5 boundary. The default
//   prefill variants share one reciprocal between two channels (conv_i8_out_bits_pair_fma, or
//   conv_i8_out_bits_sat2 when |scale_wx|·K·2^14 + |s_b|·128 >= 2^60), which treats v < -42 as
//   -42: the output is still 0 there for any inv_s_out < 2^54. The kSiluTanh variants (named
//   only, never picked by run()) are outside this tolerance: see conv_i8_out_bits_tanh.
//   Scales must be finite and small enough that |scale_wx|·K·2^14 + |s_b|·128 is finite.
// T = __half (fp16):  fp32 weight and bias, fp32 accumulation, out = silu ? silu(v) : v.
//
// Decode (Conv1dUpdateParams): x (B, C), out (B, C), state (S, C, K) updated in place; optional
// state_idx (B) int32 device array picks the slot of each sequence (default b); the entries
// must be distinct. A slot outside [0, S) writes a zero output row, leaves every state alone
// and sets *error_flag = 1 when error_flag is not null (the library never clears it).
//
// Supported: prefill int8 needs C % 4 == 0 and x/out pointers and strides in multiples of 4
// elements (kErrorNotSupported / kErrorMisaligned otherwise); fp16 and decode take any C.
// B <= 65535 (grid.y).
// pdl (both Params): launch as a programmatic dependent of the stream's previous kernel
// (core/launch.cuh; sm_90+, pass false elsewhere). The kernels wait for the previous one before
// any load (their first loads are the activations, and the weight reads are a few bytes per
// thread, not worth a second code order) and leave the next launch's trigger implicit, at exit.
// A prefill with L = 0 and a state_out is a cudaMemcpy2DAsync / cudaMemset2DAsync, not a kernel:
// stream-ordered as always, with no overlap.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"

namespace quamba::conv1d {

inline constexpr int kMaxWidth = 4;
inline constexpr int64_t kMaxBatch = 65535;

template <typename T>
struct Conv1dTypes;
template <>
struct Conv1dTypes<int8_t> {
  using Weight = int8_t;
};
template <>
struct Conv1dTypes<__half> {
  using Weight = float;
};

template <typename T>
struct Conv1dParams {
  using Weight = typename Conv1dTypes<T>::Weight;
  const T* x = nullptr;  // (B, L, C)
  int64_t x_batch_stride = 0;
  int64_t x_token_stride = 0;
  T* out = nullptr;  // (B, L, C)
  int64_t out_batch_stride = 0;
  int64_t out_token_stride = 0;
  const Weight* weight = nullptr;  // (C, K)
  const Weight* bias = nullptr;    // (C), nullable
  const T* state_in = nullptr;     // (B, C, K), nullable
  int64_t state_in_batch_stride = 0;
  T* state_out = nullptr;  // (B, C, K), nullable
  int64_t state_out_batch_stride = 0;
  int64_t B = 0;
  int64_t L = 0;
  int C = 0;
  int K = 4;
  // int8 only (see the header brief).
  float scale_wx = 1.f;
  float s_b = 1.f;
  float inv_s_out = 1.f;
  // fp16 only; the int8 path always applies SiLU.
  bool silu = true;
  bool pdl = false;  // programmatic dependent launch (see the header brief)
};

template <typename T>
struct Conv1dUpdateParams {
  using Weight = typename Conv1dTypes<T>::Weight;
  const T* x = nullptr;  // (B, C)
  int64_t x_batch_stride = 0;
  T* out = nullptr;  // (B, C)
  int64_t out_batch_stride = 0;
  T* state = nullptr;  // (S, C, K), updated in place
  int64_t state_batch_stride = 0;
  int64_t num_slots = 0;              // S
  const int32_t* state_idx = nullptr;  // (B), nullable
  const Weight* weight = nullptr;      // (C, K)
  const Weight* bias = nullptr;        // (C), nullable
  int64_t B = 0;
  int C = 0;
  int K = 4;
  float scale_wx = 1.f;
  float s_b = 1.f;
  float inv_s_out = 1.f;
  bool silu = true;
  int32_t* error_flag = nullptr;  // optional: set to 1 on a bad state_idx entry
  bool pdl = false;               // programmatic dependent launch (see the header brief)
};

// Prefill variant. Each thread owns kVec channels of one sequence and walks a run of kTokens
// tokens, keeping the previous K-1 inputs of each channel in one register (the dp4a word): every
// input byte is read from DRAM once (the K-1 token halo of a run is re-read by the neighbouring
// run, from L2: the two runs are handled by threads of nearby CTAs). Adjacent threads own
// adjacent channel vectors, so a warp reads 32·kVec contiguous bytes per token. Loads run
// kLoadAhead tokens ahead of the math (double buffer), so each thread keeps kLoadAhead requests
// in flight while it computes. kTokens trades halo re-reads (3/kTokens, from L2) and the per-run
// prologue (taps, bias) against the number of CTAs: short runs give a grid of several waves,
// which hides the last partial wave. kMinBlocks caps the registers (__launch_bounds__) so enough
// warps stay resident to keep DRAM busy.
//
// Spread variants (Spread = true) size the run at launch instead: the grid is one wave of
// resident threads (SM count × kMinBlocks CTAs) and each thread takes an equal contiguous share
// of its sequence's tokens (at least kTokens), walking it with a ping-pong pair of kLoadAhead-
// token buffers: the next group's loads are always in flight while a group is computed, so DRAM
// and the SiLU math overlap inside every thread, there is no partial last wave, and the taps,
// bias and halo are loaded once per share rather than once per short run.
//
// PairRcp variants (int8) compute the SiLU of two channels with one reciprocal: MUFU (ex2, rcp)
// runs at 16 lanes/clk/SM against 128 for the FP32 pipe, and at 2 MUFU ops per channel it is the
// busiest unit after DRAM (E=5120, M=8192: 23 µs of MUFU under a 28 µs DRAM floor). Sharing the
// reciprocal makes it 1.5 per channel for 1.5 extra FP32 ops (see conv_i8_out_bits_sat2).
// With 1.5 MUFU ops (12 MUFU cycles per warp-channel) the issue slots (~14 per warp-channel in
// the loop, one warp instruction per clk per SM quarter) bind instead, so the PairFma form cuts
// instructions, not MUFU ops (conv_i8_out_bits_pair_fma). Per SM, E=5120 M=2048 is 80K
// channel-tokens; at ~16.5 slots each (loop plus per-run work: index division, taps, bias, halo)
// that is ~10K issue cycles (~6 µs) against ~7 µs of DRAM time, and measured launches take about
// the sum (13 µs): all threads load first and compute after, so every slot saved shows. Hence
// also the per-run savings in the kernel (DivU31, unguarded full runs).
//
// SiLU + requantize forms of the int8 prefill epilogue (Conv1dPrefillTraits::kSilu).
inline constexpr int kSiluRcpEach = 0;  // ex2 + rcp per channel (conv_i8_out_bits_sat)
inline constexpr int kSiluPairRcp = 1;  // one rcp per two channels (conv_i8_out_bits_sat2)
inline constexpr int kSiluPairFma = 2;  // kSiluPairRcp in fewer instructions (conv_i8_out_bits_pair_fma)
inline constexpr int kSiluTanh = 3;     // one tanh.approx per channel: NOT within the header's tolerance
                                        // (conv_i8_out_bits_tanh); measurement variant, never chosen by run()

template <int Threads, int VecElems, int Tokens, int LoadAhead = 4, int MinBlocks = 1, bool Spread = false,
          int Silu = kSiluRcpEach>
struct Conv1dPrefillTraits {
  static constexpr int kThreads = Threads;
  static constexpr int kVec = VecElems;       // channels per thread
  static constexpr int kTokens = Tokens;      // tokens per thread (Spread: the least per thread)
  static constexpr int kLoadAhead = LoadAhead;  // tokens loaded ahead of the math
  static constexpr int kMinBlocks = MinBlocks;  // resident CTAs per SM the registers must allow
  static constexpr bool kSpread = Spread;
  static constexpr int kSilu = Silu;  // int8 only
  static constexpr bool kPairRcp = Silu == kSiluPairRcp;
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps");
  static_assert(Tokens % LoadAhead == 0, "a token run holds whole load groups");
  static_assert(MinBlocks >= 1 && MinBlocks * Threads <= 2048, "at most 2048 resident threads per SM");
  static_assert(Silu >= kSiluRcpEach && Silu <= kSiluTanh, "a known SiLU form");
  static_assert(Silu == kSiluRcpEach || Silu == kSiluTanh || VecElems % 2 == 0, "pair forms take channel pairs");
};

// int8: 16 channels = one 16-byte access, 8 = one 8-byte access; 4 channels = the narrowest
// (one dp4a word, for C % 8 != 0 or views aligned to 4 bytes only).
// kMinBlocks is the largest count that compiles without spills (-Xptxas -v, sm_90a).
using Conv1dI8Traits16x32 = Conv1dPrefillTraits<128, 16, 32, 4, 3>;
using Conv1dI8Traits16x16 = Conv1dPrefillTraits<128, 16, 16, 4, 4>;
using Conv1dI8Traits16x8 = Conv1dPrefillTraits<128, 16, 8, 4, 4>;
using Conv1dI8Traits16x4 = Conv1dPrefillTraits<128, 16, 4, 4, 4>;
using Conv1dI8Traits8x32 = Conv1dPrefillTraits<128, 8, 32, 8, 4>;
using Conv1dI8Traits8x16 = Conv1dPrefillTraits<128, 8, 16, 8, 5>;
using Conv1dI8Traits8x8 = Conv1dPrefillTraits<128, 8, 8, 8, 8>;
using Conv1dI8Traits8x8a4 = Conv1dPrefillTraits<128, 8, 8, 4, 8>;
using Conv1dI8Traits4x8 = Conv1dPrefillTraits<128, 4, 8, 4, 8>;
using Conv1dI8Traits8xS8 = Conv1dPrefillTraits<128, 8, 8, 4, 7, true>;
using Conv1dI8Traits8xS16 = Conv1dPrefillTraits<128, 8, 16, 4, 7, true>;
using Conv1dI8Traits4xS8 = Conv1dPrefillTraits<128, 4, 8, 4, 10, true>;
using Conv1dI8Traits16xS8 = Conv1dPrefillTraits<128, 16, 8, 4, 4, true>;
using Conv1dI8Traits8x8a4P = Conv1dPrefillTraits<128, 8, 8, 4, 7, false, kSiluPairRcp>;
using Conv1dI8Traits4x8P = Conv1dPrefillTraits<128, 4, 8, 4, 8, false, kSiluPairRcp>;
using Conv1dI8Traits8x8a4F = Conv1dPrefillTraits<128, 8, 8, 4, 7, false, kSiluPairFma>;
using Conv1dI8Traits8x8a4F8 = Conv1dPrefillTraits<128, 8, 8, 4, 8, false, kSiluPairFma>;  // 64 regs, no spills
using Conv1dI8Traits4x8F = Conv1dPrefillTraits<128, 4, 8, 4, 8, false, kSiluPairFma>;
// Spread pair-FMA variants with 2-token groups: the compute left after a thread's last load
// lands is one group (2 tokens) instead of 4, and a launch-wide tail of ~1/5 of a share instead
// of ~1/2 at M = 2048; 2 x 2 tokens in flight per thread still keep ~4 MB requested at E = 5120.
using Conv1dI8Traits8xS8a2F = Conv1dPrefillTraits<128, 8, 8, 2, 8, true, kSiluPairFma>;
using Conv1dI8Traits4xS8a2F = Conv1dPrefillTraits<128, 4, 8, 2, 10, true, kSiluPairFma>;
using Conv1dI8Traits8x8a4T = Conv1dPrefillTraits<128, 8, 8, 4, 7, false, kSiluTanh>;
using Conv1dI8Traits4x8T = Conv1dPrefillTraits<128, 4, 8, 4, 8, false, kSiluTanh>;
// fp16: 8 halves = one 16-byte access, 4 = one 8-byte access (run()'s choice); 1 channel for C %
// 4 != 0 or unaligned views. kMinBlocks: the largest count that compiles without spills
// (-Xptxas -v, sm_90a).
using Conv1dF16Traits8x16 = Conv1dPrefillTraits<128, 8, 16>;  // the previous default: 4 tokens per round
using Conv1dF16Traits8x16a4 = Conv1dPrefillTraits<128, 8, 16, 4, 3>;
using Conv1dF16Traits8x8 = Conv1dPrefillTraits<128, 8, 8, 8, 3>;  // the whole run in one round
using Conv1dF16Traits8x8a4 = Conv1dPrefillTraits<128, 8, 8, 4, 3>;
using Conv1dF16Traits4x8 = Conv1dPrefillTraits<128, 4, 8, 8, 5>;
using Conv1dF16Traits4x8a4 = Conv1dPrefillTraits<128, 4, 8, 4, 5>;
using Conv1dF16Traits1x16 = Conv1dPrefillTraits<128, 1, 16>;

template <int Threads, int Channels>
struct Conv1dUpdateTraits {
  static constexpr int kThreads = Threads;
  static constexpr int kChannels = Channels;  // channels per thread (scalar accesses: tiny op)
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps");
};
using Conv1dUpdateTraitsDefault = Conv1dUpdateTraits<128, 4>;

namespace detail {

inline constexpr int32_t kMagicI = 0x4B400000;  // bits of 1.5·2^23
inline constexpr float kMagicF = 12582912.0f;   // 1.5·2^23

// int8 output of one channel from `acc_magic` = 0x4B400000 + Σ w·x (|Σ| <= 2^16 keeps the
// exponent fixed, so the float with these bits is exactly 1.5·2^23 + Σ: an int -> float
// conversion without the quarter-rate I2F unit). Same fp32 operations, in the same order, as
// reference::detail::conv_i8_value + quantize_i8; returns float bits whose low byte is the int8.
__device__ __forceinline__ uint32_t conv_i8_out_bits(int32_t acc_magic, float scale_wx, float bias_f,
                                                     float inv_s_out) {
  const float accf = __fsub_rn(__int_as_float(acc_magic), kMagicF);
  const float v = __fadd_rn(__fmul_rn(accf, scale_wx), bias_f);
  const float u = __fdividef(v, __fadd_rn(1.f, __expf(-v)));
  // can_implement guarantees finite v, so u is never NaN and the clamp saturates exactly as
  // quantize_i8. Adding 1.5·2^23 rounds half to even to an integer (F2I is quarter rate); the
  // low byte of the sum's bits is that integer in two's complement.
  float q = __fmul_rn(u, inv_s_out);
  q = fminf(fmaxf(q, -128.f), 127.f);
  return __float_as_uint(__fadd_rn(q, kMagicF));
}

// Flush-to-zero forms: one MUFU op each, no subnormal fix-up code around it. ex2 meets a
// subnormal result only for v > 87, where 1 + e rounds to 1 either way; rcp's argument is >= 1.
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float rcp_ftz(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// a·b + c clamped to [0, 1] in the same instruction (NaN -> 0).
__device__ __forceinline__ float fma_sat(float a, float b, float c) {
  float y;
  asm("fma.rn.sat.f32 %0, %1, %2, %3;" : "=f"(y) : "f"(a), "f"(b), "f"(c));
  return y;
}

// Prefill form of conv_i8_out_bits: 9 FP32-pipe/MUFU instructions per channel instead of ~15
// (the SiLU + requantize chain, not the bytes, bounds this kernel's issue rate). The clamp to
// [-128, 127] is the .sat of an FMA on s = (q + 128)/255 in [0, 1], and the rounding to an integer
// is the final FMA into the 1.5·2^23 magic range (round half to even, as quantize_i8):
//   v = accf·scale_wx + bias        (one rounding instead of the reference's two)
//   u = v · rcp(1 + 2^(-v·log2e))   (approximate SiLU, ~2 ulp)
//   s = sat(u · inv_s_out/255 + 128/255),  bits = s·255 + (1.5·2^23 - 128)
// The extra roundings move q by < 2e-5 of a step, so an int8 output differs from the reference
// only where q lies that close to a .5 boundary. u·k is taken after v·rcp, so a huge negative v
// gives (-big)·0 = -0 -> q = 0, never 0·inf. k_out = inv_s_out/255 may be 0 (q = 0).
__device__ __forceinline__ uint32_t conv_i8_out_bits_sat(int32_t acc_magic, float scale_wx, float bias_f, float k_out) {
  constexpr float kLog2e = 1.4426950408889634f;
  const float accf = __fsub_rn(__int_as_float(acc_magic), kMagicF);
  const float v = __fmaf_rn(accf, scale_wx, bias_f);
  const float r = rcp_ftz(__fadd_rn(1.f, ex2_ftz(__fmul_rn(v, -kLog2e))));
  const float s = fma_sat(__fmul_rn(v, r), k_out, 128.f / 255.f);
  return __float_as_uint(__fmaf_rn(s, 255.f, kMagicF - 128.f));
}

// conv_i8_out_bits_sat for two channels a, b with one reciprocal: 1/d_a = d_b·rcp(d_a·d_b)
// with d = 1 + 2^(-v·log2e) (~2 ulp, as the single form). v is clamped below at -42 so each d is
// at most 2^60.6 and the product stays a normal float (< 2^122, its reciprocal > 2^-122, no ftz
// flush, never inf·0). For v < -42 the result is silu(-42)·inv_s_out = -2.4e-17·inv_s_out, which
// rounds to 0 as the true silu(v)·inv_s_out does for any inv_s_out < 2^54.
__device__ __forceinline__ void conv_i8_out_bits_sat2(int32_t acc_a, int32_t acc_b, float scale_wx, float bias_a,
                                                      float bias_b, float k_out, uint32_t& out_a, uint32_t& out_b) {
  constexpr float kLog2e = 1.4426950408889634f;
  const float va = fmaxf(__fmaf_rn(__fsub_rn(__int_as_float(acc_a), kMagicF), scale_wx, bias_a), -42.f);
  const float vb = fmaxf(__fmaf_rn(__fsub_rn(__int_as_float(acc_b), kMagicF), scale_wx, bias_b), -42.f);
  const float da = __fadd_rn(1.f, ex2_ftz(__fmul_rn(va, -kLog2e)));
  const float db = __fadd_rn(1.f, ex2_ftz(__fmul_rn(vb, -kLog2e)));
  const float r = rcp_ftz(__fmul_rn(da, db));
  const float sa = fma_sat(__fmul_rn(va, __fmul_rn(db, r)), k_out, 128.f / 255.f);
  const float sb = fma_sat(__fmul_rn(vb, __fmul_rn(da, r)), k_out, 128.f / 255.f);
  out_a = __float_as_uint(__fmaf_rn(sa, 255.f, kMagicF - 128.f));
  out_b = __float_as_uint(__fmaf_rn(sb, 255.f, kMagicF - 128.f));
}

// conv_i8_out_bits_sat2 in 10 FP32-pipe/MUFU instructions per channel instead of 11. The
// prefill's issue slots, not MUFU, are what the pair form leaves binding: per warp and channel it
// needs ~14 issue cycles (~11 FP32/MUFU + dp4a + tap slide + 3/4 pack PRMT) against 1.5 MUFU ops
// x 8 cycles (16 lanes/clk/SM) = 12 MUFU cycles. Two rewrites remove one instruction per channel
// and change no rounding count:
//   P = ea·db + db = (1 + ea)·db in one FMA (da is never rounded, and 1/db = (1 + ea)·r is one FMA
//   as well); k_out is applied once per pair to the reciprocal (rk = r·k_out) instead of once per
//   channel to v·(1/d).
// rk may be subnormal (r >= 2^-121.2, k_out may be tiny); its absolute error, scaled by d <= 2^61
// and |v|, adds < |v|·2^-89 to s, under 4e-7 of a step while |v| < 2^60: silu_form_ok refuses
// larger scale ranges (run() then takes the kSiluPairRcp form).
// Moving exponentials/reciprocals to the FMA pipe (Cody-Waite exp2 + polynomial, Newton rcp)
// would cost ~10 issue slots per MUFU op saved: the wrong direction while issue binds.
__device__ __forceinline__ void conv_i8_out_bits_pair_fma(int32_t acc_a, int32_t acc_b, float scale_wx, float bias_a,
                                                          float bias_b, float k_out, uint32_t& out_a,
                                                          uint32_t& out_b) {
  constexpr float kLog2e = 1.4426950408889634f;
  const float va = fmaxf(__fmaf_rn(__fsub_rn(__int_as_float(acc_a), kMagicF), scale_wx, bias_a), -42.f);
  const float vb = fmaxf(__fmaf_rn(__fsub_rn(__int_as_float(acc_b), kMagicF), scale_wx, bias_b), -42.f);
  const float ea = ex2_ftz(__fmul_rn(va, -kLog2e));
  const float eb = ex2_ftz(__fmul_rn(vb, -kLog2e));
  const float db = __fadd_rn(1.f, eb);
  const float rk = __fmul_rn(rcp_ftz(__fmaf_rn(ea, db, db)), k_out);  // k_out / (da·db), da = 1 + ea
  const float sa = fma_sat(va, __fmul_rn(db, rk), 128.f / 255.f);     // v·k_out/da
  const float sb = fma_sat(vb, __fmaf_rn(ea, rk, rk), 128.f / 255.f);  // v·k_out/db
  out_a = __float_as_uint(__fmaf_rn(sa, 255.f, kMagicF - 128.f));
  out_b = __float_as_uint(__fmaf_rn(sb, 255.f, kMagicF - 128.f));
}

__device__ __forceinline__ float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// SiLU with ONE MUFU op: silu(v) = h·(1 + tanh(h)), h = v/2 (6 FP32/MUFU instructions per channel,
// 1 MUFU). Measurement variant only: the PTX ISA gives tanh.approx.f32 a maximum relative error of
// about 2^-11, so q = silu(v)·inv_s_out moves by up to |h|·2^-11·inv_s_out steps (0.03 at v = 5,
// inv_s_out = 25.4; more than one step once |h|·inv_s_out > 2^11). A host model (v ~ N(0, 6.6),
// tanh errors uniform within ±2^-11 / ±2^-13, exact where tanh rounds to ±1) gives off-by-one
// rates of 5e-3 / 1.3e-3 at inv_s_out = 25.4 and 6.7e-2 / 1.3e-2 at 254, against 1e-6..1e-5 for
// the ex2 + rcp forms (same model, exact ex2/rcp): beyond the header's tolerance and growing with
// inv_s_out, so run() never picks it (the bench's off_by_1 counter shows the real rate). Takes scale_half = scale_wx/2
// and bias_half = bias·s_b/2 (exact halvings); 1 + t is exact for t in [-1, -0.5] (Sterbenz), so a
// saturated t = -1 gives s = 128/255 -> q = 0 for any large negative v.
__device__ __forceinline__ uint32_t conv_i8_out_bits_tanh(int32_t acc_magic, float scale_half, float bias_half,
                                                          float k_out) {
  const float h = __fmaf_rn(__fsub_rn(__int_as_float(acc_magic), kMagicF), scale_half, bias_half);
  const float t = tanh_approx(h);
  const float s = fma_sat(__fmul_rn(h, k_out), __fadd_rn(1.f, t), 128.f / 255.f);
  return __float_as_uint(__fmaf_rn(s, 255.f, kMagicF - 128.f));
}

__device__ __forceinline__ uint32_t pack4_low_bytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

template <int N>
__device__ __forceinline__ Vec<uint32_t, N> load_words(const int8_t* p) {
  return *reinterpret_cast<const Vec<uint32_t, N>*>(p);
}

// Slides channel i's tap word by one token: bytes 1..3 of `taps` move down, byte i of the new
// input word (channel i of a 4-channel word) enters at the top. One PRMT per channel and token.
template <int I>
__device__ __forceinline__ uint32_t slide_in(uint32_t taps, uint32_t in) {
  return __byte_perm(taps, in, 0x4321 + (I << 12));
}

template <int kWords>
__device__ __forceinline__ void slide_all(uint32_t (&taps)[kWords * 4], const Vec<uint32_t, kWords>& in) {
#pragma unroll
  for (int w = 0; w < kWords; ++w) {
    taps[w * 4 + 0] = slide_in<0>(taps[w * 4 + 0], in[w]);
    taps[w * 4 + 1] = slide_in<1>(taps[w * 4 + 1], in[w]);
    taps[w * 4 + 2] = slide_in<2>(taps[w * 4 + 2], in[w]);
    taps[w * 4 + 3] = slide_in<3>(taps[w * 4 + 3], in[w]);
  }
}

// Unsigned division of n < 2^31 by a launch-constant d in [1, 2^31) with one multiply-high: a u32
// division by a runtime divisor is ~18 instructions, three of them on the quarter-rate MUFU and
// conversion pipes, and the int8 prefill did two per thread and run (nchunks and idx / nvec),
// ~0.6 issue slots per channel-token at 8 channels x 8 tokens. Round-up method (Granlund and
// Montgomery): l = ceil(log2 d), m = floor(2^32·(2^l - d)/d) + 1 < 2^32, q = (mulhi(n, m) + n) >> l;
// n < 2^31 keeps the sum in 32 bits (tests/gpu/test_conv1d.cu checks it on the host).
struct DivU31 {
  uint32_t mul = 1;
  uint32_t shift = 0;
  static DivU31 make(uint32_t d) {
    DivU31 r;
    while ((uint64_t(1) << r.shift) < d) ++r.shift;
    r.mul = static_cast<uint32_t>((uint64_t(1) << 32) * ((uint64_t(1) << r.shift) - d) / d + 1);
    return r;
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t hi = __umulhi(n, mul);
#else
    const uint32_t hi = static_cast<uint32_t>((uint64_t(n) * mul) >> 32);
#endif
    return (hi + n) >> shift;
  }
};

// nthreads = nvec · (runs per sequence), computed once on the host; nvec_div divides by nvec.
template <typename Traits, int K>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    conv1d_prefill_i8_kernel(Conv1dParams<int8_t> p, int64_t run_len, int64_t nthreads, DivU31 nvec_div) {
  constexpr int kVec = Traits::kVec;
  constexpr int kWords = kVec / 4;
  constexpr int kAhead = Traits::kLoadAhead;
  constexpr int kGroups = Traits::kTokens / kAhead;
  static_assert(kVec % 4 == 0 && kVec <= 16, "int8 channel vectors are 1..4 dp4a words");
  grid_dependency_wait();  // x, state_in: the previous kernel's outputs
  const int nvec = p.C / kVec;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * Traits::kThreads + threadIdx.x;
  if (idx >= nthreads) return;
  // Multiply-high division when it fits (a 64-bit one costs ~70 instructions per run).
  int cv;
  int64_t chunk;
  if (idx < 0x80000000ll) {
    const uint32_t i32 = static_cast<uint32_t>(idx);
    const uint32_t q = nvec_div.div(i32);
    cv = static_cast<int>(i32 - q * static_cast<uint32_t>(nvec));
    chunk = q;
  } else {
    cv = static_cast<int>(idx % nvec);
    chunk = idx / nvec;
  }
  const int64_t b = blockIdx.y;
  const int c0 = cv * kVec;
  const int64_t t0 = chunk * run_len;
  const int64_t n = p.L - t0 < run_len ? p.L - t0 : run_len;  // tokens of this run
  const int64_t xts = p.x_token_stride, ots = p.out_token_stride;
  const int8_t* __restrict__ xb = p.x + b * p.x_batch_stride + c0;
  int8_t* __restrict__ ob = p.out + b * p.out_batch_stride + c0;

  // Issue the first group's loads before the prologue so DRAM latency overlaps the tap setup.
  // Running pointers (one 64-bit add per token) rather than base + t·stride per access: fewer
  // live 64-bit addresses, so the unrolled run fits the register cap without spills.
  const int8_t* xr = xb + t0 * xts;
  int8_t* orow = ob + t0 * ots;
  Vec<uint32_t, kWords> buf[2][kAhead];
#pragma unroll
  for (int j = 0; j < kAhead; ++j)
    if (j < n) {
      buf[0][j] = load_words<kWords>(xr);
      xr += xts;
    }

  // Taps packed for dp4a, right-aligned in a 4-deep window: byte 4-K+k holds w[c, k], so the
  // older 4-K window slots meet zero weights and one code path serves every K. For K = 4 the
  // packed word is the weight row itself (16-byte loads when the pointer allows).
  uint32_t wq[kVec];
  float bias_f[kVec];
  if (K == 4 && is_aligned(p.weight, 16)) {
#pragma unroll
    for (int q = 0; q < kVec / 4; ++q) {
      const Vec<uint32_t, 4> v = *reinterpret_cast<const Vec<uint32_t, 4>*>(p.weight + (c0 + 4 * q) * 4);
#pragma unroll
      for (int i = 0; i < 4; ++i) wq[4 * q + i] = v[i];
    }
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      uint32_t w = 0;
#pragma unroll
      for (int k = 0; k < K; ++k)
        w |= static_cast<uint32_t>(static_cast<uint8_t>(p.weight[(c0 + i) * K + k])) << (8 * (kMaxWidth - K + k));
      wq[i] = w;
    }
  }
  // The tanh form works on h = v/2: both halvings are exact (powers of two).
  constexpr float kVScale = Traits::kSilu == kSiluTanh ? 0.5f : 1.f;
  const float s_b = p.s_b * kVScale;
  if (p.bias && is_aligned(p.bias, kVec)) {
    const Vec<uint32_t, kWords> bv = load_words<kWords>(p.bias + c0);
#pragma unroll
    for (int i = 0; i < kVec; ++i)
      bias_f[i] = __fmul_rn(static_cast<float>(static_cast<int8_t>(bv[i / 4] >> (8 * (i % 4)))), s_b);
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) bias_f[i] = p.bias ? __fmul_rn(static_cast<float>(p.bias[c0 + i]), s_b) : 0.f;
  }

  // taps[i]: channel i's inputs at t-3..t, oldest in byte 0. The halo (positions t0-3..t0-1)
  // slides in first; positions beyond the conv's reach meet zero taps, so they stay zero. (A 4x4
  // byte transpose of the three halo words takes 6 PRMT per 4 channels instead of 12, but holds
  // all three words at once and made the 8-channel, 8-block variants spill at K = 3.)
  uint32_t taps[kVec];
#pragma unroll
  for (int i = 0; i < kVec; ++i) taps[i] = 0u;
#pragma unroll
  for (int j = 0; j < 3; ++j) {
    const int64_t pos = t0 - 3 + j;
    Vec<uint32_t, kWords> h;
#pragma unroll
    for (int w = 0; w < kWords; ++w) h[w] = 0u;
    if (pos >= t0 - (K - 1)) {
      if (pos >= 0) {
        h = load_words<kWords>(xb + pos * xts);
      } else if (p.state_in) {
        const int8_t* s = p.state_in + b * p.state_in_batch_stride + static_cast<int64_t>(c0) * K + (K + pos);
#pragma unroll
        for (int i = 0; i < kVec; ++i) h[i / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(s[i * K])) << (8 * (i % 4));
      }
    }
    slide_all<kWords>(taps, h);
  }

  const float scale_wx = p.scale_wx * kVScale;
  const float k_out = __fmul_rn(p.inv_s_out, 1.f / 255.f);
  // One output token: slide the new inputs in, 4 channels per dp4a word, pack 4 int8 per word.
  auto conv_token = [&](const Vec<uint32_t, kWords>& in) {
    slide_all<kWords>(taps, in);
    Vec<uint32_t, kWords> o;
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
      uint32_t r[4];
      int32_t acc[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        acc[i] = __dp4a(static_cast<int>(taps[w * 4 + i]), static_cast<int>(wq[w * 4 + i]), kMagicI);
      if constexpr (Traits::kSilu == kSiluPairRcp) {
#pragma unroll
        for (int i = 0; i < 4; i += 2)
          conv_i8_out_bits_sat2(acc[i], acc[i + 1], scale_wx, bias_f[w * 4 + i], bias_f[w * 4 + i + 1], k_out, r[i],
                                r[i + 1]);
      } else if constexpr (Traits::kSilu == kSiluPairFma) {
#pragma unroll
        for (int i = 0; i < 4; i += 2)
          conv_i8_out_bits_pair_fma(acc[i], acc[i + 1], scale_wx, bias_f[w * 4 + i], bias_f[w * 4 + i + 1], k_out,
                                    r[i], r[i + 1]);
      } else if constexpr (Traits::kSilu == kSiluTanh) {
#pragma unroll
        for (int i = 0; i < 4; ++i) r[i] = conv_i8_out_bits_tanh(acc[i], scale_wx, bias_f[w * 4 + i], k_out);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) r[i] = conv_i8_out_bits_sat(acc[i], scale_wx, bias_f[w * 4 + i], k_out);
      }
      o[w] = pack4_low_bytes(r[0], r[1], r[2], r[3]);
    }
    *reinterpret_cast<Vec<uint32_t, kWords>*>(orow) = o;
    orow += ots;
  };
  if constexpr (Traits::kSpread) {
    // Ping-pong: while one buffer is computed the other one's loads are in flight.
    for (int64_t base = 0; base < n; base += 2 * kAhead) {
#pragma unroll
      for (int j = 0; j < kAhead; ++j)
        if (base + kAhead + j < n) {
          buf[1][j] = load_words<kWords>(xr);
          xr += xts;
        }
#pragma unroll
      for (int j = 0; j < kAhead; ++j)
        if (base + j < n) conv_token(buf[0][j]);
#pragma unroll
      for (int j = 0; j < kAhead; ++j)
        if (base + 2 * kAhead + j < n) {
          buf[0][j] = load_words<kWords>(xr);
          xr += xts;
        }
#pragma unroll
      for (int j = 0; j < kAhead; ++j)
        if (base + kAhead + j < n) conv_token(buf[1][j]);
    }
  } else {
    // Full runs (all but the last of each sequence) take a copy without the per-token bounds
    // tests: ~2 instructions per token and thread, 1/4 slot per channel-token at 8 channels.
    // Only for runs of <= 64 channel-tokens: the larger ones sit at their register caps and
    // spilled with the second copy.
    constexpr bool kSplitFull = kVec * Traits::kTokens <= 64;
    const int nf = static_cast<int>(n);  // <= kTokens
    auto walk = [&](auto full) {
      constexpr bool kFull = decltype(full)::value;
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        if (!kFull && g * kAhead >= nf) break;
        if (g + 1 < kGroups) {
#pragma unroll
          for (int j = 0; j < kAhead; ++j) {
            const int t = (g + 1) * kAhead + j;
            if (kFull || t < nf) {
              buf[(g + 1) & 1][j] = load_words<kWords>(xr);
              xr += xts;
            }
          }
        }
#pragma unroll
        for (int j = 0; j < kAhead; ++j)
          if (kFull || g * kAhead + j < nf) conv_token(buf[g & 1][j]);
      }
    };
    if (kSplitFull && nf == Traits::kTokens) walk(std::true_type{});
    else walk(std::false_type{});
  }

  // The run that owns t = 0 is the only reader of state_in for these channels, so it also
  // writes state_out (reading before writing, slot by slot upwards): state_out may alias
  // state_in without a race between CTAs.
  if (chunk == 0 && p.state_out) {
    const int8_t* sin = p.state_in ? p.state_in + b * p.state_in_batch_stride + static_cast<int64_t>(c0) * K : nullptr;
    int8_t* sout = p.state_out + b * p.state_out_batch_stride + static_cast<int64_t>(c0) * K;
    for (int k = 0; k < K; ++k) {
      const int64_t pos = p.L - K + k;
      for (int i = 0; i < kVec; ++i) {
        int8_t v = 0;
        if (pos >= 0) v = xb[pos * xts + i];
        else if (sin) v = sin[i * K + (K + pos)];
        sout[i * K + k] = v;
      }
    }
  }
}

template <int N>
__device__ __forceinline__ void load_half_as_float(const __half* p, float (&v)[N]) {
  const Vec<__half, N> a = *reinterpret_cast<const Vec<__half, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) v[i] = __half2float(a[i]);
}

__device__ __forceinline__ float silu_f32(float v) { return __fdividef(v, 1.f + __expf(-v)); }

// fp16 prefill: a thread owns kVec channels and a run of kTokens tokens. Its first kLoadAhead
// token loads are issued before the taps and the halo, and each later group's loads before the
// previous group's math (raw fp16 vectors in registers, converted at use), so a thread always has
// a group of loads in flight while it computes; with kLoadAhead = kTokens the whole run is
// requested in one round.
template <typename Traits, int K>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    conv1d_prefill_f16_kernel(Conv1dParams<__half> p) {
  constexpr int kVec = Traits::kVec;
  constexpr int kAhead = Traits::kLoadAhead;
  using HV = Vec<__half, kVec>;
  grid_dependency_wait();
  const int nvec = p.C / kVec;
  const int64_t nchunks = (p.L + Traits::kTokens - 1) / Traits::kTokens;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * Traits::kThreads + threadIdx.x;
  if (idx >= nchunks * nvec) return;
  const int cv = static_cast<int>(idx % nvec);
  const int64_t chunk = idx / nvec;
  const int64_t b = blockIdx.y;
  const int c0 = cv * kVec;
  const int64_t t0 = chunk * Traits::kTokens;
  const int64_t t1 = t0 + Traits::kTokens < p.L ? t0 + Traits::kTokens : p.L;
  const int64_t xts = p.x_token_stride, ots = p.out_token_stride;
  const __half* __restrict__ xb = p.x + b * p.x_batch_stride + c0;
  __half* __restrict__ ob = p.out + b * p.out_batch_stride + c0;

  auto load_group = [&](int64_t tb, HV(&g)[kAhead]) {
#pragma unroll
    for (int j = 0; j < kAhead; ++j)
      if (tb + j < t1) g[j] = *reinterpret_cast<const HV*>(xb + (tb + j) * xts);
  };
  HV cur[kAhead];
  load_group(t0, cur);

  float w[kVec][K], bias[kVec];
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
#pragma unroll
    for (int k = 0; k < K; ++k) w[i][k] = p.weight[(c0 + i) * K + k];
    bias[i] = p.bias ? p.bias[c0 + i] : 0.f;
  }
  // win[j] holds position t-(K-1)+j, j = 0..K-2.
  float win[K - 1][kVec];
#pragma unroll
  for (int j = 0; j < K - 1; ++j) {
    const int64_t pos = t0 - (K - 1) + j;
    if (pos >= 0) {
      load_half_as_float(xb + pos * xts, win[j]);
    } else {
      const __half* s = p.state_in ? p.state_in + b * p.state_in_batch_stride + static_cast<int64_t>(c0) * K + (K + pos) : nullptr;
#pragma unroll
      for (int i = 0; i < kVec; ++i) win[j][i] = s ? __half2float(s[i * K]) : 0.f;
    }
  }

  constexpr bool kMultiGroup = Traits::kTokens > kAhead;  // else the run is one group, loaded above
  for (int64_t tb = t0; tb < t1; tb += kAhead) {
    const bool more = kMultiGroup && tb + kAhead < t1;
    HV nxt[kAhead];
    if (more) load_group(tb + kAhead, nxt);
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      if (tb + j < t1) {
        float nx[kVec];
#pragma unroll
        for (int i = 0; i < kVec; ++i) nx[i] = __half2float(cur[j][i]);
        HV o;
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
          float acc = bias[i];
#pragma unroll
          for (int k = 0; k < K - 1; ++k) acc = fmaf(w[i][k], win[k][i], acc);
          acc = fmaf(w[i][K - 1], nx[i], acc);
          o[i] = __float2half_rn(p.silu ? silu_f32(acc) : acc);
        }
        *reinterpret_cast<HV*>(ob + (tb + j) * ots) = o;
#pragma unroll
        for (int k = 0; k + 1 < K - 1; ++k)
#pragma unroll
          for (int i = 0; i < kVec; ++i) win[k][i] = win[k + 1][i];
#pragma unroll
        for (int i = 0; i < kVec; ++i) win[K - 2][i] = nx[i];
      }
    }
    if (more) {
#pragma unroll
      for (int j = 0; j < kAhead; ++j) cur[j] = nxt[j];
    }
  }

  if (chunk == 0 && p.state_out) {  // see the int8 kernel: one owner reads, then writes
    const __half* sin = p.state_in ? p.state_in + b * p.state_in_batch_stride + static_cast<int64_t>(c0) * K : nullptr;
    __half* sout = p.state_out + b * p.state_out_batch_stride + static_cast<int64_t>(c0) * K;
    for (int k = 0; k < K; ++k) {
      const int64_t pos = p.L - K + k;
      for (int i = 0; i < kVec; ++i) {
        __half v = __float2half_rn(0.f);
        if (pos >= 0) v = xb[pos * p.x_token_stride + i];
        else if (sin) v = sin[i * K + (K + pos)];
        sout[i * K + k] = v;
      }
    }
  }
}

// Decode update of one int8 channel: shifts x into its state window (slot 0 oldest), read from
// st_in[0, K) and written to st_out[0, K) (the same pointer for an in-place update), and returns
// q(SiLU(Σ w·window·scale_wx + bias·s_b) / s_out) with the prefill's fp32 operations.
// kMaxK bounds the runtime width K (kMaxK = K for a compile-time width).
template <int kMaxK>
__device__ __forceinline__ int8_t update_channel_i8(const int8_t* st_in, int8_t* st_out, int8_t x, const int8_t* w,
                                                    int K, const int8_t* bias, float s_b, float scale_wx,
                                                    float inv_s_out) {
  int32_t acc = kMagicI;
#pragma unroll
  for (int k = 0; k < kMaxK; ++k) {
    if (k < K) {
      const int8_t v = k + 1 < K ? st_in[k + 1] : x;  // read before st_out[k + 1] is written
      st_out[k] = v;
      acc += static_cast<int32_t>(w[k]) * static_cast<int32_t>(v);
    }
  }
  const float bias_f = bias ? __fmul_rn(static_cast<float>(*bias), s_b) : 0.f;
  return static_cast<int8_t>(conv_i8_out_bits(acc, scale_wx, bias_f, inv_s_out) & 0xffu);
}

template <typename Traits, int K, typename T>
__global__ void __launch_bounds__(Traits::kThreads) conv1d_update_kernel(Conv1dUpdateParams<T> p) {
  grid_dependency_wait();  // x, state, state_idx: written by earlier kernels of a decode step
  const int64_t b = blockIdx.y;
  const int c_begin = (blockIdx.x * Traits::kThreads + threadIdx.x) * Traits::kChannels;
  if (c_begin >= p.C) return;
  const int c_end = c_begin + Traits::kChannels < p.C ? c_begin + Traits::kChannels : p.C;
  const int64_t slot = p.state_idx ? static_cast<int64_t>(p.state_idx[b]) : b;
  T* ob = p.out + b * p.out_batch_stride;
  if (slot < 0 || slot >= p.num_slots) {
    for (int c = c_begin; c < c_end; ++c) {
      if constexpr (std::is_same_v<T, int8_t>) ob[c] = 0;
      else ob[c] = __float2half_rn(0.f);
    }
    if (p.error_flag) *p.error_flag = 1;
    return;
  }
  const T* xb = p.x + b * p.x_batch_stride;
  T* st = p.state + slot * p.state_batch_stride;
  for (int c = c_begin; c < c_end; ++c) {
    if constexpr (std::is_same_v<T, int8_t>) {
      ob[c] = update_channel_i8<K>(st + static_cast<int64_t>(c) * K, st + static_cast<int64_t>(c) * K, xb[c],
                                   p.weight + c * K, K,
                                   p.bias ? p.bias + c : nullptr, p.s_b, p.scale_wx, p.inv_s_out);
    } else {
      T win[K];
#pragma unroll
      for (int k = 0; k + 1 < K; ++k) win[k] = st[static_cast<int64_t>(c) * K + k + 1];
      win[K - 1] = xb[c];
#pragma unroll
      for (int k = 0; k < K; ++k) st[static_cast<int64_t>(c) * K + k] = win[k];
      float acc = p.bias ? p.bias[c] : 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) acc = fmaf(p.weight[c * K + k], __half2float(win[k]), acc);
      ob[c] = __float2half_rn(p.silu ? silu_f32(acc) : acc);
    }
  }
}

inline bool ranges_overlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + static_cast<uintptr_t>(b_bytes) && pb < pa + static_cast<uintptr_t>(a_bytes);
}

// Elements spanned by a (B, L, C) view with channel stride 1.
inline int64_t span_elems(int64_t B, int64_t L, int64_t C, int64_t bs, int64_t ts) {
  if (B == 0 || L == 0 || C == 0) return 0;
  return (B - 1) * bs + (L - 1) * ts + C;
}

inline Status check_i8_scales(float scale_wx, float s_b, float inv_s_out, int K) {
  if (!std::isfinite(scale_wx) || !std::isfinite(s_b) || !std::isfinite(inv_s_out)) return Status::kErrorInvalidArgument;
  const double vmax = std::fabs(double(scale_wx)) * K * 16384.0 + std::fabs(double(s_b)) * 128.0;
  return vmax < double(FLT_MAX) ? Status::kSuccess : Status::kErrorInvalidArgument;
}

// Scale ranges of the int8 SiLU forms beyond can_implement's (see conv_i8_out_bits_pair_fma and
// conv_i8_out_bits_tanh): |v| <= vmax < 2^60 keeps pair_fma's subnormal k_out/d terms below 4e-7
// of a step; vmax·|inv_s_out| < 2^100 keeps the tanh form's h·k_out finite.
inline bool silu_form_ok(float scale_wx, float s_b, float inv_s_out, int K, int form) {
  const double vmax = std::fabs(double(scale_wx)) * K * 16384.0 + std::fabs(double(s_b)) * 128.0;
  if (form == kSiluPairFma) return vmax < 0x1p60;
  if (form == kSiluTanh) return vmax * std::fabs(double(inv_s_out)) < 0x1p100;
  return true;
}

template <typename T>
constexpr bool kIsI8 = std::is_same_v<T, int8_t>;

}  // namespace detail

// ---------------------------------------------------------------------------- prefill API ---

template <typename T>
Status can_implement(const Conv1dParams<T>& p) {
  if (p.x == nullptr || p.out == nullptr || p.weight == nullptr) return Status::kErrorInvalidArgument;
  if (p.B < 0 || p.L < 0 || p.C <= 0) return Status::kErrorInvalidArgument;
  if (p.K < 2 || p.K > kMaxWidth) return Status::kErrorNotSupported;
  if (p.B > kMaxBatch) return Status::kErrorNotSupported;
  if (p.x_token_stride < p.C || p.out_token_stride < p.C) return Status::kErrorInvalidArgument;
  if (p.B > 1 && (p.x_batch_stride < p.L * p.x_token_stride || p.out_batch_stride < p.L * p.out_token_stride))
    return Status::kErrorInvalidArgument;
  const int64_t ck = static_cast<int64_t>(p.C) * p.K;
  if (p.B > 1 && ((p.state_in && p.state_in_batch_stride < ck) || (p.state_out && p.state_out_batch_stride < ck)))
    return Status::kErrorInvalidArgument;
  const int64_t xs = detail::span_elems(p.B, p.L, p.C, p.x_batch_stride, p.x_token_stride);
  const int64_t os = detail::span_elems(p.B, p.L, p.C, p.out_batch_stride, p.out_token_stride);
  if (detail::ranges_overlap(p.x, xs * int64_t(sizeof(T)), p.out, os * int64_t(sizeof(T))))
    return Status::kErrorInvalidArgument;
  if (p.state_out) {
    const int64_t ss = p.B == 0 ? 0 : ((p.B - 1) * p.state_out_batch_stride + ck) * int64_t(sizeof(T));
    if (detail::ranges_overlap(p.state_out, ss, p.x, xs * int64_t(sizeof(T))) ||
        detail::ranges_overlap(p.state_out, ss, p.out, os * int64_t(sizeof(T))))
      return Status::kErrorInvalidArgument;
  }
  if constexpr (detail::kIsI8<T>) {
    QUAMBA_RETURN_IF_ERROR(detail::check_i8_scales(p.scale_wx, p.s_b, p.inv_s_out, p.K));
    if (p.C % 4 != 0) return Status::kErrorNotSupported;
    if (!is_aligned(p.x, 4) || !is_aligned(p.out, 4) || p.x_token_stride % 4 != 0 || p.out_token_stride % 4 != 0 ||
        (p.B > 1 && (p.x_batch_stride % 4 != 0 || p.out_batch_stride % 4 != 0)))
      return Status::kErrorMisaligned;
  } else {
    if (!is_aligned(p.x, 2) || !is_aligned(p.out, 2) || !is_aligned(p.weight, 4) || !is_aligned(p.bias, 4) ||
        !is_aligned(p.state_in, 2) || !is_aligned(p.state_out, 2))
      return Status::kErrorMisaligned;
  }
  return Status::kSuccess;
}

template <typename T>
size_t workspace_size(const Conv1dParams<T>&) { return 0; }

namespace detail {
// True when every x/out access of a kVec-channel vector is aligned to its full width.
template <typename T>
bool prefill_vec_ok(const Conv1dParams<T>& p, int vec) {
  const int64_t bytes = int64_t(vec) * int64_t(sizeof(T));
  return p.C % vec == 0 && is_aligned(p.x, bytes) && is_aligned(p.out, bytes) && p.x_token_stride % vec == 0 &&
         p.out_token_stride % vec == 0 && (p.B <= 1 || (p.x_batch_stride % vec == 0 && p.out_batch_stride % vec == 0));
}
}  // namespace detail

// Launches one named variant (benchmarks time each Traits by name).
template <typename Traits, typename T>
Status run_with(const Conv1dParams<T>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if (!detail::prefill_vec_ok(p, Traits::kVec)) return Status::kErrorMisaligned;
  if constexpr (detail::kIsI8<T>)
    if (!detail::silu_form_ok(p.scale_wx, p.s_b, p.inv_s_out, p.K, Traits::kSilu)) return Status::kErrorNotSupported;
  if (p.B == 0) return Status::kSuccess;
  if (p.L == 0) {
    // An empty chunk leaves the state as it was: state_out = state_in (zeros without one).
    if (!p.state_out || p.state_out == p.state_in) return Status::kSuccess;
    const size_t row = size_t(p.C) * size_t(p.K) * sizeof(T);
    const size_t out_pitch = p.B > 1 ? size_t(p.state_out_batch_stride) * sizeof(T) : row;
    if (p.state_in) {
      const size_t in_pitch = p.B > 1 ? size_t(p.state_in_batch_stride) * sizeof(T) : row;
      return from_cuda(cudaMemcpy2DAsync(p.state_out, out_pitch, p.state_in, in_pitch, row, size_t(p.B),
                                         cudaMemcpyDeviceToDevice, stream));
    }
    return from_cuda(cudaMemset2DAsync(p.state_out, out_pitch, 0, row, size_t(p.B), stream));
  }
  const int64_t nvec = p.C / Traits::kVec;
  int64_t run_len = Traits::kTokens;
  if constexpr (detail::kIsI8<T> && Traits::kSpread) {
    // One wave of resident threads; each (sequence, channel vector) gets `slots` equal shares
    // of the tokens, a multiple of kLoadAhead long and at least kTokens.
    int dev = 0, sms = 0;
    QUAMBA_RETURN_IF_ERROR(from_cuda(cudaGetDevice(&dev)));
    QUAMBA_RETURN_IF_ERROR(from_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)));
    const int64_t resident = int64_t(sms) * Traits::kMinBlocks * Traits::kThreads;
    int64_t slots = resident / (nvec * p.B);
    const int64_t max_slots = (p.L + Traits::kTokens - 1) / Traits::kTokens;
    slots = slots < 1 ? 1 : (slots > max_slots ? max_slots : slots);
    run_len = (p.L + slots - 1) / slots;
    run_len = (run_len + Traits::kLoadAhead - 1) / Traits::kLoadAhead * Traits::kLoadAhead;
  }
  const int64_t threads = nvec * ((p.L + run_len - 1) / run_len);
  const int64_t blocks = (threads + Traits::kThreads - 1) / Traits::kThreads;
  if (blocks > 0x7fffffff) return Status::kErrorNotSupported;
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(p.B));
  return dispatch_int<2, 3, 4>(p.K, [&](auto kw) {
    constexpr int K = decltype(kw)::value;
    if constexpr (detail::kIsI8<T>)
      return launch_kernel(detail::conv1d_prefill_i8_kernel<Traits, K>, grid,
                           dim3(Traits::kThreads), 0, stream, p.pdl, p, run_len, threads,
                           detail::DivU31::make(static_cast<uint32_t>(nvec)));
    else
      return launch_kernel(detail::conv1d_prefill_f16_kernel<Traits, K>, grid, dim3(Traits::kThreads), 0, stream,
                           p.pdl, p);
  });
}

template <typename T>
Status run(const Conv1dParams<T>& p, void* /*workspace*/, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if constexpr (detail::kIsI8<T>) {
    // H100 (bench_conv1d, copy 2.99 TB/s; time per launch, x a slice of xz, K = 4):
    //   E=5120 M=8192: 8x8a4 38.6 µs, 8x8 38.3, 16xS8 39.7, 8xS8 40.8, 4x8 43.4, 16x8 40.1
    //                  (previous 16x32 kernel: 63.5)
    //   E=5120 M=2048: 8x8a4 14.0, 8xS8 14.0, 4x8 14.9 (previous 16x8: 25.9)
    //   E=1536 M=8192: 8x8a4 15.7, 8xS8 15.6, 4x8 16.3 (previous 16x8: 27.5)
    //   E=1536 M=2048: 4x8 7.02, 4xS8 7.24, 8x8a4 8.08 (previous 16x8: 16.6)
    //   M=1:           4x8 2.55 / 2.72 (E=1536 / 5120, CUDA graph), 8x8a4 4.70 / 4.77
    // Short 8-token runs win everywhere: one DRAM round trip per thread and a grid of several
    // waves. 4-channel threads win below ~100K 8-channel runs (twice the threads in flight for
    // a problem that cannot fill the machine); the spread (one-wave, long-share) variants did
    // not beat them, so the SiLU/requantize issue rate, not latency, is what remains.
    // The pair-reciprocal forms of the same two configs (bench_conv1d, H200, same run): E=5120
    // M=2048 13.1 -> 12.6 µs, M=8192 36.0 -> 35.9; E=1536 M=8192 14.4 -> 14.0, M=2048 (4x8)
    // 6.62 -> 6.57; never slower, so they were the defaults.
    // The pair-FMA forms (same configs and register caps, no spills) do the same arithmetic in
    // 12.75 instead of 13.75 issue slots per channel-token (conv_i8_out_bits_pair_fma), same MUFU
    // count. Not yet measured; with the per-run savings every variant got (~0.8 slots per
    // channel-token at 8 channels x 8 tokens, ~1.4 at 4 x 8) the defaults go from ~16.7 to
    // ~14.9 slots (-11%). Expected: the exposed compute of a launch (its excess over the DRAM
    // time, ~6 µs at E=5120 M=2048) shrinks by about that, i.e. E=5120 M=2048 13.0 -> ~12.3 µs,
    // E=1536 M=8192 14.4 -> ~13.6, E=1536 M=2048 6.8 -> ~6.4, E=5120 M=8192 35.8 -> ~35 (H100);
    // never slower. They need |v| < 2^60 (any realistic scales); otherwise the pair-rcp forms run.
    const bool pair_fma = detail::silu_form_ok(p.scale_wx, p.s_b, p.inv_s_out, p.K, kSiluPairFma);
    const int64_t runs8 = int64_t(p.C / 8) * ((p.L + 7) / 8) * p.B;
    if (!detail::prefill_vec_ok(p, 8) || runs8 < 100000)
      return pair_fma ? run_with<Conv1dI8Traits4x8F>(p, stream) : run_with<Conv1dI8Traits4x8P>(p, stream);
    return pair_fma ? run_with<Conv1dI8Traits8x8a4F>(p, stream) : run_with<Conv1dI8Traits8x8a4P>(p, stream);
  } else {
    // fp16 (H200, bench_conv1d, x a slice of xz, K = 4, µs at E=5120 M=2048 / 8192, E=1536 M=2048 /
    // 8192; bench/RESULTS.md run AB): 4x8 (8-byte accesses, the whole 8-token run in one round,
    // 95 registers) 28.5 / 91.6 / 12.9 / 32.7; 4x8a4 31.5 / 108 / 14.4 / 37.6; 8x16a4 with a
    // register cap 39.5 / 124 / 19.1 / 40.8; the previous default (8x16, 4 tokens per round, 187
    // registers, this kernel's earlier form) 39.6 / 126 / 19.1 / 41.2 from the previous tree in
    // the same call.
    // The 8-channel forms need 133-187 registers (fp32 taps, window and converted inputs for 8
    // channels), so too few threads are resident to keep DRAM busy; still ~35-45% of a copy.
    return detail::prefill_vec_ok(p, 4) ? run_with<Conv1dF16Traits4x8>(p, stream)
                                        : run_with<Conv1dF16Traits1x16>(p, stream);
  }
}

// ------------------------------------------------------------------------------ decode API ---

template <typename T>
Status can_implement(const Conv1dUpdateParams<T>& p) {
  if (p.x == nullptr || p.out == nullptr || p.state == nullptr || p.weight == nullptr) return Status::kErrorInvalidArgument;
  if (p.B < 0 || p.C <= 0 || p.num_slots < 0) return Status::kErrorInvalidArgument;
  if (p.K < 2 || p.K > kMaxWidth) return Status::kErrorNotSupported;
  if (p.B > kMaxBatch) return Status::kErrorNotSupported;
  if (p.B > 1 && (p.x_batch_stride < p.C || p.out_batch_stride < p.C)) return Status::kErrorInvalidArgument;
  if (p.num_slots > 1 && p.state_batch_stride < static_cast<int64_t>(p.C) * p.K) return Status::kErrorInvalidArgument;
  if (!p.state_idx && p.B > p.num_slots) return Status::kErrorInvalidArgument;
  if (!is_aligned(p.state_idx, 4) || !is_aligned(p.error_flag, 4)) return Status::kErrorMisaligned;
  if constexpr (detail::kIsI8<T>) {
    QUAMBA_RETURN_IF_ERROR(detail::check_i8_scales(p.scale_wx, p.s_b, p.inv_s_out, p.K));
  } else {
    if (!is_aligned(p.x, 2) || !is_aligned(p.out, 2) || !is_aligned(p.state, 2) || !is_aligned(p.weight, 4) ||
        !is_aligned(p.bias, 4))
      return Status::kErrorMisaligned;
  }
  return Status::kSuccess;
}

template <typename T>
size_t workspace_size(const Conv1dUpdateParams<T>&) { return 0; }

template <typename Traits, typename T>
Status run_with(const Conv1dUpdateParams<T>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement(p));
  if (p.B == 0) return Status::kSuccess;
  constexpr int kPerBlock = Traits::kThreads * Traits::kChannels;
  const dim3 grid(static_cast<unsigned>((p.C + kPerBlock - 1) / kPerBlock), static_cast<unsigned>(p.B));
  return dispatch_int<2, 3, 4>(p.K, [&](auto kw) {
    return launch_kernel(detail::conv1d_update_kernel<Traits, decltype(kw)::value, T>, grid,
                         dim3(Traits::kThreads), 0, stream, p.pdl, p);
  });
}

template <typename T>
Status run(const Conv1dUpdateParams<T>& p, void* /*workspace*/, cudaStream_t stream) {
  return run_with<Conv1dUpdateTraitsDefault>(p, stream);
}

}  // namespace quamba::conv1d
