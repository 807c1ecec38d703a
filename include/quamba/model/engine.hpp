// quamba/model/engine.hpp: one interface for running a whole Mamba language model, whatever
// executes it: the host reference (CpuEngine, model/cpu_engine.hpp) or the GPU block/model
// (model/gpu_engine.cuh). Tools and applications program against Engine only.
//
// An Engine owns its weights (or a copy of what it needs) and `batch` sequence slots, each with
// its own per-layer caches (conv state, ssm state). Slots start empty (zero state).
//
//   prefill(slot, ids, n, logits, all_logits)
//       feeds ids[0:n] (int32, each in [0, V)) to sequence `slot`, continuing from its state.
//       logits: null (skip the lm_head), else fp32 (n, V) row-major when all_logits, or (V) for
//       the last token otherwise. Any n >= 1: an engine may split the work into chunks
//       internally (chunked prefill), with the same result as one call.
//   decode(ids, logits)
//       one token for every slot (ids: batch int32), logits fp32 (batch, V) or null.
//   reset_slot(slot) zeroes one sequence's state; reset(batch) re-creates all slots.
//
// Errors: a bad id gives kErrorOutOfRange and leaves every state unchanged; a bad slot, n <= 0
// or a null ids pointer gives kErrorInvalidArgument (these are checked before anything runs).
// A failure while the work runs (out of memory, a CUDA error) is reported as its Status; the CPU
// engine then leaves the state unchanged too, while a GPU engine may leave the slots it was
// stepping partly advanced (reset_slot / reset restore a defined state). Outputs (logits) are
// unspecified after any error. A reset(batch) that fails (out of memory) leaves the CPU engine
// with its previous slots and a GPU engine with none: every call is refused until a reset
// succeeds. Engines never throw or abort.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "quamba/core/status.hpp"
#include "quamba/reference/block.hpp"

namespace quamba::model {

enum class Precision { kFp32, kFp16, kW8A8 };
enum class Backend { kCpu, kGpu };

constexpr const char* to_string(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kFp16: return "fp16";
    case Precision::kW8A8: return "w8a8";
  }
  return "unknown";
}

constexpr const char* to_string(Backend b) { return b == Backend::kCpu ? "cpu" : "gpu"; }

struct EngineOptions {
  int64_t batch = 1;             // sequence slots
  int64_t prefill_chunk = 2048;  // tokens per internal prefill chunk (bounds activation memory)
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const reference::ModelConfig& config() const = 0;
  virtual Backend backend() const = 0;
  virtual Precision precision() const = 0;
  virtual int64_t batch() const = 0;

  virtual Status reset(int64_t batch) = 0;
  virtual Status reset_slot(int64_t slot) = 0;
  virtual Status prefill(int64_t slot, const int32_t* ids, int64_t n, float* logits, bool all_logits) = 0;
  virtual Status decode(const int32_t* ids, float* logits) = 0;

  // Bytes of weights the engine reads per token (for reports); 0 if unknown.
  virtual int64_t weight_bytes() const { return 0; }
};

}  // namespace quamba::model
