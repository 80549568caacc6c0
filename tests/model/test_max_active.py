"""At most ``m`` endmembers per pixel: ``MaxActive`` (issue 12, item 6)."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment, nnls

import unmix
from conftest import shared_path
from unmix.cli import entry
from unmix.cli._config import build_term, validate_config
from unmix.estimators import NMF
from unmix.model import MaxActive, NonNegative

K, M = 4, 2


def planted(n: int = 300, n_channels: int = 40, noise: float = 0.005, seed: int = 0, two=False):
    """Pixels that each mix one or two (``two``: exactly two) of four peaked endmembers,
    plus a little Gaussian noise; returns ``(X, A, S)``."""
    rng = np.random.default_rng(seed)
    grid = np.arange(n_channels)
    S = np.stack([np.exp(-0.5 * ((grid - c) / 3.0) ** 2) for c in (6, 16, 26, 34)]) + 0.05
    A = np.zeros((n, K))
    for i in range(n):
        support = rng.choice(K, size=M if two else rng.integers(1, M + 1), replace=False)
        A[i, support] = rng.uniform(0.5, 2.0, size=support.size)
    X = np.clip(A @ S + noise * rng.standard_normal((n, n_channels)), 0.0, None)
    return X, A, S


def exhaustive_objective(X: np.ndarray, S: np.ndarray, m: int) -> float:
    """``1/2 sum_i min over supports |T| = m of min_{a >= 0} ||x_i - a S_T||^2`` by SciPy's
    NNLS, one pixel and support at a time (independent of unmix)."""
    total = 0.0
    for x in X:
        best = np.inf
        for T in itertools.combinations(range(S.shape[0]), m):
            _, r = nnls(S[list(T)].T, x)
            best = min(best, r * r)
        total += 0.5 * best
    return total


def fit_objective(X: np.ndarray, A: np.ndarray, S: np.ndarray) -> float:
    return 0.5 * float(np.sum((X - A @ S) ** 2))


def test_every_pixel_holds_at_most_m_endmembers_and_the_auto_solver_is_exact_anls():
    X, _, _ = planted()
    r = unmix.factorize(X, K, constraints=[NonNegative(), MaxActive(M)], random_state=0)
    assert r.spec["solver"] == "bpp"
    assert np.count_nonzero(r.A, axis=1).max() <= M
    assert r.A.min() >= 0 and r.S.min() >= 0
    assert np.all(np.diff(r.history["objective"][1:]) <= 1e-9 * r.history["objective"][1])


@pytest.mark.parametrize("solver", ["admm", "gradient"])
def test_projecting_solvers_hold_it_too(solver):
    X, _, _ = planted(n=120)
    cons = [NonNegative(), MaxActive(1)]
    r = unmix.factorize(X, K, solver=solver, constraints=cons, max_iter=30, random_state=0)
    assert np.count_nonzero(r.A, axis=1).max() <= 1 and r.A.min() >= 0


def test_hals_refuses_and_names_the_solvers_that_hold_it():
    X, _, _ = planted(n=50)
    with pytest.raises(unmix.UnsupportedError, match=r"MaxActive on A; solvers that do: .*'bpp'"):
        unmix.factorize(X, K, solver="hals", constraints=[NonNegative(), MaxActive(M)])


def test_the_projection_keeps_the_m_largest_non_negative_entries():
    c = MaxActive(2).bind(
        unmix.model.BindContext(
            n_pixels=2, n_channels=3, k=4, backend=unmix._backend.backend_of(np.zeros(1))
        )
    )
    P = c.project(np.array([[0.3, -1.0, 0.9, 0.5], [-1.0, -2.0, 0.4, -0.1]]))
    np.testing.assert_array_equal(P, [[0.0, 0.0, 0.9, 0.5], [0.0, 0.0, 0.4, 0.0]])


@pytest.mark.parametrize("m", [0, 1.5, True])
def test_m_must_be_a_positive_integer(m):
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        MaxActive(m)


@pytest.mark.parametrize("seed", [1, 2])
def test_planted_supports_are_recovered(seed):
    """Every pixel mixes two of four endmembers: the fit finds each pixel's pair (plain
    NMF, for contrast, spreads every noisy pixel over all four)."""
    X, A_true, S_true = planted(seed=seed, two=True)
    Tn = S_true / np.linalg.norm(S_true, axis=1, keepdims=True)
    share = {}
    for name, cons in (("max_active", [NonNegative(), MaxActive(M)]), ("plain", None)):
        r = unmix.factorize(X, K, constraints=cons, random_state=0)
        Sn = r.S / np.linalg.norm(r.S, axis=1, keepdims=True)
        _, cols = linear_sum_assignment(-(Tn @ Sn.T))  # true j -> fitted cols[j]
        share[name] = np.all((r.A[:, cols] > 0) == (A_true > 0), axis=1).mean()
    assert share["max_active"] >= 0.95, share
    assert share["plain"] < 0.5, share


@pytest.mark.parametrize("solver", ["bpp", "admm"])
def test_the_polish_is_exact_on_a_crop_of_the_eels_map(solver):
    """10 x 10 pixels, k = 5, m = 2: the fitted maps are the best support's NNLS of every
    pixel for the fitted S (within 1 %; in fact to rounding), whichever solver fitted."""
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    with h5py.File(path, "r") as f:
        cube = f["Experiments/EELS Spectrum Image/data"][()]
    X = cube[20:30, 15:25].reshape(100, -1).astype(np.float64)
    cons = [NonNegative(), MaxActive(2)]
    r = unmix.factorize(X, 5, solver=solver, constraints=cons, random_state=0, max_iter=200)
    assert np.count_nonzero(r.A, axis=1).max() <= 2
    best = exhaustive_objective(X, r.S, 2)
    got = fit_objective(X, r.A, r.S)
    assert got <= 1.01 * best
    np.testing.assert_allclose(got, best, rtol=1e-7)
    np.testing.assert_allclose(r.objective, got, rtol=1e-9)


def test_fit_maps_for_given_endmembers_is_the_exhaustive_refit():
    X, _, S = planted(n=60, seed=2)
    A = unmix.fit_maps(X, S, constraints=[MaxActive(1)])
    assert np.count_nonzero(A, axis=1).max() <= 1 and A.min() >= 0
    np.testing.assert_allclose(fit_objective(X, A, S), exhaustive_objective(X, S, 1), rtol=1e-9)
    A32 = unmix.fit_maps(X.astype(np.float32), S, constraints=[MaxActive(1)])
    assert A32.dtype == np.float32
    np.testing.assert_allclose(A32, A, rtol=1e-3, atol=1e-4 * A.max())


def test_float32_stays_float32_and_the_estimator_equals_the_function():
    X, _, _ = planted(n=100, seed=3)
    X32 = X.astype(np.float32)
    cons = [NonNegative(), MaxActive(M)]
    r = unmix.factorize(X32, K, constraints=cons, random_state=0)
    assert r.A.dtype == np.float32 and r.S.dtype == np.float32
    assert np.count_nonzero(r.A, axis=1).max() <= M
    est = NMF(K, constraints=cons, random_state=0)
    maps = est.fit_transform(X32)
    np.testing.assert_allclose(est.components_, r.S, rtol=1e-5)
    np.testing.assert_allclose(maps, r.A, rtol=1e-4, atol=1e-5 * float(r.A.max()))
    again = est.transform(X32)
    assert np.count_nonzero(again, axis=1).max() <= M


def test_many_supports_use_the_greedy_choice():
    rng = np.random.default_rng(4)
    S = rng.random((12, 30))
    X = rng.random((40, 12)) @ S  # C(12, 3) = 220 supports > MAX_SUBSETS
    A = unmix.fit_maps(X, S, constraints=[MaxActive(3)])
    assert np.count_nonzero(A, axis=1).max() <= 3 and A.min() >= 0
    top = np.argsort(-unmix.fit_maps(X, S), axis=1)[:, :3]  # the plain NNLS's 3 largest
    refit = sum(0.5 * nnls(S[t].T, x)[1] ** 2 for t, x in zip(top, X, strict=True))
    assert fit_objective(X, A, S) <= refit * (1 + 1e-9)


def test_toml_and_cli_name_it(tmp_path):
    cfg = {
        "factorize": {
            "k": 3,
            "constraints": [{"type": "NonNegative"}, {"type": "MaxActive", "m": 1}],
        }
    }
    validate_config(cfg)
    assert build_term({"type": "MaxActive", "m": 2}) == MaxActive(2)
    with pytest.raises(ValueError, match=r"MaxActive.*m must be an integer"):
        validate_config({"factorize": {"k": 3, "constraints": [{"type": "MaxActive", "m": 0}]}})
    X, _, _ = planted(n=64)
    path = tmp_path / "x.npy"
    np.save(path, X.reshape(8, 8, -1))
    out = tmp_path / "out"
    args = ["run", str(path), "-k", "3", "--max-active", "1", "-o", str(out), "-q", "--no-report"]
    assert entry(args) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert np.count_nonzero(np.asarray(res.A).reshape(64, -1), axis=1).max() <= 1
    assert {"type": "MaxActive", "m": 1, "target": "A"} in res.spec["constraints"]


@pytest.mark.parametrize("name", ["eels", "raman", "xrd"])
def test_one_endmember_a_pixel_keeps_every_component_of_a_real_map(name):
    """``MaxActive(1)`` (a hard segmentation) from the defaults: the NNDSVDa start gave
    every pixel to its first endmember (the mean spectrum), and restarts from the mean
    residual died again - 2 of 3 components lost on each map, at relative error
    0.068-0.071.  Now the start is SPA and a dead component restarts from the mean
    spectrum of a group of badly fitted pixels."""
    from conftest import real_pixels

    X = np.clip(real_pixels(name), 0, None)
    r = unmix.factorize(X, 3, constraints=[unmix.NonNegative(), MaxActive(1)], random_state=0)
    A = np.asarray(r.A)
    assert r.spec["init"] == "spa"
    assert r.spec["diagnostics"]["collapsed"] == []
    assert np.all(np.count_nonzero(A, axis=1) <= 1)
    assert np.all(np.count_nonzero(A, axis=0) >= 0.01 * A.shape[0])
    rel = np.linalg.norm(X - A @ np.asarray(r.S)) / np.linalg.norm(X)
    assert rel < 0.045
