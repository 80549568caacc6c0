"""Detector corrections before unmixing 4D-STEM (and other detector) data.

Diffraction patterns recorded at every probe position need their own corrections before
any unmixing (seed 003): the dark and flat field of the camera, hot detector pixels and
cosmic-ray spikes, a diffuse background under each pattern, and the centring of the
patterns (the direct beam wanders as the probe is scanned: the *descan*).  Each operation
here works pattern by pattern, so it streams a file-backed scan line by line; those that
need a statistic of the whole scan first (hot pixels from the mean pattern, the descan
plane fitted to every pattern's centre) take it in one streamed pass.

All of them also work on spectra (a 1-D signal) where that makes sense (dark/flat,
despiking, background); :class:`CenterPatterns` needs 2-D patterns.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..spectral_image import SpectralImage
from ._imagebase import ImageOp, Out, as_float, mean_signal, need_signal_ndim, register
from ._lines import LineArray, line_blocks

__all__ = ["CenterPatterns", "DarkFlat", "Despike", "PatternBackground"]

_logger = logging.getLogger("unmix.preprocessing")


def _signal_array(op: ImageOp, value: Any, image: SpectralImage, what: str) -> np.ndarray:
    """``value`` (an array or the path of a ``.npy`` file) of the image's signal shape."""
    arr = np.load(value) if isinstance(value, (str, os.PathLike)) else np.asarray(value)
    arr = np.asarray(arr, dtype=float)
    if arr.shape != tuple(image.signal_shape):
        raise ValueError(
            f"{type(op).__name__}: {what} has shape {arr.shape}, the signal shape is "
            f"{tuple(image.signal_shape)}; record it with the same detector binning"
        )
    return arr


def _signals(x: np.ndarray, image: SpectralImage) -> np.ndarray:
    """``x`` as ``(pixels, *signal_shape)``."""
    return x.reshape(-1, *image.signal_shape)


def _median(sig: np.ndarray, size: int) -> np.ndarray:
    """Median filter of each signal of ``(pixels, *signal_shape)`` over ``size`` values
    along every signal axis."""
    return ndimage.median_filter(sig, size=(1,) + (int(size),) * (sig.ndim - 1), mode="nearest")


@register
@dataclass
class DarkFlat(ImageOp):
    """Dark and flat-field correction ``(X - dark) / flat`` of every signal.

    Parameters
    ----------
    dark, flat : array-like or str, optional
        Of the signal shape (a detector image, or a spectrum), or the path of a ``.npy``
        file holding it.  ``flat`` is scaled to mean 1 over its positive entries; detector
        pixels where it is not positive are set to 0 (dead pixels, logged).

    Notes
    -----
    Axes unchanged; per pattern, so a lazy scan is corrected line by line.
    """

    op = "dark_flat"
    streaming = "pixel"
    dark: Any = None
    flat: Any = None

    def __post_init__(self) -> None:
        if self.dark is None and self.flat is None:
            raise ValueError("DarkFlat: give dark= and/or flat= (arrays or .npy paths)")

    def _transform(self, image: SpectralImage) -> Out:
        x0 = as_float(image)
        x = _signals(x0, image)
        if self.dark is not None:
            x = x - _signal_array(self, self.dark, image, "dark")
        info = {}
        if self.flat is not None:
            flat = _signal_array(self, self.flat, image, "flat")
            good = flat > 0
            if not good.any():
                raise ValueError("DarkFlat: the flat field has no positive entry")
            gain = np.where(good, flat / flat[good].mean(), 1.0)
            x = np.where(good, x / gain, 0.0)
            info["dead_pixels"] = int((~good).sum())
        data = x.reshape(image.shape).astype(x0.dtype, copy=False)
        return Out(data, list(image.spatial_axes), list(image.signal_axes), None, info)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for key in ("dark", "flat"):  # arrays are summarized, paths kept
            v = getattr(self, key)
            if v is not None and not isinstance(v, (str, os.PathLike)):
                d[key] = f"<array {np.shape(v)}>"
        return d


@register
@dataclass
class Despike(ImageOp):
    """Replace spikes (cosmic rays, hot detector pixels) by the median of their
    neighbourhood.

    Parameters
    ----------
    threshold : float
        A value is a spike when it exceeds the median of its ``size`` neighbourhood (along
        the signal axes) by more than ``threshold`` noise levels; the noise level is the
        larger of ``sqrt(median)`` (Poisson counts) and 1.4826 x the median absolute
        deviation from the median filter over the signal.
    size : int
        Side of the median filter's neighbourhood (odd, >= 3).
    mode : {"signal", "detector"}
        ``"signal"``: spikes are found in every pattern (spectrum) on its own.
        ``"detector"``: hot detector pixels are found once, in the mean pattern of the
        whole scan (one streamed pass), and replaced in every pattern.

    Notes
    -----
    Axes unchanged; the number of values replaced goes to the description's ``info``.
    """

    op = "despike"
    threshold: float = 8.0
    size: int = 3
    mode: str = "signal"

    def __post_init__(self) -> None:
        if self.mode not in ("signal", "detector"):
            raise ValueError(f"Despike: mode must be 'signal' or 'detector', got {self.mode!r}")
        if int(self.size) < 3 or int(self.size) % 2 == 0:
            raise ValueError(f"Despike: size must be odd and >= 3, got {self.size!r}")
        if not float(self.threshold) > 0:
            raise ValueError(f"Despike: threshold must be > 0, got {self.threshold!r}")

    def _spikes(self, sig: np.ndarray, med: np.ndarray) -> np.ndarray:
        axes = tuple(range(1, sig.ndim))
        mad = np.median(np.abs(sig - med), axis=axes, keepdims=True)
        noise = np.maximum(np.sqrt(np.clip(med, 0, None)), 1.4826 * mad)
        return sig - med > float(self.threshold) * np.maximum(noise, 1e-12)

    def hot_pixels(self, mean: np.ndarray) -> np.ndarray:
        """The hot detector pixels of a mean pattern (bool, the signal shape)."""
        m = mean[None]
        return self._spikes(m, _median(m, self.size))[0]

    def _transform(self, image: SpectralImage) -> Out:
        sig = _signals(as_float(image), image)
        med = _median(sig, self.size)
        if self.mode == "detector":
            hot = self.hot_pixels(sig.mean(axis=0))
            spikes = np.broadcast_to(hot, sig.shape)
        else:
            spikes = self._spikes(sig, med)
        out = np.where(spikes, med, sig).reshape(image.shape)
        info = {"replaced": int(spikes.sum())}
        return Out(out, list(image.spatial_axes), list(image.signal_axes), None, info)

    def line_kind(self, image: SpectralImage) -> str:
        return "pixel" if self.mode == "signal" else "settle"

    def settled(self, image: SpectralImage) -> tuple[ImageOp, dict[str, Any]]:
        hot = self.hot_pixels(mean_signal(image))
        return _ReplacePixels(hot, int(self.size)), {"hot_pixels": int(hot.sum())}


@dataclass
class _ReplacePixels(ImageOp):
    """Fixed detector pixels replaced by their neighbourhood median (Despike's settled
    ``"detector"`` mode on a lazy scan)."""

    hot: Any = None
    size: int = 3
    op = "despike"

    def _transform(self, image: SpectralImage) -> Out:
        sig = _signals(as_float(image), image)
        out = np.where(self.hot[None], _median(sig, self.size), sig).reshape(image.shape)
        return Out(out, list(image.spatial_axes), list(image.signal_axes))


@register
@dataclass
class PatternBackground(ImageOp):
    """Subtract a constant background from every pattern (spectrum): a low percentile
    of its values, or the median of the pattern's outer ring.

    Parameters
    ----------
    method : {"percentile", "ring"}
        ``"percentile"``: the ``percentile``-th percentile of each signal.
        ``"ring"`` (2-D patterns): the median of the detector pixels farther than
        ``ring`` x the half-size of the detector from its centre (the diffuse background
        around the diffraction discs).
    percentile : float
    ring : float
        Inner radius of the ring as a fraction of the detector's half-size (0 to 1).
    clip : bool
        Clip negative results to 0 (for NMF).

    Notes
    -----
    Axes unchanged; per pattern.
    """

    op = "pattern_background"
    streaming = "pixel"
    method: str = "percentile"
    percentile: float = 5.0
    ring: float = 0.9
    clip: bool = True

    def __post_init__(self) -> None:
        if self.method not in ("percentile", "ring"):
            raise ValueError(
                f"PatternBackground: method must be 'percentile' or 'ring', got {self.method!r}"
            )
        if not 0 <= float(self.percentile) <= 100 or not 0 < float(self.ring) < 1:
            raise ValueError(
                "PatternBackground: percentile must lie in [0, 100] and ring in (0, 1); got "
                f"percentile={self.percentile!r}, ring={self.ring!r}"
            )

    def _levels(self, sig: np.ndarray, image: SpectralImage) -> np.ndarray:
        flat = sig.reshape(sig.shape[0], -1)
        if self.method == "percentile":
            return np.percentile(flat, float(self.percentile), axis=1)
        need_signal_ndim(self, image, 2, "use method='percentile' for spectra")
        ny, nx = image.signal_shape
        yy, xx = np.mgrid[:ny, :nx]
        r = np.hypot((yy - (ny - 1) / 2) / (ny / 2), (xx - (nx - 1) / 2) / (nx / 2))
        ring = (r > float(self.ring)).reshape(-1)
        if not ring.any():
            raise ValueError(f"PatternBackground: no detector pixel beyond ring={self.ring}")
        return np.median(flat[:, ring], axis=1)

    def _transform(self, image: SpectralImage) -> Out:
        sig = _signals(as_float(image), image)
        levels = self._levels(sig, image)
        out = sig - levels.reshape(-1, *([1] * (sig.ndim - 1)))
        if self.clip:
            out = np.clip(out, 0, None)
        data = out.reshape(image.shape)
        return Out(data, list(image.spatial_axes), list(image.signal_axes))


@register
@dataclass
class CenterPatterns(ImageOp):
    """Shift every 2-D pattern so the direct beam sits at the detector centre.

    Parameters
    ----------
    threshold : float
        The beam's centre is the centre of mass of ``max(p - threshold x max(p), 0)``:
        the part of the pattern ``p`` above a fraction of its maximum (the bright
        central disc).
    descan : {"pattern", "plane"}
        ``"pattern"``: each pattern is shifted by its own centre.  ``"plane"``: the centres
        of all patterns (one streamed pass) are fitted by a plane over the scan
        ``c(y, x) = c0 + a y + b x`` (the descan of the probe, free of the contrast that
        moves single centres) and each pattern is shifted by the plane.
    order : int
        Spline order of the sub-pixel shift (1: bilinear); pixels shifted in from
        outside the detector are 0.

    Notes
    -----
    Axes unchanged; ``info`` holds the mean shift, and for ``"plane"`` the fitted
    coefficients (detector pixels per scan pixel).
    """

    op = "center_patterns"
    threshold: float = 0.5
    descan: str = "pattern"
    order: int = 1

    def __post_init__(self) -> None:
        if self.descan not in ("pattern", "plane"):
            raise ValueError(
                f"CenterPatterns: descan must be 'pattern' or 'plane', got {self.descan!r}"
            )
        if not 0 <= float(self.threshold) < 1:
            raise ValueError(f"CenterPatterns: threshold in [0, 1), got {self.threshold!r}")

    def centres(self, patterns: np.ndarray) -> np.ndarray:
        """The beam centre ``(cy, cx)`` of each pattern of ``(n, ny, nx)``."""
        p = np.clip(np.asarray(patterns, dtype=float), 0, None)
        peak = p.reshape(len(p), -1).max(axis=1)[:, None, None]
        w = np.clip(p - float(self.threshold) * peak, 0, None)  # no pixelation bias
        total = w.sum(axis=(1, 2))
        ny, nx = p.shape[1:]
        mid = np.array([(ny - 1) / 2, (nx - 1) / 2])
        cy = np.einsum("nij,i->n", w, np.arange(ny)) / np.where(total > 0, total, 1)
        cx = np.einsum("nij,j->n", w, np.arange(nx)) / np.where(total > 0, total, 1)
        out = np.stack([cy, cx], axis=1)
        out[total <= 0] = mid  # empty pattern: left where it is
        return out

    def _shift(self, patterns: np.ndarray, centres: np.ndarray) -> np.ndarray:
        ny, nx = patterns.shape[1:]
        mid = np.array([(ny - 1) / 2, (nx - 1) / 2])
        out = np.empty_like(patterns)
        for i, (p, c) in enumerate(zip(patterns, centres, strict=True)):
            out[i] = ndimage.shift(p, mid - c, order=int(self.order), mode="constant")
        return out

    def _plane(self, centres: np.ndarray, spatial_shape: tuple) -> np.ndarray:
        """Least-squares plane coefficients (3 x 2) of the centres over the scan grid."""
        design = _plane_design(spatial_shape, 0, spatial_shape[0])
        coef, *_ = np.linalg.lstsq(design, centres, rcond=None)
        return coef

    def _transform(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 2, "the patterns' centre is for 2-D patterns")
        x = as_float(image)
        sig = _signals(x, image)
        found = self.centres(sig)
        info: dict[str, Any] = {}
        if self.descan == "plane":
            coef = self._plane(found, image.spatial_shape)
            found = _plane_design(image.spatial_shape, 0, image.spatial_shape[0]) @ coef
            info["plane"] = coef.tolist()
        out = self._shift(sig, found).reshape(x.shape)
        mid = np.array([(s - 1) / 2 for s in image.signal_shape])
        info["mean_shift"] = (mid - found.mean(axis=0)).tolist()
        return Out(out, list(image.spatial_axes), list(image.signal_axes), None, info)

    def line_kind(self, image: SpectralImage) -> str:
        return "pixel" if self.descan == "pattern" else "lines"

    def stream_lines(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 2, "the patterns' centre is for 2-D patterns")
        found = np.concatenate(
            [self.centres(_signals(np.asarray(b), image)) for b in line_blocks(image.data)]
        )
        coef = self._plane(found, image.spatial_shape)
        dtype = np.result_type(image.dtype, np.float32)
        dtype = dtype if np.issubdtype(image.dtype, np.floating) else np.dtype(np.float64)

        def compute(a: int, b: int) -> np.ndarray:
            sig = _signals(np.asarray(image.data[a:b], dtype=dtype), image)
            c = _plane_design(image.spatial_shape, a, b) @ coef
            return self._shift(sig, c).reshape(b - a, *image.shape[1:])

        data = LineArray(image.shape, dtype, compute)
        info = {"plane": coef.tolist(), "streamed": "line by line"}
        return Out(data, list(image.spatial_axes), list(image.signal_axes), None, info)


def _plane_design(spatial_shape: tuple, a: int, b: int) -> np.ndarray:
    """Design matrix ``[1, y, x]`` of a plane over scan lines ``a .. b - 1`` (``[1, y]``
    for a 1-D scan; further spatial axes are not fitted)."""
    grid = np.indices((b - a, *spatial_shape[1:])).reshape(len(spatial_shape), -1).T
    grid = grid.astype(float)
    grid[:, 0] += a
    return np.column_stack([np.ones(len(grid)), grid[:, :2]])
