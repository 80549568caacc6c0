"""Per-entry intervals of a result's endmembers and maps, and their place in ``result.h5``.

A :class:`Bands` holds, for the factors of ``X ~ A @ S`` (``X`` (pixels, channels), ``A``
(pixels, k) maps, ``S`` (k, channels) endmembers), a lower and an upper value of every
entry of ``S`` (and of ``A`` when the method gives them) at one probability ``level``,
with the method that made them (e.g. the credible intervals of Bayesian Poisson NMF,
:func:`unmix.bayes.bayes_nmf`, or a bootstrap of point fits) and a note on what they do
and do not hold.  In the result file the result's own bands are the group ``bands``
and the bands it is compared with ``compared_bands/0``, ``compared_bands/1``, ...
(datasets ``S_lower``, ``S_upper`` and, when given, ``A_lower``, ``A_upper``; attributes
``level``, ``method``, ``note``), checked on reading like the factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .io import check_dataset

__all__ = ["Bands", "read_bands", "read_compared_bands", "write_compared_bands"]

_ARRAYS = ("S_lower", "S_upper", "A_lower", "A_upper")
_MODEL = ("model_pixels", "model_lower", "model_upper")


@dataclass
class Bands:
    """Intervals of every endmember channel (and map pixel) of a result.

    Attributes
    ----------
    S_lower, S_upper : arrays (k, channels)
        Bounds of each endmember entry, in the units of the result's ``S``.
    A_lower, A_upper : arrays (pixels, k) or None
        Bounds of each map entry, in the units of the result's ``A`` (None: the method
        gives endmember bands only).
    level : float
        Probability of each interval (0.9: central 90 % intervals).
    method : str
        What made them, e.g. ``"model-based: mean-field variational Bayes (Poisson)"``.
    note : str
        What the intervals hold and what they leave out (shown in the report).
    model_pixels : int array (p,) or None
        Flat indices of a few pixels with bands of the model ``(A @ S)_i`` (e.g. the ones
        the report's pixel figure shows; None: no model bands).
    model_lower, model_upper : arrays (p, channels) or None
        Bounds of the model at those pixels, in the units of ``A @ S``.
    """

    S_lower: np.ndarray
    S_upper: np.ndarray
    A_lower: np.ndarray | None
    A_upper: np.ndarray | None
    level: float
    method: str
    note: str = ""
    model_pixels: np.ndarray | None = None
    model_lower: np.ndarray | None = None
    model_upper: np.ndarray | None = None

    def model_band(self, pixel: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lower, upper)`` of the model at the flat pixel index ``pixel``, or None
        when these bands hold none there."""
        if self.model_pixels is None or self.model_lower is None or self.model_upper is None:
            return None
        hit = np.flatnonzero(np.asarray(self.model_pixels) == int(pixel))
        if not hit.size:
            return None
        return self.model_lower[hit[0]], self.model_upper[hit[0]]

    def check(self, n: int, k: int, m: int) -> None:
        """Raise ``ValueError`` unless the arrays fit a result of ``n`` pixels, ``k``
        components and ``m`` channels, are finite and ordered, and ``0 < level < 1``."""
        if (self.A_lower is None) != (self.A_upper is None):
            raise ValueError("bands give A_lower and A_upper together or neither")
        want = {"S_lower": (k, m), "S_upper": (k, m), "A_lower": (n, k), "A_upper": (n, k)}
        for name, shape in want.items():
            v = getattr(self, name)
            if v is None:
                continue
            if v.shape != shape:
                raise ValueError(f"bands {name} is {v.shape}; the result needs {shape}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"bands {name} has non-finite entries")
        if np.any(self.S_lower > self.S_upper) or (
            self.A_lower is not None and np.any(self.A_lower > self.A_upper)
        ):
            raise ValueError("bands have lower bounds above their upper bounds")
        if not 0.0 < float(self.level) < 1.0:
            raise ValueError(f"bands level must be in (0, 1); got {self.level!r}")
        self._check_model(n, m)

    def _check_model(self, n: int, m: int) -> None:
        """The model bands: all three arrays or none, shapes, pixels in range, finite,
        ordered."""
        given = [getattr(self, key) is not None for key in _MODEL]
        if not any(given):
            return
        if not all(given):
            raise ValueError("bands give model_pixels, model_lower and model_upper together")
        pix = np.asarray(self.model_pixels)
        lo, hi = np.asarray(self.model_lower), np.asarray(self.model_upper)
        if pix.ndim != 1 or pix.dtype.kind not in "iu" or np.any((pix < 0) | (pix >= n)):
            raise ValueError(f"bands model_pixels must be flat pixel indices in [0, {n})")
        for name, v in (("model_lower", lo), ("model_upper", hi)):
            if v.shape != (pix.size, m):
                raise ValueError(f"bands {name} is {v.shape}; the result needs {(pix.size, m)}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"bands {name} has non-finite entries")
        if np.any(lo > hi):
            raise ValueError("bands have model lower bounds above their upper bounds")

    def write(self, f: Any, name: str = "bands") -> None:
        """Write the group ``name`` into the open HDF5 file (or group) ``f``."""
        g = f.create_group(name)
        for key in (*_ARRAYS, *_MODEL):
            v = getattr(self, key)
            if v is not None:
                g.create_dataset(key, data=np.asarray(v), compression="gzip")
        g.attrs["level"] = float(self.level)
        g.attrs["method"] = str(self.method)
        g.attrs["note"] = str(self.note)


def _read_group(g: Any, where: str, path: str, n: int, k: int, m: int) -> Bands:
    arrays: dict[str, Any] = {}
    for key in _ARRAYS:
        if key not in g:
            if key.startswith("S_"):
                raise ValueError(f"{path}: the group {where!r} has no dataset {key!r}")
            arrays[key] = None
            continue
        check_dataset(g[key], path)
        v = np.asarray(g[key][()])
        if v.dtype.kind != "f":
            raise ValueError(f"{path}: {where} {key} is {v.dtype}, not floating point")
        arrays[key] = v
    for key in _MODEL:  # optional (files written before them have none)
        if key in g:
            check_dataset(g[key], path)
            arrays[key] = np.asarray(g[key][()])
    try:
        bands = Bands(
            **arrays,
            level=float(g.attrs["level"]),
            method=str(g.attrs["method"]),
            note=str(g.attrs.get("note", "")),
        )
        bands.check(n, k, m)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: damaged {where} in the result file ({err})") from None
    return bands


def read_bands(f: Any, path: str, n: int, k: int, m: int) -> Bands | None:
    """The group ``bands`` of the open result file ``f`` (None when it has none).

    Raises ``ValueError`` naming ``path`` when the group is damaged (a missing or
    misshaped array, a non-finite or unordered bound, a bad level).
    """
    g = f.get("bands")
    return None if g is None else _read_group(g, "bands", path, n, k, m)


def write_compared_bands(f: Any, compared: list[Bands]) -> None:
    """The bands a result is compared with, as ``compared_bands/0``, ``/1``, ..."""
    if compared:
        g = f.create_group("compared_bands")
        for i, b in enumerate(compared):
            b.write(g, str(i))


def read_compared_bands(f: Any, path: str, n: int, k: int, m: int) -> list[Bands]:
    """The groups ``compared_bands/0``, ``/1``, ... (checked as :func:`read_bands`)."""
    g = f.get("compared_bands")
    if g is None:
        return []
    names = sorted(g, key=lambda s: int(s) if s.isdigit() else -1)
    if [int(s) if s.isdigit() else -1 for s in names] != list(range(len(names))):
        raise ValueError(f"{path}: compared_bands holds {sorted(g)}, not 0, 1, ...")
    return [_read_group(g[s], f"compared_bands/{s}", path, n, k, m) for s in names]
