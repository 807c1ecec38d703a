// quamba/block/weights.cuh: device-side weights of the Mamba block and model (fp16 and W8A8).
//
// Sizes (BlockDims, from a reference::ModelConfig): D = d_model, E = d_inner, N = d_state,
// K = d_conv, R = dt_rank, X = R + 2N, Rp = R rounded up to 16, Xp = Rp + 2N.
// Why the padding: the int8 GEMM needs K and lda multiples of 16 and the prefill scan needs the
// B and C views 16-byte aligned, but R = ceil(D/16) is 4..8 for small models (48..160 for the
// public ones, where Rp = R). So x_proj's weight is stored with Xp rows
// [dt rows (R) | zero rows (Rp - R) | B rows (N) | C rows (N)]: its output row has dt_low at
// [0, R), exact zeros at [R, Rp), B at [Rp, Rp + N) and C at [Rp + N, Xp). The W8A8 dt_proj
// weight is stored (E, Rp) with zero columns past R, so dt_proj reads K = Rp columns of that row
// and the padding adds exact zeros: integer results are unchanged.
//
// Device layouts (all row-major, (out, in) for linear layers; pointers into one device blob,
// each tensor 256-byte aligned):
//   LayerF16: norm_gamma fp32 (D); in_proj fp16 (2E, D); conv_w fp32 (E, K); conv_b fp32 (E);
//             x_proj fp16 (Xp, E); dt_proj fp16 (E, R); dt_bias fp32 (E); A fp32 (E, N)
//             = -exp(A_log); Dskip fp32 (E); out_proj fp16 (D, E).
//   LayerI8:  norm_gamma fp32 (D); in_proj int8 (2E, D); conv_w int8 (E, K); conv_b int8 (E);
//             x_proj int8 (Xp, E); dt_proj int8 (E, Rp); dt_bias, A_log (E, N), Dskip int8;
//             out_proj int8 (D, E) (= W_out·Hᵀ/√E quantized, when the model uses the Hadamard);
//             plus LayerScalesI8: every fp32 scale product, computed once on the host in the
//             order reference::block_i8 uses, so integer outputs can match it bit for bit.
//   Model:    embedding fp16 (V, D), norm_f fp32 (D), lm_head fp16 (V, D) (= embedding when
//             tied), for both precisions (SPEC §2: embedding, norm_f, lm_head stay fp16).
//
// Packing: a WeightPacker lays tensors out (256-byte aligned) in a host byte blob, or only plans
// the layout (plan-only mode, for weights generated on the device). Layer structs first hold
// offsets (as pointers from address 0) and rebase() turns them into device pointers once the
// blob is on the device. Nothing here allocates device memory or touches the device.
#pragma once

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/workspace.hpp"
#include "quamba/reference/block.hpp"
#include "quamba/reference/gemm.hpp"
#include "quamba/reference/hadamard.hpp"
#include "quamba/reference/model.hpp"

namespace quamba::block {

struct BlockDims {
  int64_t D = 0, E = 0, N = 0, K = 0, R = 0, X = 0, Rp = 0, Xp = 0, V = 0, n_layer = 0;
  float eps = 1e-5f;
};

// Sizes the GPU block supports: D, E multiples of 16 (int8 GEMM K, scan channel groups),
// N ∈ {16, 32, 64} (scan), K ∈ [2, 4] (conv1d). Anything else: kErrorNotSupported.
inline Status make_dims(const reference::ModelConfig& c, BlockDims* out) {
  if (!out) return Status::kErrorInvalidArgument;
  QUAMBA_RETURN_IF_ERROR(reference::validate_config(c));
  BlockDims d;
  d.D = c.d_model;
  d.E = c.d_inner;
  d.N = c.d_state;
  d.K = c.d_conv;
  d.R = c.dt_rank;
  d.X = c.dt_rank + 2 * c.d_state;
  d.Rp = (c.dt_rank + 15) / 16 * 16;
  d.Xp = d.Rp + 2 * c.d_state;
  d.V = c.vocab;
  d.n_layer = c.n_layer;
  d.eps = c.eps;
  if (d.D % 16 != 0 || d.E % 16 != 0) return Status::kErrorNotSupported;
  if (d.N != 16 && d.N != 32 && d.N != 64) return Status::kErrorNotSupported;
  if (d.K < 2 || d.K > 4) return Status::kErrorNotSupported;
  if (d.D > 8192 || d.V > 0x7fffffff) return Status::kErrorNotSupported;  // add_rmsnorm kMaxD, cuBLAS int
  *out = d;
  return Status::kSuccess;
}

// Every fp32 scale product of one W8A8 block (SPEC §2 dataflow), in the reference's order.
struct LayerScalesI8 {
  float inv_s_h = 1;      // step 1: h_q = q(norm · inv_s_h)
  float alpha_in = 1;     // step 2: requant_alpha(s_h, s_Win, s_xz)
  float conv_scale_wx = 1, conv_s_b = 1, conv_inv_s_u = 1;  // step 3
  float alpha_x = 1;      // step 4: requant_alpha(s_u, s_Wx, s_xd)
  float alpha_dt = 1;     // step 5: requant_alpha(s_xd, s_Wdt, s_dt)
  float s_u = 1, s_dt = 1, s_xd = 1, s_xz = 1, s_A = 1, s_D = 1, s_bdt = 1;  // step 6
  float out_factor = 1;   // step 7: hadamard_quant_factor(E, 1/s_o), or 1/s_o without rotation
  float alpha_out = 1;    // step 8: dequant_alpha(s_o, s_Wout)
};

inline LayerScalesI8 make_scales(const reference::LayerWeightsI8& w, int64_t E, bool use_hadamard) {
  const reference::LayerActScales& s = w.act;
  LayerScalesI8 o;
  o.inv_s_h = inverse_scale(s.s_h);
  o.alpha_in = reference::requant_alpha(s.s_h, w.in_proj.scale, s.s_xz);
  o.conv_scale_wx = s.s_xz * w.conv_w.scale;
  o.conv_s_b = w.conv_b.scale;
  o.conv_inv_s_u = inverse_scale(s.s_u);
  o.alpha_x = reference::requant_alpha(s.s_u, w.x_proj.scale, s.s_xd);
  o.alpha_dt = reference::requant_alpha(s.s_xd, w.dt_proj.scale, s.s_dt);
  o.s_u = s.s_u;
  o.s_dt = s.s_dt;
  o.s_xd = s.s_xd;
  o.s_xz = s.s_xz;
  o.s_A = w.A_log.scale;
  o.s_D = w.D.scale;
  o.s_bdt = w.dt_bias.scale;
  o.out_factor = use_hadamard ? reference::hadamard_quant_factor(E, inverse_scale(s.s_o)) : inverse_scale(s.s_o);
  o.alpha_out = reference::dequant_alpha(s.s_o, w.out_proj.scale);
  return o;
}

struct LayerF16 {
  const float* norm_gamma = nullptr;
  const __half* in_proj = nullptr;
  const float* conv_w = nullptr;
  const float* conv_b = nullptr;
  const __half* x_proj = nullptr;
  const __half* dt_proj = nullptr;
  const float* dt_bias = nullptr;
  const float* A = nullptr;
  const float* Dskip = nullptr;
  const __half* out_proj = nullptr;
  template <class F>
  void for_each_ptr(F&& f) {
    f(norm_gamma); f(in_proj); f(conv_w); f(conv_b); f(x_proj);
    f(dt_proj); f(dt_bias); f(A); f(Dskip); f(out_proj);
  }
};

struct LayerI8 {
  const float* norm_gamma = nullptr;
  const int8_t* in_proj = nullptr;
  const int8_t* conv_w = nullptr;
  const int8_t* conv_b = nullptr;
  const int8_t* x_proj = nullptr;
  const int8_t* dt_proj = nullptr;
  const int8_t* dt_bias = nullptr;
  const int8_t* A_log = nullptr;
  const int8_t* Dskip = nullptr;
  const int8_t* out_proj = nullptr;
  LayerScalesI8 s;
  bool use_hadamard = true;
  template <class F>
  void for_each_ptr(F&& f) {
    f(norm_gamma); f(in_proj); f(conv_w); f(conv_b); f(x_proj);
    f(dt_proj); f(dt_bias); f(A_log); f(Dskip); f(out_proj);
  }
};

// Model-level tensors, shared by both precisions. The fp16 tables, or with `int8` (the int8 head
// option of SPEC §2, W8A8 models only) int8 tables with one fp32 scale per row, the fp16 ones
// then unused (null).
struct HeadWeights {
  const __half* embedding = nullptr;  // (V, D)
  const float* norm_f = nullptr;      // (D)
  const __half* lm_head = nullptr;    // (V, D); == embedding when tied
  bool int8 = false;
  const int8_t* embedding_q = nullptr;     // (V, D)
  const float* embedding_scale = nullptr;  // (V)
  const int8_t* lm_head_q = nullptr;       // (V, D); == embedding_q when tied
  const float* lm_head_scale = nullptr;    // (V); == embedding_scale when tied
  // Only the tensors in use: rebase() turns every visited offset into a pointer.
  template <class F>
  void for_each_ptr(F&& f) {
    f(norm_f);
    if (int8) {
      f(embedding_q); f(embedding_scale); f(lm_head_q); f(lm_head_scale);
    } else {
      f(embedding); f(lm_head);
    }
  }
};

// Lays tensors out in one byte blob, 256-byte aligned each. With keep_data = false only the
// layout is planned (put() ignores its source), for weights generated on the device.
class WeightPacker {
 public:
  explicit WeightPacker(bool keep_data) : keep_(keep_data) {}
  // Reserves n elements of T, copies src (when given and keeping data; nullptr zero-fills) and
  // returns the offset encoded as a pointer from address 0 (see rebase).
  template <typename T>
  const T* put(const T* src, size_t n) {
    const size_t off = align_up(bytes_, kWorkspaceAlignment);
    bytes_ = off + n * sizeof(T);
    if (keep_) {
      blob_.resize(align_up(bytes_, kWorkspaceAlignment), 0);
      if (src) std::memcpy(blob_.data() + off, src, n * sizeof(T));
    }
    return reinterpret_cast<const T*>(static_cast<uintptr_t>(off));
  }
  size_t bytes() const { return align_up(bytes_, kWorkspaceAlignment); }
  const std::vector<uint8_t>& blob() const { return blob_; }
  bool keeps_data() const { return keep_; }

 private:
  bool keep_;
  size_t bytes_ = 0;
  std::vector<uint8_t> blob_;
};

// Offsets -> pointers into the device blob at `base`.
template <class Layer>
void rebase(Layer& l, const void* base) {
  l.for_each_ptr([&](auto& p) {
    using T = std::remove_cv_t<std::remove_pointer_t<std::remove_reference_t<decltype(p)>>>;
    p = reinterpret_cast<const T*>(static_cast<const char*>(base) + reinterpret_cast<uintptr_t>(p));
  });
}

namespace detail {

inline std::vector<__half> to_half_vec(const float* v, size_t n) {
  std::vector<__half> h(n);
  for (size_t i = 0; i < n; ++i) {
    __half_raw r;
    r.x = float_to_half_bits(v[i]);
    h[i] = __half(r);
  }
  return h;
}

// Rows [dt (R) | zeros (Rp - R) | B (N) | C (N)] of x_proj (X, E) -> (Xp, E).
template <typename T>
std::vector<T> pad_x_proj(const T* w, const BlockDims& d) {
  std::vector<T> out(static_cast<size_t>(d.Xp * d.E), T{});
  const size_t row = static_cast<size_t>(d.E);
  std::memcpy(out.data(), w, static_cast<size_t>(d.R) * row * sizeof(T));
  std::memcpy(out.data() + static_cast<size_t>(d.Rp) * row, w + static_cast<size_t>(d.R) * row,
              static_cast<size_t>(2 * d.N) * row * sizeof(T));
  return out;
}

}  // namespace detail

// fp16 layer from fp32 reference weights. With a plan-only packer `w` may be null.
inline LayerF16 pack_layer_f16(WeightPacker& pk, const BlockDims& d, const reference::LayerWeights* w) {
  const bool data = pk.keeps_data() && w;
  const size_t D = d.D, E = d.E, N = d.N, K = d.K, R = d.R;
  LayerF16 l;
  std::vector<__half> tmp;
  l.norm_gamma = pk.put(data ? w->norm_gamma.data() : nullptr, D);
  if (data) tmp = detail::to_half_vec(w->in_proj.data(), 2 * E * D);
  l.in_proj = pk.put(data ? tmp.data() : nullptr, 2 * E * D);
  l.conv_w = pk.put(data ? w->conv_w.data() : nullptr, E * K);
  l.conv_b = pk.put(data ? w->conv_b.data() : nullptr, E);
  if (data) tmp = detail::pad_x_proj(detail::to_half_vec(w->x_proj.data(), size_t(d.X) * E).data(), d);
  l.x_proj = pk.put(data ? tmp.data() : nullptr, size_t(d.Xp) * E);
  if (data) tmp = detail::to_half_vec(w->dt_proj.data(), E * R);
  l.dt_proj = pk.put(data ? tmp.data() : nullptr, E * R);
  l.dt_bias = pk.put(data ? w->dt_bias.data() : nullptr, E);
  std::vector<float> A;
  if (data) {
    A.resize(E * N);
    for (size_t i = 0; i < E * N; ++i) A[i] = -std::exp(w->A_log[i]);  // as reference::block_f32
  }
  l.A = pk.put(data ? A.data() : nullptr, E * N);
  l.Dskip = pk.put(data ? w->D.data() : nullptr, E);
  if (data) tmp = detail::to_half_vec(w->out_proj.data(), D * E);
  l.out_proj = pk.put(data ? tmp.data() : nullptr, D * E);
  return l;
}

// W8A8 layer from a quantized reference layer. With a plan-only packer `w` may be null (the
// scales are then left at 1 for the caller to set).
inline LayerI8 pack_layer_i8(WeightPacker& pk, const BlockDims& d, const reference::LayerWeightsI8* w,
                             bool use_hadamard) {
  const bool data = pk.keeps_data() && w;
  const size_t D = d.D, E = d.E, N = d.N, K = d.K, R = d.R, Rp = d.Rp;
  LayerI8 l;
  l.use_hadamard = use_hadamard;
  if (w) l.s = make_scales(*w, d.E, use_hadamard);
  l.norm_gamma = pk.put(data ? w->norm_gamma.data() : nullptr, D);
  l.in_proj = pk.put(data ? w->in_proj.q.data() : nullptr, 2 * E * D);
  l.conv_w = pk.put(data ? w->conv_w.q.data() : nullptr, E * K);
  l.conv_b = pk.put(data ? w->conv_b.q.data() : nullptr, E);
  std::vector<int8_t> tmp;
  if (data) tmp = detail::pad_x_proj(w->x_proj.q.data(), d);
  l.x_proj = pk.put(data ? tmp.data() : nullptr, size_t(d.Xp) * E);
  if (data) {
    tmp.assign(E * Rp, 0);
    for (size_t e = 0; e < E; ++e) std::memcpy(tmp.data() + e * Rp, w->dt_proj.q.data() + e * R, R);
  }
  l.dt_proj = pk.put(data ? tmp.data() : nullptr, E * Rp);
  l.dt_bias = pk.put(data ? w->dt_bias.q.data() : nullptr, E);
  l.A_log = pk.put(data ? w->A_log.q.data() : nullptr, E * N);
  l.Dskip = pk.put(data ? w->D.q.data() : nullptr, E);
  l.out_proj = pk.put(data ? w->out_proj.q.data() : nullptr, D * E);
  return l;
}

// Embedding / norm_f / lm_head in fp16 / fp32 / fp16. `head` is the untied lm_head (V, D) or
// null when tied (then lm_head aliases the embedding and costs no bytes).
inline HeadWeights pack_head(WeightPacker& pk, const BlockDims& d, const float* embedding, const float* norm_f,
                             const float* head, bool tied) {
  const bool data = pk.keeps_data() && embedding;
  const size_t VD = size_t(d.V) * size_t(d.D);
  HeadWeights h;
  std::vector<__half> tmp;
  if (data) tmp = detail::to_half_vec(embedding, VD);
  h.embedding = pk.put(data ? tmp.data() : nullptr, VD);
  h.norm_f = pk.put(data ? norm_f : nullptr, size_t(d.D));
  if (tied) {
    h.lm_head = h.embedding;
  } else {
    if (data) tmp = detail::to_half_vec(head, VD);
    h.lm_head = pk.put(data ? tmp.data() : nullptr, VD);
  }
  return h;
}

// The int8 head: embedding (V, D) int8 + (V) scales, norm_f fp32, and the untied lm_head's int8
// rows + scales (null when tied: lm_head then aliases the embedding). Null sources with a
// layout-only packer plan the same layout.
inline HeadWeights pack_head_i8(WeightPacker& pk, const BlockDims& d, const int8_t* embedding_q,
                                const float* embedding_scale, const float* norm_f, const int8_t* head_q,
                                const float* head_scale, bool tied) {
  const bool data = pk.keeps_data() && embedding_q;
  const size_t V = size_t(d.V), VD = V * size_t(d.D);
  HeadWeights h;
  h.int8 = true;
  h.embedding_q = pk.put(data ? embedding_q : nullptr, VD);
  h.embedding_scale = pk.put(data ? embedding_scale : nullptr, V);
  h.norm_f = pk.put(data ? norm_f : nullptr, size_t(d.D));
  if (tied) {
    h.lm_head_q = h.embedding_q;
    h.lm_head_scale = h.embedding_scale;
  } else {
    h.lm_head_q = pk.put(data ? head_q : nullptr, VD);
    h.lm_head_scale = pk.put(data ? head_scale : nullptr, V);
  }
  return h;
}

}  // namespace quamba::block
