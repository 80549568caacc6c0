"""Run under ``mpiexec -n N``: fit with the MPI executor and compare with a serial fit.

Prints one JSON line per case on rank 0: the relative difference of S and A (gathered)
to the serial answer, the objective difference and the bytes all-reduced per iteration.
"""

import json
import sys

import numpy as np

import unmix
from unmix.executors.mpi import MPIExecutor

CASES = [
    ("hals", {}),
    ("mu", {}),
    ("mu", {"loss": "kl"}),
    ("bpp", {}),
    ("admm", {"constraints": [unmix.NonNegative(), unmix.SumToOne()]}),
    ("gradient", {}),
    ("hals", {"init": "random", "regularizers": [unmix.L1(0.01)]}),
    ("hals", {"compress": 8}),
    ("svd", {"constraints": [unmix.Orthogonal()]}),
    ("hals", {"init": "custom"}),
]


def main() -> None:
    rows, cols = int(sys.argv[1]), int(sys.argv[2])
    mx = unmix.datasets.make_mixture(
        3, spatial_shape=(rows, cols), n_channels=30, snr_db=40, random_state=0
    )
    X = np.clip(mx.X, 0, None)
    ex = MPIExecutor()
    for solver, extra in CASES:
        kw = {
            "solver": solver,
            "random_state": 0,
            "max_iter": 40,
            "tol": 0,
            "block_size": cols,
            **extra,
        }
        kw.setdefault("spatial_shape", (rows, cols))
        if kw.get("init") == "custom":  # full maps given to every rank; each keeps its rows
            kw["init"] = (np.random.default_rng(1).random((rows * cols, 3)), None)
        marks = []

        def cb(info, marks=marks):
            marks.append(ex.bytes_reduced)

        par = unmix.factorize(X, 3, executor=ex, callback=cb, **kw)
        A = ex.gather_rows(par.A)
        if ex.rank == 0:
            ser = unmix.factorize(X, 3, **kw)
            per_iter = np.diff(marks)
            print(
                json.dumps(
                    {
                        "solver": solver,
                        "extra": sorted(extra),
                        "ranks": ex.size,
                        "rows": list(par.rows),
                        "dS": float(np.abs(par.S - ser.S).max() / np.abs(ser.S).max()),
                        "dA": float(np.abs(A - ser.A).max() / np.abs(ser.A).max()),
                        "dobj": abs(par.objective - ser.objective) / abs(ser.objective),
                        "bytes_per_iter": int(np.median(per_iter)) if per_iter.size else 0,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
