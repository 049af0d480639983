// Internal kernel declarations: each kernel is declared once here and implemented per backend
// (cpu/ and ../cuda/, or cuda_stubs.cpp when CUDA is absent). The dispatch layer has already
// validated shapes, types and devices before any of these is called.
#pragma once

#include <cstddef>
#include <cstdint>

#include "curvkit/special.hpp"
#include "curvkit/types.hpp"

namespace curvkit {

/// Typed CSR arrays. I is int32_t or int64_t, T is float or double.
template <class T, class I>
struct csr_ref {
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t nnz;
    const I* indptr;
    const I* indices;
    const T* values;
    triangle storage;
};

/// Typed strided block; a vector is a block with cols = 1. Strides in elements.
template <class T>
struct block_ref {
    T* data;
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t row_stride;
    std::int64_t col_stride;
};

/// Codes written by the csr checks; 0 means the arrays are well formed.
enum csr_defect : int {
    csr_ok = 0,
    csr_bad_first = 1,       ///< indptr[0] != 0
    csr_decreasing = 2,      ///< indptr[i + 1] < indptr[i]
    csr_bad_last = 3,        ///< indptr[rows] != nnz
    csr_index_range = 4,     ///< a column index outside [0, cols)
    csr_wrong_triangle = 5,  ///< an entry outside the stored triangle
};

namespace cpu {
/// y = A x (full or triangle storage).
template <class T, class I>
void csr_matmul(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y);
/// Returns a csr_defect code.
template <class I>
int csr_check(std::int64_t rows, std::int64_t cols, std::int64_t nnz, const I* indptr,
              const I* indices, triangle storage);
/// d_i = sum of the stored (i, i) entries, for i < d.rows.
template <class T, class I>
void csr_diagonal(const csr_ref<T, I>& A, const block_ref<T>& d);
/// Z(i, c) = Rademacher sign of (row i, probe first_probe + c) for `seed`.
template <class T>
void fill_rademacher(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe);
/// Z(i, c) = standard normal entry (row i, probe first_probe + c) for `seed`.
template <class T>
void fill_gaussian(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe);
/// Greedy colouring of the off-diagonal graph of a square CSR pattern; returns the colour count.
template <class I>
std::int64_t greedy_coloring(std::int64_t rows, const I* indptr, const I* indices,
                             std::int32_t* colors);
/// Folds the samples Z(i, c) * HZ(i, c) into the running mean and sum of squared deviations
/// (mean[i], m2[i]) of `count` earlier samples per row.
template <class T>
void accumulate_probe_products(const block_ref<const T>& Z, const block_ref<const T>& HZ,
                               const block_ref<T>& mean, const block_ref<T>& m2,
                               std::int64_t count);
/// out(i, j) = f(v(i, j), x(i, j)); views of one shape, zero strides for broadcast inputs.
template <class T>
void special_function(special_fn f, const block_ref<const T>& v, const block_ref<const T>& x,
                      const block_ref<T>& out);
}  // namespace cpu

namespace cuda {
/// y = A x on `stream` (a cudaStream_t), on the current device.
template <class T, class I>
void csr_matmul(const csr_ref<T, I>& A, const block_ref<const T>& x, const block_ref<T>& y,
                void* stream);
/// d_i = sum of the stored (i, i) entries, on `stream`.
template <class T, class I>
void csr_diagonal(const csr_ref<T, I>& A, const block_ref<T>& d, void* stream);
/// As cpu::fill_rademacher, on `stream`.
template <class T>
void fill_rademacher(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe,
                     void* stream);
/// As cpu::fill_gaussian, on `stream`.
template <class T>
void fill_gaussian(const block_ref<T>& Z, std::uint64_t seed, std::int64_t first_probe,
                   void* stream);
/// As cpu::accumulate_probe_products, on `stream`.
template <class T>
void accumulate_probe_products(const block_ref<const T>& Z, const block_ref<const T>& HZ,
                               const block_ref<T>& mean, const block_ref<T>& m2,
                               std::int64_t count, void* stream);
/// As cpu::special_function, on `stream`.
template <class T>
void special_function(special_fn f, const block_ref<const T>& v, const block_ref<const T>& x,
                      const block_ref<T>& out, void* stream);
/// Bytes of device scratch the check needs.
std::size_t csr_check_workspace_size() noexcept;
/// Runs the check on `stream`, synchronises that stream and returns a csr_defect code.
template <class I>
int csr_check(std::int64_t rows, std::int64_t cols, std::int64_t nnz, const I* indptr,
              const I* indices, triangle storage, void* workspace, void* stream);

/// Makes `device_id` current for the lifetime of the guard and restores the previous device.
class device_guard {
public:
    explicit device_guard(int device_id);
    ~device_guard();
    device_guard(const device_guard&) = delete;
    device_guard& operator=(const device_guard&) = delete;

private:
    int previous_ = -1;
};

/// Device count and properties for runtime.cpp (empty list without a driver).
int device_count() noexcept;
bool device_properties(int id, char* name, std::size_t name_len, int* major, int* minor,
                       std::size_t* memory_bytes) noexcept;
int runtime_version() noexcept;
}  // namespace cuda

}  // namespace curvkit
