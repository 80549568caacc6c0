"""Planning and running the many fits of a selection: batched, parallel, resumable (private).

The fits are independent.  By default they run through :func:`._batched.fit_batch`
(plain Frobenius NMF, all models of a task sharing each pass over ``X``); with
``fit_options`` each runs through :func:`unmix.factorize` instead (any loss or solver the
engine offers, weights and masks included).  With ``n_jobs > 1`` the ranks are spread over
worker processes, each pinned to one BLAS thread; data on a GPU run as one batch in this
process.  With an :class:`unmix.mpi.MPIExecutor` the fits are dealt over groups of MPI
ranks (:meth:`~unmix.mpi.MPIExecutor.split`), each group splitting the pixels of its fits
over its ranks, and every rank ends with every record.  Every finished fit is recorded in
the checkpoint directory at once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..blocks import Weights, default_block_size
from ..engine import factorize
from ..executors.groups import Work, deal
from ._batched import fit_batch, residual_sse
from ._plan import FitRecord, FitSpec, HoldoutSpec, bootstrap_weights, holdout_entries, spa_pixels
from ._sparse import data_backend, dense_rows, is_sparse, spa_rows

logger = logging.getLogger("unmix")

__all__ = ["Settings", "deal_fits", "open_store", "plan_fits", "run_fits"]


@dataclass(frozen=True)
class Settings:
    """Engine settings shared by every fit of a selection."""

    max_iter: int = 1000
    tol: float = 1e-4
    inner: int = 2
    init: str = "spa"
    extrapolate: bool = True
    fit_options: dict | None = field(default=None, hash=False)


def plan_fits(
    ks: Sequence[int],
    n_restarts: int,
    cv_repeats: int,
    holdout: str,
    cv_fraction: float,
    seed: int,
) -> list[FitSpec]:
    """The fits of a selection: per rank ``n_restarts`` restarts (the first on ``X`` itself,
    the others on bootstrap draws of the pixels) and ``cv_repeats`` hold-out fits (the
    same held-out entries for every rank).  ``holdout="latin"`` is the pattern that
    stands for ``"entries"`` on sparse ``X`` (:class:`._sparse.BlockHoldout`)."""
    specs = []
    if holdout in ("entries", "latin"):
        n_folds = max(2, round(1.0 / cv_fraction))
    else:
        n_folds = 2
    cv_seed = int(np.random.default_rng([seed, 999]).integers(2**31 - 1))
    for k in ks:
        for r in range(n_restarts):
            s = int(np.random.default_rng([seed, k, r]).integers(2**31 - 1))
            specs.append(FitSpec(f"k{k}/r{r}", int(k), s, bootstrap=r > 0))
        for f in range(cv_repeats):
            s = int(np.random.default_rng([seed, k, 10_000 + f]).integers(2**31 - 1))
            hs = HoldoutSpec(holdout, n_folds, f, cv_seed)
            specs.append(FitSpec(f"k{k}/cv{f}", int(k), s, holdout=hs))
    return specs


# ------------------------------------------------------------------ engine path
def fit_with_engine(
    X: Any, spec: FitSpec, settings: Settings, *, executor: Any = None, block_size: Any = None
) -> FitRecord:
    """One fit through :func:`unmix.factorize` (weights and mask as the engine takes them).

    A distributed ``executor`` splits the pixels over its processes; every process ends
    with the whole record.
    """

    be = data_backend(X)
    n, m = (int(s) for s in X.shape)
    sparse_x = is_sparse(X)
    X_np = None if sparse_x else to_numpy(X)
    w = bootstrap_weights(spec.seed, n) if spec.bootstrap else None
    mask, Xi, rows, cols = None, X_np, None, None
    if spec.holdout is not None and sparse_x:  # select_rank refuses it first
        raise ValueError("held-out fits through unmix.factorize need dense X (a mask).")
    if spec.holdout is not None:
        rows, cols = holdout_entries(spec.holdout, n, m)
        mask_np = np.ones((n, m), dtype=bool)
        mask_np[rows, cols] = False
        mask = be.asarray(mask_np, dtype=be.xp.bool)
        Xi = np.array(X_np, dtype=float)
        Xi[rows, cols] = np.nan
        Xi = np.where(np.isnan(Xi), np.nanmean(Xi, axis=0)[None, :], Xi)
    # no solver set: the model's own (HALS for plain NMF, held-out mask included; KL-CD
    # for loss="kl"); a fixed "hals" refused loss="kl" and sum-to-one maps
    opts = dict(settings.fit_options or {})
    if executor is not None:
        opts.setdefault("executor", executor)
        if block_size is not None:
            opts.setdefault("block_size", block_size)
    if settings.init == "spa" and sparse_x:
        opts.setdefault("init", (None, be.asarray(dense_rows(X, spa_rows(X, spec.k)))))
    elif settings.init == "spa":
        opts.setdefault("init", (None, be.asarray(Xi[spa_pixels(Xi, spec.k, None)])))
    else:
        opts.setdefault("init", "random")
    t0 = time.perf_counter()
    res = factorize(
        X,
        spec.k,
        weights=None if w is None else Weights(pixels=be.asarray(w)),
        mask=mask,
        tol=settings.tol,
        max_iter=settings.max_iter,
        random_state=spec.seed,
        **opts,
    )
    if getattr(opts.get("executor"), "distributed", False):
        res.A = _whole_maps(res.A, res.rows, n, opts["executor"], be)
    rec = FitRecord(
        key=spec.key,
        k=spec.k,
        A=res.A,
        S=res.S,
        objective=float(res.objective),
        n_iter=int(res.n_iter),
        stop_reason=res.stop_reason,
        sse=float("nan"),
        seconds=time.perf_counter() - t0,
    )
    if rows is None:
        rec.sse = residual_sse(X, res.A, res.S, be)
    else:
        A, S = to_numpy(res.A).astype(float), to_numpy(res.S).astype(float)
        u = np.einsum("ij,ji->i", A[rows], S[:, cols])
        xh = X_np[rows, cols].astype(float)
        rec.A = None
        rec.heldout_sse = float(np.sum((u - xh) ** 2))
        rec.heldout_ss = float(np.sum(xh * xh))
        rec.heldout_n = int(rows.size)
    return rec


def _whole_maps(A: Any, rows: tuple[int, int], n: int, executor: Any, be: Any) -> Any:
    """Every process's rows of the maps, on every process (zero-padded sum: exact)."""
    full = np.zeros((n, int(A.shape[1])))
    full[rows[0] : rows[1]] = to_numpy(A)
    return be.asarray(executor.allreduce(full))


def _fit_task(
    X: Any,
    specs: list[FitSpec],
    settings: Settings,
    on_done: Callable,
    *,
    executor: Any = None,
    block_size: int | None = None,
) -> list:
    if settings.fit_options is None:
        return fit_batch(
            X,
            specs,
            max_iter=settings.max_iter,
            tol=settings.tol,
            inner=settings.inner,
            init=settings.init,
            extrapolate=settings.extrapolate,
            block_size=block_size,
            executor=executor,
            on_done=on_done,
        )
    out = []
    for spec in specs:
        rec = fit_with_engine(X, spec, settings, executor=executor, block_size=block_size)
        on_done(rec)
        out.append(rec)
    return out


# ------------------------------------------------------------------ workers
_W: dict[str, Any] = {}


def _init_worker(X: Any, settings: Settings, store: Any, queue: Any) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        _W["limits"] = threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    _W.update(X=X, settings=settings, store=store, queue=queue)


def _worker_task(specs: list[FitSpec]) -> list[FitRecord]:
    store, queue = _W["store"], _W["queue"]

    def on_done(rec: FitRecord) -> None:
        if store is not None:
            store.write(rec)
        if queue is not None:
            queue.put(rec.key)

    return _fit_task(_W["X"], specs, _W["settings"], on_done)


# ------------------------------------------------------------------ driver
class _Bar:
    """Progress: a callable ``progress(done, total, key)`` or a bar on stderr."""

    def __init__(self, progress: Any, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.fn = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            import click

            self.bar = click.progressbar(
                length=total, label="selection fits", file=sys.stderr, show_pos=True
            )
            self.bar.__enter__()
            self.bar.update(done)

    def tick(self, key: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.fn is not None:
            self.fn(self.done, self.total, key)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def run_fits(
    X: Any,
    specs: list[FitSpec],
    settings: Settings,
    *,
    n_jobs: int,
    store: Any = None,
    done: dict[str, FitRecord] | None = None,
    progress: Any = None,
    executor: Any = None,
    groups: int | None = None,
) -> dict[str, FitRecord]:
    """Run every fit of ``specs`` not already in ``done``; return all records by key.

    With an MPI ``executor`` the fits run in ``groups`` groups of ranks (default: one per
    rank) and every rank returns every record; a progress bar shows on rank 0 only.
    """
    done = dict(done or {})
    todo = [s for s in specs if s.key not in done]
    if executor is not None and progress is True and executor.rank != 0:
        progress = False
    bar = _Bar(progress, len(specs), len(specs) - len(todo))

    def finished(rec: FitRecord) -> None:
        done[rec.key] = rec
        if store is not None:
            store.write(rec)
            store.write_progress(sorted(done))
        bar.tick(rec.key)

    try:
        be = data_backend(X)
        on_host = be.name == "numpy"
        if todo and executor is not None:
            _run_mpi(X, todo, settings, executor, groups, store, done, bar)
        elif todo and (n_jobs <= 1 or not on_host):
            _fit_task(X, todo, settings, finished)
        elif todo:
            _run_pool(X, todo, settings, n_jobs, store, done, bar)
    finally:
        bar.close()
    return done


def _run_pool(X, todo, settings, n_jobs, store, done, bar) -> None:
    import multiprocessing as mp

    by_k: dict[int, list[FitSpec]] = {}
    for s in todo:
        by_k.setdefault(s.k, []).append(s)
    tasks = sorted(by_k.values(), key=lambda ss: -ss[0].k * len(ss))  # biggest first
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()  # handed over at process start: no manager process needed
    with ProcessPoolExecutor(
        max_workers=min(n_jobs, len(tasks)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(X, settings, store, queue),
    ) as pool:
        pending = {pool.submit(_worker_task, t) for t in tasks}
        try:
            while pending:
                ready, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(queue, bar)
                for fut in ready:
                    for rec in fut.result():
                        done[rec.key] = rec
                    if store is not None:
                        store.write_progress(sorted(done))
            _drain(queue, bar)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        finally:
            queue.close()


def _drain(queue: Any, bar: _Bar) -> None:
    import queue as _q

    while True:
        try:
            bar.tick(queue.get_nowait())
        except _q.Empty:
            return


# ------------------------------------------------------------------ MPI groups
def open_store(store: Any, *, resume: bool, executor: Any = None) -> dict[str, FitRecord]:
    """Open the checkpoint (on rank 0 only under MPI, its fits then sent to every rank)."""
    if executor is None:
        return store.open(resume=resume)
    got: tuple[str, Any] = ("error", None)
    if executor.rank == 0:
        try:
            got = ("ok", store.open(resume=resume))
        except (OSError, ValueError) as err:  # raised on every rank, not a hang
            got = ("error", err)
    status, value = executor.broadcast(got)
    if status != "ok":
        raise value
    return value


def _cost(spec: FitSpec) -> float:
    """Relative work of a fit: its rank, twice for a held-out fit (the sparse products)."""
    return float(spec.k) * (2.0 if spec.holdout is not None else 1.0)


def deal_fits(specs: Sequence[FitSpec], sizes: Sequence[int]) -> list[list[FitSpec]]:
    """The fits of each group of ranks: largest first, each to the group that would
    finish it first (work / ranks).  Depends only on ``specs`` and ``sizes``, so every
    rank computes the same deal; the order of ``specs`` is kept within a group."""
    by_key = {s.key: s for s in specs}
    parts = deal([Work(s.key, _cost(s)) for s in specs], sizes)
    return [[by_key[w.key] for w in part] for part in parts]


def _group_block(X: Any, group_size: int) -> int | None:
    """Pixels a block for a group of ranks: the serial default, small enough that every
    rank of the group gets rows."""
    if group_size <= 1:
        return None
    n, m = (int(s) for s in X.shape)
    return max(1, min(default_block_size(n, m, data_backend(X)), -(-n // group_size)))


def _portable(rec: FitRecord) -> FitRecord:
    """``rec`` with NumPy factors (for the trip to the other ranks)."""
    return replace(rec, A=None if rec.A is None else to_numpy(rec.A), S=to_numpy(rec.S))


def _run_mpi(X, todo, settings, ex, groups, store, done, bar) -> None:
    """Deal ``todo`` over groups of ranks, fit, then share every record with every rank."""
    n_groups = ex.size if groups is None else groups
    group, sub = ex.split(n_groups)
    owners = ex.allgather(group)
    sizes = [owners.count(g) for g in range(n_groups)]
    mine = deal_fits(todo, sizes)[group]
    logger.info(
        "MPI selection: %d fits over %d group(s) of ranks %s; group %d (%d ranks) runs %d",
        len(todo),
        n_groups,
        sizes,
        group,
        sub.size,
        len(mine),
    )

    def on_done(rec: FitRecord) -> None:
        done[rec.key] = rec
        if store is not None and sub.rank == 0:
            store.write(rec)
        if store is not None and ex.rank == 0:
            store.write_progress(sorted(done))
        bar.tick(rec.key)

    block = _group_block(X, sub.size)
    if mine:
        _fit_task(X, mine, settings, on_done, executor=sub, block_size=block)
    lead = sub.rank == 0
    shared = ex.allgather_items([_portable(done[s.key]) for s in mine] if lead else [])
    sub.free()  # not in a finally: a rank that failed mid-fit must not wait here
    be = data_backend(X)
    ours = {s.key for s in mine}
    for rec in shared:
        if rec.key in ours:
            continue
        if be.name != "numpy":
            rec.S = be.asarray(rec.S)
            rec.A = None if rec.A is None else be.asarray(rec.A)
        done[rec.key] = rec
        bar.tick(rec.key)
    if store is not None and ex.rank == 0:
        store.write_progress(sorted(done))
