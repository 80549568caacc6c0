"""The interactive viewer of the HTML report: what it shows, binned to a byte budget.

The viewer (:mod:`unmix.report._viewer`, plain JavaScript and canvas, no network) draws
every abundance map; pointing at a pixel shows that pixel's data, the model, each
component's contribution ``A[i, j] * S[j]``, the mean (or offset) that preprocessing adds
back, and the residual, on the calibrated signal axis. This module builds its payload:

* the data ``X`` (pixels, channels) and the maps ``A`` (pixels, k) binned in space and the
  data and endmembers binned in channels (means over the bins) until the float32 arrays
  fit :data:`VIEWER_BYTES`; the report says which binning was used;
* the model is not stored when the result's preprocessing is affine and the same for every
  pixel (none, centering): the page computes ``base + A S`` from the small factors, which
  also equals the binned model since binning is linear. Otherwise (per-pixel scaling,
  transforms) the binned model rows of :func:`unmix.report._model.model_rows` (the space
  of the report's residuals) are stored and the contributions are left out;
* arrays travel as base64 little-endian float32 in one ``<script type="application/json">``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._display import axis_label
from ..result import Result
from ..spectral_image import Axis, SpectralImage
from ._model import affine_model, model_rows
from ._panels import geometry, names_for
from ._viewer import VIEWER_CSS, VIEWER_JS

__all__ = ["VIEWER_BYTES", "Viewer", "bin_mean", "viewer_section"]

_logger = logging.getLogger(__name__)

#: float32 bytes of binned per-pixel arrays (data, maps, stored models) in one report
VIEWER_BYTES = 24_000_000
#: (channels, scan side): bin channels down to the first, then the scan down to the second,
#: then the next pair (a 2-D pattern counts (channels / 2) ** 2 values)
_TIERS = ((512, 128), (128, 32), (16, 8), (1, 1))
_MAP_PX = 256  # a map is drawn about this many screen pixels wide


#: values of a band of scan rows read at once (more: read in runs of columns)
BAND_VALUES = 4_000_000


def bin_mean(a: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Means of ``factor`` consecutive entries along ``axis`` (the last bin may be shorter)."""
    a = np.asarray(a, dtype=float)
    if factor <= 1:
        return a
    n = a.shape[axis]
    starts = np.arange(0, n, factor)
    counts = np.diff(np.append(starts, n)).astype(float)
    shape = [1] * a.ndim
    shape[axis] = -1
    return np.add.reduceat(a, starts, axis=axis) / counts.reshape(shape)


def _nbin(n: int, f: int) -> int:
    return -(-n // f)


def _b64(a: Any) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


@dataclass
class Viewer:
    """The scan grid, signal axes and binning of one viewer, and its JSON payload.

    ``grid`` is the scan drawn as rows x columns (a line scan is one row; a volume shows
    its slices stacked), ``signal`` the signal shape (one or two axes). ``fy, fx, fc``
    are the bin factors: scan rows, scan columns, and each signal axis.
    """

    grid: tuple[int, int]
    signal: tuple[int, ...]
    fy: int = 1
    fx: int = 1
    fc: int = 1
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def shown(self) -> tuple[int, int, int]:
        """Rows, columns and channels (all signal values) shown after binning."""
        h, w = self.grid
        m = math.prod(_nbin(s, self.fc) for s in self.signal)
        return _nbin(h, self.fy), _nbin(w, self.fx), m

    def n_bytes(self, per_pixel: int) -> int:
        """float32 bytes of ``per_pixel`` values for every shown pixel."""
        hb, wb, _ = self.shown
        return 4 * hb * wb * per_pixel

    def plan(self, *, n_full: int, n_maps: int, budget: int) -> None:
        """Bin channels, then space, until ``n_full`` (pixels x channels) arrays and
        ``n_maps`` values a pixel fit in ``budget`` bytes."""
        h, w = self.grid
        two_d = len(self.signal) == 2
        for max_m, max_side in _TIERS:
            max_m = max(1, max_m * max_m // 4) if two_d else max_m  # 2-D: (max_m / 2) a side
            while self.n_bytes(n_full * self.shown[2] + n_maps) > budget:
                hb, wb, m = self.shown
                if m > max_m:
                    self.fc *= 2
                elif max(hb, wb) > max_side:
                    self.fy = self.fy * 2 if h > 1 else 1
                    self.fx = self.fx * 2 if w > 1 else 1
                else:
                    break

    def note(self) -> str:
        """What was binned, in words (``"data shown binned 2 x 2 in space, 4x in ..."``)."""
        h, w = self.grid
        hb, wb, m = self.shown
        full = f"{h} x {w} pixels, {math.prod(self.signal)} channels"
        if (self.fy, self.fx, self.fc) == (1, 1, 1):
            return f"Data shown at full resolution ({full})."
        parts = []
        if (self.fy, self.fx) != (1, 1):
            parts.append(f"{self.fy} x {self.fx} in space")
        if self.fc > 1:
            what = "in channels" if len(self.signal) == 1 else "per detector axis"
            parts.append(f"{self.fc}x {what}")
        return (
            f"Data shown binned {' and '.join(parts)} (means; from {full} to {hb} x {wb} "
            f"pixels, {m} channels) to keep the report small; maps, model, contributions "
            "and residual are binned the same way."
        )

    def pixels(self, rows: Callable[[int, int], Any], width: int) -> np.ndarray:
        """Bin a per-pixel array (pixels, width) given as ``rows(start, stop)``: the scan
        in bands of ``fy`` rows, then the signal when ``width`` is the channel count.  A
        band larger than :data:`BAND_VALUES` values (a long line scan) is read in runs
        of whole bins of columns, one scan row at a time."""
        h, w = self.grid
        out = []
        for r0 in range(0, h, self.fy):
            r1 = min(r0 + self.fy, h)
            if (r1 - r0) * w * width <= BAND_VALUES:
                band = np.asarray(to_numpy(rows(r0 * w, r1 * w)), dtype=float)
                band = bin_mean(band.reshape(r1 - r0, w, width).mean(axis=0), 0, self.fx)
            else:
                band = self._band_in_runs(rows, r0, r1, width)
            out.append(self.channels(band) if width == math.prod(self.signal) else band)
        return np.concatenate(out).astype(np.float32)

    def _band_in_runs(
        self, rows: Callable[[int, int], Any], r0: int, r1: int, width: int
    ) -> np.ndarray:
        """Scan rows ``r0 .. r1 - 1`` averaged and binned in columns, read a run of
        columns (whole bins, about :data:`BAND_VALUES` values) of one row at a time."""
        w = self.grid[1]
        step = max(self.fx, BAND_VALUES // max(width, 1) // self.fx * self.fx)
        parts = []
        for c0 in range(0, w, step):
            c1 = min(c0 + step, w)
            total = np.zeros((c1 - c0, width))
            for r in range(r0, r1):
                total += np.asarray(to_numpy(rows(r * w + c0, r * w + c1)), dtype=float)
            parts.append(bin_mean(total / (r1 - r0), 0, self.fx))
        return np.concatenate(parts)

    def channels(self, S: np.ndarray) -> np.ndarray:
        """Bin the signal of rows ``S`` (rows, channels) -> (rows, shown channels)."""
        S = np.asarray(to_numpy(S), dtype=float)
        if self.fc <= 1:
            return S
        r = S.shape[0]
        S = S.reshape(r, *self.signal)
        for ax in range(1, S.ndim):
            S = bin_mean(S, ax, self.fc)
        return S.reshape(r, -1)

    def maps(self, A: Any) -> str:
        """base64 of maps (pixels, k) binned in space, row-major (shown pixels, k)."""
        A = A.reshape(-1, 1) if A.ndim == 1 else A
        return _b64(self.pixels(lambda a, b: A[a:b], int(A.shape[1])))

    def spectra(self, S: Any) -> str:
        """base64 of spectra (rows, channels) binned in channels."""
        S = np.asarray(to_numpy(S), dtype=float)
        return _b64(self.channels(S.reshape(-1, S.shape[-1])))

    def data(self, X: Any) -> str:
        """base64 of the data ``X`` (pixels, channels) binned in space and channels."""
        return _b64(self.pixels(lambda a, b: X[a:b], int(X.shape[1])))

    def method(
        self, name: str, res: Result, *, names: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One method's entry: binned maps, and the endmembers and offset of an affine
        model (:func:`affine_model`), else the binned model rows."""
        entry: dict[str, Any] = {
            "name": name,
            "k": res.k,
            "names": list(names) if names is not None else names_for(res, None),
            "A": self.maps(res.A),
            "S": None,
            "base": None,
            "model": None,
            "mean": res.mean is not None,
        }
        affine = affine_model(res)
        if affine is not None:
            eff, base = affine
            entry["S"] = self.spectra(eff)
            entry["base"] = None if base is None else self.spectra(base[None, :])
        else:
            m = int(res.S.shape[1])
            entry["model"] = _b64(self.pixels(lambda a, b: model_rows(res, a, b), m))
            entry["note"] = "Model stored (its preprocessing is not affine): no contributions."
        return entry

    def section(self, heading: str = "Interactive viewer") -> str:
        """The HTML section: note, container, payload, style sheet and script."""
        data = json.dumps(self.payload, separators=(",", ":"), allow_nan=False)
        data = data.replace("<", "\\u003c")  # no "</script>" inside the JSON
        help_text = (
            "Point at (hover) or click any pixel of a map: the panels show that pixel's "
            "data, the model, each component's contribution and the residual for every "
            "method. Clicking pins the pixel; the boxes toggle components."
        )
        return "\n".join(
            [
                '<section id="viewer">',
                f"<h2>{html.escape(heading)}</h2>",
                f'<p class="muted">{html.escape(help_text)}</p>',
                f'<p id="unmix-viewer-note">{html.escape(self.payload["note"])}</p>',
                '<div id="unmix-viewer"></div>',
                "<noscript><p>The interactive viewer needs JavaScript; the figures below "
                "do not.</p></noscript>",
                '<pre id="unmix-viewer-state" hidden></pre>',
                f'<script type="application/json" id="unmix-viewer-data">{data}</script>',
                f"<style>{VIEWER_CSS}</style>",
                f"<script>{VIEWER_JS}</script>",
                "</section>",
            ]
        )


def _grid(spatial: Sequence[Axis]) -> tuple[tuple[int, int], list[Axis | None]]:
    shape = [a.size for a in spatial]
    if len(shape) == 1:
        return (1, shape[0]), [None, spatial[0]]
    if len(shape) == 2:
        return (shape[0], shape[1]), list(spatial)
    return (math.prod(shape[:-1]), shape[-1]), [None, spatial[-1]]


def _axis_json(ax: Axis | None, f: int) -> dict | None:
    if ax is None:
        return None
    values = bin_mean(np.asarray(ax.values, dtype=float), 0, f)
    return {"name": ax.name, "units": ax.units, "values": [float(v) for v in values]}


def new_viewer(
    spatial: Sequence[Axis],
    signal: Sequence[Axis],
    *,
    n_full: int,
    n_maps: int,
    budget: int,
    label: str | None = None,
) -> Viewer:
    """A :class:`Viewer` for these scan and signal axes, planned to fit ``budget`` bytes.

    ``n_full`` arrays of (pixels, channels) and ``n_maps`` values a pixel are stored;
    ``label`` overrides the signal axis label of a 1-D signal.
    """
    if budget <= 0:
        raise ValueError(
            f"the viewer's budget must be a positive number of bytes; got {budget} "
            "(pass True for the default budget, or False for no viewer)"
        )
    grid, gaxes = _grid(spatial)
    v = Viewer(grid, tuple(a.size for a in signal))
    v.plan(n_full=n_full, n_maps=n_maps, budget=budget)
    hb, wb, m = v.shown
    zoom = max(1, min(16, _MAP_PX // max(hb, wb)))
    axis: dict[str, Any] = {"kind": len(signal), "n": m}
    if len(signal) == 1:
        axis["values"] = [float(x) for x in bin_mean(signal[0].values, 0, v.fc)]
        axis["label"] = label or axis_label(signal[0])
    else:
        axis["shape"] = [_nbin(a.size, v.fc) for a in signal]
        axis["label"] = " x ".join(axis_label(a) for a in signal)
    v.payload = {
        "grid": {
            "h": hb,
            "w": wb,
            "zx": zoom,
            "zy": zoom if hb > 1 else 24,
            "axes": [_axis_json(gaxes[0], v.fy), _axis_json(gaxes[1], v.fx)],
        },
        "axis": axis,
        "bins": {"space": [v.fy, v.fx], "channels": v.fc},
        "note": v.note(),
        "data": None,
        "methods": [],
    }
    return v


def viewer_section(
    items: Sequence[tuple[str, Result]],
    *,
    X: Any = None,
    image: SpectralImage | None = None,
    budget: int = VIEWER_BYTES,
) -> str:
    """The interactive viewer of ``items`` (name, result), all on the grid of the first.

    Parameters
    ----------
    items : sequence of (str, Result)
        Results of the same data; one pixel selection drives every method's panel.
    X : array (pixels, channels), optional
        The data; without it the panels show the model and contributions only.
    image : SpectralImage, optional
        Gives the calibrated scan and signal axes.
    budget : int
        float32 bytes for the binned per-pixel arrays (data, maps, stored models).

    Returns
    -------
    str
        The ``<section id="viewer">`` HTML with its payload and script.
    """
    first = items[0][1]
    g = geometry(first, image)
    shape = (int(first.A.shape[0]), int(first.S.shape[1]))
    same = [(n, r) for n, r in items if (int(r.A.shape[0]), int(r.S.shape[1])) == shape]
    if len(same) < len(items):
        _logger.warning("viewer: results of another shape than %s left out", shape)
    stored = sum(affine_model(r) is None for _, r in same)
    v = new_viewer(
        g.spatial,
        g.signal,
        n_full=(X is not None) + stored,
        n_maps=sum(r.k for _, r in same),
        budget=budget,
    )
    if X is not None:
        if tuple(X.shape) != shape:
            raise ValueError(
                f"X has shape {tuple(X.shape)}; the results model {shape} (pixels, channels): "
                "pass the X that was factorized"
            )
        v.payload["data"] = v.data(X)
    v.payload["methods"] = [v.method(n, r) for n, r in same]
    _logger.info("viewer: %s", v.note())
    return v.section()
