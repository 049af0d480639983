"""Diagonal estimation: probes, the Hutchinson estimator's statistics, exact diagonals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp

import curvkit
from curvkit import _core
from curvkit.benchmarks.problems import poisson2d, random_csr
from curvkit.curvature import diag_estimate
from conftest import to_device, to_host


def test_philox_known_answers():
    # Published known-answer vectors of Philox4x32-10.
    cases = [
        ([0, 0, 0, 0], 0, 0, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, 0xFFFFFFFF, 0xFFFFFFFF, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], 0xA4093822, 0x299F31D0,
         [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for ctr, k0, k1, want in cases:
        assert list(_core._philox4x32_10(ctr, k0, k1)) == want


def probes(xp, n, b, seed, first, dtype=np.float64, fill=_core.fill_rademacher):
    """Probes [first, first + b) of rows 0..n-1, drawn on xp's device, returned on the host."""
    Z = xp.empty((n, b), dtype)
    dev = 0 if xp is np else Z.device.id
    ptr = 0 if xp is np else xp.cuda.get_current_stream().ptr
    fill(Z, seed, first, dev, ptr)
    return to_host(Z)


def test_rademacher_probes_are_reproducible_signs(xp):
    Z = probes(xp, 3000, 300, seed=7, first=0)
    assert set(np.unique(Z)) == {-1.0, 1.0}
    assert np.array_equal(Z, probes(xp, 3000, 300, seed=7, first=0))
    # any sub-block can be drawn on its own: the generator is counted by (row, probe)
    assert np.array_equal(Z[:, 130:170], probes(xp, 3000, 40, seed=7, first=130))
    assert not np.array_equal(Z, probes(xp, 3000, 300, seed=8, first=0))
    # balanced signs, uncorrelated probes: sample mean and correlations within ~5 sigma
    assert abs(Z.mean()) < 5 / np.sqrt(Z.size)
    C = Z.T @ Z / Z.shape[0]
    off = C[~np.eye(300, dtype=bool)]
    assert np.abs(off).max() < 5.5 / np.sqrt(Z.shape[0])
    assert np.array_equal(probes(xp, 50, 10, 7, 0, np.float32), Z[:50, :10].astype(np.float32))


@pytest.mark.gpu
def test_cpu_and_gpu_draw_the_same_probes():
    import cupy as cp

    assert np.array_equal(probes(np, 1000, 77, 11, 5), probes(cp, 1000, 77, 11, 5))


def test_exact_diagonal(xp):
    A = random_csr(500, 7, seed=1)
    assert np.array_equal(to_host(diag_estimate(to_device(xp, A), method="exact")), A.diagonal())
    D = xp.asarray(A.toarray())
    assert np.array_equal(to_host(diag_estimate(D, method="exact")), A.diagonal())
    with pytest.raises(ValueError, match="explicit"):
        diag_estimate(lambda V: V, method="exact", n=5)


def test_hutchinson_is_unbiased_with_the_predicted_variance():
    rng = np.random.default_rng(2)
    n, k, seeds = 60, 16, 400
    B = rng.standard_normal((n, n))
    H = (B + B.T) / 2
    d = np.diag(H)
    est = np.array([diag_estimate(H, num_matvecs=k, seed=s) for s in range(seeds)])
    # unbiased: the mean over seeds is within 5 standard errors of diag(H), entry by entry
    per_entry_var = (np.sum(H**2, axis=1) - d**2) / k
    assert np.all(np.abs(est.mean(0) - d) < 5 * np.sqrt(per_entry_var / seeds))
    # E||d_hat - d||^2 = ||H - Diag(H)||_F^2 / k for Rademacher probes
    want = (np.sum(H**2) - np.sum(d**2)) / k
    got = np.mean(np.sum((est - d) ** 2, axis=1))
    assert 0.85 < got / want < 1.15, (got, want)


def test_stderr_matches_the_spread_over_seeds():
    H = poisson2d(12).toarray()
    results = [diag_estimate(H, num_matvecs=40, seed=s, return_stderr=True) for s in range(200)]
    est = np.array([r[0] for r in results])
    stderr = np.array([r[1] for r in results]).mean(0)
    ratio = est.std(0) / stderr
    assert 0.8 < np.median(ratio) < 1.2


def test_operator_kinds_and_blocks_agree(xp):
    A = random_csr(400, 9, seed=3)
    A = (A + A.T).tocsr()
    Ad = to_device(xp, A)
    ref = to_host(diag_estimate(Ad, num_matvecs=50, seed=4))
    dense = xp.asarray(A.toarray())
    for H, kw in [
        (dense, {}),
        (curvkit.CSRMatrix.from_sparse(Ad), {"block": 7}),
        (lambda V: dense @ V, {"n": 400, "xp": xp}),
        (curvkit.CSRMatrix.from_sparse(Ad), {"block": 50}),
    ]:
        got = to_host(diag_estimate(H, num_matvecs=50, seed=4, **kw))
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_float32_matrix_gives_float32_estimate():
    A = poisson2d(10).astype(np.float32)
    d = diag_estimate(A, num_matvecs=8)
    assert d.dtype == np.float32


def test_bad_arguments():
    H = np.eye(4)
    with pytest.raises(ValueError, match="num_matvecs"):
        diag_estimate(H)
    with pytest.raises(ValueError, match="num_matvecs"):
        diag_estimate(H, num_matvecs=0)
    with pytest.raises(ValueError, match="method"):
        diag_estimate(H, num_matvecs=4, method="xdiag++")
    with pytest.raises(ValueError, match="probes"):
        diag_estimate(H, num_matvecs=4, probes="uniform")
    with pytest.raises(ValueError, match="square"):
        diag_estimate(np.ones((3, 4)), num_matvecs=4)
    with pytest.raises(ValueError, match="square"):
        diag_estimate(sp.csr_matrix(np.ones((3, 4))), num_matvecs=4)
    with pytest.raises(ValueError, match="n "):
        diag_estimate(lambda V: V, num_matvecs=4)
    with pytest.raises(ValueError, match="returned shape"):
        diag_estimate(lambda V: V[:, :1], num_matvecs=4, n=4)
    with pytest.raises(TypeError, match="callable"):
        diag_estimate(42, num_matvecs=4)
    with pytest.raises(ValueError, match="block"):
        diag_estimate(H, num_matvecs=4, block=0)


def test_coloring_is_proper_and_small():
    from curvkit.curvature import coloring

    A = poisson2d(40)
    colors, count = coloring(A)
    assert count == 2  # red-black
    B = random_csr(3000, 5, seed=9)
    S = (B + B.T).tocsr()
    colors, count = coloring(sp.triu(S, format="csr"))  # one triangle is enough
    coo = S.tocoo()
    off = coo.row != coo.col
    assert np.all(colors[coo.row[off]] != colors[coo.col[off]])
    assert count <= np.diff(S.indptr).max() + 1
    assert colors.min() == 0 and colors.max() == count - 1


def test_probing_gives_the_exact_diagonal(xp):
    B = random_csr(2000, 4, seed=10)
    S = (B + B.T).tocsr()
    S.setdiag(np.random.default_rng(11).standard_normal(2000))
    from curvkit.curvature import coloring

    n_colors = coloring(S)[1]
    calls = []

    def hvp(V):  # a matrix-free H that counts its products
        calls.append(V.shape[1])
        return to_device(xp, S) @ V

    d = diag_estimate(hvp, method="probing", pattern=S, n=2000, xp=xp)
    np.testing.assert_allclose(to_host(d), S.diagonal(), rtol=1e-14, atol=1e-14)
    assert sum(calls) == n_colors  # one product per colour
    if xp is np:  # a host CSR H is its own pattern, in full or triangle storage
        np.testing.assert_allclose(diag_estimate(S, method="probing"), S.diagonal(), rtol=1e-14)
        U = curvkit.CSRMatrix.from_sparse(sp.triu(S, format="csr"), symmetric="upper")
        np.testing.assert_allclose(diag_estimate(U, method="probing"), S.diagonal(), rtol=1e-14)
    assert np.array_equal(
        to_host(diag_estimate(to_device(xp, poisson2d(20)), method="probing",
                              pattern=poisson2d(20))), poisson2d(20).diagonal())


def test_probing_needs_a_pattern():
    with pytest.raises(ValueError, match="pattern"):
        diag_estimate(lambda V: V, method="probing", n=4)
    with pytest.raises(ValueError, match="rows"):
        diag_estimate(lambda V: V, method="probing", n=4, pattern=sp.eye(5, format="csr"))


def test_coloring_bad_input():
    from curvkit.curvature import coloring

    with pytest.raises(ValueError, match="square"):
        coloring(sp.csr_matrix(np.ones((3, 4))))
    with pytest.raises(TypeError, match="CSR"):
        coloring(np.eye(3))
    colors, count = coloring(sp.csr_matrix((0, 0)))
    assert colors.shape == (0,) and count == 0
    colors, count = coloring(sp.eye(5, format="csr"))  # no off-diagonal entries: one colour
    assert count == 1 and not colors.any()


def gaussian_probes(xp, n, b, seed, first, dtype=np.float64):
    return probes(xp, n, b, seed, first, dtype, fill=_core.fill_gaussian)


def test_gaussian_probes_are_standard_normal_and_reproducible(xp):
    Z = gaussian_probes(xp, 2000, 101, seed=3, first=0)
    assert np.array_equal(Z[:, 37:90], gaussian_probes(xp, 2000, 53, seed=3, first=37))
    x = np.sort(Z.ravel())
    m = x.size
    assert abs(x.mean()) < 5 / np.sqrt(m) and abs(x.var() - 1) < 5 * np.sqrt(2 / m)
    # Kolmogorov-Smirnov distance to the normal CDF, against its 0.1% critical value
    from scipy.stats import norm

    ks = np.max(np.abs(norm.cdf(x) - np.arange(1, m + 1) / m))
    assert ks < 1.95 / np.sqrt(m)
    # independent of the Rademacher sequence of the same seed
    R = probes(xp, 2000, 101, seed=3, first=0)
    assert abs(np.mean(Z * R)) < 5 / np.sqrt(m)


def test_vectorised_and_portable_gaussian_probes_agree(tmp_path):
    # The AVX2 Box-Muller transform against the portable one (libm's log, cos, sin) in a
    # process that turns the vectorised kernels off; odd first probes and column counts too.
    import subprocess
    import sys

    here = gaussian_probes(np, 300, 37, 11, 5)
    script = ("import numpy as np\n"
              "from curvkit import _core\n"
              "Z = np.empty((300, 37))\n"
              "_core.fill_gaussian(Z, 11, 5, 0, 0)\n"
              "np.save(%r, Z)\n" % str(tmp_path / "z.npy"))
    env = dict(os.environ, CURVKIT_DISABLE_AVX2="1")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(here, np.load(tmp_path / "z.npy"), rtol=1e-14, atol=1e-15)


@pytest.mark.gpu
def test_cpu_and_gpu_draw_the_same_gaussian_probes():
    import cupy as cp

    np.testing.assert_allclose(gaussian_probes(np, 500, 33, 9, 1), gaussian_probes(cp, 500, 33, 9, 1),
                               rtol=1e-14, atol=1e-15)


def test_gaussian_bekas_estimate_has_the_predicted_variance():
    rng = np.random.default_rng(4)
    n, k, seeds = 40, 32, 400
    B = rng.standard_normal((n, n))
    H = (B + B.T) / 2 + 3 * np.eye(n)
    d = np.diag(H)
    gauss = np.array([diag_estimate(H, num_matvecs=k, probes="gaussian", seed=s)
                      for s in range(seeds)])
    # The normalisation cancels the diagonal's own term; what is left has variance
    # sum_{j != i} H_ij^2 / (k - 2) (E[1 / chi2_k] = 1 / (k - 2)), against / k for Rademacher.
    want = (np.sum(H**2) - np.sum(d**2)) / (k - 2)
    got = np.mean(np.sum((gauss - d) ** 2, axis=1))
    assert 0.85 < got / want < 1.15, (got, want)
    big = diag_estimate(H, num_matvecs=20_000, probes="gaussian", seed=1)
    np.testing.assert_allclose(big, d, atol=0.1)  # consistent
    d_hat, stderr = diag_estimate(H, num_matvecs=k, probes="gaussian", seed=2, return_stderr=True)
    assert np.all(stderr > 0) and np.all(np.isfinite(stderr))


def test_trace_estimators():
    from curvkit.curvature import trace_estimate

    rng = np.random.default_rng(5)
    n = 300
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    H = (Q * (np.arange(1, n + 1, dtype=float) ** -2.0)) @ Q.T  # power-law spectrum
    t = np.trace(H)
    hutch = [abs(trace_estimate(H, num_matvecs=60, method="hutchinson", seed=s) - t)
             for s in range(30)]
    hpp = [abs(trace_estimate(H, num_matvecs=60, method="hutch++", seed=s) - t) for s in range(30)]
    assert np.mean(hpp) < 0.1 * np.mean(hutch)  # deflation wins on a decaying spectrum
    # What is left after a 20-dimensional sketch is roughly the spectrum's tail beyond 20:
    # Hutchinson on it with 20 probes has standard deviation sqrt(2 sum_tail lambda^2 / 20).
    tail = np.arange(21, n + 1, dtype=float) ** -2.0
    assert np.mean(hpp) < 2 * np.sqrt(2 * np.sum(tail**2) / 20)
    S = poisson2d(15)
    for method in ("hutchinson", "hutch++"):  # CSR and callable H agree for a seed
        a = trace_estimate(S, num_matvecs=30, method=method, seed=1)
        b = trace_estimate(lambda V: S @ V, num_matvecs=30, method=method, seed=1, n=225)
        assert abs(a - b) < 1e-9 * abs(a)
    with pytest.raises(ValueError, match="method"):
        trace_estimate(H, num_matvecs=9, method="xtrace++")
    with pytest.raises(ValueError, match=">= 3"):
        trace_estimate(H, num_matvecs=2)
