"""Figures of a tree of endmembers and of a dendrogram (matplotlib Figure API).

The ``*_figure`` functions return a :class:`matplotlib.figure.Figure` (no pyplot state, no
backend switch; :meth:`Tree.plot` shows them in a notebook); the ``plot_*`` functions
write one PNG and return its path. Every panel has axis labels, and every map a scale
bar (in the units of ``spatial_axes`` when given, pixels otherwise). The functions take
a :class:`~unmix.hierarchy.Tree` (its attributes only: this module does not import the
tree's module, so that :class:`Tree` can offer ``plot`` and ``_repr_html_``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._backend import to_numpy
from .._display import axis_label as label_of
from .._display import dendrogram_figure, scale_bar, show
from ..spectral_image import Axis
from ._cluster import Dendrogram, cluster_components

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "dendrogram_figure",
    "leaf_dendrogram",
    "levels_figure",
    "plot_dendrogram",
    "plot_levels",
    "plot_tree",
    "tree_figure",
    "tree_html",
    "tree_plot",
]

Tree = Any  # a hierarchy.Tree (attributes only; see the module's docstring)
Node = Any

_PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f",
]  # fmt: skip

_Box = tuple[float, float, float, float]  # a panel: x0, y0, width, height (figure fractions)


def _save(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> str:
    path = os.fspath(path)
    fig.savefig(path, dpi=dpi)
    return path


def _layout(tree: Tree) -> dict[int, tuple[float, int]]:
    """x (leaf slots, internal nodes centred over their children) and depth of every node."""
    pos: dict[int, tuple[float, int]] = {}
    leaves = tree.leaves
    for i, leaf in enumerate(leaves):
        pos[leaf] = (float(i), tree.nodes[leaf].depth)
    for i in sorted(range(len(tree.nodes)), key=lambda j: -tree.nodes[j].depth):
        ch = tree.nodes[i].children
        if ch:
            pos[i] = (float(np.mean([pos[c][0] for c in ch])), tree.nodes[i].depth)
    return pos


def _colors(tree: Tree) -> dict[int, str]:
    cols = {leaf: _PALETTE[j % len(_PALETTE)] for j, leaf in enumerate(tree.leaves)}
    for nd in tree.nodes:
        cols.setdefault(nd.id, "0.35")
    return cols


def _grid_axes(tree: Tree, spatial_axes: Sequence[Axis] | None) -> list[Axis]:
    """The scan axes of a 2-D tree's maps: the given ones, else uncalibrated (pixels)."""
    shape = tuple(tree.spatial_shape or ())
    if spatial_axes is not None and tuple(a.size for a in spatial_axes) == shape:
        return list(spatial_axes)
    return [Axis(n, s) for n, s in zip(("y", "x"), shape, strict=False)]


def tree_figure(
    tree: Tree,
    *,
    axis: Sequence[float] | None = None,
    axis_label: str = "channel",
    names: dict[int, str] | None = None,
    refit: bool = True,
    title: str | None = None,
    spatial_axes: Sequence[Axis] | None = None,
) -> Figure:
    """The tree with every node's endmember and map thumbnail (see :func:`plot_tree`)."""
    cols = _colors(tree)
    has_maps = bool(tree.levels) or tree.node_maps is not None
    spatial2d = bool(tree.spatial_shape) and len(tree.spatial_shape) == 2
    thumb = has_maps and spatial2d
    grid = _grid_axes(tree, spatial_axes) if thumb else []
    fig, box = _canvas(tree, thumb)
    _draw_edges(fig, tree, box)
    S = np.asarray(to_numpy(tree.S), dtype=float)
    xs = np.arange(S.shape[1]) if axis is None else np.asarray(axis, dtype=float)
    for nd in tree.nodes:
        sa = _node_axes(fig, tree, nd.id, box(nd.id), grid=grid, refit=refit)
        _draw_endmember(sa, tree, nd, S[nd.id], xs, color=cols[nd.id], axis_label=axis_label)
        label = (names or {}).get(nd.id, f"n{nd.id}")
        sa.set_title(f"{label}  {nd.size} px", fontsize=7, pad=2, color=cols[nd.id])
        sa.set_yticks([])
    fig.suptitle(title or f"Tree of endmembers ({tree.n_leaves} leaves)", fontsize=10)
    return fig


def plot_tree(
    tree: Tree,
    path: str | os.PathLike,
    *,
    axis: Sequence[float] | None = None,
    axis_label: str = "channel",
    names: dict[int, str] | None = None,
    refit: bool = True,
    title: str | None = None,
    spatial_axes: Sequence[Axis] | None = None,
) -> str:
    """The tree with every node's endmember and map thumbnail, as a PNG.

    Parameters
    ----------
    tree : Tree
    path : str or path-like
        The PNG to write.
    axis : sequence of float, optional
        Signal axis values (e.g. wavelengths) for the spectra; default channel indices.
    axis_label : str
        The x label of every spectrum (e.g. ``"Energy loss (eV)"``).
    names : dict, optional
        Node labels (default ``"n<id>"``).
    refit : bool
        Thumbnails from the refitted level maps (True) or the nested maps.
    title : str, optional
    spatial_axes : sequence of Axis, optional
        The two scan axes (the scale bar of every map in their units; pixels otherwise).

    Returns
    -------
    str
        ``path``.
    """
    fig = tree_figure(
        tree,
        axis=axis,
        axis_label=axis_label,
        names=names,
        refit=refit,
        title=title,
        spatial_axes=spatial_axes,
    )
    return _save(fig, path)


def _canvas(tree: Tree, thumb: bool) -> tuple[Figure, Callable[[int], _Box]]:
    """A figure sized to the tree, and the panel of every node: ``(x0, y0, w, h)``."""
    from matplotlib.figure import Figure

    pos = _layout(tree)
    n_slots = max(len(tree.leaves), 1)
    cell_w, cell_h = 1.9, (2.5 if thumb else 1.5)
    fig = Figure(figsize=(max(5.0, cell_w * n_slots + 0.6), cell_h * (tree.depth + 1) + 0.7))
    W, H = fig.get_figwidth(), fig.get_figheight()
    top = 1 - 0.5 / H

    def box(i: int) -> _Box:
        x, d = pos[i]
        w, h = 0.8 * cell_w / W, 0.82 * cell_h / H
        cx = (0.3 + cell_w * (x + 0.5)) / W
        y0 = top - (d + 1) * cell_h / H + 0.08 * cell_h / H
        return cx - w / 2, y0, w, h

    return fig, box


def _draw_edges(fig: Figure, tree: Tree, box: Callable[[int], _Box]) -> None:
    """Lines from every node's panel down to its children's, on a background axes."""
    back = fig.add_axes((0, 0, 1, 1))
    back.set_axis_off()
    back.set_xlim(0, 1)
    back.set_ylim(0, 1)
    for nd in tree.nodes:
        for c in nd.children:
            x0, y0, w0, _ = box(nd.id)
            x1, y1, w1, h1 = box(c)
            back.plot([x0 + w0 / 2, x1 + w1 / 2], [y0, y1 + h1], color="0.6", lw=1.0, zorder=0)


def _node_axes(
    fig: Figure, tree: Tree, node: int, box: _Box, *, grid: list[Axis], refit: bool
) -> Any:
    """The axes of a node's endmember, above its map (with a scale bar) when ``grid``."""
    x0, y0, w, h = box
    if not grid:
        return fig.add_axes((x0, y0 + 0.12 * h, w, 0.78 * h))
    sa = fig.add_axes((x0, y0 + 0.62 * h, w, 0.31 * h))
    ma = fig.add_axes((x0 + 0.2 * w, y0, 0.6 * w, 0.5 * h))
    img = tree.node_map(node, refit=refit)
    show(ma, img, *grid, "viridis", (0.0, max(float(np.max(img)), 1e-300)))
    scale_bar(ma, *grid, fontsize=5)
    return sa


def _draw_endmember(
    sa: Any, tree: Tree, nd: Node, s: np.ndarray, xs: np.ndarray, *, color: str, axis_label: str
) -> None:
    """A node's endmember: an image for 2-D patterns, else a spectrum against ``xs``."""
    if bool(tree.signal_shape) and len(tree.signal_shape) == 2:
        sa.imshow(
            np.sqrt(np.clip(s.reshape(tree.signal_shape), 0, None)),
            cmap="magma",
            interpolation="nearest",
        )
        sa.set_xticks([])
        sa.set_xlabel("det_x (px)", fontsize=5, labelpad=1)
        sa.set_ylabel("det_y (px)", fontsize=5, labelpad=1)
        return
    sa.plot(xs, s, color=color, lw=1.0)
    sa.tick_params(labelsize=5, length=2, pad=1)
    sa.set_xlabel(axis_label, fontsize=5, labelpad=1)
    sa.set_ylabel("intensity", fontsize=5, labelpad=1)


def levels_figure(
    tree: Tree, *, max_levels: int = 6, spatial_axes: Sequence[Axis] | None = None
) -> Figure:
    """Maps of every level (see :func:`plot_levels`)."""
    levels = tree.levels[:max_levels]
    if not levels:
        raise ValueError("the tree has no level maps; build it with hierarchical_nmf.")
    kmax = max(len(lv.nodes) for lv in levels)
    spatial2d = bool(tree.spatial_shape) and len(tree.spatial_shape) == 2
    grid = _grid_axes(tree, spatial_axes) if spatial2d else []
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.5 * kmax + 1.2, 1.6 * len(levels) + 0.6))
    axes = fig.subplots(len(levels), kmax, squeeze=False)
    fig.subplots_adjust(
        left=0.08,
        right=0.86,
        bottom=0.06,
        top=1 - 0.45 / fig.get_figheight(),
        wspace=0.15 if spatial2d else 0.35,
        hspace=0.3 if spatial2d else 0.6,
    )
    cols = _colors(tree)
    vmax = max(float(np.max(to_numpy(lv.A))) for lv in levels)
    im = None
    for r, lv in enumerate(levels):
        A = np.asarray(to_numpy(lv.A), dtype=float)
        for j in range(kmax):
            ax = axes[r, j]
            if j >= len(lv.nodes):
                ax.set_axis_off()
                continue
            nid = lv.nodes[j]
            if spatial2d:
                im = show(ax, A[:, j].reshape(tree.spatial_shape), *grid, "viridis", (0, vmax))
                scale_bar(ax, *grid, fontsize=5)
            else:
                ax.plot(A[:, j], color=cols[nid], lw=0.8)
                ax.set_xlabel("pixel", fontsize=6, labelpad=1)
                ax.tick_params(labelsize=5, length=2, pad=1)
            ax.set_title(f"n{nid}", fontsize=7, color=cols[nid], pad=2)
            if j == 0:
                unit = "" if spatial2d else "\nabundance"
                ax.set_ylabel(f"depth {lv.depth}{unit}", fontsize=7)
            if spatial2d and r == len(levels) - 1:
                ax.set_xlabel(label_of(grid[1], "px"), fontsize=6, labelpad=2)
    if im is not None:
        cax = fig.add_axes((0.89, 0.25, 0.02, 0.5))
        fig.colorbar(im, cax=cax, label="abundance")
    fig.suptitle(f"Maps of every level (refit: {levels[0].refit})", fontsize=10)
    return fig


def plot_levels(
    tree: Tree,
    path: str | os.PathLike,
    *,
    max_levels: int = 6,
    spatial_axes: Sequence[Axis] | None = None,
) -> str:
    """Maps of every level (one row a level, one panel a node), one colour scale, as a PNG.

    ``spatial_axes`` (the two scan axes) gives the scale bars their units (pixels
    otherwise). Returns ``path``.
    """
    return _save(levels_figure(tree, max_levels=max_levels, spatial_axes=spatial_axes), path)


def leaf_dendrogram(tree: Tree) -> tuple[Dendrogram, np.ndarray] | None:
    """The dendrogram of the tree's leaves and their thumbnails (None below 2 leaves).

    Spectral angle for spectra; the rotation-invariant distance for 2-D patterns.
    """
    leaves = tree.leaves
    if len(leaves) < 2:
        return None
    S = np.asarray(to_numpy(tree.S), dtype=float)[leaves]
    two_d = bool(tree.signal_shape) and len(tree.signal_shape) == 2
    den = cluster_components(
        S,
        metric="rotation" if two_d else "angle",
        names=[f"n{i}" for i in leaves],
        signal_shape=tree.signal_shape if two_d else None,
    )
    return den, (S.reshape(len(leaves), *tree.signal_shape) if two_d else S)


def plot_dendrogram(
    dendro: Dendrogram,
    path: str | os.PathLike,
    *,
    thumbnails: Any = None,
    title: str | None = None,
) -> str:
    """The dendrogram (merge height in degrees), with an optional image under every leaf,
    as a PNG; returns ``path``."""
    return _save(dendrogram_figure(dendro, thumbnails=thumbnails, title=title), path)


_TREE_KINDS = ("tree", "levels", "dendrogram")


def tree_plot(
    tree: Tree,
    *,
    kind: str = "tree",
    axis: Sequence[float] | None = None,
    axis_label: str = "channel",
    spatial_axes: Sequence[Axis] | None = None,
) -> Figure:
    """A matplotlib figure of the tree (for notebooks; nothing is written).

    Parameters
    ----------
    kind : {"tree", "levels", "dendrogram"}
        The tree with every node's endmember and map, the maps of every level, or the
        dendrogram of the leaves.
    axis, axis_label
        The signal axis of the spectra (values and label, e.g. ``"Energy loss (eV)"``).
    spatial_axes : sequence of Axis, optional
        The two scan axes (scale bars in their units; pixels otherwise).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if kind not in _TREE_KINDS:
        raise ValueError(f"Tree.plot(kind={kind!r}): use one of {', '.join(_TREE_KINDS)}")
    if kind == "levels":
        return levels_figure(tree, spatial_axes=spatial_axes)
    if kind == "dendrogram":
        found = leaf_dendrogram(tree)
        if found is None:
            raise ValueError("Tree.plot(kind='dendrogram') needs a tree with 2 or more leaves")
        return dendrogram_figure(found[0], thumbnails=found[1])
    return tree_figure(tree, axis=axis, axis_label=axis_label, spatial_axes=spatial_axes)


def tree_html(tree: Tree) -> str:
    """The notebook view of a tree: a summary and one row a leaf with its endmember and
    map thumbnails (PNG ``data:`` URIs)."""

    from .._display import image_uri, spectrum_uri
    from .._notebook import summary_table

    error = f"{tree.levels[-1].error:.4g}" if tree.levels else "n/a"
    rows = [
        ("leaves", tree.n_leaves),
        ("depth", tree.depth),
        ("stop reason", tree.stop_reason),
        ("||X - AS||^2 / ||X||^2 (deepest level)", error),
        ("seconds", f"{tree.timings.get('total', float('nan')):.3g}"),
    ]
    S = np.asarray(to_numpy(tree.S), dtype=float)
    maps = (bool(tree.levels) or tree.node_maps is not None) and len(tree.spatial_shape or ()) == 2
    body = []
    for j, leaf in enumerate(tree.leaves[:24]):
        nd = tree.nodes[leaf]
        if tree.signal_shape and len(tree.signal_shape) == 2:
            end = image_uri(S[leaf].reshape(tree.signal_shape), cmap="magma")
        else:
            end = spectrum_uri(np.arange(S.shape[1]), S[leaf], j)
        cells = [f"n{leaf}", f"{nd.size} px", f'<img src="{end}" alt="endmember n{leaf}">']
        if maps:
            cells.append(f'<img src="{image_uri(tree.node_map(leaf))}" alt="map n{leaf}">')
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<div><strong>unmix Tree</strong> ({tree.n_leaves} leaves){summary_table(rows)}"
        f"<table>{''.join(body)}</table></div>"
    )
