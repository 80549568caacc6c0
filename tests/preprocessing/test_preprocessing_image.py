"""Image-level preprocessing: values, axes, provenance and configs of every operation."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from scipy.signal import find_peaks

import unmix
from conftest import shared_path
from unmix.preprocessing import (
    FFT,
    Absolute,
    BaselineALS,
    Bin,
    BinDetector,
    Crop,
    Derivative,
    Log,
    MaskChannels,
    MaskPixels,
    Normalize,
    Offset,
    Pipeline,
    PolarTransform,
    PowerLawBackground,
    SlidingWindowFFT,
    image_from_array,
    op_from_dict,
    pipeline_from_config,
)
from unmix.preprocessing._background import als_baseline, solve_pentadiagonal
from unmix.preprocessing._imagebase import OPS
from unmix.spectral_image import Axis, SpectralImage


def spectra(shape=(5, 4, 50), seed=0, dtype=np.float64) -> SpectralImage:
    """Random positive data on calibrated axes: 100 + 2 i eV, 0.5 nm pixels."""
    data = np.random.default_rng(seed).random(shape).astype(dtype) + 0.5
    return SpectralImage(
        data,
        [Axis("y", shape[0], 0.5, 1.0, "nm"), Axis("x", shape[1], 0.5, -2.0, "nm")],
        [Axis("Energy", shape[2], 2.0, 100.0, "eV")],
        {"title": "synthetic", "signal_type": "EELS", "quantity": "Counts"},
    )


def patterns(shape=(3, 4, 16, 20), seed=0) -> SpectralImage:
    data = np.random.default_rng(seed).random(shape)
    return SpectralImage(
        data,
        [Axis("y", shape[0], 1.0, 0.0, "nm"), Axis("x", shape[1], 1.0, 0.0, "nm")],
        [Axis("ky", shape[2], 0.1, -0.8, "1/nm"), Axis("kx", shape[3], 0.1, -1.0, "1/nm")],
        {"title": "4d", "signal_type": "diffraction"},
    )


def unchanged(before: np.ndarray, image: SpectralImage) -> None:
    np.testing.assert_array_equal(image.data, before)
    assert "preprocessing" not in image.metadata


# --------------------------------------------------------------------------------- crop
def test_crop_calibrated_keeps_the_right_channels_and_pixels():
    im = spectra()
    before = im.data.copy()
    out = Crop(signal=[110, 120], spatial={"x": [-1.5, -1.0]}).apply(im)
    unchanged(before, im)
    np.testing.assert_array_equal(out.data, im.data[:, 1:3, 5:11])
    e = out.signal_axes[0]
    assert (e.size, e.scale, e.offset, e.units) == (6, 2.0, 110.0, "eV")
    np.testing.assert_allclose(e.values, np.arange(110, 121, 2))
    x = out.spatial_axes[1]
    assert (x.size, x.scale, x.offset) == (2, 0.5, -1.5)
    assert out.spatial_axes[0] == im.spatial_axes[0]
    assert not np.shares_memory(out.data, im.data)
    assert out.metadata["preprocessing"] == [
        {"op": "crop", "spatial": {"x": [-1.5, -1.0]}, "signal": [110, 120], "units": True}
    ]


def test_crop_indices_decreasing_and_nonuniform_axes():
    im = spectra()
    out = Crop(spatial=[[1, 4], None], signal=[None, -10], units=False).apply(im)
    np.testing.assert_array_equal(out.data, im.data[1:4, :, :-10])
    tail = Crop(signal=[190, float("inf")]).apply(im)  # TOML has inf, not None
    np.testing.assert_array_equal(tail.data, im.data[..., 45:])
    assert tail.metadata["preprocessing"][-1]["signal"] == [190, None]  # strict JSON
    np.testing.assert_array_equal(
        Crop(signal=[-np.inf, 5], units=False).apply(im).data, im.data[..., :5]
    )
    assert out.spatial_axes[0].offset == pytest.approx(1.5)
    bias = Axis.from_values("Bias", np.linspace(0.2, -0.1, 31), "V")  # decreasing (STM)
    sts = SpectralImage(im.data[..., :31], im.spatial_axes, [bias])
    out = Crop(signal=[0.1, 0.0]).apply(sts)  # either order
    np.testing.assert_allclose(out.signal_axes[0].values, np.linspace(0.1, 0.0, 11), atol=1e-12)
    np.testing.assert_array_equal(out.data, sts.data[..., 10:21])
    raman = Axis.from_values("Shift", np.linspace(10.0, 30.0, 50) ** 2, "1/cm")
    nonuni = SpectralImage(im.data, im.spatial_axes, [raman])
    out = Crop(signal=[200, 500]).apply(nonuni)
    keep = (raman.values >= 200) & (raman.values <= 500)
    np.testing.assert_allclose(out.signal_axes[0].values, raman.values[keep])
    np.testing.assert_array_equal(out.data, im.data[..., keep])
    assert not out.signal_axes[0].is_uniform


def test_crop_errors_name_the_axis_and_the_fix():
    im = spectra()
    with pytest.raises(ValueError, match=r"selects no point of axis 'Energy' \(100 to 198 eV\)"):
        Crop(signal=[500, 600]).apply(im)
    with pytest.raises(ValueError, match="one range per axis"):
        Crop(spatial=[0, 1]).apply(im)
    with pytest.raises(ValueError, match=r"unknown axes \['z'\]"):
        Crop(spatial={"z": [0, 1]}).apply(im)
    with pytest.raises(TypeError, match="takes a SpectralImage"):
        Crop(signal=[110, 150]).apply(im.data)


def test_crop_and_bin_that_change_nothing_are_refused():
    """``{op="crop"}`` without a range (a forgotten ``signal=``) and a bin by 1 kept the
    data as it was, silently."""
    with pytest.raises(ValueError, match=r"Crop: no range given.*signal=\[lo, hi\]"):
        Crop()
    with pytest.raises(ValueError, match=r"Bin: every factor is 1.*spatial=2"):
        Bin()
    with pytest.raises(ValueError, match="Bin: every factor is 1"):
        Bin(spatial=[1, 1], signal=1)
    assert Bin(spatial=[1, 2]).spatial == [1, 2]
    assert Crop(spatial=[None, [0, 3]]).signal is None


@pytest.mark.slow
def test_crop_real_raman_nonuniform_axis():
    im = unmix.load(shared_path("raman", "raman_renishaw_streamline_49x45.npz"), checksum=False)
    out = Crop(signal=[1000, 1200], spatial=[[0, 9], [0, 9]], units=True).apply(im)
    v = im.signal_axes[0].values
    keep = (v >= 1000) & (v <= 1200)
    np.testing.assert_allclose(out.signal_axes[0].values, v[keep])
    np.testing.assert_array_equal(out.data, im.data[:10, :10][..., keep])


@pytest.mark.slow
def test_crop_reads_only_the_crop_of_lazy_data():
    path = shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy")
    with unmix.load(path, lazy=True, checksum=False) as im:
        assert im.is_lazy
        out = Crop(signal=[900, 1100]).apply(im)
        full = np.asarray(im.data[...])
        assert out.is_lazy and out.signal_shape == (26,)  # read line by line when used
        np.testing.assert_array_equal(np.asarray(out.data), full[..., 25:51])
    assert out.signal_axes[0].offset == 900.0


# ---------------------------------------------------------------------------------- bin
def test_bin_sums_counts_and_moves_offsets_to_bin_centres(caplog):
    data = np.arange(5 * 4 * 10, dtype=np.int16).reshape(5, 4, 10)
    im = SpectralImage(
        data,
        [Axis("y", 5, 2.0, 10.0, "nm"), Axis("x", 4, 2.0, 0.0, "nm")],
        [Axis("E", 10, 1.0, 100.0, "eV")],
    )
    with caplog.at_level(logging.INFO, logger="unmix.preprocessing"):
        out = Bin(spatial=2, signal=3).apply(im)
    assert "dropping the last 1 point(s) of axis 'y'" in caplog.text
    assert "dropping the last 1 point(s) of axis 'E'" in caplog.text
    assert out.shape == (2, 2, 3) and out.dtype == np.int64
    expected = data[:4, :, :9].astype(np.int64).reshape(2, 2, 2, 2, 3, 3).sum(axis=(1, 3, 5))
    np.testing.assert_array_equal(out.data, expected)
    assert out.data.sum() == data[:4, :, :9].astype(np.int64).sum()  # counts conserved
    y, x = out.spatial_axes
    (e,) = out.signal_axes
    assert (y.scale, y.offset, x.scale, x.offset) == (4.0, 11.0, 4.0, 1.0)
    assert (e.size, e.scale, e.offset) == (3, 3.0, 101.0)
    mean = Bin(spatial=(1, 2), method="mean").apply(im)
    np.testing.assert_allclose(mean.data, data.reshape(5, 2, 2, 10).mean(axis=2))
    with pytest.raises(ValueError, match="bin factor 7 for axis 'x'"):
        Bin(spatial=(1, 7)).apply(im)
    with pytest.raises(ValueError, match="method must be 'sum' or 'mean'"):
        Bin(method="median")


def test_bin_nonuniform_axis_and_pixel_weights():
    im = MaskPixels(pixels=[[0, 0]]).apply(spectra())
    im = SpectralImage(
        im.data, im.spatial_axes, [Axis.from_values("E", np.arange(50.0) ** 1.5)], im.metadata
    )
    out = Bin(spatial=2, signal=5).apply(im)
    np.testing.assert_allclose(
        out.signal_axes[0].values, (np.arange(50.0) ** 1.5).reshape(10, 5).mean(axis=1)
    )
    np.testing.assert_allclose(out.metadata["pixel_weights"], [[0.75, 1.0], [1.0, 1.0]])
    assert [s["op"] for s in out.metadata["preprocessing"]] == ["mask_pixels", "bin"]


def test_bin_detector_bins_only_the_pattern_axes():
    im = patterns()
    out = BinDetector(factor=4).apply(im)
    assert out.shape == (3, 4, 4, 5)
    np.testing.assert_allclose(out.data, im.data.reshape(3, 4, 4, 4, 5, 4).sum(axis=(3, 5)))
    ky = out.signal_axes[0]
    assert ky.scale == pytest.approx(0.4) and ky.offset == pytest.approx(-0.65)
    assert out.spatial_axes == im.spatial_axes
    with pytest.raises(ValueError, match=r"use Bin\(signal=\.\.\.\) for spectra"):
        BinDetector(2).apply(spectra())


# -------------------------------------------------------------------------------- masks
def test_mask_channels_middle_range_makes_the_axis_nonuniform():
    im = spectra()
    out = MaskChannels([[120, 130], [190, None]]).apply(im)
    keep = np.r_[0:10, 16:45]
    np.testing.assert_array_equal(out.data, im.data[..., keep])
    ax = out.signal_axes[0]
    assert not ax.is_uniform
    np.testing.assert_allclose(ax.values, 100 + 2.0 * keep)
    end = MaskChannels([100, 104]).apply(im).signal_axes[0]  # a single pair, at the start
    assert end.is_uniform and (end.size, end.offset, end.scale) == (47, 106.0, 2.0)
    with pytest.raises(ValueError, match="remove every channel"):
        MaskChannels([0, 1000]).apply(im)
    with pytest.raises(ValueError, match="works on a spectrum"):
        MaskChannels([0, 1]).apply(patterns())


def test_mask_pixels_sets_weights_without_dropping_pixels():
    im = spectra()
    mask = np.zeros((5, 4), dtype=bool)
    mask[2, 3] = True
    out = MaskPixels(mask=mask, pixels=[[0, 1]]).apply(im)
    assert out.shape == im.shape and out.spatial_axes == im.spatial_axes
    w = out.metadata["pixel_weights"]
    assert w.dtype == np.float64 and w.shape == (5, 4)
    assert w.sum() == 18 and w[2, 3] == 0 and w[0, 1] == 0
    assert "pixel_weights" not in im.metadata
    entry = out.metadata["preprocessing"][-1]
    assert entry["pixels"] == [[0, 1], [2, 3]] and entry["mask"] is None
    assert entry["info"] == {"n_ignored": 2, "n_pixels": 20}
    replay = op_from_dict(json.loads(json.dumps(entry))).apply(im)
    np.testing.assert_array_equal(replay.metadata["pixel_weights"], w)
    again = MaskPixels(pixels=[[4, 0]]).apply(out)  # weights multiply
    assert again.metadata["pixel_weights"].sum() == 17
    cropped = Crop(spatial=[[2, 3], [3, None]], units=False).apply(again)
    np.testing.assert_array_equal(cropped.metadata["pixel_weights"], [[0.0]])
    with pytest.raises(ValueError, match=r"mask has shape \(4, 5\).*spatial shape is \(5, 4\)"):
        MaskPixels(mask=np.zeros((4, 5), bool)).apply(im)
    with pytest.raises(ValueError, match="lie outside the scan"):
        MaskPixels(pixels=[[5, 0]]).apply(im)
    with pytest.raises(ValueError, match="give mask="):
        MaskPixels()


def test_mask_pixels_from_npy_path(tmp_path):
    im = spectra()
    mask = np.zeros((5, 4), dtype=bool)
    mask[:, 0] = True
    np.save(tmp_path / "mask.npy", mask)
    out = op_from_dict({"op": "mask_pixels", "mask": str(tmp_path / "mask.npy")}).apply(im)
    np.testing.assert_array_equal(out.metadata["pixel_weights"], (~mask).astype(float))
    assert out.metadata["preprocessing"][-1]["mask"] == str(tmp_path / "mask.npy")


# --------------------------------------------------------------------------- backgrounds
@pytest.mark.slow
def test_power_law_background_on_cuzn_eels():
    im = unmix.load(shared_path("eels", "CuZn_EELS_mapping_tutorial.hspy"), checksum=False)
    before = np.array(im.data)
    out = PowerLawBackground(fit_range=[800, 900]).apply(im)
    unchanged(before, im)
    e = out.signal_axes[0].values
    m0 = im.data.reshape(-1, e.size).mean(axis=0)
    m = out.data.reshape(-1, e.size).mean(axis=0)
    window = (e >= 800) & (e <= 900)
    assert abs(m[window].mean()) < 0.005 * m0[window].mean()  # ~0 where fitted
    assert np.abs(m[e < 900]).max() < 0.05 * m0[e < 900].mean()  # ~0 before the edge
    cu = (e >= 940) & (e < 1000)
    assert m[cu].mean() > 0.03 * m0[cu].mean() and (m[cu] > 0).all()  # Cu L2,3
    assert (m[(e >= 1030) & (e < 1200)] > 0).all()  # Zn L2,3 on top
    r = out.metadata["preprocessing"][-1]["info"]["r_median"]
    assert 2 < r < 4 and out.dtype == np.float64
    clipped = PowerLawBackground([800, 900], clip=True, zero_fill=True).apply(im)
    assert clipped.data.min() == 0 and np.all(clipped.data[..., e < 800] == 0)


def test_power_law_background_recovers_a_synthetic_edge():
    e = np.linspace(300.0, 700.0, 201)
    rng = np.random.default_rng(0)
    amp = rng.uniform(1e6, 5e6, (6, 7))
    r = rng.uniform(2.5, 3.5, (6, 7))
    edge = np.where(e > 500, 50.0 * np.exp(-(e - 500) / 150), 0.0)
    data = amp[..., None] * e ** -r[..., None] + edge
    im = SpectralImage(data, signal_axes=[Axis("E", e.size, 2.0, 300.0, "eV")])
    out = PowerLawBackground([350, 490]).apply(im)
    np.testing.assert_allclose(out.data, np.broadcast_to(edge, data.shape), atol=1e-6 * 50)
    with pytest.raises(ValueError, match="selects no point"):
        PowerLawBackground([10, 20]).apply(im)
    with pytest.raises(ValueError, match="give fit_range"):
        PowerLawBackground()


def test_pentadiagonal_solver_matches_scipy_sparse():
    rng = np.random.default_rng(1)
    n, m, lam, p = 40, 3, 1e3, 0.05
    Y = rng.random((m, n)) * 5 + np.linspace(0, 10, n)
    D = sp.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n))
    H = lam * (D.T @ D)
    z = als_baseline(Y, lam, p, n_iter=6)
    for j in range(m):
        w = np.ones(n)
        for _ in range(6):
            ref = spl.spsolve(sp.csc_matrix(sp.diags(w) + H), w * Y[j])
            w_new = np.where(Y[j] > ref, p, 1 - p)
            if np.array_equal(w_new, w):
                break
            w = w_new
        np.testing.assert_allclose(z[j], ref, rtol=1e-9, atol=1e-9)
    A = sp.diags([rng.random(n) + 4, -np.ones(n - 1), 0.5 * np.ones(n - 2)], [0, 1, 2])
    A = (A + sp.triu(A, 1).T).tocsc()
    rhs = rng.random((n, 2))
    x = solve_pentadiagonal(
        np.repeat(A.diagonal()[:, None], 2, 1), -np.ones(n - 1), 0.5 * np.ones(n - 2), rhs
    )
    np.testing.assert_allclose(A @ x, rhs, atol=1e-12)


def test_baseline_als_recovers_a_polynomial_baseline_under_peaks():
    x = np.linspace(0, 1, 400)
    baseline = 200 + 150 * x - 120 * x**2 + 60 * x**3
    peaks = sum(
        h * np.exp(-0.5 * ((x - c) / 0.006) ** 2)
        for h, c in [(100, 0.2), (60, 0.45), (150, 0.7), (40, 0.85)]
    )
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.5, 1.5, (3, 4, 1))
    data = scale * (baseline + peaks) + 0.2 * rng.standard_normal((3, 4, 400))
    im = SpectralImage(data, signal_axes=[Axis.from_values("Shift", 500 + 1000 * x, "1/cm")])
    out = BaselineALS(lam=1e6, p=0.01).apply(im)
    residual_baseline = data - out.data
    err = np.abs(residual_baseline - scale * baseline).max(axis=-1) / (scale[..., 0] * 100)
    assert err.max() < 0.03  # baseline recovered to 3 % of the smallest peak height
    height = out.data[..., np.argmin(np.abs(x - 0.7))] / scale[..., 0]
    np.testing.assert_allclose(height, 150, rtol=0.03)  # peaks preserved
    assert out.signal_axes == im.signal_axes
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\)"):
        BaselineALS(p=1.5)


@pytest.mark.slow
def test_baseline_als_on_real_raman_map():
    im = unmix.load(shared_path("raman", "raman_renishaw_streamline_49x45.npz"), checksum=False)
    X0 = im.unfold().astype(np.float64)
    out = BaselineALS(lam=1e5, p=0.01).apply(im)
    X = out.unfold()
    assert out.dtype == np.float32 and X0.min() > 390  # a big baseline removed
    p1, p5, p50 = np.percentile(X, [1, 5, 50])
    assert abs(p5) < 2 and p1 > -15 and p50 < 0.05 * np.median(X0)
    # peaks preserved: the peaks of the mean spectrum keep their prominence (within 25 %,
    # the tallest within 5 %; a sloping baseline biases prominences) and now stand on 0
    m0, m = X0.mean(axis=0), X.mean(axis=0)
    pk0, pr0 = find_peaks(m0, prominence=20)
    pk, pr = find_peaks(m, prominence=20)
    assert list(pk0) == list(pk) and len(pk) >= 2
    np.testing.assert_allclose(pr["prominences"], pr0["prominences"], rtol=0.25)
    top = np.argmax(pr0["prominences"])
    assert pr["prominences"][top] == pytest.approx(pr0["prominences"][top], rel=0.05)
    assert m[pk[top]] == pytest.approx(pr0["prominences"][top], rel=0.15)


# ---------------------------------------------------------------------- point-wise ops
def test_offset_absolute_and_derivative_on_signed_curves():
    bias = Axis.from_values("Bias", np.linspace(0.2, -0.1, 61), "V")
    v = bias.values
    slope = np.arange(1.0, 7.0).reshape(2, 3, 1)
    current = slope * 1e-9 * v - 0.05e-9
    im = SpectralImage(current, signal_axes=[bias], metadata={"quantity": "Current", "units": "A"})
    off = Offset().apply(im)
    assert off.data.min() == 0 and off.metadata["preprocessing"][-1]["info"]["added"] > 0
    np.testing.assert_allclose(Offset(value=1.0).apply(im).data, current + 1.0)
    np.testing.assert_array_equal(Absolute().apply(im).data, np.abs(current))
    d = Derivative().apply(im)
    np.testing.assert_allclose(d.data, np.broadcast_to(slope * 1e-9, current.shape), rtol=1e-9)
    assert d.metadata["units"] == "A/V" and d.metadata["quantity"] == "dCurrent/dBias"
    bent = Axis.from_values("Bias", v**3, "V")  # non-uniform coordinates
    line = SpectralImage((2.0 * v**3 + 1)[None], signal_axes=[bent])
    np.testing.assert_allclose(Derivative().apply(line).data, 2.0, rtol=1e-9)
    with pytest.raises(ValueError, match="number or 'min'"):
        Offset(value="max")


@pytest.mark.slow
def test_stm_current_to_nonnegative_didv():
    im = unmix.load(shared_path("stm", "Bias_spectroscopy.3ds"), checksum=False)
    out = Pipeline([Derivative(), Offset()]).apply(im)
    assert out.metadata["units"] == "A/V" and out.data.min() == 0
    assert [s["op"] for s in out.metadata["preprocessing"]] == ["derivative", "offset"]
    ref = np.gradient(im.data.astype(np.float32), im.signal_axes[0].values, axis=-1)
    np.testing.assert_allclose(out.data - out.data.min(), ref - ref.min(), rtol=1e-4, atol=1e-15)


def test_log_and_normalize_values():
    im = spectra()
    np.testing.assert_allclose(Log(offset=0.5).apply(im).data, np.log(im.data + 0.5))
    with pytest.raises(ValueError, match="use offset > 0, or apply Offset first"):
        Log(offset=-1.0).apply(SpectralImage(np.zeros((2, 3))))
    x = im.data.reshape(20, 50)
    for kind, f in [
        ("sum", lambda a, ax: a.sum(axis=ax, keepdims=True)),
        ("max", lambda a, ax: np.abs(a).max(axis=ax, keepdims=True)),
        ("l2", lambda a, ax: np.linalg.norm(a, axis=ax, keepdims=True)),
    ]:
        px = Normalize(kind=kind).apply(im).data.reshape(20, 50)
        np.testing.assert_allclose(px, x / f(x, 1))
        ch = Normalize(kind=kind, per="channel").apply(im).data.reshape(20, 50)
        np.testing.assert_allclose(ch, x / f(x, 0))
    masked = MaskPixels(pixels=[[0, 0]]).apply(im)
    ch = Normalize(kind="max", per="channel").apply(masked).data.reshape(20, 50)
    np.testing.assert_allclose(ch[1:], x[1:] / x[1:].max(axis=0))
    with pytest.raises(ValueError, match="kind must be 'sum', 'max' or 'l2'"):
        Normalize(kind="l1")


# ---------------------------------------------------------------------------- Fourier
def test_fft_of_a_sinusoid_peaks_at_its_frequency():
    n, d, f0 = 200, 0.5, 0.16  # 0.5 s steps, 0.16 Hz
    t = np.arange(n) * d
    data = np.cos(2 * np.pi * f0 * t) * np.ones((2, 3, 1))
    im = SpectralImage(data, signal_axes=[Axis("t", n, d, 0.0, "s")])
    out = FFT().apply(im)
    ax = out.signal_axes[0]
    assert (ax.size, ax.scale, ax.offset, ax.units) == (101, 0.01, 0.0, "1/s")
    assert ax.values[out.data[0, 0].argmax()] == pytest.approx(f0)
    np.testing.assert_allclose(out.data[1, 2].max(), n / 2)
    full = FFT(onesided=False, taper="hann").apply(im)
    fa = full.signal_axes[0]
    assert fa.size == n and fa.offset == pytest.approx(-1.0)
    top2 = np.sort(fa.values[np.argsort(full.data[0, 0])[-2:]])
    np.testing.assert_allclose(top2, [-f0, f0], atol=1e-12)


def test_fft_2d_plane_wave_and_reciprocal_axes():
    ny, nx, d = 32, 40, 0.25  # nm
    yy, xx = np.mgrid[0:ny, 0:nx] * d
    ky, kx = 3 / (ny * d), -5 / (nx * d)
    wave = np.cos(2 * np.pi * (ky * yy + kx * xx))
    im = SpectralImage(
        np.broadcast_to(wave, (2, ny, nx)).copy(),
        signal_axes=[Axis("y", ny, d, 0, "nm"), Axis("x", nx, d, 0, "nm")],
    )
    out = FFT().apply(im)
    ay, ax = out.signal_axes
    assert (ay.name, ay.units, ay.scale) == ("k_y", "1/nm", pytest.approx(1 / (ny * d)))
    assert ax.offset == pytest.approx(-(nx // 2) / (nx * d))
    f = out.data[0]
    peaks = np.argwhere(f > 0.5 * f.max())
    ks = sorted((ay.values[i], ax.values[j]) for i, j in peaks)
    np.testing.assert_allclose(ks, [(-ky, -kx), (ky, kx)], atol=1e-12)
    with pytest.raises(ValueError, match="non-uniform"):
        FFT().apply(
            SpectralImage(np.ones((2, 4)), signal_axes=[Axis.from_values("E", [1, 2, 4, 8])])
        )


def two_lattices(ny=128, nx=192, seed=0) -> np.ndarray:
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    left = np.cos(2 * np.pi * xx / 5) + np.cos(2 * np.pi * yy / 5)
    th = np.deg2rad(30)
    u, v = xx * np.cos(th) + yy * np.sin(th), -xx * np.sin(th) + yy * np.cos(th)
    right = np.cos(2 * np.pi * u / 9) + np.cos(2 * np.pi * v / 9)
    noise = 0.2 * np.random.default_rng(seed).standard_normal((ny, nx))
    return np.where(xx < nx / 2, left, right) + noise


def test_sliding_window_fft_stack_separates_two_lattices_by_nmf():
    img = two_lattices()
    stack = SlidingWindowFFT.from_image(img, scale=0.05, units="nm", window=32, step=8)
    assert stack.spatial_shape == (13, 21) and stack.signal_shape == (32, 32)
    x = stack.spatial_axes[1]
    assert (x.scale, x.offset, x.units) == (pytest.approx(0.4), pytest.approx(0.775), "nm")
    ky, kx = stack.signal_axes
    assert (kx.scale, kx.offset, kx.units) == (0.625, -10.0, "1/nm")
    # the left lattice (period 5 px = 0.25 nm) peaks at +-4 1/nm along x or y
    left_fft = stack.data[6, 0]
    i, j = np.unravel_index(left_fft.argmax(), left_fft.shape)
    assert sorted([abs(ky.values[i]), abs(kx.values[j])]) == pytest.approx([0.0, 4.0], abs=0.32)
    res = unmix.factorize(stack.unfold(), 2, random_state=0, spatial_shape=stack.spatial_shape)
    maps = res.maps()
    left = x.values < img.shape[1] / 2 * 0.05
    clean = np.abs(x.values - img.shape[1] / 2 * 0.05) > 0.8  # windows not on the border
    for c in range(2):
        m = maps[:, clean, c]
        lo, hi = sorted([m[:, left[clean]].mean(), m[:, ~left[clean]].mean()])
        assert lo < 0.1 * hi  # each component lives in one half
    owner = maps[:, clean, 0] > maps[:, clean, 1]  # which component wins at each window
    assert np.all(owner[:, left[clean]] == owner[0, 0])
    assert np.all(owner[:, ~left[clean]] != owner[0, 0])


def test_sliding_window_fft_accepts_arrays_and_2d_images():
    img = two_lattices(64, 64)
    a = SlidingWindowFFT(window=16, step=16).apply(img)
    assert a.spatial_shape == (4, 4) and a.signal_shape == (16, 16)
    b = SlidingWindowFFT(window=16, step=16).apply(image_from_array(img))
    np.testing.assert_allclose(a.data, b.data)
    flat = SpectralImage(img)  # 2-D data: one spatial (rows) and one signal axis (columns)
    c = SlidingWindowFFT(window=16, step=16).apply(flat)
    np.testing.assert_allclose(a.data, c.data)
    win = img[16:32, 32:48]
    ref = np.abs(
        np.fft.fftshift(np.fft.fft2((win - win.mean()) * np.outer(*[np.hanning(16)] * 2)))
    )
    np.testing.assert_allclose(a.data[1, 2], ref, atol=1e-9)
    with pytest.raises(ValueError, match="takes one 2-D image"):
        SlidingWindowFFT().apply(spectra())
    with pytest.raises(ValueError, match="larger than the image"):
        SlidingWindowFFT(window=128).apply(img)


def test_polar_transform_of_a_ring_is_a_constant_radius_line():
    det, cy, cx, radius = 64, 30.4, 33.1, 15.0
    yy, xx = np.mgrid[0:det, 0:det]
    ring = np.exp(-((np.hypot(yy - cy, xx - cx) - radius) ** 2) / (2 * 1.5**2))
    data = np.broadcast_to(ring, (3, 4, det, det)) * np.arange(1, 13).reshape(3, 4, 1, 1)
    im = SpectralImage(
        data.copy(),
        signal_axes=[Axis("ky", det, 0.1, -3.2, "1/nm"), Axis("kx", det, 0.1, -3.2, "1/nm")],
    )
    out = PolarTransform().apply(im)
    r, theta = out.signal_axes
    assert (r.name, r.units, r.scale, theta.units, theta.size) == ("r", "1/nm", 0.1, "deg", 360)
    info = out.metadata["preprocessing"][-1]["info"]
    np.testing.assert_allclose(info["center"], [cy, cx], atol=1e-6)  # centre of mass
    polar = out.data[1, 2]
    np.testing.assert_allclose(r.values[polar.argmax(axis=0)], radius * 0.1, atol=1e-9)
    profile = polar.max(axis=0)
    assert profile.std() < 0.02 * profile.mean()
    np.testing.assert_allclose(out.data[2, 3] / out.data[0, 0], 12.0)  # linear in the data
    given = PolarTransform(center=[-0.16, 0.11], units=True, n_radii=31, r_max=15, n_angles=90)
    g = given.apply(im)
    assert g.signal_shape == (31, 90) and g.signal_axes[0].scale == pytest.approx(0.05)
    np.testing.assert_allclose(g.signal_axes[0].values[g.data[0, 0].argmax(axis=0)], 1.5)
    with pytest.raises(ValueError, match="for 2-D patterns"):
        PolarTransform().apply(spectra())


# ----------------------------------------------------------------- pipelines and configs
def test_pipeline_from_config_builds_the_same_as_direct_construction():
    config = [
        {"op": "crop", "signal": [110, 180]},
        {"op": "Bin", "spatial": [1, 2], "method": "mean"},
        {"op": "mask-channels", "ranges": [[130, 140]]},
        {"op": "normalize", "kind": "max"},
        {"op": "BaselineALS", "lam": 1e4},
    ]
    direct = Pipeline(
        [
            Crop(signal=[110, 180]),
            Bin(spatial=[1, 2], method="mean"),
            MaskChannels(ranges=[[130, 140]]),
            Normalize(kind="max"),
            BaselineALS(lam=1e4),
        ]
    )
    built = pipeline_from_config(config)
    assert built.steps == direct.steps and len(built) == 5
    im = spectra()
    before = im.data.copy()
    a, b = built.apply(im), direct.apply(im)
    unchanged(before, im)
    np.testing.assert_array_equal(a.data, b.data)
    record = a.metadata["preprocessing"]
    assert [s["op"] for s in record] == [
        "crop",
        "bin",
        "mask_channels",
        "normalize",
        "baseline_als",
    ]
    replay = pipeline_from_config(json.loads(json.dumps(record)))  # provenance replays
    np.testing.assert_array_equal(replay.apply(im).data, a.data)
    assert json.loads(json.dumps(built.to_config())) == built.to_config()
    toml_like = Pipeline([Crop(signal=[110, 180]), PolarTransform(), FFT(taper=None)]).to_config()
    assert toml_like == [
        {"op": "crop", "signal": [110, 180], "units": True},  # no None: TOML has no null
        {"op": "polar_transform", "n_angles": 360, "units": False},
        {"op": "fft", "taper": "none", "onesided": True},
    ]
    assert pipeline_from_config(toml_like).steps[1] == PolarTransform()


def test_config_errors_name_the_valid_ops_and_keys():
    assert sorted(c.op for c in unmix.preprocessing.IMAGE_OPS) == sorted(OPS)
    with pytest.raises(ValueError, match=r"unknown preprocessing op 'smooth'; valid ops: \["):
        op_from_dict({"op": "smooth"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sigma'\].*valid keys: .*'signal'"):
        op_from_dict({"op": "crop", "sigma": 2})
    with pytest.raises(ValueError, match="has no 'op' key"):
        op_from_dict({"signal": [1, 2]})
    with pytest.raises(ValueError, match="a list of dicts"):
        pipeline_from_config({"op": "crop"})
    with pytest.raises(ValueError, match=r"valid keys: \['op', 'fit_range', 'clip'"):
        pipeline_from_config(
            [{"op": "crop", "signal": [1, 2]}, {"op": "power_law_background", "window": [1, 2]}]
        )


OPS_AND_IMAGES = [
    (Crop(signal=[110, 150]), spectra),
    (Bin(spatial=2, signal=2), spectra),
    (MaskChannels([120, 130]), spectra),
    (MaskPixels(pixels=[[1, 1]]), spectra),
    (PowerLawBackground([100, 140]), spectra),
    (BaselineALS(), spectra),
    (Offset(), spectra),
    (Absolute(), spectra),
    (Derivative(), spectra),
    (Log(), spectra),
    (Normalize(per="channel"), spectra),
    (FFT(), spectra),
    (FFT(), patterns),
    (
        SlidingWindowFFT(window=8, step=4),
        lambda: image_from_array(np.random.default_rng(0).random((20, 24))),
    ),
    (PolarTransform(), patterns),
    (BinDetector(2), patterns),
]


@pytest.mark.parametrize(
    ("op", "make"), OPS_AND_IMAGES, ids=[f"{o.op}-{i}" for i, (o, _) in enumerate(OPS_AND_IMAGES)]
)
def test_every_op_leaves_its_input_alone_and_records_itself(op, make):
    im = make()
    im.metadata["preprocessing"] = [{"op": "earlier"}]
    before = np.array(im.data)
    meta_before = dict(im.metadata)
    out = op.apply(im)
    np.testing.assert_array_equal(im.data, before)
    assert im.metadata == meta_before and im.metadata["preprocessing"] == [{"op": "earlier"}]
    record = out.metadata["preprocessing"]
    assert len(record) == 2 and record[-1]["op"] == op.op
    assert json.loads(json.dumps(record)) == record  # JSON-friendly
    assert op_from_dict(record[-1]) == op  # the description rebuilds the op
    assert out.data.shape == tuple(a.size for a in out.axes)


def test_clip_only_touches_values_outside_the_range():
    import unmix
    from unmix.preprocessing import Clip, pipeline_from_config

    data = np.array([[[-1.0, 0.5, 2.0], [0.1, -0.2, 3.0]]])
    image = unmix.SpectralImage(data)
    out = Clip().apply(image)
    np.testing.assert_array_equal(out.data, np.clip(data, 0.0, None))
    np.testing.assert_array_equal(image.data, data)  # input unchanged
    capped = pipeline_from_config([{"op": "clip", "lower": 0.0, "upper": 1.0}]).apply(image)
    assert capped.data.max() == 1.0 and capped.data.min() == 0.0
    assert capped.metadata["preprocessing"][-1]["op"] == "clip"
