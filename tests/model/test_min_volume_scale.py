"""MinVolume needs something to hold the endmembers' scale (SumToOne on the maps or UnitNorm
on the endmembers); alone, the endmembers shrink and the penalty fades.  With UnitNorm its
``delta`` is on the unit scale; the command line adds the unit norm to --min-volume."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import unmix
from conftest import real_pixels, shared_path
from unmix import MinVolume, NonNegative, SumToOne, UnitNorm
from unmix.cli import entry
from unmix.datasets import make_mixture


def _planted() -> np.ndarray:
    mix = make_mixture(3, spatial_shape=(20, 20), n_channels=40, snr_db=30, random_state=0)
    return np.maximum(mix.X, 0.0)


def test_alone_it_warns_that_nothing_holds_the_scale():
    with pytest.warns(RuntimeWarning, match="nothing holds the endmembers' scale"):
        unmix.factorize(_planted(), 3, regularizers=[MinVolume(0.5)], max_iter=5)


@pytest.mark.parametrize("constraints", [[NonNegative(), SumToOne()], [NonNegative(), UnitNorm()]])
def test_with_the_scale_held_it_does_not_warn(constraints):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="MinVolume without")
        unmix.factorize(
            _planted(), 3, constraints=constraints, regularizers=[MinVolume(0.5)], max_iter=5
        )


def test_unit_norm_endmembers_take_delta_as_given():
    """``scale="residual"`` multiplied delta by the mean squared pixel norm, the scale of
    endmembers under sum-to-one; unit-norm endmembers have diagonal 1 in S S^T."""
    X = 1e4 * _planted()

    def delta(constraints) -> float:
        mv = MinVolume(0.5, delta=0.1, scale="residual")
        res = unmix.factorize(X, 3, constraints=constraints, regularizers=[mv], max_iter=2)
        return res.spec["effective"]["MinVol(S)"]["delta"]

    assert delta([NonNegative(), UnitNorm()]) == pytest.approx(0.1)
    mean_sq = float(np.mean(np.sum(X**2, axis=1)))
    assert delta([NonNegative(), SumToOne()]) == pytest.approx(0.1 * mean_sq, rel=1e-6)


def test_unit_norm_min_volume_shrinks_the_raman_simplex_and_converges():
    """Raman map, k 3: alone, MinVolume(0.5, "residual") ran to max_iter at plain NMF's
    fit (the endmembers shrank); with unit-norm endmembers it stops by tol, the simplex of
    the unit endmembers is far smaller, for a few per cent of fit."""
    X = real_pixels("raman")
    plain = unmix.factorize(X, 3, random_state=0)
    mv = MinVolume(0.5, scale="residual")
    res = unmix.factorize(
        X, 3, constraints=[NonNegative(), UnitNorm()], regularizers=[mv], random_state=0
    )

    def log_volume(S):
        U = np.asarray(S) / np.linalg.norm(S, axis=1, keepdims=True)
        return np.linalg.slogdet(U @ U.T)[1]

    def rel(r):
        return np.linalg.norm(X - r.A @ r.S) / np.linalg.norm(X)

    assert res.stop_reason == "tol"
    assert log_volume(res.S) < log_volume(plain.S) - 1.0
    assert rel(res) <= 1.05 * rel(plain)


def test_command_line_min_volume_holds_the_scale_and_converges(tmp_path):
    path = shared_path("raman", "raman_renishaw_streamline_49x45.npz")
    out = tmp_path / "mv"
    args = ["run", path, "-k", "3", "--min-volume", "0.5", "--seed", "0", "-o", str(out)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="MinVolume without")
        assert entry([*args, "-q", "--no-report"]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    types = [c["type"] for c in res.spec["constraints"]]
    assert "UnitNorm" in types and res.stop_reason == "tol"


def _kl_strength(X: np.ndarray) -> float:
    mv = MinVolume(0.5, scale="residual")
    res = unmix.factorize(
        X, 3, loss="kl", constraints=[NonNegative(), SumToOne()], regularizers=[mv], max_iter=1
    )
    return res.spec["effective"]["MinVol(S)"]["lam"]


def test_residual_scale_is_in_the_units_of_a_divergence():
    """KL on the EELS map: ``scale="residual"`` took the squared norm of ``X`` outside rank
    3 (1.7e9 for lam 0.5, against a whole KL objective of 1.1e9: two of three endmembers
    collapsed), and it grew as ``c^2`` with the data's unit while KL grows as ``c``.  From
    the Poisson-scaled energies it is on the scale of twice the best rank-3 KL fit's
    objective, and follows ``c`` as the divergence does."""
    X = real_pixels("eels")
    lam = _kl_strength(X) / 0.5
    best = unmix.factorize(X, 3, loss="kl", random_state=0, tol=1e-7).objective
    assert 0.25 <= lam / (2 * best) <= 4.0  # measured 0.55
    assert _kl_strength(1e3 * X) == pytest.approx(1e3 * _kl_strength(X), rel=1e-6)


def test_residual_scale_is_refused_for_l21_with_the_fix():
    with pytest.raises(ValueError, match=r"loss='l21' is a sum of norms: use scale='init'"):
        unmix.factorize(
            _planted(),
            3,
            loss="l21",
            constraints=[NonNegative(), UnitNorm()],
            regularizers=[MinVolume(0.5, scale="residual")],
            max_iter=2,
        )
