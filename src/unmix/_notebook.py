"""What a result's components are, the notebook view of a result and its HyperSpy export.

Built on :mod:`unmix._display` (NumPy and matplotlib only; no :mod:`unmix.report`), so
that :class:`unmix.Result` can offer ``_repr_html_`` and ``to_hyperspy`` without an
import cycle; :mod:`unmix.report` uses :func:`component_lines` and
:func:`abundance_units` for its run report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backend import to_numpy
from ._display import image_uri, result_axes, spectrum_uri
from .spectral_image import Axis

__all__ = [
    "abundance_units",
    "component_lines",
    "component_stats",
    "result_html",
    "result_to_hyperspy",
    "summary_table",
]

_MAX_ROWS = 24  # components listed in a notebook summary
_IMAGE_BYTES = 150_000  # for all image thumbnails together (noise: ~5.4 bytes a pixel)


# ------------------------------------------------------------------ components
def _peaks(s: np.ndarray, x: np.ndarray, n: int = 2) -> list[float]:
    """Up to ``n`` peak positions of ``s`` on ``x`` (the largest local maxima)."""
    from scipy.signal import find_peaks

    top = float(np.max(s)) if s.size else 0.0
    idx, _ = find_peaks(s, prominence=0.2 * top if top > 0 else None)
    order = idx[np.argsort(-s[idx])][:n] if idx.size else np.array([int(np.argmax(s))])
    return [float(x[i]) for i in order]


def component_stats(result: Any, image: Any = None) -> list[dict[str, Any]]:
    """Per component: peak positions, share of the total signal and area covered.

    Parameters
    ----------
    result : Result
        Maps ``A`` (pixels, k) and endmembers ``S`` (k, channels).
    image : SpectralImage, optional
        Gives the calibrated signal axis.

    Returns
    -------
    list of dict
        ``peaks`` (positions on the signal axis; the brightest pixel of a 2-D pattern),
        ``pattern`` (True for a 2-D signal), ``units``, ``share`` (the component's part
        of ``sum(A @ S)``; NaN for signed factors), ``present`` (fraction of pixels
        where it makes >= 10 % of the pixel's modelled signal) and ``dominant``
        (fraction of pixels where it is the largest).
    """
    A = np.asarray(to_numpy(result.A), dtype=float)
    S = np.asarray(to_numpy(result.S), dtype=float)
    _, signal = result_axes(result, image)
    signed = bool(A.min() < 0 or S.min() < 0)
    contrib = A * S.sum(axis=1)[None, :]  # each component's signal at each pixel
    total = contrib.sum()
    pixel = contrib.sum(axis=1, keepdims=True)
    frac = np.divide(contrib, pixel, out=np.zeros_like(contrib), where=pixel > 0)
    dominant = np.bincount(np.argmax(A, axis=1), minlength=A.shape[1]) / max(A.shape[0], 1)
    out = []
    for j in range(S.shape[0]):
        if len(signal) == 1:
            peaks = _peaks(S[j], signal[0].values)
        else:
            pos = np.unravel_index(int(np.argmax(S[j])), tuple(a.size for a in signal))
            peaks = [float(a.values[i]) for a, i in zip(signal, pos, strict=True)]
        out.append(
            {
                "peaks": peaks,
                "pattern": len(signal) == 2,
                "units": signal[0].units,
                "share": math.nan if signed or total <= 0 else float(contrib[:, j].sum() / total),
                "present": math.nan if signed else float(np.mean(frac[:, j] >= 0.1)),
                "dominant": float(dominant[j]),
            }
        )
    return out


def component_lines(result: Any, image: Any = None, names: Sequence[str] = ()) -> list[str]:
    """One line a component: peak position(s), share of the signal and area covered."""
    lines = []
    for j, st in enumerate(component_stats(result, image)):
        name = names[j] if j < len(names) else f"component {j}"
        u = f" {st['units']}" if st["units"] else ""
        where = ", ".join(f"{p:.4g}" for p in st["peaks"])
        if st["pattern"]:
            text = f"{name}: brightest at ({where}){u}"
        else:
            text = f"{name}: peak{'s' if len(st['peaks']) > 1 else ''} at {where}{u}"
        if math.isfinite(st["share"]):
            text += (
                f"; {100 * st['share']:.1f} % of the signal; present (>= 10 %) in "
                f"{100 * st['present']:.0f} % of the pixels"
            )
        lines.append(text + f"; dominant in {100 * st['dominant']:.0f} % of the pixels")
    return lines


def abundance_units(result: Any) -> str:
    """What a map value means, from the result's constraints and solver."""
    spec = result.spec
    types = {d.get("type"): d for d in spec.get("constraints") or [] if isinstance(d, dict)}
    if spec.get("solver") == "svd":
        return (
            "score: the projection of the pixel (after centering) on the principal "
            "component, signed and without physical units"
        )
    if "SumToOne" in types:
        total = types["SumToOne"].get("total", 1.0)
        return (
            f"fraction of the pixel: each pixel's abundances sum to {total:g}, so a value is "
            "the share of that pixel's spectrum the component explains"
        )
    if "UnitNorm" in types:
        return (
            "amplitude of component j's unit-norm (l2) endmember: value x endmember is the "
            "component's part of the pixel's spectrum, in the data's units"
        )
    return (
        "multiplier of component j's endmember: value x endmember is the component's part "
        "of the pixel's spectrum; value x the endmember's sum is the signal (e.g. counts) "
        "it contributes to that pixel, summed over channels"
    )


# -------------------------------------------------------------------- notebook
def summary_table(rows: Sequence[tuple[str, Any]]) -> str:
    """An HTML table of (label, value) rows, both escaped."""
    body = "".join(
        f'<tr><th style="text-align:left">{html.escape(str(k))}</th>'
        f'<td style="text-align:left">{html.escape(str(v))}</td></tr>'
        for k, v in rows
    )
    return f"<table>{body}</table>"


def _rel_error(result: Any) -> str:
    value = (getattr(result, "context", None) or {}).get("relative_error")
    return f"{value:.4g}" if isinstance(value, (int, float)) else "n/a (needs X)"


def result_html(result: Any) -> str:
    """The notebook view of a result: a summary table and one row a component with its
    endmember and map thumbnails (PNG ``data:`` URIs, a few kB each)."""
    spec = result.spec
    rows = [
        ("k", result.k),
        ("loss", spec.get("loss", "?")),
        ("solver", spec.get("solver", "?")),
        ("iterations", result.n_iter),
        ("stop reason", result.stop_reason + (" (converged)" if result.converged else "")),
        ("objective", f"{float(result.objective):.6g}"),
        ("relative error", _rel_error(result)),
        ("map values", abundance_units(result)),
    ]
    spatial, signal = result_axes(result)
    A = np.asarray(to_numpy(result.A), dtype=float)
    S = np.asarray(to_numpy(result.S), dtype=float)
    names = (getattr(result, "context", None) or {}).get("component_names") or []
    lines = component_lines(result, None, [str(n) for n in names])
    comp = []
    n_img = min(result.k, _MAX_ROWS) * ((len(signal) == 2) + (len(spatial) == 2))
    side = int(min(96, max(16, math.sqrt(_IMAGE_BYTES / 5.4 / max(n_img, 1)))))
    for j in range(min(result.k, _MAX_ROWS)):
        if len(signal) == 1:
            end = spectrum_uri(signal[0].values, S[j], j)
        else:
            end = image_uri(S[j].reshape(signal[0].size, signal[1].size), cmap="magma", size=side)
        cells = [f'<img src="{end}" alt="endmember {j}">']
        if len(spatial) == 2:
            grid = A[:, j].reshape(spatial[0].size, spatial[1].size)
            cells.append(f'<img src="{image_uri(grid, size=side)}" alt="map {j}">')
        cells.append(html.escape(lines[j]))
        comp.append("<tr>" + "".join(f'<td style="text-align:left">{c}</td>' for c in cells))
    more = f"<p>... and {result.k - _MAX_ROWS} more components</p>" if result.k > _MAX_ROWS else ""
    return (
        f"<div><strong>unmix Result</strong> (k = {result.k})"
        + summary_table(rows)
        + "<table>"
        + "</tr>".join(comp)
        + "</tr></table>"
        + more
        + "</div>"
    )


# -------------------------------------------------------------------- HyperSpy
def _hs_axes(axes: Sequence[Axis], navigate: bool) -> list[dict[str, Any]]:
    out = []
    for ax in axes:
        d: dict[str, Any] = {"name": ax.name, "units": ax.units, "navigate": navigate}
        if ax.is_uniform:
            d.update(size=ax.size, scale=ax.scale, offset=ax.offset)
        else:
            d["axis"] = ax.values
        out.append(d)
    return out


def _signal_type(result: Any, image: Any) -> str:
    md = image.metadata if image is not None else (getattr(result, "context", None) or {})
    for key in ("hyperspy_signal_type", "rsciio_signal_type", "signal_type"):
        if md.get(key):
            return str(md[key])
    return ""


def _typed(signal: Any, signal_type: str) -> Any:
    """The endmembers as exspy's EELS / EDS signal class when exspy is installed."""
    if signal_type not in ("EELS", "EDS", "EDS_TEM", "EDS_SEM"):
        return signal
    try:
        import exspy  # noqa: F401  (registers the EELS and EDS signal types)
    except ImportError:
        signal.metadata.set_item("General.unmix_signal_type", signal_type)
        return signal
    signal.set_signal_type(signal_type)
    return signal


def result_to_hyperspy(result: Any, *, image: Any = None) -> tuple[Any, Any]:
    """The maps and the endmembers as HyperSpy signals, on calibrated axes.

    As HyperSpy's decomposition loadings and factors: the component index is the
    navigation axis; the maps' signal axes are the scan axes, the endmembers' the signal
    axes (``Signal2D`` for a 2-D scan or 2-D patterns, ``Signal1D`` for a line or a
    spectrum).

    Parameters
    ----------
    image : SpectralImage, optional
        The input: gives the axes and the signal type (default: the axes and type saved in
        ``result.context``, else uncalibrated axes). With exspy installed, EELS and EDS
        endmembers become ``EELSSpectrum``, ``EDSTEMSpectrum`` or ``EDSSEMSpectrum``.

    Returns
    -------
    maps, endmembers : hyperspy signals
    """
    try:
        import hyperspy.api as hs
    except ImportError as exc:
        raise ImportError("to_hyperspy() needs HyperSpy: pip install hyperspy") from exc
    spatial, signal = result_axes(result, image)
    k = result.k
    comp = {"name": "component", "size": k, "scale": 1.0, "offset": 0.0, "navigate": True}
    A = np.asarray(to_numpy(result.A)).T.reshape(k, *(a.size for a in spatial))
    S = np.asarray(to_numpy(result.S)).reshape(k, *(a.size for a in signal))
    classes = {1: hs.signals.Signal1D, 2: hs.signals.Signal2D}
    title = "unmix " + ("scores" if result.spec.get("solver") == "svd" else "abundance maps")
    maps = classes.get(len(spatial), hs.signals.BaseSignal)(
        A, axes=[comp, *_hs_axes(spatial, False)], metadata={"General": {"title": title}}
    )
    ends = classes[len(signal)](
        S,
        axes=[comp, *_hs_axes(signal, False)],
        metadata={"General": {"title": "unmix endmembers"}},
    )
    return maps, _typed(ends, _signal_type(result, image))
