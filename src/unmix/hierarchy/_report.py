"""A self-contained HTML page for a tree of endmembers (``tree.html``).

Figures are embedded as base64 ``data:`` URIs, the style sheet is inline and there is no
external reference; strings from the data and the options are HTML-escaped. Given the
data, the page adds the interactive viewer of :mod:`unmix.report` (inline script): click
a node to see its map and endmember, point at a pixel to see its data, model and residual.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..report import VIEWER_BYTES, new_viewer
from ..spectral_image import Axis
from ._figures import leaf_dendrogram, plot_dendrogram, plot_levels, plot_tree
from ._model import Tree

__all__ = ["tree_figures", "tree_section", "write_tree_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(path: str | os.PathLike, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def tree_figures(
    tree: Tree,
    outdir: str | os.PathLike,
    *,
    axis: Any = None,
    axis_label: str = "channel",
    spatial_axes: Any = None,
) -> dict[str, str]:
    """Write ``tree.png``, ``levels.png`` and ``dendrogram.png`` (leaves by spectral angle).

    ``spatial_axes`` (the two scan axes, e.g. ``image.spatial_axes``) calibrates the scale
    bars of the maps (pixels otherwise).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = {
        "tree": plot_tree(
            tree, outdir / "tree.png", axis=axis, axis_label=axis_label, spatial_axes=spatial_axes
        )
    }
    if tree.levels:
        files["levels"] = plot_levels(tree, outdir / "levels.png", spatial_axes=spatial_axes)
    found = leaf_dendrogram(tree)
    if found is not None:
        den, thumbs = found
        files["dendrogram"] = plot_dendrogram(den, outdir / "dendrogram.png", thumbnails=thumbs)
    return files


def _node_table(tree: Tree) -> str:
    rows = [
        "<tr><th>node</th><th>parent</th><th>depth</th><th>pixels</th><th>split order</th>"
        "<th>score</th><th>gain</th><th class=l>leaf: why not split</th></tr>"
    ]
    for i in tree.preorder():
        nd = tree.nodes[i]
        score = "" if nd.score is None else f"{nd.score:.4g}"
        gain = "" if nd.gain is None else f"{nd.gain:.4g}"
        rows.append(
            f"<tr><td>n{nd.id}</td><td>{'' if nd.parent is None else f'n{nd.parent}'}</td>"
            f"<td>{nd.depth}</td><td>{nd.size}</td>"
            f"<td>{'' if nd.order is None else nd.order}</td><td>{score}</td><td>{gain}</td>"
            f"<td class=l>{_esc(nd.reason or '') if nd.is_leaf else ''}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _level_table(tree: Tree) -> str:
    rows = ["<tr><th>depth</th><th class=l>nodes</th><th>refit</th><th>relative error</th></tr>"]
    for lv in tree.levels:
        nodes = ", ".join(f"n{i}" for i in lv.nodes)
        rows.append(
            f"<tr><td>{lv.depth}</td><td class=l>{_esc(nodes)}</td><td>{_esc(lv.refit)}</td>"
            f"<td>{lv.error:.4g}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def tree_section(
    tree: Tree,
    outdir: str | os.PathLike,
    *,
    axis: Any = None,
    axis_label: str = "channel",
    heading: str | None = "Hierarchy",
    spatial_axes: Any = None,
) -> str:
    """The tree as an HTML fragment (figures embedded), for ``tree.html`` or any report.

    Writes the figures of :func:`tree_figures` into ``outdir`` and returns the section:
    the tree figure (every node's endmember and map), the maps of every level, the
    dendrogram of the leaves, the node and level tables, the Newick string and the tree
    as JSON (without spectra).  ``heading`` (an ``<h2>`` above it all) may be None.
    """
    files = tree_figures(tree, outdir, axis=axis, axis_label=axis_label, spatial_axes=spatial_axes)
    figs = {
        "tree": ("Tree", "Every node with its endmember and its map (refitted level maps)."),
        "levels": ("Maps of every level", "One row a depth: the cut of the tree at that depth."),
        "dendrogram": ("Dendrogram of the leaves", "Leaf endmembers clustered by distance."),
    }
    h = "h3" if heading else "h2"
    body = [f"<h2 id=hierarchy>{_esc(heading)}</h2>"] if heading else []
    for key, (head, text) in figs.items():
        if key in files:
            body += [
                f"<{h} id={key}>{_esc(head)}</{h}>",
                f"<p>{_esc(text)}</p>",
                _img(files[key], head),
            ]
    body += [
        f"<{h} id=nodes>Nodes</{h}>",
        _node_table(tree),
        f"<{h} id=levels-table>Levels</{h}>",
        _level_table(tree),
        f"<{h} id=newick>Newick</{h}>",
        f"<pre>{_esc(tree.newick())}</pre>",
        f"<{h} id=json>Tree (JSON, without spectra)</{h}>",
        f"<pre>{_esc(json.dumps(tree.to_dict(spectra=False), indent=1, default=str))}</pre>",
    ]
    return "\n".join(body)


def write_tree_report(
    outdir: str | os.PathLike,
    tree: Tree,
    *,
    title: str | None = None,
    axis: Any = None,
    axis_label: str = "channel",
    extra: dict[str, Any] | None = None,
    spatial_axes: Any = None,
    X: Any = None,
    viewer_bytes: int = VIEWER_BYTES,
) -> Path:
    """Write the tree's figures and a self-contained ``tree.html`` into ``outdir``.

    Parameters
    ----------
    outdir : str or path-like
    tree : Tree
    title : str, optional
    axis, axis_label
        Signal axis of the spectra in the tree figure.
    spatial_axes : sequence of Axis, optional
        The two scan axes: scale bars of the maps in their units (pixels otherwise).
    extra : dict, optional
        More rows for the notes table (input file, command line, ...).
    X : array (pixels, channels), optional
        The data of the tree: adds the interactive viewer (nodes, maps, pixel spectra).
    viewer_bytes : int
        Budget of the viewer's binned float32 arrays (see :func:`unmix.report.new_viewer`).

    Returns
    -------
    Path
        The path of ``tree.html``.
    """
    outdir = Path(outdir)
    title = title or "unmix tree"
    notes = {
        "leaves": tree.n_leaves,
        "depth": tree.depth,
        "stopped because": tree.stop_reason,
        "seconds": f"{tree.timings.get('total', float('nan')):.2f}",
        **{k: v for k, v in tree.params.items()},
        **(extra or {}),
    }
    note_rows = "".join(
        f"<tr><th class=l>{_esc(k)}</th><td class=l>{_esc(v)}</td></tr>" for k, v in notes.items()
    )
    body = [
        f"<h1>{_esc(title)}</h1>",
        f"<table>{note_rows}</table>",
        tree_section(
            tree,
            outdir,
            axis=axis,
            axis_label=axis_label,
            heading=None,
            spatial_axes=spatial_axes,
        ),
    ]
    if X is not None and tree.levels:
        kw = {"axis": axis, "label": axis_label, "spatial": spatial_axes, "budget": viewer_bytes}
        body.insert(2, tree_viewer(tree, X, **kw))
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    path = outdir / "tree.html"
    path.write_text(page, encoding="utf-8")
    return path


def _viewer_axes(
    tree: Tree, n: int, m: int, axis: Any, label: str, spatial: Any
) -> tuple[list[Axis], list[Axis]]:
    shape = tuple(tree.spatial_shape or ()) if math.prod(tree.spatial_shape or (0,)) == n else ()
    if spatial is not None and tuple(a.size for a in spatial) == shape:
        scan = list(spatial)
    else:
        names = ["y", "x"] if len(shape) == 2 else ["z", "y", "x"][-len(shape) :]
        scan = [Axis(a, s) for a, s in zip(names, shape, strict=True)] or [Axis("pixel", n)]
    sig = tuple(tree.signal_shape or ())
    if len(sig) == 2 and math.prod(sig) == m:
        return scan, [Axis("det_y", sig[0], navigate=False), Axis("det_x", sig[1], navigate=False)]
    if axis is not None and len(axis) == m:
        return scan, [Axis.from_values(label, np.asarray(axis, dtype=float))]
    return scan, [Axis(label, m, navigate=False)]


def tree_viewer(
    tree: Tree,
    X: Any,
    *,
    axis: Any = None,
    label: str = "channel",
    spatial: Any = None,
    budget: int = VIEWER_BYTES,
) -> str:
    """The interactive viewer of a tree: its node list (map and endmember of the node
    clicked) and the leaf level's maps with every pixel's data, model and residual.

    ``X`` is the data (pixels, channels); ``axis``/``label`` the signal axis of a 1-D
    signal; ``spatial`` the scan axes.
    """
    res = tree.to_result()
    n, m = int(res.A.shape[0]), int(res.S.shape[1])
    if tuple(X.shape) != (n, m):
        raise ValueError(
            f"X has shape {tuple(X.shape)}; the tree models ({n}, {m}) (pixels, channels): "
            "pass the X the tree was grown on"
        )
    scan, signal = _viewer_axes(tree, n, m, axis, label, spatial)
    v = new_viewer(
        scan, signal, n_full=1, n_maps=res.k + len(tree.nodes), budget=budget, label=label
    )
    v.payload["data"] = v.data(X)
    S = np.asarray(to_numpy(tree.S), dtype=float)
    nodes = []
    for i in tree.preorder():
        nd = tree.nodes[i]
        kind = "leaf" if nd.is_leaf else f"{len(nd.children)} children"
        nodes.append(
            {
                "id": i,
                "label": f"n{i} ({kind}, {nd.size} px)",
                "depth": nd.depth,
                "map": v.maps(np.asarray(tree.node_map(i)).reshape(-1)),
                "S": v.spectra(S[i : i + 1]),
            }
        )
    v.payload["tree"] = {"nodes": nodes}
    leaves = [f"n{i}" for i in tree.levels[-1].nodes]
    v.payload["methods"] = [v.method(f"leaves (depth {tree.levels[-1].depth})", res, names=leaves)]
    return v.section(heading="Interactive viewer")
