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
    with pytest.raises(ValueError, match="gaussian"):
        diag_estimate(H, num_matvecs=8, method="xdiag", probes="gaussian")
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
