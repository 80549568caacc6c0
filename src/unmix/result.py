"""The result of a factorization, and its HDF5 file (no pickle)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._backend import to_numpy

__all__ = ["Result", "load_result"]


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

    @property
    def k(self) -> int:
        return int(self.S.shape[0])

    @property
    def mean(self) -> Any:
        for step in self.preprocessing:
            if "mean" in getattr(step, "state", {}):
                return step.state["mean"]
        return None

    def reconstruct(self) -> Any:
        """The model of ``X`` (pixels, channels) in the input's units."""
        Y = self.A @ self.S
        for step in reversed(self.preprocessing):
            Y = step.undo_model(Y)
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

    def save(self, path: str | os.PathLike) -> str:
        """Write an HDF5 file atomically (temporary file, then rename); return the path."""
        import h5py

        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(suffix=".h5.tmp", dir=folder)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = "unmix-result"
                f.attrs["format_version"] = 1
                f.create_dataset("A", data=to_numpy(self.A), compression="gzip")
                f.create_dataset("S", data=to_numpy(self.S), compression="gzip")
                h = f.create_group("history")
                for key, values in self.history.items():
                    h.create_dataset(key, data=np.asarray(values))
                if self.mean is not None:
                    f.create_dataset("mean", data=to_numpy(self.mean))
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
                }
                f.attrs["meta"] = json.dumps(meta, default=_json_default)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return repr(o)


def load_result(path: str | os.PathLike) -> Result:
    """Read a result written by :meth:`Result.save` (NumPy arrays)."""
    import h5py

    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"No result file at {os.fspath(path)}.")
    try:
        f = h5py.File(os.fspath(path), "r")
    except OSError as err:
        raise ValueError(f"{os.fspath(path)} is not a readable HDF5 file ({err}).") from err
    with f:
        if f.attrs.get("format") != "unmix-result":
            raise ValueError(f"{os.fspath(path)} is not an unmix result file.")
        meta = json.loads(f.attrs["meta"])
        history = {k: f["history"][k][()] for k in f["history"]}
        A, S = f["A"][()], f["S"][()]
        mean = f["mean"][()] if "mean" in f else None
    pre = []
    if mean is not None:
        from .preprocessing import Center

        c = Center()
        c.state["mean"] = mean
        pre.append(c)
    shape = meta.get("spatial_shape")
    sig = meta.get("signal_shape")
    return Result(
        A=A,
        S=S,
        objective=meta["objective"],
        history=history,
        n_iter=meta["n_iter"],
        converged=meta["converged"],
        stop_reason=meta["stop_reason"],
        timings=meta["timings"],
        spec=meta["spec"],
        restarts=meta["restarts"],
        preprocessing=pre,
        spatial_shape=tuple(shape) if shape else None,
        signal_shape=tuple(sig) if sig else None,
        context=meta.get("context", {}),
    )
