// CUDA CSR kernels: y = A x for full and triangle (symmetric) storage, and the CSR array check.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuda_check.cuh"
#include "kernels.hpp"
#include "launch.cuh"
#include "spmv_vector.cuh"

namespace curvkit::cuda {
namespace {

using i64 = std::int64_t;
using detail::cuda_check;
using detail::cuda_check_launch;

using launch::block_size;
using launch::grid_for;
using launch::thread_count;
using launch::thread_id;
using rows::full_mask;
using rows::group_sum;
using rows::group_width;
using rows::spmv_vector;
using rows::strided_product;
// Columns per lane in one pass of the k > 1 kernels; launches with fewer guarantee k <= W * Cpl.
constexpr int max_cols_per_lane = 4;

/// Offset of column c; the contiguous case lets the compiler fold the unrolled columns into
/// immediate address offsets.
template <bool Contig>
__device__ __forceinline__ i64 col_offset(i64 c, i64 stride) {
    return Contig ? c : c * stride;
}

// ---------------------------------------------------------------------------------------------
// y = 0 for a strided block (triangle storage accumulates into y with atomics).

template <class T>
__global__ void __launch_bounds__(block_size)
    fill_zero(T* __restrict__ y, i64 rows, i64 k, i64 row_stride, i64 col_stride) {
    const i64 n = rows * k;
    for (i64 e = thread_id(); e < n; e += thread_count()) {
        const i64 r = k == 1 ? e : e / k;  // skip the 64-bit division for vectors
        const i64 c = e - r * k;
        y[r * row_stride + c * col_stride] = T(0);
    }
}

// Triangle storage, k = 1: the row's a*x_j stay in registers and land in y_i with one atomic;
// the mirrored a*x_i go straight to y_j. y must be zero on entry.
template <int G, class T, class I>
__global__ void __launch_bounds__(block_size)
    symv_vector(i64 rows, const I* __restrict__ indptr, const I* __restrict__ indices,
                const T* __restrict__ values, const T* __restrict__ x, i64 x_stride,
                T* __restrict__ y, i64 y_stride) {
    constexpr int groups_per_warp = 32 / G;
    const int lane = static_cast<int>(threadIdx.x % G);
    const int group_in_warp = static_cast<int>((threadIdx.x % 32) / G);
    const i64 first = thread_id() / 32 * groups_per_warp;
    const i64 step = thread_count() / 32 * groups_per_warp;
    for (i64 base = first; base < rows; base += step) {  // warp-uniform, as in spmv_vector
        const i64 row = base + group_in_warp;
        i64 begin = 0;
        i64 end = 0;
        T sum = T(0);
        if (row < rows) {
            begin = indptr[row];
            end = indptr[row + 1];
            const T xi = begin < end ? x[row * x_stride] : T(0);
            for (i64 p = begin + lane; p < end; p += G) {
                const i64 j = indices[p];
                const T a = values[p];
                sum += a * x[j * x_stride];
                if (j != row) {
                    atomicAdd(y + j * y_stride, a * xi);
                }
            }
        }
        sum = group_sum<G>(sum);
        if (lane == 0 && begin < end) {
            atomicAdd(y + row * y_stride, sum);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SpMM, k > 1: W lanes per row span the columns (lane, lane + W, ... up to Cpl columns each per
// pass), so the matrix row is read once per pass while x rows are read as contiguous segments
// in the row-major case. Index and value loads are broadcast within the group.

template <int W, int Cpl, bool Contig, class T, class I>
__global__ void __launch_bounds__(block_size)
    spmm_rows(i64 rows, i64 k, const I* __restrict__ indptr, const I* __restrict__ indices,
              const T* __restrict__ values, const T* __restrict__ x, i64 x_row_stride,
              i64 x_col_stride, T* __restrict__ y, i64 y_row_stride, i64 y_col_stride) {
    const int lane = static_cast<int>(threadIdx.x % W);
    const i64 step = thread_count() / W;
    for (i64 row = thread_id() / W; row < rows; row += step) {
        const i64 begin = indptr[row];
        const i64 end = indptr[row + 1];
        T* const y_row = y + row * y_row_stride;
        // More than W * Cpl columns: further passes re-read the row, mostly from L1.
        for (i64 c0 = lane; c0 < k; c0 += W * Cpl) {
            T acc[Cpl];
#pragma unroll
            for (int t = 0; t < Cpl; ++t) {
                acc[t] = T(0);
            }
#pragma unroll(Contig ? 4 : 2)
            for (i64 p = begin; p < end; ++p) {
                const T a = values[p];
                const T* const x_row = x + static_cast<i64>(indices[p]) * x_row_stride;
#pragma unroll
                for (int t = 0; t < Cpl; ++t) {
                    const i64 c = c0 + t * W;
                    if (c < k) {
                        acc[t] += a * x_row[col_offset<Contig>(c, x_col_stride)];
                    }
                }
            }
#pragma unroll
            for (int t = 0; t < Cpl; ++t) {
                const i64 c = c0 + t * W;
                if (c < k) {
                    y_row[col_offset<Contig>(c, y_col_stride)] = acc[t];
                }
            }
            if (Cpl < max_cols_per_lane) {
                break;  // k <= W * Cpl: tells the compiler there is no second pass
            }
        }
    }
}

// Triangle storage, k > 1: same lane layout as spmm_rows, atomics as in symv_vector.
template <int W, int Cpl, bool Contig, class T, class I>
__global__ void __launch_bounds__(block_size)
    symm_rows(i64 rows, i64 k, const I* __restrict__ indptr, const I* __restrict__ indices,
              const T* __restrict__ values, const T* __restrict__ x, i64 x_row_stride,
              i64 x_col_stride, T* __restrict__ y, i64 y_row_stride, i64 y_col_stride) {
    const int lane = static_cast<int>(threadIdx.x % W);
    const i64 step = thread_count() / W;
    for (i64 row = thread_id() / W; row < rows; row += step) {
        const i64 begin = indptr[row];
        const i64 end = indptr[row + 1];
        if (begin >= end) {
            continue;
        }
        const T* const x_i = x + row * x_row_stride;
        T* const y_i = y + row * y_row_stride;
        for (i64 c0 = lane; c0 < k; c0 += W * Cpl) {
            T acc[Cpl];
            T xi[Cpl];
#pragma unroll
            for (int t = 0; t < Cpl; ++t) {
                const i64 c = c0 + t * W;
                acc[t] = T(0);
                xi[t] = c < k ? x_i[col_offset<Contig>(c, x_col_stride)] : T(0);
            }
#pragma unroll(Contig ? 2 : 1)
            for (i64 p = begin; p < end; ++p) {
                const i64 j = indices[p];
                const T a = values[p];
                const T* const x_j = x + j * x_row_stride;
                T* const y_j = y + j * y_row_stride;
                const bool mirror = j != row;
#pragma unroll
                for (int t = 0; t < Cpl; ++t) {
                    const i64 c = c0 + t * W;
                    if (c < k) {
                        acc[t] += a * x_j[col_offset<Contig>(c, x_col_stride)];
                        if (mirror) {
                            atomicAdd(y_j + col_offset<Contig>(c, y_col_stride), a * xi[t]);
                        }
                    }
                }
            }
#pragma unroll
            for (int t = 0; t < Cpl; ++t) {
                const i64 c = c0 + t * W;
                if (c < k) {
                    atomicAdd(y_i + col_offset<Contig>(c, y_col_stride), acc[t]);
                }
            }
            if (Cpl < max_cols_per_lane) {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// d = diag(A): one thread per row scans its entries (rows are short where this is used).

template <class T, class I>
__global__ void __launch_bounds__(block_size)
    diagonal_rows(i64 n, const I* __restrict__ indptr, const I* __restrict__ indices,
                  const T* __restrict__ values, T* __restrict__ d, i64 d_stride) {
    for (i64 i = thread_id(); i < n; i += thread_count()) {
        T sum = T(0);
        const i64 end = indptr[i + 1];
        for (i64 p = indptr[i]; p < end; ++p) {
            if (static_cast<i64>(indices[p]) == i) {
                sum += values[p];
            }
        }
        d[i * d_stride] = sum;
    }
}

// ---------------------------------------------------------------------------------------------
// Host-side launchers.

template <class T>
void zero_block(const block_ref<T>& y, i64 rows, i64 k, cudaStream_t stream) {
    const i64 rs = y.row_stride;
    const i64 cs = y.col_stride;
    const bool dense = (k == 1 && rs == 1) || (cs == 1 && rs == k) || (rs == 1 && cs == rows);
    if (dense) {
        const std::size_t bytes = static_cast<std::size_t>(rows * k) * sizeof(T);
        cuda_check(cudaMemsetAsync(y.data, 0, bytes, stream), "csr_matmul: cudaMemsetAsync");
        return;
    }
    fill_zero<T><<<grid_for(rows * k), block_size, 0, stream>>>(y.data, rows, k, rs, cs);
    cuda_check_launch("csr_matmul: fill_zero launch");
}

template <int G, class T, class I>
void launch_vector(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y,
                   bool symmetric, cudaStream_t stream) {
    const unsigned grid = grid_for(A.rows * G);
    if (symmetric) {
        symv_vector<G, T, I><<<grid, block_size, 0, stream>>>(
            A.rows, A.indptr, A.indices, A.values, x.data, x.row_stride, y.data, y.row_stride);
        cuda_check_launch("csr_matmul: symv_vector launch");
    } else {
        spmv_vector<G, T, I><<<grid, block_size, 0, stream>>>(
            A.rows, A.indptr, A.indices, A.values,
            strided_product<T>{x.data, x.row_stride, y.data, y.row_stride});
        cuda_check_launch("csr_matmul: spmv_vector launch");
    }
}

template <int W, int Cpl, bool Contig, class T, class I>
void launch_rows_as(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y,
                    bool symmetric, cudaStream_t stream) {
    const unsigned grid = grid_for(A.rows * W);
    if (symmetric) {
        symm_rows<W, Cpl, Contig, T, I><<<grid, block_size, 0, stream>>>(
            A.rows, x.cols, A.indptr, A.indices, A.values, x.data, x.row_stride, x.col_stride,
            y.data, y.row_stride, y.col_stride);
        cuda_check_launch("csr_matmul: symm_rows launch");
    } else {
        spmm_rows<W, Cpl, Contig, T, I><<<grid, block_size, 0, stream>>>(
            A.rows, x.cols, A.indptr, A.indices, A.values, x.data, x.row_stride, x.col_stride,
            y.data, y.row_stride, y.col_stride);
        cuda_check_launch("csr_matmul: spmm_rows launch");
    }
}

template <int W, int Cpl, class T, class I>
void launch_rows(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y,
                 bool symmetric, cudaStream_t stream) {
    if (x.col_stride == 1 && y.col_stride == 1) {
        launch_rows_as<W, Cpl, true>(A, x, y, symmetric, stream);
    } else {
        launch_rows_as<W, Cpl, false>(A, x, y, symmetric, stream);
    }
}

// ---------------------------------------------------------------------------------------------
// CSR check. Codes are stored as defect_base - code and combined with atomicMax, so a workspace
// zeroed by memset means "no defect" and the smallest code found wins, whatever the order.

constexpr int defect_base = 16;

__device__ __forceinline__ int encoded(int code) { return defect_base - code; }

int decoded(int value) { return value == 0 ? csr_ok : defect_base - value; }

__device__ __forceinline__ int max_int(int a, int b) { return a > b ? a : b; }

/// One atomic per warp at most, so a badly broken array does not serialise on the code word.
/// Every lane of the warp must call it.
__device__ __forceinline__ void report_defect(int worst, int* code) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
        worst = max_int(worst, __shfl_xor_sync(full_mask, worst, offset));
    }
    if (threadIdx.x % 32 == 0 && worst != 0) {
        atomicMax(code, worst);
    }
}

// One thread per indptr entry i in [0, rows].
template <class I>
__global__ void __launch_bounds__(block_size)
    check_indptr(i64 rows, i64 nnz, const I* __restrict__ indptr, int* __restrict__ code) {
    int worst = 0;
    for (i64 i = thread_id(); i <= rows; i += thread_count()) {
        const i64 here = indptr[i];
        if (i == 0 && here != 0) {
            worst = max_int(worst, encoded(csr_bad_first));
        }
        if (i < rows && static_cast<i64>(indptr[i + 1]) < here) {
            worst = max_int(worst, encoded(csr_decreasing));
        }
        if (i == rows && here != nnz) {
            worst = max_int(worst, encoded(csr_bad_last));
        }
    }
    report_defect(worst, code);
}

// G lanes per row check the column range and, for triangle storage, the triangle. Row-wise
// because the triangle test needs each entry's row.
template <int G, class I>
__global__ void __launch_bounds__(block_size)
    check_entries(i64 rows, i64 cols, i64 nnz, const I* __restrict__ indptr,
                  const I* __restrict__ indices, int storage, const int* indptr_code,
                  int* __restrict__ code) {
    // An indptr defect outranks anything found here; skipping is grid-uniform because
    // check_indptr finished before this kernel started.
    if (*indptr_code != 0) {
        return;
    }
    const bool upper = storage == static_cast<int>(triangle::upper);
    const bool lower = storage == static_cast<int>(triangle::lower);
    const int lane = static_cast<int>(threadIdx.x % G);
    const i64 step = thread_count() / G;
    int worst = 0;
    for (i64 row = thread_id() / G; row < rows; row += step) {
        const i64 begin = indptr[row];
        const i64 end = indptr[row + 1];
        // Redundant after the check above, but keeps indices reads in bounds on its own.
        if (begin < 0 || end < begin || end > nnz) {
            continue;
        }
        for (i64 p = begin + lane; p < end; p += G) {
            const i64 j = indices[p];
            if (j < 0 || j >= cols) {
                worst = max_int(worst, encoded(csr_index_range));
            } else if ((upper && j < row) || (lower && j > row)) {
                worst = max_int(worst, encoded(csr_wrong_triangle));
            }
        }
    }
    report_defect(worst, code);
}

template <class I>
void launch_check_entries(i64 rows, i64 cols, i64 nnz, const I* indptr, const I* indices,
                          triangle storage, int* codes, cudaStream_t stream) {
    const auto launch = [&](auto group) {
        constexpr int G = decltype(group)::value;
        check_entries<G, I><<<grid_for(rows * G), block_size, 0, stream>>>(
            rows, cols, nnz, indptr, indices, static_cast<int>(storage), codes, codes + 1);
    };
    switch (group_width((nnz + rows - 1) / rows)) {
        case 2: launch(std::integral_constant<int, 2>{}); break;
        case 4: launch(std::integral_constant<int, 4>{}); break;
        case 8: launch(std::integral_constant<int, 8>{}); break;
        case 16: launch(std::integral_constant<int, 16>{}); break;
        default: launch(std::integral_constant<int, 32>{}); break;
    }
    cuda_check_launch("csr_check: check_entries launch");
}

}  // namespace

template <class T, class I>
void csr_matmul(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y,
                void* stream) {
    const auto s = static_cast<cudaStream_t>(stream);
    const i64 rows = A.rows;
    const i64 k = x.cols;
    if (rows <= 0 || k <= 0) {
        return;
    }
    const bool symmetric = A.storage != triangle::full;
    if (symmetric || A.nnz == 0) {
        zero_block(y, rows, k, s);
    }
    if (A.nnz == 0) {
        return;
    }
    if (k == 1) {
        const i64 mean = (A.nnz + rows - 1) / rows;
        switch (symmetric ? group_width(mean) : rows::vector_group_width(mean)) {
            case 1: launch_vector<1>(A, x, y, symmetric, s); break;
            case 2: launch_vector<2>(A, x, y, symmetric, s); break;
            case 4: launch_vector<4>(A, x, y, symmetric, s); break;
            case 8: launch_vector<8>(A, x, y, symmetric, s); break;
            case 16: launch_vector<16>(A, x, y, symmetric, s); break;
            default: launch_vector<32>(A, x, y, symmetric, s); break;
        }
    } else if (k <= 32) {
        switch (group_width(k)) {
            case 2: launch_rows<2, 1>(A, x, y, symmetric, s); break;
            case 4: launch_rows<4, 1>(A, x, y, symmetric, s); break;
            case 8: launch_rows<8, 1>(A, x, y, symmetric, s); break;
            case 16: launch_rows<16, 1>(A, x, y, symmetric, s); break;
            default: launch_rows<32, 1>(A, x, y, symmetric, s); break;
        }
    } else if (k <= 64) {
        launch_rows<32, 2>(A, x, y, symmetric, s);
    } else {
        launch_rows<32, max_cols_per_lane>(A, x, y, symmetric, s);
    }
}

template <class T, class I>
void csr_diagonal(const csr_ref<T, I>& A, const block_ref<T>& d, void* stream) {
    if (d.rows <= 0) {
        return;
    }
    diagonal_rows<T, I><<<grid_for(d.rows), block_size, 0, static_cast<cudaStream_t>(stream)>>>(
        d.rows, A.indptr, A.indices, A.values, d.data, d.row_stride);
    cuda_check_launch("csr_diagonal: diagonal_rows launch");
}

std::size_t csr_check_workspace_size() noexcept {
    // Two codes (indptr, entries), padded to the 256-byte granule allocators align to anyway.
    constexpr std::size_t bytes = 2 * sizeof(int);
    return (bytes + 255) / 256 * 256;
}

template <class I>
int csr_check(std::int64_t rows, std::int64_t cols, std::int64_t nnz, const I* indptr,
              const I* indices, triangle storage, void* workspace, void* stream) {
    const auto s = static_cast<cudaStream_t>(stream);
    // codes[0]: indptr defects, codes[1]: entry defects. Separate words so that check_entries
    // can read the first without racing its own writes to the second.
    int* const codes = static_cast<int*>(workspace);
    cuda_check(cudaMemsetAsync(codes, 0, 2 * sizeof(int), s), "csr_check: cudaMemsetAsync");
    check_indptr<I><<<grid_for(rows + 1), block_size, 0, s>>>(rows, nnz, indptr, codes);
    cuda_check_launch("csr_check: check_indptr launch");
    if (rows > 0 && nnz > 0) {
        launch_check_entries(rows, cols, nnz, indptr, indices, storage, codes, s);
    }
    int host[2] = {0, 0};
    cuda_check(cudaMemcpyAsync(host, codes, sizeof(host), cudaMemcpyDeviceToHost, s),
               "csr_check: cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(s), "csr_check: cudaStreamSynchronize");
    return decoded(host[0] != 0 ? host[0] : host[1]);
}

// ---------------------------------------------------------------------------------------------
// Explicit instantiations.

template void csr_matmul<float, std::int32_t>(const csr_ref<float, std::int32_t>&,
                                              const block_ref<const float>&,
                                              const block_ref<float>&, void*);
template void csr_matmul<float, std::int64_t>(const csr_ref<float, std::int64_t>&,
                                              const block_ref<const float>&,
                                              const block_ref<float>&, void*);
template void csr_matmul<double, std::int32_t>(const csr_ref<double, std::int32_t>&,
                                               const block_ref<const double>&,
                                               const block_ref<double>&, void*);
template void csr_matmul<double, std::int64_t>(const csr_ref<double, std::int64_t>&,
                                               const block_ref<const double>&,
                                               const block_ref<double>&, void*);

template void csr_diagonal<float, std::int32_t>(const csr_ref<float, std::int32_t>&,
                                                const block_ref<float>&, void*);
template void csr_diagonal<float, std::int64_t>(const csr_ref<float, std::int64_t>&,
                                                const block_ref<float>&, void*);
template void csr_diagonal<double, std::int32_t>(const csr_ref<double, std::int32_t>&,
                                                 const block_ref<double>&, void*);
template void csr_diagonal<double, std::int64_t>(const csr_ref<double, std::int64_t>&,
                                                 const block_ref<double>&, void*);

template int csr_check<std::int32_t>(std::int64_t, std::int64_t, std::int64_t,
                                     const std::int32_t*, const std::int32_t*, triangle, void*,
                                     void*);
template int csr_check<std::int64_t>(std::int64_t, std::int64_t, std::int64_t,
                                     const std::int64_t*, const std::int64_t*, triangle, void*,
                                     void*);

}  // namespace curvkit::cuda
