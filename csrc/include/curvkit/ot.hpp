// Entropic optimal transport kernels: the fused log-domain Sinkhorn half step, and the plan's
// marginals, cost and large entries, all without forming exp(-M / reg) as a matrix.
#pragma once

#include <cstdint>

#include "curvkit/types.hpp"

namespace curvkit {

/// @brief One log-domain Sinkhorn half step for `batch` problems at once.
///
/// With K the (batch * n, m) row-major stack of cost matrices (M for the row update, M^T for
/// the column update), v the (batch * m,) opposite potentials and w the (batch * n,) target
/// marginal, each row i of problem b gets
///   s_i = LSE_j((v_bj - K_bij) / reg),  u_bi <- reg (log w_bi - s_i).
/// Before u is overwritten, the row marginal of the current plan exp((u + v - K) / reg) is
/// exp(u_bi / reg + s_i): it is written to @p marginal (if given) and the L1 error
/// sum_i |marginal_bi - w_bi| of each problem to @p error (if given). No exp(-K / reg) matrix
/// is formed; each term costs one exp.
/// @param K         (batch * n, m), C-contiguous, float32 or float64
/// @param v         (batch * m,) contiguous, K's dtype and device
/// @param w         (batch * n,) contiguous, non-negative
/// @param reg       regularisation, > 0
/// @param batch     number of stacked problems, divides K's rows
/// @param u         (batch * n,) contiguous, read then overwritten
/// @param marginal  (batch * n,) output or nullptr
/// @param error     (batch,) output or nullptr
/// @param stream    cudaStream_t for CUDA data; asynchronous with respect to the host
CURVKIT_API void ot_lse_update(const dense_view& K, const dense_view& v, const dense_view& w,
                               double reg, std::int64_t batch, const dense_view& u,
                               const dense_view* marginal, const dense_view* error,
                               void* stream = nullptr);

/// @brief Log-domain Sinkhorn on `batch` stacked problems, each run to its own stopping
/// point in one call (on a GPU one block per problem, with its cost matrix in shared memory
/// where it fits): meant for many small problems.
///
/// Per problem, up to maxiter iterations of a row half step (f) and a column half step (g).
/// Every check_every-th row step, and the last, first measures the L1 marginal error of the
/// current potentials (the column marginals are exact after a column step); the problem stops
/// there, without that step, when the error is <= tol or not finite.
/// @param M, MT      (batch * n, m) and (batch * m, n): the problems and their transposes,
///                   C-contiguous, float32 or float64
/// @param a, b       (batch * n,), (batch * m,) marginals
/// @param f, g       (batch * n,), (batch * m,) potentials, updated in place
/// @param iterations (batch,) int64 output: the iterations each problem ran
/// @param error      (batch,) output: each problem's last measured error (+inf if none)
/// @param stream     cudaStream_t for CUDA data; asynchronous with respect to the host
CURVKIT_API void ot_sinkhorn_batch(const dense_view& M, const dense_view& MT, const dense_view& a,
                                   const dense_view& b, double reg, std::int64_t batch,
                                   std::int64_t maxiter, double tol, std::int64_t check_every,
                                   const dense_view& f, const dense_view& g,
                                   const dense_view& iterations, const dense_view& error,
                                   void* stream = nullptr);

/// @brief Marginals, transport cost and large-entry counts of P = exp((f + g^T - M) / reg).
///
/// One pass over M: row_sum = P 1, col_sum = P^T 1, cost = <P, M> (a (1,) array) and
/// row_count_i = #{j : P_ij > threshold} (int64, if given).
/// @param M         (n, m), C-contiguous, float32 or float64
/// @param f, g      (n,), (m,) potentials, M's dtype and device
/// @param row_sum   (n,) output
/// @param col_sum   (m,) output
/// @param cost      (1,) output or nullptr
/// @param row_count (n,) int64 output or nullptr
/// @param stream    cudaStream_t for CUDA data; asynchronous with respect to the host
CURVKIT_API void ot_plan_sums(const dense_view& M, const dense_view& f, const dense_view& g,
                              double reg, double threshold, const dense_view& row_sum,
                              const dense_view& col_sum, const dense_view* cost,
                              const dense_view* row_count, void* stream = nullptr);

/// @brief Writes the entries P_ij > threshold of P = exp((f + g^T - M) / reg) in CSR form.
///
/// Row i owns the slots[i] positions from starts[i] on in @p indices (column j + col_offset,
/// int64) and @p values, filled with its kept entries in increasing j. slots usually is the
/// row_count of ot_plan_sums() at the same threshold and potentials, and starts its prefix sum
/// (with room for extra entries, such as a diagonal, between rows). Should the two passes
/// round an entry at the threshold differently, an entry beyond the slots is dropped and a
/// slot left over holds the value 0 at column col_offset: the arrays stay well formed.
/// @param starts    (n,) int64 first position of each row
/// @param slots     (n,) int64 positions owned by each row
/// @param indices   int64 output covering every row's positions
/// @param values    output of M's dtype, as long as indices
/// @param stream    cudaStream_t for CUDA data; asynchronous with respect to the host
CURVKIT_API void ot_plan_gather(const dense_view& M, const dense_view& f, const dense_view& g,
                                double reg, double threshold, const dense_view& starts,
                                const dense_view& slots, std::int64_t col_offset,
                                const dense_view& indices, const dense_view& values,
                                void* stream = nullptr);

}  // namespace curvkit
