"""``D_r X D_c`` through the product interface: X scaled per pixel and per channel.

The Poisson scaling of Keenan & Kotula (2004) divides ``X`` (pixels, channels) by the
square roots of its pixel and channel means, ``X' = D_r X D_c`` with
``D_r = diag(1 / sqrt(mean_j X_ij))`` and ``D_c = diag(1 / sqrt(mean_i X_ij))``: for
Poisson counts the entries of ``X'`` then have about equal variance, so a Frobenius fit
of ``X'`` weighs them as the KL divergence of ``X`` does.  Mixing stays linear:
``X' = (D_r A)(S D_c)``.  :class:`ScaledData` answers the products of ``X'`` from those of
``X`` (dense, streamed or sparse), never forming ``X'``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..executors.base import Block
from ._sparse import entry_rows

__all__ = ["ScaledData", "curvature_scales", "poisson_scales"]


def poisson_scales(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(d_r, d_c)``: ``1 / sqrt`` of the pixel and channel means of ``X`` (0 where a
    mean is 0; this process's pixels, all channels; float64 NumPy), from the data's
    cached :meth:`~unmix.blocks.PixelData.count_sums` (no pass of its own)."""
    return curvature_scales(data, 1.0)


def curvature_scales(data: Any, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(d_r, d_c)`` for the beta-divergence: the pixel and channel means of ``X`` to the
    power ``(beta - 2) / 2`` (0 where a mean is 0), so that ``(d_r d_c)^2`` is, up to the
    overall mean, the divergence's curvature ``y^(beta - 2)`` at the independence model
    ``y_ij = r_i c_j / T``; KL (``beta = 1``): :func:`poisson_scales`."""
    rows, cols, _ = data.count_sums()
    power = 0.5 * (beta - 2.0)
    return _powered(rows / data.n_channels, power), _powered(cols / max(data.n_total, 1), power)


def _powered(mean: np.ndarray, power: float) -> np.ndarray:
    out = np.zeros_like(mean)
    pos = mean > 0
    out[pos] = 1.0 / np.sqrt(mean[pos]) if power == -0.5 else mean[pos] ** power
    return out


class ScaledData:
    """``X' = D_r X D_c`` (pixels, channels) of ``data``: blocks and products only.

    No weights and no mask (a start, not the fit); ``reduce`` and the executor are
    ``data``'s, so the pixels may be split over processes.
    """

    mask = None
    full_w = None
    pixel_w = None
    channel_w = None
    elementwise = False
    weighted = False
    in_memory = False

    def __init__(self, data: Any, d_rows: np.ndarray, d_cols: np.ndarray) -> None:
        self.data, self.blocks = data, data.blocks
        self.be, self.executor = data.be, data.executor
        self.n_pixels, self.n_channels = data.n_pixels, data.n_channels
        self.n_total = data.n_total
        be = self.be
        self._r = be.asarray(d_rows.reshape(-1, 1), dtype=be.dtype)
        self._c = be.asarray(d_cols.reshape(-1, 1), dtype=be.dtype)
        self._r64, self._c64 = d_rows, d_cols
        self._norm2: float | None = None

    def reduce(self, value: Any) -> Any:
        return self.data.reduce(value)

    def pw(self, block: Block) -> Any:
        return None

    def x_times(self, block: Block, M: Any) -> Any:
        return self._r[block.slice, :] * self.data.x_times(block, self._c * M)

    def t_times(self, block: Block, Aw: Any) -> Any:
        return self.data.t_times(block, Aw * self._r[block.slice, :]) * self._c.T

    def mean(self) -> float:
        """Mean of ``X'`` (all processes): ``d_r^T X d_c / (n m)``."""
        total = 0.0
        for b in self.blocks:
            Z = self.data.t_times(b, self._r[b.slice, :])  # (1, channels)
            total += float(self.be.xp.sum(self.be.acc(Z @ self._c)))
        return float(self.reduce(total)) / max(self.n_total * self.n_channels, 1)

    def svd(self, k: int, rng: Any, n_iter: int = 2, *, exact: bool = False) -> tuple:
        from .._linalg import svd_blocks

        return svd_blocks(self, k, self.be, rng=rng, n_iter=n_iter, executor=self.executor)

    def norm2(self) -> float:
        """``||X'||_F^2`` (all processes), computed once."""
        if self._norm2 is None:
            local = sum(self._sq_norm(b) for b in self.blocks)
            self._norm2 = float(self.reduce(local))
        return self._norm2

    def _sq_norm(self, block: Block) -> float:
        d_r, d_c = self._r64[block.slice], self._c64
        if getattr(self.data, "sparse", False):  # the stored entries only
            B = self.data.csr(block)
            rows = entry_rows(B)
            v = np.asarray(B.data, dtype=np.float64) * d_r[rows] * d_c[B.indices]
            return float(v @ v)
        xp = self.be.xp
        Xb = self.be.acc(self.data.x(block))
        Xs = Xb * self.be.asarray(d_r[:, None], dtype=Xb.dtype)
        Xs = Xs * self.be.asarray(d_c[None, :], dtype=Xb.dtype)
        return float(xp.sum(Xs * Xs))
