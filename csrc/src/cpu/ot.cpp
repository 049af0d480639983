// CPU entropic transport kernels: the log-domain Sinkhorn half step with its marginal error, and
// the plan's marginals, cost and large entries, one pass over the cost matrix each.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/partition.hpp"
#include "cpu/simd_exp.hpp"
#include "cpu/threads.hpp"
#include "kernels.hpp"

namespace curvkit::cpu {

using idx = std::int64_t;

template <class T>
void ot_lse_update(idx batch, idx n, idx m, const T* K, const T* v, const T* w, T reg, T* u,
                   T* marginal, T* error) {
    const T inv = T(1) / reg;
    const idx rows = batch * n;
    // Per-row errors, summed per problem afterwards: the sum order no longer depends on the
    // thread count.
    std::vector<T> row_error(error != nullptr ? static_cast<std::size_t>(rows) : 0);
#pragma omp parallel for schedule(static) if (use_threads(rows * m))
    for (idx r = 0; r < rows; ++r) {
        const T* k = K + r * m;
        const T* vb = v + (r / n) * m;
        // Two sweeps over a row that stays in cache: the max sweep vectorises, and shifting by
        // the max keeps every exp in [0, 1].
        T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
        for (idx j = 0; j < m; ++j) {
            const T x = (vb[j] - k[j]) * inv;
            mx = x > mx ? x : mx;
        }
        T lse = mx;
        if (mx > -std::numeric_limits<T>::infinity()) {
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (idx j = 0; j < m; ++j) s += simd_exp((vb[j] - k[j]) * inv - mx);
            lse = mx + std::log(s);
        }
        const T current = std::exp(u[r] * inv + lse);
        if (marginal != nullptr) marginal[r] = current;
        if (error != nullptr) row_error[r] = std::abs(current - w[r]);
        u[r] = reg * (std::log(w[r]) - lse);
    }
    if (error != nullptr) {
        for (idx b = 0; b < batch; ++b) {
            T e = 0;
            for (idx i = 0; i < n; ++i) e += row_error[b * n + i];
            error[b] = e;
        }
    }
}

template <class T>
void ot_plan_sums(idx n, idx m, const T* M, const T* f, const T* g, T reg, T threshold,
                  T* row_sum, T* col_sum, T* cost, idx* row_count) {
    const T inv = T(1) / reg;
    const int max_threads = use_threads(n * m) ? omp_get_max_threads() : 1;
    // Each thread sums its rows' columns privately; the partial sums are added once at the end.
    std::vector<T> partial_cols(static_cast<std::size_t>(max_threads) * m, T(0));
    std::vector<T> partial_cost(static_cast<std::size_t>(max_threads), T(0));
    int used = 1;
    for_each_thread(n * m, [&](int t, int nt) {
        if (t == 0) used = nt;
        T* cols = partial_cols.data() + static_cast<std::size_t>(t) * m;
        const idx first = n * t / nt, last = n * (t + 1) / nt;
        T c = 0;
        for (idx i = first; i < last; ++i) {
            const T* mi = M + i * m;
            const T fi = f[i];
            T s = 0;
            idx count = 0;
#pragma omp simd reduction(+ : s, c, count)
            for (idx j = 0; j < m; ++j) {
                const T p = simd_exp((fi + g[j] - mi[j]) * inv);
                s += p;
                cols[j] += p;
                c += p * mi[j];
                count += p > threshold;
            }
            row_sum[i] = s;
            if (row_count != nullptr) row_count[i] = count;
        }
        partial_cost[t] = c;
    });
    for (idx j = 0; j < m; ++j) {
        T s = 0;
        for (int t = 0; t < used; ++t) s += partial_cols[static_cast<std::size_t>(t) * m + j];
        col_sum[j] = s;
    }
    if (cost != nullptr) {
        T c = 0;
        for (int t = 0; t < used; ++t) c += partial_cost[t];
        *cost = c;
    }
}

template <class T>
void ot_plan_gather(idx n, idx m, const T* M, const T* f, const T* g, T reg, T threshold,
                    const idx* starts, idx col_offset, idx* indices, T* values) {
    const T inv = T(1) / reg;
#pragma omp parallel for schedule(static) if (use_threads(n * m))
    for (idx i = 0; i < n; ++i) {
        const T* mi = M + i * m;
        idx at = starts[i];
        for (idx j = 0; j < m; ++j) {
            const T p = simd_exp((f[i] + g[j] - mi[j]) * inv);
            if (p > threshold) {
                indices[at] = j + col_offset;
                values[at] = p;
                ++at;
            }
        }
    }
}

#define CURVKIT_OT_CPU(T)                                                                         \
    template void ot_lse_update(idx, idx, idx, const T*, const T*, const T*, T, T*, T*, T*);    \
    template void ot_plan_sums(idx, idx, const T*, const T*, const T*, T, T, T*, T*, T*, idx*);  \
    template void ot_plan_gather(idx, idx, const T*, const T*, const T*, T, T, const idx*, idx,   \
                                 idx*, T*);
CURVKIT_OT_CPU(float)
CURVKIT_OT_CPU(double)
#undef CURVKIT_OT_CPU

}  // namespace curvkit::cpu
