"""Figures of a tree of endmembers and of a dendrogram (PNG, matplotlib Figure API).

Every function draws on a :class:`matplotlib.figure.Figure` (no pyplot state, no backend
switch), writes one PNG and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._backend import to_numpy
from ._cluster import Dendrogram
from ._model import Node, Tree

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_dendrogram", "plot_levels", "plot_tree"]

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


def plot_tree(
    tree: Tree,
    path: str | os.PathLike,
    *,
    axis: Sequence[float] | None = None,
    axis_label: str = "channel",
    names: dict[int, str] | None = None,
    refit: bool = True,
    title: str | None = None,
) -> str:
    """The tree with every node's endmember and map thumbnail.

    Parameters
    ----------
    tree : Tree
    path : str or path-like
        The PNG to write.
    axis : sequence of float, optional
        Signal axis values (e.g. wavelengths) for the spectra; default channel indices.
    axis_label : str
    names : dict, optional
        Node labels (default ``"n<id>"``).
    refit : bool
        Thumbnails from the refitted level maps (True) or the nested maps.
    title : str, optional
    """
    cols = _colors(tree)
    has_maps = bool(tree.levels) or tree.node_maps is not None
    spatial2d = bool(tree.spatial_shape) and len(tree.spatial_shape) == 2
    thumb = has_maps and spatial2d
    fig, box = _canvas(tree, thumb)
    _draw_edges(fig, tree, box)
    S = np.asarray(to_numpy(tree.S), dtype=float)
    xs = np.arange(S.shape[1]) if axis is None else np.asarray(axis, dtype=float)
    for nd in tree.nodes:
        sa = _node_axes(fig, tree, nd.id, box(nd.id), thumb=thumb, refit=refit)
        _draw_endmember(sa, tree, nd, S[nd.id], xs, color=cols[nd.id], axis_label=axis_label)
        label = (names or {}).get(nd.id, f"n{nd.id}")
        sa.set_title(f"{label}  {nd.size} px", fontsize=7, pad=2, color=cols[nd.id])
        sa.set_yticks([])
    fig.suptitle(title or f"Tree of endmembers ({tree.n_leaves} leaves)", fontsize=10)
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


def _node_axes(fig: Figure, tree: Tree, node: int, box: _Box, *, thumb: bool, refit: bool) -> Any:
    """The axes of a node's endmember, above the thumbnail of its map when ``thumb``."""
    x0, y0, w, h = box
    if not thumb:
        return fig.add_axes((x0, y0 + 0.05 * h, w, 0.85 * h))
    sa = fig.add_axes((x0, y0 + 0.55 * h, w, 0.38 * h))
    ma = fig.add_axes((x0 + 0.2 * w, y0, 0.6 * w, 0.5 * h))
    img = tree.node_map(node, refit=refit)
    ma.imshow(img, cmap="viridis", vmin=0, interpolation="nearest")
    ma.set_xticks([])
    ma.set_yticks([])
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
        return
    sa.plot(xs, s, color=color, lw=1.0)
    sa.tick_params(labelsize=5, length=2, pad=1)
    if nd.depth == tree.depth or nd.is_leaf:
        sa.set_xlabel(axis_label, fontsize=5, labelpad=1)


def plot_levels(tree: Tree, path: str | os.PathLike, *, max_levels: int = 6) -> str:
    """Maps of every level (one row a level, one panel a node), shared colour scale 0-1."""
    levels = tree.levels[:max_levels]
    if not levels:
        raise ValueError("the tree has no level maps; build it with hierarchical_nmf.")
    kmax = max(len(lv.nodes) for lv in levels)
    spatial2d = bool(tree.spatial_shape) and len(tree.spatial_shape) == 2
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.5 * kmax + 1.2, 1.6 * len(levels) + 0.6))
    axes = fig.subplots(len(levels), kmax, squeeze=False)
    fig.subplots_adjust(
        left=0.06,
        right=0.86,
        bottom=0.03,
        top=1 - 0.45 / fig.get_figheight(),
        wspace=0.08,
        hspace=0.25,
    )
    cols = _colors(tree)
    vmax = max(float(np.max(to_numpy(lv.A))) for lv in levels)
    im = None
    for r, lv in enumerate(levels):
        A = np.asarray(to_numpy(lv.A), dtype=float)
        for j in range(kmax):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(lv.nodes):
                ax.set_axis_off()
                continue
            nid = lv.nodes[j]
            if spatial2d:
                im = ax.imshow(
                    A[:, j].reshape(tree.spatial_shape),
                    vmin=0,
                    vmax=vmax,
                    cmap="viridis",
                    interpolation="nearest",
                )
            else:
                ax.plot(A[:, j], color=cols[nid], lw=0.8)
            ax.set_title(f"n{nid}", fontsize=7, color=cols[nid], pad=2)
            if j == 0:
                ax.set_ylabel(f"depth {lv.depth}", fontsize=7)
    if im is not None:
        cax = fig.add_axes((0.89, 0.25, 0.02, 0.5))
        fig.colorbar(im, cax=cax, label="abundance")
    fig.suptitle(f"Maps of every level (refit: {levels[0].refit})", fontsize=10)
    return _save(fig, path)


def plot_dendrogram(
    dendro: Dendrogram,
    path: str | os.PathLike,
    *,
    thumbnails: Any = None,
    title: str | None = None,
) -> str:
    """The dendrogram (merge height in degrees), with an optional image under every leaf."""
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
    return _save(fig, path)
