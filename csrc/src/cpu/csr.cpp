// CPU CSR kernels: multithreaded SpMV/SpMM (full and triangle storage) and the index check.
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "cpu/partition.hpp"
#include "cpu/threads.hpp"
#include "kernels.hpp"

namespace curvkit::cpu {
namespace {

using idx = std::int64_t;

// Columns of a block handled together: a row's entries are read once per chunk, and a fixed
// width lets the compiler keep the accumulators in vector registers.
constexpr idx chunk = 16;

// Entries ahead whose x rows the block product prefetches.
constexpr idx prefetch_distance = 8;

// ---- full storage ---------------------------------------------------------------------------

// Unit strides (the usual case) are a compile-time constant, sparing a multiply per entry.
template <bool Unit, class T, class I>
void spmv_rows(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y,
               idx first, idx last) {
    const I* __restrict__ indptr = A.indptr;
    const I* __restrict__ indices = A.indices;
    const T* __restrict__ values = A.values;
    const T* __restrict__ xd = x.data;
    T* __restrict__ yd = y.data;
    const idx xs = Unit ? 1 : x.row_stride, ys = Unit ? 1 : y.row_stride;
    for (idx i = first; i < last; ++i) {
        T acc = 0;
        const idx end = indptr[i + 1];
        for (idx p = indptr[i]; p < end; ++p) acc += values[p] * xd[static_cast<idx>(indices[p]) * xs];
        yd[i * ys] = acc;
    }
}

// One row times one column chunk of width W (compile time) or w <= chunk (run time).
template <idx W, class T, class I>
inline void row_chunk(const csr_ref<T, I>& A, idx i, const T* x, idx xrs, idx xcs, T* y, idx ycs,
                      idx w) {
    T acc[chunk] = {};
    const idx width = W > 0 ? W : w;
    const idx end = A.indptr[i + 1];
    const idx last = A.indptr[A.rows];
    for (idx p = A.indptr[i]; p < end; ++p) {
        const T a = A.values[p];
        const T* xr = x + static_cast<idx>(A.indices[p]) * xrs;
        // Rows of x are gathered at random for graph-like matrices: ask for the row needed a
        // few entries ahead so that its cache lines are in flight while we compute.
        if (p + prefetch_distance < last) {
            const T* ahead = x + static_cast<idx>(A.indices[p + prefetch_distance]) * xrs;
            __builtin_prefetch(ahead);
            if (W * sizeof(T) > 64) __builtin_prefetch(ahead + 64 / sizeof(T));
        }
        for (idx c = 0; c < width; ++c) acc[c] += a * xr[c * xcs];
    }
    for (idx c = 0; c < width; ++c) y[c * ycs] = acc[c];
}

template <class T, class I>
void spmm_rows(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y,
               idx first, idx last) {
    const idx k = x.cols;
    const bool unit = x.col_stride == 1 && y.col_stride == 1;
    for (idx i = first; i < last; ++i) {
        T* yr = y.data + i * y.row_stride;
        for (idx c0 = 0; c0 < k; c0 += chunk) {
            const T* xc = x.data + c0 * x.col_stride;
            T* yc = yr + c0 * y.col_stride;
            if (unit && c0 + chunk <= k)
                row_chunk<chunk>(A, i, xc, x.row_stride, 1, yc, 1, chunk);
            else
                row_chunk<0>(A, i, xc, x.row_stride, x.col_stride, yc, y.col_stride,
                             std::min(chunk, k - c0));
        }
    }
}

// ---- triangle storage -----------------------------------------------------------------------

// Scatter target of one thread for rows owned by other threads, zeroed lazily as it grows so
// that banded matrices touch only a few rows of it. row() is the rare path and kept out of
// line: inlined, it cost the hot loop its registers and doubled the triangle product's time.
template <class T>
struct spill {
    std::unique_ptr<T[]> buf;
    idx lo = 0, hi = 0, k = 0;
    bool failed = false;  // out of memory: an exception cannot leave a parallel region

    // Row j of the spill, or nullptr (and `failed`) when it cannot be allocated.
    __attribute__((noinline)) T* row(idx j, idx rows) {
        if (!buf) {
            buf.reset(new (std::nothrow) T[static_cast<std::size_t>(rows * k)]);
            if (!buf) {
                failed = true;
                return nullptr;
            }
            lo = j;
            hi = j;
        }
        if (j < lo) {
            std::fill(buf.get() + j * k, buf.get() + lo * k, T(0));
            lo = j;
        }
        if (j >= hi) {
            std::fill(buf.get() + hi * k, buf.get() + (j + 1) * k, T(0));
            hi = j + 1;
        }
        return buf.get() + j * k;
    }
};

// Row i of a stored triangle, columns [c0, c0 + width): y_i += sum_j a_ij x_j, and the mirrored
// a_ij x_i go to y_j (own rows) or to the spill (rows of other threads). W > 0 fixes the width
// at compile time so the accumulators stay in registers.
template <idx W, class T, class I>
inline void triangle_row(const csr_ref<T, I>& A, idx i, idx c0, idx w, const block_ref<const T>& x,
                         const block_ref<T>& y, idx first, idx last, spill<T>& mine) {
    const idx width = W > 0 ? W : w;
    const idx xrs = x.row_stride, xcs = x.col_stride, yrs = y.row_stride, ycs = y.col_stride;
    const T* xi = x.data + i * xrs + c0 * xcs;
    T xi_c[chunk], acc[chunk];
    for (idx c = 0; c < width; ++c) {
        xi_c[c] = xi[c * xcs];
        acc[c] = 0;
    }
    for (idx p = A.indptr[i]; p < static_cast<idx>(A.indptr[i + 1]); ++p) {
        const idx j = A.indices[p];
        const T a = A.values[p];
        const T* xj = x.data + j * xrs + c0 * xcs;
        for (idx c = 0; c < width; ++c) acc[c] += a * xj[c * xcs];
        if (j == i) continue;
        if (j >= first && j < last) {  // own row: no other thread writes it
            T* yj = y.data + j * yrs + c0 * ycs;
            for (idx c = 0; c < width; ++c) yj[c * ycs] += a * xi_c[c];
        } else {
            if (T* sj = mine.row(j, A.rows))
                for (idx c = 0; c < width; ++c) sj[c0 + c] += a * xi_c[c];
        }
    }
    T* yi = y.data + i * yrs + c0 * ycs;
    for (idx c = 0; c < width; ++c) yi[c * ycs] += acc[c];
}

// Rows [first, last) of a vector product (k = 1): scalar accumulators, no chunk loop.
template <class T, class I>
void triangle_vector_rows(const csr_ref<T, I>& A, const block_ref<const T>& x,
                          const block_ref<T>& y, idx first, idx last, spill<T>& mine) {
    const I* __restrict__ indptr = A.indptr;
    const I* __restrict__ indices = A.indices;
    const T* __restrict__ values = A.values;
    const T* __restrict__ xd = x.data;
    T* __restrict__ yd = y.data;
    const idx xs = x.row_stride, ys = y.row_stride;
    for (idx i = first; i < last; ++i) {
        const T xi = xd[i * xs];
        T acc = 0;
        const idx end = indptr[i + 1];
        for (idx p = indptr[i]; p < end; ++p) {
            const idx j = indices[p];
            const T a = values[p];
            acc += a * xd[j * xs];
            if (j == i) continue;
            if (j >= first && j < last) yd[j * ys] += a * xi;
            else if (T* sj = mine.row(j, A.rows)) *sj += a * xi;
        }
        yd[i * ys] += acc;
    }
}

template <class T, class I>
void symmetric_product(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y) {
    const idx n = A.rows, k = x.cols;
    const int max_threads = use_threads((A.nnz + n) * k) ? omp_get_max_threads() : 1;
    std::vector<spill<T>> spills(static_cast<std::size_t>(max_threads));

#pragma omp parallel num_threads(max_threads) if (max_threads > 1)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const auto [first, last] = row_range(A.indptr, n, t, nt);
        spill<T>& mine = spills[t];
        mine.k = k;
        for (idx i = first; i < last; ++i)
            for (idx c = 0; c < k; ++c) y.data[i * y.row_stride + c * y.col_stride] = 0;

        if (k == 1) {
            triangle_vector_rows(A, x, y, first, last, mine);
        } else {
            for (idx i = first; i < last; ++i)
                for (idx c0 = 0; c0 < k; c0 += chunk) {
                    if (c0 + chunk <= k)
                        triangle_row<chunk>(A, i, c0, chunk, x, y, first, last, mine);
                    else
                        triangle_row<0>(A, i, c0, k - c0, x, y, first, last, mine);
                }
        }
#pragma omp barrier
        for (int s = 0; s < nt; ++s) {  // fold every other thread's spill into my rows
            const spill<T>& other = spills[s];
            if (s == t || !other.buf || other.failed) continue;
            const idx lo = std::max(other.lo, first), hi = std::min(other.hi, last);
            for (idx j = lo; j < hi; ++j)
                for (idx c = 0; c < k; ++c)
                    y.data[j * y.row_stride + c * y.col_stride] += other.buf[j * k + c];
        }
    }
    for (const spill<T>& s : spills)
        if (s.failed) throw std::bad_alloc();  // Python sees MemoryError
}

}  // namespace

template <class T, class I>
void csr_matmul(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y) {
    if (A.rows == 0 || x.cols == 0) return;
    if (A.storage != triangle::full) return symmetric_product(A, x, y);
    const idx work = (static_cast<idx>(A.indptr[A.rows]) - A.indptr[0] + A.rows) * x.cols;
    for_each_thread(work, [&](int t, int nt) {
        const auto [first, last] = row_range(A.indptr, A.rows, t, nt);
        if (x.cols == 1 && x.row_stride == 1 && y.row_stride == 1)
            spmv_rows<true>(A, x, y, first, last);
        else if (x.cols == 1)
            spmv_rows<false>(A, x, y, first, last);
        else spmm_rows(A, x, y, first, last);
    });
}

template <class T, class I>
void csr_diagonal(const csr_ref<T, I>& A, const block_ref<T>& d) {
    const idx n = d.rows;
#pragma omp parallel for schedule(static) if (use_threads(A.nnz + n))
    for (idx i = 0; i < n; ++i) {
        T sum = 0;
        for (idx p = A.indptr[i]; p < static_cast<idx>(A.indptr[i + 1]); ++p)
            if (static_cast<idx>(A.indices[p]) == i) sum += A.values[p];
        d.data[i * d.row_stride] = sum;
    }
}

template <class I>
int csr_check(idx rows, idx cols, idx nnz, const I* indptr, const I* indices, triangle storage) {
    if (indptr[0] != 0) return csr_bad_first;
    int code = INT_MAX;
#pragma omp parallel for reduction(min : code) if (use_threads(rows))
    for (idx i = 0; i < rows; ++i)
        if (indptr[i + 1] < indptr[i]) code = std::min(code, int{csr_decreasing});
    if (code != INT_MAX) return code;
    if (indptr[rows] != nnz) return csr_bad_last;
    const bool upper = storage == triangle::upper, lower = storage == triangle::lower;
#pragma omp parallel for reduction(min : code) if (use_threads(nnz + rows)) \
    schedule(static)
    for (idx i = 0; i < rows; ++i) {
        for (idx p = indptr[i]; p < static_cast<idx>(indptr[i + 1]); ++p) {
            const idx j = indices[p];
            if (j < 0 || j >= cols) code = std::min(code, int{csr_index_range});
            else if ((upper && j < i) || (lower && j > i))
                code = std::min(code, int{csr_wrong_triangle});
        }
    }
    return code == INT_MAX ? csr_ok : code;
}

template void csr_matmul(const csr_ref<float, std::int32_t>&, const block_ref<const float>&,
                         const block_ref<float>&);
template void csr_matmul(const csr_ref<float, std::int64_t>&, const block_ref<const float>&,
                         const block_ref<float>&);
template void csr_matmul(const csr_ref<double, std::int32_t>&, const block_ref<const double>&,
                         const block_ref<double>&);
template void csr_matmul(const csr_ref<double, std::int64_t>&, const block_ref<const double>&,
                         const block_ref<double>&);
template void csr_diagonal(const csr_ref<float, std::int32_t>&, const block_ref<float>&);
template void csr_diagonal(const csr_ref<float, std::int64_t>&, const block_ref<float>&);
template void csr_diagonal(const csr_ref<double, std::int32_t>&, const block_ref<double>&);
template void csr_diagonal(const csr_ref<double, std::int64_t>&, const block_ref<double>&);
template int csr_check(idx, idx, idx, const std::int32_t*, const std::int32_t*, triangle);
template int csr_check(idx, idx, idx, const std::int64_t*, const std::int64_t*, triangle);

}  // namespace curvkit::cpu
