"""The scan grid of the maps, for the terms that couple neighbouring pixels: its shape,
its scan lines, and this process's rows with the neighbours' lines (a halo exchange when
the pixels are split over processes)."""

from __future__ import annotations

import math
from typing import Any

from ._terms import BindContext

__all__ = ["grid_shape", "line_grid", "slab", "with_halo"]


def grid_shape(ctx: BindContext, owner: str) -> tuple[int, ...]:
    """The problem's scan grid ``spatial_shape``, checked against its pixels (the error
    names ``owner``, the term that needs it)."""
    shape = ctx.spatial_shape
    total = ctx.pixel_range[2]
    if shape is None:
        raise ValueError(
            f"{owner} needs the scan grid: pass spatial_shape=(rows, cols) to factorize "
            f"(X has {total} pixels)."
        )
    if math.prod(shape) != total:
        raise ValueError(
            f"{owner}: spatial_shape {tuple(shape)} has {math.prod(shape)} pixels but X has "
            f"{total} rows."
        )
    return tuple(int(s) for s in shape)


def slab(shape: tuple[int, ...]) -> int:
    """Pixels one step apart along the first axis of the grid (a scan line in 2-D)."""
    return math.prod(shape[1:])


def line_grid(shape: tuple[int, ...], n_pixels: int) -> tuple[int, ...]:
    """The grid shape of ``n_pixels`` consecutive pixels that are whole scan lines."""
    return (n_pixels // max(1, slab(shape)), *shape[1:])


def with_halo(ctx: BindContext, M: Any, width: int, line: int) -> tuple[Any, int]:
    """This process's rows of ``M`` with ``width`` scan lines of neighbours' rows each side.

    Returns the extended rows (whole lines of ``line`` pixels, clipped to the grid; see
    :func:`unmix._ops.line_window`) and the position of ``M``'s first row in them.  When
    serial ``M`` holds the whole grid and comes back as is.  Every process must call it
    (the exchange is collective).
    """
    if not ctx.distributed:
        return M, 0
    halo = getattr(ctx.executor, "halo", None)
    if halo is None:
        raise TypeError(
            f"{type(ctx.executor).__name__} cannot exchange neighbouring scan lines (no halo "
            "method); use unmix.mpi.MPIExecutor or run spatial terms serially."
        )
    above, below = halo(M, width, line)
    if above.shape[0] == 0 and below.shape[0] == 0:
        return M, 0
    xp = ctx.backend.xp
    return xp.concat([above, M, below], axis=0), int(above.shape[0])
