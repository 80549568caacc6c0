"""Point-wise and per-spectrum operations: offset, absolute value, derivative, logarithm,
normalization. None of them changes the axes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spectral_image import SpectralImage
from ._imagebase import ImageOp, Out, as_float, need_signal_ndim, pixel_weights, read, register
from ._lines import line_blocks

__all__ = ["Absolute", "Derivative", "Log", "Normalize", "Offset"]

_logger = logging.getLogger("unmix.preprocessing")


@register
@dataclass
class Offset(ImageOp):
    """Add a constant so signed data (STM current, a derivative) becomes non-negative.

    Parameters
    ----------
    value : float or "min"
        The constant to add; ``"min"`` adds minus the data minimum (the minimum becomes 0).

    Notes
    -----
    Axes unchanged; the constant added is recorded in the description's ``info``.
    """

    op = "offset"
    value: Any = "min"

    def __post_init__(self) -> None:
        if self.value != "min" and not isinstance(self.value, (int, float, np.number)):
            raise ValueError(f"Offset: value must be a number or 'min', got {self.value!r}")

    def _transform(self, image: SpectralImage) -> Out:
        x = as_float(image)
        c = -float(np.nanmin(x)) if self.value == "min" else float(self.value)
        return Out(x + c, list(image.spatial_axes), list(image.signal_axes), None, {"added": c})

    def line_kind(self, image: SpectralImage) -> str:
        return "settle" if self.value == "min" else "pixel"

    def settled(self, image: SpectralImage) -> tuple[ImageOp, dict[str, Any]]:
        lo = min(float(np.nanmin(b)) for b in line_blocks(image.data))
        return Offset(value=-lo), {"added": -lo}


@register
@dataclass
class Absolute(ImageOp):
    """``|X|`` (e.g. the magnitude of a signed tunnelling current). Axes unchanged."""

    op = "absolute"
    streaming = "pixel"

    def _transform(self, image: SpectralImage) -> Out:
        return Out(np.abs(read(image)), list(image.spatial_axes), list(image.signal_axes))


@register
@dataclass
class Clip(ImageOp):
    """Clip values to ``[lower, upper]`` (e.g. the few noise-negative entries of a dI/dV
    map, where an offset would add a large constant to every spectrum). Axes unchanged."""

    lower: float | None = 0.0
    upper: float | None = None
    op = "clip"
    streaming = "pixel"

    def _transform(self, image: SpectralImage) -> Out:
        data = np.clip(read(image), self.lower, self.upper)
        return Out(data, list(image.spatial_axes), list(image.signal_axes))


@register
@dataclass
class Derivative(ImageOp):
    """Numerical derivative along the signal axis (dI/dV from I(V) curves).

    Parameters
    ----------
    edge_order : {1, 2}
        Accuracy at the ends (``np.gradient``); central differences inside, with the axis
        coordinates (non-uniform and decreasing axes included).

    Notes
    -----
    Axes unchanged; the data units become ``"<units>/<axis units>"`` (``"A/V"``) and the
    quantity ``"d<quantity>/d<axis name>"``.
    """

    op = "derivative"
    streaming = "pixel"
    edge_order: int = 1

    def _transform(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 1)
        ax = image.signal_axes[0]
        if ax.size < self.edge_order + 1:
            raise ValueError(
                f"Derivative: axis {ax.name!r} has {ax.size} point(s), need at least "
                f"{self.edge_order + 1} for edge_order={self.edge_order}"
            )
        x = as_float(image)
        dx = np.gradient(x, ax.values.astype(x.dtype), axis=-1, edge_order=self.edge_order)
        u = str(image.metadata.get("units", "") or "")
        au = ax.units
        units = f"{u}/{au}" if u and au else (u or (f"1/{au}" if au else ""))
        q = str(image.metadata.get("quantity", "") or "")
        meta = {"units": units, "quantity": f"d{q}/d{ax.name}" if q else f"d/d{ax.name}"}
        return Out(dx, list(image.spatial_axes), list(image.signal_axes), meta)


@register
@dataclass
class Log(ImageOp):
    """``log(X + offset)`` (compress a large dynamic range, e.g. diffraction patterns).

    Parameters
    ----------
    offset : float
        Added before the logarithm; ``X + offset`` must be positive everywhere.

    Notes
    -----
    Axes unchanged; the quantity becomes ``"log(<quantity>)"`` and the units empty.
    """

    op = "log"
    streaming = "pixel"
    offset: float = 1.0

    def _transform(self, image: SpectralImage) -> Out:
        x = as_float(image) + float(self.offset)
        lo = float(np.nanmin(x))
        if lo <= 0:
            raise ValueError(
                f"Log: data + offset has minimum {lo:g} <= 0; use offset > "
                f"{float(self.offset) - lo:g}, or apply Offset first"
            )
        q = str(image.metadata.get("quantity", "") or "")
        meta = {"quantity": f"log({q})" if q else "log", "units": ""}
        return Out(np.log(x), list(image.spatial_axes), list(image.signal_axes), meta)


@register
@dataclass
class Normalize(ImageOp):
    """Divide every spectrum (``per="pixel"``) or every channel (``per="channel"``) by a
    scale.

    Parameters
    ----------
    kind : {"sum", "max", "l2"}
        The scale: the sum, the largest absolute value, or the Euclidean norm.
    per : {"pixel", "channel"}
        ``"pixel"``: over the signal axes of each pixel; ``"channel"``: over the pixels of
        each channel (pixels with weight 0 in ``metadata["pixel_weights"]`` do not count).

    Notes
    -----
    Axes unchanged; zero scales are left as 1 (logged); the units become empty.
    """

    op = "normalize"
    kind: str = "sum"
    per: str = "pixel"

    def __post_init__(self) -> None:
        if self.kind not in ("sum", "max", "l2"):
            raise ValueError(f"Normalize: kind must be 'sum', 'max' or 'l2', got {self.kind!r}")
        if self.per not in ("pixel", "channel"):
            raise ValueError(f"Normalize: per must be 'pixel' or 'channel', got {self.per!r}")

    def _transform(self, image: SpectralImage) -> Out:
        x = as_float(image).reshape(image.n_pixels, image.n_channels)
        if self.per == "pixel":
            return _divided(image, x, self._scales(self._sums(x, axis=1), self.per)[:, None])
        w = pixel_weights(image)
        y = x if w is None else x[w.reshape(-1) > 0]
        return _divided(image, x, self._scales(self._sums(y, axis=0), self.per)[None, :])

    def _sums(self, y: np.ndarray, *, axis: int) -> np.ndarray:
        """The running statistic of ``kind`` along ``axis``: sums, largest absolute
        values, or sums of squares (combined across blocks by ``+`` or ``max``)."""
        if self.kind == "sum":
            return y.sum(axis=axis)
        if self.kind == "max":
            return np.abs(y).max(axis=axis, initial=0.0)
        return (y * y).sum(axis=axis)

    def _scales(self, stat: np.ndarray, per: str) -> np.ndarray:
        """The scales from the statistic; zero scales left at 1."""
        s = np.sqrt(stat) if self.kind == "l2" else stat
        zero = ~(s != 0)
        if zero.any():
            _logger.info("Normalize: %d zero %s scale(s) left at 1", int(zero.sum()), per)
        return np.where(zero, 1, s)

    def line_kind(self, image: SpectralImage) -> str:
        # per channel: one streamed pass takes every channel's scale, then a division
        return "pixel" if self.per == "pixel" else "settle"

    def settled(self, image: SpectralImage) -> tuple[ImageOp, dict[str, Any]]:
        w = pixel_weights(image)
        w = None if w is None else w.reshape(image.spatial_shape[0], -1) > 0
        stat, a = np.zeros(image.n_channels), 0
        for block in line_blocks(image.data):
            rows = block.reshape(-1, image.n_channels).astype(float, copy=False)
            if w is not None:
                rows = rows[w[a : a + len(block)].reshape(-1)]
            a += len(block)
            part = self._sums(rows, axis=0)
            stat = np.maximum(stat, part) if self.kind == "max" else stat + part
        scales = self._scales(stat, "channel")
        return _DivideChannels(scales=scales), {"channel_scales": "one streamed pass"}


@dataclass
class _DivideChannels(ImageOp):
    """Every channel divided by a fixed scale (a settled per-channel :class:`Normalize`;
    not registered: it is the streamed form of that operation, recorded as it)."""

    op = "normalize"
    scales: Any = None

    def _transform(self, image: SpectralImage) -> Out:
        x = as_float(image).reshape(image.n_pixels, image.n_channels)
        return _divided(image, x, np.asarray(self.scales, dtype=x.dtype)[None, :])


def _divided(image: SpectralImage, x: np.ndarray, scale: np.ndarray) -> Out:
    """``x / scale`` back in the image's shape, with empty units."""
    out = (x / scale).reshape(image.shape)
    return Out(out, list(image.spatial_axes), list(image.signal_axes), {"units": ""})
