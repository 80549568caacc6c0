"""Property tests over solvers x losses x constraints x regularizers."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from unmix.metrics import score

FROB_SOLVERS = ["mu", "hals", "bpp", "admm", "gradient"]
MONOTONE = ["mu", "hals", "bpp"]


def _fit(X, k=3, **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("max_iter", 150)
    kw.setdefault("tol", 0)
    return unmix.factorize(X, k, **kw)


def _assert_monotone(history, rel=1e-9):
    h = np.asarray(history)
    rises = np.diff(h)
    assert np.all(rises <= rel * abs(h[0])), f"objective rose by {rises.max():.3g}"


# ------------------------------------------------------------------ non-negativity
CASES = [
    ("mu", "frobenius"),
    ("mu", "kl"),
    ("mu", 0.5),
    ("mu", "itakura-saito"),
    ("hals", "frobenius"),
    ("bpp", "frobenius"),
    ("admm", "frobenius"),
    ("gradient", "frobenius"),
    ("gradient", "kl"),
]


@pytest.mark.parametrize(("solver", "loss"), CASES)
def test_factors_nonnegative_and_finite(mixture, solver, loss):
    X = mixture.X + 0.01  # strictly positive for Itakura-Saito
    r = _fit(X, solver=solver, loss=loss, max_iter=60)
    assert np.all(np.isfinite(r.A)) and np.all(np.isfinite(r.S))
    assert r.A.min() >= 0 and r.S.min() >= 0
    assert r.A.shape == (X.shape[0], 3) and r.S.shape == (3, X.shape[1])


# ------------------------------------------------------------- monotone objective
MONO_REGS = {
    "none": [],
    "L1(A)": [unmix.L1(1e-3)],
    "L2(S)": [unmix.L2(1e-2, target="S")],
    "L1(S)+L2(A)": [unmix.L1(1e-3, target="S"), unmix.L2(1e-3)],
    "smooth": [unmix.SpatialSmoothness(1e-2)],
}


@pytest.mark.parametrize("solver", MONOTONE)
@pytest.mark.parametrize("reg", list(MONO_REGS))
def test_objective_non_increasing_frobenius(mixture, solver, reg):
    r = _fit(mixture.X, solver=solver, regularizers=MONO_REGS[reg], spatial_shape=(20, 25))
    _assert_monotone(r.history["objective"])
    assert r.history["objective"][-1] < r.history["objective"][0]


@pytest.mark.parametrize("loss", ["kl", 0.5, 1.5, 3.0])
def test_mu_objective_non_increasing_beta(counts, loss):
    r = _fit(counts.X + 0.1, solver="mu", loss=loss, max_iter=100)
    _assert_monotone(r.history["objective"])


@pytest.mark.parametrize("solver", MONOTONE)
def test_objective_history_matches_direct_evaluation(mixture, solver):
    r = _fit(mixture.X, solver=solver, max_iter=40)
    direct = 0.5 * np.sum((mixture.X - r.A @ r.S) ** 2)
    assert r.objective == pytest.approx(direct, rel=1e-10)
    assert r.history["objective"][-1] == pytest.approx(direct, rel=1e-6)


# ---------------------------------------------------------------- hard constraints
@pytest.mark.parametrize("solver", ["admm", "gradient"])
def test_sum_to_one_holds(mixture, solver):
    r = _fit(
        mixture.X, solver=solver, constraints=[unmix.NonNegative(), unmix.SumToOne()], max_iter=80
    )
    assert np.abs(r.A.sum(axis=1) - 1).max() < 1e-6
    assert r.A.min() >= 0


def test_sum_to_one_other_total(mixture):
    r = _fit(mixture.X, solver="admm", constraints=[unmix.SumToOne(2.5)], max_iter=30)
    assert np.abs(r.A.sum(axis=1) - 2.5).max() < 1e-6


@pytest.mark.parametrize("solver", ["mu", "hals", "bpp", "admm", "gradient"])
def test_fixed_endmembers_unchanged(mixture, solver):
    known = mixture.S[:1]
    r = _fit(
        mixture.X,
        solver=solver,
        constraints=[unmix.NonNegative(), unmix.FixedEndmembers(known)],
        max_iter=60,
    )
    np.testing.assert_array_equal(r.S[0], known[0])
    assert not np.allclose(r.S[1:], 0)


@pytest.mark.parametrize("solver", ["mu", "hals", "admm"])
def test_partly_fixed_endmember_entries(mixture, solver):
    known = mixture.S[1:2].copy()
    mask = np.zeros_like(known, dtype=bool)
    mask[0, :10] = True
    fixed = unmix.FixedEndmembers(known, rows=[2], mask=mask)
    r = _fit(mixture.X, solver=solver, constraints=[unmix.NonNegative(), fixed], max_iter=40)
    np.testing.assert_array_equal(r.S[2, :10], known[0, :10])


def test_bpp_rejects_partly_fixed(mixture):
    fixed = unmix.FixedEndmembers(mixture.S[:1], mask=np.ones((1, 40), bool) & (np.arange(40) < 5))
    with pytest.raises(unmix.UnsupportedError, match="partly fixed"):
        _fit(mixture.X, solver="bpp", constraints=[unmix.NonNegative(), fixed])


@pytest.mark.parametrize("solver", ["mu", "hals", "bpp", "admm"])
def test_unit_norm_endmembers(mixture, solver):
    r = _fit(mixture.X, solver=solver, constraints=[unmix.NonNegative(), unmix.UnitNorm()])
    np.testing.assert_allclose(np.linalg.norm(r.S, axis=1), 1.0, atol=1e-6)
    rel = np.linalg.norm(mixture.X - r.A @ r.S) / np.linalg.norm(mixture.X)
    assert rel < 0.05


@pytest.mark.parametrize("solver", ["hals", "admm", "gradient"])
def test_bounds(mixture, solver):
    cons = [unmix.NonNegative(), unmix.Bounds(0.0, 0.3, target="A")]
    r = _fit(mixture.X, solver=solver, constraints=cons, max_iter=40)
    assert r.A.max() <= 0.3 + 1e-12 and r.A.min() >= 0


def test_bounds_per_channel_on_S(mixture):
    upper = np.full(40, 10.0)
    upper[:5] = 0.0
    r = _fit(mixture.X, solver="hals", constraints=[unmix.Bounds(0.0, upper, target="S")])
    assert np.all(r.S[:, :5] == 0)


def test_orthogonal_admm_matches_svd_subspace(mixture):
    X = mixture.X  # uncentered: a well-separated rank-3 subspace
    r_svd = unmix.factorize(X, 3, solver="svd")
    r_admm = _fit(X, solver="admm", constraints=[unmix.Orthogonal()], init="random", max_iter=300)
    np.testing.assert_allclose(r_admm.S @ r_admm.S.T, np.eye(3), atol=1e-8)
    # same subspace: principal angles ~ 0
    s = np.linalg.svd(r_svd.S @ r_admm.S.T, compute_uv=False)
    assert s.min() > 0.999
    assert r_admm.objective == pytest.approx(r_svd.objective, rel=1e-3)


def test_svd_is_pca(mixture):
    from sklearn.decomposition import PCA

    r = unmix.factorize(mixture.X, 3, preset="pca")
    skl = PCA(3).fit(mixture.X)
    overlap = np.abs(r.S @ skl.components_.T)
    np.testing.assert_allclose(np.sort(overlap.max(axis=1)), 1.0, atol=1e-8)
    np.testing.assert_allclose(r.reconstruct(), skl.inverse_transform(skl.transform(mixture.X)))


# ------------------------------------------------------------------ regularizers
def _roughness(A, shape):
    M = A.reshape(*shape, -1)
    return np.sum(np.diff(M, axis=0) ** 2) + np.sum(np.diff(M, axis=1) ** 2)


@pytest.mark.parametrize("solver", ["mu", "hals", "bpp", "admm"])
def test_l1_makes_maps_sparser(mixture, solver):
    base = _fit(mixture.X, solver=solver)
    sparse = _fit(mixture.X, solver=solver, regularizers=[unmix.L1(0.05)])
    frac = lambda A: np.mean(A <= 1e-3 * A.max())  # noqa: E731 (MU only approaches zero)
    assert frac(sparse.A) > frac(base.A) + 0.05


@pytest.mark.parametrize("solver", ["mu", "hals", "bpp", "admm"])
def test_spatial_smoothness_smooths_maps(mixture, solver):
    shape = mixture.spatial_shape
    base = _fit(mixture.X, solver=solver, spatial_shape=shape)
    smooth = _fit(
        mixture.X, solver=solver, spatial_shape=shape, regularizers=[unmix.SpatialSmoothness(1.0)]
    )
    assert _roughness(smooth.A, shape) < 0.7 * _roughness(base.A, shape)


def test_laplacian_value_matches_explicit_graph(mixture):
    import scipy.sparse as sp

    h, w = 4, 5
    rng = np.random.default_rng(0)
    A = rng.random((h * w, 2))
    from unmix._backend import backend_of
    from unmix.model import BindContext

    for neighbors in (4, 8):
        ctx = BindContext(h * w, 7, 2, backend_of(A), spatial_shape=(h, w))
        t = unmix.SpatialSmoothness(2.0, neighbors=neighbors).bind(ctx)
        idx = np.arange(h * w).reshape(h, w)
        edges = [(idx[:-1, :], idx[1:, :]), (idx[:, :-1], idx[:, 1:])]
        if neighbors == 8:
            edges += [(idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1])]
        rows = np.concatenate([a.ravel() for a, b in edges])
        cols = np.concatenate([b.ravel() for a, b in edges])
        W = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(h * w, h * w))
        W = W + W.T
        L = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
        assert t.value(A) == pytest.approx(0.5 * 2.0 * np.trace(A.T @ (L @ A)))


@pytest.mark.parametrize("solver", ["mu", "hals", "bpp", "admm"])
def test_min_volume_shrinks_simplex(mixture, solver):
    def logdet(S):
        S = S / np.linalg.norm(S, axis=1, keepdims=True)
        return np.linalg.slogdet(S @ S.T)[1]

    base = _fit(mixture.X, solver=solver)
    mv = _fit(mixture.X, solver=solver, regularizers=[unmix.MinVolume(0.5)])
    assert logdet(mv.S) < logdet(base.S)


def test_gaussian_map_filter_smooths(mixture):
    shape = mixture.spatial_shape
    base = _fit(mixture.X, solver="hals", spatial_shape=shape)
    r = _fit(
        mixture.X, solver="hals", spatial_shape=shape, regularizers=[unmix.GaussianMapFilter(1.5)]
    )
    assert _roughness(r.A, shape) < 0.5 * _roughness(base.A, shape)


@pytest.mark.parametrize("method", ["median", "gaussian"])
def test_spectral_smoothing_removes_spike(mixture, method):
    X = mixture.X.copy()
    X[:, 17] += 3 * X.max()  # a dead-hot channel in every pixel
    r = _fit(
        X, solver="hals", regularizers=[unmix.SpectralSmoothing(method=method, size=3, sigma=1.0)]
    )
    spike = r.S[:, 17] / np.maximum(0.5 * (r.S[:, 16] + r.S[:, 18]), 1e-12)
    assert spike.max() < 2.0


def test_spectral_smoothing_2d_patterns_removes_hot_pixel():
    rng = np.random.default_rng(0)
    patt = np.zeros((2, 16, 16))
    patt[0, 1:8, 1:8] = 1
    patt[1, 8:15, 7:14] = 1
    A = rng.random((80, 2))
    X = A @ patt.reshape(2, 256) + 0.05 * rng.random((80, 256))
    X[:, 3 * 16 + 12] += 5.0  # a hot detector pixel outside both disks
    kw = {"k": 2, "solver": "hals", "signal_shape": (16, 16), "max_iter": 60}
    plain = _fit(X, **kw)
    med = _fit(X, **kw, regularizers=[unmix.SpectralSmoothing(method="median", size=3)])
    assert med.endmembers().shape == (2, 16, 16)
    hot = lambda r: r.endmembers()[:, 3, 12].max() / r.endmembers().max()  # noqa: E731
    assert hot(plain) > 0.5 and hot(med) < 0.1
    corr = np.corrcoef(np.vstack([med.S, patt.reshape(2, 256)]))[:2, 2:]
    assert np.all(corr.max(axis=1) > 0.9)


# ---------------------------------------------------------------- planted factors
@pytest.mark.parametrize("solver", ["hals", "bpp", "admm", "mu"])
def test_recovers_planted_factors_40db(solver):
    mx = unmix.datasets.make_mixture(
        4, spatial_shape=(32, 32), n_channels=100, snr_db=40, random_state=1
    )
    X = np.clip(mx.X, 0, None)
    iters = 1500 if solver == "mu" else 800
    r = unmix.factorize(X, 4, solver=solver, random_state=0, max_iter=iters, tol=1e-8)
    s = score(r.S, mx.S, r.A, mx.A)
    assert s["sad"] < 1.0, s


def test_kl_beats_frobenius_on_low_counts():
    mx = unmix.datasets.make_mixture(
        3, spatial_shape=(24, 24), n_channels=60, noise="poisson", scale=2.0, random_state=3
    )
    kl = unmix.factorize(mx.X, 3, loss="kl", solver="mu", random_state=0, max_iter=800)
    fro = unmix.factorize(mx.X, 3, loss="frobenius", solver="hals", random_state=0, max_iter=800)
    assert score(kl.S, mx.S)["sad"] < score(fro.S, mx.S)["sad"]


# --------------------------------------------------------------- weights and masks
@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_zero_pixel_weight_ignores_pixel(mixture, solver):
    w = np.ones(mixture.X.shape[0])
    w[:50] = 0
    X2 = mixture.X.copy()
    X2[:50] = 100 * np.random.default_rng(0).random((50, 40))
    kw = {"solver": solver, "weights": unmix.Weights(pixels=w), "max_iter": 30}
    S0 = _fit(mixture.X, max_iter=5).S
    r1, r2 = _fit(mixture.X, **kw, init=(None, S0)), _fit(X2, **kw, init=(None, S0))
    np.testing.assert_allclose(r1.S, r2.S, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("solver", ["mu", "hals", "bpp", "admm"])
def test_masked_entries_do_not_matter(mixture, solver):
    rng = np.random.default_rng(1)
    mask = rng.random(mixture.X.shape) > 0.2
    X2 = mixture.X.copy()
    X2[~mask] = np.nan
    X3 = mixture.X.copy()
    X3[~mask] = 1e3
    S0 = _fit(mixture.X, max_iter=5).S
    r2 = _fit(X2, solver=solver, mask=mask, init=(None, S0), max_iter=30)
    r3 = _fit(X3, solver=solver, mask=mask, init=(None, S0), max_iter=30)
    np.testing.assert_allclose(r2.S, r3.S, rtol=1e-9, atol=1e-12)
    if solver in MONOTONE:
        _assert_monotone(r2.history["objective"])


def test_mask_fills_missing_entries(mixture):
    # MU is the exact weighted algorithm; HALS/BPP/ADMM use EM imputation (slower to
    # leave poor starts with many missing entries).
    rng = np.random.default_rng(2)
    mask = rng.random(mixture.X.shape) > 0.3
    r = _fit(np.where(mask, mixture.X, np.nan), solver="mu", mask=mask, max_iter=3000)
    truth = mixture.A @ mixture.S
    err = np.abs(r.reconstruct() - truth)[~mask].mean() / truth.mean()
    assert err < 0.05


def test_channel_weights_hals_equals_mu_objective(mixture):
    c = np.linspace(0.5, 2, 40)
    w = unmix.Weights(channels=c)
    r = _fit(mixture.X, solver="hals", weights=w, max_iter=200)
    direct = 0.5 * np.sum(c * (mixture.X - r.A @ r.S) ** 2)
    assert r.objective == pytest.approx(direct, rel=1e-10)
    _assert_monotone(r.history["objective"])


# -------------------------------------------------------------------- link (logistic)
def test_logistic_link_fits_bounded_data():
    rng = np.random.default_rng(0)
    A = rng.random((300, 2))
    S = 3 * rng.random((2, 30))
    X = 1 / (1 + np.exp(-(A @ S - 1.5)))
    link = unmix.Logistic(shift=1.5)
    r = _fit(X, k=2, solver="gradient", link=link, max_iter=1500, solver_options={"lr": 0.01})
    Y = 1 / (1 + np.exp(-(r.A @ r.S - 1.5)))
    assert np.sqrt(np.mean((Y - X) ** 2)) < 0.01
    assert r.history["objective"][-1] < 0.05 * r.history["objective"][0]


# ---------------------------------------------------------------- loop mechanics
def test_restarts_keep_best(mixture):
    r = unmix.factorize(mixture.X, 3, init="random", n_restarts=3, random_state=0, max_iter=20)
    assert len(r.restarts) == 3
    assert r.objective == min(x["objective"] for x in r.restarts)


def test_time_limit_and_callback(mixture):
    r = unmix.factorize(mixture.X, 3, max_iter=10_000, tol=0, time_limit=0.2)
    assert r.stop_reason == "time_limit" and r.n_iter < 10_000
    seen = []
    r = unmix.factorize(
        mixture.X,
        3,
        max_iter=50,
        tol=0,
        callback=lambda i: seen.append(i.iteration) or i.iteration == 7,
    )
    assert r.stop_reason == "callback" and seen == list(range(1, 8))


def test_converges_by_tol(mixture):
    r = unmix.factorize(mixture.X, 3, tol=1e-4, max_iter=1000)
    assert r.converged and r.stop_reason == "tol" and r.n_iter < 1000
    h = r.history["objective"]
    assert abs(h[-2] - h[-1]) <= 1e-4 * h[-2]


def test_same_seed_same_answer(mixture):
    r1 = unmix.factorize(mixture.X, 3, init="random", random_state=5, max_iter=30)
    r2 = unmix.factorize(mixture.X, 3, init="random", random_state=5, max_iter=30)
    np.testing.assert_array_equal(r1.S, r2.S)


def test_spec_records_problem(mixture):
    r = unmix.factorize(
        mixture.X,
        3,
        solver="hals",
        regularizers=[unmix.L1(1e-3)],
        spatial_shape=(20, 25),
        random_state=1,
        max_iter=5,
    )
    spec = r.spec
    assert spec["solver"] == "hals" and spec["k"] == 3 and spec["loss"] == "frobenius"
    assert spec["penalties"][0]["type"] == "L1" and spec["penalties"][0]["lam"] == 1e-3
    assert spec["spatial_shape"] == [20, 25] and spec["backend"] == "numpy"
    assert "L1(A)" in r.history


# ------------------------------------------------------------- compressed phase
@pytest.mark.parametrize("solver", ["hals", "mu", "bpp", "admm"])
def test_compress_reaches_exact_objective(mixture, solver):
    exact = unmix.factorize(mixture.X, 3, solver=solver, random_state=0, tol=1e-7, max_iter=2000)
    fast = unmix.factorize(
        mixture.X, 3, solver=solver, random_state=0, tol=1e-7, max_iter=2000, compress=True
    )
    phases = fast.history["phase"]
    assert phases[0] == 0 and (phases == 1).any() and phases[-1] == 2
    assert np.all(np.diff(phases) >= 0)
    assert fast.objective <= exact.objective * (1 + 1e-3)
    direct = 0.5 * np.sum((mixture.X - fast.A @ fast.S) ** 2)
    assert fast.objective == pytest.approx(direct, rel=1e-10)
    assert fast.spec["compress"] == 13


def test_compress_rejects_unsupported(mixture, counts):
    with pytest.raises(ValueError, match="compress= needs a Frobenius solver"):
        unmix.factorize(counts.X, 3, loss="kl", compress=True)
    with pytest.raises(ValueError, match="must be >= k"):
        unmix.factorize(mixture.X, 3, compress=2)
    with pytest.raises(ValueError, match="compress='yes' is unknown; choose one of"):
        unmix.factorize(mixture.X, 3, compress="yes")
