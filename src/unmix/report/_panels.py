"""Geometry and drawing primitives shared by the report figures (private).

:func:`geometry` resolves the scan and signal axes of a result (from a
:class:`~unmix.SpectralImage` when one matches, uncalibrated otherwise); the drawing helpers
place images at their physical coordinates (uniform, non-uniform or reversed axes), add
scale bars and pick colour scales (diverging and centred at 0 for signed data).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..result import Result
from ..spectral_image import Axis, SpectralImage

SAVE = {"dpi": 110, "metadata": {"Software": None}}  # no URL in the PNG, reproducible
SEQ_MAPS, SEQ_PATTERNS, DIVERGING = "viridis", "magma", "RdBu_r"

_SPATIAL_NAMES = {1: ["index"], 2: ["y", "x"], 3: ["z", "y", "x"]}
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


def _shape(own: Any, other: Any, n: int) -> tuple[int, ...]:
    for shape in (own, other):
        if shape and math.prod(shape) == n:
            return tuple(int(s) for s in shape)
    return (n,)


def geometry(result: Result, image: SpectralImage | None = None) -> Geometry:
    """Axes of the result's scan and signal; the image's axes when its shapes match."""
    n_pix, n_ch = int(result.A.shape[0]), int(result.S.shape[1])
    sp = _shape(result.spatial_shape, image.spatial_shape if image else None, n_pix)
    sg = _shape(result.signal_shape, image.signal_shape if image else None, n_ch)
    if image is not None and image.spatial_shape == sp:
        spatial = list(image.spatial_axes)
    else:
        spatial = [Axis(n, s) for n, s in zip(_SPATIAL_NAMES.get(len(sp), []), sp, strict=False)]
        if len(spatial) != len(sp):  # more than 3 scan dimensions: show them unfolded
            spatial = [Axis("pixel", n_pix)]
    if image is not None and image.signal_shape == sg:
        signal = list(image.signal_axes)
    else:
        names = ["channel"] if len(sg) == 1 else ["det_y", "det_x"]
        signal = [Axis(n, s, navigate=False) for n, s in zip(names, sg, strict=False)]
        if len(signal) != len(sg):
            signal = [Axis("channel", n_ch, navigate=False)]
    return Geometry(spatial, signal)


def axis_label(ax: Axis, default_units: str = "") -> str:
    """``"name (units)"``, or the name alone for an uncalibrated axis."""
    units = ax.units or default_units
    return f"{ax.name} ({units})" if units else ax.name


def edges(v: np.ndarray) -> np.ndarray:
    """Cell edges around the points ``v`` (midpoints; the ends extrapolated)."""
    v = np.asarray(v, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


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
    stem = "PC" if result.spec.get("solver") == "svd" else "component"
    return [f"{stem} {j}" for j in range(result.k)]


def save(fig: Figure, path: str | os.PathLike) -> str:
    fig.savefig(path, **SAVE)
    return os.fspath(path)


def color(j: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](j % 10)


def colour_scale(values: Any, seq: str) -> tuple[str, float, float]:
    """Colormap and limits: diverging and centred at 0 when there are negative values."""
    finite = [np.asarray(v, dtype=float)[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return seq, 0.0, 1.0
    lo = min(float(v.min()) for v in finite)
    hi = max(float(v.max()) for v in finite)
    if lo < -1e-6 * max(abs(hi), 1e-300):
        v = max(abs(lo), abs(hi))
        return DIVERGING, -v, v
    return seq, min(lo, 0.0), hi if hi > min(lo, 0.0) else min(lo, 0.0) + 1.0


def show(ax: Any, img: np.ndarray, yax: Axis, xax: Any, cmap: str, lim: tuple) -> Any:
    """Draw ``img`` (rows along ``yax``) at its physical coordinates; row 0 at the top."""
    ye, xe = edges(yax.values), edges(xax.values)
    if yax.is_uniform and xax.is_uniform:
        im = ax.imshow(
            img,
            cmap=cmap,
            vmin=lim[0],
            vmax=lim[1],
            origin="upper",
            extent=(xe[0], xe[-1], ye[-1], ye[0]),
            interpolation="nearest",
        )
    else:
        im = ax.pcolormesh(xe, ye, img, cmap=cmap, vmin=lim[0], vmax=lim[1], shading="flat")
        if ye[-1] > ye[0]:
            ax.invert_yaxis()
    ax.set_aspect("equal" if xax.units == yax.units else "auto")
    return im


def scale_bar(ax: Any, yax: Axis, xax: Axis) -> None:
    """A scale bar in the units of the x axis, replacing the ticks."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    xe, ye = edges(xax.values), edges(yax.values)
    target = abs(xe[-1] - xe[0]) / 4
    nice = 10 ** math.floor(math.log10(target))
    nice *= next(f for f in (5, 2, 1) if f * nice <= target * (1 + 1e-9))
    bar = AnchoredSizeBar(
        ax.transData,
        nice,
        f"{nice:g} {xax.units or 'px'}",
        "lower left",
        pad=0.3,
        sep=3,
        color="black",
        frameon=True,
        size_vertical=abs(ye[-1] - ye[0]) * 0.015,
        fontproperties={"size": 8},
    )
    bar.patch.set(alpha=0.75, edgecolor="none")
    ax.add_artist(bar)
    ax.set_xticks([])
    ax.set_yticks([])


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
    axes = fig.subplots(rows, cols, squeeze=False)
    common = colour_scale(images, seq) if shared else None
    for j, ax in enumerate(axes.flat):
        if j >= k:
            ax.set_axis_off()
            continue
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
