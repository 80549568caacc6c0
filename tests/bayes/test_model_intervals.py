"""Credible bands of the model ``A @ S`` (``BayesResult.model_intervals``).

``X`` (pixels, channels) ``~ Poisson(A @ S)``: the factors are not identifiable on the
planted generator (every spectrum has a baseline, so any other can lend it part of
itself; ``benchmarks/results/bayes.md``), but the expected counts ``A @ S`` are, so their
bands can be checked against the planted ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import bayes_planted as planted
from unmix.bayes import bayes_nmf


def covered(T: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.mean((T >= lo) & (T <= hi)))


@pytest.mark.parametrize("counts", [50.0, 500.0])
def test_gibbs_bands_of_the_expected_counts_are_calibrated(counts):
    """90 % bands cover the planted ``A @ S`` for 85-97 % of the entries (measured 0.896
    and 0.887, k 3); the bands of the unit-sum spectra cover 37 % and 16 % there."""
    X, A, S = planted(3, counts)
    res = bayes_nmf(X, 3, ard=False, random_state=0, bands="gibbs")
    mean, lo, hi = res.model_intervals()
    assert mean.shape == lo.shape == hi.shape == X.shape
    assert 0.85 <= covered(A @ S, lo, hi) <= 0.97
    assert np.all(lo <= mean) and np.all(mean <= hi)
    # the mean model holds the data's counts
    assert mean.sum() == pytest.approx(X.sum(), rel=0.02)


def test_variational_model_bands_are_seeded_and_narrower_than_the_chains():
    X, A, S = planted(3, 50.0)
    vb = bayes_nmf(X, 3, ard=False, random_state=0)
    assert vb.A_samples is None and vb.S_samples is None
    _, lo, hi = vb.model_intervals(n_draws=200, random_state=1)
    np.testing.assert_array_equal(lo, vb.model_intervals(n_draws=200, random_state=1)[1])
    gibbs = bayes_nmf(X, 3, ard=False, random_state=0, bands="gibbs")
    _, glo, ghi = gibbs.model_intervals()
    assert np.median(hi - lo) < np.median(ghi - glo)  # mean field drops the A-S correlation
    assert covered(A @ S, lo, hi) > 0.8  # measured 0.885


def test_model_bands_of_chosen_pixels_are_those_rows():
    X, _, _ = planted(3, 5.0)
    res = bayes_nmf(X, 3, ard=False, random_state=0, bands="gibbs", sweeps=50)
    assert res.A_samples.shape[1:] == (X.shape[0], 3)
    assert res.S_samples.shape[1:] == (3, X.shape[1])
    full = res.model_intervals()
    mask = np.zeros(X.shape[0], dtype=bool)
    mask[[3, 700]] = True
    assert res.model_intervals(700)[1].shape == (1, X.shape[1])
    for pixels in ([3, 700], mask):
        part = res.model_intervals(pixels)
        for a, b in zip(part, full, strict=True):
            np.testing.assert_allclose(a, b[[3, 700]], rtol=1e-12)


def test_model_bands_follow_the_data_dtype_and_check_the_level():
    X, _, _ = planted(3, 5.0)
    res = bayes_nmf(X.astype(np.float32), 3, ard=False, random_state=0, bands="gibbs", sweeps=50)
    assert res.A_samples.dtype == np.float32
    assert all(v.dtype == np.float32 for v in res.model_intervals())
    with pytest.raises(ValueError, match="level must be in"):
        res.model_intervals(level=1.5)
