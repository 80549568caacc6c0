"""The gradient solver's KL terms over the nonzeros of mostly-zero counts
(``unmix.engine.solvers._gradient_counts``): the same numbers as the dense formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import unmix
import unmix.engine.solvers._gradient_counts as gc
from unmix._backend import backend_of
from unmix.engine.solvers._gradient_steps import curvature_Y


@pytest.fixture(scope="module")
def block():
    rng = np.random.default_rng(0)
    X = rng.poisson(0.03, (60, 80)).astype(np.float64)  # ~3 % nonzero
    Y = rng.gamma(2.0, 0.02, (60, 80))
    Y1 = Y * np.exp(0.3 * rng.standard_normal(Y.shape))
    return X, Y, Y1, backend_of(X)


def test_a_mostly_zero_block_becomes_counts_and_a_dense_one_does_not(block):
    X, _, _, _ = block
    view = gc.counts_view(X, beta=1.0, identity=True, W=None, trust=None)
    assert sp.issparse(view) and view.nnz == np.count_nonzero(X)
    np.testing.assert_array_equal(view.toarray(), X)
    dense = X + 1.0
    assert gc.counts_view(dense, beta=1.0, identity=True, W=None, trust=None) is dense
    for kw in ({"beta": 2.0}, {"identity": False}, {"W": np.ones_like(X)}, {"trust": 1.0}):
        args = {"beta": 1.0, "identity": True, "W": None, "trust": None, **kw}
        assert gc.counts_view(X, **args) is X
    column = np.ones((X.shape[0], 1))  # pixel weights alone: still summed by the nonzeros
    assert sp.issparse(gc.counts_view(X, beta=1.0, identity=True, W=column, trust=None))


def test_rows_of_counts_are_the_rows_of_the_block(block):
    X, _, _, _ = block
    view = gc.counts_view(X, beta=1.0, identity=True, W=None, trust=None)
    idx = np.array([3, 0, 17, 59, 17])
    np.testing.assert_array_equal(view[idx, :].toarray(), X[idx])


def _pixel_weights(X: np.ndarray, weighted: bool) -> np.ndarray | None:
    """None, or pixel weights (a column) spread over 0.2-3."""
    return np.random.default_rng(7).uniform(0.2, 3.0, (X.shape[0], 1)) if weighted else None


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("axis", [0, 1])
def test_sums_over_the_nonzeros_equal_the_dense_formulas(block, axis, weighted):
    X, Y, Y1, be = block
    W = _pixel_weights(X, weighted)
    C = gc.counts_view(X, beta=1.0, identity=True, W=W, trust=None)
    assert sp.issparse(C)
    sums = [
        lambda V: gc.divergence_sums(1.0, V, Y, W, axis, be=be),
        lambda V: gc.change_sums(1.0, V, Y, Y1, W, axis, be=be),
    ]
    for of in sums:
        np.testing.assert_allclose(of(C), of(X), rtol=1e-10, atol=1e-12)
    dY = Y1 - Y if W is None else W * (Y1 - Y)
    step = np.sum(dY, axis=axis)  # the caller's (weighted) sums of the step, from the factors
    np.testing.assert_allclose(
        gc.change_sums(1.0, C, Y, Y1, W, axis, be=be, step=step),
        gc.change_sums(1.0, X, Y, Y1, W, axis, be=be),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_and_curvature_over_the_nonzeros_equal_the_dense_ones(block, weighted):
    X, Y, _, be = block
    W = _pixel_weights(X, weighted)
    rng = np.random.default_rng(1)
    S, A = rng.random((4, 80)), rng.random((60, 4))
    C = gc.counts_view(X, beta=1.0, identity=True, W=W, trust=None)
    floor = 0.01
    np.testing.assert_allclose(
        gc.grad_maps(1.0, C, Y, W, 1.0, S, be=be, floor=floor),
        gc.grad_maps(1.0, X, Y, W, 1.0, S, be=be, floor=floor),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        gc.grad_S(1.0, C, Y, W, 1.0, A, be=be, floor=floor),
        gc.grad_S(1.0, X, Y, W, 1.0, A, be=be, floor=floor),
        rtol=1e-12,
    )
    h = gc.curvature(1.0, C, Y, W, be=be, floor=floor)
    assert sp.issparse(h)
    dense = curvature_Y(1.0, X, Y, W, be=be, floor=floor)
    np.testing.assert_allclose(h.toarray(), dense, rtol=1e-12)
    np.testing.assert_allclose(gc.left_times(A, h), A.T @ dense, rtol=1e-12)


def _sparse_counts() -> np.ndarray:
    rng = np.random.default_rng(2)
    A = rng.dirichlet(np.ones(3), 900)
    S = rng.gamma(0.3, 1.0, (3, 300))
    S /= S.sum(axis=1, keepdims=True)
    return rng.poisson(A @ S * 8.0).astype(np.float64)  # ~8 counts a pixel: ~97 % zeros


@pytest.mark.parametrize("fractions", [False, True])
def test_kl_sum_to_one_fit_takes_the_same_steps_over_the_nonzeros(monkeypatch, fractions):
    """The first iterations agree to rounding with the dense path (later ones may take
    other steps where a line search's test is decided by rounding), and both converge;
    also as fractions of each pixel's counts (pixels divided by their sums, weighted by
    them: the CLI's ``--loss kl --sum-to-one``)."""
    X = _sparse_counts()
    assert np.mean(X == 0) > 0.9
    kw = {"loss": "kl", "constraints": [unmix.NonNegative(), unmix.SumToOne()]}
    kw |= {"solver": "gradient", "random_state": 0}
    if fractions:
        kw["preprocessing"] = [unmix.NormalizePixels("l1", weights=True)]
    fast = unmix.factorize(X, 3, max_iter=6, **kw)
    full = unmix.factorize(X, 3, **kw)
    monkeypatch.setattr(gc, "MAX_DENSITY", -1.0)  # every block dense
    slow = unmix.factorize(X, 3, max_iter=6, **kw)
    slow_full = unmix.factorize(X, 3, **kw)
    h1, h2 = np.asarray(fast.history["objective"]), np.asarray(slow.history["objective"])
    # the weighted sums round differently: their paths part at 3e-7 after 5 iterations
    np.testing.assert_allclose(h1[:5], h2[:5], rtol=1e-8)
    np.testing.assert_allclose(h1, h2, rtol=1e-8 if not fractions else 1e-5)
    if not fractions:
        np.testing.assert_allclose(fast.S, slow.S, rtol=1e-6, atol=1e-9)
    else:  # a few channels took another step: within 1 % of the largest entry
        np.testing.assert_allclose(fast.S, slow.S, atol=1e-2 * np.abs(slow.S).max())
    assert full.stop_reason == slow_full.stop_reason == "tol"
    # (fractions: the weighted paths part by rounding and end at different points of a
    # flat valley, 0.17 % apart; without extrapolation the sparse path ends 0.24 % lower)
    assert full.objective == pytest.approx(
        slow_full.objective, rel=1e-3 if not fractions else 5e-3
    )
    assert np.all(np.diff(np.asarray(full.history["objective"])[1:]) <= 1e-9 * full.objective)


def test_float32_counts_stay_float32():
    X = _sparse_counts().astype(np.float32)
    kw = {"loss": "kl", "constraints": [unmix.NonNegative(), unmix.SumToOne()]}
    r = unmix.factorize(X, 3, solver="gradient", random_state=0, max_iter=20, **kw)
    assert r.A.dtype == r.S.dtype == np.float32
    assert np.all(np.diff(np.asarray(r.history["objective"])[1:]) <= 1e-5 * r.objective)


def test_sparse_input_is_fitted_from_its_csr_rows_never_densified(monkeypatch):
    """Sparse ``X`` with KL: the gradient solver takes each block's CSR rows (it read
    them densified, ``SparsePixelData.x``, every pass); the fit equals the dense one."""
    from unmix.blocks import SparsePixelData

    X = _sparse_counts()
    kw = {"loss": "kl", "constraints": [unmix.NonNegative(), unmix.SumToOne()]}
    kw |= {"solver": "gradient", "random_state": 0, "max_iter": 6}
    dense = unmix.factorize(X, 3, **kw)

    calls, dense_x = [], SparsePixelData.x

    def counted(self, block):
        calls.append(block.index)
        return dense_x(self, block)

    monkeypatch.setattr(SparsePixelData, "x", counted)
    r = unmix.factorize(sp.csr_array(X), 3, **kw)
    np.testing.assert_allclose(r.history["objective"], dense.history["objective"], rtol=1e-10)
    n_six = len(calls)  # the start and the result's checks read dense blocks; no pass does
    calls.clear()
    unmix.factorize(sp.csr_array(X), 3, **(kw | {"max_iter": 1}))
    assert n_six == len(calls)


def test_a_model_entry_falling_to_the_floor_changes_the_divergence_in_full(block):
    """The change of ``x log(x / y)`` when ``y`` falls by more than 1e16 (a trial that
    zeroes a model entry under a count): ``log1p`` of the relative change clipped above
    -1 stopped at ``log(4 eps)``, -35, and judged the trial ~20x too cheap."""
    from unmix.engine.solvers._gradient_steps import divergence_change

    X, Y, _, be = block
    Y1 = Y.copy()
    Y1[X > 0] = 1e-30  # every counted entry's model at (nearly) nothing
    tiny = be.tiny
    exact = (Y1 - Y) - X * (np.log(np.maximum(Y1, tiny)) - np.log(Y))
    np.testing.assert_allclose(divergence_change(1.0, X, Y, Y1, None, be=be, tiny=tiny), exact)
    C = gc.counts_view(X, beta=1.0, identity=True, W=None, trust=None)
    for axis in (0, 1):
        np.testing.assert_allclose(
            gc.change_sums(1.0, C, Y, Y1, None, axis, be=be), exact.sum(axis=axis), rtol=1e-12
        )
