"""Run under ``mpiexec -n N``: sparse (CSR) X fitted with the MPI executor vs serially.

Prints one JSON line per case on rank 0: the relative difference of S and A (gathered)
and of the objective to the serial fit of the same CSR matrix, and every rank's rows and
nonzeros (the counts sit in the first two of six scan lines: ranks split the nonzeros).
"""

import json

import numpy as np
import scipy.sparse as sp

import unmix
from unmix.executors.mpi import MPIExecutor

CASES = [("klcd", "kl"), ("mu", "kl"), ("hals", "frobenius"), ("klcd", "kl")]


def main() -> None:
    rng = np.random.default_rng(3)
    A = rng.gamma(1.0, 1.0, (6 * 20, 3))
    A[:40] *= 30.0  # the first two scan lines hold most of the counts
    S = rng.gamma(1.0, 1.0, (3, 40)) * (rng.random((3, 40)) < 0.5)
    X = sp.csr_array(rng.poisson(A @ S * 0.02).astype(np.float64))
    ex = MPIExecutor()
    # the last case: a mask over stored entries and pixel weights, from a fixed start
    masked = {
        "mask": np.random.default_rng(4).random(X.shape) > 0.1,
        "weights": unmix.Weights(pixels=np.linspace(0.0, 2.0, X.shape[0])),
        "init": (np.full((X.shape[0], 3), 0.5), rng.uniform(0.1, 1.0, (3, X.shape[1]))),
    }
    for case, (solver, loss) in enumerate(CASES):
        kw = {"solver": solver, "loss": loss, "random_state": 0, "max_iter": 30, "tol": 0}
        kw.update(block_size=20, spatial_shape=(6, 20))
        if case == len(CASES) - 1:
            kw.update(masked)
        par = unmix.factorize(X, 3, executor=ex, **kw)
        A_all = ex.gather_rows(par.A)
        start, stop = ex.rows
        layout = ex.allgather((start, stop, int(X.indptr[stop] - X.indptr[start])))
        if ex.rank == 0:
            ser = unmix.factorize(X, 3, **kw)
            rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())  # noqa: E731
            out = {
                "solver": solver,
                "dS": rel(par.S, ser.S),
                "dA": rel(A_all, ser.A),
                "dobj": abs(par.objective - ser.objective) / ser.objective,
                "layout": layout,  # (start, stop, nonzeros) of every rank
            }
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
