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

NONE = kn.Holes.none(40)  # the block's 40 pixels, no entry missing
ONE = kn.Holes.none(1)


@pytest.fixture(scope="module")
def block():
    """A 40 x 50 count block, about 15 % nonzeros, with a few counts above 1."""
    rng = np.random.default_rng(7)
    A = rng.uniform(0.1, 2.0, (40, 4))
    S = rng.uniform(0.0, 0.2, (4, 50))
    X = rng.poisson(A @ S).astype(np.float64)
    return X, A, S


def _weights(kind, n):
    """Pixel weights: all ones (an unweighted fit) or uneven with zeros."""
    if kind == "ones":
        return np.ones(n)
    w = np.random.default_rng(5).uniform(0.2, 3.0, n)
    w[::7] = 0.0
    return w


@pytest.mark.parametrize("weights", ["ones", "uneven"])
@pytest.mark.parametrize("l1", [0.0, 0.3])
def test_sparse_maps_pass_equals_the_dense_one(block, weights, l1):
    X, A, S = block
    w = _weights(weights, X.shape[0])
    Ad, As = A.copy(), A.copy()
    fit_d, q_d, h_d, c_d = kn.block_a_pass(X, Ad, S, l1, w, np.empty_like(X), 2, 1e-150, 1, NONE)
    B = kn.Sparse.from_csr(sp.csr_array(X), np.float64)
    fit_s, q_s, h_s, c_s = kn.sparse_a_pass(B, As, S, l1, w, 2, 1e-150, 1, NONE)
    np.testing.assert_allclose(As, Ad, rtol=1e-10, atol=1e-14)
    assert fit_s == pytest.approx(fit_d, rel=1e-12)
    np.testing.assert_allclose(q_s, q_d, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h_s, h_d, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(c_s[:, 0], w @ As, rtol=1e-12)  # (k, 1): no entry missing
    np.testing.assert_allclose(c_d[:, 0], w @ Ad, rtol=1e-12)
    # a pixel of weight 0 keeps its maps, or under L1 takes their minimum, 0
    np.testing.assert_array_equal(Ad[w == 0], A[w == 0] if l1 == 0 else 0.0)


def test_weighted_maps_pass_is_the_unweighted_one_with_l1_over_the_weight(block):
    """A pixel's map update minimizes ``w_i KL_i + l1 sum_r a_r``: the unweighted update
    with ``l1 / w_i``; the returned fit and sums take ``w_i`` in each pixel's term."""
    X, A, S = block
    w = _weights("uneven", X.shape[0])
    Aw = A.copy()
    fit_w, *_ = kn.block_a_pass(X, Aw, S, 0.4, w, np.empty_like(X), 2, 1e-150, 0, NONE)
    for i in np.flatnonzero(w > 0)[:5]:
        a1 = A[i : i + 1].copy()
        one = np.empty((1, X.shape[1]))
        kn.block_a_pass(X[i : i + 1], a1, S, 0.4 / w[i], np.ones(1), one, 2, 1e-150, 0, ONE)
        np.testing.assert_allclose(Aw[i], a1[0], rtol=1e-12)
    Y = A @ S
    rows = np.sum(Y, axis=1) - np.sum(np.where(X > 0, X * np.log(Y), 0.0), axis=1)
    assert fit_w == pytest.approx(float(w @ rows), rel=1e-12)


@pytest.mark.parametrize("weights", ["ones", "uneven"])
@pytest.mark.parametrize("rows", [(1, 2), (-1, 2), (1, -1), (-1, -1)])
def test_sparse_endmember_pass_equals_the_dense_one(block, rows, weights):
    X, A, S = block
    w = _weights(weights, X.shape[0])
    delta = np.linspace(-0.01, 0.02, X.shape[1])
    Yd = A @ S
    B = kn.Sparse.from_csr(sp.csr_array(X), np.float64)
    B.Y[:] = Yd[X > 0]
    dense = kn.block_s_pass(X, A, w, Yd, 0, delta, *rows, 1e-150)
    sparse = kn.sparse_s_pass(B, A, w, 0, delta, *rows, 1e-150)
    np.testing.assert_allclose(B.Y, Yd[X > 0], rtol=1e-14)
    for a, b in zip(sparse, dense, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    if rows[0] >= 0:  # the sums over pixels take each pixel's weight
        Y1 = A @ S + np.outer(A[:, 0], delta)
        ratio = np.where(X > 0, X / Y1, 0.0)
        np.testing.assert_allclose(dense[0], (w * A[:, rows[0]]) @ ratio, rtol=1e-10)
        want_h = (w * A[:, rows[0]] ** 2) @ (ratio / Y1)
        np.testing.assert_allclose(dense[1], want_h, rtol=1e-10)


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
    ones = np.ones(X.shape[0])
    assert kn.block_fit(X, A, S, ones, 1e-150, NONE) == pytest.approx(want, rel=1e-12)
    B = kn.Sparse.from_csr(sp.csr_array(X), np.float64)
    assert kn.sparse_fit(B, A, S, ones, 1e-150, NONE) == pytest.approx(want, rel=1e-12)
    fit_d, *_ = kn.block_a_pass(X, A.copy(), S, 0.0, ones, np.empty_like(X), 1, 1e-150, 0, NONE)
    assert fit_d == pytest.approx(want, rel=1e-12)
    w = _weights("uneven", X.shape[0])
    rows = np.sum(Y, axis=1) - np.sum(np.where(X > 0, X * np.log(Y), 0.0), axis=1)
    assert kn.block_fit(X, A, S, w, 1e-150, NONE) == pytest.approx(float(w @ rows), rel=1e-12)
    assert kn.sparse_fit(B, A, S, w, 1e-150, NONE) == pytest.approx(float(w @ rows), rel=1e-12)
