"""The logistic link (issue 12, item 8): a data-driven floor, the range checked, and the
model through the link everywhere a result is read (reconstruct, report, CLI)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

import unmix
from unmix._validation import observed_range
from unmix.cli import entry
from unmix.report._model import contributions, relative_residuals


def _boolean_map(flip=0.03, seed=0):
    """900 pixels of 3 regions, each an on/off pattern over 40 channels, 3 % flipped."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 900)
    patterns = rng.random((3, 40)) < 0.4
    X = patterns[labels].astype(float)
    return np.where(rng.random(X.shape) < flip, 1.0 - X, X)


def _f0(link):
    """``f(0)``: the smallest value the model takes."""
    return float(link.forward(np.zeros(1), np)[0])


@pytest.fixture(scope="module")
def boolean_fit():
    X = _boolean_map()
    return X, unmix.factorize(X, 3, link="logistic", random_state=0)


def test_logistic_link_alone_fits_a_boolean_map(boolean_fit):
    X, r = boolean_fit
    Y = np.asarray(r.reconstruct())
    assert np.mean(np.abs(Y - X) < 0.2) >= 0.9  # was 0.38: every zero fitted at 0.5
    assert Y.min() < 0.05
    assert np.all(np.asarray(r.A) >= 0) and np.all(np.asarray(r.S) >= 0)


def test_the_floor_comes_from_the_data():
    assert _f0(unmix.Logistic().for_data(0.0, 1.0)) == pytest.approx(0.02)
    assert _f0(unmix.Logistic().for_data(0.3, 0.9)) == pytest.approx(0.3)
    assert _f0(unmix.Logistic().for_data(0.7, 0.9)) == pytest.approx(0.45)
    assert _f0(unmix.Logistic(scale=2.0).for_data(0.1, 1.0)) == pytest.approx(0.1)
    given = unmix.Logistic(shift=1.5)
    assert given.for_data(0.0, 1.0) is given


@pytest.mark.parametrize("low, high", [(-0.1, 1.0), (0.0, 2.0)])
def test_data_outside_zero_one_is_refused(low, high):
    X = np.linspace(low, high, 60).reshape(6, 10)
    with pytest.raises(ValueError, match=r"models data in \[0, 1\].*Divide X"):
        unmix.factorize(X, 2, link="logistic", max_iter=2)


def test_an_unset_shift_cannot_be_evaluated():
    with pytest.raises(ValueError, match="set from the data"):
        unmix.Logistic().forward(np.zeros(2), np)


def test_observed_range_ignores_missing_entries_and_counts_implicit_zeros():
    X = np.array([[0.5, np.nan], [0.25, 0.75]])
    mask = ~np.isnan(X)
    assert observed_range(X, observed=mask) == (0.25, 0.75)
    csr = sp.csr_array(np.array([[0.5, 0.0], [0.25, 0.75]]))
    assert observed_range(csr) == (0.0, 0.75)
    assert observed_range(csr, observed=csr.toarray() > 0) == (0.25, 0.75)
    full = sp.csr_array(np.array([[0.5, 0.2], [0.25, 0.75]]))
    assert observed_range(full) == (0.2, 0.75)


def test_the_fitted_shift_is_saved_and_reloaded(boolean_fit, tmp_path):
    _, r = boolean_fit
    assert r.link.shift == pytest.approx(math.log(0.98 / 0.02))
    r.save(tmp_path / "r.h5")
    back = unmix.load_result(tmp_path / "r.h5")
    assert back.link == r.link
    np.testing.assert_allclose(back.reconstruct(), r.reconstruct())


def test_report_residuals_and_contributions_go_through_the_link(boolean_fit):
    X, r = boolean_fit
    Y = np.asarray(r.reconstruct())
    _, total = relative_residuals(r, X)
    assert total == pytest.approx(np.linalg.norm(X - Y) / np.linalg.norm(X), rel=1e-12)
    parts, base = contributions(r, 7)
    np.testing.assert_allclose(base, 0.02)  # f(0)
    assert np.all(parts >= 0) and np.all(base + parts <= 1.0)


def test_link_from_the_command_line(tmp_path):
    path = tmp_path / "bool.npy"
    np.save(path, _boolean_map().reshape(30, 30, 40))
    out = tmp_path / "out"
    args = ["run", str(path), "-k", "3", "--link", "logistic", "--seed", "0"]
    assert entry([*args, "-o", str(out), "-q", "--no-report"]) == 0
    res = unmix.load_result(str(out / "result.h5"))
    assert isinstance(res.link, unmix.Logistic) and res.link.shift > 3
    np.save(path, 2 * _boolean_map().reshape(30, 30, 40))
    assert entry([*args, "-o", str(tmp_path / "bad"), "-q", "--no-report"]) != 0


def test_tiny_data_get_a_floor_below_them_and_a_warning():
    with pytest.warns(RuntimeWarning, match="largest value is 0.001"):
        link = unmix.Logistic().for_data(0.0, 1e-3)
    assert _f0(link) == pytest.approx(5e-4)
