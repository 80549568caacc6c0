"""Moving small sums between processes: one packed float64 buffer per exchange."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat as aac
import numpy as np

from .._backend import to_numpy
from .base import Block

__all__ = ["from_host64", "local_sums", "packed_sum", "to_host64"]


def to_host64(value: Any) -> tuple[np.ndarray, Any]:
    """``value`` (a number or any array) as a float64 host array, and the array it came
    from when that was not NumPy (to send the result back to its device)."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        return np.array(float(value)), None
    if aac.is_array_api_obj(value) and not isinstance(value, np.ndarray):
        return np.asarray(to_numpy(value), dtype=np.float64), value
    return np.asarray(value, dtype=np.float64), None


def from_host64(result: np.ndarray, like: Any, original: Any) -> Any:
    """``result`` back in the namespace, dtype and device of ``like`` (numbers stay numbers)."""
    if like is None:
        return float(result) if result.ndim == 0 and not hasattr(original, "shape") else result
    xp = aac.array_namespace(like)
    return xp.asarray(result, dtype=like.dtype, device=aac.device(like))


def local_sums(kernel: Callable[[Block], dict], blocks: Sequence[Block]) -> dict:
    """The kernel's outputs summed over this process's blocks (zeros when it has none)."""
    local: dict[str, Any] = {}
    for block in blocks or [Block(0, 0, 0)]:
        for key, value in kernel(block).items():
            local[key] = value if key not in local else local[key] + value
    return local


def packed_sum(local: dict, allreduce: Callable[[np.ndarray], np.ndarray]) -> dict:
    """Sum every process's ``local`` arrays with ONE all-reduce of a packed float64 buffer.

    ``allreduce`` sums a 1-D float64 host array over the processes; the results come back
    in each value's own namespace, dtype and device (numbers stay numbers).
    """
    keys = sorted(local)
    hosts = [to_host64(local[key]) for key in keys]
    flat = np.concatenate([h.reshape(-1) for h, _ in hosts]) if hosts else np.zeros(0)
    total = allreduce(flat)
    out, at = {}, 0
    for key, (host, like) in zip(keys, hosts, strict=True):
        part = total[at : at + host.size].reshape(host.shape)
        at += host.size
        out[key] = from_host64(part, like, local[key])
    return out
