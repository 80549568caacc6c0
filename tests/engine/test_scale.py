"""Scale invariance: c * X gives the same fit as X (iterations, endmembers, maps).

For every constraint set whose parameters are scale-free; where a parameter is absolute,
it is multiplied by the power of ``c`` that keeps the objective's balance (an L1 on maps
with unit-norm spectra: ``c``; a Laplacian on maps that sum to one: ``c**2``)."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from conftest import shared_path

SCALES = [1e-12, 1e-6, 1e-3, 1e3, 1e6, 1e12]
S2O = [unmix.NonNegative(), unmix.SumToOne()]


def _sets(c):
    return {
        "NMF": {},
        "sum-to-one": {"constraints": S2O},
        "L1 (lam * c)": {
            "constraints": [unmix.NonNegative(), unmix.UnitNorm()],
            "regularizers": [unmix.L1(500.0 * c)],
        },
        "sum-to-one + Laplacian (lam * c^2)": {
            "constraints": S2O,
            "regularizers": [unmix.SpatialSmoothness(1e-3 * c * c)],
        },
        "sum-to-one + min-volume": {
            "constraints": S2O,
            "regularizers": [unmix.MinVolume(0.5, scale="residual")],
        },
        "unit-norm endmembers + min-volume (the command line's --min-volume)": {
            "constraints": [unmix.NonNegative(), unmix.UnitNorm()],
            "regularizers": [unmix.MinVolume(0.5, scale="residual")],
        },
        "HALS extrapolated": {"solver": "hals", "solver_options": {"extrapolate": True}},
        "KL": {"loss": "kl"},
        "map smoothing": {"regularizers": [unmix.GaussianMapFilter(1.0)]},
    }


def _unit(M):
    M = np.asarray(M, float)
    return M / np.linalg.norm(M, axis=-1, keepdims=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_sets(1.0)))
def test_c_times_x_gives_the_same_fit(name):
    img = unmix.load(shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy"))
    X, shape = np.asarray(img.unfold(), float), img.spatial_shape
    base = unmix.factorize(X, 3, spatial_shape=shape, random_state=0, **_sets(1.0)[name])
    for c in SCALES:
        r = unmix.factorize(X * c, 3, spatial_shape=shape, random_state=0, **_sets(c)[name])
        assert r.n_iter == base.n_iter, c
        cos = np.sum(_unit(r.S) * _unit(base.S), axis=1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() <= 0.5, c
        A, A0 = np.asarray(r.A) / np.linalg.norm(r.A), np.asarray(base.A) / np.linalg.norm(base.A)
        assert np.abs(A - A0).max() <= 1e-6 * np.abs(A0).max(), c


@pytest.mark.parametrize("solver", ["hals", "mu", "bpp", "admm"])
def test_planted_scale_invariance_every_frobenius_solver(mixture, solver):
    runs = [
        unmix.factorize(mixture.X * c, 3, solver=solver, random_state=0, max_iter=60)
        for c in (1e-9, 1.0, 1e9)
    ]
    assert len({r.n_iter for r in runs}) == 1
    for r in runs[1:]:
        np.testing.assert_allclose(_unit(r.S), _unit(runs[0].S), atol=1e-8)
