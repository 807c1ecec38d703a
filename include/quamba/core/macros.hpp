// quamba/core/macros.hpp: portability macros shared by host and device code.
// QUAMBA_HD marks functions callable from both host and device; in a plain C++ translation
// unit (no nvcc) it expands to nothing, so the numeric core and the reference compile with g++.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define QUAMBA_HD __host__ __device__ __forceinline__
#define QUAMBA_DEVICE __device__ __forceinline__
#define QUAMBA_HAS_CUDA_COMPILER 1
#else
#define QUAMBA_HD inline
#define QUAMBA_HAS_CUDA_COMPILER 0
#endif

#if defined(__CUDA_ARCH__)
#define QUAMBA_DEVICE_PASS 1
#else
#define QUAMBA_DEVICE_PASS 0
#endif
