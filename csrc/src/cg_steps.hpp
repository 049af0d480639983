// The scalar half of each CG step, per column, shared by the CPU and CUDA kernels: it runs on
// the host after a CPU reduction and in the last block of a CUDA reduction.
#pragma once

#include <cmath>
#include <cstdint>

#include "curvkit/device/macros.hpp"
#include "kernels.hpp"

namespace curvkit::cg_step {

enum : std::int32_t { active = 0, converged = 1, breakdown = 3, zero_rhs = 4 };

CURVKIT_HD bool finite(double v) { return v - v == 0.0; }  // false for inf and NaN

CURVKIT_HD void record(const cg_state& s, std::int64_t j, std::int64_t iteration, double rr) {
    s.ring[(iteration % s.ring_rows) * s.k + j] = sqrt(rr);
}

/// A new r^T M^-1 r: beta for the next p (0 on the first step). r^T M^-1 r <= 0 means M is
/// not positive definite.
CURVKIT_HD void take_rz(const cg_state& s, std::int64_t j, double rz, bool first) {
    if (!(rz > 0.0) || !finite(rz)) {
        s.status[j] = breakdown;
        return;
    }
    s.beta[j] = first ? 0.0 : rz / s.rz[j];
    s.rz[j] = rz;
}

/// After r = b - A x0 with sums ||r||^2, ||b||^2 and r^T M^-1 r.
CURVKIT_HD void started(const cg_state& s, std::int64_t j, double rr, double bb, double rz,
                               bool has_rz, double rtol, double atol) {
    const double rtol_b = rtol * sqrt(bb);
    const double tol = atol > rtol_b ? atol : rtol_b;
    s.tol[j] = tol;
    s.rr[j] = rr;
    s.iterations[j] = 0;
    s.beta[j] = 0.0;
    s.alpha[j] = 0.0;
    record(s, j, 0, rr);
    if (bb == 0.0) {  // x = 0 solves it exactly (set by cg_finish)
        s.status[j] = zero_rhs;
    } else if (!finite(rr) || !finite(bb)) {
        s.status[j] = breakdown;
    } else if (sqrt(rr) < tol) {
        s.status[j] = converged;
    } else {
        s.status[j] = active;
        if (has_rz) take_rz(s, j, rz, true);
    }
}

/// After q = A p with p^T q: the step length. p^T A p <= 0 means A is not positive definite.
CURVKIT_HD void took_pq(const cg_state& s, std::int64_t j, double pq) {
    if (s.status[j] != active) return;
    if (!(pq > 0.0) || !finite(pq)) {
        s.status[j] = breakdown;
        s.alpha[j] = 0.0;
        return;
    }
    s.alpha[j] = s.rz[j] / pq;
}

/// After x += alpha p, r -= alpha q: SciPy's test ||r|| < tol, then beta when r^T M^-1 r came
/// with the same pass.
/// An active column has taken every step so far, so its count is the iteration's number.
CURVKIT_HD void updated(const cg_state& s, std::int64_t j, double rr, double rz, bool has_rz) {
    if (s.status[j] != active) return;
    const std::int64_t done = s.iterations[j] + 1;
    s.rr[j] = rr;
    s.iterations[j] = done;
    record(s, j, done, rr);
    if (!finite(rr)) {
        s.status[j] = breakdown;
    } else if (sqrt(rr) < s.tol[j]) {
        s.status[j] = converged;
    } else if (has_rz) {
        take_rz(s, j, rz, false);
    }
}

}  // namespace curvkit::cg_step
