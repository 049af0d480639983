// CUDA kernels of the elementwise special functions: one thread per element, grid-stride.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "kernels.hpp"
#include "launch.cuh"
#include "special_functors.hpp"

namespace curvkit::cuda {
namespace {

using i64 = std::int64_t;
using launch::block_size;
using launch::grid_for;
using launch::thread_count;
using launch::thread_id;

// The flat case (one stride per array) avoids the division by cols of the 2-D index.
template <class T, class F>
__global__ void __launch_bounds__(block_size)
    elementwise_flat(const T* __restrict__ v, i64 sv, const T* __restrict__ x, i64 sx,
                     T* __restrict__ out, i64 so, i64 n, F f) {
    for (i64 e = thread_id(); e < n; e += thread_count()) out[e * so] = f(v[e * sv], x[e * sx]);
}

template <class T, class F>
__global__ void __launch_bounds__(block_size)
    elementwise_2d(block_ref<const T> v, block_ref<const T> x, block_ref<T> out, F f) {
    const i64 n = out.rows * out.cols;
    for (i64 e = thread_id(); e < n; e += thread_count()) {
        const i64 i = e / out.cols, c = e - i * out.cols;
        out.data[i * out.row_stride + c * out.col_stride] =
            f(v.data[i * v.row_stride + c * v.col_stride],
              x.data[i * x.row_stride + c * x.col_stride]);
    }
}

}  // namespace

template <class T>
void special_function(special_fn f, const block_ref<const T>& v, const block_ref<const T>& x,
                      const block_ref<T>& out, void* stream) {
    const i64 n = out.rows * out.cols;
    if (n == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    curvkit::detail::with_special_functor(f, [&](auto fn) {
        using F = decltype(fn);
        if (out.cols == 1 || out.rows == 1) {
            const bool col = out.cols == 1;
            elementwise_flat<T, F><<<grid_for(n), block_size, 0, s>>>(
                v.data, col ? v.row_stride : v.col_stride, x.data,
                col ? x.row_stride : x.col_stride, out.data,
                col ? out.row_stride : out.col_stride, n, fn);
        } else {
            elementwise_2d<T, F><<<grid_for(n), block_size, 0, s>>>(v, x, out, fn);
        }
    });
    detail::cuda_check_launch("special_function: launch");
}

template void special_function<float>(special_fn, const block_ref<const float>&,
                                      const block_ref<const float>&, const block_ref<float>&,
                                      void*);
template void special_function<double>(special_fn, const block_ref<const double>&,
                                       const block_ref<const double>&, const block_ref<double>&,
                                       void*);

}  // namespace curvkit::cuda
