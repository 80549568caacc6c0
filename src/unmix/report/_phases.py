"""The overview image, what the components are, label maps and phases (run report).

- :func:`overview_image`: the image of the scan shown at the top of the report: the
  overview the input carries (``image.metadata["overview"]``, e.g. a HAADF image on the
  scan grid, named by ``metadata["overview_name"]``), else the sum image of ``X``;
- :func:`label_map`: the dominant component of every pixel (argmax of the maps);
- :func:`phase_maps`: the maps of each group of components summed (the groups that
  :func:`unmix.hierarchy.attach_phases` stores in ``result.context["phases"]`` for 2-D
  patterns: one crystal phase seen at several orientations);
- :func:`map_correlations`: the Pearson correlation of every map with the overview;
- :func:`overview_html` and :func:`components_html`: the report's HTML for them, figures
  embedded as ``data:`` URIs (and written as PNG files beside the report).

This module does not import :mod:`unmix.hierarchy` (which imports :mod:`unmix.report`):
the phases come with the result.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .._backend import to_numpy
from .._display import axis_label, color, colour_scale, dendrogram_figure
from .._notebook import abundance_units, component_lines
from ..result import Result
from ..spectral_image import SpectralImage
from ._model import mean_spectra, pixel_pass
from ._panels import (
    SEQ_MAPS,
    HtmlFigure,
    figure_html,
    geometry,
    image_grid,
    names_for,
    panel_image,
    save,
    spatial_panels,
)

__all__ = [
    "OVERVIEW_KEYS",
    "components_html",
    "label_map",
    "map_correlations",
    "overview_html",
    "overview_image",
    "phase_maps",
]

#: metadata keys of an overview image on the scan grid (HAADF, ADF, SEM, ...)
OVERVIEW_KEYS = ("overview", "haadf", "HAADF", "adf", "ADF")


def overview_image(
    image: SpectralImage | None, X: Any, result: Result
) -> tuple[np.ndarray, str, bool] | None:
    """The overview of the scan: ``(values (pixels,), name, carried)``, or None.

    ``carried`` is True for an image the input carries (``metadata["overview"]``, or
    ``"haadf"``, ``"adf"``: an array of one value a pixel of ``result``, named by
    ``metadata["overview_name"]``, default ``"HAADF"``), False for the sum image of ``X``
    (pixels, channels) over its channels (the report's one pass over ``X``, shared with
    the residual figures).
    """
    n_pixels = int(result.A.shape[0])
    md = image.metadata if image is not None else {}
    for key in OVERVIEW_KEYS:
        value = md.get(key)
        if value is not None and np.size(value) == n_pixels:
            name = str(md.get("overview_name") or ("HAADF" if key == "overview" else key))
            return np.asarray(value, dtype=float).reshape(-1), name, True
    if X is None or int(X.shape[0]) != n_pixels:
        return None
    return pixel_pass(result, X)[2], "sum image", False


def label_map(A: Any) -> np.ndarray:
    """The dominant component of every pixel: ``argmax`` over the maps ``A`` (pixels, k);
    -1 where every map is 0 or not finite."""
    A = np.asarray(to_numpy(A), dtype=float)
    labels = np.argmax(np.nan_to_num(A, nan=-np.inf), axis=1)
    empty = ~np.any(np.isfinite(A) & (A != 0), axis=1)
    return np.where(empty, -1, labels)


def phase_maps(A: Any, groups: Any) -> np.ndarray:
    """The maps of each group summed: ``(pixels, n_groups)``; ``groups[j]`` is the group
    (0-based) of component ``j``."""
    A = np.asarray(to_numpy(A), dtype=float)
    groups = np.asarray(groups, dtype=int)
    if groups.shape != (A.shape[1],) or groups.min() < 0:
        raise ValueError(
            f"groups must give a group >= 0 for each of the {A.shape[1]} components; "
            f"got {groups.tolist()}"
        )
    onehot = np.zeros((A.shape[1], int(groups.max()) + 1))
    onehot[np.arange(A.shape[1]), groups] = 1.0
    return A @ onehot


def map_correlations(A: Any, overview: np.ndarray) -> np.ndarray:
    """Pearson correlation of every map (columns of ``A`` (pixels, k)) with ``overview``
    (pixels,); NaN for a constant map."""
    A = np.asarray(to_numpy(A), dtype=float)
    o = np.asarray(overview, dtype=float).reshape(-1) - np.mean(overview)
    Ac = A - A.mean(axis=0)
    den = np.linalg.norm(Ac, axis=0) * np.linalg.norm(o)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (o @ Ac) / np.where(den > 0, den, 1.0), np.nan)


def overview_html(
    results: list[tuple[str, Result]], X: Any, image: SpectralImage | None, outdir: Path
) -> str:
    """The overview figure for the top of the report ("" when there is none): the overview
    image of the scan and the mean spectrum (or pattern) of the data with the first
    method's model, both from the report's one pass over ``X``."""
    name0, res = results[0]
    g = geometry(res, image)
    found = overview_image(image, X, res)
    found = found if found is not None and len(g.spatial) >= 2 else None
    has_X = X is not None and int(X.shape[0]) == int(res.A.shape[0])
    means = mean_spectra(res, X) if has_X else None
    if found is None and means is None:
        return ""
    cols = (found is not None) + (means is not None)
    fig = Figure(figsize=(4.6 * cols, 4.0), layout="constrained")
    said = []
    if found is not None:
        values, name, _ = found
        grid, sp, note = spatial_panels(values[:, None], g)
        ax = fig.add_subplot(1, cols, 1)
        cmap, lo, hi = colour_scale([grid], "gray")
        panel_image(fig, ax, grid[..., 0], sp[0], sp[1], cmap, (lo, hi), bar=True)
        ax.set_title(name + (f" ({note})" if note else ""), fontsize=10)
        said.append(f"{name} of the scan")
    if means is not None:
        _draw_means(fig, fig.add_subplot(1, cols, cols), means, g.signal, name0)
        said.append(f"mean {'pattern' if len(g.signal) == 2 else 'spectrum'} over all pixels")
    path = save(fig, outdir / "overview.png")
    text = "; ".join(said)
    return "<h3>Overview</h3>\n" + figure_html(
        HtmlFigure(Path(path), f"Overview: {text}", text[0].upper() + text[1:] + ".")
    )


def _draw_means(fig: Figure, ax: Any, means: tuple, signal: list, method: str) -> None:
    """The data's mean spectrum with the model's (1-D signal), or the data's mean pattern
    and the model's side by side in one image (2-D patterns)."""
    data, model = means
    if len(signal) == 2:
        shape = (signal[0].size, signal[1].size)
        both = np.concatenate([data.reshape(shape), model.reshape(shape)], axis=1)
        cmap, lo, hi = colour_scale([both[..., None]], "gray")
        ax.imshow(both, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"Mean pattern: data (left), {method} model (right)", fontsize=9)
        return
    x = signal[0].values
    ax.plot(x, data, color="0.2", lw=1.0, label="data")
    ax.plot(x, model, color=color(0), lw=1.0, ls="--", label=f"model ({method})")
    ax.set_xlabel(axis_label(signal[0], "channel"))
    ax.set_ylabel("mean over pixels")
    ax.legend(fontsize=7)
    ax.set_title("Mean spectrum", fontsize=10)


def _labels_figure(res: Result, image: SpectralImage | None, names: list[str]) -> Figure:
    from matplotlib.colors import ListedColormap

    g = geometry(res, image)
    labels = label_map(res.A)
    grid, sp, note = spatial_panels(labels[:, None].astype(float), g)
    fig = Figure(figsize=(5.4, 4.2 if len(sp) > 1 else 2.6), layout="constrained")
    ax = fig.add_subplot()
    k = res.k
    if len(sp) == 1:
        ax.scatter(sp[0].values, grid[:, 0], c=[color(int(v)) for v in grid[:, 0]], s=8)
        ax.set_xlabel(sp[0].name)
        ax.set_ylabel("dominant component")
    else:
        cmap = ListedColormap(["white"] + [color(j) for j in range(k)])
        panel_image(
            fig, ax, grid[..., 0], sp[0], sp[1], cmap, (-1.5, k - 0.5), bar=True, cbar=False
        )
        present = sorted(int(v) for v in np.unique(labels) if v >= 0)
        handles = [Patch(color=color(j), label=names[j]) for j in present]
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Dominant component per pixel" + (f" ({note})" if note else ""), fontsize=10)
    return fig


def _phase_figures(res: Result, image: SpectralImage | None, phases: dict) -> list[Figure]:
    """The dendrogram of the components (pattern thumbnails) and the phase maps."""
    S = np.asarray(to_numpy(res.S), dtype=float)
    dendro = SimpleNamespace(
        linkage=np.asarray(phases["linkage"], dtype=float),
        names=list(phases["names"]),
        metric=phases.get("metric", "rotation"),
        method=phases.get("method", "average"),
        cophenetic=float(phases.get("cophenetic", math.nan)),
    )
    thumbs = S.reshape(res.k, *res.signal_shape)
    out = [dendrogram_figure(dendro, thumbnails=thumbs, title="Components, rotation-invariant")]
    labels = np.asarray(phases["labels"], dtype=int)
    P = phase_maps(res.A, labels)
    g = geometry(res, image)
    grid, sp, note = spatial_panels(P, g)
    if len(sp) == 2:
        titles = [
            f"phase {p}: " + ", ".join(phases["names"][j] for j in np.flatnonzero(labels == p))
            for p in range(P.shape[1])
        ]
        imgs = [grid[..., p] for p in range(P.shape[1])]
        out.append(
            image_grid(
                imgs,
                sp[0],
                sp[1],
                titles,
                seq=SEQ_MAPS,
                shared=False,
                bar=True,
                cbar_label="summed abundance",
                suptitle="Phase maps" + (f" ({note})" if note else ""),
            )
        )
    return out


def _correlation_table(res: Result, image: SpectralImage | None, names: list[str]) -> str:
    found = overview_image(image, None, res)  # carried overviews only
    if found is None:
        return ""
    values, name, _ = found
    r = map_correlations(res.A, values)
    rows = "".join(
        f'<tr><th scope="row">{html.escape(names[j])}</th><td>{r[j]:.3f}</td></tr>'
        for j in range(res.k)
    )
    return (
        f"<h4>Correlation of each map with the {html.escape(name)}</h4>\n"
        f"<table><tr><th>component</th><th>Pearson r</th></tr>{rows}</table>"
    )


def components_html(res: Result, X: Any, image: SpectralImage | None, stem: Path) -> str:
    """The report's "Components" part of one result: what a map value means, one line a
    component, the label map, the correlation of the maps with the overview the input
    carries, and the phases (dendrogram and phase maps) of 2-D patterns."""
    names = names_for(res, None)
    lines = component_lines(res, image, names)
    out = [
        "<h3>Components</h3>",
        f"<p><strong>Map values</strong>: {html.escape(abundance_units(res))}.</p>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>",
    ]
    path = save(_labels_figure(res, image, names), f"{stem}_labels.png")
    out.append(
        figure_html(
            HtmlFigure(
                Path(path),
                "Label map: dominant component per pixel",
                "Label map: the component with the largest map value at each pixel "
                "(white: every map is 0).",
            )
        )
    )
    out.append(_correlation_table(res, image, names))
    phases = (getattr(res, "context", None) or {}).get("phases")
    if phases and len(phases.get("labels", [])) == res.k and len(res.signal_shape or ()) == 2:
        out.append("<h3>Phases</h3>")
        out.append(
            f"<p>Components grouped by the rotation-invariant distance of their patterns "
            f"(cut at {float(phases.get('threshold', math.nan)):g} deg): "
            f"{int(max(phases['labels'])) + 1} phases; a phase map sums its components' "
            "maps.</p>"
        )
        for i, fig in enumerate(_phase_figures(res, image, phases)):
            what = ("dendrogram", "phases")[i]
            path = save(fig, f"{stem}_{what}.png")
            caption = (
                "Dendrogram of the components (rotation-invariant distance, degrees)."
                if i == 0
                else "Phase maps: the maps of each group of components summed."
            )
            out.append(figure_html(HtmlFigure(Path(path), caption, caption)))
    return "\n".join(part for part in out if part)
