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

namespace {

// The row loops are all exp: on x86-64 they are also compiled for AVX2 + FMA and picked at load
// time (4 doubles per instruction instead of SSE2's 2), while the library stays runnable on any
// x86-64 CPU.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#  define CURVKIT_ROW_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#  define CURVKIT_INLINE inline __attribute__((always_inline))
#else
#  define CURVKIT_ROW_CLONES
#  define CURVKIT_INLINE inline
#endif

// LSE_j((v_j - k_j) * inv) in two sweeps over a row that stays in cache: the max sweep
// vectorises, and shifting by the max keeps every exp in [0, 1].
template <class T>
CURVKIT_INLINE T row_lse_impl(const T* k, const T* v, T inv, idx m) {
    T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
    for (idx j = 0; j < m; ++j) {
        const T x = (v[j] - k[j]) * inv;
        mx = x > mx ? x : mx;
    }
    if (!(mx > -std::numeric_limits<T>::infinity())) return mx;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (idx j = 0; j < m; ++j) s += simd_exp((v[j] - k[j]) * inv - mx);
    return mx + std::log(s);
}

// One row of P = exp((f_i + g_j - M_ij) * inv): its sum, its part of <P, M>, its entries above
// the threshold, and its contribution to the column sums.
template <class T>
CURVKIT_INLINE void row_sums_impl(const T* mi, T fi, const T* g, T inv, T threshold, idx m,
                                  T* cols, T& sum, T& cost, idx& count) {
    T s = 0, c = 0;
    idx kept = 0;
#pragma omp simd reduction(+ : s, c, kept)
    for (idx j = 0; j < m; ++j) {
        const T p = simd_exp((fi + g[j] - mi[j]) * inv);
        s += p;
        cols[j] += p;
        c += p * mi[j];
        kept += p > threshold;
    }
    sum = s;
    cost += c;
    count = kept;
}

CURVKIT_ROW_CLONES double row_lse(const double* k, const double* v, double inv, idx m) {
    return row_lse_impl(k, v, inv, m);
}
CURVKIT_ROW_CLONES float row_lse(const float* k, const float* v, float inv, idx m) {
    return row_lse_impl(k, v, inv, m);
}
CURVKIT_ROW_CLONES void row_sums(const double* mi, double fi, const double* g, double inv,
                                 double threshold, idx m, double* cols, double& sum,
                                 double& cost, idx& count) {
    row_sums_impl(mi, fi, g, inv, threshold, m, cols, sum, cost, count);
}
CURVKIT_ROW_CLONES void row_sums(const float* mi, float fi, const float* g, float inv,
                                 float threshold, idx m, float* cols, float& sum, float& cost,
                                 idx& count) {
    row_sums_impl(mi, fi, g, inv, threshold, m, cols, sum, cost, count);
}

// Row i's entries above the threshold, in column order, into its `slots` positions: the exps
// are computed vectorised into `buffer` first, then a scalar sweep keeps the large ones. An
// entry beyond the slots (a count taken with other rounding) is dropped, and slots left over
// become explicit zeros, so the CSR arrays are always well formed.
template <class T>
CURVKIT_INLINE void row_gather_impl(const T* mi, T fi, const T* g, T inv, T threshold, idx m,
                                    idx col_offset, idx slots, T* buffer, idx* out_indices,
                                    T* out_values) {
#pragma omp simd
    for (idx j = 0; j < m; ++j) buffer[j] = simd_exp((fi + g[j] - mi[j]) * inv);
    idx at = 0;
    for (idx j = 0; j < m && at < slots; ++j) {
        if (buffer[j] > threshold) {
            out_indices[at] = j + col_offset;
            out_values[at] = buffer[j];
            ++at;
        }
    }
    for (; at < slots; ++at) {
        out_indices[at] = col_offset;
        out_values[at] = T(0);
    }
}

CURVKIT_ROW_CLONES void row_gather(const double* mi, double fi, const double* g, double inv,
                                   double threshold, idx m, idx col_offset, idx slots,
                                   double* buffer, idx* out_indices, double* out_values) {
    row_gather_impl(mi, fi, g, inv, threshold, m, col_offset, slots, buffer, out_indices,
                    out_values);
}
CURVKIT_ROW_CLONES void row_gather(const float* mi, float fi, const float* g, float inv,
                                   float threshold, idx m, idx col_offset, idx slots,
                                   float* buffer, idx* out_indices, float* out_values) {
    row_gather_impl(mi, fi, g, inv, threshold, m, col_offset, slots, buffer, out_indices,
                    out_values);
}

}  // namespace

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
        const T lse = row_lse(k, vb, inv, m);
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
void ot_sinkhorn_batch(idx batch, idx n, idx m, const T* M, const T* MT, const T* a, const T* b,
                       T reg, idx maxiter, T tol, idx check_every, T* f, T* g, idx* iterations,
                       T* error) {
    const T inv = T(1) / reg;
    // A problem per thread: its matrix stays in the core's cache for all its iterations, and
    // it stops on its own error, not the batch's worst.
#pragma omp parallel if (use_threads(batch * n * m))
    {
        std::vector<T> lse(static_cast<std::size_t>(n)), log_a(lse.size()),
            log_b(static_cast<std::size_t>(m));
#pragma omp for schedule(dynamic)
        for (idx k = 0; k < batch; ++k) {
            const T* mk = M + k * n * m;
            const T* mtk = MT + k * m * n;
            const T* ak = a + k * n;
            T* fk = f + k * n;
            T* gk = g + k * m;
            for (idx i = 0; i < n; ++i) log_a[i] = std::log(ak[i]);
            for (idx j = 0; j < m; ++j) log_b[j] = std::log(b[k * m + j]);
            T err = std::numeric_limits<T>::infinity();
            idx it = 0;
            for (; it < maxiter; ++it) {
                for (idx i = 0; i < n; ++i) lse[i] = row_lse(mk + i * m, gk, inv, m);
                if ((it + 1) % check_every == 0 || it + 1 == maxiter) {
                    T e = 0;
                    for (idx i = 0; i < n; ++i)
                        e += std::abs(std::exp(fk[i] * inv + lse[i]) - ak[i]);
                    err = e;
                    if (e <= tol || !std::isfinite(e)) break;
                }
                for (idx i = 0; i < n; ++i) fk[i] = reg * (log_a[i] - lse[i]);
                for (idx j = 0; j < m; ++j)
                    gk[j] = reg * (log_b[j] - row_lse(mtk + j * n, fk, inv, n));
            }
            iterations[k] = it;
            error[k] = err;
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
            row_sums(mi, fi, g, inv, threshold, m, cols, s, c, count);
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
                    const idx* starts, const idx* slots, idx col_offset, idx* indices,
                    T* values) {
    const T inv = T(1) / reg;
    for_each_thread(n * m, [&](int t, int nt) {
        std::vector<T> buffer(static_cast<std::size_t>(m));
        const idx first = n * t / nt, last = n * (t + 1) / nt;
        for (idx i = first; i < last; ++i)
            row_gather(M + i * m, f[i], g, inv, threshold, m, col_offset, slots[i],
                       buffer.data(), indices + starts[i], values + starts[i]);
    });
}

#define CURVKIT_OT_CPU(T)                                                                         \
    template void ot_lse_update(idx, idx, idx, const T*, const T*, const T*, T, T*, T*, T*);    \
    template void ot_sinkhorn_batch(idx, idx, idx, const T*, const T*, const T*, const T*, T, idx, \
                                    T, idx, T*, T*, idx*, T*);                                    \
    template void ot_plan_sums(idx, idx, const T*, const T*, const T*, T, T, T*, T*, T*, idx*);  \
    template void ot_plan_gather(idx, idx, const T*, const T*, const T*, T, T, const idx*,       \
                                 const idx*, idx, idx*, T*);
CURVKIT_OT_CPU(float)
CURVKIT_OT_CPU(double)
#undef CURVKIT_OT_CPU

}  // namespace curvkit::cpu
