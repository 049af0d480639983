"""Entropic optimal transport: plain log-domain Sinkhorn and Sinkhorn-Newton-Sparse against a
dense NumPy reference, POT and the exact LP; marginals, pass counts, batches, bad input, and the
GPU path against the CPU path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp

import curvkit
from curvkit import ot
from curvkit.benchmarks.problems import blob_images, densities_1d
from conftest import to_host


def clouds(n, m=None, d=2, seed=0, uniform=True):
    """Two random point clouds in [0, 1]^d, squared Euclidean cost scaled to max 1."""
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    x, y = rng.random((n, d)), rng.random((m, d))
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    M /= M.max()
    if uniform:
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    else:
        a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
        a, b = a / a.sum(), b / b.sum()
    return a, b, M


def reference(a, b, M, reg, tol=1e-13, maxiter=200_000):
    """Dense log-domain Sinkhorn in NumPy/SciPy, run to tol in the L1 marginal error."""
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(maxiter):
        f = reg * (np.log(a) - logsumexp((g[None, :] - M) / reg, axis=1))
        g = reg * (np.log(b) - logsumexp((f[:, None] - M) / reg, axis=0))
        P = np.exp((f[:, None] + g[None, :] - M) / reg)
        if np.abs(P.sum(1) - a).sum() <= tol:
            break
    return f, g, P


def l1_error(P, a, b):
    return np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()


def entropic_objective(P, M, reg):
    return float((P * M).sum() + reg * (P * (np.log(P) - 1)).sum())


def shift_free(f, g):
    """Potentials with the (f + c, g - c) ambiguity removed."""
    c = f.mean()
    return f - c, g + c


@pytest.mark.parametrize("method", ["sns", "sinkhorn"])
def test_matches_dense_reference(xp, method):
    a, b, M = clouds(40, 30, uniform=False, seed=1)
    reg = 2e-2
    f_ref, g_ref, P_ref = reference(a, b, M, reg)
    res = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), reg, method=method,
                                 stopThr=1e-12, numItermax=20_000)
    assert res.converged and res.reason == "converged"
    assert res.marginal_error <= 1e-12
    P = to_host(res.plan())
    np.testing.assert_allclose(P, P_ref, rtol=1e-8, atol=1e-14)
    f, g = shift_free(to_host(res.f), to_host(res.g))
    fr, gr = shift_free(f_ref, g_ref)
    np.testing.assert_allclose(f, fr, atol=1e-10 * reg * 100)
    np.testing.assert_allclose(g, gr, atol=1e-10 * reg * 100)
    assert res.cost == pytest.approx(float((P_ref * M).sum()), rel=1e-9)
    assert res.objective == pytest.approx(entropic_objective(P_ref, M, reg), rel=1e-9, abs=1e-13)


def test_matches_pot():
    pot = pytest.importorskip("ot")
    a, b, M = clouds(50, 45, uniform=False, seed=2)
    reg = 1e-2
    P_pot, log = pot.sinkhorn(a, b, M, reg, method="sinkhorn_log", stopThr=1e-14,
                              numItermax=100_000, log=True)
    P, info = ot.sinkhorn(a, b, M, reg, stopThr=1e-12, log=True)
    np.testing.assert_allclose(P, P_pot, rtol=1e-7, atol=1e-14)
    fu, gv = shift_free(info["log_u"], info["log_v"])
    pu, pv = shift_free(np.asarray(log["log_u"]), np.asarray(log["log_v"]))
    np.testing.assert_allclose(fu, pu, atol=1e-6)
    np.testing.assert_allclose(gv, pv, atol=1e-6)
    assert info["cost"] == pytest.approx(float(pot.sinkhorn2(a, b, M, reg, method="sinkhorn_log",
                                                              stopThr=1e-14,
                                                              numItermax=100_000)), rel=1e-8)
    # POT's scalings: P = diag(u) exp(-M / reg) diag(v).
    np.testing.assert_allclose(info["u"][:, None] * np.exp(-M / reg) * info["v"][None, :], P,
                               rtol=1e-10, atol=1e-300)


def test_small_reg_approaches_exact_lp():
    from scipy.optimize import linprog

    a, b, M = clouds(7, 6, uniform=False, seed=3)
    n, m = M.shape
    rows = np.kron(np.eye(n), np.ones(m))
    cols = np.kron(np.ones(n), np.eye(m))
    lp = linprog(M.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([a, b]),
                 bounds=(0, None), method="highs")
    assert lp.status == 0
    costs = []
    for reg in (1e-2, 1e-3, 1e-4):
        res = ot.sinkhorn_potentials(a, b, M, reg, numItermax=5000)
        assert res.converged
        # Entropic cost exceeds the LP optimum by at most reg * log(n m).
        assert lp.fun - 1e-12 <= res.cost <= lp.fun + reg * np.log(n * m)
        costs.append(res.cost - lp.fun)
    assert costs[-1] <= 1e-3


@pytest.mark.parametrize("reg", [1e-2, 1e-3])
@pytest.mark.parametrize("method", ["sns", "sinkhorn"])
def test_marginals_met(xp, reg, method):
    a, b, M = clouds(120, 100, seed=4)
    res = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), reg,
                                 method=method, stopThr=1e-9, numItermax=20_000)
    assert res.converged
    assert l1_error(to_host(res.plan()), a, b) <= 1e-9
    assert res.marginal_error <= 1e-9
    assert res.history[-1] <= 1e-9


def test_marginals_met_reg_1e4(xp):
    a, b, M = clouds(60, 50, seed=5)
    res = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), 1e-4,
                                 stopThr=1e-9, numItermax=3000)
    assert res.converged
    assert l1_error(to_host(res.plan()), a, b) <= 1e-9


# Small versions of the benchmark's histogram problems: 1-D densities on a grid (W1 and W2
# costs) and blob images (squared pixel distance), costs scaled to max 1.
HISTOGRAMS = {
    "1-D W1 n=200": lambda: densities_1d(200, 1),
    "1-D W2 n=200": lambda: densities_1d(200, 2),
    "image 14x14": lambda: blob_images(14),
}


@pytest.mark.parametrize("reg", [1e-3, 1e-4])
@pytest.mark.parametrize("problem", list(HISTOGRAMS))
def test_histograms_reach_1e9(xp, problem, reg):
    a, b, M = HISTOGRAMS[problem]()
    res = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), reg,
                                 stopThr=1e-9, numItermax=2000)
    assert res.converged
    assert l1_error(to_host(res.plan()), a, b) <= 1e-9
    # Newton did the work: Sinkhorn ran only its warm starts (at most 5 per continuation
    # stage), no fallback sweeps after a failed line search.
    assert res.iterations["sinkhorn"] <= 10
    assert res.iterations["newton"] > 0


def _pot_log_sinkhorn(pot, a, b, M, reg, numItermax):
    """POT's log-domain Sinkhorn run far; None where it does not reach an L1 error of 1e-10."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" is judged below
        P, log = pot.sinkhorn(a, b, M, reg, method="sinkhorn_log", stopThr=1e-12,
                              numItermax=numItermax, log=True)
    if not l1_error(P, a, b) <= 1e-10:
        return None
    return P, log


def _assert_matches_pot(res, P_pot, log, M, reg):
    np.testing.assert_allclose(res.plan(), P_pot, rtol=1e-6, atol=1e-12 * P_pot.max())
    f, g = shift_free(res.f, res.g)
    fp, gp = shift_free(reg * np.asarray(log["log_u"]), reg * np.asarray(log["log_v"]))
    np.testing.assert_allclose(f, fp, atol=1e-8 * reg * 100)
    np.testing.assert_allclose(g, gp, atol=1e-8 * reg * 100)
    assert res.cost == pytest.approx(float((P_pot * M).sum()), rel=1e-9)


@pytest.mark.parametrize("problem", list(HISTOGRAMS))
def test_histograms_match_pot(problem):
    pot = pytest.importorskip("ot")
    a, b, M = HISTOGRAMS[problem]()
    reg = 1e-3
    out = _pot_log_sinkhorn(pot, a, b, M, reg, 5000)
    if out is None:
        pytest.skip("POT's sinkhorn_log did not converge")
    res = ot.sinkhorn_potentials(a, b, M, reg, stopThr=1e-12)
    assert res.converged
    _assert_matches_pot(res, *out, M, reg)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["1-D W2 n=60", "image 8x8"])
def test_histograms_match_pot_reg_1e4(problem):
    pot = pytest.importorskip("ot")
    a, b, M = densities_1d(60, 2) if problem.startswith("1-D") else blob_images(8)
    reg = 1e-4
    out = _pot_log_sinkhorn(pot, a, b, M, reg, 10_000)
    if out is None:
        pytest.skip("POT's sinkhorn_log did not converge")
    res = ot.sinkhorn_potentials(a, b, M, reg, stopThr=1e-12)
    assert res.converged
    _assert_matches_pot(res, *out, M, reg)


def test_crawling_stage_gets_an_intermediate_stage(monkeypatch):
    """1-D W1 (seed 2) at reg 1e-4: from the reg 1e-3 potentials the Newton steps crawl; the
    stage is restarted behind intermediate ones (each stage opens with 5 Sinkhorn iterations)
    and reaches the same plan as without the restarts."""
    a, b, M = densities_1d(200, 1, seed=2)
    res = ot.sinkhorn_potentials(a, b, M, 1e-4, stopThr=1e-10, numItermax=5000)
    assert res.converged
    assert res.iterations["sinkhorn"] > 10  # more than the two planned stages' warm starts
    monkeypatch.setattr(ot, "_STALL_STEPS", 10**9)
    plain = ot.sinkhorn_potentials(a, b, M, 1e-4, stopThr=1e-10, numItermax=5000)
    assert plain.converged and plain.iterations["sinkhorn"] == 10
    np.testing.assert_allclose(res.plan(), plain.plan(), rtol=0, atol=1e-10)


def test_histogram_problems_are_valid():
    for a, b, M in (densities_1d(50, 1), densities_1d(50, 2), blob_images(6)):
        assert np.all(a > 0) and np.all(b > 0)
        assert a.sum() == pytest.approx(1.0) and b.sum() == pytest.approx(1.0)
        assert M.shape == (a.size, b.size) and M.max() == pytest.approx(1.0)
        assert np.all(M >= 0) and np.allclose(M, M.T)
    with pytest.raises(ValueError, match="n >= 2"):
        densities_1d(1)
    with pytest.raises(ValueError, match="power"):
        densities_1d(10, 0)
    with pytest.raises(ValueError, match="side"):
        blob_images(1)


def test_components_match_scipy():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(0)
    for size, edges in ((1, 0), (10, 0), (50, 30), (200, 150), (300, 1000)):
        u, v = rng.integers(0, size, edges), rng.integers(0, size, edges)
        count, label = ot._components(size, u, v)
        G = coo_matrix((np.ones(edges), (u, v)), shape=(size, size))
        ref_count, ref = connected_components(G, directed=False)
        assert count == ref_count
        # Same partition: labels correspond one to one.
        pairs = np.unique(np.stack([label, ref]), axis=1)
        assert pairs.shape[1] == count
        assert label.min() == 0 and label.max() == count - 1


@pytest.mark.parametrize("sparse_lu", [True, False])
def test_two_level_preconditioner_cuts_cg(monkeypatch, sparse_lu):
    """5-D clouds at reg 1e-4: the kept plan splits into weakly linked clusters; the coarse
    correction over them cuts CG several times, and the solution is unchanged."""
    a, b, M = clouds(200, d=5, seed=0)
    if not sparse_lu:
        monkeypatch.setattr(ot, "_sparse_lu_available", lambda: False)
    two = ot.sinkhorn_potentials(a, b, M, 1e-4, stopThr=1e-10)
    monkeypatch.setattr(ot, "_JACOBI_FIRST", 10**9)  # Jacobi alone
    jac = ot.sinkhorn_potentials(a, b, M, 1e-4, stopThr=1e-10)
    assert two.converged and jac.converged
    assert 4 * two.cg_iterations <= jac.cg_iterations
    np.testing.assert_allclose(two.plan(), jac.plan(), atol=1e-10)


def _small_newton_matrix():
    """A sparse Newton matrix of the dual in upper storage, as SNS builds it, and its diagonal."""
    rng = np.random.default_rng(1)
    n, m = 12, 10
    P = np.where(rng.random((n, m)) < 0.25, rng.uniform(0.01, 1.0, (n, m)), 0.0)
    P[np.arange(n), np.arange(n) % m] += 0.5  # every row and column linked
    P[np.arange(m) % n, np.arange(m)] += 0.5
    diag = np.concatenate([P.sum(1), P.sum(0)]) * (1 + 1e-6)
    rows, cols, vals = [], [], []
    for i in range(n):
        js = np.nonzero(P[i])[0]
        rows += [i] * (len(js) + 1)
        cols += [i] + list(n + js)
        vals += [diag[i]] + list(P[i, js])
    for j in range(m):
        rows.append(n + j)
        cols.append(n + j)
        vals.append(diag[n + j])
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n + m))])
    H = curvkit.CSRMatrix(indptr, np.array(cols, np.int64), np.array(vals), (n + m, n + m),
                          symmetric="upper")
    return H, diag, n, m


def test_two_level_preconditioner_is_spd(monkeypatch):
    """M^-1 = D^-1 + Z E^-1 Z^T is symmetric positive definite, and the sparse-LU and dense
    coarse solvers agree."""
    H, diag, n, m = _small_newton_matrix()
    inverses = []
    for sparse in (True, False):
        monkeypatch.setattr(ot, "_sparse_lu_available", lambda: sparse)
        pre = ot._TwoLevel(H, diag, n)
        assert pre.count > 0
        Minv = np.stack([pre(e) for e in np.eye(n + m)], axis=1)
        np.testing.assert_allclose(Minv, Minv.T, atol=1e-12)
        assert np.linalg.eigvalsh(Minv).min() > 0
        inverses.append(Minv)
    np.testing.assert_allclose(inverses[0], inverses[1], rtol=1e-8, atol=1e-10)


def test_sns_needs_far_fewer_passes():
    a, b, M = clouds(150, seed=6)
    sns = ot.sinkhorn_potentials(a, b, M, 1e-3)
    plain = ot.sinkhorn_potentials(a, b, M, 1e-3, method="sinkhorn", numItermax=50_000)
    assert sns.converged and plain.converged
    assert sns.iterations["newton"] > 0
    assert 10 * sns.passes <= plain.passes
    np.testing.assert_allclose(sns.plan(), plain.plan(), atol=1e-9)


def test_continuation_can_be_disabled():
    a, b, M = clouds(40, seed=7)
    res = ot.sinkhorn_potentials(a, b, M, 1e-4, continuation=None, numItermax=5000)
    cont = ot.sinkhorn_potentials(a, b, M, 1e-4, numItermax=5000)
    assert res.converged and cont.converged
    np.testing.assert_allclose(res.plan(), cont.plan(), atol=1e-9)


def test_log_dict_and_plan():
    a, b, M = clouds(30, 20, uniform=False, seed=8)
    P = ot.sinkhorn(a, b, M, 5e-2)
    P2, info = ot.sinkhorn(a, b, M, 5e-2, method="sinkhorn", log=True)
    assert P.shape == (30, 20)
    np.testing.assert_allclose(P, P2, atol=1e-9)
    for key in ("f", "g", "log_u", "log_v", "u", "v", "err", "niter", "cost", "objective",
                "marginal_error", "iterations", "passes", "reason", "result"):
        assert key in info
    assert info["reason"] == "converged"
    assert info["niter"] == info["iterations"]["sinkhorn"]
    assert info["err"][-1] <= 1e-9


def test_uniform_default_marginals():
    _, _, M = clouds(20, 10, seed=9)
    P = ot.sinkhorn([], [], M, 1e-2)
    np.testing.assert_allclose(P.sum(1), np.full(20, 0.05), atol=1e-9)
    np.testing.assert_allclose(P.sum(0), np.full(10, 0.1), atol=1e-9)


@pytest.mark.parametrize("method", ["sns", "sinkhorn"])
def test_zero_mass_entries(xp, method):
    a, b, M = clouds(25, 20, uniform=False, seed=10)
    a[[3, 7]] = 0
    b[5] = 0
    a, b = a / a.sum(), b / b.sum()
    res = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), 1e-2,
                                 method=method)
    P = to_host(res.plan())
    assert np.all(np.isfinite(P))
    assert np.all(P[[3, 7]] == 0) and np.all(P[:, 5] == 0)
    assert l1_error(P, a, b) <= 1e-9
    f = to_host(res.f)
    assert np.isneginf(f[3]) and np.isfinite(f[0])


def test_warmstart_from_a_solution_converges_at_once():
    a, b, M = clouds(60, seed=11)
    first = ot.sinkhorn_potentials(a, b, M, 1e-2, stopThr=1e-11)
    again = ot.sinkhorn_potentials(a, b, M, 1e-2, stopThr=1e-9,
                                   warmstart=(first.f / 1e-2, first.g / 1e-2))
    assert again.converged
    assert again.iterations == {"sinkhorn": 0, "newton": 0}
    with pytest.raises(ValueError, match="warmstart"):
        ot.sinkhorn(a, b, M, 1e-2, warmstart=(first.f[:-1], first.g))


def test_sparse_plan(xp):
    a, b, M = clouds(50, 40, seed=12)
    res = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), 1e-2)
    S = res.sparse_plan(1e-6)
    dense = to_host(res.plan())
    kept = np.where(dense > 1e-6, dense, 0.0)
    import scipy.sparse as sp

    got = sp.csr_matrix((to_host(S.data), to_host(S.indices), to_host(S.indptr)),
                        shape=S.shape).toarray()
    np.testing.assert_allclose(got, kept, rtol=1e-12, atol=1e-300)
    assert 0 < S.data.size < dense.size


@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
def test_batched(xp, method):
    probs = [clouds(20, 15, uniform=False, seed=s) for s in range(5)]
    a = np.stack([p[0] for p in probs])
    b = np.stack([p[1] for p in probs])
    M = np.stack([p[2] for p in probs])
    res = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), 2e-2,
                                 method=method)
    assert res.f.shape == (5, 20) and res.g.shape == (5, 15)
    assert bool(np.all(res.converged))
    P = to_host(res.plan())
    assert P.shape == (5, 20, 15)
    for k in range(5):
        single = ot.sinkhorn_potentials(a[k], b[k], M[k], 2e-2, method="sinkhorn")
        np.testing.assert_allclose(P[k], single.plan(), atol=1e-9)
        assert res.cost[k] == pytest.approx(single.cost, rel=1e-7)
        assert res.marginal_error[k] <= 1e-9


def _mixed_batch(n=24, m=18, B=6):
    """Problems of different difficulty (reg relative to their cost ranges), zero-mass entries
    in one of them."""
    probs = [clouds(n, m, d=2, uniform=False, seed=40 + k) for k in range(B)]
    a = np.stack([p[0] for p in probs])
    b = np.stack([p[1] for p in probs])
    M = np.stack([p[2] * (1 + k / 2) for k, p in enumerate(probs)])
    a[1, :3] = 0
    a[1] /= a[1].sum()
    return a, b, M


def test_batch_problems_stop_on_their_own_error(xp, monkeypatch):
    """Whole-batch solves in one call: each problem stops at its own error, and the plans agree
    with the batch of host-driven half steps and with one-at-a-time solves."""
    a, b, M = _mixed_batch()
    reg = 2e-2
    fused = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), reg,
                                   method="sinkhorn", numItermax=50_000, check_every=1)
    assert bool(np.all(fused.converged)) and np.all(fused.marginal_error <= 1e-9)
    monkeypatch.setattr(ot, "_FUSED_MAX_SIZE", 0)
    stepped = ot.sinkhorn_potentials(xp.asarray(a), xp.asarray(b), xp.asarray(M), reg,
                                     method="sinkhorn", numItermax=50_000, check_every=1)
    # The stepped batch runs every problem as long as the slowest one needs.
    assert fused.iterations["sinkhorn"] == stepped.iterations["sinkhorn"]
    P = to_host(fused.plan())
    np.testing.assert_allclose(P, to_host(stepped.plan()), atol=1e-9)
    for k in range(len(a)):
        with np.errstate(divide="ignore"):  # log of the zero-mass entries
            _, _, ref = reference(a[k], b[k], M[k], reg)
        np.testing.assert_allclose(P[k], ref, atol=1e-9)


def test_batch_iteration_cap_and_checks():
    a, b, M = _mixed_batch()
    res = ot.sinkhorn_potentials(a, b, M, 1e-2, method="sinkhorn", numItermax=7)
    assert res.iterations["sinkhorn"] == 7 and not bool(np.all(res.converged))
    with pytest.raises(ValueError, match="check_every"):
        ot.sinkhorn_potentials(a, b, M, 1e-2, method="sinkhorn", check_every=0)
    # Checking every 5 iterations stops within 5 iterations past the first converged check.
    every = ot.sinkhorn_potentials(a, b, M, 2e-2, method="sinkhorn", check_every=5)
    each = ot.sinkhorn_potentials(a, b, M, 2e-2, method="sinkhorn")
    assert every.iterations["sinkhorn"] % 5 == 0
    assert 0 <= every.iterations["sinkhorn"] - each.iterations["sinkhorn"] < 5


def test_float32_sinkhorn_stays_float32(xp):
    a, b, M = clouds(40, 30, seed=13)
    a32, b32, M32 = (xp.asarray(v, dtype=np.float32) for v in (a, b, M))
    res = ot.sinkhorn_potentials(a32, b32, M32, 5e-2, method="sinkhorn", stopThr=1e-5)
    assert res.f.dtype == np.float32
    assert res.converged
    ref = ot.sinkhorn_potentials(a, b, M, 5e-2, method="sinkhorn", stopThr=1e-12)
    np.testing.assert_allclose(to_host(res.plan()), ref.plan(), atol=2e-5)
    sns = ot.sinkhorn_potentials(a32, b32, M32, 5e-2)  # Newton works in float64
    assert sns.f.dtype == np.float64


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, b, M: (-a, b, M), "negative"),
        (lambda a, b, M: (2 * a, 2 * b, M), "sum to 1"),
        (lambda a, b, M: (a, 0.5 * b, M), "different total mass"),
        (lambda a, b, M: (a, b, np.where(M > 0.5, np.nan, M)), "NaN"),
        (lambda a, b, M: (a, b, np.where(M > 0.5, np.inf, M)), "NaN or Inf"),
        (lambda a, b, M: (a[:-1], b, M), "shape mismatch"),
        (lambda a, b, M: (a, b[:-1], M), "shape mismatch"),
        (lambda a, b, M: (a, b, M[0]), "M must be"),
        (lambda a, b, M: (np.where(a > a.mean(), np.nan, a), b, M), "NaN"),
    ],
)
def test_bad_input(change, message):
    a, b, M = clouds(10, 8, seed=14)
    a = a.copy()
    a[0] += 0.05
    a /= a.sum()
    args = change(a, b, M)
    for method in ("sns", "sinkhorn"):
        with pytest.raises(ValueError, match=message):
            ot.sinkhorn(*args, 1e-2, method=method)


@pytest.mark.parametrize("reg", [0.0, -1e-3, np.nan, np.inf, "x"])
def test_bad_reg(reg):
    a, b, M = clouds(10, 8, seed=15)
    with pytest.raises(ValueError, match="reg"):
        ot.sinkhorn(a, b, M, reg)


def test_bad_options():
    a, b, M = clouds(10, 8, seed=16)
    with pytest.raises(ValueError, match="method"):
        ot.sinkhorn(a, b, M, 1e-2, method="greenkhorn")
    with pytest.raises(ValueError, match="numItermax"):
        ot.sinkhorn(a, b, M, 1e-2, numItermax=-1)
    with pytest.raises(ValueError, match="empty"):
        ot.sinkhorn([], [], np.zeros((0, 3)), 1e-2)


def test_maxiter_reported():
    a, b, M = clouds(80, seed=17)
    res = ot.sinkhorn_potentials(a, b, M, 1e-3, method="sinkhorn", numItermax=5)
    assert not res.converged and res.reason == "maxiter"
    assert res.iterations["sinkhorn"] == 5 and res.passes == 11
    assert res.marginal_error > 1e-9


def test_kernel_error_matches_marginal():
    """The fused row pass reports the L1 row error of the potentials it was given."""
    a, b, M = clouds(30, 20, uniform=False, seed=18)
    rng = np.random.default_rng(0)
    f, g = rng.normal(0, 0.01, 30), rng.normal(0, 0.01, 20)
    reg = 0.05
    P = np.exp((f[:, None] + g[None, :] - M) / reg)
    err, marg, u = np.empty(1), np.empty(30), f.copy()
    curvkit._core.ot_lse_update(M, g, a, reg, 1, u, marg, err, 0, 0)
    np.testing.assert_allclose(marg, P.sum(1), rtol=1e-13)
    assert err[0] == pytest.approx(np.abs(P.sum(1) - a).sum(), rel=1e-12)
    np.testing.assert_allclose(u, reg * (np.log(a) - logsumexp((g[None, :] - M) / reg, axis=1)),
                               rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="contiguous"):
        curvkit._core.ot_lse_update(np.asfortranarray(M), g, a, reg, 1, u, None, None, 0, 0)
    with pytest.raises(ValueError, match="reg"):
        curvkit._core.ot_lse_update(M, g, a, -1.0, 1, u, None, None, 0, 0)


def test_gather_fills_exactly_its_slots(xp):
    """Rows own exactly their slots: extra entries are dropped, unused slots become zeros."""
    a, b, M = clouds(12, 9, seed=20)
    M = xp.asarray(M)
    f, g = xp.zeros(12), xp.zeros(9)
    reg = 0.1
    P = to_host(xp.exp(-M / reg))
    dev = 0 if xp is np else M.device.id
    stream = 0 if xp is np else xp.cuda.get_current_stream().ptr
    rows, cols, counts = xp.empty(12), xp.empty(9), xp.empty(12, np.int64)
    threshold = float(np.median(P))
    curvkit._core.ot_plan_sums(M, f, g, reg, threshold, rows, cols, None, counts, dev, stream)
    np.testing.assert_array_equal(to_host(counts), (P > threshold).sum(1))
    np.testing.assert_allclose(to_host(rows), P.sum(1), rtol=1e-13)
    np.testing.assert_allclose(to_host(cols), P.sum(0), rtol=1e-13)
    slots = xp.asarray(np.arange(12) % 4 * 2, dtype=np.int64)  # some short, some long
    starts = xp.zeros(12, np.int64)
    starts[1:] = xp.cumsum(slots)[:-1]
    total = int(slots.sum())
    indices, values = xp.full(total, -1, np.int64), xp.full(total, np.nan)
    curvkit._core.ot_plan_gather(M, f, g, reg, threshold, starts, slots, 3, indices, values,
                                 dev, stream)
    indices, values, slots_h = to_host(indices), to_host(values), to_host(slots)
    at = 0
    for i in range(12):
        kept = np.nonzero(P[i] > threshold)[0]
        take = min(len(kept), slots_h[i])
        np.testing.assert_array_equal(indices[at:at + take], kept[:take] + 3)
        np.testing.assert_allclose(values[at:at + take], P[i, kept[:take]], rtol=1e-13)
        assert np.all(indices[at + take:at + slots_h[i]] == 3)
        assert np.all(values[at + take:at + slots_h[i]] == 0)
        at += slots_h[i]


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["sns", "sinkhorn"])
@pytest.mark.parametrize("reg", [1e-2, 1e-3])
def test_gpu_matches_cpu(method, reg):
    import cupy as cp

    a, b, M = clouds(300, 250, d=5, seed=19)
    cpu = ot.sinkhorn_potentials(a, b, M, reg, method=method, numItermax=20_000)
    gpu = ot.sinkhorn_potentials(cp.asarray(a), cp.asarray(b), cp.asarray(M), reg,
                                 method=method, numItermax=20_000)
    assert isinstance(gpu.f, cp.ndarray)
    assert cpu.converged and gpu.converged
    np.testing.assert_allclose(to_host(gpu.plan()), cpu.plan(), atol=1e-9)
    assert gpu.cost == pytest.approx(cpu.cost, rel=1e-8)


@pytest.mark.gpu
def test_gpu_batched_many_small():
    import cupy as cp

    probs = [clouds(64, d=2, seed=s) for s in range(64)]
    M = np.stack([p[2] for p in probs])
    a = np.full((64, 64), 1 / 64)
    cpu = ot.sinkhorn_potentials(a, a, M, 1e-2, method="sinkhorn")
    gpu = ot.sinkhorn_potentials(cp.asarray(a), cp.asarray(a), cp.asarray(M), 1e-2,
                                 method="sinkhorn")
    assert bool(np.all(gpu.converged))
    np.testing.assert_allclose(to_host(gpu.plan()), cpu.plan(), atol=1e-9)


@pytest.mark.gpu
def test_gpu_two_level_preconditioner_matches_cpu():
    import cupy as cp

    H, diag, n, m = _small_newton_matrix()
    Hd = curvkit.CSRMatrix(cp.asarray(H.indptr), cp.asarray(H.indices), cp.asarray(H.data),
                           H.shape, symmetric="upper")
    cpu, gpu = ot._TwoLevel(H, diag, n), ot._TwoLevel(Hd, cp.asarray(diag), n)
    assert gpu.count == cpu.count > 0
    r = np.random.default_rng(2).standard_normal(n + m)
    out = gpu(cp.asarray(r))
    assert isinstance(out, cp.ndarray)
    np.testing.assert_allclose(to_host(out), cpu(r), rtol=1e-12, atol=1e-14)


@pytest.mark.gpu
def test_gpu_sns_two_level_matches_cpu():
    """5-D clouds at reg 1e-4, where the GPU's Newton solves also take the coarse correction."""
    import cupy as cp

    a, b, M = clouds(200, d=5, seed=0)
    cpu = ot.sinkhorn_potentials(a, b, M, 1e-4, stopThr=1e-10)
    gpu = ot.sinkhorn_potentials(cp.asarray(a), cp.asarray(b), cp.asarray(M), 1e-4,
                                 stopThr=1e-10)
    assert cpu.converged and gpu.converged
    assert gpu.cg_iterations <= 2 * cpu.cg_iterations
    np.testing.assert_allclose(to_host(gpu.plan()), cpu.plan(), atol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(24, 18), (40, 1000)])  # cost in shared memory, or not
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gpu_batch_matches_cpu(shape, dtype):
    import cupy as cp

    n, m = shape
    a, b, M = _mixed_batch(n, m, B=5)
    a, b, M = (x.astype(dtype) for x in (a, b, M))
    tol = 1e-9 if dtype == np.float64 else 1e-5
    cpu = ot.sinkhorn_potentials(a, b, M, 2e-2, method="sinkhorn", stopThr=tol)
    gpu = ot.sinkhorn_potentials(cp.asarray(a), cp.asarray(b), cp.asarray(M), 2e-2,
                                 method="sinkhorn", stopThr=tol)
    assert gpu.f.dtype == dtype
    assert abs(gpu.iterations["sinkhorn"] - cpu.iterations["sinkhorn"]) <= 1
    np.testing.assert_allclose(to_host(gpu.plan()), cpu.plan(),
                               atol=1e-9 if dtype == np.float64 else 2e-5)


def test_mixing_host_and_device_is_a_type_error():
    cp = pytest.importorskip("cupy")
    if not curvkit.with_cuda:
        pytest.skip("needs a CUDA build")
    try:
        if cp.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no GPU")
    except Exception:
        pytest.skip("no GPU")
    a, b, M = clouds(10, 8)
    with pytest.raises(TypeError, match="mix"):
        ot.sinkhorn(cp.asarray(a), b, M, 1e-2)
