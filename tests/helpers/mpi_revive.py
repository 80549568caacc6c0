"""Run under ``mpiexec -n N``: a fit whose dead components are restarted (k 5 on a
3-component mixture, HALS) with the MPI executor against the serial fit on rank 0.

Prints one JSON line on rank 0: the revived components of both fits, the relative
difference of S, A (gathered) and the objective, and both iteration counts.
"""

import json
import warnings

import numpy as np

import unmix
from unmix.executors.mpi import MPIExecutor


def main() -> None:
    mx = unmix.datasets.make_mixture(
        3, spatial_shape=(6, 7), n_channels=30, snr_db=40, random_state=0
    )
    X = np.clip(mx.X, 0, None)
    ex = MPIExecutor()
    kw = {"solver": "hals", "random_state": 0, "block_size": 7, "spatial_shape": (6, 7)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        par = unmix.factorize(X, 5, executor=ex, **kw)
        A = ex.gather_rows(par.A)
        if ex.rank != 0:
            return
        ser = unmix.factorize(X, 5, **kw)
    print(
        json.dumps(
            {
                "revived": [
                    par.spec["diagnostics"]["revived"],
                    ser.spec["diagnostics"]["revived"],
                ],
                "n_iter": [par.n_iter, ser.n_iter],
                "dS": float(np.abs(par.S - ser.S).max() / np.abs(ser.S).max()),
                "dA": float(np.abs(A - ser.A).max() / np.abs(ser.A).max()),
                "dobj": abs(par.objective - ser.objective) / abs(ser.objective),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
