"""The tree of endmembers: nodes, levels with full maps, JSON and HDF5 (no pickle).

A :class:`Tree` holds one endmember a node (``Tree.S``, (n_nodes, channels)), the leaf
each pixel belongs to, and for every depth a :class:`Level`: the cut of the tree at that
depth (its nodes, plus shallower leaves carried down) with abundance maps of *all* pixels,
``X (pixels, channels) ~= Level.A (pixels, k) @ Level.S (k, channels)``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._backend import to_numpy
from ..result import Result
from ._figures import tree_html, tree_plot

__all__ = ["FORMAT", "Level", "Node", "Tree", "attach_tree", "load_tree"]

FORMAT = "unmix-tree"
_GROUP = "hierarchy"


@dataclass
class Node:
    """One node: a set of pixels and its endmember (row ``id`` of ``Tree.S``).

    Attributes
    ----------
    id, parent, depth : int
        ``parent`` is None for the root (id 0, depth 0).
    size : int
        Number of pixels assigned to the node (its leaves' pixels).
    children : list of int
        Empty for a leaf.
    order : int or None
        Position of the node's split in the sequence of splits (0 = the root's).
    score, gain : float or None
        Score of the node's split (accepted, or the candidate a leaf was not split with),
        and the fraction of the root's rank-one residual that the split removes.
    rank : int or None
        Number of components of the split (2 for HierNMF2; more with stability ranks).
    angle : float or None
        Smallest spectral angle (degrees) between the children's endmembers of the split.
    reason : str or None
        Why a leaf was not split further (``"n_leaves reached"``, ``"too few pixels"``,
        ``"pixels identical (rank one)"``, ``"score below min_score"``, ...).
    """

    id: int
    parent: int | None
    depth: int
    size: int
    children: list[int] = field(default_factory=list)
    order: int | None = None
    score: float | None = None
    gain: float | None = None
    rank: int | None = None
    angle: float | None = None
    reason: str | None = None

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass
class Level:
    """The cut of the tree at ``depth``: nodes and full maps of every pixel.

    ``A`` (pixels, k) and ``S`` (k, channels) on the input's backend; ``refit`` says how
    the maps were made: ``"none"`` (the tree's own nested maps), ``"maps"`` (the level's
    endmembers refitted to all pixels) or ``"joint"`` (maps and endmembers refined
    together from the tree's values).  ``error`` is ``||X - A S||_F^2 / ||X||_F^2``.
    """

    depth: int
    nodes: list[int]
    A: Any
    S: Any
    refit: str
    error: float


@dataclass
class Tree:
    """A hierarchy of endmembers with a map for every node and every level.

    Attributes
    ----------
    nodes : list of Node
        ``nodes[i].id == i``; node 0 is the root (all pixels).
    S : array (n_nodes, channels)
        The endmember of every node.
    assignment : ndarray (n_pixels,)
        The leaf every pixel belongs to (hard membership).
    node_maps : array (n_pixels, n_nodes) or None
        Nested maps without refit: each split shares its node's abundance among its
        children in the proportions of an exact NNLS fit of the children's endmembers.
    levels : list of Level
        One a depth, ``levels[d].depth == d``; ``levels[-1]`` holds every leaf.
    params, timings : dict
    stop_reason : str
    history : list of dict
        One entry a split: node, score, gain, number of leaves after it.
    spatial_shape, signal_shape : tuple of int or None
    splits : dict of int to dict
        The fit of every split node, by id: ``"pixels"`` the node's pixel indices (n_b,),
        ``"A"`` (n_b, r) the maps of those pixels and ``"S"`` (r, channels) the fitted
        components, children in order, scaled so that a pure pixel has abundance 1 (each
        component times the 0.99 quantile of its map over the node's pixels, the map
        divided by it).  In memory only (not in JSON or HDF5).
    """

    nodes: list[Node]
    S: Any
    assignment: np.ndarray
    node_maps: Any = None
    levels: list[Level] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = ""
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    spatial_shape: tuple[int, ...] | None = None
    signal_shape: tuple[int, ...] | None = None
    splits: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    # notebooks: a summary with thumbnails, and matplotlib figures (hierarchy._figures)
    _repr_html_, plot = tree_html, tree_plot

    # ------------------------------------------------------------ structure
    @property
    def leaves(self) -> list[int]:
        """Leaf ids, left to right (depth-first order)."""
        return [i for i in self.preorder() if self.nodes[i].is_leaf]

    @property
    def n_leaves(self) -> int:
        return sum(1 for nd in self.nodes if nd.is_leaf)

    @property
    def depth(self) -> int:
        return max(nd.depth for nd in self.nodes)

    def preorder(self, node: int = 0) -> list[int]:
        """Node ids depth first, children in order."""
        out, stack = [], [node]
        while stack:
            i = stack.pop()
            out.append(i)
            stack.extend(reversed(self.nodes[i].children))
        return out

    def subtree_leaves(self, node: int) -> list[int]:
        return [i for i in self.preorder(node) if self.nodes[i].is_leaf]

    def pixels(self, node: int) -> np.ndarray:
        """Indices of the pixels assigned to ``node`` (to one of its leaves)."""
        return np.flatnonzero(np.isin(self.assignment, self.subtree_leaves(node)))

    def ancestors(self, node: int) -> list[int]:
        out = []
        p = self.nodes[node].parent
        while p is not None:
            out.append(p)
            p = self.nodes[p].parent
        return out

    def frontier(self, n_splits: int) -> list[int]:
        """The leaves of the tree after its first ``n_splits`` splits (in split order)."""
        split = {nd.id for nd in self.nodes if nd.order is not None and nd.order < n_splits}
        front = [0]
        out = []
        while front:
            i = front.pop(0)
            if i in split and self.nodes[i].children:
                front[:0] = self.nodes[i].children
            else:
                out.append(i)
        return out

    def level_of(self, depth: int) -> list[int]:
        """Nodes of the cut at ``depth``: nodes at that depth and shallower leaves."""
        return [
            i
            for i in self.preorder()
            if self.nodes[i].depth == depth
            or (self.nodes[i].is_leaf and self.nodes[i].depth < depth)
        ]

    # ------------------------------------------------------------ maps
    def node_map(self, node: int, *, refit: bool = True) -> np.ndarray:
        """The abundance map of ``node`` (NumPy; ``(*spatial_shape,)`` when known).

        With ``refit`` the column of the node in the level at its depth, else the nested
        map without refit.
        """
        if refit and self.levels:
            lev = self.levels[self.nodes[node].depth]
            a = to_numpy(lev.A)[:, lev.nodes.index(node)]
        elif self.node_maps is not None:
            a = to_numpy(self.node_maps)[:, node]
        else:
            raise ValueError("this tree has no maps (it was loaded from JSON only).")
        return self._spatial(np.asarray(a))

    def maps(self, depth: int = -1) -> np.ndarray:
        """Maps of the level at ``depth`` as NumPy ``(*spatial_shape, k)``."""
        A = np.asarray(to_numpy(self.levels[depth].A))
        if self.spatial_shape and math.prod(self.spatial_shape) == A.shape[0]:
            return A.reshape(*self.spatial_shape, A.shape[1])
        return A

    def _spatial(self, a: np.ndarray) -> np.ndarray:
        if self.spatial_shape and math.prod(self.spatial_shape) == a.shape[0]:
            return a.reshape(self.spatial_shape)
        return a

    def to_result(self, depth: int = -1) -> Any:
        """The level at ``depth`` (default: all leaves) as a :class:`~unmix.Result`."""
        lev = self.levels[depth]
        spec = {
            "method": "hierarchical_nmf",
            "k": len(lev.nodes),
            "nodes": list(lev.nodes),
            "level": lev.depth,
            "refit": lev.refit,
            **{k: v for k, v in self.params.items() if k not in ("k",)},
        }
        obj = float(lev.error)
        return Result(
            A=lev.A,
            S=lev.S,
            objective=obj,
            history={"objective": np.array([obj])},
            n_iter=len(self.history),
            converged=True,
            stop_reason=self.stop_reason,
            timings=dict(self.timings),
            spec=spec,
            spatial_shape=self.spatial_shape,
            signal_shape=self.signal_shape,
        )

    # ------------------------------------------------------------ text and JSON
    def newick(self, names: dict[int, str] | None = None) -> str:
        """The topology in Newick format, nodes named ``n<id>`` (or by ``names``)."""

        def name(i: int) -> str:
            return (names or {}).get(i, f"n{i}")

        def rec(i: int) -> str:
            ch = self.nodes[i].children
            return name(i) if not ch else "(" + ",".join(rec(c) for c in ch) + ")" + name(i)

        return rec(0) + ";"

    def text(self, names: dict[int, str] | None = None) -> str:
        """An indented outline: one line a node with size, score and reason."""
        lines = []
        for i in self.preorder():
            nd = self.nodes[i]
            label = (names or {}).get(i, f"node {i}")
            bits = [f"{nd.size} px"]
            if nd.score is not None:
                bits.append(f"score {nd.score:.3g}")
            if nd.is_leaf and nd.reason:
                bits.append(f"leaf: {nd.reason}")
            lines.append("  " * nd.depth + f"- {label} ({', '.join(bits)})")
        return "\n".join(lines)

    def to_dict(self, *, spectra: bool = True) -> dict[str, Any]:
        """JSON-friendly description: nodes, levels, parameters (spectra optional)."""
        S = np.asarray(to_numpy(self.S), dtype=float)
        nodes = []
        for nd in self.nodes:
            d = asdict(nd)
            if spectra:
                d["spectrum"] = S[nd.id].tolist()
            nodes.append(d)
        return {
            "format": FORMAT,
            "format_version": 1,
            "n_pixels": int(self.assignment.shape[0]),
            "n_channels": int(S.shape[1]),
            "n_leaves": self.n_leaves,
            "leaves": self.leaves,
            "newick": self.newick(),
            "nodes": nodes,
            "levels": [
                {"depth": lv.depth, "nodes": list(lv.nodes), "refit": lv.refit, "error": lv.error}
                for lv in self.levels
            ],
            "params": self.params,
            "stop_reason": self.stop_reason,
            "history": self.history,
            "timings": self.timings,
            "spatial_shape": None if self.spatial_shape is None else list(self.spatial_shape),
            "signal_shape": None if self.signal_shape is None else list(self.signal_shape),
        }

    def to_json(self, path: str | os.PathLike | None = None, *, spectra: bool = True) -> str:
        """The :meth:`to_dict` description as JSON text (written to ``path`` when given)."""
        text = json.dumps(self.to_dict(spectra=spectra), indent=1, default=_json_default)
        if path is not None:
            with open(os.fspath(path), "w", encoding="utf-8") as f:
                f.write(text)
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tree:
        """Rebuild the structure and spectra from :meth:`to_dict` (maps are not in JSON)."""
        if d.get("format") != FORMAT:
            raise ValueError(f"not an unmix tree description (format {d.get('format')!r}).")
        nodes, spectra = [], []
        for nd in d["nodes"]:
            nd = dict(nd)
            spectra.append(nd.pop("spectrum", None))
            nodes.append(Node(**nd))
        if any(s is None for s in spectra):
            S = np.full((len(nodes), int(d["n_channels"])), np.nan)
        else:
            S = np.asarray(spectra, dtype=float)
        assignment = np.full(int(d["n_pixels"]), -1, dtype=np.int64)
        return cls(
            nodes=nodes,
            S=S,
            assignment=assignment,
            params=d.get("params", {}),
            stop_reason=d.get("stop_reason", ""),
            history=d.get("history", []),
            timings=d.get("timings", {}),
            spatial_shape=tuple(d["spatial_shape"]) if d.get("spatial_shape") else None,
            signal_shape=tuple(d["signal_shape"]) if d.get("signal_shape") else None,
        )

    # ------------------------------------------------------------ HDF5
    def save(self, path: str | os.PathLike) -> str:
        """Write the tree with all maps to an HDF5 file atomically; return the path."""
        import h5py

        path = os.fspath(path)
        with atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            _write(f, self)
        return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return repr(o)


def _write(g: Any, tree: Tree) -> None:
    g.attrs["tree"] = tree.to_json(spectra=False)
    g.create_dataset("S", data=np.asarray(to_numpy(tree.S)))
    g.create_dataset("assignment", data=tree.assignment, compression="gzip")
    if tree.node_maps is not None:
        g.create_dataset(
            "node_maps", data=np.asarray(to_numpy(tree.node_maps)), compression="gzip"
        )
    lv = g.create_group("levels")
    for level in tree.levels:
        h = lv.create_group(f"{level.depth:03d}")
        h.create_dataset("A", data=np.asarray(to_numpy(level.A)), compression="gzip")
        h.create_dataset("S", data=np.asarray(to_numpy(level.S)))


def _read(g: Any) -> Tree:
    tree = Tree.from_dict(json.loads(g.attrs["tree"]))
    tree.S = g["S"][()]
    tree.assignment = g["assignment"][()]
    tree.node_maps = g["node_maps"][()] if "node_maps" in g else None
    meta = json.loads(g.attrs["tree"])["levels"]
    tree.levels = [
        Level(
            depth=m["depth"],
            nodes=list(m["nodes"]),
            A=g["levels"][f"{m['depth']:03d}"]["A"][()],
            S=g["levels"][f"{m['depth']:03d}"]["S"][()],
            refit=m["refit"],
            error=m["error"],
        )
        for m in meta
    ]
    return tree


def attach_tree(result_path: str | os.PathLike, tree: Tree) -> str:
    """Add the tree as group ``hierarchy`` to an existing result file (e.g. ``result.h5``)."""
    import h5py

    path = os.fspath(result_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No result file at {path}; save the result first.")
    with h5py.File(path, "a") as f:
        if _GROUP in f:
            del f[_GROUP]
        _write(f.create_group(_GROUP), tree)
    return path


def load_tree(path: str | os.PathLike) -> Tree:
    """Read a tree written by :meth:`Tree.save` or :func:`attach_tree` (NumPy arrays)."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No tree file at {path}.")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file ({err}).") from err
    with f:
        if f.attrs.get("format") == FORMAT:
            return _read(f)
        if _GROUP in f:
            return _read(f[_GROUP])
    raise ValueError(
        f"{path} holds no unmix tree (neither a tree file nor a result with a "
        f"'{_GROUP}' group); write one with Tree.save or attach_tree."
    )
