"""Detector corrections for 4D-STEM: dark/flat field, despiking, pattern background and
centring (with the descan plane), checked on planted patterns."""

from __future__ import annotations

import numpy as np
import pytest

from unmix.preprocessing import CenterPatterns, DarkFlat, Despike, PatternBackground, Pipeline
from unmix.spectral_image import Axis, SpectralImage


def _image(data):
    ny, nx = data.shape[:2]
    sig = [Axis(n, s, navigate=False) for n, s in zip(("ky", "kx"), data.shape[2:], strict=True)]
    return SpectralImage(data, [Axis("y", ny), Axis("x", nx)], sig)


def _disc(cy, cx, n=24, r=3.0):
    yy, xx = np.mgrid[:n, :n]
    return 100.0 / (1 + np.exp((np.hypot(yy - cy, xx - cx) - r) * 3))


def test_dark_flat_undoes_a_planted_camera():
    rng = np.random.default_rng(0)
    true = rng.random((3, 4, 8, 8)) * 50
    gain = rng.uniform(0.5, 1.5, (8, 8))
    gain[2, 3] = 0.0  # a dead pixel
    dark = rng.random((8, 8)) * 5
    raw = true * gain + dark
    out = DarkFlat(dark=dark, flat=gain).apply(_image(raw))
    good = gain > 0
    scale = gain[good].mean()
    np.testing.assert_allclose(out.data[..., good], true[..., good] * scale, rtol=1e-10)
    assert np.all(out.data[..., 2, 3] == 0)
    assert out.metadata["preprocessing"][-1]["info"]["dead_pixels"] == 1
    with pytest.raises(ValueError, match="signal shape"):
        DarkFlat(dark=np.zeros((4, 4))).apply(_image(raw))
    with pytest.raises(ValueError, match="give dark"):
        DarkFlat()


def test_despike_finds_planted_spikes_and_little_else():
    rng = np.random.default_rng(1)
    clean = rng.poisson(np.broadcast_to(_disc(11.5, 11.5) + 5, (6, 5, 24, 24))).astype(float)
    spiky = clean.copy()
    where = [(0, 1, 3, 17), (2, 2, 20, 4), (5, 4, 11, 11), (3, 0, 0, 0)]
    for w in where:
        spiky[w] += 2000
    out = Despike().apply(_image(spiky))
    for w in where:
        assert out.data[w] < 200
    changed = np.argwhere(out.data != spiky)
    assert len(changed) <= len(where) + 5  # Poisson noise is left alone
    assert out.metadata["preprocessing"][-1]["info"]["replaced"] == len(changed)


def test_despike_detector_mode_finds_hot_pixels_in_the_mean_pattern():
    rng = np.random.default_rng(2)
    data = rng.poisson(np.broadcast_to(_disc(11.5, 11.5) + 5, (6, 5, 24, 24))).astype(float)
    data[..., 4, 19] += 60  # a hot detector pixel: modest in one pattern, clear in the mean
    out = Despike(mode="detector").apply(_image(data))
    assert np.all(out.data[..., 4, 19] < 30)
    assert np.count_nonzero(out.data != data) <= 2 * 30
    with pytest.raises(ValueError, match="mode must be"):
        Despike(mode="pixel")
    with pytest.raises(ValueError, match="odd"):
        Despike(size=4)


@pytest.mark.parametrize("method", ["percentile", "ring"])
def test_pattern_background_removes_a_constant_per_pattern(method):
    levels = np.arange(12, dtype=float).reshape(3, 4) * 3 + 2
    data = np.stack([[_disc(11.5, 11.5) + c for c in row] for row in levels])
    op = PatternBackground(method=method, percentile=0.0, ring=0.7)
    out = op.apply(_image(data))
    np.testing.assert_allclose(out.data.min(axis=(2, 3)), 0, atol=0.05)
    np.testing.assert_allclose(
        out.data, np.clip(data - levels[..., None, None], 0, None), atol=0.05
    )
    with pytest.raises(ValueError, match="percentile"):
        PatternBackground(percentile=120)


def test_center_patterns_puts_each_beam_in_the_middle():
    rng = np.random.default_rng(3)
    shifts = rng.uniform(-3, 3, (4, 5, 2))
    data = np.stack([[_disc(11.5 + dy, 11.5 + dx) for dy, dx in row] for row in shifts])
    op = CenterPatterns()
    out = op.apply(_image(data))
    c = op.centres(out.data.reshape(-1, 24, 24))
    np.testing.assert_allclose(c, 11.5, atol=0.15)
    np.testing.assert_allclose(
        op.centres(data.reshape(-1, 24, 24)), 11.5 + shifts.reshape(-1, 2), atol=0.15
    )


def test_descan_plane_is_fitted_over_the_scan():
    ny, nx = 6, 7
    yy, xx = np.mgrid[:ny, :nx]
    cy, cx = 10.0 + 0.3 * yy - 0.1 * xx, 12.5 - 0.2 * yy + 0.25 * xx
    rng = np.random.default_rng(4)
    jitter = rng.normal(0, 0.4, (ny, nx, 2))  # contrast that moves single centres
    data = np.stack(
        [
            [_disc(cy[i, j] + jitter[i, j, 0], cx[i, j] + jitter[i, j, 1]) for j in range(nx)]
            for i in range(ny)
        ]
    )
    out = CenterPatterns(descan="plane").apply(_image(data))
    coef = np.array(out.metadata["preprocessing"][-1]["info"]["plane"])
    np.testing.assert_allclose(coef[1:], [[0.3, -0.2], [-0.1, 0.25]], atol=0.06)
    with pytest.raises(ValueError, match="descan"):
        CenterPatterns(descan="line")
    with pytest.raises(ValueError, match="2-D patterns"):
        CenterPatterns().apply(SpectralImage(np.ones((2, 3, 5))))


def test_a_4dstem_pipeline_round_trips_its_config():
    steps = Pipeline(
        [Despike(mode="detector"), PatternBackground(), CenterPatterns(descan="plane")]
    )
    again = Pipeline(steps.to_config())
    assert [s.to_dict() for s in again] == [s.to_dict() for s in steps]
