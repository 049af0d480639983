// Public sparse API: argument validation, then the device x dtype dispatch to the kernels.
#include "curvkit/sparse.hpp"

#include <algorithm>
#include <string>

#include "checks.hpp"
#include "dispatch.hpp"
#include "kernels.hpp"

namespace curvkit {
namespace {

using namespace detail;

void check_csr_header(const csr_view& A) {
    if (!known_device(A.device)) fail(status::invalid_value, "unknown device kind");
    if (A.storage != triangle::full && A.storage != triangle::upper &&
        A.storage != triangle::lower)
        fail(status::invalid_value, "unknown triangle storage");
    if (A.rows < 0 || A.cols < 0 || A.nnz < 0) fail(status::invalid_value, "negative matrix size");
    if (A.storage != triangle::full && A.rows != A.cols)
        fail(status::invalid_value, "triangle storage needs a square matrix, got " +
                                        std::to_string(A.rows) + " x " + std::to_string(A.cols));
    if (A.index_dtype != scalar_type::i32 && A.index_dtype != scalar_type::i64)
        fail(status::invalid_type, std::string("indptr and indices must be int32 or int64, got ") +
                                       name_of(A.index_dtype));
    if (A.value_dtype != scalar_type::f32 && A.value_dtype != scalar_type::f64)
        fail(status::invalid_type, std::string("matrix values must be float32 or float64, got ") +
                                       name_of(A.value_dtype));
    if (A.indptr == nullptr) fail(status::invalid_value, "indptr is null");
    if (A.nnz > 0 && (A.indices == nullptr || A.values == nullptr))
        fail(status::invalid_value, "indices or values is null");
}

// An output must not overlap the matrix it is computed from, nor itself.
void check_output(const csr_view& A, const dense_view& out, const char* what) {
    const auto [olo, ohi] = extent(out);
    auto overlaps = [&, olo = olo, ohi = ohi](const void* data, scalar_type t, std::int64_t n) {
        const auto* lo = static_cast<const char*>(data);
        return lo < ohi && olo < lo + n * static_cast<std::int64_t>(size_of(t));
    };
    if (overlaps(A.values, A.value_dtype, A.nnz) || overlaps(A.indices, A.index_dtype, A.nnz) ||
        overlaps(A.indptr, A.index_dtype, A.rows + 1))
        fail(status::invalid_value, std::string(what) + " must not overlap the matrix arrays");
    if (!distinct_elements(out))
        fail(status::invalid_value, std::string(what) + " has overlapping elements (strides)");
}

template <class T, class I>
csr_ref<T, I> typed(const csr_view& A) {
    return {A.rows,
            A.cols,
            A.nnz,
            static_cast<const I*>(A.indptr),
            static_cast<const I*>(A.indices),
            static_cast<const T*>(A.values),
            A.storage};
}

const char* defect_message(int code) {
    switch (code) {
        case csr_bad_first: return "malformed CSR: indptr[0] must be 0";
        case csr_decreasing: return "malformed CSR: indptr must be non-decreasing";
        case csr_bad_last: return "malformed CSR: indptr[-1] must equal the number of entries";
        case csr_index_range: return "malformed CSR: a column index is out of range";
        case csr_wrong_triangle: return "malformed CSR: an entry lies outside the stored triangle";
        default: return "malformed CSR";
    }
}

}  // namespace

void csr_matmul(const csr_view& A, const dense_view& x, const dense_view& y, void* stream) {
    check_csr_header(A);
    check_dense(x, "x");
    check_dense(y, "y");
    if (x.device != A.device || y.device != A.device || x.device_id != A.device_id ||
        y.device_id != A.device_id)
        fail(status::invalid_type, "the matrix, x and y must live on the same device");
    if (x.dtype != A.value_dtype || y.dtype != A.value_dtype)
        fail(status::invalid_type, std::string("x and y must have the matrix value type ") +
                                       name_of(A.value_dtype) + ", got " + name_of(x.dtype) +
                                       " and " + name_of(y.dtype));
    if (x.rows != A.cols)
        fail(status::invalid_value, "shape mismatch: matrix is " + std::to_string(A.rows) + " x " +
                                        std::to_string(A.cols) + ", x is " + shape_of(x));
    if (y.rows != A.rows || y.cols != x.cols || y.ndim != x.ndim)
        fail(status::invalid_value, "shape mismatch: y is " + shape_of(y) + ", expected (" +
                                        std::to_string(A.rows) +
                                        (x.ndim == 1 ? ",)" : ", " + std::to_string(x.cols) + ")"));
    const auto [ylo, yhi] = extent(y);
    const auto [xlo, xhi] = extent(x);
    if (xlo < yhi && ylo < xhi) fail(status::invalid_value, "y must not overlap x");
    check_output(A, y, "y");

    detail::with_value_type(A.value_dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        detail::with_index_type(A.index_dtype, [&](auto it) {
            using I = typename decltype(it)::type;
            const auto a = typed<T, I>(A);
            const auto xr = typed<const T>(x);
            const auto yr = typed<T>(y);
            if (A.device == device_kind::cpu) {
                cpu::csr_matmul(a, xr, yr);
            } else {
                cuda::device_guard guard(A.device_id);
                cuda::csr_matmul(a, xr, yr, stream);
            }
        });
    });
}

void csr_diagonal(const csr_view& A, const dense_view& d, void* stream) {
    check_csr_header(A);
    check_dense(d, "d");
    if (d.device != A.device || d.device_id != A.device_id)
        fail(status::invalid_type, "the matrix and d must live on the same device");
    if (d.dtype != A.value_dtype)
        fail(status::invalid_type, std::string("d must have the matrix value type ") +
                                       name_of(A.value_dtype));
    if (d.ndim != 1 || d.rows != std::min(A.rows, A.cols))
        fail(status::invalid_value, "d must be a vector of min(rows, cols) entries, got " +
                                        shape_of(d));
    check_output(A, d, "d");
    detail::with_value_type(A.value_dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        detail::with_index_type(A.index_dtype, [&](auto it) {
            using I = typename decltype(it)::type;
            if (A.device == device_kind::cpu) {
                cpu::csr_diagonal(typed<T, I>(A), typed<T>(d));
            } else {
                cuda::device_guard guard(A.device_id);
                cuda::csr_diagonal(typed<T, I>(A), typed<T>(d), stream);
            }
        });
    });
}

std::size_t csr_check_workspace_size(const csr_view& A) noexcept {
    return A.device == device_kind::cuda ? cuda::csr_check_workspace_size() : 0;
}

void csr_check(const csr_view& A, void* workspace, std::size_t bytes, void* stream) {
    check_csr_header(A);
    const int code = detail::with_index_type(A.index_dtype, [&](auto it) {
        using I = typename decltype(it)::type;
        const auto* indptr = static_cast<const I*>(A.indptr);
        const auto* indices = static_cast<const I*>(A.indices);
        if (A.device == device_kind::cpu)
            return cpu::csr_check(A.rows, A.cols, A.nnz, indptr, indices, A.storage);
        cuda::device_guard guard(A.device_id);  // first: reports a build without CUDA
        if (workspace == nullptr || bytes < cuda::csr_check_workspace_size())
            fail(status::invalid_value, "csr_check needs csr_check_workspace_size() bytes of "
                                        "device workspace");
        return cuda::csr_check(A.rows, A.cols, A.nnz, indptr, indices, A.storage, workspace,
                               stream);
    });
    if (code != csr_ok) fail(status::invalid_value, defect_message(code));
}

}  // namespace curvkit
