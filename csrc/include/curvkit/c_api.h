/* curvkit's C ABI: plain structs and status codes (no exceptions) for ctypes, cffi and C. */
#ifndef CURVKIT_C_API_H
#define CURVKIT_C_API_H

#include <stddef.h>
#include <stdint.h>

#include "curvkit/export.hpp"

#ifdef __cplusplus
extern "C" {
#endif

/** Status codes; the same numbers as curvkit::status. */
enum {
    CURVKIT_OK = 0,
    CURVKIT_INVALID_VALUE = 1,
    CURVKIT_INVALID_TYPE = 2,
    CURVKIT_UNSUPPORTED = 3,
    CURVKIT_CUDA_FAILURE = 4,
    CURVKIT_INTERNAL = 5
};

/** Scalar types: 0 float32, 1 float64, 2 int32, 3 int64. Devices: 0 CPU, 1 CUDA.
 *  Triangle storage: 0 full, 1 upper, 2 lower. */
typedef struct curvkit_dense {
    void* data;
    int32_t dtype;
    int32_t device;
    int32_t device_id;
    int32_t ndim;
    int64_t rows, cols;
    int64_t row_stride, col_stride; /* in elements */
} curvkit_dense;

typedef struct curvkit_csr {
    int64_t rows, cols, nnz;
    const void* indptr;
    const void* indices;
    const void* values;
    int32_t index_dtype;
    int32_t value_dtype;
    int32_t storage;
    int32_t device;
    int32_t device_id;
} curvkit_csr;

/** y = A x; see curvkit::csr_matmul. Returns a status code. */
CURVKIT_API int curvkit_csr_matmul(const curvkit_csr* A, const curvkit_dense* x,
                                   const curvkit_dense* y, void* stream);

/** d = diag(A); see curvkit::csr_diagonal. */
CURVKIT_API int curvkit_csr_diagonal(const curvkit_csr* A, const curvkit_dense* d, void* stream);

/** Validates A's index arrays; see curvkit::csr_check. */
CURVKIT_API int curvkit_csr_check(const curvkit_csr* A, void* workspace, size_t bytes,
                                  void* stream);

/** CG settings and per-column outcome; see curvkit::cg_options and curvkit::cg_column_report.
 *  reason: 1 converged, 2 maxiter, 3 breakdown. */
typedef struct curvkit_cg_options {
    double rtol, atol;
    int64_t maxiter;     /* -1: 10 n */
    int64_t check_every; /* 0: automatic */
} curvkit_cg_options;

typedef struct curvkit_cg_report {
    int64_t iterations;
    double residual_norm, true_residual_norm, tolerance;
    int32_t reason;
} curvkit_cg_report;

/** Bytes of workspace cg_solve needs (device: 0 CPU, 1 CUDA). */
CURVKIT_API size_t curvkit_cg_workspace_size(int32_t device, int64_t n, int64_t k,
                                             const curvkit_cg_options* options);

/** Solves A X = B by CG for a CSR matrix; x holds x0 on entry. r, p, q are work blocks shaped
 *  like b; inv_diag (n,) or NULL is the Jacobi preconditioner; reports has k entries. See
 *  curvkit::cg_solve. */
CURVKIT_API int curvkit_cg_solve(const curvkit_csr* A, const curvkit_dense* b,
                                 const curvkit_dense* x, const curvkit_dense* r,
                                 const curvkit_dense* p, const curvkit_dense* q,
                                 const curvkit_dense* inv_diag,
                                 const curvkit_cg_options* options, void* workspace,
                                 size_t bytes, curvkit_cg_report* reports, void* stream);
/** Elementwise special function fn of (v, x) into out; fn: 0 log I_v(x), 1 log K_v(x),
 *  2 I_{v+1}(x)/I_v(x), 3 d/dx log I_v(x), 4 d/dx log K_v(x). See curvkit::special_function. */
CURVKIT_API int curvkit_special_function(int fn, const curvkit_dense* v, const curvkit_dense* x,
                                         const curvkit_dense* out, void* stream);

/** Scalar log I_v(x), log K_v(x) and I_{v+1}(x)/I_v(x) in double precision (NaN outside the
 *  domain); the same code as the array functions. */
CURVKIT_API double curvkit_log_iv(double v, double x);
CURVKIT_API double curvkit_log_kv(double v, double x);
CURVKIT_API double curvkit_iv_ratio(double v, double x);

/** Message of the last failure on this thread ("" after success). */
CURVKIT_API const char* curvkit_last_error(void);

/** Library version string. */
CURVKIT_API const char* curvkit_version(void);

/** 1 when the CUDA kernels are compiled in. */
CURVKIT_API int curvkit_with_cuda(void);

#ifdef __cplusplus
}
#endif

#endif /* CURVKIT_C_API_H */
