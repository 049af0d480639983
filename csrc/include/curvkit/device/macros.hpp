// CURVKIT_HD marks scalar functions compiled for both host and device.
#pragma once

// CURVKIT_HD_OUTLINED marks the few large ones that several of them call: compiled once as a
// function, rather than inlined into every kernel on the device, and on the host kept out of
// its callers, which stay small enough for the compiler to inline where they are called.
#if defined(__CUDACC__)
#  define CURVKIT_HD __host__ __device__ __forceinline__
#  define CURVKIT_HD_OUTLINED __host__ __device__ __noinline__ inline
#elif defined(__GNUC__)
#  define CURVKIT_HD inline
#  define CURVKIT_HD_OUTLINED [[gnu::noinline]] inline
#else
#  define CURVKIT_HD inline
#  define CURVKIT_HD_OUTLINED inline
#endif

// The inline namespace the host/device math of curvkit/device/ is compiled into. A translation
// unit built for a wider instruction set (the AVX2 CPU kernels) names its own before including
// these headers, so that its copies of the inline functions never merge at link time with the
// generic ones that other translation units call. The visible names stay curvkit::device::...
#ifndef CURVKIT_ISA_NAMESPACE
#  define CURVKIT_ISA_NAMESPACE generic
#endif
