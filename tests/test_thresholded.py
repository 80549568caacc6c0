"""Thresholded NMF (issue 12, item 5): a smooth background, and a rare target found in
its residual, on planted data and on the real EELS map with a planted 1 % target."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import unmix
from conftest import shared_path
from unmix.datasets import plant_target
from unmix.thresholded import thresholded_nmf


def f1(pred, mask):
    tp = np.sum(pred & mask)
    return 2 * tp / max(1, 2 * tp + np.sum(pred & ~mask) + np.sum(~pred & mask))


def test_planted_target_on_a_smooth_mixture():
    mx = unmix.datasets.make_mixture(3, spatial_shape=(30, 30), n_channels=120, random_state=0)
    X = np.clip(mx.X, 0, None).reshape(30, 30, 120)
    X = np.random.default_rng(0).poisson(50 * X / X.mean()).astype(float)  # counts
    p = plant_target(X, 0.3, seed=1)
    Xp, mask, t = p.X, p.mask, p.spectrum
    r = thresholded_nmf(Xp.reshape(900, 120), 3, max_iter=300)
    assert f1(r.mask, mask.reshape(-1)) >= 0.9
    assert r.target is not None and r.target.A.shape == (900, 1)
    cos = r.target.S[0] @ t / np.linalg.norm(r.target.S[0]) / np.linalg.norm(t)
    assert cos > 0.9
    assert np.all(np.asarray(r.target.A) >= 0) and len(r.rounds) == 3


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_eels_map_with_a_planted_one_percent_target(seed):
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    with h5py.File(path) as f:
        X = f["Experiments/EELS Spectrum Image/data"][()]
    p = plant_target(X, 0.05, seed=seed)
    Xp, mask = p.X, p.mask
    r = thresholded_nmf(np.rint(Xp).reshape(-1, X.shape[-1]), 3, max_iter=300)
    assert f1(r.mask, mask.reshape(-1)) >= 0.9


def test_bad_arguments_are_refused():
    X = np.ones((10, 5))
    with pytest.raises(ValueError, match="sets weights"):
        thresholded_nmf(X, 2, weights=np.ones(10))
    with pytest.raises(ValueError, match="noise must be"):
        thresholded_nmf(X, 2, noise="laplace")
    with pytest.raises(ValueError, match="2-D"):
        thresholded_nmf(np.ones(5), 2)
