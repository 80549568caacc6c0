"""Sparse X (SciPy CSR/CSC/COO, pydata/sparse): the same answer as dense X, from the nonzeros."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from conftest import low_dose_counts
from mpi_launch import HELPERS, mpiexec, needs_mpiexec
from unmix.blocks import SparsePixelData
from unmix.engine import fit_maps
from unmix.estimators import NMF, PCA


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    """Low-dose Poisson counts of 3 planted components (``conftest.low_dose_counts``)."""
    return low_dose_counts()


def _formats():
    out = [
        pytest.param(sp.csr_array, id="csr_array"),
        pytest.param(sp.csc_array, id="csc_array"),
        pytest.param(sp.coo_array, id="coo_array"),
        pytest.param(sp.csr_matrix, id="csr_matrix"),
    ]
    try:
        import sparse

        out.append(pytest.param(sparse.COO.from_numpy, id="pydata-COO"))
    except ImportError:  # pragma: no cover - the test extra installs it
        pass
    return out


def _same(r_sparse, r_dense, rtol=1e-9):
    assert r_sparse.n_iter == r_dense.n_iter
    assert r_sparse.objective == pytest.approx(r_dense.objective, rel=rtol)
    np.testing.assert_allclose(r_sparse.S, r_dense.S, rtol=1e-6, atol=1e-9 * r_dense.S.max())
    np.testing.assert_allclose(r_sparse.A, r_dense.A, rtol=1e-6, atol=1e-9 * r_dense.A.max())


@pytest.mark.parametrize("make", _formats())
def test_every_sparse_format_gives_the_dense_answer(counts, make):
    kw = dict(loss="kl", random_state=0, max_iter=60)
    _same(unmix.factorize(make(counts), 3, **kw), unmix.factorize(counts, 3, **kw))


@pytest.mark.parametrize(
    ("solver", "loss"),
    [
        ("klcd", "kl"),
        ("mu", "kl"),
        ("mu", "frobenius"),
        ("hals", "frobenius"),
        ("bpp", "frobenius"),
        ("admm", "frobenius"),
        ("gradient", "frobenius"),
        ("mu", "itakura-saito"),
    ],
)
def test_every_solver_gives_the_dense_answer(counts, solver, loss):
    X = counts + (0.1 if loss == "itakura-saito" else 0.0)  # IS needs X > 0
    kw = dict(loss=loss, solver=solver, random_state=1, max_iter=40)
    _same(unmix.factorize(sp.csr_array(X), 3, **kw), unmix.factorize(X, 3, **kw), rtol=1e-8)


@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_weights_and_masks_as_dense(counts, solver):
    rng = np.random.default_rng(5)
    n, m = counts.shape
    loss = "kl" if solver == "mu" else "frobenius"
    w = unmix.Weights(pixels=rng.uniform(0.5, 2, n), channels=rng.uniform(0.5, 2, m))
    kw = dict(loss=loss, solver=solver, random_state=0, max_iter=30)
    _same(
        unmix.factorize(sp.csr_array(counts), 3, weights=w, **kw),
        unmix.factorize(counts, 3, weights=w, **kw),
    )
    mask = rng.random(counts.shape) > 0.1
    _same(
        unmix.factorize(sp.csr_array(counts), 3, mask=mask, **kw),
        unmix.factorize(counts, 3, mask=mask, **kw),
    )


@pytest.mark.parametrize(("solver", "loss"), [("klcd", "kl"), ("mu", "kl"), ("hals", "fro")])
def test_fit_never_densifies(counts, solver, loss, monkeypatch):
    """KL (klcd, MU) and Frobenius (HALS) iterate on the nonzeros: no dense block read."""
    X = sp.csr_array(counts)
    calls = []
    real = SparsePixelData.x

    def spy(self, block):
        calls.append(block.index)
        return real(self, block)

    monkeypatch.setattr(SparsePixelData, "x", spy)
    r = unmix.factorize(X, 3, loss=loss, solver=solver, init="nndsvda", random_state=0)
    assert calls == []
    assert np.all(r.A >= 0) and np.all(r.S >= 0)


def test_kl_objective_from_nonzeros_matches_dense(counts):
    """The objective of sparse KL fits (nonzeros + column sums) is the dense one."""
    r = unmix.factorize(sp.csr_array(counts), 3, loss="kl", random_state=0, max_iter=30)
    Y = r.A @ r.S
    pos = counts > 0
    kl = np.sum(counts[pos] * np.log(counts[pos] / Y[pos])) - counts.sum() + Y.sum()
    assert r.objective == pytest.approx(kl, rel=1e-10)


def test_float32_stays_float32(counts):
    r = unmix.factorize(sp.csr_array(counts.astype(np.float32)), 3, loss="kl", max_iter=10)
    assert r.A.dtype == np.float32 and r.S.dtype == np.float32
    r = unmix.factorize(sp.csr_array(counts.astype(np.int32)), 3, max_iter=10)  # counts
    assert r.S.dtype == np.float32


def test_monotone_objective_mu_kl(counts):
    r = unmix.factorize(sp.csr_array(counts), 3, loss="kl", solver="mu", max_iter=50, tol=0)
    obj = np.asarray(r.history["objective"])
    assert np.all(np.diff(obj) <= 1e-9 * obj[0])


def test_estimator_and_fit_maps_take_sparse(counts):
    X = sp.csr_array(counts)
    est = NMF(3, loss="kl", random_state=0)
    A = est.fit_transform(X)
    np.testing.assert_allclose(A, NMF(3, loss="kl", random_state=0).fit_transform(counts))
    np.testing.assert_allclose(est.transform(X), est.transform(counts), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fit_maps(X, est.result_), est.transform(counts), atol=1e-10)
    with pytest.raises(ValueError, match="features"):
        est.transform(X[:, :10])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda X: unmix.factorize(X, 3, preprocessing=[unmix.Center()]), "dense X only"),
        (lambda X: unmix.factorize(X, 3, device="cpu"), "sparse data are fitted on the host"),
        (lambda X: PCA(2).fit(X), "TruncatedSVD"),
        (lambda X: unmix.factorize(-X, 3, loss="kl"), "negative entries"),
        (lambda X: unmix.factorize(X, 3, loss="kl", executor=_Dask()), "sparse X"),
    ],
)
def test_clear_errors(counts, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(sp.csr_array(counts))


def test_stored_nan_named(counts):
    X = sp.csr_array(counts)
    X.data[3] = np.nan
    with pytest.raises(ValueError, match="1 stored NaN or Inf"):
        unmix.factorize(X, 3)
    mask = np.ones(counts.shape, bool)
    r, c = X.tocoo().row[3], X.tocoo().col[3]
    mask[r, c] = False
    assert np.isfinite(unmix.factorize(X, 3, mask=mask, max_iter=5).objective)


@pytest.mark.slow
def test_real_eds_tem_map_as_csr():
    """The TEM EDS map (~6 counts a pixel, > 99 % zeros) as CSR: klcd's dense answer,
    without a dense block."""
    from conftest import SHARED_DATA

    path = os.path.join(SHARED_DATA, "eds", "eds_tem_bruker_64x64.npz")
    if not os.path.exists(path):
        pytest.skip("no ../shared/data")
    cube = np.load(path)["data"]
    X = cube.reshape(-1, cube.shape[-1]).astype(np.float32)
    Xs = sp.csr_array(X)
    assert Xs.nnz < 0.01 * X.size
    kw = dict(loss="kl", random_state=0, max_iter=60)
    r_sparse, r_dense = unmix.factorize(Xs, 4, **kw), unmix.factorize(X, 4, **kw)
    assert r_sparse.spec["solver"] == "klcd"
    assert r_sparse.n_iter == r_dense.n_iter
    assert r_sparse.objective == pytest.approx(r_dense.objective, rel=1e-5)
    assert r_sparse.S.dtype == np.float32


@pytest.mark.slow
@needs_mpiexec
def test_mpi_splits_sparse_rows_and_gives_the_serial_answer():
    run = mpiexec(2, str(HELPERS / "mpi_sparse.py"))
    assert run.returncode == 0, run.stderr[-3000:]
    cases = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [c["solver"] for c in cases] == ["klcd", "mu", "hals", "klcd"]  # last: masked
    for c in cases:
        assert max(c["dS"], c["dA"], c["dobj"]) < 1e-6, c
        (s0, e0, nnz0), (s1, e1, nnz1) = c["layout"]
        assert s0 == 0 and e0 == s1 and e1 == 120 and e0 % 20 == 0  # whole scan lines
        assert e0 < 60  # not half the rows each: the nonzeros are balanced
        assert abs(nnz0 - nnz1) <= 0.35 * (nnz0 + nnz1), c["layout"]


class _Dask:
    """Stands in for an executor that runs the fit on workers (Dask)."""

    drives_workers = True

    def factorize(self, X, k, **kw):  # pragma: no cover - must not be reached
        raise AssertionError("sparse X reached the workers")
