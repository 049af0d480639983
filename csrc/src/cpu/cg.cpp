// CPU CG kernels: each pass over the vectors carries the column sums the next scalar step needs.
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <cstdint>
#include <vector>

#include "cg_steps.hpp"
#include "cpu/partition.hpp"
#include "cpu/threads.hpp"
#include "kernels.hpp"

namespace curvkit::cpu {
namespace {

using idx = std::int64_t;

// Sums NR quantities per column over rows split statically among the threads, combined in
// thread order: the same inputs and thread count always give the same bits, so iteration
// counts are reproducible. body(first, last, acc) adds its rows' terms to acc[r * k + j].
template <int NR, class Body>
std::vector<double> column_sums(idx n, idx k, Body&& body) {
    const int max_threads = use_threads(n * k) ? omp_get_max_threads() : 1;
    std::vector<double> per_thread(static_cast<std::size_t>(max_threads) * NR * k, 0.0);
    int used = 1;
#pragma omp parallel num_threads(max_threads) if (max_threads > 1)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
        used = nt;
        const idx first = n / nt * t + std::min<idx>(t, n % nt);
        const idx last = first + n / nt + (t < n % nt ? 1 : 0);
        body(first, last, per_thread.data() + static_cast<idx>(t) * NR * k);
    }
    std::vector<double> sums(static_cast<std::size_t>(NR * k), 0.0);
    for (int t = 0; t < used; ++t)
        for (idx e = 0; e < NR * k; ++e) sums[e] += per_thread[static_cast<idx>(t) * NR * k + e];
    return sums;
}

bool is_active(const cg_state& s, idx j) { return s.status[j] == cg_step::active; }

}  // namespace

template <class T>
void cg_start(idx n, const T* b, const T* ax, T* r, T* p, const T* inv_diag, bool has_rz,
              double rtol, double atol, const cg_state& s) {
    const idx k = s.k;
    const auto sums = column_sums<3>(n, k, [&](idx first, idx last, double* acc) {
        for (idx i = first; i < last; ++i)
            for (idx j = 0; j < k; ++j) {
                const idx e = i * k + j;
                const double ri = static_cast<double>(b[e]) - static_cast<double>(ax[e]);
                r[e] = static_cast<T>(ri);
                p[e] = T(0);
                acc[j] += ri * ri;
                acc[k + j] += static_cast<double>(b[e]) * static_cast<double>(b[e]);
                acc[2 * k + j] += inv_diag ? ri * ri * static_cast<double>(inv_diag[i]) : ri * ri;
            }
    });
    for (idx j = 0; j < k; ++j)
        cg_step::started(s, j, sums[j], sums[k + j], sums[2 * k + j], has_rz, rtol, atol);
}

template <class T, class I>
void cg_product_dot(const csr_ref<T, I>& A, const T* r, const T* inv_diag, const T* p, T* p_next,
                    T* q, const cg_state& s) {
    if (!is_active(s, 0)) return;
    const idx n = A.rows;
    const T beta = static_cast<T>(s.beta[0]);
    const int max_threads = use_threads(A.nnz + n) ? omp_get_max_threads() : 1;
    std::vector<double> per_thread(static_cast<std::size_t>(max_threads), 0.0);
    int used = 1;
    const I* __restrict__ indptr = A.indptr;
    const I* __restrict__ indices = A.indices;
    const T* __restrict__ values = A.values;
    // With p_next, the next direction of every gathered j is evaluated on the spot, by the same
    // expression that stores it for row j: bitwise the stored value, without a pass over p.
    auto run = [&](auto direction, auto next) {
#pragma omp parallel num_threads(max_threads) if (max_threads > 1)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
            used = nt;
            const auto [first, last] = row_range(indptr, n, t, nt);
            double dot = 0;
            for (idx i = first; i < last; ++i) {
                T acc = 0;
                const idx end = indptr[i + 1];
                for (idx e = indptr[i]; e < end; ++e)
                    acc += values[e] * direction(static_cast<idx>(indices[e]));
                const T pi = direction(i);
                if (decltype(next)::value) p_next[i] = pi;
                q[i] = acc;
                dot += static_cast<double>(pi) * static_cast<double>(acc);
            }
            per_thread[t] = dot;
        }
    };
    if (!p_next) run([&](idx j) { return p[j]; }, std::false_type{});
    else if (inv_diag) run([&](idx j) { return inv_diag[j] * r[j] + beta * p[j]; }, std::true_type{});
    else run([&](idx j) { return r[j] + beta * p[j]; }, std::true_type{});
    double pq = 0;
    for (int t = 0; t < used; ++t) pq += per_thread[t];
    cg_step::took_pq(s, 0, pq);
}

template <class T>
void cg_dot_pq(idx n, const T* p, const T* q, const cg_state& s) {
    const idx k = s.k;
    const auto sums = column_sums<1>(n, k, [&](idx first, idx last, double* acc) {
        if (k == 1) {
            double d = 0;
#pragma omp simd reduction(+ : d)
            for (idx i = first; i < last; ++i) d += static_cast<double>(p[i]) * q[i];
            acc[0] += d;
            return;
        }
        for (idx i = first; i < last; ++i)
            for (idx j = 0; j < k; ++j)
                acc[j] += static_cast<double>(p[i * k + j]) * q[i * k + j];
    });
    for (idx j = 0; j < k; ++j) cg_step::took_pq(s, j, sums[j]);
}

template <class T>
void cg_update_xr(idx n, T* x, T* r, const T* p, const T* q, const T* inv_diag, bool has_rz,
                  const cg_state& s) {
    const idx k = s.k;
    const bool jacobi = inv_diag != nullptr;
    const auto sums = column_sums<2>(n, k, [&](idx first, idx last, double* acc) {
        if (k == 1) {
            if (!is_active(s, 0)) return;
            const T a = static_cast<T>(s.alpha[0]);
            double rr = 0, rz = 0;
            if (jacobi) {
#pragma omp simd reduction(+ : rr, rz)
                for (idx i = first; i < last; ++i) {
                    x[i] += a * p[i];
                    const T ri = r[i] - a * q[i];
                    r[i] = ri;
                    rr += static_cast<double>(ri) * ri;
                    rz += static_cast<double>(ri) * ri * inv_diag[i];
                }
            } else {
#pragma omp simd reduction(+ : rr)
                for (idx i = first; i < last; ++i) {
                    x[i] += a * p[i];
                    const T ri = r[i] - a * q[i];
                    r[i] = ri;
                    rr += static_cast<double>(ri) * ri;
                }
                rz = rr;
            }
            acc[0] += rr;
            acc[1] += rz;
            return;
        }
        for (idx i = first; i < last; ++i)
            for (idx j = 0; j < k; ++j) {
                if (!is_active(s, j)) continue;
                const idx e = i * k + j;
                const T a = static_cast<T>(s.alpha[j]);
                x[e] += a * p[e];
                const T ri = r[e] - a * q[e];
                r[e] = ri;
                const double rr = static_cast<double>(ri) * ri;
                acc[j] += rr;
                acc[k + j] += jacobi ? rr * inv_diag[i] : rr;
            }
    });
    for (idx j = 0; j < k; ++j) cg_step::updated(s, j, sums[j], sums[k + j], has_rz);
}

template <class T>
void cg_dot_rz(idx n, const T* r, const T* z, bool first, const cg_state& s) {
    const idx k = s.k;
    const auto sums = column_sums<1>(n, k, [&](idx lo, idx hi, double* acc) {
        for (idx i = lo; i < hi; ++i)
            for (idx j = 0; j < k; ++j) acc[j] += static_cast<double>(r[i * k + j]) * z[i * k + j];
    });
    for (idx j = 0; j < k; ++j)
        if (is_active(s, j)) cg_step::take_rz(s, j, sums[j], first);
}

template <class T>
void cg_update_p(idx n, T* p, const T* src, const T* inv_diag, const cg_state& s) {
    const idx k = s.k;
    if (k == 1) {
        if (!is_active(s, 0)) return;
        const T beta = static_cast<T>(s.beta[0]);
#pragma omp parallel for simd schedule(static) if (use_threads(n))
        for (idx i = 0; i < n; ++i) p[i] = (inv_diag ? inv_diag[i] * src[i] : src[i]) + beta * p[i];
        return;
    }
#pragma omp parallel for schedule(static) if (use_threads(n * k))
    for (idx i = 0; i < n; ++i)
        for (idx j = 0; j < k; ++j) {
            if (!is_active(s, j)) continue;
            const idx e = i * k + j;
            p[e] = (inv_diag ? inv_diag[i] * src[e] : src[e]) + static_cast<T>(s.beta[j]) * p[e];
        }
}

template <class T>
void cg_finish(idx n, const T* b, const T* ax, T* x, const cg_state& s) {
    const idx k = s.k;
    const auto sums = column_sums<1>(n, k, [&](idx first, idx last, double* acc) {
        for (idx i = first; i < last; ++i)
            for (idx j = 0; j < k; ++j) {
                const idx e = i * k + j;
                if (s.status[j] == cg_step::zero_rhs) {
                    x[e] = T(0);
                    continue;
                }
                const double d = static_cast<double>(b[e]) - static_cast<double>(ax[e]);
                acc[j] += d * d;
            }
    });
    for (idx j = 0; j < k; ++j) s.true_rr[j] = sums[j];
}

#define CURVKIT_CG_CPU(T)                                                                        \
    template void cg_start(idx, const T*, const T*, T*, T*, const T*, bool, double, double,      \
                           const cg_state&);                                                      \
    template void cg_product_dot(const csr_ref<T, std::int32_t>&, const T*, const T*, const T*,  \
                                 T*, T*, const cg_state&);                                        \
    template void cg_product_dot(const csr_ref<T, std::int64_t>&, const T*, const T*, const T*,  \
                                 T*, T*, const cg_state&);                                        \
    template void cg_dot_pq(idx, const T*, const T*, const cg_state&);                            \
    template void cg_update_xr(idx, T*, T*, const T*, const T*, const T*, bool, const cg_state&); \
    template void cg_dot_rz(idx, const T*, const T*, bool, const cg_state&);                      \
    template void cg_update_p(idx, T*, const T*, const T*, const cg_state&);                      \
    template void cg_finish(idx, const T*, const T*, T*, const cg_state&);
CURVKIT_CG_CPU(float)
CURVKIT_CG_CPU(double)
#undef CURVKIT_CG_CPU

}  // namespace curvkit::cpu
