"""Run under ``mpiexec -n N``: a fit that one rank's SIGKILL interrupts, then resumes.

``python mpi_resume.py MODE CHECKPOINT OUT`` with MODE ``full`` (uninterrupted),
``kill`` (rank N-1 kills itself at iteration 25, checkpoints every iteration) or
``resume``; rank 0 saves the gathered A, S and the iteration count to OUT (.npz).
"""

import os
import signal
import sys

import numpy as np

import unmix
from unmix.executors.mpi import MPIExecutor


def main() -> None:
    mode, checkpoint, out = sys.argv[1:4]
    mx = unmix.datasets.make_mixture(
        3, spatial_shape=(9, 8), n_channels=30, snr_db=30, random_state=0
    )
    ex = MPIExecutor()

    def kill_at_25(info):
        if mode == "kill" and info.iteration == 25 and ex.rank == ex.size - 1:
            os.kill(os.getpid(), signal.SIGKILL)

    kw = {
        "solver": "admm",
        "constraints": [unmix.NonNegative(), unmix.SumToOne()],
        "max_iter": 60,
        "tol": 0,
        "random_state": 0,
        "block_size": 8,
        "executor": ex,
    }
    if mode != "full":
        kw.update(
            checkpoint=checkpoint, checkpoint_every=0, resume=mode == "resume", callback=kill_at_25
        )
    res = unmix.factorize(np.clip(mx.X, 0, None), 3, **kw)
    A = ex.gather_rows(res.A)
    if ex.rank == 0:
        np.savez(out, A=A, S=res.S, n_iter=res.n_iter, history=res.history["objective"])


if __name__ == "__main__":
    main()
