"""Bounds on the model, ``lower <= A @ S <= upper``: ``ProductBounds`` (issue 12, item 2)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import unmix
from conftest import shared_path
from unmix._backend import backend_of
from unmix.cli._config import build_term
from unmix.model import BindContext, Bounds, NonNegative, ProductBounds


def eels_crop() -> np.ndarray:
    """20 x 20 pixels of the Cu/ZnO EELS map (400, 162), float64 counts."""
    with h5py.File(shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy"), "r") as f:
        cube = f["Experiments/EELS Spectrum Image/data"][()]
    return cube[10:30, 10:30].reshape(400, -1).astype(np.float64)


def mixture(n: int = 200, m: int = 30, k: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, k)) @ rng.random((k, m)) + 0.01 * rng.random((n, m))


def objective(X, A, S) -> float:
    return 0.5 * float(np.sum((X - A @ S) ** 2))


def test_eels_model_holds_the_bound_and_beats_bounded_factors():
    """Upper bound: the map's 99th percentile (below its maximum); the product-bounded fit
    holds it everywhere, and fits better than factor bounds that guarantee it (S <= 1,
    A <= u / k: every such model is <= u), which is what bounds on the factors can do."""
    X = eels_crop()
    k, u = 3, float(np.percentile(X, 99))
    assert u < X.max()
    r = unmix.factorize(X, k, constraints=[NonNegative(), ProductBounds(lower=0, upper=u)])
    assert r.spec["solver"] == "admm"
    Y = r.A @ r.S
    assert Y.max() <= u + 1e-6 and Y.min() >= -1e-6
    assert r.A.min() >= 0 and r.S.min() >= 0
    np.testing.assert_allclose(r.objective, objective(X, r.A, r.S), rtol=1e-9)
    cons = [NonNegative(), Bounds(upper=1.0, target="S"), Bounds(upper=u / k, target="A")]
    rb = unmix.factorize(X, k, constraints=cons)
    assert (rb.A @ rb.S).max() <= u + 1e-6
    assert r.objective <= 1.01 * rb.objective, (r.objective, rb.objective)
    plain = unmix.factorize(X, k)
    assert (plain.A @ plain.S).max() > u  # the bound binds: without it the model exceeds u


@pytest.mark.parametrize("solver", ["hals", "bpp", "mu", "gradient"])
def test_solvers_that_cannot_hold_it_refuse(solver):
    X = mixture()
    with pytest.raises(
        unmix.UnsupportedError, match=r"ProductBounds on A; solvers that do: 'admm'"
    ):
        unmix.factorize(X, 3, solver=solver, constraints=[NonNegative(), ProductBounds(upper=1.0)])


def test_weights_with_model_bounds_are_refused():
    X = mixture()
    w = unmix.Weights(pixels=np.linspace(1, 2, X.shape[0]))
    with pytest.raises(unmix.UnsupportedError, match="bounds on the model A @ S together with"):
        unmix.factorize(
            X, 3, solver="admm", weights=w, constraints=[NonNegative(), ProductBounds(upper=1.0)]
        )


def test_per_entry_bounds_a_model_below_the_data_and_float32_stays_float32():
    """``upper = X``: the model may nowhere exceed the measured values."""
    X = mixture(seed=1).astype(np.float32)
    r = unmix.factorize(X, 3, constraints=[NonNegative(), ProductBounds(upper=X)], max_iter=300)
    assert r.A.dtype == np.float32 and r.S.dtype == np.float32
    Y = r.A.astype(np.float64) @ r.S.astype(np.float64)
    assert np.all(Y <= X.astype(np.float64) * (1 + 1e-6) + 1e-6)
    assert np.all(Y >= -1e-6)


def test_per_channel_bounds(caplog):
    X = mixture(seed=2)
    hi = np.percentile(X, 95, axis=0)
    r = unmix.factorize(X, 3, constraints=[NonNegative(), ProductBounds(lower=0.0, upper=hi)])
    Y = r.A @ r.S
    assert np.all(Y <= hi + 1e-6) and np.all(Y >= -1e-6)
    assert "cannot meet both bounds" not in caplog.text


def test_a_positive_lower_bound_no_rescaling_meets_is_reported(caplog):
    """The last step only rescales pixels: where a pixel's model spans more than
    ``upper / lower`` no scale meets both bounds; the upper bound is held and a warning
    counts those pixels."""
    X = mixture(seed=2)
    lo, hi = np.full(X.shape[1], 0.3), np.percentile(X, 95, axis=0)
    r = unmix.factorize(X, 3, constraints=[NonNegative(), ProductBounds(lower=lo, upper=hi)])
    Y = r.A @ r.S
    assert np.all(Y <= hi + 1e-6)
    bad = int(np.sum(np.any(Y < lo - 1e-6, axis=1)))
    if bad:
        assert f"{bad} pixels cannot meet both bounds" in caplog.text


def test_fit_maps_holds_the_bound_for_given_endmembers():
    X = mixture(seed=3)
    S = unmix.factorize(X, 3, random_state=0).S
    u = float(np.percentile(X, 90))
    A = unmix.fit_maps(X, S, constraints=[ProductBounds(lower=0.0, upper=u)])
    assert A.min() >= 0 and (A @ S).max() <= u + 1e-6
    free = unmix.fit_maps(X, S)
    assert (free @ S).max() > u and objective(X, A, S) >= objective(X, free, S)


def test_the_last_step_rescales_each_pixel_at_the_least_loss():
    """One pixel over the bound: its maps are scaled by the feasible ``t`` nearest the
    least-squares scale ``<x, y> / <y, y>``; a feasible pixel moves to its best scale."""
    be = backend_of(np.zeros(1))
    ctx = BindContext(n_pixels=2, n_channels=3, k=2, backend=be)
    c = ProductBounds(upper=2.0).bind(ctx)
    S = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    A = np.array([[3.0, 0.0], [1.0, 0.0]])
    X = np.array([[3.0, 1.5, 0.0], [1.2, 0.6, 0.0]])
    out = c.finish(A, S, X @ S.T, slice(None))
    np.testing.assert_allclose(out[0], [2.0, 0.0], rtol=1e-12)  # t = 2/3: y_0 hits 2.0
    np.testing.assert_allclose(out[1], [1.2, 0.0], rtol=1e-12)  # t* = 1.2, feasible


def test_bad_bounds_are_refused_naming_the_fix():
    with pytest.raises(ValueError, match="give lower and/or upper"):
        ProductBounds()
    with pytest.raises(ValueError, match="lower holds NaN"):
        ProductBounds(lower=np.nan)
    X = mixture()
    with pytest.raises(ValueError, match="does not broadcast against X"):
        unmix.factorize(X, 3, constraints=[NonNegative(), ProductBounds(upper=np.ones(7))])
    with pytest.raises(ValueError, match="lower > upper somewhere"):
        unmix.factorize(X, 3, constraints=[NonNegative(), ProductBounds(lower=2.0, upper=1.0)])


def test_toml_names_it():
    assert build_term({"type": "ProductBounds", "lower": 0.0, "upper": 5.0}) == ProductBounds(
        lower=0.0, upper=5.0
    )
    with pytest.raises(ValueError, match="ProductBounds has no field"):
        build_term({"type": "ProductBounds", "high": 5.0})
