"""Sparse ``X`` in the selection: every quantity from the stored entries (private).

A SciPy or pydata/sparse ``X`` (pixels, channels) enters :func:`~unmix.selection.select_rank`
as CSR (:func:`unmix.blocks.as_csr_rows`) and is never made dense: the fits read it through
:class:`unmix.blocks.SparsePixelData`'s products, SPA starts read its rows, the criteria its
sums and Gram matrix.

Held-out entries cannot be a list of ``n m / q`` coordinates (that is a dense temporary),
so for sparse ``X`` they are a union of blocks: pixels and channels are each dealt into
``q`` seeded groups and fold ``f`` holds out pixel group ``a`` times channel group
``b(a)``.  ``holdout="blocks"`` is Owen & Perry's single block (``b(a)`` defined for one
``a``, exactly the dense pattern); ``holdout="entries"`` becomes the *Latin* pattern
``b(a) = (f - a) mod q``: every pixel and every channel has ``1/q`` of its entries held out,
each entry lies in exactly one of the ``q`` folds, like the dense speckled pattern.  On
such a pattern every sum the masked fit needs has a closed form: with ``G_b = S_b S_b^T``
(the endmembers restricted to channel group ``b``),

- ``sum_H (A S)_ij^2 = sum_a tr(A_a^T A_a G_b(a))``;
- ``(Z S^T)_i = A_i G_b(a) - (X_H S^T)_i`` for the residual ``Z = A S - X`` on ``H``;
- the rest from the held-out stored entries ``X_H`` alone,

so a held-out fit costs ``O(nnz k + (n + m) k^2)`` per iteration, like a plain one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._backend import Backend, backend_of
from ..blocks import as_csr_rows, check_sparse_finite, entry_rows, is_sparse
from ._plan import HoldoutSpec, holdout_groups

__all__ = [
    "BlockHoldout",
    "as_sparse_input",
    "data_backend",
    "dense_rows",
    "is_sparse",
    "laplace_gram",
    "residual_sse_sparse",
    "row_sq_norms",
    "spa_rows",
    "sparse_is_counts",
    "sparse_signature",
]


def data_backend(X: Any) -> Backend:
    """The backend of ``X``; for sparse ``X`` NumPy with its dtype (fitted on the host)."""
    if is_sparse(X):
        return backend_of(np.empty((0, 0), dtype=X.dtype))
    return backend_of(X)


def as_sparse_input(X: Any) -> sp.csr_array:
    """Sparse ``X`` as CSR (float32 stays float32, integers become float32), its stored
    NaN/Inf refused."""
    X = as_csr_rows(X)
    check_sparse_finite(X)
    return X


def row_sq_norms(X: sp.csr_array) -> np.ndarray:
    """``sum_j X_ij^2`` per pixel (float64), from the stored entries."""
    v = np.asarray(X.data, dtype=np.float64)
    return np.bincount(entry_rows(X), weights=v * v, minlength=X.shape[0])


def sparse_is_counts(X: sp.csr_array) -> bool:
    """:func:`unmix.preprocessing.is_counts` from the stored entries: all non-negative
    integers and not all zero."""
    d = X.data
    if d.size and (d.min() < 0 or not np.all(np.mod(d, 1) == 0)):
        return False
    return bool(np.any(d > 0))


def sparse_signature(X: sp.csr_array) -> str:
    """The checkpoint's fingerprint of sparse ``X`` (shape, dtype, sums, stored entries)."""
    n = X.shape[0]
    step = max(1, n // 64)
    rows = np.bincount(entry_rows(X), weights=X.data, minlength=n)[::step]
    total = float(np.sum(X.data, dtype=float))
    head = f"csr{tuple(X.shape)}:{X.dtype}:{X.nnz}:{total:.17g}:"
    return head + ",".join(f"{float(v):.12g}" for v in rows)


def residual_sse_sparse(X: sp.csr_array, A: Any, S: Any) -> float:
    """``||X - A S||_F^2`` by the Gram identity, from the stored entries of ``X``."""
    A64 = np.asarray(A, dtype=np.float64)
    S64 = np.asarray(S, dtype=np.float64)
    v = np.asarray(X.data, dtype=np.float64)
    xx = float(v @ v)
    cross = float(np.sum(np.asarray(X.T @ A64).T * S64))
    quad = float(np.sum(((A64.T @ A64) @ S64) * S64))
    return max(xx - 2.0 * cross + quad, 0.0)


def laplace_gram(X: sp.csr_array) -> tuple[np.ndarray, int, int]:
    """The smaller Gram matrix of ``X`` (``X^T X`` or ``X X^T``, dense, float64) with
    ``N`` (pixels) and ``d`` (channels), for Minka's evidence."""
    N, d = X.shape
    X64 = X.astype(np.float64)
    G = (X64.T @ X64) if N >= d else (X64 @ X64.T)
    coo = sp.coo_array(G)
    out = np.zeros(coo.shape)
    np.add.at(out, (coo.row, coo.col), coo.data)
    return out, N, d


# ------------------------------------------------------------------ SPA starts
def _fill_rows(X: sp.csr_array, fill: tuple[np.ndarray, np.ndarray] | None) -> tuple:
    """Per-pixel fill ids and the fill table (row 0 zeros) of an imputed ``X``."""
    if fill is None:
        return np.zeros(X.shape[0], dtype=np.int64), np.zeros((1, X.shape[1]))
    return fill


def dense_rows(
    X: sp.csr_array, idx: Any, fill: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Rows ``idx`` of ``X`` (plus their fill) as a dense float64 array (k, channels)."""
    ids, table = _fill_rows(X, fill)
    idx = np.asarray(idx, dtype=np.int64)
    out = table[ids[idx]].astype(np.float64, copy=True)
    for r, i in enumerate(idx):
        p0, p1 = X.indptr[i], X.indptr[i + 1]
        out[r, X.indices[p0:p1]] += X.data[p0:p1]
    return out


def spa_rows(
    X: sp.csr_array,
    k: int,
    allowed: np.ndarray | None = None,
    fill: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`._plan.spa_pixels` on ``X + F`` without forming it: ``X`` CSR, ``F`` the
    fill (``fill = (ids, table)``: pixel ``i`` adds ``table[ids[i]]``, on entries where
    ``X`` stores nothing).  The same picks as the dense function up to rounding."""
    ids, table = _fill_rows(X, fill)
    n = X.shape[0]
    rows = entry_rows(X)
    v = np.asarray(X.data, dtype=np.float64)
    sums = np.bincount(rows, weights=v, minlength=n) + table.sum(axis=1)[ids]
    div = sums if np.all(sums > 0) else np.ones(n)  # pixels to unit sum (the simplex)
    y = v / div[rows]
    Ys = sp.csr_array((y, X.indices, X.indptr), shape=X.shape)
    norms = np.bincount(rows, weights=y * y, minlength=n) + (
        np.sum(table * table, axis=1)[ids] / (div * div)
    )
    ok = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    picked: list[int] = []
    basis = np.zeros((0, X.shape[1]))
    for _ in range(k):
        score = np.where(ok, norms, -1.0)
        score[picked] = -np.inf
        j = int(np.argmax(score))
        picked.append(j)
        yj = dense_rows(Ys, [j])[0] + table[ids[j]] / div[j]
        r = yj - basis.T @ (basis @ yj)
        nr = float(np.linalg.norm(r))
        if nr > 0:
            u = r / nr
            basis = np.vstack([basis, u])
            proj = np.asarray(Ys @ u) + (table @ u)[ids] / div
            norms = np.maximum(norms - proj * proj, 0.0)
    return np.asarray(picked)


# ------------------------------------------------------------------ held-out blocks
class BlockHoldout:
    """Held-out entries of one model that are a union of pixel-group x channel-group
    blocks (see the module), for CSR ``X``; ``rows = (lo, hi)`` the pixels this process
    updates.  The counterpart of :class:`._plan.SparsePattern` for dense ``X``."""

    def __init__(self, X: sp.csr_array, spec: HoldoutSpec, rows: tuple[int, int]) -> None:
        n, m = X.shape
        rg, cg, pairs = holdout_groups(spec, n, m)
        self.n, self.m = n, m
        self.lo, self.hi = rows
        self.row_cg = np.where(pairs[rg] >= 0, pairs[rg], -1)  # held-out channel group
        er = entry_rows(X)
        held = self.row_cg[er] == cg[X.indices]
        self.x_all = np.asarray(X.data[held], dtype=np.float64)
        self.rows_all = er[held]
        # the held-out stored entries of this process's rows, CSR (n, m)
        mine = held & (er >= self.lo) & (er < self.hi)
        counts = np.bincount(er[mine], minlength=n)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        self.XH = sp.csr_array(
            (np.asarray(X.data[mine], dtype=np.float64), X.indices[mine], indptr), shape=(n, m)
        )
        self.h_rows = er[mine]
        self.nnz = int(self.XH.nnz)
        self.col_groups = {int(c): np.nonzero(cg == c)[0] for c in np.unique(pairs[pairs >= 0])}
        own = np.arange(self.lo, self.hi)
        self.row_groups = [
            (int(pairs[a]), own[rg[own] == a]) for a in range(pairs.size) if pairs[a] >= 0
        ]
        self.n_held = int(sum(r.size * self.col_groups[c].size for c, r in self.row_groups))
        self._fill: tuple | None = None
        self._X = X
        self._cg = cg

    # -- the start
    def fill(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out entries filled with the channel means of the observed ones, as
        ``(ids, table)`` for :func:`spa_rows` (what the dense fit's start does)."""
        if self._fill is None:
            X, n = self._X, self.n
            heldrows = np.zeros(self.m)  # held-out pixels per channel (all rows)
            counts = np.bincount(self.row_cg[self.row_cg >= 0], minlength=1)
            for c, cols in self.col_groups.items():
                heldrows[cols] = counts[c] if c < counts.size else 0
            colsum = np.bincount(X.indices, weights=X.data, minlength=self.m)
            colsum -= np.bincount(self._held_cols(), weights=self.x_all, minlength=self.m)
            obs = n - heldrows
            mu = np.where(obs > 0, colsum / np.maximum(obs, 1), 0.0)
            groups = sorted(self.col_groups)
            table = np.zeros((len(groups) + 1, self.m))
            for t, c in enumerate(groups, start=1):
                table[t, self.col_groups[c]] = mu[self.col_groups[c]]
            lookup = {c: t for t, c in enumerate(groups, start=1)}
            ids = np.array([lookup.get(int(c), 0) for c in range(-1, max(groups) + 1)])
            self._fill = (ids[self.row_cg + 1], table)
        return self._fill

    def _held_cols(self) -> np.ndarray:
        X = self._X
        er = entry_rows(X)
        held = self.row_cg[er] == self._cg[X.indices]
        return X.indices[held]

    def observed(self) -> sp.csr_array:
        """``X`` without its held-out stored entries (CSR)."""
        X = self._X
        er = entry_rows(X)
        keep = self.row_cg[er] != self._cg[X.indices]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(er[keep], minlength=self.n))])
        return sp.csr_array((X.data[keep], X.indices[keep], indptr), shape=X.shape)

    def held_sq(self, w: np.ndarray) -> float:
        """``sum_H w_i X_ij^2`` over every process's rows."""
        return float(np.sum(w[self.rows_all] * self.x_all * self.x_all))

    # -- the fit's sums
    def _grams(self, S: np.ndarray) -> dict[int, np.ndarray]:
        return {c: S[:, cols] @ S[:, cols].T for c, cols in self.col_groups.items()}

    def _model_at(self, At: np.ndarray, S: np.ndarray) -> np.ndarray:
        """``(A S)`` at the held-out stored entries (this process's rows)."""
        if not self.nnz:
            return np.zeros(0)
        return np.einsum("ki,ki->i", At[:, self.h_rows], S[:, self.XH.indices])

    def residual(self, At: Any, S: Any) -> tuple:
        """The held-out residual ``Z = A S - X`` at the current factors (kept as what
        makes it: a copy of ``A``, ``S`` and the residual at the stored entries)."""
        At = np.array(At, copy=True)
        return At, S, self._grams(np.asarray(S))

    def times(self, Z: tuple, St: Any) -> np.ndarray:
        """``(Z S^T)^T`` (k, n) for the residual ``Z`` and ``St = S^T`` of the same ``S``."""
        At, _, grams = Z
        out = np.zeros_like(At)
        for c, rows in self.row_groups:
            out[:, rows] = grams[c] @ At[:, rows]
        XS = np.asarray(self.XH @ np.asarray(St))  # (n, k)
        return out - XS.T.astype(out.dtype, copy=False)

    def t_times(self, Z: tuple, Aw_t: Any) -> np.ndarray:
        """``(Z^T Aw)^T`` (k, m) for maps ``Aw_t`` (k, n) (the new, weighted maps)."""
        At, S, _ = Z
        Aw_t = np.asarray(Aw_t)
        out = np.zeros((At.shape[0], self.m), dtype=np.float64)
        for c, rows in self.row_groups:
            M = Aw_t[:, rows] @ At[:, rows].T  # (k, k)
            cols = self.col_groups[c]
            out[:, cols] += M @ S[:, cols]
        return out - np.asarray(self.XH.T @ Aw_t.T).T

    def share(self, At: Any, S: Any, w: Any = None) -> float:
        """``sum_H w ((A S)^2 - 2 X (A S))`` over this process's held-out entries."""
        At64 = np.asarray(At, dtype=np.float64)
        grams = self._grams(np.asarray(S, dtype=np.float64))
        wv = None if w is None else np.asarray(w, dtype=np.float64)
        quad = 0.0
        for c, rows in self.row_groups:
            Ar = At64[:, rows]
            Q = (Ar if wv is None else Ar * wv[rows]) @ Ar.T
            quad += float(np.sum(Q * grams[c]))
        u = self._model_at(At64, np.asarray(S, dtype=np.float64))
        x = self.XH.data
        cross = float(np.sum(x * u if wv is None else wv[self.h_rows] * x * u))
        return quad - 2.0 * cross

    def sums(self, At: Any, S: Any) -> dict[str, float]:
        """Held-out ``sse`` (``sum_H (A S - X)^2``), ``ss`` (``sum_H X^2``) and ``n``
        (entries) over this process's rows."""
        ss = float(self.XH.data @ self.XH.data)
        sse = max(self.share(At, S) + ss, 0.0)
        return {"sse": sse, "ss": ss, "n": float(self.n_held)}
