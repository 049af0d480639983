// The AVX2 + FMA kernels of log I and log K (internal): declared without any curvkit device
// header, since special_avx2.cpp compiles those into its own inline namespace.
#pragma once

#include <cstdint>

namespace curvkit::cpu {

/// A 2-D strided layout of the three arrays (strides in elements); 1-D arrays are one column.
struct elementwise_layout {
    std::int64_t rows, cols;
    std::int64_t v_row, v_col, x_row, x_col, out_row, out_col;
};

/// out = log K_v(x) (kv) or log I_v(x), elementwise: sixteen lanes at a time where a vectorised
/// route covers the element and by the scalar routes elsewhere. An element's result depends
/// only on its own arguments, never on the layout or its neighbours. Call only where
/// avx2_kernels_enabled().
template <class T>
void log_bessel_avx2(bool kv, const T* v, const T* x, T* out, const elementwise_layout& layout);

}  // namespace curvkit::cpu
