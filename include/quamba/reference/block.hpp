// quamba/reference/block.hpp: one Mamba1 block, fp32 (SPEC §1) and W8A8 (SPEC §2), host only.
//
// Shapes (M = B·L token rows, token-major, channel fastest; strides in elements):
//   h_in, h_out, residual   (M, D) fp32. h_in is the previous block's output (null view for
//                           layer 0, where residual already holds the embedding); the block does
//                           residual += h_in, runs, and writes its own output to h_out.
//   conv_state              (B, E, K) the last K inputs x BEFORE the conv, slot 0 oldest:
//                           float for fp32, int8 (scale s_xz) for W8A8
//   ssm_state               (B, E, N) fp32
//   lengths                 (B) optional: sequence b has lengths[b] valid tokens (0..L); rows
//                           past it are padding: they never touch the state, are not observed,
//                           and their h_out rows are unspecified.
// Prefill (block_prefill_*) runs L tokens of each sequence from the carried state and leaves the
// state after its last valid token, so chunked prefill = repeated calls. Decode (block_step_*)
// is L = 1 through the ops' decode-update entry points (conv1d_update*, state update).
// Every op is one of the op references in this folder; nothing here recomputes an op.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "quamba/core/numeric.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/reference/conv1d.hpp"
#include "quamba/reference/gemm.hpp"
#include "quamba/reference/hadamard.hpp"
#include "quamba/reference/norm.hpp"
#include "quamba/reference/quant.hpp"
#include "quamba/reference/scan.hpp"

namespace quamba::reference {

// Sizes of a Mamba1 model. Build with make_config (fills SPEC defaults) and check with
// validate_config.
struct ModelConfig {
  int64_t d_model = 0;   // D
  int64_t n_layer = 0;
  int64_t d_inner = 0;   // E (2·D)
  int64_t d_state = 16;  // N
  int64_t d_conv = 4;    // K
  int64_t dt_rank = 0;   // R (ceil(D/16))
  int64_t vocab = 0;     // V
  float eps = 1e-5f;
  bool tie_embeddings = true;  // lm_head = embedding when true
  int64_t xdbl_dim() const { return dt_rank + 2 * d_state; }
};

inline ModelConfig make_config(int64_t d_model, int64_t n_layer, int64_t vocab) {
  ModelConfig c;
  c.d_model = d_model;
  c.n_layer = n_layer;
  c.vocab = vocab;
  c.d_inner = 2 * d_model;
  c.dt_rank = (d_model + 15) / 16;
  return c;
}

inline Status validate_config(const ModelConfig& c) {
  if (c.d_model <= 0 || c.n_layer <= 0 || c.d_inner <= 0 || c.d_state <= 0 || c.dt_rank <= 0 || c.vocab <= 0 ||
      !(c.eps > 0.0f))
    return Status::kErrorInvalidArgument;
  if (c.d_conv < 2 || c.d_conv > kMaxConvWidth) return Status::kErrorNotSupported;
  return Status::kSuccess;
}

// fp32 weights of one block (row-major, (out, in) for linear layers).
struct LayerWeights {
  std::vector<float> norm_gamma;  // (D)
  std::vector<float> in_proj;     // (2E, D)
  std::vector<float> conv_w;      // (E, K)
  std::vector<float> conv_b;      // (E)
  std::vector<float> x_proj;      // (R + 2N, E)
  std::vector<float> dt_proj;     // (E, R)
  std::vector<float> dt_bias;     // (E)
  std::vector<float> A_log;       // (E, N)
  std::vector<float> D;           // (E)
  std::vector<float> out_proj;    // (D, E)
};

inline Status validate_layer(const ModelConfig& c, const LayerWeights& w) {
  const size_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  const bool ok = w.norm_gamma.size() == D && w.in_proj.size() == 2 * E * D && w.conv_w.size() == E * K &&
                  w.conv_b.size() == E && w.x_proj.size() == (R + 2 * N) * E && w.dt_proj.size() == E * R &&
                  w.dt_bias.size() == E && w.A_log.size() == E * N && w.D.size() == E && w.out_proj.size() == D * E;
  return ok ? Status::kSuccess : Status::kErrorInvalidArgument;
}

// Static activation scales of one block (SPEC §2's table).
struct LayerActScales {
  float s_h = 1, s_xz = 1, s_u = 1, s_xd = 1, s_dt = 1, s_o = 1;
};

// W8A8 weights of one block. out_proj holds W_out' = W_out·Hᵀ/√E when the model was quantized
// with use_hadamard, W_out otherwise. norm_gamma stays fp32.
struct LayerWeightsI8 {
  std::vector<float> norm_gamma;
  QuantTensor in_proj, conv_w, conv_b, x_proj, dt_proj, dt_bias, A_log, D, out_proj;
  LayerActScales act;
};

inline Status validate_layer(const ModelConfig& c, const LayerWeightsI8& w) {
  const size_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  const bool ok = w.norm_gamma.size() == D && w.in_proj.q.size() == 2 * E * D && w.conv_w.q.size() == E * K &&
                  w.conv_b.q.size() == E && w.x_proj.q.size() == (R + 2 * N) * E && w.dt_proj.q.size() == E * R &&
                  w.dt_bias.q.size() == E && w.A_log.q.size() == E * N && w.D.q.size() == E &&
                  w.out_proj.q.size() == D * E;
  if (!ok) return Status::kErrorInvalidArgument;
  const float s[] = {w.act.s_h, w.act.s_xz, w.act.s_u, w.act.s_xd, w.act.s_dt, w.act.s_o};
  for (float v : s)
    if (!(v > 0.0f) || !std::isfinite(v)) return Status::kErrorInvalidArgument;
  return Status::kSuccess;
}

// Where the block's inputs, outputs and state live for one call.
template <typename ConvT>
struct BlockIO {
  int64_t B = 0, L = 0;
  const int32_t* lengths = nullptr;   // (B) optional, prefill only
  TensorView<const float, 2> h_in{};  // (M, D) or null (layer 0)
  TensorView<float, 2> residual{};    // (M, D) in/out
  TensorView<float, 2> h_out{};       // (M, D) out
  ConvT* conv_state = nullptr;        // (B, E, K)
  float* ssm_state = nullptr;         // (B, E, N)
};

namespace detail {

inline int64_t valid_len(const int32_t* lengths, int64_t b, int64_t L) { return lengths ? lengths[b] : L; }

template <typename ConvT>
Status check_io(const ModelConfig& c, const BlockIO<ConvT>& io, bool decode) {
  const int64_t M = io.B * io.L, D = c.d_model;
  if (io.B <= 0 || io.L <= 0 || (decode && io.L != 1) || (decode && io.lengths)) return Status::kErrorInvalidArgument;
  if (!io.residual.data || io.residual.size(0) != M || io.residual.size(1) != D) return Status::kErrorInvalidArgument;
  if (!io.h_out.data || io.h_out.size(0) != M || io.h_out.size(1) != D) return Status::kErrorInvalidArgument;
  if (io.h_in.data && (io.h_in.size(0) != M || io.h_in.size(1) != D)) return Status::kErrorInvalidArgument;
  if (!io.conv_state || !io.ssm_state) return Status::kErrorInvalidArgument;
  if (io.lengths)
    for (int64_t b = 0; b < io.B; ++b)
      if (io.lengths[b] < 0 || io.lengths[b] > io.L) return Status::kErrorInvalidArgument;
  return Status::kSuccess;
}

// Calls f(m) for every valid token row m.
template <typename F>
void for_valid_rows(int64_t B, int64_t L, const int32_t* lengths, F&& f) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < valid_len(lengths, b, L); ++t) f(b * L + t);
}

// The scan arguments of sequence b alone, its first lb tokens, with its state read and written in
// place at `state` (Args: ScanArgs or ScanArgsI8).
template <typename Args>
Args sequence_scan_args(const Args& sa, int64_t b, int64_t lb, float* state) {
  Args one = sa;
  one.u = sa.u.slice(0, b, 1).slice(1, 0, lb);
  one.delta = sa.delta.slice(0, b, 1).slice(1, 0, lb);
  one.Bm = sa.Bm.slice(0, b, 1).slice(1, 0, lb);
  one.Cm = sa.Cm.slice(0, b, 1).slice(1, 0, lb);
  one.z = sa.z.slice(0, b, 1).slice(1, 0, lb);
  one.y = sa.y.slice(0, b, 1).slice(1, 0, lb);
  one.initial_state = state;
  one.final_state = state;
  return one;
}

// Absmax of the valid rows of an (M, C) view.
inline void observe_rows(AbsmaxObserver& o, TensorView<const float, 2> v, int64_t B, int64_t L, const int32_t* lengths) {
  for_valid_rows(B, L, lengths, [&](int64_t m) {
    for (int64_t c = 0; c < v.size(1); ++c) o.observe(v(m, c));
  });
}

}  // namespace detail

// ---- fp32 block (SPEC §1), with optional calibration observers -----------------------------

namespace detail {

inline Status block_f32(const ModelConfig& c, const LayerWeights& w, const BlockIO<float>& io, bool decode,
                        LayerObservers* obs) {
  QUAMBA_RETURN_IF_ERROR(validate_config(c));
  QUAMBA_RETURN_IF_ERROR(check_io(c, io, decode));
  QUAMBA_RETURN_IF_ERROR(validate_layer(c, w));
  const int64_t B = io.B, L = io.L, M = B * L, D = c.d_model, E = c.d_inner, N = c.d_state;
  const int K = static_cast<int>(c.d_conv);
  const int64_t R = c.dt_rank, X = c.xdbl_dim();
  const int32_t* len = io.lengths;

  // 1. residual += h_in; hn = RMSNorm(residual)·γ
  std::vector<float> hn(M * D);
  auto hn_v = make_view(hn.data(), M, D);
  QUAMBA_RETURN_IF_ERROR(add_rmsnorm(io.h_in, io.residual, w.norm_gamma.data(), c.eps, hn_v));
  if (obs) observe_rows(obs->h, hn_v, B, L, len);

  // 2. xz = hn · W_inᵀ; x = xz[..., :E], z = xz[..., E:] (views with token stride 2E)
  std::vector<float> xz(M * 2 * E);
  auto xz_v = make_view(xz.data(), M, 2 * E);
  QUAMBA_RETURN_IF_ERROR(gemm_f32(hn_v, make_view(w.in_proj.data(), 2 * E, D), xz_v));
  if (obs) observe_rows(obs->xz, xz_v, B, L, len);
  const int64_t sh3[3] = {B, L, E}, st3[3] = {L * 2 * E, 2 * E, 1};
  auto x3 = make_strided_view<const float, 3>(xz.data(), sh3, st3);
  auto z3 = make_strided_view<const float, 3>(xz.data() + E, sh3, st3);

  // 3. u = SiLU(conv(x) + b), state carried
  std::vector<float> u(M * E, 0.0f);
  auto u3 = make_view(u.data(), B, L, E);
  auto conv_all = make_view(io.conv_state, B, E, static_cast<int64_t>(K));
  if (decode) {
    const int64_t sh2[2] = {B, E}, st2[2] = {2 * E, 1};
    QUAMBA_RETURN_IF_ERROR(conv1d_update(make_strided_view<const float, 2>(xz.data(), sh2, st2), conv_all, nullptr,
                                         w.conv_w.data(), K, w.conv_b.data(), true, make_view(u.data(), B, E)));
  } else {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t lb = valid_len(len, b, L);
      if (lb == 0) continue;
      auto st = conv_all.slice(0, b, 1);
      QUAMBA_RETURN_IF_ERROR(conv1d_prefill(x3.slice(0, b, 1).slice(1, 0, lb), w.conv_w.data(), K, w.conv_b.data(),
                                            true, st, st, u3.slice(0, b, 1).slice(1, 0, lb)));
    }
  }
  auto u_v = make_view(static_cast<const float*>(u.data()), M, E);
  if (obs) {
    observe_rows(obs->u, u_v, B, L, len);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<float> sample;
      for (int64_t t = 0; t < valid_len(len, b, L); ++t)
        for (int64_t e = 0; e < E; ++e) sample.push_back(std::fabs(u_v(b * L + t, e)));
      obs->u_values.insert(obs->u_values.end(), sample.begin(), sample.end());
      QUAMBA_RETURN_IF_ERROR(obs->u_ema.observe_sample(std::move(sample)));
    }
  }

  // 4. xdbl = u · W_xᵀ, split into dt_low (R), Bm (N), Cm (N)
  std::vector<float> xdbl(M * X);
  auto xdbl_v = make_view(xdbl.data(), M, X);
  QUAMBA_RETURN_IF_ERROR(gemm_f32(u_v, make_view(w.x_proj.data(), X, E), xdbl_v));
  if (obs) observe_rows(obs->xd, xdbl_v, B, L, len);

  // 5. δraw = dt_low · W_dtᵀ (the bias and softplus are applied inside the scan)
  std::vector<float> dt(M * E);
  auto dt_v = make_view(dt.data(), M, E);
  const int64_t shl[2] = {M, R}, stl[2] = {X, 1};
  QUAMBA_RETURN_IF_ERROR(gemm_f32(make_strided_view<const float, 2>(xdbl.data(), shl, stl),
                                  make_view(w.dt_proj.data(), E, R), dt_v));
  if (obs) observe_rows(obs->dt, dt_v, B, L, len);

  // 6-7. A = -exp(A_log); selective scan with the gate; state carried
  std::vector<float> A(E * N);
  for (int64_t i = 0; i < E * N; ++i) A[i] = -std::exp(w.A_log[i]);
  std::vector<float> y(M * E, 0.0f);
  const int64_t shn[3] = {B, L, N}, stn[3] = {L * X, X, 1};
  ScanArgs sa;
  sa.u = make_view(static_cast<const float*>(u.data()), B, L, E);
  sa.delta = make_view(static_cast<const float*>(dt.data()), B, L, E);
  sa.Bm = make_strided_view<const float, 3>(xdbl.data() + R, shn, stn);
  sa.Cm = make_strided_view<const float, 3>(xdbl.data() + R + N, shn, stn);
  sa.z = z3;
  sa.A = A.data();
  sa.D = w.D.data();
  sa.delta_bias = w.dt_bias.data();
  sa.delta_softplus = true;
  sa.y = make_view(y.data(), B, L, E);
  if (decode) {
    QUAMBA_RETURN_IF_ERROR(selective_state_update(sa, io.ssm_state, B, nullptr));
  } else {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t lb = valid_len(len, b, L);
      if (lb == 0) continue;
      QUAMBA_RETURN_IF_ERROR(selective_scan<float>(detail::sequence_scan_args(sa, b, lb, io.ssm_state + b * E * N)));
    }
  }
  auto y_v = make_view(static_cast<const float*>(y.data()), M, E);
  if (obs) {
    observe_rows(obs->o_plain, y_v, B, L, len);
  }
  if (obs && hadamard_size_supported(E)) {
    // s_o is observed in the rotated domain: yh = H·y/√E, which is what out_proj sees once the
    // Hadamard is folded into W_out. (Without a Hadamard of size E only o_plain is observed.)
    std::vector<float> yh(M * E);
    QUAMBA_RETURN_IF_ERROR(hadamard_transform(y_v, static_cast<float>(1.0 / std::sqrt(static_cast<double>(E))),
                                              make_view(yh.data(), M, E)));
    observe_rows(obs->o_rotated, make_view(static_cast<const float*>(yh.data()), M, E), B, L, len);
  }

  // 8. h_out = y · W_outᵀ
  return gemm_f32(y_v, make_view(w.out_proj.data(), D, E), io.h_out);
}

}  // namespace detail

// fp32 block over L tokens per sequence from the carried state. obs (optional) records every
// activation observer of SPEC §2's table.
inline Status block_prefill_f32(const ModelConfig& c, const LayerWeights& w, const BlockIO<float>& io,
                                LayerObservers* obs = nullptr) {
  return detail::block_f32(c, w, io, false, obs);
}

// fp32 block, one token per sequence (io.L == 1), through the decode-update ops.
inline Status block_step_f32(const ModelConfig& c, const LayerWeights& w, const BlockIO<float>& io) {
  return detail::block_f32(c, w, io, true, nullptr);
}

// ---- W8A8 block (SPEC §2, integer dataflow steps 1-8) -----------------------------------------

namespace detail {

inline Status block_i8(const ModelConfig& c, const LayerWeightsI8& w, bool use_hadamard, const BlockIO<int8_t>& io,
                       bool decode) {
  QUAMBA_RETURN_IF_ERROR(validate_config(c));
  QUAMBA_RETURN_IF_ERROR(check_io(c, io, decode));
  QUAMBA_RETURN_IF_ERROR(validate_layer(c, w));
  const int64_t B = io.B, L = io.L, M = B * L, D = c.d_model, E = c.d_inner, N = c.d_state;
  const int K = static_cast<int>(c.d_conv);
  const int64_t R = c.dt_rank, X = c.xdbl_dim();
  const int32_t* len = io.lengths;
  const LayerActScales& s = w.act;

  // 1. h_q = q(RMSNorm(r) / s_h)
  std::vector<int8_t> hq(M * D);
  auto hq_v = make_view(hq.data(), M, D);
  QUAMBA_RETURN_IF_ERROR(
      add_rmsnorm_i8(io.h_in, io.residual, w.norm_gamma.data(), c.eps, inverse_scale(s.s_h), hq_v));

  // 2. xz_q = q(acc · s_Win · s_h / s_xz)
  std::vector<int32_t> acc(M * 2 * E);
  std::vector<int8_t> xzq(M * 2 * E);
  {
    auto acc_v = make_view(acc.data(), M, 2 * E);
    QUAMBA_RETURN_IF_ERROR(gemm_i8_i32(hq_v, make_view(w.in_proj.q.data(), 2 * E, D), acc_v));
    EpilogueRef ep;
    ep.alpha = requant_alpha(s.s_h, w.in_proj.scale, s.s_xz);
    QUAMBA_RETURN_IF_ERROR(epilogue_requant(acc_v, ep, make_view(xzq.data(), M, 2 * E)));
  }
  const int64_t sh3[3] = {B, L, E}, st3[3] = {L * 2 * E, 2 * E, 1};
  auto x3 = make_strided_view<const int8_t, 3>(xzq.data(), sh3, st3);
  auto z3 = make_strided_view<const int8_t, 3>(xzq.data() + E, sh3, st3);

  // 3. u_q = q(SiLU(s_xz·s_w·Σ w_q·x_q + s_b·b_q) / s_u); conv_state holds int8 x (scale s_xz)
  Conv1dScalesI8 cs;
  cs.scale_wx = s.s_xz * w.conv_w.scale;
  cs.s_b = w.conv_b.scale;
  cs.inv_s_out = inverse_scale(s.s_u);
  std::vector<int8_t> uq(M * E, 0);
  auto u3 = make_view(uq.data(), B, L, E);
  auto conv_all = make_view(io.conv_state, B, E, static_cast<int64_t>(K));
  if (decode) {
    const int64_t sh2[2] = {B, E}, st2[2] = {2 * E, 1};
    QUAMBA_RETURN_IF_ERROR(conv1d_update_i8(make_strided_view<const int8_t, 2>(xzq.data(), sh2, st2), conv_all,
                                            nullptr, w.conv_w.q.data(), K, w.conv_b.q.data(), cs,
                                            make_view(uq.data(), B, E)));
  } else {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t lb = valid_len(len, b, L);
      if (lb == 0) continue;
      auto st = conv_all.slice(0, b, 1);
      QUAMBA_RETURN_IF_ERROR(conv1d_prefill_i8(x3.slice(0, b, 1).slice(1, 0, lb), w.conv_w.q.data(), K,
                                               w.conv_b.q.data(), cs, st, st, u3.slice(0, b, 1).slice(1, 0, lb)));
    }
  }
  auto uq_v = make_view(static_cast<const int8_t*>(uq.data()), M, E);

  // 4. xdbl_q = q(acc · s_Wx · s_u / s_xd)
  std::vector<int8_t> xdq(M * X);
  {
    auto acc_v = make_view(acc.data(), M, X);
    QUAMBA_RETURN_IF_ERROR(gemm_i8_i32(uq_v, make_view(w.x_proj.q.data(), X, E), acc_v));
    EpilogueRef ep;
    ep.alpha = requant_alpha(s.s_u, w.x_proj.scale, s.s_xd);
    QUAMBA_RETURN_IF_ERROR(epilogue_requant(acc_v, ep, make_view(xdq.data(), M, X)));
  }

  // 5. δraw_q = q(acc · s_Wdt · s_xd / s_dt), the input being the dt_low slice of xdbl_q
  std::vector<int8_t> dtq(M * E);
  {
    auto acc_v = make_view(acc.data(), M, E);
    const int64_t shl[2] = {M, R}, stl[2] = {X, 1};
    QUAMBA_RETURN_IF_ERROR(gemm_i8_i32(make_strided_view<const int8_t, 2>(xdq.data(), shl, stl),
                                       make_view(w.dt_proj.q.data(), E, R), acc_v));
    EpilogueRef ep;
    ep.alpha = requant_alpha(s.s_xd, w.dt_proj.scale, s.s_dt);
    QUAMBA_RETURN_IF_ERROR(epilogue_requant(acc_v, ep, make_view(dtq.data(), M, E)));
  }

  // 6. scan in fp32 on dequantized values (δ bias, A_log and D with their own scales)
  std::vector<float> y(M * E, 0.0f);
  const int64_t shn[3] = {B, L, N}, stn[3] = {L * X, X, 1};
  ScanArgsI8 sa;
  sa.u = make_view(static_cast<const int8_t*>(uq.data()), B, L, E);
  sa.delta = make_view(static_cast<const int8_t*>(dtq.data()), B, L, E);
  sa.Bm = make_strided_view<const int8_t, 3>(xdq.data() + R, shn, stn);
  sa.Cm = make_strided_view<const int8_t, 3>(xdq.data() + R + N, shn, stn);
  sa.z = z3;
  sa.s_u = s.s_u;
  sa.s_delta = s.s_dt;
  sa.s_B = s.s_xd;
  sa.s_C = s.s_xd;
  sa.s_z = s.s_xz;
  sa.A_log = w.A_log.q.data();
  sa.s_A = w.A_log.scale;
  sa.D = w.D.q.data();
  sa.s_D = w.D.scale;
  sa.delta_bias = w.dt_bias.q.data();
  sa.s_delta_bias = w.dt_bias.scale;
  sa.y = make_view(y.data(), B, L, E);
  for (int64_t b = 0; b < B; ++b) {
    // Decode is the L = 1 case of the same recurrence with the state updated in place.
    const int64_t lb = decode ? 1 : valid_len(len, b, L);
    if (lb == 0) continue;
    QUAMBA_RETURN_IF_ERROR(selective_scan_i8(detail::sequence_scan_args(sa, b, lb, io.ssm_state + b * E * N)));
  }
  auto y_v = make_view(static_cast<const float*>(y.data()), M, E);

  // 7. yh_q = q(H(y)·(1/√E) / s_o), or q(y / s_o) without the rotation
  std::vector<int8_t> yq(M * E);
  auto yq_v = make_view(yq.data(), M, E);
  if (use_hadamard) {
    QUAMBA_RETURN_IF_ERROR(hadamard_quantize(y_v, inverse_scale(s.s_o), yq_v));
  } else {
    const float inv = inverse_scale(s.s_o);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t e = 0; e < E; ++e) yq_v(m, e) = quantize_i8(y_v(m, e), inv);
  }

  // 8. h_out = acc · s_Wout' · s_o in fp32 (added to the residual by the next block / norm_f)
  {
    auto acc_v = make_view(acc.data(), M, D);
    QUAMBA_RETURN_IF_ERROR(gemm_i8_i32(yq_v, make_view(w.out_proj.q.data(), D, E), acc_v));
    EpilogueRef ep;
    ep.alpha = dequant_alpha(s.s_o, w.out_proj.scale);
    QUAMBA_RETURN_IF_ERROR(epilogue_dequant(acc_v, ep, io.h_out));
  }
  return Status::kSuccess;
}

}  // namespace detail

// W8A8 block over L tokens per sequence from the carried state (conv_state int8, scale s_xz).
// use_hadamard must match how out_proj was quantized (QuantizedModel::recipe.use_hadamard).
inline Status block_prefill_i8(const ModelConfig& c, const LayerWeightsI8& w, bool use_hadamard,
                               const BlockIO<int8_t>& io) {
  return detail::block_i8(c, w, use_hadamard, io, false);
}

// W8A8 block, one token per sequence (io.L == 1), through conv1d_update_i8.
inline Status block_step_i8(const ModelConfig& c, const LayerWeightsI8& w, bool use_hadamard,
                            const BlockIO<int8_t>& io) {
  return detail::block_i8(c, w, use_hadamard, io, true);
}

}  // namespace quamba::reference
