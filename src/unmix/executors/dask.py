"""Dask executor: one long-lived task per worker keeps its rows; an actor sums the sums.

``unmix.factorize(X, k, executor=DaskExecutor(client))`` splits the pixels of ``X``
(pixels, channels) into whole blocks of the serial block grid, one run of rows per
worker, exactly as the MPI executor does.  Each worker receives its rows once (scattered
from memory, or read by the worker itself from an HDF5 file or a NumPy memory map) and
runs the whole fit on them in one pinned task: there is no task graph per iteration.
Per iteration the workers exchange only the ``k x (channels + k)`` sums, added in
float64 in rank order by a small actor (:class:`_Exchange`), so the answer is the serial
one up to the order of the float64 sums, and does not change from run to run.

Works with a ``LocalCluster`` (Jupyter, one machine) and with a user's existing
``Client`` (cloud, HPC job queues).  ``pip install "unmix[dask]"``.

``mask=`` goes to each worker by rows with ``X``; per-pixel and per-channel
``Weights`` go whole (they are small).  Not supported here (a clear error): full
``(pixels, channels)`` weights, ``preprocessing=`` (preprocess ``X`` first), terms that
couple neighbouring pixels (no halo exchange between Dask workers), and inits that pick
pixels (``spa``, ``vca``, ``nndsvdar``).  ``callback`` runs on the worker holding the
first rows.  With ``checkpoint=``, each worker writes its rows' checkpoint (see
:class:`unmix.engine.DistributedCheckpointer`); when a worker dies the fit stops
with an error that says so, and ``resume=True`` on the same number of workers continues
from the last generation every worker saved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._backend import backend_of, to_numpy
from ..blocks import RowRange, default_block_size
from ..engine import check_mask, check_weights, factorize
from ._packing import from_host64, local_sums, packed_sum, to_host64
from .base import Block, rows_of_rank

logger = logging.getLogger("unmix")

__all__ = ["DaskExecutor"]

_TIMEOUT = 600.0  # seconds a worker waits for the others in one exchange


class _Exchange:
    """The collective of one fit, as a Dask actor: every rank puts, every rank gets all.

    ``exchange`` is a coroutine, so the actor serves all ranks concurrently on its
    worker's event loop; each call returns once every rank has contributed to that round.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.rounds: dict[int, dict] = {}
        self.aborted = False

    async def abort(self) -> None:
        """Release every waiting rank with an error (the driver saw a worker die)."""
        self.aborted = True
        for entry in self.rounds.values():
            entry["event"].set()

    async def exchange(self, round_: int, rank: int, value: Any) -> list:
        if self.aborted:
            raise RuntimeError("the fit was aborted (another worker died)")
        entry = self.rounds.setdefault(round_, {"values": {}, "event": asyncio.Event()})
        entry["values"][rank] = value
        if len(entry["values"]) == self.size:
            entry["event"].set()
        try:
            await asyncio.wait_for(entry["event"].wait(), _TIMEOUT)
        except asyncio.TimeoutError:
            raise RuntimeError(
                f"round {round_}: only ranks {sorted(entry['values'])} of {self.size} arrived "
                f"within {_TIMEOUT:.0f} s (a worker died?)"
            ) from None
        if self.aborted:
            raise RuntimeError("the fit was aborted (another worker died)")
        values = [entry["values"][r] for r in range(self.size)]
        entry.setdefault("served", 0)
        entry["served"] += 1
        if entry["served"] == self.size:
            del self.rounds[round_]
        return values


class _DaskRank:
    """The executor a worker's task uses: its rows, and collectives through the actor."""

    distributed = True

    def __init__(self, exchange: Any, rank: int, size: int, rows: tuple[int, int]) -> None:
        self.exchange, self.rank, self.size, self.rows = exchange, rank, size, rows
        self.round = 0
        self.bytes_reduced = 0
        self.seconds_reduced = 0.0

    def partition(self, n_pixels: int, block: int) -> tuple[int, int]:
        return self.rows

    def _all(self, value: Any) -> list:
        self.round += 1
        t0 = time.perf_counter()
        out = self.exchange.exchange(self.round, self.rank, value).result()
        self.seconds_reduced += time.perf_counter() - t0
        return out

    def allreduce(self, value: Any) -> Any:
        """Sum over the workers in float64, in rank order (same on every worker)."""
        host, like = to_host64(value)
        self.bytes_reduced += host.nbytes
        parts = self._all(host)
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return from_host64(total, like, value)

    def allreduce_max(self, value: float) -> float:
        return float(max(self._all(float(value))))

    def allgather(self, value: Any) -> list:
        return self._all(value)

    def barrier(self) -> None:
        self._all(None)

    def map_reduce(self, kernel: Callable[[Block], dict], blocks: Sequence[Block]) -> dict:
        """Local blocks in order, then one exchange of all returned arrays, packed."""
        return packed_sum(local_sums(kernel, blocks), self.allreduce)


class _LocalRows(RowRange):
    """``X`` as a worker sees it: the full shape, but only its rows (from ``start``) held."""

    _unmix_streamable = True

    def __init__(self, part: Any, start: int, n_total: int) -> None:
        super().__init__(part, -int(start), n_total)


def _host_mask_and_weights(kwargs: dict, n: int, m: int) -> tuple[Any, dict]:
    """The checked host mask (scattered by rows) and ``kwargs`` with the checked weights.

    Separable weights (per pixel, per channel) are small and go whole to every worker;
    full ``(pixels, channels)`` weights are refused (they are as large as ``X``).
    """
    host = backend_of(np.zeros((1, 1)))
    mask = kwargs.get("mask")
    if mask is not None:
        mask = np.asarray(check_mask(np.asarray(mask), (n, m), host))
    weights = check_weights(kwargs.get("weights"), n, m, host)
    if weights is not None and weights.full is not None:
        raise ValueError(
            "weights= with full (pixels, channels) weights is not supported by "
            "DaskExecutor: use Weights(pixels=..., channels=...) or the MPI executor."
        )
    return mask, dict(kwargs, mask=None, weights=weights)


def _source_of(X: Any) -> tuple[str, Any] | None:
    """How a worker can open ``X`` itself (None: scatter the rows from memory)."""
    if isinstance(X, np.memmap) and getattr(X, "filename", None) and X.ndim == 2:
        return ("memmap", (X.filename, X.offset, X.dtype.str, X.shape))
    module = type(X).__module__.split(".")[0]
    if module == "h5py":
        return ("h5py", (X.file.filename, X.name))
    return None


def _open_rows(source: tuple[str, Any], start: int, stop: int) -> Any:
    kind, spec = source
    if kind == "memmap":
        filename, offset, dtype, shape = spec
        return np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))[
            start:stop
        ]
    import h5py

    filename, name = spec
    with h5py.File(filename, "r") as f:
        return f[name][start:stop]


def _worker_fit(
    part: Any,
    source: Any,
    rank: int,
    size: int,
    rows: tuple,
    n_total: int,
    exchange: Any,
    k: int,
    kwargs: dict,
) -> dict:
    """One worker's whole fit (runs in a pinned task)."""
    start, stop = rows
    part, mask = part
    if mask is not None:  # this worker's rows of the mask, seen at their global rows
        kwargs = dict(kwargs, mask=_LocalRows(mask, start, n_total))
    if part is None:
        part = _open_rows(source, start, stop)
    elif not part.flags.aligned:  # Dask's transfer frames leave it unaligned: BLAS crawls
        part = np.require(part, requirements=["A", "C"])
    ex = _DaskRank(exchange, rank, size, rows)
    if rank != 0:
        kwargs = dict(kwargs, callback=None)
    t0, c0 = time.perf_counter(), time.thread_time()
    result = factorize(_LocalRows(part, start, n_total), k, executor=ex, **kwargs)
    return {
        "result": result,
        "A": to_numpy(result.A),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.thread_time() - c0,
        "bytes_reduced": ex.bytes_reduced,
        "rounds": ex.round,
        "seconds_reduced": ex.seconds_reduced,
    }


class DaskExecutor:
    """Pixels split over the workers of a Dask cluster.

    Parameters
    ----------
    client : distributed.Client, optional
        An existing client; default: a new ``LocalCluster`` on 127.0.0.1 with
        ``n_workers`` single-threaded worker processes (closed by :meth:`close`).
    n_workers : int
        Workers of the local cluster (ignored with ``client``).
    workers : list of str, optional
        Worker addresses to use (default: all, sorted); one rank per worker.

    Attributes
    ----------
    last_run : dict
        Per-rank seconds, bytes all-reduced and rounds of the last fit.
    """

    distributed = True
    drives_workers = True

    def __init__(
        self, client: Any = None, *, n_workers: int = 2, workers: Sequence[str] | None = None
    ) -> None:
        from distributed import Client, LocalCluster

        self._own = client is None
        if client is None:
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            client = Client(cluster)
        self.client = client
        self.workers = list(workers) if workers else None
        self.last_run: dict = {}

    def _addresses(self) -> list[str]:
        if self.workers:
            return list(self.workers)
        found = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        if not found:
            raise RuntimeError("the Dask cluster has no workers.")
        return found

    def factorize(self, X: Any, k: int, **kwargs: Any) -> Any:
        """Run :func:`unmix.factorize` on the workers; the maps come back whole."""
        if kwargs.get("preprocessing") or kwargs.get("preset") == "blind-unmixing":
            raise ValueError(
                "preprocessing= is not supported with DaskExecutor: preprocess X "
                "first (e.g. unmix.preprocessing steps on the array)."
            )
        source = _source_of(X)
        if source is None and not isinstance(X, np.ndarray):
            raise TypeError(
                f"DaskExecutor takes X as a NumPy array, an h5py dataset or a memory map; got "
                f"{type(X).__module__}.{type(X).__name__}. Pass np.asarray(X) (the workers "
                "compute on their CPUs), or fit on the device without an executor."
            )
        X_host = X
        if X_host.ndim != 2:
            raise ValueError(f"X must be 2-D (pixels, channels); got shape {X_host.shape}.")
        n, m = (int(s) for s in X_host.shape)
        mask, kwargs = _host_mask_and_weights(kwargs, n, m)
        addresses = self._addresses()
        size = len(addresses)
        spatial = kwargs.get("spatial_shape")
        row = int(spatial[-1]) if spatial else 1
        block = kwargs.get("block_size")
        if block is None:
            dtype = X_host.dtype if X_host.dtype in (np.float32, np.float64) else np.float32
            block = default_block_size(n, m, backend_of(np.zeros((1, 1), dtype)), row=row)
        kwargs = dict(kwargs, block_size=int(block))
        exchange = self.client.submit(
            _Exchange, size, actor=True, workers=[addresses[0]], pure=False
        ).result()
        futures = []
        for rank, address in enumerate(addresses):
            start, stop = rows_of_rank(n, int(block), rank, size)
            part = None
            if source is None:
                # hash=False: a content-hashed key shared with an earlier fit on the
                # same rows can be released by that fit's clean-up while this one
                # still needs it ("computation on lost data").
                part = self.client.scatter(
                    np.asarray(X_host[start:stop]), workers=[address], direct=True, hash=False
                )
            rows_mask = None
            if mask is not None:
                rows_mask = self.client.scatter(
                    np.ascontiguousarray(mask[start:stop]), workers=[address], hash=False
                )
            futures.append(
                self.client.submit(
                    _worker_fit,
                    (part, rows_mask),
                    source,
                    rank,
                    size,
                    (start, stop),
                    n,
                    exchange,
                    k,
                    kwargs,
                    workers=[address],
                    allow_other_workers=False,
                    pure=False,
                    retries=0,
                )
            )
        outs = self._wait(futures, addresses, exchange)
        result = outs[0]["result"]
        result.A = np.concatenate([o["A"] for o in outs], axis=0)
        result.A = result.A.astype(result.S.dtype, copy=False)
        result.rows = None
        self.last_run = {
            "seconds": [o["seconds"] for o in outs],
            "cpu_seconds": [o["cpu_seconds"] for o in outs],
            "bytes_reduced": [o["bytes_reduced"] for o in outs],
            "rounds": [o["rounds"] for o in outs],
            "seconds_reduced": [o["seconds_reduced"] for o in outs],
        }
        return result

    def _lost(self, addresses: list[str], *, settle: bool) -> list[str]:
        """Workers of this fit the scheduler no longer knows.

        A task on a killed worker can be cancelled before the scheduler drops the
        worker; with ``settle`` the check is repeated for a few seconds so that the
        error names the worker that died.
        """
        deadline = time.monotonic() + (5.0 if settle else 0.0)
        while True:
            alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
            lost = [a for a in addresses if a not in alive]
            if lost or time.monotonic() >= deadline:
                return lost
            time.sleep(0.2)

    def _wait(self, futures: list, addresses: list[str], exchange: Any) -> list[dict]:
        """Results in rank order; a dead worker stops the fit with a clear error."""
        from distributed import wait

        while True:
            try:
                wait(futures, timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            except Exception:  # a pinned task whose worker is gone is cancelled
                logger.debug("waiting for the workers", exc_info=True)
            status = [f.status for f in futures]
            if all(st == "finished" for st in status) or "error" in status:
                break
            lost = self._lost(addresses, settle="cancelled" in status)
            if lost or "cancelled" in status:
                try:  # free the ranks that wait for the lost one
                    exchange.abort().result(timeout=10)
                except Exception:
                    logger.debug("could not abort the exchange", exc_info=True)
                for f in futures:
                    f.cancel()
                what = (
                    f"Dask worker(s) {lost} died during the fit"
                    if lost
                    else "the scheduler cancelled a worker's fit (its input rows were lost)"
                )
                raise RuntimeError(
                    f"{what}; with checkpoint= the last checkpoint every worker saved is "
                    "kept: rerun with resume=True on the same number of workers."
                )
        for f in futures:
            if f.status == "error":
                raise f.exception()
        return [f.result() for f in futures]

    def close(self) -> None:
        """Close the client and cluster this executor started (not a user's client)."""
        if self._own:
            cluster = self.client.cluster
            self.client.close()
            cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"
