"""Deflated diagonal and trace estimators (XDiag, Diag++, XTrace), error estimates, target
accuracy, the automatic choice and the one-step streaming sample."""

from __future__ import annotations

import numpy as np
import pytest

import curvkit
from curvkit.benchmarks.problems import PowerLawOperator, poisson2d, random_csr
from curvkit.curvature import DiagEstimate, diag_estimate, diag_sample, trace_estimate
from conftest import to_device, to_host


def power_law(n: int, seed: int, exponent: float = 2.0) -> np.ndarray:
    """``Q diag(i^-exponent) Q^T`` as a dense array."""
    return PowerLawOperator(n, seed, exponent).toarray()


def diagonally_dominant(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n)) / np.sqrt(n)
    return (B + B.T) / 2 + np.diag(rng.uniform(1.0, 2.0, n))


def rel_err(d, truth) -> float:
    return float(np.linalg.norm(to_host(d) - truth) / np.linalg.norm(truth))


def test_xdiag_beats_hutchinson_by_100x_on_a_power_law_spectrum():
    H = PowerLawOperator(2000, seed=0)  # an operator with matmat and shape
    d = H.diagonal()
    errs = {m: np.mean([rel_err(diag_estimate(H, num_matvecs=512, method=m, seed=s), d)
                        for s in range(2)])
            for m in ("hutchinson", "xdiag", "diag++")}
    assert errs["xdiag"] * 100 <= errs["hutchinson"], errs
    assert errs["diag++"] * 10 <= errs["hutchinson"], errs
    info = diag_estimate(H, num_matvecs=512, method="auto", seed=0, return_info=True)
    assert info.method == "xdiag" and info.num_matvecs == 512
    assert rel_err(info.diag, d) * 100 <= errs["hutchinson"]


def test_deflation_does_not_win_on_a_diagonally_dominant_matrix():
    H = diagonally_dominant(400, seed=1)
    d = np.diag(H)
    errs = {m: np.mean([rel_err(diag_estimate(H, num_matvecs=128, method=m, seed=s), d)
                        for s in range(6)])
            for m in ("hutchinson", "xdiag", "diag++")}
    assert errs["hutchinson"] < errs["xdiag"] and errs["hutchinson"] < errs["diag++"], errs
    for s in range(3):
        info = diag_estimate(H, num_matvecs=128, method="auto", seed=s, return_info=True)
        assert info.method == "hutchinson" and info.num_matvecs == 128
        # the pilot's probes are kept; only its products with Q (4 of them for 128) are lost
        assert rel_err(info.diag, d) < 1.3 * errs["hutchinson"]


@pytest.mark.parametrize("method", ["xdiag", "diag++"])
def test_deflated_estimates_are_unbiased_even_for_a_nonsymmetric_matrix(method):
    rng = np.random.default_rng(3)
    n, seeds = 40, 300
    H = rng.standard_normal((n, n)) + np.diag(rng.uniform(1, 3, n))  # not symmetric
    d = np.diag(H)
    runs = [diag_estimate(H, num_matvecs=12, method=method, seed=s, return_stderr=True)
            for s in range(seeds)]
    est = np.array([r[0] for r in runs])
    spread = est.std(0) / np.sqrt(seeds)
    assert np.all(np.abs(est.mean(0) - d) < 5 * spread + 1e-12)


def test_a_low_rank_matrix_is_recovered_exactly():
    rng = np.random.default_rng(4)
    U = rng.standard_normal((300, 5))
    H = U @ np.diag([5.0, 4, 3, 2, 1]) @ U.T
    d = np.diag(H)
    for method in ("xdiag", "diag++"):
        est, se = diag_estimate(H, num_matvecs=24, method=method, return_stderr=True)
        np.testing.assert_allclose(est, d, rtol=1e-9, atol=1e-9 * np.abs(d).max())
        assert np.abs(se).max() < 1e-8 * np.abs(d).max()
    t, se = trace_estimate(H, num_matvecs=24, method="xtrace", return_stderr=True)
    assert abs(t - np.trace(H)) < 1e-9 * abs(np.trace(H)) and se < 1e-8 * abs(np.trace(H))


def test_xdiag_stderr_tracks_the_actual_error():
    H = power_law(500, seed=5)
    d = np.diag(H)
    ratios = []
    for s in range(20):
        est, se = diag_estimate(H, num_matvecs=96, method="xdiag", seed=s, return_stderr=True)
        ratios.append(np.linalg.norm(se) / np.linalg.norm(est - d))
    assert 0.6 < np.median(ratios) < 1.6, ratios
    assert 0.25 < min(ratios) and max(ratios) < 4, ratios
    # per entry: the error is within 4 standard errors for nearly every entry
    est, se = diag_estimate(H, num_matvecs=96, method="xdiag", seed=0, return_stderr=True)
    assert np.mean(np.abs(est - d) < 4 * se) > 0.95


def test_diagpp_stderr_tracks_the_spread_over_seeds():
    H = power_law(300, seed=6, exponent=1.0)
    runs = [diag_estimate(H, num_matvecs=60, method="diag++", seed=s, return_stderr=True)
            for s in range(100)]
    est = np.array([r[0] for r in runs])
    stderr = np.array([r[1] for r in runs]).mean(0)
    assert 0.8 < np.median(est.std(0) / stderr) < 1.2


def test_target_accuracy_stops_early_on_an_easy_matrix():
    rng = np.random.default_rng(7)
    n = 500
    easy = np.diag(rng.uniform(1, 2, n)) + 0.02 * diagonally_dominant(n, 8)  # little off-diagonal
    hard = diagonally_dominant(n, 9)
    for method in ("hutchinson", "auto"):
        e = diag_estimate(easy, num_matvecs=512, method=method, rtol=0.01, block=8,
                          return_info=True)
        h = diag_estimate(hard, num_matvecs=512, method=method, rtol=0.01, block=8,
                          return_info=True)
        assert isinstance(e, DiagEstimate)
        assert e.converged and e.num_matvecs < 128, (method, e.num_matvecs)
        rms = lambda x: np.sqrt(np.mean(x**2))  # noqa: E731
        assert rms(e.stderr) <= 0.01 * rms(e.diag)
        assert rel_err(e.diag, np.diag(easy)) < 0.03
        assert h.num_matvecs > e.num_matvecs
    # a target out of reach: the whole budget is spent and the result says so
    h = diag_estimate(hard, num_matvecs=64, rtol=1e-6, return_info=True)
    assert h.converged is False and h.num_matvecs == 64
    # without a target, converged is None
    assert diag_estimate(hard, num_matvecs=16, return_info=True).converged is None


def test_xdiag_target_grows_the_sketch_until_reached():
    H = power_law(600, seed=10)
    d = np.diag(H)
    info = diag_estimate(H, num_matvecs=600, method="xdiag", rtol=1e-2, block=16,
                         return_info=True)
    assert info.converged and info.num_matvecs < 600 and info.num_matvecs % 2 == 0
    assert rel_err(info.diag, d) < 3e-2
    # the grown sketch equals the one-shot sketch of the same size (same probes, same basis)
    one_shot = diag_estimate(H, num_matvecs=info.num_matvecs, method="xdiag")
    np.testing.assert_allclose(info.diag, one_shot, rtol=1e-8, atol=1e-10 * np.abs(d).max())
    info = diag_estimate(H, num_matvecs=600, method="xdiag", atol=1e-12, block=64,
                         return_info=True)
    assert info.converged is False and info.num_matvecs == 600
    # Diag++ keeps its sketch (a third of the budget) and stops its residual probes early
    info = diag_estimate(H, num_matvecs=600, method="diag++", rtol=1e-2, block=16,
                         return_info=True)
    assert info.converged and 400 <= info.num_matvecs < 600
    assert rel_err(info.diag, d) < 3e-2


def test_exact_methods_report_their_products():
    A = poisson2d(20)
    info = diag_estimate(A, method="probing", return_info=True)
    assert info.num_matvecs == 2 and np.array_equal(info.diag, A.diagonal())
    assert not info.stderr.any()
    info = diag_estimate(A, method="exact", return_info=True)
    assert info.num_matvecs == 0 and info.method == "exact"


def test_xtrace_beats_hutchinson_with_a_sane_error_estimate():
    H = power_law(300, seed=11)
    t = np.trace(H)
    runs = {m: [trace_estimate(H, num_matvecs=60, method=m, seed=s, return_stderr=True)
                for s in range(20)]
            for m in ("hutchinson", "hutch++", "xtrace")}
    err = {m: np.sqrt(np.mean([(e - t) ** 2 for e, _ in r])) for m, r in runs.items()}
    assert err["xtrace"] * 30 < err["hutchinson"], err
    assert err["xtrace"] < 2 * err["hutch++"], err
    for m, r in runs.items():  # the mean stderr is within a factor 2 of the actual error
        se = np.mean([s for _, s in r])
        assert 0.5 < se / err[m] < 2, (m, se, err[m])
    # unbiased: a small non-symmetric matrix over many seeds
    rng = np.random.default_rng(12)
    G = rng.standard_normal((30, 30)) + 5 * np.eye(30)
    est = [trace_estimate(G, num_matvecs=8, method="xtrace", seed=s) for s in range(400)]
    assert abs(np.mean(est) - np.trace(G)) < 5 * np.std(est) / np.sqrt(400)


def test_streaming_sample_converges_to_the_diagonal():
    rng = np.random.default_rng(13)
    n, steps = 50, 2000
    B = rng.standard_normal((n, n))
    H = (B + B.T) / 2
    d = np.diag(H)
    samples = np.array([diag_sample(H, step=t, seed=3) for t in range(steps)])
    var = np.sum(H**2, axis=1) - d**2
    assert np.all(np.abs(samples.mean(0) - d) < 5 * np.sqrt(var / steps))
    # an exponential moving average, the way an optimiser keeps it, settles near diag(H)
    ema = np.zeros(n)
    for t in range(steps):
        ema = 0.99 * ema + 0.01 * samples[t]
    assert rel_err(ema, d) < 0.5
    # a step is reproducible, steps differ, and k probes at step 0 are diag_estimate's first k
    assert np.array_equal(diag_sample(H, step=5, seed=3), samples[5])
    assert not np.array_equal(samples[5], samples[6])
    np.testing.assert_allclose(diag_sample(H, step=0, num_probes=4, seed=3),
                               diag_estimate(H, num_matvecs=4, seed=3), rtol=1e-13)
    np.testing.assert_allclose(diag_sample(H, step=1, num_probes=2, seed=3),
                               samples[2:4].mean(0), rtol=1e-12, atol=1e-12)


def test_streaming_sample_block_averaging(xp):
    A = random_csr(103, 6, seed=14)
    A = (A + A.T).tocsr()
    H = to_device(xp, A)
    raw = to_host(diag_sample(H, step=2, num_probes=3))
    grouped = to_host(diag_sample(H, step=2, num_probes=3, group_size=10))
    want = np.empty(103)
    want[:100] = np.repeat(raw[:100].reshape(10, 10).mean(1), 10)
    want[100:] = raw[100:].mean()  # the short last group on its own
    np.testing.assert_allclose(grouped, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(to_host(diag_sample(H, step=2, num_probes=3, group_size=1)),
                                  raw)


def test_operator_kinds_agree_for_the_deflated_methods(xp):
    A = random_csr(300, 8, seed=15)
    A = (A + A.T).tocsr()
    Ad = to_device(xp, A)
    dense = xp.asarray(A.toarray())
    for method in ("xdiag", "diag++", "auto"):
        ref = to_host(diag_estimate(Ad, num_matvecs=40, method=method, seed=2))
        for H, kw in [
            (dense, {}),
            (curvkit.CSRMatrix.from_sparse(Ad), {"block": 7}),
            (lambda V: dense @ V, {"n": 300, "xp": xp, "block": 5}),
        ]:
            got = to_host(diag_estimate(H, num_matvecs=40, method=method, seed=2, **kw))
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    t = trace_estimate(Ad, num_matvecs=40, method="xtrace", seed=2)
    assert abs(trace_estimate(dense, num_matvecs=40, method="xtrace", seed=2) - t) < 1e-9 * abs(t)


def test_float32_stays_float32():
    A = poisson2d(10).astype(np.float32)
    for method in ("xdiag", "diag++", "auto"):
        d, se = diag_estimate(A, num_matvecs=20, method=method, return_stderr=True)
        assert d.dtype == np.float32 and se.dtype == np.float32
    assert diag_sample(A, step=0).dtype == np.float32


def test_bad_input_to_the_new_methods():
    H = np.eye(6)
    with pytest.raises(ValueError, match="square"):
        diag_estimate(np.ones((3, 4)), num_matvecs=8, method="xdiag")
    with pytest.raises(ValueError, match="num_matvecs"):
        diag_estimate(H, num_matvecs=0, method="xdiag")
    with pytest.raises(ValueError, match=">= 4"):
        diag_estimate(H, num_matvecs=3, method="xdiag")
    with pytest.raises(ValueError, match=">= 3"):
        diag_estimate(H, num_matvecs=2, method="diag++")
    with pytest.raises(ValueError, match="returned shape"):
        diag_estimate(lambda V: V[:, :1], num_matvecs=8, n=6, method="xdiag")
    with pytest.raises(ValueError, match="returned shape"):
        diag_estimate(lambda V: V[:-1], num_matvecs=8, n=6, method="diag++")
    with pytest.raises(TypeError, match="dtype"):
        diag_estimate(lambda V: V.astype(complex), num_matvecs=8, n=6, method="xdiag")
    with pytest.raises(TypeError, match="dtype"):
        diag_estimate(lambda V: V.astype(np.int64), num_matvecs=8, n=6)
    with pytest.raises(TypeError, match="dtype"):
        diag_sample(lambda V: V.astype(object), step=0, n=6)
    with pytest.raises(ValueError, match="probes"):
        diag_estimate(H, num_matvecs=8, method="xdiag", probes="uniform")
    with pytest.raises(ValueError, match="rtol"):
        diag_estimate(H, num_matvecs=8, rtol=-1.0)
    with pytest.raises(ValueError, match="rtol"):
        diag_estimate(H, num_matvecs=8, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="step"):
        diag_sample(H, step=-1)
    with pytest.raises(ValueError, match="num_probes"):
        diag_sample(H, step=0, num_probes=0)
    with pytest.raises(ValueError, match="group_size"):
        diag_sample(H, step=0, group_size=0)
    with pytest.raises(ValueError, match="square"):
        diag_sample(np.ones((3, 4)), step=0)
    with pytest.raises(ValueError, match=">= 4"):
        trace_estimate(H, num_matvecs=3, method="xtrace")
    with pytest.raises(ValueError, match=">= 1"):
        trace_estimate(H, num_matvecs=0, method="hutchinson")


def test_zero_matrix_gives_zero():
    Z = np.zeros((50, 50))
    for method in ("xdiag", "diag++", "auto"):
        d, se = diag_estimate(Z, num_matvecs=32, method=method, return_stderr=True)
        assert not d.any() and not se.any()
    assert trace_estimate(Z, num_matvecs=8, method="xtrace") == 0.0


@pytest.mark.gpu
def test_gpu_deflated_methods_match_the_cpu():
    import cupy as cp

    H = power_law(400, seed=16)
    Hd = cp.asarray(H)
    for method in ("hutchinson", "xdiag", "diag++", "auto"):
        cpu = diag_estimate(H, num_matvecs=64, method=method, seed=4, return_info=True)
        gpu = diag_estimate(Hd, num_matvecs=64, method=method, seed=4, return_info=True)
        assert isinstance(gpu.diag, cp.ndarray) and isinstance(gpu.stderr, cp.ndarray)
        assert gpu.method == cpu.method and gpu.num_matvecs == cpu.num_matvecs
        np.testing.assert_allclose(gpu.diag.get(), cpu.diag, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(gpu.stderr.get(), cpu.stderr, rtol=1e-6, atol=1e-10)
    cpu = diag_estimate(H, num_matvecs=200, method="xdiag", rtol=1e-2, block=16,
                        return_info=True)
    gpu = diag_estimate(Hd, num_matvecs=200, method="xdiag", rtol=1e-2, block=16,
                        return_info=True)
    assert gpu.num_matvecs == cpu.num_matvecs
    np.testing.assert_allclose(gpu.diag.get(), cpu.diag, rtol=1e-7, atol=1e-10)
    for method in ("hutchinson", "hutch++", "xtrace"):
        a = trace_estimate(H, num_matvecs=40, method=method, seed=1, return_stderr=True)
        b = trace_estimate(Hd, num_matvecs=40, method=method, seed=1, return_stderr=True)
        np.testing.assert_allclose(b, a, rtol=1e-8)
    np.testing.assert_allclose(diag_sample(Hd, step=3, num_probes=2, group_size=7).get(),
                               diag_sample(H, step=3, num_probes=2, group_size=7), rtol=1e-12)


@pytest.mark.gpu
def test_gpu_deflation_keeps_products_on_the_device():
    import cupy as cp

    H = cp.asarray(power_law(300, seed=17))
    seen = []

    def hvp(V):
        seen.append(type(V))
        return H @ V

    d = diag_estimate(hvp, num_matvecs=32, method="xdiag", n=300, xp=cp)
    assert isinstance(d, cp.ndarray) and set(seen) == {cp.ndarray}
    with pytest.raises(TypeError, match="another library"):
        diag_estimate(lambda V: cp.asnumpy(H @ V), num_matvecs=8, method="xdiag", n=300, xp=cp)


def test_xdiag_rows_in_slabs_agree_with_one_pass(monkeypatch):
    from curvkit import curvature

    H = power_law(300, seed=18)
    whole = diag_estimate(H, num_matvecs=40, method="xdiag", return_stderr=True)
    monkeypatch.setattr(curvature, "_ROWS_ENTRIES", 7 * 20)  # slabs of 7 rows, a short last one
    slabs = diag_estimate(H, num_matvecs=40, method="xdiag", return_stderr=True)
    for a, b in zip(whole, slabs):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)


# --- Gaussian probes in the deflated methods --------------------------------------------------


def gaussian_block(n: int, count: int, seed: int, first: int = 0) -> np.ndarray:
    """Gaussian probes ``first .. first + count - 1`` of the seed's sequence (host)."""
    Z = np.empty((n, count))
    curvkit._core.fill_gaussian(Z, seed, first, 0, 0)
    return Z


def xdiag_by_definition(H: np.ndarray, Om: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XDiag with Gaussian probes written out: an explicit projector ``P_i`` onto the range of
    ``H Om`` without column ``i``, the om^2-weighted mean of the ``s`` estimates, and the
    delta-method standard error of that ratio."""
    s = Om.shape[1]
    Y = H @ Om
    v = np.empty_like(Om)
    for i in range(s):
        U, sig, _ = np.linalg.svd(np.delete(Y, i, axis=1), full_matrices=False)
        Ui = U[:, sig > 1e-12 * sig[0]]
        P = Ui @ Ui.T
        om = Om[:, i]
        v[:, i] = om**2 * np.diag(H @ P) + om * (H @ (om - P @ om))
    w = Om**2
    d = v.sum(1) / w.sum(1)
    r = v - d[:, None] * w
    return d, np.sqrt((r**2).sum(1) / (s * (s - 1))) / w.mean(1)


def test_gaussian_xdiag_and_diagpp_match_their_definitions():
    rng = np.random.default_rng(20)
    n, m, seed = 30, 12, 5
    H = rng.standard_normal((n, n)) + np.diag(rng.uniform(2, 4, n))  # not symmetric
    d, se = diag_estimate(H, num_matvecs=m, method="xdiag", probes="gaussian", seed=seed,
                          return_stderr=True)
    d_ref, se_ref = xdiag_by_definition(H, gaussian_block(n, m // 2, seed))
    np.testing.assert_allclose(d, d_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(se, se_ref, rtol=1e-8, atol=1e-12)
    # Diag++: Q from H S (probes 0 .. s-1), diag(H Q Q^T) exactly, then the normalised
    # residual sum g * H (I - Q Q^T) g / sum g * g over the remaining probes
    s = m // 3
    Q, _ = np.linalg.qr(H @ gaussian_block(n, s, seed))
    G = gaussian_block(n, m - 2 * s, seed, first=s)
    want = np.diag(H @ Q @ Q.T) + (G * (H @ (G - Q @ (Q.T @ G)))).sum(1) / (G * G).sum(1)
    got = diag_estimate(H, num_matvecs=m, method="diag++", probes="gaussian", seed=seed)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_gaussian_xdiag_is_unbiased_where_a_mean_of_the_deflated_diagonals_is_not():
    # A small s makes the dependence between the probes and the deflated diagonals strong:
    # the om^2-weighted mean keeps the estimate unbiased (the residual's diagonal cancels
    # exactly), whereas adding the plain mean of diag(H P_i) to the normalised residual is
    # off by about 5% of H_00 here, 7 standard errors of this test.
    rng = np.random.default_rng(21)
    n, seeds = 6, 8000
    H = (rng.standard_normal((n, n)) + np.diag([4.0, 0.1, 2, 0.5, 1, 3])
         + 0.5 * rng.standard_normal((n, n)))
    d = np.diag(H)
    est = np.array([diag_estimate(H, num_matvecs=6, method="xdiag", probes="gaussian", seed=s)
                    for s in range(seeds)])
    assert np.all(np.abs(est.mean(0) - d) < 4.5 * est.std(0) / np.sqrt(seeds)), (
        (est.mean(0) - d) / (est.std(0) / np.sqrt(seeds)))


@pytest.mark.parametrize("method", ["xdiag", "diag++", "auto"])
def test_gaussian_deflated_estimates_are_unbiased_for_a_nonsymmetric_matrix(method):
    rng = np.random.default_rng(3)
    n, seeds = 40, 300
    H = rng.standard_normal((n, n)) + np.diag(rng.uniform(1, 3, n))
    d = np.diag(H)
    m = 40 if method == "auto" else 12
    est = np.array([diag_estimate(H, num_matvecs=m, method=method, probes="gaussian", seed=s)
                    for s in range(seeds)])
    spread = est.std(0) / np.sqrt(seeds)
    assert np.all(np.abs(est.mean(0) - d) < 5 * spread + 1e-12)


def test_gaussian_xdiag_beats_hutchinson_by_100x_on_a_power_law_spectrum():
    H = PowerLawOperator(2000, seed=0)
    d = H.diagonal()
    err = {(m, p): np.mean([rel_err(diag_estimate(H, num_matvecs=512, method=m, probes=p,
                                                  seed=s), d) for s in range(2)])
           for m in ("hutchinson", "xdiag", "diag++") for p in ("rademacher", "gaussian")}
    for hutch in ("rademacher", "gaussian"):
        assert err["xdiag", "gaussian"] * 100 <= err["hutchinson", hutch], err
        assert err["diag++", "gaussian"] * 10 <= err["hutchinson", hutch], err
    # the sketch is as good either way; only the residual's probes differ
    assert err["xdiag", "gaussian"] < 1.5 * err["xdiag", "rademacher"], err
    info = diag_estimate(H, num_matvecs=512, method="auto", probes="gaussian", return_info=True)
    assert info.method == "xdiag" and rel_err(info.diag, d) * 100 <= err["hutchinson", "gaussian"]


def test_gaussian_deflation_cancels_the_residual_diagonal():
    # A diagonal-dominated H: after deflation by a random subspace the residual H (I - P) keeps
    # most of the diagonal. Unnormalised Gaussian products would carry its variance
    # 2 (H (I - P))_jj^2 per probe (about 3x the error here); normalised, Gaussian probes
    # stay close to Rademacher's.
    rng = np.random.default_rng(22)
    n = 200
    H = np.diag(rng.uniform(1, 2, n)) + 0.01 * diagonally_dominant(n, 23)
    d = np.diag(H)
    for method in ("xdiag", "diag++", "hutchinson"):
        err = {p: np.mean([rel_err(diag_estimate(H, num_matvecs=64, method=method, probes=p,
                                                 seed=s), d) for s in range(4)])
               for p in ("rademacher", "gaussian")}
        assert err["gaussian"] < 1.5 * err["rademacher"], (method, err)


def test_gaussian_sketch_finds_sparse_directions_that_sign_probes_miss():
    # Rank 5 with eigenvectors (e_2k - e_2k+1) / sqrt(2): a sign probe is orthogonal to each
    # with probability 1/2, so the 5 leave-one-out columns of a 6-column Rademacher sketch
    # often miss one; Gaussian probes span the range almost surely.
    n = 300
    V = np.zeros((n, 5))
    for k in range(5):
        V[2 * k, k], V[2 * k + 1, k] = 2**-0.5, -(2**-0.5)
    H = V @ np.diag([5.0, 4, 3, 2, 1]) @ V.T
    d = np.diag(H)
    exact = {p: np.mean([rel_err(diag_estimate(H, num_matvecs=12, method="xdiag", probes=p,
                                               seed=s), d) < 1e-9 for s in range(50)])
             for p in ("rademacher", "gaussian")}
    assert exact["gaussian"] == 1.0 and exact["rademacher"] < 0.5, exact


def test_gaussian_xdiag_stderr_tracks_the_actual_error():
    H = power_law(500, seed=5)
    d = np.diag(H)
    ratios, z = [], []
    for s in range(20):
        est, se = diag_estimate(H, num_matvecs=96, method="xdiag", probes="gaussian", seed=s,
                                return_stderr=True)
        ratios.append(np.linalg.norm(se) / np.linalg.norm(est - d))
        z.append((est - d) / se)
    assert 0.6 < np.median(ratios) < 1.6, ratios
    assert 0.25 < min(ratios) and max(ratios) < 4, ratios
    z = np.concatenate(z)  # per entry: error / stderr over 500 entries x 20 seeds
    assert 0.8 < np.sqrt(np.mean(z**2)) < 1.4
    assert np.mean(np.abs(z) < 4) > 0.99 and np.mean(np.abs(z) < 1) > 0.55


@pytest.mark.parametrize("method", ["hutchinson", "diag++"])
def test_gaussian_stderr_matches_the_spread_when_the_diagonal_dominates(method):
    # The normalised estimate cancels the diagonal's own term, and so must its error estimate:
    # a standard error from the plain products z * Hz would be ~6x too large here.
    rng = np.random.default_rng(4)
    n = 40
    B = rng.standard_normal((n, n))
    for shift in (0.0, 20.0):
        H = (B + B.T) / 2 + shift * np.eye(n)
        runs = [diag_estimate(H, num_matvecs=32, method=method, probes="gaussian", seed=s,
                              return_stderr=True) for s in range(200)]
        est = np.array([r[0] for r in runs])
        stderr = np.array([r[1] for r in runs]).mean(0)
        assert 0.85 < np.median(est.std(0) / stderr) < 1.3, (shift, est.std(0) / stderr)


def test_gaussian_probes_are_deterministic_and_independent_of_the_operator_kind():
    A = random_csr(300, 8, seed=15)
    A = (A + A.T).tocsr()
    dense = A.toarray()
    for method in ("hutchinson", "xdiag", "diag++", "auto"):
        ref = diag_estimate(A, num_matvecs=40, method=method, probes="gaussian", seed=2,
                            return_stderr=True)
        again = diag_estimate(A, num_matvecs=40, method=method, probes="gaussian", seed=2,
                              return_stderr=True)
        assert all(np.array_equal(a, b) for a, b in zip(ref, again))
        other = diag_estimate(A, num_matvecs=40, method=method, probes="gaussian", seed=3)
        signs = diag_estimate(A, num_matvecs=40, method=method, seed=2)
        assert not np.array_equal(ref[0], other) and not np.array_equal(ref[0], signs)
        for H, kw in [(dense, {}), (curvkit.CSRMatrix.from_sparse(A), {"block": 7}),
                      (lambda V: dense @ V, {"n": 300, "block": 5})]:
            got = diag_estimate(H, num_matvecs=40, method=method, probes="gaussian", seed=2,
                                return_stderr=True, **kw)
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(got[1], ref[1], rtol=1e-7, atol=1e-9)
    for method in ("hutchinson", "hutch++", "xtrace"):
        t = trace_estimate(A, num_matvecs=40, method=method, probes="gaussian", seed=2)
        assert t == trace_estimate(A, num_matvecs=40, method=method, probes="gaussian", seed=2)
        assert t != trace_estimate(A, num_matvecs=40, method=method, seed=2)
        assert abs(trace_estimate(dense, num_matvecs=40, method=method, probes="gaussian",
                                  seed=2) - t) < 1e-9 * abs(t)


def test_gaussian_xdiag_target_grows_the_same_sketch():
    H = power_law(600, seed=10)
    d = np.diag(H)
    info = diag_estimate(H, num_matvecs=600, method="xdiag", probes="gaussian", rtol=1e-2,
                         block=16, return_info=True)
    assert info.converged and info.num_matvecs < 600 and rel_err(info.diag, d) < 3e-2
    one_shot = diag_estimate(H, num_matvecs=info.num_matvecs, method="xdiag", probes="gaussian")
    np.testing.assert_allclose(info.diag, one_shot, rtol=1e-8, atol=1e-10 * np.abs(d).max())


def test_gaussian_low_rank_zero_and_float32():
    rng = np.random.default_rng(4)
    U = rng.standard_normal((300, 5))
    H = U @ np.diag([5.0, 4, 3, 2, 1]) @ U.T
    d = np.diag(H)
    for method in ("xdiag", "diag++"):
        est, se = diag_estimate(H, num_matvecs=24, method=method, probes="gaussian",
                                return_stderr=True)
        np.testing.assert_allclose(est, d, rtol=1e-9, atol=1e-9 * np.abs(d).max())
        assert np.abs(se).max() < 1e-8 * np.abs(d).max()
    t = trace_estimate(H, num_matvecs=24, method="xtrace", probes="gaussian")
    assert abs(t - np.trace(H)) < 1e-9 * abs(np.trace(H))
    Z = np.zeros((50, 50))
    for method in ("hutchinson", "xdiag", "diag++", "auto"):
        dz, sz = diag_estimate(Z, num_matvecs=32, method=method, probes="gaussian",
                               return_stderr=True)
        assert not dz.any() and not sz.any()
    A = poisson2d(10).astype(np.float32)
    for method in ("hutchinson", "xdiag", "diag++", "auto"):
        d32, se32 = diag_estimate(A, num_matvecs=20, method=method, probes="gaussian",
                                  return_stderr=True)
        assert d32.dtype == np.float32 and se32.dtype == np.float32
        assert rel_err(d32, A.diagonal()) < 1.0


def test_gaussian_trace_estimators():
    # unbiased for a non-symmetric matrix, over many seeds
    rng = np.random.default_rng(12)
    G = rng.standard_normal((30, 30)) + 5 * np.eye(30)
    for method in ("hutchinson", "hutch++", "xtrace"):
        est = [trace_estimate(G, num_matvecs=9, method=method, probes="gaussian", seed=s)
               for s in range(400)]
        assert abs(np.mean(est) - np.trace(G)) < 5 * np.std(est) / np.sqrt(400), method
    # Hutchinson's variance: 2 ||H||_F^2 / k with Gaussian probes against 2 sum_{i != j}
    # H_ij^2 / k with Rademacher ones, for a symmetric H
    B = rng.standard_normal((30, 30))
    H = (B + B.T) / 2 + 4 * np.eye(30)
    k, seeds = 10, 1500
    for p, want in (("gaussian", 2 * np.sum(H**2) / k),
                    ("rademacher", 2 * (np.sum(H**2) - np.sum(np.diag(H) ** 2)) / k)):
        est = np.array([trace_estimate(H, num_matvecs=k, method="hutchinson", probes=p, seed=s)
                        for s in range(seeds)])
        got = np.mean((est - np.trace(H)) ** 2)
        assert 0.85 < got / want < 1.15, (p, got, want)
    # deflation still wins on a decaying spectrum, with a sane error estimate
    P = power_law(300, seed=11)
    t = np.trace(P)
    runs = {m: [trace_estimate(P, num_matvecs=60, method=m, probes="gaussian", seed=s,
                               return_stderr=True) for s in range(20)]
            for m in ("hutchinson", "hutch++", "xtrace")}
    err = {m: np.sqrt(np.mean([(e - t) ** 2 for e, _ in r])) for m, r in runs.items()}
    assert err["xtrace"] * 30 < err["hutchinson"], err
    assert err["xtrace"] < 2 * err["hutch++"], err
    for m, r in runs.items():
        se = np.mean([s for _, s in r])
        assert 0.5 < se / err[m] < 2, (m, se, err[m])


def test_bad_probes_argument():
    H = np.eye(6)
    for method in ("hutchinson", "xdiag", "diag++", "auto"):
        with pytest.raises(ValueError, match="probes"):
            diag_estimate(H, num_matvecs=8, method=method, probes="normal")
    for method in ("hutchinson", "hutch++", "xtrace"):
        with pytest.raises(ValueError, match="probes"):
            trace_estimate(H, num_matvecs=8, method=method, probes="normal")


@pytest.mark.gpu
def test_gpu_gaussian_deflated_methods_match_the_cpu():
    import cupy as cp

    H = power_law(400, seed=16)
    Hd = cp.asarray(H)
    for method in ("hutchinson", "xdiag", "diag++", "auto"):
        cpu = diag_estimate(H, num_matvecs=64, method=method, probes="gaussian", seed=4,
                            return_info=True)
        gpu = diag_estimate(Hd, num_matvecs=64, method=method, probes="gaussian", seed=4,
                            return_info=True)
        assert isinstance(gpu.diag, cp.ndarray) and isinstance(gpu.stderr, cp.ndarray)
        assert gpu.method == cpu.method and gpu.num_matvecs == cpu.num_matvecs
        np.testing.assert_allclose(gpu.diag.get(), cpu.diag, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(gpu.stderr.get(), cpu.stderr, rtol=1e-6, atol=1e-10)
    for method in ("hutchinson", "hutch++", "xtrace"):
        a = trace_estimate(H, num_matvecs=40, method=method, probes="gaussian", seed=1,
                           return_stderr=True)
        b = trace_estimate(Hd, num_matvecs=40, method=method, probes="gaussian", seed=1,
                           return_stderr=True)
        np.testing.assert_allclose(b, a, rtol=1e-8)


def test_gaussian_accumulation_in_slabs_agrees_with_one_pass(monkeypatch):
    from curvkit import curvature

    A = poisson2d(12)
    runs = {}
    for entries in (1 << 16, 5 * 8):  # one slab; slabs of 5 rows for blocks of 8, a short last
        monkeypatch.setattr(curvature, "_CACHE_ENTRIES", entries)
        runs[entries] = [diag_estimate(A, num_matvecs=40, method=m, probes="gaussian", block=8,
                                       return_stderr=True) for m in ("hutchinson", "diag++")]
    for a, b in zip(*runs.values()):
        for x, y in zip(a, b):
            np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-15)
