// CUDA probe kernels: Rademacher and Gaussian blocks from Philox and the fused running mean/variance update.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "curvkit/device/philox.hpp"
#include "kernels.hpp"
#include "launch.cuh"

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

// One thread per element; consecutive threads take consecutive columns of a row, which is
// the contiguous direction of the row-major blocks the Python layer allocates.
template <class T, class Draw>
__global__ void __launch_bounds__(block_size)
    probe_block(T* __restrict__ z, i64 rows, i64 cols, i64 rs, i64 cs, std::uint64_t seed,
                i64 first_probe, Draw draw) {
    const i64 n = rows * cols;
    for (i64 e = thread_id(); e < n; e += thread_count()) {
        const i64 i = e / cols, c = e - i * cols;
        z[i * rs + c * cs] = draw.template operator()<T>(
            seed, static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(first_probe + c));
    }
}

template <class T, class Draw>
void launch_probe_block(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe,
                        void* stream, const char* what) {
    if (Z.rows <= 0 || Z.cols <= 0) return;
    probe_block<T, Draw><<<grid_for(Z.rows * Z.cols), block_size, 0,
                           static_cast<cudaStream_t>(stream)>>>(
        Z.data, Z.rows, Z.cols, Z.row_stride, Z.col_stride, seed, first_probe, Draw{});
    detail::cuda_check_launch(what);
}

// One thread per row: the block's mean and squared deviations, then Chan's combination.
template <class T>
__global__ void __launch_bounds__(block_size)
    accumulate_rows(const T* __restrict__ z, i64 zrs, i64 zcs, const T* __restrict__ hz,
                    i64 hrs, i64 hcs, T* __restrict__ mean, i64 ms, T* __restrict__ m2, i64 ss,
                    i64 rows, i64 b, i64 count) {
    for (i64 i = thread_id(); i < rows; i += thread_count()) {
        T block_mean = T(0);
        for (i64 c = 0; c < b; ++c) block_mean += z[i * zrs + c * zcs] * hz[i * hrs + c * hcs];
        block_mean /= static_cast<T>(b);
        T block_m2 = T(0);
        for (i64 c = 0; c < b; ++c) {
            const T dev = z[i * zrs + c * zcs] * hz[i * hrs + c * hcs] - block_mean;
            block_m2 += dev * dev;
        }
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
    accumulate_rows<T><<<grid_for(Z.rows), block_size, 0, static_cast<cudaStream_t>(stream)>>>(
        Z.data, Z.row_stride, Z.col_stride, HZ.data, HZ.row_stride, HZ.col_stride, mean.data,
        mean.row_stride, m2.data, m2.row_stride, Z.rows, Z.cols, count);
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
