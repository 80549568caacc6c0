"""What one model of a batch is: rank, seed, bootstrap weights, held-out entries (private).

Everything here is deterministic in the seeds, so a worker process (or a resumed run)
rebuilds exactly the same held-out entries, bootstrap draw and starting point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import Backend, to_numpy

__all__ = [
    "FitRecord",
    "FitSpec",
    "HoldoutSpec",
    "SparsePattern",
    "bootstrap_weights",
    "holdout_entries",
    "holdout_groups",
    "spa_pixels",
]


@dataclass(frozen=True)
class HoldoutSpec:
    """Which entries of ``X`` a cross-validation fit does not see.

    ``kind="entries"``: a seeded permutation of all ``n*m`` entries split into ``n_folds``
    disjoint folds (Wold's speckled hold-out); ``kind="blocks"``: rows and channels are
    each split into ``n_folds`` groups and fold ``f`` holds out the block of row group
    ``f // n_folds`` times channel group ``f % n_folds`` (the bi-cross-validation pattern
    of Owen & Perry 2009, fitted with the mask instead of pseudo-inverses);
    ``kind="latin"`` (what ``"entries"`` becomes for sparse ``X``): rows and channels are
    each dealt into ``n_folds`` groups and fold ``f`` holds out row group ``a`` times
    channel group ``(f - a) mod n_folds`` for every ``a`` (``1 / n_folds`` of every row and
    every channel; see :func:`holdout_groups`).
    """

    kind: str
    n_folds: int
    fold: int
    seed: int


@dataclass(frozen=True)
class FitSpec:
    """One model of a batch: its name, rank, seed, pixel weights and hold-out."""

    key: str
    k: int
    seed: int
    bootstrap: bool = False
    holdout: HoldoutSpec | None = None


@dataclass
class FitRecord:
    """A finished model: factors (``A`` is None for hold-out fits) and its numbers."""

    key: str
    k: int
    A: Any
    S: Any
    objective: float
    n_iter: int
    stop_reason: str
    sse: float  # ||X - A S||_F^2 over every entry (NaN for hold-out fits)
    heldout_sse: float = float("nan")
    heldout_ss: float = float("nan")  # sum of X^2 over the held-out entries
    heldout_n: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def holdout_entries(spec: HoldoutSpec, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (sorted row-major) of the entries that ``spec`` holds out."""
    rng = np.random.default_rng(spec.seed)
    if spec.kind == "entries":
        perm = rng.permutation(n * m)
        flat = np.sort(perm[spec.fold % spec.n_folds :: spec.n_folds])
        return flat // m, flat % m
    if spec.kind == "blocks":
        q = spec.n_folds
        rg = rng.permutation(n) % q
        cg = rng.permutation(m) % q
        a, b = divmod(spec.fold % (q * q), q)
        rows = np.nonzero(rg == a)[0]
        cols = np.nonzero(cg == b)[0]
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        return rr.ravel(), cc.ravel()
    if spec.kind == "latin":
        rg, cg, pairs = holdout_groups(spec, n, m)
        by_group = {int(c): np.nonzero(cg == c)[0] for c in np.unique(pairs)}
        cols_of = [by_group[int(pairs[a])] for a in rg]
        rr = np.repeat(np.arange(n), [c.size for c in cols_of])
        return rr, np.concatenate(cols_of) if cols_of else np.zeros(0, dtype=np.int64)
    raise ValueError(f"holdout must be 'entries' or 'blocks'; got {spec.kind!r}.")


def holdout_groups(spec: HoldoutSpec, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hold-out of ``spec`` as blocks: row groups ``rg`` (n,), channel groups ``cg``
    (m,) and ``pairs`` (groups,): row group ``a`` holds out channel group ``pairs[a]``
    (-1: none).  For ``"blocks"`` the groups of :func:`holdout_entries`; for ``"latin"``
    ``pairs[a] = (fold - a) mod n_folds``."""
    rng = np.random.default_rng(spec.seed)
    q = spec.n_folds
    rg = rng.permutation(n) % q
    cg = rng.permutation(m) % q
    if spec.kind == "blocks":
        a, b = divmod(spec.fold % (q * q), q)
        pairs = np.full(q, -1)
        pairs[a] = b
    elif spec.kind == "latin":
        pairs = (spec.fold - np.arange(q)) % q
    else:
        raise ValueError(f"a sparse X holds out 'latin' or 'blocks' patterns; got {spec.kind!r}.")
    return rg, cg, pairs


def bootstrap_weights(seed: int, n: int) -> np.ndarray:
    """Pixel multiplicities of one bootstrap draw (``n`` draws with replacement)."""
    rng = np.random.default_rng([seed, 7])
    return np.bincount(rng.integers(0, n, size=n), minlength=n).astype(float)


def spa_pixels(X: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Successive projection algorithm (Gillis & Vavasis 2014) on the rows of ``X``.

    Pixels are scaled to unit sum (the simplex, where SPA is exact for separable data);
    each step picks the allowed pixel of largest residual norm and projects it out.
    Returns ``k`` distinct pixel indices.
    """
    Y = np.asarray(X, dtype=float)
    sums = Y.sum(axis=1)
    if np.all(sums > 0):
        Y = Y / sums[:, None]
    norms = np.einsum("ij,ij->i", Y, Y)
    ok = np.ones(len(Y), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    picked: list[int] = []
    basis = np.zeros((0, Y.shape[1]))
    for _ in range(k):
        score = np.where(ok, norms, -1.0)
        score[picked] = -np.inf
        j = int(np.argmax(score))
        picked.append(j)
        r = Y[j] - basis.T @ (basis @ Y[j])
        nr = float(np.linalg.norm(r))
        if nr > 0:
            u = r / nr
            basis = np.vstack([basis, u])
            proj = Y @ u
            norms = np.maximum(norms - proj * proj, 0.0)
    return np.asarray(picked)


class SparsePattern:
    """The held-out entries of one model: a sparse ``(n, m)`` pattern with fixed indices.

    Products with a matrix ``Z`` that holds given values on the pattern run through
    SciPy (NumPy data), ``torch.sparse`` (PyTorch) or ``cupyx.scipy.sparse`` (CuPy).
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n: int, m: int, be: Backend) -> None:
        self.be, self.n, self.m = be, n, m
        self.rows = be.asarray(rows, dtype=be.xp.int64)
        self.cols = be.asarray(cols, dtype=be.xp.int64)
        self.nnz = int(rows.size)
        self._csr = None
        self._chunks: list | None = None
        if be.name == "numpy":
            import scipy.sparse as sp

            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
            data = np.zeros(self.nnz, dtype=be.dtype)
            self._csr = sp.csr_matrix((data, cols, indptr), shape=(n, m))
            self._order_t = np.lexsort((rows, cols))  # column-major order of the entries
            indptr_t = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=m))])
            self._csr_t = sp.csr_matrix((data.copy(), rows[self._order_t], indptr_t), (m, n))

    def values(self, At: Any, S: Any) -> Any:
        """``(A S)`` at the pattern, from ``At`` (k, n) and ``S`` (k, m).

        Dense products over chunks of rows, then a gather of the pattern's entries: for
        the usual patterns (a few percent of the entries or more) far cheaper than
        gathering ``k`` values per entry from each factor.
        """
        xp = self.be.xp
        if self._chunks is None:
            self._make_chunks()
        out = []
        for lo, hi, a, b in self._chunks:
            block = xp.reshape(xp.permute_dims(At[:, lo:hi], (1, 0)) @ S, (-1,))
            out.append(xp.take(block, self._flat[a:b], axis=0))
        if not out:  # no entries (a process that owns none of the held-out rows)
            return self.be.zeros((0,), dtype=S.dtype)
        return xp.concat(out) if len(out) > 1 else out[0]

    def _make_chunks(self, entries: int = 1 << 16) -> None:
        """Row chunks of about ``entries`` entries of ``X`` and their pattern slices."""
        rows = to_numpy(self.rows)
        cols = to_numpy(self.cols)
        step = max(1, entries // max(self.m, 1))
        chunks, flat = [], np.empty(self.nnz, dtype=np.int64)
        for lo in range(0, self.n, step):
            hi = min(self.n, lo + step)
            a, b = np.searchsorted(rows, [lo, hi])
            flat[a:b] = (rows[a:b] - lo) * self.m + cols[a:b]
            if b > a:  # no dense product for rows without held-out entries
                chunks.append((lo, hi, int(a), int(b)))
        self._flat = self.be.asarray(flat, dtype=self.be.xp.int64)
        self._chunks = chunks

    def times(self, vals: Any, M: Any) -> Any:
        """``Z @ M`` for ``Z`` (n, m) holding ``vals`` on the pattern and ``M`` (m, k)."""
        if self._csr is not None:
            self._csr.data[:] = vals
            return np.asarray(self._csr @ M)
        return self._generic(vals, M, transpose=False)

    def t_times(self, vals: Any, M: Any) -> Any:
        """``Z^T @ M`` for ``M`` (n, k)."""
        if self._csr is not None:
            self._csr_t.data[:] = vals[self._order_t]
            return np.asarray(self._csr_t @ M)
        return self._generic(vals, M, transpose=True)

    def _generic(self, vals: Any, M: Any, *, transpose: bool) -> Any:
        r, c = (self.cols, self.rows) if transpose else (self.rows, self.cols)
        shape = (self.m, self.n) if transpose else (self.n, self.m)
        if self.be.name == "torch":
            import torch

            Z = torch.sparse_coo_tensor(torch.stack([r, c]), vals, shape, check_invariants=False)
            return torch.sparse.mm(Z, M)
        import cupyx.scipy.sparse as csp  # pragma: no cover - needs a CUDA device

        return csp.coo_matrix((vals, (r, c)), shape=shape).tocsr() @ M  # pragma: no cover
