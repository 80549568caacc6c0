"""Uncertainty of endmembers and maps from restarts and bootstrap draws.

The restarts of one rank (the first on ``X``, the others on bootstrap draws of the pixels,
see :func:`unmix.selection.select_rank`) are aligned component by component
(:func:`.stability.align_components`), each run's component is rescaled onto the
reference run's (the least-squares scale of the endmember, with the inverse scale on its
map, so ``A S`` is unchanged), and the spread over the runs gives

- per channel, a confidence band (quantiles) and standard deviation of each endmember;
- per pixel, the mean and standard deviation of each abundance map.

With bootstrap draws the band is a percentile bootstrap interval of the endmember; with
plain restarts it measures only how much the optimizer's answer varies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import to_numpy
from ._stability import align_components

__all__ = ["Uncertainty", "uncertainty_from_runs"]


@dataclass
class Uncertainty:
    """Spread of the aligned components over runs (see the module).

    Attributes
    ----------
    level : float
        Coverage of the band, e.g. 0.9 for the 5 % and 95 % quantiles.
    S_ref, S_median, S_lower, S_upper, S_std : arrays (k, channels)
        Reference endmembers and the per-channel median, band and standard deviation.
    A_mean, A_std : arrays (pixels, k)
        Per-pixel mean and standard deviation of each abundance map.
    n_runs : int
        Runs that went into the spread.
    spatial_shape : tuple of int or None
        Scan grid of the pixels (for :meth:`maps`).
    """

    level: float
    S_ref: np.ndarray
    S_median: np.ndarray
    S_lower: np.ndarray
    S_upper: np.ndarray
    S_std: np.ndarray
    A_mean: np.ndarray
    A_std: np.ndarray
    n_runs: int
    spatial_shape: tuple[int, ...] | None = None

    @property
    def k(self) -> int:
        """Number of components."""
        return int(self.S_ref.shape[0])

    def maps(self, which: str = "std") -> np.ndarray:
        """``A_std`` (``which="std"``) or ``A_mean`` reshaped to ``(*spatial_shape, k)``."""
        if which not in ("std", "mean"):
            raise ValueError(f"which must be 'std' or 'mean'; got {which!r}.")
        M = self.A_std if which == "std" else self.A_mean
        if self.spatial_shape is None:
            return M
        return M.reshape(*self.spatial_shape, self.k)

    def relative_band_width(self) -> np.ndarray:
        """Per component: mean band width over the mean of the median endmember."""
        width = np.mean(self.S_upper - self.S_lower, axis=1)
        return width / np.maximum(np.mean(np.abs(self.S_median), axis=1), 1e-300)

    def save(self, path: str | os.PathLike) -> str:
        """Write every array to ``.npz`` or ``.h5`` (no pickle); returns the path."""
        path = os.fspath(path)
        arrays = {
            name: getattr(self, name)
            for name in ("S_ref", "S_median", "S_lower", "S_upper", "S_std", "A_mean", "A_std")
        }
        shape = np.asarray(self.spatial_shape or (), dtype=np.int64)
        if path.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(path, "w") as f:
                f.attrs["format"] = "unmix-uncertainty"
                f.attrs["level"] = self.level
                f.attrs["n_runs"] = self.n_runs
                f.attrs["spatial_shape"] = shape
                for name, arr in arrays.items():
                    f.create_dataset(name, data=arr)
            return path
        if not path.endswith(".npz"):
            raise ValueError(f"save to a .npz or .h5 file; got {path!r}.")
        np.savez(path, level=self.level, n_runs=self.n_runs, spatial_shape=shape, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Uncertainty:
        """Read a file written by :meth:`save`."""
        path = os.fspath(path)
        names = ("S_ref", "S_median", "S_lower", "S_upper", "S_std", "A_mean", "A_std")
        if path.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != "unmix-uncertainty":
                    raise ValueError(f"{path} is not an unmix uncertainty file.")
                arrays = {n: f[n][()] for n in names}
                level, n_runs = float(f.attrs["level"]), int(f.attrs["n_runs"])
                shape = tuple(int(s) for s in f.attrs["spatial_shape"])
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = {n: z[n] for n in names}
                level, n_runs = float(z["level"]), int(z["n_runs"])
                shape = tuple(int(s) for s in z["spatial_shape"])
        return cls(level=level, n_runs=n_runs, spatial_shape=shape or None, **arrays)

    def plot(
        self, path: str | os.PathLike, *, axis: Any = None, names: Sequence[str] | None = None
    ) -> str:
        """Endmembers with their bands (top row) and the per-pixel spread maps (bottom)."""
        from ._figures import plot_uncertainty

        return plot_uncertainty(self, path, axis=axis, names=names)


def uncertainty_from_runs(
    runs: Sequence[Any],
    *,
    spatial_shape: Sequence[int] | None = None,
    level: float = 0.9,
    reference: int | None = None,
) -> Uncertainty:
    """Confidence bands of endmembers and spread of maps over ``runs``.

    Parameters
    ----------
    runs : sequence
        Fits of the same rank, each with ``A`` (pixels, k) and ``S`` (k, channels)
        attributes (:class:`unmix.Result` or the selection's fit records).
    spatial_shape : tuple of int, optional
        Scan grid of the pixels.
    level : float
        Coverage of the band, in (0, 1).
    reference : int, optional
        Run whose components set the order and scale (default: the run with the lowest
        ``sse`` or ``objective`` attribute, else the first).

    Returns
    -------
    Uncertainty

    Raises
    ------
    ValueError
        Fewer than two runs, runs without maps, different ranks, or ``level`` outside
        (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}.")
    runs = [r for r in runs if getattr(r, "A", None) is not None]
    if len(runs) < 2:
        raise ValueError(
            f"uncertainty needs at least two runs with maps; got {len(runs)} "
            "(use n_restarts >= 3)."
        )
    S_runs = [np.asarray(to_numpy(r.S), dtype=float) for r in runs]
    A_runs = [np.asarray(to_numpy(r.A), dtype=float) for r in runs]
    if len({S.shape for S in S_runs}) != 1 or len({A.shape for A in A_runs}) != 1:
        raise ValueError("all runs must have the same rank and shapes.")
    if reference is None:
        score = [float(getattr(r, "sse", getattr(r, "objective", np.nan))) for r in runs]
        reference = int(np.nanargmin(score)) if np.isfinite(score).any() else 0
    order, _ = align_components(S_runs, reference=reference)
    ref = S_runs[reference][order[reference]]
    S_al, A_al = [], []
    for r, (S, A) in enumerate(zip(S_runs, A_runs, strict=True)):
        Sr, Ar = S[order[r]], A[:, order[r]]
        num = np.sum(Sr * ref, axis=1)
        den = np.maximum(np.sum(Sr * Sr, axis=1), 1e-300)
        c = np.where(num > 0, num / den, 1.0)
        S_al.append(Sr * c[:, None])
        A_al.append(Ar / c[None, :])
    S_st, A_st = np.stack(S_al), np.stack(A_al)
    lo, hi = (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0
    n = A_st.shape[1]
    if spatial_shape is not None and int(np.prod(spatial_shape)) != n:
        raise ValueError(f"spatial_shape {tuple(spatial_shape)} does not have {n} pixels.")
    return Uncertainty(
        level=float(level),
        S_ref=ref,
        S_median=np.median(S_st, axis=0),
        S_lower=np.quantile(S_st, lo, axis=0),
        S_upper=np.quantile(S_st, hi, axis=0),
        S_std=S_st.std(axis=0, ddof=1),
        A_mean=A_st.mean(axis=0),
        A_std=A_st.std(axis=0, ddof=1),
        n_runs=len(runs),
        spatial_shape=None if spatial_shape is None else tuple(int(s) for s in spatial_shape),
    )
