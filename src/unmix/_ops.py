"""Small array-API building blocks shared by constraints, regularizers and solvers."""

from __future__ import annotations

from typing import Any

__all__ = [
    "grid_neighbor_sum",
    "line_window",
    "median_filter_axes",
    "project_simplex_rows",
    "reflect_pad",
]


def project_simplex_rows(V: Any, xp: Any, total: float = 1.0) -> Any:
    """Euclidean projection of each row of ``V`` onto ``{a >= 0, sum(a) = total}``.

    Exact, sort-based (Held, Wolfe & Crowder 1974; Duchi et al. 2008): O(k log k) a row.
    """
    k = V.shape[1]
    U = xp.flip(xp.sort(V, axis=1), axis=1)
    css = xp.cumulative_sum(U, axis=1) - total
    idx = xp.arange(1, k + 1, dtype=V.dtype, device=_device(V))
    cond = (U - css / idx) > 0
    rho = xp.sum(xp.astype(cond, xp.int64), axis=1, keepdims=True)
    # rho >= 1 in exact arithmetic; 0 when the largest entry dwarfs ``total`` in the
    # dtype (float32: U_1 - (U_1 - total) rounds to 0).  Where rho is 1 the projection
    # is ``total`` at the largest entry, set exactly (V - theta would round it away).
    single = rho <= 1
    # maximum, not clip: array-api-compat's clip costs ~30 us a call (ADMM's inner loop)
    rho = xp.maximum(rho, xp.ones_like(rho))
    theta = xp.take_along_axis(css, rho - 1, axis=1) / xp.astype(rho, V.dtype)
    P = xp.maximum(V - theta, xp.zeros_like(theta))
    if bool(xp.any(single)):
        top = xp.arange(k, device=_device(V))[None, :] == xp.argmax(V, axis=1, keepdims=True)
        P = xp.where(single, xp.where(top, xp.asarray(total, dtype=V.dtype), 0.0), P)
    return P


def _device(a: Any) -> Any:
    import array_api_compat as aac

    return aac.device(a)


def _shift_add(out: Any, V: Any, axis: int, step: int) -> None:
    """out[i] += V[i - step] along ``axis`` where defined (zero outside)."""
    n = V.shape[axis]
    if abs(step) >= n:
        return
    dst = [slice(None)] * V.ndim
    src = [slice(None)] * V.ndim
    if step > 0:
        dst[axis], src[axis] = slice(step, None), slice(None, n - step)
    else:
        dst[axis], src[axis] = slice(None, n + step), slice(-step, None)
    out[tuple(dst)] += V[tuple(src)]


def grid_neighbor_sum(V: Any, xp: Any, *, n_axes: int, diagonal: bool = False) -> Any:
    """Sum over grid neighbours of each site: ``(W @ V)`` for the grid adjacency ``W``.

    ``V`` has shape ``(*spatial_shape, k)``; the first ``n_axes`` axes are spatial.
    Neighbours differ by one step along one axis; with ``diagonal`` (2-D only) the four
    diagonal neighbours are added (8-neighbourhood).
    """
    out = xp.zeros_like(V)
    for ax in range(n_axes):
        _shift_add(out, V, ax, 1)
        _shift_add(out, V, ax, -1)
    if diagonal:
        if n_axes != 2:
            raise ValueError("diagonal neighbours are defined for 2-D scans only.")
        h, w = V.shape[0], V.shape[1]
        if h > 1 and w > 1:
            out[1:, 1:] += V[:-1, :-1]
            out[:-1, :-1] += V[1:, 1:]
            out[1:, :-1] += V[:-1, 1:]
            out[:-1, 1:] += V[1:, :-1]
    return out


def line_window(start: int, stop: int, n: int, width: int, line: int) -> tuple[int, int]:
    """The pixels ``[lo, hi)`` of whole scan lines around the pixels ``[start, stop)``.

    ``width`` lines of ``line`` pixels are added before the line of ``start`` and after
    the line of ``stop - 1``, clipped to the grid's ``n`` pixels; an empty range stays
    empty.  This is the window a process needs to apply a grid operator of reach
    ``width`` lines to its own pixels (see :meth:`unmix.mpi.MPIExecutor.halo`).
    """
    if stop <= start:
        return start, start
    lo = max(0, (start // line - width) * line)
    hi = min(n, (-(-stop // line) + width) * line)
    return lo, hi


def reflect_pad(V: Any, xp: Any, axis: int, r: int) -> Any:
    """``V`` with ``r <= V.shape[axis]`` mirrored sites added at both ends of ``axis``."""
    n = V.shape[axis]
    r = min(r, n)
    if r == 0:
        return V
    head = [slice(None)] * V.ndim
    tail = [slice(None)] * V.ndim
    head[axis], tail[axis] = slice(0, r), slice(n - r, n)
    return xp.concat(
        [xp.flip(V[tuple(head)], axis=axis), V, xp.flip(V[tuple(tail)], axis=axis)], axis=axis
    )


def median_filter_axes(V: Any, xp: Any, size: int, axes: tuple[int, ...]) -> Any:
    """Median filter of ``V`` over a ``size``-wide window on ``axes`` (reflecting edges)."""
    if size <= 1:
        return V
    r = size // 2
    P = V
    for ax in axes:
        P = reflect_pad(P, xp, ax, r)
    shifts = [()]
    for _ in axes:
        shifts = [(*s, t) for s in shifts for t in range(2 * r + 1)]
    stack = []
    for shift in shifts:
        sl = [slice(None)] * V.ndim
        for ax, t in zip(axes, shift, strict=True):
            sl[ax] = slice(t, t + V.shape[ax])
        stack.append(P[tuple(sl)])
    S = xp.sort(xp.stack(stack, axis=0), axis=0)
    return S[len(stack) // 2, ...]
