"""The compiled one-read statistics of a block give the NumPy path's numbers."""

from __future__ import annotations

import numpy as np
import pytest

from unmix.blocks import data_stats

pytest.importorskip("numba")

FIELDS = ("n_values", "n_nonfinite", "n_negative", "n_zero", "counts")


def _data(dtype, kind):
    rng = np.random.default_rng(3)
    X = rng.poisson(2.0, (157, 83)).astype(dtype)
    if kind == "signed":
        X = (X - 2).astype(dtype)
    if kind == "fractions":
        X = X * np.asarray(0.37, dtype)
    if kind == "nonfinite":
        X[3, 5], X[10, :7], X[150, 80] = np.nan, np.inf, -np.inf
        X[40, 2] = -1.5
    if kind == "all_nan":
        X[:] = np.nan
    return X


CASES = [
    (np.float32, "counts"),
    (np.float64, "counts"),
    (np.float32, "fractions"),
    (np.float64, "signed"),
    (np.float32, "nonfinite"),
    (np.float64, "nonfinite"),
    (np.float64, "all_nan"),
    (np.uint16, "counts"),
    (np.int32, "signed"),
    (np.uint8, "counts"),
]


@pytest.mark.parametrize(("dtype", "kind"), CASES, ids=lambda v: getattr(v, "__name__", v))
def test_compiled_counting_equals_numpy(dtype, kind):
    X = _data(dtype, kind)
    got = data_stats(X, block_bytes=2000, compiled=True)
    want = data_stats(X, block_bytes=2000, compiled=False)
    for name in FIELDS:
        assert getattr(got, name) == getattr(want, name), name
    for name in ("min", "max", "mean"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-6)
    np.testing.assert_allclose(got.pixel_sums, want.pixel_sums, rtol=1e-6)
    np.testing.assert_allclose(got.channel_sums, want.channel_sums, rtol=1e-6)


def test_compiled_counts_detect_counts_and_their_absence():
    counts = np.random.default_rng(0).poisson(3.0, (64, 50)).astype(np.float32)
    assert data_stats(counts, compiled=True).counts
    assert not data_stats(counts + np.float32(0.5), compiled=True).counts
    assert not data_stats(counts - 1, compiled=True).counts  # negative entries
    assert not data_stats(np.zeros((5, 5)), compiled=True).counts  # all zero
    stats = data_stats(counts, compiled=True)
    assert stats.n_zero == int((counts == 0).sum())
    assert stats.min == counts.min() and stats.max == counts.max()
