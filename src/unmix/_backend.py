"""Array-API helpers: everything follows ``X``.

The math in unmix is written once against the array API standard through
``array_api_compat``.  The helpers here find the namespace and device of the
input, pick the accumulation dtype, and move *small* host data (random
initializations, user-given spectra) onto the input's device explicitly.
There is no global backend switch and no silent copy of the data.

:func:`compute_backend` is the one place that builds a backend for a named device
(``device=``: PyTorch or CuPy on a GPU while the data stay on the host or on disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat as aac
import array_api_compat.numpy as np_xp
import numpy as np

__all__ = [
    "Backend",
    "DeviceUnavailableError",
    "backend_of",
    "compute_backend",
    "parse_device",
    "to_numpy",
]


class DeviceUnavailableError(RuntimeError):
    """The ``device=`` asked for is not on this machine (or its library cannot reach it)."""


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
    if hasattr(a, "toarray"):  # a SciPy sparse block (rows of sparse X), made dense
        return a.toarray()
    if aac.is_torch_array(a):
        return a.detach().cpu().numpy()
    if aac.is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def is_numpy(a: Any) -> bool:
    return isinstance(a, np.ndarray)


def compute_backend(device: Any, dtype: Any) -> Backend:
    """The backend for ``device=``: where blocks of host / file data are computed.

    Parameters
    ----------
    device : None, str, torch.device or cupy.cuda.Device
        None, ``"cpu"`` or ``"numpy"``: NumPy on the host.  ``"torch"`` (PyTorch on the
        CPU), ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``: PyTorch on that
        device.  ``"cupy"``, ``"cupy:1"`` or a ``cupy.cuda.Device``: CuPy.
    dtype : NumPy dtype
        float32 or float64: the working dtype on the device.
    """
    dtype = np.dtype(dtype)
    kind, index = parse_device(device)
    if kind == "numpy":
        return Backend(xp=np_xp, device="cpu", dtype=dtype, acc_dtype=np.float64)
    if kind == "torch":
        return _torch_backend(index, dtype)
    return _cupy_backend(index, dtype)


def parse_device(device: Any) -> tuple[str, Any]:
    if device is None:
        return "numpy", None
    mod = type(device).__module__.split(".")[0]
    if mod in ("torch", "cupy"):
        return mod, device
    if not isinstance(device, str):
        raise TypeError(
            f"device={device!r} is not understood; pass 'cpu', 'torch', 'cuda', 'cuda:N', "
            "'cupy', 'cupy:N' or a torch.device."
        )
    name = device.strip().lower()
    if name in ("cpu", "numpy", "host"):
        return "numpy", None
    if name == "torch":
        return "torch", "cpu"
    if name.startswith("torch:"):
        return "torch", name.split(":", 1)[1]
    if name.startswith("cupy"):
        return "cupy", int(name.split(":", 1)[1]) if ":" in name else 0
    if name.split(":")[0] in ("cuda", "mps", "xpu"):
        return "torch", name
    raise ValueError(
        f"device={device!r} is not a known device; use 'cpu', 'torch', 'cuda', 'cuda:N', "
        "'mps', 'cupy' or 'cupy:N'."
    )


def _torch_backend(spec: Any, dtype: np.dtype) -> Backend:
    try:
        import array_api_compat.torch as torch_xp
        import torch
    except ImportError as exc:  # pragma: no cover - torch is optional
        raise ImportError(
            "device= with a PyTorch device needs torch: pip install 'unmix[torch]'."
        ) from exc
    dev = torch.device(spec)
    _check_torch_device(torch, dev)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64

    acc = torch.float64 if _has_float64(torch_xp, dev) else tdtype
    return Backend(xp=torch_xp, device=dev, dtype=tdtype, acc_dtype=acc)


_RUN_ON_CPU = "run on the CPU (drop --device / device=)"


def _check_torch_device(torch: Any, dev: Any) -> None:
    """Raise :class:`DeviceUnavailableError` when PyTorch cannot reach ``dev``."""
    if dev.type == "cpu":
        return
    probe = getattr(torch, dev.type, None)  # torch.cuda, torch.xpu
    if dev.type == "mps":
        probe = getattr(torch.backends, "mps", None)
    available = probe is not None and bool(probe.is_available())
    if not available:
        build = f"torch {torch.__version__}"
        if dev.type == "cuda" and getattr(torch.version, "cuda", None) is None:
            build += ", a CPU-only build"
        raise DeviceUnavailableError(
            f"device={str(dev)!r}: PyTorch ({build}) sees no {dev.type.upper()} device "
            f"here; {_RUN_ON_CPU}, or use a machine (and a torch build) with one."
        )
    count = int(probe.device_count()) if hasattr(probe, "device_count") else 1
    if dev.index is not None and dev.index >= count:
        raise DeviceUnavailableError(
            f"device={str(dev)!r}: this machine has {count} {dev.type.upper()} device(s), "
            f"numbered 0 to {count - 1}; pick one of them or {_RUN_ON_CPU}."
        )


def _cupy_backend(spec: Any, dtype: np.dtype) -> Backend:
    try:
        import array_api_compat.cupy as cupy_xp
        import cupy
    except ImportError as exc:  # pragma: no cover - cupy is optional
        raise ImportError("device='cupy' needs CuPy: pip install 'unmix[cupy]'.") from exc
    if isinstance(spec, int):
        _check_cupy_device(cupy, spec)
    dev = spec if not isinstance(spec, int) else cupy.cuda.Device(spec)
    return Backend(xp=cupy_xp, device=dev, dtype=cupy.dtype(dtype), acc_dtype=cupy.float64)


def _check_cupy_device(cupy: Any, index: int) -> None:
    """Raise :class:`DeviceUnavailableError` when CuPy cannot reach GPU ``index``."""
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError (no driver, no GPU)
        raise DeviceUnavailableError(
            f"device='cupy:{index}': CuPy sees no CUDA device here ({exc}); {_RUN_ON_CPU}."
        ) from exc
    if index >= count:
        raise DeviceUnavailableError(
            f"device='cupy:{index}': this machine has {count} CUDA device(s), numbered 0 "
            f"to {count - 1}; pick one of them or {_RUN_ON_CPU}."
        )
