// CUDA probe kernels: Rademacher and Gaussian blocks from Philox and the fused running mean/variance update.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda_check.cuh"
#include "curvkit/device/philox.hpp"
#include "kernels.hpp"
#include "launch.cuh"
#include "spmv_vector.cuh"

namespace curvkit::cuda {
namespace {

using i64 = std::int64_t;
using launch::block_size;
using launch::grid_for;
using launch::thread_count;
using launch::thread_id;

// The value of probe `probe` in row `row` of each distribution's probe sequence.
struct rademacher_draw {
    template <class T>
    __device__ T operator()(std::uint64_t seed, std::uint64_t row, std::uint64_t probe) const {
        return device::rademacher<T>(seed, row, probe);
    }
};

struct gaussian_draw {  // each element computes its pair of normals and keeps one
    template <class T>
    __device__ T operator()(std::uint64_t seed, std::uint64_t row, std::uint64_t probe) const {
        double g0, g1;
        device::gaussian_pair(seed, row, probe >> 1, g0, g1);
        return static_cast<T>((probe & 1u) ? g1 : g0);
    }
};

// Rows of a probe block are handled by groups of G lanes (G = the power of two >= the block's
// width, at most a warp), lane c taking columns c, c + G, ...: consecutive lanes touch
// consecutive addresses of a row-major block, and no element index is divided back into
// (row, column). Loops run over the warp's first row so every lane reaches the shuffles.
template <int G>
struct row_groups {
    static constexpr int per_warp = 32 / G;
    int lane = static_cast<int>(threadIdx.x % G);
    i64 first = thread_id() / 32 * per_warp;
    i64 step = thread_count() / 32 * per_warp;
    __device__ i64 row(i64 base) const { return base + static_cast<i64>((threadIdx.x % 32) / G); }
};

template <int G, class T, class Draw>
__global__ void __launch_bounds__(block_size)
    probe_block(T* __restrict__ z, i64 rows, i64 cols, i64 rs, i64 cs, std::uint64_t seed,
                i64 first_probe, Draw draw) {
    const row_groups<G> g;
    for (i64 base = g.first; base < rows; base += g.step) {
        const i64 i = g.row(base);
        if (i >= rows) continue;
        for (i64 c = g.lane; c < cols; c += G) {
            z[i * rs + c * cs] = draw.template operator()<T>(
                seed, static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(first_probe + c));
        }
    }
}

// The block's mean and squared deviations of z * hz per row (two group sums), then Chan's
// combination with the earlier samples.
template <int G, class T>
__global__ void __launch_bounds__(block_size)
    accumulate_rows(const T* __restrict__ z, i64 zrs, i64 zcs, const T* __restrict__ hz,
                    i64 hrs, i64 hcs, T* __restrict__ mean, i64 ms, T* __restrict__ m2, i64 ss,
                    i64 rows, i64 b, i64 count) {
    const row_groups<G> g;
    for (i64 base = g.first; base < rows; base += g.step) {
        const i64 i = g.row(base);
        const bool valid = i < rows;
        T sum = T(0);
        if (valid) {
            for (i64 c = g.lane; c < b; c += G) sum += z[i * zrs + c * zcs] * hz[i * hrs + c * hcs];
        }
        const T block_mean = __shfl_sync(rows::full_mask, rows::group_sum<G>(sum), 0, G) /
                             static_cast<T>(b);
        T squares = T(0);
        if (valid) {
            for (i64 c = g.lane; c < b; c += G) {
                const T dev = z[i * zrs + c * zcs] * hz[i * hrs + c * hcs] - block_mean;
                squares += dev * dev;
            }
        }
        const T block_m2 = rows::group_sum<G>(squares);
        if (!valid || g.lane != 0) continue;
        if (count == 0) {
            mean[i * ms] = block_mean;
            m2[i * ss] = block_m2;
        } else {
            const T n_a = static_cast<T>(count), n_b = static_cast<T>(b), n = n_a + n_b;
            const T delta = block_mean - mean[i * ms];
            mean[i * ms] += delta * (n_b / n);
            m2[i * ss] += block_m2 + delta * delta * (n_a * n_b / n);
        }
    }
}

// Calls launch(integral_constant<int, G>) with G lanes per row for a block `cols` wide.
template <class F>
void with_group_width(i64 cols, F&& launch) {
    switch (cols <= 1 ? 1 : rows::group_width(cols)) {
        case 1: launch(std::integral_constant<int, 1>{}); break;
        case 2: launch(std::integral_constant<int, 2>{}); break;
        case 4: launch(std::integral_constant<int, 4>{}); break;
        case 8: launch(std::integral_constant<int, 8>{}); break;
        case 16: launch(std::integral_constant<int, 16>{}); break;
        default: launch(std::integral_constant<int, 32>{}); break;
    }
}

template <class T, class Draw>
void launch_probe_block(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe,
                        void* stream, const char* what) {
    if (Z.rows <= 0 || Z.cols <= 0) return;
    with_group_width(Z.cols, [&](auto width) {
        constexpr int G = decltype(width)::value;
        probe_block<G, T, Draw><<<grid_for(Z.rows * G), block_size, 0,
                                  static_cast<cudaStream_t>(stream)>>>(
            Z.data, Z.rows, Z.cols, Z.row_stride, Z.col_stride, seed, first_probe, Draw{});
    });
    detail::cuda_check_launch(what);
}

}  // namespace

template <class T>
void fill_rademacher(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe,
                     void* stream) {
    launch_probe_block<T, rademacher_draw>(Z, seed, first_probe, stream, "fill_rademacher: launch");
}

template <class T>
void fill_gaussian(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe,
                   void* stream) {
    launch_probe_block<T, gaussian_draw>(Z, seed, first_probe, stream, "fill_gaussian: launch");
}

template <class T>
void accumulate_probe_products(const block_ref<const T>& Z, const block_ref<const T>& HZ,
                               const block_ref<T>& mean, const block_ref<T>& m2,
                               std::int64_t count, void* stream) {
    if (Z.rows <= 0 || Z.cols <= 0) return;
    with_group_width(Z.cols, [&](auto width) {
        constexpr int G = decltype(width)::value;
        accumulate_rows<G, T><<<grid_for(Z.rows * G), block_size, 0,
                                static_cast<cudaStream_t>(stream)>>>(
            Z.data, Z.row_stride, Z.col_stride, HZ.data, HZ.row_stride, HZ.col_stride, mean.data,
            mean.row_stride, m2.data, m2.row_stride, Z.rows, Z.cols, count);
    });
    detail::cuda_check_launch("accumulate_probe_products: launch");
}

template void fill_gaussian<float>(const block_ref<float>&, std::uint64_t, std::int64_t, void*);
template void fill_gaussian<double>(const block_ref<double>&, std::uint64_t, std::int64_t, void*);
template void fill_rademacher<float>(const block_ref<float>&, std::uint64_t, std::int64_t, void*);
template void fill_rademacher<double>(const block_ref<double>&, std::uint64_t, std::int64_t,
                                      void*);
template void accumulate_probe_products<float>(const block_ref<const float>&,
                                               const block_ref<const float>&,
                                               const block_ref<float>&, const block_ref<float>&,
                                               std::int64_t, void*);
template void accumulate_probe_products<double>(const block_ref<const double>&,
                                                const block_ref<const double>&,
                                                const block_ref<double>&, const block_ref<double>&,
                                                std::int64_t, void*);

}  // namespace curvkit::cuda
