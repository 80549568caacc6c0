"""Presets: the blind-unmixing recipe on the real hyperspectral scenes with ground truth."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.io as sio

import unmix
from conftest import shared_path
from unmix.metrics import score

# (k, max mean SAD in degrees, max abundance RMSE); Moffett's RMSE: see benchmarks/results/hsi.md
SCENES = {"samson": (3, 2.0, 0.06), "jasper_ridge": (4, 4.0, 0.10), "moffett": (3, 3.0, 0.075)}


def _load(name):
    d = sio.loadmat(shared_path("hsi", f"{name}.mat"))
    Y = d["Y"].astype(float)
    side = round(np.sqrt(Y.shape[1]))
    X = Y.T.reshape(side, side, Y.shape[0], order="F").reshape(-1, Y.shape[0])
    A = d["S_GT"].astype(float)
    return X, d["GT"].astype(float), A.reshape(-1, A.shape[-1])


@pytest.mark.slow
@pytest.mark.parametrize("scene", list(SCENES))
def test_blind_unmixing_preset_on_real_scenes(scene):
    k, sad_max, rmse_max = SCENES[scene]
    X, E, A = _load(scene)
    t = time.process_time()
    r = unmix.factorize(X, k, preset="blind-unmixing", random_state=0)
    assert time.process_time() - t < 60  # 30 s target on an idle machine; CI is shared
    s = score(r.S, E, r.A, A)
    assert s["sad"] <= sad_max and s["rmse"] <= rmse_max, s
    np.testing.assert_allclose(np.asarray(r.A).sum(axis=1), 1.0, atol=1e-6)


def test_preset_values_are_overridable(mixture):
    r = unmix.factorize(mixture.X, 3, preset="blind-unmixing", max_iter=3, init="nndsvda")
    assert r.spec["preset"] == "blind-unmixing" and r.spec["init"] == "nndsvda"
    assert r.n_iter == 3 and r.spec["solver"] == "admm"


def test_minvolume_residual_scale_ignores_the_start(mixture):
    a = unmix.factorize(mixture.X, 3, preset="blind-unmixing", init="spa", max_iter=2)
    b = unmix.factorize(mixture.X, 3, preset="blind-unmixing", init="random", max_iter=2)
    assert a.spec["effective"] == b.spec["effective"]
    lam = a.spec["effective"]["MinVol(S)"]["lam"]
    Xn = mixture.X / np.linalg.norm(mixture.X, axis=1, keepdims=True)
    w = np.linalg.norm(mixture.X, axis=1) / np.linalg.norm(mixture.X, axis=1).mean()
    s = np.linalg.svd(np.sqrt(w)[:, None] * Xn, compute_uv=False)
    assert lam == pytest.approx(0.5 * np.sum(s[3:] ** 2), rel=1e-6)


def test_unknown_preset(mixture):
    with pytest.raises(ValueError, match="preset='fast' is unknown"):
        unmix.factorize(mixture.X, 3, preset="fast")
