// Conjugate gradient for symmetric positive definite systems: one or k right-hand sides,
// Jacobi or user preconditioning, the whole loop on the data's device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "curvkit/types.hpp"

namespace curvkit {

/// Why a column's iteration stopped.
enum class cg_reason : int {
    running = 0,    ///< still iterating (never reported by cg_solve)
    converged = 1,  ///< ||r|| < max(atol, rtol ||b||) on the recursively updated residual
    maxiter = 2,    ///< the iteration limit was reached first
    breakdown = 3,  ///< p^T A p <= 0 or r^T M r <= 0 or a non-finite value: A or M is not SPD
};

/// Solver settings; the defaults are SciPy's.
struct cg_options {
    double rtol = 1e-5;
    double atol = 0.0;
    std::int64_t maxiter = -1;      ///< -1: 10 n
    /// On a GPU, iterations between two reads of the convergence flags (each read syncs the
    /// stream once); 0 picks a value from n. Iteration counts do not depend on it: a column
    /// stops updating on the device the moment it converges.
    std::int64_t check_every = 0;
};

/// Outcome for one right-hand side.
struct cg_column_report {
    std::int64_t iterations = 0;
    double residual_norm = 0;       ///< ||r|| of the recursively updated residual
    double true_residual_norm = 0;  ///< ||b - A x||, recomputed after the last iteration
    double tolerance = 0;           ///< max(atol, rtol ||b||)
    cg_reason reason = cg_reason::running;
};

/// The blocks a solve works on: (n,) or (n, k), C-contiguous, one dtype, one device.
struct cg_blocks {
    dense_view b;         ///< right-hand sides
    dense_view x;         ///< initial guess on entry, solution on return
    dense_view r, p, q;   ///< work blocks
    dense_view z;         ///< work block used only with a preconditioner callback
    dense_view inv_diag;  ///< (n,) inverse diagonal for Jacobi preconditioning, or data == nullptr
};

/// Matrix-free hooks, called from the solving thread between kernels (all work on the solve's
/// stream must be ordered on that stream).
struct cg_callbacks {
    /// q = A p (which = 0) or q = A x (which = 1); required when no matrix is given
    void (*apply)(void* user, int which) = nullptr;
    void (*precondition)(void* user) = nullptr;  ///< z = M r; overrides inv_diag
    void (*iteration_done)(void* user, std::int64_t iteration) = nullptr;  ///< x is current
    void* user = nullptr;
};

/// @brief Bytes of workspace (on the solve's device) for n unknowns and k right-hand sides.
CURVKIT_API std::size_t cg_workspace_size(device_kind device, std::int64_t n, std::int64_t k,
                                          const cg_options& options);

/// @brief Solves A X = B column by column with preconditioned conjugate gradients.
///
/// Each column has its own step lengths and stops on its own. The iteration is SciPy's (same
/// residual test, same counts); per iteration it runs one fused product-and-dot, one pass
/// updating x and r with the residual norm (and r^T M^-1 r for Jacobi) and one pass for p.
/// On a GPU nothing returns to the host between iterations except every check_every-th
/// convergence flag read; scalars stay on the device.
/// @param A          CSR matrix (full or triangle storage), or nullptr with callbacks.apply
/// @param workspace  cg_workspace_size bytes on the solve's device
/// @param reports    k entries, written
/// @param history    if not null, receives the residual norms: (iterations + 1) rows of k
/// @param stream     cudaStream_t for CUDA data; the call returns after syncing that stream
CURVKIT_API void cg_solve(const csr_view* A, const cg_blocks& blocks, const cg_options& options,
                          const cg_callbacks& callbacks, void* workspace, std::size_t bytes,
                          cg_column_report* reports, std::vector<double>* history,
                          void* stream = nullptr);

}  // namespace curvkit
