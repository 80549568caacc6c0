"""Figures of a factorization on the physical axes of its data (PNG, matplotlib Agg).

Every function writes one PNG and returns its path. Figures are drawn on
:class:`matplotlib.figure.Figure` objects directly (no pyplot state, no global backend
switch). Pass the :class:`~unmix.SpectralImage` the data came from as ``image=`` to get
calibrated axes (names, units, non-uniform or reversed coordinates) and scale bars;
without it, pixels and channels are plotted by index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._backend import to_numpy
from .._display import DIVERGING, axis_label, color, colour_scale, show
from ..result import Result
from ..spectral_image import Axis, SpectralImage
from ._model import check_X, contributions, default_pixels, model_rows, relative_residuals
from ._panels import (
    SEQ_MAPS,
    SEQ_PATTERNS,
    Geometry,
    flat_index,
    geometry,
    image_grid,
    names_for,
    panel_image,
    pixel_label,
    save,
    spatial_panels,
)

__all__ = [
    "plot_comparison",
    "plot_endmembers",
    "plot_loss",
    "plot_maps",
    "plot_pixel_fits",
    "plot_residual_map",
    "relative_residuals",
]


def plot_endmembers(
    result: Result,
    path: str | os.PathLike,
    *,
    image: SpectralImage | None = None,
    names: Sequence[str] | None = None,
    overlay: bool = False,
    shared_scale: bool = False,
) -> str:
    """Endmembers on their physical signal axis.

    Parameters
    ----------
    result : Result
    path : str or path-like
        The PNG to write.
    image : SpectralImage, optional
        Gives the signal axis (name, units, non-uniform or reversed coordinates).
    names : sequence of str, optional
        One name per component (default ``"component j"``, ``"PC j"`` for PCA).
    overlay : bool
        Spectra in one panel instead of one panel per component.
    shared_scale : bool
        2-D endmembers (diffraction patterns): one colour scale for all of them.

    Returns
    -------
    str
        ``path``.
    """
    g = geometry(result, image)
    S = np.asarray(to_numpy(result.S), dtype=float)
    names = names_for(result, names)
    k = S.shape[0]
    if len(g.signal) == 2:
        imgs = list(S.reshape(k, *g.signal_shape))
        yax, xax = g.signal
        fig = image_grid(
            imgs,
            yax,
            xax,
            names,
            seq=SEQ_PATTERNS,
            shared=shared_scale,
            bar=False,
            cbar_label="intensity (a.u.)",
            suptitle="Endmembers",
        )
        return save(fig, path)
    bands = getattr(result, "bands", None)
    fig = _spectra_figure(S, g.signal[0], names, overlay, bands)
    for b in getattr(result, "compared_bands", []):
        _outline(fig, b, g.signal[0].values, overlay)
    return save(fig, path)


def _outline(fig: Figure, b: Any, x: np.ndarray, overlay: bool) -> None:
    """The compared bands ``b`` as dashed lines on the endmember panels of ``fig``."""
    axes = fig.axes
    for j in range(b.S_lower.shape[0]):
        ax = axes[0 if overlay else j]
        for i, edge in enumerate((b.S_lower[j], b.S_upper[j])):
            label = f"{b.method.split(':')[0]} band" if j == 0 and i == 0 else None
            ax.plot(x, np.asarray(edge, dtype=float), color=color(j), lw=0.8, ls="--", label=label)
    handles = [h for h in axes[0].get_lines() if h.get_linestyle() == "--"][:1]
    axes[0].legend(handles=handles, frameon=False, fontsize=7, loc="upper right")


def _spectra_figure(
    S: np.ndarray, xax: Axis, names: list[str], overlay: bool, bands: Any
) -> Figure:
    """1-D endmembers ``S`` (k, channels) on the axis ``xax``, one panel each (or one
    panel), with the result's bands shaded when it has them."""
    x = xax.values
    k = S.shape[0]
    panels = 1 if overlay else k
    fig = Figure(figsize=(7.5, 1.2 + (3.0 if overlay else 1.35 * k)), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for j in range(k):
        ax = axes[0 if overlay else j]
        if bands is not None:
            lo, hi = (np.asarray(v[j], dtype=float) for v in (bands.S_lower, bands.S_upper))
            ax.fill_between(x, lo, hi, color=color(j), alpha=0.25, lw=0)
        ax.plot(x, S[j], color=color(j), lw=1.3, label=names[j])
        if S[j].min() < 0:
            ax.axhline(0, color="0.6", lw=0.7)
        if not overlay:
            ax.text(
                0.01,
                0.94,
                names[j],
                transform=ax.transAxes,
                va="top",
                color=color(j),
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5},
            )
        ax.tick_params(labelsize=8)
    if overlay:
        axes[0].legend(frameon=False, fontsize=8)
    axes[-1].set_xlabel(axis_label(xax))
    axes[len(axes) // 2].set_ylabel("intensity (a.u.)")
    axes[-1].set_xlim(float(np.min(x)), float(np.max(x)))
    title = "Endmembers"
    if bands is not None:
        title += f" with {100 * bands.level:g} % {bands.method.split(':')[0]} bands"
    fig.suptitle(title, fontsize=11)
    return fig


def _profiles(fig: Figure, M: np.ndarray, xax: Axis, titles: list[str], ylabel: str) -> None:
    axes = fig.subplots(M.shape[1], 1, sharex=True, squeeze=False)[:, 0]
    for j, ax in enumerate(axes):
        ax.plot(xax.values, M[:, j], color=color(j), lw=1.3)
        ax.set_title(titles[j], fontsize=9, color=color(j), loc="left")
        ax.tick_params(labelsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[-1].set_xlabel(axis_label(xax, "px"))


def plot_maps(
    result: Result,
    path: str | os.PathLike,
    *,
    image: SpectralImage | None = None,
    names: Sequence[str] | None = None,
    shared_scale: bool = False,
) -> str:
    """Abundance maps, one panel per component, on the scan grid with a scale bar.

    A 1-D scan gives line profiles; a 3-D scan shows its middle slice (named in the
    title). Maps with negative values (PCA scores) use a diverging colormap centred at 0.

    Parameters
    ----------
    result : Result
    path : str or path-like
        The PNG to write.
    image : SpectralImage, optional
        Gives the spatial axes (scale bar in their units; pixels otherwise).
    names : sequence of str, optional
        One name per component.
    shared_scale : bool
        One colour scale for all maps.

    Returns
    -------
    str
        ``path``.
    """
    g = geometry(result, image)
    A = np.asarray(to_numpy(result.A), dtype=float)
    names = names_for(result, names)
    label = "score" if result.spec.get("solver") == "svd" else "abundance"
    grid, sp, note = spatial_panels(A, g)
    if len(sp) == 1:
        fig = Figure(figsize=(7.5, 1.0 + 1.35 * A.shape[1]), layout="constrained")
        _profiles(fig, grid, sp[0], names, label)
        fig.suptitle("Score profiles" if label == "score" else "Abundance profiles", fontsize=11)
        return save(fig, path)
    imgs = [grid[..., j] for j in range(A.shape[1])]
    title = ("Score maps" if label == "score" else "Abundance maps") + (
        f" ({note})" if note else ""
    )
    fig = image_grid(
        imgs,
        sp[0],
        sp[1],
        names,
        seq=SEQ_MAPS,
        shared=shared_scale,
        bar=True,
        cbar_label=label,
        suptitle=title,
    )
    return save(fig, path)


def plot_loss(result: Result, path: str | os.PathLike) -> str:
    """Objective and each of its terms per iteration (log scale), compressed phase shaded.

    Iterations with ``history["phase"] == 1`` ran on the compressed data (their values
    refer to it) and are shaded. Non-positive values cannot be shown on the log scale
    and are left out.

    Returns
    -------
    str
        ``path``.
    """
    h = result.history
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    keys = ["objective", "fit"] + [
        key for key in h if key not in ("objective", "fit", "time", "phase")
    ]
    for i, key in enumerate(k for k in keys if k in h):
        v = np.asarray(h[key], dtype=float)
        pos = np.where(v > 0, v, np.nan)
        label = f"fit ({result.spec.get('loss', '?')})" if key == "fit" else key
        if np.any(v <= 0):
            label += " (values <= 0 omitted)"
        style = {"lw": 2.0} if key == "objective" else {"lw": 1.2, "ls": "--" if i == 1 else "-"}
        ax.plot(
            np.arange(v.size),
            pos,
            label=label,
            color=color(i),
            marker="." if v.size < 30 else None,
            **style,
        )
    phase = np.asarray(h.get("phase", []))
    runs = np.flatnonzero(np.diff(np.r_[0, (phase == 1).astype(int), 0]))
    for n, (a, b) in enumerate(zip(runs[::2], runs[1::2], strict=True)):
        ax.axvspan(
            a - 0.5, b - 0.5, color="#d6e4f5", zorder=0, label=None if n else "compressed phase"
        )
    if any(np.any(np.asarray(h[k], dtype=float) > 0) for k in keys if k in h):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("value")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(
        f"{result.spec.get('solver', '?')}: {result.stop_reason} after {result.n_iter} "
        f"iteration{'s' if result.n_iter != 1 else ''}",
        fontsize=10,
    )
    return save(fig, path)


def plot_residual_map(
    result: Result, X: Any, path: str | os.PathLike, *, image: SpectralImage | None = None
) -> str:
    """Per-pixel relative RMS residual ``||x_i - (AS)_i|| / ||x_i||`` on the scan grid.

    Parameters
    ----------
    result : Result
    X : array (pixels, channels)
        The data that was factorized (any backend).
    path : str or path-like
    image : SpectralImage, optional
        Gives the spatial axes.

    Returns
    -------
    str
        ``path``.
    """
    g = geometry(result, image)
    rel, total = relative_residuals(result, X)
    grid, sp, note = spatial_panels(rel[:, None], g)
    title = (
        f"Relative residual per pixel: median {np.nanmedian(rel):.3g}, "
        f"max {np.nanmax(rel):.3g}, overall {total:.3g}" + (f"\n{note}" if note else "")
    )
    if len(sp) == 1:
        fig = Figure(figsize=(7.5, 2.8), layout="constrained")
        _profiles(fig, grid, sp[0], ["relative residual"], "||x - y|| / ||x||")
    else:
        fig = Figure(figsize=(5.2, 4.4), layout="constrained")
        ax = fig.add_subplot()
        finite = grid[np.isfinite(grid)]
        top = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        extend = "max" if finite.size and finite.max() > top else "neither"
        lim = (0.0, top if top > 0 else 1.0)
        panel_image(
            fig,
            ax,
            grid[..., 0],
            *sp,
            "magma",
            lim,
            bar=True,
            extend=extend,
            cbar_label="||x - y|| / ||x||",
        )
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def _data_label(image: SpectralImage | None) -> str:
    md = image.metadata if image is not None else {}
    quantity = str(md.get("quantity") or "intensity")
    return f"{quantity} ({md['units']})" if md.get("units") else quantity


def _pattern_fit(fig: Figure, axes: Any, x: np.ndarray, y: np.ndarray, g: Any, title: str) -> None:
    """Data, model (one colour scale) and residual of a 2-D signal at one pixel."""
    cmap, lo, hi = colour_scale([x, y], SEQ_PATTERNS)
    res = x - y
    r = float(np.max(np.abs(res))) or 1.0
    panels = (
        (x, "data", cmap, (lo, hi), False),
        (y, "model", cmap, (lo, hi), True),
        (res, "residual", DIVERGING, (-r, r), True),
    )
    for ax, (img, what, cm, lim, bar) in zip(axes, panels, strict=True):
        im = show(ax, img.reshape(g.signal_shape), *g.signal, cm, lim)
        if bar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
        ax.set_title(f"{title}\n{what}", fontsize=8)
        ax.set_xlabel(axis_label(g.signal[1], "px"), fontsize=8)
        ax.set_ylabel(axis_label(g.signal[0], "px"), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.label_outer()


def plot_pixel_fits(
    result: Result,
    X: Any,
    path: str | os.PathLike,
    *,
    image: SpectralImage | None = None,
    pixels: Sequence[int | Sequence[int]] | None = None,
) -> str:
    """Data against the model at a few pixels, with each component's contribution.

    Parameters
    ----------
    result : Result
    X : array (pixels, channels)
        The data that was factorized.
    path : str or path-like
    image : SpectralImage, optional
        Gives the signal axis and the data's quantity and units.
    pixels : sequence, optional
        Flat pixel indices or grid positions such as ``(row, col)``. Default: the
        brightest pixel, the worst-fitted one and one with the median relative residual.

    Returns
    -------
    str
        ``path``.

    Notes
    -----
    The contributions ``a_ij s_j`` are stacked when they are all non-negative and nothing
    is added back by preprocessing (NMF); otherwise (PCA) they are drawn as lines around
    the mean. For 2-D signals the panels show data, model and residual as images.
    """
    g = geometry(result, image)
    check_X(result, X)
    names = names_for(result, None)
    if pixels is None:
        chosen = default_pixels(result, X)
    else:
        chosen = [("pixel", flat_index(p, g.spatial_shape)) for p in pixels]
    is2d = len(g.signal) == 2
    fig = Figure(figsize=(10 if is2d else 7.5, 2.9 * len(chosen)), layout="constrained")
    axes = fig.subplots(len(chosen), 3 if is2d else 1, squeeze=False)
    for r, (what, i) in enumerate(chosen):
        x = np.asarray(to_numpy(X[i : i + 1]), dtype=float)[0]
        y = model_rows(result, i, i + 1)[0]
        title = f"{what}: pixel {pixel_label(i, g)}"
        if is2d:
            _pattern_fit(fig, axes[r], x, y, g, title)
            continue
        ax, xs = axes[r, 0], g.signal[0].values
        parts, base = contributions(result, i)
        colors = [color(j) for j in range(len(parts))]
        if not np.any(base) and np.all(parts >= -1e-9 * max(np.abs(y).max(), 1e-300)):
            o = np.argsort(xs)
            ax.stackplot(xs[o], parts[:, o], labels=names, colors=colors, alpha=0.35)
        else:
            for j, c in enumerate(parts):
                ax.plot(xs, c, color=colors[j], lw=1, label=names[j])
            if np.any(base):
                ax.plot(xs, base, color="0.5", lw=1, ls=":", label="added back (mean)")
        ax.plot(xs, x, color="black", lw=0.7, marker=".", ms=2.5, label="data")
        ax.plot(xs, y, color="crimson", lw=1.3, label="model")
        _model_band(ax, result, i, xs)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(_data_label(image), fontsize=8)
        ax.set_xlim(float(xs.min()), float(xs.max()))
        ax.tick_params(labelsize=8)
    if not is2d:
        axes[0, 0].legend(frameon=False, fontsize=7, ncol=min(len(names) + 2, 4))
        axes[-1, 0].set_xlabel(axis_label(g.signal[0]))
    fig.suptitle("Data and model at selected pixels", fontsize=11)
    return save(fig, path)


def _model_band(ax: Any, result: Result, i: int, xs: np.ndarray) -> None:
    """Shade the band of the model at pixel ``i`` when the result's bands hold one
    (:meth:`unmix.Bands.model_band`, e.g. a Bayesian fit's credible band of ``A @ S``)."""
    bands = getattr(result, "bands", None)
    band = None if bands is None else bands.model_band(i)
    if band is None:
        return
    label = f"{100 * bands.level:g} % band of the model ({bands.method.split(':')[0]})"
    ax.fill_between(xs, band[0], band[1], color="crimson", alpha=0.25, lw=0, label=label)


def _match(S: np.ndarray, ref: np.ndarray) -> list[int]:
    """Order of the rows of ``S`` that best matches the rows of ``ref`` (|cosine|)."""
    from scipy.optimize import linear_sum_assignment

    def unit(M: np.ndarray) -> np.ndarray:
        return M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-300)

    rows, cols = linear_sum_assignment(-np.abs(unit(ref) @ unit(S).T))
    order = [int(c) for _, c in sorted(zip(rows, cols, strict=True))]
    return order + [j for j in range(S.shape[0]) if j not in order]


def plot_comparison(
    results: Mapping[str, Result],
    path: str | os.PathLike,
    *,
    image: SpectralImage | None = None,
    match: bool = True,
) -> str:
    """Several factorizations side by side: one row per method, endmembers then maps.

    Parameters
    ----------
    results : mapping of str -> Result
        E.g. ``{"PCA": ..., "NMF": ..., "NMF + L1": ...}``, in the order of the rows.
    path : str or path-like
    image : SpectralImage, optional
        Gives the signal and spatial axes.
    match : bool
        Reorder each method's components to match those of the first non-negative result
        (Hungarian assignment on the absolute cosine of the endmembers), so that a column
        (and a colour) shows corresponding components.

    Returns
    -------
    str
        ``path``.

    Notes
    -----
    Spectra are scaled to a maximum absolute value of 1 for the comparison. Each image
    has its own colour scale, without a colorbar (the single-result figures have them);
    maps and patterns with negative values (PCA) use a diverging colormap centred at 0
    (white). For 2-D endmembers the first columns show the patterns, then the maps.
    """
    items = [(str(name), res) for name, res in results.items()]
    if not items:
        raise ValueError("plot_comparison needs at least one result")
    Ss = [np.asarray(to_numpy(r.S), dtype=float) for _, r in items]
    ref = next((i for i, S in enumerate(Ss) if S.min() >= 0), 0)
    geoms = [geometry(r, image) for _, r in items]
    is2d = len(geoms[0].signal) == 2
    kmax = max(r.k for _, r in items)
    lead = kmax if is2d else 1
    fig, axes = _comparison_grid(len(items), kmax, is2d)
    note = ""
    for r, ((name, res), S, g) in enumerate(zip(items, Ss, geoms, strict=True)):
        if S.shape[1] != Ss[ref].shape[1]:
            raise ValueError(f"{name!r} has {S.shape[1]} channels, not {Ss[ref].shape[1]}")
        order = _match(S, Ss[ref]) if match and r != ref else list(range(res.k))
        names = names_for(res, None)
        if is2d:
            _pattern_row(fig, axes[r], S, order, g, name, names)
        else:
            _endmember_row(axes[r, 0], S, order, g, name, names)
        A = np.asarray(to_numpy(res.A), dtype=float)[:, order]
        note = _map_row(fig, axes[r, lead:], A, g, name, [names[j] for j in order])
        for c in range(len(order), kmax):
            axes[r, lead + c].set_axis_off()
            if is2d:
                axes[r, c].set_axis_off()
    title = "Comparison: one row per method; " + (
        "patterns, then maps" if is2d else "endmembers, then maps"
    )
    fig.suptitle(title + (f"\n({note})" if note else ""), fontsize=10)
    return save(fig, path)


def _comparison_grid(rows: int, kmax: int, is2d: bool) -> tuple[Figure, np.ndarray]:
    """The figure and its axes: one row per method, the endmembers (one wide panel of
    spectra, or ``kmax`` patterns) then ``kmax`` maps."""
    lead = kmax if is2d else 1
    ratios = [1.0] * lead + [1.0] * kmax if is2d else [2.2] + [1.0] * kmax
    fig = Figure(figsize=(2.2 * sum(ratios) + 0.5, 2.5 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, lead + kmax, squeeze=False, width_ratios=ratios)
    return fig, axes


def _pattern_row(
    fig: Figure, axes: Any, S: np.ndarray, order: list[int], g: Geometry, name: str, names: list
) -> None:
    """The 2-D endmembers of one method, in ``order``, one panel each."""
    for c, j in enumerate(order):
        cmap, lo, hi = colour_scale([S[j]], SEQ_PATTERNS)
        pattern = S[j].reshape(g.signal_shape)
        panel_image(fig, axes[c], pattern, *g.signal, cmap, (lo, hi), bar=False, cbar=False)
        axes[c].set_title(f"{name}\n{names[j]}", fontsize=8, color=color(c))
        axes[c].label_outer()


def _endmember_row(
    ax: Any, S: np.ndarray, order: list[int], g: Geometry, name: str, names: list
) -> None:
    """The spectra of one method, in ``order``, scaled to a maximum of 1, in one panel."""
    x = g.signal[0].values
    for c, j in enumerate(order):
        s = S[j] / max(np.abs(S[j]).max(), 1e-300)
        ax.plot(x, s, color=color(c), lw=1.1, label=names[j])
    if S.min() < 0:
        ax.axhline(0, color="0.6", lw=0.7)
    ax.set_title(f"{name}: endmembers", fontsize=9, fontweight="bold", loc="left")
    ax.set_xlabel(axis_label(g.signal[0]), fontsize=8)
    ax.set_ylabel("intensity / max", fontsize=8)
    ax.set_xlim(float(x.min()), float(x.max()))
    ax.tick_params(labelsize=7)
    ax.legend(frameon=False, fontsize=6)


def _map_row(fig: Figure, axes: Any, A: np.ndarray, g: Geometry, name: str, names: list) -> str:
    """The maps (or line profiles) of the columns of ``A``, one panel each; the note on
    the scan's slice shown (empty if none)."""
    grid, sp, note = spatial_panels(A, g)
    for c in range(A.shape[1]):
        ax = axes[c]
        if len(sp) == 1:
            ax.plot(sp[0].values, grid[:, c], color=color(c), lw=1.1)
            ax.set_xlabel(axis_label(sp[0], "px"), fontsize=8)
            ax.tick_params(labelsize=7)
        else:
            cmap, lo, hi = colour_scale([grid[..., c]], SEQ_MAPS)
            panel_image(fig, ax, grid[..., c], sp[0], sp[1], cmap, (lo, hi), bar=True, cbar=False)
        ax.set_title(f"{name}: {names[c]}", fontsize=8, color=color(c))
    return note
