"""``tree`` and ``select`` on a streamed file: fit a seeded pixel subsample, map every pixel.

A file that does not fit the memory budget (see :mod:`unmix.cli._load`) is not loaded:
one streamed pass draws :func:`~unmix.cli._load.subsample_size` pixels (the smaller of
:data:`~unmix.cli._load.SUBSAMPLE_PIXELS` = 20 000 and what a quarter of the memory budget
holds, at least 256) with ``numpy.random.default_rng(--seed)`` (without replacement, in
file order), the tree or the rank selection is fitted on them, and for ``tree`` one more
streamed pass maps every pixel of the file onto every level's endmembers (exact
non-negative least squares, as ``--refit`` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import backend_of
from ..blocks import block_products, block_ranges, compiled_for, read_ahead, sample_rows
from ..hierarchy import MapProducts, maps_from_products, nested_maps
from ._load import block_bytes, read_progress, subsample_size

__all__ = ["READ_DEPTH", "draw_pixels", "map_tree"]

#: blocks read and multiplied ahead (each by its own thread) while one is mapped
READ_DEPTH = 2


def draw_pixels(X: Any, seed: int | None, *, quiet: bool) -> tuple[np.ndarray, np.ndarray]:
    """The subsample's pixel indices (increasing) and spectra (float64), in one pass."""
    n, m = int(X.shape[0]), int(X.shape[1])
    size = subsample_size(n, m)
    with read_progress(n, f"drawing {size} pixels", quiet) as bar:
        index, rows = sample_rows(
            X, size, seed=seed, block_bytes=block_bytes(), progress=bar.update
        )
    return index, np.asarray(rows, dtype=float)


def map_tree(tree: Any, X: Any, *, spatial_shape: tuple, normalize: bool, quiet: bool) -> None:
    """Replace the subsample's maps of ``tree`` by maps of every pixel of ``X`` (one pass).

    Every level's maps (its own endmembers, exact NNLS; nested maps where the level was
    not refitted), its relative error over all pixels, the nested node maps (when the
    tree has them) and the hard assignment (the largest leaf abundance) of every pixel.
    Each block of pixels is multiplied once by every endmember of the tree
    (:class:`~unmix.hierarchy.MapProducts`); the maps and residuals of all levels are
    solved from those products, so the pass keeps up with the disk.
    """
    n = int(X.shape[0])
    sum_to_one = bool(tree.params.get("sum_to_one"))
    W, n_nodes, columns = _stacked_endmembers(tree)
    maps = [np.empty((n, len(lev.nodes))) for lev in tree.levels]
    nested = None if tree.node_maps is None else np.empty((n, n_nodes))
    num, den = np.zeros(len(tree.levels)), 0.0
    compiled = compiled_for(X)
    WW = W @ W.T
    with read_progress(n, "mapping every pixel", quiet) as bar:
        ranges = block_ranges(X, block_bytes=block_bytes())

        def products(a: int, b: int) -> MapProducts:  # in the reading threads
            return _block_products(
                np.asarray(X[a:b]), W, WW, normalize=normalize, compiled=compiled
            )

        for a, b, p in read_ahead(X, ranges, products, depth=READ_DEPTH):
            be = backend_of(p.XW)  # float64 on the host, whatever X's dtype
            nb = None
            if nested is not None:  # the products stand in for the block's rows
                nb = np.asarray(nested_maps(p.XW, _host(tree), p.take(range(n_nodes), be)))
                nested[a:b] = nb
            for d, lev in enumerate(tree.levels):
                pl = p.take(columns[d], be)
                maps[d][a:b] = _level_block(pl, lev, nb, sum_to_one, be)
                num[d] += pl.residual(maps[d][a:b], be)
            den += float(np.sum(p.x2))
            bar.update(b - a)
    for d, lev in enumerate(tree.levels):
        lev.A, lev.error = maps[d], num[d] / max(den, 1e-300)
    leaves = tree.levels[-1]
    tree.assignment = np.asarray(leaves.nodes)[np.argmax(maps[-1], axis=1)]
    tree.node_maps = nested
    tree.spatial_shape = tuple(spatial_shape)


def _block_products(
    xb: np.ndarray, W: np.ndarray, WW: np.ndarray, *, normalize: bool, compiled: bool
) -> MapProducts:
    """The block's products with every endmember ``W`` in one read of it (float64 in
    any dtype); ``normalize``: of the block's rows scaled to unit norm."""
    prod = block_products(xb, W, compiled=compiled)
    XW, x2 = prod.XW, prod.x2
    if normalize:
        norms = np.sqrt(x2)
        scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)
        XW, x2 = XW * scale[:, None], x2 * scale * scale
    return MapProducts(XW, WW, x2)


def _stacked_endmembers(tree: Any) -> tuple[np.ndarray, int, list[list[int]]]:
    """Every endmember the maps need, once: the tree's nodes first, then any level
    endmember that is not its node's (a refitted level); with each level's rows."""
    nodes = np.asarray(tree.S, dtype=float)
    rows, columns = [nodes], []
    extra = nodes.shape[0]
    for lev in tree.levels:
        S = np.asarray(lev.S, dtype=float)
        if np.array_equal(S, nodes[list(lev.nodes)]):
            columns.append(list(lev.nodes))
        else:
            rows.append(S)
            columns.append(list(range(extra, extra + S.shape[0])))
            extra += S.shape[0]
    return np.concatenate(rows, axis=0), nodes.shape[0], columns


def _host(tree: Any) -> Any:
    """``tree`` with its endmembers as a float64 NumPy array (for the blocks' maps)."""
    tree.S = np.asarray(tree.S, dtype=float)
    return tree


def _level_block(p: MapProducts, lev: Any, nested: Any, sum_to_one: bool, be: Any) -> np.ndarray:
    """The maps of one block of pixels on the endmembers of level ``lev``."""
    if lev.refit == "none" and nested is not None:
        return nested[:, list(lev.nodes)]
    k = int(p.WW.shape[0])
    if k == 1 and sum_to_one:
        return np.ones((int(p.x2.shape[0]), 1))
    return np.asarray(maps_from_products(p, be, sum_to_one=sum_to_one))
