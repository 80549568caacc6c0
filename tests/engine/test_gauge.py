"""Filters between iterations do not walk the factors' scale: a model that nothing but
its filters holds keeps each endmember's norm (``Problem.gauge_floats``/``hold_gauge``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import unmix
from conftest import issue_collapsed, real_pixels, shared_path
from unmix.cli import entry
from unmix.engine._problem import Problem

SMOOTH_MAPS = [unmix.model.GaussianMapFilter(1.0)]


def _norms(S) -> np.ndarray:
    return np.linalg.norm(np.asarray(S, dtype=float), axis=1)


def _starts(record: list):
    def callback(info):
        if info.iteration == 1:
            record.append(_norms(info.S))

    return callback


def _xrd_kl_smoothed(solver: str, **kw):
    """KL with Gaussian map smoothing on the XRD map (11 x 13 scan, k 3), seed 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", unmix.ConvergenceWarning)
        return unmix.factorize(
            real_pixels("xrd"),
            3,
            loss="kl",
            solver=solver,
            regularizers=SMOOTH_MAPS,
            spatial_shape=(11, 13),
            random_state=0,
            **kw,
        )


@pytest.mark.parametrize("solver", ["klcd", "mu", "gradient"])
def test_kl_map_smoothing_on_xrd_keeps_its_scale(solver):
    """KL with Gaussian map smoothing on the XRD map (k 3): before, one endmember grew
    1.2x an iteration (1e16 after 200 klcd iterations, its map 1e-14) until the fit
    overflowed; the norm-based collapse rule then called the other two dead."""
    first: list = []
    r = _xrd_kl_smoothed(solver, max_iter=500, callback=_starts(first))
    A, S = np.asarray(r.A), np.asarray(r.S)
    assert r.stop_reason in ("tol", "max_iter")
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(S))
    np.testing.assert_allclose(_norms(S), first[0], rtol=1e-9)  # held from the first step
    assert A.max(axis=0).min() > 1e-3 * A.max()  # every map carries its component
    assert issue_collapsed(A, S) == []


@pytest.mark.parametrize("solver", ["klcd", "mu"])
def test_holding_the_gauge_changes_no_model(solver, monkeypatch):
    """For solvers whose step commutes with a scaling per component, the held fit is the
    free one in another gauge: the same ``A @ S`` at every iteration (50 iterations,
    before the free fit's scale has run away; the free klcd fit then takes two of its
    components for dead by their norms and goes on to other starts)."""

    def fit():
        models: list = []
        add = lambda info: models.append(np.asarray(info.A) @ np.asarray(info.S))  # noqa: E731
        r = _xrd_kl_smoothed(solver, max_iter=50, tol=0.0, n_restarts=1, callback=add)
        return r, models

    held, held_models = fit()
    monkeypatch.setattr(Problem, "gauge_floats", lambda self: False)
    free, free_models = fit()
    assert len(held_models) == 50  # the free fit may go on to other starts (below)
    for a, b in zip(held_models, free_models[:50], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9 * np.abs(b).max())
    walked = _norms(free.S) / _norms(held.S)  # klcd 1066x in 50 iterations, MU 1.6x
    assert walked.max() / walked.min() > 1.5  # the free gauge did walk


@pytest.mark.parametrize(
    "terms, held",
    [
        ([], False),  # no filter: the solver's own fixed point, nothing walks it
        (SMOOTH_MAPS, True),
        ([*SMOOTH_MAPS, unmix.model.L1(0.1)], False),  # the penalty holds the scale
        ([*SMOOTH_MAPS, unmix.model.L1(0.0)], True),  # off: the bare model's
    ],
)
def test_which_fits_hold_the_gauge(mixture, terms, held):
    first: list = []
    r = unmix.factorize(
        mixture.X,
        3,
        loss="kl",
        regularizers=terms,
        spatial_shape=mixture.spatial_shape,
        max_iter=30,
        random_state=0,
        callback=_starts(first),
    )
    assert np.allclose(_norms(r.S), first[0], rtol=1e-9) == held


def test_sum_to_one_maps_keep_the_simplex_with_a_filter(mixture):
    """Maps on a simplex fix the scale: the loop leaves them alone (rows sum to one)."""
    r = unmix.factorize(
        mixture.X,
        3,
        constraints=[unmix.NonNegative(), unmix.SumToOne()],
        regularizers=SMOOTH_MAPS,
        spatial_shape=mixture.spatial_shape,
        max_iter=30,
        random_state=0,
    )
    np.testing.assert_allclose(np.asarray(r.A).sum(axis=1), 1.0, atol=1e-9)


def test_tree_with_map_smoothing_on_raman_does_not_overflow(tmp_path, capsys):
    """``unmix tree --smooth 1 --max-iter 3000`` on the Raman map: before, every split's
    scale ran away (65 warnings, overflow and invalid values in its products)."""
    path = shared_path("raman", "raman_renishaw_streamline_49x45.npz")
    args = ["tree", path, "--leaves", "4", "--smooth", "1", "--max-iter", "3000"]
    assert entry([*args, "-o", str(tmp_path / "out"), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "overflow" not in err and "invalid value" not in err and "non-finite" not in err
