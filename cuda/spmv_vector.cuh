// Row kernels shared by the CSR product and the CG kernels: vector-CSR SpMV with a pluggable
// epilogue, and the lane-group helpers it uses.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "launch.cuh"

namespace curvkit::cuda::rows {

using i64 = std::int64_t;
using launch::block_size;
using launch::thread_count;
using launch::thread_id;

constexpr unsigned full_mask = 0xffffffffu;

/// Smallest power of two >= n, clamped to [2, 32]: the lanes given to one row.
inline int group_width(i64 n) {
    int g = 2;
    while (g < 32 && g < n) {
        g *= 2;
    }
    return g;
}

/// Lanes per row for the vector SpMV from the mean row length. Short rows (stencils) get one
/// thread each: a warp then has 32 rows' loads in flight instead of 32 / G, which is what bounds
/// the kernel, and the rows' entries still arrive through L1 as whole lines (H100, Poisson
/// 4096^2: 898 -> 510 us). Longer rows keep one pass of G >= length lanes: looping over them
/// with fewer lanes chains their dependent index -> x loads (random 17/row rows: 1.6x slower).
inline int vector_group_width(i64 mean_row_length) {
    return mean_row_length <= 8 ? 1 : group_width(mean_row_length);
}

/// Sum over the G lanes of a group; lane 0 of the group holds the result. Every lane of the
/// warp must call it (full mask).
template <int G, class T>
__device__ __forceinline__ T group_sum(T v) {
#pragma unroll
    for (int offset = G / 2; offset > 0; offset /= 2) {
        v += __shfl_down_sync(full_mask, v, offset, G);
    }
    return v;
}

// ---------------------------------------------------------------------------------------------
// SpMV, k = 1: "vector CSR". G lanes share a row so that a warp reads 32 consecutive nonzeros
// even when rows are short; G follows the mean row length. Ops says what x_j is (load), where
// each row's result goes (store), and may reduce over the block at the end (finish), as CG's
// fused product-and-dot does.

template <int G, class T, class I, class Ops>
__global__ void __launch_bounds__(block_size)
    spmv_vector(i64 rows, const I* __restrict__ indptr, const I* __restrict__ indices,
                const T* __restrict__ values, Ops ops) {
    if (ops.skip()) {
        return;  // grid-uniform
    }
    ops.prepare();
    constexpr int groups_per_warp = 32 / G;
    const int lane = static_cast<int>(threadIdx.x % G);
    const int group_in_warp = static_cast<int>((threadIdx.x % 32) / G);
    const i64 first = thread_id() / 32 * groups_per_warp;
    const i64 step = thread_count() / 32 * groups_per_warp;
    // The loop runs over the warp's first row, not the group's, so that all 32 lanes reach the
    // full-mask shuffles even on a last pass that only partly covers the warp.
    for (i64 base = first; base < rows; base += step) {
        const i64 row = base + group_in_warp;
        T sum = T(0);
        if (row < rows) {
            const i64 end = indptr[row + 1];
            for (i64 p = static_cast<i64>(indptr[row]) + lane; p < end; p += G) {
                sum += values[p] * ops.load(static_cast<i64>(indices[p]));
            }
        }
        sum = group_sum<G>(sum);
        if (lane == 0 && row < rows) {
            ops.store(row, sum);  // empty rows store 0
        }
    }
    ops.finish();  // every thread of the block
}

/// Ops of a plain product y = A x with strided vectors.
template <class T>
struct strided_product {
    const T* __restrict__ x;
    i64 x_stride;
    T* __restrict__ y;
    i64 y_stride;
    __device__ __forceinline__ bool skip() const { return false; }
    __device__ __forceinline__ void prepare() {}
    __device__ __forceinline__ T load(i64 j) const { return x[j * x_stride]; }
    __device__ __forceinline__ void store(i64 row, T v) { y[row * y_stride] = v; }
    __device__ __forceinline__ void finish() {}
};

}  // namespace curvkit::cuda::rows
