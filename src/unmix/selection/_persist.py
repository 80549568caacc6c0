"""A rank selection as text and on disk: its Markdown table, ``.json`` and ``.h5`` files.

- :func:`selection_markdown`: the criteria table and every pick;
- :func:`save_selection` / :func:`read_selection`: ``.json`` (table, picks, settings) or
  ``.h5`` (plus consensus matrices and the best endmembers per rank), no pickle.

The functions take any object with the attributes of :class:`RankSelection` and
:func:`read_selection` returns the keywords that build one, so that this module does not
import :mod:`._rank` (which imports it).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from .._version import __version__

__all__ = [
    "COLUMNS",
    "FORMAT",
    "cell",
    "read_selection",
    "save_selection",
    "selection_markdown",
    "table_columns",
]

FORMAT = "unmix-rank-selection"
#: Columns of the criteria table: key of a table row, heading, format.
COLUMNS = (
    ("k", "k", "{:d}"),
    ("rel_error", "rel. error", "{:.4g}"),
    ("cv_error", "held-out", "{:.4g}"),
    ("silhouette_min", "silh. min", "{:.3f}"),
    ("cophenetic", "cophenetic", "{:.4f}"),
    ("dispersion", "dispersion", "{:.4f}"),
    ("aic", "AIC", "{:.6g}"),
    ("bic", "BIC", "{:.6g}"),
    ("laplace_pca", "Laplace-PCA", "{:.6g}"),
    ("new_component_angle", "new comp. angle", "{:.1f}"),
    ("too_large", "repeat/noise", "{}"),
)


def cell(row: dict, key: str, fmt: str) -> str:
    """One value of a table row as text (``-`` when missing or not finite)."""
    v = row.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return fmt.format(int(v) if fmt == "{:d}" else v)


def table_columns(sel: Any) -> list[tuple[str, str, str]]:
    """The :data:`COLUMNS` that some row of ``sel.table`` has."""
    return [c for c in COLUMNS if any(c[0] in r for r in sel.table)]


def selection_markdown(sel: Any) -> str:
    """The criteria table (one row per ``k``) and each criterion's pick, as Markdown."""
    cols = table_columns(sel)
    lines = [
        "| " + " | ".join(c[1] for c in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in sel.table:
        lines.append("| " + " | ".join(cell(r, c[0], c[2]) for c in cols) + " |")
    lines.append("")
    lines.append("| criterion | picks k |")
    lines.append("|---|---|")
    for name, k in sel.picks.items():
        lines.append(f"| {name} | {'-' if k is None else k} |")
    lines.append(f"| **recommended** | **{sel.recommended}** |")
    return "\n".join(lines)


def _plain(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        f = float(o)
        return f if math.isfinite(f) else None
    return o


def _meta(sel: Any) -> dict[str, Any]:
    return _plain(
        {
            "format": FORMAT,
            "version": __version__,
            "ks": sel.ks,
            "table": sel.table,
            "picks": {k: v for k, v in sel.picks.items()},
            "recommended": sel.recommended,
            "settings": sel.settings,
            "timings": sel.timings,
            "spatial_shape": sel.spatial_shape,
        }
    )


def save_selection(sel: Any, path: str | os.PathLike) -> str:
    """Write ``sel`` to ``.json`` or ``.h5`` (see the module); returns the path."""
    path = os.fspath(path)
    meta = _meta(sel)
    if path.endswith(".json"):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        return path
    if not path.endswith((".h5", ".hdf5")):
        raise ValueError(f"save a selection to .json or .h5; got {path!r}.")
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["meta"] = json.dumps(meta)
        for k, C in sel.consensus.items():
            f.create_dataset(f"consensus/k{k}", data=np.asarray(C), compression="gzip")
        for k, runs in sel.runs.items():
            best = min(runs, key=lambda r: r.sse)
            f.create_dataset(f"endmembers/k{k}", data=np.asarray(best.S, dtype=float))
    return path


def read_selection(path: str | os.PathLike) -> dict[str, Any]:
    """The keywords of the :class:`RankSelection` that :func:`save_selection` wrote to
    ``path`` (the fits are not stored)."""
    path = os.fspath(path)
    consensus: dict[int, np.ndarray] = {}
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    else:
        import h5py

        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{path} is not an unmix rank selection file.")
            meta = json.loads(f.attrs["meta"])
            for name in f.get("consensus", {}):
                consensus[int(name[1:])] = f["consensus"][name][()]
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an unmix rank selection file.")
    table = [{k: (np.nan if v is None else v) for k, v in r.items()} for r in meta["table"]]
    shape = meta.get("spatial_shape")
    return {
        "ks": [int(k) for k in meta["ks"]],
        "table": table,
        "picks": {k: (None if v is None else int(v)) for k, v in meta["picks"].items()},
        "recommended": int(meta["recommended"]),
        "settings": meta["settings"],
        "consensus": consensus,
        "timings": meta.get("timings", {}),
        "spatial_shape": None if shape is None else tuple(shape),
    }
