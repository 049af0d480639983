// The AVX2 + FMA kernels of log I, log K and their ratios (internal): declared without any
// curvkit device header, since special_avx2.cpp compiles those into its own inline namespace.
#pragma once

#include <cstdint>

#include "curvkit/special.hpp"

namespace curvkit::cpu {

/// A 2-D strided layout of the three arrays (strides in elements); 1-D arrays are one column.
struct elementwise_layout {
    std::int64_t rows, cols;
    std::int64_t v_row, v_col, x_row, x_col, out_row, out_col;
};

/// out = f(v, x) elementwise for any of the special functions: sixteen lanes at a time where a
/// vectorised route covers the element and by the scalar routes elsewhere. An element's
/// result depends only on its own arguments, never on the layout or its neighbours. Call
/// only where avx2_kernels_enabled().
template <class T>
void log_bessel_avx2(special_fn f, const T* v, const T* x, T* out,
                     const elementwise_layout& layout);

}  // namespace curvkit::cpu
