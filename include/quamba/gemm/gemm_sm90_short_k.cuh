// quamba/gemm/gemm_sm90_short_k.cuh: int8 GEMM for a short K (K <= 256) on sm_90a: W resident in
// shared memory, A row tiles streamed by TMA, wgmma, several consumer warpgroups in flight.
//
//   C(M, N) = epilogue( A(M, K) · W(N, K)ᵀ ), same Params, rules and epilogues as every path
//   (gemm/params.cuh, gemm/epilogue.cuh); bit-exact against the reference.
//
// The Mamba dt_proj (K = dt_rank, 48..160; N = d_inner; M = tokens) is all output: 160 MACs per
// int8 output. The K-pipelined wgmma kernels (gemm_sm90.cuh) reload a tile's W slices for every
// tile, pad K to whole 128-byte slices (K = 160 issues 8 k32 steps for 5), and their two
// consumer warpgroups run a tile's epilogue together, so the tensor cores wait for it; the mma.sync
// column-resident kernel (gemm_short_k.cuh) spends ~11 issued instructions per output on
// fragments, IMMA and the epilogue at 2.4 warps per scheduler. Both measured ~16 us at d_model 2560,
// M = 2048 (H200) against an output stream of ~3 us.
// Here a CTA (one per SM) walks a contiguous range of the column-block-major list of 64 x 128
// tiles:
//   - the producer warp (one thread) loads the W rows of each 128-column block of its range once
//     (all of K: two 128-byte swizzled pieces) into one of two W buffers, as soon as that buffer
//     is released, and each tile's 64 A rows into a ring of kStages stages (full/empty mbarriers);
//   - kConsumers warpgroups take the tiles in turn (tile j of the range: warpgroup j % kConsumers),
//     issue the K/32 wgmma.m64n128k32 of it (a compile-time count, see kKSteps), release its A
//     stage and run the epilogue, so one warpgroup's epilogue overlaps the others' wgmma and the
//     producer's loads;
//   - epilogue: a plain Requant (per-tensor finite alpha) into a 16-byte aligned C with ldc and N
//     multiples of 16 stages its int8 block in the 128-byte swizzle and leaves by one TMA store
//     (two staging blocks per warpgroup; rows past M clipped by the copy engine): per output
//     I2FP, FMUL, two FMNMX, FADD and half a PRMT and a 2-byte shared store. Every other case
//     goes through the sm90a kernels' store_block (column scales, non-finite alphas, Dequant,
//     other pitches), with the same bits.
// W buffer b serves the CTA's segments (runs of tiles of one column block) 2i + b; each consumer
// warp arrives on its empty barrier when it passes the segment's end (also where it had no tile
// there, after that segment's W has landed, so that an arrive never counts toward a later
// segment's phase), and the producer loads the segment after next into it.
// Measured (H200, bench/RESULTS.md run AH): dt_proj at d_model 2560, M = 2048 / 8192 in 13.0 / 31.8
// us against 16.7 / 44.2 for the column-resident mma.sync kernel and 14.5 / 40.9 for cuBLAS fp16,
// same run; slower than the mma.sync kernel at K = 48 (d_model 768) and with one tile per CTA,
// hence gemm::run's rule (sm90a_short_k_worthwhile, gemm.cuh).
// Programmatic dependent launch (GemmParams::pdl): the producer requests the first two segments'
// W before the dependency wait, A after it; the consumers wait before their first tile, so the
// epilogue's reads (residual, col_scale, bias) and C writes come after it. Trigger implicit.
// Requirements: those of gemm_sm90.cuh (can_implement_sm90a) and K <= 256; sm_90 device with the
// sm_90a image (else kErrorArchNotSupported).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "quamba/core/arch.hpp"
#include "quamba/core/launch.cuh"
#include "quamba/core/mbarrier.cuh"
#include "quamba/core/status.hpp"
#include "quamba/gemm/gemm_sm90.cuh"

namespace quamba::gemm {

inline constexpr int64_t kSm90aShortKMaxK = 256;

template <int kConsumers_, int kStages_>
struct Sm90aShortKTraits {
  static constexpr int kBN = 128;          // output columns per tile (wgmma n128)
  static constexpr int kTileM = 64;        // rows per tile: one wgmma m64 block of one warpgroup
  static constexpr int kBK = 128;          // bytes per swizzled piece of K (one 128-byte swizzle row)
  static constexpr int kPieces = 2;        // pieces of K held: K <= 256
  static constexpr bool kStagedStore = true;  // store_block: int8 outputs leave as 16-byte row pieces
  static constexpr int kConsumers = kConsumers_;
  static constexpr int kStages = kStages_;
  static constexpr int kThreads = 128 * kConsumers + 32;  // consumer warpgroups, then the producer warp
  static constexpr int kAPieceBytes = kTileM * kBK;       // 8 KiB
  static constexpr int kWPieceBytes = kBN * kBK;          // 16 KiB
  static constexpr int kStageBytesA = kPieces * kAPieceBytes;
  static constexpr int kWBytes = kPieces * kWPieceBytes;
  static constexpr int kStoreBytes = kTileM * kBN;  // one staging block (two per consumer warpgroup)
  // +1024: the base is rounded up to the 128-byte swizzle's 1024-byte period (descriptor base
  // offset 0); barriers: full / empty per A stage, full / empty per W buffer.
  // Two staging blocks per consumer (the TMA store of one may still read it while the next fills).
  static constexpr int kSmemBytes =
      2 * kWBytes + kStages * kStageBytesA + 2 * kConsumers * kStoreBytes + (2 * kStages + 4) * 8 + 1024;
  static_assert(kStages > kConsumers, "the producer must be able to run ahead of every consumer");
  static_assert(kConsumers >= 1 && kConsumers <= 3, "named barriers 1..3 of store_block; 4 warpgroups max");
};
// 3 consumer warpgroups, 6 A stages: 209 KiB of shared memory, 416 threads, one CTA per SM.
using Sm90aShortK128 = Sm90aShortKTraits<3, 6>;

template <typename Traits>
constexpr const char* sm90a_short_k_name() {
  if constexpr (std::is_same_v<Traits, Sm90aShortK128>) return "sm90a_short_k_64x128_c3_s6";
  else return "sm90a_short_k_custom";
}

namespace detail {

#if QUAMBA_HAS_CUDA_COMPILER

template <typename Traits>
struct Sm90aShortKSmem {
  uint32_t sW, sA, sStore, full_bar, empty_bar, wfull_bar, wempty_bar;
  QUAMBA_DEVICE explicit Sm90aShortKSmem(uint32_t raw) {
    sW = (raw + 1023u) & ~1023u;
    sA = sW + 2 * Traits::kWBytes;
    sStore = sA + Traits::kStages * Traits::kStageBytesA;
    full_bar = sStore + Traits::kConsumers * 2 * Traits::kStoreBytes;
    empty_bar = full_bar + 8 * Traits::kStages;
    wfull_bar = empty_bar + 8 * Traits::kStages;
    wempty_bar = wfull_bar + 16;
  }
};

// A CTA's walk over its range of the column-block-major tile list (tile i: row tile i % m_tiles of
// column block i / m_tiles), one division at the start.
struct ShortKWalk {
  int m_tiles, mt, nb;
  QUAMBA_DEVICE ShortKWalk(int begin, int m_tiles_) : m_tiles(m_tiles_), mt(begin % m_tiles_), nb(begin / m_tiles_) {}
  QUAMBA_DEVICE void next() {
    if (++mt == m_tiles) {
      mt = 0;
      ++nb;
    }
  }
};

using quamba::detail::mbar_test;

// 1-D position in a ring of kN slots with its barrier parity (the pass number's low bit).
template <int kN>
struct RingPos {
  uint32_t slot = 0, parity = 0;
  QUAMBA_DEVICE void next() {
    if (++slot == kN) {
      slot = 0;
      parity ^= 1u;
    }
  }
};

// The 64 x 128 int8 block of a consumer warpgroup as a TMA store: tile staged in shared memory in
// the 128-byte swizzle (16-byte chunk c of row r at chunk c ^ (r % 8), which is the layout the
// tensor map's SWIZZLE_128B reads), rows past M and columns past N clipped by the copy engine.
QUAMBA_DEVICE void tma_store_2d(const CUtensorMap* map, uint32_t src, int c_inner, int c_row) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(src), "r"(c_inner), "r"(c_row)
               : "memory");
}
using quamba::detail::bulk_commit;
using quamba::detail::bulk_wait_read;
using quamba::detail::fence_proxy_async_smem;

// kKSteps: k32 steps per tile, a compile-time count (a runtime loop of wgmma makes ptxas insert
// warpgroup.arrive between them, C7519); K <= 32·kKSteps, the bytes past K zero-filled by TMA.
// tma_c: the int8 C map (128-byte boxes of 64 rows, 128-byte swizzle) when `tma_store` (a plain
// Requant into a 16-byte aligned C with ldc and N multiples of 16); else every block through
// store_block.
template <typename Traits, typename Epilogue, int kKSteps>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    gemm_sm90a_short_k_kernel(const __grid_constant__ CUtensorMap tma_a, const __grid_constant__ CUtensorMap tma_w,
                              const __grid_constant__ CUtensorMap tma_c, GemmParams<Epilogue> p, bool pair_ok,
                              bool wide_ok, bool tma_store) {
#if QUAMBA_SM90A_ENABLED
  constexpr int kC = Traits::kConsumers, kStages = Traits::kStages;
  static_assert(kKSteps >= 1 && kKSteps <= 4 * Traits::kPieces, "K <= 256");
  constexpr int pieces = (kKSteps + 3) / 4;  // 128-byte pieces of K loaded per operand row
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = ptx::smem_u32(smem_raw);
  const Sm90aShortKSmem<Traits> sm(raw);
  const int tid = threadIdx.x;
  const int warpgroup = tid / 128;
  const int lane = tid & 31;
  const int m_tiles = static_cast<int>((p.M + Traits::kTileM - 1) / Traits::kTileM);
  const int tiles = m_tiles * static_cast<int>((p.N + Traits::kBN - 1) / Traits::kBN);
  const int begin = static_cast<int>(int64_t(tiles) * blockIdx.x / gridDim.x);
  const int count = static_cast<int>(int64_t(tiles) * (blockIdx.x + 1) / gridDim.x) - begin;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(sm.full_bar + 8 * s, 1);   // the producer's arrive.expect_tx
      mbar_init(sm.empty_bar + 8 * s, 4);  // one arrive per warp of the consuming warpgroup
    }
    for (int b = 0; b < 2; ++b) {
      mbar_init(sm.wfull_bar + 8 * b, 1);
      mbar_init(sm.wempty_bar + 8 * b, 4 * kC);  // every consumer warp, at every segment's end
    }
    quamba::detail::fence_mbarrier_init();
  }
  __syncthreads();

  if (warpgroup == kC) {
    // The producer warp; lane 0 issues.
    if (lane == 0) {
      ShortKWalk walk(begin, m_tiles);
      RingPos<kStages> st;
      // W: the CTA's segments are the consecutive column blocks walk.nb .. last_nb; each goes into
      // the next buffer as soon as that buffer's previous segment is released, so a segment's W is
      // requested as soon as the consumers have left the segment two back instead of when the A
      // stream reaches it (the consumers waited on W at every column-block change).
      const int last_nb = count > 0 ? (begin + count - 1) / m_tiles : -1;
      int w_nb = walk.nb;  // next column block whose W is to be requested
      RingPos<2> wl;       // its buffer
      const auto load_w = [&](bool block) {
        for (; w_nb <= last_nb; ++w_nb, wl.next()) {
          // A fresh barrier's "previous" phase (parity 1) counts as complete: the first use of
          // each buffer passes at once; later ones wait for every consumer warp to leave the
          // segment two back.
          if (block) mbar_wait(sm.wempty_bar + 8 * wl.slot, wl.parity ^ 1u);
          else if (!mbar_test(sm.wempty_bar + 8 * wl.slot, wl.parity ^ 1u)) return;
          block = false;
          mbar_arrive_expect_tx(sm.wfull_bar + 8 * wl.slot, pieces * Traits::kWPieceBytes);
#pragma unroll
          for (int pc = 0; pc < pieces; ++pc)
            tma_load_2d(sm.sW + wl.slot * Traits::kWBytes + pc * Traits::kWPieceBytes, &tma_w, pc * Traits::kBK,
                        w_nb * Traits::kBN, sm.wfull_bar + 8 * wl.slot);
        }
      };
      load_w(false);  // the first two segments' W, before the dependency wait (weights)
      grid_dependency_wait();
      for (int j = 0; j < count; ++j, walk.next(), st.next()) {
        load_w(walk.nb >= w_nb);  // blocking only where this tile's own W is not requested yet
        mbar_wait(sm.empty_bar + 8 * st.slot, st.parity ^ 1u);
        mbar_arrive_expect_tx(sm.full_bar + 8 * st.slot, pieces * Traits::kAPieceBytes);
#pragma unroll
        for (int pc = 0; pc < pieces; ++pc)
          tma_load_2d(sm.sA + st.slot * Traits::kStageBytesA + pc * Traits::kAPieceBytes, &tma_a, pc * Traits::kBK,
                      walk.mt * Traits::kTileM, sm.full_bar + 8 * st.slot);
      }
    }
  } else {
    grid_dependency_wait();
    const int consumer = warpgroup;
    const int lt = tid % 128;
    const uint32_t store0 = sm.sStore + consumer * 2 * Traits::kStoreBytes;
    int32_t acc[Traits::kBN / 2];
#pragma unroll
    for (int i = 0; i < Traits::kBN / 2; ++i) acc[i] = 0;
    ShortKWalk walk(begin, m_tiles);
    RingPos<kStages> st;
    RingPos<2> wb;
    int cur_nb = -1, turn = 0;
    uint32_t stores = 0;  // this warpgroup's tiles stored by TMA
    for (int j = 0; j < count; ++j, walk.next(), st.next()) {
      if (walk.nb != cur_nb) {
        if (cur_nb >= 0) {
          // Leaving the segment: its W has landed (so the producer has seen the buffer's previous
          // segment released and this arrive counts toward this segment's phase, never a later
          // one's), and this warp's wgmmas on it have retired (each tile waits for its group).
          mbar_wait(sm.wfull_bar + 8 * wb.slot, wb.parity);
          if (lane == 0) mbar_arrive(sm.wempty_bar + 8 * wb.slot);
          wb.next();
        }
        cur_nb = walk.nb;
      }
      const bool mine = turn == consumer;
      turn = turn + 1 == kC ? 0 : turn + 1;
      if (!mine) continue;
      mbar_wait(sm.wfull_bar + 8 * wb.slot, wb.parity);
      mbar_wait(sm.full_bar + 8 * st.slot, st.parity);
      const uint32_t a_base = sm.sA + st.slot * Traits::kStageBytesA;
      const uint32_t w_base = sm.sW + wb.slot * Traits::kWBytes;
      fence_operands(acc);
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        // k32 step ks: piece ks / 4, byte offset 32·(ks % 4) inside the swizzled 128-byte rows.
        const uint32_t off_a = (ks >> 2) * Traits::kAPieceBytes + (ks & 3) * 32;
        const uint32_t off_w = (ks >> 2) * Traits::kWPieceBytes + (ks & 3) * 32;
        wgmma_m64n128k32_s8(acc, smem_desc_sw128(a_base + off_a), smem_desc_sw128(w_base + off_w), ks > 0 ? 1 : 0);
      }
      wgmma_commit();
      wgmma_wait<0>();
      fence_operands(acc);
      if (lane == 0) mbar_arrive(sm.empty_bar + 8 * st.slot);
      const int row0 = walk.mt * Traits::kTileM, n0 = walk.nb * Traits::kBN;
      if constexpr (std::is_same_v<Epilogue, Requant>) {
        if (tma_store) {
          // Two staging blocks per warpgroup: the store of the tile before last has finished
          // reading this one (its issuing thread waited, then passed the barrier below).
          const uint32_t block = store0 + (stores & 1u) * Traits::kStoreBytes;
          named_barrier_sync(1 + consumer, 128);
          stage_requant_short<Traits::kBN>(acc, p.epilogue.alpha, smem_raw + (block - raw), (lt >> 5), (lt & 31) >> 2,
                                            lt & 3);
          fence_proxy_async_smem();
          named_barrier_sync(1 + consumer, 128);
          if (lt == 0) {
            tma_store_2d(&tma_c, block, n0, row0);
            bulk_commit();
            bulk_wait_read<1>();
          }
          ++stores;
          continue;
        }
      }
      // Dequant: batches of two column pairs (four spill at the 128 registers of 416 threads).
      store_block<Traits, std::is_same_v<Epilogue, Requant> ? 4 : 2>(
          p, pair_ok, wide_ok, acc, row0, n0, smem_raw + (store0 - raw), consumer);
    }
    if (lt == 0 && stores > 0) bulk_wait_read<0>();  // shared memory stays valid until read
  }
#else
  __trap();  // built without sm_90a: never produce silent garbage
#endif
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace detail

// Host-only validation: the sm90a rules and K <= kSm90aShortKMaxK (else kErrorNotSupported).
template <typename Epilogue>
Status can_implement_sm90a_short_k(const GemmParams<Epilogue>& p) {
  QUAMBA_RETURN_IF_ERROR(can_implement_sm90a(p));
  if (p.K > kSm90aShortKMaxK) return Status::kErrorNotSupported;
  // 32-bit tile indices (far above any Mamba shape).
  if (((p.M + 63) / 64) * ((p.N + 127) / 128) >= (int64_t(1) << 31)) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

#if QUAMBA_HAS_CUDA_COMPILER

namespace detail {
// The kernel's k32 step count for K: 2, 4, 5, 6 or 8 (the Mamba dt_ranks 48..160 need at most
// one zero-filled step; five instantiations instead of eight).
inline int sm90a_short_k_steps(int64_t K) {
  const int k = static_cast<int>((K + 31) / 32);
  return k <= 2 ? 2 : k <= 4 ? 4 : k <= 6 ? k : 8;
}
template <typename Traits, typename Epilogue, typename F>
Status with_short_k_kernel(int64_t K, F&& f) {
  switch (sm90a_short_k_steps(K)) {
    case 2: return f(gemm_sm90a_short_k_kernel<Traits, Epilogue, 2>);
    case 4: return f(gemm_sm90a_short_k_kernel<Traits, Epilogue, 4>);
    case 5: return f(gemm_sm90a_short_k_kernel<Traits, Epilogue, 5>);
    case 6: return f(gemm_sm90a_short_k_kernel<Traits, Epilogue, 6>);
    default: return f(gemm_sm90a_short_k_kernel<Traits, Epilogue, 8>);
  }
}
}  // namespace detail

// True when the current device is sm_90 and this kernel's loaded image came from sm_90a code.
template <typename Epilogue, typename Traits = Sm90aShortK128>
bool sm90a_short_k_available() {
  static quamba::detail::Sm90ImageCache cache;
  return current_arch() == 90 && cache.get(detail::gemm_sm90a_short_k_kernel<Traits, Epilogue, 8>);
}

template <typename Epilogue, typename Traits = Sm90aShortK128>
Status run_sm90a_short_k(const GemmParams<Epilogue>& p, cudaStream_t stream) {
  QUAMBA_RETURN_IF_ERROR(can_implement_sm90a_short_k(p));
  if (p.M == 0) return Status::kSuccess;
  if (!sm90a_short_k_available<Epilogue, Traits>()) return Status::kErrorArchNotSupported;
  CUtensorMap tma_a, tma_w, tma_c;
  QUAMBA_RETURN_IF_ERROR(detail::make_tensor_map_i8(&tma_a, p.A, p.K, p.M, p.lda, Traits::kTileM));
  QUAMBA_RETURN_IF_ERROR(detail::make_tensor_map_i8(&tma_w, p.W, p.K, p.N, p.ldw, Traits::kBN));
  DeviceInfo info;
  QUAMBA_RETURN_IF_ERROR(query_device(&info));
  const bool pair_ok = c_pairs_aligned(p);
  const bool wide_ok = c_rows_16b_aligned(p);
  // The TMA store epilogue: a plain Requant (per-tensor, finite alpha) into a 16-byte aligned C.
  bool tma_store = false;
  if constexpr (std::is_same_v<Epilogue, Requant>) {
    // N % 16 == 0: the copy engine clips a row at the 16-byte chunk holding column N, so a
    // partial last chunk would write the columns past N up to it.
    tma_store = wide_ok && p.N % 16 == 0 && p.epilogue.col_scale == nullptr && std::isfinite(p.epilogue.alpha);
    if (tma_store)
      QUAMBA_RETURN_IF_ERROR(
          detail::make_tensor_map_i8(&tma_c, reinterpret_cast<const int8_t*>(p.C), p.N, p.M, p.ldc, Traits::kTileM));
  }
  if (!tma_store) tma_c = tma_a;  // unused
  const int64_t tiles = ((p.M + Traits::kTileM - 1) / Traits::kTileM) * ((p.N + Traits::kBN - 1) / Traits::kBN);
  const int64_t ctas = tiles < info.sm_count ? tiles : info.sm_count;
  return detail::with_short_k_kernel<Traits, Epilogue>(p.K, [&](auto kernel) {
    QUAMBA_RETURN_IF_CUDA_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes));
    return launch_kernel(kernel, dim3(static_cast<unsigned>(ctas)), dim3(Traits::kThreads), Traits::kSmemBytes,
                         stream, p.pdl, tma_a, tma_w, tma_c, p, pair_ok, wide_ok, tma_store);
  });
}

#endif  // QUAMBA_HAS_CUDA_COMPILER

}  // namespace quamba::gemm
