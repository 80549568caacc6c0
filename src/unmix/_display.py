"""Drawing primitives and quick figures of results (NumPy and matplotlib only).

A low layer: it imports only NumPy, matplotlib, :mod:`unmix.spectral_image` (for
:class:`~unmix.spectral_image.Axis`) and the backend helpers, so that :class:`unmix.Result`
(``plot``), the hierarchy's figures and :mod:`unmix.report` can all use it without an
import cycle.

- :func:`result_axes`: the calibrated scan and signal axes of a result (from a
  :class:`~unmix.SpectralImage`, else the axes saved in ``result.context``, else indices);
- :func:`edges`, :func:`show`, :func:`scale_bar`, :func:`colour_scale`,
  :func:`axis_label`, :func:`color`: images at their physical coordinates and scale bars;
- :func:`panel_axes`: the axes of a grid of panels;
- :func:`figure_uri`, :func:`image_uri`: PNG ``data:`` URIs for HTML;
- :func:`dendrogram_figure`: a dendrogram of components (for the tree and run reports);
- :func:`component_names`: the names of a result's components;
- :func:`plot_result`: :meth:`unmix.Result.plot`.
"""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backend import to_numpy
from .spectral_image import Axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "axis_label",
    "color",
    "colour_scale",
    "component_names",
    "dendrogram_figure",
    "edges",
    "figure_uri",
    "image_uri",
    "panel_axes",
    "plot_result",
    "result_axes",
    "scale_bar",
    "show",
    "spectrum_uri",
]

DIVERGING = "RdBu_r"
_SPATIAL_NAMES = {1: ["index"], 2: ["y", "x"], 3: ["z", "y", "x"]}
_THUMB = 96  # largest side of a map thumbnail (pixels)


# ------------------------------------------------------------------------ axes
def _fit_shape(own: Any, other: Any, n: int) -> tuple[int, ...]:
    for shape in (own, other):
        if shape and math.prod(shape) == n:
            return tuple(int(s) for s in shape)
    return (n,)


def _saved_axes(result: Any, key: str, shape: tuple[int, ...]) -> list[Axis] | None:
    """Axes saved with the result (``context[key]``, e.g. by the CLI) when they match."""
    saved = (getattr(result, "context", None) or {}).get(key)
    try:
        axes = [Axis.from_dict(d) for d in saved or []]
    except (TypeError, KeyError, ValueError):
        return None
    return axes if axes and tuple(a.size for a in axes) == shape else None


def result_axes(result: Any, image: Any = None) -> tuple[list[Axis], list[Axis]]:
    """The scan axes and the signal axes of a result.

    Parameters
    ----------
    result : Result
        Maps ``A`` (pixels, k), endmembers ``S`` (k, channels).
    image : SpectralImage, optional
        Its axes are used where its shapes match the result's.

    Returns
    -------
    spatial, signal : list of Axis
        From ``image``, else from the axes saved in ``result.context`` (``spatial_axes``,
        ``signal_axes``), else uncalibrated (indices).
    """
    n_pix, n_ch = int(result.A.shape[0]), int(result.S.shape[1])
    sp = _fit_shape(result.spatial_shape, image.spatial_shape if image else None, n_pix)
    sg = _fit_shape(result.signal_shape, image.signal_shape if image else None, n_ch)
    if image is not None and image.spatial_shape == sp:
        spatial = list(image.spatial_axes)
    else:
        spatial = _saved_axes(result, "spatial_axes", sp) or [
            Axis(n, s) for n, s in zip(_SPATIAL_NAMES.get(len(sp), []), sp, strict=False)
        ]
        if len(spatial) != len(sp):  # more than 3 scan dimensions: show them unfolded
            spatial = [Axis("pixel", n_pix)]
    if image is not None and image.signal_shape == sg:
        signal = list(image.signal_axes)
    else:
        names = ["channel"] if len(sg) == 1 else ["det_y", "det_x"]
        signal = _saved_axes(result, "signal_axes", sg) or [
            Axis(n, s, navigate=False) for n, s in zip(names, sg, strict=False)
        ]
        if len(signal) != len(sg):
            signal = [Axis("channel", n_ch, navigate=False)]
    return spatial, signal


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


# --------------------------------------------------------------------- drawing
def color(j: int) -> Any:
    """The colour of component ``j`` (tab10, cycling)."""
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


def scale_bar(ax: Any, yax: Axis, xax: Axis, *, fontsize: float = 8) -> Any:
    """A scale bar in the units of the x axis, replacing the ticks; returns the artist."""
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
        fontproperties={"size": fontsize},
    )
    bar.patch.set(alpha=0.75, edgecolor="none")
    ax.add_artist(bar)
    ax.set_xticks([])
    ax.set_yticks([])
    return bar


def panel_axes(fig: Any, k: int, cols: int) -> list[Any]:
    """The axes of ``k`` panels in rows of at most ``cols`` (spare axes switched off)."""
    axes = list(fig.subplots(math.ceil(k / min(k, cols)), min(k, cols), squeeze=False).flat)
    for ax in axes[k:]:
        ax.set_axis_off()
    return axes[:k]


def figure_uri(fig: Figure, *, dpi: float = 72) -> str:
    """A figure as a PNG ``data:`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_uri(img: np.ndarray, *, cmap: str = "viridis", size: int = _THUMB) -> str:
    """A 2-D array as a small PNG ``data:`` URI (strided down to ``size`` pixels a side)."""
    from matplotlib.image import imsave

    a = np.asarray(img, dtype=float)
    step = max(1, math.ceil(max(a.shape) / size))
    a = a[::step, ::step]
    cmap, lo, hi = colour_scale([a], cmap)
    buf = io.BytesIO()
    imsave(buf, np.nan_to_num(a, nan=lo), cmap=cmap, vmin=lo, vmax=hi, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def spectrum_uri(x: np.ndarray, y: np.ndarray, j: int = 0) -> str:
    """A spectrum as a small PNG ``data:`` URI (a sparkline in component ``j``'s colour)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.8, 0.45))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.plot(x, y, color=color(j), lw=0.9)
    ax.set_xlim(float(np.min(x)), float(np.max(x)))
    ax.set_axis_off()
    return figure_uri(fig, dpi=72)


def dendrogram_figure(dendro: Any, *, thumbnails: Any = None, title: str | None = None) -> Figure:
    """The dendrogram (merge height in degrees), with an optional image under every leaf.

    ``dendro`` is a :class:`~unmix.hierarchy.Dendrogram` or anything with its ``linkage``,
    ``names``, ``metric``, ``method`` and ``cophenetic``.
    """
    from matplotlib.figure import Figure
    from scipy.cluster.hierarchy import dendrogram

    k = len(dendro.names)
    d = dendrogram(dendro.linkage, no_plot=True, labels=dendro.names)
    fig = Figure(figsize=(max(4.0, 0.9 * k + 1.0), 4.2 if thumbnails is not None else 3.2))
    ax = fig.add_axes((0.1, 0.32 if thumbnails is not None else 0.22, 0.86, 0.6))
    for xs, ys in zip(d["icoord"], d["dcoord"], strict=True):
        ax.plot(xs, ys, color="0.25", lw=1.1)
    ticks = 5 + 10 * np.arange(k)
    ax.set_xticks(ticks)
    ax.set_xticklabels(d["ivl"], rotation=60, fontsize=7, ha="right")
    ax.set_xlim(0, 10 * k)
    ax.set_ylabel(f"{dendro.metric} distance (deg)", fontsize=8)
    ax.set_xlabel("component", fontsize=8)
    ax.tick_params(labelsize=7)
    if thumbnails is not None:
        imgs = np.asarray(to_numpy(thumbnails), dtype=float)
        order = d["leaves"]
        w = 0.86 / k
        for slot, idx in enumerate(order):
            ia = fig.add_axes((0.1 + slot * w + 0.1 * w, 0.02, 0.8 * w, 0.16))
            img = imgs[idx]
            if img.ndim == 1:
                ia.plot(img, lw=0.7)
            else:
                ia.imshow(np.sqrt(np.clip(img, 0, None)), cmap="magma", interpolation="nearest")
            ia.set_xticks([])
            ia.set_yticks([])
    fig.suptitle(
        title or f"Dendrogram ({dendro.method} linkage, cophenetic {dendro.cophenetic:.2f})",
        fontsize=10,
    )
    return fig


# --------------------------------------------------------------------- figures
def component_names(result: Any) -> list[str]:
    """``context["component_names"]`` when there is one a component, else ``"component j"``
    (``"PC j"`` for an SVD/PCA result)."""
    names = (getattr(result, "context", None) or {}).get("component_names")
    if names is not None and len(names) == result.k:
        return [str(n) for n in names]
    stem = "PC" if result.spec.get("solver") == "svd" else "component"
    return [f"{stem} {j}" for j in range(result.k)]


def _draw_endmembers(fig: Any, S: np.ndarray, signal: list[Axis], names: list[str]) -> None:
    k = S.shape[0]
    if len(signal) == 2:
        for j, ax in enumerate(panel_axes(fig, k, 6)):
            cmap, lo, hi = colour_scale([S[j]], "magma")
            show(ax, S[j].reshape(signal[0].size, signal[1].size), *signal, cmap, (lo, hi))
            ax.set_xlabel(axis_label(signal[1], "px"), fontsize=7)
            ax.set_ylabel(axis_label(signal[0], "px"), fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_title(names[j], fontsize=8, color=color(j))
        return
    ax = fig.subplots()
    x = signal[0].values
    for j in range(k):
        ax.plot(x, S[j], color=color(j), lw=1.2, label=names[j])
    ax.set_xlim(float(np.min(x)), float(np.max(x)))
    ax.set_xlabel(axis_label(signal[0]))
    ax.set_ylabel("intensity (a.u.)")
    ax.legend(frameon=False, fontsize=7)


def _draw_maps(fig: Any, A: np.ndarray, spatial: list[Axis], names: list[str], label: str) -> None:
    k = A.shape[1]
    if len(spatial) == 1:
        ax = fig.subplots()
        for j in range(k):
            ax.plot(spatial[0].values, A[:, j], color=color(j), lw=1.2, label=names[j])
        ax.set_xlabel(axis_label(spatial[0], "px"))
        ax.set_ylabel(label)
        ax.legend(frameon=False, fontsize=7)
        return
    grid = A.reshape(*(a.size for a in spatial), k)
    if len(spatial) == 3:  # the middle slice of a volume
        grid, spatial = grid[spatial[0].size // 2], spatial[1:]
    for j, ax in enumerate(panel_axes(fig, k, 4)):
        cmap, lo, hi = colour_scale([grid[..., j]], "viridis")
        im = show(ax, grid[..., j], *spatial, cmap, (lo, hi))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=label)
        if spatial[0].units == spatial[1].units:
            scale_bar(ax, *spatial)
        else:
            ax.set_xlabel(axis_label(spatial[1], "px"), fontsize=7)
            ax.set_ylabel(axis_label(spatial[0], "px"), fontsize=7)
        ax.set_title(names[j], fontsize=9, color=color(j))


def _draw_loss(fig: Any, result: Any) -> None:
    ax = fig.subplots()
    for i, (key, values) in enumerate(result.history.items()):
        v = np.asarray(values, dtype=float)
        if key in ("time", "phase") or not np.any(v > 0):
            continue
        ax.plot(np.arange(v.size), np.where(v > 0, v, np.nan), color=color(i), label=key)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("value")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title(f"{result.stop_reason} after {result.n_iter} iterations", fontsize=9)


_KINDS = ("overview", "endmembers", "maps", "loss")


def plot_result(result: Any, *, kind: str = "overview", image: Any = None) -> Figure:
    """A matplotlib figure of the result (for notebooks; nothing is written).

    Parameters
    ----------
    kind : {"overview", "endmembers", "maps", "loss"}
        ``"overview"``: the endmembers above the maps; or one of them; or the objective
        and its terms per iteration.
    image : SpectralImage, optional
        Gives calibrated axes (default: those saved with the result, else indices).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if kind not in _KINDS:
        raise ValueError(f"plot(kind={kind!r}): use one of {', '.join(_KINDS)}")
    spatial, signal = result_axes(result, image)
    A = np.asarray(to_numpy(result.A), dtype=float)
    S = np.asarray(to_numpy(result.S), dtype=float)
    names = component_names(result)
    label = "score" if result.spec.get("solver") == "svd" else "abundance"
    rows = math.ceil(result.k / 4) if len(spatial) > 1 else 1
    height = {"endmembers": 3.2, "maps": 2.8 * rows + 0.4, "loss": 3.4}
    fig = Figure(figsize=(9, height.get(kind, 3.2 + 2.8 * rows)), layout="constrained")
    if kind == "endmembers":
        _draw_endmembers(fig, S, signal, names)
    elif kind == "maps":
        _draw_maps(fig, A, spatial, names, label)
    elif kind == "loss":
        _draw_loss(fig, result)
    else:
        top, bottom = fig.subfigures(2, 1, height_ratios=[3.2, 2.8 * rows])
        _draw_endmembers(top, S, signal, names)
        _draw_maps(bottom, A, spatial, names, label)
    return fig
