// CPU kernels of the elementwise special functions: OpenMP over chunks of the flattened index.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "cpu/isa.hpp"
#include "cpu/special_avx2.hpp"
#include "cpu/threads.hpp"
#include "curvkit/device/log_bessel.hpp"
#include "kernels.hpp"
#include "special_functors.hpp"

namespace curvkit::cpu {
namespace {

using idx = std::int64_t;

// Elements per scheduling unit: costs vary by two orders of magnitude across (v, x), so the
// threads take chunks dynamically; a chunk repays its scheduling many times over.
constexpr idx chunk = 512;

template <class T, class F>
void elementwise(const block_ref<const T>& v, const block_ref<const T>& x, const block_ref<T>& out,
                 F f) {
    const idx rows = out.rows, cols = out.cols, n = rows * cols;
    if (n == 0) return;
    const bool flat = (cols == 1 || rows == 1);
    if (flat) {  // one loop with one stride per array: the common 1-D case
        const idx sv = cols == 1 ? v.row_stride : v.col_stride;
        const idx sx = cols == 1 ? x.row_stride : x.col_stride;
        const idx so = cols == 1 ? out.row_stride : out.col_stride;
#pragma omp parallel for schedule(dynamic, 1) if (use_threads(n * 64))
        for (idx b = 0; b < n; b += chunk) {
            const idx end = std::min(n, b + chunk);
            for (idx i = b; i < end; ++i) out.data[i * so] = f(v.data[i * sv], x.data[i * sx]);
        }
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) if (use_threads(n * 64))
    for (idx b = 0; b < n; b += chunk) {
        const idx end = std::min(n, b + chunk);
        idx i = b / cols, c = b - i * cols;
        for (idx e = b; e < end; ++e) {
            out.data[i * out.row_stride + c * out.col_stride] =
                f(v.data[i * v.row_stride + c * v.col_stride],
                  x.data[i * x.row_stride + c * x.col_stride]);
            if (++c == cols) {
                c = 0;
                ++i;
            }
        }
    }
}

}  // namespace

template <class T>
void special_function(special_fn f, const block_ref<const T>& v, const block_ref<const T>& x,
                      const block_ref<T>& out) {
    if (avx2_kernels_enabled()) {
        elementwise_layout layout{out.rows,     out.cols,     v.row_stride,
                                  v.col_stride, x.row_stride, x.col_stride,
                                  out.row_stride, out.col_stride};
        if (layout.rows == 1)  // one row: as one column, the kernel's one-dimensional case
            layout = {layout.cols,  1, layout.v_col,   0, layout.x_col, 0,
                      layout.out_col, 0};
        if (layout.rows * layout.cols > 0)
            log_bessel_avx2(f, v.data, x.data, out.data, layout);
        return;
    }
    detail::with_special_functor(f, [&](auto fn) { elementwise(v, x, out, fn); });
}

template void special_function(special_fn, const block_ref<const float>&,
                               const block_ref<const float>&, const block_ref<float>&);
template void special_function(special_fn, const block_ref<const double>&,
                               const block_ref<const double>&, const block_ref<double>&);

}  // namespace curvkit::cpu
