// quamba/model/cpu_engine.hpp: the Engine interface (model/engine.hpp) over the host reference
// (reference/model.hpp), fp32 (reference::ModelWeights) and W8A8 (reference::QuantizedModel).
// Host only, single-threaded, scalar: this is the CPU path of the tools and the oracle the GPU
// engines are compared with, not a fast CPU runtime.
//
//   make_cpu_engine_fp32(weights, options, &engine, &err)   copies (or moves) the fp32 model
//   make_cpu_engine_w8a8(quantized, options, &engine, &err)  copies (or moves) the W8A8 model
//
// State: options.batch sequence slots in one batched reference cache (per layer conv_state
// (batch, E, K) fp32 or int8 at scale s_xz, ssm_state (batch, E, N) fp32), zero at creation.
// prefill(slot, ids, n, logits, all_logits)
//   validates every id first (kErrorOutOfRange, nothing changed), copies the slot's state out,
//   runs the reference prefill in chunks of options.prefill_chunk tokens (the reference prefill
//   continues from its cache, so chunked == one call, bit for bit), and writes the state back
//   only when every chunk succeeded. logits: fp32 (n, V) when all_logits, else (V) for the last
//   token (then only the last chunk runs the lm_head); null skips the lm_head of every chunk.
// decode(ids, logits): one token for every slot through reference::decode_step on a copy of the
//   batched cache that becomes the state only when the step succeeded; ids (batch) int32, logits
//   (batch, V) fp32 or null.
// Errors: bad slot, n <= 0, null ids, batch <= 0 -> kErrorInvalidArgument; id outside [0, V) ->
//   kErrorOutOfRange; state unchanged on every error. The factories report invalid models
//   (reference::validate_model) and options (batch <= 0, prefill_chunk <= 0) with a message.
// weight_bytes(): bytes of weights read per token: every block weight, norm_f, one embedding
//   row and the whole lm_head (fp32 for fp32; int8 block weights + fp32 rest for W8A8).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/model/engine.hpp"
#include "quamba/reference/model.hpp"

namespace quamba::model {

namespace cpu_detail {

template <typename Model>
struct CpuTraits;

template <>
struct CpuTraits<reference::ModelWeights> {
  using Cache = reference::ModelCacheF32;
  using ConvT = float;
  static constexpr Precision kPrecision = Precision::kFp32;
  static int64_t layer_weight_bytes(const reference::ModelWeights& m) {
    int64_t n = 0;
    for (const auto& l : m.layers)
      n += static_cast<int64_t>(l.norm_gamma.size() + l.in_proj.size() + l.conv_w.size() + l.conv_b.size() +
                                l.x_proj.size() + l.dt_proj.size() + l.dt_bias.size() + l.A_log.size() + l.D.size() +
                                l.out_proj.size()) *
           4;
    return n;
  }
};

template <>
struct CpuTraits<reference::QuantizedModel> {
  using Cache = reference::ModelCacheI8;
  using ConvT = int8_t;
  static constexpr Precision kPrecision = Precision::kW8A8;
  static int64_t layer_weight_bytes(const reference::QuantizedModel& m) {
    int64_t n = 0;
    for (const auto& l : m.layers)
      n += static_cast<int64_t>(l.in_proj.q.size() + l.conv_w.q.size() + l.conv_b.q.size() + l.x_proj.q.size() +
                                l.dt_proj.q.size() + l.dt_bias.q.size() + l.A_log.q.size() + l.D.q.size() +
                                l.out_proj.q.size()) +
           static_cast<int64_t>(l.norm_gamma.size()) * 4;
    return n;
  }
};

}  // namespace cpu_detail

template <typename Model>
class CpuEngine final : public Engine {
 public:
  using Traits = cpu_detail::CpuTraits<Model>;
  using Cache = typename Traits::Cache;
  using ConvT = typename Traits::ConvT;

  // Use make_cpu_engine_*: they validate the model and the options.
  CpuEngine(Model model, const EngineOptions& opt) : model_(std::move(model)), chunk_(opt.prefill_chunk) {}

  const reference::ModelConfig& config() const override { return model_.config; }
  Backend backend() const override { return Backend::kCpu; }
  Precision precision() const override { return Traits::kPrecision; }
  int64_t batch() const override { return cache_.batch; }
  const Model& model() const { return model_; }
  int64_t prefill_chunk() const { return chunk_; }

  Status reset(int64_t batch) override {
    if (batch <= 0) return Status::kErrorInvalidArgument;
    try {
      Cache c;
      QUAMBA_RETURN_IF_ERROR(reference::init_cache(model_.config, batch, &c));
      cache_ = std::move(c);
    } catch (const std::bad_alloc&) {
      return Status::kErrorInternal;
    }
    return Status::kSuccess;
  }

  Status reset_slot(int64_t slot) override {
    if (slot < 0 || slot >= cache_.batch) return Status::kErrorInvalidArgument;
    const reference::ModelConfig& c = model_.config;
    const size_t conv = static_cast<size_t>(c.d_inner * c.d_conv), ssm = static_cast<size_t>(c.d_inner * c.d_state);
    for (int64_t i = 0; i < c.n_layer; ++i) {
      auto& cs = cache_.conv_state[static_cast<size_t>(i)];
      auto& ss = cache_.ssm_state[static_cast<size_t>(i)];
      std::fill(cs.begin() + static_cast<std::ptrdiff_t>(slot * conv), cs.begin() + static_cast<std::ptrdiff_t>((slot + 1) * conv),
                ConvT(0));
      std::fill(ss.begin() + static_cast<std::ptrdiff_t>(slot * ssm), ss.begin() + static_cast<std::ptrdiff_t>((slot + 1) * ssm), 0.0f);
    }
    return Status::kSuccess;
  }

  Status prefill(int64_t slot, const int32_t* ids, int64_t n, float* logits, bool all_logits) override {
    if (slot < 0 || slot >= cache_.batch || n <= 0 || ids == nullptr) return Status::kErrorInvalidArgument;
    const reference::ModelConfig& c = model_.config;
    const int64_t V = c.vocab;
    for (int64_t t = 0; t < n; ++t)
      if (ids[t] < 0 || ids[t] >= V) return Status::kErrorOutOfRange;
    try {
      // The slot's state goes through a batch-1 cache so that a failure leaves it untouched.
      Cache one;
      QUAMBA_RETURN_IF_ERROR(reference::init_cache(c, 1, &one));
      copy_slot(cache_, slot, &one, 0);
      for (int64_t t0 = 0; t0 < n; t0 += chunk_) {
        const int64_t len = std::min(chunk_, n - t0);
        const bool last = t0 + len == n;
        TensorView<float, 3> out{};
        if (logits && all_logits) out = make_view(logits + t0 * V, int64_t{1}, len, V);
        else if (logits && last) out = make_view(logits, int64_t{1}, int64_t{1}, V);
        QUAMBA_RETURN_IF_ERROR(reference::prefill(model_, ids + t0, 1, len, nullptr, &one, out));
      }
      copy_slot(one, 0, &cache_, slot);
    } catch (const std::bad_alloc&) {
      return Status::kErrorInternal;
    }
    return Status::kSuccess;
  }

  Status decode(const int32_t* ids, float* logits) override {
    if (ids == nullptr || cache_.batch <= 0) return Status::kErrorInvalidArgument;
    const int64_t B = cache_.batch, V = model_.config.vocab;
    for (int64_t b = 0; b < B; ++b)
      if (ids[b] < 0 || ids[b] >= V) return Status::kErrorOutOfRange;
    TensorView<float, 2> out{};
    if (logits) out = make_view(logits, B, V);
    try {
      // decode_step checks its arguments before it touches the caches, but it steps them layer by
      // layer: a failure part-way (out of memory in a later layer or in the lm_head) would leave
      // the earlier layers advanced. So it runs on a copy that replaces the state on success only
      // (a memcpy of the caches, small next to the scalar forward).
      Cache next = cache_;
      QUAMBA_RETURN_IF_ERROR(reference::decode_step(model_, ids, B, &next, out));
      cache_ = std::move(next);
    } catch (const std::bad_alloc&) {
      return Status::kErrorInternal;
    }
    return Status::kSuccess;
  }

  int64_t weight_bytes() const override {
    const reference::ModelConfig& c = model_.config;
    return Traits::layer_weight_bytes(model_) + (c.vocab * c.d_model + c.d_model + c.d_model) * 4;
  }

  // Bytes of the per-slot state (conv + ssm caches of every layer) for all slots.
  int64_t state_bytes() const {
    const reference::ModelConfig& c = model_.config;
    const int64_t conv_elt = static_cast<int64_t>(sizeof(ConvT));
    return cache_.batch * c.n_layer * c.d_inner * (c.d_conv * conv_elt + c.d_state * 4);
  }

 private:
  static void copy_slot(const Cache& from, int64_t fs, Cache* to, int64_t ts) {
    for (size_t i = 0; i < from.conv_state.size(); ++i) {
      const size_t conv = from.conv_state[i].size() / static_cast<size_t>(from.batch);
      const size_t ssm = from.ssm_state[i].size() / static_cast<size_t>(from.batch);
      std::copy_n(from.conv_state[i].begin() + static_cast<std::ptrdiff_t>(fs * conv), conv,
                  to->conv_state[i].begin() + static_cast<std::ptrdiff_t>(ts * conv));
      std::copy_n(from.ssm_state[i].begin() + static_cast<std::ptrdiff_t>(fs * ssm), ssm,
                  to->ssm_state[i].begin() + static_cast<std::ptrdiff_t>(ts * ssm));
    }
  }

  Model model_;
  int64_t chunk_;
  Cache cache_;
};

using CpuEngineFp32 = CpuEngine<reference::ModelWeights>;
using CpuEngineW8A8 = CpuEngine<reference::QuantizedModel>;

namespace cpu_detail {

template <typename Model>
Status make(Model&& model, const EngineOptions& opt, std::unique_ptr<Engine>* out, std::string* err, const char* what) {
  auto fail = [err](Status s, const std::string& msg) {
    if (err) *err = msg;
    return s;
  };
  if (out == nullptr) return fail(Status::kErrorInvalidArgument, std::string(what) + ": null output");
  if (opt.batch <= 0 || opt.prefill_chunk <= 0)
    return fail(Status::kErrorInvalidArgument, std::string(what) + ": batch (" + std::to_string(opt.batch) +
                                                   ") and prefill_chunk (" + std::to_string(opt.prefill_chunk) +
                                                   ") must be >= 1");
  const Status v = reference::validate_model(model);
  if (v != Status::kSuccess)
    return fail(v, std::string(what) + ": the model does not validate (" + to_string(v) + ")");
  try {
    using M = std::decay_t<Model>;
    auto e = std::make_unique<CpuEngine<M>>(std::forward<Model>(model), opt);
    const Status s = e->reset(opt.batch);
    if (s != Status::kSuccess) return fail(s, std::string(what) + ": cannot allocate the caches (" + to_string(s) + ")");
    *out = std::move(e);
  } catch (const std::bad_alloc&) {
    return fail(Status::kErrorInternal, std::string(what) + ": out of memory");
  }
  return Status::kSuccess;
}

}  // namespace cpu_detail

inline Status make_cpu_engine_fp32(const reference::ModelWeights& w, const EngineOptions& opt,
                                   std::unique_ptr<Engine>* out, std::string* err = nullptr) {
  return cpu_detail::make(reference::ModelWeights(w), opt, out, err, "make_cpu_engine_fp32");
}
inline Status make_cpu_engine_fp32(reference::ModelWeights&& w, const EngineOptions& opt,
                                   std::unique_ptr<Engine>* out, std::string* err = nullptr) {
  return cpu_detail::make(std::move(w), opt, out, err, "make_cpu_engine_fp32");
}
inline Status make_cpu_engine_w8a8(const reference::QuantizedModel& q, const EngineOptions& opt,
                                   std::unique_ptr<Engine>* out, std::string* err = nullptr) {
  return cpu_detail::make(reference::QuantizedModel(q), opt, out, err, "make_cpu_engine_w8a8");
}
inline Status make_cpu_engine_w8a8(reference::QuantizedModel&& q, const EngineOptions& opt,
                                   std::unique_ptr<Engine>* out, std::string* err = nullptr) {
  return cpu_detail::make(std::move(q), opt, out, err, "make_cpu_engine_w8a8");
}

}  // namespace quamba::model
