"""The gradient solver's KL terms at the cost of the nonzeros of ``X``.

Counts at low dose are mostly zeros (the TEM EDS map: 99.7 %).  With the KL divergence
(``beta = 1``), the identity link and no weights but pixel weights ``w`` (each pixel's
sums below times its weight), every zero entry of ``X`` adds to the
divergence only the model's own value ``y`` (``d(0 | y) = y``), to its gradient in ``y``
the constant 1 and nothing to its curvature ``x / y^2``.  So each sum the solver needs
splits into a dense part that is a plain reduction of the model (``sum y``, ``sum of the
step``, ``1 @ S^T``) and a part over the nonzeros alone::

    sum_j d(x_ij | y_ij) = sum_j y_ij - sum_j x_ij + sum_(j: x_ij > 0) x_ij log(x_ij / y_ij)
    (1 - X / Y) @ S^T    = 1 (S 1)^T - Q @ S^T,      Q = X / Y on the nonzeros
    curvature            = X / Y^2, a sparse matrix with the pattern of X

:func:`block_x` gives the solver each block as SciPy CSR where that pays (sparse ``X``:
its own rows; a dense NumPy block: when :func:`counts_view` finds it at most
:data:`MAX_DENSITY` nonzero); the ``*_sums`` and ``*_times`` functions below take either
a dense block or CSR and give the same numbers as the dense formulas of
:mod:`._gradient_steps` (up to the order of summation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ...blocks import StreamedData, entry_rows, with_data
from ._gradient_steps import (
    curvature_Y,
    divergence_change,
    divergence_rows,
    gradient_Y,
    log_ratio,
)

__all__ = [
    "MAX_DENSITY",
    "block_x",
    "change_sums",
    "counts_view",
    "curvature",
    "curvature_Z",
    "divergence_sums",
    "grad_S",
    "grad_maps",
    "left_times",
]

#: the largest share of nonzero entries at which a dense block is worked on as CSR
MAX_DENSITY = 0.1


def _kl_counts(beta: float, identity: bool, W: Any, trust: Any) -> bool:
    """Whether the model's terms may be summed over the nonzeros of ``X``: KL, the
    identity link, no weights but pixel weights (a column), no trust region."""
    return beta == 1 and identity and _pixel_column(W) and trust is None


def _pixel_column(W: Any) -> bool:
    """Whether ``W`` is None or pixel weights alone: a (pixels, 1) NumPy column."""
    return W is None or (isinstance(W, np.ndarray) and W.ndim == 2 and W.shape[1] == 1)


def _w(W: Any, dtype: Any) -> Any:
    """The pixel weights of a CSR block's ``W`` as a vector of ``dtype`` (the block's:
    float32 stays float32; None: all ones)."""
    return None if W is None else np.asarray(W[:, 0], dtype=dtype)


def _per_row(values: Any, w: Any) -> Any:
    """Per-pixel sums ``values`` times the pixel weights ``w`` (None: as they are)."""
    return values if w is None else values * w


def counts_view(X: Any, *, beta: float, identity: bool, W: Any, trust: Any) -> Any:
    """``X`` as a CSR array when the KL terms may be summed over its nonzeros (KL, the
    identity link, no weights but pixel weights, no trust region, a NumPy block at most
    :data:`MAX_DENSITY` nonzero); else ``X`` itself."""
    if not _kl_counts(beta, identity, W, trust):
        return X
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.size == 0:
        return X
    if np.count_nonzero(X) > MAX_DENSITY * X.size:
        return X
    return sp.csr_array(X)


def block_x(p: Any, block: Any, Wb: Any, state: dict) -> Any:
    """The block of ``X`` the gradient solver works on: CSR for KL counts by their
    nonzeros (:func:`counts_view`; sparse ``X``: its CSR rows, never densified), else
    ``p.data.x(block)``.  Each block is judged once; a CSR view is kept for the next
    passes unless ``X`` is streamed from a file (then read and converted again)."""
    kept = state["by_block"]
    if block.index in kept:  # None: dense, read as usual
        view = kept[block.index]
        return p.data.x(block) if view is None else view
    args = {"beta": p.loss.beta, "identity": p.link.is_identity, "W": Wb, "trust": state["trust"]}
    if getattr(p.data, "sparse", False) and _kl_counts(**args):
        view = p.data.csr(block)
    else:
        view = counts_view(p.data.x(block), **args)
    if not sp.issparse(view):
        kept[block.index] = None
    elif not isinstance(p.data, StreamedData):
        kept[block.index] = view
    return view


def divergence_sums(beta: float, X: Any, Y: Any, W: Any, axis: int, *, be: Any) -> Any:
    """``sum d_beta(X | Y)`` over ``axis`` (1: each pixel's, 0: each channel's)."""
    if not sp.issparse(X):
        if axis == 1:
            return divergence_rows(beta, X, Y, W, be=be, tiny=be.tiny)
        return divergence_rows(beta, X.T, Y.T, None if W is None else W.T, be=be, tiny=be.tiny)
    Yc = np.maximum(Y, be.tiny)
    rows, x, w = entry_rows(X), X.data, _w(W, Y.dtype)
    logs = x * np.log(np.maximum(x, be.tiny) / Yc[rows, X.indices])
    if axis == 1:
        return _per_row(np.sum(Yc, axis=1, dtype=np.float64) + _by(X, rows, 1, logs - x), w)
    dense = np.sum(Yc if w is None else w[:, None] * Yc, axis=0, dtype=np.float64)
    return dense + _by(X, rows, 0, _per_row(logs - x, None if w is None else w[rows]))


def change_sums(
    beta: float, X: Any, Y0: Any, Y1: Any, W: Any, axis: int, *, be: Any, step: Any = None
) -> Any:
    """``sum (d_beta(X | Y1) - d_beta(X | Y0))`` over ``axis``, formed as a difference
    (:func:`divergence_change`).  For CSR ``X``, ``step`` may give the sums of
    ``w (Y1 - Y0)`` over ``axis`` from the factors (``w`` the pixel weights, 1 without;
    e.g. ``(A1 - A0) S 1`` for the rows of an unweighted model ``A S``: exact, without a
    pass over the block)."""
    if not sp.issparse(X):
        D = divergence_change(beta, X, Y0, Y1, W, be=be, tiny=be.tiny)
        return be.acc(be.xp.sum(D, axis=axis))
    rows = entry_rows(X)
    y0 = np.maximum(Y0[rows, X.indices], be.tiny)
    y1 = np.maximum(Y1[rows, X.indices], be.tiny)
    r = log_ratio(y1 - y0, y0, y1, xp=np)  # log(Y1 / Y0)
    w = _w(W, Y1.dtype)
    if step is None:
        dY = np.maximum(Y1, be.tiny) - np.maximum(Y0, be.tiny)
        step = np.sum(dY if w is None else w[:, None] * dY, axis=axis)
    logs = X.data * r if w is None else X.data * r * w[rows]
    return np.asarray(step, dtype=np.float64) - _by(X, rows, axis, logs)


def grad_maps(beta: float, X: Any, Y: Any, W: Any, fp: Any, S: Any, *, be: Any, floor: float):
    """The data term's gradient in the maps, ``(d'_beta(X | Y) f'(Z)) @ S^T``."""
    if not sp.issparse(X):
        return (gradient_Y(beta, X, Y, W, be=be, floor=floor) * fp) @ S.T
    ones = np.sum(S, axis=1)[None, :]
    return (ones if W is None else W * ones) - _ratio(X, Y, floor, 1, W) @ S.T


def grad_S(beta: float, X: Any, Y: Any, W: Any, fp: Any, A: Any, *, be: Any, floor: float):
    """The data term's gradient in the endmembers, ``A^T (d'_beta(X | Y) f'(Z))``."""
    if not sp.issparse(X):
        return A.T @ (gradient_Y(beta, X, Y, W, be=be, floor=floor) * fp)
    ones = np.sum(A if W is None else W * A, axis=0)[:, None]
    return ones - (_ratio(X, Y, floor, 1, W).T @ A).T


def curvature(beta: float, X: Any, Y: Any, W: Any, *, be: Any, floor: float) -> Any:
    """The divergence's diagonal curvature in ``Y`` (:func:`curvature_Y`); for
    CSR ``X`` the sparse ``X / Y^2``."""
    if not sp.issparse(X):
        return curvature_Y(beta, X, Y, W, be=be, floor=floor)
    return _ratio(X, Y, floor, 2, W)


def curvature_Z(p: Any, X: Any, Y: Any, W: Any, fp: Any, floor: float) -> Any:
    """The curvature of ``p``'s divergence in ``Z`` (Gauss-Newton: ``h(Y) f'(Z)^2``, with
    ``fp = f'(Z)`` of the link), the block's shape; None for unweighted Frobenius with the
    identity link (all ones)."""
    h = curvature(p.loss.beta, X, Y, W, be=p.be, floor=floor)
    if not p.link.is_identity:
        h = fp * fp if h is None else h * (fp * fp)
    if h is not None and tuple(h.shape) != tuple(Y.shape):
        h = h * p.be.xp.ones_like(Y)
    return h


def left_times(M: Any, h: Any) -> Any:
    """``M^T @ h`` for a dense or sparse ``h``."""
    return (h.T @ M).T if sp.issparse(h) else M.T @ h


def _ratio(X: Any, Y: Any, floor: float, power: int, W: Any = None) -> Any:
    """``W X / max(Y, floor)^power`` on the nonzeros of CSR ``X`` (its pattern; ``W``
    pixel weights, a column, or None)."""
    rows = entry_rows(X)
    y = np.maximum(Y[rows, X.indices], floor)
    values = X.data / (y if power == 1 else y**power)
    return with_data(X, values if W is None else values * _w(W, values.dtype)[rows])


def _by(X: Any, rows: Any, axis: int, values: Any) -> Any:
    """Sums of ``values`` (one a stored entry of CSR ``X``, whose rows are ``rows``) over
    ``axis`` (1: a pixel each, 0: a channel each)."""
    index, size = (rows, X.shape[0]) if axis == 1 else (X.indices, X.shape[1])
    return np.bincount(index, weights=values, minlength=size)
