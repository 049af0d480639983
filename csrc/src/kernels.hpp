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

/// Per-column scalars of a CG solve and the scratch of its reductions, in the workspace (device
/// memory for CUDA). The block from rr to ring is contiguous so that one copy brings every
/// flag and norm the host needs back at once.
struct cg_state {
    std::int64_t k = 0;
    double* rr = nullptr;          ///< ||r||^2
    double* tol = nullptr;         ///< max(atol, rtol ||b||)
    double* true_rr = nullptr;     ///< ||b - A x||^2 after the last iteration
    std::int64_t* iterations = nullptr;
    std::int32_t* status = nullptr;  ///< cg_step::active, converged, breakdown, zero_rhs
    double* ring = nullptr;        ///< ring_rows x k residual norms, row = iteration % ring_rows
    std::int64_t ring_rows = 0;
    double* rz = nullptr;          ///< r^T M^-1 r
    double* alpha = nullptr;
    double* beta = nullptr;
    double* partials = nullptr;    ///< CUDA: per-block partial sums, cg_max_blocks x k x 3
    unsigned* counters = nullptr;  ///< CUDA: finished blocks of the running reduction
};

/// Blocks of the CUDA reduction kernels at most: partials need this many rows.
constexpr std::int64_t cg_max_blocks = 2048;

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

/// CG kernels (k = cols of the n x k row-major blocks). Each fuses a pass over the vectors with
/// the column sums the next step needs, then applies the scalar step of cg_steps.hpp per column.
/// r = b - ax, p = 0, starts each column (tolerance, first residual, r^T M^-1 r if has_rz).
template <class T>
void cg_start(std::int64_t n, const T* b, const T* ax, T* r, T* p, const T* inv_diag, bool has_rz,
              double rtol, double atol, const cg_state& s);
/// p_next = M r + beta p (M = diag(inv_diag), or I when null), q = A p_next and p_next^T q
/// (k = 1, full storage), then alpha. With p_next null: q = A p and p^T q.
template <class T, class I>
void cg_product_dot(const csr_ref<T, I>& A, const T* r, const T* inv_diag, const T* p, T* p_next,
                    T* q, const cg_state& s);
/// p^T q per column, then alpha.
template <class T>
void cg_dot_pq(std::int64_t n, const T* p, const T* q, const cg_state& s);
/// x += alpha p, r -= alpha q with ||r||^2 (and r^T M^-1 r if has_rz), then the convergence test
/// and beta.
template <class T>
void cg_update_xr(std::int64_t n, T* x, T* r, const T* p, const T* q, const T* inv_diag,
                  bool has_rz, const cg_state& s);
/// r^T z per column (z = M r from a callback), then beta (0 on the first step).
template <class T>
void cg_dot_rz(std::int64_t n, const T* r, const T* z, bool first, const cg_state& s);
/// p = z + beta p with z = inv_diag * src (or src).
template <class T>
void cg_update_p(std::int64_t n, T* p, const T* src, const T* inv_diag, const cg_state& s);
/// ||b - ax||^2 per column; columns with b = 0 get x = 0.
template <class T>
void cg_finish(std::int64_t n, const T* b, const T* ax, T* x, const cg_state& s);
/// out(i, j) = f(v(i, j), x(i, j)); views of one shape, zero strides for broadcast inputs.
template <class T>
void special_function(special_fn f, const block_ref<const T>& v, const block_ref<const T>& x,
                      const block_ref<T>& out);

/// Entropic transport (see curvkit/ot.hpp): the log-domain half step on `batch` stacked
/// (n, m) problems; marginal and error may be null.
template <class T>
void ot_lse_update(std::int64_t batch, std::int64_t n, std::int64_t m, const T* K, const T* v,
                   const T* w, T reg, T* u, T* marginal, T* error);
/// Whole log-domain Sinkhorn solves of `batch` stacked problems (see curvkit/ot.hpp).
template <class T>
void ot_sinkhorn_batch(std::int64_t batch, std::int64_t n, std::int64_t m, const T* M,
                       const T* MT, const T* a, const T* b, T reg, std::int64_t maxiter, T tol,
                       std::int64_t check_every, T* f, T* g, std::int64_t* iterations, T* error);
/// Row and column sums, cost and per-row counts above threshold of exp((f + g - M) / reg);
/// cost and row_count may be null.
template <class T>
void ot_plan_sums(std::int64_t n, std::int64_t m, const T* M, const T* f, const T* g, T reg,
                  T threshold, T* row_sum, T* col_sum, T* cost, std::int64_t* row_count);
/// The entries above threshold of each row, in column order, into slots[i] positions from
/// starts[i] on (extra entries dropped, unused slots set to value 0 at column col_offset).
template <class T>
void ot_plan_gather(std::int64_t n, std::int64_t m, const T* M, const T* f, const T* g, T reg,
                    T threshold, const std::int64_t* starts, const std::int64_t* slots,
                    std::int64_t col_offset, std::int64_t* indices, T* values);
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

/// CG kernels (k = cols of the n x k row-major blocks). Each fuses a pass over the vectors with
/// the column sums the next step needs, then applies the scalar step of cg_steps.hpp per column.
/// r = b - ax, p = 0, starts each column (tolerance, first residual, r^T M^-1 r if has_rz).
template <class T>
void cg_start(std::int64_t n, const T* b, const T* ax, T* r, T* p, const T* inv_diag, bool has_rz,
              double rtol, double atol, const cg_state& s, void* stream);
/// p_next = M r + beta p (M = diag(inv_diag), or I when null), q = A p_next and p_next^T q
/// (k = 1, full storage), then alpha. With p_next null: q = A p and p^T q.
template <class T, class I>
void cg_product_dot(const csr_ref<T, I>& A, const T* r, const T* inv_diag, const T* p, T* p_next,
                    T* q, const cg_state& s, void* stream);
/// p^T q per column, then alpha.
template <class T>
void cg_dot_pq(std::int64_t n, const T* p, const T* q, const cg_state& s, void* stream);
/// x += alpha p, r -= alpha q with ||r||^2 (and r^T M^-1 r if has_rz), then the convergence test
/// and beta.
template <class T>
void cg_update_xr(std::int64_t n, T* x, T* r, const T* p, const T* q, const T* inv_diag,
                  bool has_rz, const cg_state& s, void* stream);
/// r^T z per column (z = M r from a callback), then beta (0 on the first step).
template <class T>
void cg_dot_rz(std::int64_t n, const T* r, const T* z, bool first, const cg_state& s, void* stream);
/// p = z + beta p with z = inv_diag * src (or src).
template <class T>
void cg_update_p(std::int64_t n, T* p, const T* src, const T* inv_diag, const cg_state& s, void* stream);
/// ||b - ax||^2 per column; columns with b = 0 get x = 0.
template <class T>
void cg_finish(std::int64_t n, const T* b, const T* ax, T* x, const cg_state& s, void* stream);
/// Zeroes `bytes` of device memory on `stream`.
void zero_bytes(void* data, std::size_t bytes, void* stream);
/// Copies `bytes` from the device to the host on `stream` and waits for that stream.
void copy_to_host(void* dst, const void* src, std::size_t bytes, void* stream);

/// As cpu::special_function, on `stream`.
template <class T>
void special_function(special_fn f, const block_ref<const T>& v, const block_ref<const T>& x,
                      const block_ref<T>& out, void* stream);
/// As the cpu:: entropic transport kernels, on `stream`; outputs that accumulate (error,
/// sums, cost, counts) are zeroed on the stream first.
template <class T>
void ot_lse_update(std::int64_t batch, std::int64_t n, std::int64_t m, const T* K, const T* v,
                   const T* w, T reg, T* u, T* marginal, T* error, void* stream);
template <class T>
void ot_sinkhorn_batch(std::int64_t batch, std::int64_t n, std::int64_t m, const T* M,
                       const T* MT, const T* a, const T* b, T reg, std::int64_t maxiter, T tol,
                       std::int64_t check_every, T* f, T* g, std::int64_t* iterations, T* error,
                       void* stream);
template <class T>
void ot_plan_sums(std::int64_t n, std::int64_t m, const T* M, const T* f, const T* g, T reg,
                  T threshold, T* row_sum, T* col_sum, T* cost, std::int64_t* row_count,
                  void* stream);
template <class T>
void ot_plan_gather(std::int64_t n, std::int64_t m, const T* M, const T* f, const T* g, T reg,
                    T threshold, const std::int64_t* starts, const std::int64_t* slots,
                    std::int64_t col_offset, std::int64_t* indices, T* values, void* stream);

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
