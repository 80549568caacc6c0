"""Image operations on lazy (file-backed) images stay lazy and give the in-memory answer.

Each operation that acts on a pixel's own signal, maps scan lines onto lines (crop, bin)
or needs one statistics pass first (``Offset("min")``, the polar transform's default
centre) returns data computed scan line by scan line; reading the result never reads the
whole file at once.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import unmix
from unmix.preprocessing import (
    FFT,
    Absolute,
    BaselineALS,
    Bin,
    BinDetector,
    CenterPatterns,
    Clip,
    Crop,
    DarkFlat,
    Derivative,
    Despike,
    Log,
    MaskChannels,
    MaskPixels,
    Normalize,
    Offset,
    PatternBackground,
    Pipeline,
    PolarTransform,
    PowerLawBackground,
    SlidingWindowFFT,
)
from unmix.preprocessing._lines import LineArray
from unmix.spectral_image import Axis, SpectralImage


class CountingDataset:
    """An h5py dataset that records the largest number of lines one read asked for."""

    def __init__(self, d):
        self.d, self.shape, self.dtype, self.ndim = d, d.shape, d.dtype, d.ndim
        self.chunks, self.widest = d.chunks, 0

    def __getitem__(self, key):
        out = self.d[key]
        self.widest = max(self.widest, out.shape[0] if out.ndim == self.ndim else 1)
        return out


def _spectra(tmp_path):
    rng = np.random.default_rng(0)
    e = np.linspace(400.0, 1100.0, 64)
    x = rng.poisson(50 * (e / 400.0) ** -3 + 5, (24, 10, 64)).astype(np.float32)
    x[3, 4, 10] = -2.0  # one negative entry for clip / offset
    path = tmp_path / "spectra.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=x, chunks=(1, 10, 64))
    axes = [Axis("y", 24, 2.0, 0.0, "nm"), Axis("x", 10, 2.0, 0.0, "nm")]
    sig = [Axis("Energy", 64, float(e[1] - e[0]), 400.0, "eV", navigate=False)]
    return path, axes, sig


def _patterns(tmp_path):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:16, :16]
    disc = np.exp(-((yy - 7.3) ** 2 + (xx - 8.1) ** 2) / 8.0)
    x = (rng.poisson(20 * disc + 1, (12, 6, 16, 16))).astype(np.float64)
    path = tmp_path / "patterns.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=x, chunks=(1, 6, 16, 16))
    axes = [Axis("y", 12), Axis("x", 6)]
    sig = [Axis("ky", 16, navigate=False), Axis("kx", 16, navigate=False)]
    return path, axes, sig


SPECTRA_OPS = [
    Clip(0.0),
    Absolute(),
    Offset(),
    Offset(value=3.0),
    Log(offset=10.0),
    Derivative(),
    Normalize(kind="l2"),
    Normalize(per="channel"),
    Normalize(kind="max", per="channel"),
    Normalize(kind="l2", per="channel"),
    FFT(taper="hann"),
    MaskChannels([[500, 600]]),
    PowerLawBackground(fit_range=[400, 500]),
    BaselineALS(),
    Crop(spatial=[[4, 17], None], signal=[500, 900]),
    Crop(spatial=[[4, 17], [2, 7]], units=False),
    Bin(spatial=[3, 2], signal=4),
    Bin(spatial=[5, 1], method="mean"),
    MaskPixels(pixels=[[1, 1]]),
]
PATTERN_OPS = [
    BinDetector(2),
    PolarTransform(n_angles=24),
    FFT(),
    Bin(spatial=2, signal=2),
    DarkFlat(dark=np.full((16, 16), 0.5), flat=np.linspace(0.5, 1.5, 256).reshape(16, 16)),
    Despike(threshold=4.0),
    Despike(mode="detector"),
    PatternBackground(method="ring", ring=0.8),
    PatternBackground(percentile=10.0),
    CenterPatterns(),
    CenterPatterns(descan="plane"),
]


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Statistics passes read 2 KB at a time (a few lines of the test files)."""
    monkeypatch.setattr("unmix.preprocessing._lines.BLOCK_BYTES", 2048)


def _check(op, path, axes, sig):
    with h5py.File(path, "r") as f:
        data = CountingDataset(f["data"])
        lazy = SpectralImage(data, axes, sig, {"title": "t"})
        memory = SpectralImage(f["data"][()], axes, sig, {"title": "t"})
        want = op.apply(memory)
        got = op.apply(lazy)
        assert got.is_lazy and op.streams(lazy)
        assert data.widest <= 5  # the op itself read at most a bin of lines
        assert got.shape == want.shape and got.axes == want.axes
        np.testing.assert_allclose(got.data[...], want.data, rtol=1e-6, atol=1e-9)
        assert got.data[2:4].shape == want.data[2:4].shape
        np.testing.assert_allclose(got.data[3], want.data[3], rtol=1e-6, atol=1e-9)
        assert data.widest <= 5 * max(1, got.shape[0])  # never more than asked (x bin)
        rec = got.metadata["preprocessing"][-1]
        assert rec["op"] == op.op


@pytest.mark.parametrize("op", SPECTRA_OPS, ids=lambda o: repr(o)[:40])
def test_spectrum_ops_stream(tmp_path, op):
    _check(op, *_spectra(tmp_path))


@pytest.mark.parametrize("op", PATTERN_OPS, ids=lambda o: repr(o)[:40])
def test_pattern_ops_stream(tmp_path, op):
    _check(op, *_patterns(tmp_path))


def test_a_pipeline_stays_lazy_and_reads_a_block_at_a_time(tmp_path):
    path, axes, sig = _spectra(tmp_path)
    steps = Pipeline([Crop(signal=[450, 1000]), Clip(0.0), Bin(spatial=2), Normalize()])
    with h5py.File(path, "r") as f:
        data = CountingDataset(f["data"])
        got = steps.apply(SpectralImage(data, axes, sig))
        want = steps.apply(SpectralImage(f["data"][()], axes, sig))
        assert got.is_lazy and data.widest <= 2
        X = got.unfold(load=True)
        np.testing.assert_allclose(X, want.unfold(), rtol=1e-6)
        assert [s["op"] for s in got.metadata["preprocessing"]] == [s.op for s in steps]


def test_settled_statistics_are_recorded(tmp_path):
    path, axes, sig = _spectra(tmp_path)
    with h5py.File(path, "r") as f:
        got = Offset().apply(SpectralImage(f["data"], axes, sig))
        assert got.metadata["preprocessing"][-1]["info"]["added"] == pytest.approx(2.0)
        assert float(np.asarray(got.data).min()) == 0.0


def test_ops_that_need_the_whole_image_say_so_and_still_work(tmp_path):
    path = tmp_path / "image.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.random.default_rng(2).random((32, 32)))
    with h5py.File(path, "r") as f:
        lazy = SpectralImage(f["data"], [Axis("y", 32)], [Axis("x", 32, navigate=False)])
        op = SlidingWindowFFT(window=8, step=4)
        assert not op.streams(lazy)
        out = op.apply(lazy)  # read into memory (logged)
        assert not out.is_lazy


@pytest.mark.parametrize("kind", ["sum", "max", "l2"])
def test_channel_scales_skip_masked_pixels_when_streamed(tmp_path, kind):
    """Per-channel scales from one streamed pass count only the pixels of weight > 0,
    as in memory; the masked pixels are still divided."""
    path, axes, sig = _spectra(tmp_path)
    with h5py.File(path, "r") as f:
        top = np.unravel_index(np.argmax(f["data"][:, :, 0]), (24, 10))  # holds a max
        mask = MaskPixels(pixels=[[int(top[0]), int(top[1])], [20, 9]])
        steps = Pipeline([mask, Normalize(kind=kind, per="channel")])
        data = CountingDataset(f["data"])
        got = steps.apply(SpectralImage(data, axes, sig))
        want = steps.apply(SpectralImage(f["data"][()], axes, sig))
        assert got.is_lazy and data.widest <= 5
        np.testing.assert_allclose(got.data[...], want.data, rtol=1e-6)
        unmasked = Normalize(kind=kind, per="channel").apply(
            SpectralImage(f["data"][()], axes, sig)
        )
        assert not np.allclose(got.data[...], unmasked.data)  # the mask changed the scales


def test_a_lazy_image_streams_through_factorize(tmp_path):
    path, axes, sig = _spectra(tmp_path)
    steps = Pipeline([Clip(0.0), Crop(signal=[450, 1000])])
    with h5py.File(path, "r") as f:
        got = steps.apply(SpectralImage(f["data"], axes, sig))
        want = steps.apply(SpectralImage(f["data"][()], axes, sig))
        kw = {"random_state": 0, "max_iter": 20, "tol": 0, "block_size": 40}
        X = got.unfold(load=False)
        a = unmix.factorize(X, 3, **kw)
        b = unmix.factorize(want.unfold(), 3, **kw)
    np.testing.assert_allclose(a.S, b.S, rtol=1e-5)


def test_line_array_indexing():
    base = np.arange(7 * 3 * 2, dtype=float).reshape(7, 3, 2)
    arr = LineArray(base.shape, base.dtype, lambda a, b: base[a:b])
    for key in (
        2,
        -1,
        slice(1, 5),
        slice(None, None, 2),
        slice(5, 1, -1),
        (slice(1, 4), 1),
        (Ellipsis, 0),
        np.array([4, 1, 6]),
        np.arange(7) % 2 == 0,
        (3, slice(None), 1),
    ):
        np.testing.assert_array_equal(arr[key], base[key])
    np.testing.assert_array_equal(np.asarray(arr), base)
    with pytest.raises(IndexError, match="out of range"):
        arr[7]
