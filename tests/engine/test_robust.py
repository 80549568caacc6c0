"""The robust l2,1 loss (``loss="l21"``): ``sum_i w_i ||x_i - a_i S||`` by iteratively
reweighted least squares; outlier pixels pull the endmembers far less than under
Frobenius."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest

import unmix
from unmix._backend import backend_of
from unmix.blocks import PixelData, mean_row_norm
from unmix.engine.solvers import HALS
from unmix.metrics import score
from unmix.model import make_loss
from unmix.model._losses import L21

MONOTONE = ["hals", "mu", "bpp"]


def _spike(X, fraction, seed, lo, hi):
    """Cosmic-ray-like outliers: ``fraction`` of the pixels (seeded), each with 1 to 3
    random channels raised by ``U(lo, hi)`` times that pixel's maximum."""
    rng = np.random.default_rng(seed)
    Xs = X.copy()
    n, m = X.shape
    idx = rng.choice(n, round(fraction * n), replace=False)
    for i in idx:
        c = rng.integers(1, 4)
        Xs[i, rng.choice(m, c, replace=False)] += rng.uniform(lo, hi, c) * X[i].max()
    return Xs, idx


@pytest.fixture(scope="module")
def spiked():
    """Planted data (500 pixels, 40 channels, k=3) with 3 % spiked pixels (5-10x)."""
    mx = unmix.datasets.make_mixture(3, spatial_shape=(20, 25), n_channels=40, random_state=0)
    X, idx = _spike(mx.X, 0.03, 0, 5, 10)
    return SimpleNamespace(X=X, clean=mx.X, S=mx.S, idx=idx)


def _fit(X, **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("max_iter", 150)
    kw.setdefault("tol", 0)
    kw.setdefault("loss", "l21")
    return unmix.factorize(X, 3, **kw)


def _l21(X, A, S, pixels=None, channels=None):
    R = X - A @ S
    sq = R * R if channels is None else R * R * channels[None, :]
    norms = np.sqrt(sq.sum(axis=1))
    return float(np.sum(norms if pixels is None else pixels * norms))


def _assert_monotone(history, rel=1e-9):
    h = np.asarray(history)
    rises = np.diff(h)
    assert np.all(rises <= rel * abs(h[0])), f"objective rose by {rises.max():.3g}"


# ------------------------------------------------------------------ the objective
@pytest.mark.parametrize("solver", MONOTONE)
def test_l21_objective_never_increases(spiked, solver):
    r = _fit(spiked.X, solver=solver)
    _assert_monotone(r.history["objective"])
    assert r.history["objective"][-1] < 0.5 * r.history["objective"][0]


def test_l21_objective_never_increases_with_a_penalty(spiked):
    regs = [unmix.L1(0.05)]
    cons = [unmix.NonNegative(), unmix.UnitNorm()]
    r = _fit(spiked.X, solver="hals", regularizers=regs, constraints=cons)
    _assert_monotone(r.history["objective"])
    A, S = r.A, r.S
    direct = _l21(spiked.X, A, S) + 0.05 * np.abs(A).sum()
    assert r.objective == pytest.approx(direct, rel=1e-10)


def test_admm_decreases_the_l21_objective(spiked):
    r = _fit(spiked.X, solver="admm")
    h = r.history["objective"]
    assert h[-1] < 0.5 * h[0]
    assert r.objective == pytest.approx(_l21(spiked.X, r.A, r.S), rel=1e-10)


@pytest.mark.parametrize("solver", MONOTONE)
def test_recorded_value_is_the_sum_of_residual_norms(spiked, solver):
    r = _fit(spiked.X, solver=solver, max_iter=40)
    direct = _l21(spiked.X, r.A, r.S)
    assert r.objective == pytest.approx(direct, rel=1e-10)
    assert r.history["objective"][-1] == pytest.approx(direct, rel=1e-10)
    assert r.history["fit"][-1] == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize(
    ("solver", "which"), [("hals", "pixels"), ("mu", "pixels"), ("hals", "channels")]
)
def test_weights_enter_the_l21_value(spiked, solver, which):
    """Pixel weights multiply each pixel's norm; channel weights sit inside it."""
    rng = np.random.default_rng(2)
    n, m = spiked.X.shape
    w = rng.uniform(0.5, 2.0, n if which == "pixels" else m)
    r = _fit(spiked.X, solver=solver, max_iter=30, weights=unmix.Weights(**{which: w}))
    direct = _l21(spiked.X, r.A, r.S, **{which: w})
    assert r.objective == pytest.approx(direct, rel=1e-10)
    _assert_monotone(r.history["objective"])


def test_mask_with_mu(spiked):
    mask = np.random.default_rng(3).random(spiked.X.shape) > 0.1
    X = np.where(mask, spiked.X, np.nan)
    r = _fit(X, solver="mu", mask=mask, max_iter=40)
    R = np.where(mask, spiked.X - r.A @ r.S, 0.0)
    assert r.objective == pytest.approx(np.linalg.norm(R, axis=1).sum(), rel=1e-10)
    _assert_monotone(r.history["objective"])


def test_tol_stops_on_the_l21_value(spiked):
    r = _fit(spiked.X, solver="hals", max_iter=5000, tol=1e-6)
    assert r.converged and r.stop_reason == "tol" and r.n_iter < 5000
    h = r.history["objective"]
    assert abs(h[-2] - h[-1]) <= 1e-6 * h[-2]


def test_zero_pixels_and_filters_are_fine(spiked):
    X = spiked.X.copy()
    X[:5] = 0.0  # fitted exactly (residual 0): the floor eps holds the weights
    r = _fit(X, solver="hals", max_iter=40)
    _assert_monotone(r.history["objective"])
    assert np.all(np.isfinite(r.A)) and np.all(np.isfinite(r.S))
    smooth = [unmix.GaussianMapFilter(1.0)]  # filters move the iterate: weights taken anew
    f = _fit(X, solver="hals", max_iter=10, regularizers=smooth, spatial_shape=(20, 25))
    assert f.objective == pytest.approx(_l21(X, f.A, f.S), rel=1e-10)


# ------------------------------------------------------------------ robustness
def test_l21_resists_spiked_pixels(spiked):
    """Planted data, 3 % of the pixels with 5-10x spikes: the l2,1 endmembers stay near
    the truth, Frobenius's do not."""
    kw = {"solver": "hals", "max_iter": 3000, "tol": 1e-7}
    l21 = _fit(spiked.X, **kw)
    fro = _fit(spiked.X, **kw, loss="frobenius")
    assert max(score(l21.S, spiked.S)["sad_each"]) < 3.0
    assert max(score(fro.S, spiked.S)["sad_each"]) > 20.0


def test_start_leaves_the_outliers_out(spiked, caplog):
    """The SVD of the NNDSVD start leaves out the spiked pixels (a least-squares SVD
    would follow them)."""
    from unmix.engine._assemble import build_model, build_problem
    from unmix.engine._inputs import prepare_input
    from unmix.engine._robust import trimmed_svd

    inp = prepare_input(spiked.X, mask=None, weights=None, device=None, steps=[])
    opts = {"loss": "l21", "constraints": None, "regularizers": ()}
    model = build_model(opts, None, "hals", None)
    given = {"executor": None, "block_size": None, "spatial_shape": None, "signal_shape": None}
    p = build_problem(inp, model, 3, given, init=None)
    with caplog.at_level(logging.INFO, logger="unmix"):
        U, _, Vt = trimmed_svd(p, 3, np.random.default_rng(0))
    assert np.all(U[spiked.idx] == 0)
    assert "outlier pixels left out" in caplog.text
    clean = np.linalg.svd(np.delete(spiked.X, spiked.idx, axis=0), full_matrices=False)[2][:3]
    overlap = np.linalg.svd(Vt @ clean.T, compute_uv=False)  # cosines of principal angles
    assert overlap.min() > 0.999


def test_inlier_bound():
    from unmix.engine._robust import inlier_bound

    X = np.ones((100, 4))
    data = PixelData(X, backend_of(X), block_size=30)
    norms = np.ones((100, 1))
    norms[:3] = 100.0
    assert inlier_bound(data, norms) == pytest.approx(3.0)
    assert inlier_bound(data, np.zeros((100, 1))) == float("inf")


# ------------------------------------------------------------------ capabilities
def test_auto_picks_a_reweightable_solver(spiked):
    r = _fit(spiked.X, solver="auto", max_iter=5)
    assert r.spec["solver"] == "hals" and r.spec["loss"] == "l21"


@pytest.mark.parametrize("solver", ["gradient", "klcd"])
def test_other_solvers_refuse_l21(spiked, solver):
    msg = rf"solver='{solver}' does not support loss='l21'; solvers that do: 'admm', 'bpp', "
    with pytest.raises(unmix.UnsupportedError, match=msg + "'hals', 'mu'"):
        _fit(spiked.X, solver=solver)


def test_svd_refuses_l21(spiked):
    with pytest.raises(unmix.UnsupportedError, match=r"solver='svd' does not support loss='l21'"):
        _fit(spiked.X, solver="svd")


def test_mask_needs_full_weights_for_l21(spiked):
    mask = np.ones(spiked.X.shape, dtype=bool)
    mask[0, 0] = False
    with pytest.raises(
        unmix.UnsupportedError,
        match=r"pixel weights and a mask \(loss='l21' weights the pixels\)",
    ):
        _fit(spiked.X, solver="hals", mask=mask)


def test_penalties_on_the_maps_need_solvers_that_weight_them(spiked):
    for solver in ("bpp", "admm"):
        with pytest.raises(
            unmix.UnsupportedError, match="pixel weights together with penalties on A"
        ):
            _fit(spiked.X, solver=solver, regularizers=[unmix.L1(0.1)])


def test_compress_and_onepass_are_refused(spiked):
    with pytest.raises(ValueError, match=r"compress= is not available with loss='l21'"):
        _fit(spiked.X, compress=5)
    with pytest.raises(ValueError, match=r"kernel='onepass' does not run loss='l21'"):
        _fit(spiked.X, solver_options={"kernel": "onepass"})
    assert _fit(spiked.X, max_iter=3).spec["compress"] is None


def test_float32_stays_float32(spiked):
    X32 = spiked.X.astype(np.float32)
    r32 = _fit(X32, solver="hals", max_iter=60)
    r64 = _fit(spiked.X, solver="hals", max_iter=60)
    assert r32.A.dtype == np.float32 and r32.S.dtype == np.float32
    assert np.all(np.isfinite(r32.history["objective"]))
    assert r32.objective == pytest.approx(r64.objective, rel=1e-3)
    direct = _l21(X32.astype(float), r32.A.astype(float), r32.S.astype(float))
    assert r32.objective == pytest.approx(direct, rel=1e-5)


def test_checkpoint_resume_gives_the_same_answer(spiked, tmp_path):
    kw = {"solver": "admm", "max_iter": 30}  # ADMM: persistent dual variables
    ref = _fit(spiked.X, **kw)
    path = tmp_path / "fit.ckpt.h5"
    calls = {"n": 0}

    def interrupt(info):
        calls["n"] += 1
        if calls["n"] == 17:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(spiked.X, **kw, checkpoint=path, checkpoint_every=0, callback=interrupt)
    res = _fit(spiked.X, **kw, checkpoint=path, resume=True)
    np.testing.assert_array_equal(res.S, ref.S)
    np.testing.assert_array_equal(res.history["objective"], ref.history["objective"])


# ------------------------------------------------------------------ weights refreshed
class _SpyHALS(HALS):
    """HALS that records, at every setup, its ``xx`` and the weighted ``||X||^2`` of the
    data it was set up on."""

    def __init__(self, **options):
        super().__init__(**options)
        self.seen = []

    def setup(self, p, A, S):
        state = super().setup(p, A, S)
        X = np.asarray(p.data.X)
        w = np.ones((X.shape[0], 1)) if p.data.pixel_w is None else np.asarray(p.data.pixel_w)
        self.seen.append((state["xx"], float(np.sum(w * X * X)), w.copy()))
        return state


def test_weights_and_their_cached_quantities_follow_the_residuals(spiked):
    spy = _SpyHALS()
    r = _fit(spiked.X, solver=spy, max_iter=6)
    assert len(spy.seen) == 7  # the start, then after each iteration
    for xx, direct, _ in spy.seen:
        assert xx == pytest.approx(direct, rel=1e-12)
    w_last = spy.seen[-1][2][:, 0]
    norms = np.linalg.norm(spiked.X - r.A @ r.S, axis=1)
    eps = 1e-6 * np.linalg.norm(spiked.X, axis=1).mean()
    np.testing.assert_allclose(w_last, 1.0 / np.maximum(norms, eps), rtol=1e-10)
    assert w_last[spiked.idx].max() < np.delete(w_last, spiked.idx).min()  # spikes count less


def test_with_pixel_weights_recomputes_what_depends_on_them():
    rng = np.random.default_rng(0)
    X = rng.random((50, 8))
    c = rng.uniform(0.5, 2.0, 8)
    data = PixelData(X, backend_of(X), block_size=16, weights=unmix.Weights(channels=c))
    before = data.norm2()
    f = rng.uniform(0.1, 3.0, (50, 1))
    copy = data.with_pixel_weights(f)
    assert copy.norm2() == pytest.approx(float(np.sum(f * X * X * c)), rel=1e-12)
    assert copy.norm21() == pytest.approx(float(np.sum(f[:, 0] * np.sqrt((X * X * c).sum(1)))))
    assert data.norm2() == before and data.pixel_w is None
    np.testing.assert_allclose(data.row_norm2()[:, 0], (X * X * c).sum(1))


# ------------------------------------------------------------------ BPP's pixel weights
def test_bpp_pixel_weights_equal_repeated_pixels(spiked):
    """Integer pixel weights are repeated pixels (the capability l2,1 relies on)."""
    X = spiked.clean
    reps = np.random.default_rng(4).integers(1, 4, X.shape[0])
    S0 = _fit(X, loss="frobenius", max_iter=3).S
    kw = {"solver": "bpp", "loss": "frobenius", "max_iter": 20}
    w = _fit(X, **kw, weights=unmix.Weights(pixels=reps.astype(float)), init=(None, S0))
    big = _fit(np.repeat(X, reps, axis=0), **kw, init=(None, S0))
    np.testing.assert_allclose(w.S, big.S, rtol=1e-8, atol=1e-10)
    assert w.objective == pytest.approx(big.objective, rel=1e-8)


# ------------------------------------------------------------------ names, CLI
def test_loss_names_and_checks():
    assert isinstance(make_loss("l21"), L21) and isinstance(make_loss(" L2,1 "), L21)
    loss = L21(floor=1e-4)
    assert make_loss(loss) is loss and loss.name == "l21" and not loss.is_frobenius
    with pytest.raises(ValueError, match=r"L21: beta=1\.0"):
        L21(beta=1.0)
    with pytest.raises(ValueError, match="L21: floor=0"):
        L21(floor=0)
    unmix.engine.check_factorize_params({"loss": "l21"})


def test_cli_runs_l21(tmp_path):
    from unmix.cli import entry

    rng = np.random.default_rng(0)
    X = rng.gamma(1.0, size=(30, 3)) @ rng.gamma(2.0, size=(3, 40))
    path = tmp_path / "scan.npy"
    np.save(path, X.reshape(6, 5, 40))
    args = ["run", str(path), "-k", "3", "--loss", "l21", "--sparsity", "0.3", "--seed", "0"]
    out = tmp_path / "out"
    assert entry([*args, "--no-report", "--max-iter", "20", "-o", str(out), "-q"]) == 0
    res = unmix.load_result(out / "result.h5")
    assert res.spec["loss"] == "l21" and res.spec["solver"] == "hals"
    assert res.spec["penalties"][0]["lam"] == pytest.approx(0.3)  # per unit of norm


# ------------------------------------------------------------------ acceptance (real data)
def _eels_fit(X, loss, lam):
    """Sparse maps (L1 on A) with unit-norm endmembers: plain NMF with k=3 is not
    identifiable on this map (clean fits from different starts differ by up to 49 deg
    at the same objective), with the L1 term random starts agree within ~1.4 deg."""
    return unmix.factorize(
        X,
        3,
        loss=loss,
        solver="hals",
        constraints=[unmix.NonNegative(), unmix.UnitNorm()],
        regularizers=[unmix.L1(lam)],
        max_iter=3000,
        tol=1e-7,
        random_state=0,
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Components .* collapsed:RuntimeWarning")  # Frobenius
@pytest.mark.parametrize("seed", [0, 1])
def test_eels_acceptance_spiked_pixels(seed):
    """CuZn EELS map, k=3, 3 % of the pixels (seeded) hit by cosmic-ray-like spikes (1-3
    channels each at 50-100x the pixel's maximum): the l2,1 endmembers (Hungarian-matched
    by angle to the clean l2,1 fit) stay within 2 deg; Frobenius's move > 5 deg.

    Both fits use the same model and defaults (NNDSVDa start; for l2,1 its SVD leaves
    the outlier pixels out); the L1 weights: l2,1 0.3 per unit of residual norm (an
    outlier pulls its map at most by the cosine between its spike and an endmember, below
    0.3 for these smooth edges), Frobenius ``--sparsity 0.01`` of the clean map.
    """
    from conftest import SHARED_DATA

    path = os.path.join(SHARED_DATA, "eels", "CuZn_EELS_mapping_tutorial.hspy")
    if not os.path.exists(path):
        pytest.skip(f"shared dataset {path} not available")
    X = np.asarray(unmix.load(path).unfold(), dtype=np.float64)
    Xs, _ = _spike(X, 0.03, seed, 50, 100)
    lam = {"l21": 0.3, "frobenius": 0.01 * mean_row_norm(X)}
    moved = {}
    for loss in lam:
        clean, spiked = _eels_fit(X, loss, lam[loss]), _eels_fit(Xs, loss, lam[loss])
        moved[loss] = max(score(spiked.S, clean.S)["sad_each"])
    assert moved["l21"] < 2.0, moved
    assert moved["frobenius"] > 5.0, moved
