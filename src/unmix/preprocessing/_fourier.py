"""Reciprocal-space and geometric transforms: FFT magnitudes, sliding-window FFTs of an
atomic-resolution image, and the polar transform of diffraction patterns."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..spectral_image import Axis, SpectralImage
from ._imagebase import (
    DELETE,
    ImageOp,
    Out,
    as_float,
    float_dtype,
    mean_signal,
    need_signal_ndim,
    need_uniform,
    read,
    reciprocal_units,
    register,
)

__all__ = ["FFT", "PolarTransform", "SlidingWindowFFT", "image_from_array"]

_logger = logging.getLogger("unmix.preprocessing")

_TAPERS = ("none", "hann", "hamming")


def _taper(name: str | None, n: int) -> np.ndarray:
    if name in (None, "none"):
        return np.ones(n)
    if name == "hann":
        return np.hanning(n)
    if name == "hamming":
        return np.hamming(n)
    raise ValueError(f"taper must be one of {list(_TAPERS)} (or None), got {name!r}")


def _freq_axis(axis: Axis, n: int, centred: bool) -> Axis:
    """Reciprocal axis of an FFT over ``axis`` (``n`` points): ``1 / (n |d|)`` per point."""
    step = 1.0 / (axis.size * abs(axis.scale)) if axis.scale else 1.0 / axis.size
    offset = -(axis.size // 2) * step if centred else 0.0
    return Axis(f"k_{axis.name}", n, step, offset, reciprocal_units(axis.units), axis.navigate)


def _real_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


@register
@dataclass
class FFT(ImageOp):
    """FFT magnitude of every signal (spectrum or 2-D pattern).

    Parameters
    ----------
    taper : {"none", "hann", "hamming"} or None
        Window multiplied in before the transform (reduces leakage).
    onesided : bool
        Spectra: keep the non-negative frequencies only (``rfft``, ``n // 2 + 1`` points);
        False gives the full centred spectrum. 2-D patterns are always centred.

    Notes
    -----
    Each signal axis (uniform) of ``n`` points and step ``d`` becomes ``"k_<name>"`` with
    step ``1 / (n |d|)`` in ``"1/<units>"``; a centred axis starts at
    ``-(n // 2) / (n |d|)`` (zero frequency at index ``n // 2``). Spatial axes unchanged.
    """

    op = "fft"
    streaming = "pixel"
    taper: str | None = "none"
    onesided: bool = True

    def __post_init__(self) -> None:
        self.taper = "none" if self.taper is None else self.taper
        _taper(self.taper, 1)

    def _transform(self, image: SpectralImage) -> Out:
        for ax in image.signal_axes:
            need_uniform(self, ax)
        x = as_float(image)
        dtype = _real_dtype(x.dtype)
        sig = image.signal_axes
        if len(sig) == 1:
            n = sig[0].size
            xw = x * _taper(self.taper, n).astype(x.dtype)
            if self.onesided:
                f = np.abs(np.fft.rfft(xw, axis=-1))
                axes = [_freq_axis(sig[0], n // 2 + 1, centred=False)]
            else:
                f = np.abs(np.fft.fftshift(np.fft.fft(xw, axis=-1), axes=-1))
                axes = [_freq_axis(sig[0], n, centred=True)]
        else:
            ny, nx = image.signal_shape
            t = np.outer(_taper(self.taper, ny), _taper(self.taper, nx)).astype(x.dtype)
            f = np.abs(np.fft.fftshift(np.fft.fft2(x * t, axes=(-2, -1)), axes=(-2, -1)))
            axes = [_freq_axis(sig[0], ny, centred=True), _freq_axis(sig[1], nx, centred=True)]
        meta = {"quantity": "|FFT|"}
        return Out(f.astype(dtype, copy=False), list(image.spatial_axes), axes, meta)


def image_from_array(
    array: Any, scale: float = 1.0, units: str = "", offset: float = 0.0, title: str = ""
) -> SpectralImage:
    """A single 2-D image as a one-pixel :class:`~unmix.SpectralImage` with a 2-D signal.

    Parameters
    ----------
    array : array-like (ny, nx)
    scale, offset, units : calibration of both image axes (pixel size, e.g. 0.02 nm).
    title : str
    """
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"image_from_array takes a 2-D array, got shape {a.shape}")
    sig = [
        Axis(n, s, scale, offset, units, navigate=False)
        for n, s in zip("yx", a.shape, strict=True)
    ]
    return SpectralImage(
        a[None], [Axis("index", 1)], sig, {"title": title, "signal_type": "image"}
    )


@register
@dataclass
class SlidingWindowFFT(ImageOp):
    """Local FFT magnitudes of one 2-D image (an atomic-resolution STEM/STM image).

    Square windows of ``window`` pixels, moved by ``step`` pixels, are tapered and
    Fourier transformed; unmixing the stack separates regions by their local lattice
    (Kannan et al. 2018, STEM example with k = 3).

    Parameters
    ----------
    window : int
        Window side in pixels.
    step : int
        Distance between window positions in pixels.
    taper : {"hann", "hamming", "none"} or None
    subtract_mean : bool
        Subtract each window's mean before tapering (keeps the zero-frequency peak from
        dominating).

    Notes
    -----
    Input: a 2-D ``numpy`` array (pixel size 1), an image with a 2-D signal and a single
    pixel (:func:`image_from_array`), or an image whose data is 2-D (one spatial and one
    signal axis, read as rows and columns). Output: spatial axes = window positions
    ``(ny, nx)`` with scale ``step x pixel size`` and offset at the first window's centre;
    signal axes = ``(window, window)`` centred ``|FFT|`` in ``"1/<units>"`` with step
    ``1 / (window x pixel size)``. Pixel weights of the input are dropped.
    """

    op = "sliding_window_fft"
    window: int = 32
    step: int = 8
    taper: str | None = "hann"
    subtract_mean: bool = True

    def __post_init__(self) -> None:
        self.taper = "none" if self.taper is None else self.taper
        _taper(self.taper, 1)
        if int(self.window) < 2 or int(self.step) < 1:
            raise ValueError(
                f"SlidingWindowFFT: window must be >= 2 and step >= 1, got window="
                f"{self.window!r}, step={self.step!r}"
            )

    @classmethod
    def from_image(
        cls, array: Any, scale: float = 1.0, units: str = "", **params: Any
    ) -> SpectralImage:
        """The local-FFT stack of a 2-D array with pixel size ``scale`` in ``units``;
        ``params`` are this class's parameters (``window``, ``step``, ...)."""
        return cls(**params).apply(image_from_array(array, scale, units))

    def apply(self, image: SpectralImage | np.ndarray) -> SpectralImage:
        if isinstance(image, np.ndarray):
            image = image_from_array(image)
        return super().apply(image)

    def _image2d(self, image: SpectralImage) -> tuple[np.ndarray, Axis, Axis]:
        if len(image.signal_axes) == 2 and image.n_pixels == 1:
            ay, ax = image.signal_axes
            return read(image).reshape(image.signal_shape), ay, ax
        if len(image.shape) == 2:
            return read(image), image.spatial_axes[0], image.signal_axes[0]
        raise ValueError(
            f"SlidingWindowFFT takes one 2-D image; this image has spatial shape "
            f"{image.spatial_shape} and signal shape {image.signal_shape}. Pass a 2-D "
            "array, unmix.preprocessing.image_from_array(array, scale, units), or crop "
            "the scan to one pattern"
        )

    def _transform(self, image: SpectralImage) -> Out:
        img, ay, ax = self._image2d(image)
        for a in (ay, ax):
            need_uniform(self, a)
        w, s = int(self.window), int(self.step)
        ny, nx = img.shape
        if w > min(ny, nx):
            raise ValueError(
                f"SlidingWindowFFT: window {w} is larger than the image {img.shape}; use a "
                "smaller window"
            )
        img = np.asarray(img, dtype=float_dtype(img.dtype))
        views = np.lib.stride_tricks.sliding_window_view(img, (w, w))[::s, ::s]
        my, mx = views.shape[:2]
        taper = np.outer(_taper(self.taper, w), _taper(self.taper, w)).astype(img.dtype)
        out = np.empty((my, mx, w, w), dtype=_real_dtype(img.dtype))
        rows = max(1, int(2**25 // max(1, mx * w * w * 16)))  # ~32 MB of complex per chunk
        for r0 in range(0, my, rows):
            block = views[r0 : r0 + rows]
            if self.subtract_mean:
                block = block - block.mean(axis=(-2, -1), keepdims=True)
            f = np.fft.fft2(block * taper, axes=(-2, -1))
            out[r0 : r0 + rows] = np.abs(np.fft.fftshift(f, axes=(-2, -1)))
        spatial = [
            Axis(a.name, m, a.scale * s, a.offset + a.scale * (w - 1) / 2, a.units, True)
            for a, m in ((ay, my), (ax, mx))
        ]
        signal = [_freq_axis(Axis(a.name, w, a.scale, 0.0, a.units), w, True) for a in (ay, ax)]
        for a in signal:
            a.navigate = False
        meta = {"quantity": "|FFT|", "units": "", "pixel_weights": DELETE}
        info = {"image_shape": list(img.shape), "n_windows": my * mx}
        return Out(out, spatial, signal, meta, info)


@register
@dataclass
class PolarTransform(ImageOp):
    """Resample 2-D patterns (diffraction) on a polar grid ``(r, theta)``, bilinearly.

    Parameters
    ----------
    center : (cy, cx), optional
        Pattern centre as (row, column) detector indices (calibrated coordinates with
        ``units=True``). Default: the centre of mass of the mean pattern.
    n_radii : int, optional
        Number of radii from 0 to ``r_max``; default one per detector pixel.
    n_angles : int
        Number of angles over 360 degrees (from the +column axis towards +row).
    r_max : float, optional
        Largest radius in detector pixels; default the largest circle inside the
        detector. Samples outside the detector are 0 (logged).
    units : bool
        ``center`` in calibrated detector units instead of indices.

    Notes
    -----
    The two detector axes become ``"r"`` (pixels, or the detector's calibrated units when
    both axes share a uniform scale and units) and ``"theta"`` (deg, step
    ``360 / n_angles``). Spatial axes unchanged; the centre and ``r_max`` used go to the
    description's ``info``.
    """

    op = "polar_transform"
    center: Any = None
    n_radii: int | None = None
    n_angles: int = 360
    r_max: float | None = None
    units: bool = False

    def __post_init__(self) -> None:
        if int(self.n_angles) < 1 or (self.n_radii is not None and int(self.n_radii) < 2):
            raise ValueError(
                f"PolarTransform: n_angles must be >= 1 and n_radii >= 2, got "
                f"n_angles={self.n_angles!r}, n_radii={self.n_radii!r}"
            )

    def _centre(self, image: SpectralImage, x: np.ndarray) -> tuple[float, float]:
        ay, ax = image.signal_axes
        if self.center is not None:
            if len(self.center) != 2:
                raise ValueError(f"PolarTransform: center is (cy, cx), got {self.center!r}")
            cy, cx = (float(c) for c in self.center)
            if self.units:
                for a in (ay, ax):
                    need_uniform(self, a)
                cy, cx = (cy - ay.offset) / ay.scale, (cx - ax.offset) / ax.scale
            return cy, cx
        mean = np.clip(x.reshape(-1, *image.signal_shape).mean(axis=0), 0, None)
        total = float(mean.sum())
        if not total > 0:
            _logger.info("PolarTransform: empty mean pattern; using the detector centre")
            return (ay.size - 1) / 2, (ax.size - 1) / 2
        iy, ix = np.arange(ay.size), np.arange(ax.size)
        return float(mean.sum(axis=1) @ iy) / total, float(mean.sum(axis=0) @ ix) / total

    def _transform(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 2, "the polar transform is for 2-D patterns")
        x = read(image)
        ny, nx = image.signal_shape
        if min(ny, nx) < 2:
            raise ValueError(f"PolarTransform: detector {ny} x {nx} is too small")
        cy, cx = self._centre(image, x)
        r_max = self.r_max
        if r_max is None:
            r_max = min(cy, cx, ny - 1 - cy, nx - 1 - cx)
        r_max = float(r_max)
        if not r_max > 0:
            raise ValueError(
                f"PolarTransform: centre ({cy:g}, {cx:g}) gives r_max = {r_max:g}; the "
                f"centre must lie inside the {ny} x {nx} detector (or give r_max > 0)"
            )
        nr = int(self.n_radii) if self.n_radii is not None else math.floor(r_max) + 1
        radii = np.linspace(0.0, r_max, nr) if self.n_radii is not None else np.arange(nr) * 1.0
        nt = int(self.n_angles)
        theta = np.arange(nt) * (360.0 / nt)
        M, outside = _bilinear_matrix(cy, cx, radii, np.deg2rad(theta), ny, nx)
        if outside:
            _logger.info("PolarTransform: %d polar samples lie outside the detector (0)", outside)
        X = x.reshape(image.n_pixels, ny * nx)
        dtype = _real_dtype(float_dtype(X.dtype))
        out = np.ascontiguousarray((M.astype(dtype) @ X.T.astype(dtype, copy=False)).T)
        out = out.reshape(*image.spatial_shape, nr, nt)
        ay, ax = image.signal_axes
        rstep = radii[1] - radii[0] if nr > 1 else 1.0
        same = ay.is_uniform and ax.is_uniform and abs(ay.scale) == abs(ax.scale)
        if same and ay.units and ay.units == ax.units:
            r_axis = Axis("r", nr, rstep * abs(ay.scale), 0.0, ay.units, navigate=False)
        else:
            r_axis = Axis("r", nr, rstep, 0.0, "px", navigate=False)
        t_axis = Axis("theta", nt, 360.0 / nt, 0.0, "deg", navigate=False)
        info = {"center": [cy, cx], "r_max": r_max}
        return Out(out, list(image.spatial_axes), [r_axis, t_axis], None, info)

    def line_kind(self, image: SpectralImage) -> str:
        return "pixel" if self.center is not None else "settle"

    def settled(self, image: SpectralImage) -> tuple[ImageOp, dict[str, Any]]:
        """The centre of mass of the mean pattern, from one streamed pass."""
        need_signal_ndim(self, image, 2, "the polar transform is for 2-D patterns")
        centre = self._centre(image, mean_signal(image).reshape(1, -1))
        op = PolarTransform(centre, self.n_radii, self.n_angles, self.r_max, units=False)
        return op, {"center": [float(c) for c in centre]}


def _bilinear_matrix(
    cy: float, cx: float, radii: np.ndarray, theta: np.ndarray, ny: int, nx: int
) -> tuple[sp.csr_matrix, int]:
    """Sparse (n_r * n_theta, ny * nx) matrix of bilinear interpolation weights."""
    yy = cy + radii[:, None] * np.sin(theta)[None, :]
    xx = cx + radii[:, None] * np.cos(theta)[None, :]
    yy, xx = yy.ravel(), xx.ravel()
    inside = (yy >= 0) & (yy <= ny - 1) & (xx >= 0) & (xx <= nx - 1)
    y0 = np.clip(np.floor(yy), 0, ny - 2).astype(np.intp)
    x0 = np.clip(np.floor(xx), 0, nx - 2).astype(np.intp)
    fy, fx = yy - y0, xx - x0
    rows = np.repeat(np.arange(yy.size), 4)
    cols = np.stack([y0 * nx + x0, y0 * nx + x0 + 1, (y0 + 1) * nx + x0, (y0 + 1) * nx + x0 + 1])
    vals = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    vals = vals * inside[None, :]
    M = sp.csr_matrix((vals.T.ravel(), (rows, cols.T.ravel())), shape=(yy.size, ny * nx))
    return M, int((~inside).sum())
