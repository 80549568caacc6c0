"""The data side of a fit: ``X``, its mask and weights checked, preprocessed, and where it lives.

:func:`prepare_input` turns what the caller passed into an :class:`Input`: in memory (any
array-API array, converted to a floating dtype, NaN/Inf reported, preprocessing steps
applied) or streamed (a file-backed or lazy array, or host data computed on another
``device=``), with the mask and weights checked against ``X``'s shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Backend, backend_of, parse_device, to_numpy
from .._validation import ensure_2d_float, finite_report
from ..blocks import (
    Weights,
    as_csr_rows,
    as_device_csr,
    check_device_sparse_finite,
    check_sparse_finite,
    is_device_sparse,
    is_sparse,
    is_streamable,
    streamed_backend,
)

__all__ = [
    "Input",
    "check_mask",
    "check_steps",
    "check_weights",
    "host_to_device",
    "prepare_input",
    "rows_of",
    "step_weights",
]


@dataclass
class Input:
    """``X`` ready for the pixel blocks (see :func:`prepare_input`)."""

    X: Any  # the data the blocks read: preprocessed in memory, or the streamed source
    be: Backend
    mask: Any
    weights: Weights | None
    steps: list
    streamed: bool

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.X.shape[0]), int(self.X.shape[1])


def prepare_input(X: Any, *, mask: Any, weights: Any, device: Any, steps: Any) -> Input:
    """Validate ``X`` (pixels, channels) with its mask and weights; apply ``steps``."""
    steps = list(steps)
    check_steps(steps)
    if is_sparse(X):
        return _sparse_input(X, mask=mask, weights=weights, device=device, steps=steps)
    if is_device_sparse(X):
        return _device_sparse_input(X, mask=mask, weights=weights, device=device, steps=steps)
    if is_streamable(X) or host_to_device(X, device):
        return _streamed_input(X, mask=mask, weights=weights, device=device, steps=steps)
    X = ensure_2d_float(X)
    be = backend_of(X)
    n, m = (int(s) for s in X.shape)
    mask_arr = check_mask(mask, X.shape, be)
    finite_report(X, allowed=mask_arr)
    weights_obj = check_weights(weights, n, m, be)
    Xw = X
    for step in steps:
        Xw = step.fit_transform(Xw, mask_arr)
    return Input(Xw, be, mask_arr, step_weights(steps, weights_obj), steps, streamed=False)


def _sparse_input(X: Any, *, mask: Any, weights: Any, device: Any, steps: list) -> Input:
    """A SciPy / pydata sparse ``X`` as CSR on the host, checked from its nonzeros."""
    dense = [type(st).__name__ for st in steps if not st.sparse]
    if dense:
        raise ValueError(
            f"preprocessing= ({', '.join(dense)}) works on dense X only, and X is sparse: "
            "NormalizePixels and PoissonScaling keep X sparse; preprocess the data "
            "yourself (keeping it sparse), or pass X.toarray()."
        )
    if device is not None:
        raise ValueError(
            f"device={device!r} with sparse X: sparse data are fitted on the host (NumPy); "
            "drop device=, or pass a dense array."
        )
    X = as_csr_rows(X)
    be = backend_of(np.empty(0, dtype=X.dtype))
    n, m = (int(s) for s in X.shape)
    mask_arr = check_mask(mask, X.shape, be)
    check_sparse_finite(X, mask_arr)
    weights_obj = check_weights(weights, n, m, be)
    for step in steps:  # row and column scalings: X stays CSR
        X = step.fit_transform_sparse(X, mask_arr)
    return Input(X, be, mask_arr, step_weights(steps, weights_obj), steps, streamed=False)


def _device_sparse_input(X: Any, *, mask: Any, weights: Any, device: Any, steps: list) -> Input:
    """A torch sparse ``X``, fitted as CSR on its own device (:class:`~unmix.blocks.DeviceCSR`)."""
    if steps:
        names = ", ".join(type(st).__name__ for st in steps)
        raise ValueError(
            f"preprocessing= ({names}) with a torch sparse X is not supported: scale the "
            "tensor yourself (keeping it sparse), or pass SciPy CSR (X on the host)."
        )
    X = as_device_csr(X)
    if device is not None:  # asked for: the tensor moved there whole (or to SciPy CSR)
        kind, spec = parse_device(device)
        if kind == "numpy":
            host = X.to_scipy()
            return _sparse_input(host, mask=mask, weights=weights, device=None, steps=steps)
        if kind != "torch":
            raise ValueError(
                f"device={device!r} with a torch sparse X: a torch device is needed "
                "('cuda', 'cuda:N', 'torch', a torch.device), or drop device=."
            )
        X = X.to(spec)
    be = backend_of(X.values)
    n, m = X.shape
    mask_arr = check_mask(mask, X.shape, be)
    check_device_sparse_finite(X, mask_arr)
    weights_obj = check_weights(weights, n, m, be)
    return Input(X, be, mask_arr, step_weights(steps, weights_obj), steps, streamed=False)


def _streamed_input(X: Any, *, mask: Any, weights: Any, device: Any, steps: list) -> Input:
    if steps:
        raise ValueError(
            "X is streamed block by block (from a file, a lazy array, or host memory "
            "to device=): preprocessing= needs X in memory; preprocess the file (or "
            "load X) first."
        )
    be, X = streamed_backend(X, device)
    n, m = (int(s) for s in X.shape)
    if (mask is not None or weights is not None) and be.name != "numpy":
        raise ValueError(
            f"mask= and weights= with X streamed to device={device!r} are not supported: "
            "move X (and them) onto the device yourself, or stream on the host."
        )
    if getattr(mask, "_unmix_streamable", False):
        mask_arr = mask  # a Dask worker's rows of a mask checked where it was cut
    else:
        mask_arr = check_mask(None if mask is None else np.asarray(mask), X.shape, be)
    return Input(X, be, mask_arr, check_weights(weights, n, m, be), steps, streamed=True)


def check_steps(steps: list) -> None:
    """Every item of ``preprocessing=`` must be a step object (fit_transform / inverse)."""
    for st in steps:
        if not (hasattr(st, "fit_transform") and hasattr(st, "describe")):
            raise TypeError(
                f"preprocessing= takes step objects such as unmix.preprocessing."
                f"PoissonScaling(), NormalizePixels() or Center(); got {st!r} "
                f"({type(st).__name__}). Image operations (Crop, Bin, Log, ...) act on the "
                "image before it is unfolded: op(image) or op.apply(image), the CLI's --step."
            )


def check_mask(mask: Any, shape: tuple, be: Backend) -> Any:
    if mask is None:
        return None
    xp = be.xp
    if not hasattr(mask, "shape"):
        mask = np.asarray(mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}; it must match X {tuple(shape)} "
            "(True = observed, False = missing)."
        )
    if isinstance(mask, np.ndarray) and be.name != "numpy":
        mask = be.asarray(mask, dtype=xp.bool)
    mask = xp.astype(mask, xp.bool)
    n_obs = int(xp.sum(xp.astype(mask, xp.int64)))
    if n_obs == 0:
        raise ValueError("mask marks every entry of X missing; nothing to fit.")
    return mask


def check_weights(weights: Any, n: int, m: int, be: Backend) -> Weights | None:
    if weights is None:
        return None
    xp = be.xp
    if not isinstance(weights, Weights):
        shape = tuple(getattr(weights, "shape", np.shape(weights)))
        if len(shape) == 1:
            raise ValueError(
                f"weights is 1-D (length {shape[0]}); say what it weighs: "
                "unmix.Weights(pixels=w) (length n_pixels) or unmix.Weights(channels=w) "
                "(length n_channels)."
            )
        weights = Weights(full=weights)
    out = {}
    for name, expected in (("pixels", (n,)), ("channels", (m,)), ("full", (n, m))):
        w = getattr(weights, name)
        if w is None:
            out[name] = None
            continue
        w = (
            be.asarray(to_numpy(w))
            if isinstance(w, np.ndarray)
            or (not hasattr(w, "__array_namespace__") and be.name != "numpy")
            else xp.astype(xp.asarray(w), be.dtype)
        )
        if tuple(w.shape) != expected:
            raise ValueError(f"Weights.{name} has shape {tuple(w.shape)}; expected {expected}.")
        if not bool(xp.all(xp.isfinite(w))) or bool(xp.any(w < 0)):
            raise ValueError(f"Weights.{name} must be finite and >= 0.")
        out[name] = w
    return Weights(**out)


def rows_of(weights: Weights | None, rows: slice) -> Weights | None:
    """This process's rows of the per-pixel and full weights."""
    if weights is None:
        return None
    return Weights(
        pixels=None if weights.pixels is None else weights.pixels[rows],
        channels=weights.channels,
        full=None if weights.full is None else weights.full[rows, :],
    )


def host_to_device(X: Any, device: Any) -> bool:
    """True when in-memory host ``X`` is to be streamed to ``device=`` block by block."""
    if device is None:
        return False
    if isinstance(X, np.ndarray) and X.ndim == 2:
        return True
    raise ValueError(
        f"device={device!r} moves host or file data (NumPy, h5py, Zarr, Dask) to a compute "
        f"device; X is a {type(X).__module__.split('.')[0]} array, and the fit already "
        "follows X's device: drop device=."
    )


def step_weights(steps: list, weights: Weights | None) -> Weights | None:
    """Multiply pixel weights requested by preprocessing steps into ``weights``."""
    for step in steps:
        w = step.pixel_weights()
        if w is None:
            continue
        base = weights or Weights()
        pixels = w if base.pixels is None else base.pixels * w
        weights = Weights(pixels=pixels, channels=base.channels, full=base.full)
    return weights
