"""The result of a factorization, and its HDF5 file (no pickle): :meth:`Result.save`
writes it; :func:`unmix.load_result` (:mod:`unmix._result_load`) reads it back, trusting
nothing in it."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._atomic import atomic_path
from ._backend import to_numpy
from ._bands import Bands, write_compared_bands
from ._display import plot_result
from ._notebook import result_html, result_to_hyperspy
from ._result_path import save_path

__all__ = ["FORMAT_VERSION", "Result"]

#: the result file format this version writes (and the newest it reads)
FORMAT_VERSION = 1


@dataclass
class Result:
    """What :func:`unmix.factorize` returns.

    Attributes
    ----------
    A : array (pixels, k)
        Abundance maps, on the input's backend and device.
    S : array (k, channels)
        Endmembers (spectra or unfolded patterns).
    objective : float
        Final value of the full objective (data fit + penalties), evaluated exactly.
    history : dict of str -> ndarray
        Per iteration (entry 0 is the start): ``"objective"``, ``"fit"``, one entry per
        penalty (e.g. ``"L1(A)"``) and ``"time"`` (seconds since the start).
    n_iter : int
        Iterations run (of the best restart).
    converged : bool
        True when the relative change of the objective fell below ``tol``.
    stop_reason : str
        ``"tol"``, ``"max_iter"``, ``"time_limit"``, ``"callback"``, ``"non-finite"``, ...
    timings : dict
        Seconds: ``init``, ``iterations``, ``total`` and ``per_iteration``.
    spec : dict
        The full problem specification (JSON-friendly), for provenance.
    restarts : list of dict
        Seed, final objective and iterations of every restart.
    mean : array (channels,) or None
        Mean spectrum removed by centering (PCA), added back by :meth:`reconstruct`.
    context : dict
        Provenance of the input set by the caller (e.g. the CLI): source file, sha256,
        reader, calibrated axes, image-level preprocessing.  Saved with the result.
    bands : Bands or None
        Intervals of every endmember channel and map pixel when the method gives them
        (Bayesian Poisson NMF's credible intervals), with their level and method; saved
        with the result and drawn in the report.
    compared_bands : list of Bands
        Bands of other methods (a bootstrap of point fits), drawn beside ``bands``.
    """

    A: Any
    S: Any
    objective: float
    history: dict[str, np.ndarray]
    n_iter: int
    converged: bool
    stop_reason: str
    timings: dict[str, float]
    spec: dict[str, Any]
    restarts: list[dict] = field(default_factory=list)
    preprocessing: list = field(default_factory=list, repr=False)
    spatial_shape: tuple[int, ...] | None = None
    signal_shape: tuple[int, ...] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    link: Any = field(default=None, repr=False)
    rows: tuple[int, int] | None = field(default=None, repr=False)
    bands: Bands | None = field(default=None, repr=False)
    compared_bands: list[Bands] = field(default_factory=list, repr=False)

    @property
    def k(self) -> int:
        return int(self.S.shape[0])

    @property
    def terms(self) -> list:
        """The fit's constraints, penalties and filters.

        The live terms after a fit; after :func:`load_result`, those rebuilt from the file
        (a term whose array arguments the file does not store is left out, with a warning).
        """
        args = getattr(self, "fit_args", None)
        if args is not None:
            return [*args["constraints"], *args["regularizers"]]
        return list(getattr(self, "_terms", []))

    @property
    def mean(self) -> Any:
        for step in self.preprocessing:
            if "mean" in getattr(step, "state", {}):
                return step.state["mean"]
        return None

    @property
    def stop_summary(self) -> str:
        """The stop reason, with whether the fit converged (``tol``) or reached
        ``max_iter`` with its objective still falling (``spec["diagnostics"]
        ["still_falling"]``, the mean relative fall an iteration at the end; a
        :class:`~unmix.ConvergenceWarning` said so when the fit ended)."""
        if self.converged:
            return f"{self.stop_reason} (converged)"
        rate = ((self.spec or {}).get("diagnostics") or {}).get("still_falling")
        if rate:
            return (
                f"{self.stop_reason} (not converged: the objective still fell {rate:.2g} "
                "an iteration)"
            )
        return str(self.stop_reason)

    @property
    def other_start(self) -> dict | None:
        """What the default start gave when another start replaced a fit whose components
        collapsed - one that keeps them all, or failing that a lower one (``alive``
        False) (``spec["diagnostics"]["other_start"]``,
        :mod:`unmix.engine._other_starts`); None when the default start's fit stands."""
        return ((self.spec or {}).get("diagnostics") or {}).get("other_start")

    @property
    def start_summary(self) -> str:
        """The start the fit came from, and why it is not the default one
        (:attr:`other_start`)."""
        other = self.other_start
        if not other:
            return str((self.spec or {}).get("init", "?"))
        said = (
            f"{other['other_init']} (seed {other['other_seed']}): the default "
            f"{other['init']} start left components {other['collapsed']} collapsed at "
            f"objective {other['objective']:.6g}"
        )
        if other.get("alive", True):
            return said
        return f"{said}; this start ends lower, with collapsed components of its own"

    def reconstruct(self, rows: slice | None = None) -> Any:
        """The model ``f(A @ S)`` of ``X`` (pixels, channels) in the input's units.

        ``rows`` restricts it to a block of pixels (bounded memory on big scans).
        """
        A = self.A if rows is None else self.A[rows, :]
        Y = A @ self.S
        if self.link is not None and not self.link.is_identity:
            import array_api_compat as aac

            Y = self.link.forward(Y, aac.array_namespace(Y))
        for step in reversed(self.preprocessing):
            Y = step.undo_model(Y, rows)
        return Y

    def maps(self) -> np.ndarray:
        """Abundance maps as a NumPy array of shape ``(*spatial_shape, k)``."""
        A = to_numpy(self.A)
        if self.spatial_shape and math.prod(self.spatial_shape) == A.shape[0]:
            return A.reshape(*self.spatial_shape, A.shape[1])
        return A

    def endmembers(self) -> np.ndarray:
        """Endmembers as a NumPy array of shape ``(k, *signal_shape)``."""
        S = to_numpy(self.S)
        if self.signal_shape and math.prod(self.signal_shape) == S.shape[1]:
            return S.reshape(S.shape[0], *self.signal_shape)
        return S

    # notebooks: summary with thumbnails, matplotlib figures, HyperSpy signals
    _repr_html_, plot, to_hyperspy = result_html, plot_result, result_to_hyperspy

    def save(self, path: str | os.PathLike) -> str:
        """Write HDF5 atomically (a temporary file renamed); a folder gets ``result.h5``."""
        import h5py

        path = save_path(path)
        with atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = "unmix-result"
            f.attrs["format_version"] = FORMAT_VERSION
            _write_maps(f, self.A, self.spatial_shape)
            f.create_dataset("S", data=to_numpy(self.S), compression="gzip")
            h = f.create_group("history")
            for key, values in self.history.items():
                h.create_dataset(key, data=np.asarray(values))
            _save_steps(f.create_group("preprocessing"), self.preprocessing)
            if self.bands is not None:
                self.bands.write(f)
            write_compared_bands(f, self.compared_bands)
            meta = {
                "objective": self.objective,
                "n_iter": self.n_iter,
                "converged": self.converged,
                "stop_reason": self.stop_reason,
                "timings": self.timings,
                "spec": self.spec,
                "restarts": self.restarts,
                "spatial_shape": self.spatial_shape,
                "signal_shape": self.signal_shape,
                "context": self.context,
                "link": _link_spec(self.link),
            }
            f.attrs["meta"] = json.dumps(meta, default=_json_default)
        return path


def _write_maps(f: Any, A: Any, spatial_shape: tuple | None, target: int = 1 << 20) -> None:
    """Write the maps ``A`` (pixels, k) in chunks of whole scan lines (about 1 MiB).

    Each chunk is filled by one write of one block, moved from the compute device a
    block at a time (no full host copy of GPU maps).
    """
    n, k = (int(s) for s in A.shape)
    dtype = to_numpy(A[:1]).dtype
    line = int(spatial_shape[-1]) if spatial_shape else 1
    rows = max(1, target // max(1, k * dtype.itemsize))
    rows = min(n, max(line, rows - rows % line)) if n else 1
    ds = f.create_dataset(
        "A", shape=(n, k), dtype=dtype, chunks=(max(1, rows), max(1, k)), compression="gzip"
    )
    for start in range(0, n, rows):
        ds[start : start + rows] = to_numpy(A[start : start + rows])


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return repr(o)


def _link_spec(link: Any) -> dict | None:
    if link is None:
        return None
    return {"type": type(link).__name__, **{k: v for k, v in vars(link).items()}}


def _save_steps(group: Any, steps: list) -> None:
    for i, step in enumerate(steps):
        g = group.create_group(f"{i:02d}")
        params = {k: v for k, v in step.describe().items() if k != "type"}
        g.attrs["type"] = type(step).__name__
        g.attrs["params"] = json.dumps(params, default=_json_default)
        for key, value in step.state.items():
            g.create_dataset(key, data=to_numpy(value))
