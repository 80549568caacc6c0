"""The CSR kernels of ``solver="klcd"``: the maps pass and the endmember passes on a
block's nonzeros give what the dense kernels give on the same block, the fit's log term
(products of the model over unit counts) matches ``sum x log y``, the objective stays
monotone, and float32 stays float32."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import unmix

pytest.importorskip("numba")

from unmix.engine.kernels import _klcd as kn


@pytest.fixture(scope="module")
def block():
    """A 40 x 50 count block, about 15 % nonzeros, with a few counts above 1."""
    rng = np.random.default_rng(7)
    A = rng.uniform(0.1, 2.0, (40, 4))
    S = rng.uniform(0.0, 0.2, (4, 50))
    X = rng.poisson(A @ S).astype(np.float64)
    return X, A, S


def test_sparse_maps_pass_equals_the_dense_one(block):
    X, A, S = block
    Ad, As = A.copy(), A.copy()
    csum = S.sum(axis=1)
    fit_d, q_d, h_d, _ = kn.block_a_pass(X, Ad, S, csum, np.empty_like(X), 2, 1e-150, 1)
    B = kn.Sparse.from_csr(sp.csr_array(X), np.float64)
    fit_s, q_s, h_s, _ = kn.sparse_a_pass(B, As, S, 0.0, 2, 1e-150, 1)
    np.testing.assert_allclose(As, Ad, rtol=1e-10, atol=1e-14)
    assert fit_s == pytest.approx(fit_d, rel=1e-12)
    np.testing.assert_allclose(q_s, q_d, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h_s, h_d, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("rows", [(1, 2), (-1, 2), (1, -1), (-1, -1)])
def test_sparse_endmember_pass_equals_the_dense_one(block, rows):
    X, A, S = block
    delta = np.linspace(-0.01, 0.02, X.shape[1])
    Yd = A @ S
    B = kn.Sparse.from_csr(sp.csr_array(X), np.float64)
    B.Y[:] = Yd[X > 0]
    dense = kn.block_s_pass(X, A, Yd, 0, delta, *rows, 1e-150)
    sparse = kn.sparse_s_pass(B, A, 0, delta, *rows, 1e-150)
    np.testing.assert_allclose(B.Y, Yd[X > 0], rtol=1e-14)
    for a, b in zip(sparse, dense, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_fit_log_term_matches_the_plain_sum():
    rng = np.random.default_rng(3)
    x = rng.choice([1.0, 1.0, 1.0, 2.0, 0.5], 400)
    for scale in (1e-120, 1e-3, 1.0, 1e90):  # runs of products past the 1e+-150 limits
        y = rng.uniform(0.5, 2.0, 400) * scale
        y[::37] = 0.0  # floored at tiny
        ref = float(np.sum(x * np.log(np.maximum(y, 1e-150))))
        assert kn._xlogy(x, y, 1e-150) == pytest.approx(ref, rel=1e-13)


def _counts():
    X, _, _ = _planted(3)
    return sp.csr_array(X)


def _planted(seed):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.0, 1.0, (300, 3))
    S = rng.uniform(0.0, 0.5, (3, 90))
    return rng.poisson(A @ S).astype(np.float64), A, S


@pytest.mark.parametrize("inner_S", [1, 3])
def test_csr_objective_never_increases(inner_S):
    X = _counts()
    r = unmix.factorize(
        X, 3, loss="kl", solver="klcd", max_iter=50, tol=0, random_state=0,
        solver_options={"inner_S": inner_S, "inner_A": 2},
    )  # fmt: skip
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= 1e-10 * h[0]), np.diff(h).max()


def test_csr_and_dense_input_give_the_same_fit():
    X = _counts()
    kw = {"loss": "kl", "solver": "klcd", "max_iter": 8, "tol": 0, "random_state": 0}
    a = unmix.factorize(X, 3, **kw)
    b = unmix.factorize(X.toarray(), 3, solver_options={"sparse": True}, **kw)
    np.testing.assert_allclose(a.S, b.S, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a.history["objective"], b.history["objective"], rtol=1e-10)


def test_csr_float32_stays_float32():
    X = _counts()
    kw = {"loss": "kl", "solver": "klcd", "max_iter": 15, "tol": 0, "random_state": 0}
    r = unmix.factorize(X.astype(np.float32), 3, **kw)
    assert r.A.dtype == np.float32 and r.S.dtype == np.float32
    ref = unmix.factorize(X, 3, **kw)
    assert r.objective == pytest.approx(ref.objective, rel=1e-4)


def test_the_fit_of_a_point_is_the_divergence_on_dense_and_csr_blocks(block):
    """The fits the loop's judge of an extrapolated step asks for: ``sum y - x log y``
    at ``Y = A S`` (what the maps pass returns before it moves), dense and CSR alike."""
    X, A, S = block
    Y = A @ S
    want = float(np.sum(Y) - np.sum(X[X > 0] * np.log(Y[X > 0])))
    assert kn.block_fit(X, A, S, 1e-150) == pytest.approx(want, rel=1e-12)
    B = kn.Sparse.from_csr(sp.csr_array(X), np.float64)
    assert kn.sparse_fit(B, A, S, 1e-150) == pytest.approx(want, rel=1e-12)
    fit_d, *_ = kn.block_a_pass(X, A.copy(), S, S.sum(axis=1), np.empty_like(X), 1, 1e-150, 0)
    assert fit_d == pytest.approx(want, rel=1e-12)
