// quamba/core/status.hpp: the error type of every library entry point.
// Library functions never throw, abort or exit; they return a Status. kSuccess is 0 so a
// Status can be tested like an error code. to_string gives a stable, human-readable name.
#pragma once

namespace quamba {

enum class Status : int {
  kSuccess = 0,
  kErrorInvalidArgument,    // null pointer, negative or zero size, inconsistent shapes
  kErrorNotSupported,       // size/dtype/config outside what any kernel variant implements
  kErrorMisaligned,         // pointer or stride violates the documented alignment rule
  kErrorWorkspaceTooSmall,  // caller-provided workspace is smaller than workspace_size()
  kErrorArchNotSupported,   // no code path for the current device's architecture
  kErrorCuda,               // a CUDA runtime call or kernel launch failed
  kErrorIo,                 // file missing, unreadable or truncated
  kErrorFormat,             // file readable but malformed (bad header, bad offsets, bad dtype)
  kErrorOutOfRange,         // an index (token id, state slot) outside its valid range
  kErrorInternal,           // an invariant of the library itself was violated
};

constexpr const char* to_string(Status s) {
  switch (s) {
    case Status::kSuccess: return "success";
    case Status::kErrorInvalidArgument: return "invalid argument";
    case Status::kErrorNotSupported: return "not supported";
    case Status::kErrorMisaligned: return "misaligned pointer or stride";
    case Status::kErrorWorkspaceTooSmall: return "workspace too small";
    case Status::kErrorArchNotSupported: return "architecture not supported";
    case Status::kErrorCuda: return "CUDA error";
    case Status::kErrorIo: return "I/O error";
    case Status::kErrorFormat: return "malformed file";
    case Status::kErrorOutOfRange: return "index out of range";
    case Status::kErrorInternal: return "internal error";
  }
  return "unknown status";
}

constexpr bool ok(Status s) { return s == Status::kSuccess; }

}  // namespace quamba

// Propagates a non-success Status to the caller. For use inside functions returning Status.
#define QUAMBA_RETURN_IF_ERROR(expr)                         \
  do {                                                       \
    const ::quamba::Status quamba_status_ = (expr);          \
    if (quamba_status_ != ::quamba::Status::kSuccess) return quamba_status_; \
  } while (0)
