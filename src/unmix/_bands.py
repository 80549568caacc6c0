"""Per-entry intervals of a result's endmembers and maps, and their place in ``result.h5``.

A :class:`Bands` holds, for the factors of ``X ~ A @ S`` (``X`` (pixels, channels), ``A``
(pixels, k) maps, ``S`` (k, channels) endmembers), a lower and an upper value of every
entry of ``S`` and ``A`` at one probability ``level``, with the method that made them
(e.g. the credible intervals of Bayesian Poisson NMF, :func:`unmix.bayes.bayes_nmf`) and
a note on what they do and do not hold.  In the result file they are the group
``bands`` (datasets ``S_lower``, ``S_upper``, ``A_lower``, ``A_upper``; attributes
``level``, ``method``, ``note``), checked on reading like the factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .io import check_dataset

__all__ = ["Bands", "read_bands"]

_ARRAYS = ("S_lower", "S_upper", "A_lower", "A_upper")


@dataclass
class Bands:
    """Intervals of every endmember channel and every map pixel of a result.

    Attributes
    ----------
    S_lower, S_upper : arrays (k, channels)
        Bounds of each endmember entry, in the units of the result's ``S``.
    A_lower, A_upper : arrays (pixels, k)
        Bounds of each map entry, in the units of the result's ``A``.
    level : float
        Probability of each interval (0.9: central 90 % intervals).
    method : str
        What made them, e.g. ``"model-based: mean-field variational Bayes (Poisson)"``.
    note : str
        What the intervals hold and what they leave out (shown in the report).
    """

    S_lower: np.ndarray
    S_upper: np.ndarray
    A_lower: np.ndarray
    A_upper: np.ndarray
    level: float
    method: str
    note: str = ""

    def check(self, n: int, k: int, m: int) -> None:
        """Raise ``ValueError`` unless the arrays fit a result of ``n`` pixels, ``k``
        components and ``m`` channels, are finite and ordered, and ``0 < level < 1``."""
        want = {"S_lower": (k, m), "S_upper": (k, m), "A_lower": (n, k), "A_upper": (n, k)}
        for name, shape in want.items():
            v = getattr(self, name)
            if v.shape != shape:
                raise ValueError(f"bands {name} is {v.shape}; the result needs {shape}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"bands {name} has non-finite entries")
        if np.any(self.S_lower > self.S_upper) or np.any(self.A_lower > self.A_upper):
            raise ValueError("bands have lower bounds above their upper bounds")
        if not 0.0 < float(self.level) < 1.0:
            raise ValueError(f"bands level must be in (0, 1); got {self.level!r}")

    def write(self, f: Any) -> None:
        """Write the group ``bands`` into the open HDF5 file ``f``."""
        g = f.create_group("bands")
        for name in _ARRAYS:
            g.create_dataset(name, data=np.asarray(getattr(self, name)), compression="gzip")
        g.attrs["level"] = float(self.level)
        g.attrs["method"] = str(self.method)
        g.attrs["note"] = str(self.note)


def read_bands(f: Any, path: str, n: int, k: int, m: int) -> Bands | None:
    """The group ``bands`` of the open result file ``f`` (None when it has none).

    Raises ``ValueError`` naming ``path`` when the group is damaged (a missing or
    misshaped array, a non-finite or unordered bound, a bad level).
    """
    g = f.get("bands")
    if g is None:
        return None
    arrays = {}
    for name in _ARRAYS:
        if name not in g:
            raise ValueError(f"{path}: the group 'bands' has no dataset {name!r}")
        check_dataset(g[name], path)
        v = np.asarray(g[name][()])
        if v.dtype.kind != "f":
            raise ValueError(f"{path}: bands {name} is {v.dtype}, not floating point")
        arrays[name] = v
    try:
        bands = Bands(
            **arrays,
            level=float(g.attrs["level"]),
            method=str(g.attrs["method"]),
            note=str(g.attrs.get("note", "")),
        )
        bands.check(n, k, m)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: damaged bands in the result file ({err})") from None
    return bands
