// CURVKIT_HD marks scalar functions compiled for both host and device.
#pragma once

#if defined(__CUDACC__)
#  define CURVKIT_HD __host__ __device__ __forceinline__
#else
#  define CURVKIT_HD inline
#endif
