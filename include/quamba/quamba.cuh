// quamba/quamba.cuh: umbrella include for the whole library (CUDA translation units).
//
// Host-only code (the reference, file I/O) can include quamba/reference/*.hpp and
// quamba/io/*.hpp from plain C++; the op families below need nvcc.
#pragma once

#include "quamba/core/arch.hpp"
#include "quamba/core/cuda_check.hpp"
#include "quamba/core/numeric.hpp"
#include "quamba/core/static_switch.hpp"
#include "quamba/core/status.hpp"
#include "quamba/core/tensor_view.hpp"
#include "quamba/core/workspace.hpp"

#include "quamba/conv1d/causal_conv1d.cuh"
#include "quamba/gemm/cublas_baseline.cuh"
#include "quamba/gemm/gemm.cuh"
#include "quamba/hadamard/hadamard.cuh"
#include "quamba/norm/add_rmsnorm.cuh"
#include "quamba/norm/embedding.cuh"
#include "quamba/scan/scan.cuh"

#include "quamba/io/hf_checkpoint.hpp"
#include "quamba/io/hf_config.hpp"
#include "quamba/io/safetensors.hpp"
#include "quamba/io/safetensors_index.hpp"
#include "quamba/reference/model.hpp"
