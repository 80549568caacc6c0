"""Reporting a selection: a TOML config and an HTML page.

- :func:`run_config`: a TOML config with the chosen ``k`` and strengths that
  ``unmix run --config`` accepts;
- :func:`write_selection_report`: a self-contained ``selection.html`` in the style of
  :func:`unmix.report.write_report` (figures embedded, no script).

The Markdown table and the ``.json`` / ``.h5`` files are written by :mod:`._persist`.
"""

from __future__ import annotations

import html
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ._persist import cell, table_columns
from ._rank import RULES

logger = logging.getLogger("unmix")

__all__ = ["run_config", "write_selection_report"]


# ------------------------------------------------------------------ TOML
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # TOML: \uXXXX, never surrogate pairs
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def run_config(
    k: int,
    *,
    lambdas: Any = None,
    input_table: dict | None = None,
    steps: list | None = None,
    random_state: int | None = 0,
    noise: str | None = None,
) -> str:
    """A TOML config for ``unmix run --config`` with the chosen ``k`` and strengths.

    ``lambdas`` is a :class:`.lambdas.LambdaSearch` (its best regularizers and the
    constraints they were searched with) or None; ``input_table`` the ``[input]`` keys
    (``file``, ``dataset``, ``signal``, ``spatial_shape``) and ``steps`` the
    preprocessing steps the selection used; ``noise="poisson"`` (counts) adds the
    selection's Poisson scaling to the fit (``preprocessing = [{type = "PoissonScaling"}]``).
    """
    fac: dict[str, Any] = {"k": int(k)}
    if lambdas is not None:
        fac = lambdas.factorize_config()
        fac["k"] = int(k)
    if random_state is not None:
        fac["random_state"] = int(random_state)
    if noise == "poisson" and "preprocessing" not in fac:
        fac["preprocessing"] = [{"type": "PoissonScaling"}]
    out = ["# written by unmix select; run it with: unmix run --config THIS_FILE -o OUTDIR"]
    inp = {key: v for key, v in (input_table or {}).items() if v not in (None, [], ())}
    if inp:
        out.append("[input]")
        out += [f"{key} = {_toml_value(v)}" for key, v in inp.items()]
        out.append("")
    if steps:
        out.append("[preprocess]")
        out.append(f"steps = {_toml_value(list(steps))}")
        out.append("")
    out.append("[factorize]")
    out += [f"{key} = {_toml_value(v)}" for key, v in fac.items()]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ HTML
def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _html_table(sel: Any) -> str:
    cols = table_columns(sel)
    head = "".join(f"<th>{_esc(c[1])}</th>" for c in cols)
    body = []
    for r in sel.table:
        style = ' style="font-weight:600"' if r["k"] == sel.recommended else ""
        body.append(
            f"<tr{style}>"
            + "".join(f"<td>{_esc(cell(r, c[0], c[2]))}</td>" for c in cols)
            + "</tr>"
        )
    return f"<table><tr>{head}</tr>\n" + "\n".join(body) + "</table>"


def selection_section(sel: Any, outdir: str | os.PathLike, *, lambdas: Any = None) -> str:
    """The HTML ``<section>`` of a selection (figures written to ``outdir``)."""
    from ..report import HtmlFigure, figure_html

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    figs = sel.plot(outdir) if sel.runs or sel.consensus else {}
    if not figs:
        from ._figures import plot_criteria

        figs = {"criteria": plot_criteria(sel, outdir / "selection_criteria.png")}
    captions = {
        "criteria": "Every criterion against k; the circled point is the criterion's pick, "
        "the dashed line the recommendation.",
        "consensus": "Consensus matrices (pixels ordered by their average-linkage tree).",
        "stability": "Stability (worst endmember-cluster silhouette) against error (NMFk).",
        "uncertainty": f"Endmembers of k = {sel.recommended} with their band over the "
        "restarts / bootstrap draws, and the per-pixel spread of each map.",
    }
    picks = "".join(
        f"<tr><td>{_esc(c)}</td><td>{_esc('-' if k is None else k)}</td>"
        f"<td>{_esc(RULES.get(c, ''))}</td></tr>"
        for c, k in sel.picks.items()
    )
    parts = [
        '<section id="selection">',
        "<h2>Rank selection</h2>",
        f"<p><b>Recommended k = {sel.recommended}</b> (the rank most criteria pick).</p>",
        "<h3>Picks</h3>",
        f"<table><tr><th>criterion</th><th>k</th><th>rule</th></tr>{picks}</table>",
        "<h3>Criteria per k</h3>",
        _html_table(sel),
    ]
    for name, p in figs.items():
        parts.append(figure_html(HtmlFigure(Path(p), f"selection {name}", captions[name])))
    if lambdas is not None:
        lp = lambdas.plot(outdir / "selection_lambdas.png")
        best = ", ".join(f"{k} = {v:.4g}" for k, v in lambdas.best.items())
        parts += [
            "<h3>Regularization strengths</h3>",
            f"<p>{_esc(lambdas.method)} search, {len(lambdas.trials)} trials; best: "
            f"{_esc(best)} (score {lambdas.best_score:.5g}).</p>",
            figure_html(HtmlFigure(Path(lp), "lambda search", "Score of every trial.")),
        ]
    t = sel.timings
    if t:
        parts.append(
            f'<p class="muted">{int(t.get("n_fits", 0))} fits '
            f"({int(t.get('n_fits_resumed', 0))} resumed), "
            f"{t.get('total_wall', float('nan')):.1f} s wall.</p>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def write_selection_report(
    outdir: str | os.PathLike, sel: Any, *, lambdas: Any = None, title: str | None = None
) -> Path:
    """Write the figures and a self-contained ``selection.html`` into ``outdir``."""
    from ..report import CSS, PAGE

    outdir = Path(outdir)
    body = selection_section(sel, outdir, lambdas=lambdas)
    page = PAGE.format(
        title=_esc(title or "unmix rank selection"),
        version=_esc(__version__),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        css=CSS,
        nav='<li><a href="#selection">Rank selection</a></li>',
        body=body,
    )
    path = outdir / "selection.html"
    path.write_text(page, encoding="utf-8")
    logger.info("selection report: %s", path)
    return path
