// quamba/gemm/gemm_sm90.cuh: int8 GEMM for sm_90a: TMA + mbarrier pipeline + wgmma, warp-specialized.
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ ), same Params, rules and epilogues as every path
//   (gemm/params.cuh, gemm/epilogue.cuh); bit-exact against the reference.
// One CTA = 3 warpgroups: warpgroup 0 is the producer (one thread issues TMA loads of 128-byte
// K-slices of A and W into a kStages ring, each stage guarded by a "full" mbarrier with a
// transaction count and an "empty" mbarrier released by the consumers); warpgroups 1 and 2 each
// own half of the kBM x kBN C tile (64 or 128 rows; kBN = 128, 160 or 256), or, in the ping-pong
// kernels, whole tiles in turn, and issue wgmma.m64nkBNk32.s32.s8.s8 from shared memory (both
// operands K-major, 128-byte swizzle, the layout TMA writes), keeping one K-slice of wgmma in
// flight. TMA zero-fills out-of-bounds boxes, which handles the M, N and K tails.
// The tensor maps are built on the host with cuTensorMapEncodeTiled obtained through the runtime's
// driver entry point, so no -lcuda is needed.
//
// Device code exists only when compiled for sm_90a (QUAMBA_SM90A_ENABLED); otherwise the kernel
// traps. run_sm90a() therefore refuses (kErrorArchNotSupported) unless the device is sm_90 and the
// kernel image loaded for it was built from compute_90 PTX or newer (cudaFuncGetAttributes); a
// build for plain "90" (not "90a") is not detectable from the host and is unsupported.
// Selected by GemmPath::kAuto on sm_90 for M >= kSm90aMinM when the problem has enough 128 x 128
// tiles to fill half the SMs (gemm.cuh); forced with GemmPath::kSm90a or run_sm90a<Epi, Traits>.
//
// Variants (Traits): the one-tile-per-CTA kernel (128x128 s5, 128x128 s7, 128x256 s4; 128x192 s5
// for split-K) and the persistent kernel (grid = #SMs, each CTA walks tiles in a grouped raster
// order; its producer
// keeps loading the next tile's K-slices while the consumers run the epilogue of the current one,
// so a tile's pipeline fill overlaps the previous epilogue; in the cooperative form the tensor
// cores still wait for the epilogue; kPingPong: the two consumer warpgroups take whole tiles in
// turn, so one's epilogue runs under the other's K loop). kStagedStore:
// 1-byte outputs (Requant) go through a shared-memory tile and leave the SM as 16-byte row-contiguous
// stores instead of 2-byte pairs scattered over 8 rows. kClusterM = 2: the persistent kernel runs
// as clusters of two CTAs on vertically adjacent tiles; each loads its A slice and half of the
// shared W slice, which TMA multicasts into both rings (W leaves L2 once per pair), and each
// consumer warp releases a stage to both producers; with kShareA the pair sits on horizontally
// adjacent tiles and shares A the same way (Sm90aClusterA256x160). The persistent kernels also
// prefetch the residual of a Dequant epilogue into L2 half-way through each tile's K loop. The
// multicast kernels are correct but measured slower than the one-CTA persistent ones
// (run_sm90a_auto): with a cluster-scope release on every remote arrive 1.5-1.8x, with the default
// CTA-scope one (now) 1.01-1.09x (H200, bench/RESULTS.md run X); the A-sharing 256x160 pairs, with
// 31% fewer L2 bytes than the one-CTA 256x160, 1.03-1.06x (run AB). Split-K (run_sm90a_split_k): the one-tile kernel
// over a range of K-slices per CTA (grid z), into a workspace reduced by the split-K reduce kernel;
// run_sm90a_split_k_cluster: the same K-slices as one cluster per tile (at most 8 splits, fewer
// where the clusters would not all be resident at once), reduced through distributed shared
// memory (gemm_sm90a_cluster_split_kernel).
// kBM = 256 (persistent only, Sm90aPersistent256x160): each consumer warpgroup owns 128 rows as two
// m64 blocks sharing every W slice (160 accumulators per thread; the producer warpgroup hands
// registers to the consumers with setmaxnreg), which cuts the L2 -> SM operand bytes per MAC by 28%
// against 128x160. run_sm90a_auto gives Dequant epilogues (out_proj) 256x160 when its tiles fill
// one wave, else the ping-pong 128x160 (dequant_prefers_256x160); the 256x160 kernel's last tile
// per CTA takes its residual from the stage ring (kResidualRing). Whole 64-row blocks of a
// per-tensor Requant (finite alpha, no column scale) skip the per-output bounds and tests.
// Programmatic dependent launch (GemmParams::pdl, core/launch.cuh): every kernel leaves the next
// launch's trigger implicit (at exit). Its producer thread requests the W slices of the first
// ring round (of its first tile) before the dependency wait, since no kernel of the chain writes
// weights, and the A slices after it; the consumers wait before their first slice, so the
// residual reads and C writes of the epilogue come after it too.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "quamba/core/arch.hpp"
#include "quamba/core/cuda_check.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/mbarrier.cuh"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_map.hpp"
#include "quamba/gemm/epilogue.cuh"
#include "quamba/gemm/gemm_sm80.cuh"
#include "quamba/gemm/params.cuh"

namespace quamba::gemm {

inline constexpr bool sm90a_dispatch_enabled() { return true; }

template <int kBN_, int kStages_, bool kPersistent_ = false, int kGroupM_ = 1, bool kStagedStore_ = false,
          int kCluster_ = 1, int kBM_ = 128, bool kPingPong_ = false, bool kShareA_ = false>
struct Sm90aTraits {
  // Two consumer warpgroups, each kBM/2 rows = kMBlocks wgmma m64 row blocks; or, kPingPong, each
  // consumer warpgroup a whole tile of its own (all kBM rows): the two take the persistent CTA's
  // tiles in turn, so one's epilogue runs while the other's K loop has the tensor cores.
  static constexpr bool kPingPong = kPingPong_;
  static constexpr int kBM = kBM_;
  static constexpr int kBN = kBN_;  // wgmma n128 / n160 / n256: kBN/2 int32 accumulators per m64 block
  static constexpr int kRowsPerConsumer = kPingPong ? kBM : kBM / 2;
  static constexpr int kMBlocks = kRowsPerConsumer / 64;
  static constexpr int kAccumulators = kMBlocks * kBN / 2;
  // kBM = 256: 160 accumulators per consumer thread do not fit the 168 registers that 384 threads
  // get by default; the producer warpgroup gives registers back (setmaxnreg) so that each consumer
  // thread can hold 232 (40 + 2 x 232 = 3 x 168).
  static constexpr bool kSplitRegisters = kRowsPerConsumer == 128;
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
  static constexpr int kBK = 128;  // bytes of K per stage = one 128-byte swizzle row
  static constexpr int kStages = kStages_;
  static constexpr int kConsumerWarpgroups = 2;
  // Consumer warpgroups that read each ring stage (and release it).
  static constexpr int kStageReaders = kPingPong ? 1 : kConsumerWarpgroups;
  static constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
  static constexpr int kStageBytesA = kBM * kBK;
  static constexpr int kStageBytesB = kBN * kBK;
  // Persistent: one CTA per SM loops over tiles; kGroupM M-tiles per raster band.
  static constexpr bool kPersistent = kPersistent_;
  static constexpr int kGroupM = kGroupM_;
  // 1-byte outputs staged through shared memory (a region of its own: in the persistent kernel the
  // stage ring is already being refilled with the next tile while the epilogue runs).
  static constexpr bool kStagedStore = kStagedStore_;
  static constexpr int kStoreBytes = kStagedStore ? kBM * kBN : 0;
  // kCluster = 2 (kClusterM = 2): a cluster of two CTAs on vertically adjacent tiles (same W
  // columns). Each CTA loads its own A slice and half of the W slice, which TMA multicasts into
  // both CTAs' rings, so every W byte leaves L2 once per pair: 32 instead of 48 KiB of L2 traffic
  // per 128x256x128 step.
  // (Motivation: the one-CTA kernels move ~6.8 TB/s out of L2 at both 128 and 256 wide on H100,
  // which points at L2 bandwidth; the multicast kernels nevertheless measured slower, see below.)
  // kShareA (with a cluster of two): the pair sits on horizontally adjacent tiles (same A rows)
  // instead, each CTA loads its own W slice and half of the shared A slice, which TMA multicasts
  // into both rings (A leaves L2 once per pair). For 256x160 tiles (out_proj) that is 16 + 20 KiB
  // of L2 reads per CTA and K-slice instead of 32 + 20.
  static constexpr bool kShareA = kShareA_;
  static constexpr int kCluster = kCluster_;                // CTAs per cluster
  static constexpr int kClusterM = kShareA ? 1 : kCluster;  // tiles per cluster along M (W shared)
  static constexpr int kClusterN = kShareA ? kCluster : 1;  // tiles per cluster along N (A shared)
  static constexpr int kBoxRowsW = kBN / kClusterM;  // W rows per TMA box (per CTA of the cluster)
  static constexpr int kBoxRowsA = kBM / kClusterN;  // A rows per TMA box (per CTA of the cluster)
  // +1024: the dynamic smem base is rounded up to 1024 B, the period of the 128-byte swizzle, so
  // the wgmma descriptors can use base offset 0.
  // (+2 barriers: the ping-pong turn of each consumer warpgroup.)
  static constexpr int kSmemBytes =
      kStages * (kStageBytesA + kStageBytesB) + kStoreBytes + 2 * kStages * 8 + 2 * 8 + 1024;
  // Residual ring (cooperative persistent kernels with two m64 blocks per consumer, kBN <= 160:
  // the 256x160 out_proj tile): the fp32 residual of a CTA's last tile comes into the stage ring as
  // kBM/64 extra ring positions of 64 rows each, by 1-D bulk copies that the producer issues as the
  // tile's last K-slices drain, so the epilogue reads it from shared memory instead of waiting on
  // ~2·kBN/8 batches of global loads per thread (a third of out_proj's samples, H200 ncu; the
  // kernel measured 53.4 -> 51.7 us at M = 2048, less than that share, bench/RESULTS.md run AG). A
  // position's rows go into the stage's A region (the first kResRowsInA) and W region (the rest),
  // kResPitch bytes apart: 32 bytes of padding move each row by 8 banks, so the 16 lanes of a
  // 64-bit shared load phase (4 rows x 4 column pairs) hit distinct banks.
  static constexpr int kResPitch = kBN * 4 + 32;
  static constexpr int kResRowsInA = (kStageBytesA / kResPitch) / 16 * 16;
  static constexpr bool kResidualRing = kPersistent && !kPingPong && kCluster == 1 && kMBlocks == 2 && kBN <= 160 &&
                                        kResRowsInA <= 64 && (64 - kResRowsInA) * kResPitch <= kStageBytesB;
  static_assert(kBN == 128 || kBN == 160 || kBN == 192 || kBN == 256, "wgmma tile width 128, 160, 192 or 256");
  static_assert(kBM == 128 || kBM == 256, "128 or 256 rows (one or two m64 blocks per consumer warpgroup)");
  static_assert(kMBlocks <= 2, "the persistent kernel's epilogue handles one or two m64 blocks");
  // 256 rows only in the plain persistent kernel, at widths whose accumulators fit 232 registers.
  static_assert(kBM == 128 || (kPersistent && kClusterM == 1 && !kStagedStore && kBN <= 160),
                "256-row tiles: persistent, no W multicast, direct stores, kBN <= 160");
  static_assert(kCluster == 1 || (kCluster == 2 && kPersistent), "multicast pairs only in the persistent kernel");
  static_assert(!kShareA || kCluster == 2, "A multicast needs a pair");
  static_assert(!kPingPong || (kPersistent && kBM == 128 && kCluster == 1 && !kStagedStore && kBN <= 160),
                "ping-pong: persistent, 128-row tiles, one CTA, direct stores, kBN <= 160 (kBN accumulators)");
  static_assert(kGroupM % kClusterM == 0, "raster bands of whole clusters");
  // Each CTA's multicast W box must start on a 1024-byte swizzle period (8 rows of 128 B) so that
  // the two halves form one 128B-swizzled operand for the wgmma descriptor.
  static_assert((kBoxRowsW * kBK) % 1024 == 0, "W half-slices on 1024-byte boundaries");
  static_assert((kBoxRowsA * kBK) % 1024 == 0, "A half-slices on 1024-byte boundaries");
  static_assert(!kStagedStore || kBN % 128 == 0, "the staging XOR swizzle needs 8 | kBN/16");
  static_assert(kStages >= 2, "a pipeline needs at least two stages");
  static_assert(kGroupM >= 1, "raster bands of at least one M-tile");
  static_assert(kSmemBytes <= 227 * 1024, "H100 allows 227 KiB of shared memory per block");
};

// 5 stages x 32 KiB: one CTA per SM, 4 K-slices in flight while one is consumed.
using Sm90aTile128x128 = Sm90aTraits<128, 5>;
// 4 stages x 48 KiB: 1.5x the MACs per byte of L2 traffic of the 128x128 tile (L2 -> SM bandwidth,
// not the tensor cores, bounds the smaller tile on H100); 128 accumulators per consumer thread.
using Sm90aTile128x256 = Sm90aTraits<256, 4>;
// 5 stages x 40 KiB: the split-K tile for layers 129..192 wide (x_proj: dt_rank + 2·d_state =
// 192 at d_model 2560), which the 256-wide tile covers with a quarter of its MACs wasted.
using Sm90aTile128x192 = Sm90aTraits<192, 5>;
// 7 stages x 32 KiB (224 KiB): the deepest ring that fits, for latency-bound short-K problems.
using Sm90aTile128x128S7 = Sm90aTraits<128, 7>;
// Persistent, grouped raster of 8 M-tiles; 4 x 48 KiB ring; direct 2-byte-pair stores.
using Sm90aPersistent128x256 = Sm90aTraits<256, 4, true, 8, false>;
// Same with the 1-byte-output tile staged in shared memory (+32 KiB) for 16-byte stores.
using Sm90aPersistent128x256St = Sm90aTraits<256, 4, true, 8, true>;
// Persistent 128x128, 6 x 32 KiB ring + 16 KiB staging: narrower N (out_proj) at full waves.
using Sm90aPersistent128x128St = Sm90aTraits<128, 6, true, 8, true>;
// Persistent 128x160, 6 x 36 KiB ring, direct stores: N = 2560 (out_proj at d_model 2560) splits
// into 16 column tiles, so M = 2048 gives 256 tiles = 1.94 waves on 132 SMs (128x256: 160 tiles,
// 1.21 waves, i.e. two rounds with 40% of the SMs idle in the second).
using Sm90aPersistent128x160 = Sm90aTraits<160, 6, true, 8, false>;
// Two-CTA clusters with W multicast (see kClusterM). Bit-exact, but slower than the one-CTA
// persistent kernels on the d_model 2560 shapes (H200, same run: out_proj M = 2048 71.4 against
// 65.9 us, in_proj 97.0 against 95.9; bench_gemm sm90a_c2_* rows), so run_sm90a_auto does not pick
// them; kept, tested and benchmarked for tuning. For scale, cuBLASLt's int8 kernel at out_proj's
// shape runs 128x128 tiles in clusters of 8 on 120 CTAs (ncu, run X).
using Sm90aCluster128x256St = Sm90aTraits<256, 4, true, 8, true, 2>;
using Sm90aCluster128x160 = Sm90aTraits<160, 6, true, 8, false, 2>;
// Persistent 256x160, 4 x 52 KiB ring, direct stores, setmaxnreg (160 accumulators per consumer
// thread). For out_proj at d_model 2560 (N = 2560, K = 5120): the 128x160 K loop is L2 -> SM
// bound (~6.6 TB/s at (1/128 + 1/160) bytes per MAC); 256 rows cut the operand bytes per MAC to
// 1/256 + 1/160 (-28%), and M = 2048 gives 8 x 16 = 128 tiles, one wave on 132 SMs.
using Sm90aPersistent256x160 = Sm90aTraits<160, 4, true, 8, false, 1, 256>;
// The same tile in clusters of two on horizontally adjacent tiles sharing A (kShareA): per CTA
// and K-slice 36 instead of 52 KiB of L2 reads; out_proj M = 2048 is 64 pairs, one wave.
// Bit-identical to the one-CTA kernel, and slower: out_proj d_model 2560 M = 2048 / 8192 56.2 /
// 197 us against 52.9 / 192 (H200, alternating launches, bench/RESULTS.md run AB5), so the one-CTA
// kernel's L2 read bytes are not what bounds it. Not dispatched; kept, tested and benchmarked.
using Sm90aClusterA256x160 = Sm90aTraits<160, 4, true, 8, false, 2, 256, false, true>;
// Ping-pong (kPingPong): 128x160 tiles (out_proj at d_model 2560, as Sm90aPersistent128x160) and
// 128x128 tiles, each consumer warpgroup one whole tile at a time (kBN accumulators per thread,
// setmaxnreg as for 256 rows), the epilogue of one tile under the K loop of the next.
using Sm90aPingPong128x160 = Sm90aTraits<160, 6, true, 8, false, 1, 128, true>;
using Sm90aPingPong128x128 = Sm90aTraits<128, 7, true, 8, false, 1, 128, true>;

template <typename Traits>
constexpr const char* sm90a_name() {
  if constexpr (std::is_same_v<Traits, Sm90aTile128x128>) return "sm90a_128x128x128_s5";
  else if constexpr (std::is_same_v<Traits, Sm90aTile128x256>) return "sm90a_128x256x128_s4";
  else if constexpr (std::is_same_v<Traits, Sm90aTile128x128S7>) return "sm90a_128x128x128_s7";
  else if constexpr (std::is_same_v<Traits, Sm90aPersistent128x256>) return "sm90a_p_128x256x128_s4_g8";
  else if constexpr (std::is_same_v<Traits, Sm90aPersistent128x256St>) return "sm90a_p_128x256x128_s4_g8_st16";
  else if constexpr (std::is_same_v<Traits, Sm90aPersistent128x128St>) return "sm90a_p_128x128x128_s6_g8_st16";
  else if constexpr (std::is_same_v<Traits, Sm90aPersistent128x160>) return "sm90a_p_128x160x128_s6_g8";
  else if constexpr (std::is_same_v<Traits, Sm90aCluster128x256St>) return "sm90a_c2_128x256x128_s4_g8_st16";
  else if constexpr (std::is_same_v<Traits, Sm90aCluster128x160>) return "sm90a_c2_128x160x128_s6_g8";
  else if constexpr (std::is_same_v<Traits, Sm90aPingPong128x160>) return "sm90a_pp_128x160x128_s6_g8";
  else if constexpr (std::is_same_v<Traits, Sm90aPingPong128x128>) return "sm90a_pp_128x128x128_s7_g8";
  else if constexpr (std::is_same_v<Traits, Sm90aPersistent256x160>) return "sm90a_p_256x160x128_s4_g8";
  else if constexpr (std::is_same_v<Traits, Sm90aClusterA256x160>) return "sm90a_c2a_256x160x128_s4_g8";
  else return "sm90a_custom";
}

// Largest split count of the cluster form (run_sm90a_split_k_cluster): the portable cluster size.
inline constexpr int kSm90aMaxClusterSplits = 8;

namespace detail {

#if QUAMBA_HAS_CUDA_COMPILER

using quamba::detail::mbar_arrive;
using quamba::detail::mbar_arrive_expect_tx;
using quamba::detail::mbar_init;
using quamba::detail::mbar_wait;
QUAMBA_DEVICE void tma_load_2d(uint32_t dst, const CUtensorMap* map, int c_inner, int c_row, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c_inner), "r"(c_row), "r"(bar)
      : "memory");
}
// W half-slice into the same ring position of every CTA in ctamask; each destination CTA's
// barrier at the same offset receives the bytes that land in it.
QUAMBA_DEVICE void tma_load_2d_multicast(uint32_t dst, const CUtensorMap* map, int c_inner, int c_row, uint32_t bar,
                                         uint16_t ctamask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
      "%3}], [%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c_inner), "r"(c_row), "r"(bar), "h"(ctamask)
      : "memory");
}
QUAMBA_DEVICE uint32_t cluster_ctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
// Arrive on the barrier at the same shared-memory offset in CTA `cta` of the cluster. The default
// semantics (release, CTA scope) suffice: the arriving consumer's shared-memory reads are wgmmas
// already retired by wgmma.wait_group, and the peer's producer only overwrites the stage through
// TMA after it observes the phase (a cluster-scope release here made the multicast kernels
// 1.3-1.4x slower, bench/RESULTS.md run X2).
QUAMBA_DEVICE void mbar_arrive_remote(uint32_t bar, uint32_t cta) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(bar),
      "r"(cta)
      : "memory");
}
// Every thread of both CTAs: barrier initialisation visible before any remote arrive or multicast,
// and no CTA exits (its shared memory gone) while its peer may still arrive on its barriers.
QUAMBA_DEVICE void cluster_sync_all() {
  asm volatile("barrier.cluster.arrive.release;\n" ::: "memory");
  asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory");
}
QUAMBA_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
QUAMBA_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
QUAMBA_DEVICE void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Keeps the compiler from moving accumulator reads/writes across wgmma issue/wait points.
template <int kN>
QUAMBA_DEVICE void fence_operands(int32_t (&d)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// Shared-memory matrix descriptor: K-major operand, rows of 128 bytes, 128-byte swizzle;
// 8-row core groups are 1024 bytes apart (stride byte offset); the leading byte offset is unused
// for swizzled K-major layouts (1 by convention).
QUAMBA_DEVICE uint64_t smem_desc_sw128(uint32_t smem_addr) {
  return static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

// D(64 x 128, s32) (+)= A(64 x 32, s8, smem) · B(128 x 32, s8, smem)ᵀ; accumulate = 0 overwrites D.
QUAMBA_DEVICE void wgmma_m64n128k32_s8(int32_t (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D(64 x 160, s32) (+)= A(64 x 32) · B(160 x 32)ᵀ.
QUAMBA_DEVICE void wgmma_m64n160k32_s8(int32_t (&d)[80], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %82, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n160k32.s32.s8.s8 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79"
      "}, %80, %81, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
        "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
        "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D(64 x 192, s32) (+)= A(64 x 32) · B(192 x 32)ᵀ.
QUAMBA_DEVICE void wgmma_m64n192k32_s8(int32_t (&d)[96], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k32.s32.s8.s8 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
      "}, %96, %97, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
        "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
        "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]),
        "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]),
        "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D(64 x 256, s32) (+)= A(64 x 32) · B(256 x 32)ᵀ.
QUAMBA_DEVICE void wgmma_m64n256k32_s8(int32_t (&d)[128], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
      "}, %128, %129, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
        "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
        "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]),
        "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]),
        "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]),
        "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]),
        "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]),
        "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]),
        "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// The wgmma of a consumer warpgroup for the tile width kBN.
template <int kBN>
QUAMBA_DEVICE void wgmma_tile(int32_t (&d)[kBN / 2], uint64_t desc_a, uint64_t desc_b) {
  if constexpr (kBN == 128) wgmma_m64n128k32_s8(d, desc_a, desc_b, 1);
  else if constexpr (kBN == 160) wgmma_m64n160k32_s8(d, desc_a, desc_b, 1);
  else if constexpr (kBN == 192) wgmma_m64n192k32_s8(d, desc_a, desc_b, 1);
  else wgmma_m64n256k32_s8(d, desc_a, desc_b, 1);
}

// Register reallocation between warpgroups (sm_90a): every thread of the warpgroup executes it.
template <int kRegs>
QUAMBA_DEVICE void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
QUAMBA_DEVICE void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

QUAMBA_DEVICE void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// The short Requant form of a consumer warpgroup's 64 x kBN int8 block into its staging block
// (per-tensor alpha, finite, so float(acc)·alpha is finite and needs no NaN test; the caller
// knows the block is wanted whole): per output I2FP, FMUL and round_i8_bits, two low bytes per
// 2-byte shared store, chunk c of row r at chunk c ^ (r % 8) (the 128-byte swizzle for kBN = 128).
// Same bits as Requant::apply.
// (w, g, t): the thread's warp in the warpgroup, lane / 4 and lane % 4 (the accumulator layout).
template <int kBN>
QUAMBA_DEVICE void stage_requant_short(const int32_t (&acc)[kBN / 2], float alpha, uint8_t* stage, int w, int g,
                                       int t) {
  const auto bits = [alpha](int32_t a) { return round_i8_bits(__fmul_rn(static_cast<float>(a), alpha)); };
  uint8_t* base = stage + (w * 16 + g) * kBN + 2 * t;
#pragma unroll
  for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      *reinterpret_cast<uint16_t*>(base + 8 * h * kBN + ((((j >> 1) ^ g) << 4) | ((j & 1) * 8))) =
          static_cast<uint16_t>(__byte_perm(bits(acc[4 * j + 2 * h]), bits(acc[4 * j + 2 * h + 1]), 0x0040));
}

// Whether store_block's Dequant path may take its vectorized form for the 64-row block at (row0,
// n0): the block lies wholly inside C, C takes pair stores (pair_ok), and col_scale, bias and the
// residual rows are 8-byte aligned at every even column.
template <typename Traits, typename Epilogue>
QUAMBA_DEVICE bool dequant_block_vectorizable(const GemmParams<Epilogue>& p, bool pair_ok, int64_t row0, int64_t n0) {
  const Epilogue& e = p.epilogue;
  const auto aligned8 = [](const float* q) { return (reinterpret_cast<uintptr_t>(q) & 7u) == 0; };
  return pair_ok && row0 + 64 <= p.M && n0 + Traits::kBN <= p.N && (e.col_scale == nullptr || aligned8(e.col_scale)) &&
         (e.bias == nullptr || aligned8(e.bias)) && (e.residual == nullptr || (aligned8(e.residual) && e.ldr % 2 == 0));
}

// Writes one consumer warpgroup's 64 x kBN accumulator block (rows row0.., columns n0..).
// Accumulator layout of m64nN: warp w of the warpgroup owns rows 16w..16w+15; register 4j+e
// holds row g (+8 for e >= 2), column 8j + 2t (+1 for odd e), g = lane/4, t = lane%4.
// Direct: every thread stores its column pairs (2 bytes per row for int8: 8-byte row pieces).
// Staged (kStagedStore, 1-byte outputs, wide_ok: ldc % 16 == 0 and C 16-byte aligned): the
// warpgroup writes its int8 block into shared memory, then each thread stores whole 16-byte row
// chunks, so a warp writes two full 256-byte row segments per instruction.
// kResidualOnly (Dequant; the caller has checked that col_scale and bias are null): no registers
// go to col_scale / bias, so a batch can be twice as wide in the same registers.
template <typename Traits, int kBatch = 4, bool kResidualOnly = false, typename Epilogue>
QUAMBA_DEVICE void store_block(const GemmParams<Epilogue>& p, bool pair_ok, bool wide_ok,
                               const int32_t (&acc)[Traits::kBN / 2], int64_t row0, int64_t n0,
                               uint8_t* stage, int consumer) {
  using Output = typename Epilogue::Output;
  const int lt = threadIdx.x % 128;
  const int lane = lt & 31, w = lt >> 5;
  const int g = lane >> 2, t = lane & 3;
  if constexpr (Traits::kStagedStore && sizeof(Output) == 1) {
    if (wide_ok) {
      constexpr int kChunks = Traits::kBN / 16;  // 16-byte chunks per row of the block
      static_assert(kChunks >= 8, "the XOR swizzle needs 8 chunks per row");
      // Chunk c of row r lives at chunk c ^ (r % 8): the 8 rows g of one store instruction hit 8
      // distinct 16-byte bank groups (the row pitch is a multiple of 128 B, so without the XOR all
      // 8 rows would share one), and the 8 lanes of a 16-byte read phase still read 8 distinct
      // chunks of one row.
      // A whole block of a plain Requant (per-tensor alpha, finite, no column scale) fills the
      // staging block in a short form: no bounds, no column-scale test and no NaN test per element
      // (float(acc)·alpha is finite), two round_i8_bits low bytes per 2-byte store. Same bits as
      // apply() (the general form below spent ~15 instructions per output and made the epilogue
      // ~30% of in_proj's consumer time, H200 ncu source counters). Both share the copy-out.
      bool staged = false;
      if constexpr (std::is_same_v<Epilogue, Requant>) {
        const bool whole = row0 + 64 <= p.M && n0 + Traits::kBN <= p.N;
        if (whole && p.epilogue.col_scale == nullptr && isfinite(p.epilogue.alpha)) {
          stage_requant_short<Traits::kBN>(acc, p.epilogue.alpha, stage, w, g, t);
          staged = true;
        }
      }
      if (!staged) {
#pragma unroll
        for (int j = 0; j < Traits::kBN / 8; ++j) {
          const int64_t n = n0 + 8 * j + 2 * t;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = w * 16 + g + 8 * h;
            const int64_t m = row0 + r;
            // Out-of-range elements are never evaluated (col_scale[n] would be read past N) and
            // never stored (the copy-out below skips them).
            const bool in_m = m < p.M;
            const int8_t lo = in_m && n < p.N ? p.epilogue.apply(acc[4 * j + 2 * h], m, n) : int8_t(0);
            const int8_t hi = in_m && n + 1 < p.N ? p.epilogue.apply(acc[4 * j + 2 * h + 1], m, n + 1) : int8_t(0);
            const int off = r * Traits::kBN + (((j >> 1) ^ (r & 7)) << 4) + (j & 1) * 8 + 2 * t;
            *reinterpret_cast<uint16_t*>(stage + off) = static_cast<uint16_t>(
                static_cast<uint8_t>(lo) | (static_cast<uint16_t>(static_cast<uint8_t>(hi)) << 8));
          }
        }
      }
      named_barrier_sync(1 + consumer, 128);
#pragma unroll
      for (int i = 0; i < 64 * kChunks / 128; ++i) {
        const int q = lt + 128 * i;
        const int r = q / kChunks, c = q % kChunks;
        const int64_t m = row0 + r;
        const int64_t n = n0 + 16 * c;
        if (m < p.M && n < p.N) {
          const int4 v = *reinterpret_cast<const int4*>(stage + r * Traits::kBN + ((c ^ (r & 7)) << 4));
          Output* dst = p.C + m * p.ldc + n;
          if (n + 16 <= p.N) {
            *reinterpret_cast<int4*>(dst) = v;
          } else {
            const int8_t* b = reinterpret_cast<const int8_t*>(&v);
            for (int e = 0; e < 16 && n + e < p.N; ++e) dst[e] = b[e];
          }
        }
      }
      // The staging block is rewritten by the next tile's epilogue: every thread of the warpgroup
      // must be done reading it first.
      named_barrier_sync(1 + consumer, 128);
      return;
    }
  }
  const int64_t row = row0 + w * 16 + g;
  if constexpr ((std::is_same_v<Epilogue, DequantF32> || std::is_same_v<Epilogue, DequantF16>) &&
                Traits::kBN <= 160) {
    // Batches of kBatch column pairs: all their col_scale / bias / residual loads are issued before
    // any of their stores. Element by element, each residual load (L2 or DRAM latency) would wait
    // for the previous store, since residual may alias C: ~2·kBN/8 serialized round trips per
    // thread, which made the fp32 + residual epilogue of out_proj cost more than a tile's K loop.
    // In place (residual == C) stays exact: every thread reads its own elements before writing them.
    constexpr int kJ = Traits::kBN / 8;
    // kBatch column pairs per batch, 8 registers each. Not used at kBN = 256: 128 accumulators
    // leave no room (spills at kBatch = 2; kBatch = 1 measured 1.3x slower on out_proj than the
    // per-element path below).
    static_assert(kJ % kBatch == 0, "whole batches");
    const Epilogue& e = p.epilogue;
    if (dequant_block_vectorizable<Traits>(p, pair_ok, row0, n0)) {
      // The whole 64 x kBN block is inside C, and every operand pair is 8-byte aligned: per thread
      // two row pointers into C and residual at column n0 + 2t, constant offsets 8j from there, one
      // 8-byte load per column pair of col_scale / bias / residual and one pair store, no bounds
      // checks (the general path below spends ~30 instructions per output on index arithmetic and
      // checks, which made the epilogue ~a third of out_proj's consumer time).
      const int64_t c0 = n0 + 2 * t;
      Output* crow[2] = {p.C + row * p.ldc + c0, p.C + (row + 8) * p.ldc + c0};
      const float* rrow[2] = {e.residual ? e.residual + row * e.ldr + c0 : nullptr,
                              e.residual ? e.residual + (row + 8) * e.ldr + c0 : nullptr};
#pragma unroll
      for (int j0 = 0; j0 < kJ; j0 += kBatch) {
        float2 cs[kBatch], bi[kBatch], res[kBatch][2];
#pragma unroll
        for (int jj = 0; jj < kBatch; ++jj) {
          const int off = 8 * (j0 + jj);
          cs[jj] = !kResidualOnly && e.col_scale ? *reinterpret_cast<const float2*>(e.col_scale + c0 + off)
                                                 : make_float2(1.0f, 1.0f);
          bi[jj] = !kResidualOnly && e.bias ? *reinterpret_cast<const float2*>(e.bias + c0 + off)
                                            : make_float2(0.0f, 0.0f);
#pragma unroll
          for (int h = 0; h < 2; ++h)
            res[jj][h] = e.residual ? *reinterpret_cast<const float2*>(rrow[h] + off) : make_float2(0.0f, 0.0f);
        }
#pragma unroll
        for (int jj = 0; jj < kBatch; ++jj) {
          const int j = j0 + jj;
#pragma unroll
          for (int h = 0; h < 2; ++h)
            ptx::store2(crow[h] + 8 * j, e.apply_of(acc[4 * j + 2 * h], cs[jj].x, bi[jj].x, res[jj][h].x),
                        e.apply_of(acc[4 * j + 2 * h + 1], cs[jj].y, bi[jj].y, res[jj][h].y));
        }
      }
      return;
    }
#pragma unroll
    for (int j0 = 0; j0 < kJ; j0 += kBatch) {
      float cs[kBatch][2], bi[kBatch][2], res[kBatch][2][2];
#pragma unroll
      for (int jj = 0; jj < kBatch; ++jj)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int64_t n = n0 + 8 * (j0 + jj) + 2 * t + c;
          const bool in_n = n < p.N;
          cs[jj][c] = !kResidualOnly && e.col_scale && in_n ? e.col_scale[n] : 1.0f;
          bi[jj][c] = !kResidualOnly && e.bias && in_n ? e.bias[n] : 0.0f;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t m = row + 8 * h;
            res[jj][h][c] = e.residual && in_n && m < p.M ? e.residual[m * e.ldr + n] : 0.0f;
          }
        }
#pragma unroll
      for (int jj = 0; jj < kBatch; ++jj) {
        const int j = j0 + jj;
        const int64_t n = n0 + 8 * j + 2 * t;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t m = row + 8 * h;
          if (m >= p.M || n >= p.N) continue;
          Output* dst = p.C + m * p.ldc + n;
          const Output v0 = e.apply_of(acc[4 * j + 2 * h], cs[jj][0], bi[jj][0], res[jj][h][0]);
          if (n + 1 < p.N) {
            const Output v1 = e.apply_of(acc[4 * j + 2 * h + 1], cs[jj][1], bi[jj][1], res[jj][h][1]);
            if (pair_ok) {
              ptx::store2(dst, v0, v1);
            } else {
              dst[0] = v0;
              dst[1] = v1;
            }
          } else {
            dst[0] = v0;
          }
        }
      }
    }
  } else {
    if constexpr (std::is_same_v<Epilogue, Identity>) {
      // Split-K partials (int32) of a block whose 64 rows are all inside C: one row pointer per
      // thread, constant offsets, a column test per 8-column group instead of per element.
      if (pair_ok && row0 + 64 <= p.M) {
        int32_t* c0 = p.C + row * p.ldc + n0 + 2 * t;
#pragma unroll
        for (int j = 0; j < Traits::kBN / 8; ++j) {
          if (n0 + 8 * j + 8 <= p.N) {
            ptx::store2(c0 + 8 * j, acc[4 * j], acc[4 * j + 1]);
            ptx::store2(c0 + 8 * p.ldc + 8 * j, acc[4 * j + 2], acc[4 * j + 3]);
          } else {
            const int64_t col = n0 + 8 * j + 2 * t;
            store_pair<Output>(p, pair_ok, row, col, acc[4 * j], acc[4 * j + 1]);
            store_pair<Output>(p, pair_ok, row + 8, col, acc[4 * j + 2], acc[4 * j + 3]);
          }
        }
        return;
      }
    }
#pragma unroll
    for (int j = 0; j < Traits::kBN / 8; ++j) {
      const int64_t col = n0 + 8 * j + 2 * t;
      store_pair<Output>(p, pair_ok, row, col, acc[4 * j], acc[4 * j + 1]);
      store_pair<Output>(p, pair_ok, row + 8, col, acc[4 * j + 2], acc[4 * j + 3]);
    }
  }
}

// Shared-memory carve-up of both kernels: kStages A slices, kStages W slices, the staging tile,
// then the full/empty barriers.
template <typename Traits>
struct Sm90aSmem {
  uint32_t sA, sB, sStore, full_bar, empty_bar, turn_bar;
  QUAMBA_DEVICE explicit Sm90aSmem(uint32_t raw) {
    sA = (raw + 1023u) & ~1023u;
    sB = sA + Traits::kStages * Traits::kStageBytesA;
    sStore = sB + Traits::kStages * Traits::kStageBytesB;
    full_bar = sStore + Traits::kStoreBytes;  // kStages x 8 bytes
    empty_bar = full_bar + Traits::kStages * 8;
    turn_bar = empty_bar + Traits::kStages * 8;  // 2 x 8 bytes
  }
};

template <typename Traits>
QUAMBA_DEVICE void init_barriers(const Sm90aSmem<Traits>& sm) {
  if (threadIdx.x == 0) {
    for (int s = 0; s < Traits::kStages; ++s) {
      mbar_init(sm.full_bar + 8 * s, 1);  // the producer's arrive.expect_tx
      // One arrive per reading consumer warp of every CTA whose ring this CTA's W multicast writes
      // into.
      mbar_init(sm.empty_bar + 8 * s, 4 * Traits::kStageReaders * Traits::kCluster);
    }
    // Ping-pong: one arrive (by the other consumer warpgroup) per turn.
    mbar_init(sm.turn_bar, 1);
    mbar_init(sm.turn_bar + 8, 1);
    // Make the initialized barriers visible to the async (TMA) proxy.
    quamba::detail::fence_mbarrier_init();
  }
  __syncthreads();
  if constexpr (Traits::kCluster > 1) cluster_sync_all();
}

// A consumer warp is done reading ring position s: tell this CTA's producer and, with W multicast,
// the peer's producer (whose W half also lands in this CTA's stage s).
template <typename Traits>
QUAMBA_DEVICE void release_stage(const Sm90aSmem<Traits>& sm, uint32_t s) {
  mbar_arrive(sm.empty_bar + 8 * s);
  if constexpr (Traits::kCluster > 1) mbar_arrive_remote(sm.empty_bar + 8 * s, cluster_ctarank() ^ 1u);
}

// The accumulators of m64 row block mb of a consumer warpgroup (constant mb after unrolling, so
// they stay in registers).
template <typename Traits>
QUAMBA_DEVICE int32_t (&acc_block(int32_t (&acc)[Traits::kAccumulators], int mb))[Traits::kBN / 2] {
  return *reinterpret_cast<int32_t(*)[Traits::kBN / 2]>(&acc[mb * (Traits::kBN / 2)]);
}

// wgmma groups (one per K-slice) a consumer warpgroup leaves in flight when it moves on to the next
// slice; the stage of a slice goes back to the producer once its group has retired, so this many
// stages beyond the one being issued stay held by the consumers.
// One: with 3 the 6-stage 128x160 out_proj gained ~2% but the 4-stage kernels lost up to 20%
// (in_proj 157 against 129 us), and 2 changed nothing (H200, bench/RESULTS.md run Y3).
inline constexpr int kWgmmaGroupsInFlight = 1;

// K-slice kt (ring position it) of a consumer warpgroup's tile: wait for the stage, issue its
// kBK/32 wgmmas (per m64 block) as one group, keep kWgmmaGroupsInFlight groups in flight and
// release the stage of the slice whose group has retired.
template <typename Traits>
QUAMBA_DEVICE void consume_slice(const Sm90aSmem<Traits>& sm, int32_t (&acc)[Traits::kAccumulators], uint32_t it,
                                 int kt, int consumer, int lane) {
  constexpr int kStages = Traits::kStages;
  constexpr int kG = kWgmmaGroupsInFlight;
  const uint32_t s = it % kStages;
  mbar_wait(sm.full_bar + 8 * s, (it / kStages) & 1);
  const uint32_t a_base = sm.sA + s * Traits::kStageBytesA + consumer * Traits::kRowsPerConsumer * Traits::kBK;
  const uint32_t b_base = sm.sB + s * Traits::kStageBytesB;
  fence_operands(acc);
  wgmma_fence();
  // m64 block mb starts 64 rows = 8 KiB further, a whole number of 1024-byte swizzle periods, so
  // its descriptor keeps base offset 0.
#pragma unroll
  for (int kk = 0; kk < Traits::kBK / 32; ++kk)
#pragma unroll
    for (int mb = 0; mb < Traits::kMBlocks; ++mb)
      wgmma_tile<Traits::kBN>(acc_block<Traits>(acc, mb), smem_desc_sw128(a_base + mb * 64 * Traits::kBK + kk * 32),
                              smem_desc_sw128(b_base + kk * 32));
  wgmma_commit();
  // Slice kt - kG's group is complete once at most kG groups (kt - kG + 1 .. kt) are pending.
  wgmma_wait<kG>();
  fence_operands(acc);
  if (kt >= kG && lane == 0) release_stage(sm, (it - kG) % kStages);
}

// The end of a consumer warpgroup's tile of k_tiles slices (it_end: the ring position after its
// last): every wgmma retired; with release, the stages still held go back to the producer (a
// persistent kernel's next tile).
template <typename Traits>
QUAMBA_DEVICE void finish_tile(const Sm90aSmem<Traits>& sm, int32_t (&acc)[Traits::kAccumulators], uint32_t it_end,
                               int k_tiles, int lane, bool release) {
  wgmma_wait<0>();
  fence_operands(acc);
  if (release && lane == 0)
    for (int g = 1; g <= kWgmmaGroupsInFlight && g <= k_tiles; ++g) release_stage(sm, (it_end - g) % Traits::kStages);
}

// One operand box of ring stage `stage` (its shared-memory base for that operand): the whole box
// for this CTA, or (kHalf, in a pair) this CTA's half of kBoxRows rows, multicast into half `rank`
// of the stage of both CTAs.
template <typename Traits, bool kHalf, int kBoxRows>
QUAMBA_DEVICE void load_operand_box(uint32_t stage, const CUtensorMap* map, int kt, int row, uint32_t bar,
                                    uint32_t rank) {
  if constexpr (kHalf)
    tma_load_2d_multicast(stage + rank * (kBoxRows * Traits::kBK), map, kt * Traits::kBK, row, bar,
                          static_cast<uint16_t>((1u << Traits::kCluster) - 1));
  else
    tma_load_2d(stage, map, kt * Traits::kBK, row, bar);
}

// The start of ring position `it`'s refill: wait until its consumers (with pairs: both CTAs')
// have released it, then announce the whole stage's bytes on its full barrier. A pair's shared
// half from the peer may land before this expect_tx, which the transaction count allows (the
// phase cannot complete before this thread's arrive). `bytes`: what the position will receive
// (a K-slice's A and W boxes, or a residual block, produce_residual). Returns the stage index.
template <typename Traits>
QUAMBA_DEVICE uint32_t begin_stage(const Sm90aSmem<Traits>& sm, uint32_t it,
                                   uint32_t bytes = Traits::kStageBytesA + Traits::kStageBytesB) {
  constexpr int kStages = Traits::kStages;
  const uint32_t s = it % kStages;
  // A fresh barrier counts its "previous" phase (parity 1) as complete, so the first kStages
  // waits return at once.
  mbar_wait(sm.empty_bar + 8 * s, ((it / kStages) & 1) ^ 1);
  mbar_arrive_expect_tx(sm.full_bar + 8 * s, bytes);
  return s;
}

// The A box of stage s: this CTA's A rows from a_row, or with kShareA its half (kBoxRowsA rows)
// multicast into half `rank` of the A stage of both CTAs.
template <typename Traits>
QUAMBA_DEVICE void load_a_box(const Sm90aSmem<Traits>& sm, const CUtensorMap* tma_a, uint32_t s, int kt, int a_row,
                              uint32_t rank) {
  load_operand_box<Traits, (Traits::kClusterN > 1), Traits::kBoxRowsA>(sm.sA + s * Traits::kStageBytesA, tma_a, kt,
                                                                         a_row, sm.full_bar + 8 * s, rank);
}
// The W box of stage s: this CTA's W rows from w_row, or with W-sharing pairs (kClusterM = 2) its
// half (kBoxRowsW rows) multicast into half `rank` of the W stage of both CTAs.
template <typename Traits>
QUAMBA_DEVICE void load_w_box(const Sm90aSmem<Traits>& sm, const CUtensorMap* tma_w, uint32_t s, int kt, int w_row,
                              uint32_t rank) {
  load_operand_box<Traits, (Traits::kClusterM > 1), Traits::kBoxRowsW>(sm.sB + s * Traits::kStageBytesB, tma_w, kt,
                                                                         w_row, sm.full_bar + 8 * s, rank);
}

// The producer thread's load of K-slice kt into ring position `it`: A rows from a_row and W rows
// from w_row (each a whole box, or with a pair this CTA's half of the shared operand).
template <typename Traits>
QUAMBA_DEVICE void produce_slice(const Sm90aSmem<Traits>& sm, const CUtensorMap* tma_a, const CUtensorMap* tma_w,
                                 uint32_t it, int kt, int a_row, int w_row, uint32_t rank = 0) {
  const uint32_t s = begin_stage(sm, it);
  load_a_box(sm, tma_a, s, kt, a_row, rank);
  load_w_box(sm, tma_w, s, kt, w_row, rank);
}

// produce_slice in two halves, for a launch as a programmatic dependent: the W half (the stage's
// begin and its W box) before the dependency wait, the A box after it. The stage completes when
// both have landed, as with produce_slice.
template <typename Traits>
QUAMBA_DEVICE void produce_slice_w(const Sm90aSmem<Traits>& sm, const CUtensorMap* tma_w, uint32_t it, int kt,
                                   int w_row, uint32_t rank) {
  load_w_box(sm, tma_w, begin_stage(sm, it), kt, w_row, rank);
}
template <typename Traits>
QUAMBA_DEVICE void produce_slice_a(const Sm90aSmem<Traits>& sm, const CUtensorMap* tma_a, uint32_t it, int kt,
                                   int a_row, uint32_t rank = 0) {
  load_a_box(sm, tma_a, it % Traits::kStages, kt, a_row, rank);
}

// Kernels whose code contains the residual ring (Traits::kResidualRing, a Dequant epilogue).
template <typename Traits, typename Epilogue>
inline constexpr bool kRingResidual =
    Traits::kResidualRing && (std::is_same_v<Epilogue, DequantF32> || std::is_same_v<Epilogue, DequantF16>);

// Whether the tile at (m0, n0) stages its residual through the ring: a Dequant epilogue with a
// residual and neither column scale nor bias (the out_proj form), pair stores, the whole tile
// inside C, 16-byte aligned residual rows, and the CTA's last tile (the residual positions are
// released only after the epilogue, which would hold back the next tile's K-slices). Producer and
// consumers evaluate it alike, so both count the same ring positions.
template <typename Traits, typename Epilogue>
QUAMBA_DEVICE bool residual_ring_tile(const GemmParams<Epilogue>& p, bool pair_ok, int m0, int n0, bool last_tile) {
  if constexpr (kRingResidual<Traits, Epilogue>) {
    const Epilogue& e = p.epilogue;
    return last_tile && pair_ok && e.residual != nullptr && e.col_scale == nullptr && e.bias == nullptr &&
           int64_t(m0) + Traits::kBM <= p.M && int64_t(n0) + Traits::kBN <= p.N &&
           (reinterpret_cast<uintptr_t>(e.residual) & 15u) == 0 && e.ldr % 4 == 0;
  } else {
    return false;
  }
}

// Shared address of row `row` (0..63) of the residual block in ring stage s.
template <typename Traits>
QUAMBA_DEVICE uint32_t residual_row_smem(const Sm90aSmem<Traits>& sm, uint32_t s, int row) {
  return row < Traits::kResRowsInA ? sm.sA + s * Traits::kStageBytesA + row * Traits::kResPitch
                                   : sm.sB + s * Traits::kStageBytesB + (row - Traits::kResRowsInA) * Traits::kResPitch;
}

// Producer warp (converged): the residual of the tile at (m0, n0) into ring positions it ..
// it + kBM/64 - 1, 64 rows each, one bulk copy per row; returns the position after them.
template <typename Traits, typename Epilogue>
QUAMBA_DEVICE uint32_t produce_residual(const Sm90aSmem<Traits>& sm, const GemmParams<Epilogue>& p, uint32_t it,
                                        int m0, int n0, int lane) {
  constexpr uint32_t kRowBytes = Traits::kBN * 4;
  for (int r = 0; r < Traits::kBM / 64; ++r, ++it) {
    const uint32_t s = it % Traits::kStages;
    if (lane == 0) begin_stage(sm, it, 64 * kRowBytes);
    __syncwarp();
    const float* src = p.epilogue.residual + (int64_t(m0) + 64 * r) * p.epilogue.ldr + n0;
    for (int row = lane; row < 64; row += 32)
      quamba::detail::bulk_copy_g2s(residual_row_smem<Traits>(sm, s, row), src + row * p.epilogue.ldr, kRowBytes,
                                    sm.full_bar + 8 * s);
  }
  return it;
}

// A consumer warpgroup's epilogue of a tile whose residual is in ring positions it .. (see
// produce_residual): block mb of consumer c is position it + 2c + mb. The formula of store_block's
// vectorized Dequant path (col_scale and bias null) with the residual from shared memory; then
// every warp releases all of the tile's residual positions (the other consumer's too: each stage
// waits for every consumer warp).
template <typename Traits, typename Epilogue>
QUAMBA_DEVICE void store_blocks_ring_residual(const Sm90aSmem<Traits>& sm, const uint8_t* smem_base, uint32_t raw,
                                              const GemmParams<Epilogue>& p, int32_t (&acc)[Traits::kAccumulators],
                                              uint32_t it, int consumer, int64_t row0, int n0) {
  using Output = typename Epilogue::Output;
  constexpr int kStages = Traits::kStages;
  const int lt = threadIdx.x % 128;
  const int lane = lt & 31, w = lt >> 5, g = lane >> 2, t = lane & 3;
  const Epilogue& e = p.epilogue;
#pragma unroll
  for (int mb = 0; mb < Traits::kMBlocks; ++mb) {
    const uint32_t pos = it + consumer * Traits::kMBlocks + mb;
    const uint32_t s = pos % kStages;
    mbar_wait(sm.full_bar + 8 * s, (pos / kStages) & 1);
    const float* r0 = reinterpret_cast<const float*>(smem_base + (residual_row_smem<Traits>(sm, s, w * 16 + g) - raw)) +
                      2 * t;
    const float* r1 = r0 + 8 * Traits::kResPitch / 4;
    const int64_t row = row0 + 64 * mb + w * 16 + g;
    Output* c0 = p.C + row * p.ldc + n0 + 2 * t;
    Output* c1 = c0 + 8 * p.ldc;
    const int32_t(&a)[Traits::kBN / 2] = acc_block<Traits>(acc, mb);
#pragma unroll
    for (int j = 0; j < Traits::kBN / 8; ++j) {
      const float2 ra = *reinterpret_cast<const float2*>(r0 + 8 * j);
      const float2 rb = *reinterpret_cast<const float2*>(r1 + 8 * j);
      ptx::store2(c0 + 8 * j, e.apply_of(a[4 * j], 1.0f, 0.0f, ra.x), e.apply_of(a[4 * j + 1], 1.0f, 0.0f, ra.y));
      ptx::store2(c1 + 8 * j, e.apply_of(a[4 * j + 2], 1.0f, 0.0f, rb.x), e.apply_of(a[4 * j + 3], 1.0f, 0.0f, rb.y));
    }
  }
  __syncwarp();
  if (lane == 0)
    for (int r = 0; r < Traits::kBM / 64; ++r) release_stage(sm, (it + r) % kStages);
}

// Pulls the residual block of the tile at (m0, n0) toward L2 while the tile's K loop still runs, so
// the epilogue (which all CTAs reach at about the same time) reads it from L2 instead of a burst of
// DRAM reads (out_proj: 8 bytes of residual + output per 2·K MACs). One warp, 128-byte lines.
template <typename Traits, typename Epilogue>
QUAMBA_DEVICE void prefetch_residual_l2(const GemmParams<Epilogue>& p, int64_t m0, int64_t n0, int lane) {
  if constexpr (std::is_same_v<Epilogue, DequantF32> || std::is_same_v<Epilogue, DequantF16>) {
    if (p.epilogue.residual == nullptr || n0 >= p.N) return;
    const int64_t n_end = n0 + Traits::kBN < p.N ? n0 + Traits::kBN : p.N;
    constexpr int kLinesPerRow = Traits::kBN * 4 / 128 + 1;  // +1: rows need not start on a line
    for (int i = lane; i < Traits::kBM * kLinesPerRow; i += 32) {
      const int r = i / kLinesPerRow, l = i % kLinesPerRow;
      const int64_t m = m0 + r;
      if (m >= p.M) break;  // rows grow with i
      const float* row = p.epilogue.residual + m * p.epilogue.ldr;
      const uintptr_t first = reinterpret_cast<uintptr_t>(row + n0) & ~uintptr_t(127);
      const uintptr_t line = first + uintptr_t(128) * l;
      if (line < reinterpret_cast<uintptr_t>(row + n_end))
        asm volatile("prefetch.L2 [%0];\n" ::"l"(line));
    }
  }
}

// Split z's K-slices of a split-K launch: kt0 .. kt0 + k_tiles - 1 of the ceil(K / kBK) slices.
template <typename Traits>
QUAMBA_DEVICE void split_k_range(int64_t K, int split_k_tiles, int z, int& kt0, int& k_tiles) {
  const int all = static_cast<int>((K + Traits::kBK - 1) / Traits::kBK);
  kt0 = z * split_k_tiles;
  k_tiles = all - kt0 < split_k_tiles ? all - kt0 : split_k_tiles;
}

// The producer warpgroup's part of one tile's K loop over the 128-byte K-slices kt0 .. kt0 + k_tiles
// - 1: thread 0 loads them (as a programmatic dependent, the first ring round's W slices before the
// dependency wait, the rest after it).
template <typename Traits>
QUAMBA_DEVICE void one_tile_produce(const Sm90aSmem<Traits>& sm, const CUtensorMap* tma_a, const CUtensorMap* tma_w,
                                    bool pdl, int kt0, int k_tiles, int m0, int n0) {
  const int tid = threadIdx.x;
  const int w_early = pdl ? (Traits::kStages < k_tiles ? Traits::kStages : k_tiles) : 0;
  if (tid == 0)
    for (int i = 0; i < w_early; ++i) produce_slice_w(sm, tma_w, i, kt0 + i, n0, 0u);
  grid_dependency_wait();
  if (tid == 0)
    for (int i = 0; i < k_tiles; ++i) {
      if (i < w_early) produce_slice_a(sm, tma_a, i, kt0 + i, m0);
      else produce_slice(sm, tma_a, tma_w, i, kt0 + i, m0, n0);
    }
}

// The whole K loop of one tile, for the cluster split-K kernel: warpgroup 0 produces and gets false;
// the consumer warpgroups accumulate their 64 rows into acc and get true, every wgmma retired.
// gemm_sm90a_kernel writes its consumer half inline instead: with the accumulators declared before
// the warpgroup branch and zeroed here, ptxas serialized its wgmmas (C7515, "non wgmma instructions
// defining accumulator registers") in every instantiation of that kernel; declared and zeroed in
// the consumer's own scope they stay pipelined. The cluster kernel compiles clean either way (check
// the ptxas report when touching either).
template <typename Traits>
QUAMBA_DEVICE bool one_tile_k_loop(const Sm90aSmem<Traits>& sm, const CUtensorMap* tma_a, const CUtensorMap* tma_w,
                                   bool pdl, int kt0, int k_tiles, int m0, int n0,
                                   int32_t (&acc)[Traits::kAccumulators]) {
  const int tid = threadIdx.x;
  if (tid < 128) {
    one_tile_produce(sm, tma_a, tma_w, pdl, kt0, k_tiles, m0, n0);
    return false;
  }
  grid_dependency_wait();
  const int consumer = tid / 128 - 1;  // rows [64·consumer, 64·consumer + 64) of the tile
#pragma unroll
  for (int i = 0; i < Traits::kAccumulators; ++i) acc[i] = 0;
  for (int i = 0; i < k_tiles; ++i) consume_slice(sm, acc, i, i, consumer, tid & 31);
  finish_tile(sm, acc, k_tiles, k_tiles, tid & 31, false);
  return true;
}

// One CTA per C tile. split_k_tiles > 0 (run_sm90a_split_k): this CTA covers the 128-byte K-slices
// [z·split_k_tiles, (z+1)·split_k_tiles) ∩ [0, k_tiles) of its tile, z = blockIdx.z, and writes to
// C + z·c_split_stride (exact int32 partial sums, Identity epilogue). The tensor maps span all of K,
// so a slice is only a range of box coordinates; TMA zero-fills the tail of the last one.
template <typename Traits, typename Epilogue>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    gemm_sm90a_kernel(const __grid_constant__ CUtensorMap tma_a, const __grid_constant__ CUtensorMap tma_w,
                      GemmParams<Epilogue> p, bool pair_ok, bool wide_ok, int split_k_tiles, int64_t c_split_stride) {
#if QUAMBA_SM90A_ENABLED
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = ptx::smem_u32(smem_raw);
  const Sm90aSmem<Traits> sm(raw);
  const int m0 = blockIdx.x * Traits::kBM;
  const int n0 = blockIdx.y * Traits::kBN;
  const int tid = threadIdx.x;
  int kt0 = 0, k_tiles = static_cast<int>((p.K + Traits::kBK - 1) / Traits::kBK);  // this CTA's slices
  if (split_k_tiles > 0) {
    split_k_range<Traits>(p.K, split_k_tiles, static_cast<int>(blockIdx.z), kt0, k_tiles);
    p.C += static_cast<int64_t>(blockIdx.z) * c_split_stride;
  }
  init_barriers(sm);
  if (tid < 128) {
    one_tile_produce(sm, &tma_a, &tma_w, p.pdl, kt0, k_tiles, m0, n0);
    return;
  }
  grid_dependency_wait();
  const int consumer = tid / 128 - 1;  // rows [64·consumer, 64·consumer + 64) of the tile
  const int lane = tid & 31;
  int32_t acc[Traits::kAccumulators];
#pragma unroll
  for (int i = 0; i < Traits::kAccumulators; ++i) acc[i] = 0;
  for (int i = 0; i < k_tiles; ++i) consume_slice(sm, acc, i, i, consumer, lane);
  finish_tile(sm, acc, k_tiles, k_tiles, lane, false);
  store_block<Traits>(p, pair_ok, wide_ok, acc, int64_t(m0) + consumer * 64, n0,
                      smem_raw + (sm.sStore - raw) + consumer * 64 * Traits::kBN, consumer);
#else
  __trap();  // built without sm_90a: never produce silent garbage
#endif
}

// Split-K inside a cluster (run_sm90a_split_k_cluster): the gridDim.z CTAs of a tile form one
// cluster (1 x 1 x splits, at most kSm90aMaxClusterSplits), CTA z walks K-slices
// [z·split_k_tiles, ...) as above, then every CTA writes its int32 partial tile into its own shared
// memory (over the drained ring), and after a cluster barrier CTA z sums rows
// [z·R, (z+1)·R), R = ceil(kBM / splits), over the cluster's partial tiles through distributed
// shared memory and applies the epilogue. Exact int32 sums: bit-identical to the unsplit kernel,
// with no workspace and no second launch.
template <typename Traits>
struct Sm90aClusterSplit {
  static constexpr int kPitch = Traits::kBN + 4;  // int32 per partial-tile row (16-byte aligned rows)
  static constexpr int kBytes = Traits::kBM * kPitch * 4;
  static_assert(kBytes <= Traits::kStages * (Traits::kStageBytesA + Traits::kStageBytesB),
                "the partial tile fits the stage ring");
};

QUAMBA_DEVICE int4 ld_shared_cluster_v4(uint32_t local_addr, uint32_t cta) {
  int4 v;
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %4, %5;\n"
      "ld.shared::cluster.v4.s32 {%0, %1, %2, %3}, [remote];\n"
      "}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "r"(local_addr), "r"(cta)
      : "memory");
  return v;
}

template <typename Traits, typename Epilogue>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    gemm_sm90a_cluster_split_kernel(const __grid_constant__ CUtensorMap tma_a,
                                    const __grid_constant__ CUtensorMap tma_w, GemmParams<Epilogue> p,
                                    int split_k_tiles) {
#if QUAMBA_SM90A_ENABLED
  using Split = Sm90aClusterSplit<Traits>;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = ptx::smem_u32(smem_raw);
  const Sm90aSmem<Traits> sm(raw);
  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * Traits::kBM;
  const int n0 = blockIdx.y * Traits::kBN;
  const int splits = static_cast<int>(gridDim.z);  // at most kSm90aMaxClusterSplits (the launcher)
  const int z = static_cast<int>(blockIdx.z);  // = the rank in the 1 x 1 x splits cluster
  int kt0 = 0, k_tiles = 0;
  split_k_range<Traits>(p.K, split_k_tiles, z, kt0, k_tiles);
  init_barriers(sm);
  int32_t acc[Traits::kAccumulators];
  const bool consumer_thread = one_tile_k_loop(sm, &tma_a, &tma_w, p.pdl, kt0, k_tiles, m0, n0, acc);
  // Every stage has been consumed (so no TMA write is pending) and every wgmma of both consumer
  // warpgroups has retired before the ring is overwritten with the partial tile.
  __syncthreads();
  int32_t* part = reinterpret_cast<int32_t*>(smem_raw + (sm.sA - raw));
  if (consumer_thread) {
    // Accumulator layout of m64nN (see store_block): register 4j+e of warp w holds row 16w + g
    // (+8 for e >= 2), column 8j + 2t (+1 for odd e).
    const int lt = tid % 128, lane = lt & 31, w = lt >> 5, g = lane >> 2, t = lane & 3;
    const int row = (tid / 128 - 1) * 64 + w * 16 + g;
#pragma unroll
    for (int j = 0; j < Traits::kBN / 8; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        *reinterpret_cast<int2*>(part + (row + 8 * h) * Split::kPitch + 8 * j + 2 * t) =
            make_int2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
  }
  cluster_sync_all();  // every partial tile of the cluster is complete and visible
  const int rows = (Traits::kBM + splits - 1) / splits;
  const int r0 = z * rows;
  const int r_end = r0 + rows < Traits::kBM ? r0 + rows : Traits::kBM;
  constexpr int kQuads = Traits::kBN / 4;
  const uint32_t part_addr = sm.sA;
  for (int q = tid; q < (r_end - r0) * kQuads; q += Traits::kThreads) {
    const int r = r0 + q / kQuads, c = (q % kQuads) * 4;
    const int64_t m = int64_t(m0) + r, n = int64_t(n0) + c;
    if (m >= p.M || n >= p.N) continue;
    // Every peer's quad requested before the first is summed: one distributed shared-memory
    // round trip per quad instead of one per split.
    const uint32_t off = part_addr + static_cast<uint32_t>((r * Split::kPitch + c) * 4);
    int4 v[kSm90aMaxClusterSplits];
#pragma unroll
    for (int cta = 0; cta < kSm90aMaxClusterSplits; ++cta)
      if (cta < splits) v[cta] = ld_shared_cluster_v4(off, static_cast<uint32_t>(cta));
    int sum[4] = {0, 0, 0, 0};
#pragma unroll
    for (int cta = 0; cta < kSm90aMaxClusterSplits; ++cta)
      if (cta < splits) {
        sum[0] += v[cta].x;
        sum[1] += v[cta].y;
        sum[2] += v[cta].z;
        sum[3] += v[cta].w;
      }
    using Out = typename Epilogue::Output;
    Out* dst = p.C + m * p.ldc + n;
    if constexpr (sizeof(Out) == 1) {
      // A whole quad of int8 outputs as one 4-byte store where it is inside C and aligned.
      if (n + 3 < p.N && (reinterpret_cast<uintptr_t>(dst) & 3) == 0) {
        uint32_t word = 0;
#pragma unroll
        for (int e = 0; e < 4; ++e)
          word |= uint32_t(static_cast<uint8_t>(p.epilogue.apply(sum[e], m, n + e))) << (8 * e);
        *reinterpret_cast<uint32_t*>(dst) = word;
        continue;
      }
    }
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (n + e < p.N) dst[e] = p.epilogue.apply(sum[e], m, n + e);
  }
  cluster_sync_all();  // no CTA leaves (taking its shared memory) while a peer may still read it
#else
  __trap();  // built without sm_90a: never produce silent garbage
#endif
}

// Tile `tile` of the persistent raster: bands of kGroupM M-tiles walked N-tile by N-tile, M fastest
// within a band. The ~#SMs tiles in flight at a time then touch kGroupM A panels and about
// #SMs / kGroupM W panels, so each panel comes from DRAM about once and is re-read from L2.
// With clusters the unit is a cluster's kClusterM vertically (W shared) or kClusterN horizontally
// (A shared) adjacent tiles (m_units x n_units of them); (m0, n0) is the unit's first tile.
template <typename Traits>
QUAMBA_DEVICE void tile_coords(int64_t tile, int64_t m_units, int64_t n_units, int& m0, int& n0) {
  constexpr int kGroupUnits = Traits::kGroupM / Traits::kClusterM;
  const int64_t band_tiles = kGroupUnits * n_units;
  const int64_t band = tile / band_tiles;
  const int64_t first_m = band * kGroupUnits;
  const int64_t rows = m_units - first_m < kGroupUnits ? m_units - first_m : kGroupUnits;
  const int64_t r = tile - band * band_tiles;
  m0 = static_cast<int>((first_m + r % rows) * Traits::kBM * Traits::kClusterM);
  n0 = static_cast<int>((r / rows) * Traits::kBN * Traits::kClusterN);
}

// The epilogue of a consumer warpgroup's two m64 blocks (rows row0.. and row0 + 64..; kMBlocks = 2).
// The first block's runs with all 2·kBN/2 accumulators live, so its batches are narrow (2 column
// pairs, 4 registers each for col_scale / bias and 4 for the residual), the second's with the
// first block's dead. Without col_scale and bias (out_proj: per-tensor scale and a residual), a
// batch needs only the residual's registers: twice as wide, half the L2 round trips.
template <typename Traits, typename Epilogue>
QUAMBA_DEVICE void store_two_blocks(const GemmParams<Epilogue>& p, bool pair_ok, bool wide_ok,
                                    int32_t (&acc)[Traits::kAccumulators], int64_t row0, int n0, uint8_t* stage,
                                    int consumer) {
  static_assert(Traits::kMBlocks == 2, "two m64 blocks");
  constexpr int kJ = Traits::kBN / 8;  // column pairs per thread and block
  constexpr int kSecond = kJ % 5 == 0 ? 5 : 4;
  if constexpr (std::is_same_v<Epilogue, DequantF32> || std::is_same_v<Epilogue, DequantF16>) {
    if (p.epilogue.col_scale == nullptr && p.epilogue.bias == nullptr) {
      store_block<Traits, 4, true>(p, pair_ok, wide_ok, acc_block<Traits>(acc, 0), row0, n0, stage, consumer);
      store_block<Traits, 2 * kSecond, true>(p, pair_ok, wide_ok, acc_block<Traits>(acc, 1), row0 + 64, n0, stage,
                                             consumer);
      return;
    }
  }
  store_block<Traits, 2>(p, pair_ok, wide_ok, acc_block<Traits>(acc, 0), row0, n0, stage, consumer);
  store_block<Traits, kSecond>(p, pair_ok, wide_ok, acc_block<Traits>(acc, 1), row0 + 64, n0, stage, consumer);
}

// Ping-pong consumer warpgroup wg of a persistent CTA: its local tiles j = wg, wg + 2, ... (tile
// first_tile + j·tile_stride), each one whole kBM x kBN tile. The producer fills the ring in tile
// order, so local tile j's K-slices occupy ring positions j·k_tiles ... The warpgroups take turns:
// one starts a tile's K loop only after the other has waited for the last K-slice of the previous
// tile (turn barrier), then its epilogue runs while the other's wgmmas have the tensor cores. The
// turn also keeps every full-barrier wait at most one phase behind: when a warpgroup starts on ring
// position i, position i - kStages (the previous tile's or its own earlier tile's) has completed.
template <typename Traits, typename Epilogue>
QUAMBA_DEVICE void pingpong_consumer(const Sm90aSmem<Traits>& sm, const GemmParams<Epilogue>& p, bool pair_ok,
                                     bool wide_ok, int wg, int k_tiles, int64_t first_tile, int64_t tile_stride,
                                     int64_t m_units, int64_t n_units, int64_t tiles) {
  const int lt = threadIdx.x % 128;
  const int lane = lt & 31;
  int32_t acc[Traits::kAccumulators];
  uint32_t turns = 0;
  for (int64_t j = wg; first_tile + j * tile_stride < tiles; j += 2) {
    int m0, n0;
    tile_coords<Traits>(first_tile + j * tile_stride, m_units, n_units, m0, n0);
    uint32_t it = static_cast<uint32_t>(j) * static_cast<uint32_t>(k_tiles);
    if (j > 0) mbar_wait(sm.turn_bar + 8 * wg, turns++ & 1);
#pragma unroll
    for (int i = 0; i < Traits::kAccumulators; ++i) acc[i] = 0;
    for (int kt = 0; kt < k_tiles; ++kt, ++it) consume_slice(sm, acc, it, kt, 0, lane);
    // Every K-slice of this tile has landed (this thread waited for each): the other warpgroup's
    // turn.
    if (lt == 0) mbar_arrive(sm.turn_bar + 8 * (wg ^ 1));
    finish_tile(sm, acc, it, k_tiles, lane, true);
    store_two_blocks<Traits>(p, pair_ok, wide_ok, acc, m0, n0, nullptr, wg);
  }
}

// Persistent: grid <= #SMs, CTA b handles tiles b, b + gridDim.x, ... (with clusters: cluster c
// handles units c, c + #clusters, ..., both CTAs in step). The producer and the consumers walk the
// same tile sequence with one running ring index `it`, so the stage and the barrier parity carry
// over from tile to tile; the producer runs up to kStages slices ahead, i.e. into the next tile
// while the consumers are in the epilogue.
template <typename Traits, typename Epilogue>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    gemm_sm90a_persistent_kernel(const __grid_constant__ CUtensorMap tma_a,
                                 const __grid_constant__ CUtensorMap tma_w, GemmParams<Epilogue> p, bool pair_ok,
                                 bool wide_ok, int /*split_k_tiles: unused, 0*/, int64_t /*c_split_stride*/) {
#if QUAMBA_SM90A_ENABLED
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = ptx::smem_u32(smem_raw);
  const Sm90aSmem<Traits> sm(raw);
  const int tid = threadIdx.x;
  const int warpgroup = tid / 128;
  const int lane = tid & 31;
  const int k_tiles = static_cast<int>((p.K + Traits::kBK - 1) / Traits::kBK);
  const int64_t m_tiles = (p.M + Traits::kBM - 1) / Traits::kBM;
  const int64_t m_units = (m_tiles + Traits::kClusterM - 1) / Traits::kClusterM;
  const int64_t n_tiles = (p.N + Traits::kBN - 1) / Traits::kBN;
  const int64_t n_units = (n_tiles + Traits::kClusterN - 1) / Traits::kClusterN;
  const int64_t tiles = m_units * n_units;
  const uint32_t rank = Traits::kCluster > 1 ? cluster_ctarank() : 0u;
  const int64_t first_tile = blockIdx.x / Traits::kCluster;
  const int64_t tile_stride = gridDim.x / Traits::kCluster;
  // This CTA's tile within its cluster's unit at (m0, n0).
  const int m_off = Traits::kClusterM > 1 ? static_cast<int>(rank) * Traits::kBM : 0;
  const int n_off = Traits::kClusterN > 1 ? static_cast<int>(rank) * Traits::kBN : 0;
  init_barriers(sm);

  if (warpgroup == 0) {
    if constexpr (Traits::kSplitRegisters) setmaxnreg_dec<Traits::kProducerRegs>();
    // As a programmatic dependent: the W slices of the first ring round of this CTA's first tile
    // (ring positions 0 .. w_early-1) go out before the dependency wait, its A slices after it.
    const int w_early = p.pdl ? (Traits::kStages < k_tiles ? Traits::kStages : k_tiles) : 0;
    // Warp 0 produces (lane 0 issues; the warp stays converged so that it can also prefetch the
    // epilogue's residual half-way through each tile); warps 1-3 idle.
    if (tid < 32) {
      uint32_t it = 0;
      for (int64_t tile = first_tile; tile < tiles; tile += tile_stride) {
        int m0, n0;
        tile_coords<Traits>(tile, m_units, n_units, m0, n0);
        // The boxes this CTA requests: its tile's A and W rows, or its half of the shared operand
        // (from the unit's first row). Boxes wholly outside A or W (the second tile of a cluster
        // past M or N, a second half past the end) load in-range rows instead: their products land
        // only in rows / columns that are never stored, and every box stays inside the tensor.
        int a_row = Traits::kClusterN > 1 ? m0 + static_cast<int>(rank) * Traits::kBoxRowsA : m0 + m_off;
        int w_row = Traits::kClusterM > 1 ? n0 + static_cast<int>(rank) * Traits::kBoxRowsW : n0 + n_off;
        if (a_row >= p.M) a_row = 0;
        if (w_row >= p.N) w_row = 0;
        m0 += m_off;
        n0 += n_off;
        // Here, not before the loop: the first tile's coordinates are computed once, and the
        // producer's 40 registers (kSplitRegisters) hold the pre-issue without a spill.
        if (it == 0) {
          if (lane == 0)
            for (int kt = 0; kt < w_early; ++kt)
              produce_slice_w(sm, &tma_w, static_cast<uint32_t>(kt), kt, w_row, rank);
          grid_dependency_wait();
        }
        for (int kt = 0; kt < k_tiles; ++kt, ++it) {
          if (lane == 0) {
            if (it < static_cast<uint32_t>(w_early))
              produce_slice_a(sm, &tma_a, it, kt, a_row, rank);
            else
              produce_slice(sm, &tma_a, &tma_w, it, kt, a_row, w_row, rank);
          }
          __syncwarp();
          if (kt == k_tiles / 2) prefetch_residual_l2<Traits>(p, m0, n0, lane);
        }
        if constexpr (kRingResidual<Traits, Epilogue>) {
          if (residual_ring_tile<Traits>(p, pair_ok, m0, n0, tile + tile_stride >= tiles))
            it = produce_residual<Traits>(sm, p, it, m0, n0, lane);
        }
      }
      if (it == 0) grid_dependency_wait();  // a CTA without a tile still waits
    } else {
      grid_dependency_wait();
    }
  } else {
    if constexpr (Traits::kSplitRegisters) setmaxnreg_inc<Traits::kConsumerRegs>();
    grid_dependency_wait();
    if constexpr (Traits::kPingPong) {
      pingpong_consumer<Traits>(sm, p, pair_ok, wide_ok, warpgroup - 1, k_tiles, first_tile, tile_stride, m_units,
                                n_units, tiles);
    } else {
      const int consumer = warpgroup - 1;
      uint8_t* stage = smem_raw + (sm.sStore - raw) + consumer * 64 * Traits::kBN;
      int32_t acc[Traits::kAccumulators];
      uint32_t it = 0;
      for (int64_t tile = first_tile; tile < tiles; tile += tile_stride) {
        int m0, n0;
        tile_coords<Traits>(tile, m_units, n_units, m0, n0);
        m0 += m_off;
        n0 += n_off;
#pragma unroll
        for (int i = 0; i < Traits::kAccumulators; ++i) acc[i] = 0;
        for (int kt = 0; kt < k_tiles; ++kt, ++it) consume_slice(sm, acc, it, kt, consumer, lane);
        // The tile's last slices are read by no pending wgmma any more: hand their stages to the
        // producer before the epilogue, so the next tile's loads overlap it.
        finish_tile(sm, acc, it, k_tiles, lane, true);
        const int64_t row0 = int64_t(m0) + consumer * Traits::kRowsPerConsumer;
        bool ring = false;
        if constexpr (kRingResidual<Traits, Epilogue>) {
          ring = residual_ring_tile<Traits>(p, pair_ok, m0, n0, tile + tile_stride >= tiles);
          if (ring) {
            store_blocks_ring_residual<Traits>(sm, smem_raw, raw, p, acc, it, consumer, row0, n0);
            it += Traits::kBM / 64;
          }
        }
        if (!ring) {
          if constexpr (Traits::kMBlocks == 1) {
            store_block<Traits>(p, pair_ok, wide_ok, acc_block<Traits>(acc, 0), row0, n0, stage, consumer);
          } else {
            store_two_blocks<Traits>(p, pair_ok, wide_ok, acc, row0, n0, stage, consumer);
          }
        }
      }
    }
  }
  if constexpr (Traits::kCluster > 1) cluster_sync_all();
#else
  __trap();  // built without sm_90a: never produce silent garbage
#endif
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

using quamba::detail::tensor_map_encoder;

// 2-D int8 tensor map over a row-major (rows, inner) matrix with row pitch `pitch` bytes; boxes of
// box_rows x 128 bytes, 128-byte swizzle, zero fill outside the matrix.
inline Status make_tensor_map_i8(CUtensorMap* map, const int8_t* base, int64_t inner, int64_t rows, int64_t pitch,
                                 int box_rows) {
  auto encode = tensor_map_encoder();
  if (encode == nullptr) return Status::kErrorCuda;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(inner), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(pitch)};
  const cuuint32_t box[2] = {128u, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1u, 1u};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<int8_t*>(base), dims, strides, box,
                            elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? Status::kSuccess : Status::kErrorCuda;
}

}  // namespace detail

template <typename Epilogue>
Status can_implement_sm90a(const GemmParams<Epilogue>& p) {
  QUAMBA_RETURN_IF_ERROR(check_params(p));
  // TMA: 32-bit box coordinates; pitch < 2^40 (always true here).
  if (p.M >= (int64_t(1) << 31) - 256 || p.N >= (int64_t(1) << 31) - 256 || p.K >= (int64_t(1) << 31))
    return Status::kErrorNotSupported;
  if ((p.N + 127) / 128 > 65535) return Status::kErrorNotSupported;  // grid.y of the narrower tile
  return Status::kSuccess;
}

// Split-K plan of the one-tile-per-CTA wgmma kernel (host only, device independent). A problem with
// few 128-row tiles and a long K (x_proj: N = 192, K = 5120, 16 tiles at M = 2048) leaves most
// SMs idle; split over K, its tiles become kSm90aSplitTargetCtas CTAs of whole 128-byte K-slices
// (kSm90aSplitMinTiles or more each; the last split may be shorter) writing exact int32 partial
// sums, and the split-K reduce
// kernel (gemm_sm80.cuh) adds them and applies the epilogue: bit-identical to the unsplit kernel.
// Against the mma.sync split-K (64 x 64 tiles), the 128 x 256 tile reads each A row once per 256
// columns instead of once per 64, the L2 -> SM bytes that bound these problems. The tile is
// 128 x 128 for N <= 128, 128 x 192 for N <= 192, else 128 x 256; the workspace ((splits, M, n4)
// int32) stays within kSplitKWorkspaceBound, fewer splits where it would not.
inline constexpr int64_t kSm90aSplitTargetCtas = 132;  // one wave on a 132-SM H100
inline constexpr int64_t kSm90aSplitMinTiles = 2;      // 128-byte K-slices per split, at least

struct Sm90aSplitPlan {
  int splits = 1;       // 1: no split
  int slice_tiles = 0;  // 128-byte K-slices per split
  int bn = 256;         // tile width: 128, 192 or 256
  int64_t n4 = 0;       // partial row pitch (N rounded up to 4)
};

inline Sm90aSplitPlan plan_sm90a_split_k(int64_t M, int64_t N, int64_t K) {
  Sm90aSplitPlan s;
  if (M <= 0 || N <= 0 || K <= 0) return s;
  s.bn = N <= 128 ? 128 : N <= 192 ? 192 : 256;
  const int64_t tiles = ((M + 127) / 128) * ((N + s.bn - 1) / s.bn);
  if (2 * tiles >= kSm90aSplitTargetCtas) return s;
  const int64_t k_tiles = (K + 127) / 128;
  const int64_t n4 = (N + 3) / 4 * 4;
  int64_t want = (kSm90aSplitTargetCtas + tiles - 1) / tiles;
  if (k_tiles / kSm90aSplitMinTiles < want) want = k_tiles / kSm90aSplitMinTiles;
  const int64_t by_ws = static_cast<int64_t>(kSplitKWorkspaceBound) / (M * n4 * 4);
  if (by_ws < want) want = by_ws;
  if (want < 2) return s;
  const int64_t slice = (k_tiles + want - 1) / want;
  const int64_t splits = (k_tiles + slice - 1) / slice;
  if (splits < 2) return s;
  s.splits = static_cast<int>(splits);
  s.slice_tiles = static_cast<int>(slice);
  s.n4 = n4;
  return s;
}

// Workspace bytes of the wgmma split-K for this problem (0: it does not split).
inline size_t sm90a_split_k_workspace_size(int64_t M, int64_t N, int64_t K) {
  const Sm90aSplitPlan s = plan_sm90a_split_k(M, N, K);
  return s.splits > 1 ? static_cast<size_t>(s.splits) * static_cast<size_t>(M) * static_cast<size_t>(s.n4) * 4 : 0;
}

#if QUAMBA_HAS_CUDA_COMPILER

namespace detail {
template <typename Traits, typename Epilogue>
constexpr auto sm90a_kernel_of() {
  if constexpr (Traits::kPersistent) return gemm_sm90a_persistent_kernel<Traits, Epilogue>;
  else return gemm_sm90a_kernel<Traits, Epilogue>;
}

// Clusters of shape `cluster` that can be resident at once (one CTA per SM; GPC boundaries can
// leave SMs unused), cached per device and cluster size (each kernel instantiation launches one
// cluster shape per size). The dynamic shared-memory limit must already be set.
template <typename Traits, typename Kernel>
Status max_active_clusters(Kernel kernel, dim3 cluster, int* clusters) {
  static int cache[64][17] = {};
  const unsigned size = cluster.x * cluster.y * cluster.z;
  if (size < 1 || size > 16) return Status::kErrorNotSupported;
  int dev = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaGetDevice(&dev));
  const bool cached = dev >= 0 && dev < 64;
  if (cached && cache[dev][size] > 0) {
    *clusters = cache[dev][size];
    return Status::kSuccess;
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = cluster.x;
  attr[0].val.clusterDim.y = cluster.y;
  attr[0].val.clusterDim.z = cluster.z;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = cluster;
  cfg.blockDim = dim3(Traits::kThreads);
  cfg.dynamicSmemBytes = Traits::kSmemBytes;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int n = 0;
  QUAMBA_RETURN_IF_CUDA_ERROR(cudaOccupancyMaxActiveClusters(&n, reinterpret_cast<const void*>(kernel), &cfg));
  if (n <= 0) return Status::kErrorNotSupported;
  if (cached) cache[dev][size] = n;
  *clusters = n;
  return Status::kSuccess;
}
}  // namespace detail

// True when the current device is sm_90 and the kernel image it would run came from compute_90+
// code (a 90a build); false on other devices or when only older code was compiled in.
template <typename Epilogue, typename Traits = Sm90aTile128x128>
bool sm90a_available() {
  if (current_arch() != 90) return false;
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, detail::sm90a_kernel_of<Traits, Epilogue>()) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.ptxVersion >= 90 && attr.binaryVersion >= 90;
}

namespace detail {
// The tensor maps of A and W for tile Traits and the kernel's dynamic shared-memory limit.
template <typename Traits, typename Epilogue, typename Kernel>
Status prepare_sm90a(const GemmParams<Epilogue>& p, Kernel kernel, CUtensorMap* tma_a, CUtensorMap* tma_w) {
  QUAMBA_RETURN_IF_ERROR(make_tensor_map_i8(tma_a, p.A, p.K, p.M, p.lda, Traits::kBoxRowsA));
  QUAMBA_RETURN_IF_ERROR(make_tensor_map_i8(tma_w, p.W, p.K, p.N, p.ldw, Traits::kBoxRowsW));
  QUAMBA_RETURN_IF_CUDA_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes));
  return Status::kSuccess;
}
}  // namespace detail

template <typename Epilogue, typename Traits = Sm90aTile128x128>
Status run_sm90a(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement_sm90a(p));
  if (p.M == 0) return Status::kSuccess;
  if (!sm90a_available<Epilogue, Traits>()) return Status::kErrorArchNotSupported;
  CUtensorMap tma_a, tma_w;
  auto kernel = detail::sm90a_kernel_of<Traits, Epilogue>();
  QUAMBA_RETURN_IF_ERROR(detail::prepare_sm90a<Traits>(p, kernel, &tma_a, &tma_w));
  const bool pair_ok = c_pairs_aligned(p);
  // 16-byte row chunks of a 1-byte output: every row start and chunk is 16-byte aligned.
  const bool wide_ok = c_rows_16b_aligned(p);
  const int64_t m_tiles = (p.M + Traits::kBM - 1) / Traits::kBM;
  const int64_t n_tiles = (p.N + Traits::kBN - 1) / Traits::kBN;
  dim3 grid(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles));
  if constexpr (Traits::kPersistent && Traits::kCluster == 1) {
    DeviceInfo info;
    QUAMBA_RETURN_IF_ERROR(query_device(&info));
    const int64_t tiles = m_tiles * n_tiles;
    grid = dim3(static_cast<unsigned>(tiles < info.sm_count ? tiles : info.sm_count));
  }
  if constexpr (Traits::kCluster > 1) {
    int clusters = 0;
    QUAMBA_RETURN_IF_ERROR(detail::max_active_clusters<Traits>(kernel, dim3(Traits::kCluster), &clusters));
    const int64_t units = (m_tiles + Traits::kClusterM - 1) / Traits::kClusterM *
                          ((n_tiles + Traits::kClusterN - 1) / Traits::kClusterN);
    if (units < clusters) clusters = static_cast<int>(units);
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = Traits::kCluster;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(clusters * Traits::kCluster));
    cfg.blockDim = dim3(Traits::kThreads);
    cfg.dynamicSmemBytes = Traits::kSmemBytes;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = p.pdl ? 2u : 1u;
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaLaunchKernelEx(&cfg, kernel, tma_a, tma_w, p, pair_ok, wide_ok, 0, int64_t(0)));
    return last_launch_status();
  }
  return launch_kernel(kernel, grid, dim3(Traits::kThreads), Traits::kSmemBytes, stream, p.pdl,
                       tma_a, tma_w, p, pair_ok, wide_ok, 0, int64_t(0));
}

// The split-K form of the one-tile-per-CTA kernel (plan_sm90a_split_k(M, N, K) must split).
// `workspace`: at least sm90a_split_k_workspace_size(M, N, K) bytes, 16-byte aligned; overwritten,
// no initial contents needed. Two launches: the tile kernel (grid z = splits, Identity epilogue
// into the workspace) and the split-K reduce kernel, its programmatic dependent with GemmParams::pdl.
template <typename Epilogue>
Status run_sm90a_split_k(const GemmParams<Epilogue>& p, void* workspace, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement_sm90a(p));
  const Sm90aSplitPlan s = plan_sm90a_split_k(p.M, p.N, p.K);
  if (s.splits < 2 || !workspace) return Status::kErrorInvalidArgument;
  if (!is_aligned(workspace, 16)) return Status::kErrorMisaligned;
  const GemmParams<Identity> q = detail::split_k_partials(p, workspace, s.n4);
  auto launch_tiles = [&](auto traits) -> Status {
    using Traits = decltype(traits);
    if (!sm90a_available<Identity, Traits>()) return Status::kErrorArchNotSupported;
    CUtensorMap tma_a, tma_w;
    auto kernel = detail::sm90a_kernel_of<Traits, Identity>();
    QUAMBA_RETURN_IF_ERROR(detail::prepare_sm90a<Traits>(q, kernel, &tma_a, &tma_w));
    const dim3 grid(static_cast<unsigned>((q.M + Traits::kBM - 1) / Traits::kBM),
                    static_cast<unsigned>((q.N + Traits::kBN - 1) / Traits::kBN), static_cast<unsigned>(s.splits));
    return launch_kernel(kernel, grid, dim3(Traits::kThreads), Traits::kSmemBytes, stream, q.pdl, tma_a, tma_w, q,
                         true, false, s.slice_tiles, q.M * s.n4);
  };
  QUAMBA_RETURN_IF_ERROR(s.bn == 128   ? launch_tiles(Sm90aTile128x128{})
                         : s.bn == 192 ? launch_tiles(Sm90aTile128x192{})
                                       : launch_tiles(Sm90aTile128x256{}));
  return detail::launch_split_k_reduce(p, workspace, s.splits, s.n4, stream);
}

// The plan of plan_sm90a_split_k with at most `max_splits` splits: the same K-slices regrouped
// into longer splits (host only).
inline Sm90aSplitPlan cap_sm90a_split_k(Sm90aSplitPlan s, int64_t K, int max_splits) {
  if (s.splits <= max_splits) return s;
  const int64_t k_tiles = (K + 127) / 128;
  const int64_t cap = max_splits < 1 ? 1 : max_splits;
  const int64_t slice = (k_tiles + cap - 1) / cap;
  s.slice_tiles = static_cast<int>(slice);
  s.splits = static_cast<int>((k_tiles + slice - 1) / slice);
  return s;
}

// The cluster form of the wgmma split-K (gemm_sm90a_cluster_split_kernel): the plan of
// plan_sm90a_split_k with each tile's splits as one cluster, reduced through distributed shared
// memory; no workspace, one launch. The plan's splits are capped at `max_splits` (and at
// kSm90aMaxClusterSplits, the portable cluster size) by regrouping its K-slices. With one_wave the
// split count is lowered further, one at a time, until every tile's cluster is resident at once,
// because a second round of clusters costs more than longer splits (H200, x_proj at d_model 2560,
// M = 2048: 16 clusters of 8 in two rounds 24.9 us against 19.0 for the workspace form; d_model
// 768, 16 clusters of 6 in one round, 10.3 against 12.0). kErrorNotSupported where the plan does
// not split, where no cluster of the size fits the device, or, with one_wave, where no split count
// of at least two fits in one round.
template <typename Epilogue>
Status run_sm90a_split_k_cluster(const GemmParams<Epilogue>& p, cudaStream_t stream, bool one_wave = false,
                                 int max_splits = kSm90aMaxClusterSplits) {
  QUAMBA_RETURN_IF_ERROR(can_implement_sm90a(p));
  const Sm90aSplitPlan plan = plan_sm90a_split_k(p.M, p.N, p.K);
  if (plan.splits < 2) return Status::kErrorNotSupported;
  const int cap = max_splits < kSm90aMaxClusterSplits ? max_splits : kSm90aMaxClusterSplits;
  auto launch = [&](auto traits) -> Status {
    using Traits = decltype(traits);
    auto kernel = detail::gemm_sm90a_cluster_split_kernel<Traits, Epilogue>;
    static quamba::detail::Sm90ImageCache image;
    if (current_arch() != 90 || !image.get(kernel)) return Status::kErrorArchNotSupported;
    CUtensorMap tma_a, tma_w;
    QUAMBA_RETURN_IF_ERROR(detail::prepare_sm90a<Traits>(p, kernel, &tma_a, &tma_w));
    const int64_t tiles = ((p.M + Traits::kBM - 1) / Traits::kBM) * ((p.N + Traits::kBN - 1) / Traits::kBN);
    Sm90aSplitPlan s = cap_sm90a_split_k(plan, p.K, cap);
    for (;;) {
      if (s.splits < 2) return Status::kErrorNotSupported;
      int clusters = 0;
      if (detail::max_active_clusters<Traits>(kernel, dim3(1, 1, static_cast<unsigned>(s.splits)), &clusters) !=
          Status::kSuccess) {
        cudaGetLastError();
        clusters = 0;  // no cluster of this size fits the device
      }
      if (clusters > 0 && (!one_wave || int64_t(clusters) >= tiles)) break;
      if (!one_wave && clusters == 0) return Status::kErrorNotSupported;
      s = cap_sm90a_split_k(plan, p.K, s.splits - 1);
    }
    const dim3 cluster(1, 1, static_cast<unsigned>(s.splits));
    const dim3 grid(static_cast<unsigned>((p.M + Traits::kBM - 1) / Traits::kBM),
                    static_cast<unsigned>((p.N + Traits::kBN - 1) / Traits::kBN), cluster.z);
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = cluster.x;
    attr[0].val.clusterDim.y = cluster.y;
    attr[0].val.clusterDim.z = cluster.z;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(Traits::kThreads);
    cfg.dynamicSmemBytes = Traits::kSmemBytes;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = p.pdl ? 2u : 1u;
    QUAMBA_RETURN_IF_CUDA_ERROR(cudaLaunchKernelEx(&cfg, kernel, tma_a, tma_w, p, s.slice_tiles));
    return last_launch_status();
  };
  return plan.bn == 128   ? launch(Sm90aTile128x128{})
         : plan.bn == 192 ? launch(Sm90aTile128x192{})
                          : launch(Sm90aTile128x256{});
}

// Short-K rule of run_sm90a_auto (host only): K <= 256 and the 128 x 128 grid fills its last
// round more than 10% better than the 128 x 256 grid (fill = tiles / (rounds · SMs)).
inline bool short_k_prefers_128x128(int64_t M, int64_t N, int64_t K, int sm_count) {
  if (sm_count <= 0 || K > 2 * Sm90aPersistent128x128St::kBK) return false;
  auto fill = [&](int64_t tiles) {
    const int64_t rounds = (tiles + sm_count - 1) / sm_count;
    return double(tiles) / double(rounds * sm_count);
  };
  const int64_t m_tiles = (M + 127) / 128;
  return fill(m_tiles * ((N + 127) / 128)) > 1.1 * fill(m_tiles * ((N + 255) / 256));
}

// Dequant tile rule of run_sm90a_auto (host only): 256x160 when its tiles fill one wave to at least
// 90% (every CTA one tile, 28% fewer operand bytes per MAC than 128x160), else the ping-pong
// 128x160 kernel (one consumer warpgroup's epilogue under the other's K loop). H200, out_proj at
// d_model 2560 with the fp32 residual, bench/RESULTS.md run Y: M = 2048 (128 tiles of 256x160 on
// 132 SMs) 50.7 us against ping-pong 51.5 and cooperative 128x160 60.4; M = 8192 ping-pong 192,
// 256x160 190, cooperative 230.
inline bool dequant_prefers_256x160(int64_t M, int64_t N, int sm_count) {
  const int64_t tiles = ((M + 255) / 256) * ((N + 159) / 160);
  return sm_count > 0 && tiles <= sm_count && 10 * tiles >= 9 * int64_t(sm_count);
}

// Tile choice. Problems with at least one tile per SM run the persistent kernels. A Requant
// epilogue with K <= 256 (dt_proj, when kSm90a is forced: the auto path sends it to kShortK) may
// take 128x128 with the staged store (see below). A Dequant epilogue takes a 160-wide tile, whose
// epilogue batches the col_scale / bias / residual loads and, on whole 64-row blocks, uses 8-byte
// loads and pair stores without bounds checks (128x256 has neither: out_proj_f16 at d_model 2560,
// M = 8192, 388 us against 223 for 128x160, run Y): with a residual (out_proj) 256x160 or the
// ping-pong 128x160 (dequant_prefers_256x160), without one as below. Otherwise the width goes by
// modelled time: rounds of
// tiles x tile width / relative MAC rate (kRate160 = 0.78: the 128x160 tile moves 1.27x the L2
// bytes per MAC of 128x256 and measured 1.29x slower on in_proj); e.g. M = 2048 in_proj
// (N = 10240) -> 128x256 (640 tiles, 5 rounds). The two-CTA W-multicast kernels measured
// slower than their one-CTA counterparts on these shapes and are not selected. Smaller
// problems keep the one-tile-per-CTA kernels: the fraction of the last wave that is busy, times
// the relative throughput of the tile (128x256 moves 1.5x fewer L2 bytes per MAC than 128x128).
template <typename Epilogue>
Status run_sm90a_auto(const GemmParams<Epilogue>& p, int sm_count, cudaStream_t stream) {
  const int64_t m_tiles = (p.M + 127) / 128;
  const int64_t tiles256 = m_tiles * ((p.N + 255) / 256), tiles160 = m_tiles * ((p.N + 159) / 160);
  if (sm_count > 0 && tiles160 >= sm_count) {
    if constexpr (std::is_same_v<Epilogue, DequantF32> || std::is_same_v<Epilogue, DequantF16>) {
      if (p.epilogue.residual != nullptr) {
        if (dequant_prefers_256x160(p.M, p.N, sm_count)) return run_sm90a<Epilogue, Sm90aPersistent256x160>(p, stream);
        return run_sm90a<Epilogue, Sm90aPingPong128x160>(p, stream);
      }
      // Without a residual the epilogue is light: ping-pong up to two rounds of 128x160 tiles,
      // cooperative 128x160 beyond (fp16 out, d_model 2560, run Y: M = 2048 62.6 us against 69.3
      // and 256x160 83.4; M = 8192 243 against 223).
      if (tiles160 <= 2 * int64_t(sm_count)) return run_sm90a<Epilogue, Sm90aPingPong128x160>(p, stream);
      return run_sm90a<Epilogue, Sm90aPersistent128x160>(p, stream);
    }
    // Short K (dt_proj: K = dt_rank <= 256, one or two K-slices per tile): the epilogue is most of
    // a tile's time, so the last round's fill decides; 128 x 128 when its rounds are filled more
    // than 10% better than 128 x 256's. H100, dt_proj, same run (bench/RESULTS.md run L):
    // d_model 2560 M = 2048 (320 wide tiles = 2.4 rounds, 640 narrow = 4.85) 24.7 us against 27.6;
    // M = 8192 (equal fill) 82.0 against 78.2; d_model 768 M = 2048 / 8192 (equal fill) 13.7 / 28.6
    // against 12.9 / 28.2.
    if constexpr (std::is_same_v<Epilogue, Requant>)
      if (short_k_prefers_128x128(p.M, p.N, p.K, sm_count)) return run_sm90a<Epilogue, Sm90aPersistent128x128St>(p, stream);
    constexpr double kRate160 = 0.78;
    const double t256 = double((tiles256 + sm_count - 1) / sm_count) * 256.0;
    const double t160 = double((tiles160 + sm_count - 1) / sm_count) * 160.0 / kRate160;
    if (t256 <= t160) return run_sm90a<Epilogue, Sm90aPersistent128x256St>(p, stream);
    return run_sm90a<Epilogue, Sm90aPersistent128x160>(p, stream);
  }
  auto wave_eff = [&](int64_t bn) {
    const int64_t tiles = ((p.M + 127) / 128) * ((p.N + bn - 1) / bn);
    const int64_t waves = (tiles + sm_count - 1) / sm_count;
    return waves == 0 ? 0.0 : double(tiles) / double(waves * sm_count);
  };
  if (wave_eff(256) >= 0.8 * wave_eff(128)) return run_sm90a<Epilogue, Sm90aTile128x256>(p, stream);
  return run_sm90a<Epilogue, Sm90aTile128x128>(p, stream);
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::gemm
