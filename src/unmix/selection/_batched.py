"""Many small Frobenius NMF models fitted together on one pass over ``X`` (private).

Rank and stability selection fit dozens of independent models ``X ~= A_r @ S_r`` (one per
rank, restart, bootstrap draw and held-out fold).  Model ``r`` minimizes::

    f_r(A_r, S_r) = 1/2 sum_ij  w_ri M_rij (X_ij - (A_r S_r)_ij)^2,   A_r >= 0, S_r >= 0

with ``X`` (pixels, channels), pixel weights ``w_r`` (bootstrap multiplicities, or ones)
and an entry mask ``M_r`` (0 on the entries held out for cross-validation).

One iteration is one pass over the engine's pixel blocks (:class:`unmix.blocks.
PixelData`, reduced by an executor): per block, ``S_all @ X_b^T`` for the *stacked*
spectra of every model (one wide product instead of one thin product per model), HALS
sweeps over every model's maps, then ``A_all^T W X_b`` for the stacked maps; then HALS
sweeps over each model's spectra.  This is the one-pass structure of the engine's HALS,
shared by all models.  Held-out entries are treated like the engine's HALS mask path,
by EM imputation (missing entries take the current model's values: a majorize-minimize
step), here as a sparse correction on the held-out entries only so that the dense product
stays shared; the masked objective itself is evaluated exactly.  Each model is
accelerated by extrapolation with restarts (Ang & Gillis 2019): after an accepted step
both factors move on by ``beta`` times their last change; a step that raises the
objective is discarded, the model restarts from its last accepted point and ``beta``
shrinks.  Accepted objectives therefore never increase.  Models of equal rank are
updated with batched array operations (NumPy, PyTorch, CuPy: a GPU runs the batch at
once), and a model leaves the batch once its relative objective change is below ``tol``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._backend import Backend, to_numpy
from ..blocks import PixelData, SparsePixelData, default_block_size, is_sparse
from ..engine import hals_sweeps
from ..executors import packed_sum
from ..executors.base import SerialExecutor
from ._plan import (
    FitRecord,
    FitSpec,
    SparsePattern,
    bootstrap_weights,
    holdout_entries,
    spa_pixels,
)
from ._sparse import (
    BlockHoldout,
    data_backend,
    dense_rows,
    residual_sse_sparse,
    row_sq_norms,
    spa_rows,
)

__all__ = ["fit_batch", "residual_sse"]

BETA0, ETA, GAMMA, GAMMA_BAR = 0.5, 1.5, 1.05, 1.01  # extrapolation (Ang & Gillis 2019)


class _Group:
    """The models of one rank, stacked: maps ``At`` (R, k, n), spectra ``S`` (R, k, m).

    ``rows``: the pixels this process updates (all of them unless a distributed executor
    splits them); the maps stay zero elsewhere and each held-out pattern keeps only the
    entries of these rows (sums over the others come from the other processes).
    """

    def __init__(
        self,
        k: int,
        specs: list[FitSpec],
        X: Any,
        be: Backend,
        init: str,
        rows: tuple[int, int] | None = None,
    ) -> None:
        xp = be.xp
        n, m = (int(s) for s in X.shape)
        lo, hi = rows or (0, n)
        self.k, self.specs, self.be = k, list(specs), be
        R = len(specs)
        if is_sparse(X):  # CSR: sums, starts and hold-outs from the stored entries
            X_np, xx = None, row_sq_norms(X)
            mean = float(np.sum(X.data, dtype=float)) / (n * m)
        else:
            X_np = to_numpy(X)
            xx = np.einsum("ij,ij->i", X_np, X_np, dtype=float)
            mean = float(np.mean(X_np, dtype=float))
        scale = np.sqrt(max(mean, 1e-12) / k)
        At, S, W = np.zeros((R, k, n)), np.empty((R, k, m)), np.ones((R, n))
        self.sparse: list[SparsePattern | BlockHoldout | None] = []
        self.xh: list[Any] = []
        self.base = np.empty(R)  # ||X||_w^2 over the observed entries
        for r, spec in enumerate(specs):
            rng = np.random.default_rng(spec.seed)
            if spec.bootstrap:
                W[r] = bootstrap_weights(spec.seed, n)
            if X_np is None:
                sp, start = self._sparse_model(X, spec, W[r], (lo, hi), init)
                self.sparse.append(sp)
                self.xh.append(None)
                self.base[r] = float(W[r] @ xx) - (0.0 if sp is None else sp.held_sq(W[r]))
                if start is not None:
                    S[r] = start
            else:
                S[r] = self._dense_model(X_np, xx, spec, W, r, (lo, hi), init)
            if init == "random":
                At[r] = np.abs(rng.standard_normal((k, n))) * scale
                S[r] = np.abs(rng.standard_normal((k, m))) * scale
        self.At, self.S = be.asarray(At), be.asarray(S)
        self.At_acc, self.S_acc = xp.asarray(self.At, copy=True), xp.asarray(self.S, copy=True)
        self.W = be.asarray(W) if any(s.bootstrap for s in specs) else None
        self.f_acc = np.full(R, np.inf)
        self.beta = np.zeros(R)  # no extrapolation on the first step
        self.beta_max = np.ones(R)
        self.n_iter = np.zeros(R, dtype=int)
        self.t0 = time.perf_counter()

    def _dense_model(self, X_np, xx, spec, W, r, own, init) -> np.ndarray:
        """Model ``r`` on dense ``X``: its held-out pattern, values and ``base``; the
        SPA start (zeros for a random start)."""
        n, m = X_np.shape
        lo, hi = own
        Xi, sp, xh = X_np, None, None
        if spec.holdout is not None:
            rows, cols = holdout_entries(spec.holdout, n, m)
            xh = X_np[rows, cols].astype(float)
            if init != "random":  # start without looking at the held-out values
                Xi = np.array(X_np, dtype=float)
                Xi[rows, cols] = np.nan
                Xi = np.where(np.isnan(Xi), np.nanmean(Xi, axis=0)[None, :], Xi)
            mine = slice(*np.searchsorted(rows, [lo, hi]))  # rows are sorted
            sp = SparsePattern(rows[mine], cols[mine], n, m, self.be)
        self.sparse.append(sp)
        self.xh.append(None if xh is None else self.be.asarray(xh[mine]))
        self.base[r] = float(W[r] @ xx) - (
            0.0 if sp is None else float(np.sum(W[r][rows] * xh * xh))
        )
        if init == "random":
            return np.zeros((self.k, m))
        return Xi[spa_pixels(Xi, self.k, W[r] > 0)]

    def _sparse_model(self, X, spec, w, rows, init) -> tuple[BlockHoldout | None, Any]:
        """Model on CSR ``X``: its held-out blocks (or None) and SPA start (or None)."""
        ho = None if spec.holdout is None else BlockHoldout(X, spec.holdout, rows)
        if init == "random":
            return ho, None
        if ho is None:
            return None, dense_rows(X, spa_rows(X, self.k, w > 0))
        Xo, fill = ho.observed(), ho.fill()
        return ho, dense_rows(Xo, spa_rows(Xo, self.k, w > 0, fill), fill)

    @property
    def size(self) -> int:
        return len(self.specs)

    @property
    def has_holdout(self) -> bool:
        return any(sp is not None for sp in self.sparse)

    def keep(self, idx: np.ndarray) -> None:
        """Keep only the models at positions ``idx`` (the others have finished)."""
        xp = self.be.xp
        sel = self.be.asarray(idx, dtype=xp.int64)
        for name in ("At", "S", "At_acc", "S_acc", "W"):
            if getattr(self, name) is not None:
                setattr(self, name, xp.take(getattr(self, name), sel, axis=0))
        ids = [int(i) for i in idx]
        self.specs = [self.specs[i] for i in ids]
        self.sparse = [self.sparse[i] for i in ids]
        self.xh = [self.xh[i] for i in ids]
        for name in ("base", "f_acc", "beta", "beta_max", "n_iter"):
            setattr(self, name, getattr(self, name)[idx])


def _sweeps(At: Any, P: Any, G: Any, inner: int, be: Backend) -> Any:
    """``inner`` HALS sweeps (:func:`unmix.engine.hals_sweeps`) on the rows of ``At``
    (R, k, n), in place.  On NumPy one model at a time (its rows stay in cache); elsewhere
    batched over the models (few large kernels for a GPU)."""
    if be.name == "numpy":
        for r in range(At.shape[0]):
            hals_sweeps(At[r], P[r], G[r], be=be, inner_max=inner, delta=None)
        return At
    return hals_sweeps(At, P, G, be=be, inner_max=inner, delta=None)


def fit_batch(
    X: Any,
    specs: Sequence[FitSpec],
    *,
    max_iter: int = 1000,
    tol: float = 1e-5,
    inner: int = 2,
    init: str = "spa",
    extrapolate: bool = True,
    block_size: int | None = None,
    executor: Any = None,
    on_done: Callable[[FitRecord], None] | None = None,
) -> list[FitRecord]:
    """Fit every model of ``specs`` on ``X`` (pixels, channels) together; see the module.

    ``init="spa"`` starts each model from the spectra of ``k`` pixels picked by SPA among
    the pixels its bootstrap draw kept (held-out entries replaced by channel means);
    ``"random"`` from half-normal factors.  Returns the records in the order of
    ``specs``; ``on_done(record)`` is called as each model finishes.  A distributed
    ``executor`` (:class:`unmix.mpi.MPIExecutor`) splits the pixel blocks over its
    processes (each updates its rows of the maps); every process returns the same records.
    """
    be = data_backend(X)
    n, m = (int(s) for s in X.shape)
    executor = executor or SerialExecutor()
    cls = SparsePixelData if is_sparse(X) else PixelData
    data = cls(X, be, block_size=block_size or default_block_size(n, m, be))
    lo, hi = executor.partition(n, data.block_size)  # all rows unless distributed
    blocks = [b for b in data.blocks if lo <= b.start < hi]
    by_k: dict[int, list[FitSpec]] = {}
    for s in specs:
        by_k.setdefault(int(s.k), []).append(s)
    groups = [_Group(k, ss, X, be, init, (lo, hi)) for k, ss in sorted(by_k.items())]
    done: dict[str, FitRecord] = {}
    for it in range(1, max_iter + 1):
        groups = [g for g in groups if g.size]
        if not groups:
            break
        f_new = _iterate(data, blocks, groups, be, executor, inner)
        for g, f in zip(groups, f_new, strict=True):
            g.n_iter += 1
            finished = _accept(g, f, tol, extrapolate) | (it >= max_iter)
            for r in np.nonzero(finished)[0]:
                stop = "tol" if it < max_iter else "max_iter"
                stop = stop if np.isfinite(g.f_acc[r]) else "non-finite"
                rec = _record(X, g, int(r), be, stop, executor)
                done[rec.key] = rec
                if on_done is not None:
                    on_done(rec)
            if finished.any():
                g.keep(np.nonzero(~finished)[0])
    return [done[s.key] for s in specs]


def _iterate(
    data: PixelData, blocks: list, groups: list[_Group], be: Backend, ex: Any, inner: int
) -> list:
    """One alternating update of every model (one pass over ``blocks``, this process's
    pixel blocks); the new objectives per group."""
    xp = be.xp
    S_all = xp.concat([xp.reshape(g.S, (g.size * g.k, -1)) for g in groups], axis=0)  # (K, m)
    offsets = np.cumsum([0] + [g.size * g.k for g in groups])
    G = [g.S @ xp.permute_dims(g.S, (0, 2, 1)) for g in groups]  # (R, k, k)
    Z = [_residuals(g, xp) for g in groups]  # EM imputation, fixed for this iteration
    sparse_x = getattr(data, "sparse", False)

    def kernel(block: Any) -> dict:
        sl = block.slice
        if sparse_x:  # CSR block: products from its stored entries
            Xb = None
            P = xp.permute_dims(data.x_times(block, xp.permute_dims(S_all, (1, 0))), (1, 0))
        else:
            Xb = data.x(block)
            P = S_all @ xp.permute_dims(Xb, (1, 0))  # (K, n_b): one product for all models
        Aw_all, out = [], {}
        for gi, g in enumerate(groups):
            Pg = xp.reshape(P[int(offsets[gi]) : int(offsets[gi + 1]), :], (g.size, g.k, -1))
            if g.has_holdout:
                Pg = xp.asarray(Pg, copy=True)
                for r, c in enumerate(Z[gi][1]):
                    if c is not None:
                        Pg[r] = Pg[r] + c[:, sl]
            Ab = _sweeps(xp.asarray(g.At[:, :, sl], copy=True), Pg, G[gi], inner, be)
            g.At[:, :, sl] = Ab
            Aw = Ab if g.W is None else Ab * g.W[:, None, sl]
            Aw_all.append(xp.reshape(Aw, (g.size * g.k, -1)))
            out[f"AtA{gi}"] = be.acc(xp.stack([Aw[r] @ Ab[r].T for r in range(g.size)]))
        Aw_cat = xp.concat(Aw_all, axis=0)
        if sparse_x:
            out["AtX"] = be.acc(data.t_times(block, xp.permute_dims(Aw_cat, (1, 0))))
        else:
            out["AtX"] = be.acc(Aw_cat @ Xb)  # (K, m), one shared product
        return out

    sums = ex.map_reduce(kernel, blocks)
    zt = {}  # held-out corrections to A^T W X: sums over the held-out entries
    for gi, g in enumerate(groups):
        for r, sp in enumerate(g.sparse):
            if sp is not None:
                Aw = g.At[r] if g.W is None else g.At[r] * g.W[r][None, :]
                if isinstance(sp, BlockHoldout):
                    zt[f"{gi}/{r}"] = sp.t_times(Z[gi][0][r], Aw)  # (k, m), float64
                    continue
                z = sp.t_times(Z[gi][0][r], Aw.T)  # (m, k)
                zt[f"{gi}/{r}"] = be.acc(xp.permute_dims(z, (1, 0)))
    zt = _sum_over_processes(zt, ex)
    AtXs = []
    for gi, g in enumerate(groups):
        AtX = xp.reshape(
            sums["AtX"][int(offsets[gi]) : int(offsets[gi + 1]), :], (g.size, g.k, -1)
        )
        AtXs.append(AtX)
        AtX_imp = AtX
        if g.has_holdout:
            AtX_imp = xp.asarray(AtX, copy=True)
            for r, sp in enumerate(g.sparse):
                if sp is not None:
                    AtX_imp[r] = AtX_imp[r] + zt[f"{gi}/{r}"]
        AtA = be.work(sums[f"AtA{gi}"])
        g.S = _sweeps(xp.asarray(g.S, copy=True), be.work(AtX_imp), AtA, inner, be)
    heldout = {f"{gi}": _heldout_share(g, be) for gi, g in enumerate(groups) if g.has_holdout}
    heldout = _sum_over_processes(heldout, ex)
    return [
        _objective(g, AtXs[gi], sums[f"AtA{gi}"], heldout.get(f"{gi}"), be)
        for gi, g in enumerate(groups)
    ]


def _residuals(g: _Group, xp: Any) -> tuple[list, list]:
    """Per model: the held-out residual ``A S - X`` (None without hold-out) and its
    correction ``(Z S^T)^T`` (k, n) to the maps' products."""
    vals, corr = [], []
    for r, sp in enumerate(g.sparse):
        if sp is None:
            vals.append(None)
            corr.append(None)
        elif isinstance(sp, BlockHoldout):  # blocks on sparse X: closed forms
            z = sp.residual(g.At[r], g.S[r])
            vals.append(z)
            corr.append(sp.times(z, g.S[r].T))
        else:
            v = sp.values(g.At[r], g.S[r]) - g.xh[r]
            vals.append(v)
            corr.append(xp.permute_dims(sp.times(v, g.S[r].T), (1, 0)))
    return vals, corr


def _sum_over_processes(local: dict, ex: Any) -> dict:
    """``local`` summed over the processes of a distributed executor (one all-reduce)."""
    if not local or not getattr(ex, "distributed", False):
        return local
    return packed_sum(local, ex.allreduce)


def _heldout_share(g: _Group, be: Backend) -> np.ndarray:
    """``sum_H w ((AS)^2 - 2 X (AS))`` per model over this process's held-out entries."""
    xp = be.xp
    heldout = np.zeros(g.size)
    for r, sp in enumerate(g.sparse):
        if isinstance(sp, BlockHoldout):
            heldout[r] = sp.share(g.At[r], g.S[r], None if g.W is None else g.W[r])
        elif sp is not None and sp.nnz:
            u = be.acc(sp.values(g.At[r], g.S[r]))
            w = 1.0 if g.W is None else be.acc(xp.take(g.W[r], sp.rows, axis=0))
            heldout[r] = float(xp.sum(w * u * (u - 2.0 * be.acc(g.xh[r]))))
    return heldout


def _objective(g: _Group, AtX: Any, AtA: Any, heldout: Any, be: Backend) -> np.ndarray:
    """Exact (masked, weighted) objective of every model at its new ``(A, S)``.

    ``1/2 (||X||_w^2 - 2 <A^T W X, S> + <A^T W A, S S^T>)`` over all entries, minus the
    held-out entries' share ``1/2 sum_H w ((AS)^2 - 2 X (AS))`` (``heldout``, None
    without held-out entries).
    """
    xp = be.xp
    S64 = be.acc(g.S)
    cross = to_numpy(xp.sum(xp.sum(AtX * S64, axis=2), axis=1))
    quad = to_numpy(xp.sum(xp.sum((AtA @ S64) * S64, axis=2), axis=1))
    heldout = np.zeros(g.size) if heldout is None else np.asarray(heldout, dtype=float)
    return 0.5 * np.maximum(g.base - 2.0 * cross + quad - heldout, 0.0)


def _accept(g: _Group, f: np.ndarray, tol: float, extrapolate: bool) -> np.ndarray:
    """Accept or discard each model's step, extrapolate; True where a model converged.

    Accepted (objective not above the last accepted one): the new point becomes the
    accepted point and the next one starts ``beta`` times the last change beyond it
    (clipped at 0); ``beta`` grows by ``GAMMA`` up to ``beta_max``.  Discarded: restart
    from the accepted point, ``beta`` shrinks by ``ETA`` and caps ``beta_max``.
    """
    be = g.be
    ok = np.isfinite(f) & (f <= g.f_acc * (1.0 + 1e-12))
    prev = g.f_acc
    converged = ok & np.isfinite(prev) & (np.abs(prev - f) <= tol * np.maximum(prev, 1e-300))
    for r in range(g.size):
        if not ok[r]:
            g.At[r] = g.At_acc[r]
            g.S[r] = g.S_acc[r]
            continue
        b = float(g.beta[r]) if extrapolate and np.isfinite(prev[r]) else 0.0
        for cur, acc in ((g.At, g.At_acc), (g.S, g.S_acc)):
            if b > 0.0:
                step = cur[r] - acc[r]
                acc[r] = cur[r]
                cur[r] = be.clip_min(cur[r] + b * step, 0.0)
            else:
                acc[r] = cur[r]
    first = ok & ~np.isfinite(prev)
    g.f_acc = np.where(ok, f, g.f_acc)
    grown = np.minimum(g.beta_max, g.beta * GAMMA)
    g.beta_max = np.where(ok, np.minimum(1.0, g.beta_max * GAMMA_BAR), g.beta)
    g.beta = np.where(ok, grown, g.beta / ETA)
    g.beta = np.where(first, BETA0, g.beta)
    return converged


def _record(X: Any, g: _Group, r: int, be: Backend, stop: str, ex: Any = None) -> FitRecord:
    """The finished model ``r`` of group ``g`` (its last accepted point) and its errors.

    With a distributed executor every process ends with the whole maps (each holds zeros
    outside its rows, so their sum is exact) and the held-out sums over all entries.
    """
    xp = be.xp
    spec = g.specs[r]
    At, S = g.At_acc[r], g.S_acc[r]
    distributed = getattr(ex, "distributed", False)
    if distributed and g.sparse[r] is None:
        At = be.work(ex.allreduce(At))
    A = xp.asarray(xp.permute_dims(At, (1, 0)), copy=True)
    rec = FitRecord(
        key=spec.key,
        k=g.k,
        A=A,
        S=xp.asarray(S, copy=True),
        objective=float(g.f_acc[r]),
        n_iter=int(g.n_iter[r]),
        stop_reason=stop,
        sse=float("nan"),
        seconds=time.perf_counter() - g.t0,
    )
    sp = g.sparse[r]
    if sp is None:
        rec.sse = residual_sse(X, A, S, be)
    elif isinstance(sp, BlockHoldout):
        rec.A = None
        sums = sp.sums(At, S)
        sums = _sum_over_processes(sums, ex) if distributed else sums
        rec.heldout_sse = float(sums["sse"])
        rec.heldout_ss = float(sums["ss"])
        rec.heldout_n = round(float(sums["n"]))
    else:
        u = sp.values(At, S)
        xh = g.xh[r]
        rec.A = None
        sums = {
            "sse": xp.sum(be.acc((u - xh) ** 2)),
            "ss": xp.sum(be.acc(xh * xh)),
            "n": float(sp.nnz),
        }
        sums = _sum_over_processes(sums, ex) if distributed else sums
        rec.heldout_sse = float(sums["sse"])
        rec.heldout_ss = float(sums["ss"])
        rec.heldout_n = round(float(sums["n"]))
    return rec


def residual_sse(X: Any, A: Any, S: Any, be: Backend) -> float:
    """``||X - A S||_F^2`` by the Gram identity (float64 sums, no copy of ``X``)."""
    if is_sparse(X):
        return residual_sse_sparse(X, A, S)
    xp = be.xp
    S64 = be.acc(S)
    xx = float(xp.sum(xp.sum(be.acc(X * X), axis=1)))
    cross = float(xp.sum(be.acc(A.T @ X) * S64))
    quad = float(xp.sum((be.acc(A.T @ A) @ S64) * S64))
    return max(xx - 2.0 * cross + quad, 0.0)
