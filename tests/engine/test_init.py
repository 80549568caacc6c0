"""Initializations: shapes, non-negativity, data scale, pure-pixel pickers."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from unmix.datasets import load_cuzn_eels
from unmix.metrics import score

METHODS = ["random", "nndsvd", "nndsvda", "nndsvdar", "spa", "vca"]


def _start(X, k, init, **kw):
    r = unmix.factorize(X, k, init=init, max_iter=1, random_state=0, **kw)
    return np.sqrt(2 * r.history["fit"][0]) / np.linalg.norm(X)


@pytest.mark.parametrize("init", METHODS)
def test_init_scaled_to_data(mixture, init):
    assert _start(mixture.X, 3, init) < 1.0
    assert _start(1000.0 * mixture.X, 3, init) < 1.0


@pytest.mark.parametrize(("init", "bound"), [("nndsvda", 0.5), ("nndsvdar", 0.5), ("random", 1.0)])
def test_init_on_counts_has_data_scale(init, bound):
    """scikit-learn's nndsvda starts the Cu/ZnO EELS counts at relative error ~3,600."""
    X = load_cuzn_eels()["data"].reshape(-1, 162)
    assert _start(X, 4, init) < bound


@pytest.mark.parametrize("init", ["spa", "vca"])
def test_pure_pixel_pickers_find_endmembers(init):
    mx = unmix.datasets.make_mixture(
        4, spatial_shape=(30, 30), n_channels=60, snr_db=50, purity=30, random_state=2
    )
    X = np.clip(mx.X, 0, None)
    r = unmix.factorize(X, 4, init=init, max_iter=1, random_state=0)
    s = score(r.S, mx.S)
    assert s["sad"] < 3.0, s


def test_custom_init_fills_missing_factor(mixture):
    r = unmix.factorize(mixture.X, 3, init=(None, mixture.S), max_iter=1, tol=0)
    assert r.history["fit"][0] < 0.01 * 0.5 * np.sum(mixture.X**2)
    r2 = unmix.factorize(mixture.X, 3, init=(mixture.A, None), max_iter=1, tol=0)
    assert r2.history["fit"][0] < 0.01 * 0.5 * np.sum(mixture.X**2)


def test_custom_init_shape_errors(mixture):
    with pytest.raises(ValueError, match="expected \\(k, channels\\)"):
        unmix.factorize(mixture.X, 3, init=(None, mixture.S[:2]))
    with pytest.raises(ValueError, match="at least one"):
        unmix.factorize(mixture.X, 3, init=(None, None))
    with pytest.raises(ValueError, match="unknown"):
        unmix.factorize(mixture.X, 3, init="kmeans")


@pytest.mark.parametrize("solver", ["bpp", "hals", "admm", "mu", "gradient"])
def test_a_start_with_two_equal_endmembers_is_fitted(mixture, solver):
    """A user's start with two equal spectra (a previous fit's near-copies): BPP stopped
    with ``LinAlgError: Singular matrix``; every solver now fits it, down from the start."""
    S0 = np.asarray(mixture.S).copy()
    S0[1] = S0[0]
    A0 = np.full((mixture.X.shape[0], 3), 0.3)
    r = unmix.factorize(mixture.X, 3, init=(A0, S0), solver=solver, max_iter=50)
    assert np.all(np.isfinite(r.A)) and np.all(np.isfinite(r.S))
    assert r.history["fit"][-1] < r.history["fit"][0]
