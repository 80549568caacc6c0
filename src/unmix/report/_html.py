"""A self-contained HTML report of one or several factorizations.

:func:`write_report` writes the figures of :mod:`unmix.report` as PNG files and a
``report.html`` that embeds every one of them as a base64 ``data:`` URI, with an inline
style sheet, an inline interactive viewer (:mod:`unmix.report._interactive`) and no
external reference: the file can be mailed or archived on its own. Every string that comes
from data, metadata or parameters is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..result import Result
from ..spectral_image import SpectralImage
from ._bands import (
    bands_caption,
    bands_summary,
    model_band_caption,
    plot_endmember_band_widths,
    plot_map_band_widths,
)
from ._figures import (
    plot_comparison,
    plot_endmembers,
    plot_loss,
    plot_maps,
    plot_pixel_fits,
    plot_residual_map,
)
from ._interactive import VIEWER_BYTES, viewer_section
from ._model import relative_residuals
from ._panels import HtmlFigure, figure_html
from ._phases import components_html, overview_html
from ._template import CSS, PAGE

__all__ = ["write_report"]

_logger = logging.getLogger(__name__)

_MAX_LIST = 8  # longer lists (e.g. fixed spectra) are summarized by their length
_SPEC_ORDER = (
    ("k", "components (k)"),
    ("loss", "loss"),
    ("link", "link"),
    ("solver", "solver"),
    ("constraints", "constraints"),
    ("penalties", "penalties"),
    ("filters", "filters"),
    ("init", "initialization"),
    ("preprocessing", "preprocessing"),
    ("weights", "weights"),
    ("mask", "mask"),
    ("tol", "tol"),
    ("max_iter", "max_iter"),
    ("time_limit", "time limit (s)"),
    ("compress", "compress (rank)"),
    ("n_restarts", "restarts"),
    ("random_state", "random state"),
    ("preset", "preset"),
)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """A readable one-line text for a parameter value (not escaped)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_fmt(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_LIST or any(isinstance(v, (list, tuple)) for v in value):
            shape = np.shape(value) if _is_rectangular(value) else (len(value),)
            return f"[{' x '.join(map(str, shape))} values]"
        return "[" + ", ".join(_fmt(v) for v in value) + "]" if value else "none"
    return str(value)


def _is_rectangular(value: Any) -> bool:
    try:
        np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


def _term(d: Any) -> str:
    """``{"type": "L1", "target": "A", "lam": 0.001}`` -> ``"L1 on A: lam = 0.001"``."""
    if not isinstance(d, dict):
        return _fmt(d)
    text = str(d.get("type", "?")) + (f" on {d['target']}" if "target" in d else "")
    rest = {k: v for k, v in d.items() if k not in ("type", "target")}
    return text + (f": {_fmt(rest)}" if rest else "")


def _terms(items: Any) -> str:
    """Escaped HTML: one term a line."""
    if not items:
        return "none"
    return "<br>".join(_esc(_term(t)) for t in items)


def _table(rows: list[tuple[str, str]], head: tuple[str, ...] | None = None) -> str:
    """Rows of (label, value HTML) with the labels escaped; values must be escaped HTML."""
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        label, *cells = row
        out.append(
            f'<tr><th scope="row">{_esc(label)}</th>'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _spec_rows(spec: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, label in _SPEC_ORDER:
        if key not in spec:
            continue
        value = spec[key]
        if key in ("constraints", "penalties", "filters", "preprocessing"):
            rows.append((label, _terms(value)))
        elif key == "loss":
            beta = spec.get("beta")
            extra = f" (beta = {beta:g})" if isinstance(beta, (int, float)) else ""
            rows.append((label, _esc(f"{value}{extra}")))
        elif key == "solver":
            opts = spec.get("solver_options") or {}
            rows.append((label, _esc(f"{value}" + (f" ({_fmt(opts)})" if opts else ""))))
        else:
            rows.append((label, _esc(_fmt(value))))
    n, m = spec.get("n_pixels"), spec.get("n_channels")
    data = f"{n} pixels x {m} channels"
    for key, what in (("spatial_shape", "scan"), ("signal_shape", "signal")):
        if spec.get(key):
            data += f"; {what} {' x '.join(map(str, spec[key]))}"
    rows.append(("data", _esc(data)))
    where = [spec.get(k) for k in ("backend", "dtype", "device") if spec.get(k)]
    if where:
        rows.append(("backend", _esc(", ".join(map(str, where)))))
    return rows


def _plain(o: Any) -> Any:
    """JSON fallback: small arrays and NumPy scalars as lists and numbers, else a summary."""
    size = getattr(o, "size", None)
    if hasattr(o, "tolist") and (size is None or size <= 64):
        return o.tolist()
    if hasattr(o, "shape"):
        return f"<array shape {tuple(o.shape)}, {getattr(o, 'dtype', '?')}>"
    return repr(o)


def _json(value: Any, limit: int = 20000) -> str:
    text = json.dumps(value, indent=1, default=_plain)
    return text if len(text) <= limit else text[:limit] + "\n... (truncated)"


def _convergence_rows(res: Result, residual: tuple[np.ndarray, float] | None) -> list:
    t = res.timings or {}
    rows = [
        ("iterations", _esc(res.n_iter)),
        ("stop reason", _esc(res.stop_summary)),
        ("final objective", _esc(_fmt(float(res.objective)))),
        ("start", _esc(res.start_summary)),
    ]
    for key, values in res.history.items():
        if key not in ("objective", "time", "phase") and len(values):
            rows.append((f"final {key}", _esc(_fmt(float(np.asarray(values)[-1])))))
    if residual is not None:
        rel, total = residual
        med = np.nanmedian(rel) if np.any(np.isfinite(rel)) else math.nan
        text = f"{total:.4g} overall (||X - Y||_F / ||X||_F); median per pixel {med:.4g}"
        rows.append(("relative residual", _esc(text)))
    t = {k: v for k, v in t.items() if isinstance(v, (int, float))}
    times = ", ".join(f"{k} {v:.3g} s" for k, v in t.items() if k != "per_iteration")
    if "per_iteration" in t:
        times += f"; {1e3 * t['per_iteration']:.3g} ms per iteration"
    rows.append(("timings", _esc(times or "n/a")))
    if len(res.restarts) > 1:
        best = min(res.restarts, key=lambda r: r.get("objective", math.inf))
        rows.append(("restarts", _esc(f"{len(res.restarts)}; best seed {best.get('seed')}")))
    return rows


_INPUT_KEYS = (
    ("title", "title"),
    ("signal_type", "signal type"),
    ("source", "file"),
    ("reader", "reader"),
    ("sha256", "sha256"),
    ("quantity", "quantity"),
    ("units", "units"),
)


def _axis_row(ax: Any) -> tuple[str, ...]:
    v = ax.values
    step = f"{ax.scale:.6g}" if ax.is_uniform else f"non-uniform (mean {ax.scale:.4g})"
    role = "scan" if ax.navigate else "signal"
    units = ax.units or "(uncalibrated)"
    return (ax.name, role, str(ax.size), f"{v[0]:.6g}", f"{v[-1]:.6g}", step, units)


def _image_html(image: SpectralImage) -> list[str]:
    md = image.metadata
    rows = [(label, _esc(md[key])) for key, label in _INPUT_KEYS if _given(md.get(key))]
    rows = [(k, f"<code>{v}</code>" if k == "sha256" else v) for k, v in rows]
    sp = " x ".join(map(str, image.spatial_shape))
    sg = " x ".join(map(str, image.signal_shape))
    rows.append(("shape", _esc(f"scan {sp}; signal {sg} ({image.dtype})")))
    head = ("axis", "role", "size", "first", "last", "step", "units")
    axes = [(r[0], *map(_esc, r[1:])) for r in map(_axis_row, image.axes)]
    out = [_table(rows), "<h3>Axes</h3>", _table(axes, head)]
    known = {key for key, _ in _INPUT_KEYS}
    other = {k: v for k, v in md.items() if k not in known and _given(v)}
    if other:
        out.append(f"<details><summary>Other metadata ({len(other)} entries)</summary>")
        out.append(f"<pre>{_esc(_json(other))}</pre></details>")
    return out


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value)


def _input_section(
    image: SpectralImage | None, X: Any, results: list, outdir: Path | None = None
) -> str:
    out = ['<section id="input">', "<h2>Input</h2>"]
    if image is not None:
        out += _image_html(image)
    elif X is not None:
        text = f"{tuple(X.shape)} (pixels, channels), {getattr(X, 'dtype', '?')}"
        out.append(_table([("matrix X", _esc(text))]))
    else:
        spec = results[0][1].spec
        text = f"{spec.get('n_pixels')} pixels x {spec.get('n_channels')} channels (not given)"
        out.append(_table([("data", _esc(text))]))
    context = getattr(results[0][1], "context", None)  # provenance saved with the result
    if image is None and isinstance(context, dict) and context:
        rows = [
            (label, _esc(_fmt(context[k]))) for k, label in _INPUT_KEYS if _given(context.get(k))
        ]
        out.append(_table(rows) if rows else "")
        out.append("<details><summary>Provenance saved with the result</summary>")
        out.append(f"<pre>{_esc(_json(context))}</pre></details>")
    if outdir is not None:  # the overview (HAADF the input carries, else the sum image)
        out.append(overview_html(results, X, image, outdir))
    out.append("</section>")
    return "\n".join(out)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "result"


def _named(results: Mapping[str, Result] | Result) -> list[tuple[str, Result]]:
    if isinstance(results, Result):
        s = results.spec
        what = s.get("preset") or s.get("solver", "result")
        name = f"{what} ({s.get('loss', '?')}, k = {results.k})"
        return [(name, results)]
    items = [(str(k), v) for k, v in results.items()]
    if not items:
        raise ValueError("write_report needs at least one result")
    for name, res in items:
        if not isinstance(res, Result):
            raise TypeError(f"results[{name!r}] is a {type(res).__name__}, not a Result")
    return items


def _compressed(res: Result) -> bool:
    return bool(np.any(np.asarray(res.history.get("phase", [])) == 1))


def _result_section(
    idx: int, name: str, res: Result, outdir: Path, X: Any, image: SpectralImage | None
) -> tuple[str, list[HtmlFigure], tuple | None]:
    stem = outdir / f"{idx:02d}_{_slug(name)}"
    figs = [
        HtmlFigure(
            Path(plot_endmembers(res, f"{stem}_endmembers.png", image=image)),
            f"Endmembers of {name}",
            "Endmembers on the signal axis." + bands_caption(res),
        ),
        HtmlFigure(
            Path(plot_maps(res, f"{stem}_maps.png", image=image)),
            f"Maps of {name}",
            ("Score maps" if res.spec.get("solver") == "svd" else "Abundance maps")
            + " on the scan grid.",
        ),
        HtmlFigure(
            Path(plot_loss(res, f"{stem}_loss.png")),
            f"Convergence of {name}",
            "Objective and its terms per iteration (log scale)"
            + ("; shaded: compressed phase." if _compressed(res) else "."),
            half=True,
        ),
    ]
    figs += _band_figures(res, name, stem, image)
    residual = None
    if X is not None:
        residual = relative_residuals(res, X)
        figs.append(
            HtmlFigure(
                Path(plot_residual_map(res, X, f"{stem}_residual.png", image=image)),
                f"Relative residual map of {name}",
                "Relative RMS residual ||x - y|| / ||x|| per pixel.",
                half=True,
            )
        )
        figs.append(
            HtmlFigure(
                Path(plot_pixel_fits(res, X, f"{stem}_pixels.png", image=image)),
                f"Data and model at selected pixels for {name}",
                "Data, model and each component's contribution at the brightest, "
                "the worst-fitted and a median pixel." + model_band_caption(res),
            )
        )
    body = [
        f'<section id="result-{idx}">',
        f"<h2>{_esc(name)}</h2>",
        '<div class="grid"><div>',
        "<h3>Parameters</h3>",
        _table(_spec_rows(res.spec)),
        "</div><div>",
        "<h3>Convergence</h3>",
        _table(_convergence_rows(res, residual)),
        "</div></div>",
        components_html(res, X, image, stem),
        *_bands_html(res),
        "<details><summary>Full specification (JSON)</summary>",
        f"<pre>{_esc(_json(res.spec))}</pre></details>",
        "<h3>Figures</h3>",
        '<div class="figs">',
        *(figure_html(f) for f in figs),
        "</div>",
        "</section>",
    ]
    return "\n".join(body), figs, residual


def _bands_html(res: Result) -> list[str]:
    """The result's uncertainty bands in words and numbers (empty without bands)."""
    notes, rows = bands_summary(res)
    if not rows:
        return []
    return [
        '<h3 id="bands">Uncertainty bands</h3>',
        *(f"<p>{_esc(note)}</p>" for note in notes),
        _table([(label, _esc(value)) for label, value in rows]),
    ]


def _band_figures(
    res: Result, name: str, stem: Path, image: SpectralImage | None
) -> list[HtmlFigure]:
    """The relative widths of the endmember bands (compared bands dashed) and of the
    map bands, when the result has bands."""
    if res.bands is None:
        return []
    figures = (
        (
            plot_endmember_band_widths(res, f"{stem}_endmember_band_widths.png", image=image),
            f"Endmember band widths of {name}",
            "Relative width (upper - lower) / mean of every channel's interval; "
            "solid: the result's bands, dashed: the compared ones.",
            False,
        ),
        (
            plot_map_band_widths(res, f"{stem}_band_widths.png", image=image),
            f"Map band widths of {name}",
            "Relative width (upper - lower) / mean of every pixel's interval "
            f"({res.bands.method.split(':')[0]}).",
            True,
        ),
    )
    return [
        HtmlFigure(Path(path), title, caption, half=half)
        for path, title, caption, half in figures
        if path is not None
    ]


def _comparison_section(
    items: list[tuple[str, Result]], residuals: list, outdir: Path, image: SpectralImage | None
) -> tuple[str, HtmlFigure]:
    path = Path(plot_comparison(dict(items), outdir / "comparison.png", image=image))
    fig = HtmlFigure(
        path,
        "Comparison of " + ", ".join(n for n, _ in items),
        "One row per method: endmembers (scaled to a maximum of 1), then the maps, each with "
        "its own colour scale (white = 0 where a component has negative values); components "
        "matched to the first non-negative result.",
    )
    head = (
        "method",
        "k",
        "loss",
        "solver",
        "constraints",
        "penalties",
        "objective",
        "relative residual",
        "iterations",
        "stop reason",
        "time (s)",
    )
    rows = []
    for (name, res), resid in zip(items, residuals, strict=True):
        s = res.spec
        rows.append(
            (
                name,
                _esc(res.k),
                _esc(s.get("loss", "?")),
                _esc(s.get("solver", "?")),
                _terms(s.get("constraints")),
                _terms(s.get("penalties")),
                _esc(_fmt(float(res.objective))),
                _esc("n/a" if resid is None else f"{resid[1]:.4g}"),
                _esc(res.n_iter),
                _esc(res.stop_summary),
                _esc(f"{res.timings.get('total', math.nan):.3g}"),
            )
        )
    body = [
        '<section id="comparison">',
        "<h2>Comparison</h2>",
        _table(rows, head),
        figure_html(fig),
        "</section>",
    ]
    return "\n".join(body), fig


def _page(title: str, nav: list[tuple[str, str]], parts: list[str]) -> str:
    return PAGE.format(
        title=_esc(title),
        version=_esc(__version__),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        css=CSS,
        nav="\n".join(f'<li><a href="#{a}">{_esc(label)}</a></li>' for a, label in nav),
        body="\n".join(parts),
    )


def write_report(
    outdir: str | Path,
    results: Mapping[str, Result] | Result,
    *,
    X: Any = None,
    image: SpectralImage | None = None,
    title: str | None = None,
    extra: dict[str, Any] | None = None,
    viewer: bool | int = True,
) -> Path:
    """Write the figures and a self-contained ``report.html`` into ``outdir``.

    Parameters
    ----------
    outdir : str or Path
        Created if needed; the PNG files and ``report.html`` are (over)written there.
    results : Result or mapping of str -> Result
        One result, or several by name (``{"PCA": ..., "NMF": ...}``), shown in order and,
        when there are several, side by side in a comparison section.
    X : array (pixels, channels), optional
        The data that was factorized: adds the residual map and the pixel fits. Default:
        ``image.unfold()`` when ``image`` is given and held in memory (a lazy image is
        not read: no residual figures).
    image : SpectralImage, optional
        The input: its file, checksum, reader and axes are listed, and its calibrated axes
        are used in the figures.
    title : str, optional
        Default: the image's title, else ``"unmix report"``.
    extra : dict, optional
        More entries for a "Notes" table (e.g. the command line, the operator, a sample id).
    viewer : bool or int
        The interactive viewer (a pixel's data, model, contributions, residual; offline),
        its data binned to :data:`VIEWER_BYTES` or to this many bytes; False: none.

    Returns
    -------
    Path
        The path of ``report.html``.

    Notes
    -----
    Every figure is embedded as a base64 ``data:`` URI, the style sheet and the viewer's
    script are inline and the page has no external reference. Strings from the data, the
    metadata, the result names and ``extra`` are HTML-escaped.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    items = _named(results)
    if X is None and image is not None and not image.is_lazy:
        X = image.unfold()  # a lazy (out-of-core) image is not loaded for the figures
    title = title or (image.title if image is not None and image.title else "unmix report")
    nav = [("input", "Input")]
    parts = [_input_section(image, X, items, outdir)]
    if viewer is not False:
        budget = VIEWER_BYTES if viewer is True else int(viewer)
        parts.append(viewer_section(items, X=X, image=image, budget=budget))
        nav.append(("viewer", "Viewer"))
    residuals, n_figs = [], 0
    for idx, (name, res) in enumerate(items, start=1):
        _logger.info("report: figures of %s", name)
        text, figs, residual = _result_section(idx, name, res, outdir, X, image)
        parts.append(text)
        nav.append((f"result-{idx}", name))
        residuals.append(residual)
        n_figs += len(figs)
    if len(items) > 1:
        text, _ = _comparison_section(items, residuals, outdir, image)
        parts.append(text)
        nav.append(("comparison", "Comparison"))
        n_figs += 1
    if extra:
        rows = [(str(k), _esc(_fmt(v))) for k, v in extra.items()]
        parts.append('<section id="notes">\n<h2>Notes</h2>\n' + _table(rows) + "\n</section>")
        nav.append(("notes", "Notes"))
    path = outdir / "report.html"
    path.write_text(_page(title, nav, parts), encoding="utf-8")
    _logger.info("report: %s (%d figures)", path, n_figs)
    return path
