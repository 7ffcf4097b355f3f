#pragma once
// cudaStream_t without the CUDA headers, so that each op's header (kernels/<op>.h) can declare its
// CUDA launcher beside its CPU reference and still build without CUDA. The same typedef as CUDA's
// driver_types.h (repeating an identical typedef is allowed), so both may be included.
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
