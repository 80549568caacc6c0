"""Array-API helpers: everything follows ``X``.

The math in unmix is written once against the array API standard through
``array_api_compat``.  The helpers here find the namespace and device of the
input, pick the accumulation dtype, and move *small* host data (random
initializations, user-given spectra) onto the input's device explicitly.
There is no global backend switch and no silent copy of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat as aac
import numpy as np

__all__ = ["Backend", "backend_of", "to_numpy"]


@dataclass(frozen=True)
class Backend:
    """Namespace, device and dtypes that every array of one problem follows.

    Attributes
    ----------
    xp : module
        The array-API namespace of ``X`` (``array_api_compat.numpy``, ``.torch``, ...).
    device : object
        The device of ``X``.
    dtype : dtype
        The floating dtype of ``X`` (float32 stays float32).
    acc_dtype : dtype
        Dtype for the small k x k and k x channels sums: float64 where the device
        has it, else ``dtype``.
    """

    xp: Any
    device: Any
    dtype: Any
    acc_dtype: Any

    @property
    def name(self) -> str:
        """Short name of the array library (``numpy``, ``torch``, ``cupy``)."""
        return _NAMES.setdefault(self.xp.__name__, self.xp.__name__.split(".")[-1])

    @property
    def eps(self) -> float:
        """Machine epsilon of the working dtype."""
        return _finfo(self.xp, self.dtype)[0]

    @property
    def tiny(self) -> float:
        """A floor for denominators, far above the dtype's underflow."""
        return _finfo(self.xp, self.dtype)[1] * 1e6

    def asarray(self, a: Any, *, dtype: Any = None) -> Any:
        """Put ``a`` on this backend's device with the working dtype (an explicit move)."""
        dtype = self.dtype if dtype is None else dtype
        if isinstance(a, np.ndarray) and self.name != "numpy":
            a = np.ascontiguousarray(a)
        return self.xp.asarray(a, dtype=dtype, device=self.device)

    def zeros(self, shape: tuple[int, ...], *, dtype: Any = None) -> Any:
        return self.xp.zeros(
            shape, dtype=self.dtype if dtype is None else dtype, device=self.device
        )

    def ones(self, shape: tuple[int, ...], *, dtype: Any = None) -> Any:
        return self.xp.ones(
            shape, dtype=self.dtype if dtype is None else dtype, device=self.device
        )

    def eye(self, k: int, *, dtype: Any = None) -> Any:
        return self.xp.eye(k, dtype=self.dtype if dtype is None else dtype, device=self.device)

    def clip_min(self, a: Any, lo: float) -> Any:
        """``max(a, lo)`` for a scalar ``lo`` by the cheapest native call of the library."""
        if isinstance(a, np.ndarray):
            return np.maximum(a, lo)
        if hasattr(a, "clamp"):  # torch
            return a.clamp(min=lo)
        return self.xp.clip(a, min=lo)

    def acc(self, a: Any) -> Any:
        """Cast a (small) array to the accumulation dtype (no copy when it already is)."""
        return a if a.dtype == self.acc_dtype else self.xp.astype(a, self.acc_dtype)

    def work(self, a: Any) -> Any:
        """Cast a (small) array back to the working dtype (no copy when it already is)."""
        return a if a.dtype == self.dtype else self.xp.astype(a, self.dtype)

    def scalar(self, a: Any) -> float:
        """A 0-d array as a Python float (a device sync on GPUs)."""
        return float(a)


_FINFO: dict = {}
_NAMES: dict = {}


def _finfo(xp: Any, dtype: Any) -> tuple[float, float]:
    key = (xp.__name__, str(dtype))
    if key not in _FINFO:
        fi = xp.finfo(dtype)
        _FINFO[key] = (float(fi.eps), float(fi.smallest_normal))
    return _FINFO[key]


def _has_float64(xp: Any, device: Any) -> bool:
    try:
        xp.zeros((1,), dtype=xp.float64, device=device)
    except (TypeError, RuntimeError, ValueError):  # e.g. torch on Apple MPS
        return False
    return True


def backend_of(X: Any) -> Backend:
    """Return the :class:`Backend` that ``X`` (a floating array) lives on."""
    xp = aac.array_namespace(X)
    device = aac.device(X)
    dtype = X.dtype
    acc = xp.float64 if _has_float64(xp, device) else dtype
    return Backend(xp=xp, device=device, dtype=dtype, acc_dtype=acc)


def to_numpy(a: Any) -> np.ndarray:
    """Copy any array-API array to a NumPy array on the host (explicit, for saving/plots)."""
    if a is None:
        return None
    if isinstance(a, np.ndarray):
        return a
    if aac.is_torch_array(a):
        return a.detach().cpu().numpy()
    if aac.is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def is_numpy(a: Any) -> bool:
    return isinstance(a, np.ndarray)
