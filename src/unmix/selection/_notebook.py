"""The notebook view of a rank selection and its figures as matplotlib objects.

:class:`~unmix.selection.RankSelection` shows itself in Jupyter with
:func:`selection_html` (the criteria table, the picks and a small criteria figure) and
returns figures with :func:`selection_plot` (nothing is written).
"""

from __future__ import annotations

import html
import math
from typing import Any

from matplotlib.figure import Figure

from .._display import figure_uri
from ._figures import consensus_figure, criteria_figure, stability_figure

__all__ = ["selection_html", "selection_plot"]

_BUILDERS = {
    "criteria": criteria_figure,
    "consensus": consensus_figure,
    "stability": stability_figure,
}
_COLUMNS = ("k", "rel_error", "cv_error", "silhouette_min", "bic")


def selection_plot(sel: Any, *, kind: str = "criteria") -> Figure:
    """A figure of the selection: ``"criteria"`` (every criterion against ``k``),
    ``"consensus"`` (consensus matrices) or ``"stability"`` (stability against error)."""
    if kind not in _BUILDERS:
        raise ValueError(f"plot(kind={kind!r}): use one of {', '.join(_BUILDERS)}")
    return _BUILDERS[kind](sel)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def selection_html(sel: Any) -> str:
    """The notebook view: recommendation, picks, the criteria table and a thumbnail."""
    cols = [c for c in _COLUMNS if any(c in r for r in sel.table)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join(
        "<tr"
        + (' style="font-weight:bold"' if r.get("k") == sel.recommended else "")
        + ">"
        + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in cols)
        + "</tr>"
        for r in sel.table
    )
    picks = ", ".join(f"{html.escape(str(c))}: {v}" for c, v in sel.picks.items())
    fig = criteria_figure(sel)
    fig.set_size_inches(min(fig.get_figwidth(), 9.0), min(fig.get_figheight(), 4.0))
    return (
        f"<div><strong>unmix RankSelection</strong>: recommended k = {sel.recommended} "
        f"(ranks {html.escape(str(list(sel.ks)))})<p>picks: {picks}</p>"
        f"<table><tr>{head}</tr>{rows}</table>"
        f'<img src="{figure_uri(fig, dpi=60)}" alt="criteria against k"></div>'
    )
