"""Checkpoints: long fits survive Ctrl-C and kills, and resume to the same answer.

A checkpoint is an HDF5 file written atomically (temporary file, then rename), so a kill
during a write leaves the previous checkpoint intact.  It holds the current iterate
``(A, S)``, the starting factors (so that terms with relative strengths are restored
exactly), the history, the iteration and phase, the solver's persistent state (ADMM
duals, step sizes), the restart bookkeeping, and a fingerprint of the problem so that a
checkpoint is never resumed with other data or other parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any

import numpy as np

from .._atomic import atomic_path, check_write_target
from .._backend import to_numpy

logger = logging.getLogger("unmix")

__all__ = ["Checkpointer", "DistributedCheckpointer", "fingerprint", "recorded_seed"]

_ARRAYS = ("A", "S", "A0", "S0")


def fingerprint(spec: dict, data_sig: str) -> str:
    """Hash of the problem spec (minus bookkeeping) and a signature of the data."""
    keep = {k: v for k, v in spec.items() if k not in ("time_limit", "max_iter")}
    text = json.dumps(keep, sort_keys=True, default=repr) + data_sig
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def recorded_seed(path: str | os.PathLike, executor: Any = None, *, required: bool) -> int | None:
    """The seed recorded in the checkpoint ``path`` of a fit on ``executor`` (None when
    there is none yet; see :meth:`Checkpointer.recorded_seed`)."""
    if executor is not None and getattr(executor, "distributed", False):
        ckpt: Checkpointer = DistributedCheckpointer(
            path, every=0.0, fingerprint="", executor=executor
        )
    else:
        ckpt = Checkpointer(path, every=0.0, fingerprint="")
    return ckpt.recorded_seed(required=required)


def data_signature(data: Any) -> str:
    """Cheap signature of X: shape, dtype, a few sums (no full hash of big data)."""
    be, xp = data.be, data.be.xp
    ones = xp.ones((data.n_channels, 1), dtype=be.dtype, device=be.device)
    sums = [  # through the product interface: sparse X is never made dense
        float(xp.sum(be.acc(data.x_times(b, ones))))
        for b in data.blocks[:: max(1, len(data.blocks) // 8)]
    ]
    return f"{data.n_pixels}x{data.n_channels}:{be.dtype}:{data.norm2():.17g}:{sums}"


class Checkpointer:
    """Writes checkpoints to ``path`` at most every ``every`` seconds (0: every iteration).

    Parameters
    ----------
    path : str
        The checkpoint file (HDF5).
    every : float
        Seconds between periodic saves; ``0`` saves after every iteration.
    fingerprint : str
        The problem's fingerprint (see :func:`fingerprint`).
    random_state : int, optional
        The fit's seed, recorded in the file so that a resume without a seed takes it
        (:func:`recorded_seed`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        every: float,
        fingerprint: str,
        random_state: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        check_write_target(self.path, f"checkpoint={self.path!r}")  # now, not at 1st save
        self.every = float(every)
        self.fingerprint = fingerprint
        self.random_state = random_state
        self._last = time.monotonic()
        self.bookkeeping: dict[str, Any] = {"finished": [], "best": None}
        self.on_interrupt = True  # Ctrl-C saves the last complete iterate
        self._tmp_prefix = os.path.basename(self.path) + "."

    def due(self) -> bool:
        return self.every <= 0 or time.monotonic() - self._last >= self.every

    def save(self, snap: dict) -> None:
        """Atomically write ``snap`` (arrays, history, solver state, scalars)."""
        import h5py

        with (
            atomic_path(self.path, prefix=self._tmp_prefix, suffix=".ckpt.tmp") as tmp,
            h5py.File(tmp, "w") as f,
        ):
            f.attrs["format"] = "unmix-checkpoint"
            f.attrs["fingerprint"] = self.fingerprint
            if self.random_state is not None:
                f.attrs["random_state"] = int(self.random_state)
            for key in _ARRAYS:
                f.create_dataset(key, data=to_numpy(snap[key]))
            h = f.create_group("history")
            for key, values in snap["history"].items():
                h.create_dataset(key, data=np.asarray(values, dtype=float))
            st = f.create_group("state")
            scalars = {}
            for key, value in snap["state"].items():
                if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                    st.create_dataset(key, data=to_numpy(value))
                else:
                    scalars[key] = float(value)
            best = self.bookkeeping["best"]
            if best is not None:
                b = f.create_group("best")
                b.create_dataset("A", data=to_numpy(best["A"]))
                b.create_dataset("S", data=to_numpy(best["S"]))
                bh = b.create_group("history")
                for key, values in best["history"].items():
                    bh.create_dataset(key, data=np.asarray(values, dtype=float))
            meta = {
                key: snap[key]
                for key in (
                    "restart",
                    "seed",
                    "phase",
                    "iteration",
                    "prev",
                    "fit0",
                    "t_init",
                    "elapsed",
                )
            }
            meta["state_scalars"] = scalars
            meta["finished"] = self.bookkeeping["finished"]
            meta["best_meta"] = (
                None
                if best is None
                else {k: v for k, v in best.items() if k not in ("A", "S", "history")}
            )
            f.attrs["meta"] = json.dumps(meta)
        self._last = time.monotonic()
        logger.debug("checkpoint written: iteration %s", snap["iteration"])

    def load(self) -> dict | None:
        """The saved snapshot (NumPy arrays), or None when there is no checkpoint."""
        import h5py

        self._remove_stale_temporaries()
        if not os.path.exists(self.path):
            return None
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("format") != "unmix-checkpoint":
                raise ValueError(f"{self.path} is not an unmix checkpoint.")
            if f.attrs.get("fingerprint") != self.fingerprint:
                raise ValueError(
                    f"The checkpoint {self.path} belongs to other data or other parameters; "
                    "resume with the same input and options, or delete it to start afresh."
                )
            meta = json.loads(f.attrs["meta"])
            snap = {key: f[key][()] for key in _ARRAYS}
            snap["history"] = {k: f["history"][k][()] for k in f["history"]}
            state = {k: f["state"][k][()] for k in f["state"]}
            state.update(meta.pop("state_scalars"))
            snap["state"] = state
            best = None
            if "best" in f:
                best = dict(meta["best_meta"])
                best["A"], best["S"] = f["best"]["A"][()], f["best"]["S"][()]
                best["history"] = {k: f["best"]["history"][k][()] for k in f["best"]["history"]}
        self._check_finite(snap, best)
        self.bookkeeping = {"finished": meta.pop("finished"), "best": best}
        meta.pop("best_meta", None)
        snap.update(meta)
        return snap

    def _check_finite(self, snap: dict, best: dict | None) -> None:
        """Refuse a checkpoint whose factors hold NaN or Inf (a resume would return them)."""
        arrays = {key: snap[key] for key in _ARRAYS}
        if best is not None:
            arrays.update({"best A": best["A"], "best S": best["S"]})
        bad = [key for key, value in arrays.items() if not np.all(np.isfinite(value))]
        if bad:
            raise ValueError(
                f"checkpoint {self.path} holds non-finite maps ({', '.join(bad)}); delete it "
                "or run without --resume (resume=False) to start afresh."
            )

    def recorded_seed(self, *, required: bool = False) -> int | None:
        """The seed recorded in the checkpoint (None when there is no checkpoint).

        ``required``: a checkpoint that records no seed (written by an older unmix)
        raises a ValueError instead of giving None.
        """
        import h5py

        path = self._newest()
        if path is None or not os.path.exists(path):
            return None
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != "unmix-checkpoint":
                return None  # load() says what is wrong with it
            seed = f.attrs.get("random_state")
        if seed is None and required:
            raise ValueError(
                f"The checkpoint {path} records no seed (written by an older unmix): resume "
                "with the random_state of the interrupted fit, or delete it to start afresh."
            )
        return None if seed is None else int(seed)

    def _newest(self) -> str | None:
        """The checkpoint file a resume would read."""
        return self.path

    def remove(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a write that a kill interrupted (never the checkpoint)."""
        folder = os.path.dirname(os.path.abspath(self.path)) or "."
        for name in os.listdir(folder):
            if name.startswith(self._tmp_prefix) and name.endswith(".ckpt.tmp"):
                try:
                    os.remove(os.path.join(folder, name))
                except OSError:  # pragma: no cover - raced with another process
                    pass


class DistributedCheckpointer(Checkpointer):
    """One checkpoint file per process, in generations that all processes agree on.

    Process ``r`` of ``N`` writes ``PATH.rank{r}of{N}.g{G}`` (its rows of ``A``, the
    shared ``S`` and state) atomically; after every process has written generation ``G``
    (a barrier), each deletes its older generations.  A kill at any moment therefore
    leaves one generation that every process holds; :meth:`load` picks the newest such
    one.  Saves are collective: whether one is due is agreed by an all-reduce of the
    processes' clocks, and Ctrl-C does not save (the other processes may be inside a
    collective), so a run resumes from its last periodic checkpoint.  Resuming needs the
    same number of processes.

    Parameters
    ----------
    path : str
        The checkpoint's base path.
    every : float
        Seconds between saves (``0``: every iteration).
    fingerprint : str
        The problem's fingerprint.
    executor : distributed executor
        Provides ``rank``, ``size``, ``barrier``, ``allgather`` and ``allreduce_max``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        every: float,
        fingerprint: str,
        executor: Any,
        random_state: int | None = None,
    ) -> None:
        super().__init__(path, every=every, fingerprint=fingerprint, random_state=random_state)
        self.ex = executor
        self.base = os.fspath(path)
        self.generation = 0
        self.on_interrupt = False
        self._tmp_prefix = f"{os.path.basename(self.base)}.rank{executor.rank}of{executor.size}."
        self.path = self._file(0)

    def _file(self, generation: int) -> str:
        return f"{self.base}.rank{self.ex.rank}of{self.ex.size}.g{generation}"

    def _mine(self) -> dict[int, str]:
        folder = os.path.dirname(os.path.abspath(self.base)) or "."
        head = os.path.basename(self._file(0))[:-1]  # ... .g
        found = {}
        for name in os.listdir(folder):
            tail = name[len(head) :]
            if name.startswith(head) and tail.isdigit():
                found[int(tail)] = os.path.join(folder, name)
        return found

    def due(self) -> bool:
        if self.every <= 0:
            return True
        return self.ex.allreduce_max(float(super().due())) > 0

    def _newest(self) -> str | None:
        mine = self._mine()
        return mine[max(mine)] if mine else None

    def save(self, snap: dict) -> None:
        generation = self.generation + 1
        self.path = self._file(generation)
        super().save(snap)
        self.ex.barrier()  # every process now holds this generation
        for g, name in self._mine().items():
            if g != generation:
                os.remove(name)
        self.generation = generation

    def load(self) -> dict | None:
        mine = self._mine()
        everyone = self.ex.allgather(sorted(mine))
        common = set(everyone[0]).intersection(*everyone[1:])
        if not common:
            if any(everyone):
                logger.warning(
                    "Checkpoint files %s.rank*of%d.g* do not share a generation over all "
                    "processes (run with another number of processes?): starting afresh.",
                    self.base,
                    self.ex.size,
                )
            return None
        self.generation = max(common)
        self.path = mine[self.generation]
        return super().load()

    def remove(self) -> None:
        for name in self._mine().values():
            os.remove(name)
        self._remove_stale_temporaries()
