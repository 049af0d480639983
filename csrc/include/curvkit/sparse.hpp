// Sparse matrix products: y = A x for a CSR matrix A and a vector or block of vectors x.
#pragma once

#include <cstddef>

#include "curvkit/types.hpp"

namespace curvkit {

/// @brief y = A x, where x is a vector (n,) or a block (n, k) and A a CSR matrix.
///
/// With `A.storage` = upper or lower, A is the symmetric matrix defined by the stored triangle.
/// All arrays must live on the same device and share A's value type; y must not overlap x.
/// The index arrays are trusted: call csr_check() first for arrays from an untrusted source.
///
/// @param A       the matrix (any shape for full storage; square for a triangle)
/// @param x       input, rows = A.cols
/// @param y       output, rows = A.rows, same cols as x; overwritten
/// @param stream  for CUDA arrays, the cudaStream_t to launch on (nullptr: the legacy default
///                stream); ignored on the CPU. The call is asynchronous with respect to the
///                host on CUDA and never synchronises the device. CPU calls are synchronous
///                and use all OpenMP threads.
/// @throws error  invalid_value / invalid_type for mismatched shapes, types or devices.
CURVKIT_API void csr_matmul(const csr_view& A, const dense_view& x, const dense_view& y,
                            void* stream = nullptr);

/// @brief d = diag(A): d_i is the sum of the stored (i, i) entries (0 where none is stored).
///
/// @param A       the matrix; the diagonal of the symmetric matrix a triangle defines is the
///                stored one
/// @param d       output vector of min(rows, cols) entries, A's value type, A's device
/// @param stream  for CUDA, the stream to launch on; asynchronous as csr_matmul()
CURVKIT_API void csr_diagonal(const csr_view& A, const dense_view& d, void* stream = nullptr);

/// @brief Bytes of device scratch csr_check() needs for @p A (0 on the CPU).
CURVKIT_API std::size_t csr_check_workspace_size(const csr_view& A) noexcept;

/// @brief Validates the index arrays of @p A in one pass over indptr and indices.
///
/// Checks indptr[0] = 0, indptr non-decreasing, indptr[rows] = nnz, every column index in
/// [0, cols), and for triangle storage that every entry lies in the stored triangle.
/// On CUDA the check runs on @p stream, then that stream (only) is synchronised to read the
/// verdict back; @p workspace must hold csr_check_workspace_size(A) bytes of device memory.
/// @throws error  invalid_value describing the first problem found.
CURVKIT_API void csr_check(const csr_view& A, void* workspace = nullptr, std::size_t bytes = 0,
                           void* stream = nullptr);

}  // namespace curvkit
