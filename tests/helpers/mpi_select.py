"""Run under ``mpiexec -n N``: rank selection over groups of MPI ranks vs a serial run.

Usage: ``mpi_select.py OUT_DIR GROUPS...`` where each ``GROUPS`` is an integer or
``none`` (one group per rank), optionally with ``:engine`` (fits through
:func:`unmix.factorize`) or ``:resume`` (a checkpointed run, then the same call resumed).
Every rank writes one JSON line per case (its picks and the table's numbers) to
``OUT_DIR/rank<r>.jsonl`` (ranks printing at once would interleave their lines); rank 0
first writes the serial reference (``"case": "serial"``, and ``"serial:engine"``).
"""

import json
import logging
import os
import sys

import numpy as np

import unmix
from unmix.executors.mpi import MPIExecutor
from unmix.selection import select_rank

KW = dict(n_restarts=3, criteria=["cv", "bic", "silhouette"], random_state=1, max_iter=150)
KS = [2, 3, 4]


def summary(case: str, rank: int, sel) -> str:
    return json.dumps(
        {
            "case": case,
            "rank": rank,
            "recommended": sel.recommended,
            "picks": sel.picks,
            "sse": [r["sse"] for r in sel.table],
            "cv_error": [r["cv_error"] for r in sel.table],
            "silhouette": [r["silhouette_min"] for r in sel.table],
            "n_fits": sel.timings["n_fits"],
            "n_fits_resumed": sel.timings["n_fits_resumed"],
            "maps": [list(np.asarray(f.A).shape) for f in sel.runs[3]],
        }
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    out_dir, cases = sys.argv[1], sys.argv[2:]
    mix = unmix.datasets.make_mixture(
        3, spatial_shape=(16, 16), n_channels=40, snr_db=30, random_state=3
    )
    X = np.clip(np.asarray(mix.X, dtype=float), 0.0, None)
    engine = {"fit_options": {"solver": "hals"}, "max_iter": 60}
    ex = MPIExecutor()
    path = os.path.join(out_dir, f"rank{ex.rank}.jsonl")

    def emit(line: str) -> None:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")

    if ex.rank == 0:
        emit(summary("serial", 0, select_rank(X, KS, **KW)))
        if any(c.endswith(":engine") for c in cases):
            ser = select_rank(X, KS, **{**KW, **engine})
            emit(summary("serial:engine", 0, ser))
    for case in cases:
        spec, _, mode = case.partition(":")
        groups = None if spec == "none" else int(spec)
        kw = dict(KW, executor=ex, groups=groups)
        if mode == "engine":
            kw.update(engine)
        if mode == "resume":
            kw["checkpoint"] = os.path.join(out_dir, f"ck-{spec}")
            select_rank(X, KS, **kw)  # writes every fit; the call below reads them back
        sel = select_rank(X, KS, **kw)
        emit(summary(case, ex.rank, sel))


if __name__ == "__main__":
    main()
