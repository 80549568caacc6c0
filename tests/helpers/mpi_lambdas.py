"""Run under ``mpiexec -n N``: the lambda search over groups of MPI ranks vs a serial run.

Usage: ``mpi_lambdas.py OUT_DIR GROUPS...`` (each an integer or ``none``: one group per
rank).  Rank 0 first writes the serial search (``"case": "serial"``), then every rank
writes its search for each group count, one JSON line per case, to ``OUT_DIR/rank<r>.jsonl``.
"""

import json
import logging
import os
import sys

import numpy as np

import unmix
from unmix.executors.mpi import MPIExecutor
from unmix.selection import select_lambdas

KW = dict(
    params=("sparsity", "smoothness"),
    method="grid",
    n_trials=3,
    spatial_shape=(12, 12),
    max_iter=60,
    random_state=2,
)


def summary(case: str, rank: int, search) -> str:
    return json.dumps(
        {
            "case": case,
            "rank": rank,
            "best": search.best,
            "params": [t["params"] for t in search.trials],
            "stages": [t["stage"] for t in search.trials],
            "scores": [t["score"] for t in search.trials],
        }
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    out_dir, cases = sys.argv[1], sys.argv[2:]
    mix = unmix.datasets.make_mixture(
        3, spatial_shape=(12, 12), n_channels=30, snr_db=30, random_state=4
    )
    X = np.clip(np.asarray(mix.X, dtype=float), 0.0, None)
    ex = MPIExecutor()
    path = os.path.join(out_dir, f"rank{ex.rank}.jsonl")

    def emit(line: str) -> None:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")

    if ex.rank == 0:
        emit(summary("serial", 0, select_lambdas(X, 3, **KW)))
    for case in cases:
        groups = None if case == "none" else int(case)
        search = select_lambdas(X, 3, executor=ex, groups=groups, **KW)
        emit(summary(case, ex.rank, search))


if __name__ == "__main__":
    main()
