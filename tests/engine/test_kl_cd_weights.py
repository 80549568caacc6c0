"""Pixel weights and masks in the KL coordinate-descent solver (``solver="klcd"``).

The objective is ``sum_ij w_i M_ij KL(x_ij | (A S)_ij)`` (``X`` is (pixels, channels)): a
pixel of integer weight ``w`` counts as ``w`` copies of it, a pixel of weight 0 or an
entry the mask ``M`` leaves out does not count.  What a tree split on the whole grid
(terms that couple pixels), a masked pixel set (``MaskPixels``) and ``mask=`` /
``--mask-nonfinite`` fit; before, KL-CD refused them and ``auto`` took the gradient
solver (dense ``X``) or MU (sparse ``X``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from unmix.datasets import make_mixture

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def counts():
    """Poisson counts of 3 planted components, 20 x 20 pixels, 50 channels."""
    mx = make_mixture(
        3, spatial_shape=(20, 20), n_channels=50, noise="poisson", scale=8.0, random_state=2
    )
    return mx.X


def _weights(n, *, zeros=True):
    w = np.random.default_rng(1).integers(1, 4, n).astype(float)
    if zeros:
        w[::11] = 0.0
    return w


def _weighted_kl(X, A, S, w):
    Y = np.asarray(A, float) @ np.asarray(S, float)
    pos = X > 0
    terms = np.where(pos, X * np.log(np.where(pos, X, 1.0) / Y), 0.0) - X + Y
    return float(w @ terms.sum(axis=1))


def _fit(X, w, **kw):
    kw = {"loss": "kl", "solver": "klcd", "random_state": 0, **kw}
    return unmix.factorize(X, 3, weights=unmix.Weights(pixels=w), **kw)


def test_integer_weights_are_repeated_pixels(counts):
    """Weights 1-3 give the fit of the map with each pixel repeated that many times (and
    the pixels of weight 0 left out), from the same start."""
    w = _weights(counts.shape[0], zeros=False)
    rng = np.random.default_rng(0)
    A0 = rng.uniform(0.1, 1.0, (counts.shape[0], 3))
    S0 = rng.uniform(0.1, 1.0, (3, counts.shape[1]))
    weighted = _fit(counts, w, init=(A0, S0), max_iter=30, tol=0)
    rep = np.repeat(np.arange(counts.shape[0]), w.astype(int))
    copies = unmix.factorize(
        counts[rep], 3, loss="kl", solver="klcd", init=(A0[rep], S0), max_iter=30, tol=0
    )
    np.testing.assert_allclose(weighted.S, copies.S, rtol=1e-8)
    np.testing.assert_allclose(weighted.A[rep], copies.A, rtol=1e-8, atol=1e-12)
    assert weighted.objective == pytest.approx(copies.objective, rel=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_objective_is_the_weighted_divergence_and_never_increases(counts, sparse):
    w = _weights(counts.shape[0])
    X = sp.csr_array(counts) if sparse else counts
    r = _fit(X, w, max_iter=40, tol=0, solver_options={"sparse": sparse})
    assert r.spec["solver"] == "klcd"
    assert r.objective == pytest.approx(_weighted_kl(counts, r.A, r.S, w), rel=1e-9)
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= 1e-10 * h[0])
    assert np.all(r.A >= 0) and np.all(r.S >= 0)


def test_csr_and_dense_blocks_give_the_same_weighted_fit(counts):
    w = _weights(counts.shape[0])
    dense = _fit(counts, w, max_iter=25, tol=0, solver_options={"sparse": False})
    csr = _fit(counts, w, max_iter=25, tol=0, solver_options={"sparse": True})
    np.testing.assert_allclose(csr.S, dense.S, rtol=1e-7, atol=1e-12)
    assert csr.objective == pytest.approx(dense.objective, rel=1e-9)


def test_reaches_the_other_solvers_minimum_with_l1(counts):
    """The same weighted objective, L1 on both factors (``l1 / w_i`` per pixel; a pixel of
    weight 0 only pays the penalty: its maps go to 0): KL-CD stops where the gradient
    solver and MU stop."""
    w = _weights(counts.shape[0])
    l1 = [unmix.L1(0.5, target="A"), unmix.L1(0.5, target="S")]
    kw = {"regularizers": l1, "max_iter": 3000, "tol": 1e-9}
    cd = _fit(counts, w, **kw)
    assert cd.stop_reason == "tol"
    assert np.all(cd.A[w == 0] == 0)
    for other in ("gradient", "mu"):
        ref = _fit(counts, w, **{**kw, "solver": other})
        assert cd.objective == pytest.approx(ref.objective, rel=1e-6)


def test_pixels_of_weight_zero_keep_their_start(counts):
    w = _weights(counts.shape[0])
    rng = np.random.default_rng(4)
    A0 = rng.uniform(0.1, 1.0, (counts.shape[0], 3))
    S0 = rng.uniform(0.1, 1.0, (3, counts.shape[1]))
    r = _fit(counts, w, init=(A0, S0), max_iter=10, tol=0)
    np.testing.assert_array_equal(r.A[w == 0], A0[w == 0])
    assert not np.allclose(r.A[w > 0], A0[w > 0])


def test_float32_stays_float32(counts):
    w = _weights(counts.shape[0]).astype(np.float32)
    r = _fit(counts.astype(np.float32), w, max_iter=20, tol=0)
    assert r.A.dtype == np.float32 and r.S.dtype == np.float32
    ref = _fit(counts, w.astype(float), max_iter=20, tol=0)
    assert r.objective == pytest.approx(ref.objective, rel=1e-4)


def test_auto_picks_klcd_for_pixel_weights_and_not_for_channel_weights(counts):
    w = _weights(counts.shape[0])
    assert _fit(counts, w, solver="auto", max_iter=2).spec["solver"] == "klcd"
    cw = unmix.Weights(channels=np.linspace(0.5, 1.5, counts.shape[1]))
    kw = {"loss": "kl", "max_iter": 2, "random_state": 0}
    assert unmix.factorize(counts, 3, weights=cw, **kw).spec["solver"] == "gradient"
    with pytest.raises(unmix.UnsupportedError, match=r"klcd' does not support pixel/channel"):
        unmix.factorize(counts, 3, weights=cw, solver="klcd", **kw)


def test_a_coupled_tree_split_runs_on_klcd(counts, monkeypatch):
    """A split with map smoothing is fitted on the whole grid with membership weights
    (:mod:`unmix.hierarchy._terms`): ``auto`` now fits it by KL-CD."""
    import unmix.hierarchy._terms as terms

    solvers = []
    real = terms.factorize

    def spy(*args, **kw):
        res = real(*args, **kw)
        solvers.append((res.spec["solver"], "weights" in kw))
        return res

    monkeypatch.setattr(terms, "factorize", spy)
    unmix.hierarchical_nmf(
        counts,
        3,
        loss="kl",
        regularizers=[unmix.GaussianMapFilter(1.0)],
        spatial_shape=(20, 20),
        max_iter=30,
    )
    assert solvers and all(s == ("klcd", True) for s in solvers)


def _masked_kl(X, A, S, mask, w=None):
    Y = np.asarray(A, float) @ np.asarray(S, float)
    pos = X > 0
    terms = np.where(pos, X * np.log(np.where(pos, X, 1.0) / Y), 0.0) - X + Y
    w = np.ones(X.shape[0]) if w is None else w
    return float(np.sum((w[:, None] * terms)[mask]))


def _mask(shape, seed=0):
    mask = np.random.default_rng(seed).random(shape) > 0.08
    mask[:, 7] = False  # a dead channel
    return mask


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_objective_is_the_divergence_of_the_observed_entries(counts, sparse, weighted):
    mask = _mask(counts.shape)
    w = _weights(counts.shape[0]) if weighted else None
    kw = {"loss": "kl", "solver": "klcd", "random_state": 0, "max_iter": 40, "tol": 0}
    weights = None if w is None else unmix.Weights(pixels=w)
    r = unmix.factorize(
        counts, 3, mask=mask, weights=weights, solver_options={"sparse": sparse}, **kw
    )
    assert r.objective == pytest.approx(_masked_kl(counts, r.A, r.S, mask, w), rel=1e-9)
    h = np.asarray(r.history["objective"])
    assert np.all(np.diff(h) <= 1e-10 * h[0])


def test_a_masked_pixel_is_a_pixel_of_weight_zero(counts):
    rng = np.random.default_rng(3)
    A0 = rng.uniform(0.1, 1.0, (counts.shape[0], 3))
    S0 = rng.uniform(0.1, 1.0, (3, counts.shape[1]))
    gone = np.zeros(counts.shape[0], bool)
    gone[::5] = True
    kw = {"loss": "kl", "solver": "klcd", "init": (A0, S0), "max_iter": 25, "tol": 0}
    masked = unmix.factorize(counts, 3, mask=np.repeat(~gone[:, None], counts.shape[1], 1), **kw)
    weighted = unmix.factorize(counts, 3, weights=unmix.Weights(pixels=(~gone) * 1.0), **kw)
    np.testing.assert_allclose(masked.S, weighted.S, rtol=1e-9)
    np.testing.assert_allclose(masked.A, weighted.A, rtol=1e-9, atol=1e-14)
    assert masked.objective == pytest.approx(weighted.objective, rel=1e-10)


def test_csr_input_leaves_its_masked_stored_entries_out(counts):
    """A mask over stored entries of sparse ``X`` (their counts must not count): the fit
    of the CSR matrix is the fit of the dense array."""
    mask = _mask(counts.shape, seed=1)
    rng = np.random.default_rng(6)
    start = (rng.uniform(0.1, 1.0, (counts.shape[0], 3)), rng.uniform(0.1, 1.0, (3, 50)))
    kw = {"loss": "kl", "solver": "klcd", "init": start, "max_iter": 30, "tol": 0}
    dense = unmix.factorize(counts, 3, mask=mask, **kw)
    csr = unmix.factorize(sp.csr_array(counts), 3, mask=mask, **kw)
    assert np.count_nonzero(counts[~mask]) > 0
    np.testing.assert_allclose(csr.S, dense.S, rtol=1e-7, atol=1e-12)
    assert csr.objective == pytest.approx(dense.objective, rel=1e-9)
    assert csr.objective == pytest.approx(_masked_kl(counts, csr.A, csr.S, mask), rel=1e-9)


def test_masked_fit_reaches_the_gradient_solvers_minimum(counts):
    mask = _mask(counts.shape)
    kw = {"loss": "kl", "mask": mask, "random_state": 0, "max_iter": 3000, "tol": 1e-9}
    cd = unmix.factorize(counts, 3, solver="klcd", **kw)
    grad = unmix.factorize(counts, 3, solver="gradient", **kw)
    assert cd.stop_reason == "tol"
    assert cd.objective <= grad.objective * (1 + 1e-5)
    assert unmix.factorize(counts, 3, **{**kw, "max_iter": 2}).spec["solver"] == "klcd"


@pytest.mark.parametrize("which", ["pixels", "channels"])
def test_mus_judge_sees_the_weighted_objective_on_sparse_counts(which, monkeypatch):
    """MU on sparse KL asks the compiled kernels for the fit of a point its extrapolation
    judge weighs; with channel weights they returned the unweighted divergence (4,484
    against 5,475), now the loop evaluates it entry by entry; pixel weights they weigh."""
    from unmix.engine import _record
    from unmix.engine.solvers import _mu

    rng = np.random.default_rng(0)
    X = rng.poisson(0.3, (200, 60)).astype(float)
    n = X.shape[0] if which == "pixels" else X.shape[1]
    weights = unmix.Weights(**{which: np.linspace(0.5, 2.0, n)})
    pairs = []
    real = _mu.MU.fit_at

    def spy(self, p, A, S, state, ex):
        got = real(self, p, A, S, state, ex)
        pairs.append((got, float(_record.evaluate_fit(p, A, S))))
        return got

    monkeypatch.setattr(_mu.MU, "fit_at", spy)
    kw = {"loss": "kl", "solver": "mu", "random_state": 0, "max_iter": 60, "tol": 0}
    unmix.factorize(sp.csr_array(X), 3, weights=weights, **kw)
    assert pairs
    for got, want in pairs:
        assert got is None or got == pytest.approx(want, rel=1e-9)
    assert (which == "pixels") == all(got is not None for got, _ in pairs)
