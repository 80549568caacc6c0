"""Geometry and drawing primitives shared by the report figures (private).

:func:`geometry` resolves the scan and signal axes of a result (from a
:class:`~unmix.SpectralImage` when one matches, uncalibrated otherwise); the drawing helpers
place images at their physical coordinates (uniform, non-uniform or reversed axes), add
scale bars and pick colour scales (diverging and centred at 0 for signed data), with the
primitives (:func:`~unmix._display.show`, :func:`~unmix._display.scale_bar`,
:func:`~unmix._display.colour_scale`, ...) of :mod:`unmix._display`, a lower layer that
:class:`unmix.Result` and the hierarchy's figures use too.
"""

from __future__ import annotations

import base64
import html
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .._display import (
    axis_label,
    color,
    colour_scale,
    component_names,
    panel_axes,
    result_axes,
    scale_bar,
    show,
)
from ..result import Result
from ..spectral_image import Axis, SpectralImage

__all__ = [
    "SAVE",
    "SEQ_MAPS",
    "SEQ_PATTERNS",
    "Geometry",
    "HtmlFigure",
    "figure_html",
    "flat_index",
    "geometry",
    "image_grid",
    "names_for",
    "panel_image",
    "pixel_label",
    "save",
    "spatial_panels",
]

SAVE = {"dpi": 110, "metadata": {"Software": None}}  # no URL in the PNG, reproducible
SEQ_MAPS, SEQ_PATTERNS = "viridis", "magma"
_GRID_NAMES = {1: ["index"], 2: ["row", "col"], 3: ["slice", "row", "col"]}


@dataclass
class Geometry:
    """The scan axes and the signal axes of a result."""

    spatial: list[Axis]
    signal: list[Axis]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.spatial)

    @property
    def signal_shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.signal)


def geometry(result: Result, image: SpectralImage | None = None) -> Geometry:
    """Axes of the result's scan and signal: the image's axes when its shapes match, else
    those saved with the result (``context``), else uncalibrated."""
    return Geometry(*result_axes(result, image))


def flat_index(p: int | Sequence[int], spatial_shape: tuple[int, ...]) -> int:
    """A flat pixel index from an int or a grid position such as ``(row, col)``."""
    if isinstance(p, (int, np.integer)):
        i = int(p)
    else:
        i = int(np.ravel_multi_index(tuple(int(q) for q in p), spatial_shape))
    if not 0 <= i < math.prod(spatial_shape):
        raise ValueError(f"pixel {p!r} is outside the scan of shape {spatial_shape}")
    return i


def pixel_label(i: int, g: Geometry) -> str:
    """``"(row 3, col 7)"`` for flat index ``i`` on the scan grid."""
    pos = np.unravel_index(i, g.spatial_shape)
    names = _GRID_NAMES.get(len(pos), ["index"] * len(pos))
    return "(" + ", ".join(f"{n} {int(q)}" for n, q in zip(names, pos, strict=True)) + ")"


def names_for(result: Result, names: Sequence[str] | None) -> list[str]:
    """The given names, the result's ``context["component_names"]``, or ``"component j"``
    (``"PC j"`` for an SVD/PCA result)."""
    if names is None:
        names = (getattr(result, "context", None) or {}).get("component_names")
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != result.k:
            raise ValueError(f"{len(names)} names for {result.k} components")
        return names
    return component_names(result)


def save(fig: Figure, path: str | os.PathLike) -> str:
    fig.savefig(path, **SAVE)
    return os.fspath(path)


@dataclass
class HtmlFigure:
    """A PNG of the report with its alternative text and caption."""

    path: Path
    alt: str
    caption: str
    half: bool = False  # may sit beside another half-width figure


def figure_html(fig: HtmlFigure) -> str:
    """A ``<figure>`` that embeds the PNG as a base64 ``data:`` URI (with its size), with
    its caption."""
    raw = fig.path.read_bytes()
    w, h = struct.unpack(">II", raw[16:24])
    data = base64.b64encode(raw).decode("ascii")
    cls = ' class="half"' if fig.half else ""
    return (
        f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{html.escape(fig.alt)}" '
        f'width="{w}" height="{h}">\n<figcaption>{html.escape(fig.caption)}</figcaption></figure>'
    )


def panel_image(
    fig: Figure,
    ax: Any,
    img: np.ndarray,
    yax: Axis,
    xax: Axis,
    cmap: str,
    lim: tuple,
    *,
    bar: bool,
    cbar_label: str = "",
    extend: str = "neither",
    cbar: bool = True,
) -> None:
    """An image panel with its colorbar, and a scale bar or labelled axes."""
    im = show(ax, img, yax, xax, cmap, lim)
    if cbar:
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, extend=extend)
        cb.ax.tick_params(labelsize=7)
        if cbar_label:
            cb.set_label(cbar_label, fontsize=8)
    if bar and xax.units == yax.units:
        scale_bar(ax, yax, xax)
    else:
        ax.set_xlabel(axis_label(xax, "px"), fontsize=8)
        ax.set_ylabel(axis_label(yax, "px"), fontsize=8)
        ax.tick_params(labelsize=7)


def image_grid(
    images: list[np.ndarray],
    yax: Axis,
    xax: Axis,
    titles: list[str],
    *,
    seq: str,
    shared: bool,
    bar: bool,
    cbar_label: str,
    suptitle: str = "",
) -> Figure:
    k = len(images)
    cols = min(k, 4)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(3.4 * cols, 3.0 * rows + (0.4 if suptitle else 0)), layout="constrained")
    common = colour_scale(images, seq) if shared else None
    for j, ax in enumerate(panel_axes(fig, k, cols)):
        cmap, lo, hi = common or colour_scale([images[j]], seq)
        panel_image(fig, ax, images[j], yax, xax, cmap, (lo, hi), bar=bar, cbar_label=cbar_label)
        ax.set_title(titles[j], fontsize=10, color=color(j))
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def spatial_panels(M: np.ndarray, g: Geometry) -> tuple[np.ndarray, list[Axis], str]:
    """``M`` (pixels, n) on the scan: (*grid, n) and its axes; a 3-D scan's middle slice."""
    grid = M.reshape(*g.spatial_shape, M.shape[1])
    if len(g.spatial) < 3:
        return grid, g.spatial, ""
    z = g.spatial[0]
    i = z.size // 2
    where = f"{z.name} = {z.values[i]:.4g} {z.units}, " if z.units else f"{z.name} "
    note = f"middle slice of the 3-D scan: {where}slice {i + 1} of {z.size}"
    return grid[i], g.spatial[1:], note
