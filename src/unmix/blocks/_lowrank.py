"""A truncated SVD standing in for ``X`` in the data pass (the compressed phase)."""

from __future__ import annotations

from typing import Any

from .._backend import Backend
from ..executors.base import Block
from ._pixels import PixelData

__all__ = ["LowRankData"]


class LowRankData(PixelData):
    """``X ~= U @ Vt`` (a truncated SVD) standing in for ``X`` in the data pass.

    Products cost ``O((n_b + channels) r k)`` instead of ``O(n_b channels k)``: the
    low-rank-approximation NMF of Zhou, Cichocki & Xie (2012).  Only the Frobenius
    solvers' product interface is available (no per-entry access, weights or masks).
    """

    def __init__(
        self,
        U: Any,
        s: Any,
        Vt: Any,
        be: Backend,
        *,
        block_size: int,
        executor: Any = None,
        n_total: int | None = None,
    ) -> None:
        self._U, self._s = U, s
        self.U, self.Vt = U * s[None, :], Vt
        super().__init__(self.U, be, block_size=block_size, executor=executor, n_total=n_total)
        self.n_channels = int(Vt.shape[1])

    @property
    def in_memory(self) -> bool:
        return False

    def x(self, block: Block) -> Any:
        raise NotImplementedError("compressed data has no per-entry access")

    def mean(self) -> float:
        xp = self.be.xp
        total = float(xp.sum(xp.sum(self.U, axis=0) * xp.sum(self.Vt, axis=1)))
        return float(self.reduce(total)) / (self.n_total * self.n_channels)

    def svd(self, k: int, rng: Any, n_iter: int = 2, *, exact: bool = False) -> tuple:
        return self._U[:, :k], self._s[:k], self.Vt[:k, :]

    def x_times(self, block: Block, M: Any) -> Any:
        return self.U[block.slice, :] @ (self.Vt @ M)

    def t_times(self, block: Block, Aw: Any) -> Any:
        return (Aw.T @ self.U[block.slice, :]) @ self.Vt

    def sq_norm(self, block: Block) -> Any:
        Ub = self.U[block.slice, :]
        return self.be.xp.sum(Ub * Ub)  # the rows of Vt are orthonormal
