"""The report's view of a result's bands (:class:`unmix.Bands`): what they are, how wide.

For the factors of ``X ~ A @ S`` (``X`` (pixels, channels), ``A`` (pixels, k) maps, ``S``
(k, channels) endmembers) with an interval of every entry, the report shades the
endmember bands in the endmember figure (:mod:`._figures`), maps the relative width
``(upper - lower) / mean`` of every map pixel's interval, and says in words what the
bands hold and leave out (their ``method`` and ``note``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._display import axis_label, color
from ..result import Result
from ..spectral_image import SpectralImage
from ._panels import SEQ_MAPS, geometry, image_grid, names_for, save, spatial_panels

__all__ = [
    "bands_caption",
    "bands_summary",
    "model_band_caption",
    "plot_endmember_band_widths",
    "plot_map_band_widths",
    "relative_widths",
]


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


def _median_width(lower: Any, upper: Any, mean: Any) -> str:
    rel = relative_widths(lower, upper, mean)
    return f"{np.nanmedian(rel):.3g}" if np.any(np.isfinite(rel)) else "-"


def bands_summary(res: Result) -> tuple[list[str], list[tuple[str, str]]]:
    """The paragraphs (what the result's bands and the compared ones hold and leave
    out) and the table rows (level, method, median relative width of the endmember and
    map bands, and of each compared band), as plain text; empty without bands."""
    b = res.bands
    if b is None:
        return [], []
    rows = [
        ("level", f"{100 * b.level:g} %"),
        ("method", b.method),
        ("median relative width, endmembers", _median_width(b.S_lower, b.S_upper, res.S)),
        ("median relative width, maps", _median_width(b.A_lower, b.A_upper, res.A)),
    ]
    for c in res.compared_bands:  # e.g. a bootstrap, drawn dashed
        width = _median_width(c.S_lower, c.S_upper, res.S)
        rows.append((f"compared (dashed): {c.method}", f"endmembers: {width}"))
    return [b.note, *(c.note for c in res.compared_bands)], rows


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


def plot_endmember_band_widths(
    result: Result, path: str | os.PathLike, *, image: SpectralImage | None = None
) -> str | None:
    """The relative width ``(upper - lower) / mean`` of every endmember channel's band
    along the signal axis, one panel per component (log scale), the result's bands solid
    and the compared ones dashed; channels below 1e-3 of their endmember's largest
    value are left out (their relative width says nothing).  None without bands or for
    2-D patterns."""
    from matplotlib.figure import Figure

    b = result.bands
    g = geometry(result, image)
    if b is None or len(g.signal) != 1:
        return None
    S = np.asarray(to_numpy(result.S), dtype=float)
    x = g.signal[0].values
    names = names_for(result, None)
    fig = Figure(figsize=(7.5, 1.2 + 1.35 * S.shape[0]), layout="constrained")
    axes = fig.subplots(S.shape[0], 1, sharex=True, squeeze=False)[:, 0]
    for j, ax in enumerate(axes):
        keep = S[j] > 1e-3 * S[j].max()
        for i, bands in enumerate([b, *result.compared_bands]):
            rel = relative_widths(bands.S_lower[j], bands.S_upper[j], S[j])
            rel = np.where(keep & (rel > 0), rel, np.nan)
            label = bands.method.split(":")[0] if j == 0 else None
            ax.plot(x, rel, color=color(j), lw=1.0, ls="-" if i == 0 else "--", label=label)
        ax.set_yscale("log")
        ax.set_title(names[j], fontsize=9, color=color(j), loc="left")
        ax.tick_params(labelsize=8)
    axes[0].legend(frameon=False, fontsize=7, loc="upper right")
    axes[-1].set_xlabel(axis_label(g.signal[0]))
    axes[len(axes) // 2].set_ylabel("(upper - lower) / mean")
    fig.suptitle(f"Relative width of the {100 * b.level:g} % endmember bands", fontsize=11)
    return save(fig, path)


def model_band_caption(res: Result) -> str:
    """The pixel figure's sentence on the shaded band of the model, when there is one."""
    bands = getattr(res, "bands", None)
    if bands is None or bands.model_pixels is None:
        return ""
    return (
        f" Shaded: the {100 * bands.level:g} % band of the model (the expected counts "
        f"A S, {bands.method.split(':')[0]}); the data scatter around it with their own "
        "counting noise, which the band does not hold."
    )
