"""``unmix target``: thresholded NMF from the command line (issue 12, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from unmix.cli import EXIT_USAGE, entry
from unmix.datasets import plant_target


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Counts of a smooth 3-component mixture with a 1 % target blob (as the library test)."""
    mx = unmix.datasets.make_mixture(3, spatial_shape=(30, 30), n_channels=120, random_state=0)
    X = np.clip(mx.X, 0, None).reshape(30, 30, 120)
    X = np.random.default_rng(0).poisson(50 * X / X.mean()).astype(float)
    p = plant_target(X, 0.3, seed=1)
    path = tmp_path_factory.mktemp("target") / "scan.npy"
    np.save(path, p.X)
    return str(path), p


def test_target_command_finds_the_planted_pixels_and_writes_every_file(planted, tmp_path, capsys):
    path, p = planted
    out = tmp_path / "out"
    assert entry(["target", path, "-k", "3", "--seed", "0", "-o", str(out)]) == 0
    saved = np.load(out / "target.npz")
    mask = saved["mask"]
    assert mask.shape == (30, 30) and saved["score"].shape == (30, 30)
    tp = np.sum(mask & p.mask)
    f1 = 2 * tp / (2 * tp + np.sum(mask & ~p.mask) + np.sum(~mask & p.mask))
    assert f1 >= 0.9
    res = unmix.load_result(str(out / "result.h5"))
    assert res.k == 4 and res.spec["thresholded"]["background"] == 3
    assert res.spec["thresholded"]["target_pixels"] == int(mask.sum())
    X = p.X.reshape(900, 120)
    np.testing.assert_allclose(res.reconstruct(), np.asarray(res.A) @ np.asarray(res.S))
    assert np.linalg.norm(X - res.reconstruct()) < np.linalg.norm(X)
    target = unmix.load_result(str(out / "target.h5"))
    cos = target.S[0] @ p.spectrum / np.linalg.norm(target.S[0]) / np.linalg.norm(p.spectrum)
    assert cos > 0.9
    for name in ("background.h5", "target.png", "report.html"):
        assert (out / name).exists()
    assert "target pixels of 900" in capsys.readouterr().out


def test_target_command_refuses_bad_arguments_with_the_fix(planted, tmp_path, capsys):
    path, _ = planted
    args = ["target", path, "-k", "3", "--no-report", "-o"]
    assert entry([*args, str(tmp_path / "a"), "--threshold", "-1"]) == EXIT_USAGE
    assert "'--threshold': -1 is not a finite number > 0" in capsys.readouterr().err
    assert entry([*args, str(tmp_path / "b"), "--rounds", "0"]) == EXIT_USAGE
