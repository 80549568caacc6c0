"""Smoothing for the filters, with work and memory bounded whatever ``sigma`` or ``size``.

A Gaussian kernel reaches ``ceil(3 sigma)`` sites each side, but never further than the
grid it smooths: it is built at ``min(ceil(3 sigma), extent)`` sites each side, so a
``sigma`` far wider than the image is (to rounding) a plain mean over the reflected image,
computed in time and memory of the image's size.  A median window must fit in the
reflected signal, and the windows of one endmember at a time must fit in
:data:`MEDIAN_BYTES`; larger ones are refused with the largest size that fits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .._ops import median_filter_axes, reflect_pad

__all__ = [
    "MEDIAN_BYTES",
    "check_median_size",
    "check_positive",
    "gaussian_reach",
    "gaussian_smooth",
    "median_smooth",
]

#: the most bytes the stacked windows of a median filter may take (per chunk of rows)
MEDIAN_BYTES = 2**29


def check_positive(value: Any, owner: str, name: str, unit: str = "") -> None:
    """Refuse a parameter that is not a finite number > 0 (booleans and strings too).

    Parameters
    ----------
    value : Any
        The parameter's value.
    owner, name : str
        The term's class name and the parameter's name, for the message.
    unit : str
        The unit, for the message (e.g. ``" (pixels)"``).
    """
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (number and math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{owner}: {name}{unit} must be a finite number > 0; got {value!r}.")


def gaussian_reach(sigma: float, extent: int) -> int:
    """Sites each side of a Gaussian kernel of ``sigma`` on an axis of ``extent`` sites:
    ``ceil(3 sigma)`` (at least 1), at most ``extent``."""
    return int(min(max(1, math.ceil(3.0 * sigma)), max(int(extent), 1)))


def _weights(sigma: float, reach: int) -> list[float]:
    """The Gaussian's weights at ``-reach .. reach``, summing to one."""
    w = []
    for t in range(-reach, reach + 1):
        z = t / sigma
        w.append(0.0 if abs(z) > 64.0 else math.exp(-0.5 * z * z))  # exp(-2048) is 0
    s = sum(w)
    return [x / s for x in w]


def gaussian_smooth(
    V: Any, xp: Any, sigma: float, axes: Sequence[int], lengths: Sequence[int] | None = None
) -> Any:
    """Separable Gaussian smoothing of ``V`` along ``axes`` (reflecting boundaries).

    Parameters
    ----------
    V : array
        The values; smoothed along ``axes``.
    xp : namespace
        ``V``'s array namespace.
    sigma : float
        The Gaussian's width in sites (> 0).
    axes : sequence of int
        The axes to smooth.
    lengths : sequence of int, optional
        The length of the whole grid along each of ``axes`` when ``V`` is a window of it
        (a process's scan lines with their halo), so that the window is filtered with the
        same kernel as the whole grid.

    Returns
    -------
    array
        The smoothed values, ``V``'s shape.  The kernel reaches ``min(ceil(3 sigma), n)``
        sites each side on an axis of ``n`` sites (renormalized there).
    """
    extents = [int(V.shape[ax] if lengths is None else lengths[i]) for i, ax in enumerate(axes)]
    reach = gaussian_reach(sigma, max(extents, default=1))
    weights = _weights(sigma, reach)
    for ax, extent in zip(axes, extents, strict=True):
        rr = min(reach, extent)
        V = _smooth_axis(V, xp, ax, weights[reach - rr : reach + rr + 1])
    return V


def _smooth_axis(V: Any, xp: Any, ax: int, ws: list[float]) -> Any:
    """``V`` convolved along ``ax`` with the (renormalized) symmetric weights ``ws``."""
    n, rr = V.shape[ax], len(ws) // 2
    P = reflect_pad(V, xp, ax, rr)
    out = xp.zeros_like(V)
    total = sum(ws)
    for t, w in enumerate(x / total for x in ws):
        sl = [slice(None)] * V.ndim
        sl[ax] = slice(t, t + n)
        out = out + w * P[tuple(sl)]
    return out


def check_median_size(size: Any, shape: Sequence[int], itemsize: int, owner: str) -> None:
    """Refuse a median window that does not fit the signal or :data:`MEDIAN_BYTES`.

    Parameters
    ----------
    size : int or float
        The window, in sites along each axis (a whole number).
    shape : sequence of int
        The shape of one filtered signal (a spectrum or a 2-D pattern).
    itemsize : int
        Bytes per value.
    owner : str
        The term's name, for the message.
    """
    half = int(size) // 2  # size: a whole number (checked by the term)
    fits = min(shape)
    if half > fits:
        raise ValueError(
            f"{owner}: a median window of size={size!r} is wider than the signal of shape "
            f"{tuple(shape)} reflected at its ends; use size <= {2 * fits + 1}."
        )
    need = int(size) ** len(shape) * math.prod(shape) * itemsize
    if need > MEDIAN_BYTES:
        most = int((MEDIAN_BYTES / (math.prod(shape) * itemsize)) ** (1.0 / len(shape)))
        raise ValueError(
            f"{owner}: a median window of size={size!r} on signals of shape {tuple(shape)} "
            f"needs {need / 2**30:.1f} GiB of windows per endmember; use size <= "
            f"{max(most, 1)}."
        )


def median_smooth(V: Any, xp: Any, size: int, axes: tuple[int, ...]) -> Any:
    """Median filter of each row of ``V`` (axis 0) over a ``size`` window on ``axes``,
    a chunk of rows at a time so that the stacked windows stay within
    :data:`MEDIAN_BYTES` (``size`` checked by :func:`check_median_size`)."""
    per_row = int(size) ** len(axes) * math.prod(V.shape[1:]) * V.dtype.itemsize
    rows = max(1, MEDIAN_BYTES // max(per_row, 1))
    if rows >= V.shape[0]:
        return median_filter_axes(V, xp, int(size), axes)
    parts = [
        median_filter_axes(V[i : i + rows, ...], xp, int(size), axes)
        for i in range(0, V.shape[0], rows)
    ]
    return xp.concat(parts, axis=0)
