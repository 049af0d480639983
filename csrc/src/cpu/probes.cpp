// CPU probe kernels: Rademacher and Gaussian blocks from Philox and the fused running
// mean/variance update.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/isa.hpp"
#include "cpu/probes_avx2.hpp"
#include "cpu/threads.hpp"
#include "curvkit/device/philox.hpp"
#include "kernels.hpp"

namespace curvkit::cpu {

using idx = std::int64_t;

template <class T>
void fill_rademacher(const block_ref<T>& Z, std::uint64_t seed, idx first_probe) {
#pragma omp parallel for schedule(static) if (use_threads(Z.rows * Z.cols))
    for (idx i = 0; i < Z.rows; ++i) {
        T* row = Z.data + i * Z.row_stride;
        const idx cs = Z.col_stride;
        // One Philox call per 128 probes of the row; the sign loop inside a group is branch-free.
        for (idx c = 0; c < Z.cols;) {
            const auto p = static_cast<std::uint64_t>(first_probe + c);
            const device::uint4x32 bits =
                device::rademacher_bits(seed, static_cast<std::uint64_t>(i), p >> 7);
            const idx end = std::min<idx>(Z.cols, c + static_cast<idx>(128 - (p & 127u)));
            for (unsigned bit = static_cast<unsigned>(p & 127u); c < end; ++c, ++bit)
                row[c * cs] = T(2) * T((bits.v[bit >> 5] >> (bit & 31u)) & 1u) - T(1);
        }
    }
}

template <class T>
void accumulate_probe_products(const block_ref<const T>& Z, const block_ref<const T>& HZ,
                               const block_ref<T>& mean, const block_ref<T>& m2, idx count) {
    const idx b = Z.cols;
    if (b == 0) return;
#pragma omp parallel for schedule(static) if (use_threads(Z.rows * b))
    for (idx i = 0; i < Z.rows; ++i) {
        // Mean and squared deviations of this block's b samples, then Chan's combination with
        // the earlier ones: stable where a plain sum of squares would cancel.
        T block_mean = 0;
        for (idx c = 0; c < b; ++c)
            block_mean += Z.data[i * Z.row_stride + c * Z.col_stride] *
                          HZ.data[i * HZ.row_stride + c * HZ.col_stride];
        block_mean /= static_cast<T>(b);
        T block_m2 = 0;
        for (idx c = 0; c < b; ++c) {
            const T dev = Z.data[i * Z.row_stride + c * Z.col_stride] *
                              HZ.data[i * HZ.row_stride + c * HZ.col_stride] -
                          block_mean;
            block_m2 += dev * dev;
        }
        T& mu = mean.data[i * mean.row_stride];
        T& s2 = m2.data[i * m2.row_stride];
        if (count == 0) {
            mu = block_mean;
            s2 = block_m2;
        } else {
            const T n_a = static_cast<T>(count), n_b = static_cast<T>(b), n = n_a + n_b;
            const T delta = block_mean - mu;
            mu += delta * (n_b / n);
            s2 += block_m2 + delta * delta * (n_a * n_b / n);
        }
    }
}

/// fill_gaussian with the vector Box-Muller transform: per row, the uniforms of up to 256
/// pairs at a time from Philox, then the transform box_muller_lanes pairs at a time.
template <class T>
void fill_gaussian_avx2(const block_ref<T>& Z, std::uint64_t seed, idx first_probe) {
    constexpr int block = 256;
    const idx first_pair = first_probe >> 1, last_pair = (first_probe + Z.cols - 1) >> 1;
#pragma omp parallel for schedule(static) if (use_threads(Z.rows * Z.cols))
    for (idx i = 0; i < Z.rows; ++i) {
        T* row = Z.data + i * Z.row_stride;
        double u0[block], u1[block], g0[block], g1[block];
        for (idx p0 = first_pair; p0 <= last_pair; p0 += block) {
            const int pairs = static_cast<int>(std::min<idx>(block, last_pair - p0 + 1));
            for (int j = 0; j < pairs; ++j)
                device::gaussian_uniforms(seed, static_cast<std::uint64_t>(i),
                                          static_cast<std::uint64_t>(p0 + j), u0[j], u1[j]);
            const int padded = (pairs + box_muller_lanes - 1) / box_muller_lanes * box_muller_lanes;
            for (int j = pairs; j < padded; ++j) u0[j] = 1.0, u1[j] = 0.0;
            box_muller_avx2(u0, u1, g0, g1, padded);
            for (int j = 0; j < pairs; ++j) {
                const idx c = 2 * (p0 + j) - first_probe;  // column of the pair's first value
                if (c >= 0) row[c * Z.col_stride] = static_cast<T>(g0[j]);
                if (c + 1 < Z.cols) row[(c + 1) * Z.col_stride] = static_cast<T>(g1[j]);
            }
        }
    }
}

template <class T>
void fill_gaussian(const block_ref<T>& Z, std::uint64_t seed, idx first_probe) {
    if (Z.rows == 0 || Z.cols == 0) return;
    if (avx2_kernels_enabled()) return fill_gaussian_avx2(Z, seed, first_probe);
#pragma omp parallel for schedule(static) if (use_threads(Z.rows * Z.cols))
    for (idx i = 0; i < Z.rows; ++i) {
        T* row = Z.data + i * Z.row_stride;
        for (idx c = 0; c < Z.cols;) {  // one Philox call per pair of probes
            const auto p = static_cast<std::uint64_t>(first_probe + c);
            double g[2];
            device::gaussian_pair(seed, static_cast<std::uint64_t>(i), p >> 1, g[0], g[1]);
            for (unsigned k = static_cast<unsigned>(p & 1u); k < 2 && c < Z.cols; ++k, ++c)
                row[c * Z.col_stride] = static_cast<T>(g[k]);
        }
    }
}

template <class I>
idx greedy_coloring(idx rows, const I* indptr, const I* indices, std::int32_t* colors) {
    // seen[c] == i + 1 marks colour c as taken by a neighbour of vertex i; sequential by nature.
    std::vector<idx> seen;
    idx used = 0;
    for (idx i = 0; i < rows; ++i) colors[i] = -1;
    for (idx i = 0; i < rows; ++i) {
        for (idx p = indptr[i]; p < static_cast<idx>(indptr[i + 1]); ++p) {
            const idx j = indices[p];
            if (j != i && colors[j] >= 0) seen[static_cast<std::size_t>(colors[j])] = i + 1;
        }
        idx c = 0;
        while (c < used && seen[static_cast<std::size_t>(c)] == i + 1) ++c;
        if (c == used) {
            ++used;
            seen.push_back(0);
        }
        colors[i] = static_cast<std::int32_t>(c);
    }
    return used;
}

template idx greedy_coloring(idx, const std::int32_t*, const std::int32_t*, std::int32_t*);
template idx greedy_coloring(idx, const std::int64_t*, const std::int64_t*, std::int32_t*);
template void fill_gaussian(const block_ref<float>&, std::uint64_t, idx);
template void fill_gaussian(const block_ref<double>&, std::uint64_t, idx);
template void fill_rademacher(const block_ref<float>&, std::uint64_t, idx);
template void fill_rademacher(const block_ref<double>&, std::uint64_t, idx);
template void accumulate_probe_products(const block_ref<const float>&,
                                        const block_ref<const float>&, const block_ref<float>&,
                                        const block_ref<float>&, idx);
template void accumulate_probe_products(const block_ref<const double>&,
                                        const block_ref<const double>&, const block_ref<double>&,
                                        const block_ref<double>&, idx);

}  // namespace curvkit::cpu
