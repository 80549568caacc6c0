"""The progress file of a resumable selection (private).

A checkpoint is a directory::

    progress.json      {"format": "unmix-selection-progress", "fingerprint": ..., "settings":
                        ..., "finished": ["k3/r0", "k3/cv1", ...]}
    fits/<key>.npz     one finished fit: A, S and its numbers (no pickle)

Every finished fit is written atomically (temporary file, then rename) by the process that
fitted it, so a kill loses at most the fits in flight; ``progress.json`` lists the fits
whose file is complete and is rewritten by the parent as fits finish.  On resume the fit
files are the truth (a fit written just before a kill is kept even if the list missed it).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._backend import to_numpy
from ._plan import FitRecord

logger = logging.getLogger("unmix")

__all__ = ["Store"]

FORMAT = "unmix-selection-progress"
_SCALARS = (
    "k",
    "objective",
    "n_iter",
    "stop_reason",
    "sse",
    "heldout_sse",
    "heldout_ss",
    "heldout_n",
    "seconds",
)


def _safe(key: str) -> str:
    return key.replace("/", "_")


class Store:
    """Finished fits of one selection on disk (see the module)."""

    def __init__(self, path: str | os.PathLike, fingerprint: str, settings: dict) -> None:
        self.path = os.fspath(path)
        self.fingerprint = fingerprint
        self.settings = settings
        self.fits = os.path.join(self.path, "fits")
        self.progress = os.path.join(self.path, "progress.json")

    def open(self, *, resume: bool) -> dict[str, FitRecord]:
        """Create the directory, or read the fits a previous run finished (``resume``)."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(
                f"checkpoint={self.path!r} is a file; give a directory for the selection's "
                "progress (it is created when missing)."
            )
        os.makedirs(self.fits, exist_ok=True)
        found = {}
        if os.path.exists(self.progress):
            with open(self.progress, encoding="utf-8") as f:
                meta = json.load(f)
            if meta.get("format") != FORMAT:
                raise ValueError(f"{self.progress} is not an unmix selection progress file.")
            if resume and meta.get("fingerprint") != self.fingerprint:
                raise ValueError(
                    f"The checkpoint {self.path} belongs to other data or other settings; "
                    "resume with the same X and options, use another (or an empty) "
                    "checkpoint directory, or resume=False to start over."
                )
            if resume:
                found = self._read_all()
        for name in os.listdir(self.fits):
            if name.endswith(".tmp"):
                os.remove(os.path.join(self.fits, name))
        if not resume:
            for name in os.listdir(self.fits):
                os.remove(os.path.join(self.fits, name))
        self.write_progress(sorted(found))
        if found:
            logger.info("Resuming: %d finished fits read from %s", len(found), self.path)
        return found

    def write(self, rec: FitRecord) -> None:
        """Write one finished fit atomically."""
        arrays = {"S": to_numpy(rec.S)}
        if rec.A is not None:
            arrays["A"] = to_numpy(rec.A)
        meta = {name: getattr(rec, name) for name in _SCALARS}
        meta["key"] = rec.key
        target = os.path.join(self.fits, _safe(rec.key) + ".npz")
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)

    def write_progress(self, finished: list[str]) -> None:
        """Rewrite ``progress.json`` atomically with the list of finished fits."""
        meta = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "finished": list(finished),
        }
        with atomic_path(self.progress, suffix=".json.tmp") as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=1, default=str)

    def _read_all(self) -> dict[str, FitRecord]:
        out = {}
        for name in sorted(os.listdir(self.fits)):
            if not name.endswith(".npz"):
                continue
            try:
                rec = _read(os.path.join(self.fits, name))
            except (OSError, ValueError, KeyError) as err:  # a damaged file: refit it
                logger.warning("Ignoring unreadable fit file %s (%s).", name, err)
                continue
            out[rec.key] = rec
        return out


def _read(path: str) -> FitRecord:
    with np.load(path, allow_pickle=False) as z:
        meta: dict[str, Any] = json.loads(str(z["meta"]))
        A = z["A"] if "A" in z else None
        S = z["S"]
    return FitRecord(
        key=meta["key"],
        k=int(meta["k"]),
        A=A,
        S=S,
        objective=float(meta["objective"]),
        n_iter=int(meta["n_iter"]),
        stop_reason=str(meta["stop_reason"]),
        sse=float(meta["sse"]),
        heldout_sse=float(meta["heldout_sse"]),
        heldout_ss=float(meta["heldout_ss"]),
        heldout_n=int(meta["heldout_n"]),
        seconds=float(meta["seconds"]),
    )
