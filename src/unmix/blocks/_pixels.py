"""``X`` in memory with its weights and mask, cut into pixel blocks.

The data side of the one data pass (DESIGN.md section 2): a solver's kernel reads
``X_b`` through :meth:`PixelData.x` / :meth:`PixelData.x_times` /
:meth:`PixelData.t_times`, so the same solver code runs on in-memory, streamed
(:mod:`unmix.blocks._streamed`) and compressed (:mod:`unmix.blocks._lowrank`) data.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Backend, to_numpy
from .._linalg import svd_blocks, svd_topk
from ..executors.base import Block, SerialExecutor

__all__ = ["MeanFilled", "PixelData", "RowScaled", "Weights", "default_block_size"]


def default_block_size(
    n_pixels: int, n_channels: int, be: Backend, *, row: int = 1, streamed: bool = False
) -> int:
    """Pixels a block: about 8 MB of ``X`` on CPU (cache/BLAS friendly), all on a GPU.

    Data streamed to a GPU from the host or a file (``device=``) come in blocks of about
    64 MB: large enough for full-speed copies and kernels, small enough to double-buffer.
    Rounded to whole scan lines of ``row`` pixels.
    """
    on_device = be.name != "numpy" and str(be.device) != "cpu"
    if on_device and not streamed:
        return n_pixels
    itemsize = 4 if str(be.dtype).endswith("32") else 8
    target = (64 << 20) if on_device else (8 << 20)
    rows = max(256, target // max(1, n_channels * itemsize))
    if row > 1:
        rows = max(row, (rows // row) * row)
    return min(n_pixels, rows)


@dataclass(frozen=True)
class Weights:
    """Per-entry weights of the loss: separable per pixel / per channel, or full.

    The weight of entry ``(i, j)`` is ``pixels[i] * channels[j] * full[i, j]`` (missing
    parts are 1).  A ``mask`` passed to :func:`unmix.factorize` multiplies it (0 = missing).

    Parameters
    ----------
    pixels : array (n_pixels,), optional
    channels : array (n_channels,), optional
    full : array (n_pixels, n_channels), optional
    """

    pixels: Any = None
    channels: Any = None
    full: Any = None


class PixelData:
    """``X`` with its weights and mask, cut into pixel blocks (in memory).

    Parameters
    ----------
    X : array (n_pixels, n_channels)
        The data, already validated (floating dtype).
    be : Backend
    block_size : int
        Pixels a block.
    weights : Weights, optional
    mask : bool array (n_pixels, n_channels), optional
        True where observed.
    """

    def __init__(
        self,
        X: Any,
        be: Backend,
        *,
        block_size: int,
        weights: Weights | None = None,
        mask: Any = None,
        executor: Any = None,
        n_total: int | None = None,
    ) -> None:
        self.X = X
        self.be = be
        self.executor = executor or SerialExecutor()
        self.n_pixels, self.n_channels = (int(s) for s in X.shape)
        self.n_total = self.n_pixels if n_total is None else int(n_total)
        self.block_size = max(1, int(block_size))
        n_blocks = math.ceil(self.n_pixels / self.block_size)
        self.blocks = [
            Block(i, i * self.block_size, min(self.n_pixels, (i + 1) * self.block_size))
            for i in range(n_blocks)
        ]
        w = weights or Weights()
        self.pixel_w = None if w.pixels is None else be.xp.reshape(w.pixels, (-1, 1))
        self.channel_w = None if w.channels is None else be.xp.reshape(w.channels, (1, -1))
        self.full_w = w.full
        self.mask = mask

    @property
    def elementwise(self) -> bool:
        """True when weights/mask are not separable (need per-entry work)."""
        return self.full_w is not None or self.mask is not None

    @property
    def weighted(self) -> bool:
        return self.elementwise or self.pixel_w is not None or self.channel_w is not None

    def raw(self, block: Block) -> Any:
        """``X_b`` as given (missing entries not zeroed)."""
        return self.X[block.slice, :]

    def x(self, block: Block) -> Any:
        """``X_b``; missing entries (mask False) read as 0."""
        Xb = self.X[block.slice, :]
        if self.mask is not None:
            Xb = self.be.xp.where(self.mask[block.slice, :], Xb, 0.0)
        return Xb

    def w(self, block: Block) -> Any:
        """Entry weights of the block (None when all ones); mask included."""
        W = self.entry_w(block)
        if self.pixel_w is not None:
            pw = self.pixel_w[block.slice, :]
            W = pw if W is None else W * pw
        return W

    def entry_w(self, block: Block) -> Any:
        """The block's weights but the pixel weights: full weights, mask and channel
        weights (None when all ones); the weights inside a pixel's norm."""
        xp = self.be.xp
        W = None
        if self.full_w is not None:
            W = self.full_w[block.slice, :]
        if self.mask is not None:
            m = xp.astype(self.mask[block.slice, :], self.be.dtype)
            W = m if W is None else W * m
        if self.channel_w is not None:
            W = self.channel_w if W is None else W * self.channel_w
        return W

    def pw(self, block: Block) -> Any:
        """Pixel weights of the block as a column (None when absent)."""
        return None if self.pixel_w is None else self.pixel_w[block.slice, :]

    def x_times(self, block: Block, M: Any) -> Any:
        """``X_b @ M`` for a small ``M`` (channels, k)."""
        return self.x(block) @ M

    def t_times(self, block: Block, Aw: Any) -> Any:
        """``Aw^T @ X_b`` for the block's (weighted) maps ``Aw`` (n_b, k)."""
        return Aw.T @ self.x(block)

    def reduce(self, value: Any) -> Any:
        """Sum over the processes that share the pixels (identity when serial)."""
        return self.executor.allreduce(value)

    #: this process's ``(sum X, sum W X^2)`` from the first pass over ``X``, when it made
    #: them (:meth:`note_block`; no mask): :meth:`mean` and :meth:`norm2` without a pass
    _pass_sums: tuple[float, float] | None = None

    def note_block(self, block: Block, Xb: Any, sums: list[float]) -> None:
        """Add block ``Xb``'s sum and ``sum W X_b^2`` to ``sums`` (computed as :meth:`mean`
        and :meth:`norm2` do, so the cached totals are the same numbers)."""
        sums[0] += float(self.be.xp.sum(self.be.acc(Xb)))
        sums[1] += float(self.be.acc(self._sq(block, Xb)))

    def keep_pass_sums(self, sums: list[float]) -> None:
        """Keep the totals :meth:`note_block` summed over every block (not with a mask:
        :meth:`mean` then counts the observed entries)."""
        if self.mask is None:
            self._pass_sums = (float(sums[0]), float(sums[1]))

    def mean(self) -> float:
        """Mean of the observed entries of ``X`` (all processes)."""
        xp, be = self.be.xp, self.be
        if self.mask is None and self._pass_sums is not None:
            total = self._pass_sums[0]
        else:
            total = sum(float(xp.sum(be.acc(self.x(b)))) for b in self.blocks)
        count = self.n_pixels * self.n_channels
        if self.mask is not None:
            count = int(xp.sum(xp.astype(self.mask, xp.int64)))
        total, count = self.reduce(np.array([total, float(count)]))
        return float(total) / max(float(count), 1.0)

    def svd(self, k: int, rng: Any, n_iter: int = 2, *, exact: bool = False) -> tuple:
        """Leading ``k`` singular triplets of ``X`` (missing entries set to the mean).

        A randomized SVD through the data pass (:func:`unmix._linalg.svd_blocks`), the
        same for in-memory and streamed data; ``exact=True`` (the SVD solver) uses LAPACK
        on small in-memory data.
        """
        small = min(self.n_total, self.n_channels) <= 4 * (k + 10)
        local = not self.executor.distributed and self.in_memory
        if local and (self.mask is not None or (exact and small)):
            X = self.X if self.mask is None else self.be.xp.where(self.mask, self.X, self.mean())
            return svd_topk(X, k, self.be, rng=rng, n_iter=n_iter)
        view = self if self.mask is None else MeanFilled(self, self.mean())
        return svd_blocks(view, k, self.be, rng=rng, n_iter=n_iter, executor=self.executor)

    @property
    def in_memory(self) -> bool:
        """True when ``X`` is an array in memory (not streamed, not compressed)."""
        return True

    def rows(self, index: Any) -> Any:
        """Selected pixels' spectra, shape (len(index), channels)."""
        return self.be.xp.stack([self.X[int(i), :] for i in index], axis=0)

    def weight_total(self) -> float:
        """Sum of the pixel weights (the number of pixels when unweighted)."""
        if self.pixel_w is None:
            return float(self.n_total)
        return float(self.reduce(float(self.be.xp.sum(self.be.acc(self.pixel_w)))))

    def weighted_view(self) -> Any:
        """``diag(sqrt(w)) X`` through the product interface (for weighted SVDs)."""
        return RowScaled(self) if self.pixel_w is not None else self

    def zero_share(self) -> float:
        """Share of the entries of ``X`` that are zero (all processes)."""
        _, _, nonzero = self.count_sums()
        return 1.0 - nonzero / max(float(self.n_total) * float(self.n_channels), 1.0)

    def count_sums(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``(pixel sums, channel sums, nonzero entries)`` of ``X`` in one pass, cached:
        this process's pixels, every channel and the count over all processes (float64,
        NumPy).  What the KL start needs to decide and to scale (``init="poisson"``)."""
        if getattr(self, "_count_sums", None) is None:
            rows, cols, nonzero = [], np.zeros(self.n_channels), 0.0
            for b in self.blocks:
                r, c, nz = self._block_sums(b)
                rows.append(r)
                cols += c
                nonzero += nz
            total = np.asarray(self.reduce(np.append(cols, nonzero)), dtype=np.float64)
            pixel = np.concatenate(rows) if rows else np.zeros(0)
            self._count_sums = (pixel, total[:-1], float(total[-1]))
        return self._count_sums

    def _block_sums(self, block: Block) -> tuple[np.ndarray, np.ndarray, float]:
        Xb = to_numpy(self.x(block))
        return (
            Xb.sum(axis=1, dtype=np.float64),
            Xb.sum(axis=0, dtype=np.float64),
            float(np.count_nonzero(Xb)),
        )

    def norm2(self) -> float:
        """``sum W X^2`` over all blocks, in float64; computed once and cached.

        Once :meth:`row_norm2` is cached (a copy made by :meth:`with_pixel_weights`
        shares it), ``sum_i w_i ||x_i||^2`` from it without a pass.
        """
        if getattr(self, "_norm2", None) is None:
            be = self.be
            rows = getattr(self, "_rows2", None)
            if rows is not None:
                pw = self.pixel_w
                local = float(be.xp.sum(rows if pw is None else rows * be.acc(pw)))
            elif self._pass_sums is not None:
                local = self._pass_sums[1]
            else:
                local = sum(float(be.acc(self.sq_norm(b))) for b in self.blocks)
            self._norm2 = float(self.reduce(local))
        return self._norm2

    def row_norm2(self) -> Any:
        """``||x_i||^2`` of every pixel with the weights inside the norm (:meth:`entry_w`),
        a column (n_pixels, 1) in the accumulation dtype; one pass, cached."""
        if getattr(self, "_rows2", None) is None:
            be, xp = self.be, self.be.xp
            rows = xp.zeros((self.n_pixels, 1), dtype=be.acc_dtype, device=be.device)
            for b in self.blocks:
                Xb = be.acc(self.x(b))
                W = self.entry_w(b)
                sq = Xb * Xb if W is None else be.acc(W) * Xb * Xb
                rows[b.slice, :] = xp.sum(sq, axis=1, keepdims=True)
            self._rows2 = rows
        return self._rows2

    def norm21(self) -> float:
        """``sum_i w_i ||x_i||`` (the l2,1 norm of ``X``, weights as in :meth:`row_norm2`
        and the pixel weights ``w_i`` outside), all processes; cached."""
        if getattr(self, "_norm21", None) is None:
            be, xp = self.be, self.be.xp
            r = xp.sqrt(self.row_norm2())
            pw = self.pixel_w
            self._norm21 = float(self.reduce(float(xp.sum(r if pw is None else r * be.acc(pw)))))
        return self._norm21

    def with_pixel_weights(self, factors: Any) -> PixelData:
        """A shallow copy whose pixel weights are this data's times ``factors`` (a column
        (n_pixels, 1), working dtype): the reweighted data of an l2,1 fit.

        The copy shares ``X``, the mask and the other weights; what depends on the pixel
        weights (:meth:`norm2`, :meth:`norm21`) is recomputed for it, from the cached
        :meth:`row_norm2` without a pass.  Make it between passes (streamed data: no
        block read ahead is pending then).
        """
        rows = self.row_norm2()
        new = copy.copy(self)
        new.pixel_w = factors if self.pixel_w is None else self.pixel_w * factors
        new._norm2, new._norm21, new._rows2, new._pass_sums = None, None, rows, None
        return new

    def sq_norm(self, block: Block) -> Any:
        """``sum W X_b^2`` over the block (0-d array)."""
        return self._sq(block, self.x(block))

    def _sq(self, block: Block, Xb: Any) -> Any:
        W = self.w(block)
        return self.be.xp.sum(Xb * Xb if W is None else W * Xb * Xb)


class RowScaled:
    """``diag(sqrt(w)) X`` for the randomized SVD: blocks and products only."""

    def __init__(self, data: PixelData) -> None:
        self.data, self.blocks = data, data.blocks
        self.n_pixels, self.n_channels = data.n_pixels, data.n_channels
        self.n_total = data.n_total
        self.be, self.executor = data.be, data.executor
        self._r = self.be.xp.sqrt(data.pixel_w)

    def x_times(self, block: Block, M: Any) -> Any:
        return self._r[block.slice, :] * self.data.x_times(block, M)

    def t_times(self, block: Block, Aw: Any) -> Any:
        return self.data.t_times(block, Aw * self._r[block.slice, :])


class MeanFilled:
    """``X`` with its missing entries set to ``fill``, through the product interface.

    For the SVD of masked data split over processes (each process its rows).
    """

    def __init__(self, data: PixelData, fill: float) -> None:
        self.data, self.blocks, self.fill = data, data.blocks, fill
        self.n_pixels, self.n_channels = data.n_pixels, data.n_channels
        self.n_total = data.n_total
        self.be, self.executor = data.be, data.executor

    def _x(self, block: Block) -> Any:
        d = self.data
        return d.be.xp.where(d.mask[block.slice, :], d.raw(block), self.fill)

    def x_times(self, block: Block, M: Any) -> Any:
        return self._x(block) @ M

    def t_times(self, block: Block, Aw: Any) -> Any:
        return Aw.T @ self._x(block)
