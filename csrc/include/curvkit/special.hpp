// Public special-function API: elementwise log-Bessel functions over strided arrays on CPU or GPU.
#pragma once

#include "curvkit/types.hpp"

namespace curvkit {

/// @brief The elementwise functions of (v, x) that curvkit::special_function evaluates; the
/// scalar forms are in curvkit/device/log_bessel.hpp.
enum class special_fn : int {
    log_iv = 0,    ///< log I_v(x)
    log_kv = 1,    ///< log K_v(x)
    iv_ratio = 2,  ///< I_{v+1}(x) / I_v(x)
    dlog_iv = 3,   ///< d/dx log I_v(x)
    dlog_kv = 4,   ///< d/dx log K_v(x)
};

/// @brief out[i, j] = f(v[i, j], x[i, j]) for float32 or float64 views of one shape.
///
/// Broadcasting is expressed by the caller through zero strides in @p v and @p x. @p out must
/// have distinct elements and must not overlap the inputs unless it is the same view as one of
/// them (evaluation in place). Domain errors give NaN, as in SciPy. On CUDA, asynchronous on
/// @p stream (a cudaStream_t); on the CPU, multithreaded with OpenMP.
/// @param f       the function
/// @param v, x    orders and arguments, same dtype and device as @p out
/// @param out     results
/// @param stream  CUDA stream for device arrays; ignored on the CPU
CURVKIT_API void special_function(special_fn f, const dense_view& v, const dense_view& x,
                                  const dense_view& out, void* stream = nullptr);

}  // namespace curvkit
