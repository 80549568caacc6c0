"""The gradient solver's KL terms at the cost of the nonzeros of ``X``.

Counts at low dose are mostly zeros (the TEM EDS map: 99.7 %).  With the KL divergence
(``beta = 1``), the identity link and no weights, every zero entry of ``X`` adds to the
divergence only the model's own value ``y`` (``d(0 | y) = y``), to its gradient in ``y``
the constant 1 and nothing to its curvature ``x / y^2``.  So each sum the solver needs
splits into a dense part that is a plain reduction of the model (``sum y``, ``sum of the
step``, ``1 @ S^T``) and a part over the nonzeros alone::

    sum_j d(x_ij | y_ij) = sum_j y_ij - sum_j x_ij + sum_(j: x_ij > 0) x_ij log(x_ij / y_ij)
    (1 - X / Y) @ S^T    = 1 (S 1)^T - Q @ S^T,      Q = X / Y on the nonzeros
    curvature            = X / Y^2, a sparse matrix with the pattern of X

:func:`counts_view` turns a dense NumPy block into :class:`Counts` (CSR arrays, the
row of every nonzero) where that pays; the ``*_sums`` and ``*_times`` functions below
take either a dense block or :class:`Counts` and give the same numbers as the dense
formulas of :mod:`._gradient_steps` (up to the order of summation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._gradient_steps import curvature_Y, divergence_change, divergence_rows, gradient_Y

__all__ = [
    "MAX_DENSITY",
    "Counts",
    "block_counts",
    "change_sums",
    "counts_view",
    "curvature",
    "divergence_sums",
    "grad_S",
    "grad_maps",
    "left_times",
]

#: the largest share of nonzero entries at which a block is worked on as :class:`Counts`
MAX_DENSITY = 0.1


@dataclass(frozen=True)
class Counts:
    """A block of counts by its nonzeros: ``x`` at ``(rows, cols)`` of a ``shape`` block
    (pixels, channels), row-major (CSR order)."""

    x: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]

    def __getitem__(self, key: Any) -> Counts:
        """The rows ``key[0]`` (an index array; the channels all kept), as ``M[idx, :]``."""
        idx = np.asarray(key[0] if isinstance(key, tuple) else key)
        starts, ends = self.indptr[idx], self.indptr[idx + 1]
        lengths = ends - starts
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
        take = take.astype(np.int64) if take.size else np.zeros(0, dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        rows = np.repeat(np.arange(idx.shape[0]), lengths)
        return Counts(self.x[take], rows, self.cols[take], indptr, (idx.shape[0], self.shape[1]))

    def at(self, M: np.ndarray) -> np.ndarray:
        """The entries of the dense ``M`` (the block's shape) at the nonzeros."""
        return M[self.rows, self.cols]

    def matrix(self, values: np.ndarray) -> sp.csr_matrix:
        """``values`` (one a nonzero) as a sparse matrix with this pattern."""
        return sp.csr_matrix((values, self.cols, self.indptr), shape=self.shape)

    def by(self, axis: int, values: np.ndarray) -> np.ndarray:
        """Sums of ``values`` (one a nonzero) over ``axis`` (1: a row each, 0: a column)."""
        index, size = (self.rows, self.shape[0]) if axis == 1 else (self.cols, self.shape[1])
        return np.bincount(index, weights=values, minlength=size)


def counts_view(X: Any, *, beta: float, identity: bool, W: Any, trust: Any) -> Any:
    """``X`` as :class:`Counts` when the KL terms may be summed over its nonzeros (KL, the
    identity link, no weights, no trust region, a NumPy block at most
    :data:`MAX_DENSITY` nonzero); else ``X`` itself."""
    if beta != 1 or not identity or W is not None or trust is not None:
        return X
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.size == 0:
        return X
    if np.count_nonzero(X) > MAX_DENSITY * X.size:
        return X
    rows, cols = np.nonzero(X)  # row-major: CSR order
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=X.shape[0]))])
    return Counts(X[rows, cols], rows, cols, indptr, X.shape)


def block_counts(p: Any, block: Any, Xb: Any, Wb: Any, state: dict) -> Any:
    """The gradient solver's view of a block (:func:`counts_view` with the problem's loss,
    link and trust region), kept in ``state`` for the next passes where ``X`` is a NumPy
    array in memory (not a file, a memory map or a stream: those are read again)."""
    kept, key = state.setdefault("counts", {}), (id(p.data), block.start)
    if key in kept:
        return kept[key]
    view = counts_view(
        Xb, beta=p.loss.beta, identity=p.link.is_identity, W=Wb, trust=state["trust"]
    )
    if view is not Xb and type(getattr(p.data, "X", None)) is np.ndarray:
        kept[key] = view
    return view


def divergence_sums(beta: float, X: Any, Y: Any, W: Any, axis: int, *, be: Any) -> Any:
    """``sum d_beta(X | Y)`` over ``axis`` (1: each pixel's, 0: each channel's)."""
    if not isinstance(X, Counts):
        if axis == 1:
            return divergence_rows(beta, X, Y, W, be=be, tiny=be.tiny)
        return divergence_rows(beta, X.T, Y.T, None if W is None else W.T, be=be, tiny=be.tiny)
    Yc = np.maximum(Y, be.tiny)
    x = X.x
    logs = x * np.log(np.maximum(x, be.tiny) / X.at(Yc))
    dense = np.sum(Yc, axis=axis, dtype=np.float64)
    return dense + X.by(axis, logs - x)


def change_sums(
    beta: float, X: Any, Y0: Any, Y1: Any, W: Any, axis: int, *, be: Any, step: Any = None
) -> Any:
    """``sum (d_beta(X | Y1) - d_beta(X | Y0))`` over ``axis``, formed as a difference
    (:func:`divergence_change`).  For :class:`Counts`, ``step`` may give the sums of
    ``Y1 - Y0`` over ``axis`` from the factors (e.g. ``(A1 - A0) S 1`` for the rows of a
    model ``A S``: exact, without a pass over the block)."""
    if not isinstance(X, Counts):
        D = divergence_change(beta, X, Y0, Y1, W, be=be, tiny=be.tiny)
        return be.acc(be.xp.sum(D, axis=axis))
    y0, y1 = np.maximum(X.at(Y0), be.tiny), np.maximum(X.at(Y1), be.tiny)
    fi = np.finfo(y0.dtype)
    low, big = -1.0 + 4.0 * float(fi.eps), float(fi.max) ** 0.5
    r = np.log1p(np.maximum((y1 - y0) / np.maximum(y0, y1 / big), low))  # log(Y1 / Y0)
    if step is None:
        step = np.sum(np.maximum(Y1, be.tiny) - np.maximum(Y0, be.tiny), axis=axis)
    return np.asarray(step, dtype=np.float64) - X.by(axis, X.x * r)


def grad_maps(beta: float, X: Any, Y: Any, W: Any, fp: Any, S: Any, *, be: Any, floor: float):
    """The data term's gradient in the maps, ``(d'_beta(X | Y) f'(Z)) @ S^T``."""
    if not isinstance(X, Counts):
        return (gradient_Y(beta, X, Y, W, be=be, floor=floor) * fp) @ S.T
    q = X.x / X.at(np.maximum(Y, floor))
    return np.sum(S, axis=1)[None, :] - X.matrix(q) @ S.T


def grad_S(beta: float, X: Any, Y: Any, W: Any, fp: Any, A: Any, *, be: Any, floor: float):
    """The data term's gradient in the endmembers, ``A^T (d'_beta(X | Y) f'(Z))``."""
    if not isinstance(X, Counts):
        return A.T @ (gradient_Y(beta, X, Y, W, be=be, floor=floor) * fp)
    q = X.x / X.at(np.maximum(Y, floor))
    return np.sum(A, axis=0)[:, None] - (X.matrix(q).T @ A).T


def curvature(beta: float, X: Any, Y: Any, W: Any, *, be: Any, floor: float) -> Any:
    """The divergence's diagonal curvature in ``Y`` (:func:`curvature_Y`); for
    :class:`Counts` the sparse ``X / Y^2``."""
    if not isinstance(X, Counts):
        return curvature_Y(beta, X, Y, W, be=be, floor=floor)
    return X.matrix(X.x / X.at(np.maximum(Y, floor)) ** 2)


def left_times(M: Any, h: Any) -> Any:
    """``M^T @ h`` for a dense or sparse ``h``."""
    return (h.T @ M).T if sp.issparse(h) else M.T @ h
