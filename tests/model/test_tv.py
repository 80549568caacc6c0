"""Total variation of the maps (issue 12, item 7): value, majorizer, fits, command line."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from unmix._backend import backend_of
from unmix.cli import entry
from unmix.model import BindContext

GRID = (4, 5)


def _bound(term, A, shape=GRID):
    ctx = BindContext(
        n_pixels=A.shape[0],
        n_channels=3,
        k=A.shape[1],
        backend=backend_of(A),
        spatial_shape=shape,
        nonneg_A=True,
        nonneg_S=True,
    )
    return term.bind(ctx)


def _brute(A, shape, eps):
    V = A.reshape(*shape, -1)
    total = 0.0
    for ax in range(len(shape)):
        D = np.diff(V, axis=ax)
        total += np.sum(np.sqrt(D * D + eps * eps) - eps)
    return total


def test_value_is_the_charbonnier_sum_over_grid_edges():
    A = np.random.default_rng(0).random((20, 2))
    tv = _bound(unmix.TotalVariation(0.7, eps=0.05), A)
    assert tv.value(A) == pytest.approx(0.7 * _brute(A, GRID, 0.05), rel=1e-12)


def test_default_eps_is_a_thousandth_of_the_largest_map_value():
    A = 4.0 * np.random.default_rng(1).random((20, 2))
    tv = _bound(unmix.TotalVariation(1.0), A)
    assert tv.value(A) == pytest.approx(_brute(A, GRID, 1e-3 * A.max()), rel=1e-12)


def test_model_is_tangent_and_majorizes():
    rng = np.random.default_rng(2)
    A0 = rng.random((20, 2))
    tv = _bound(unmix.TotalVariation(0.5, eps=0.02), A0)
    m = tv.model(A0)
    h = 1e-6
    for i, r in [(0, 0), (7, 1), (19, 0)]:  # the gradient of the penalty at A0
        E = np.zeros_like(A0)
        E[i, r] = h
        fd = (tv.value(A0 + E) - tv.value(A0 - E)) / (2 * h)
        assert m.grad[i, r] == pytest.approx(fd, rel=1e-5, abs=1e-8)
    for _ in range(20):  # the diagonal model lies above the penalty
        A = np.clip(A0 + 0.3 * rng.standard_normal(A0.shape), 0, None)
        D = A - A0
        bound = tv.value(A0) + np.sum(m.grad * D) + 0.5 * np.sum(m.curv * D * D)
        assert tv.value(A) <= bound + 1e-12


@pytest.fixture(scope="module")
def regions():
    """Three piecewise-constant regions (pure pixels), noise sigma 0.5 on gamma spectra."""
    rng = np.random.default_rng(0)
    labels = np.zeros((30, 30), int)
    labels[:, 10:20], labels[:, 20:], labels[10:20, :5] = 1, 2, 2
    A = np.eye(3)[labels].reshape(-1, 3)
    S = rng.gamma(2.0, size=(3, 40))
    X = np.clip(A @ S + 0.5 * rng.standard_normal((900, 40)), 0, None)
    return X, A @ S


def _error(r, truth):
    return np.linalg.norm(np.asarray(r.A) @ np.asarray(r.S) - truth) / np.linalg.norm(truth)


def test_total_variation_recovers_piecewise_constant_maps_better_than_the_laplacian(regions):
    X, truth = regions
    kw = {
        "constraints": [unmix.NonNegative(), unmix.UnitNorm()],
        "spatial_shape": (30, 30),
        "random_state": 0,
        "max_iter": 1000,
    }
    plain = _error(unmix.factorize(X, 3, **kw), truth)
    tv = unmix.factorize(X, 3, regularizers=[unmix.TotalVariation(0.2)], **kw)
    h = np.asarray(tv.history["objective"])
    assert np.all(np.diff(h) <= 1e-9 * h[0])  # HALS stays monotone
    laplacian = min(
        _error(unmix.factorize(X, 3, regularizers=[unmix.SpatialSmoothness(lam)], **kw), truth)
        for lam in (0.01, 0.03, 0.1)
    )
    assert _error(tv, truth) < 0.8 * plain and _error(tv, truth) < 0.8 * laplacian


def test_float32_stays_float32_and_the_grid_is_required(regions):
    X, _ = regions
    r = unmix.factorize(
        X.astype(np.float32),
        3,
        regularizers=[unmix.TotalVariation(0.1)],
        spatial_shape=(30, 30),
        max_iter=20,
        random_state=0,
    )
    assert np.asarray(r.A).dtype == np.float32
    with pytest.raises(ValueError, match="TotalVariation needs the scan grid"):
        unmix.factorize(X, 3, regularizers=[unmix.TotalVariation(0.1)], max_iter=2)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        unmix.TotalVariation(0.1, eps=-1.0)


def test_tv_flag_from_the_command_line(regions, tmp_path):
    X, _ = regions
    path = tmp_path / "scan.npy"
    np.save(path, X.reshape(30, 30, 40))
    out = tmp_path / "out"
    args = ["run", str(path), "-k", "3", "--tv", "0.2", "--seed", "0", "-q", "--no-report"]
    assert entry([*args, "-o", str(out)]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert "TotalVariation" in [t["type"] for t in res.spec["penalties"]]
    assert any(isinstance(t, unmix.UnitNorm) for t in res.terms)  # the maps' scale fixed
