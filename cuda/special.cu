// CUDA kernels of the elementwise special functions. The log-Bessel routes differ in cost by
// 100x (a few terms of the uniform expansion against 80 steps of a continued fraction), so
// the flat kernel first sorts each tile of elements by a route key and hands neighbouring
// threads elements of the same route and similar argument: a warp then costs about the mean
// of its elements, not the slowest.
#include <cub/block/block_radix_sort.cuh>
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

constexpr int tile_items = 8;  // per thread
constexpr int tile_size = block_size * tile_items;
constexpr int key_bits = 17;

/// A sort key that groups elements taking the same route at similar cost: the uniform
/// expansion (|v| >= debye_min_order) by the octave of v (its term count), the small orders by
/// x in eighths of an octave (the x ranges of the routes and the lengths of their series and
/// fractions), then by the integer part of v (the recurrence's steps). Only the schedule
/// depends on it: every element is still evaluated by the same scalar function.
__device__ __forceinline__ unsigned route_key(double v, double x) {
    const double a = fabs(v);
    if (a >= device::detail::debye_min_order)
        return (1u << 16) | ((__float_as_uint(static_cast<float>(a)) >> 20) & 0x7ffu);
    const unsigned octave = (__float_as_uint(static_cast<float>(x)) >> 20) & 0x7ffu;
    const unsigned whole = a < 31.0 ? static_cast<unsigned>(a) : 31u;  // also NaN -> 31
    return (octave << 5) | whole;
}

// The flat case (one stride per array): tiles of tile_size elements, loaded coalesced, sorted
// by route key within the block, then evaluated in key order and stored back in place.
template <class T, class F>
__global__ void __launch_bounds__(block_size)
    elementwise_flat(const T* __restrict__ v, i64 sv, const T* __restrict__ x, i64 sx,
                     T* __restrict__ out, i64 so, i64 n, F f) {
    using sorter = cub::BlockRadixSort<unsigned, block_size, tile_items, unsigned short>;
    __shared__ typename sorter::TempStorage temp;
    const i64 step = static_cast<i64>(gridDim.x) * tile_size;
    for (i64 base = static_cast<i64>(blockIdx.x) * tile_size; base < n; base += step) {
        unsigned key[tile_items];
        unsigned short at[tile_items];
        for (int k = 0; k < tile_items; ++k) {
            const int local = k * block_size + static_cast<int>(threadIdx.x);
            const i64 e = base + local;
            at[k] = static_cast<unsigned short>(local);
            key[k] = e < n ? route_key(static_cast<double>(v[e * sv]),
                                       static_cast<double>(x[e * sx]))
                           : (1u << key_bits) - 1u;  // past the end: sorted last, skipped
        }
        sorter(temp).SortBlockedToStriped(key, at, 0, key_bits);
        for (int k = 0; k < tile_items; ++k) {
            const i64 e = base + at[k];
            if (e < n) out[e * so] = f(v[e * sv], x[e * sx]);
        }
        __syncthreads();  // the sort's shared storage is reused by the next tile
    }
}

unsigned tile_grid(i64 n) {
    const i64 tiles = (n + tile_size - 1) / tile_size;
    return static_cast<unsigned>(tiles < launch::max_blocks ? tiles : launch::max_blocks);
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
            elementwise_flat<T, F><<<tile_grid(n), block_size, 0, s>>>(
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
