"""The report's view of a result's bands (:class:`unmix.Bands`): what they are, how wide.

For the factors of ``X ~ A @ S`` (``X`` (pixels, channels), ``A`` (pixels, k) maps, ``S``
(k, channels) endmembers) with an interval of every entry, the report shades the
endmember bands in the endmember figure (:mod:`._figures`), maps the relative width
``(upper - lower) / mean`` of every map pixel's interval, and says in words what the
bands hold and leave out (their ``method`` and ``note``).
"""

from __future__ import annotations

import html
import os
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..result import Result
from ..spectral_image import SpectralImage
from ._panels import SEQ_MAPS, geometry, image_grid, names_for, save, spatial_panels

__all__ = ["bands_caption", "bands_html", "plot_map_band_widths", "relative_widths"]


def relative_widths(lower: Any, upper: Any, mean: Any) -> np.ndarray:
    """``(upper - lower) / mean`` entry by entry (NaN where the mean is not positive)."""
    mean = np.asarray(to_numpy(mean), dtype=float)
    width = np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, width / mean, np.nan)


def bands_caption(res: Result) -> str:
    """The sentence the endmember figure's caption gets when the result has bands."""
    b = res.bands
    if b is None:
        return ""
    return f" Shaded: {100 * b.level:g} % intervals of every channel, {b.method}."


def bands_html(res: Result) -> list[str]:
    """What the result's bands are (method, level, what they leave out) and the median
    relative width of the endmember and map bands (empty without bands)."""
    b = res.bands
    if b is None:
        return []
    med = []
    for lo, hi, mid in ((b.S_lower, b.S_upper, res.S), (b.A_lower, b.A_upper, res.A)):
        rel = relative_widths(lo, hi, mid)
        med.append(f"{np.nanmedian(rel):.3g}" if np.any(np.isfinite(rel)) else "-")
    rows = [
        ("level", f"{100 * b.level:g} %"),
        ("method", b.method),
        ("median relative width, endmembers", med[0]),
        ("median relative width, maps", med[1]),
    ]
    table = "\n".join(
        f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in rows
    )
    return [
        '<h3 id="bands">Uncertainty bands</h3>',
        f"<p>{html.escape(b.note)}</p>",
        f"<table>\n{table}\n</table>",
    ]


def plot_map_band_widths(
    result: Result, path: str | os.PathLike, *, image: SpectralImage | None = None
) -> str | None:
    """Maps of the relative width ``(upper - lower) / mean`` of every pixel's interval,
    one panel per component, on the scan grid (None when the result has no bands or its
    pixels do not form a 2-D grid)."""
    b = result.bands
    if b is None:
        return None
    g = geometry(result, image)
    rel = relative_widths(b.A_lower, b.A_upper, result.A)
    grid, sp, note = spatial_panels(rel, g)
    if len(sp) != 2:
        return None
    k = rel.shape[1]
    title = f"Relative width of the {100 * b.level:g} % map bands" + (f" ({note})" if note else "")
    fig = image_grid(
        [grid[..., j] for j in range(k)],
        sp[0],
        sp[1],
        names_for(result, None),
        seq=SEQ_MAPS,
        shared=True,
        bar=True,
        cbar_label="(upper - lower) / mean",
        suptitle=title,
    )
    return save(fig, path)
